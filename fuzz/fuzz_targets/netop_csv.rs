//! Arbitrary bytes as a Netop report CSV: reading never panics, and every row
//! that parses writes back to a row that parses to the same event.
#![no_main]

use auditlog::Severity;
use auditlog_cli::formats::netop;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    for rec in r.records().take(64) {
        let Ok(rec) = rec else { continue };
        let fields: Vec<&str> = rec.iter().collect();
        let Ok(e) = netop::parse_record(&fields, &|_| Some(Severity::Info)) else {
            continue;
        };
        let row = netop::to_record(&e);
        let back =
            netop::parse_record(&row.iter().map(String::as_str).collect::<Vec<_>>(), &|_| {
                Some(Severity::Info)
            })
            .expect("our own row parses");
        assert_eq!(back, e);
    }
});
