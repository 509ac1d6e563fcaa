//! Arbitrary text as a canonical JSON line: parsing never panics, and what
//! parses prints back to JSON that parses to the same event.
#![no_main]

use auditlog::event::json;
use auditlog::Severity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dflt = |t: &str| (t.len() % 2 == 0).then_some(Severity::Info);
    let Ok(e) = json::from_json(text, &dflt) else {
        return;
    };
    let line = json::to_json(&e, None);
    assert_eq!(
        json::from_json(&line, &|_| None).expect("our own output parses"),
        e
    );
});
