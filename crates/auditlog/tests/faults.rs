//! Power loss, failed fsyncs and a full disk, through the fault-injecting file
//! system. Every test is seeded and prints its seed when it fails.

mod common;

use auditlog::testing::{FaultyFs, SplitMix64};
use auditlog::{Durability, Error, Log, Lsn, RecoveryMode};
use common::{all, faulty, fdir, payload};

fn opts(fs: &FaultyFs) -> auditlog::Options {
    faulty(fs)
        .segment_bytes(4096)
        .record_bytes_max(1500)
        .durability(Durability::Buffered)
}

/// Appends a random mix of buffered, batched and `Sync` records; returns the
/// payloads by LSN and the highest LSN a `Sync` call acknowledged as durable.
fn workload(log: &Log, rng: &mut SplitMix64, written: &mut Vec<Vec<u8>>, acked: &mut u64) {
    let n = 5 + rng.next() % 60;
    for _ in 0..n {
        let len = (rng.next() % 700) as usize;
        let tag = written.len() as u64 + 1;
        match rng.next() % 4 {
            0 => {
                let lsn = log
                    .append_with(&payload(tag, len), Durability::Sync)
                    .unwrap();
                written.push(payload(tag, len));
                *acked = lsn.0;
            }
            1 => {
                let batch: Vec<Vec<u8>> = (0..1 + rng.next() % 5)
                    .map(|i| payload(tag + i, len / 2))
                    .collect();
                log.append_batch(&batch).unwrap();
                written.extend(batch);
            }
            _ => {
                log.append(&payload(tag, len)).unwrap();
                written.push(payload(tag, len));
            }
        }
    }
    if rng.next().is_multiple_of(3) {
        log.sync().unwrap();
        *acked = written.len() as u64;
    }
}

/// After recovery, the log must be a dense prefix of what was written, bit-exact,
/// holding at least every acknowledged record.
fn check_prefix(seed: u64, log: &Log, written: &mut Vec<Vec<u8>>, acked: u64) {
    let got = all(log);
    assert!(
        got.len() as u64 >= acked,
        "seed {seed}: {} records survive, {acked} were acknowledged",
        got.len()
    );
    for (i, (lsn, p)) in got.iter().enumerate() {
        assert_eq!(*lsn, Lsn(i as u64 + 1), "seed {seed}: LSNs not dense");
        assert_eq!(
            p, &written[i],
            "seed {seed}: record {lsn} differs from what was written"
        );
    }
    // What did not survive was never acknowledged; forget it.
    written.truncate(got.len());
}

/// Seeds of the power-loss suite: 10,000 by default (about 12 s of a debug
/// build on two cores); `AUDITLOG_POWER_SEEDS=N` for a soak run.
fn power_seeds() -> u64 {
    std::env::var("AUDITLOG_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

/// Runs `f` for every seed below `n`, on every core.
fn each_seed(n: u64, f: impl Fn(u64) + Sync) {
    let next = std::sync::atomic::AtomicU64::new(0);
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seed >= n {
                    break;
                }
                f(seed);
            });
        }
    });
}

#[test]
fn power_loss_keeps_every_synced_record_and_returns_no_garbage() {
    each_seed(power_seeds(), |seed| {
        let fs = FaultyFs::new();
        let mut rng = SplitMix64(seed);
        let mut written = Vec::new();
        let mut acked = 0;
        for round in 0..4 {
            let log = Log::open(fdir(), opts(&fs))
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen failed: {e}"));
            check_prefix(seed, &log, &mut written, acked);
            workload(&log, &mut rng, &mut written, &mut acked);
            fs.crash(rng.next());
            drop(log);
        }
        let log = Log::open(fdir(), opts(&fs))
            .unwrap_or_else(|e| panic!("seed {seed} after the last round: reopen failed: {e}"));
        check_prefix(seed, &log, &mut written, acked);
        assert!(log.verify().unwrap().damage.is_empty(), "seed {seed}");
    });
}

#[test]
fn torn_tail_is_cleared_and_reported() {
    // Find a seed whose crash tears the tail, then check what recovery says.
    let mut torn_seen = 0;
    for seed in 0..100u64 {
        let fs = FaultyFs::new();
        let log = Log::open(fdir(), opts(&fs)).unwrap();
        for i in 1..=20 {
            log.append(&payload(i, 600)).unwrap();
        }
        fs.crash(seed);
        drop(log);
        let log = Log::open(fdir(), opts(&fs).recovery(RecoveryMode::Strict)).unwrap();
        if log.recovery_report().torn_tail_bytes > 0 {
            torn_seen += 1;
            // The cleared bytes do not come back to confuse a later scan.
            let n = log.next_lsn().0;
            log.append_with(&payload(999, 10), Durability::Sync)
                .unwrap();
            drop(log);
            let log = Log::open(fdir(), opts(&fs)).unwrap();
            assert_eq!(log.recovery_report().torn_tail_bytes, 0, "seed {seed}");
            assert_eq!(all(&log).last().unwrap(), &(Lsn(n), payload(999, 10)));
        }
    }
    assert!(
        torn_seen > 10,
        "only {torn_seen} of 100 crashes tore the tail"
    );
}

#[test]
fn failed_fsync_poisons_the_log_and_loses_nothing_acknowledged() {
    // Seeds whose first failure was the append's own sync.
    let mut not_durable = 0;
    for seed in 0..200u64 {
        let fs = FaultyFs::new();
        let mut rng = SplitMix64(seed);
        let log = Log::open(fdir(), opts(&fs)).unwrap();
        fs.fail_sync_after(rng.next() % 25);
        let mut written = Vec::new();
        let mut acked = 0;
        let mut failed = false;
        for i in 1..=200u64 {
            let p = payload(i, (rng.next() % 500) as usize);
            let next = log.next_lsn();
            match log.append_with(&p, Durability::Sync) {
                Ok(lsn) => {
                    assert!(
                        !failed,
                        "seed {seed}: an append succeeded after a failed fsync"
                    );
                    written.push(p);
                    acked = lsn.0;
                }
                Err(e) => {
                    if !failed {
                        match &e {
                            // Its own sync failed (or the rollover thread's,
                            // which it waited for): written, readable, and
                            // said to be exactly this record.
                            Error::NotDurable {
                                first, next: end, ..
                            } => {
                                assert_eq!((*first, *end), (next, Lsn(next.0 + 1)), "seed {seed}");
                                let got = log.read(next).unwrap().expect("readable");
                                assert_eq!(got.payload(), &p[..], "seed {seed}");
                                written.push(p);
                                not_durable += 1;
                            }
                            // A sync of the rollover thread (a seal, a new
                            // segment's header) poisoned the log before the
                            // record was written, or creating the segment
                            // it needed failed: nothing written.
                            Error::Poisoned { .. } | Error::Io { .. } => {
                                assert_eq!(log.next_lsn(), next, "seed {seed}: {e}");
                            }
                            _ => panic!("seed {seed}: first error {e}"),
                        }
                    } else {
                        assert!(matches!(e, Error::Poisoned { .. }), "seed {seed}: {e}");
                    }
                    failed = true;
                }
            }
        }
        assert!(failed, "seed {seed}: no fsync failed");
        assert!(matches!(log.sync(), Err(Error::Poisoned { .. })));
        assert!(matches!(log.append(b"x"), Err(Error::Poisoned { .. })));
        // Reads still work.
        assert!(log.iter(..).all(|r| r.is_ok()));
        fs.crash(rng.next());
        drop(log);
        let log = Log::open(fdir(), opts(&fs))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
        check_prefix(seed, &log, &mut written, acked);
    }
    assert!(
        not_durable > 50,
        "only {not_durable} of 200 first failures were an append's own sync"
    );
}

#[test]
fn full_disk_is_a_clear_error_and_the_log_recovers_when_space_returns() {
    let fs = FaultyFs::new();
    let log = Log::open(fdir(), opts(&fs)).unwrap();
    fs.set_space_limit(Some(3 * 4096 + 100));
    let mut n = 0u64;
    let err = loop {
        match log.append(&payload(n + 1, 300)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::StorageFull { .. }), "{err}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(n > 20);
    // Readable, and the same error again while the disk is full.
    assert_eq!(all(&log).len() as u64, n);
    assert!(matches!(log.append(b"x"), Err(Error::StorageFull { .. })));
    fs.set_space_limit(None);
    let lsn = log
        .append_with(&payload(n + 1, 300), Durability::Sync)
        .unwrap();
    assert_eq!(lsn, Lsn(n + 1));
    drop(log);
    let log = Log::open(fdir(), opts(&fs)).unwrap();
    let got = all(&log);
    assert_eq!(got.len() as u64, n + 1);
    assert!(got.iter().all(|(l, p)| *p == payload(l.0, 300)));
}

#[test]
fn crash_during_rollover_at_every_sync_opens_cleanly() {
    // Fail each sync in turn (segment creation, header, directory, seal), then crash.
    for k in 0..30u64 {
        for seed in 0..5u64 {
            let fs = FaultyFs::new();
            let log = Log::open(fdir(), opts(&fs)).unwrap();
            fs.fail_sync_after(k);
            let mut written = Vec::new();
            let mut acked = 0;
            for i in 1..=60u64 {
                let p = payload(i, 400);
                let r = log.append_with(&p, Durability::Sync);
                written.push(p);
                match r {
                    Ok(l) => acked = l.0,
                    Err(_) => break,
                }
            }
            fs.crash(seed);
            drop(log);
            let log = Log::open(fdir(), opts(&fs))
                .unwrap_or_else(|e| panic!("k {k} seed {seed}: reopen failed: {e}"));
            check_prefix(k * 100 + seed, &log, &mut written, acked);
            // And it takes appends again.
            log.append_with(b"after", Durability::Sync).unwrap();
        }
    }
}
