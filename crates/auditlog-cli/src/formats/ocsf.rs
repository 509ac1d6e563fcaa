//! Events as OCSF 1.8.0 JSON objects: the class, activity and status come
//! from the catalog's mapping (`auditlog::catalog::ocsf`), the fields go
//! where the class has room for them, and what it has no room for goes to
//! `unmapped`. docs/EXPORT.md gives the field-by-field table.

use auditlog::catalog::ocsf::{self, OcsfMapping, OCSF_VERSION};
use auditlog::EventFields;
use serde_json::{json, Map, Value};

/// The product named in every event's `metadata`.
pub const PRODUCT: &str = "auditlog";

/// What an object the class requires is named when the event says nothing
/// that identifies it.
pub const UNKNOWN: &str = "unknown";

/// Whether a class has `actor` and `src_endpoint` (the IAM classes and the
/// application classes that define them); the others carry them in
/// `unmapped`.
fn has_actor(class_uid: u32) -> bool {
    matches!(class_uid, 3001..=3006 | 6003 | 6005 | 6006)
}

/// The event as one OCSF object.
pub fn to_value(lsn: u64, e: &EventFields<'_>) -> Value {
    let m = ocsf::mapping(e.event_type);
    let (severity_id, severity) = ocsf::severity(e.severity);
    let (status_id, status) = m.status.resolve(e.result);
    let mut o = Map::new();
    o.insert("activity_id".into(), json!(m.activity_id));
    o.insert("activity_name".into(), json!(m.activity_name));
    o.insert("category_uid".into(), json!(m.category_uid()));
    o.insert("category_name".into(), json!(m.category_name()));
    o.insert("class_uid".into(), json!(m.class_uid));
    o.insert("class_name".into(), json!(m.class_name));
    o.insert("type_uid".into(), json!(m.type_uid()));
    o.insert("type_name".into(), json!(m.type_name));
    o.insert("severity_id".into(), json!(severity_id));
    o.insert("severity".into(), json!(severity));
    o.insert("status_id".into(), json!(status_id));
    o.insert("status".into(), json!(status));
    if let Some(r) = e.result {
        o.insert("status_code".into(), json!(r.to_string()));
    }
    o.insert("time".into(), json!(e.time.0.div_euclid(1_000_000)));
    o.insert("time_dt".into(), json!(e.time.to_string()));
    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": PRODUCT, "vendor_name": PRODUCT, "version": env!("CARGO_PKG_VERSION")}),
    );
    metadata.insert("profiles".into(), json!(["datetime"]));
    metadata.insert("uid".into(), json!(lsn.to_string()));
    metadata.insert("sequence".into(), json!(lsn));
    metadata.insert("event_code".into(), json!(e.event_type));
    metadata.insert("log_level".into(), json!(e.severity.as_str()));
    if let Some(s) = e.source {
        metadata.insert("log_provider".into(), json!(s));
    }
    o.insert("metadata".into(), Value::Object(metadata));
    if let Some(d) = e.data {
        o.insert("message".into(), json!(d));
    }

    let mut unmapped = Map::new();
    let actor_user = user(e.actor, e.actor_id, e.actor_account, e.account_id);
    let entity = [
        ("entity_type", e.entity_type),
        ("entity_id", e.entity_id),
        ("entity_name", e.entity_name),
    ];
    // Which of the entity's fields went into a class's object.
    let mut placed = [false; 3];
    if has_actor(m.class_uid) {
        let mut actor = Map::new();
        if let Some(u) = &actor_user {
            actor.insert("user".into(), u.clone());
        }
        if let Some(s) = e.session {
            actor.insert("session".into(), json!({ "uid": s }));
        }
        if actor.is_empty() {
            actor.insert("user".into(), json!({ "name": UNKNOWN }));
        }
        o.insert("actor".into(), Value::Object(actor));
        o.insert(
            "src_endpoint".into(),
            match e.ip {
                Some(ip) => json!({ "ip": ip.to_string() }),
                None => json!({ "name": UNKNOWN }),
            },
        );
    } else {
        if let Some(u) = &actor_user {
            unmapped.insert("actor".into(), u.clone());
        }
        if let Some(s) = e.session {
            unmapped.insert("session".into(), json!(s));
        }
        if let Some(ip) = e.ip {
            unmapped.insert("ip".into(), json!(ip.to_string()));
        }
    }
    match m.class_uid {
        3002 => {
            o.insert(
                "user".into(),
                actor_user
                    .clone()
                    .unwrap_or_else(|| json!({ "name": UNKNOWN })),
            );
            if let Some(s) = e.session {
                o.insert("session".into(), json!({ "uid": s }));
            }
        }
        3001 => {
            let target = user(e.entity_name, e.entity_id, None, None);
            if target.is_some() {
                placed = [false, true, true];
            }
            let u = target
                .or_else(|| actor_user.clone())
                .unwrap_or_else(|| json!({ "name": UNKNOWN }));
            o.insert("user".into(), u);
        }
        3006 => {
            let mut g = named(e.entity_name, e.entity_id);
            if !g.is_empty() {
                placed = [false, true, true];
            }
            if g.is_empty() {
                g.insert("name".into(), json!(UNKNOWN));
            }
            o.insert("group".into(), Value::Object(g));
        }
        3004 => {
            let mut ent = named(e.entity_name, e.entity_id);
            if ent.is_empty() {
                ent.insert("name".into(), json!(object_or_unknown(m)));
            }
            ent.insert(
                "type".into(),
                json!(e.entity_type.unwrap_or(object_or_unknown(m))),
            );
            placed = [true; 3];
            o.insert("entity".into(), Value::Object(ent));
        }
        6006 => {
            let is_file = m.object == "file";
            let mut file = Map::new();
            file.insert(
                "name".into(),
                json!(e.entity_name.or(e.entity_id).unwrap_or(UNKNOWN)),
            );
            if let Some(id) = e.entity_id {
                file.insert("uid".into(), json!(id));
            }
            if is_file {
                file.insert("type_id".into(), json!(1));
                file.insert("type".into(), json!("Regular File"));
            } else {
                file.insert("type_id".into(), json!(99));
                file.insert("type".into(), json!(object_or_unknown(m)));
            }
            placed = [false, true, true];
            o.insert("file".into(), Value::Object(file));
        }
        6007 => {
            let mut scan = named(e.entity_name, e.entity_id);
            if scan.is_empty() {
                scan.insert("name".into(), json!(UNKNOWN));
            }
            scan.insert("type_id".into(), json!(0));
            scan.insert("type".into(), json!("Unknown"));
            placed = [false, true, true];
            o.insert("scan".into(), Value::Object(scan));
        }
        2004 => {
            o.insert(
                "finding_info".into(),
                json!({ "uid": lsn.to_string(), "title": e.event_type }),
            );
        }
        6003 => {
            let operation = e
                .event_type
                .split_once('/')
                .map_or(e.event_type, |(_, a)| a);
            o.insert("api".into(), json!({ "operation": operation }));
        }
        6002 => {
            o.insert("app".into(), json!({ "name": e.source.unwrap_or(UNKNOWN) }));
        }
        _ => {}
    }
    for ((k, v), placed) in entity.into_iter().zip(placed) {
        if let (Some(v), false) = (v, placed) {
            unmapped.insert(k.into(), json!(v));
        }
    }
    if !e.attrs.is_empty() {
        let attrs: Map<String, Value> = e
            .attrs
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        unmapped.insert("attrs".into(), Value::Object(attrs));
    }
    if !unmapped.is_empty() {
        o.insert("unmapped".into(), Value::Object(unmapped));
    }
    Value::Object(o)
}

/// A `user` object from what names it, or none if nothing does.
fn user(
    name: Option<&str>,
    uid: Option<&str>,
    account: Option<&str>,
    account_uid: Option<&str>,
) -> Option<Value> {
    let mut u = named(name, uid);
    let acc = named(account, account_uid);
    if !acc.is_empty() {
        u.insert("account".into(), Value::Object(acc));
    }
    (!u.is_empty()).then_some(Value::Object(u))
}

fn named(name: Option<&str>, uid: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(n) = name {
        m.insert("name".into(), json!(n));
    }
    if let Some(u) = uid {
        m.insert("uid".into(), json!(u));
    }
    m
}

fn object_or_unknown(m: &OcsfMapping) -> &'static str {
    if m.object.is_empty() {
        UNKNOWN
    } else {
        m.object
    }
}

/// The mapping of every built-in type as a Markdown table (what
/// `auditlog catalog ocsf` prints and docs/EXPORT.md holds).
pub fn mapping_table() -> String {
    let mut out = String::from(
        "| Type | Class | Activity | Status | Entity as | Why |\n|---|---|---|---|---|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for (name, m) in ocsf::mappings() {
        let status = match m.status {
            ocsf::OcsfStatus::Unknown => "unknown".to_string(),
            ocsf::OcsfStatus::Success => "Success".to_string(),
            ocsf::OcsfStatus::Failure => "Failure".to_string(),
            ocsf::OcsfStatus::FromResult => "from `result`".to_string(),
            ocsf::OcsfStatus::Other(t) => format!("Other ({t})"),
            ocsf::OcsfStatus::Finding(id, c) => format!("{c} ({id})"),
        };
        out.push_str(&format!(
            "| `{}` | {} {} | {} {} | {} | {} | {} |\n",
            cell(name),
            m.class_uid,
            m.class_name,
            m.activity_id,
            m.activity_name,
            status,
            cell(m.object),
            cell(m.note)
        ));
    }
    out
}
