//! Damage on disk: a flipped bit, a zeroed page, a truncation, in a sealed
//! segment and in the tail. `Strict` must say where; `Repair` must keep every
//! undamaged record and never return a damaged one.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use auditlog::format::frame::FRAME_HEADER_LEN;
use auditlog::format::segment::{DATA_START, FOOTER_LEN, MARK_LEN};
use auditlog::{Error, Log, Lsn, Options, Problem, RecoveryMode, SegmentId};
use common::{all, payload, segment_files};

const SEG: u64 = 8192;
const LEN: usize = 100;
const FRAME: u64 = (FRAME_HEADER_LEN + LEN) as u64;

fn opts() -> Options {
    Options::default()
        .compaction(auditlog::Compaction::Manual)
        .segment_bytes(SEG)
        .record_bytes_max(1000)
}

/// A log of `n` records of `LEN` bytes (so every frame is `FRAME` bytes).
fn make_log(dir: &Path, n: u64) {
    let log = Log::open(dir, opts()).unwrap();
    let batch: Vec<Vec<u8>> = (1..=n).map(|i| payload(i, LEN)).collect();
    log.append_batch(&batch).unwrap();
}

fn per_segment() -> u64 {
    (SEG - DATA_START - (MARK_LEN + FOOTER_LEN) as u64) / FRAME
}

/// Offset in its segment of the frame holding `lsn`, and that segment's file.
fn place(dir: &Path, lsn: u64) -> (std::path::PathBuf, u64) {
    let k = per_segment();
    let seg = (lsn - 1) / k;
    (
        segment_files(dir)[seg as usize].clone(),
        DATA_START + ((lsn - 1) % k) * FRAME,
    )
}

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], offset).unwrap();
}

fn expect_all_but(log: &Log, n: u64, lost: &[u64]) {
    let got = all(log);
    let want: Vec<u64> = (1..=n).filter(|l| !lost.contains(l)).collect();
    assert_eq!(got.iter().map(|(l, _)| l.0).collect::<Vec<_>>(), want);
    for (l, p) in got {
        assert_eq!(p, payload(l.0, LEN), "record {l} altered");
    }
}

#[test]
fn flipped_bit_in_a_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let n = 4 * per_segment() + 10;
    make_log(dir.path(), n);
    let victim = per_segment() + 7; // in segment 2, sealed
    let (file, off) = place(dir.path(), victim);
    flip(&file, off + FRAME_HEADER_LEN as u64 + 33);

    // Opening trusts sealed footers by default; the damaged record is an
    // error where it is read, never a record, and verify finds it.
    let log = Log::open(dir.path(), opts()).unwrap();
    let err = log
        .iter(..)
        .find_map(|r| r.err())
        .expect("damage must surface");
    let c = err.corruption().expect("a corruption error");
    assert_eq!((c.segment, c.offset), (SegmentId(2), off));
    assert!(matches!(c.problem, Problem::FrameCrc { .. }), "{err}");
    // The reader counts what the damage holds, as recovery would: one record.
    assert_eq!(c.lsns_lost, Some((Lsn(victim), Lsn(victim))), "{err}");
    assert_eq!(c.end, off + FRAME, "{err}");
    assert!(log.read(Lsn(victim)).is_err());
    let report = log.verify().unwrap();
    assert_eq!(report.damage.len(), 1);
    assert_eq!(report.damage[0].lsns_lost, Some((Lsn(victim), Lsn(victim))));
    drop(log);

    // Strict with a full check refuses, naming the place.
    let err = Log::open(dir.path(), opts().check_sealed(true)).unwrap_err();
    let c = err.corruption().expect("a corruption error");
    assert_eq!(
        (c.segment, c.offset, c.end),
        (SegmentId(2), off, off + FRAME)
    );
    assert_eq!(c.lsns_lost, Some((Lsn(victim), Lsn(victim))));
    assert!(
        err.to_string().contains(&format!("record {victim} lost")),
        "{err}"
    );

    // Repair quarantines exactly that record and keeps the rest.
    let log = Log::open(
        dir.path(),
        opts().check_sealed(true).recovery(RecoveryMode::Repair),
    )
    .unwrap();
    assert_eq!(log.recovery_report().repaired.len(), 1);
    expect_all_but(&log, n, &[victim]);
    assert!(log.read(Lsn(victim)).unwrap().is_none());
    let back: Vec<u64> = log.iter_rev(..).map(|r| r.unwrap().lsn().0).collect();
    assert_eq!(back.len() as u64, n - 1);
    assert!(!back.contains(&victim));
    assert!(log.verify().unwrap().damage.is_empty());
    drop(log);
    let q = std::fs::read_to_string(dir.path().join("QUARANTINE")).unwrap();
    assert!(
        q.contains(&format!("segment=2 bytes={off}-{}", off + FRAME)),
        "{q}"
    );
    // A later strict open knows the quarantined range and skips it.
    let log = Log::open(dir.path(), opts().check_sealed(true)).unwrap();
    expect_all_but(&log, n, &[victim]);
    assert_eq!(log.append(b"more").unwrap(), Lsn(n + 1));
    assert_eq!(log.read(Lsn(n + 1)).unwrap().unwrap().payload(), b"more");
}

#[test]
fn zeroed_page_in_a_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3 * per_segment();
    make_log(dir.path(), n);
    let file = &segment_files(dir.path())[0];
    poke(file, 4096, &[0u8; 4096 - 64]); // the rest of the segment's data, up to the footer
    poke(file, 2048, &[0u8; 1024]);
    let first_lost = (2048 - DATA_START) / FRAME + 1;
    let err = Log::open(dir.path(), opts().check_sealed(true)).unwrap_err();
    let c = err.corruption().unwrap();
    assert_eq!(c.segment, SegmentId(1));
    assert_eq!(c.offset, DATA_START + (first_lost - 1) * FRAME);
    assert_eq!(c.lsns_lost.unwrap().0, Lsn(first_lost));
    let log = Log::open(
        dir.path(),
        opts().check_sealed(true).recovery(RecoveryMode::Repair),
    )
    .unwrap();
    let lost: Vec<u64> = log
        .recovery_report()
        .repaired
        .iter()
        .flat_map(|c| {
            let (a, b) = c.lsns_lost.unwrap();
            a.0..=b.0
        })
        .collect();
    // Records fully inside 2048..3072 and from 4096 to the end of the segment.
    assert!(lost.contains(&first_lost) && lost.contains(&per_segment()));
    assert!(!lost.iter().any(|&l| l > per_segment()));
    expect_all_but(&log, n, &lost);
}

#[test]
fn truncated_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3 * per_segment();
    make_log(dir.path(), n);
    let file = &segment_files(dir.path())[1];
    OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(SEG / 2)
        .unwrap();
    let err = Log::open(dir.path(), opts()).unwrap_err();
    let c = err.corruption().unwrap();
    assert_eq!(c.segment, SegmentId(2));
    assert!(
        matches!(c.problem, Problem::Truncated { len, expected } if len == SEG / 2 && expected == SEG),
        "{err}"
    );
    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Repair)).unwrap();
    let kept_in_seg2 = (SEG / 2 - DATA_START) / FRAME;
    let lost: Vec<u64> = (per_segment() + kept_in_seg2 + 1..=2 * per_segment()).collect();
    assert_eq!(
        log.recovery_report().repaired[0].lsns_lost,
        Some((Lsn(lost[0]), Lsn(*lost.last().unwrap())))
    );
    expect_all_but(&log, n, &lost);
}

#[test]
fn damage_in_the_tail_followed_by_valid_records_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let n = per_segment() + 20; // tail segment holds 20 records
    make_log(dir.path(), n);
    let victim = per_segment() + 5;
    let (file, off) = place(dir.path(), victim);
    flip(&file, off + 3); // the length field
    let err = Log::open(dir.path(), opts()).unwrap_err();
    let c = err.corruption().unwrap();
    assert_eq!(
        (c.segment, c.offset, c.lsns_lost),
        (SegmentId(2), off, Some((Lsn(victim), Lsn(victim))))
    );
    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Repair)).unwrap();
    expect_all_but(&log, n, &[victim]);
    // Appends continue after the kept records.
    assert_eq!(log.append(b"next").unwrap(), Lsn(n + 1));
}

#[test]
fn truncation_and_garbage_at_the_very_end_of_the_tail_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let n = per_segment() + 20;
    make_log(dir.path(), n);
    let (file, off) = place(dir.path(), n);
    // A crash before the last sync: its sync mark does not cover the last
    // record (here: no mark at all), and half of that record is on disk.
    poke(
        &file,
        SEG - (MARK_LEN + FOOTER_LEN) as u64,
        &[0u8; MARK_LEN],
    );
    poke(&file, off + FRAME / 2, &vec![0u8; FRAME as usize / 2]);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.recovery_report().torn_tail_bytes, FRAME / 2);
    expect_all_but(&log, n - 1, &[]);
}

#[test]
fn a_synced_last_record_that_fails_its_crc_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let n = per_segment() + 20;
    make_log(dir.path(), n); // closed: synced, and the sync mark says so
    let (file, off) = place(dir.path(), n);
    for damage in [&[0u8; 8][..], b"\xff"] {
        poke(&file, off + FRAME / 2, damage);
        let err = Log::open(dir.path(), opts()).unwrap_err();
        let c = err.corruption().expect("a corruption");
        assert_eq!((&c.path, c.offset), (&file, off), "{err}");
        assert_eq!(c.lsns_lost, Some((Lsn(n), Lsn(n))), "{err}");
        // Nothing was cleared: the bytes are still there for Repair to keep.
        let bytes = std::fs::read(&file).unwrap();
        assert_ne!(
            &bytes[off as usize..(off + FRAME) as usize],
            &[0u8; FRAME as usize][..]
        );
    }
    // Repair quarantines it, keeps the rest, and never gives LSN n again.
    let log = Log::open(dir.path(), opts().recovery(RecoveryMode::Repair)).unwrap();
    assert_eq!(log.recovery_report().repaired.len(), 1);
    expect_all_but(&log, n - 1, &[]);
    assert_eq!(log.append(b"next").unwrap(), Lsn(n + 1));
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.read(Lsn(n + 1)).unwrap().unwrap().payload(), b"next");
    assert!(log.read(Lsn(n)).unwrap().is_none());
}

#[test]
fn a_renamed_or_foreign_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), 3 * per_segment());
    let files = segment_files(dir.path());
    // Segment 2's header names segment 2: copy it over segment 3.
    std::fs::copy(&files[1], &files[2]).unwrap();
    let err = Log::open(dir.path(), opts()).unwrap_err();
    let c = err.corruption().unwrap();
    assert_eq!(c.segment, SegmentId(3));
    assert!(
        matches!(
            c.problem,
            Problem::Mismatch {
                field: "segment number in header",
                expected: 3,
                found: 2
            }
        ),
        "{err}"
    );
    // A missing segment in the middle.
    std::fs::remove_file(&files[1]).unwrap();
    let err = Log::open(dir.path(), opts()).unwrap_err();
    assert!(
        matches!(err.corruption().unwrap().problem, Problem::MissingSegment),
        "{err}"
    );
    // Garbage as a segment.
    std::fs::write(&files[1], vec![0xAB; SEG as usize]).unwrap();
    let err = Log::open(dir.path(), opts()).unwrap_err();
    assert!(
        matches!(err.corruption().unwrap().problem, Problem::BadMagic { .. }),
        "{err}"
    );
    assert!(matches!(err, Error::Corruption(_)));
}

#[test]
fn read_only_verify_finds_damage_in_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20; // all in the first (tail) segment
    make_log(dir.path(), n);
    let (file, off) = place(dir.path(), 5);
    flip(&file, off + 20);
    {
        // Beside a live writer (one holds the lock), reading stops at the gap:
        // an append may still be copying there...
        use auditlog::io::Vfs;
        let _writer = auditlog::io::RealFs
            .try_lock(dir.path(), "pid 1\n")
            .unwrap()
            .unwrap();
        let log = Log::open(dir.path(), opts().read_only(true)).unwrap();
        assert_eq!(all(&log).len(), 4);
        assert!(log.recovery_report().unreadable.is_empty());
        // ...but verify reports it, with the records lost.
        let report = log.verify().unwrap();
        assert_eq!(report.damage.len(), 1, "{report:?}");
        assert_eq!(report.damage[0].lsns_lost, Some((Lsn(5), Lsn(5))));
    }
    // With no writer, the gap is damage: the reader reads past it and says so.
    let log = Log::open(dir.path(), opts().read_only(true)).unwrap();
    assert_eq!(all(&log).len(), n as usize - 1);
    let unreadable = &log.recovery_report().unreadable;
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    assert_eq!(unreadable[0].lsns_lost, Some((Lsn(5), Lsn(5))));
    assert_eq!(unreadable[0].path, file);
    let report = log.verify().unwrap();
    assert_eq!(report.damage, *unreadable);
}
