//! The storage core's benchmarks (figures in docs/BENCHMARKS.md):
//! - `append_buffered_128`: one writer, `Buffered`, next to raw writes of the same bytes;
//! - `audit_append`: one writer, `Buffered`, `AuditLog::append` of demo events
//!   next to `append_fields` of the same events borrowed (issue 14);
//! - `append_sync`: `Sync` appends from 1, 8 and 64 threads (group commit), with p50/p99;
//! - `scan_forward`: iterating a mmapped log, every CRC checked;
//! - `open_after_sigkill`: opening a ~1 GiB log whose writer was SIGKILLed mid-append.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use auditlog::{Durability, Log, Lsn, Options};
use auditlog_bench::{payload_128, percentile};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn append_buffered(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_buffered_128");
    g.throughput(Throughput::Bytes(128));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let payload = payload_128(7);
    // A fresh log per sample, so the disk does not fill; only the appends are timed.
    g.bench_function("auditlog", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(
                dir.path(),
                Options::default().durability(Durability::Buffered),
            )
            .unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                log.append(&payload).unwrap();
            }
            t.elapsed()
        })
    });
    // The same bytes with one write(2) each: in the page cache on return, as ours are.
    g.bench_function("raw_write_all", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let mut f = File::create(dir.path().join("raw")).unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                f.write_all(&payload).unwrap();
            }
            t.elapsed()
        })
    });
    // Through a BufWriter: faster, but a process crash loses what it buffers.
    g.bench_function("raw_bufwriter", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let mut f = BufWriter::new(File::create(dir.path().join("raw")).unwrap());
            let t = Instant::now();
            for _ in 0..iters {
                f.write_all(&payload).unwrap();
            }
            f.flush().unwrap();
            t.elapsed()
        })
    });
    g.finish();
}

fn append_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_sync");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(Log::open(dir.path(), Options::default().durability(Durability::Sync)).unwrap());
    for threads in [1u64, 8, 64] {
        let latencies = Arc::new(Mutex::new(Vec::new()));
        g.bench_with_input(
            BenchmarkId::from_parameter(threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads);
                    let start = Arc::new(Barrier::new(threads as usize + 1));
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let (log, start, latencies) =
                                (log.clone(), start.clone(), latencies.clone());
                            std::thread::spawn(move || {
                                let mut mine = Vec::with_capacity(per_thread as usize);
                                start.wait();
                                for i in 0..per_thread {
                                    let t0 = Instant::now();
                                    log.append(&payload_128(t << 32 | i)).unwrap();
                                    mine.push(t0.elapsed());
                                }
                                latencies.lock().unwrap().extend(mine);
                            })
                        })
                        .collect();
                    start.wait();
                    let t = Instant::now();
                    for h in handles {
                        h.join().unwrap();
                    }
                    // Scale to the requested count (threads may round it up).
                    t.elapsed()
                        .mul_f64(iters as f64 / (per_thread * threads) as f64)
                })
            },
        );
        let mut l = latencies.lock().unwrap();
        eprintln!(
            "append_sync/{threads}: latency p50 {:?} p99 {:?} over {} appends",
            percentile(&mut l, 0.50),
            percentile(&mut l, 0.99),
            l.len()
        );
    }
    g.finish();
}

fn scan_forward(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let records = 1_000_000u64;
    {
        let log = Log::open(
            dir.path(),
            Options::default().durability(Durability::Buffered),
        )
        .unwrap();
        let batch: Vec<[u8; 128]> = (0..1000).map(payload_128).collect();
        for _ in 0..records / 1000 {
            log.append_batch(&batch).unwrap();
        }
    }
    let log = Log::open(dir.path(), Options::default().read_only(true)).unwrap();
    let mut g = c.benchmark_group("scan_forward");
    // Bytes of log walked: frame headers and payloads.
    g.throughput(Throughput::Bytes(records * (16 + 128)));
    g.sample_size(20);
    g.bench_function("1M_records_128B", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let mut sum = 0u64;
            for r in log.iter(..) {
                let r = r.unwrap();
                sum = sum.wrapping_add(u64::from(r.payload()[0]));
                n += 1;
            }
            assert_eq!(n, records);
            sum
        })
    });
    g.finish();
}

fn open_after_sigkill(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fill"))
        .arg(dir.path())
        .arg((1u64 << 30).to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the fill helper");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "fill helper failed");
    std::thread::sleep(Duration::from_millis(50)); // killed while appending
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let size: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!("open_after_sigkill: log of {} MiB", size >> 20);
    let mut g = c.benchmark_group("open_after_sigkill");
    g.sample_size(20);
    g.bench_function("1GiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let log = Log::open(dir.path(), Options::default()).unwrap();
                total += t.elapsed();
                assert!(log.next_lsn() > Lsn(7_000_000));
            }
            total
        })
    });
    g.finish();
}

/// `AuditLog` appends of demo events, owned and borrowed: what an application
/// pays per event, encoding included.
fn audit_append(c: &mut Criterion) {
    let events: Vec<auditlog::Event> = auditlog_cli::workload::Workload {
        events: 100_000,
        ..Default::default()
    }
    .generate()
    .collect();
    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for borrowed in [false, true] {
        let name = if borrowed { "append_fields" } else { "append" };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let log = auditlog_bench::demo_log(dir.path());
                // Names registered before timing, as in a running application.
                log.append_batch(&events).unwrap();
                let fields: Vec<_> = events.iter().map(|e| e.fields()).collect();
                let t = Instant::now();
                for i in 0..iters as usize {
                    if borrowed {
                        log.append_fields(&fields[i % fields.len()]).unwrap();
                    } else {
                        log.append(&events[i % events.len()]).unwrap();
                    }
                }
                t.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    append_buffered,
    audit_append,
    append_sync,
    scan_forward,
    open_after_sigkill
);
criterion_main!(benches);
