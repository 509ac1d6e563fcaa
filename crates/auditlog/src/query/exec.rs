//! [`Query`]: the events a filter selects, in LSN order (or newest first).
//! The storage has already applied the filter to each row's columns or
//! frame; a row that comes up is checked once more here (the filter only
//! ever removes work, never results), and only then parsed and built.

use std::sync::Arc;

use crate::compact::RowFilter;
use crate::engine::{Iter, Plans};
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

    /// The name of attribute key `id` (looking again, once, as for types).
    fn key_name(&self, id: u32) -> Option<String>;
}

/// A matching event read in place, not built: its bytes are borrowed from
/// the log (or a compacted stripe's buffer), its names from the query's
/// copy of the catalog. What output paths that write each event once use.
pub struct EventView<'a> {
    lsn: Lsn,
    event: &'a EventRef<'a>,
    type_name: &'a str,
    attrs: &'a [(&'a str, &'a str)],
}

impl EventView<'_> {
    /// Its LSN.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Its type's name.
    pub fn type_name(&self) -> &str {
        self.type_name
    }

    /// Its fields, borrowed (what JSON, CSV and tables are written from).
    pub fn fields(&self) -> crate::event::EventFields<'_> {
        use crate::event::codec::TextField as F;
        let r = self.event;
        crate::event::EventFields {
            time: r.time,
            event_type: self.type_name,
            severity: r.severity,
            source: r.text(F::Source),
            ip: r.ip,
            actor_id: r.text(F::ActorId),
            actor: r.text(F::Actor),
            actor_account: r.text(F::ActorAccount),
            account_id: r.text(F::AccountId),
            session: r.text(F::Session),
            entity_type: r.text(F::EntityType),
            entity_id: r.text(F::EntityId),
            entity_name: r.text(F::EntityName),
            result: r.result,
            attrs: self.attrs.to_vec(),
            data: r.text(F::Data),
        }
    }

    /// Its canonical JSON line (no newline), with its LSN: the line
    /// `event::json::to_json` writes for the built event.
    pub fn to_json(&self) -> String {
        crate::event::json::fields_to_json(&self.fields(), Some(self.lsn))
    }
}

/// The events of a query, with their LSNs.
pub struct Query<'a> {
    names: &'a dyn Names,
    inner: Iter,
    compiled: Arc<Compiled>,
    plans: Option<Plans>,
    /// Names looked up for views, by type id and key id.
    type_names: std::collections::HashMap<u16, String>,
    key_names: std::collections::HashMap<u32, String>,
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
            type_names: Default::default(),
            key_names: Default::default(),
        }
    }

    /// Calls `f` with each remaining matching event, read in place and never
    /// built (`auditlog query --format jsonl` writes from these), until `f`
    /// returns `false`; returns how many it was called with.
    ///
    /// # Errors
    /// Damage met while reading; an event whose type or attribute key the
    /// log's catalog does not name; an error `f` returns.
    pub fn for_each_view(
        &mut self,
        f: &mut dyn FnMut(&EventView<'_>) -> Result<bool>,
    ) -> Result<u64> {
        let mut n = 0;
        loop {
            let (lsn, payload) = match self.inner.next_ref() {
                None => return Ok(n),
                Some(r) => r?,
            };
            let Some(r) = Checker::of(&self.compiled, self.names).check(lsn, payload)? else {
                continue;
            };
            let unknown = |what: String| Error::BadEvent {
                lsn,
                source: codec::DecodeError { offset: 0, what },
            };
            if !self.type_names.contains_key(&r.type_id) {
                let name = self.names.type_name(r.type_id).ok_or_else(|| {
                    unknown(format!("type id {} is not in the catalog", r.type_id))
                })?;
                self.type_names.insert(r.type_id, name);
            }
            for (k, _) in r.attrs() {
                if !self.key_names.contains_key(&k) {
                    let name = self.names.key_name(k).ok_or_else(|| {
                        unknown(format!("attribute key id {k} is not in the catalog"))
                    })?;
                    self.key_names.insert(k, name);
                }
            }
            let mut attrs: Vec<(&str, &str)> = r
                .attrs()
                .map(|(k, v)| (self.key_names[&k].as_str(), v))
                .collect();
            attrs.sort_unstable();
            let view = EventView {
                lsn,
                event: &r,
                type_name: &self.type_names[&r.type_id],
                attrs: &attrs,
            };
            n += 1;
            if !f(&view)? {
                return Ok(n);
            }
        }
    }

    /// What the query has read so far (from [`AuditLog::query_explained`](crate::AuditLog::query_explained);
    /// `None` for a plain query).
    pub fn explain(&self) -> Option<Explain> {
        self.plans.as_ref().map(|p| Explain {
            segments: p.lock().clone(),
        })
    }

    /// How many of the remaining events match, without building them.
    ///
    /// # Errors
    /// Damage met while reading; a record that is not an event.
    pub fn count_matches(mut self) -> Result<u64> {
        let mut n = 0;
        while let Some(rec) = self.inner.next_ref() {
            let (lsn, payload) = rec?;
            if Checker::of(&self.compiled, self.names)
                .check(lsn, payload)?
                .is_some()
            {
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
            let (lsn, payload) = match self.inner.next_ref()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            match Checker::of(&self.compiled, self.names).check(lsn, payload) {
                Ok(Some(r)) => return Some(Ok(f(lsn, &r))),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The last word on a record the storage let through: the compiled filter
/// and, for types registered after it was compiled, the catalog.
struct Checker<'q> {
    compiled: &'q Compiled,
    names: &'q dyn Names,
}

impl<'q> Checker<'q> {
    fn of(compiled: &'q Compiled, names: &'q dyn Names) -> Self {
        Checker { compiled, names }
    }

    /// The parsed event of the record `lsn` if it matches.
    fn check<'r>(&self, lsn: Lsn, payload: &'r [u8]) -> Result<Option<EventRef<'r>>> {
        let bad = |source| Error::BadEvent { lsn, source };
        if self.compiled.is_simple() {
            // Type, severity and time are all the filter asks about: parse
            // once and test the parsed event (splitting first walked every
            // record twice). A record that does not parse takes the path
            // below, which skips it if the filter would, as it always did.
            if let Ok(ev) = EventRef::parse(payload) {
                let head = codec::Head {
                    type_id: ev.type_id,
                    severity: ev.severity.code(),
                    time: ev.time.0,
                };
                if !self.compiled.head_matches(&head) || !self.type_name_ok(head.type_id) {
                    return Ok(None);
                }
                return Ok(Some(ev));
            }
        }
        let Some((head, fields)) = codec::split(payload) else {
            // Not an event: parsing says exactly what is wrong.
            return EventRef::parse(payload).map(|_| None).map_err(bad);
        };
        if !self.compiled.row(&head, &fields) {
            return Ok(None);
        }
        if !self.type_name_ok(head.type_id) {
            return Ok(None);
        }
        EventRef::parse(payload).map(Some).map_err(bad)
    }

    /// For a type id registered after the filter was compiled: whether its
    /// name matches (an id no one registered matches here; building the
    /// event reports it).
    fn type_name_ok(&self, type_id: u16) -> bool {
        if self.compiled.knows_type(type_id) {
            return true;
        }
        self.names
            .type_name(type_id)
            .is_none_or(|name| self.compiled.type_name_matches(&name))
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
