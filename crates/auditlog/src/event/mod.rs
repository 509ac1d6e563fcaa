//! The audit event: one record model for all the seed styles (file-transfer
//! application, Netop Portal, SAP UME), its binary codec ([`codec`]) and its
//! canonical JSON form ([`json`]). Fields that do not apply are absent
//! (`None`), never empty strings. See docs/EVENTS.md.

#[doc(hidden)]
pub mod codec;
pub mod json;
pub(crate) mod reserved;
mod time;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use self::time::{Timestamp, TimestampError};
use crate::severity::Severity;

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened (UTC, nanoseconds).
    pub time: Timestamp,
    /// Its type's catalog name (stored as a compact id).
    pub event_type: String,
    /// How serious it is.
    pub severity: Severity,
    /// What produced it (`WEB_USER`, `WORKER`, `portal`, …).
    pub source: Option<String>,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The acting user's id.
    pub actor_id: Option<String>,
    /// The acting user's name.
    pub actor: Option<String>,
    /// The acting user's account name (SAM account name).
    pub actor_account: Option<String>,
    /// The acting user's account id (Netop).
    pub account_id: Option<String>,
    /// The session it belongs to.
    pub session: Option<String>,
    /// The type of the entity acted on.
    pub entity_type: Option<String>,
    /// The id of the entity acted on.
    pub entity_id: Option<String>,
    /// The name of the entity acted on.
    pub entity_name: Option<String>,
    /// The result code: 0 is success, anything else a failure.
    pub result: Option<i64>,
    /// Further attributes.
    pub attrs: BTreeMap<String, String>,
    /// A raw data payload (Netop's "Data" column, SAP's details).
    pub data: Option<String>,
}

/// An event's fields, borrowed: from an owned [`Event`] ([`Event::fields`])
/// or from one read in place ([`EventView::fields`](crate::query::EventView::fields)),
/// so that output (JSON, CSV, tables) is written one way from either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// When it happened.
    pub time: Timestamp,
    /// Its type's name.
    pub event_type: &'a str,
    /// How serious it is.
    pub severity: Severity,
    /// What produced it.
    pub source: Option<&'a str>,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The acting user's id.
    pub actor_id: Option<&'a str>,
    /// The acting user's name.
    pub actor: Option<&'a str>,
    /// The acting user's account name.
    pub actor_account: Option<&'a str>,
    /// The acting user's account id.
    pub account_id: Option<&'a str>,
    /// The session.
    pub session: Option<&'a str>,
    /// The type of the entity acted on.
    pub entity_type: Option<&'a str>,
    /// The id of the entity acted on.
    pub entity_id: Option<&'a str>,
    /// The name of the entity acted on.
    pub entity_name: Option<&'a str>,
    /// The result code.
    pub result: Option<i64>,
    /// Further attributes, in key order.
    pub attrs: Vec<(&'a str, &'a str)>,
    /// A raw data payload.
    pub data: Option<&'a str>,
}

impl Event {
    /// Its fields, borrowed.
    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            time: self.time,
            event_type: &self.event_type,
            severity: self.severity,
            source: self.source.as_deref(),
            ip: self.ip,
            actor_id: self.actor_id.as_deref(),
            actor: self.actor.as_deref(),
            actor_account: self.actor_account.as_deref(),
            account_id: self.account_id.as_deref(),
            session: self.session.as_deref(),
            entity_type: self.entity_type.as_deref(),
            entity_id: self.entity_id.as_deref(),
            entity_name: self.entity_name.as_deref(),
            result: self.result,
            attrs: self
                .attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            data: self.data.as_deref(),
        }
    }

    /// An event with only the required fields.
    pub fn new(time: Timestamp, event_type: impl Into<String>, severity: Severity) -> Event {
        Event {
            time,
            event_type: event_type.into(),
            severity,
            source: None,
            ip: None,
            actor_id: None,
            actor: None,
            actor_account: None,
            account_id: None,
            session: None,
            entity_type: None,
            entity_id: None,
            entity_name: None,
            result: None,
            attrs: BTreeMap::new(),
            data: None,
        }
    }
}
