//! Builds (once) a demo log in a directory, compacted, and times one query
//! shape many times: for profiling the read path (`perf record`).
//!
//! `cargo run --release -p auditlog-bench --bin query_probe -- DIR EVENTS SHAPE REPEAT`
//! with SHAPE one of the compare harness's `q1`, `q2`, `q4`, `q6`, `scan`, or
//! `count` (everything counted), anything else: every event.

use std::time::Instant;

use auditlog::{AuditLog, AuditOptions, Catalog, Compaction, Durability, Filter, Options};
use auditlog_bench::compare::{workload, Questions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let events: u64 = args[2].parse().expect("events");
    let shape = args[3].as_str();
    let repeat: usize = args[4].parse().expect("repeat");
    let fresh = !dir.exists();
    let opts = AuditOptions {
        log: Options::default()
            .durability(Durability::Buffered)
            .compaction(Compaction::Manual)
            .read_threads(
                std::env::var("PROBE_READ_THREADS").map_or(1, |v| v.parse().expect("threads")),
            )
            .compact_block_bytes(
                std::env::var("PROBE_BLOCK_KIB").map_or(64, |v| v.parse().expect("KiB")) << 10,
            ),
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    };
    let t = Instant::now();
    let log = AuditLog::open(&dir, opts).expect("open");
    eprintln!("open: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let w = workload(events);
    let anon = || auditlog_bench::compare::rss_parts().0 >> 20;
    if fresh {
        eprintln!("anon before: {} MiB", anon());
        let mut batch = Vec::with_capacity(1000);
        for e in w.generate() {
            batch.push(e);
            if batch.len() == 1000 {
                log.append_batch(&batch).expect("append");
                batch.clear();
            }
        }
        log.append_batch(&batch).expect("append");
        eprintln!("anon after appends: {} MiB", anon());
        let sampler = auditlog_bench::compare::MemSampler::start();
        log.log().compact().expect("compact");
        eprintln!(
            "anon after compaction: {} MiB (peak during it {} MiB)",
            anon(),
            sampler.stop().0 >> 20
        );
    }
    let q = Questions::for_workload(&w);
    let f = q
        .filters()
        .into_iter()
        .find(|f| f.0 == shape)
        .map_or_else(Filter::default, |f| f.1);
    let sampler = auditlog_bench::compare::MemSampler::start();
    for _ in 0..repeat {
        let t = Instant::now();
        let n = if shape == "count" {
            log.count(&f).expect("count") as usize
        } else {
            log.query(&f, false).count()
        };
        eprintln!("{shape}: {n} in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!(
        "anon after queries: {} MiB (peak during them {} MiB)",
        anon(),
        sampler.stop().0 >> 20
    );
    let mut qe = log.query_explained(&f, false);
    let n = qe.by_ref().count();
    eprintln!("{n}\n{}", qe.explain().unwrap());
}
