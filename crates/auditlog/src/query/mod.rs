//! Filters over events, evaluated on the encoded bytes: the type id,
//! severity and time are read at fixed offsets first, so events that fail on
//! those are skipped without decoding the rest.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::catalog::registry::{engine_type_name, Registry, CATALOG_ENTRY, ENGINE_TYPE_BASE};
use crate::event::codec::{self, EventRef, TextField};
use crate::event::Timestamp;
use crate::severity::Severity;

/// Which events a query returns; every condition given must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event types; any of them matches. `PREFIX*` matches by prefix.
    pub types: Vec<String>,
    /// Least severity (inclusive).
    pub min_severity: Option<Severity>,
    /// Greatest severity (inclusive).
    pub max_severity: Option<Severity>,
    /// Earliest time (inclusive).
    pub since: Option<Timestamp>,
    /// Latest time (inclusive).
    pub until: Option<Timestamp>,
    /// The actor: matches the actor's name, id or account name.
    pub actor: Option<String>,
    /// The client address, or a network it must be in.
    pub ip: Option<IpNet>,
    /// The source.
    pub source: Option<String>,
    /// The entity type.
    pub entity_type: Option<String>,
    /// The entity id.
    pub entity_id: Option<String>,
    /// The session.
    pub session: Option<String>,
    /// Only failures (a result code other than 0).
    pub failed: bool,
}

/// An address and prefix length: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Text that is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)")]
pub struct IpNetError(pub String);

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| err())?,
                Some(p.parse::<u8>().map_err(|_| err())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| err())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err());
        }
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u32) {
            match ip {
                IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
                IpAddr::V6(a) => (u128::from(a), 128),
            }
        }
        let ((net, width), (x, xwidth)) = (bits(self.addr), bits(ip));
        if width != xwidth {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift == width || (net >> shift) == (x >> shift)
    }
}

impl Filter {
    fn type_matches(&self, name: &str) -> bool {
        self.types.is_empty()
            || self.types.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            })
    }
}

/// A filter resolved against a log's catalog.
pub(crate) struct Compiled<'f> {
    filter: &'f Filter,
    /// Per type id: whether it matches (ids beyond it are looked up by name).
    types: Vec<bool>,
    /// Per engine type id (from `ENGINE_TYPE_BASE`): whether it matches.
    /// Catalog records match only a filter that names their type.
    engine: Vec<bool>,
}

impl<'f> Compiled<'f> {
    pub(crate) fn new(filter: &'f Filter, registry: &Registry) -> Self {
        let types = registry
            .types()
            .map(|(_, name)| filter.type_matches(name))
            .collect();
        let engine = (ENGINE_TYPE_BASE..=u16::MAX)
            .map(|id| match engine_type_name(id) {
                Some(CATALOG_ENTRY) => filter.types.iter().any(|t| t == CATALOG_ENTRY),
                Some(name) => filter.type_matches(name),
                None => false,
            })
            .collect();
        Compiled {
            filter,
            types,
            engine,
        }
    }

    fn type_id_matches(&self, id: u16) -> Option<bool> {
        match id.checked_sub(ENGINE_TYPE_BASE) {
            Some(i) => Some(self.engine[usize::from(i)]),
            None => self.types.get(usize::from(id)).copied(),
        }
    }

    /// Checks the fixed-offset header only. `None`: the type id is newer than
    /// this compiled filter (the caller resolves its name).
    pub(crate) fn header_matches(&self, payload: &[u8]) -> Option<bool> {
        let f = self.filter;
        let Some((id, sev)) = codec::peek_type_severity(payload) else {
            return Some(true); // let the full decode report it
        };
        if f.min_severity.is_some_and(|m| sev < m) || f.max_severity.is_some_and(|m| sev > m) {
            return Some(false);
        }
        if f.since.is_some() || f.until.is_some() {
            let t = codec::peek_time(payload)?;
            if f.since.is_some_and(|s| t < s) || f.until.is_some_and(|u| t > u) {
                return Some(false);
            }
        }
        self.type_id_matches(id)
    }

    /// What the index of compacted segments can check of this filter.
    pub(crate) fn prefilter(&self) -> crate::compact::Prefilter {
        let f = self.filter;
        crate::compact::Prefilter {
            types: Some(self.type_table()),
            min_severity: f.min_severity.map_or(0, Severity::code),
            max_severity: f.max_severity.map_or(u8::MAX, Severity::code),
            since: f.since.map_or(i64::MIN, |t| t.0),
            until: f.until.map_or(i64::MAX, |t| t.0),
        }
    }

    /// Per type id, whether it can match: ids past the registered ones may
    /// be registered after this filter was compiled, so they can; engine
    /// ids only as the filter says.
    fn type_table(&self) -> Vec<bool> {
        let mut table = self.types.clone();
        table.resize(usize::from(ENGINE_TYPE_BASE), true);
        table.extend_from_slice(&self.engine);
        table
    }

    /// Whether a type name matches (for ids the compiled table lacks).
    pub(crate) fn type_name_matches(&self, name: &str) -> bool {
        self.filter.type_matches(name)
    }

    /// The conditions on the other fields.
    pub(crate) fn rest_matches(&self, e: &EventRef<'_>) -> bool {
        let f = self.filter;
        let eq = |want: &Option<String>, field: TextField| {
            want.as_deref().is_none_or(|w| e.text(field) == Some(w))
        };
        if let Some(a) = &f.actor {
            let a = Some(a.as_str());
            if e.text(TextField::Actor) != a
                && e.text(TextField::ActorId) != a
                && e.text(TextField::ActorAccount) != a
            {
                return false;
            }
        }
        if let Some(net) = &f.ip {
            if !e.ip.is_some_and(|ip| net.contains(ip)) {
                return false;
            }
        }
        if f.failed && e.result.is_none_or(|r| r == 0) {
            return false;
        }
        eq(&f.source, TextField::Source)
            && eq(&f.entity_type, TextField::EntityType)
            && eq(&f.entity_id, TextField::EntityId)
            && eq(&f.session, TextField::Session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.1.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let one: IpNet = "10.0.0.5".parse().unwrap();
        assert!(
            one.contains("10.0.0.5".parse().unwrap()) && !one.contains("10.0.0.6".parse().unwrap())
        );
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::7".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("host".parse::<IpNet>().is_err());
    }

    #[test]
    fn type_patterns() {
        let f = Filter {
            types: vec!["USER_AUTH_FAILED_*".into(), "ADMIN_LOGGED_IN".into()],
            ..Filter::default()
        };
        assert!(f.type_matches("USER_AUTH_FAILED_MFA"));
        assert!(f.type_matches("ADMIN_LOGGED_IN"));
        assert!(!f.type_matches("ADMIN_LOGGED_OUT"));
        assert!(Filter::default().type_matches("ANY"));
    }
}
