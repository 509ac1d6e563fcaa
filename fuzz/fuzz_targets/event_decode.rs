//! Arbitrary bytes as an encoded event: decoding never panics, and whatever
//! decodes re-encodes to the same bytes (the encoding is canonical).
#![no_main]

use auditlog::format::codec::{self, EventRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // What filters read before parsing: split agrees with the full parse on
    // structure, and reading its fields never panics.
    let split = codec::split(data);
    if let Some((head, f)) = &split {
        let _ = (f.ip(), f.result(), f.text(codec::TextField::Session));
        assert_eq!(codec::peek_structure(data).map(|s| s.0), Some(head.type_id));
    }
    let Ok(r) = EventRef::parse(data) else { return };
    assert!(
        split.is_some(),
        "an event that parses has an event's structure"
    );
    let keys: Vec<u32> = r.attrs().map(|(k, _)| k).collect();
    let Ok(e) = r.to_event(&|id| Some(format!("T{id}")), &|k| Some(format!("{k:010}"))) else {
        return;
    };
    // Attribute keys come back in key order; the encoding is canonical only
    // when they were encoded in that order without repeats.
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != keys {
        return;
    }
    let mut out = Vec::new();
    codec::encode(
        &e,
        r.type_id,
        &mut |k| k.parse().expect("our own key names"),
        &mut out,
    );
    // Empty strings decode as present; the encoder writes them back as present too.
    assert_eq!(out, data, "decode then encode changed the bytes");
});
