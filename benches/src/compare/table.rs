//! The comparison table (markdown), and the check that engines agree.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::{Args, Report};

fn num(r: &Report, key: &str) -> Option<f64> {
    r.get(key)?.parse().ok()
}

fn human(v: f64) -> String {
    if v >= 10_000_000.0 {
        format!("{:.1} M", v / 1e6)
    } else if v >= 10_000.0 {
        format!("{:.0} k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A row: each engine's figure, and auditlog's as a ratio of it.
fn row(
    out: &mut String,
    label: &str,
    results: &BTreeMap<&str, Report>,
    key: &str,
    show: &dyn Fn(f64, &Report) -> String,
) {
    let ours = results.get("auditlog").and_then(|r| num(r, key));
    let _ = write!(out, "| {label} |");
    for (name, r) in results {
        match num(r, key) {
            Some(v) => {
                let ratio = match (ours, *name) {
                    (_, "auditlog") | (None, _) => String::new(),
                    (Some(o), _) if v > 0.0 => format!(" ({:.2}×)", o / v),
                    _ => String::new(),
                };
                let _ = write!(out, " {}{ratio} |", show(v, r));
            }
            None => out.push_str(" n/a |"),
        }
    }
    out.push('\n');
}

/// The whole table.
pub fn render(
    args: &Args,
    results: &BTreeMap<&str, Report>,
    machine: &BTreeMap<String, f64>,
    took: Duration,
) -> String {
    let mut out = String::new();
    if args.markdown {
        let _ = writeln!(
            out,
            "### Side by side, {} ({})\n",
            &auditlog::Timestamp::now().to_string()[..10],
            machine_description()
        );
    }
    let _ = writeln!(
        out,
        "{} events of the demo workload; one run, {:.0} s in all. Each figure is the engine's own; in parentheses, auditlog's figure divided by that engine's (above 1: auditlog is higher, which is better for rates and worse for times, bytes and memory).\n",
        args.events,
        took.as_secs_f64()
    );
    out.push_str("| measure |");
    for name in results.keys() {
        let _ = write!(out, " {name} |");
    }
    out.push_str("\n|---|");
    for _ in results {
        out.push_str("---|");
    }
    out.push('\n');
    let rate = |v: f64, _: &Report| format!("{}/s", human(v));
    row(
        &mut out,
        "1. buffered append, events/s, one writer",
        results,
        "buffered",
        &rate,
    );
    row(
        &mut out,
        "1. interval append (durable within 10 ms), events/s, one writer (auditlog only: the others have no such mode)",
        results,
        "interval_10ms",
        &rate,
    );
    for t in [1, 16, 64] {
        let key = format!("durable_{t}");
        let p99 = format!("durable_{t}_p99_us");
        row(
            &mut out,
            &format!(
                "2. durable append, {t} thread{}, events/s (p99)",
                if t > 1 { "s" } else { "" }
            ),
            results,
            &key,
            &|v, r| {
                format!(
                    "{}/s (p99 {})",
                    human(v),
                    num(r, &p99).map_or("?".into(), |us| if us >= 1000.0 {
                        format!("{:.1} ms", us / 1000.0)
                    } else {
                        format!("{us:.0} µs")
                    })
                )
            },
        );
    }
    let bytes = |v: f64, _: &Report| format!("{v:.1} B");
    row(
        &mut out,
        "3. bytes on disk per event (all files, blocks allocated)",
        results,
        "bytes_files",
        &bytes,
    );
    row(
        &mut out,
        "3. bytes per event in use (auditlog: compacted + the active segment's records)",
        results,
        "bytes_used",
        &bytes,
    );
    row(
        &mut out,
        "3. bytes per event on disk after `compact` with no writer (auditlog: the active segment sealed and compacted too)",
        results,
        "bytes_all_compacted",
        &bytes,
    );
    row(
        &mut out,
        "3. bytes per event, JSON lines compressed (zstd -3)",
        results,
        "bytes_zstd",
        &bytes,
    );
    let ms = |v: f64, _: &Report| format!("{v:.1} ms");
    row(
        &mut out,
        "4. Q1 failed logins from one address in one day",
        results,
        "q1_ms",
        &ms,
    );
    row(
        &mut out,
        "4. Q2 two types at WARNING or above",
        results,
        "q2_ms",
        &ms,
    );
    row(
        &mut out,
        "4. Q3 count per type, whole log",
        results,
        "q3_ms",
        &ms,
    );
    for (key, label) in [
        ("q4_ms", "4. Q4 everything one actor did in one week"),
        ("q5_ms", "4. Q5 count by severity per day, whole log"),
        ("q6_ms", "4. Q6 everything from one /24 in one day"),
        ("q7_ms", "4. Q7 top 10 actors by failed logins"),
    ] {
        row(&mut out, label, results, key, &ms);
    }
    row(
        &mut out,
        "5. full filtered scan (one source: no index applies), events/s",
        results,
        "scan_rate",
        &rate,
    );
    row(
        &mut out,
        "5. the same scan with compacted stripes read on two threads (auditlog: `read_threads(2)`)",
        results,
        "scan_rate_two",
        &rate,
    );
    row(
        &mut out,
        "6. open after SIGKILL (200,000 appends after the load) and answer Q1 (walrus: read one record; okaywal: open only)",
        results,
        "reopen_ms",
        &ms,
    );
    let mib = |v: f64, _: &Report| format!("{:.0} MiB", v / (1 << 20) as f64);
    row(
        &mut out,
        "7. peak resident memory added by the engine (load phase: appends, compaction, queries)",
        results,
        "peak_rss",
        &mib,
    );
    row(
        &mut out,
        "7. of which anonymous (heap) at its peak",
        results,
        "peak_anon",
        &mib,
    );
    row(
        &mut out,
        "7. file-backed pages resident at their peak (mapped or read files)",
        results,
        "peak_file",
        &mib,
    );
    let _ = writeln!(
        out,
        "\n**The machine, same run:** sequential write of the encoded events {:.0} MiB/s ({}/s events); `fdatasync` of a 128-byte append p50 {:.0} µs, p99 {:.0} µs; `memcpy` {:.1} GiB/s.",
        machine.get("seq_write_mib_s").copied().unwrap_or(0.0),
        human(machine.get("seq_write_events_s").copied().unwrap_or(0.0)),
        machine.get("fdatasync_p50_us").copied().unwrap_or(0.0),
        machine.get("fdatasync_p99_us").copied().unwrap_or(0.0),
        machine.get("memcpy_gib_s").copied().unwrap_or(0.0),
    );
    let _ = writeln!(
        out,
        "\nAnswers (count:hash of the matching positions), equal across engines that answer:"
    );
    for key in ANSWERS.iter().chain(&["reopen_answer"]) {
        let vals: Vec<String> = results
            .iter()
            .filter_map(|(n, r)| r.get(*key).map(|v| format!("{n} {v}")))
            .collect();
        let _ = writeln!(out, "- {key}: {}", vals.join("; "));
    }
    if let Some(r) = results.get("auditlog") {
        if let (Some(sel), Some(full)) = (num(r, "selective_ms"), num(r, "full_ms")) {
            let _ = writeln!(
                out,
                "\nA selective query against a full scan of the same log (auditlog): PACKAGE_QUARANTINED at WARNING or above (0.5% of events) {sel:.1} ms; every event read and built {full:.1} ms: {:.0}× faster.",
                full / sel.max(1e-9)
            );
        }
        let reads: Vec<String> = ["q1", "q2", "q4", "q6", "scan"]
            .iter()
            .filter_map(|q| {
                r.get(&format!("{q}_read"))
                    .map(|v| format!("{q} {}", v.replace('_', " ")))
            })
            .collect();
        if !reads.is_empty() {
            let _ = writeln!(
                out,
                "\nWhat auditlog read (its explain: compacted blocks read, with the zstd frames decompressed of those in the blocks read, and raw chunks scanned, of those in the stripes and segments looked at): {}",
                reads.join("; ")
            );
        }
    }
    out
}

/// The answers compared across engines.
const ANSWERS: [&str; 8] = [
    "q1_answer",
    "q2_answer",
    "q3_answer",
    "q4_answer",
    "q5_answer",
    "q6_answer",
    "q7_answer",
    "scan_answer",
];

/// Engines whose answers to the same question differ, if any.
pub fn disagreements(results: &BTreeMap<&str, Report>) -> Option<String> {
    for key in ANSWERS {
        let answers: Vec<(&str, &String)> = results
            .iter()
            .filter_map(|(n, r)| r.get(key).map(|v| (*n, v)))
            .collect();
        if answers.windows(2).any(|w| w[0].1 != w[1].1) {
            return Some(format!("engines disagree on {key}: {answers:?}"));
        }
    }
    None
}

/// The CPU, core count, memory and kernel, as /proc tells them.
fn machine_description() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} × {model}, {:.0} GiB RAM, Linux {}",
        mem_kb as f64 / (1 << 20) as f64,
        read("/proc/sys/kernel/osrelease").trim()
    )
}
