//! The encode + append path alone, for a profiler (issue 14): 200,000 demo
//! events are generated first, then appended `--rounds` times one at a time
//! (`AuditLog::append`, buffered), so that appending is most of the run.
//!
//! ```text
//! cargo run --release -p auditlog-bench --bin append_probe -- [--rounds N] [--fields]
//! perf record -g target/release/append_probe --rounds 40
//! ```
//!
//! `--fields` appends borrowed fields (`AuditLog::append_fields`) instead.

use std::time::Instant;

use auditlog_cli::workload::Workload;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rounds = 20u64;
    let mut fields = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds N")
            }
            "--fields" => fields = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let log = auditlog_bench::demo_log(tmp.path());
    let events: Vec<_> = Workload {
        events: 200_000,
        ..Workload::default()
    }
    .generate()
    .collect();
    let borrowed: Vec<_> = events.iter().map(|e| e.fields()).collect();
    let started = Instant::now();
    for _ in 0..rounds {
        if fields {
            for e in &borrowed {
                log.append_fields(e).unwrap();
            }
        } else {
            for e in &events {
                log.append(e).unwrap();
            }
        }
    }
    let n = rounds * events.len() as u64;
    let s = started.elapsed().as_secs_f64();
    println!(
        "{n} appends in {s:.2} s: {:.0} k/s ({})",
        n as f64 / s / 1e3,
        if fields { "append_fields" } else { "append" }
    );
    let st = log.log().rollover_stats();
    println!("{st:?}");
}
