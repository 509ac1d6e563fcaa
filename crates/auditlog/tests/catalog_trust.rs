//! The log's catalog (issue 9): every registration is a CRC-framed record in
//! the log; `CATALOG` is a checksummed cache of them. Damage to the file is
//! reported naming it, never turned into events under other names; a file
//! that lost lines or vanished is completed from the log; a failed sync of
//! it poisons the log; a full disk while writing it loses nothing.

use std::path::Path;
use std::sync::Arc;

use auditlog::io::Vfs;
use auditlog::testing::FaultyFs;
use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Error, Event, Filter, Lsn, Options,
    RecoveryMode, Retention, Severity, Timestamp,
};

const DIR: &str = "/log";

fn opts(fs: &FaultyFs) -> AuditOptions {
    AuditOptions {
        log: Options::default()
            .segment_bytes(64 << 10)
            .record_bytes_max(8 << 10)
            .durability(Durability::Buffered)
            .compaction(Compaction::Manual)
            .vfs(Arc::new(fs.clone())),
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    }
}

fn repair(fs: &FaultyFs) -> AuditOptions {
    let mut o = opts(fs);
    o.log = o.log.recovery(RecoveryMode::Repair);
    o
}

fn read_only(fs: &FaultyFs) -> AuditOptions {
    let mut o = opts(fs);
    o.log = o.log.read_only(true);
    o
}

/// An event of type `ty` with an attribute `key`, told apart by `n`.
fn event(n: u64, ty: &str, key: &str) -> Event {
    let mut e = Event::new(
        Timestamp(1_790_000_000_000_000_000 + n as i64),
        ty,
        Severity::Info,
    );
    e.actor = Some(format!("user{n}"));
    e.attrs.insert(key.to_string(), n.to_string());
    e
}

/// A log of `types` × 3 events, each type with its own attribute key.
fn written(fs: &FaultyFs, types: usize) -> Vec<(Lsn, Event)> {
    let log = AuditLog::open(DIR, opts(fs)).unwrap();
    let mut out = Vec::new();
    for round in 0..3u64 {
        for t in 0..types {
            let e = event(
                round * 100 + t as u64,
                &format!("TYPE_{t}"),
                &format!("key_{t}"),
            );
            let lsn = log.append(&e).unwrap();
            out.push((lsn, e));
        }
    }
    log.log().sync().unwrap();
    out
}

fn all(log: &AuditLog) -> Vec<(Lsn, Event)> {
    log.query(&Filter::default(), false)
        .map(|r| r.unwrap())
        .collect()
}

fn catalog(fs: &FaultyFs) -> Vec<u8> {
    fs.contents(&Path::new(DIR).join("CATALOG")).unwrap()
}

#[test]
fn a_flipped_bit_in_catalog_is_reported_naming_the_file_and_repair_rebuilds_it() {
    for at in [0usize, 10, 30, 60, 100, 150] {
        let fs = FaultyFs::new();
        let evs = written(&fs, 4);
        let mut bytes = catalog(&fs);
        let at = at.min(bytes.len() - 2);
        bytes[at] ^= 0x04;
        fs.put_file(&Path::new(DIR).join("CATALOG"), &bytes);
        for o in [opts(&fs), read_only(&fs)] {
            match AuditLog::open(DIR, o) {
                Err(e @ Error::BadCatalogFile { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("/log/CATALOG: line"), "{text}");
                    assert!(text.contains("auditlog repair"), "{text}");
                }
                other => panic!("byte {at}: {other:?}"),
            }
        }
        let log = AuditLog::open(DIR, repair(&fs)).unwrap();
        assert!(log.catalog_report().rebuilt.is_some());
        assert_eq!(all(&log), evs, "byte {at}");
        assert!(log.verify_catalog().unwrap().is_empty());
        drop(log);
        // The rebuilt file is durable and checks.
        fs.crash(at as u64);
        assert_eq!(all(&AuditLog::open(DIR, opts(&fs)).unwrap()), evs);
    }
}

#[test]
fn a_catalog_that_lost_lines_or_vanished_is_completed_from_the_log() {
    let fs = FaultyFs::new();
    let evs = written(&fs, 5);
    let full = catalog(&fs);
    let path = Path::new(DIR).join("CATALOG");
    let line_ends: Vec<usize> = full
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    // Cut at every line boundary, in the middle of every line, and deleted.
    let mut cuts: Vec<Option<usize>> = line_ends.iter().map(|&e| Some(e)).collect();
    cuts.extend(line_ends.iter().map(|&e| Some(e - 3)));
    cuts.push(None);
    let mut want = evs;
    for (i, cut) in cuts.into_iter().enumerate() {
        match cut {
            Some(n) => fs.put_file(&path, &full[..n]),
            None => fs.remove_file(&path).unwrap(),
        }
        let log = AuditLog::open(DIR, opts(&fs)).unwrap();
        assert_eq!(all(&log), want, "cut {cut:?}");
        // A new type gets a new id: no old event changes its name.
        let fresh = event(1000 + i as u64, &format!("TYPE_NEW_{i}"), "key_new");
        let lsn = log.append(&fresh).unwrap();
        want.push((lsn, fresh));
        assert_eq!(all(&log), want, "cut {cut:?}");
        assert!(log.verify_catalog().unwrap().is_empty(), "cut {cut:?}");
        drop(log);
        assert_eq!(all(&AuditLog::open(DIR, opts(&fs)).unwrap()), want);
    }
}

#[test]
fn a_deleted_catalog_is_rebuilt_and_reopened_readers_see_the_right_names() {
    let fs = FaultyFs::new();
    let evs = written(&fs, 3);
    fs.remove_file(&Path::new(DIR).join("CATALOG")).unwrap();
    // A reader finds the names in the log when the file has none.
    let reader = AuditLog::open(DIR, read_only(&fs)).unwrap();
    assert_eq!(all(&reader), evs);
    drop(reader);
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    assert_eq!(log.catalog_report().completed_from_log, 6);
    assert_eq!(all(&log), evs);
}

#[test]
fn a_failed_sync_of_catalog_poisons_the_log_and_loses_nothing_acknowledged() {
    for fail_at in 0..6u64 {
        let fs = FaultyFs::new();
        let evs = written(&fs, 2);
        let log = AuditLog::open(DIR, opts(&fs)).unwrap();
        fs.fail_sync_after(fail_at);
        let mut acknowledged = evs.clone();
        let mut failed = false;
        for n in 0..4u64 {
            let e = event(500 + n, &format!("LATER_{n}"), &format!("later_{n}"));
            match log.append(&e) {
                Ok(lsn) if !failed => acknowledged.push((lsn, e)),
                Ok(lsn) => panic!("sync {fail_at}: append {lsn} succeeded after a failure"),
                Err(_) => failed = true,
            }
        }
        assert!(failed, "sync {fail_at} never failed");
        // No later call reports success.
        assert!(log.append(&event(900, "TYPE_0", "key_0")).is_err());
        assert!(log.log().sync().is_err());
        drop(log);
        fs.crash(fail_at);
        let log = AuditLog::open(DIR, opts(&fs)).unwrap();
        let got = all(&log);
        // Buffered appends after the last sync may be gone; what is there is right.
        for (lsn, e) in &got {
            let want = acknowledged.iter().find(|(l, _)| l == lsn);
            assert_eq!(Some(e), want.map(|(_, e)| e), "sync {fail_at}: LSN {lsn}");
        }
        assert!(got.len() >= evs.len());
        assert!(log.verify_catalog().unwrap().is_empty());
    }
}

/// A registration whose sync failed: its records are in the log, its lines
/// not in `CATALOG`. That is the state any writer leaves that stops between
/// the two (a crash too), not damage: a reader takes the names from the log,
/// `verify_catalog` finds nothing wrong, and the next writer's open writes
/// the lines. (Before, a read-only verify called each such record damage.)
#[test]
fn a_registration_cut_off_before_its_catalog_line_is_not_damage() {
    let fs = FaultyFs::new();
    let evs = written(&fs, 2);
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    fs.fail_sync_after(0);
    let e = event(700, "CUT_OFF_TYPE", "cut_off_key");
    assert!(log.append(&e).is_err());
    drop(log);
    let text = String::from_utf8(catalog(&fs)).unwrap();
    assert!(!text.contains("CUT_OFF_TYPE"), "{text}");
    let reader = AuditLog::open(DIR, read_only(&fs)).unwrap();
    assert_eq!(reader.verify_catalog().unwrap(), Vec::<String>::new());
    assert_eq!(all(&reader), evs);
    drop(reader);
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    assert!(log.catalog_report().completed_from_log > 0);
    assert!(String::from_utf8(catalog(&fs))
        .unwrap()
        .contains("CUT_OFF_TYPE"));
    assert!(log.verify_catalog().unwrap().is_empty());
}

#[test]
fn a_full_disk_while_writing_catalog_loses_no_name() {
    let fs = FaultyFs::new();
    let evs = written(&fs, 2);
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    // Room for part of a line: the CATALOG write is cut short.
    let used: u64 = ["CATALOG", "00000000000000000001.seg", "LOCK"]
        .iter()
        .map(|f| {
            fs.contents(&Path::new(DIR).join(f))
                .map_or(0, |c| c.len() as u64)
        })
        .sum();
    fs.set_space_limit(Some(used + 20));
    let mut want = evs.clone();
    let e = event(700, "TYPE_FULL", "key_full");
    let lsn = log.append(&e).expect("the names are in the log");
    want.push((lsn, e));
    fs.set_space_limit(None);
    let e = event(701, "TYPE_AFTER", "key_after");
    let lsn = log.append(&e).unwrap();
    want.push((lsn, e));
    assert_eq!(all(&log), want);
    log.log().sync().unwrap();
    drop(log);
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    assert_eq!(all(&log), want);
    assert!(log.verify_catalog().unwrap().is_empty());
}

#[test]
fn the_engines_own_types_are_refused_from_callers_and_always_have_ids() {
    let fs = FaultyFs::new();
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    for name in [
        "AUDITLOG_RETENTION_APPLIED",
        "AUDITLOG_CATALOG_ENTRY",
        "AUDITLOG_ANYTHING",
    ] {
        match log.append(&Event::new(Timestamp(0), name, Severity::Notice)) {
            Err(Error::ReservedType { name: n }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(log.log().next_lsn(), Lsn(1), "nothing was written");
    // Catalog records are not events a query returns, unless asked for by name.
    log.append(&event(1, "TYPE_0", "key_0")).unwrap();
    assert_eq!(all(&log).len(), 1);
    let f = Filter {
        types: vec!["AUDITLOG_CATALOG_ENTRY".into()],
        ..Filter::default()
    };
    let records: Vec<String> = log
        .query(&f, false)
        .map(|r| r.unwrap().1.data.unwrap())
        .collect();
    assert_eq!(records, ["type 0 - TYPE_0", "key 0 key_0"]);
}

#[test]
fn registering_many_names_is_linear_and_the_type_space_ends_below_the_engines() {
    let fs = FaultyFs::new();
    let mut o = opts(&fs);
    o.log = o.log.segment_bytes(32 << 20).record_bytes_max(4 << 20);
    let log = AuditLog::open(DIR, o).unwrap();
    // 100,000 attribute keys in one event: quadratic registration would take minutes.
    let mut e = Event::new(Timestamp(0), "WIDE", Severity::Info);
    for k in 0..100_000 {
        e.attrs.insert(format!("k{k}"), "v".into());
    }
    let lsn = log.append(&e).unwrap();
    let back = log
        .query(&Filter::default(), false)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(back, (lsn, e));
    // Type ids stop below the engine's own.
    let many: Vec<Event> = (0..auditlog::format::registry::MAX_TYPES)
        .map(|i| Event::new(Timestamp(0), format!("T{i}"), Severity::Info))
        .collect();
    match log.append_batch(&many) {
        Err(Error::InvalidOptions(why)) => assert!(why.contains("65520"), "{why}"),
        other => panic!("{other:?}"),
    }
    log.append_batch(&many[..auditlog::format::registry::MAX_TYPES - 1])
        .unwrap();
}

#[test]
fn registrations_survive_retention_of_the_segments_that_recorded_them() {
    let fs = FaultyFs::new();
    let mut o = opts(&fs);
    o.log = o.log.segment_bytes(16 << 10);
    o.retention = Retention {
        max_bytes: Some(0),
        ..Retention::default()
    };
    let log = AuditLog::open(DIR, o.clone()).unwrap();
    let mut evs = Vec::new();
    for n in 0..600u64 {
        let e = event(n, &format!("TYPE_{}", n % 7), &format!("key_{}", n % 5));
        evs.push((log.append(&e).unwrap(), e));
    }
    log.log().compact().unwrap();
    let removed = log.apply_retention().unwrap();
    assert!(!removed.is_empty());
    let first = log.log().first_lsn();
    evs.retain(|(lsn, _)| *lsn >= first);
    assert!(!evs.is_empty());
    let problems = log.verify_catalog().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    drop(log);
    // Without the file, every name still comes back from what the log kept.
    fs.remove_file(&Path::new(DIR).join("CATALOG")).unwrap();
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    let got: Vec<(Lsn, Event)> = all(&log)
        .into_iter()
        .filter(|(_, e)| !e.event_type.starts_with("AUDITLOG_"))
        .collect();
    assert_eq!(got, evs);
}

/// The highest `covered` LSN in the log's `CATALOG` file.
fn covered_in_file(fs: &FaultyFs) -> u64 {
    String::from_utf8_lossy(&catalog(fs))
        .lines()
        .filter_map(|l| l.split_once(" covered ").map(|(_, n)| n.trim()))
        .filter_map(|n| n.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn sealed_segments_are_marked_covered_so_an_open_after_a_crash_reads_only_the_newest() {
    let fs = FaultyFs::new();
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    let mut want = Vec::new();
    // About 400 KB of events: several 64 KiB segments sealed.
    for n in 0..6_000u64 {
        let e = event(n, &format!("TYPE_{}", n / 500), &format!("key_{}", n / 700));
        want.push((log.append(&e).unwrap(), e));
    }
    let (_, tail_first, _, _) = *log.log().raw_segments().last().unwrap();
    // The worker writes the mark after it seals: waited for, not timed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while covered_in_file(&fs) < tail_first.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let covered = covered_in_file(&fs);
    assert!(
        covered >= tail_first.0,
        "CATALOG covers up to {covered}, the tail starts at {tail_first}"
    );
    // Never past what is durable: the mark also says how far the log reached.
    assert!(covered <= log.log().durable_lsn().0);
    log.log().sync().unwrap();
    // Power lost with the log open: no close writes a mark.
    fs.crash(7);
    drop(log);
    let log = AuditLog::open(DIR, opts(&fs)).unwrap();
    assert_eq!(all(&log), want);
    assert_eq!(log.catalog_report().completed_from_log, 0);
    assert!(log.verify_catalog().unwrap().is_empty());
}

#[test]
fn power_loss_while_segments_are_sealed_and_names_registered_loses_no_name() {
    for seed in 0..16u64 {
        let fs = FaultyFs::new();
        let mut written = Vec::new();
        let mut acknowledged = 0;
        {
            let log = AuditLog::open(DIR, opts(&fs)).unwrap();
            // A new type every 40 events, a new key every 90, a segment
            // sealed every ~1,000: the worker's marks and the registrations
            // (each a synced append) interleave. Then known names only, not
            // synced, over a few more seals: a mark past what is durable
            // would claim records the power loss takes.
            let registering = 1_500 + seed * 397 % 2_000;
            for n in 0..registering + 3_000 {
                let (ty, key) = if n < registering {
                    (n / 40, n / 90)
                } else {
                    (n % 7, n % 5)
                };
                let e = event(n, &format!("TYPE_{ty}"), &format!("key_{key}"));
                written.push((log.append(&e).unwrap(), e));
                if n % 64 == 63 && n < registering {
                    log.log().sync().unwrap();
                    acknowledged = written.len();
                }
            }
            // Read in this order: the durable LSN only grows.
            let covered = covered_in_file(&fs);
            let durable = log.log().durable_lsn();
            assert!(
                covered <= durable.0,
                "seed {seed}: CATALOG covers up to {covered}, only {durable} is durable"
            );
            fs.crash(seed);
        }
        let log = AuditLog::open(DIR, opts(&fs))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
        let got = all(&log);
        assert!(got.len() >= acknowledged, "seed {seed}: synced events lost");
        assert_eq!(got, written[..got.len()], "seed {seed}");
        assert!(log.verify_catalog().unwrap().is_empty(), "seed {seed}");
        // A name registered now gets an id of its own: no old event is renamed.
        let e = event(99_999, "TYPE_AFTER", "key_after");
        let lsn = log.append(&e).unwrap();
        let mut want = got;
        want.push((lsn, e));
        assert_eq!(all(&log), want, "seed {seed}");
    }
}
