//! The Netop Portal log report, as CSV with the report's columns:
//! Session, User Id, User Name, Account Id, Entity Type, Action, Entity Id,
//! Entity Name, Result Code, Data, Action timestamp, Action date, Source,
//! Environment.
//!
//! Mapping: the type is `ENTITY/ACTION` (Entity Type and Action); a type
//! of another form (no `/`, as `USER_LOGGED_IN`) is written whole as the
//! Action with an empty Entity Type, and read back so. Session,
//! User Id, User Name, Account Id, Entity Id, Entity Name, Result Code, Data
//! and Source are `session`, `actor_id`, `actor`, `account_id`, `entity_id`,
//! `entity_name`, `result`, `data` and `source`; the Entity Type column is
//! also `entity_type`; Environment is the attribute `environment`. Action
//! timestamp is Unix seconds; Action date is the UTC time in RFC 3339 (full
//! precision; import prefers it, falling back to the timestamp). The report
//! has no severity: import uses the catalog's default for the type.
//! Not carried: the severity, `ip`, `actor_account`, attributes other than
//! `environment`, and the `entity_type` of an event whose type is not
//! `ENTITY/ACTION` (for one that is, `entity_type` is read back as ENTITY).

use auditlog::{Event, Severity, Timestamp};

use super::{err, FormatError};

/// The report's columns, in order.
pub const COLUMNS: [&str; 14] = [
    "Session",
    "User Id",
    "User Name",
    "Account Id",
    "Entity Type",
    "Action",
    "Entity Id",
    "Entity Name",
    "Result Code",
    "Data",
    "Action timestamp",
    "Action date",
    "Source",
    "Environment",
];

/// The report row for `e`.
pub fn to_record(e: &Event) -> [String; 14] {
    let o = |s: &Option<String>| s.clone().unwrap_or_default();
    let own = e
        .entity_type
        .as_deref()
        .and_then(|t| Some((t, e.event_type.strip_prefix(t)?.strip_prefix('/')?)));
    let (entity, action) = match (own, e.event_type.split_once('/')) {
        (Some((t, a)), _) => (t.to_string(), a.to_string()),
        (None, Some((t, a))) => (t.to_string(), a.to_string()),
        // Not ENTITY/ACTION: the whole type, which reads back as it is.
        (None, None) => (String::new(), e.event_type.clone()),
    };
    [
        o(&e.session),
        o(&e.actor_id),
        o(&e.actor),
        o(&e.account_id),
        entity,
        action,
        o(&e.entity_id),
        o(&e.entity_name),
        e.result.map(|r| r.to_string()).unwrap_or_default(),
        o(&e.data),
        e.time.unix_seconds().to_string(),
        e.time.to_string(),
        o(&e.source),
        e.attrs.get("environment").cloned().unwrap_or_default(),
    ]
}

/// Parses one report row; `default_severity` gives the severity for a type.
pub fn parse_record(
    rec: &[&str],
    default_severity: &dyn Fn(&str) -> Option<Severity>,
) -> Result<Event, FormatError> {
    if rec.len() != COLUMNS.len() {
        return Err(FormatError {
            field: None,
            what: format!("expected {} columns, found {}", COLUMNS.len(), rec.len()),
        });
    }
    let some = |i: usize| Some(rec[i].to_string()).filter(|s| !s.is_empty());
    let (entity, action) = (rec[4], rec[5]);
    if action.is_empty() {
        return Err(err("Action", "empty"));
    }
    if entity.is_empty() && action.contains('/') {
        // It would read back as ENTITY/ACTION with an entity.
        return Err(err(
            "Entity Type",
            format!("empty, and Action {action:?} contains `/`"),
        ));
    }
    if entity.contains('/') {
        // The type is ENTITY/ACTION: a `/` in the entity would make it ambiguous.
        return Err(err("Entity Type", format!("{entity:?} contains `/`")));
    }
    let time = match rec[11].parse::<Timestamp>() {
        Ok(t) => t,
        Err(_) => rec[10]
            .parse::<i64>()
            .ok()
            .and_then(Timestamp::from_unix_seconds)
            .ok_or_else(|| {
                err(
                    "Action timestamp",
                    format!(
                        "{:?} is not a Unix timestamp, and Action date {:?} is not RFC 3339",
                        rec[10], rec[11]
                    ),
                )
            })?,
    };
    let event_type = if entity.is_empty() {
        action.to_string()
    } else {
        format!("{entity}/{action}")
    };
    let severity = default_severity(&event_type).unwrap_or(Severity::Info);
    let mut e = Event::new(time, event_type, severity);
    e.session = some(0);
    e.actor_id = some(1);
    e.actor = some(2);
    e.account_id = some(3);
    e.entity_type = Some(entity.to_string()).filter(|t| !t.is_empty());
    e.entity_id = some(6);
    e.entity_name = some(7);
    e.result = match rec[8] {
        "" => None,
        r => Some(
            r.parse()
                .map_err(|_| err("Result Code", format!("{r:?} is not a number")))?,
        ),
    };
    e.data = some(9);
    e.source = some(12);
    if !rec[13].is_empty() {
        e.attrs.insert("environment".into(), rec[13].to_string());
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_and_bad_rows_name_the_column() {
        let row = [
            "s-1",
            "SYSTEM",
            "",
            "7",
            "DEVICE",
            "ENROLL",
            "d-9",
            "PC-1",
            "0",
            "{\"x\":1}",
            "1508335620",
            "2017-10-18T14:07:00Z",
            "portal",
            "live",
        ];
        let e = parse_record(&row, &|_| None).unwrap();
        assert_eq!(e.event_type, "DEVICE/ENROLL");
        assert_eq!(e.actor, None);
        assert_eq!(to_record(&e).to_vec(), row.to_vec());
        let mut bad = row;
        bad[8] = "ok";
        assert_eq!(
            parse_record(&bad, &|_| None).unwrap_err().field,
            Some("Result Code")
        );
        let mut bad = row;
        bad[11] = "soon";
        bad[10] = "x";
        assert_eq!(
            parse_record(&bad, &|_| None).unwrap_err().field,
            Some("Action timestamp")
        );
        assert!(parse_record(&row[..3], &|_| None).is_err());
        // Found by the netop_csv fuzz target: `/` in the entity type.
        let mut bad = row;
        bad[4] = "A/";
        assert_eq!(
            parse_record(&bad, &|_| None).unwrap_err().field,
            Some("Entity Type")
        );
    }
}
