//! A [`Filter`] compiled against a log's catalog into what the storage can
//! check ([`RowFilter`]): a table of matching type ids, a severity and time
//! range, and the other conditions on encoded fields. The storage asks it
//! of each block's index entry and of each row's columns, so a row becomes
//! an `Event` only once it matches (late materialization).

use crate::compact::bloom::{net_key, Bloom, Kind, V4_PREFIXES, V6_PREFIXES};
use crate::compact::filter::{RowFilter, OPAQUE};
use crate::event::codec::{self, Fields, Head, TextField};
use crate::event::reserved::{engine_type_name, CATALOG_ENTRY, CHECKPOINT, ENGINE_TYPE_BASE};
use crate::severity::Severity;

use super::Filter;

/// Which records a reader wants by type, severity and time alone: what the
/// engine's own readers (catalog records, retention markers) use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prefilter {
    /// Per type id, whether it can match (`None`: every type; ids past the
    /// end can match).
    pub(crate) types: Option<Vec<bool>>,
    /// Least severity code.
    pub(crate) min_severity: u8,
    /// Greatest severity code.
    pub(crate) max_severity: u8,
    /// Earliest time (ns, inclusive).
    pub(crate) since: i64,
    /// Latest time (ns, inclusive).
    pub(crate) until: i64,
}

impl Default for Prefilter {
    fn default() -> Self {
        Prefilter {
            types: None,
            min_severity: 0,
            max_severity: u8::MAX,
            since: i64::MIN,
            until: i64::MAX,
        }
    }
}

impl Prefilter {
    /// Only the engine type with id `id`.
    pub(crate) fn engine_type(id: u16) -> Prefilter {
        let mut types = vec![false; usize::from(u16::MAX) + 1];
        types[usize::from(id)] = true;
        Prefilter {
            types: Some(types),
            ..Prefilter::default()
        }
    }
}

impl RowFilter for Prefilter {
    fn key(&self, type_id: u16, severity: u8) -> bool {
        severity == OPAQUE
            || (severity >= self.min_severity
                && severity <= self.max_severity
                && self
                    .types
                    .as_ref()
                    .is_none_or(|t| t.get(usize::from(type_id)).copied().unwrap_or(true)))
    }

    fn keys_limited(&self) -> bool {
        self.types.is_some() || self.min_severity > 0 || self.max_severity < OPAQUE - 1
    }

    fn time(&self) -> (i64, i64) {
        (self.since, self.until)
    }

    fn is_all(&self) -> bool {
        !self.keys_limited() && self.since == i64::MIN && self.until == i64::MAX
    }
}

/// A filter resolved against a log's catalog.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    filter: Filter,
    /// Type ids (registered ones by the filter's names; later ones can
    /// match; engine ones only as the filter says), severities, times.
    pre: Prefilter,
    /// The conditions past type, severity and time are all absent.
    simple: bool,
    /// Type ids below this were registered when it was compiled.
    known: usize,
}

impl Compiled {
    /// Compiles `filter` against the registered types: `(id, name)`.
    pub(crate) fn new<'n>(filter: &Filter, types: impl Iterator<Item = (u16, &'n str)>) -> Self {
        let mut table: Vec<bool> = Vec::new();
        for (id, name) in types {
            let i = usize::from(id);
            if table.len() <= i {
                table.resize(i + 1, true);
            }
            table[i] = filter.type_matches(name);
        }
        let known = table.len();
        table.resize(usize::from(ENGINE_TYPE_BASE), true);
        table.extend(
            (ENGINE_TYPE_BASE..=u16::MAX).map(|id| match engine_type_name(id) {
                // Catalog and checkpoint records (one a second in a sealed
                // log) match only a filter that names their type.
                Some(name @ (CATALOG_ENTRY | CHECKPOINT)) => filter.types.iter().any(|t| t == name),
                Some(name) => filter.type_matches(name),
                None => false,
            }),
        );
        let pre = Prefilter {
            types: Some(table),
            min_severity: filter.min_severity.map_or(0, Severity::code),
            max_severity: filter.max_severity.map_or(u8::MAX, Severity::code),
            since: filter.since.map_or(i64::MIN, |t| t.0),
            until: filter.until.map_or(i64::MAX, |t| t.0),
        };
        let simple = filter.actor.is_none()
            && filter.ip.is_none()
            && filter.source.is_none()
            && filter.entity_type.is_none()
            && filter.entity_id.is_none()
            && filter.session.is_none()
            && !filter.failed;
        Compiled {
            filter: filter.clone(),
            pre,
            simple,
            known,
        }
    }

    /// Whether the filter names only types, severities and times (so the
    /// index alone can count its matches).
    pub(crate) fn is_simple(&self) -> bool {
        self.simple
    }

    /// Whether the compiled table knows type id `id` (ids registered after
    /// compiling are looked up by name: [`type_name_matches`](Self::type_name_matches)).
    pub(crate) fn knows_type(&self, id: u16) -> bool {
        usize::from(id) < self.known || id >= ENGINE_TYPE_BASE
    }

    /// The conditions on type, severity and time.
    pub(crate) fn head_matches(&self, head: &Head) -> bool {
        self.pre.key(head.type_id, head.severity)
            && head.time >= self.pre.since
            && head.time <= self.pre.until
    }

    /// Whether a type name matches (for ids the compiled table lacks).
    pub(crate) fn type_name_matches(&self, name: &str) -> bool {
        self.filter.type_matches(name)
    }

    /// The conditions on the fields past type, severity and time.
    pub(crate) fn rest_matches(&self, e: &Fields<'_>) -> bool {
        if self.simple {
            return true;
        }
        let f = &self.filter;
        let eq = |want: &Option<String>, field: TextField| {
            want.as_deref()
                .is_none_or(|w| e.text(field) == Some(w.as_bytes()))
        };
        if let Some(a) = &f.actor {
            let a = Some(a.as_bytes());
            if e.text(TextField::Actor) != a
                && e.text(TextField::ActorId) != a
                && e.text(TextField::ActorAccount) != a
            {
                return false;
            }
        }
        if let Some(net) = &f.ip {
            if !e.ip().is_some_and(|ip| net.contains(ip)) {
                return false;
            }
        }
        if f.failed && e.result().is_none_or(|r| r == 0) {
            return false;
        }
        eq(&f.source, TextField::Source)
            && eq(&f.entity_type, TextField::EntityType)
            && eq(&f.entity_id, TextField::EntityId)
            && eq(&f.session, TextField::Session)
    }
}

impl RowFilter for Compiled {
    fn key(&self, type_id: u16, severity: u8) -> bool {
        self.pre.key(type_id, severity)
    }

    fn keys_limited(&self) -> bool {
        // Only when the filter names types or severities: the engine's own
        // types it leaves out are rejected row by row (they are few), so
        // readers need not walk the index of keys for them.
        let f = &self.filter;
        !f.types.is_empty() || f.min_severity.is_some() || f.max_severity.is_some()
    }

    fn time(&self) -> (i64, i64) {
        self.pre.time()
    }

    fn row(&self, head: &Head, fields: &Fields<'_>) -> bool {
        self.head_matches(head) && self.rest_matches(fields)
    }

    fn columns(&self) -> u16 {
        let f = &self.filter;
        let bit = |on: bool, field: usize| u16::from(on) << field;
        bit(f.actor.is_some(), TextField::Actor as usize)
            | bit(f.actor.is_some(), TextField::ActorId as usize)
            | bit(f.actor.is_some(), TextField::ActorAccount as usize)
            | bit(f.ip.is_some(), codec::IP_FIELD)
            | bit(f.source.is_some(), TextField::Source as usize)
            | bit(f.entity_type.is_some(), TextField::EntityType as usize)
            | bit(f.entity_id.is_some(), TextField::EntityId as usize)
            | bit(f.session.is_some(), TextField::Session as usize)
            | bit(f.failed, codec::RESULT_FIELD)
    }

    fn bloom(&self, b: &Bloom<'_>) -> bool {
        let f = &self.filter;
        let text =
            |kind, v: &Option<String>| v.as_ref().is_none_or(|v| b.may_contain(kind, v.as_bytes()));
        text(Kind::Actor, &f.actor)
            && text(Kind::Session, &f.session)
            && text(Kind::EntityId, &f.entity_id)
            && f.ip.is_none_or(|net| {
                // The longest network the filter stores that holds `net`.
                let stored: &[u8] = if net.addr().is_ipv4() {
                    &V4_PREFIXES
                } else {
                    &V6_PREFIXES
                };
                match stored.iter().rev().find(|&&p| p <= net.prefix()) {
                    Some(&p) => {
                        let (kind, key, len) = net_key(net.addr(), p);
                        b.may_contain(kind, &key[..len])
                    }
                    None => true,
                }
            })
    }

    fn is_all(&self) -> bool {
        self.pre.is_all() && self.simple
    }
}
