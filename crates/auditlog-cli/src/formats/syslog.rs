//! Events as RFC 5424 syslog messages, the event's fields as structured
//! data, for a SIEM's syslog input.
//!
//! `<PRI>1 TIME HOST auditlog - MSGID [auditlog@32473 lsn="…" type="…" …][attrs@32473 key="…" …] DATA`
//!
//! - PRI is the facility (default 13, log audit) × 8 + the syslog severity of
//!   ours (DEBUG 7 … CRITICAL 2); TIME is UTC with microseconds (what RFC
//!   5424 allows), the exact time is the `time` parameter.
//! - MSGID is the type when it is at most 32 characters of letters, digits
//!   and `_ - . /` (RFC 5424 allows any printable ASCII, but a `:` there
//!   makes lenient parsers read the rest as something else), else `-`; the
//!   `type` parameter always has it.
//! - Attributes whose names are valid SD names (1–32 printable ASCII, no
//!   `= ] "` or space) are parameters of `attrs@32473`; the others go, as a
//!   JSON object, in the `attrs_json` parameter.
//! - Parameter values escape `"`, `\` and `]` with `\`, as the RFC says.
//! - Framing: one message per line, or with octet counting (RFC 6587: the
//!   length in bytes, a space, the message), which carries any content. One
//!   per line cannot carry a line break: CR and LF inside a message are
//!   written `#015` and `#012` (as rsyslog writes control characters).
//!
//! 32473 is the enterprise number RFC 5612 reserves for examples; a site
//! with its own may want to change it.

use std::fmt::Write as _;

use auditlog::{EventFields, Severity};

/// The structured-data id of the event's own fields.
pub const SD_EVENT: &str = "auditlog@32473";
/// The structured-data id of its attributes.
pub const SD_ATTRS: &str = "attrs@32473";

/// How messages are written.
#[derive(Debug, Clone)]
pub struct SyslogOptions {
    /// The facility, 0–23 (13 is "log audit", 10 "security/authorization").
    pub facility: u8,
    /// HOSTNAME (`-` if none).
    pub hostname: String,
    /// RFC 6587 octet counting rather than one message per line.
    pub octet_counting: bool,
}

/// The syslog severity (0 emergency … 7 debug) of one of ours.
pub fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Debug => 7,
        Severity::Info => 6,
        Severity::Notice => 5,
        Severity::Warning => 4,
        Severity::Error => 3,
        Severity::Critical => 2,
    }
}

/// Is this a valid SD-NAME (RFC 5424 §6.3.3)?
pub fn is_sd_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
}

/// The type as MSGID if it is plain: 1–32 letters, digits, `_ - . /`.
fn plain_msgid(s: &str) -> Option<&str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/');
    ((1..=32).contains(&s.len()) && s.bytes().all(plain)).then_some(s)
}

/// A host name as RFC 5424 takes it: printable ASCII, at most 255 bytes.
pub fn clean_hostname(h: &str) -> String {
    let h: String = h
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if h.is_empty() {
        "-".into()
    } else {
        h
    }
}

fn param(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// One message, framed: ending in a line break, or preceded by its length.
pub fn to_message(lsn: u64, e: &EventFields<'_>, o: &SyslogOptions) -> String {
    let pri = u32::from(o.facility) * 8 + u32::from(syslog_severity(e.severity));
    let mut m = String::with_capacity(256);
    let micros = e.time.0.div_euclid(1_000);
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000);
    let stamp = match t {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        Err(_) => "-".into(),
    };
    let msgid = plain_msgid(e.event_type).unwrap_or("-");
    let _ = write!(
        m,
        "<{pri}>1 {stamp} {} auditlog - {msgid} [{SD_EVENT}",
        o.hostname
    );
    param(&mut m, "lsn", &lsn.to_string());
    param(&mut m, "type", e.event_type);
    param(&mut m, "severity", e.severity.as_str());
    param(&mut m, "time", &e.time.to_string());
    let ip = e.ip.map(|ip| ip.to_string());
    let result = e.result.map(|r| r.to_string());
    for (k, v) in [
        ("source", e.source),
        ("ip", ip.as_deref()),
        ("actor_id", e.actor_id),
        ("actor", e.actor),
        ("actor_account", e.actor_account),
        ("account_id", e.account_id),
        ("session", e.session),
        ("entity_type", e.entity_type),
        ("entity_id", e.entity_id),
        ("entity_name", e.entity_name),
        ("result", result.as_deref()),
    ] {
        if let Some(v) = v {
            param(&mut m, k, v);
        }
    }
    let (named, other): (Vec<_>, Vec<_>) = e.attrs.iter().partition(|(k, _)| is_sd_name(k));
    if !other.is_empty() {
        let json: serde_json::Map<String, serde_json::Value> = other
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect();
        param(
            &mut m,
            "attrs_json",
            &serde_json::Value::Object(json).to_string(),
        );
    }
    m.push(']');
    if !named.is_empty() {
        m.push('[');
        m.push_str(SD_ATTRS);
        for (k, v) in named {
            param(&mut m, k, v);
        }
        m.push(']');
    }
    if let Some(d) = e.data {
        m.push(' ');
        m.push_str(d);
    }
    if o.octet_counting {
        format!("{} {m}", m.len())
    } else {
        let mut line = m.replace('\n', "#012").replace('\r', "#015");
        line.push('\n');
        line
    }
}
