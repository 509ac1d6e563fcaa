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

impl Event {
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
