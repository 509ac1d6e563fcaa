//! The compactor's goals, measured on the demo workload (issue 4):
//!
//! ```text
//! cargo run --release -p auditlog-bench --bin compaction -- [--events N] [--dir PATH] [--segment-mib M]
//! ```
//!
//! Writes N events (default 10,000,000) twice: one log is never compacted
//! (the raw baseline), the other is compacted. Then prints, as a markdown
//! table for docs/BENCHMARKS.md: bytes per event, a selective query against
//! a full raw scan (median of 5 runs each), the share of blocks a one-hour
//! window reads, compaction throughput on one thread, and the append
//! throughput with the background compactor running against without.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Event, Filter, Options, Severity,
    Timestamp,
};
use auditlog_bench::median;
use auditlog_cli::workload::Workload;

/// Segment size in MiB (`--segment-mib`; default 64, the library's).
static SEGMENT_MIB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(64);

fn opts(compaction: Compaction) -> AuditOptions {
    let mib = SEGMENT_MIB.load(std::sync::atomic::Ordering::Relaxed);
    AuditOptions {
        log: Options::default()
            .durability(Durability::Buffered)
            .segment_bytes(mib << 20)
            .compaction(compaction),
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    }
}

/// Appends the workload; returns events/s.
fn fill(dir: &Path, w: &Workload, compaction: Compaction) -> f64 {
    let log = AuditLog::open(dir, opts(compaction)).expect("open");
    let start = Instant::now();
    let mut batch: Vec<Event> = Vec::with_capacity(1000);
    for e in w.generate() {
        batch.push(e);
        if batch.len() == 1000 {
            log.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    log.append_batch(&batch).expect("append");
    log.log().sync().expect("sync");
    let rate = w.events as f64 / start.elapsed().as_secs_f64();
    drop(log);
    rate
}

fn time_query(log: &AuditLog, f: &Filter) -> (u64, Duration) {
    let t = Instant::now();
    let n = log
        .query(f, false)
        .try_fold(0u64, |n, r| r.map(|_| n + 1))
        .expect("query");
    (n, t.elapsed())
}

fn median_count(log: &AuditLog, f: &Filter) -> (u64, f64) {
    let mut n = 0;
    let ms: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            n = log.query(f, false).count_matches().expect("count");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (n, median(ms))
}

fn median_query(log: &AuditLog, f: &Filter) -> (u64, f64) {
    let mut n = 0;
    let ms: Vec<f64> = (0..5)
        .map(|_| {
            let (c, d) = time_query(log, f);
            n = c;
            d.as_secs_f64() * 1e3
        })
        .collect();
    (n, median(ms))
}

fn main() {
    let mut events = 10_000_000u64;
    let mut base: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--events N")
            }
            "--dir" => base = args.next().map(PathBuf::from),
            "--segment-mib" => SEGMENT_MIB.store(
                args.next()
                    .and_then(|v| v.parse().ok())
                    .expect("--segment-mib N"),
                std::sync::atomic::Ordering::Relaxed,
            ),
            other => panic!("unknown argument {other}"),
        }
    }
    let tmp = tempfile::tempdir_in(base.unwrap_or_else(std::env::temp_dir)).expect("tempdir");
    let w = Workload {
        events,
        ..Workload::default()
    };
    let (raw_dir, cmp_dir) = (tmp.path().join("raw"), tmp.path().join("compacted"));
    eprintln!("writing {events} events twice ...");
    let append_plain = fill(&raw_dir, &w, Compaction::Manual);
    let append_with_compactor = fill(
        &cmp_dir,
        &w,
        Compaction::Background(Duration::from_millis(50)),
    );

    // Compact what the background compactor has not yet, timed on this thread.
    let cmp = AuditLog::open(&cmp_dir, opts(Compaction::Manual)).expect("open");
    let already = cmp.log().compacted_segments().len();
    drop(cmp);
    // A second copy compacted in the foreground, for the throughput figure.
    let fg_dir = tmp.path().join("foreground");
    fill(&fg_dir, &w, Compaction::Manual);
    let fg = AuditLog::open(&fg_dir, opts(Compaction::Manual)).expect("open");
    let cpu0 = thread_cpu();
    let r = fg.log().compact().expect("compact");
    let cpu = thread_cpu() - cpu0;
    drop(fg);
    drop(std::fs::remove_dir_all(&fg_dir));

    let cmp = AuditLog::open(&cmp_dir, opts(Compaction::Manual)).expect("open");
    cmp.log().compact().expect("compact");
    let raw = AuditLog::open(&raw_dir, opts(Compaction::Manual)).expect("open");
    let segs = cmp.log().compacted_segments();
    let c_bytes: u64 = segs.iter().map(|c| c.bytes).sum();
    let c_index: u64 = segs.iter().map(|c| c.index_bytes).sum();
    let c_records: u64 = segs.iter().map(|c| c.records).sum();
    let blocks: u64 = segs.iter().map(|c| c.blocks).sum();
    let raw_used: u64 = raw.log().raw_segments().iter().map(|s| s.3).sum();

    let selective = Filter {
        types: vec!["PACKAGE_QUARANTINED".into()],
        min_severity: Some(Severity::Warning),
        ..Filter::default()
    };
    let (n_sel, sel_ms) = median_query(&cmp, &selective);
    let (n_raw, raw_ms) = median_query(&raw, &selective);
    assert_eq!(n_sel, n_raw, "index and scan disagree");
    let (n_all, scan_ms) = median_query(&raw, &Filter::default());
    let (c_sel, count_ms) = median_count(&cmp, &selective);
    let (c_raw, count_raw_ms) = median_count(&raw, &selective);
    assert_eq!((c_sel, c_raw), (n_sel, n_sel));
    // The compacted part alone: the same count with the raw tail left out by time.
    let tail_start = Timestamp(
        cmp.log()
            .compacted_segments()
            .last()
            .and_then(|c| c.times)
            .map_or(i64::MAX, |t| t.1),
    );
    let older = Filter {
        until: Some(tail_start),
        ..selective.clone()
    };
    let mid = Timestamp(w.start.0 + w.span_secs / 2 * 1_000_000_000);
    let hour = Filter {
        since: Some(mid),
        until: Some(Timestamp(mid.0 + 3_600_000_000_000 - 1)),
        ..Filter::default()
    };
    let mut q = cmp.query_explained(&hour, false);
    let n_hour = q
        .by_ref()
        .try_fold(0u64, |n, r| r.map(|_| n + 1))
        .expect("query");
    let (hour_read, hour_total) = q.explain().expect("explained").blocks();
    let (_, hour_ms) = median_query(&cmp, &hour);
    let (_, hour_raw_ms) = median_query(&raw, &hour);
    let mut q = cmp.query_explained(&selective, false);
    q.by_ref().for_each(|r| drop(r.expect("query")));
    let (sel_read, sel_total) = q.explain().expect("explained").blocks();

    let secs = r.elapsed.as_secs_f64();
    println!(
        "| measure ({events} demo events, {} MiB segments) | goal | measured |",
        SEGMENT_MIB.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!("|---|---|---|");
    println!(
        "| storage after compaction, index included | ≤ 20 B/event | {:.1} B/event ({} compacted events in {} bytes, index {} bytes = {:.2}%); raw log {:.1} B/event |",
        c_bytes as f64 / c_records as f64,
        c_records,
        c_bytes,
        c_index,
        c_index as f64 * 100.0 / c_bytes as f64,
        raw_used as f64 / events as f64
    );
    println!(
        "| selective query (PACKAGE_QUARANTINED ≥ WARNING, {n_sel} events = {:.2}%) vs the same query scanning the raw log | ≥ 50× faster than a full raw scan | {sel_ms:.1} ms vs {raw_ms:.1} ms = {:.0}× (full raw scan of all {n_all} events: {scan_ms:.1} ms = {:.0}×); read {sel_read} of {sel_total} blocks |",
        n_sel as f64 * 100.0 / events as f64,
        raw_ms / sel_ms,
        scan_ms / sel_ms,
    );
    let (_, older_ms) = median_count(&cmp, &older);
    let (_, older_raw_ms) = median_count(&raw, &older);
    println!(
        "| the same, counted (no events built) | | {count_ms:.1} ms vs {count_raw_ms:.1} ms = {:.0}×; events before the raw tail only (the compacted part, the tail still scanned): {older_ms:.1} ms vs {older_raw_ms:.1} ms = {:.0}× |",
        count_raw_ms / count_ms,
        older_raw_ms / older_ms
    );
    println!(
        "| one-hour window ({n_hour} events) | ≤ 2% of blocks | {hour_read} of {hour_total} blocks = {:.2}%; {hour_ms:.1} ms vs {hour_raw_ms:.1} ms raw |",
        hour_read as f64 * 100.0 / hour_total.max(1) as f64
    );
    println!(
        "| compaction, one thread | ≥ 1,000,000 events/s | {:.0} events/s wall, {:.0} events/s of thread CPU ({} segments, {} events, {:.2} s) |",
        r.records as f64 / secs,
        r.records as f64 / cpu.max(1e-9),
        r.segments,
        r.records,
        secs
    );
    println!(
        "| appends (1 writer, buffered, batches of 1000) with the background compactor running | ≤ 20% slower | {:.0} vs {:.0} events/s without = {:+.1}% ({already} segments compacted in the background during the fill) |",
        append_with_compactor,
        append_plain,
        (append_with_compactor / append_plain - 1.0) * 100.0
    );
    println!("| blocks in the compacted log | | {blocks} |");
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field overall.
    let after = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
