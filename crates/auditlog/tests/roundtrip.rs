//! Random batches written and read back across rollovers, forward and
//! backward, before and after reopening.

mod common;

use auditlog::{Durability, Log, Lsn, Options};
use common::{all, all_rev};
use proptest::prelude::*;

fn batches() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    let record = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => proptest::collection::vec(any::<u8>(), 200..3000),
    ];
    proptest::collection::vec(proptest::collection::vec(record, 1..12), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn batches_read_back_forward_backward_and_after_reopen(batches in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default()
            .segment_bytes(8 << 10)
            .record_bytes_max(4000)
            .durability(Durability::Buffered);
        let mut expected = Vec::new();
        {
            let log = Log::open(dir.path(), opts.clone()).unwrap();
            for batch in &batches {
                let range = if batch.len() == 1 {
                    let l = log.append(&batch[0]).unwrap();
                    l..Lsn(l.0 + 1)
                } else {
                    log.append_batch(batch).unwrap()
                };
                prop_assert_eq!(range.start, Lsn(expected.len() as u64 + 1));
                prop_assert_eq!(range.end.0 - range.start.0, batch.len() as u64);
                for p in batch {
                    expected.push((Lsn(expected.len() as u64 + 1), p.clone()));
                }
            }
            prop_assert_eq!(all(&log), expected.clone());
            let mut rev = expected.clone();
            rev.reverse();
            prop_assert_eq!(all_rev(&log), rev);
        }
        let log = Log::open(dir.path(), opts).unwrap();
        prop_assert_eq!(log.recovery_report().torn_tail_bytes, 0);
        prop_assert_eq!(all(&log), expected.clone());
        // Random access and sub-ranges, both directions.
        let n = expected.len() as u64;
        for lsn in [1, n / 3 + 1, n / 2 + 1, n] {
            let r = log.read(Lsn(lsn)).unwrap().unwrap();
            prop_assert_eq!(r.payload(), &expected[lsn as usize - 1].1[..]);
        }
        prop_assert!(log.read(Lsn(n + 1)).unwrap().is_none());
        let (a, b) = (n / 4 + 1, (3 * n / 4).max(n / 4 + 1));
        let fwd: Vec<_> = log.iter(Lsn(a)..=Lsn(b)).map(|r| r.unwrap().lsn().0).collect();
        prop_assert_eq!(fwd, (a..=b).collect::<Vec<_>>());
        let back: Vec<_> = log.iter_rev(Lsn(a)..=Lsn(b)).map(|r| r.unwrap().lsn().0).collect();
        prop_assert_eq!(back, (a..=b).rev().collect::<Vec<_>>());
        let report = log.verify().unwrap();
        prop_assert!(report.damage.is_empty());
        prop_assert_eq!(report.records, n);
    }
}

#[test]
fn appends_continue_after_reopen_and_segments_roll_over() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_bytes(4096)
        .record_bytes_max(1000);
    for round in 0..3u64 {
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        for i in 0..100u64 {
            let lsn = log
                .append(&common::payload(round * 100 + i + 1, 90))
                .unwrap();
            assert_eq!(lsn, Lsn(round * 100 + i + 1));
        }
        assert!(log.segment_count() >= 3 * (round as usize + 1));
        assert_eq!(log.durable_lsn(), log.next_lsn());
    }
    let log = Log::open(dir.path(), opts).unwrap();
    let got = all(&log);
    assert_eq!(got.len(), 300);
    for (lsn, p) in got {
        assert_eq!(p, common::payload(lsn.0, 90));
    }
}
