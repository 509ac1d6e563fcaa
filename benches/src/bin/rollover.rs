//! Append latency across segment rollovers (issue 14): one writer appends
//! demo events one at a time (`AuditLog::append`, buffered) and every
//! append's latency goes into a histogram; the rollovers it crossed are
//! counted, and the slowest appends are matched to them.
//!
//! ```text
//! cargo run --release -p auditlog-bench --bin rollover -- [--events N] [--segment BYTES]
//! ```
//!
//! Reports p50, p90, p99, p99.9, p99.99 and the maximum, the ratio
//! p99.9 / p50 (issue 14's goal: at most 5), and how many of the 100
//! slowest appends were rollovers. Then what the engine cannot cause: the
//! page faults and context switches of the appending thread during the
//! loop, and the same loop with no log (each event encoded, checksummed and
//! copied into memory already faulted in), timed the same way: its p99.9 /
//! p50 is the machine's own (timer ticks, interrupts, a busy host).

use std::time::Instant;

use auditlog::{AuditLog, AuditOptions, Catalog, Compaction, Durability, Options};
use auditlog_cli::workload::Workload;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut events = 2_000_000u64;
    let mut segment: Option<u64> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--events N")
            }
            "--segment" => segment = args.next().and_then(|v| v.parse().ok()),
            other => panic!("unknown argument {other}"),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut log_opts = Options::default()
        .durability(Durability::Buffered)
        .compaction(Compaction::Manual);
    if let Some(s) = segment {
        log_opts = log_opts.segment_bytes(s);
    }
    let log = AuditLog::open(
        tmp.path(),
        AuditOptions {
            log: log_opts,
            catalog: Catalog::builtin("filetransfer-2.0"),
            ..AuditOptions::default()
        },
    )
    .unwrap();
    let all: Vec<_> = Workload {
        events,
        ..Workload::default()
    }
    .generate()
    .collect();
    // Touched before the loop, so that its page faults are the log's.
    let mut lat = vec![u64::MAX; all.len()];
    lat.clear();
    let mut segments = vec![u32::MAX; all.len()];
    segments.clear();
    let before = thread_usage();
    let started = Instant::now();
    for e in &all {
        let t = Instant::now();
        log.append(e).unwrap();
        lat.push(t.elapsed().as_nanos() as u64);
        segments.push(log.log().segment_count() as u32);
    }
    let wall = started.elapsed().as_secs_f64();
    let usage = thread_usage().minus(before);
    let rollovers: Vec<usize> = (1..segments.len())
        .filter(|&i| segments[i] != segments[i - 1])
        .collect();
    let mut slowest: Vec<usize> = (0..lat.len()).collect();
    slowest.sort_by_key(|&i| std::cmp::Reverse(lat[i]));
    slowest.truncate(100);
    let at_rollover = slowest
        .iter()
        .filter(|&&i| rollovers.binary_search(&i).is_ok())
        .count();
    let mut sorted = lat.clone();
    sorted.sort_unstable();
    let q = |p: f64| quantile(&sorted, p);
    println!(
        "events          {events} ({:.0} k/s)",
        events as f64 / wall / 1e3
    );
    println!("rollovers       {}", rollovers.len());
    for (name, p) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("p99.99", 0.9999),
    ] {
        println!("{name:<15} {:.2} µs", q(p) as f64 / 1e3);
    }
    println!(
        "max             {:.2} µs",
        *sorted.last().unwrap() as f64 / 1e3
    );
    println!(
        "p99.9 / p50     {:.1} (goal: at most 5)",
        q(0.999) as f64 / q(0.5) as f64
    );
    let stats = log.log().rollover_stats();
    println!(
        "rollover stats  {} rollovers: {} from a ready spare, {} created by the writer, {} waited for the worker",
        stats.rollovers, stats.from_spare, stats.created, stats.waited
    );
    let roll: Vec<u64> = rollovers.iter().map(|&i| lat[i]).collect();
    if !roll.is_empty() {
        let mut r = roll.clone();
        r.sort_unstable();
        println!(
            "at rollovers    median {:.0} µs, max {:.0} µs; {at_rollover} of the 100 slowest appends were rollovers",
            r[r.len() / 2] as f64 / 1e3,
            *r.last().unwrap() as f64 / 1e3
        );
        println!(
            "each rollover   {}",
            roll.iter()
                .map(|n| format!("{:.0}", *n as f64 / 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "appending thread during the loop: {} page faults, {} context switches ({} involuntary); appends over 10 × p50: {}",
        usage.faults,
        usage.switches + usage.preempted,
        usage.preempted,
        lat.iter().filter(|&&l| l > 10 * q(0.5)).count()
    );
    // The machine's own tail: the same loop and timing with no log.
    let mut enc = auditlog_bench::compare::Encoder::default();
    let mut buf = Vec::new();
    let mut ring = vec![1u8; 64 << 20];
    let mut at = 0;
    let mut base = vec![u64::MAX; all.len()];
    base.clear();
    for e in &all {
        let t = Instant::now();
        buf.clear();
        enc.encode(e, &mut buf);
        let crc = crc32fast::hash(&buf);
        if at + buf.len() + 4 > ring.len() {
            at = 0;
        }
        ring[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        ring[at + 4..at + 4 + buf.len()].copy_from_slice(&buf);
        at += 4 + buf.len();
        base.push(t.elapsed().as_nanos() as u64);
    }
    std::hint::black_box(&ring);
    base.sort_unstable();
    println!(
        "no log (machine) p50 {:.2} µs, p99.9 {:.2} µs, p99.9 / p50 {:.1}; over 10 × p50: {}",
        quantile(&base, 0.5) as f64 / 1e3,
        quantile(&base, 0.999) as f64 / 1e3,
        quantile(&base, 0.999) as f64 / quantile(&base, 0.5) as f64,
        base.iter()
            .filter(|&&l| l > 10 * quantile(&base, 0.5))
            .count()
    );
}

fn quantile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// What the calling thread has cost the kernel so far.
#[derive(Clone, Copy)]
struct Usage {
    faults: i64,
    switches: i64,
    preempted: i64,
}

impl Usage {
    fn minus(self, earlier: Usage) -> Usage {
        Usage {
            faults: self.faults - earlier.faults,
            switches: self.switches - earlier.switches,
            preempted: self.preempted - earlier.preempted,
        }
    }
}

fn thread_usage() -> Usage {
    // SAFETY: `getrusage` writes only the struct it is given, which is
    // plain integers (all-zero is a valid value).
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut u);
        u
    };
    Usage {
        faults: u.ru_minflt + u.ru_majflt,
        switches: u.ru_nvcsw,
        preempted: u.ru_nivcsw,
    }
}
