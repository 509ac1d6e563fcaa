//! Arbitrary text as a SAP UME audit line: parsing never panics, and what
//! parses prints back to a line that parses to the same event.
#![no_main]

use auditlog_cli::formats::sap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(e) = sap::parse_line(text) else { return };
    let line = sap::to_line(&e);
    let again = sap::parse_line(&line).expect("our own line parses");
    // Field text is trimmed on input, so compare after one normalising trip.
    assert_eq!(sap::to_line(&again), line);
});
