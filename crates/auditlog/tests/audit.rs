//! Audit events over the log: the log's own catalog, strict catalogs, and
//! filters evaluated on encoded bytes agreeing with a plain reference filter.

use std::net::IpAddr;

use auditlog::{
    AuditLog, AuditOptions, Catalog, Durability, Error, Event, Filter, Options, Severity, Timestamp,
};
use proptest::prelude::*;

fn opts() -> AuditOptions {
    AuditOptions {
        log: Options::default()
            .segment_bytes(64 << 10)
            .record_bytes_max(8 << 10)
            .durability(Durability::Buffered),
        catalog: Catalog::builtin("filetransfer-2.0"),
        strict: false,
        app_version: None,
        ..Default::default()
    }
}

const TYPES: [&str; 5] = [
    "USER_LOGGED_IN",
    "USER_AUTH_FAILED_WRONG_PASSWORD",
    "USER_AUTH_FAILED_MFA",
    "PACKAGE_QUARANTINED",
    "CUSTOM_THING",
];

fn event() -> impl Strategy<Value = Event> {
    (
        0i64..1000,
        0usize..TYPES.len(),
        0u8..6,
        proptest::option::of(
            prop_oneof![Just("alice"), Just("bob"), Just("carol")].prop_map(String::from),
        ),
        proptest::option::of((0u8..4).prop_map(|x| IpAddr::from([10, 0, 0, x]))),
        proptest::option::of(prop_oneof![Just("WEB_USER"), Just("WORKER")].prop_map(String::from)),
        proptest::option::of(0i64..3),
        proptest::option::of(prop_oneof![Just("s1"), Just("s2")].prop_map(String::from)),
    )
        .prop_map(|(t, ty, sev, actor, ip, source, result, session)| {
            let mut e = Event::new(
                Timestamp(t * 1_000_000_000),
                TYPES[ty],
                Severity::from_code(sev).unwrap(),
            );
            e.actor = actor;
            e.ip = ip;
            e.source = source;
            e.result = result;
            e.session = session;
            e
        })
}

fn filter() -> impl Strategy<Value = Filter> {
    (
        proptest::collection::vec(
            prop_oneof![
                Just("USER_AUTH_FAILED_*"),
                Just("USER_LOGGED_IN"),
                Just("CUSTOM_THING"),
                Just("NOPE")
            ]
            .prop_map(String::from),
            0..3,
        ),
        proptest::option::of(0u8..6),
        proptest::option::of(0u8..6),
        proptest::option::of(0i64..1000),
        proptest::option::of(0i64..1000),
        proptest::option::of(prop_oneof![Just("alice"), Just("bob")].prop_map(String::from)),
        proptest::option::of(
            prop_oneof![Just("10.0.0.1"), Just("10.0.0.0/30"), Just("10.0.0.2/31")]
                .prop_map(|s| s.parse().unwrap()),
        ),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("WEB_USER"), Just("WORKER")].prop_map(String::from)),
    )
        .prop_map(
            |(types, min, max, since, until, actor, ip, failed, source)| Filter {
                types,
                min_severity: min.and_then(Severity::from_code),
                max_severity: max.and_then(Severity::from_code),
                since: since.map(|s| Timestamp(s * 1_000_000_000)),
                until: until.map(|s| Timestamp(s * 1_000_000_000)),
                actor,
                ip,
                failed,
                source,
                ..Filter::default()
            },
        )
}

/// The plain reference: the filter's meaning, over owned events.
fn reference(f: &Filter, e: &Event) -> bool {
    (f.types.is_empty()
        || f.types.iter().any(|p| {
            p.strip_suffix('*')
                .map_or(p == &e.event_type, |pre| e.event_type.starts_with(pre))
        }))
        && f.min_severity.is_none_or(|m| e.severity >= m)
        && f.max_severity.is_none_or(|m| e.severity <= m)
        && f.since.is_none_or(|s| e.time >= s)
        && f.until.is_none_or(|u| e.time <= u)
        && f.actor.as_ref().is_none_or(|a| e.actor.as_ref() == Some(a))
        && f.ip.is_none_or(|n| e.ip.is_some_and(|ip| n.contains(ip)))
        && (!f.failed || e.result.is_some_and(|r| r != 0))
        && f.source
            .as_ref()
            .is_none_or(|s| e.source.as_ref() == Some(s))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn queries_equal_the_reference_filter(events in proptest::collection::vec(event(), 1..200), filters in proptest::collection::vec(filter(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), opts()).unwrap();
        let mut lsns = Vec::new();
        for chunk in events.chunks(7) {
            let r = log.append_batch(chunk).unwrap();
            lsns.extend(r.start.0..r.end.0);
        }
        for f in &filters {
            let want: Vec<(u64, &Event)> = lsns.iter().copied().zip(&events).filter(|(_, e)| reference(f, e)).collect();
            let got: Vec<(u64, Event)> = log.query(f, false).map(|r| r.map(|(l, e)| (l.0, e)).unwrap()).collect();
            prop_assert_eq!(got.len(), want.len());
            for ((gl, ge), (wl, we)) in got.iter().zip(&want) {
                prop_assert_eq!(gl, wl);
                prop_assert_eq!(ge, *we);
            }
            let back: Vec<u64> = log.query(f, true).map(|r| r.unwrap().0 .0).collect();
            let mut fwd: Vec<u64> = want.iter().map(|(l, _)| *l).collect();
            fwd.reverse();
            prop_assert_eq!(back, fwd);
        }
    }
}

#[test]
fn borrowed_fields_append_as_their_event_would() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), opts()).unwrap();
    let mut e = Event::new(Timestamp(5), "USER_LOGGED_IN", Severity::Info);
    e.actor = Some("alice".into());
    e.ip = Some(IpAddr::from([10, 0, 0, 1]));
    e.attrs.insert("browser".into(), "firefox".into());
    e.attrs.insert("mfa".into(), "totp".into());
    // One at a time, a batch, and (new names) through registration.
    let a = log.append_fields(&e.fields()).unwrap();
    let mut other = e.clone();
    other.event_type = "SOMETHING_NEW".into();
    other.attrs.insert("zone".into(), "eu".into());
    let batch = log
        .append_fields_batch(&[e.fields(), other.fields()])
        .unwrap();
    // Attributes out of order, a key twice: stored as an event's map would
    // hold them (sorted; the last value of a key).
    let mut shuffled = e.fields();
    shuffled.attrs = vec![("mfa", "sms"), ("browser", "firefox"), ("mfa", "totp")];
    let c = log.append_fields(&shuffled).unwrap();
    let got: Vec<(auditlog::Lsn, Event)> = log
        .query(&Filter::default(), false)
        .map(Result::unwrap)
        .collect();
    let want = [
        (a, &e),
        (batch.start, &e),
        (auditlog::Lsn(batch.start.0 + 1), &other),
        (c, &e),
    ];
    assert_eq!(got.len(), want.len());
    for ((gl, ge), (wl, we)) in got.iter().zip(want) {
        assert_eq!((gl, ge), (&wl, we));
    }
    // The same checks as owned events: reserved types are refused.
    let mut reserved = e.fields();
    reserved.event_type = "AUDITLOG_CHECKPOINT";
    assert!(matches!(
        log.append_fields(&reserved),
        Err(Error::ReservedType { .. })
    ));
}

#[test]
fn the_catalog_persists_and_ids_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let t = Timestamp(0);
    {
        let log = AuditLog::open(dir.path(), opts()).unwrap();
        log.append(&Event::new(t, "CUSTOM_THING", Severity::Info))
            .unwrap();
        log.append(&Event::new(t, "USER_LOGGED_IN", Severity::Info))
            .unwrap();
    }
    // Each registration is a catalog record in the log, just before the
    // event that first uses it, and a CATALOG line naming that record's LSN.
    assert_eq!(
        catalog_entries(dir.path()),
        ["1 type 0 - CUSTOM_THING", "3 type 1 INFO USER_LOGGED_IN"]
    );
    {
        let log = AuditLog::open(dir.path(), opts()).unwrap();
        let mut e = Event::new(t, "PACKAGE_QUARANTINED", Severity::Warning);
        e.attrs.insert("package".into(), "p-1".into());
        log.append(&e).unwrap();
        let all: Vec<Event> = log
            .query(&Filter::default(), false)
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(
            all.iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
            ["CUSTOM_THING", "USER_LOGGED_IN", "PACKAGE_QUARANTINED"]
        );
        assert_eq!(all[2].attrs["package"], "p-1");
        assert_eq!(
            log.default_severity("PACKAGE_QUARANTINED"),
            Some(Severity::Warning)
        );
    }
    assert_eq!(
        catalog_entries(dir.path()),
        [
            "1 type 0 - CUSTOM_THING",
            "3 type 1 INFO USER_LOGGED_IN",
            "5 type 2 WARNING PACKAGE_QUARANTINED",
            "6 key 0 package"
        ]
    );
}

/// The `LSN ENTRY` part of each CATALOG line naming a type or key, after
/// checking each line's CRC.
fn catalog_entries(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("CATALOG")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let (crc, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            u32::from_str_radix(crc, 16).unwrap(),
            crc32fast::hash(rest.as_bytes())
        );
        let entry = rest.split_once(' ').unwrap().1;
        if entry.starts_with("type ") || entry.starts_with("key ") {
            out.push(rest.to_string());
        }
    }
    out
}

#[test]
fn a_strict_catalog_rejects_unknown_types_and_suggests_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        dir.path(),
        AuditOptions {
            strict: true,
            ..opts()
        },
    )
    .unwrap();
    let err = log
        .append(&Event::new(Timestamp(0), "USER_LOGGED_INN", Severity::Info))
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownType { name, suggestions } if name == "USER_LOGGED_INN" && suggestions[0] == "USER_LOGGED_IN"),
        "{err}"
    );
    assert!(
        err.to_string().contains("did you mean USER_LOGGED_IN"),
        "{err}"
    );
    assert_eq!(log.log().next_lsn().0, 1, "nothing appended");
    log.append(&Event::new(Timestamp(0), "USER_LOGGED_IN", Severity::Info))
        .unwrap();
}

#[test]
fn a_read_only_reader_sees_types_registered_after_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let writer = AuditLog::open(dir.path(), opts()).unwrap();
    writer
        .append(&Event::new(Timestamp(0), "USER_LOGGED_IN", Severity::Info))
        .unwrap();
    let ro = AuditOptions {
        log: opts().log.read_only(true),
        ..opts()
    };
    let reader = AuditLog::open(dir.path(), ro).unwrap();
    writer
        .append(&Event::new(Timestamp(1), "BRAND_NEW", Severity::Error))
        .unwrap();
    reader.log().refresh().unwrap();
    let f = Filter {
        types: vec!["BRAND_*".into()],
        ..Filter::default()
    };
    let got: Vec<Event> = reader.query(&f, false).map(|r| r.unwrap().1).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event_type, "BRAND_NEW");
}

#[test]
fn events_outside_the_declared_version_are_counted_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::builtin("filetransfer-2.0").unwrap();
    let t = Timestamp(0);
    {
        // Written by 1.2: AD_AUTH_FAILED_WRONG_PATH (until 1.3.2) is fine, ADMIN_AUTH_FAILED_MFA (since 1.4) is not.
        let log = AuditLog::open(
            dir.path(),
            AuditOptions {
                app_version: Some("1.2".into()),
                ..opts()
            },
        )
        .unwrap();
        log.append(&Event::new(t, "AD_AUTH_FAILED_WRONG_PATH", Severity::Error))
            .unwrap();
        log.append(&Event::new(t, "ADMIN_AUTH_FAILED_MFA", Severity::Warning))
            .unwrap();
    }
    {
        // Then 1.10 (numerically after 1.4 and 1.3.2): the retired type is outside, the new one is fine.
        let log = AuditLog::open(
            dir.path(),
            AuditOptions {
                app_version: Some("1.10".into()),
                ..opts()
            },
        )
        .unwrap();
        log.append(&Event::new(t, "AD_AUTH_FAILED_WRONG_PATH", Severity::Error))
            .unwrap();
        log.append(&Event::new(t, "ADMIN_AUTH_FAILED_MFA", Severity::Warning))
            .unwrap();
        log.append(&Event::new(t, "CUSTOM_THING", Severity::Info))
            .unwrap();
    }
    let log = AuditLog::open(dir.path(), opts()).unwrap();
    let r = log.version_report(&catalog).unwrap();
    assert_eq!(r.checked, 5);
    let outside: Vec<(&str, &str, u64)> = r
        .outside
        .iter()
        .map(|((t, v), n)| (t.as_str(), v.as_str(), *n))
        .collect();
    assert_eq!(
        outside,
        [
            ("ADMIN_AUTH_FAILED_MFA", "1.2", 1),
            ("AD_AUTH_FAILED_WRONG_PATH", "1.10", 1)
        ]
    );
    assert!(auditlog::compare_versions("1.10", "1.9").is_gt());
    assert!(auditlog::compare_versions("1.3", "1.3.0").is_eq());
}

/// A follower owns what it needs: it moves into a thread, outlives nothing
/// it borrows, and returns only what its filter matches, including types
/// registered after it was made; `query_from` starts at an LSN.
#[test]
fn an_owned_filtered_follower_moves_into_a_thread() {
    fn send_static<T: Send + 'static>(t: T) -> T {
        t
    }
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(AuditLog::open(dir.path(), opts()).unwrap());
    let filter = Filter {
        types: vec!["*FAILED*".into(), "LATE_*".into()],
        ..Filter::default()
    };
    let mut follower = send_static(log.follow_filtered(&filter, log.log().next_lsn()));
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < 4 {
            match follower
                .next_timeout(std::time::Duration::from_secs(10))
                .unwrap()
            {
                Some((lsn, e)) => got.push((lsn, e.event_type)),
                None => break,
            }
        }
        got
    });
    let mut want = Vec::new();
    for (i, ty) in [
        "USER_LOGGED_IN",
        "USER_AUTH_FAILED_MFA",
        "PACKAGE_QUARANTINED",
        "LATE_ARRIVAL",
        "USER_AUTH_FAILED_WRONG_PASSWORD",
        "LATE_ARRIVAL",
    ]
    .iter()
    .enumerate()
    {
        let e = Event::new(Timestamp(i as i64), *ty, Severity::Warning);
        let lsn = log.append(&e).unwrap();
        if ty.contains("FAILED") || ty.starts_with("LATE_") {
            want.push((lsn, ty.to_string()));
        }
    }
    assert_eq!(reader.join().unwrap(), want);
    // A query from an LSN on: what a cursor asks.
    let from = want[1].0;
    let got: Vec<_> = log
        .query_from(&filter, from, false)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(got, want[1..].iter().map(|w| w.0).collect::<Vec<_>>());
    let newest_first: Vec<_> = log
        .query_from(&filter, from, true)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(
        newest_first,
        want[1..].iter().rev().map(|w| w.0).collect::<Vec<_>>()
    );
    // Every name a filter can use: the log's and the engine's own.
    let names = log.type_names().unwrap();
    assert!(
        names.contains(&"LATE_ARRIVAL".to_string())
            && names.contains(&auditlog::RETENTION_APPLIED.to_string())
    );
}
