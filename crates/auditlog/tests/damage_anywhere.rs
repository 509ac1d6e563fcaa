//! Any damage to any byte of a log: opening never panics, and no record is
//! ever returned that differs from what was written.

mod common;

use std::collections::HashMap;

use auditlog::testing::FaultyFs;
use auditlog::{Log, Lsn, RecoveryMode};
use common::{faulty, fdir, payload};
use proptest::prelude::*;

const SEG: u64 = 4096;

fn opts(fs: &FaultyFs) -> auditlog::Options {
    faulty(fs).segment_bytes(SEG).record_bytes_max(1000)
}

/// Segment files: path and contents.
type Images = Vec<(std::path::PathBuf, Vec<u8>)>;

/// A log of three segments on a fresh `FaultyFs`; returns the files' images
/// and what was written at each LSN.
fn build(n: u64) -> (Images, HashMap<Lsn, Vec<u8>>) {
    let fs = FaultyFs::new();
    let log = Log::open(fdir(), opts(&fs)).unwrap();
    let mut written = HashMap::new();
    for i in 1..=n {
        let p = payload(i, (i as usize * 37) % 300);
        written.insert(log.append(&p).unwrap(), p);
    }
    drop(log);
    let mut files = Vec::new();
    for id in 1.. {
        let path = fdir().join(format!("{id:020}.seg"));
        match fs.contents(&path) {
            Some(b) => files.push((path, b)),
            None => break,
        }
    }
    (files, written)
}

#[derive(Debug, Clone)]
enum Hurt {
    Flip {
        file: usize,
        at: usize,
        bit: u8,
    },
    Zero {
        file: usize,
        at: usize,
        len: usize,
    },
    Garbage {
        file: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    Truncate {
        file: usize,
        len: usize,
    },
}

fn hurt() -> impl Strategy<Value = Hurt> {
    prop_oneof![
        (0..3usize, 0..SEG as usize, 0..8u8).prop_map(|(file, at, bit)| Hurt::Flip {
            file,
            at,
            bit
        }),
        (0..3usize, 0..SEG as usize, 1..1500usize).prop_map(|(file, at, len)| Hurt::Zero {
            file,
            at,
            len
        }),
        (
            0..3usize,
            0..SEG as usize,
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(file, at, bytes)| Hurt::Garbage { file, at, bytes }),
        (0..3usize, 0..SEG as usize).prop_map(|(file, len)| Hurt::Truncate { file, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_logs_never_panic_and_never_return_damaged_records(hurts in proptest::collection::vec(hurt(), 1..4)) {
        let (mut files, written) = build(60);
        prop_assume!(files.len() >= 3);
        for h in &hurts {
            match h {
                Hurt::Flip { file, at, bit } => {
                    if let Some(b) = files[*file].1.get_mut(*at) {
                        *b ^= 1 << bit;
                    }
                }
                Hurt::Zero { file, at, len } => {
                    let b = &mut files[*file].1;
                    let end = (*at + *len).min(b.len());
                    b[*at.min(&end)..end].fill(0);
                }
                Hurt::Garbage { file, at, bytes } => {
                    let b = &mut files[*file].1;
                    for (i, x) in bytes.iter().enumerate() {
                        if let Some(slot) = b.get_mut(at + i) {
                            *slot = *x;
                        }
                    }
                }
                Hurt::Truncate { file, len } => files[*file].1.truncate(*len),
            }
        }
        for mode in [RecoveryMode::Strict, RecoveryMode::Repair] {
            let fs = FaultyFs::new();
            for (path, bytes) in &files {
                fs.put_file(path, bytes);
            }
            for check_sealed in [false, true] {
                let Ok(log) = Log::open(fdir(), opts(&fs).recovery(mode).check_sealed(check_sealed)) else {
                    continue; // a clear error is a fine answer
                };
                for rec in log.iter(..).chain(log.iter_rev(..)) {
                    match rec {
                        Ok(r) => prop_assert_eq!(Some(&r.payload().to_vec()), written.get(&r.lsn()), "record {} altered", r.lsn()),
                        Err(e) => prop_assert!(e.corruption().is_some(), "{}", e),
                    }
                }
                let _ = log.verify().unwrap();
            }
        }
    }
}
