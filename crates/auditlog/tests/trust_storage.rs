//! Issue 9, the storage layer: files edited by hand, copied from another
//! log, or reopened with other limits are found out, never misread.

mod common;

use std::path::Path;

use auditlog::format::segment::{Footer, FOOTER_LEN};
use auditlog::{Compaction, Durability, Error, Log, Lsn, Options, RecoveryMode};
use common::{all, payload, segment_files};

fn opts() -> Options {
    Options::default()
        .compaction(Compaction::Manual)
        .segment_bytes(64 << 10)
        .record_bytes_max(16 << 10)
        .durability(Durability::Buffered)
}

/// A log of `n` records over several segments; returns the segment files.
fn make(dir: &Path, n: u64, o: Options) -> Vec<std::path::PathBuf> {
    let log = Log::open(dir, o).unwrap();
    for i in 1..=n {
        log.append(&payload(i, 200 + (i as usize * 37) % 900))
            .unwrap();
    }
    drop(log);
    segment_files(dir)
}

#[test]
fn a_last_sealed_segment_whose_footer_claims_more_records_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let files = make(dir.path(), 300, opts());
    assert!(files.len() >= 3);
    // The writer sealed the second-to-last and crashed before the next one
    // held anything: drop the tail, so a sealed segment is last.
    std::fs::remove_file(files.last().unwrap()).unwrap();
    let last = &files[files.len() - 2];
    let mut bytes = std::fs::read(last).unwrap();
    let at = bytes.len() - FOOTER_LEN;
    let mut f = Footer::decode(&bytes).unwrap().unwrap();
    let before = Log::open(dir.path(), opts().read_only(true))
        .unwrap()
        .next_lsn();
    assert_eq!(before, Lsn(f.last_lsn.0 + 1));
    // A footer edited with its CRC fixed up: 500 records that are not there.
    f.last_lsn = Lsn(f.last_lsn.0 + 500);
    f.count += 500;
    bytes[at..].copy_from_slice(&f.encode());
    std::fs::write(last, &bytes).unwrap();
    match Log::open(dir.path(), opts()) {
        Err(Error::Corruption(c)) => assert_eq!(&c.path, last, "{c}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_log_reopened_with_a_smaller_record_limit_keeps_its_large_records() {
    let dir = tempfile::tempdir().unwrap();
    let big = opts().record_bytes_max(32 << 10).segment_bytes(256 << 10);
    let log = Log::open(dir.path(), big.clone()).unwrap();
    for i in 1..=5u64 {
        log.append(&payload(i, 100)).unwrap();
    }
    // The last record is larger than the limit the next open gives.
    let large = payload(6, 20 << 10);
    log.append(&large).unwrap();
    log.sync().unwrap();
    drop(log);
    let small = big.clone().record_bytes_max(4 << 10);
    let log = Log::open(dir.path(), small).unwrap();
    assert_eq!(log.recovery_report().torn_tail_bytes, 0);
    let got = all(&log);
    assert_eq!(got.len(), 6);
    assert_eq!(got[5].1, large);
    // Appends go on under the new limit; the large record stays readable.
    log.append(&payload(7, 100)).unwrap();
    assert!(matches!(
        log.append(&payload(8, 5 << 10)),
        Err(Error::RecordTooLarge { .. })
    ));
    drop(log);
    let log = Log::open(dir.path(), big).unwrap();
    assert_eq!(all(&log)[5].1, large);
    assert!(log.verify().unwrap().damage.is_empty());
}

#[test]
fn a_segment_copied_from_another_log_is_refused_naming_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two logs of the same records: their segments' numbers and LSNs fit each other.
    let files_a = make(a.path(), 300, opts());
    let files_b = make(b.path(), 300, opts());
    assert_eq!(files_a.len(), files_b.len());
    let victim = files_a[1].clone();
    let original = std::fs::read(&victim).unwrap();
    std::fs::copy(&files_b[1], &victim).unwrap();
    for o in [opts(), opts().read_only(true)] {
        match Log::open(a.path(), o) {
            Err(Error::Corruption(c)) => {
                assert_eq!(c.path, victim);
                assert!(c.to_string().contains("belongs to another log"), "{c}");
            }
            other => panic!("{other:?}"),
        }
    }
    std::fs::write(&victim, original).unwrap();

    // Compacted segments carry the log's identity too.
    for dir in [a.path(), b.path()] {
        Log::open(dir, opts()).unwrap().compact().unwrap();
    }
    let cseg = "00000000000000000001.cseg";
    std::fs::copy(b.path().join(cseg), a.path().join(cseg)).unwrap();
    match Log::open(a.path(), opts()) {
        Err(Error::Corruption(c)) => {
            assert_eq!(c.path, a.path().join(cseg));
            assert!(c.to_string().contains("belongs to another log"), "{c}");
        }
        other => panic!("{other:?}"),
    }
}

/// A writer of 20 records, a read-only reader opened beside it, and a
/// follower of the reader that has read the first 10.
fn follower_at_11(dir: &Path) -> (Log, Log, auditlog::Follower) {
    let writer = Log::open(dir, opts()).unwrap();
    for i in 1..=20u64 {
        writer.append(&payload(i, 300)).unwrap();
    }
    let reader = Log::open(dir, opts().read_only(true)).unwrap();
    let mut follower = reader.follow(Lsn(1));
    for i in 1..=10u64 {
        let r = follower
            .next_timeout(std::time::Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!((r.lsn(), r.payload()), (Lsn(i), &payload(i, 300)[..]));
    }
    (writer, reader, follower)
}

/// Records 21..=900 (several segments more), synced, and every sealed
/// segment compacted.
fn write_on_and_compact(writer: &Log) -> auditlog::CompactReport {
    for i in 21..=900u64 {
        writer.append(&payload(i, 300)).unwrap();
    }
    writer.sync().unwrap();
    writer.compact().unwrap()
}

/// A read-only follower that was not looking (SIGSTOP, a slow consumer)
/// while the writer went on and compacted what it had not read yet picks up
/// where it was, with nothing lost or repeated.
#[test]
fn a_follower_survives_compaction_of_what_it_has_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _reader, mut follower) = follower_at_11(dir.path());
    let timeout = std::time::Duration::from_secs(5);
    // Meanwhile: several segments more, and all but the tail compacted.
    let report = write_on_and_compact(&writer);
    assert!(report.segments >= 3, "{report:?}");
    assert!(!dir.path().join("00000000000000000001.seg").exists());
    for i in 11..=900u64 {
        let r = follower
            .next_timeout(timeout)
            .unwrap()
            .unwrap_or_else(|| panic!("the follower hung before LSN {i}"));
        assert_eq!((r.lsn(), r.payload()), (Lsn(i), &payload(i, 300)[..]));
    }
    // Compacted again after the follower caught up, beyond what it saw.
    writer.append(&payload(901, 300)).unwrap();
    let r = follower.next_timeout(timeout).unwrap().unwrap();
    assert_eq!(r.lsn(), Lsn(901));
}

/// An idle writer on a full disk does not spin on compaction: each failed
/// background pass doubles the wait before the next, and a pass that
/// succeeds brings it back.
#[test]
fn background_compaction_backs_off_while_it_fails() {
    use auditlog::testing::FaultyFs;
    use std::time::{Duration, Instant};
    let fs = FaultyFs::new();
    let every = Duration::from_millis(5);
    let o = opts().vfs(std::sync::Arc::new(fs.clone()));
    let log = Log::open("/log", o.clone()).unwrap();
    for i in 1..=600u64 {
        log.append(&payload(i, 300)).unwrap();
    }
    assert!(log.raw_segments().len() >= 3);
    drop(log);
    fs.set_space_limit(Some(0)); // nothing new fits: compaction fails
    let log = Log::open("/log", o.compaction(Compaction::Background(every))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while log.background_retry_in().is_none_or(|w| w < every * 16) {
        assert!(Instant::now() < deadline, "no back-off: {seen:?}");
        if let Some(w) = log.background_retry_in() {
            if seen.last() != Some(&w) {
                seen.push(w);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(log.background_error().unwrap().contains("no space left"));
    // Each wait is double the one before.
    assert!(seen.windows(2).all(|w| w[1] == w[0] * 2), "{seen:?}");
    fs.set_space_limit(None);
    while log.background_error().is_some() || log.background_retry_in().is_some() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "never recovered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!log.compacted_segments().is_empty());
}

#[test]
fn a_deleted_or_replaced_lock_file_lets_no_second_writer_in() {
    let dir = tempfile::tempdir().unwrap();
    let first = Log::open(dir.path(), opts()).unwrap();
    first.append(b"one").unwrap();
    let lock = dir.path().join("LOCK");
    std::fs::remove_file(&lock).unwrap();
    match Log::open(dir.path(), opts()) {
        Err(Error::Locked { .. }) => {}
        other => panic!("a second writer opened: {other:?}"),
    }
    std::fs::write(&lock, b"pid 1\n").unwrap();
    assert!(matches!(
        Log::open(dir.path(), opts()),
        Err(Error::Locked { .. })
    ));
    first.append(b"two").unwrap();
    drop(first);
    // Once the writer is gone, the next one opens.
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&log).len(), 2);
}

#[test]
fn no_file_of_a_log_is_opened_through_a_symbolic_link() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    make(dir.path(), 10, opts());
    let files = segment_files(dir.path());
    for name in ["LOCK", "CATALOG", "QUARANTINE", "00000000000000000009.seg"] {
        let link = dir.path().join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for o in [opts(), opts().read_only(true)] {
            match Log::open(dir.path(), o) {
                Err(e) => {
                    // The OS's reason is the error's source, said once.
                    let why = std::error::Error::source(&e).map(|c| c.to_string());
                    assert!(
                        why.as_deref().is_some_and(|w| w.contains("symbolic link")),
                        "{name}: {e}: {why:?}"
                    );
                    assert!(!e.to_string().contains("symbolic link"), "{e}");
                }
                Ok(_) => panic!("{name}: opened through a link"),
            }
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me", "{name}");
        std::fs::remove_file(&link).unwrap();
    }
    // A segment replaced by a link is refused too.
    let seg = &files[0];
    let saved = std::fs::read(seg).unwrap();
    std::fs::remove_file(seg).unwrap();
    std::os::unix::fs::symlink(&target, seg).unwrap();
    assert!(Log::open(dir.path(), opts()).is_err());
    std::fs::remove_file(seg).unwrap();
    std::fs::write(seg, saved).unwrap();
    assert_eq!(all(&Log::open(dir.path(), opts()).unwrap()).len(), 10);
}

#[test]
fn a_damaged_footer_is_blamed_on_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let files = make(dir.path(), 300, opts());
    assert!(files.len() >= 3);
    let second = &files[1];
    let original = std::fs::read(second).unwrap();
    for k in 0..FOOTER_LEN {
        let mut bytes = original.clone();
        let at = bytes.len() - FOOTER_LEN + k;
        bytes[at] ^= 0x08;
        std::fs::write(second, &bytes).unwrap();
        footer_damage_names(dir.path(), second);
    }
}

fn footer_damage_names(dir: &Path, second: &Path) {
    for o in [opts(), opts().check_sealed(true), opts().read_only(true)] {
        match Log::open(dir, o) {
            Err(Error::Corruption(c)) => assert_eq!(c.path, second, "{c}"),
            Ok(log) => {
                let report = log.verify().unwrap();
                assert!(!report.damage.is_empty(), "{report:?}");
                assert!(report.damage.iter().all(|d| d.path == second), "{report:?}");
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A batch larger than a segment that meets a full disk part way: the error
/// says exactly which of its records are in, and those are in.
#[test]
fn a_batch_cut_by_a_full_disk_says_exactly_which_records_are_in() {
    use auditlog::testing::FaultyFs;
    let fs = FaultyFs::new();
    let o = opts().vfs(std::sync::Arc::new(fs.clone()));
    let log = Log::open("/log", o.clone()).unwrap();
    log.append(&payload(1, 100)).unwrap();
    // Room for the open segment and one more, not a third.
    let used: u64 = ["/log/00000000000000000001.seg", "/log/LOCK"]
        .iter()
        .map(|p| fs.contents(Path::new(p)).map_or(0, |c| c.len() as u64))
        .sum();
    fs.set_space_limit(Some(used + (64 << 10) + 100));
    let batch: Vec<Vec<u8>> = (2..=400u64).map(|i| payload(i, 400)).collect();
    match log.append_batch(&batch) {
        Err(Error::BatchCut {
            first,
            next,
            source,
        }) => {
            assert_eq!(first, Lsn(2));
            assert!(next > first && next.0 < 401, "{first}..{next}");
            assert!(matches!(*source, Error::StorageFull { .. }), "{source}");
            assert_eq!(log.next_lsn(), next);
            let got = all(&log);
            assert_eq!(got.len() as u64, next.0 - 1);
            for (lsn, p) in &got[1..] {
                assert_eq!(p, &batch[(lsn.0 - 2) as usize]);
            }
            // The rest goes in once there is room, after them.
            fs.set_space_limit(None);
            let rest = &batch[(next.0 - 2) as usize..];
            assert_eq!(log.append_batch(rest).unwrap().start, next);
        }
        other => panic!("{other:?}"),
    }
    log.sync().unwrap();
    drop(log);
    let log = Log::open("/log", o).unwrap();
    assert_eq!(all(&log).len(), 400);
}

/// Records removed (retention) before a follower read them: it goes on with
/// the first that is left, and says which it passed over.
#[test]
fn a_follower_survives_retention_of_what_it_has_not_read_and_says_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _reader, mut follower) = follower_at_11(dir.path());
    let timeout = std::time::Duration::from_secs(5);
    // Segments the reader never saw: written, compacted, and removed.
    write_on_and_compact(&writer);
    let gone = writer.compacted_segments()[..2].to_vec();
    for c in &gone {
        writer.remove_oldest_compacted(c.segment).unwrap();
    }
    // The rest of the segment it is reading stays readable to it (it holds
    // the map); the next, removed meanwhile, is passed over and said so.
    let mut got = Vec::new();
    while got.last().is_none_or(|l: &Lsn| *l < gone[1].next_lsn) {
        let r = follower
            .next_timeout(timeout)
            .unwrap()
            .expect("the follower hung");
        got.push(r.lsn());
    }
    assert_eq!(got.first(), Some(&Lsn(11)));
    assert!(!got
        .iter()
        .any(|l| (gone[1].first_lsn..gone[1].next_lsn).contains(l)));
    assert_eq!(
        follower.missed(),
        [(gone[1].first_lsn, Lsn(gone[1].next_lsn.0 - 1))]
    );
}

/// A QUARANTINE line cut short (a full disk, a crash while appending) blocks
/// no open mode, and the next repair writes the file anew without it.
#[test]
fn a_quarantine_line_cut_short_blocks_no_open() {
    let dir = tempfile::tempdir().unwrap();
    let files = make(dir.path(), 300, opts());
    // Damage a sealed segment and repair it: QUARANTINE gets a line.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[500] ^= 0x40;
    std::fs::write(&files[0], &bytes).unwrap();
    drop(
        Log::open(
            dir.path(),
            opts().recovery(RecoveryMode::Repair).check_sealed(true),
        )
        .unwrap(),
    );
    let q = dir.path().join("QUARANTINE");
    let good = std::fs::read(&q).unwrap();
    let mut cut = good.clone();
    cut.extend_from_slice(b"0badc0de skip segment=2 bytes=1");
    std::fs::write(&q, &cut).unwrap();
    for o in [
        opts(),
        opts().read_only(true),
        opts().recovery(RecoveryMode::Repair),
    ] {
        let log = Log::open(dir.path(), o).unwrap();
        assert!(log.verify().unwrap().damage.is_empty());
    }
    // More damage, repaired: the file is whole again, the cut line gone.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    bytes[700] ^= 0x40;
    std::fs::write(&files[1], &bytes).unwrap();
    drop(
        Log::open(
            dir.path(),
            opts().recovery(RecoveryMode::Repair).check_sealed(true),
        )
        .unwrap(),
    );
    let text = std::fs::read_to_string(&q).unwrap();
    assert!(
        text.starts_with(std::str::from_utf8(&good).unwrap()),
        "{text}"
    );
    assert!(
        text.ends_with('\n') && !text.contains("bytes=1\n") && text.lines().count() == 2,
        "{text}"
    );
    let log = Log::open(dir.path(), opts().check_sealed(true)).unwrap();
    assert!(log.verify().unwrap().damage.is_empty());
}
