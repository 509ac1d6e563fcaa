//! Tamper evidence's goals (issue 12), on the demo workload:
//!
//! ```text
//! cargo run --release -p auditlog-bench --bin seal -- [--events N] [--dir PATH]
//! ```
//!
//! - appends with sealing on against off: buffered (one writer, batches of
//!   1,000) and durable (16 writers, `Sync`), median of 3 runs each;
//! - the sealer's rate on one core: N events appended unsealed, then one
//!   round hashes them all (the sealer is one thread);
//! - `verify_seal`'s rate, which hashes every record again on every core;
//! - the bytes `TREE` and `CHECKPOINTS` add per event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Event, Options, SealCheck, SealKey,
};
use auditlog_bench::median;
use auditlog_cli::workload::Workload;

fn opts(seal: bool, durability: Durability) -> AuditOptions {
    AuditOptions {
        log: Options::default()
            .durability(durability)
            .compaction(Compaction::Manual),
        catalog: Catalog::builtin("filetransfer-2.0"),
        seal_key: seal.then(|| SealKey::from_seed("bench", [5; 32])),
        ..AuditOptions::default()
    }
}

fn fresh(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Buffered appends of `events`, in batches of 1,000; events/s.
fn buffered(dir: &Path, events: &[Event], seal: bool) -> f64 {
    let log = AuditLog::open(dir, opts(seal, Durability::Buffered)).unwrap();
    let t = Instant::now();
    for chunk in events.chunks(1000) {
        log.append_batch(chunk).unwrap();
    }
    let rate = events.len() as f64 / t.elapsed().as_secs_f64();
    drop(log);
    rate
}

/// Durable appends from 16 writers for two seconds; events/s.
fn durable(dir: &Path, events: &Arc<Vec<Event>>, seal: bool) -> f64 {
    let log = Arc::new(AuditLog::open(dir, opts(seal, Durability::Sync)).unwrap());
    let stop = Instant::now() + Duration::from_secs(2);
    let t = Instant::now();
    let n: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|w| {
                let (log, events) = (log.clone(), events.clone());
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < stop {
                        log.append(&events[(w * 7919 + n as usize) % events.len()])
                            .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    n as f64 / t.elapsed().as_secs_f64()
}

fn size_of(dir: &Path, name: &str) -> u64 {
    std::fs::metadata(dir.join(name)).map_or(0, |m| m.len())
}

fn main() {
    let mut events = 2_000_000u64;
    let mut root = std::env::temp_dir().join("auditlog-seal-bench");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--events N")
            }
            "--dir" => root = PathBuf::from(args.next().expect("--dir PATH")),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(&root).unwrap();
    let w = Workload {
        events,
        ..Workload::default()
    };
    let all: Vec<Event> = w.generate().collect();
    println!(
        "tamper evidence, {events} demo events, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let (mut off, mut on) = (Vec::new(), Vec::new());
    for i in 0..3 {
        off.push(buffered(&fresh(&root, &format!("off{i}")), &all, false));
        on.push(buffered(&fresh(&root, &format!("on{i}")), &all, true));
    }
    let (b_off, b_on) = (median(off.clone()), median(on.clone()));
    let sample = Arc::new(all[..100_000.min(all.len())].to_vec());
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for i in 0..3 {
        off.push(durable(&fresh(&root, &format!("doff{i}")), &sample, false));
        on.push(durable(&fresh(&root, &format!("don{i}")), &sample, true));
    }
    let (d_off, d_on) = (median(off.clone()), median(on.clone()));
    println!("| appends | sealing off | sealing on | change |");
    println!("|---|---:|---:|---:|");
    println!(
        "| buffered, one writer | {:.2} M/s | {:.2} M/s | {:+.1}% |",
        b_off / 1e6,
        b_on / 1e6,
        (b_on / b_off - 1.0) * 100.0
    );
    println!(
        "| durable, 16 writers | {:.1} k/s | {:.1} k/s | {:+.1}% |",
        d_off / 1e3,
        d_on / 1e3,
        (d_on / d_off - 1.0) * 100.0
    );

    // The sealer on one core: a log written unsealed, then sealed at once.
    let dir = fresh(&root, "sealer");
    buffered(&dir, &all, false);
    let log = AuditLog::open(&dir, opts(true, Durability::Buffered)).unwrap();
    let t = Instant::now();
    let st = log.seal_now().unwrap();
    let sealer = st.sealed as f64 / t.elapsed().as_secs_f64();
    assert!(st.error.is_none(), "{st:?}");
    drop(log);
    let ro = AuditLog::open(
        &dir,
        AuditOptions {
            log: Options::default().read_only(true),
            ..opts(false, Durability::Buffered)
        },
    )
    .unwrap();
    let mut rates = Vec::new();
    let mut hashed = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = ro.verify_seal(&SealCheck::default()).unwrap();
        assert!(!r.is_tampered(), "{r:?}");
        hashed = r.records_hashed;
        rates.push(r.records_hashed as f64 / t.elapsed().as_secs_f64());
    }
    let verify = median(rates.clone());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // Storage: a log sealed as it is written (a checkpoint a second).
    let on_dir = root.join("on0");
    let extra = size_of(&on_dir, "TREE") + size_of(&on_dir, "CHECKPOINTS");
    println!();
    println!("| measure | figure |");
    println!("|---|---:|");
    println!("| sealer, one thread | {:.2} M records/s |", sealer / 1e6);
    println!(
        "| verify_seal, all cores ({hashed} records) | {:.2} M records/s ({:.2} M/s per core) |",
        verify / 1e6,
        verify / 1e6 / cores
    );
    println!(
        "| TREE + CHECKPOINTS | {extra} bytes, {:.3} B/event |",
        extra as f64 / events as f64
    );
    let _ = std::fs::remove_dir_all(&root);
}
