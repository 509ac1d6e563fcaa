//! What an operator types and the CSV `import --format csv` reads: time
//! expressions, priorities, type patterns and auditlog's own CSV never
//! panic, and what parses holds together (a range is ordered, a name
//! matches itself, a CSV record written back parses to the same event).
#![no_main]

use auditlog::{glob_matches, Lsn, Severity};
use auditlog_cli::formats::events_csv;
use auditlog_cli::select::{self, field_text};
use auditlog_cli::when::{Clock, End};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            let now = "2026-11-22T12:00:00Z".parse().unwrap();
            let clock = Clock::fixed(now, jiff::tz::TimeZone::fixed(jiff::tz::offset(1)));
            if let (Ok(a), Ok(b)) = (clock.parse(text, End::Since), clock.parse(text, End::Until)) {
                assert!(a <= b, "{text:?}: a range's start after its end");
                let _ = clock.show(a);
            }
        }
        1 => {
            if let Ok((lo, hi)) = select::priority(text) {
                assert!(lo <= hi);
            }
        }
        2 => {
            let (pattern, name) = text.split_once('\0').unwrap_or((text, text));
            let _ = glob_matches(pattern, name);
            if !name.contains('*') {
                assert!(glob_matches(name, name));
            }
            let _ = select::resolve_types(&[pattern.to_string()], &[name.to_string()]);
        }
        _ => {
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            let Ok(header) = r.headers().cloned() else {
                return;
            };
            let header: Vec<&str> = header.iter().collect();
            if events_csv::check_header(&header).is_err() {
                return;
            }
            for rec in r.records().take(64) {
                let Ok(rec) = rec else { continue };
                let cells: Vec<&str> = rec.iter().collect();
                let dflt = |_: &str| Some(Severity::Info);
                let Ok(e) = events_csv::parse_record(&header, &cells, &dflt) else {
                    continue;
                };
                let back: Vec<String> = header
                    .iter()
                    .map(|h| field_text(&e.fields(), Lsn(1), h))
                    .collect();
                let back: Vec<&str> = back.iter().map(String::as_str).collect();
                let again =
                    events_csv::parse_record(&header, &back, &dflt).expect("our own record parses");
                assert_eq!(again, e);
            }
        }
    }
});
