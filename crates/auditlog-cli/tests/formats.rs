//! Export then import gives back the same events, for every format, over the
//! events each format can carry (see the mapping in each module's docs).

use auditlog::{Event, Severity, Timestamp};
use auditlog_cli::formats::{netop, sap};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Separators, escapes, quotes, line breaks, tabs and non-ASCII included
    // on purpose (a field cannot start or end with white space in SAP's
    // padded format: trimmed here).
    "[a-zA-Z0-9 |,=\\\\\"'\n\r\té…._;/-]{1,16}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("non-empty", |s| !s.is_empty())
}

fn sap_event() -> impl Strategy<Value = Event> {
    (
        -2_000_000_000i64..4_000_000_000,
        prop_oneof![
            Just(Severity::Info),
            Just(Severity::Warning),
            Just(Severity::Error),
            Just(Severity::Critical)
        ],
        proptest::option::of(text()),
        "[A-Z]{1,8}\\.[A-Z_]{1,8}",
        proptest::option::of(
            text().prop_filter("not NONE", |s| s != "NONE" && s != "<systemuser>"),
        ),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::collection::btree_map(
            "[a-zA-Z_][a-zA-Z0-9_,=|\n\\\\]{0,8}",
            "[a-zA-Z0-9 ,=|\n\r\t\\\\]{0,10}",
            0..4,
        ),
    )
        .prop_map(|(secs, sev, actor, ty, et, eid, en, attrs)| {
            let mut e = Event::new(Timestamp(secs * 1_000_000_000), ty, sev);
            e.actor = actor.filter(|a| a != sap::SYSTEM_USER);
            e.entity_type = et;
            e.entity_id = eid;
            e.entity_name = en;
            e.attrs = attrs
                .into_iter()
                .map(|(k, v)| (k, v.trim().to_string()))
                .collect();
            e
        })
}

fn netop_event() -> impl Strategy<Value = Event> {
    let opt = || proptest::option::of(text());
    (
        (
            -2_000_000_000_000_000_000i64..4_000_000_000_000_000_000,
            // No entity: a type of another catalog (USER_LOGGED_IN), whole.
            proptest::option::of("[A-Z_]{1,12}"),
            "[A-Z_]{1,12}",
        ),
        (opt(), opt(), opt(), opt(), opt(), opt(), opt(), opt()),
        proptest::option::of(-5i64..100),
        proptest::option::of(Just("live".to_string())),
    )
        .prop_map(
            |(
                (t, entity, action),
                (session, uid, uname, acct, eid, ename, data, source),
                result,
                env,
            )| {
                let ty = match &entity {
                    Some(entity) => format!("{entity}/{action}"),
                    None => action,
                };
                let mut e = Event::new(Timestamp(t), ty, Severity::Info);
                e.entity_type = entity;
                e.session = session;
                e.actor_id = uid;
                e.actor = uname;
                e.account_id = acct;
                e.entity_id = eid;
                e.entity_name = ename;
                e.data = data;
                e.source = source;
                e.result = result;
                if let Some(env) = env {
                    e.attrs.insert("environment".into(), env);
                }
                e
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sap_lines_round_trip(e in sap_event()) {
        let line = sap::to_line(&e);
        prop_assert_eq!(sap::parse_line(&line).unwrap(), e, "line {}", line);
    }

    #[test]
    fn netop_rows_round_trip_through_csv(events in proptest::collection::vec(netop_event(), 1..5)) {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(netop::COLUMNS).unwrap();
        for e in &events {
            w.write_record(netop::to_record(e)).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let mut r = csv::Reader::from_reader(&bytes[..]);
        let back: Vec<Event> = r
            .records()
            .map(|rec| {
                let rec = rec.unwrap();
                netop::parse_record(&rec.iter().collect::<Vec<_>>(), &|_| Some(Severity::Info)).unwrap()
            })
            .collect();
        prop_assert_eq!(back, events);
    }

    #[test]
    fn sap_parser_never_panics(line in "\\PC{0,120}") {
        let _ = sap::parse_line(&line);
    }

    #[test]
    fn an_sap_line_is_one_line_whatever_the_fields(e in sap_event()) {
        let line = sap::to_line(&e);
        prop_assert!(!line.contains('\n') && !line.contains('\r'), "{:?}", line);
    }
}
