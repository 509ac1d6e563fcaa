//! auditlog's own CSV: a header naming the columns (those of
//! `auditlog query -o csv`: `lsn, time, type, severity, source, ip,
//! actor_id, actor, actor_account, account_id, session, entity_type,
//! entity_id, entity_name, result, attrs, data`, or any of them, in any
//! order, with `time` and `type`), one event per record. `attrs` is a JSON
//! object; `lsn` is read and ignored (the log assigns LSNs); an empty cell
//! is an absent field. Every field is carried.

use std::collections::BTreeMap;

use auditlog::{Event, Severity, Timestamp};

use super::{err, FormatError};

/// The column names, as `auditlog query -o csv` writes them.
pub const COLUMNS: [&str; 17] = [
    "lsn",
    "time",
    "type",
    "severity",
    "source",
    "ip",
    "actor_id",
    "actor",
    "actor_account",
    "account_id",
    "session",
    "entity_type",
    "entity_id",
    "entity_name",
    "result",
    "attrs",
    "data",
];

/// Checks a header: every name a column, none twice, `time` and `type` there.
///
/// # Errors
/// The first name that is not a column, or the column missing.
pub fn check_header(header: &[&str]) -> Result<(), FormatError> {
    for (i, h) in header.iter().enumerate() {
        if !COLUMNS.contains(h) {
            return Err(FormatError {
                field: None,
                what: format!(
                    "the header names {h:?}, which is not a column (there are: {})",
                    COLUMNS.join(", ")
                ),
            });
        }
        if header[..i].contains(h) {
            return Err(err("header", format!("{h:?} is named twice")));
        }
    }
    for need in ["time", "type"] {
        if !header.contains(&need) {
            return Err(err("header", format!("no {need:?} column")));
        }
    }
    Ok(())
}

/// The event of one record under `header` (checked by [`check_header`]);
/// a missing severity is `default_severity(type)`.
///
/// # Errors
/// A cell that is not what its column holds, naming the column.
pub fn parse_record(
    header: &[&str],
    rec: &[&str],
    default_severity: &dyn Fn(&str) -> Option<Severity>,
) -> Result<Event, FormatError> {
    if rec.len() != header.len() {
        return Err(FormatError {
            field: None,
            what: format!("expected {} cells, found {}", header.len(), rec.len()),
        });
    }
    let cell = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .map(|i| rec[i])
            .filter(|s| !s.is_empty())
    };
    let time: Timestamp = cell("time")
        .ok_or_else(|| err("time", "empty"))?
        .parse()
        .map_err(|e: auditlog::event::TimestampError| err("time", e.to_string()))?;
    let event_type = cell("type").ok_or_else(|| err("type", "empty"))?;
    let severity = match cell("severity") {
        Some(s) => s
            .parse()
            .map_err(|e: auditlog::UnknownSeverity| err("severity", e.to_string()))?,
        None => default_severity(event_type).ok_or_else(|| {
            err(
                "severity",
                format!("empty, and type {event_type} has no default severity"),
            )
        })?,
    };
    let mut e = Event::new(time, event_type, severity);
    let text = |name| cell(name).map(String::from);
    e.source = text("source");
    e.ip = cell("ip")
        .map(|s| {
            s.parse()
                .map_err(|_| err("ip", format!("{s:?} is not an IPv4 or IPv6 address")))
        })
        .transpose()?;
    e.actor_id = text("actor_id");
    e.actor = text("actor");
    e.actor_account = text("actor_account");
    e.account_id = text("account_id");
    e.session = text("session");
    e.entity_type = text("entity_type");
    e.entity_id = text("entity_id");
    e.entity_name = text("entity_name");
    e.result = cell("result")
        .map(|r| {
            r.parse()
                .map_err(|_| err("result", format!("{r:?} is not a number")))
        })
        .transpose()?;
    if let Some(a) = cell("attrs") {
        e.attrs = serde_json::from_str::<BTreeMap<String, String>>(a).map_err(|x| {
            err(
                "attrs",
                format!("{a:?} is not a JSON object of strings: {x}"),
            )
        })?;
    }
    e.data = text("data");
    Ok(e)
}
