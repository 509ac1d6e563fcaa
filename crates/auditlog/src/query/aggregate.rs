//! Counts and group-bys computed inside the engine: `auditlog query --count`,
//! `--group-by day,severity`, `--top 10 --group-by actor`.
//!
//! Rows are never built into events: a group's key is read from the encoded
//! fields of each matching row (compacted columns or raw frames). When the
//! filter names only types, severities and times, and the groups are by
//! type, severity, or a time bucket a block lies inside, a block's postings
//! are counted from the index without decompressing it.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::engine::Visitor;
use crate::error::{Error, Result};
use crate::event::codec::{self, DecodeError, Fields, Head, TextField};
use crate::event::Timestamp;
use crate::severity::Severity;
use crate::Lsn;

use super::{Compiled, Explain, Names};

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

/// What to group events by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupBy {
    /// The event type.
    Type,
    /// The severity.
    Severity,
    /// The actor's name.
    Actor,
    /// The client address.
    Ip,
    /// The source.
    Source,
    /// The result code.
    Result,
    /// The session.
    Session,
    /// The entity type.
    EntityType,
    /// The entity id.
    EntityId,
    /// The hour (UTC) the event happened in.
    Hour,
    /// The day (UTC) the event happened on.
    Day,
}

impl GroupBy {
    /// Every dimension, by its name.
    pub const ALL: [(&'static str, GroupBy); 11] = [
        ("type", GroupBy::Type),
        ("severity", GroupBy::Severity),
        ("actor", GroupBy::Actor),
        ("ip", GroupBy::Ip),
        ("source", GroupBy::Source),
        ("result", GroupBy::Result),
        ("session", GroupBy::Session),
        ("entity_type", GroupBy::EntityType),
        ("entity_id", GroupBy::EntityId),
        ("hour", GroupBy::Hour),
        ("day", GroupBy::Day),
    ];

    /// Its name (what [`FromStr`] reads).
    pub fn name(self) -> &'static str {
        GroupBy::ALL
            .iter()
            .find(|(_, g)| *g == self)
            .map_or("?", |(n, _)| n)
    }

    fn text(self) -> Option<TextField> {
        Some(match self {
            GroupBy::Actor => TextField::Actor,
            GroupBy::Source => TextField::Source,
            GroupBy::Session => TextField::Session,
            GroupBy::EntityType => TextField::EntityType,
            GroupBy::EntityId => TextField::EntityId,
            _ => return None,
        })
    }

    fn bucket(self) -> Option<i64> {
        match self {
            GroupBy::Hour => Some(HOUR_NS),
            GroupBy::Day => Some(DAY_NS),
            _ => None,
        }
    }
}

/// A dimension name that is not one of [`GroupBy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot group by {0:?}: one of type, severity, actor, ip, source, result, session, entity_type, entity_id, hour, day")]
pub struct UnknownGroupBy(pub String);

impl FromStr for GroupBy {
    type Err = UnknownGroupBy;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let want = s.trim().to_ascii_lowercase().replace('-', "_");
        GroupBy::ALL
            .iter()
            .find(|(n, _)| *n == want)
            .map(|(_, g)| *g)
            .ok_or_else(|| UnknownGroupBy(s.to_string()))
    }
}

/// One group's value of one dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupValue {
    /// A time bucket, by its start.
    Time(Timestamp, GroupBy),
    /// A severity.
    Severity(Severity),
    /// A type name, or a text field's value.
    Text(String),
    /// An address.
    Ip(IpAddr),
    /// A result code.
    Result(i64),
    /// The event has no such field.
    Missing,
}

impl fmt::Display for GroupValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupValue::Time(t, GroupBy::Day) => f.write_str(&t.to_string()[..10]),
            GroupValue::Time(t, _) => write!(f, "{}:00Z", &t.to_string()[..13]),
            GroupValue::Severity(s) => s.fmt(f),
            GroupValue::Text(s) => f.write_str(s),
            GroupValue::Ip(ip) => ip.fmt(f),
            GroupValue::Result(r) => r.fmt(f),
            GroupValue::Missing => f.write_str("-"),
        }
    }
}

/// One group and how many events it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its value of each dimension, in the order asked.
    pub key: Vec<GroupValue>,
    /// Events in it.
    pub count: u64,
}

/// What [`AuditLog::aggregate`](crate::AuditLog::aggregate) computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// The dimensions, in the order asked.
    pub by: Vec<GroupBy>,
    /// The groups: in key order, or, for a top N, by count (largest first,
    /// then key) and at most N of them. With no dimension, one group (empty
    /// key) holding every match, or none if nothing matches.
    pub groups: Vec<Group>,
    /// Events matching the filter (in every group, not only the top N).
    pub total: u64,
    /// Which segments and blocks were read, and why.
    pub explain: Explain,
    /// Events counted from the index postings alone (no block read).
    pub from_index: u64,
}

/// Counts the rows a visit hands over, by encoded key.
pub(crate) struct Counter<'a> {
    compiled: &'a Compiled,
    names: &'a dyn Names,
    by: &'a [GroupBy],
    groups: HashMap<Vec<u8>, u64>,
    key: Vec<u8>,
    pub(crate) total: u64,
    pub(crate) from_index: u64,
}

impl<'a> Counter<'a> {
    pub(crate) fn new(compiled: &'a Compiled, names: &'a dyn Names, by: &'a [GroupBy]) -> Self {
        Counter {
            compiled,
            names,
            by,
            groups: HashMap::new(),
            key: Vec::new(),
            total: 0,
            from_index: 0,
        }
    }

    fn add(&mut self, n: u64) {
        self.total += n;
        match self.groups.get_mut(&self.key) {
            Some(c) => *c += n,
            None => {
                self.groups.insert(self.key.clone(), n);
            }
        }
    }

    /// The groups, named, in key order; or the `top` largest.
    pub(crate) fn finish(self, top: Option<usize>) -> Result<Vec<Group>> {
        let mut groups = Vec::with_capacity(self.groups.len());
        for (key, count) in self.groups {
            groups.push(Group {
                key: decode_key(&key, self.by, self.names)?,
                count,
            });
        }
        match top {
            Some(n) => {
                groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
                groups.truncate(n);
            }
            None => groups.sort_by(|a, b| a.key.cmp(&b.key)),
        }
        Ok(groups)
    }
}

impl Visitor for Counter<'_> {
    fn columns(&self) -> u16 {
        self.by
            .iter()
            .map(|g| match g {
                GroupBy::Ip => 1 << codec::IP_FIELD,
                GroupBy::Result => 1 << codec::RESULT_FIELD,
                g => g.text().map_or(0, |t| 1 << t as usize),
            })
            .fold(0, |a, b| a | b)
    }

    fn whole(&mut self, type_id: u16, severity: u8, rows: u32, times: (i64, i64)) -> bool {
        if !self.compiled.is_simple() || !self.compiled.knows_type(type_id) {
            return false;
        }
        self.key.clear();
        for g in self.by {
            match g {
                GroupBy::Type => self.key.extend_from_slice(&type_id.to_le_bytes()),
                GroupBy::Severity => self.key.push(severity),
                GroupBy::Hour | GroupBy::Day => {
                    let width = g.bucket().expect("a time bucket");
                    let b = times.0.div_euclid(width);
                    if times.1.div_euclid(width) != b {
                        return false;
                    }
                    self.key.extend_from_slice(&(b * width).to_le_bytes());
                }
                _ => return false,
            }
        }
        self.from_index += u64::from(rows);
        self.add(u64::from(rows));
        true
    }

    fn row(&mut self, lsn: Lsn, event: Option<(&Head, &Fields<'_>)>) -> Result<()> {
        let Some((head, fields)) = event else {
            return Err(Error::BadEvent {
                lsn,
                source: DecodeError {
                    offset: 0,
                    what: "not an encoded event".into(),
                },
            });
        };
        if !self.compiled.knows_type(head.type_id) {
            match self.names.type_name(head.type_id) {
                Some(name) if !self.compiled.type_name_matches(&name) => return Ok(()),
                Some(_) => {}
                None => {
                    return Err(Error::BadEvent {
                        lsn,
                        source: DecodeError {
                            offset: 0,
                            what: format!("type id {} is not in the catalog", head.type_id),
                        },
                    })
                }
            }
        }
        self.key.clear();
        for g in self.by {
            encode_part(&mut self.key, *g, head, fields);
        }
        self.add(1);
        Ok(())
    }
}

fn encode_part(key: &mut Vec<u8>, g: GroupBy, head: &Head, fields: &Fields<'_>) {
    match g {
        GroupBy::Type => key.extend_from_slice(&head.type_id.to_le_bytes()),
        GroupBy::Severity => key.push(head.severity),
        GroupBy::Hour | GroupBy::Day => {
            let width = g.bucket().expect("a time bucket");
            key.extend_from_slice(&(head.time.div_euclid(width) * width).to_le_bytes());
        }
        GroupBy::Ip => match fields.ip() {
            None => key.push(0),
            Some(IpAddr::V4(a)) => {
                key.push(4);
                key.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                key.push(6);
                key.extend_from_slice(&a.octets());
            }
        },
        GroupBy::Result => match fields.result() {
            None => key.push(0),
            Some(r) => {
                key.push(1);
                key.extend_from_slice(&r.to_le_bytes());
            }
        },
        text => match fields.text(text.text().expect("a text dimension")) {
            None => key.push(0),
            Some(t) => {
                key.push(1);
                key.extend_from_slice(&(t.len() as u32).to_le_bytes());
                key.extend_from_slice(t);
            }
        },
    }
}

fn decode_key(mut key: &[u8], by: &[GroupBy], names: &dyn Names) -> Result<Vec<GroupValue>> {
    let mut take = |n: usize| -> &[u8] {
        let (a, b) = key.split_at(n.min(key.len()));
        key = b;
        a
    };
    let mut out = Vec::with_capacity(by.len());
    for g in by {
        let v = match g {
            GroupBy::Type => {
                let id = u16::from_le_bytes(take(2).try_into().unwrap_or_default());
                GroupValue::Text(names.type_name(id).unwrap_or_else(|| format!("#{id}")))
            }
            GroupBy::Severity => Severity::from_code(take(1).first().copied().unwrap_or(0))
                .map_or(GroupValue::Missing, GroupValue::Severity),
            GroupBy::Hour | GroupBy::Day => GroupValue::Time(
                Timestamp(i64::from_le_bytes(take(8).try_into().unwrap_or_default())),
                *g,
            ),
            GroupBy::Ip => match take(1).first().copied().unwrap_or(0) {
                4 => GroupValue::Ip(IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(take(4)).unwrap_or_default(),
                ))),
                6 => GroupValue::Ip(IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(take(16)).unwrap_or_default(),
                ))),
                _ => GroupValue::Missing,
            },
            GroupBy::Result => match take(1).first().copied().unwrap_or(0) {
                1 => GroupValue::Result(i64::from_le_bytes(take(8).try_into().unwrap_or_default())),
                _ => GroupValue::Missing,
            },
            _ => match take(1).first().copied().unwrap_or(0) {
                1 => {
                    let n = u32::from_le_bytes(take(4).try_into().unwrap_or_default());
                    GroupValue::Text(String::from_utf8_lossy(take(n as usize)).into_owned())
                }
                _ => GroupValue::Missing,
            },
        };
        out.push(v);
    }
    Ok(out)
}
