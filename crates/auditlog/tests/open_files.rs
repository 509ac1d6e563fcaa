//! A log holds no file descriptor per segment: a long-lived log has thousands
//! of segment files, far more than a process may open (`ulimit -n` is 1024 on
//! many systems). Found when a test's writer outran its queries on a slow
//! host: "starting segment 19993 failed: sync directory …: Too many open
//! files", and the log was poisoned.
//!
//! One test in its own binary: it lowers this process's limit of open files.

mod common;

use auditlog::{Compaction, Durability, Log, Options};
use common::{all, payload};

/// Lowers the soft limit of open files to `n`.
fn limit_open_files(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both point to live `rlimit`s for the duration of the calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let lim = libc::rlimit {
            rlim_max: old.rlim_max,
            ..lim
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// Open descriptors of this process now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_log_of_many_more_segments_than_open_files_allowed_writes_compacts_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::default()
            .segment_bytes(64 << 10)
            .record_bytes_max(4096)
            .durability(Durability::Buffered)
            .compaction(Compaction::Manual)
            .compact_stripe_records(300)
    };
    let before = open_fds();
    // Room for the test harness, the log's own few files and its workers,
    // not for one descriptor per segment.
    limit_open_files(before as u64 + 48);
    let mut want = Vec::new();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut append = |log: &Log, n: usize| {
        for _ in 0..n {
            let p = payload(want.len() as u64, 2000 + want.len() * 7 % 2000);
            let lsn = log.append(&p).unwrap();
            want.push((lsn, p));
        }
    };
    // About 300 raw segments, compacted, then 300 more left raw.
    append(&log, 7_000);
    let raw = common::segment_files(dir.path()).len();
    assert!(raw > 200, "only {raw} segments");
    log.compact().unwrap();
    assert!(log.compacted_segments().len() > 200);
    append(&log, 7_000);
    assert!(
        open_fds() < before + 40,
        "{} descriptors open for {} segments",
        open_fds(),
        common::segment_files(dir.path()).len() + log.compacted_segments().len()
    );
    assert_eq!(all(&log), want);
    drop(log);

    // Reopened: every segment mapped again, none held open.
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&log), want);
    log.compact().unwrap();
    assert_eq!(all(&log), want);
    assert!(open_fds() < before + 40, "{} descriptors open", open_fds());
    let v = log.verify().unwrap();
    assert!(v.damage.is_empty(), "{:?}", v.damage);
    assert_eq!(v.records, want.len() as u64);
}
