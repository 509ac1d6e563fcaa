//! Every row a filter accepts, handed to a [`Visitor`] without building a
//! record or an event: what aggregates read. Compacted segments are read
//! block by block (a posting whose rows all match may be taken whole from
//! the index); the raw segments after them through the reader, which skips
//! the chunks their index rules out.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::chunks::RuledOut;
use super::reader::{locate_in, with_plan, RawRange};
use super::{Plans, Seg, Shared};
use crate::compact::format::{BlockMeta, OPAQUE};
use crate::compact::{RowFilter, SegmentPlan};
use crate::error::Result;
use crate::event::codec::{self, Fields, Head};
use crate::Lsn;

/// What a visit hands its rows to.
pub(crate) trait Visitor {
    /// `rows` events of one (type, severity) in a compacted block or raw
    /// chunk whose whole time range (`min_time..=max_time`) the filter
    /// accepts: whether the visitor took them all at once (else each comes
    /// to [`row`](Self::row)).
    fn whole(&mut self, type_id: u16, severity: u8, rows: u32, times: (i64, i64)) -> bool;

    /// One event the filter accepts; `None` for a record that is not an event.
    /// Of a compacted block, its fields are those the filter reads and those
    /// in [`columns`](Self::columns) only.
    fn row(&mut self, lsn: Lsn, event: Option<(&Head, &Fields<'_>)>) -> Result<()>;

    /// The optional fields [`row`](Self::row) reads (presence bits, see
    /// `event::codec::FIELDS`).
    fn columns(&self) -> u16;
}

/// Visits every record `filter` accepts, from the oldest on; each record is
/// visited once whatever compaction does meanwhile.
pub(crate) fn visit(
    shared: &Arc<Shared>,
    filter: Arc<dyn RowFilter>,
    visitor: &mut dyn Visitor,
    plans: Option<&Plans>,
) -> Result<()> {
    // One consistent cut: the compacted segments, and the raw ones after
    // them (one the compactor swaps meanwhile is still read from its map).
    let (compacted, raw, raw_from, upto) = {
        let compacted = shared.compacted.read();
        let raw = shared.segments.read();
        let upto = Lsn(shared.visible.load(Ordering::Acquire));
        let from = compacted
            .last()
            .map(|c| c.next_lsn)
            .or_else(|| raw.first().map(|s| s.first_lsn))
            .unwrap_or(Lsn(1));
        (compacted.clone(), raw.clone(), from, upto)
    };
    let needed = visitor.columns();
    let shared_visitor = std::cell::RefCell::new(&mut *visitor);
    for c in &compacted {
        with_plan(
            &plans.cloned(),
            c.id,
            true,
            (c.first_lsn, c.next_lsn),
            |plan| {
                c.visit(
                    &*filter,
                    needed,
                    &mut |t, sev, rows, b: &BlockMeta| {
                        shared_visitor
                            .borrow_mut()
                            .whole(t, sev, rows, (b.min_time, b.max_time))
                    },
                    &mut |k, fields| {
                        let mut visitor = shared_visitor.borrow_mut();
                        if k.severity == OPAQUE {
                            return visitor.row(k.lsn, None);
                        }
                        let head = Head {
                            type_id: k.type_id,
                            severity: k.severity,
                            time: k.time,
                        };
                        visitor.row(k.lsn, Some((&head, fields)))
                    },
                    plan,
                )
            },
        )?;
    }
    let mut from = raw_from;
    for seg in raw {
        if from >= upto {
            break;
        }
        from = from.max(seg.first_lsn);
        visit_raw(shared, &seg, &filter, visitor, plans, from, upto)?;
        from = Lsn(seg.next_lsn.load(Ordering::Acquire)).max(from);
    }
    Ok(())
}

/// Visits raw segment `seg` from `from` up to `upto`: chunks the index
/// rules out are passed over, keys a chunk's summary lets the visitor take
/// whole are counted from it, and the rest is scanned frame by frame.
fn visit_raw(
    shared: &Arc<Shared>,
    seg: &Arc<Seg>,
    filter: &Arc<dyn RowFilter>,
    visitor: &mut dyn Visitor,
    plans: Option<&Plans>,
    from: Lsn,
    upto: Lsn,
) -> Result<()> {
    let end = seg.end.load(Ordering::Acquire);
    let bytes = Bytes::from_owner(seg.view_to(end)?);
    let (chunks, index_end) = {
        let mut index = seg.chunks.lock();
        index.extend(&bytes, end, seg.record_max, &seg.skips);
        let first = index.chunks.partition_point(|c| c.next_lsn <= from);
        (index.chunks[first..].to_vec(), index.end())
    };
    let (since, until) = filter.time();
    let next = Lsn(seg.next_lsn.load(Ordering::Acquire));
    let scan =
        |visitor: &mut dyn Visitor, at: (u64, Lsn), stop: Lsn, taken: &[u32]| -> Result<()> {
            let mut range = RawRange::new(shared, seg, bytes.clone(), at, filter.clone());
            while let Some(r) = range.next(stop.min(upto)) {
                let r = r?;
                match codec::split(r.payload()) {
                    Some((head, fields)) => {
                        let key = u32::from(head.type_id) << 8 | u32::from(head.severity);
                        if !taken.contains(&key) {
                            visitor.row(r.lsn(), Some((&head, &fields)))?;
                        }
                    }
                    None => visitor.row(r.lsn(), None)?,
                }
            }
            Ok(())
        };
    let mut stats = SegmentPlan::default();
    for c in &chunks {
        if c.first_lsn >= upto {
            break;
        }
        stats.blocks += 1;
        if c.first_lsn < from {
            // Part of a chunk: scanned from `from`.
            stats.blocks_read += 1;
            let (off, lsn) = locate_in(seg, &bytes, end, from);
            scan(visitor, (off, lsn), c.next_lsn, &[])?;
            continue;
        }
        match c.ruled_out(&**filter, &bytes, &seg.skips) {
            Some(RuledOut::Key) => {
                stats.skipped_by_key += 1;
                continue;
            }
            Some(RuledOut::Time) => {
                stats.skipped_by_time += 1;
                continue;
            }
            Some(RuledOut::Filter) => {
                stats.skipped_by_filter += 1;
                continue;
            }
            None => {}
        }
        let mut taken = Vec::new();
        let mut left = false;
        if !c.opaque && c.next_lsn <= upto && c.min_time >= since && c.max_time <= until {
            for &(key, n) in c.keys.iter() {
                let (t, sev) = ((key >> 8) as u16, key as u8);
                if !filter.key(t, sev) {
                    continue;
                }
                if visitor.whole(t, sev, n, (c.min_time, c.max_time)) {
                    taken.push(key);
                } else {
                    left = true;
                }
            }
            if !left {
                continue;
            }
        }
        stats.blocks_read += 1;
        stats.rows += u64::from(c.frames_hint());
        scan(visitor, (c.start, c.first_lsn), c.next_lsn, &taken)?;
    }
    // Past the index: frames not yet summarised.
    let (off, lsn) = if index_end.1 > from {
        index_end
    } else {
        locate_in(seg, &bytes, end, from)
    };
    // Not past this segment: the next one is visited on its own.
    let stop = upto.min(Lsn(seg.next_lsn.load(Ordering::Acquire)));
    if lsn < stop {
        scan(visitor, (off, lsn), stop, &[])?;
    }
    if let Some(plans) = plans {
        with_plan(
            &Some(plans.clone()),
            seg.id,
            false,
            (seg.first_lsn, next),
            |p| {
                p.blocks += stats.blocks;
                p.blocks_read += stats.blocks_read;
                p.skipped_by_key += stats.skipped_by_key;
                p.skipped_by_time += stats.skipped_by_time;
                p.skipped_by_filter += stats.skipped_by_filter;
                p.rows += stats.rows;
            },
        );
    }
    Ok(())
}
