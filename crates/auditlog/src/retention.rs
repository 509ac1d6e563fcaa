//! Retention: policies that remove whole compacted segments, oldest first,
//! never a raw one (so never the active one). Every removal is first
//! recorded in the log itself as an `AUDITLOG_RETENTION_APPLIED` event (type
//! from the built-in `auditlog` catalog), so the trail of a deletion stays in
//! the trail.
//!
//! Order: the marker is appended and synced, then the segment is removed
//! and the directory synced. A crash between the two leaves a marker for a
//! segment still there; the first retention pass after the next open finds
//! that marker and removes the segment without writing a second one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::catalog::registry::{engine_type_id, Registry};
use crate::compact::{CSeg, Prefilter};
use crate::error::{Error, Result};
use crate::event::codec::{self, EventRef, TextField};
use crate::event::{Event, Timestamp};
use crate::options::Durability;
use crate::severity::Severity;
use crate::wal::{self, Shared};
use crate::{Lsn, SegmentId};

/// The event type of a retention marker (built-in catalog `auditlog`).
pub const RETENTION_APPLIED: &str = "AUDITLOG_RETENTION_APPLIED";

/// How much an audit log keeps. Each limit given is applied on its own; a
/// compacted segment is removed when any of them asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove a compacted segment once its newest event is older than this.
    pub max_age: Option<Duration>,
    /// Remove the oldest compacted segments while all segment files together
    /// take more than this many bytes.
    pub max_bytes: Option<u64>,
    /// Remove the oldest compacted segments while the file system has less
    /// than this many bytes free.
    pub min_free_bytes: Option<u64>,
}

impl Retention {
    /// Whether no limit is set.
    pub fn is_none(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none() && self.min_free_bytes.is_none()
    }
}

/// One compacted segment retention removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The segment.
    pub segment: SegmentId,
    /// The LSNs it covered (inclusive).
    pub lsns: (Lsn, Lsn),
    /// Its earliest and latest event time.
    pub times: Option<(Timestamp, Timestamp)>,
    /// Records it held.
    pub records: u64,
    /// Bytes of its file.
    pub bytes: u64,
    /// Which limit removed it, and why.
    pub policy: String,
    /// The LSN of the marker event recording the removal.
    pub marker: Lsn,
}

fn why(
    policy: &Retention,
    c: &CSeg,
    total: u64,
    free: impl FnOnce() -> Result<u64>,
    now: Timestamp,
) -> Result<Option<String>> {
    if let (Some(age), Some(newest)) = (policy.max_age, c.max_time()) {
        let limit = now
            .0
            .saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
        if newest < limit {
            return Ok(Some(format!(
                "max_age={}s: newest event {} is older than {}",
                age.as_secs(),
                Timestamp(newest),
                Timestamp(limit)
            )));
        }
    }
    if let Some(max) = policy.max_bytes {
        if total > max {
            return Ok(Some(format!(
                "max_bytes={max}: the log takes {total} bytes"
            )));
        }
    }
    if let Some(min) = policy.min_free_bytes {
        let free = free()?;
        if free < min {
            return Ok(Some(format!("min_free_bytes={min}: {free} bytes free")));
        }
    }
    Ok(None)
}

/// Applies `policy` now: removes compacted segments, oldest first, while a
/// limit asks for it. `checked` says whether markers left by an interrupted
/// removal have been looked for since the log was opened.
pub(crate) fn apply(
    shared: &Arc<Shared>,
    registry: &RwLock<Registry>,
    policy: &Retention,
    now: Timestamp,
    checked: &AtomicBool,
) -> Result<Vec<Removal>> {
    if shared.opts.read_only {
        return Err(Error::ReadOnly);
    }
    let mut removals = Vec::new();
    if policy.is_none() {
        return Ok(removals);
    }
    let _one_at_a_time = shared.compact_lock.lock();
    loop {
        let (oldest, total) = {
            let compacted = shared.compacted.read();
            let raw = shared.segments.read();
            let total = compacted.iter().map(|c| c.file_len()).sum::<u64>()
                + raw.iter().map(|s| s.capacity).sum::<u64>();
            (compacted.first().cloned(), total)
        };
        let Some(c) = oldest else { break };
        let free = || {
            shared
                .opts
                .vfs
                .free_bytes(&shared.dir)
                .map_err(|e| Error::io("read free space of", &shared.dir, e))
        };
        let Some(reason) = why(policy, &c, total, free, now)? else {
            break;
        };
        let earlier = if checked.load(Ordering::Acquire) {
            None
        } else {
            existing_marker(shared, c.id)?
        };
        let times = c.min_time().zip(c.max_time());
        let removal = Removal {
            segment: c.id,
            lsns: (c.first_lsn, Lsn(c.next_lsn.0 - 1)),
            times: times.map(|(a, b)| (Timestamp(a), Timestamp(b))),
            records: c.records,
            bytes: c.file_len(),
            policy: reason,
            marker: Lsn(0),
        };
        let marker = match earlier {
            Some(lsn) => lsn,
            None => append_marker(shared, registry, &removal, now)?,
        };
        // The log keeps a copy of every registration the segment holds.
        registry
            .write()
            .rerecord_range(shared, now, c.first_lsn, c.next_lsn)?;
        wal::remove_oldest(shared, c.id)?;
        removals.push(Removal { marker, ..removal });
    }
    checked.store(true, Ordering::Release);
    Ok(removals)
}

/// The LSN of a marker already recording the removal of `segment`.
fn existing_marker(shared: &Arc<Shared>, segment: SegmentId) -> Result<Option<Lsn>> {
    let id = engine_type_id(RETENTION_APPLIED).expect("an engine type");
    let mut types = vec![false; usize::from(id) + 1];
    types[usize::from(id)] = true;
    let pre = Prefilter {
        types: Some(types),
        ..Prefilter::default()
    };
    let want = segment.to_string();
    for r in wal::planned(shared, false, pre, None) {
        let r = r?;
        if codec::peek_type_severity(r.payload()).is_none_or(|(t, _)| t != id) {
            continue;
        }
        if let Ok(e) = EventRef::parse(r.payload()) {
            if e.text(TextField::EntityId) == Some(want.as_str()) {
                return Ok(Some(r.lsn()));
            }
        }
    }
    Ok(None)
}

fn append_marker(
    shared: &Arc<Shared>,
    registry: &RwLock<Registry>,
    r: &Removal,
    now: Timestamp,
) -> Result<Lsn> {
    let mut e = Event::new(now, RETENTION_APPLIED, Severity::Notice);
    e.source = Some("auditlog".into());
    e.entity_type = Some("segment".into());
    e.entity_id = Some(r.segment.to_string());
    let mut attr = |k: &str, v: String| e.attrs.insert(k.to_string(), v);
    attr("first_lsn", r.lsns.0.to_string());
    attr("last_lsn", r.lsns.1.to_string());
    if let Some((a, b)) = r.times {
        attr("first_time", a.to_string());
        attr("last_time", b.to_string());
    }
    attr("records", r.records.to_string());
    attr("bytes", r.bytes.to_string());
    attr("policy", r.policy.clone());
    e.data = Some(format!(
        "retention removed segment {} (LSNs {}..={}, {} records): {}",
        r.segment, r.lsns.0, r.lsns.1, r.records, r.policy
    ));
    let keys: Vec<&str> = e.attrs.keys().map(String::as_str).collect();
    registry.write().register(shared, now, &[], &keys)?;
    let reg = registry.read();
    let id = engine_type_id(RETENTION_APPLIED).expect("an engine type");
    let mut buf = Vec::new();
    codec::encode(
        &e,
        id,
        &mut |k| reg.key_id(k).expect("registered above"),
        &mut buf,
    );
    drop(reg);
    wal::append_batch(shared, &[buf], Durability::Sync).map(|(lsn, _)| lsn)
}
