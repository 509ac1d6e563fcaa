//! The catalog data-file format: UTF-8, one type per line, tab-separated:
//! `name  severity  since  until  description  notes`, after a `#` comment
//! line naming the catalog and a header line. Empty since/until cells mean
//! "not given". Backslash escapes `\\`, `\t` and `\n` inside cells; notes
//! are separated by an escaped newline.

use crate::catalog::EventType;
use crate::severity::Severity;

const HEADER: &str = "name\tseverity\tsince\tuntil\tdescription\tnotes";

/// A malformed data file line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog data line {line}: {what}")]
pub struct TsvError {
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn unescape(s: &str, line: usize) -> Result<String, TsvError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            other => {
                return Err(TsvError {
                    line,
                    what: format!(
                        "bad escape \\{}",
                        other.map(String::from).unwrap_or_default()
                    ),
                })
            }
        }
    }
    Ok(out)
}

pub(super) fn write(name: &str, types: &[EventType]) -> String {
    let mut out = format!("# auditlog catalog {name}: generated from the seed documents; do not edit by hand\n{HEADER}\n");
    for t in types {
        let cells = [
            escape(&t.name),
            t.severity.to_string(),
            escape(t.since.as_deref().unwrap_or("")),
            escape(t.until.as_deref().unwrap_or("")),
            escape(&t.description),
            escape(&t.notes.join("\n")),
        ];
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    out
}

pub(super) fn parse(text: &str) -> Result<Vec<EventType>, TsvError> {
    let mut types = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.starts_with('#') || line == HEADER || line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        let [name, severity, since, until, description, notes] = cells[..] else {
            return Err(TsvError {
                line: n,
                what: format!("expected 6 tab-separated cells, found {}", cells.len()),
            });
        };
        let opt = |s: &str| -> Result<Option<String>, TsvError> {
            Ok(Some(unescape(s, n)?).filter(|s| !s.is_empty()))
        };
        let notes = unescape(notes, n)?;
        types.push(EventType {
            name: unescape(name, n)?,
            severity: severity.parse::<Severity>().map_err(|e| TsvError {
                line: n,
                what: e.to_string(),
            })?,
            since: opt(since)?,
            until: opt(until)?,
            description: unescape(description, n)?,
            notes: if notes.is_empty() {
                Vec::new()
            } else {
                notes.split('\n').map(String::from).collect()
            },
        });
    }
    Ok(types)
}
