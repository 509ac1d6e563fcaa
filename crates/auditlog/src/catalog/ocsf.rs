//! Where each built-in event type lands in OCSF 1.8.0: class, activity and
//! status, from the data file `catalogs/ocsf.tsv` (one reviewed row per
//! type; docs/EXPORT.md prints the table).
//!
//! Types no built-in catalog knows (an application's own) are mapped to
//! Base Event (class 0, activity 99 "Other") with that reason; so are the
//! few built-in types no class fits, each with its own reason.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::severity::Severity;

const DATA: &str = include_str!("../../catalogs/ocsf.tsv");

/// The OCSF schema version the mapping follows.
pub const OCSF_VERSION: &str = "1.8.0";

/// How an event's OCSF `status_id` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcsfStatus {
    /// Not known: `status_id` 0.
    Unknown,
    /// The type says it succeeded: 1.
    Success,
    /// The type says it failed: 2.
    Failure,
    /// The event's `result` says: 0 success, any other value failure,
    /// none unknown.
    FromResult,
    /// Neither (e.g. "Canceled"): 99, with this text as `status`.
    Other(&'static str),
    /// A finding's state, from the finding classes' own list: `new` is
    /// 1 "New", `resolved` 4 "Resolved".
    Finding(u8, &'static str),
}

impl OcsfStatus {
    /// `status_id` and `status` for an event with this `result`.
    pub fn resolve(self, result: Option<i64>) -> (u8, &'static str) {
        match self {
            OcsfStatus::Unknown => (0, "Unknown"),
            OcsfStatus::Success => (1, "Success"),
            OcsfStatus::Failure => (2, "Failure"),
            OcsfStatus::FromResult => match result {
                None => (0, "Unknown"),
                Some(0) => (1, "Success"),
                Some(_) => (2, "Failure"),
            },
            OcsfStatus::Other(text) => (99, text),
            OcsfStatus::Finding(id, caption) => (id, caption),
        }
    }

    fn parse(s: &'static str) -> Option<OcsfStatus> {
        Some(match s {
            "" => OcsfStatus::Unknown,
            "success" => OcsfStatus::Success,
            "failure" => OcsfStatus::Failure,
            "result" => OcsfStatus::FromResult,
            "new" => OcsfStatus::Finding(1, "New"),
            "resolved" => OcsfStatus::Finding(4, "Resolved"),
            other => OcsfStatus::Other(other.strip_prefix("other:").filter(|t| !t.is_empty())?),
        })
    }
}

/// The OCSF class and activity of one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcsfMapping {
    /// `class_uid` (category × 1000 + class), 0 for Base Event.
    pub class_uid: u32,
    /// The class's caption in the schema, e.g. "Authentication".
    pub class_name: &'static str,
    /// `activity_id` within the class (99 is "Other").
    pub activity_id: u32,
    /// The activity's caption, or for 99 the source's own activity.
    pub activity_name: &'static str,
    /// OCSF's `type_name`: "class: activity".
    pub type_name: &'static str,
    /// How `status_id` is decided.
    pub status: OcsfStatus,
    /// What the event's entity is, for classes whose primary object is
    /// built from it ("package", "configuration parameter"); empty if none.
    pub object: &'static str,
    /// Why this class, or why no class fits; empty if it goes without saying.
    pub note: &'static str,
}

impl OcsfMapping {
    /// `category_uid`: the class's thousands.
    pub fn category_uid(&self) -> u32 {
        self.class_uid / 1000
    }

    /// The category's caption, e.g. "Identity & Access Management".
    pub fn category_name(&self) -> &'static str {
        match self.category_uid() {
            1 => "System Activity",
            2 => "Findings",
            3 => "Identity & Access Management",
            4 => "Network Activity",
            5 => "Discovery",
            6 => "Application Activity",
            7 => "Remediation",
            8 => "Unmanned Systems",
            _ => "Uncategorized",
        }
    }

    /// `type_uid` = `class_uid` × 100 + `activity_id`, as the schema requires.
    pub fn type_uid(&self) -> u64 {
        u64::from(self.class_uid) * 100 + u64::from(self.activity_id)
    }
}

/// What a type no built-in catalog knows maps to.
pub const UNKNOWN_TYPE: OcsfMapping = OcsfMapping {
    class_uid: 0,
    class_name: "Base Event",
    activity_id: 99,
    activity_name: "Other",
    type_name: "Base Event: Other",
    status: OcsfStatus::FromResult,
    object: "",
    note: "the type is not in a built-in catalog",
};

/// The rows, and where each name's row is.
struct Table {
    rows: Vec<(&'static str, OcsfMapping)>,
    index: HashMap<&'static str, usize>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let rows = parse(DATA).unwrap_or_else(|e| panic!("catalogs/ocsf.tsv: {e}"));
        let index = rows.iter().enumerate().map(|(i, (n, _))| (*n, i)).collect();
        Table { rows, index }
    })
}

/// Parses the mapping's data file: a header line, then one row per type.
fn parse(text: &'static str) -> Result<Vec<(&'static str, OcsfMapping)>, String> {
    let mut rows = Vec::new();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'));
    match lines.next() {
        Some((
            _,
            "name\tclass_uid\tclass_name\tactivity_id\tactivity_name\tstatus\tobject\tnote",
        )) => {}
        _ => return Err("the header line is not the expected one".into()),
    }
    for (i, line) in lines {
        let f: Vec<&'static str> = line.split('\t').collect();
        let [name, class_uid, class_name, activity_id, activity_name, status, object, note] = f[..]
        else {
            return Err(format!("line {}: {} fields, not 8", i + 1, f.len()));
        };
        let num = |s: &str, what: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("line {}: {what} `{s}` is not a number", i + 1))
        };
        rows.push((
            name,
            OcsfMapping {
                class_uid: num(class_uid, "class_uid")?,
                class_name,
                activity_id: num(activity_id, "activity_id")?,
                activity_name,
                // Once per type, for the life of the process: every export
                // then shares it rather than formatting it per event.
                type_name: Box::leak(format!("{class_name}: {activity_name}").into_boxed_str()),
                status: OcsfStatus::parse(status)
                    .ok_or_else(|| format!("line {}: status `{status}`", i + 1))?,
                object,
                note,
            },
        ));
    }
    Ok(rows)
}

/// The mapping of a type: its row, or [`UNKNOWN_TYPE`] for a type no
/// built-in catalog knows.
pub fn mapping(type_name: &str) -> &'static OcsfMapping {
    let t = table();
    t.index
        .get(type_name)
        .map_or(&UNKNOWN_TYPE, |&i| &t.rows[i].1)
}

/// The mapping of a built-in type with the type's name as the table holds
/// it (`'static`), or `None` for a type no built-in catalog knows.
pub fn lookup(type_name: &str) -> Option<(&'static str, &'static OcsfMapping)> {
    let t = table();
    t.index.get(type_name).map(|&i| (t.rows[i].0, &t.rows[i].1))
}

/// Every row of the mapping, in name order.
pub fn mappings() -> impl Iterator<Item = (&'static str, &'static OcsfMapping)> {
    table().rows.iter().map(|(n, m)| (*n, m))
}

/// OCSF `severity_id` and its caption for one of our severities: DEBUG and
/// INFO are Informational (1), NOTICE Low (2), WARNING Medium (3), ERROR
/// High (4), CRITICAL Critical (5).
pub fn severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Debug | Severity::Info => (1, "Informational"),
        Severity::Notice => (2, "Low"),
        Severity::Warning => (3, "Medium"),
        Severity::Error => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_file_parses_and_names_each_type_once() {
        let rows = parse(DATA).unwrap();
        let mut names: Vec<_> = rows.iter().map(|(n, _)| *n).collect();
        let len = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), len);
        assert_eq!(mapping("USER_LOGGED_IN").class_uid, 3002);
        assert_eq!(mapping("USER_LOGGED_IN").type_uid(), 300201);
        assert_eq!(mapping("MY_OWN_TYPE"), &UNKNOWN_TYPE);
    }

    #[test]
    fn statuses_resolve() {
        assert_eq!(OcsfStatus::FromResult.resolve(Some(0)), (1, "Success"));
        assert_eq!(OcsfStatus::FromResult.resolve(Some(3)), (2, "Failure"));
        assert_eq!(OcsfStatus::FromResult.resolve(None), (0, "Unknown"));
        assert_eq!(
            OcsfStatus::parse("other:Canceled"),
            Some(OcsfStatus::Other("Canceled"))
        );
        assert_eq!(OcsfStatus::parse("other:"), None);
        assert_eq!(OcsfStatus::parse("maybe"), None);
    }
}
