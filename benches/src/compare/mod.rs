//! `compare`: auditlog beside what users would pick instead (SQLite, JSON
//! lines, walrus, okaywal), on the same events, in one run.
//!
//! Every engine runs in child processes of its own (this binary, re-executed
//! with `compare --child ...`), so their peak memory is their own and a
//! writer can be killed with SIGKILL. A child prints `key value` lines; the
//! parent gathers them into one table.
//!
//! Phases per engine (a child each):
//! - `load`: buffered append of the workload, bytes per event, the three
//!   queries (results printed for the parent to compare across engines), a
//!   full filtered scan, peak memory;
//! - `durable`: durable appends from 1, 16 and 64 threads, a fixed time each;
//! - `kill`: reopens the loaded store, appends until killed (SIGKILL);
//! - `reopen`: time to open the store and answer the first query.

mod engines;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auditlog::format::codec;
use auditlog::{Catalog, Event, Timestamp};
use auditlog_cli::workload::{self, Workload};

pub use engines::ENGINES;

/// What the run was asked for.
#[derive(Debug, Clone)]
pub struct Args {
    /// Events in the workload.
    pub events: u64,
    /// Print the markdown table for docs/BENCHMARKS.md.
    pub markdown: bool,
    /// Engines left out.
    pub skip: Vec<String>,
    /// Seconds per durable-append configuration.
    pub durable_secs: f64,
    /// Where the stores go (a temporary directory inside it).
    pub dir: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            events: 2_000_000,
            markdown: false,
            skip: Vec::new(),
            durable_secs: 2.0,
            dir: None,
        }
    }
}

/// The workload: the demo's generator, seeded.
pub fn workload(events: u64) -> Workload {
    Workload {
        events,
        ..Workload::default()
    }
}

/// The encoded form of an event (the payload walrus and okaywal carry):
/// type ids from the catalog's order, attribute keys numbered by first use.
pub struct Encoder {
    catalog: Catalog,
    keys: BTreeMap<String, u32>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            catalog: Catalog::builtin("filetransfer-2.0").expect("built in"),
            keys: BTreeMap::new(),
        }
    }
}

impl Encoder {
    /// Appends the encoding of `e` to `out`.
    pub fn encode(&mut self, e: &Event, out: &mut Vec<u8>) {
        let id = self
            .catalog
            .types()
            .iter()
            .position(|t| t.name == e.event_type)
            .unwrap_or(u16::MAX as usize) as u16;
        let keys = &mut self.keys;
        codec::encode(
            e,
            id,
            &mut |k| {
                let n = keys.len() as u32;
                *keys.entry(k.to_string()).or_insert(n)
            },
            out,
        );
    }
}

const DAY_NS: i64 = 86_400_000_000_000;

/// The audit questions (Q1–Q3 of issue 5, Q4–Q7 of issue 10), as engines answer them.
#[derive(Debug, Clone)]
pub struct Questions {
    /// Q1: failed logins (`USER_AUTH_FAILED_*`) from this address ...
    pub attacker: std::net::IpAddr,
    /// ... in this day `[from, to)`.
    pub day: (Timestamp, Timestamp),
    /// Q2: all events of these two types at severity WARNING or above.
    pub two_types: [&'static str; 2],
    /// Q4: this actor's events ...
    pub actor: String,
    /// ... in this week `[from, to)`.
    pub week: (Timestamp, Timestamp),
    /// Q6: events from this network ([`Questions::day`]).
    pub net: auditlog::IpNet,
    /// Q7: the most frequent actors of failed logins, this many.
    pub top: usize,
    /// The full filtered scan: events of this source (administrators', 1%):
    /// no index of any engine covers it.
    pub source: &'static str,
}

impl Questions {
    /// The questions for workload `w`.
    pub fn for_workload(w: &Workload) -> Questions {
        let day_start = Timestamp(w.burst_start().0 - 3 * 3_600_000_000_000);
        Questions {
            attacker: workload::ATTACKER.parse().expect("an address"),
            day: (day_start, Timestamp(day_start.0 + 86_400_000_000_000)),
            two_types: ["PACKAGE_QUARANTINED", "USER_AUTH_FAILED_MFA"],
            actor: "user042".into(),
            week: (
                Timestamp(w.start.0 + 7 * DAY_NS),
                Timestamp(w.start.0 + 14 * DAY_NS),
            ),
            net: "10.0.3.0/24".parse().expect("a network"),
            top: 10,
            source: "WEB_ADMIN",
        }
    }

    /// The questions that return events, as auditlog filters: (name, filter).
    pub fn filters(&self) -> Vec<(&'static str, auditlog::Filter)> {
        use auditlog::{Filter, Severity};
        vec![
            (
                "q1",
                Filter {
                    types: vec!["USER_AUTH_FAILED_*".into()],
                    ip: Some(self.attacker.to_string().parse().expect("an address")),
                    since: Some(self.day.0),
                    until: Some(Timestamp(self.day.1 .0 - 1)),
                    ..Filter::default()
                },
            ),
            (
                "q2",
                Filter {
                    types: self.two_types.iter().map(|s| s.to_string()).collect(),
                    min_severity: Some(Severity::Warning),
                    ..Filter::default()
                },
            ),
            (
                "q4",
                Filter {
                    actor: Some(self.actor.clone()),
                    since: Some(self.week.0),
                    until: Some(Timestamp(self.week.1 .0 - 1)),
                    ..Filter::default()
                },
            ),
            (
                "q6",
                Filter {
                    ip: Some(self.net),
                    since: Some(self.day.0),
                    until: Some(Timestamp(self.day.1 .0 - 1)),
                    ..Filter::default()
                },
            ),
            (
                "scan",
                Filter {
                    source: Some(self.source.into()),
                    ..Filter::default()
                },
            ),
        ]
    }

    /// Q4 on an event.
    pub fn q4(&self, e: &Event) -> bool {
        e.actor.as_deref() == Some(self.actor.as_str())
            && e.time >= self.week.0
            && e.time < self.week.1
    }

    /// Q5's group of an event: its day (UTC, as days since the epoch) and severity.
    pub fn q5_key(e: &Event) -> String {
        format!("{}|{}", e.time.0.div_euclid(DAY_NS), e.severity)
    }

    /// Q6 on an event.
    pub fn q6(&self, e: &Event) -> bool {
        e.ip.is_some_and(|ip| self.net.contains(ip)) && e.time >= self.day.0 && e.time < self.day.1
    }

    /// Whether an event counts for Q7 (a failed login), and its group.
    pub fn q7_actor<'e>(&self, e: &'e Event) -> Option<&'e str> {
        e.event_type
            .starts_with("USER_AUTH_FAILED_")
            .then(|| e.actor.as_deref().unwrap_or(""))
    }

    /// Q7's answer from the counts per actor: the top ones (count, then name).
    pub fn q7_top(&self, counts: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let mut v: Vec<(String, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(self.top);
        v.into_iter().collect()
    }

    /// Q1 on an event.
    pub fn q1(&self, e: &Event) -> bool {
        e.event_type.starts_with("USER_AUTH_FAILED_")
            && e.ip == Some(self.attacker)
            && e.time >= self.day.0
            && e.time < self.day.1
    }

    /// Q2 on an event.
    pub fn q2(&self, e: &Event) -> bool {
        self.two_types.contains(&e.event_type.as_str()) && e.severity >= auditlog::Severity::Warning
    }
}

/// A child's report: `key value` lines.
pub type Report = BTreeMap<String, String>;

/// Prints one result line of a child.
pub fn emit(key: &str, value: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{key} {value}");
    let _ = out.flush();
}

/// Peak resident memory of this process, in bytes.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resident memory of this process now, (anonymous, file-backed), in bytes.
pub fn rss_parts() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("RssAnon:"), field("RssFile:") + field("RssShmem:"))
}

/// Samples [`rss_parts`] every 5 ms until stopped: the peaks of each.
pub struct MemSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl MemSampler {
    /// Starts sampling.
    pub fn start() -> MemSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut anon, mut file) = (0, 0);
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let (a, f) = rss_parts();
                (anon, file) = (anon.max(a), file.max(f));
                std::thread::sleep(Duration::from_millis(5));
            }
            (anon, file)
        });
        MemSampler { stop, handle }
    }

    /// Stops sampling: the peaks (anonymous, file-backed).
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}

/// Resident memory of this process now, in bytes.
pub fn current_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of disk all files under `dir` take: their allocated blocks.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                // Blocks allocated (what `du` says): a sparse file's
                // holes take no disk.
                e.metadata().map_or(0, |m| {
                    use std::os::unix::fs::MetadataExt;
                    m.blocks() * 512
                })
            }
        })
        .sum()
}

/// A hash of a sorted list of positions, for comparing answers across engines.
pub fn digest(mut positions: Vec<u64>) -> String {
    positions.sort_unstable();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in &positions {
        for b in p.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{}:{h:016x}", positions.len())
}

/// A hash of a count per type.
pub fn digest_counts(counts: &BTreeMap<String, u64>) -> String {
    let text: String = counts.iter().map(|(k, v)| format!("{k}={v};")).collect();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{}:{h:016x}", counts.values().sum::<u64>())
}

/// Runs a child phase and collects its report.
fn child(
    args: &Args,
    engine: &str,
    phase: &str,
    dir: &Path,
    kill_after_ready: Option<Duration>,
) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "compare",
        "--child",
        engine,
        phase,
        "--events",
        &args.events.to_string(),
        "--durable-secs",
        &args.durable_secs.to_string(),
        "--store",
    ])
    .arg(dir)
    // walrus takes its data directory from the environment.
    .env("WALRUS_DATA_DIR", dir.join("walrus"))
    .env("WALRUS_QUIET", "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut proc = cmd.spawn().map_err(|e| e.to_string())?;
    let out = proc.stdout.take().expect("piped");
    let mut report = Report::new();
    let mut killed = false;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if line == "READY" {
            if let Some(wait) = kill_after_ready {
                std::thread::sleep(wait);
                proc.kill().map_err(|e| e.to_string())?; // SIGKILL
                killed = true;
                break;
            }
        }
        if let Some((k, v)) = line.split_once(' ') {
            report.insert(k.to_string(), v.to_string());
        }
    }
    let status = proc.wait().map_err(|e| e.to_string())?;
    if !killed && !status.success() {
        return Err(format!("{engine} {phase} failed: {status}"));
    }
    Ok(report)
}

/// The parent: runs every engine's phases and prints the table.
pub fn run(args: &Args) -> Result<(), String> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut results: BTreeMap<&str, Report> = BTreeMap::new();
    for &engine in ENGINES {
        if args.skip.iter().any(|s| s == engine) {
            continue;
        }
        let dir = tmp.path().join(engine);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        eprintln!("{engine}: load ...");
        let mut r = child(args, engine, "load", &dir, None)?;
        eprintln!("{engine}: durable appends ...");
        r.extend(child(args, engine, "durable", &dir, None)?);
        eprintln!("{engine}: kill and reopen ...");
        // Killed the moment it says it appended `APPENDED_BEFORE_KILL` events.
        child(args, engine, "kill", &dir, Some(Duration::ZERO))?;
        r.extend(child(args, engine, "reopen", &dir, None)?);
        results.insert(engine, r);
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("machine ...");
    let machine = engines::machine(&tmp.path().join("machine"), args.events);
    let table = table::render(args, &results, &machine, started.elapsed());
    println!("{table}");
    if let Some(problem) = table::disagreements(&results) {
        return Err(problem);
    }
    Ok(())
}

mod table;

/// Runs a child phase (`compare --child ENGINE PHASE ...`).
pub fn run_child(engine: &str, phase: &str, events: u64, durable_secs: f64, store: &Path) {
    engines::child(engine, phase, events, durable_secs, store);
}
