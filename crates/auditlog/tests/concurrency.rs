//! 8 writer threads and 4 reader threads for a few seconds: readers always see
//! a gap-free prefix, and the final log holds every acknowledged record once.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog::{Durability, Log, Lsn, Options};

const WRITERS: u64 = 8;
const READERS: usize = 4;

fn record(writer: u64, seq: u64) -> Vec<u8> {
    let mut v = writer.to_le_bytes().to_vec();
    v.extend_from_slice(&seq.to_le_bytes());
    v.resize(
        16 + ((writer * 31 + seq * 7) % 200) as usize,
        (seq % 251) as u8,
    );
    v
}

fn decode(p: &[u8]) -> (u64, u64) {
    (
        u64::from_le_bytes(p[0..8].try_into().unwrap()),
        u64::from_le_bytes(p[8..16].try_into().unwrap()),
    )
}

#[test]
fn writers_and_readers_together() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_bytes(256 << 10)
        .record_bytes_max(4096)
        .durability(Durability::Buffered);
    let log = Arc::new(Log::open(dir.path(), opts.clone()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_secs(3);

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut seq: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let durability = if seq.is_multiple_of(50) {
                        Durability::Sync
                    } else {
                        Durability::Buffered
                    };
                    if seq % 10 == 3 {
                        let batch: Vec<Vec<u8>> = (0..4).map(|k| record(w, seq + k)).collect();
                        let r = log.append_batch_with(&batch, durability).unwrap();
                        for (k, lsn) in (r.start.0..r.end.0).enumerate() {
                            acked.push((Lsn(lsn), seq + k as u64));
                        }
                        seq += 4;
                    } else {
                        acked.push((log.append_with(&record(w, seq), durability).unwrap(), seq));
                        seq += 1;
                    }
                }
                acked
            })
        })
        .collect();

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut passes = 0u64;
                let mut follower = log.follow(Lsn(1));
                let mut followed = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if r == 0 {
                        // A follower sees every LSN in order.
                        while let Some(rec) =
                            follower.next_timeout(Duration::from_millis(5)).unwrap()
                        {
                            followed += 1;
                            assert_eq!(rec.lsn(), Lsn(followed), "follower skipped");
                        }
                        continue;
                    }
                    let end = log.next_lsn();
                    let mut expect = 1;
                    let iter = if r == 1 {
                        log.iter_rev(..end)
                    } else {
                        log.iter(..end)
                    };
                    let mut lsns: Vec<u64> = Vec::new();
                    for rec in iter {
                        let rec = rec.unwrap();
                        let (w, seq) = decode(rec.payload());
                        assert_eq!(rec.payload(), &record(w, seq)[..]);
                        lsns.push(rec.lsn().0);
                    }
                    if r == 1 {
                        lsns.reverse();
                    }
                    for l in lsns {
                        assert_eq!(l, expect, "gap in what a reader saw");
                        expect += 1;
                    }
                    assert_eq!(expect, end.0, "reader saw fewer records than were visible");
                    passes += 1;
                }
                passes + followed
            })
        })
        .collect();

    let start = Instant::now();
    while start.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Vec<(Lsn, u64)>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    for r in readers {
        assert!(r.join().unwrap() > 0, "a reader made no progress");
    }
    drop(log);

    let log = Log::open(dir.path(), opts).unwrap();
    let mut by_lsn = HashMap::new();
    let mut total = 0;
    for (w, list) in acked.iter().enumerate() {
        let mut last = 0;
        for &(lsn, seq) in list {
            assert!(lsn.0 > last, "a writer's LSNs went backwards");
            last = lsn.0;
            assert!(
                by_lsn.insert(lsn, (w as u64, seq)).is_none(),
                "LSN {lsn} given twice"
            );
            total += 1;
        }
    }
    let mut count = 0;
    for rec in log.iter(..) {
        let rec = rec.unwrap();
        let (w, seq) = decode(rec.payload());
        assert_eq!(
            by_lsn.get(&rec.lsn()),
            Some(&(w, seq)),
            "record {} unexpected",
            rec.lsn()
        );
        count += 1;
    }
    assert_eq!(count, total, "every acknowledged record exactly once");
    assert!(total > 1000, "only {total} appends in the run");
    assert!(log.segment_count() > 2, "the run should roll over");
}

/// Group commit under load: 64 threads of `Sync` appends across rollovers,
/// then power loss. Every append that returned is back, bit-exact; a leader
/// that waits to gather more records never lets one return unsynced.
#[test]
fn sync_appends_from_64_threads_survive_power_loss() {
    use auditlog::testing::FaultyFs;
    for seed in 0..3u64 {
        let fs = FaultyFs::new();
        let opts = common::faulty(&fs)
            .segment_bytes(64 << 10)
            .record_bytes_max(1024)
            .durability(Durability::Sync);
        let log = Arc::new(Log::open(common::fdir(), opts.clone()).unwrap());
        let acked: Vec<Vec<(Lsn, Vec<u8>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64u64)
                .map(|w| {
                    let log = log.clone();
                    s.spawn(move || {
                        (0..40u64)
                            .map(|i| {
                                let p = record(w, i);
                                (log.append(&p).unwrap(), p)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(log.rollover_stats().rollovers > 0, "seed {seed}");
        fs.crash(seed);
        drop(log);
        // A handle of the rebooted file system: `opts`'s is the old process's.
        let log = Log::open(common::fdir(), opts.vfs(Arc::new(fs.clone()))).unwrap();
        for (lsn, p) in acked.iter().flatten() {
            let got = log.read(*lsn).unwrap();
            assert_eq!(
                got.as_ref().map(|r| r.payload()),
                Some(&p[..]),
                "seed {seed}: LSN {lsn}"
            );
        }
    }
}
