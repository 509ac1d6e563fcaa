//! A validator of OCSF events against the 1.8.0 schema's source files (the
//! copy in `tests/ocsf-schema-1.8.0`, checked against `../shared`'s): classes and objects resolved through
//! their `extends` chains over the attribute dictionary, then for each
//! event: the class exists, `category_uid` and `type_uid` agree with it,
//! every required attribute is present, no attribute is unknown to the
//! class or object (profiles named in `metadata.profiles` add theirs), every
//! value has its dictionary type (ip_t parses as an address, datetime_t is
//! RFC 3339), every enum value is one the schema lists and its caption
//! sibling agrees, and objects meet their `at_least_one`/`just_one`
//! constraints.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The copy of the schema in the repository (tests/ocsf-schema-1.8.0).
pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf-schema-1.8.0")
}

/// The shared copy beside the project, if this checkout has one.
pub fn shared_schema_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ocsf-schema-1.8.0");
    d.is_dir().then_some(d)
}

/// Every file under `dir`, as paths relative to it, with their bytes.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths = Vec::new();
    files(dir, &mut paths);
    let mut out: Vec<(PathBuf, Vec<u8>)> = paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[derive(Debug, Clone, Default)]
struct Spec {
    requirement: Option<String>,
    type_name: Option<String>,
    is_array: bool,
    enum_: Option<HashMap<i64, String>>,
    sibling: Option<String>,
}

#[derive(Debug, Default)]
struct Shape {
    attrs: HashMap<String, Spec>,
    constraints: Option<Map<String, Value>>,
    includes: Vec<String>,
}

/// The schema, resolved.
pub struct Schema {
    dict: HashMap<String, Spec>,
    types: HashMap<String, Option<String>>,
    objects: HashMap<String, Shape>,
    classes: HashMap<u64, (String, Shape)>,
    profiles: HashMap<String, Map<String, Value>>,
    ts_attrs: BTreeSet<String>,
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .unwrap()
}

fn spec_of(v: &Value) -> Spec {
    let enum_ = v.get("enum").and_then(Value::as_object).map(|e| {
        e.iter()
            .filter_map(|(k, c)| Some((k.parse().ok()?, c.get("caption")?.as_str()?.to_string())))
            .collect()
    });
    Spec {
        requirement: v
            .get("requirement")
            .and_then(Value::as_str)
            .map(String::from),
        type_name: v.get("type").and_then(Value::as_str).map(String::from),
        is_array: v.get("is_array").and_then(Value::as_bool).unwrap_or(false),
        enum_,
        sibling: v.get("sibling").and_then(Value::as_str).map(String::from),
    }
}

/// Lays `over` on `base`: what `over` says wins.
fn merge(base: &Spec, over: &Spec) -> Spec {
    Spec {
        requirement: over
            .requirement
            .clone()
            .or_else(|| base.requirement.clone()),
        type_name: over.type_name.clone().or_else(|| base.type_name.clone()),
        is_array: over.is_array || base.is_array,
        enum_: over.enum_.clone().or_else(|| base.enum_.clone()),
        sibling: over.sibling.clone().or_else(|| base.sibling.clone()),
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn resolve(
    name: &str,
    raw: &HashMap<String, Value>,
    dict: &HashMap<String, Spec>,
    enum_merge: bool,
) -> Shape {
    let mut chain = Vec::new();
    let mut at = Some(name.to_string());
    while let Some(n) = at {
        let d = &raw[&n];
        at = d.get("extends").and_then(Value::as_str).map(String::from);
        chain.push(d);
    }
    let mut shape = Shape::default();
    for d in chain.iter().rev() {
        let Some(attrs) = d.get("attributes").and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in attrs {
            if k == "$include" {
                for i in v.as_array().unwrap() {
                    shape.includes.push(i.as_str().unwrap().to_string());
                }
                continue;
            }
            let over = spec_of(v);
            let base = shape
                .attrs
                .get(k)
                .cloned()
                .unwrap_or_else(|| dict.get(k).cloned().unwrap_or_default());
            let mut s = merge(&base, &over);
            // Event classes add activities to the base's 0 and 99.
            if enum_merge {
                if let (Some(b), Some(o)) = (&base.enum_, &over.enum_) {
                    let mut all = b.clone();
                    all.extend(o.clone());
                    s.enum_ = Some(all);
                }
            }
            shape.attrs.insert(k.clone(), s);
        }
        if let Some(c) = d.get("constraints").and_then(Value::as_object) {
            shape.constraints = Some(c.clone());
        }
    }
    shape
}

impl Schema {
    /// Reads and resolves the schema.
    pub fn load(dir: &Path) -> Schema {
        let d = read(&dir.join("dictionary.json"));
        let dict: HashMap<String, Spec> = d["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), spec_of(v)))
            .collect();
        let types = d["types"]["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.get("type").and_then(Value::as_str).map(String::from),
                )
            })
            .collect();
        let mut raw_objects = HashMap::new();
        let mut paths = Vec::new();
        files(&dir.join("objects"), &mut paths);
        for p in &paths {
            let v = read(p);
            raw_objects.insert(v["name"].as_str().unwrap().to_string(), v);
        }
        let objects = raw_objects
            .keys()
            .map(|n| (n.clone(), resolve(n, &raw_objects, &dict, false)))
            .collect();
        let categories: HashMap<String, u64> = read(&dir.join("categories.json"))["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["uid"].as_u64().unwrap()))
            .collect();
        let mut raw_events = HashMap::new();
        paths.clear();
        files(&dir.join("events"), &mut paths);
        for p in &paths {
            let v = read(p);
            raw_events.insert(v["name"].as_str().unwrap().to_string(), v);
        }
        let mut classes = HashMap::new();
        for (n, v) in &raw_events {
            let mut at = Some(n.clone());
            let mut category = None;
            while let Some(c) = at {
                if let Some(cat) = raw_events[&c].get("category").and_then(Value::as_str) {
                    category = Some(cat.to_string());
                    break;
                }
                at = raw_events[&c]
                    .get("extends")
                    .and_then(Value::as_str)
                    .map(String::from);
            }
            let uid = match category.as_deref() {
                Some("other") | None => 0,
                Some(c) => categories[c] * 1000 + v.get("uid").and_then(Value::as_u64).unwrap_or(0),
            };
            let shape = resolve(n, &raw_events, &dict, true);
            let caption = v["caption"].as_str().unwrap().to_string();
            // Abstract category classes share uid with nothing concrete.
            if v.get("uid").is_some() || uid == 0 {
                classes.insert(uid, (caption, shape));
            }
        }
        let mut profiles = HashMap::new();
        paths.clear();
        files(&dir.join("profiles"), &mut paths);
        for p in &paths {
            let v = read(p);
            profiles.insert(
                v["name"].as_str().unwrap().to_string(),
                v["attributes"].as_object().cloned().unwrap_or_default(),
            );
        }
        let ts_attrs = dict
            .iter()
            .filter(|(_, s)| s.type_name.as_deref() == Some("timestamp_t"))
            .map(|(k, _)| k.clone())
            .collect();
        Schema {
            dict,
            types,
            objects,
            classes,
            profiles,
            ts_attrs,
        }
    }

    /// The class's caption and the captions of its activities.
    pub fn class(&self, uid: u64) -> Option<(&str, HashMap<i64, String>)> {
        let (name, shape) = self.classes.get(&uid)?;
        Some((
            name,
            shape.attrs["activity_id"].enum_.clone().unwrap_or_default(),
        ))
    }

    /// Every problem with one event; empty if it is valid.
    pub fn validate(&self, event: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(o) = event.as_object() else {
            return vec!["not an object".into()];
        };
        let Some(class_uid) = o.get("class_uid").and_then(Value::as_u64) else {
            return vec!["no class_uid".into()];
        };
        let Some((_, shape)) = self.classes.get(&class_uid) else {
            return vec![format!("no class {class_uid}")];
        };
        if o.get("category_uid").and_then(Value::as_u64) != Some(class_uid / 1000) {
            problems.push("category_uid does not match the class".into());
        }
        let activity = o
            .get("activity_id")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        if o.get("type_uid").and_then(Value::as_u64) != Some(class_uid * 100 + activity) {
            problems.push("type_uid is not class_uid * 100 + activity_id".into());
        }
        let profiles: Vec<String> = o
            .get("metadata")
            .and_then(|m| m.get("profiles"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut allowed = shape.attrs.clone();
        // The source files give class_uid and category_uid Base Event's
        // enums; the class itself is their one value, checked here.
        for k in ["class_uid", "category_uid"] {
            if let Some(s) = allowed.get_mut(k) {
                s.enum_ = None;
            }
        }
        let caption = &self.classes[&class_uid].0;
        if o.get("class_name").and_then(Value::as_str) != Some(caption) {
            problems.push(format!("class_name is not `{caption}`"));
        }
        for p in &profiles {
            let inc = format!("profiles/{p}.json");
            if !shape.includes.contains(&inc) {
                problems.push(format!("profile {p} is not one the class takes"));
                continue;
            }
            for (k, v) in &self.profiles[p] {
                let base = self.dict.get(k).cloned().unwrap_or_default();
                let mut s = merge(&base, &spec_of(v));
                s.requirement = Some("optional".into());
                allowed.entry(k.clone()).or_insert(s);
            }
        }
        self.check_object("", o, &allowed, None, &profiles, &mut problems);
        problems
    }

    fn check_object(
        &self,
        path: &str,
        o: &Map<String, Value>,
        attrs: &HashMap<String, Spec>,
        constraints: Option<&Map<String, Value>>,
        profiles: &[String],
        problems: &mut Vec<String>,
    ) {
        for (k, s) in attrs {
            if s.requirement.as_deref() == Some("required") && !o.contains_key(k) {
                problems.push(format!("{path}{k}: required, missing"));
            }
        }
        if let Some(c) = constraints {
            for (kind, names) in c {
                let names: Vec<&str> = names
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let n = names.iter().filter(|n| o.contains_key(**n)).count();
                let ok = match kind.as_str() {
                    "at_least_one" => n >= 1,
                    "just_one" => n == 1,
                    _ => true,
                };
                if !ok {
                    problems.push(format!("{path}: {kind} of {names:?}"));
                }
            }
        }
        for (k, v) in o {
            let spec = match attrs.get(k) {
                Some(s) => s.clone(),
                None => {
                    // The datetime profile adds NAME_dt beside every timestamp.
                    let ts = k
                        .strip_suffix("_dt")
                        .filter(|b| attrs.contains_key(*b) && self.ts_attrs.contains(*b));
                    if ts.is_some() && profiles.iter().any(|p| p == "datetime") {
                        Spec {
                            type_name: Some("datetime_t".into()),
                            ..Spec::default()
                        }
                    } else {
                        problems.push(format!("{path}{k}: not an attribute here"));
                        continue;
                    }
                }
            };
            let here = format!("{path}{k}");
            if spec.is_array {
                match v.as_array() {
                    Some(a) => {
                        for (i, x) in a.iter().enumerate() {
                            self.check_value(&format!("{here}[{i}]"), x, &spec, profiles, problems);
                        }
                    }
                    None => problems.push(format!("{here}: not an array")),
                }
            } else {
                self.check_value(&here, v, &spec, profiles, problems);
            }
            if let (Some(e), Some(sib)) = (&spec.enum_, &spec.sibling) {
                if let (Some(id), Some(caption)) = (v.as_i64(), o.get(sib).and_then(Value::as_str))
                {
                    if id != 99 && e.get(&id).is_some_and(|c| c != caption) {
                        problems.push(format!("{path}{sib}: `{caption}`, not {id}'s caption"));
                    }
                }
            }
        }
    }

    fn check_value(
        &self,
        path: &str,
        v: &Value,
        spec: &Spec,
        profiles: &[String],
        problems: &mut Vec<String>,
    ) {
        let Some(t) = spec.type_name.as_deref() else {
            problems.push(format!("{path}: the schema gives no type"));
            return;
        };
        if let Some(obj) = self.objects.get(t) {
            if t == "object" {
                if !v.is_object() {
                    problems.push(format!("{path}: not an object"));
                }
                return;
            }
            match v.as_object() {
                Some(o) => self.check_object(
                    &format!("{path}."),
                    o,
                    &obj.attrs,
                    obj.constraints.as_ref(),
                    profiles,
                    problems,
                ),
                None => problems.push(format!("{path}: not an object ({t})")),
            }
            return;
        }
        // A scalar: walk to its base type.
        let mut base = t.to_string();
        while let Some(Some(up)) = self.types.get(&base) {
            if up == &base {
                break;
            }
            base = up.clone();
        }
        let ok = match base.as_str() {
            "string_t" => v.is_string(),
            "integer_t" | "long_t" => v.is_i64() || v.is_u64(),
            "float_t" => v.is_number(),
            "boolean_t" => v.is_boolean(),
            "json_t" => true,
            other => {
                problems.push(format!("{path}: unknown type {other}"));
                return;
            }
        };
        if !ok {
            problems.push(format!("{path}: not a {t}"));
            return;
        }
        match t {
            "ip_t" if v.as_str().unwrap().parse::<std::net::IpAddr>().is_err() => {
                problems.push(format!("{path}: not an IP address"))
            }
            "datetime_t" => {
                let re = regex::Regex::new(
                    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?([Zz]|[\+-]\d{2}:\d{2})?$",
                )
                .unwrap();
                if !re.is_match(v.as_str().unwrap()) {
                    problems.push(format!("{path}: not an RFC 3339 time"));
                }
            }
            _ => {}
        }
        if let (Some(e), Some(n)) = (&spec.enum_, v.as_i64()) {
            if !e.contains_key(&n) {
                problems.push(format!("{path}: {n} is not one of the enum's values"));
            }
        }
    }
}
