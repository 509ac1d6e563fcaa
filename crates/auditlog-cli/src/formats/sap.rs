//! SAP NetWeaver UME security audit log lines:
//! `[TimeStamp] | [Severity] | [Actor] | [Event] | [ObjectType] = [ObjectID] | [ObjectName] | [Details]`
//! e.g. `Feb 12, 2003 6:20:48 PM  | Info | <systemuser> | LOGIN.OK | USER = … | TestUser02`.
//!
//! Mapping: the timestamp (UTC, whole seconds) is `time`; Info, Warning,
//! Error, Fatal are INFO, WARNING, ERROR, CRITICAL (on export DEBUG is
//! written as Info and NOTICE as Warning, SAP having neither); the actor is
//! `actor` (`<systemuser>` when absent); the event (`LOGIN.OK`) is the type;
//! ObjectType = ObjectID are `entity_type` and `entity_id`; ObjectName is
//! `entity_name`; Details, comma-separated `key=value` pairs, are `attrs`.
//! Other fields have no place in the format and are not exported. In field
//! text, `\`, `|`, `,` and `=` are escaped with a backslash, and line
//! breaks and tabs are written `\n`, `\r` and `\t`, so that an event is
//! always one line. Not carried: fractions of a second, DEBUG and NOTICE
//! (written as Info and Warning), spaces at either end of a field (the
//! format pads fields with spaces), an actor named `<systemuser>` and an
//! entity type named `NONE` (they mean none).

use auditlog::{Event, Severity, Timestamp};

use super::{err, FormatError};

/// The actor SAP writes when no user was logged in.
pub const SYSTEM_USER: &str = "<systemuser>";
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' | '|' | ',' | '=' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Splits `s` at unescaped `sep`, unescaping the parts.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    parts.last_mut().expect("one part").push('\\');
                    parts.last_mut().expect("one part").push(n);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(n) => out.push(n),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn sap_severity(s: Severity) -> &'static str {
    match s {
        Severity::Debug | Severity::Info => "Info",
        Severity::Notice | Severity::Warning => "Warning",
        Severity::Error => "Error",
        Severity::Critical => "Fatal",
    }
}

/// The timestamp as SAP writes it: `Feb 12, 2003 6:20:48 PM`.
pub fn format_time(t: Timestamp) -> String {
    let secs = t.unix_seconds();
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let h = dt.hour();
    let (h12, ampm) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!(
        "{} {}, {} {}:{:02}:{:02} {}",
        MONTHS[usize::from(u8::from(dt.month())) - 1],
        dt.day(),
        dt.year(),
        h12,
        dt.minute(),
        dt.second(),
        ampm
    )
}

/// Parses `Feb 12, 2003 6:20:48 PM` (UTC).
pub fn parse_time(s: &str) -> Result<Timestamp, FormatError> {
    let bad = || {
        err(
            "TimeStamp",
            format!("{s:?} is not like `Feb 12, 2003 6:20:48 PM`"),
        )
    };
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [mon, day, year, hms, ampm] = parts[..] else {
        return Err(bad());
    };
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(mon))
        .ok_or_else(bad)? as u8
        + 1;
    let day: u8 = day
        .strip_suffix(',')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    let year: i32 = year.parse().map_err(|_| bad())?;
    let hms: Vec<u8> = hms
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [h, m, sec] = hms[..] else {
        return Err(bad());
    };
    if !(1..=12).contains(&h) {
        return Err(bad());
    }
    let hour = match ampm.to_ascii_uppercase().as_str() {
        "AM" => h % 12,
        "PM" => h % 12 + 12,
        _ => return Err(bad()),
    };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).map_err(|_| bad())?, day)
            .map_err(|_| bad())?;
    let t = time::Time::from_hms(hour, m, sec).map_err(|_| bad())?;
    let secs = time::PrimitiveDateTime::new(date, t)
        .assume_utc()
        .unix_timestamp();
    Timestamp::from_unix_seconds(secs).ok_or_else(bad)
}

/// The SAP line for `e` (no newline).
pub fn to_line(e: &Event) -> String {
    let details: Vec<String> = e
        .attrs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect();
    format!(
        "{} | {} | {} | {} | {} = {} | {} | {}",
        format_time(e.time),
        sap_severity(e.severity),
        e.actor.as_deref().map_or(SYSTEM_USER.to_string(), escape),
        escape(&e.event_type),
        escape(e.entity_type.as_deref().unwrap_or("NONE")),
        escape(e.entity_id.as_deref().unwrap_or("")),
        escape(e.entity_name.as_deref().unwrap_or("")),
        details.join(",")
    )
}

/// Parses one SAP line.
pub fn parse_line(line: &str) -> Result<Event, FormatError> {
    let fields = split_unescaped(line, '|');
    if fields.len() < 5 || fields.len() > 7 {
        return Err(FormatError {
            field: None,
            what: format!(
                "expected 5 to 7 `|`-separated fields, found {}",
                fields.len()
            ),
        });
    }
    let f = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
    let time = parse_time(f(0))?;
    let severity: Severity = f(1)
        .parse()
        .map_err(|e: auditlog::UnknownSeverity| err("Severity", e.to_string()))?;
    let event_type = unescape(f(3));
    if event_type.is_empty() {
        return Err(err("Event", "empty"));
    }
    let mut e = Event::new(time, event_type, severity);
    let actor = f(2);
    if !actor.is_empty() && actor != SYSTEM_USER {
        e.actor = Some(unescape(actor));
    }
    let object = split_unescaped(f(4), '=');
    let [otype, oid] = &object[..] else {
        return Err(err(
            "ObjectType = ObjectID",
            format!("{:?} has no single `=`", f(4)),
        ));
    };
    let (otype, oid) = (unescape(otype.trim()), unescape(oid.trim()));
    if !otype.is_empty() && otype != "NONE" {
        e.entity_type = Some(otype);
    }
    if !oid.is_empty() {
        e.entity_id = Some(oid);
    }
    if !f(5).is_empty() {
        e.entity_name = Some(unescape(f(5)));
    }
    if !f(6).is_empty() {
        for pair in split_unescaped(f(6), ',') {
            let kv = split_unescaped(&pair, '=');
            let [k, v] = &kv[..] else {
                return Err(err("Details", format!("{pair:?} is not key=value")));
            };
            let k = unescape(k.trim());
            if k.is_empty() {
                return Err(err("Details", format!("{pair:?} has an empty key")));
            }
            e.attrs.insert(k, unescape(v));
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example_parses() {
        let e = parse_line(
            "Feb 12, 2003 6:20:48 PM  | Info | <systemuser> | LOGIN.OK | USER = … | TestUser02",
        )
        .unwrap();
        assert_eq!(e.time.to_string(), "2003-02-12T18:20:48Z");
        assert_eq!(
            (e.severity, e.event_type.as_str(), e.actor.as_deref()),
            (Severity::Info, "LOGIN.OK", None)
        );
        assert_eq!(
            (
                e.entity_type.as_deref(),
                e.entity_id.as_deref(),
                e.entity_name.as_deref()
            ),
            (Some("USER"), Some("…"), Some("TestUser02"))
        );
        assert_eq!(format_time(e.time), "Feb 12, 2003 6:20:48 PM");
        assert_eq!(
            parse_time("Jan 1, 2026 12:00:00 AM").unwrap().to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            parse_time("Jan 1, 2026 12:30:00 PM").unwrap().to_string(),
            "2026-01-01T12:30:00Z"
        );
    }

    #[test]
    fn bad_lines_name_the_field() {
        assert_eq!(
            parse_line("Feb 30, 2003 6:20:48 PM | Info | a | E | T = 1")
                .unwrap_err()
                .field,
            Some("TimeStamp")
        );
        assert_eq!(
            parse_line("Feb 3, 2003 6:20:48 PM | Loud | a | E | T = 1")
                .unwrap_err()
                .field,
            Some("Severity")
        );
        assert_eq!(
            parse_line("Feb 3, 2003 6:20:48 PM | Info | a | E | T")
                .unwrap_err()
                .field,
            Some("ObjectType = ObjectID")
        );
        assert_eq!(
            parse_line("Feb 3, 2003 6:20:48 PM | Info | a | E | T = 1 | n | x")
                .unwrap_err()
                .field,
            Some("Details")
        );
        assert!(parse_line("just text").is_err());
    }
}
