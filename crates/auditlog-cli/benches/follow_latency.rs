//! How long after an event is durable `auditlog query -f` prints it: the
//! real binary following a log another process (this one) writes with
//! `Durability::Sync`. Latency is from the return of `append` (the event is
//! on disk) to the line arriving on the follower's standard output.
//!
//! Three writers: an idle one (a matching event every 250 ms, nothing
//! between), a steady one as in the report that found the old 200 ms quiet
//! wait (8 events/s, one in three matching), and a busy one (about 1,000
//! events/s, one in fifty matching). Prints p50, p99 and max for each.
//!
//! `cargo bench -p auditlog-cli --bench follow_latency`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use auditlog::{AuditLog, AuditOptions, Catalog, Durability, Event, Options, Severity, Timestamp};

struct Writer {
    name: &'static str,
    /// Events appended per matching one.
    per_match: u32,
    /// Pause after each append.
    pause: Duration,
    /// Matching events to measure.
    samples: usize,
}

fn main() {
    let writers = [
        Writer {
            name: "idle writer (1 event / 250 ms)",
            per_match: 1,
            pause: Duration::from_millis(250),
            samples: 40,
        },
        Writer {
            name: "steady writer (8 events/s, 1 in 3 matching)",
            per_match: 3,
            pause: Duration::from_millis(125),
            samples: 40,
        },
        Writer {
            name: "busy writer (~1,000 events/s, 1 in 50 matching)",
            per_match: 50,
            pause: Duration::from_millis(1),
            samples: 100,
        },
    ];
    println!("follow latency: append (Sync) returned -> line on `auditlog query -f` stdout");
    println!(
        "{:<50} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "writer", "events/s", "samples", "p50 ms", "p99 ms", "max ms"
    );
    for w in &writers {
        let (mut lat, rate) = measure(w);
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        println!(
            "{:<50} {:>9.0} {:>8} {:>8.1} {:>8.1} {:>8.1}",
            w.name,
            rate,
            lat.len(),
            q(0.5),
            q(0.99),
            lat[lat.len() - 1]
        );
    }
}

/// The latencies (ms) of the matching events, and the events appended per second.
fn measure(w: &Writer) -> (Vec<f64>, f64) {
    let dir = tempfile::tempdir().unwrap();
    let opts = AuditOptions {
        log: Options::default().durability(Durability::Sync),
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..AuditOptions::default()
    };
    let log = AuditLog::open(dir.path(), opts).unwrap();
    // Both types registered before the follower starts.
    log.append(&Event::new(
        Timestamp::now(),
        "USER_LOGGED_IN",
        Severity::Info,
    ))
    .unwrap();
    log.append(&Event::new(
        Timestamp::now(),
        "FILE_DOWNLOAD_STARTED",
        Severity::Info,
    ))
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args([
            "query",
            "-d",
            dir.path().to_str().unwrap(),
            "-f",
            "-t",
            "USER_LOGGED_IN",
        ])
        .args(["-o", "cat", "--output-fields", "lsn", "--after-lsn", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx
                .send((line.parse::<u64>().unwrap(), Instant::now()))
                .is_err()
            {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300)); // the follower is up
    let mut sent = Vec::new();
    let started = Instant::now();
    let total = w.samples as u32 * w.per_match;
    for i in 0..total {
        let matching = i % w.per_match == w.per_match - 1;
        let ty = if matching {
            "USER_LOGGED_IN"
        } else {
            "FILE_DOWNLOAD_STARTED"
        };
        let lsn = log
            .append(&Event::new(Timestamp::now(), ty, Severity::Info))
            .unwrap();
        if matching {
            sent.push((lsn.0, Instant::now()));
        }
        std::thread::sleep(w.pause);
    }
    let rate = f64::from(total) / started.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for (lsn, at) in &sent {
        let (got, when) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the follower printed");
        assert_eq!(got, *lsn, "the follower printed what matched, in order");
        lat.push(when.saturating_duration_since(*at).as_secs_f64() * 1e3);
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    (lat, rate)
}
