//! The canonical JSON form of an event: one object per line, keys in the
//! order `lsn, time, type, severity, source, ip, actor_id, actor,
//! actor_account, account_id, session, entity_type, entity_id, entity_name,
//! result, attrs, data`, absent fields omitted. See docs/EVENTS.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventFields, Timestamp};
use crate::severity::Severity;
use crate::Lsn;

/// A JSON line that is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{what}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct JsonError {
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub what: String,
}

#[derive(Serialize)]
struct Out<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    lsn: Option<u64>,
    time: String,
    #[serde(rename = "type")]
    event_type: &'a str,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<i64>,
    #[serde(skip_serializing_if = "Attrs::is_empty")]
    attrs: Attrs<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
}

/// Attributes as a JSON object (pairs in key order).
struct Attrs<'a>(&'a [(&'a str, &'a str)]);

impl Attrs<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Attrs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The canonical JSON of `e` (one line, no newline), with its LSN if given.
pub fn to_json(e: &Event, lsn: Option<Lsn>) -> String {
    fields_to_json(&e.fields(), lsn)
}

/// The canonical JSON of an event's borrowed fields: the same line
/// [`to_json`] writes, for an event read in place and never built.
pub fn fields_to_json(e: &EventFields<'_>, lsn: Option<Lsn>) -> String {
    serde_json::to_string(&out(e, lsn)).expect("an event always serializes")
}

/// The canonical JSON of `e`, indented (`auditlog query -o json-pretty`).
pub fn fields_to_json_pretty(e: &EventFields<'_>, lsn: Option<Lsn>) -> String {
    serde_json::to_string_pretty(&out(e, lsn)).expect("an event always serializes")
}

/// The canonical JSON object of `e` as a value, to pick fields from
/// (`--output-fields`).
pub fn fields_to_value(e: &EventFields<'_>, lsn: Option<Lsn>) -> serde_json::Value {
    serde_json::to_value(out(e, lsn)).expect("an event always serializes")
}

fn out<'a>(e: &'a EventFields<'a>, lsn: Option<Lsn>) -> Out<'a> {
    Out {
        lsn: lsn.map(|l| l.0),
        time: e.time.to_string(),
        event_type: e.event_type,
        severity: e.severity.as_str(),
        source: e.source,
        ip: e.ip.map(|ip| ip.to_string()),
        actor_id: e.actor_id,
        actor: e.actor,
        actor_account: e.actor_account,
        account_id: e.account_id,
        session: e.session,
        entity_type: e.entity_type,
        entity_id: e.entity_id,
        entity_name: e.entity_name,
        result: e.result,
        attrs: Attrs(&e.attrs),
        data: e.data,
    }
}

/// The canonical JSON form (see docs/EVENTS.md), without an LSN.
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        out(&self.fields(), None).serialize(s)
    }
}

/// From the canonical JSON form: `severity` is required (there is no
/// catalog to take a default from), `lsn` is accepted and ignored, empty
/// strings are absent, unknown fields are refused.
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        let v = In::deserialize(d)?;
        to_event(v, &|_| None).map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct In {
    #[serde(default)]
    #[allow(dead_code)] // accepted and ignored: the log assigns LSNs
    lsn: Option<serde_json::Value>,
    time: String,
    #[serde(rename = "type")]
    event_type: String,
    severity: Option<String>,
    source: Option<String>,
    ip: Option<String>,
    actor_id: Option<String>,
    actor: Option<String>,
    actor_account: Option<String>,
    account_id: Option<String>,
    session: Option<String>,
    entity_type: Option<String>,
    entity_id: Option<String>,
    entity_name: Option<String>,
    result: Option<i64>,
    #[serde(default)]
    attrs: BTreeMap<String, String>,
    data: Option<String>,
}

/// Empty strings count as absent.
fn present(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Parses one JSON line. `lsn` is ignored; `time` (RFC 3339, any offset) and
/// `type` are required; a missing `severity` is `default_severity(type)`.
///
/// # Errors
/// Text that is not this JSON object, naming the field at fault.
pub fn from_json(
    line: &str,
    default_severity: &dyn Fn(&str) -> Option<Severity>,
) -> Result<Event, JsonError> {
    let v: In = serde_json::from_str(line).map_err(|e| {
        let msg = e.to_string();
        // serde names the field in its message: "unknown field `x`", "missing field `x`".
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field `"))
            .map(String::from);
        JsonError { field, what: msg }
    })?;
    to_event(v, default_severity)
}

fn to_event(
    v: In,
    default_severity: &dyn Fn(&str) -> Option<Severity>,
) -> Result<Event, JsonError> {
    let bad = |field: &str, what: String| JsonError {
        field: Some(field.to_string()),
        what,
    };
    let time: Timestamp = v
        .time
        .parse()
        .map_err(|e: crate::event::TimestampError| bad("time", e.to_string()))?;
    if v.event_type.is_empty() {
        return Err(bad("type", "must not be empty".into()));
    }
    let severity = match v.severity {
        Some(s) => s
            .parse::<Severity>()
            .map_err(|e| bad("severity", e.to_string()))?,
        None => default_severity(&v.event_type).ok_or_else(|| {
            bad(
                "severity",
                format!("missing, and type {} has no default severity", v.event_type),
            )
        })?,
    };
    let ip = match present(v.ip) {
        Some(s) => Some(
            s.parse()
                .map_err(|_| bad("ip", format!("{s:?} is not an IPv4 or IPv6 address")))?,
        ),
        None => None,
    };
    Ok(Event {
        time,
        event_type: v.event_type,
        severity,
        source: present(v.source),
        ip,
        actor_id: present(v.actor_id),
        actor: present(v.actor),
        actor_account: present(v.actor_account),
        account_id: present(v.account_id),
        session: present(v.session),
        entity_type: present(v.entity_type),
        entity_id: present(v.entity_id),
        entity_name: present(v.entity_name),
        result: v.result,
        attrs: v.attrs,
        data: present(v.data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"lsn":12,"time":"2026-11-21T10:15:30.123456Z","type":"USER_AUTH_FAILED_WRONG_PASSWORD","severity":"WARNING","source":"WEB_USER","ip":"10.0.0.5","actor_id":"42","actor":"alice","actor_account":"ALICE01","account_id":"7","session":"s-81","entity_type":"USER","entity_id":"42","entity_name":"alice","result":0,"attrs":{"reason":"bad password"},"data":"..."}"#;

    #[test]
    fn the_documented_example_round_trips_exactly() {
        let e = from_json(EXAMPLE, &|_| None).unwrap();
        assert_eq!(to_json(&e, Some(Lsn(12))), EXAMPLE);
    }

    #[test]
    fn bad_lines_name_the_field() {
        let none = |_: &str| None;
        let err = from_json(
            r#"{"time":"2026-11-21T10:15:30Z","type":"X","severity":"INFO","colour":"red"}"#,
            &none,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("colour"), "{err}");
        let err = from_json(r#"{"type":"X","severity":"INFO"}"#, &none).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("time"), "{err}");
        let err = from_json(r#"{"time":"noon","type":"X","severity":"INFO"}"#, &none).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("time"));
        let err = from_json(
            r#"{"time":"2026-11-21T10:15:30Z","type":"X","severity":"INFO","ip":"10.0.0.300"}"#,
            &none,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("ip"));
        let err = from_json(r#"{"time":"2026-11-21T10:15:30Z","type":"X"}"#, &none).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("severity"));
        assert!(from_json("not json", &none).is_err());
    }

    #[test]
    fn serde_is_the_canonical_form() {
        let e = from_json(EXAMPLE, &|_| None).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, to_json(&e, None));
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
        let back: Event = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(back, e);
        // No catalog to default from: severity is required.
        let err = serde_json::from_str::<Event>(r#"{"time":"2026-11-21T10:15:30Z","type":"X"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("severity"), "{err}");
    }

    #[test]
    fn severity_defaults_and_aliases() {
        let dflt = |t: &str| (t == "X").then_some(Severity::Notice);
        let e = from_json(r#"{"time":"2026-11-21T10:15:30+02:00","type":"X"}"#, &dflt).unwrap();
        assert_eq!(e.severity, Severity::Notice);
        assert_eq!(e.time.to_string(), "2026-11-21T08:15:30Z");
        let e = from_json(
            r#"{"time":"2026-11-21T10:15:30Z","type":"X","severity":"Very High"}"#,
            &dflt,
        )
        .unwrap();
        assert_eq!(e.severity, Severity::Critical);
    }
}
