//! The on-disk format, byte for byte: a small log written by this code must
//! equal the checked-in fixture for the current format version (2), and the
//! fixtures of every version must read back. If this fails after a change,
//! the format changed: bump `FORMAT_VERSION`, update docs/FORMAT.md, and
//! keep the old fixtures readable.

use std::path::{Path, PathBuf};

use auditlog::{Durability, Log, Lsn, Options};

fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

fn opts() -> Options {
    Options::default()
        .compaction(auditlog::Compaction::Manual)
        .segment_bytes(1024)
        .record_bytes_max(256)
        .durability(Durability::Buffered)
        // A log's identity is random; the fixture's is fixed.
        .new_log_id(0x4155_4449_544c_4f47_0000_0000_0000_0001)
}

fn records() -> Vec<Vec<u8>> {
    (0..12u8).map(|i| vec![b'a' + i; 20 * i as usize]).collect()
}

const SEGMENTS: [&str; 2] = ["00000000000000000001.seg", "00000000000000000002.seg"];

#[test]
fn writing_the_fixture_records_gives_the_fixture_bytes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), opts()).unwrap();
        for r in records() {
            log.append(&r).unwrap();
        }
    }
    if std::env::var_os("AUDITLOG_WRITE_FIXTURE").is_some() {
        for name in SEGMENTS {
            std::fs::copy(dir.path().join(name), fixture_dir(2).join(name)).unwrap();
        }
    }
    for name in SEGMENTS {
        let made = std::fs::read(dir.path().join(name)).unwrap();
        let fixture = std::fs::read(fixture_dir(2).join(name)).unwrap();
        assert!(
            made == fixture,
            "{name} differs from the v2 fixture: the on-disk format changed"
        );
    }
}

#[test]
fn the_fixtures_of_every_version_read_back() {
    for version in [1, 2] {
        fixture_reads_back(version);
    }
}

fn fixture_reads_back(version: u32) {
    let dir = tempfile::tempdir().unwrap();
    for name in SEGMENTS {
        std::fs::copy(fixture_dir(version).join(name), dir.path().join(name)).unwrap();
    }
    let log = Log::open(dir.path(), opts().check_sealed(true)).unwrap();
    let got: Vec<(Lsn, Vec<u8>)> = log
        .iter(..)
        .map(|r| r.map(|r| (r.lsn(), r.payload().to_vec())).unwrap())
        .collect();
    let want: Vec<(Lsn, Vec<u8>)> = records()
        .into_iter()
        .enumerate()
        .map(|(i, r)| (Lsn(i as u64 + 1), r))
        .collect();
    assert_eq!(got, want);
    assert!(log.verify().unwrap().damage.is_empty());
}
