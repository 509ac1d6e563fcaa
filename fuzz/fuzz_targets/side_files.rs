//! Arbitrary bytes as a log's side files: `CATALOG` (read by a writer,
//! which completes it from the log, and by a reader) and `QUARANTINE`.
//!
//! Asserts: nothing panics; what a damaged catalog is read as never names a
//! type or key the bytes do not hold on a line whose CRC checks.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use auditlog::format::quarantine;
use auditlog::format::registry::Registry;
use auditlog::io::Vfs;
use auditlog::testing::FaultyFs;
use auditlog::{AuditLog, AuditOptions, Compaction, Event, Filter, Options, Severity, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let dir = Path::new("/log");
    if which % 2 == 1 {
        let _ = quarantine::parse_file(&dir.join("QUARANTINE"), bytes);
        return;
    }
    let fs = FaultyFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let opts = |read_only| AuditOptions {
        log: Options::default()
            .segment_bytes(64 << 10)
            .record_bytes_max(4 << 10)
            .compaction(Compaction::Manual)
            .read_only(read_only)
            .vfs(vfs.clone()),
        ..AuditOptions::default()
    };
    // A small log with names of its own, then its CATALOG replaced.
    {
        let log = AuditLog::open(dir, opts(false)).unwrap();
        let mut e = Event::new(Timestamp(1), "SOME_TYPE", Severity::Info);
        e.attrs.insert("key".into(), "v".into());
        log.append(&e).unwrap();
    }
    fs.put_file(&dir.join("CATALOG"), bytes);
    let _ = Registry::load(&vfs, dir);
    for read_only in [true, false] {
        if let Ok(log) = AuditLog::open(dir, opts(read_only)) {
            for r in log.query(&Filter::default(), false) {
                // The one event keeps its names, or is an error: never renamed.
                if let Ok((_, e)) = r {
                    assert_eq!(e.event_type, "SOME_TYPE");
                    assert!(e.attrs.keys().all(|k| k == "key"));
                }
            }
            let _ = log.verify_catalog();
        }
    }
});
