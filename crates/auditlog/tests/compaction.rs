//! The compactor: the index gives what a scan gives; compaction beside
//! appends and queries; a crash at each step; damaged blocks and indexes;
//! retention and its markers.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use auditlog::format::compacted::{Header, Index, BLOCK_HEADER_LEN};
use auditlog::testing::{FaultyFs, SplitMix64};
use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Error, Event, Filter, Lsn, Options,
    RecoveryMode, Retention, Severity, Timestamp, RETENTION_APPLIED,
};
use proptest::prelude::*;

const TYPES: [&str; 8] = [
    "USER_LOGGED_IN",
    "USER_LOGGED_OUT",
    "USER_AUTH_FAILED_WRONG_PASSWORD",
    "USER_AUTH_FAILED_MFA",
    "FILE_ADDED",
    "PACKAGE_QUARANTINED",
    "CONFIG_UPDATED",
    "ADMIN_LOGGED_IN",
];
const T0: i64 = 1_790_000_000_000_000_000;

fn log_opts() -> Options {
    Options::default()
        .segment_bytes(32 << 10)
        .record_bytes_max(4 << 10)
        .durability(Durability::Buffered)
        .compaction(Compaction::Manual)
        .compact_block_bytes(2 << 10)
        .compact_stripe_records(150)
}

fn opts(log: Options) -> AuditOptions {
    AuditOptions {
        log,
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    }
}

/// `n` events, mostly in time order, with a few types much rarer than others.
fn events(n: usize, seed: u64) -> Vec<Event> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|i| {
            let r = rng.next();
            let ty = TYPES[(r % 100) as usize * TYPES.len() / 100 % TYPES.len()];
            let ty = if r.is_multiple_of(97) {
                "PACKAGE_QUARANTINED"
            } else {
                ty
            };
            let sev = Severity::ALL[(rng.next() % 6) as usize];
            let jitter = (rng.next() % 5_000_000_000) as i64;
            let mut e = Event::new(Timestamp(T0 + i as i64 * 1_000_000_000 + jitter), ty, sev);
            e.actor = Some(format!("user{}", rng.next() % 5));
            e.ip = Some(std::net::IpAddr::from([10, 0, 0, (rng.next() % 4) as u8]));
            e.result = Some((rng.next() % 3) as i64);
            if rng.next().is_multiple_of(4) {
                e.session = Some(format!("s{}", rng.next() % 50));
            }
            if ty == "CONFIG_UPDATED" {
                e.attrs
                    .insert("parameter".into(), format!("p{}", rng.next() % 9));
            }
            e
        })
        .collect()
}

fn query(log: &AuditLog, f: &Filter, reverse: bool) -> Vec<(Lsn, Event)> {
    log.query(f, reverse).map(|r| r.unwrap()).collect()
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    (
        prop::collection::vec(
            prop_oneof![
                Just("USER_AUTH_FAILED_*"),
                Just("PACKAGE_QUARANTINED"),
                Just("FILE_ADDED"),
                Just("ADMIN_LOGGED_IN"),
                Just("NO_SUCH_TYPE")
            ],
            0..3,
        ),
        prop::option::of(0usize..6),
        prop::option::of(0usize..6),
        prop::option::of((0i64..3000, 0i64..600)),
        prop::option::of(0u8..5),
        prop::option::of(0u8..4),
        any::<bool>(),
    )
        .prop_map(|(types, min, max, window, actor, ip, failed)| Filter {
            types: types.into_iter().map(String::from).collect(),
            min_severity: min.map(|i| Severity::ALL[i]),
            max_severity: max.map(|i| Severity::ALL[i]),
            since: window.map(|(a, _)| Timestamp(T0 + a * 1_000_000_000)),
            until: window.map(|(a, l)| Timestamp(T0 + (a + l) * 1_000_000_000)),
            actor: actor.map(|a| format!("user{a}")),
            ip: ip.map(|i| format!("10.0.0.{i}").parse().unwrap()),
            failed,
            ..Filter::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// For random filters, a log part compacted answers exactly what the
    /// same events never compacted answer, event for event, both directions.
    #[test]
    fn the_index_answers_what_a_scan_answers(
        seed in any::<u64>(),
        n in 200usize..3000,
        split in 0.0f64..1.0,
        filters in prop::collection::vec(filter_strategy(), 6),
    ) {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let evs = events(n, seed);
        let plain = AuditLog::open(a.path(), opts(log_opts())).unwrap();
        let compacted = AuditLog::open(b.path(), opts(log_opts())).unwrap();
        let cut = (n as f64 * split) as usize;
        // The same batches, so that both register each name at the same LSN.
        plain.append_batch(&evs[..cut]).unwrap();
        plain.append_batch(&evs[cut..]).unwrap();
        compacted.append_batch(&evs[..cut]).unwrap();
        compacted.log().compact().unwrap();
        compacted.append_batch(&evs[cut..]).unwrap();
        compacted.log().compact().unwrap();
        prop_assert!(compacted.log().compacted_segments().len() + 1 >= compacted.log().segment_count());
        for f in filters.iter().chain([&Filter::default()]) {
            for reverse in [false, true] {
                let want = query(&plain, f, reverse);
                let got = query(&compacted, f, reverse);
                prop_assert_eq!(&got, &want, "filter {:?} reverse {}", f, reverse);
            }
        }
        let all: Vec<Vec<u8>> = compacted.log().iter(..).map(|r| r.unwrap().payload().to_vec()).collect();
        let want: Vec<Vec<u8>> = plain.log().iter(..).map(|r| r.unwrap().payload().to_vec()).collect();
        prop_assert_eq!(all, want);
        let rev: Vec<Lsn> = compacted.log().iter_rev(..).map(|r| r.unwrap().lsn()).collect();
        let last = plain.log().next_lsn().0 - 1;
        prop_assert_eq!(rev, (1..=last).rev().map(Lsn).collect::<Vec<_>>());
        for lsn in [1, last / 2, last] {
            let r = compacted.log().read(Lsn(lsn)).unwrap().unwrap();
            let want = plain.log().read(Lsn(lsn)).unwrap().unwrap();
            prop_assert_eq!(r.payload(), want.payload());
        }
    }
}

/// A block's columns are compressed in a few zstd frames: a filter on the
/// source decompresses the first frame of every block it reads, and the
/// others only in blocks where a row matches, with the same answers.
#[test]
fn a_filter_decompresses_the_rest_of_a_block_only_where_a_row_matches() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts(log_opts().compact_stripe_records(1000))).unwrap();
    let mut all = events(6000, 11);
    for e in &mut all {
        let admin = e.event_type == "PACKAGE_QUARANTINED";
        e.source = Some(if admin { "admin" } else { "web" }.into());
    }
    log.append_batch(&all).unwrap();
    log.log().compact().unwrap();
    let compacted = |ex: &auditlog::Explain| {
        let (read, frames) = (ex.blocks().0, ex.frames());
        assert!(read > 10, "{ex}");
        assert_eq!(frames.1, 4 * read, "four frames per block: {ex}");
        (read, frames.0)
    };
    let nobody = Filter {
        source: Some("nobody".into()),
        ..Filter::default()
    };
    let mut q = log.query_explained(&nobody, false);
    assert_eq!(q.by_ref().count(), 0);
    let ex = q.explain().unwrap();
    let (read, decompressed) = compacted(&ex);
    assert_eq!(decompressed, read, "one frame per block: {ex}");
    let total = format!("({read} of {} zstd frames decompressed)", 4 * read);
    assert!(ex.to_string().contains(&total), "{ex}");
    let admin = Filter {
        source: Some("admin".into()),
        ..Filter::default()
    };
    let mut q = log.query_explained(&admin, false);
    let got: Vec<Event> = q.by_ref().map(|r| r.unwrap().1).collect();
    let want: Vec<Event> = all
        .iter()
        .filter(|e| e.event_type == "PACKAGE_QUARANTINED")
        .cloned()
        .collect();
    assert_eq!(got, want);
    let ex = q.explain().unwrap();
    let (read, decompressed) = compacted(&ex);
    let whole = (decompressed - read) / 3;
    assert_eq!(decompressed, read + 3 * whole, "{ex}");
    assert!(
        whole >= 1 && whole * 3 < read,
        "{whole} of {read} blocks whole: {ex}"
    );
}

/// Bytes changed in a block's last frame with its CRC made to match (what
/// no accident does): a query whose filter never needs that frame answers
/// as before, `verify` reports the block, and a read of its events stops
/// with the error rather than return them.
#[test]
fn a_crafted_change_in_a_frame_a_query_skips_is_found_by_verify_and_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts(log_opts())).unwrap();
    let mut all = events(3000, 5);
    for e in &mut all {
        e.source = Some("web".into());
    }
    log.append_batch(&all).unwrap();
    log.log().compact().unwrap();
    drop(log);
    let path = dir.path().join("00000000000000000002.cseg");
    let mut bytes = std::fs::read(&path).unwrap();
    let le32 = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    let comp = le32(&bytes[68..]);
    let body = 64 + BLOCK_HEADER_LEN;
    assert_eq!(bytes[body], 4, "a format-3 body of four frames");
    bytes[body + comp - 3] ^= 0x5a;
    let crc = crc32fast::hash(&bytes[body..body + comp]);
    bytes[76..80].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let log = AuditLog::open(dir.path(), opts(log_opts())).unwrap();
    let nobody = Filter {
        source: Some("nobody".into()),
        ..Filter::default()
    };
    assert_eq!(log.count(&nobody).unwrap(), 0);
    assert_eq!(log.query(&nobody, false).count(), 0);
    let report = log.log().verify().unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(
        (report.damage[0].path.as_path(), report.damage[0].offset),
        (path.as_path(), 64)
    );
    assert!(
        report.damage[0].to_string().contains("block frame 3"),
        "{}",
        report.damage[0]
    );
    let read: Vec<_> = log.query(&Filter::default(), false).collect();
    assert!(
        matches!(read.last(), Some(Err(Error::Corruption(c))) if c.path == path),
        "the read ends with the damage"
    );
    assert!(read
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .all(|(_, e)| all.contains(e)));
}

#[test]
fn the_planner_reads_only_blocks_that_can_match_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let o = log_opts().compact_stripe_records(1000);
    let log = AuditLog::open(dir.path(), opts(o)).unwrap();
    log.append_batch(&events(6000, 7)).unwrap();
    let report = log.log().compact().unwrap();
    assert!(report.segments >= 5, "{report:?}");
    let rare = Filter {
        types: vec!["PACKAGE_QUARANTINED".into()],
        min_severity: Some(Severity::Warning),
        ..Filter::default()
    };
    let mut q = log.query_explained(&rare, false);
    let n = q.by_ref().count();
    let explain = q.explain().unwrap();
    let (read, total) = explain.blocks();
    assert!(n > 0);
    assert!(
        read * 4 < total,
        "read {read} of {total} blocks:\n{explain}"
    );
    assert!(explain.segments.iter().any(|s| s.skipped_by_key > 0));
    assert!(explain.to_string().contains("by type/severity index"));
    let window = Filter {
        since: Some(Timestamp(T0 + 1000 * 1_000_000_000)),
        until: Some(Timestamp(T0 + 1060 * 1_000_000_000)),
        ..Filter::default()
    };
    let mut q = log.query_explained(&window, true);
    assert!(q.by_ref().count() > 0);
    let explain = q.explain().unwrap();
    let (read, total) = explain.blocks();
    assert!(
        read * 4 < total,
        "read {read} of {total} blocks:\n{explain}"
    );
    assert!(explain.segments.iter().any(|s| s.skipped_by_time > 0));
}

#[test]
fn compaction_beside_appends_and_queries_loses_duplicates_and_reorders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = log_opts().compaction(Compaction::Background(Duration::from_millis(5)));
    let log = Arc::new(AuditLog::open(dir.path(), opts(o)).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = BTreeMap::new();
                for round in 0..150u64 {
                    let batch = events(20, w * 1000 + round);
                    let range = log.append_batch(&batch).unwrap();
                    for (lsn, e) in (range.start.0..range.end.0).zip(batch) {
                        mine.insert(lsn, e);
                    }
                }
                mine
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut passes = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let lsns: Vec<u64> = if r == 0 {
                        log.log().iter(..).map(|x| x.unwrap().lsn().0).collect()
                    } else {
                        let mut v: Vec<u64> =
                            log.log().iter_rev(..).map(|x| x.unwrap().lsn().0).collect();
                        v.reverse();
                        v
                    };
                    assert!(
                        lsns.iter().enumerate().all(|(i, &l)| l == i as u64 + 1),
                        "a gap, duplicate or reordering"
                    );
                    let f = Filter {
                        types: vec!["USER_AUTH_FAILED_*".into()],
                        ..Filter::default()
                    };
                    let hits: Vec<Lsn> = log.query(&f, r == 1).map(|x| x.unwrap().0).collect();
                    assert!(hits.windows(2).all(|w| (w[0] < w[1]) == (r == 0)));
                    passes += 1;
                }
                passes
            })
        })
        .collect();
    let mut expected = BTreeMap::new();
    for w in writers {
        expected.extend(w.join().unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    log.log().compact().unwrap();
    assert!(log.log().compacted_segments().len() >= 5);
    let got: BTreeMap<u64, Event> = query(&log, &Filter::default(), false)
        .into_iter()
        .map(|(l, e)| (l.0, e))
        .collect();
    assert_eq!(got, expected);
}

/// Appends `n` events over several segments on `fs` and closes the log;
/// returns them with their LSNs (the log's catalog records come before them).
fn fill(fs: &FaultyFs, dir: &Path, n: usize) -> Vec<(Lsn, Event)> {
    let evs = events(n, 99);
    let log = AuditLog::open(dir, opts(log_opts().vfs(Arc::new(fs.clone())))).unwrap();
    let lsns = log.append_batch(&evs).unwrap();
    log.log().sync().unwrap();
    (lsns.start.0..lsns.end.0).map(Lsn).zip(evs).collect()
}

/// The event `evs` holds at `lsn`.
fn at(evs: &[(Lsn, Event)], lsn: Lsn) -> &Event {
    &evs[evs.binary_search_by_key(&lsn, |p| p.0).unwrap()].1
}

fn reopen(fs: &FaultyFs, dir: &Path) -> AuditLog {
    AuditLog::open(dir, opts(log_opts().vfs(Arc::new(fs.clone())))).unwrap()
}

#[test]
fn a_crash_at_any_step_of_compaction_keeps_every_event_exactly_once() {
    let dir = Path::new("/log");
    for fail_at in 0..10u64 {
        for seed in 0..3u64 {
            let fs = FaultyFs::new();
            let evs = fill(&fs, dir, 1200);
            {
                let log = reopen(&fs, dir);
                fs.fail_sync_after(fail_at);
                let _ = log.log().compact();
                fs.crash(seed * 31 + fail_at);
            }
            let log = reopen(&fs, dir);
            let got = query(&log, &Filter::default(), false);
            assert_eq!(got, evs, "sync {fail_at} failed, seed {seed}");
            // Every record, catalog records included, exactly once.
            let lsns: Vec<Lsn> = log.log().iter_rev(..).map(|r| r.unwrap().lsn()).collect();
            let last = log.log().next_lsn().0 - 1;
            assert_eq!(lsns, (1..=last).rev().map(Lsn).collect::<Vec<_>>());
            // And compaction finishes from wherever it stopped.
            log.log().compact().unwrap();
            assert_eq!(query(&log, &Filter::default(), true).len(), evs.len());
            // (A `.seg.tmp` is the writer's spare segment, made ahead.)
            let names = fs_names(&fs, dir);
            assert!(
                !names.iter().any(|n| n.ends_with(".cseg.tmp")),
                "leftovers: {names:?}"
            );
        }
    }
}

fn reopen_repair(fs: &FaultyFs, dir: &Path) -> AuditLog {
    let o = log_opts()
        .vfs(Arc::new(fs.clone()))
        .recovery(RecoveryMode::Repair);
    AuditLog::open(dir, opts(o)).unwrap()
}

fn fs_names(fs: &FaultyFs, dir: &Path) -> Vec<String> {
    use auditlog::io::Vfs;
    let mut v = fs.list_dir(dir).unwrap();
    v.sort();
    v
}

/// Offsets of the blocks and of the index of compacted segment `id`.
fn layout(bytes: &[u8]) -> (Vec<(u64, u64)>, u64) {
    let h = Header::decode(bytes).unwrap();
    let index = Index::decode(&bytes[h.index_offset as usize..], &h).unwrap();
    (
        index.blocks.iter().map(|b| (b.offset, b.end())).collect(),
        h.index_offset,
    )
}

fn compacted_log(fs: &FaultyFs, dir: &Path) -> Vec<(Lsn, Event)> {
    let evs = fill(fs, dir, 2500);
    let log = reopen(fs, dir);
    assert!(log.log().compact().unwrap().segments >= 3);
    evs
}

fn damage(fs: &FaultyFs, path: &Path, at: u64) {
    let mut bytes = fs.contents(path).unwrap();
    bytes[at as usize] ^= 0x5a;
    fs.put_file(path, &bytes);
}

#[test]
fn a_damaged_block_is_reported_never_returned_and_repair_keeps_the_rest() {
    let (fs, dir) = (FaultyFs::new(), Path::new("/log"));
    let evs = compacted_log(&fs, dir);
    let path = dir.join("00000000000000000002.cseg");
    let (blocks, _) = layout(&fs.contents(&path).unwrap());
    let (start, end) = blocks[1];
    damage(
        &fs,
        &path,
        start + BLOCK_HEADER_LEN as u64 + (end - start) / 2,
    );

    // Strict: opens (the header and index are fine), and a read stops with an error.
    let log = reopen(&fs, dir);
    let report = log.log().verify().unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(report.damage[0].path, path);
    assert_eq!(report.damage[0].offset, start);
    // What the block held, from the index: every error names it.
    let loss = report.damage[0].block.expect("the block's loss");
    assert_eq!(loss.block, 1);
    let mut saw_error = false;
    for r in log.query(&Filter::default(), false) {
        match r {
            Ok((lsn, e)) => assert_eq!(&e, at(&evs, lsn)),
            Err(Error::Corruption(c)) => {
                assert_eq!(c.path, path);
                assert_eq!(c.block, Some(loss));
                saw_error = true;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(saw_error);
    drop(log);
    let strict_checked = AuditLog::open(
        dir,
        opts(log_opts().vfs(Arc::new(fs.clone())).check_sealed(true)),
    );
    match strict_checked {
        Err(Error::Corruption(c)) => assert_eq!(c.block, Some(loss)),
        other => panic!("{:?}", other.err()),
    }

    // Repair: quarantines the block and returns every other event, unaltered.
    let repaired = reopen_repair(&fs, dir);
    let dropped = &repaired.log().recovery_report().repaired;
    assert_eq!(dropped.len(), 1);
    let got = query(&repaired, &Filter::default(), false);
    assert!(got.len() < evs.len() && got.len() > evs.len() / 2);
    for (lsn, e) in &got {
        assert_eq!(e, at(&evs, *lsn));
    }
    // ... and says exactly how many records it dropped, and their LSNs' span.
    let kept: std::collections::BTreeSet<Lsn> = got.iter().map(|(l, _)| *l).collect();
    let lost: Vec<Lsn> = evs
        .iter()
        .map(|(l, _)| *l)
        .filter(|l| !kept.contains(l))
        .collect();
    assert_eq!(dropped[0].block, Some(loss));
    assert_eq!(loss.records as usize, lost.len());
    assert_eq!(loss.lsns, (lost[0], *lost.last().unwrap()));
    let text = dropped[0].to_string();
    assert!(
        text.contains(&format!(
            "block 1 lost: its {} records, LSNs from {} to {}",
            lost.len(),
            lost[0],
            lost.last().unwrap()
        )),
        "{text}"
    );
    assert!(repaired.log().verify().unwrap().damage.is_empty());
    drop(repaired);
    // The quarantine is durable, the new file's name too (a directory sync),
    // so after a power loss a strict open reads the rest.
    fs.crash(7);
    let again = reopen(&fs, dir);
    assert_eq!(query(&again, &Filter::default(), true).len(), got.len());
}

#[test]
fn a_damaged_index_fails_a_strict_open_and_repair_rebuilds_it() {
    let (fs, dir) = (FaultyFs::new(), Path::new("/log"));
    let evs = compacted_log(&fs, dir);
    let path = dir.join("00000000000000000001.cseg");
    let (_, index_at) = layout(&fs.contents(&path).unwrap());
    damage(&fs, &path, index_at + 40);
    match AuditLog::open(dir, opts(log_opts().vfs(Arc::new(fs.clone())))) {
        Err(Error::Corruption(c)) => {
            assert_eq!(c.path, path);
            assert!(c.to_string().contains("index"), "{c}");
        }
        other => panic!("{other:?}"),
    }
    let repaired = reopen_repair(&fs, dir);
    assert_eq!(query(&repaired, &Filter::default(), false), evs);
    let f = Filter {
        types: vec!["PACKAGE_QUARANTINED".into()],
        ..Filter::default()
    };
    let want = evs
        .iter()
        .filter(|(_, e)| e.event_type == "PACKAGE_QUARANTINED")
        .count();
    assert_eq!(query(&repaired, &f, true).len(), want);
    drop(repaired);
    // Repair wrote what it rebuilt: the next open is Strict, and checks every block.
    let strict = AuditLog::open(
        dir,
        opts(log_opts().vfs(Arc::new(fs.clone())).check_sealed(true)),
    )
    .unwrap();
    assert_eq!(query(&strict, &Filter::default(), false), evs);
    assert!(strict.log().verify().unwrap().damage.is_empty());
}

#[test]
fn repair_after_retention_rebuilds_the_first_compacted_segment_with_its_own_lsns() {
    let (fs, dir) = (FaultyFs::new(), Path::new("/log"));
    let evs = compacted_log(&fs, dir);
    let log = AuditLog::open(
        dir,
        retention_opts(
            &fs,
            Retention {
                max_bytes: Some(0),
                ..Retention::default()
            },
        ),
    )
    .unwrap();
    let segs = log.log().compacted_segments();
    // Retention removes the oldest; the next becomes the first.
    let removed = log.log().remove_oldest_compacted(segs[0].segment).unwrap();
    drop(log);
    let first = &segs[1];
    let path = dir.join(format!("{:020}.cseg", first.segment.0));
    damage(&fs, &path, 30); // inside the header
    assert!(AuditLog::open(dir, opts(log_opts().vfs(Arc::new(fs.clone())))).is_err());
    let repaired = reopen_repair(&fs, dir);
    assert_eq!(repaired.log().first_lsn(), first.first_lsn);
    assert_eq!(Lsn(removed.next_lsn.0), first.first_lsn);
    let kept: Vec<(Lsn, Event)> = evs
        .into_iter()
        .filter(|(lsn, _)| *lsn >= first.first_lsn)
        .collect();
    assert_eq!(query(&repaired, &Filter::default(), false), kept);
}

fn retention_opts(fs: &FaultyFs, retention: Retention) -> AuditOptions {
    AuditOptions {
        retention,
        ..opts(log_opts().vfs(Arc::new(fs.clone())))
    }
}

fn markers(log: &AuditLog) -> Vec<Event> {
    let f = Filter {
        types: vec![RETENTION_APPLIED.into()],
        ..Filter::default()
    };
    query(log, &f, false).into_iter().map(|(_, e)| e).collect()
}

#[test]
fn retention_removes_whole_compacted_segments_oldest_first_and_says_so() {
    let (fs, dir) = (FaultyFs::new(), Path::new("/log"));
    let evs = compacted_log(&fs, dir);
    let by_bytes = Retention {
        max_bytes: Some(0),
        ..Retention::default()
    };
    let log = AuditLog::open(dir, retention_opts(&fs, by_bytes)).unwrap();
    let before = log.log().compacted_segments();
    let raw_before = log.log().raw_segments();
    let removed = log.apply_retention().unwrap();
    // Even a limit of 0 bytes never removes a raw (and so the active) segment.
    assert_eq!(removed.len(), before.len());
    assert_eq!(log.log().raw_segments().len(), raw_before.len());
    assert!(log.log().compacted_segments().is_empty());
    for (r, c) in removed.iter().zip(&before) {
        assert_eq!(r.segment, c.segment);
        assert_eq!(r.lsns, (c.first_lsn, Lsn(c.next_lsn.0 - 1)));
        assert!(r.policy.starts_with("max_bytes=0"), "{}", r.policy);
    }
    let marks = markers(&log);
    assert_eq!(marks.len(), removed.len());
    for (m, r) in marks.iter().zip(&removed) {
        assert_eq!(m.severity, Severity::Notice);
        assert_eq!(m.entity_id.as_deref(), Some(r.segment.to_string().as_str()));
        assert_eq!(m.attrs["first_lsn"], r.lsns.0.to_string());
        assert_eq!(m.attrs["last_lsn"], r.lsns.1.to_string());
        assert!(m.attrs.contains_key("first_time") && m.attrs["policy"].contains("max_bytes"));
    }
    assert_eq!(log.log().first_lsn(), raw_before[0].1);
    let rest = query(&log, &Filter::default(), false);
    assert_eq!(rest[0].0, raw_before[0].1);
    let kept = evs
        .iter()
        .filter(|(lsn, _)| *lsn >= raw_before[0].1)
        .count();
    assert_eq!(rest.len(), kept + marks.len());
}

#[test]
fn retention_by_age_removes_only_segments_entirely_older_than_the_limit() {
    let (fs, dir) = (FaultyFs::new(), Path::new("/log"));
    compacted_log(&fs, dir);
    let day = Duration::from_secs(86_400);
    let log = AuditLog::open(
        dir,
        retention_opts(
            &fs,
            Retention {
                max_age: Some(day),
                ..Retention::default()
            },
        ),
    )
    .unwrap();
    let segs = log.log().compacted_segments();
    let (_, newest_of_first) = segs[0].times.unwrap();
    // One ns before the first segment's newest event is a day old: nothing goes.
    let now = Timestamp(newest_of_first + day.as_nanos() as i64);
    assert!(log.apply_retention_at(now).unwrap().is_empty());
    let removed = log.apply_retention_at(Timestamp(now.0 + 1)).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].segment, segs[0].segment);
    assert_eq!(markers(&log).len(), 1);
}

#[test]
fn a_crash_between_marker_and_removal_leaves_one_marker() {
    let dir = Path::new("/log");
    let policy = Retention {
        max_bytes: Some(0),
        ..Retention::default()
    };
    for fail_at in 0..4u64 {
        for seed in 0..4u64 {
            let fs = FaultyFs::new();
            compacted_log(&fs, dir);
            let segs = {
                let log = AuditLog::open(dir, retention_opts(&fs, policy.clone())).unwrap();
                let segs = log.log().compacted_segments();
                fs.fail_sync_after(fail_at);
                let _ = log.apply_retention();
                fs.crash(seed);
                segs
            };
            let log = AuditLog::open(dir, retention_opts(&fs, policy.clone())).unwrap();
            log.apply_retention().unwrap();
            assert!(log.log().compacted_segments().is_empty());
            let marks = markers(&log);
            let mut named: Vec<String> = marks.iter().filter_map(|m| m.entity_id.clone()).collect();
            named.dedup();
            assert_eq!(
                named.len(),
                marks.len(),
                "a segment marked twice: {named:?}"
            );
            assert_eq!(marks.len(), segs.len(), "sync {fail_at} seed {seed}");
        }
    }
}

/// A stripe read shared among threads gives what one thread gives: the
/// same events in the same order, forward and newest first, filtered or
/// not; and with a damaged block in the middle of a stripe, the same events
/// up to the same error.
#[test]
fn a_stripe_read_on_several_threads_gives_what_one_thread_gives() {
    let (fs, dir) = (FaultyFs::new(), Path::new("/log"));
    // Stripes of 2,000 events in 1 KiB blocks: dozens of blocks a stripe,
    // so a full read shares them among threads.
    let o = |threads: usize| {
        log_opts()
            .vfs(Arc::new(fs.clone()))
            .compact_block_bytes(1 << 10)
            .compact_stripe_records(2000)
            .read_threads(threads)
    };
    let evs = events(6000, 5);
    {
        let log = AuditLog::open(dir, opts(o(1))).unwrap();
        log.append_batch(&evs).unwrap();
        log.log().sync().unwrap();
        log.log().seal().unwrap();
        assert!(log.log().compact().unwrap().segments >= 1);
        assert!(log.log().raw_segments().len() <= 1);
    }
    let read = |threads: usize, f: &Filter, reverse: bool| -> (Vec<(Lsn, Event)>, Option<String>) {
        let log = AuditLog::open(dir, opts(o(threads))).unwrap();
        let mut got = Vec::new();
        for r in log.query(f, reverse) {
            match r {
                Ok(x) => got.push(x),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
        (got, None)
    };
    let filters = [
        Filter::default(),
        Filter {
            types: vec!["USER_AUTH_FAILED_*".into()],
            ..Filter::default()
        },
        Filter {
            min_severity: Some(Severity::Warning),
            ..Filter::default()
        },
    ];
    for f in &filters {
        for reverse in [false, true] {
            let one = read(1, f, reverse);
            assert!(one.1.is_none() && !one.0.is_empty());
            assert_eq!(read(3, f, reverse), one, "{f:?}, newest first: {reverse}");
        }
    }
    assert_eq!(read(2, &Filter::default(), false).0.len(), evs.len());

    // A damaged block in the middle of the first compacted segment's first
    // stripe: the same events before it, then the same error.
    let cseg = fs_names(&fs, dir)
        .into_iter()
        .find(|n| n.ends_with(".cseg"))
        .expect("a compacted segment");
    let path = dir.join(cseg);
    let (blocks, _) = layout(&fs.contents(&path).unwrap());
    assert!(blocks.len() >= 16, "{} blocks", blocks.len());
    let (start, end) = blocks[blocks.len() / 4];
    damage(
        &fs,
        &path,
        start + BLOCK_HEADER_LEN as u64 + (end - start) / 2,
    );
    for reverse in [false, true] {
        let one = read(1, &Filter::default(), reverse);
        assert!(one.1.is_some(), "the damage is reported");
        assert_eq!(read(3, &Filter::default(), reverse), one);
    }
}

/// Compacted segments written by an earlier version read back event for
/// event, whole and filtered, after the current version has compacted more
/// of the same log beside them: format 2 (each block one zstd frame) and
/// format 3 (times in nanoseconds, before a block stated its time unit).
/// Each fixture was made by [`read_back_fixture`]'s writer half under its
/// format (`AUDITLOG_WRITE_FIXTURE=2` or `3`).
#[test]
fn compacted_segments_of_format_2_read_back() {
    read_back_fixture(2);
}

/// See [`compacted_segments_of_format_2_read_back`].
#[test]
fn compacted_segments_of_format_3_read_back() {
    read_back_fixture(3);
}

fn read_back_fixture(version: u32) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/compacted-v{version}"));
    let all = events(900, 7);
    if std::env::var("AUDITLOG_WRITE_FIXTURE").is_ok_and(|v| v == version.to_string()) {
        let _ = std::fs::remove_dir_all(&fixture);
        let small = log_opts().segment_bytes(8 << 10);
        let log = AuditLog::open(&fixture, opts(small)).unwrap();
        log.append_batch(&all[..600]).unwrap();
        log.log().compact().unwrap();
        drop(log);
        for f in std::fs::read_dir(&fixture).unwrap() {
            let p = f.unwrap().path();
            if p.ends_with("LOCK") || p.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(&fixture).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    let versions: Vec<u32> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cseg"))
        .map(|p| Header::decode(&std::fs::read(p).unwrap()).unwrap().version)
        .collect();
    assert!(versions.len() >= 2, "{versions:?}");
    assert!(versions.iter().all(|&v| v == version), "{versions:?}");
    let log = AuditLog::open(dir.path(), opts(log_opts())).unwrap();
    log.append_batch(&all[600..]).unwrap();
    log.log().compact().unwrap();
    let got: Vec<Event> = query(&log, &Filter::default(), false)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(got, all);
    let f = Filter {
        actor: Some("user3".into()),
        ip: Some("10.0.0.2".parse().unwrap()),
        ..Filter::default()
    };
    let want: Vec<&Event> = all
        .iter()
        .filter(|e| {
            e.actor.as_deref() == Some("user3") && e.ip == Some("10.0.0.2".parse().unwrap())
        })
        .collect();
    let got = query(&log, &f, true);
    assert_eq!(got.len(), want.len());
    assert!(got.iter().map(|(_, e)| e).eq(want.into_iter().rev()));
    let report = log.log().verify().unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert!(
        report.records > 900,
        "the events and the catalog records: {report:?}"
    );
}
