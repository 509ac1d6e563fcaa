//! Events survive the binary codec and the canonical JSON unchanged, and no
//! bytes make the decoder panic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use auditlog::event::json;
use auditlog::format::codec::{self, EventRef};
use auditlog::{Event, Lsn, Severity, Timestamp};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9 _./:é\"\\\\-]{1,24}")
}

fn event() -> impl Strategy<Value = Event> {
    let ids = (
        // Years 1678..2262 fit in i64 nanoseconds; keep well inside.
        -5_000_000_000_000_000_000i64..5_000_000_000_000_000_000,
        "[A-Z][A-Z_/]{0,30}",
        0u8..6,
        text(),
        proptest::option::of(any::<IpAddr>()),
        (text(), text(), text(), text(), text()),
    );
    let rest = (
        (text(), text(), text()),
        proptest::option::of(any::<i64>()),
        proptest::collection::btree_map("[a-z_]{1,12}", "[ -~]{0,20}", 0..4),
        text(),
    );
    (ids, rest).prop_map(
        |(
            (t, ty, sev, source, ip, (actor_id, actor, acct, account_id, session)),
            ((et, eid, en), result, attrs, data),
        )| {
            let mut e = Event::new(Timestamp(t), ty, Severity::from_code(sev).unwrap());
            e.source = source;
            e.ip = ip;
            e.actor_id = actor_id;
            e.actor = actor;
            e.actor_account = acct;
            e.account_id = account_id;
            e.session = session;
            e.entity_type = et;
            e.entity_id = eid;
            e.entity_name = en;
            e.result = result;
            e.attrs = attrs;
            e.data = data;
            e
        },
    )
}

/// A toy catalog: type names and attribute keys interned in first-seen order.
#[derive(Default)]
struct Names {
    types: Vec<String>,
    keys: Vec<String>,
}

impl Names {
    fn type_id(&mut self, t: &str) -> u16 {
        if let Some(i) = self.types.iter().position(|x| x == t) {
            return i as u16;
        }
        self.types.push(t.to_string());
        (self.types.len() - 1) as u16
    }
}

fn encode(e: &Event, names: &mut Names) -> Vec<u8> {
    let id = names.type_id(&e.event_type);
    let mut keys = std::mem::take(&mut names.keys);
    let mut out = Vec::new();
    codec::encode(
        e,
        id,
        &mut |k| {
            if let Some(i) = keys.iter().position(|x| x == k) {
                return i as u32;
            }
            keys.push(k.to_string());
            (keys.len() - 1) as u32
        },
        &mut out,
    );
    names.keys = keys;
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn binary_round_trip(e in event()) {
        let mut names = Names::default();
        let bytes = encode(&e, &mut names);
        let r = EventRef::parse(&bytes).unwrap();
        prop_assert_eq!(codec::peek_type_severity(&bytes), Some((r.type_id, e.severity)));
        prop_assert_eq!(codec::peek_time(&bytes), Some(e.time));
        prop_assert_eq!(r.text(codec::TextField::Actor), e.actor.as_deref());
        prop_assert_eq!(r.text(codec::TextField::Data), e.data.as_deref());
        let back = r.to_event(&|id| names.types.get(id as usize).cloned(), &|k| names.keys.get(k as usize).cloned()).unwrap();
        prop_assert_eq!(back, e);
    }

    #[test]
    fn borrowed_fields_encode_exactly_as_the_owned_event(e in event()) {
        let mut out = Vec::new();
        codec::encode(&e, 7, &mut |k| k.len() as u32, &mut out);
        let mut borrowed = Vec::new();
        codec::encode_fields(&e.fields(), 7, &mut |k| k.len() as u32, &mut borrowed);
        prop_assert_eq!(borrowed, out);
    }

    #[test]
    fn json_round_trip(e in event(), lsn in proptest::option::of(1u64..u64::MAX)) {
        let line = json::to_json(&e, lsn.map(Lsn));
        let back = json::from_json(&line, &|_| None).unwrap();
        prop_assert_eq!(back, e);
    }

    #[test]
    fn any_bytes_decode_to_an_error_or_an_event_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(r) = EventRef::parse(&bytes) {
            let _ = r.to_event(&|id| Some(id.to_string()), &|k| Some(k.to_string()));
            let _ = r.attrs().count();
        }
    }

    #[test]
    fn every_truncation_of_a_valid_encoding_is_an_error(e in event()) {
        let bytes = encode(&e, &mut Names::default());
        for n in 0..bytes.len() {
            prop_assert!(EventRef::parse(&bytes[..n]).is_err(), "prefix of {} bytes accepted", n);
        }
    }
}

#[test]
fn only_the_canonical_encoding_decodes() {
    // Found by the event_decode fuzz target: the attrs bit with no attributes.
    let crash = [0x47, 0, 0, 0, 0, 0, 0, 0x38, 0, 0, 0, 0, 0x08, 0];
    assert!(EventRef::parse(&crash).is_err());
    // A varint with a redundant continuation byte (result = 0 as 0x80 0x00).
    let mut e = Event::new(Timestamp(0), "X", Severity::Info);
    e.result = Some(0);
    let mut out = Vec::new();
    codec::encode(&e, 1, &mut |_| 0, &mut out);
    assert!(EventRef::parse(&out).is_ok());
    out.pop();
    out.extend_from_slice(&[0x80, 0x00]);
    assert!(EventRef::parse(&out).is_err());
}

#[test]
fn type_and_severity_lead_the_encoding() {
    let mut e = Event::new(
        "2026-11-21T10:15:30Z".parse().unwrap(),
        "X",
        Severity::Warning,
    );
    e.attrs = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let mut out = Vec::new();
    codec::encode(&e, 0x1234, &mut |_| 7, &mut out);
    assert_eq!(&out[..3], &[0x34, 0x12, Severity::Warning.code()]);
    assert_eq!(out.len(), codec::HEADER_LEN + 1 + 1 + 1 + 1);
}

#[test]
fn the_netop_example_in_docs_events_md() {
    let netop = auditlog::Catalog::builtin("netop-portal").unwrap();
    let line = r#"{"time":"2017-10-18T14:07:00+03:00","type":"USER/LOGIN","source":"portal","actor_id":"1001","actor":"bob","account_id":"7","session":"9f1c","entity_type":"USER","entity_id":"1001","entity_name":"bob","result":0}"#;
    let e = json::from_json(line, &|t| netop.get(t).map(|t| t.severity)).unwrap();
    assert_eq!(
        json::to_json(&e, None),
        r#"{"time":"2017-10-18T11:07:00Z","type":"USER/LOGIN","severity":"INFO","source":"portal","actor_id":"1001","actor":"bob","account_id":"7","session":"9f1c","entity_type":"USER","entity_id":"1001","entity_name":"bob","result":0}"#
    );
}
