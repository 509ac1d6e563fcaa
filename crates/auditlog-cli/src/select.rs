//! What an operator selects with: journalctl's priorities (`-p err..warning`),
//! event types checked against what the log knows (with "did you mean"),
//! a text search over an event's fields (`-g`), and the fields to print
//! (`--output-fields`).

use auditlog::{EventFields, Severity};

/// The severities `-p` names, least and greatest (inclusive): one priority
/// means it and everything more severe; `FROM..TO` a range, in either order.
/// A priority is a severity name (`warning`, `Fatal`), a syslog name (`emerg`,
/// `alert`, `crit`, `err`, `warning`, `notice`, `info`, `debug`) or a syslog
/// number (0 = emerg … 7 = debug).
///
/// # Errors
/// Text that names no priority.
pub fn priority(s: &str) -> Result<(Severity, Severity), String> {
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (one_priority(a)?, one_priority(b)?);
            Ok((a.min(b), a.max(b)))
        }
        None => Ok((one_priority(s)?, Severity::Critical)),
    }
}

fn one_priority(s: &str) -> Result<Severity, String> {
    let t = s.trim();
    let syslog = match t.to_ascii_lowercase().as_str() {
        "0" | "emerg" | "panic" | "1" | "alert" | "2" | "crit" => Some(Severity::Critical),
        "3" | "err" => Some(Severity::Error),
        "4" | "warn" => Some(Severity::Warning),
        "5" => Some(Severity::Notice),
        "6" => Some(Severity::Info),
        "7" => Some(Severity::Debug),
        _ => None,
    };
    syslog.map_or_else(
        || {
            t.parse::<Severity>().map_err(|_| {
                format!(
                    "{s:?} is not a priority: give a name (debug, info, notice, warning, err, \
                     crit, alert, emerg; or DEBUG … CRITICAL), a syslog number 0-7, or a \
                     range such as err..warning"
                )
            })
        },
        Ok,
    )
}

/// The `--type` values as the engine takes them: each checked against the
/// types `known` (the log's and the reference catalog's). A name or pattern
/// (`*` anywhere) that matches known types as written is kept; one that
/// matches only ignoring case is replaced by the names it matches; one that
/// matches nothing is an error that says the closest names.
///
/// # Errors
/// A name or pattern no known type matches.
pub fn resolve_types(given: &[String], known: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for g in given {
        if known.iter().any(|k| auditlog::glob_matches(g, k)) {
            out.push(g.clone());
            continue;
        }
        let upper = g.to_ascii_uppercase();
        let folded: Vec<&String> = known
            .iter()
            .filter(|k| auditlog::glob_matches(&upper, &k.to_ascii_uppercase()))
            .collect();
        if !folded.is_empty() {
            out.extend(folded.into_iter().cloned());
            continue;
        }
        let near = auditlog::catalog::closest(&upper, known.iter().map(String::as_str), 3);
        let hint = if near.is_empty() {
            String::new()
        } else {
            format!("; did you mean {}?", near.join(", "))
        };
        let what = if g.contains('*') {
            "no known event type matches"
        } else {
            "unknown event type"
        };
        return Err(format!(
            "--type: {what} {g:?}{hint} (`auditlog catalog list` lists a catalog's types)"
        ));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A regular expression searched for in an event's text fields (type,
/// source, actor names, session, entity, data, attribute values), as
/// journalctl's `-g`: case-insensitive when it has no upper-case letter.
#[derive(Debug, Clone)]
pub struct Grep(regex::Regex);

impl Grep {
    /// The search for `pattern`.
    ///
    /// # Errors
    /// A pattern that is not a regular expression.
    pub fn new(pattern: &str) -> Result<Grep, String> {
        let smart = !pattern.chars().any(char::is_uppercase);
        regex::RegexBuilder::new(pattern)
            .case_insensitive(smart)
            .build()
            .map(Grep)
            .map_err(|e| format!("--grep: {e}"))
    }

    /// Whether any text field of `e` contains a match.
    pub fn matches(&self, e: &EventFields<'_>) -> bool {
        let texts = [
            Some(e.event_type),
            e.source,
            e.actor_id,
            e.actor,
            e.actor_account,
            e.account_id,
            e.session,
            e.entity_type,
            e.entity_id,
            e.entity_name,
            e.data,
        ];
        texts.iter().flatten().any(|t| self.0.is_match(t))
            || e.attrs.iter().any(|(_, v)| self.0.is_match(v))
    }
}

/// Every field an event has, in the canonical JSON order (the columns of
/// auditlog's CSV).
pub const FIELDS: [&str; 17] = crate::formats::events_csv::COLUMNS;

/// The fields `--output-fields` names, checked.
///
/// # Errors
/// A name that is not a field.
pub fn output_fields(given: &[String]) -> Result<Vec<&'static str>, String> {
    given
        .iter()
        .map(|g| {
            FIELDS
                .iter()
                .find(|f| f.eq_ignore_ascii_case(g.trim()))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "--output-fields: {g:?} is not a field (there are: {})",
                        FIELDS.join(", ")
                    )
                })
        })
        .collect()
}

/// The text of field `name` of `e` (empty when absent); `attrs` as a JSON
/// object.
pub fn field_text(e: &EventFields<'_>, lsn: auditlog::Lsn, name: &str) -> String {
    let o = |s: Option<&str>| s.unwrap_or_default().to_string();
    match name {
        "lsn" => lsn.0.to_string(),
        "time" => e.time.to_string(),
        "type" => e.event_type.to_string(),
        "severity" => e.severity.to_string(),
        "source" => o(e.source),
        "ip" => e.ip.map(|i| i.to_string()).unwrap_or_default(),
        "actor_id" => o(e.actor_id),
        "actor" => o(e.actor),
        "actor_account" => o(e.actor_account),
        "account_id" => o(e.account_id),
        "session" => o(e.session),
        "entity_type" => o(e.entity_type),
        "entity_id" => o(e.entity_id),
        "entity_name" => o(e.entity_name),
        "result" => e.result.map(|r| r.to_string()).unwrap_or_default(),
        "attrs" if e.attrs.is_empty() => String::new(),
        "attrs" => {
            let map: std::collections::BTreeMap<&str, &str> = e.attrs.iter().copied().collect();
            serde_json::to_string(&map).expect("strings serialize")
        }
        "data" => o(e.data),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_as_journalctl_takes_them() {
        use Severity::*;
        assert_eq!(priority("err"), Ok((Error, Critical)));
        assert_eq!(priority("3"), Ok((Error, Critical)));
        assert_eq!(priority("warning"), Ok((Warning, Critical)));
        assert_eq!(priority("crit"), Ok((Critical, Critical)));
        assert_eq!(priority("emerg"), Ok((Critical, Critical)));
        assert_eq!(priority("err..warning"), Ok((Warning, Error)));
        assert_eq!(priority("warning..err"), Ok((Warning, Error)));
        assert_eq!(priority("7..6"), Ok((Debug, Info)));
        assert_eq!(priority("Fatal"), Ok((Critical, Critical)));
        assert_eq!(priority("NOTICE"), Ok((Notice, Critical)));
        for bad in ["8", "loud", "", "..", "err..", "é"] {
            assert!(priority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn types_are_checked_and_case_folded() {
        let known: Vec<String> = ["USER_LOGGED_IN", "USER_AUTH_FAILED_MFA", "ADMIN_LOGGED_IN"]
            .map(String::from)
            .to_vec();
        let r = |g: &[&str]| {
            resolve_types(&g.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &known)
        };
        assert_eq!(
            r(&["USER_LOGGED_IN"]),
            Ok(vec!["USER_LOGGED_IN".to_string()])
        );
        assert_eq!(
            r(&["user_logged_in"]),
            Ok(vec!["USER_LOGGED_IN".to_string()])
        );
        assert_eq!(r(&["*FAILED*"]), Ok(vec!["*FAILED*".to_string()]));
        assert_eq!(
            r(&["*logged_in"]),
            Ok(vec![
                "ADMIN_LOGGED_IN".to_string(),
                "USER_LOGGED_IN".to_string()
            ])
        );
        let e = r(&["USER_LOGED_IN"]).unwrap_err();
        assert!(e.contains("did you mean USER_LOGGED_IN"), "{e}");
        let e = r(&["*NOPE*"]).unwrap_err();
        assert!(e.contains("no known event type matches"), "{e}");
    }

    #[test]
    fn grep_is_smart_about_case() {
        let mut e = auditlog::Event::new(auditlog::Timestamp(0), "USER_LOGGED_IN", Severity::Info);
        e.actor = Some("Alice".into());
        e.attrs.insert("reason".into(), "bad password".into());
        let f = e.fields();
        assert!(Grep::new("alice").unwrap().matches(&f));
        assert!(!Grep::new("ALICE").unwrap().matches(&f));
        assert!(Grep::new("bad pass").unwrap().matches(&f));
        assert!(Grep::new("logged_in").unwrap().matches(&f));
        assert!(!Grep::new("bob").unwrap().matches(&f));
        assert!(Grep::new("(").is_err());
    }
}
