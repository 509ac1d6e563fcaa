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

use parking_lot::{Mutex, RwLock};

use crate::catalog::registry::{engine_type_id, Registry};
use crate::engine::{CompactedInfo, Shared};
use crate::error::{Error, Result};
use crate::event::codec::{self, EventRef, TextField};
use crate::event::{Event, Timestamp};
use crate::query::Prefilter;
use crate::severity::Severity;
use crate::tlog::tree::{leaf_hash, Frontier, EDGE_ATTR};
use crate::{Lsn, SegmentId};

pub use crate::event::reserved::RETENTION_APPLIED;

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

/// What retention needs to know of one compacted segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) segment: SegmentId,
    pub(crate) lsns: (Lsn, Lsn),
    pub(crate) times: Option<(Timestamp, Timestamp)>,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

impl Candidate {
    fn of(c: &CompactedInfo) -> Candidate {
        Candidate {
            segment: c.segment,
            lsns: (c.first_lsn, Lsn(c.next_lsn.0 - 1)),
            times: c.times.map(|(a, b)| (Timestamp(a), Timestamp(b))),
            records: c.records,
            bytes: c.bytes,
        }
    }
}

/// Which of `segments` (compacted, oldest first) `policy` removes, with
/// why: oldest first, while a limit asks for it, each removal counted as
/// freeing its bytes. `total` is what all segment files take; `free` what
/// the file system has free (asked only if a free-space limit is set).
/// Pure: the same facts give the same plan.
pub(crate) fn plan(
    policy: &Retention,
    segments: &[Candidate],
    mut total: u64,
    free: impl FnOnce() -> Result<u64>,
    now: Timestamp,
) -> Result<Vec<Removal>> {
    let mut free = match policy.min_free_bytes {
        Some(_) => Some(free()?),
        None => None,
    };
    let mut out = Vec::new();
    for c in segments {
        let Some(reason) = why(policy, c, total, free, now) else {
            break;
        };
        out.push(Removal {
            segment: c.segment,
            lsns: c.lsns,
            times: c.times,
            records: c.records,
            bytes: c.bytes,
            policy: reason,
            marker: Lsn(0),
        });
        total = total.saturating_sub(c.bytes);
        free = free.map(|f| f.saturating_add(c.bytes));
    }
    Ok(out)
}

fn why(
    policy: &Retention,
    c: &Candidate,
    total: u64,
    free: Option<u64>,
    now: Timestamp,
) -> Option<String> {
    if let (Some(age), Some((_, newest))) = (policy.max_age, c.times) {
        let limit = now
            .0
            .saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
        if newest.0 < limit {
            return Some(format!(
                "max_age={}s: newest event {} is older than {}",
                age.as_secs(),
                newest,
                Timestamp(limit)
            ));
        }
    }
    if let Some(max) = policy.max_bytes {
        if total > max {
            return Some(format!("max_bytes={max}: the log takes {total} bytes"));
        }
    }
    if let (Some(min), Some(free)) = (policy.min_free_bytes, free) {
        if free < min {
            return Some(format!("min_free_bytes={min}: {free} bytes free"));
        }
    }
    None
}

/// What `policy` would remove now, without removing anything.
pub(crate) fn dry_run(
    shared: &Arc<Shared>,
    policy: &Retention,
    now: Timestamp,
) -> Result<Vec<Removal>> {
    let (segments, total) = facts(shared);
    plan(policy, &segments, total, || free_bytes(shared), now)
}

/// The compacted segments, oldest first, and the bytes of all segment files.
fn facts(shared: &Shared) -> (Vec<Candidate>, u64) {
    let (compacted, total) = shared.segment_sizes();
    (compacted.iter().map(Candidate::of).collect(), total)
}

fn free_bytes(shared: &Shared) -> Result<u64> {
    shared.free_bytes()
}

/// What retention remembers between passes while a log is open.
#[derive(Debug)]
pub(crate) struct State {
    /// Markers left by a removal a crash interrupted have been looked for.
    markers_checked: AtomicBool,
    /// Removals whose markers a full disk kept from being written.
    owed: Mutex<Vec<Removal>>,
    /// In a sealed log, the records a checkpoint covers (LSN 1..=this):
    /// retention removes no record the sealer has not hashed and signed.
    sealed_upto: std::sync::atomic::AtomicU64,
}

impl Default for State {
    fn default() -> State {
        State::new(false)
    }
}

impl State {
    /// The state of a log; with `sealed`, nothing is removable until the
    /// sealer says how far it sealed ([`set_sealed`](Self::set_sealed)).
    pub(crate) fn new(sealed: bool) -> State {
        State {
            markers_checked: AtomicBool::new(false),
            owed: Mutex::new(Vec::new()),
            sealed_upto: std::sync::atomic::AtomicU64::new(if sealed { 0 } else { u64::MAX }),
        }
    }

    /// Records LSN 1..=`upto` are sealed.
    pub(crate) fn set_sealed(&self, upto: u64) {
        self.sealed_upto.store(upto, Ordering::Release);
    }
}

/// Applies `policy` now: removes compacted segments, oldest first, as
/// [`plan`] says. Removals whose markers a full disk kept from being
/// written are returned again, with their marker, once it is written.
pub(crate) fn apply(
    shared: &Arc<Shared>,
    registry: &RwLock<Registry>,
    policy: &Retention,
    now: Timestamp,
    state: &State,
) -> Result<Vec<Removal>> {
    let (checked, owed) = (&state.markers_checked, &state.owed);
    if shared.is_read_only() {
        return Err(Error::ReadOnly);
    }
    if policy.is_none() && owed.lock().is_empty() {
        return Ok(Vec::new());
    }
    let _one_at_a_time = shared.maintenance();
    // Markers a full disk kept from being written go first.
    let mut removals = record_owed(shared, registry, owed, now)?;
    let (segments, total) = facts(shared);
    let planned = plan(policy, &segments, total, || free_bytes(shared), now)?;
    let sealed = state.sealed_upto.load(Ordering::Acquire);
    // In a sealed log, the tree at each prefix removed goes into its marker.
    let mut tree = if sealed == u64::MAX {
        None
    } else {
        tree_before(shared, registry)?
    };
    for removal in planned.into_iter().take_while(|r| r.lsns.1 .0 <= sealed) {
        // The records about to go, hashed onto the tree of those gone before.
        if let Some(t) = tree.as_mut() {
            if !grow(shared, t, removal.lsns.1 .0)? {
                tree = None;
            }
        }
        let at = tree.clone();
        let earlier = if checked.load(Ordering::Acquire) {
            None
        } else {
            existing_marker(shared, removal.segment)?
        };
        let marker = match earlier {
            Some(lsn) => Ok(lsn),
            None => record(shared, registry, &removal, at.as_ref(), now),
        };
        let marker = match marker {
            Ok(lsn) => lsn,
            // The disk is full: nothing can be appended until space is freed,
            // and freeing it is what retention is for. The segment goes
            // first; its marker (and its registrations' copies) are written
            // as soon as there is room, by this pass or the next. Until
            // then (and if the process ends first) the removal is unrecorded.
            Err(Error::StorageFull { .. }) => {
                owed.lock().push(removal.clone());
                Lsn(0)
            }
            Err(e) => return Err(e),
        };
        shared.remove_oldest_compacted(removal.segment)?;
        removals.push(Removal { marker, ..removal });
    }
    // What this pass freed may be room enough for what it owes.
    for done in record_owed(shared, registry, owed, now)? {
        match removals.iter_mut().find(|r| r.segment == done.segment) {
            Some(r) => r.marker = done.marker,
            None => removals.push(done),
        }
    }
    checked.store(true, Ordering::Release);
    Ok(removals)
}

/// Records a removal about to happen: the copies of the registrations the
/// segment holds (so the log keeps every one), then the marker.
fn record(
    shared: &Arc<Shared>,
    registry: &RwLock<Registry>,
    removal: &Removal,
    tree: Option<&Frontier>,
    now: Timestamp,
) -> Result<Lsn> {
    let (first, next) = (removal.lsns.0, Lsn(removal.lsns.1 .0 + 1));
    registry.write().rerecord_range(shared, now, first, next)?;
    append_marker(shared, registry, removal, tree, now)
}

/// The tree over the records removed so far, from the newest marker that
/// recorded it (the empty tree if nothing was removed yet); `None` if an
/// earlier removal did not record it (before the log was sealed).
fn tree_before(shared: &Arc<Shared>, registry: &RwLock<Registry>) -> Result<Option<Frontier>> {
    let id = engine_type_id(RETENTION_APPLIED).expect("an engine type");
    let pre = std::sync::Arc::new(Prefilter::engine_type(id));
    let mut newest = None;
    let mut any = false;
    for r in shared.records(Lsn(0), pre) {
        let r = r?;
        let Ok(e) = EventRef::parse(r.payload()) else {
            continue;
        };
        if e.type_id != id {
            continue;
        }
        any = true;
        let reg = registry.read();
        let edge = e
            .attrs()
            .find(|(k, _)| reg.key_name(*k) == Some(EDGE_ATTR))
            .and_then(|(_, v)| Frontier::from_peaks_text(v));
        newest = edge;
    }
    Ok(if any { newest } else { Some(Frontier::new()) })
}

/// Hashes the records after the tree's end up to LSN `upto` into it;
/// whether they were all there (contiguous from its end).
fn grow(shared: &Arc<Shared>, tree: &mut Frontier, upto: u64) -> Result<bool> {
    let mut expect = tree.size() + 1;
    for r in shared.records(Lsn(expect), std::sync::Arc::new(Prefilter::default())) {
        let r = r?;
        let lsn = r.lsn().0;
        if lsn > upto {
            break;
        }
        if lsn != expect {
            return Ok(false);
        }
        tree.push(leaf_hash(lsn, r.payload()));
        expect += 1;
    }
    Ok(expect == upto + 1)
}

/// Writes the markers owed for removals a full disk kept unrecorded; those
/// written are returned with their marker LSN, the rest stay owed.
fn record_owed(
    shared: &Arc<Shared>,
    registry: &RwLock<Registry>,
    owed: &Mutex<Vec<Removal>>,
    now: Timestamp,
) -> Result<Vec<Removal>> {
    let mut done = Vec::new();
    let mut owed = owed.lock();
    while let Some(removal) = owed.first().cloned() {
        // The segment is gone: its records cannot be hashed any more.
        match record(shared, registry, &removal, None, now) {
            Ok(marker) => {
                owed.remove(0);
                done.push(Removal { marker, ..removal });
            }
            Err(Error::StorageFull { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The LSN of a marker already recording the removal of `segment`.
fn existing_marker(shared: &Arc<Shared>, segment: SegmentId) -> Result<Option<Lsn>> {
    let id = engine_type_id(RETENTION_APPLIED).expect("an engine type");
    let pre = std::sync::Arc::new(Prefilter::engine_type(id));
    let want = segment.to_string();
    for r in shared.records(Lsn(0), pre) {
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
    tree: Option<&Frontier>,
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
    if let Some(t) = tree {
        // The tree at the prefix removed: its size, root and edge.
        use base64::Engine as _;
        attr("tree_size", t.size().to_string());
        attr(
            "tree_root",
            base64::engine::general_purpose::STANDARD.encode(t.root()),
        );
        attr(EDGE_ATTR, t.peaks_text());
    }
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
    shared.append_durable(&[buf])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, newest: i64, bytes: u64) -> Candidate {
        Candidate {
            segment: SegmentId(id),
            lsns: (Lsn(id * 10), Lsn(id * 10 + 9)),
            times: Some((Timestamp(newest - 5), Timestamp(newest))),
            records: 10,
            bytes,
        }
    }

    #[test]
    fn the_plan_frees_oldest_first_and_counts_what_each_removal_frees() {
        let segs = [seg(1, 100, 40), seg(2, 200, 40), seg(3, 300, 40)];
        let ids = |p: Vec<Removal>| p.iter().map(|r| r.segment.0).collect::<Vec<_>>();
        let bytes = |max| Retention {
            max_bytes: Some(max),
            ..Retention::default()
        };
        // 200 bytes in all: removing two segments brings it to 120 <= 130.
        let p = plan(&bytes(130), &segs, 200, || unreachable!(), Timestamp(0)).unwrap();
        assert_eq!(ids(p), [1, 2]);
        assert_eq!(
            ids(plan(&bytes(200), &segs, 200, || unreachable!(), Timestamp(0)).unwrap()),
            Vec::<u64>::new()
        );
        // Free space: 50 free, 100 wanted: two removals of 40 give 130.
        let free = Retention {
            min_free_bytes: Some(100),
            ..Retention::default()
        };
        assert_eq!(
            ids(plan(&free, &segs, 200, || Ok(50), Timestamp(0)).unwrap()),
            [1, 2]
        );
        // Age: only segments whose newest event is older than the limit, oldest first.
        let age = Retention {
            max_age: Some(Duration::from_nanos(100)),
            ..Retention::default()
        };
        assert_eq!(
            ids(plan(&age, &segs, 0, || unreachable!(), Timestamp(300)).unwrap()),
            [1]
        );
        assert_eq!(
            ids(plan(&age, &segs, 0, || unreachable!(), Timestamp(301)).unwrap()),
            [1, 2]
        );
    }
}
