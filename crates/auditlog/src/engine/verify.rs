//! `Log::verify`: every frame of every segment, every checksum.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::engine::open::corruption;
use crate::engine::{Seg, Shared};
use crate::error::{Corruption, Problem, Result};
use crate::raw::recovery;
use crate::raw::segment::{Footer, DATA_START};
use crate::Lsn;

/// What [`Log::verify`](crate::Log::verify) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files walked.
    pub segments: usize,
    /// Valid records seen.
    pub records: u64,
    /// Ranges listed in the quarantine file (known, skipped).
    pub quarantined: usize,
    /// Damage not yet quarantined. Empty for a healthy log.
    pub damage: Vec<Corruption>,
}

/// Walks every frame of every segment.
pub(crate) fn verify(shared: &Shared) -> Result<VerifyReport> {
    let compacted = shared.compacted.read().clone();
    let segs: Vec<Arc<Seg>> = shared.segments.read().clone();
    let mut report = VerifyReport {
        segments: compacted.len() + segs.len(),
        quarantined: shared.quarantined - shared.report.unreadable.len(),
        // Damage a reader skipped in memory at open is damage, not quarantine.
        damage: shared.report.unreadable.clone(),
        ..Default::default()
    };
    for c in &compacted {
        let damaged = c.check_blocks();
        for (n, b) in c.index.blocks.iter().enumerate() {
            if c.damaged.binary_search(&(n as u32)).is_ok() {
                continue;
            }
            match damaged.iter().find(|d| d.0 == n) {
                Some((_, problem)) => report.damage.push(c.block_damage(n, problem.clone())),
                None => report.records += u64::from(b.rows),
            }
        }
    }
    for seg in segs {
        let sealed = seg.sealed.load(Ordering::Acquire);
        let end = seg.end.load(Ordering::Acquire);
        let view = seg.view_to(if sealed { seg.capacity } else { end })?;
        let bytes = view.bytes();
        let max = seg.record_max;
        let s = recovery::scan(bytes, DATA_START, end, seg.first_lsn, max, &seg.skips);
        report.records += s.count;
        for d in &s.damage {
            report.damage.push(corruption(seg.id, &seg.path, d));
        }
        if s.valid_end < end && s.damage.is_empty() {
            report.damage.push(Corruption {
                path: seg.path.clone(),
                segment: seg.id,
                offset: s.valid_end,
                end,
                lsns_lost: Some((s.next_lsn, Lsn(seg.next_lsn.load(Ordering::Acquire) - 1))),
                block: None,
                problem: first_problem(bytes, s.valid_end, end, max),
            });
        }
        if sealed && seg.skips.is_empty() && bytes.len() as u64 >= seg.capacity {
            if let Ok(Some(f)) = Footer::decode(&bytes[..seg.capacity as usize]) {
                let computed = crc32fast::hash(&bytes[..f.data_end as usize]);
                if computed != f.data_crc && s.damage.is_empty() && s.valid_end == end {
                    report.damage.push(Corruption {
                        path: seg.path.clone(),
                        segment: seg.id,
                        offset: 0,
                        end: f.data_end,
                        lsns_lost: None,
                        block: None,
                        problem: Problem::DataCrc {
                            stored: f.data_crc,
                            computed,
                        },
                    });
                }
            }
        }
    }
    if shared.opts.read_only {
        report.damage.extend(tail_damage_beyond_visible(shared));
    }
    Ok(report)
}

/// A read-only open stops at the first gap in the last segment, since a live
/// writer may still be copying there. `verify` looks past it: damage followed
/// by valid frames that is still there 50 ms later is real.
fn tail_damage_beyond_visible(shared: &Shared) -> Vec<Corruption> {
    let Some(tail) = shared.segments.read().last().cloned() else {
        return Vec::new();
    };
    if tail.sealed.load(Ordering::Acquire) {
        return Vec::new();
    }
    let scan = || {
        let mut found = Vec::new();
        tail.file.inspect(&mut |b| {
            let s = recovery::scan(
                b,
                DATA_START,
                tail.data_limit(),
                tail.first_lsn,
                tail.record_max,
                &tail.skips,
            );
            found = s.damage;
        });
        found
    };
    let first = scan();
    if first.is_empty() {
        return Vec::new();
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let second = scan();
    first
        .iter()
        .filter(|d| second.iter().any(|s| s.start == d.start && s.end == d.end))
        .map(|d| corruption(tail.id, &tail.path, d))
        .collect()
}

fn first_problem(bytes: &[u8], at: u64, end: u64, max: u32) -> Problem {
    match crate::raw::frame::decode(bytes, at, end, max) {
        Err(p) => p,
        Ok(f) => Problem::LsnMismatch {
            expected: f.lsn,
            found: f.lsn,
        },
    }
}
