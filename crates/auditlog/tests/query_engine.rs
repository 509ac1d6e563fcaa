//! The query engine against an oracle: every filter, every aggregate,
//! forward and newest first, answered exactly as filtering and counting the
//! appended events in the test would, whether the events sit in the raw
//! tail (read through its in-memory index), in compacted segments, or both;
//! before, during and after compaction; and after a reopen, when the tail's
//! index is built anew. Plus the bounds the planner must keep.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auditlog::testing::SplitMix64;
use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Event, Filter, GroupBy, GroupValue,
    Lsn, Options, Severity, Timestamp,
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
const SEC: i64 = 1_000_000_000;

fn log_opts() -> Options {
    Options::default()
        .segment_bytes(64 << 10)
        .record_bytes_max(4 << 10)
        .durability(Durability::Buffered)
        .compaction(Compaction::Manual)
        .compact_block_bytes(2 << 10)
        .compact_stripe_records(300)
}

fn opts(log: Options) -> AuditOptions {
    AuditOptions {
        log,
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    }
}

/// `n` events over about `n` seconds (an hour is 3,600 of them), some rare
/// types, a few actors, sessions and addresses in two networks.
fn events(n: usize, seed: u64) -> Vec<Event> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|i| {
            let r = rng.next();
            let ty = if r.is_multiple_of(61) {
                "PACKAGE_QUARANTINED"
            } else {
                TYPES[(r % 7) as usize]
            };
            let sev = Severity::ALL[(rng.next() % 6) as usize];
            let jitter = (rng.next() % (5 * SEC as u64)) as i64;
            let mut e = Event::new(Timestamp(T0 + i as i64 * SEC + jitter), ty, sev);
            e.actor = Some(format!("user{}", rng.next() % 7));
            if rng.next().is_multiple_of(3) {
                e.actor_id = Some(format!("id{}", rng.next() % 7));
            }
            let net = if rng.next().is_multiple_of(5) { 20 } else { 10 };
            e.ip = Some(IpAddr::from([10, net, 0, (rng.next() % 6) as u8]));
            e.result = Some((rng.next() % 3) as i64);
            e.source = Some(["WEB", "WORKER"][(rng.next() % 2) as usize].into());
            if rng.next().is_multiple_of(4) {
                e.session = Some(format!("s{}", rng.next() % 20));
                e.entity_id = Some(format!("p{}", rng.next() % 30));
            }
            if ty == "CONFIG_UPDATED" {
                // Attributes: views name them and keep them in key order.
                e.attrs.insert("zeta".into(), format!("{}", rng.next() % 9));
                e.attrs.insert("alpha".into(), "x".into());
            }
            e
        })
        .collect()
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    (
        prop::collection::vec(
            prop_oneof![
                Just("USER_AUTH_FAILED_*"),
                Just("PACKAGE_QUARANTINED"),
                Just("FILE_ADDED"),
                Just("NO_SUCH_TYPE")
            ],
            0..3,
        ),
        (prop::option::of(0usize..6), prop::option::of(0usize..6)),
        prop::option::of((0i64..6000, 0i64..2000)),
        (
            prop::option::of(0u8..8),
            prop::option::of(prop_oneof![
                Just("10.0.0.0/8"),
                Just("10.20.0.0/16"),
                Just("10.10.0.3"),
                Just("10.10.0.0/24")
            ]),
        ),
        (
            prop::option::of(0u8..3),
            prop::option::of(0u8..25),
            prop::option::of(0u8..35),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(types, (min, max), window, (actor, ip), (source, session, entity, failed))| Filter {
                types: types.into_iter().map(String::from).collect(),
                min_severity: min.map(|i| Severity::ALL[i]),
                max_severity: max.map(|i| Severity::ALL[i]),
                since: window.map(|(a, _)| Timestamp(T0 + a * SEC)),
                until: window.map(|(a, l)| Timestamp(T0 + (a + l) * SEC)),
                actor: actor.map(|a| {
                    if a == 7 {
                        "id3".to_string()
                    } else {
                        format!("user{a}")
                    }
                }),
                ip: ip.map(|n| n.parse().unwrap()),
                source: source.map(|s| ["WEB", "WORKER", "NONE"][usize::from(s)].into()),
                session: session.map(|s| format!("s{s}")),
                entity_id: entity.map(|p| format!("p{p}")),
                failed,
                ..Filter::default()
            },
        )
}

/// The filter's meaning, on an event (the oracle).
fn matches(f: &Filter, e: &Event) -> bool {
    let text = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    f.type_matches(&e.event_type)
        && f.min_severity.is_none_or(|m| e.severity >= m)
        && f.max_severity.is_none_or(|m| e.severity <= m)
        && f.since.is_none_or(|t| e.time >= t)
        && f.until.is_none_or(|t| e.time <= t)
        && f.actor.as_ref().is_none_or(|a| {
            [&e.actor, &e.actor_id, &e.actor_account]
                .iter()
                .any(|v| v.as_ref() == Some(a))
        })
        && f.ip.is_none_or(|n| e.ip.is_some_and(|ip| n.contains(ip)))
        && text(&f.source, &e.source)
        && text(&f.entity_type, &e.entity_type)
        && text(&f.entity_id, &e.entity_id)
        && text(&f.session, &e.session)
        && (!f.failed || e.result.is_some_and(|r| r != 0))
}

/// The groups the oracle counts for `by`, as the engine names them.
fn oracle_groups(evs: &[Event], f: &Filter, by: &[GroupBy]) -> BTreeMap<Vec<String>, u64> {
    let mut out = BTreeMap::new();
    for e in evs.iter().filter(|e| matches(f, e)) {
        let key = by
            .iter()
            .map(|g| {
                let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                match g {
                    GroupBy::Type => e.event_type.clone(),
                    GroupBy::Severity => e.severity.to_string(),
                    GroupBy::Actor => text(&e.actor),
                    GroupBy::Ip => e.ip.map_or("-".into(), |ip| ip.to_string()),
                    GroupBy::Source => text(&e.source),
                    GroupBy::Result => e.result.map_or("-".into(), |r| r.to_string()),
                    GroupBy::Session => text(&e.session),
                    GroupBy::EntityType => text(&e.entity_type),
                    GroupBy::EntityId => text(&e.entity_id),
                    GroupBy::Hour | GroupBy::Day => {
                        let w = if *g == GroupBy::Hour { 3600 } else { 86_400 } * SEC;
                        GroupValue::Time(Timestamp(e.time.0.div_euclid(w) * w), *g).to_string()
                    }
                }
            })
            .collect();
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn engine_groups(log: &AuditLog, f: &Filter, by: &[GroupBy]) -> BTreeMap<Vec<String>, u64> {
    let agg = log.aggregate(f, by, None).unwrap();
    let groups: BTreeMap<Vec<String>, u64> = agg
        .groups
        .iter()
        .map(|g| (g.key.iter().map(|v| v.to_string()).collect(), g.count))
        .collect();
    assert_eq!(agg.groups.len(), groups.len(), "a group listed twice");
    assert_eq!(agg.total, groups.values().sum::<u64>());
    groups
}

const DIMENSIONS: [&[GroupBy]; 7] = [
    &[],
    &[GroupBy::Type],
    &[GroupBy::Day, GroupBy::Severity],
    &[GroupBy::Hour],
    &[GroupBy::Actor],
    &[GroupBy::Ip, GroupBy::Result],
    &[GroupBy::Session, GroupBy::EntityId, GroupBy::Source],
];

/// Every query and aggregate of `filters` against the oracle; `lsns` maps
/// each appended event to its LSN.
fn check_all(log: &AuditLog, evs: &[Event], lsns: &[Lsn], filters: &[Filter]) {
    for f in filters.iter().chain([&Filter::default()]) {
        let want: Vec<(Lsn, Event)> = lsns
            .iter()
            .zip(evs)
            .filter(|(_, e)| matches(f, e))
            .map(|(l, e)| (*l, e.clone()))
            .collect();
        let got: Vec<(Lsn, Event)> = log.query(f, false).map(|r| r.unwrap()).collect();
        assert_eq!(got, want, "filter {f:?}");
        let mut rev: Vec<(Lsn, Event)> = log.query(f, true).map(|r| r.unwrap()).collect();
        rev.reverse();
        assert_eq!(rev, want, "filter {f:?}, newest first");
        assert_eq!(log.count(f).unwrap(), want.len() as u64, "count {f:?}");
        // Read in place, never built: the same JSON lines as the built events.
        let mut lines = Vec::new();
        log.query(f, false)
            .for_each_view(&mut |v| {
                lines.push(v.to_json());
                Ok(true)
            })
            .unwrap();
        let built: Vec<String> = want
            .iter()
            .map(|(l, e)| auditlog::event::json::to_json(e, Some(*l)))
            .collect();
        assert_eq!(lines, built, "views of {f:?}");
        for by in DIMENSIONS {
            assert_eq!(
                engine_groups(log, f, by),
                oracle_groups(evs, f, by),
                "filter {f:?} by {by:?}"
            );
        }
    }
}

/// Appends `evs` in batches; the LSN of each.
fn append(log: &AuditLog, evs: &[Event], batch: usize) -> Vec<Lsn> {
    let mut lsns = Vec::new();
    for chunk in evs.chunks(batch.max(1)) {
        let r = log.append_batch(chunk).unwrap();
        lsns.extend((r.start.0..r.end.0).map(Lsn));
    }
    lsns
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Raw tail only, then part compacted, then all compacted, then
    /// reopened: the same answers as the oracle at every step.
    #[test]
    fn queries_and_aggregates_answer_what_the_events_say(
        seed in any::<u64>(),
        n in 300usize..4000,
        split in 0.0f64..1.0,
        filters in prop::collection::vec(filter_strategy(), 5),
        threads in 1usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(n, seed);
        let cut = (n as f64 * split) as usize;
        // Stripes of 300 events in 2 KiB blocks: a full read has the 8
        // blocks a stripe needs to be shared among threads.
        let log_opts = || log_opts().read_threads(threads);
        let log = AuditLog::open(dir.path(), opts(log_opts())).unwrap();
        let mut lsns = append(&log, &evs[..cut], 97);
        check_all(&log, &evs[..cut], &lsns, &filters);
        log.log().compact().unwrap();
        lsns.extend(append(&log, &evs[cut..], 131));
        check_all(&log, &evs, &lsns, &filters);
        log.log().compact().unwrap();
        check_all(&log, &evs, &lsns, &filters);
        drop(log);
        let log = AuditLog::open(dir.path(), opts(log_opts())).unwrap();
        check_all(&log, &evs, &lsns, &filters);
    }
}

/// While a background compactor swaps segments every few milliseconds,
/// every aggregate and query still sees each event exactly once.
#[test]
fn aggregates_during_compaction_count_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = log_opts().compaction(Compaction::Background(std::time::Duration::from_millis(2)));
    let log = Arc::new(AuditLog::open(dir.path(), opts(o)).unwrap());
    let evs = events(12_000, 5);
    let lsns = append(&log, &evs, 50);
    let stop = Arc::new(AtomicBool::new(false));
    // More appends beside, so that segments keep being sealed and compacted:
    // about a segment per pass, paced so that the log does not outgrow the
    // queries on a slow machine (unpaced, one run made 20,000 segments).
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let more = events(400, 6);
            while !stop.load(Ordering::Relaxed) {
                for e in &more {
                    let mut e = e.clone();
                    e.time = Timestamp(T0 - 1_000 * SEC); // outside every window below
                    log.append(&e).unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let f = Filter {
        since: Some(Timestamp(T0)),
        ..Filter::default()
    };
    let rare = Filter {
        types: vec!["PACKAGE_QUARANTINED".into()],
        since: Some(Timestamp(T0)),
        ..Filter::default()
    };
    for _ in 0..30 {
        assert_eq!(
            engine_groups(&log, &f, &[GroupBy::Type]),
            oracle_groups(&evs, &f, &[GroupBy::Type])
        );
        assert_eq!(
            log.count(&rare).unwrap(),
            oracle_groups(&evs, &rare, &[])[&vec![]]
        );
        let got: Vec<Lsn> = log.query(&rare, false).map(|r| r.unwrap().0).collect();
        let want: Vec<Lsn> = lsns
            .iter()
            .zip(&evs)
            .filter(|(_, e)| matches(&rare, e))
            .map(|(l, _)| *l)
            .collect();
        assert_eq!(got, want);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        !log.log().compacted_segments().is_empty(),
        "the compactor ran"
    );
}

/// A selective query reads a bounded share of the log wherever its events
/// are, and explain says so; counting by type reads no block at all.
#[test]
fn selective_queries_read_a_bounded_share_and_counts_come_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let o = log_opts()
        .segment_bytes(512 << 10)
        .compact_stripe_records(2000);
    let log = AuditLog::open(dir.path(), opts(o)).unwrap();
    let evs = events(40_000, 11);
    append(&log, &evs, 500);
    log.log().compact().unwrap();
    // A raw tail beside the compacted part.
    append(&log, &events(3_000, 12), 500);
    let rare = Filter {
        types: vec!["PACKAGE_QUARANTINED".into()],
        min_severity: Some(Severity::Warning),
        ..Filter::default()
    };
    let mut q = log.query_explained(&rare, false);
    let n = q.by_ref().count();
    let ex = q.explain().unwrap();
    let (read, total) = ex.blocks();
    assert!(n > 100, "{n}");
    // Bounds: under 1/5 of the blocks; of the raw tail, the frames its
    // postings name, plus at most the last part-chunk (256 frames) of each
    // raw segment, not yet summarised.
    assert!(read * 5 < total, "read {read} of {total} blocks:\n{ex}");
    let raw: Vec<_> = ex.segments.iter().filter(|p| !p.compacted).collect();
    let (raw_rows, raw_matches) = raw
        .iter()
        .fold((0, 0), |(r, m), p| (r + p.rows, m + p.records));
    assert!(
        raw_matches > 0 && raw_rows <= raw_matches + 256 * raw.len() as u64,
        "{ex}"
    );
    assert!(ex.rows() < 40 * n as u64, "{ex}");
    let window = Filter {
        since: Some(Timestamp(T0 + 20_000 * SEC)),
        until: Some(Timestamp(T0 + 20_600 * SEC)),
        ..Filter::default()
    };
    let mut q = log.query_explained(&window, false);
    assert!(q.by_ref().count() > 500);
    let ex = q.explain().unwrap();
    let (read, total) = ex.blocks();
    assert!(read * 10 < total, "read {read} of {total} blocks:\n{ex}");
    // Counting by type over the whole log: the compacted part from postings.
    let agg = log
        .aggregate(
            &Filter::default(),
            &[GroupBy::Type, GroupBy::Severity],
            None,
        )
        .unwrap();
    assert_eq!(agg.total, 43_000);
    let (read, _) = agg.explain.blocks();
    assert_eq!(read, 0, "{}", agg.explain);
    assert!(agg.from_index >= 40_000, "{}", agg.from_index);
    // Top N: the largest groups, largest first.
    let top = log
        .aggregate(&Filter::default(), &[GroupBy::Actor], Some(3))
        .unwrap();
    assert_eq!(top.groups.len(), 3);
    assert!(top.groups.windows(2).all(|w| w[0].count >= w[1].count));
    assert_eq!(top.total, 43_000);
}

/// `Log::seal` ends the active segment so that compaction takes it; the
/// next append starts a small segment, and nothing is lost or repeated
/// across a reopen.
#[test]
fn a_sealed_tail_is_compacted_and_a_small_segment_follows() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options::default()
        .durability(Durability::Buffered)
        .compaction(Compaction::Manual);
    let log = AuditLog::open(dir.path(), opts(o.clone())).unwrap();
    let evs = events(3000, 21);
    let mut lsns = append(&log, &evs[..2000], 100);
    // A fresh log's segment is 64 KiB, and they double as they fill.
    let raw = log.log().raw_segments();
    assert_eq!(raw[0].2, 64 << 10, "{raw:?}");
    assert!(raw.windows(2).all(|w| w[1].2 == 2 * w[0].2), "{raw:?}");
    assert!(log.log().seal().unwrap());
    assert!(!log.log().seal().unwrap(), "an empty segment is not sealed");
    log.log().compact().unwrap();
    let raw = log.log().raw_segments();
    assert_eq!(raw.len(), 1);
    assert_eq!((raw[0].2, raw[0].3), (64 << 10, 0), "{raw:?}");
    lsns.extend(append(&log, &evs[2000..], 100));
    check_all(&log, &evs, &lsns, &[]);
    drop(log);
    let log = AuditLog::open(dir.path(), opts(o)).unwrap();
    check_all(&log, &evs, &lsns, &[]);
}

const KILL_CHILD_DIR: &str = "AUDITLOG_QUERY_KILL_DIR";

fn kill_opts() -> Options {
    log_opts()
        .segment_bytes(128 << 10)
        .compaction(Compaction::Background(std::time::Duration::from_millis(3)))
}

/// The SIGKILL test's child: appends the test's events in order, in small
/// batches, until it is killed.
#[test]
#[ignore = "the SIGKILL test's child process, not a test"]
fn query_kill_child() {
    let Ok(dir) = std::env::var(KILL_CHILD_DIR) else {
        return;
    };
    let log = AuditLog::open(&dir, opts(kill_opts())).unwrap();
    for (i, chunk) in events(200_000, 77).chunks(10).enumerate() {
        log.append_batch(chunk).unwrap();
        if i == 100 {
            // 1,010 events are in (Buffered appends survive a process crash).
            use std::io::Write;
            let mut out = std::io::stdout();
            writeln!(out, "READY").unwrap();
            out.flush().unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// After a SIGKILL the raw tail's in-memory index is gone: a reopened log
/// builds it anew, and every query and aggregate still answers exactly what
/// the events that survived say (they are a prefix of those appended).
#[test]
fn after_sigkill_the_rebuilt_index_answers_what_the_events_say() {
    let exe = std::env::current_exe().unwrap();
    let all = events(200_000, 77);
    let mut rng = SplitMix64(0x51);
    for cycle in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "query_kill_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env(KILL_CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Once the child has 1,010 events in, kill it at a random moment.
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains("READY"))),
            "cycle {cycle}: the child never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(50 + rng.next() % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let log = AuditLog::open(dir.path(), opts(kill_opts())).unwrap();
        let got: Vec<(Lsn, Event)> = log
            .query(&Filter::default(), false)
            .map(|r| r.unwrap())
            .collect();
        let n = got.len();
        assert!(n >= 1010, "cycle {cycle}: only {n} events survived");
        assert_eq!(
            got.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            all[..n],
            "cycle {cycle}: the survivors are not a prefix"
        );
        let lsns: Vec<Lsn> = got.iter().map(|(l, _)| *l).collect();
        let filters = [
            Filter {
                types: vec!["PACKAGE_QUARANTINED".into()],
                ..Filter::default()
            },
            Filter {
                actor: Some("user3".into()),
                ip: Some("10.20.0.0/16".parse().unwrap()),
                ..Filter::default()
            },
            Filter {
                types: vec!["USER_AUTH_FAILED_*".into()],
                since: Some(Timestamp(T0 + (n as i64 / 3) * SEC)),
                failed: true,
                ..Filter::default()
            },
        ];
        check_all(&log, &all[..n], &lsns, &filters);
    }
}
