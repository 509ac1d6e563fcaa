//! Helpers shared by auditlog's benchmarks.

use std::time::Duration;

pub mod compare;

/// The `p`-th percentile (0.0..=1.0) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[i]
}

/// The median of `samples`.
pub fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// An `AuditLog` in `dir` as the single-writer benchmarks use it: buffered,
/// compaction by hand, the demo's catalog, default segments.
pub fn demo_log(dir: &std::path::Path) -> auditlog::AuditLog {
    use auditlog::{AuditLog, AuditOptions, Catalog, Compaction, Durability, Options};
    AuditLog::open(
        dir,
        AuditOptions {
            log: Options::default()
                .durability(Durability::Buffered)
                .compaction(Compaction::Manual),
            catalog: Catalog::builtin("filetransfer-2.0"),
            ..AuditOptions::default()
        },
    )
    .expect("open the benchmark's log")
}

/// The 128-byte payload the append benchmarks write.
pub fn payload_128(i: u64) -> [u8; 128] {
    let mut p = [0x5a; 128];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&mut v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&mut [], 0.5), Duration::ZERO);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
