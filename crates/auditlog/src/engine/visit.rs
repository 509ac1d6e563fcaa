//! Every row a filter accepts, handed to a [`Visitor`] without building a
//! record or an event: what aggregates read. Compacted segments are read
//! block by block (a posting whose rows all match may be taken whole from
//! the index); the raw segments after them through the reader, which skips
//! the chunks their index rules out.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::reader::{planned_from, with_plan};
use super::{Plans, Shared};
use crate::compact::format::{BlockMeta, OPAQUE};
use crate::compact::RowFilter;
use crate::error::Result;
use crate::event::codec::{self, Fields, Head};
use crate::Lsn;

/// What a visit hands its rows to.
pub(crate) trait Visitor {
    /// `rows` events of one (type, severity) in a compacted block whose
    /// whole time range the filter accepts: whether the visitor took them
    /// all at once (else each comes to [`row`](Self::row)).
    fn whole(&mut self, type_id: u16, severity: u8, rows: u32, block: &BlockMeta) -> bool;

    /// One event the filter accepts; `None` for a record that is not an event.
    fn row(&mut self, lsn: Lsn, event: Option<(&Head, &Fields<'_>)>) -> Result<()>;
}

/// Visits every record `filter` accepts, from the oldest on; each record is
/// visited once whatever compaction does meanwhile.
pub(crate) fn visit(
    shared: &Arc<Shared>,
    filter: Arc<dyn RowFilter>,
    visitor: &mut dyn Visitor,
    plans: Option<&Plans>,
) -> Result<()> {
    // One consistent cut: the compacted segments, and where the raw ones start.
    let (compacted, raw_from) = {
        let compacted = shared.compacted.read();
        let raw = shared.segments.read();
        let from = compacted
            .last()
            .map(|c| c.next_lsn)
            .or_else(|| raw.first().map(|s| s.first_lsn))
            .unwrap_or(Lsn(1));
        (compacted.clone(), from)
    };
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
                    &mut |t, sev, rows, b| shared_visitor.borrow_mut().whole(t, sev, rows, b),
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
    let upto = shared.visible.load(Ordering::Acquire);
    let mut records = planned_from(shared, raw_from, filter);
    records.set_plans(plans.cloned());
    for r in records {
        let r = r?;
        if r.lsn().0 >= upto {
            break;
        }
        match codec::split(r.payload()) {
            Some((head, fields)) => visitor.row(r.lsn(), Some((&head, &fields)))?,
            None => visitor.row(r.lsn(), None)?,
        }
    }
    Ok(())
}
