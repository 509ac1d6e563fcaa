//! The engine's own event types: fixed ids at the top of the id space,
//! names under a reserved prefix, refused from callers (docs/EVENTS.md,
//! "Engine events").

use crate::severity::Severity;

/// The event type of a retention marker: whole segments were removed.
pub const RETENTION_APPLIED: &str = "AUDITLOG_RETENTION_APPLIED";

/// Event type ids from this one up belong to the engine's own types: fixed,
/// never in `CATALOG`, never writable by callers.
pub const ENGINE_TYPE_BASE: u16 = 0xFFF0;
/// The event type of a catalog record: one registration, in the log itself.
pub const CATALOG_ENTRY: &str = "AUDITLOG_CATALOG_ENTRY";
/// The type of the records a sealed log's checkpoints are written into the
/// log as (the signed note is the event's `data`).
pub const CHECKPOINT: &str = "AUDITLOG_CHECKPOINT";
/// Names with this prefix are reserved for the engine's own event types.
pub const ENGINE_PREFIX: &str = "AUDITLOG_";

/// The fixed type id of [`CATALOG_ENTRY`].
pub const CATALOG_ENTRY_ID: u16 = 0xFFFF;

/// The engine's event types: fixed id, name, severity.
pub(crate) const ENGINE_TYPES: [(u16, &str, Severity); 3] = [
    (CATALOG_ENTRY_ID, CATALOG_ENTRY, Severity::Info),
    (0xFFFE, RETENTION_APPLIED, Severity::Notice),
    (0xFFFD, CHECKPOINT, Severity::Info),
];

/// The fixed id of engine type `name`.
pub fn engine_type_id(name: &str) -> Option<u16> {
    ENGINE_TYPES
        .iter()
        .find(|t| t.1 == name)
        .map(|&(id, _, _)| id)
}

/// The name of engine type `id`.
pub fn engine_type_name(id: u16) -> Option<&'static str> {
    ENGINE_TYPES.iter().find(|t| t.0 == id).map(|t| t.1)
}

/// The most event types a log can register (the ids above are the engine's).
pub const MAX_TYPES: usize = ENGINE_TYPE_BASE as usize;
