//! The lake and SIEM exports' goals (issue 13), on the demo workload:
//!
//! ```text
//! cargo run --release -p auditlog-bench --bin lake -- [--events N] [--python PATH] [--export-only]
//! ```
//!
//! - the Parquet export's rate on one core (wall time, and events per CPU
//!   second of the process: the export's thread and the threads its reads
//!   share stripes with), median of 3 runs into fresh directories; the OCSF
//!   JSON, syslog and CEF writers' rates (into a sink, one run each);
//! - the Parquet files' bytes against the compacted log's, same events;
//! - DuckDB answering Q1–Q3 of the compare harness over the export, beside
//!   auditlog answering them over the log, median of 5 after one warm-up
//!   each, same run. DuckDB is timed inside Python (`time.perf_counter`
//!   around `sql(...).fetchall()`), so its start is not counted. Python is
//!   `--python`, else AUDITLOG_PYTHON, else target/ci-venv/bin/python.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use auditlog::{AuditLog, AuditOptions, Catalog, Filter, GroupBy, Options};
use auditlog_bench::compare::Questions;
use auditlog_bench::median;
use auditlog_cli::formats::{cef, ocsf, syslog};
use auditlog_cli::lake::{LakeWriter, Layout};
use auditlog_cli::workload::Workload;

/// CPU seconds of the whole process: the export's thread and the threads
/// its reads share stripes with (`Options::read_threads`); the process's
/// other threads are idle while it runs.
fn process_cpu() -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn bytes_under(dir: &Path, ext: &str) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                n += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    n
}

/// One export of the whole log into `out`: (events, wall seconds, CPU seconds).
fn export_parquet(log: &AuditLog, out: &Path) -> (u64, f64, f64) {
    let _ = std::fs::remove_dir_all(out);
    let through = log.log().next_lsn().0 - 1;
    let (t, c) = (Instant::now(), process_cpu());
    let mut w = LakeWriter::new(out, Layout::Hive, log.log().id(), None, through).unwrap();
    let filter = Filter::default();
    let mut q = log.query(&filter, false);
    let mut err = None;
    q.for_each_view(&mut |v| {
        if let Err(e) = w.add(v.lsn().0, &v.fields()) {
            err = Some(e);
            return Ok(false);
        }
        Ok(true)
    })
    .unwrap();
    assert!(err.is_none(), "{err:?}");
    let s = w.commit().unwrap();
    (s.events, t.elapsed().as_secs_f64(), process_cpu() - c)
}

/// One pass of a text writer over the log into a sink: events/s.
fn text_rate(
    log: &AuditLog,
    mut write: impl FnMut(u64, &auditlog::EventFields<'_>, &mut Vec<u8>),
) -> f64 {
    let filter = Filter::default();
    let mut q = log.query(&filter, false);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut sink = std::io::sink();
    let t = Instant::now();
    let n = q
        .for_each_view(&mut |v| {
            write(v.lsn().0, &v.fields(), &mut buf);
            if buf.len() > 1 << 19 {
                sink.write_all(&buf).unwrap();
                buf.clear();
            }
            Ok(true)
        })
        .unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

fn python(arg: Option<String>) -> Option<String> {
    arg.or_else(|| std::env::var("AUDITLOG_PYTHON").ok())
        .or_else(|| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-venv/bin/python");
            p.exists().then(|| p.to_string_lossy().into_owned())
        })
}

/// The child that measures memory: a fresh process opens the log read-only
/// and exports it once; prints its peak anonymous and file-backed bytes.
fn child_export(log_dir: &Path, out: &Path) {
    let sampler = auditlog_bench::compare::MemSampler::start();
    let log = AuditLog::open(
        log_dir,
        AuditOptions {
            log: Options::default().read_only(true),
            catalog: Catalog::builtin("filetransfer-2.0"),
            ..AuditOptions::default()
        },
    )
    .unwrap();
    export_parquet(&log, out);
    let (anon, file) = sampler.stop();
    println!("{anon} {file}");
}

fn main() {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("--child-export") {
        let a: Vec<String> = std::env::args().skip(2).collect();
        child_export(Path::new(&a[0]), Path::new(&a[1]));
        return;
    }
    let mut events = 2_000_000u64;
    let mut py = None;
    let mut export_only = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--export-only" => export_only = true,
            "--events" => {
                events = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--events N")
            }
            "--python" => py = args.next(),
            other => panic!("unknown argument {other}"),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let w = Workload {
        events,
        ..Workload::default()
    };
    let q = Questions::for_workload(&w);
    let log = auditlog_bench::demo_log(&dir);
    let all: Vec<_> = w.generate().collect();
    for chunk in all.chunks(1000) {
        log.append_batch(chunk).unwrap();
    }
    drop(all);
    log.log().seal().unwrap();
    log.log().compact().unwrap();
    let compacted = bytes_under(&dir, "cseg");
    println!("events                          {events}");
    println!(
        "compacted log                   {compacted} bytes ({:.1} B/event)",
        compacted as f64 / events as f64
    );

    let out = tmp.path().join("lake");
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    // Profiling and A/B runs take more rounds: their differences are small.
    for _ in 0..if export_only { 7 } else { 3 } {
        let (n, wall, cpu) = export_parquet(&log, &out);
        assert_eq!(n, events);
        walls.push(wall);
        cpus.push(cpu);
    }
    if export_only {
        // For profiling and A/B runs: the rates, one more export, nothing else.
        let (wall, cpu) = (median(walls), median(cpus));
        println!(
            "parquet export                  {:.0} k events/s wall, {:.0} k/s per CPU second",
            events as f64 / wall / 1e3,
            events as f64 / cpu / 1e3,
        );
        export_parquet(&log, &out);
        return;
    }
    // Memory: one more run in a fresh process (this one's heap holds what
    // the workload and earlier runs freed), sampled every 5 ms.
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--child-export"])
        .arg(&dir)
        .arg(tmp.path().join("lake-child"))
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let mem: Vec<u64> = String::from_utf8_lossy(&child.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (anon, file) = (mem[0], mem[1]);
    let parquet = bytes_under(&out, "parquet");
    let (wall, cpu) = (median(walls), median(cpus));
    println!(
        "parquet export                  {:.0} k events/s wall, {:.0} k/s per CPU second (median of 3: {:.2} s, {:.2} s CPU)",
        events as f64 / wall / 1e3,
        events as f64 / cpu / 1e3,
        wall,
        cpu
    );
    println!(
        "parquet files                   {parquet} bytes ({:.1} B/event, {:.2}x the compacted log)",
        parquet as f64 / events as f64,
        parquet as f64 / compacted as f64
    );
    // What reading alone costs (the export's floor): every event's fields.
    let read = text_rate(&log, |l, e, _| {
        std::hint::black_box((l, e.event_type, e.actor));
    });
    println!(
        "reading the log (fields only)   {:.0} k events/s",
        read / 1e3
    );
    println!(
        "parquet export memory           {:.0} MiB anonymous at its peak (a fresh process), {:.0} MiB file-backed (the mapped log)",
        anon as f64 / (1 << 20) as f64,
        file as f64 / (1 << 20) as f64
    );
    let o = syslog::SyslogOptions {
        facility: 13,
        hostname: "bench".into(),
        octet_counting: false,
    };
    println!(
        "ocsf json / syslog / cef        {:.0} / {:.0} / {:.0} k events/s",
        text_rate(&log, |l, e, b| {
            serde_json::to_writer(&mut *b, &ocsf::to_value(l, e)).unwrap();
            b.push(b'\n');
        }) / 1e3,
        text_rate(&log, |l, e, b| b
            .extend_from_slice(syslog::to_message(l, e, &o).as_bytes()))
            / 1e3,
        text_rate(&log, |l, e, b| {
            b.extend_from_slice(cef::to_line(l, e).as_bytes());
            b.push(b'\n');
        }) / 1e3,
    );

    // Q1–Q3 in auditlog, over the log.
    let filters = q.filters();
    let time = |f: &mut dyn FnMut() -> u64| {
        f();
        let mut ms = Vec::new();
        let mut n = 0;
        for _ in 0..5 {
            let t = Instant::now();
            n = f();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        (median(ms), n)
    };
    let find = |name: &str| filters.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let (q1f, q2f) = (find("q1"), find("q2"));
    // The events themselves, as a caller gets them (DuckDB returns its rows).
    let answer = |f: &Filter| {
        let rows: Vec<_> = log.query(f, false).collect::<Result<_, _>>().unwrap();
        rows.len() as u64
    };
    let a1 = time(&mut || answer(&q1f));
    let a2 = time(&mut || answer(&q2f));
    let a3 = time(&mut || {
        log.aggregate(&Filter::default(), &[GroupBy::Type], None)
            .unwrap()
            .groups
            .len() as u64
    });
    println!(
        "auditlog Q1 / Q2 / Q3           {:.2} / {:.2} / {:.2} ms ({} / {} rows, {} types)",
        a1.0, a2.0, a3.0, a1.1, a2.1, a3.1
    );
    let Some(py) = python(py) else {
        println!("duckdb                          (no Python with duckdb: give --python)");
        return;
    };
    let src = format!(
        "read_parquet('{}/**/*.parquet', hive_partitioning = true)",
        out.display()
    );
    let ms = |t: auditlog::Timestamp| t.0 / 1_000;
    let sql = [
        format!(
            "select * from {src} where auditlog_type like 'USER_AUTH_FAILED_%' and src_endpoint_ip = '{}' and time >= make_timestamp({}) and time < make_timestamp({})",
            q.attacker,
            ms(q.day.0),
            ms(q.day.1)
        ),
        format!(
            "select * from {src} where auditlog_type in ('{}', '{}') and severity_id >= 3",
            q.two_types[0], q.two_types[1]
        ),
        format!("select auditlog_type, count(*) from {src} group by 1"),
    ];
    let script = format!(
        "import duckdb, time, statistics, json\ncon = duckdb.connect()\nout = []\nfor q in {sql:?}:\n    con.sql(q).fetchall()\n    ts = []\n    for _ in range(5):\n        t = time.perf_counter(); rows = con.sql(q).fetchall(); ts.append((time.perf_counter() - t) * 1e3)\n    out.append([statistics.median(ts), len(rows)])\nprint(json.dumps(out))"
    );
    let o = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: Vec<(f64, u64)> = serde_json::from_slice(&o.stdout).unwrap();
    println!(
        "duckdb over parquet Q1 / Q2 / Q3 {:.2} / {:.2} / {:.2} ms ({} / {} rows, {} types)",
        d[0].0, d[1].0, d[2].0, d[0].1, d[1].1, d[2].1
    );
    assert_eq!(
        (d[0].1, d[1].1, d[2].1),
        (a1.1, a2.1, a3.1),
        "the same answers"
    );
}
