//! Events as ArcSight Common Event Format lines, for SIEMs that take CEF.
//!
//! `CEF:0|auditlog|auditlog|VERSION|TYPE|NAME|SEVERITY|EXTENSION`
//!
//! - Header fields escape `\` and `|` with `\`; a header cannot hold a line
//!   break, so CR and LF there become spaces (the exact type is then also
//!   the `auditlogType` extension).
//! - NAME is "class: activity" of the type's OCSF mapping; SEVERITY is
//!   0–10 (DEBUG 0, INFO 2, NOTICE 4, WARNING 6, ERROR 8, CRITICAL 10).
//! - Extension values escape `\` and `=` with `\`, and line breaks as `\n`
//!   and `\r`. Standard keys where CEF has one (`rt` in milliseconds,
//!   `externalId` the LSN, `src` or `c6a2` the address, `suser`, `suid`,
//!   `outcome`, `cat`, `act`, `msg`), `auditlog…` keys for the rest
//!   (`auditlogTime` is the exact time, `auditlogAttrs` the attributes as
//!   a JSON object).

use std::net::IpAddr;

use auditlog::catalog::ocsf;
use auditlog::{EventFields, Severity};

/// CEF's 0–10 severity of one of ours.
pub fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Debug => 0,
        Severity::Info => 2,
        Severity::Notice => 4,
        Severity::Warning => 6,
        Severity::Error => 8,
        Severity::Critical => 10,
    }
}

fn header(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// One `key=value` of the extension, after a space (the caller writes the
/// first, `rt`, itself).
fn ext(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    for c in value.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// One CEF line, without its line break.
pub fn to_line(lsn: u64, e: &EventFields<'_>) -> String {
    let m = ocsf::mapping(e.event_type);
    let mut out = String::with_capacity(256);
    out.push_str("CEF:0|auditlog|auditlog|");
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push('|');
    header(&mut out, e.event_type);
    out.push('|');
    header(&mut out, m.type_name);
    out.push('|');
    out.push_str(&cef_severity(e.severity).to_string());
    out.push('|');
    out.push_str("rt=");
    out.push_str(&e.time.0.div_euclid(1_000_000).to_string());
    ext(&mut out, "externalId", &lsn.to_string());
    ext(&mut out, "auditlogTime", &e.time.to_string());
    ext(&mut out, "auditlogSeverity", e.severity.as_str());
    if e.event_type.contains(['\r', '\n']) {
        ext(&mut out, "auditlogType", e.event_type);
    }
    ext(&mut out, "cat", m.class_name);
    ext(&mut out, "act", m.activity_name);
    match e.ip {
        Some(IpAddr::V4(ip)) => ext(&mut out, "src", &ip.to_string()),
        Some(IpAddr::V6(ip)) => {
            ext(&mut out, "c6a2", &ip.to_string());
            ext(&mut out, "c6a2Label", "Source IPv6 Address");
        }
        None => {}
    }
    let (status_id, _) = m.status.resolve(e.result);
    match status_id {
        1 => ext(&mut out, "outcome", "success"),
        2 => ext(&mut out, "outcome", "failure"),
        _ => {}
    }
    let result = e.result.map(|r| r.to_string());
    for (k, v) in [
        ("suser", e.actor),
        ("suid", e.actor_id),
        ("auditlogSource", e.source),
        ("auditlogAccount", e.actor_account),
        ("auditlogAccountId", e.account_id),
        ("auditlogSession", e.session),
        ("auditlogEntityType", e.entity_type),
        ("auditlogEntityId", e.entity_id),
        ("auditlogEntityName", e.entity_name),
        ("auditlogResult", result.as_deref()),
        ("msg", e.data),
    ] {
        if let Some(v) = v {
            ext(&mut out, k, v);
        }
    }
    if !e.attrs.is_empty() {
        let json: serde_json::Map<String, serde_json::Value> = e
            .attrs
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect();
        ext(
            &mut out,
            "auditlogAttrs",
            &serde_json::Value::Object(json).to_string(),
        );
    }
    out
}
