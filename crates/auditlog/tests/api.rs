//! The edges of the public API: locking, foreign files, limits, read-only
//! readers beside a writer, and followers.

mod common;

use std::time::Duration;

use auditlog::{Durability, Error, Log, Lsn, Options};
use common::{all, payload};

#[test]
fn a_second_writer_is_told_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let _log = Log::open(
        dir.path(),
        Options::default().compaction(auditlog::Compaction::Manual),
    )
    .unwrap();
    let err = Log::open(
        dir.path(),
        Options::default().compaction(auditlog::Compaction::Manual),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Locked { pid: Some(p), .. } if p == std::process::id()),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("locked by pid {}", std::process::id())),
        "{err}"
    );
}

#[test]
fn a_directory_holding_something_else_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hi").unwrap();
    let err = Log::open(
        dir.path(),
        Options::default().compaction(auditlog::Compaction::Manual),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::ForeignFile { path, .. } if path.ends_with("notes.txt")),
        "{err}"
    );
    assert!(err.to_string().contains("notes.txt"));
}

#[test]
fn new_directories_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/log");
    let log = Log::open(
        &path,
        Options::default()
            .compaction(auditlog::Compaction::Manual)
            .segment_bytes(1 << 20)
            .record_bytes_max(4096),
    )
    .unwrap();
    log.append(b"x").unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    for e in std::fs::read_dir(&path).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }
}

#[test]
fn oversized_records_and_bad_options_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        Options::default()
            .compaction(auditlog::Compaction::Manual)
            .record_bytes_max(100)
            .segment_bytes(1 << 16),
    )
    .unwrap();
    let err = log.append(&[0u8; 101]).unwrap_err();
    assert!(
        matches!(err, Error::RecordTooLarge { len: 101, max: 100 }),
        "{err}"
    );
    assert_eq!(log.append(&[0u8; 100]).unwrap(), Lsn(1));
    let err = log
        .append_batch(&[vec![0u8; 10], vec![0u8; 500]])
        .unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { len: 500, .. }));
    assert_eq!(log.next_lsn(), Lsn(2), "a rejected batch appends nothing");
    drop(log);
    let err = Log::open(
        dir.path(),
        Options::default()
            .compaction(auditlog::Compaction::Manual)
            .segment_bytes(1000),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
}

#[test]
fn read_only_open_of_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Log::open(
        dir.path().join("nope"),
        Options::default()
            .compaction(auditlog::Compaction::Manual)
            .read_only(true),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[test]
fn read_only_reader_beside_a_writer_follows_its_appends() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .compaction(auditlog::Compaction::Manual)
        .segment_bytes(16 << 10)
        .record_bytes_max(1024)
        .durability(Durability::Buffered);
    let writer = Log::open(dir.path(), opts.clone()).unwrap();
    for i in 1..=10 {
        writer.append(&payload(i, 100)).unwrap();
    }
    let reader = Log::open(dir.path(), opts.clone().read_only(true)).unwrap();
    assert_eq!(all(&reader).len(), 10);
    assert!(matches!(reader.append(b"x"), Err(Error::ReadOnly)));
    let mut follower = reader.follow(Lsn(11));
    assert!(follower
        .next_timeout(Duration::from_millis(30))
        .unwrap()
        .is_none());
    // Enough to roll over several segments while the reader watches.
    let t = std::thread::spawn(move || {
        for i in 11..=600 {
            writer.append(&payload(i, 100)).unwrap();
        }
        writer
    });
    for i in 11..=600u64 {
        let rec = follower
            .next_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("follower timed out");
        assert_eq!((rec.lsn(), rec.payload()), (Lsn(i), &payload(i, 100)[..]));
    }
    let writer = t.join().unwrap();
    assert!(writer.segment_count() > 3);
    assert_eq!(all(&reader).len(), 600);
}

#[test]
fn follower_in_the_writer_process_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(
        Log::open(
            dir.path(),
            Options::default()
                .compaction(auditlog::Compaction::Manual)
                .segment_bytes(1 << 20)
                .record_bytes_max(4096),
        )
        .unwrap(),
    );
    let mut f = log.follow(log.next_lsn());
    let l2 = log.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        l2.append_with(b"late", Durability::Buffered).unwrap()
    });
    let rec = f.next_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(
        (rec.lsn(), rec.payload()),
        (t.join().unwrap(), &b"late"[..])
    );
    assert!(f.next_timeout(Duration::from_millis(10)).unwrap().is_none());
}

#[test]
fn interval_durability_syncs_in_the_background() {
    let fs = auditlog::testing::FaultyFs::new();
    let log = Log::open(
        common::fdir(),
        common::faulty(&fs)
            .segment_bytes(1 << 16)
            .record_bytes_max(1024)
            .durability(Durability::Interval(Duration::from_millis(10))),
    )
    .unwrap();
    let lsn = log.append(b"soon durable").unwrap();
    let start = std::time::Instant::now();
    while log.durable_lsn() <= lsn {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flusher never synced"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Durable means it survives power loss.
    fs.crash(1);
    drop(log);
    let log = Log::open(common::fdir(), common::faulty(&fs)).unwrap();
    assert_eq!(log.read(lsn).unwrap().unwrap().payload(), b"soon durable");
}

#[test]
fn a_segment_whose_creation_was_interrupted_is_removed() {
    // What a SIGKILL between creating and renaming the next segment leaves.
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .compaction(auditlog::Compaction::Manual)
        .segment_bytes(4096)
        .record_bytes_max(1024);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    log.append(&payload(1, 100)).unwrap();
    drop(log);
    let tmp = dir.path().join("00000000000000000002.seg.tmp");
    std::fs::write(&tmp, b"").unwrap();
    let log = Log::open(dir.path(), opts).unwrap();
    assert_eq!(
        log.recovery_report().removed_incomplete_segment.as_deref(),
        Some(tmp.as_path())
    );
    assert!(!tmp.exists());
    for i in 2..=100 {
        log.append(&payload(i, 100)).unwrap();
    }
    assert!(log.segment_count() > 2);
    assert_eq!(all(&log).len(), 100);
}
