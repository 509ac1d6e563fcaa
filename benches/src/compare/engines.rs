//! Each engine's phases, run in a child process; and the machine's own limits.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog::event::json;
use auditlog::format::codec::{EventRef, TextField};
use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Event, Filter, GroupBy, GroupValue,
    Options, Severity, Timestamp,
};

use super::{digest, digest_counts, dir_bytes, emit, peak_rss, workload, Encoder, Questions};
use crate::{median, percentile};

/// Anonymous memory the harness itself allocates inside a load phase (the
/// LSN of every appended event, for comparing answers): not the engine's.
static HARNESS_ANON: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The engines, in table order.
pub const ENGINES: &[&str] = &["auditlog", "sqlite", "jsonl", "walrus", "okaywal"];

const THREADS: [usize; 3] = [1, 16, 64];

/// Runs one phase of one engine, printing `key value` lines.
pub fn child(engine: &str, phase: &str, events: u64, durable_secs: f64, store: &Path) {
    let w = workload(events);
    let q = Questions::for_workload(&w);
    match phase {
        "load" => {
            let evs: Vec<Event> = w.generate().collect();
            // The workload itself is held in memory: count only what the engine adds.
            let before = super::current_rss();
            let (anon_before, _) = super::rss_parts();
            HARNESS_ANON.store(0, Ordering::Relaxed);
            let sampler = super::MemSampler::start();
            match engine {
                "auditlog" => auditlog_load(store, &evs, &q),
                "sqlite" => sqlite::load(store, &evs, &q),
                "jsonl" => jsonl_load(store, &evs, &q),
                "walrus" => walrus::load(&evs, &q),
                "okaywal" => okaywal_load(store, &evs),
                _ => panic!("unknown engine {engine}"),
            }
            let (anon, file) = sampler.stop();
            emit("peak_rss", peak_rss().saturating_sub(before));
            let harness = HARNESS_ANON.load(Ordering::Relaxed);
            emit("peak_anon", anon.saturating_sub(anon_before + harness));
            emit("peak_file", file);
        }
        "durable" => {
            let evs: Vec<Event> = w.generate().take(20_000).collect();
            let secs = Duration::from_secs_f64(durable_secs);
            for threads in THREADS {
                let (n, mut lat) = durable(engine, store, &evs, threads, secs);
                let p99 = percentile(&mut lat, 0.99);
                emit(&format!("durable_{threads}"), n as f64 / secs.as_secs_f64());
                emit(&format!("durable_{threads}_p99_us"), p99.as_micros());
            }
        }
        "kill" => {
            let evs: Vec<Event> = w.generate().take(100_000).collect();
            keep_appending(engine, store, &evs);
        }
        "reopen" => {
            let t = Instant::now();
            let answer = reopen(engine, store, &q);
            emit("reopen_ms", t.elapsed().as_secs_f64() * 1e3);
            emit("reopen_answer", answer);
        }
        _ => panic!("unknown phase {phase}"),
    }
}

fn timed<T>(f: impl FnMut() -> T) -> (T, f64) {
    let mut f = f;
    let mut out = None;
    let ms: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            out = Some(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (out.expect("ran"), median(ms))
}

fn emit_query(name: &str, answer: String, ms: f64) {
    emit(&format!("{name}_answer"), answer);
    emit(&format!("{name}_ms"), ms);
}

// ---------------------------------------------------------------- auditlog

fn audit_opts(durability: Durability) -> AuditOptions {
    AuditOptions {
        log: Options::default()
            .durability(durability)
            .compaction(Compaction::Manual),
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    }
}

/// One of the harness's questions as an auditlog filter.
fn filter(q: &Questions, name: &str) -> Filter {
    q.filters()
        .into_iter()
        .find(|f| f.0 == name)
        .expect("a question")
        .1
}

fn auditlog_load(store: &Path, evs: &[Event], q: &Questions) {
    let dir = store.join("auditlog");
    let log = AuditLog::open(&dir, audit_opts(Durability::Buffered)).expect("open");
    let t = Instant::now();
    // Each event's LSN: catalog records take LSNs too, so positions are looked up.
    let mut at: Vec<u64> = Vec::with_capacity(evs.len());
    HARNESS_ANON.fetch_add((evs.len() * 8) as u64, Ordering::Relaxed);
    for e in evs {
        at.push(log.append(e).expect("append").0);
    }
    log.log().sync().expect("sync");
    emit("buffered", evs.len() as f64 / t.elapsed().as_secs_f64());
    {
        // The mode most applications will use: durable within 10 ms.
        let ten_ms = Durability::Interval(std::time::Duration::from_millis(10));
        let other =
            AuditLog::open(store.join("auditlog-interval"), audit_opts(ten_ms)).expect("open");
        let t = Instant::now();
        for e in evs {
            other.append(e).expect("append");
        }
        other.log().sync().expect("sync");
        emit(
            "interval_10ms",
            evs.len() as f64 / t.elapsed().as_secs_f64(),
        );
    }
    let _ = std::fs::remove_dir_all(store.join("auditlog-interval"));
    log.log().compact().expect("compact");
    let compacted: u64 = log.log().compacted_segments().iter().map(|c| c.bytes).sum();
    let tail_used: u64 = log.log().raw_segments().iter().map(|s| s.3).sum();
    emit("bytes_files", dir_bytes(&dir) as f64 / evs.len() as f64);
    emit(
        "bytes_used",
        (compacted + tail_used) as f64 / evs.len() as f64,
    );
    let q1 = filter(q, "q1");
    let q2 = filter(q, "q2");
    // The LSNs a query returns, timed; their positions among the appended
    // events (what answers are compared in), mapped after the timing: the
    // mapping is the harness's work, not the engine's.
    let lsns = |f: &Filter| -> Vec<u64> {
        log.query(f, false)
            .map(|r| r.expect("query").0 .0)
            .collect()
    };
    let positions = |lsns: Vec<u64>| -> Vec<u64> {
        lsns.into_iter()
            .map(|lsn| at.binary_search(&lsn).expect("an appended event") as u64 + 1)
            .collect()
    };
    // A query's answer (as compared across engines) and its median time.
    let answer = |f: &Filter| -> (String, f64) {
        let (l, ms) = timed(|| lsns(f));
        (digest(positions(l)), ms)
    };
    let (a, ms) = answer(&q1);
    emit_query("q1", a, ms);
    let (a, ms) = answer(&q2);
    emit_query("q2", a, ms);
    let (a, ms) = timed(|| {
        let agg = log
            .aggregate(&Filter::default(), &[GroupBy::Type], None)
            .expect("aggregate");
        digest_counts(&first_key_counts(&agg))
    });
    emit_query("q3", a, ms);
    let scan = filter(q, "scan");
    let (a, ms) = answer(&scan);
    emit_query("scan", a.clone(), ms);
    emit("scan_rate", evs.len() as f64 / (ms / 1e3));
    let scan_answer = a.clone();
    let q4 = filter(q, "q4");
    let (a, ms) = answer(&q4);
    emit_query("q4", a, ms);
    for name in ["q1", "q2", "q4", "q6", "scan"] {
        explain_blocks(&log, name, &filter(q, name));
    }
    let (a, ms) = timed(|| {
        let agg = log
            .aggregate(&Filter::default(), &[GroupBy::Day, GroupBy::Severity], None)
            .expect("aggregate");
        let counts = agg
            .groups
            .iter()
            .map(|g| {
                let GroupValue::Time(day, _) = g.key[0] else {
                    panic!("a day")
                };
                let day = day.0.div_euclid(86_400_000_000_000);
                (format!("{day}|{}", g.key[1]), g.count)
            })
            .collect();
        digest_counts(&counts)
    });
    emit_query("q5", a, ms);
    let q6 = filter(q, "q6");
    let (a, ms) = answer(&q6);
    emit_query("q6", a, ms);
    let failed = Filter {
        types: vec!["USER_AUTH_FAILED_*".into()],
        ..Filter::default()
    };
    let (a, ms) = timed(|| {
        let agg = log
            .aggregate(&failed, &[GroupBy::Actor], Some(q.top))
            .expect("aggregate");
        digest_counts(&first_key_counts(&agg))
    });
    emit_query("q7", a, ms);
    let selective = Filter {
        types: vec!["PACKAGE_QUARANTINED".into()],
        min_severity: Some(Severity::Warning),
        ..Filter::default()
    };
    let (_, ms) = timed(|| lsns(&selective).len());
    emit("selective_ms", ms);
    let everything = Filter::default();
    let (_, ms) = timed(|| log.query(&everything, false).count());
    emit("full_ms", ms);
    // The same scan with its stripes read on two threads, by a read-only
    // handle opened once the writer's is closed: one handle at a time, as an
    // application has (two would hold two indexes of the log, which the
    // memory row counts).
    drop(log);
    {
        let two = AuditLog::open(
            &dir,
            AuditOptions {
                log: Options::default().read_only(true).read_threads(2),
                ..audit_opts(Durability::Buffered)
            },
        )
        .expect("open read-only");
        let (l, ms) = timed(|| {
            two.query(&scan, false)
                .map(|r| r.expect("query").0 .0)
                .collect::<Vec<u64>>()
        });
        let b = digest(positions(l));
        assert_eq!(scan_answer, b, "the scan on two threads answers as on one");
        emit("scan_rate_two", evs.len() as f64 / (ms / 1e3));
    }
    let log = AuditLog::open(&dir, audit_opts(Durability::Buffered)).expect("reopen");
    // What `auditlog compact` does with no writer about: the active segment
    // too; then every file of the directory counts.
    log.log().seal().expect("seal");
    log.log().compact().expect("compact");
    emit(
        "bytes_all_compacted",
        dir_bytes(&dir) as f64 / evs.len() as f64,
    );
}

/// The counts of a one-key aggregate, by the key as text.
fn first_key_counts(agg: &auditlog::Aggregate) -> BTreeMap<String, u64> {
    agg.groups
        .iter()
        .map(|g| (g.key[0].to_string(), g.count))
        .collect()
}

/// What share of compacted blocks and raw chunks a query read.
fn explain_blocks(log: &AuditLog, name: &str, f: &Filter) {
    let mut query = log.query_explained(f, false);
    for r in query.by_ref() {
        r.expect("query");
    }
    let ex = query.explain().expect("explained");
    let (read, total) = ex.blocks();
    let (frames, all_frames) = ex.frames();
    let (chunks, all_chunks) = ex.raw_chunks();
    emit(
        &format!("{name}_read"),
        format!(
            "{read}/{total}_blocks_({frames}/{all_frames}_frames),{chunks}/{all_chunks}_chunks"
        ),
    );
}

// ---------------------------------------------------------------- JSON lines

fn jsonl_load(store: &Path, evs: &[Event], q: &Questions) {
    let path = store.join("events.jsonl");
    let t = Instant::now();
    let mut out = BufWriter::new(File::create(&path).expect("create"));
    for e in evs {
        out.write_all(json::to_json(e, None).as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .expect("write");
    }
    out.into_inner().expect("flush").sync_all().expect("sync");
    emit("buffered", evs.len() as f64 / t.elapsed().as_secs_f64());
    let len = std::fs::metadata(&path).expect("size").len();
    emit("bytes_files", len as f64 / evs.len() as f64);
    emit("bytes_used", len as f64 / evs.len() as f64);
    let zpath = store.join("events.jsonl.zst");
    zstd::stream::copy_encode(
        File::open(&path).expect("open"),
        File::create(&zpath).expect("create"),
        3,
    )
    .expect("zstd");
    let zlen = std::fs::metadata(&zpath).expect("size").len();
    emit("bytes_zstd", zlen as f64 / evs.len() as f64);
    let scan = |keep: &dyn Fn(&Event) -> bool| -> Vec<u64> {
        let f = BufReader::new(File::open(&path).expect("open"));
        let catalog = Catalog::builtin("filetransfer-2.0").expect("built in");
        let sev = |t: &str| catalog.get(t).map(|t| t.severity);
        f.lines()
            .enumerate()
            .filter_map(|(i, l)| {
                let e = json::from_json(&l.expect("read"), &sev).expect("parse");
                keep(&e).then_some(i as u64 + 1)
            })
            .collect()
    };
    let (v, ms) = timed(|| scan(&|e| q.q1(e)));
    let a = digest(v);
    emit_query("q1", a, ms);
    let (v, ms) = timed(|| scan(&|e| q.q2(e)));
    let a = digest(v);
    emit_query("q2", a, ms);
    let (a, ms) = timed(|| {
        let counts = Mutex::new(BTreeMap::new());
        scan(&|e| {
            *counts
                .lock()
                .expect("lock")
                .entry(e.event_type.clone())
                .or_insert(0u64) += 1;
            false
        });
        digest_counts(&counts.into_inner().expect("lock"))
    });
    emit_query("q3", a, ms);
    let (v, ms) = timed(|| scan(&|e| e.source.as_deref() == Some(q.source)));
    let a = digest(v);
    emit_query("scan", a, ms);
    emit("scan_rate", evs.len() as f64 / (ms / 1e3));
    let (v, ms) = timed(|| scan(&|e| q.q4(e)));
    let a = digest(v);
    emit_query("q4", a, ms);
    let (a, ms) = timed(|| {
        let counts = Mutex::new(BTreeMap::new());
        scan(&|e| {
            *counts
                .lock()
                .expect("lock")
                .entry(Questions::q5_key(e))
                .or_insert(0u64) += 1;
            false
        });
        digest_counts(&counts.into_inner().expect("lock"))
    });
    emit_query("q5", a, ms);
    let (v, ms) = timed(|| scan(&|e| q.q6(e)));
    let a = digest(v);
    emit_query("q6", a, ms);
    let (a, ms) = timed(|| {
        let counts = Mutex::new(BTreeMap::new());
        scan(&|e| {
            if let Some(actor) = q.q7_actor(e) {
                *counts
                    .lock()
                    .expect("lock")
                    .entry(actor.to_string())
                    .or_insert(0u64) += 1;
            }
            false
        });
        digest_counts(&q.q7_top(counts.into_inner().expect("lock")))
    });
    emit_query("q7", a, ms);
}

// ---------------------------------------------------------------- SQLite

mod sqlite {
    use super::*;
    use rusqlite::{params, Connection};

    pub fn open(store: &Path, full: bool) -> Connection {
        let c = Connection::open(store.join("audit.sqlite")).expect("open");
        c.busy_timeout(Duration::from_secs(60)).expect("timeout");
        c.pragma_update(None, "journal_mode", "WAL").expect("wal");
        c.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })
            .expect("sync");
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY, time INTEGER NOT NULL, type TEXT NOT NULL,
                 severity INTEGER NOT NULL, source TEXT, ip TEXT, actor_id TEXT, actor TEXT,
                 actor_account TEXT, session TEXT, entity_type TEXT, entity_id TEXT,
                 result INTEGER, attrs TEXT, ipv4 INTEGER);
             CREATE INDEX IF NOT EXISTS by_type ON events (type, severity, time);
             CREATE INDEX IF NOT EXISTS by_time ON events (time);
             CREATE INDEX IF NOT EXISTS by_actor ON events (actor, time);
             CREATE INDEX IF NOT EXISTS by_ipv4 ON events (ipv4, time);",
        )
        .expect("schema");
        c
    }

    pub fn insert(c: &Connection, e: &Event) {
        let attrs = (!e.attrs.is_empty()).then(|| serde_json::to_string(&e.attrs).expect("attrs"));
        c.prepare_cached(
            "INSERT INTO events (time, type, severity, source, ip, actor_id, actor,
                 actor_account, session, entity_type, entity_id, result, attrs, ipv4)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .expect("prepare")
        .execute(params![
            e.time.0,
            e.event_type,
            e.severity.code(),
            e.source,
            e.ip.map(|i| i.to_string()),
            e.actor_id,
            e.actor,
            e.actor_account,
            e.session,
            e.entity_type,
            e.entity_id,
            e.result,
            attrs,
            e.ip.and_then(|ip| match ip {
                std::net::IpAddr::V4(a) => Some(i64::from(u32::from(a))),
                std::net::IpAddr::V6(_) => None,
            }),
        ])
        .expect("insert");
    }

    pub fn q1(c: &Connection, q: &Questions) -> Vec<u64> {
        // A range on `type` (not LIKE) so the (type, severity, time) index is used.
        ids(
            c,
            "SELECT id FROM events WHERE type >= 'USER_AUTH_FAILED_' AND type < 'USER_AUTH_FAILED`'
               AND ip = ?1 AND time >= ?2 AND time < ?3",
            &[
                &q.attacker.to_string() as &dyn rusqlite::ToSql,
                &q.day.0 .0,
                &q.day.1 .0,
            ],
        )
    }

    /// The ids of the rows `sql` (a `SELECT id FROM ...`) selects, each
    /// row read whole and built into an `Event`, as auditlog's queries
    /// return events (an application shows what it found).
    fn ids(c: &Connection, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Vec<u64> {
        let sql = sql.replacen(
            "SELECT id FROM",
            "SELECT id, time, type, severity, source, ip, actor_id, actor, actor_account,
                    session, entity_type, entity_id, result, attrs FROM",
            1,
        );
        let mut st = c.prepare_cached(&sql).expect("prepare");
        let rows = st
            .query_map(p, |r| {
                let sev = Severity::from_code(r.get(3)?).expect("a severity");
                let mut e = Event::new(Timestamp(r.get(1)?), r.get::<_, String>(2)?, sev);
                e.source = r.get(4)?;
                e.ip = r.get::<_, Option<String>>(5)?.and_then(|s| s.parse().ok());
                e.actor_id = r.get(6)?;
                e.actor = r.get(7)?;
                e.actor_account = r.get(8)?;
                e.session = r.get(9)?;
                e.entity_type = r.get(10)?;
                e.entity_id = r.get(11)?;
                e.result = r.get(12)?;
                if let Some(a) = r.get::<_, Option<String>>(13)? {
                    e.attrs = serde_json::from_str(&a).expect("attrs");
                }
                Ok((r.get::<_, i64>(0)? as u64, e))
            })
            .expect("query")
            .map(|r| r.expect("row").0)
            .collect();
        rows
    }

    pub fn load(store: &Path, evs: &[Event], q: &Questions) {
        let mut c = open(store, false);
        let t = Instant::now();
        for chunk in evs.chunks(1000) {
            let tx = c.transaction().expect("begin");
            for e in chunk {
                insert(&tx, e);
            }
            tx.commit().expect("commit");
        }
        emit("buffered", evs.len() as f64 / t.elapsed().as_secs_f64());
        c.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .expect("checkpoint");
        emit("bytes_files", dir_bytes(store) as f64 / evs.len() as f64);
        emit("bytes_used", dir_bytes(store) as f64 / evs.len() as f64);
        let (v, ms) = timed(|| q1(&c, q));
        let a = digest(v);
        emit_query("q1", a, ms);
        let (v, ms) = timed(|| {
            ids(
                &c,
                "SELECT id FROM events WHERE type IN (?1, ?2) AND severity >= ?3",
                &[&q.two_types[0], &q.two_types[1], &Severity::Warning.code()],
            )
        });
        let a = digest(v);
        emit_query("q2", a, ms);
        let (a, ms) = timed(|| {
            let mut st = c
                .prepare_cached("SELECT type, count(*) FROM events GROUP BY type")
                .expect("prepare");
            let counts: BTreeMap<String, u64> = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            digest_counts(&counts)
        });
        emit_query("q3", a, ms);
        let (v, ms) = timed(|| {
            ids(
                &c,
                // A full scan: no index on source.
                "SELECT id FROM events WHERE source = ?1",
                &[&q.source],
            )
        });
        let a = digest(v);
        emit_query("scan", a, ms);
        emit("scan_rate", evs.len() as f64 / (ms / 1e3));
        let (v, ms) = timed(|| {
            ids(
                &c,
                "SELECT id FROM events WHERE actor = ?1 AND time >= ?2 AND time < ?3",
                &[&q.actor, &q.week.0 .0, &q.week.1 .0],
            )
        });
        let a = digest(v);
        emit_query("q4", a, ms);
        let (a, ms) = timed(|| {
            let mut st = c
                .prepare_cached(
                    "SELECT time / 86400000000000, severity, count(*) FROM events GROUP BY 1, 2",
                )
                .expect("prepare");
            let counts: BTreeMap<String, u64> = st
                .query_map([], |r| {
                    let sev = Severity::from_code(r.get::<_, u8>(1)?).expect("a severity");
                    Ok((
                        format!("{}|{sev}", r.get::<_, i64>(0)?),
                        r.get::<_, i64>(2)? as u64,
                    ))
                })
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            digest_counts(&counts)
        });
        emit_query("q5", a, ms);
        let (net, prefix) = q
            .net
            .to_string()
            .split_once('/')
            .map(|(a, p)| {
                let a: std::net::Ipv4Addr = a.parse().expect("an IPv4 network");
                (i64::from(u32::from(a)), p.parse::<u32>().expect("a prefix"))
            })
            .expect("a network");
        let net_end = net + (1i64 << (32 - prefix));
        let (v, ms) = timed(|| {
            ids(
                &c,
                "SELECT id FROM events WHERE ipv4 >= ?1 AND ipv4 < ?2 AND time >= ?3 AND time < ?4",
                &[&net, &net_end, &q.day.0 .0, &q.day.1 .0],
            )
        });
        let a = digest(v);
        emit_query("q6", a, ms);
        let (a, ms) = timed(|| {
            let mut st = c
                .prepare_cached(
                    "SELECT COALESCE(actor, ''), count(*) AS n FROM events
                     WHERE type >= 'USER_AUTH_FAILED_' AND type < 'USER_AUTH_FAILED`'
                     GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?1",
                )
                .expect("prepare");
            let counts: BTreeMap<String, u64> = st
                .query_map([q.top as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            digest_counts(&counts)
        });
        emit_query("q7", a, ms);
    }
}

// ---------------------------------------------------------------- walrus

mod walrus {
    use super::*;
    use walrus_rust::{FsyncSchedule, ReadConsistency, Walrus};

    pub const TOPIC: &str = "audit";

    pub fn open(sync_each: bool) -> Walrus {
        let schedule = if sync_each {
            FsyncSchedule::SyncEach
        } else {
            FsyncSchedule::NoFsync
        };
        Walrus::with_consistency_and_schedule(ReadConsistency::StrictlyAtOnce, schedule)
            .expect("open walrus")
    }

    pub fn load(evs: &[Event], q: &Questions) {
        let wal = open(false);
        let mut enc = Encoder::default();
        let mut buf = Vec::new();
        let t = Instant::now();
        for e in evs {
            buf.clear();
            enc.encode(e, &mut buf);
            wal.append_for_topic(TOPIC, &buf).expect("append");
        }
        emit("buffered", evs.len() as f64 / t.elapsed().as_secs_f64());
        let dir = std::env::var_os("WALRUS_DATA_DIR").expect("set by the parent");
        emit(
            "bytes_files",
            dir_bytes(Path::new(&dir)) as f64 / evs.len() as f64,
        );
        // A full filtered scan: read every entry, decode, keep one source's.
        let t = Instant::now();
        let mut n = 0u64;
        let mut hits = 0u64;
        while let Some(entries) = wal
            .batch_read_for_topic(TOPIC, 4 << 20, true)
            .ok()
            .filter(|v| !v.is_empty())
        {
            for en in entries {
                n += 1;
                if EventRef::parse(&en.data)
                    .is_ok_and(|r| r.text(TextField::Source) == Some(q.source))
                {
                    hits += 1;
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        emit("scan_rate", n as f64 / secs);
        emit("scan_hits", hits);
    }
}

// ---------------------------------------------------------------- okaywal

#[derive(Debug)]
struct KeepAll;

impl okaywal::LogManager for KeepAll {
    fn recover(&mut self, _entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _reader: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn okaywal_open(store: &Path) -> okaywal::WriteAheadLog {
    okaywal::WriteAheadLog::recover(store.join("okaywal"), KeepAll).expect("open okaywal")
}

/// One okaywal entry holding `chunk`'s events, committed (durable).
fn okaywal_commit(
    wal: &okaywal::WriteAheadLog,
    enc: &mut Encoder,
    buf: &mut Vec<u8>,
    chunk: &[Event],
) {
    let mut entry = wal.begin_entry().expect("begin");
    for e in chunk {
        buf.clear();
        enc.encode(e, buf);
        entry.write_chunk(buf).expect("write");
    }
    entry.commit().expect("commit");
}

fn okaywal_load(store: &Path, evs: &[Event]) {
    let wal = okaywal_open(store);
    let mut enc = Encoder::default();
    let mut buf = Vec::new();
    let t = Instant::now();
    // okaywal has no unsynced append: an entry is durable when committed.
    // Entries of 1,000 records, like SQLite's transactions.
    for chunk in evs.chunks(1000) {
        okaywal_commit(&wal, &mut enc, &mut buf, chunk);
    }
    emit("buffered", evs.len() as f64 / t.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- durable appends

/// Appends from `threads` threads for `secs`, each call durable on return:
/// (appends done, latency of each).
fn durable(
    engine: &str,
    store: &Path,
    evs: &[Event],
    threads: usize,
    secs: Duration,
) -> (u64, Vec<Duration>) {
    let dir = store.join(format!("durable-{threads}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let stop = Arc::new(AtomicBool::new(false));
    type Op = Box<dyn Fn(&Event) + Send + Sync>;
    let op: Arc<Op> = Arc::new(match engine {
        "auditlog" => {
            let log =
                AuditLog::open(dir.join("auditlog"), audit_opts(Durability::Sync)).expect("open");
            Box::new(move |e| {
                log.append(e).expect("append");
            })
        }
        "sqlite" => {
            drop(sqlite::open(&dir, true));
            let dir = dir.clone();
            thread_local! {
                static CONN: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
            }
            Box::new(move |e| {
                CONN.with(|c| {
                    let mut c = c.borrow_mut();
                    let c = c.get_or_insert_with(|| sqlite::open(&dir, true));
                    sqlite::insert(c, e); // one transaction per event, synchronous=FULL
                })
            })
        }
        "jsonl" => {
            let file = Mutex::new(File::create(dir.join("events.jsonl")).expect("create"));
            Box::new(move |e| {
                let line = json::to_json(e, None) + "\n";
                let mut f = file.lock().expect("lock");
                f.write_all(line.as_bytes())
                    .and_then(|()| f.sync_data())
                    .expect("write");
            })
        }
        "walrus" => {
            let wal = walrus::open(true);
            let enc = Mutex::new(Encoder::default());
            Box::new(move |e| {
                let mut buf = Vec::new();
                enc.lock().expect("lock").encode(e, &mut buf);
                wal.append_for_topic("durable", &buf).expect("append");
            })
        }
        "okaywal" => {
            let wal = okaywal_open(&dir);
            let enc = Mutex::new(Encoder::default());
            Box::new(move |e| {
                let mut buf = Vec::new();
                enc.lock().expect("lock").encode(e, &mut buf);
                let mut entry = wal.begin_entry().expect("begin");
                entry.write_chunk(&buf).expect("write");
                entry.commit().expect("commit");
            })
        }
        _ => panic!("unknown engine {engine}"),
    });
    let evs = Arc::new(evs.to_vec());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, stop, evs) = (op.clone(), stop.clone(), evs.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let s = Instant::now();
                    op(&evs[i % evs.len()]);
                    lat.push(s.elapsed());
                    i += threads;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("thread"));
    }
    (all.len() as u64, all)
}

// ---------------------------------------------------------------- kill, reopen

/// How many events the writer appends to the loaded log before the parent
/// kills it: the same for every engine, so that each recovers as much (a
/// fixed time would make a faster writer recover more).
pub const APPENDED_BEFORE_KILL: usize = 200_000;

fn keep_appending(engine: &str, store: &Path, evs: &[Event]) {
    let mut enc = Encoder::default();
    let mut buf = Vec::new();
    let mut ready = false;
    let mut signal = |i: usize| {
        if i == APPENDED_BEFORE_KILL && !ready {
            ready = true;
            println!("READY");
            let _ = std::io::stdout().flush();
        }
    };
    match engine {
        "auditlog" => {
            let log = AuditLog::open(store.join("auditlog"), audit_opts(Durability::Buffered))
                .expect("open");
            for (i, e) in evs.iter().cycle().enumerate() {
                log.append(e).expect("append");
                signal(i);
            }
        }
        "sqlite" => {
            let mut c = sqlite::open(store, false);
            for (i, chunk) in evs.chunks(100).cycle().enumerate() {
                let tx = c.transaction().expect("begin");
                for e in chunk {
                    sqlite::insert(&tx, e);
                }
                tx.commit().expect("commit");
                signal(i * 100);
            }
        }
        "jsonl" => {
            let mut out = BufWriter::new(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(store.join("events.jsonl"))
                    .expect("open"),
            );
            for (i, e) in evs.iter().cycle().enumerate() {
                out.write_all((json::to_json(e, None) + "\n").as_bytes())
                    .expect("write");
                signal(i);
            }
        }
        "walrus" => {
            let wal = walrus::open(false);
            for (i, e) in evs.iter().cycle().enumerate() {
                buf.clear();
                enc.encode(e, &mut buf);
                wal.append_for_topic("after", &buf).expect("append");
                signal(i);
            }
        }
        "okaywal" => {
            let wal = okaywal_open(store);
            for (i, chunk) in evs.chunks(100).cycle().enumerate() {
                okaywal_commit(&wal, &mut enc, &mut buf, chunk);
                signal(i * 100);
            }
        }
        _ => panic!("unknown engine {engine}"),
    }
}

/// Opens the store after the writer was killed and answers Q1 (stores
/// without queries: reads the first record). Returns what it found.
fn reopen(engine: &str, store: &Path, q: &Questions) -> String {
    match engine {
        "auditlog" => {
            let t = Instant::now();
            let log = AuditLog::open(store.join("auditlog"), audit_opts(Durability::Buffered))
                .expect("open");
            emit("reopen_open_ms", t.elapsed().as_secs_f64() * 1e3);
            let n = log
                .query(&filter(q, "q1"), false)
                .count_matches()
                .expect("query");
            format!("q1 {n} events")
        }
        "sqlite" => {
            let c = sqlite::open(store, false);
            format!("q1 {} events", sqlite::q1(&c, q).len())
        }
        "jsonl" => {
            let catalog = Catalog::builtin("filetransfer-2.0").expect("built in");
            let sev = |t: &str| catalog.get(t).map(|t| t.severity);
            let f = BufReader::new(File::open(store.join("events.jsonl")).expect("open"));
            // A killed writer may leave half a line: skip what does not parse.
            let n = f
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| json::from_json(&l, &sev).ok())
                .filter(|e| q.q1(e))
                .count();
            format!("q1 {n} events")
        }
        "walrus" => {
            let wal = walrus::open(false);
            let first = wal.read_next(walrus::TOPIC, false).expect("read");
            format!("first record: {}", first.is_some())
        }
        "okaywal" => {
            let wal = okaywal_open(store);
            drop(wal);
            "opened (no reads without a checkpointer)".into()
        }
        _ => panic!("unknown engine {engine}"),
    }
}

// ---------------------------------------------------------------- the machine

/// The machine's own limits, measured now: sequential write of the encoded
/// events, fdatasync latency, memcpy bandwidth.
pub fn machine(dir: &Path, events: u64) -> BTreeMap<String, f64> {
    std::fs::create_dir_all(dir).expect("dir");
    let mut m = BTreeMap::new();
    let mut enc = Encoder::default();
    let mut bytes = Vec::new();
    for e in workload(events).generate() {
        enc.encode(&e, &mut bytes);
    }
    let path = dir.join("sequential");
    let t = Instant::now();
    let mut f = File::create(&path).expect("create");
    for chunk in bytes.chunks(1 << 20) {
        f.write_all(chunk).expect("write");
    }
    f.sync_all().expect("sync");
    let secs = t.elapsed().as_secs_f64();
    m.insert(
        "seq_write_mib_s".into(),
        bytes.len() as f64 / secs / (1 << 20) as f64,
    );
    m.insert("seq_write_events_s".into(), events as f64 / secs);
    let mut f = File::create(dir.join("fsync")).expect("create");
    let mut lat: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&[0x5a; 128])
                .and_then(|()| f.sync_data())
                .expect("sync");
            t.elapsed()
        })
        .collect();
    m.insert(
        "fdatasync_p50_us".into(),
        percentile(&mut lat, 0.5).as_micros() as f64,
    );
    m.insert(
        "fdatasync_p99_us".into(),
        percentile(&mut lat, 0.99).as_micros() as f64,
    );
    let src = vec![0x5au8; 256 << 20];
    let mut dst = vec![1u8; 256 << 20];
    dst.copy_from_slice(&src); // every page touched before timing
    let t = Instant::now();
    for _ in 0..4 {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    m.insert(
        "memcpy_gib_s".into(),
        (4 * dst.len()) as f64 / (1u64 << 30) as f64 / t.elapsed().as_secs_f64(),
    );
    let _ = std::fs::remove_dir_all(dir);
    m
}
