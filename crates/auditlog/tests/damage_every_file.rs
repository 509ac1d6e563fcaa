//! Damage to every kind of file of an audit log (issue 9): raw and compacted
//! segments, `CATALOG`, `QUARANTINE`, `LOCK`, a stray file, a file deleted or
//! replaced by another. Whatever is done, in every open mode: no panic, no
//! event that was not written is ever returned, damage that hides events
//! is reported by the reader or `verify`, and a log `Repair` opens then
//! opens `Strict` with no event altered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use auditlog::io::Vfs;
use auditlog::testing::FaultyFs;
use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Event, Filter, Lsn, Options,
    RecoveryMode, Severity, Timestamp,
};
use proptest::prelude::*;

const DIR: &str = "/log";

fn opts(fs: &FaultyFs) -> AuditOptions {
    AuditOptions {
        log: Options::default()
            .segment_bytes(8 << 10)
            .record_bytes_max(2 << 10)
            .durability(Durability::Buffered)
            .compaction(Compaction::Manual)
            .compact_block_bytes(1 << 10)
            .compact_stripe_records(40)
            .vfs(Arc::new(fs.clone())),
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    }
}

/// The files of a log after a compaction and a repair, and the events it holds.
struct Built {
    files: Vec<(PathBuf, Vec<u8>)>,
    events: BTreeMap<Lsn, Event>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let fs = FaultyFs::new();
        let mut events = BTreeMap::new();
        {
            let log = AuditLog::open(DIR, opts(&fs)).unwrap();
            for i in 0..400u64 {
                let ty = ["USER_LOGGED_IN", "FILE_ADDED", "CUSTOM_A", "CUSTOM_B"][i as usize % 4];
                let mut e = Event::new(
                    Timestamp(1_790_000_000_000_000_000 + i as i64),
                    ty,
                    Severity::Info,
                );
                e.actor = Some(format!("user{}", i % 7));
                e.attrs.insert(format!("k{}", i % 3), format!("v{i}"));
                events.insert(log.append(&e).unwrap(), e);
                if i == 250 {
                    log.log().compact().unwrap();
                }
            }
        }
        // A damaged record in the first raw (sealed) segment, repaired: the
        // log has a QUARANTINE too.
        let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        let mut raw: Vec<String> = vfs
            .list_dir(&PathBuf::from(DIR))
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".seg"))
            .collect();
        raw.sort();
        assert!(raw.len() >= 2, "{raw:?}");
        let victim = PathBuf::from(DIR).join(&raw[0]);
        let mut bytes = fs.contents(&victim).unwrap();
        bytes[200] ^= 0x10;
        fs.put_file(&victim, &bytes);
        let mut o = opts(&fs);
        o.log = o.log.recovery(RecoveryMode::Repair).check_sealed(true);
        let log = AuditLog::open(DIR, o).unwrap();
        let kept: Vec<Lsn> = log
            .query(&Filter::default(), false)
            .map(|r| r.unwrap().0)
            .collect();
        events.retain(|lsn, _| kept.contains(lsn));
        drop(log);
        let mut names = vfs.list_dir(&PathBuf::from(DIR)).unwrap();
        names.sort();
        assert!(names.iter().any(|n| n == "QUARANTINE"), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with(".cseg")), "{names:?}");
        let files = names
            .into_iter()
            .map(|n| {
                let p = PathBuf::from(DIR).join(n);
                let b = fs.contents(&p).unwrap();
                (p, b)
            })
            .collect();
        Built { files, events }
    })
}

#[derive(Debug, Clone)]
enum Hurt {
    Flip { at: usize, bit: u8 },
    Zero { at: usize, len: usize },
    Garbage { at: usize, bytes: Vec<u8> },
    Truncate { len: usize },
    Delete,
    ReplaceWith { other: usize },
}

fn hurt() -> impl Strategy<Value = (usize, Hurt)> {
    let at = 0..20_000usize;
    (
        0..64usize,
        prop_oneof![
            4 => (at.clone(), 0..8u8).prop_map(|(at, bit)| Hurt::Flip { at, bit }),
            2 => (at.clone(), 1..600usize).prop_map(|(at, len)| Hurt::Zero { at, len }),
            2 => (at.clone(), proptest::collection::vec(any::<u8>(), 1..40))
                .prop_map(|(at, bytes)| Hurt::Garbage { at, bytes }),
            1 => at.prop_map(|len| Hurt::Truncate { len }),
            1 => Just(Hurt::Delete),
            1 => (0..64usize).prop_map(|other| Hurt::ReplaceWith { other }),
        ],
    )
}

/// What a reader returned: the events, and whether it reported anything.
fn read_all(log: &AuditLog, events: &BTreeMap<Lsn, Event>) -> (Vec<Lsn>, bool) {
    let mut got = Vec::new();
    let mut reported = !log.log().recovery_report().unreadable.is_empty();
    for reverse in [false, true] {
        for r in log.query(&Filter::default(), reverse) {
            match r {
                Ok((lsn, e)) => {
                    assert_eq!(Some(&e), events.get(&lsn), "LSN {lsn} was never written so");
                    if !reverse {
                        got.push(lsn);
                    }
                }
                Err(_) => reported = true,
            }
        }
    }
    (got, reported)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damage_to_any_file_is_reported_never_turned_into_events(hurts in proptest::collection::vec(hurt(), 1..3)) {
        let b = built();
        let mut files: Vec<Option<Vec<u8>>> = b.files.iter().map(|f| Some(f.1.clone())).collect();
        let mut deleted_first = false;
        // Which files were hurt at all.
        let mut hurt_files = std::collections::BTreeSet::new();
        for (which, h) in &hurts {
            let i = which % files.len();
            hurt_files.insert(b.files[i].0.clone());
            match h {
                Hurt::Delete => {
                    // Losing the oldest segment looks like retention: not damage
                    // a reader can see (tamper evidence is issue 12's).
                    deleted_first |= b.files[i].0.to_string_lossy().ends_with("1.cseg");
                    files[i] = None;
                }
                Hurt::ReplaceWith { other } => files[i] = files[other % files.len()].clone(),
                _ => {
                    let Some(bytes) = files[i].as_mut() else { continue };
                    match h {
                        Hurt::Flip { at, bit } => {
                            let at = at % bytes.len().max(1);
                            if let Some(x) = bytes.get_mut(at) {
                                *x ^= 1 << bit;
                            }
                        }
                        Hurt::Zero { at, len } => {
                            let at = at % bytes.len().max(1);
                            let end = (at + len).min(bytes.len());
                            bytes[at..end].fill(0);
                        }
                        Hurt::Garbage { at, bytes: g } => {
                            let at = at % bytes.len().max(1);
                            for (k, x) in g.iter().enumerate() {
                                if let Some(slot) = bytes.get_mut(at + k) {
                                    *slot = *x;
                                }
                            }
                        }
                        Hurt::Truncate { len } => {
                            let n = bytes.len().max(1);
                            bytes.truncate(len % n);
                        }
                        _ => unreachable!(),
                    }
                }
            }
        }
        let fs = FaultyFs::new();
        for ((path, _), bytes) in b.files.iter().zip(&files) {
            if let Some(bytes) = bytes {
                fs.put_file(path, bytes);
            }
        }
        let events = &b.events;

        // A reader: every event it returns was written so; if it returned
        // fewer than were written and said nothing, verify must say it.
        let mut ro = opts(&fs);
        ro.log = ro.log.read_only(true);
        if let Ok(log) = AuditLog::open(DIR, ro) {
            let (got, reported) = read_all(&log, events);
            let first = log.log().first_lsn();
            let hidden = events.keys().filter(|l| **l >= first).count() > got.len();
            // The newest segment and CATALOG (which records how far the log
            // reached) both lost: only an outside record of the end can tell
            // (tamper evidence, issue 12).
            let newest = b.files.iter().map(|f| &f.0).filter(|p| p.extension().is_some_and(|e| e == "seg")).max();
            let end_unwitnessed = newest.is_some_and(|p| hurt_files.contains(p))
                && hurt_files.iter().any(|p| p.ends_with("CATALOG"));
            if hidden && !reported && !deleted_first && !end_unwitnessed {
                let verified = log.log().verify().map(|r| !r.damage.is_empty()).unwrap_or(true)
                    || log.verify_catalog().map(|p| !p.is_empty()).unwrap_or(true);
                let names: Vec<_> = b.files.iter().map(|f| f.0.clone()).collect();
                prop_assert!(verified, "{} events hidden and nothing reported; {:?} of {:?}", events.len() - got.len(), hurts, names);
            }
        }
        // A writer, Strict: the same, or a clear error.
        if let Ok(log) = AuditLog::open(DIR, opts(&fs)) {
            read_all(&log, events);
        }
        // Repair, then Strict: opens, and no event altered.
        let mut rep = opts(&fs);
        rep.log = rep.log.recovery(RecoveryMode::Repair).check_sealed(true);
        let repaired = AuditLog::open(DIR, rep).map(|log| {
            if log.verify_catalog().is_ok_and(|p| !p.is_empty()) {
                let _ = log.rebuild_catalog();
            }
            read_all(&log, events);
        });
        if repaired.is_ok() {
            let mut strict = opts(&fs);
            strict.log = strict.log.check_sealed(true);
            let log = AuditLog::open(DIR, strict);
            prop_assert!(log.is_ok(), "Repair left a log that does not open Strict: {:?}; {:?}", log.err(), hurts);
            read_all(&log.unwrap(), events);
        }
    }
}
