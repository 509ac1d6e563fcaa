//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::testing::{FaultyFs, SplitMix64};
use auditlog::{Log, Lsn, Options};

/// A payload that says which LSN it was written as, with a length that varies.
pub fn payload(tag: u64, len: usize) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    let mut rng = SplitMix64(tag);
    while v.len() < len.max(8) {
        v.push(rng.next() as u8);
    }
    v.truncate(len.max(8));
    v
}

/// Every record in the log, oldest first; panics on any error.
pub fn all(log: &Log) -> Vec<(Lsn, Vec<u8>)> {
    log.iter(..)
        .map(|r| r.map(|r| (r.lsn(), r.payload().to_vec())).unwrap())
        .collect()
}

/// Every record in the log, newest first.
pub fn all_rev(log: &Log) -> Vec<(Lsn, Vec<u8>)> {
    log.iter_rev(..)
        .map(|r| r.map(|r| (r.lsn(), r.payload().to_vec())).unwrap())
        .collect()
}

/// Options on a fault-injecting file system.
pub fn faulty(fs: &FaultyFs) -> Options {
    Options::default()
        .compaction(auditlog::Compaction::Manual)
        .vfs(Arc::new(fs.clone()))
}

/// The log directory used with a `FaultyFs`.
pub fn fdir() -> PathBuf {
    PathBuf::from("/log")
}

/// Segment file paths in a real directory, sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}
