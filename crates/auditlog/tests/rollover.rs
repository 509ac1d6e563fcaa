//! Rollover off the append path: the spare segment the background worker
//! prepares, the rollover's pending half (seal, rename), and what an open
//! makes of every state a crash can leave between them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditlog::{Durability, Log, Lsn, Options, RecoveryMode};
use common::{all, payload};

/// Segments of 64 KiB from the first on, so every spare has the size the
/// next segment needs.
fn opts() -> Options {
    Options::default()
        .segment_bytes(64 << 10)
        .record_bytes_max(4096)
        .durability(Durability::Buffered)
        .compaction(auditlog::Compaction::Manual)
}

fn seg(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn tmp(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg.tmp"))
}

/// Waits (up to 20 s) until the worker has a spare ready.
fn wait_for_spare(log: &Log) {
    let start = Instant::now();
    while log.rollover_stats().spare_bytes == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no spare after 20 s: {:?}",
            log.rollover_stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Appends 300-byte records until the log has `segments` raw segments and
/// `extra` records in the last; returns what was written.
fn fill_to(log: &Log, written: &mut Vec<Vec<u8>>, segments: usize, extra: usize) {
    while log.segment_count() < segments {
        let p = payload(written.len() as u64 + 1, 300);
        log.append(&p).unwrap();
        written.push(p);
    }
    for _ in 0..extra {
        let p = payload(written.len() as u64 + 1, 300);
        log.append(&p).unwrap();
        written.push(p);
    }
}

/// A log in `dir` of two segments, `extra` records in the second, closed,
/// and without the spare its writer may have left (segment 3's); returns
/// what was written.
fn closed_log_of_two_segments(dir: &Path, extra: usize) -> Vec<Vec<u8>> {
    let mut written = Vec::new();
    let log = Log::open(dir, opts()).unwrap();
    fill_to(&log, &mut written, 2, extra);
    drop(log);
    let _ = std::fs::remove_file(tmp(dir, 3));
    written
}

/// [`opts`] on the fault-injecting file system.
fn faulty_opts(fs: &auditlog::testing::FaultyFs) -> Options {
    common::faulty(fs)
        .segment_bytes(64 << 10)
        .record_bytes_max(4096)
        .durability(Durability::Buffered)
}

fn assert_dense(log: &Log, written: &[Vec<u8>]) {
    let got = all(log);
    assert_eq!(got.len(), written.len(), "records after reopen");
    for (i, (lsn, p)) in got.iter().enumerate() {
        assert_eq!(*lsn, Lsn(i as u64 + 1));
        assert_eq!(p, &written[i], "record {lsn}");
    }
}

/// The footer's `data_end` (bytes 40..48 of the last 64).
fn footer_data_end(bytes: &[u8]) -> u64 {
    let f = &bytes[bytes.len() - 64..];
    u64::from_le_bytes(f[40..48].try_into().unwrap())
}

/// Puts segment 2 back where a rollover leaves it before its pending half
/// is done: segment 1 without its footer, segment 2 under its `.seg.tmp` name.
fn undo_finish(dir: &Path) -> u64 {
    let p = seg(dir, 1);
    let mut bytes = std::fs::read(&p).unwrap();
    let data_end = footer_data_end(&bytes);
    let n = bytes.len();
    bytes[n - 64..].fill(0);
    std::fs::write(&p, &bytes).unwrap();
    std::fs::rename(seg(dir, 2), tmp(dir, 2)).unwrap();
    data_end
}

#[test]
fn a_rollover_cut_in_two_by_a_process_crash_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = closed_log_of_two_segments(dir.path(), 20);
    undo_finish(dir.path());

    // A reader sees every record, and changes nothing.
    {
        let ro = Log::open(dir.path(), opts().read_only(true)).unwrap();
        assert_dense(&ro, &written);
        assert!(ro.recovery_report().unreadable.is_empty());
        assert!(ro.verify().unwrap().damage.is_empty());
    }
    assert!(tmp(dir.path(), 2).exists());

    // A writer (Strict) finishes the rollover: nothing is damage, nothing lost.
    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Strict)).unwrap();
    let report = log.recovery_report().clone();
    assert!(report.repaired.is_empty(), "{report:?}");
    assert_eq!(report.removed_incomplete_segment, None);
    assert_dense(&log, &written);
    // The background thread finishes it (an open does not wait for a seal).
    let start = Instant::now();
    while !seg(dir.path(), 2).exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    log.sync().unwrap();
    assert!(!tmp(dir.path(), 2).exists());
    let one = std::fs::read(seg(dir.path(), 1)).unwrap();
    assert!(footer_data_end(&one) > 64, "segment 1 sealed again");
    assert_eq!(log.durable_lsn(), log.next_lsn());
    assert!(log.verify().unwrap().damage.is_empty());
    fill_to(&log, &mut written, 3, 5);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_dense(&log, &written);
}

#[test]
fn a_started_segment_after_a_compacted_one_is_kept() {
    // Found by the SIGKILL test: between the old segment's seal and the new
    // one's rename, the compactor may take the old one; a kill then leaves
    // no raw segment at all, and the `.seg.tmp` after the compacted one
    // holds acknowledged (buffered) records.
    let dir = tempfile::tempdir().unwrap();
    let mut written = closed_log_of_two_segments(dir.path(), 20);
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        assert_eq!(log.compact().unwrap().segments, 1);
    }
    let _ = std::fs::remove_file(tmp(dir.path(), 3));
    assert!(!seg(dir.path(), 1).exists());
    std::fs::rename(seg(dir.path(), 2), tmp(dir.path(), 2)).unwrap();

    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Strict)).unwrap();
    log.hold_rollover_worker(true); // (it may have finished already: then the sync has nothing to do)
    assert_eq!(log.recovery_report().removed_incomplete_segment, None);
    assert_dense(&log, &written);
    log.sync().unwrap();
    assert!(seg(dir.path(), 2).exists() && !tmp(dir.path(), 2).exists());
    fill_to(&log, &mut written, 3, 5);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_dense(&log, &written);
}

#[test]
fn a_started_segment_after_a_torn_one_is_removed_at_open() {
    // Power loss: the old segment lost its last records (never synced), so
    // the new one cannot continue it; none of its records was durable.
    let dir = tempfile::tempdir().unwrap();
    let mut written = closed_log_of_two_segments(dir.path(), 20);
    let data_end = undo_finish(dir.path());
    // Tear the old segment's last 500 bytes of records.
    let p = seg(dir.path(), 1);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[data_end as usize - 500..data_end as usize].fill(0);
    std::fs::write(&p, &bytes).unwrap();

    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Strict)).unwrap();
    let report = log.recovery_report().clone();
    assert!(report.repaired.is_empty(), "{report:?}");
    assert!(report.torn_tail_bytes > 0, "{report:?}");
    assert_eq!(
        report.removed_incomplete_segment.as_deref(),
        Some(tmp(dir.path(), 2).as_path())
    );
    assert!(!tmp(dir.path(), 2).exists());
    let got = all(&log);
    assert!(got.len() < written.len());
    written.truncate(got.len());
    assert_dense(&log, &written);
    // The log goes on from where it ends, through new rollovers.
    fill_to(&log, &mut written, 3, 5);
    assert_dense(&log, &written);
    assert!(log.verify().unwrap().damage.is_empty());
}

#[test]
fn a_tmp_file_that_does_not_continue_the_log_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let written = closed_log_of_two_segments(dir.path(), 3);
    // Segment 2's bytes as a would-be segment 3: its header says segment 2.
    std::fs::copy(seg(dir.path(), 2), tmp(dir.path(), 3)).unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(
        log.recovery_report().removed_incomplete_segment.as_deref(),
        Some(tmp(dir.path(), 3).as_path())
    );
    assert_dense(&log, &written);
}

#[test]
fn a_spare_left_by_a_closed_writer_is_used_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        // Past half of the first segment: the writer asks for a spare.
        fill_to(&log, &mut written, 1, 150);
        wait_for_spare(&log);
    }
    let spare = tmp(dir.path(), 2);
    let bytes = std::fs::read(&spare).unwrap();
    assert_eq!(bytes.len(), 64 << 10);
    assert!(bytes.iter().all(|&b| b == 0), "a spare has no header yet");

    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.recovery_report().removed_incomplete_segment, None);
    assert_eq!(log.rollover_stats().spare_bytes, 64 << 10);
    fill_to(&log, &mut written, 2, 1);
    let stats = log.rollover_stats();
    assert_eq!((stats.from_spare, stats.created), (1, 0), "{stats:?}");
    log.sync().unwrap();
    assert!(seg(dir.path(), 2).exists() && !spare.exists());
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_dense(&log, &written);
}

#[test]
fn a_log_of_a_few_records_gets_no_spare() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    for i in 0..20 {
        log.append(&payload(i, 300)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(log.rollover_stats().spare_bytes, 0);
    drop(log);
    assert!(!tmp(dir.path(), 2).exists());
}

/// A segment sealed on request (what `auditlog compact` does before it
/// exits) is not full: the new tail asks for a spare only once half full,
/// like a fresh log's, so a log sealed and left keeps no spare beside it.
#[test]
fn a_seal_on_request_asks_for_no_spare_until_the_new_tail_is_half_full() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut written = Vec::new();
    fill_to(&log, &mut written, 1, 150);
    wait_for_spare(&log);
    log.seal().unwrap();
    assert_eq!(log.rollover_stats().from_spare, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(log.rollover_stats().spare_bytes, 0);
    assert!(!tmp(dir.path(), 3).exists());
    // Half a tail later it asks, as before.
    fill_to(&log, &mut written, 2, 150);
    wait_for_spare(&log);
    assert_dense(&log, &written);
    drop(log);
    assert!(tmp(dir.path(), 3).exists());
}

/// Issue 14: when the spare is ready, a rollover makes the writer wait for
/// nothing: no segment created under the writer lock, no wait for the
/// worker. Counted by the log, not timed.
#[test]
fn a_rollover_with_its_spare_ready_never_waits() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut written = Vec::new();
    fill_to(&log, &mut written, 1, 150);
    for n in 2..=21 {
        wait_for_spare(&log);
        let before = log.rollover_stats();
        fill_to(&log, &mut written, n, 0);
        let after = log.rollover_stats();
        assert_eq!(after.rollovers, before.rollovers + 1);
        assert_eq!(after.from_spare, before.from_spare + 1, "{after:?}");
        assert_eq!(after.created, 0, "{after:?}");
        assert_eq!(after.waited, 0, "{after:?}");
    }
    assert_dense(&log, &written);
    // Everything the rollovers left pending is done by a sync.
    log.sync().unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Strict)).unwrap();
    assert!(log.recovery_report().repaired.is_empty());
    assert_dense(&log, &written);
}

#[test]
fn sync_appends_across_rollovers_are_durable_and_sealed() {
    // A record in a new segment is durable only once the old one is sealed
    // and the new one named: a `Sync` append right after a rollover must
    // have done both.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    log.hold_rollover_worker(true);
    let mut written = Vec::new();
    fill_to(&log, &mut written, 1, 150);
    wait_for_spare(&log);
    fill_to(&log, &mut written, 2, 0);
    // The rollover's second half is still to do.
    assert!(tmp(dir.path(), 2).exists() && !seg(dir.path(), 2).exists());
    assert!(log.durable_lsn() < log.next_lsn());
    let p = payload(written.len() as u64 + 1, 300);
    log.append_with(&p, Durability::Sync).unwrap();
    written.push(p);
    assert!(seg(dir.path(), 2).exists() && !tmp(dir.path(), 2).exists());
    let one = std::fs::read(seg(dir.path(), 1)).unwrap();
    assert!(footer_data_end(&one) > 64, "segment 1 sealed");
    assert_eq!(log.durable_lsn(), log.next_lsn());
}

#[test]
fn power_loss_between_the_halves_of_a_rollover_loses_nothing_synced() {
    use auditlog::testing::{FaultyFs, SplitMix64};
    for seed in 0..200u64 {
        let fs = FaultyFs::new();
        let o = faulty_opts(&fs);
        let log = Log::open(common::fdir(), o.clone()).unwrap();
        log.hold_rollover_worker(true);
        let mut rng = SplitMix64(seed);
        let mut written = Vec::new();
        let mut acked = 0;
        // Synced records in the first segment, some maybe in the second.
        let mut asked = false;
        while log.segment_count() < 2 || !rng.next().is_multiple_of(8) {
            if written.len() == 150 && !asked {
                wait_for_spare(&log);
                asked = true;
            }
            let p = payload(written.len() as u64 + 1, 300);
            if rng.next().is_multiple_of(10) {
                acked = log.append_with(&p, Durability::Sync).unwrap().0;
            } else {
                log.append(&p).unwrap();
            }
            written.push(p);
        }
        assert_eq!(log.rollover_stats().from_spare, 1, "seed {seed}");
        fs.crash(rng.next());
        drop(log);
        // A handle of the rebooted file system: `o`'s is the old process's.
        let o = faulty_opts(&fs);
        let log = Log::open(common::fdir(), o.recovery(RecoveryMode::Strict))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
        let got = all(&log);
        assert!(
            got.len() as u64 >= acked,
            "seed {seed}: synced records lost"
        );
        for (i, (lsn, p)) in got.iter().enumerate() {
            assert_eq!(*lsn, Lsn(i as u64 + 1), "seed {seed}");
            assert_eq!(p, &written[i], "seed {seed}: record {lsn}");
        }
        assert!(log.recovery_report().repaired.is_empty(), "seed {seed}");
        assert!(log.verify().unwrap().damage.is_empty(), "seed {seed}");
    }
}

#[test]
fn a_failed_sync_in_either_half_of_a_rollover_leaves_a_log_that_opens_strict() {
    // The order on disk: the old segment sealed (durable) before the new one
    // is named. Failing each sync of the second half in turn, then losing
    // power, must never leave a named segment after an unsealed one.
    use auditlog::testing::FaultyFs;
    for k in 0..5u64 {
        for seed in 0..20u64 {
            let fs = FaultyFs::new();
            let o = faulty_opts(&fs);
            let log = Log::open(common::fdir(), o.clone()).unwrap();
            log.hold_rollover_worker(true);
            let mut written = Vec::new();
            fill_to(&log, &mut written, 1, 150);
            wait_for_spare(&log);
            let acked = log
                .append_with(&payload(0, 10), Durability::Sync)
                .unwrap()
                .0;
            written.push(payload(0, 10));
            fill_to(&log, &mut written, 2, 3);
            assert_eq!(log.rollover_stats().from_spare, 1);
            fs.fail_sync_after(k);
            let p = payload(1, 10);
            let synced = log.append_with(&p, Durability::Sync);
            written.push(p);
            fs.crash(seed);
            drop(log);
            let o = faulty_opts(&fs);
            let log = Log::open(common::fdir(), o.recovery(RecoveryMode::Strict))
                .unwrap_or_else(|e| panic!("k {k} seed {seed}: reopen failed: {e}"));
            let got = all(&log);
            let must = synced.map_or(acked, |l| l.0);
            assert!(
                got.len() as u64 >= must,
                "k {k} seed {seed}: synced records lost"
            );
            for (i, (lsn, p)) in got.iter().enumerate() {
                assert_eq!(*lsn, Lsn(i as u64 + 1), "k {k} seed {seed}");
                assert_eq!(p, &written[i], "k {k} seed {seed}: record {lsn}");
            }
        }
    }
}

#[test]
fn a_tail_truncated_below_its_header_opens_with_repair() {
    // Found by `damage_anywhere`: the writer's half-way mark for asking for
    // a spare was computed from a tail shorter than a header plus its end.
    let dir = tempfile::tempdir().unwrap();
    let mut written = closed_log_of_two_segments(dir.path(), 3);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg(dir.path(), 2))
        .unwrap();
    f.set_len(150).unwrap();
    drop(f);
    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Repair)).unwrap();
    assert!(!log.recovery_report().repaired.is_empty());
    let before = all(&log).len();
    fill_to(&log, &mut written, 4, 0);
    assert!(all(&log).len() > before);
}

/// Bytes of `path` backed by disk blocks.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// A spare larger than what the worker faults in first takes only that
/// much disk while the writer is in the first three quarters of the tail;
/// past them the worker allocates the rest, so the rollover starts a
/// segment whose every byte is backed (no write through the map can meet a
/// hole on a full disk).
#[test]
fn a_spare_takes_its_disk_only_when_the_tail_is_nearly_full() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options::default()
        .segment_bytes(32 << 20)
        .record_bytes_max(8192)
        .durability(Durability::Buffered)
        .compaction(auditlog::Compaction::Manual);
    let log = Log::open(dir.path(), o).unwrap();
    let record = |i: u64| payload(i, 8000);
    let mut i = 0;
    // Segments double from 64 KiB: on to the first 32 MiB one.
    while log.raw_segments().last().unwrap().2 < 32 << 20 {
        i += 1;
        log.append(&record(i)).unwrap();
    }
    let tail = |log: &Log| *log.raw_segments().last().unwrap();
    let (id, _, cap, _) = tail(&log);
    // Past half: the worker makes the spare, its first 1 MiB allocated.
    while tail(&log).3 < cap * 6 / 10 {
        i += 1;
        log.append(&record(i)).unwrap();
    }
    wait_for_spare(&log);
    let spare = tmp(dir.path(), id.0 + 1);
    assert_eq!(std::fs::metadata(&spare).unwrap().len(), 32 << 20);
    let before = allocated(&spare);
    assert!(
        before <= 2 << 20,
        "a spare waiting holds {before} bytes of disk"
    );
    // Past three quarters: the worker allocates the rest.
    while tail(&log).3 < cap * 85 / 100 {
        i += 1;
        log.append(&record(i)).unwrap();
    }
    let start = Instant::now();
    while allocated(&spare) < 32 << 20 {
        assert!(start.elapsed() < Duration::from_secs(20), "never allocated");
        std::thread::sleep(Duration::from_millis(2));
    }
    let stats = log.rollover_stats();
    while tail(&log).0 == id {
        i += 1;
        log.append(&record(i)).unwrap();
    }
    let after = log.rollover_stats();
    assert_eq!(after.from_spare, stats.from_spare + 1, "{after:?}");
    assert_eq!(after.waited, stats.waited, "{after:?}");
    log.sync().unwrap();
    assert!(allocated(&seg(dir.path(), id.0 + 1)) >= 32 << 20);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.next_lsn(), Lsn(i + 1));
}
