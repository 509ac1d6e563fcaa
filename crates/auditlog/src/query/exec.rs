//! [`Query`]: the events a filter selects, in LSN order (or newest first).
//! The storage has already applied the filter to each row's columns or
//! frame; a row that comes up is checked once more here (the filter only
//! ever removes work, never results), and only then parsed and built.

use std::sync::Arc;

use crate::compact::RowFilter;
use crate::engine::{Iter, Plans, Record};
use crate::error::{Error, Result};
use crate::event::codec::{self, EventRef};
use crate::event::Event;
use crate::Lsn;

use super::{Compiled, Explain};

/// How a query names what the log stores by id: the log's catalog.
pub(crate) trait Names: Send + Sync {
    /// The name of type `id` (looking again, once, for ids registered by
    /// another process since).
    fn type_name(&self, id: u16) -> Option<String>;

    /// The owned event of `r`.
    fn to_event(&self, lsn: Lsn, r: &EventRef<'_>) -> Result<Event>;
}

/// The events of a query, with their LSNs.
pub struct Query<'a> {
    names: &'a dyn Names,
    inner: Iter,
    compiled: Arc<Compiled>,
    plans: Option<Plans>,
}

impl<'a> Query<'a> {
    pub(crate) fn new(
        names: &'a dyn Names,
        inner: Iter,
        compiled: Arc<Compiled>,
        plans: Option<Plans>,
    ) -> Self {
        Query {
            names,
            inner,
            compiled,
            plans,
        }
    }

    /// What the query has read so far (from [`AuditLog::query_explained`](crate::AuditLog::query_explained);
    /// `None` for a plain query).
    pub fn explain(&self) -> Option<Explain> {
        self.plans.as_ref().map(|p| Explain {
            segments: p.lock().clone(),
        })
    }

    /// The parsed event of `rec` if it matches.
    fn check<'r>(&self, rec: &'r Record) -> Result<Option<EventRef<'r>>> {
        let payload = rec.payload();
        let bad = |source| Error::BadEvent {
            lsn: rec.lsn(),
            source,
        };
        let Some((head, fields)) = codec::split(payload) else {
            // Not an event: parsing says exactly what is wrong.
            return EventRef::parse(payload).map(|_| None).map_err(bad);
        };
        if !self.compiled.row(&head, &fields) {
            return Ok(None);
        }
        if !self.compiled.knows_type(head.type_id) {
            if let Some(name) = self.names.type_name(head.type_id) {
                if !self.compiled.type_name_matches(&name) {
                    return Ok(None);
                }
            } // else: building the event reports the unknown id
        }
        EventRef::parse(payload).map(Some).map_err(bad)
    }

    /// How many of the remaining events match, without building them.
    pub fn count_matches(mut self) -> Result<u64> {
        let mut n = 0;
        while let Some(rec) = self.inner.next() {
            if self.check(&rec?)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The next matching record, parsed in place and not built: output
    /// paths that write each event once (JSON lines, CSV) call `f` on the
    /// borrowed event and never allocate an owned one.
    pub(crate) fn next_ref<T>(
        &mut self,
        f: impl FnOnce(Lsn, &EventRef<'_>) -> T,
    ) -> Option<Result<T>> {
        loop {
            let rec = match self.inner.next()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            match self.check(&rec) {
                Ok(Some(r)) => return Some(Ok(f(rec.lsn(), &r))),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Iterator for Query<'_> {
    type Item = Result<(Lsn, Event)>;

    fn next(&mut self) -> Option<Self::Item> {
        let names = self.names;
        self.next_ref(|lsn, r| names.to_event(lsn, r).map(|e| (lsn, e)))
            .map(|r| r.and_then(|x| x))
    }
}
