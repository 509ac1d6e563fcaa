//! Parsers that turn the seed documents into catalogs. Pure functions over
//! the documents' text; each knows the shape of its one document.

use crate::catalog::EventType;
use crate::severity::Severity;

/// The note for types the sources say are never logged at runtime.
pub const NEVER_AT_RUNTIME: &str = "never occurs during application runtime";

/// The note for types whose source gives no severity.
pub const NO_SEVERITY: &str = "the source gives no severity; INFO assumed";

/// A cell that the seed's bad encoding turned into mojibake, or a
/// non-breaking space, counts as empty.
fn cell(s: &str) -> Option<String> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}' || c == 'Â');
    (!t.is_empty()).then(|| {
        s.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}')
            .to_string()
    })
}

/// The lines with text, trimmed of spaces and non-breaking spaces.
fn content_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}'))
        .filter(|l| !l.is_empty())
        .collect()
}

fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn runtime_notes(description: &str) -> Vec<String> {
    if description.contains(NEVER_AT_RUNTIME) || description.contains("zatím nikdy nenastává") {
        vec![NEVER_AT_RUNTIME.to_string()]
    } else {
        Vec::new()
    }
}

fn file_transfer_type(
    name: &str,
    description: &str,
    severity: &str,
    since: &str,
    until: &str,
) -> Option<EventType> {
    if !is_type_name(name) {
        return None;
    }
    let description = description.trim().to_string();
    let mut notes = runtime_notes(&description);
    let severity = match cell(severity) {
        Some(s) => s.parse().ok()?,
        None => {
            // Types retired before severities existed (1.4) have none.
            notes.push(NO_SEVERITY.to_string());
            Severity::Info
        }
    };
    Some(EventType {
        name: name.trim().to_string(),
        severity,
        since: cell(since),
        until: cell(until),
        notes,
        description,
    })
}

/// The file-transfer catalog v1.6 (English): rows `NAME | meaning | SEVERITY | since | until |`.
pub fn filetransfer_v16(text: &str) -> Vec<EventType> {
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            if cells.len() < 5 {
                return None;
            }
            file_transfer_type(cells[0].trim(), cells[1], cells[2], cells[3], cells[4])
        })
        .collect()
}

/// The file-transfer catalog v2.0 (Czech): one cell a line, blank lines
/// between cells, five cells a type, after the (doubled) header row and
/// before the severity legend.
pub fn filetransfer_v20(text: &str) -> Vec<EventType> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let start = lines
        .iter()
        .rposition(|l| l.trim() == "Do verze")
        .map_or(lines.len(), |i| i + 1);
    let mut out = Vec::new();
    let mut i = start;
    while i + 5 <= lines.len() && is_type_name(lines[i].trim()) {
        match file_transfer_type(
            lines[i].trim(),
            lines[i + 1],
            lines[i + 2],
            lines[i + 3],
            lines[i + 4],
        ) {
            Some(t) => out.push(t),
            None => break,
        }
        i += 5;
    }
    out
}

/// Netop Portal: after "Event Description", each entity type (a line in
/// capitals followed by another) and its actions, each with a description
/// (which may run over several lines and bullets). Types are `ENTITY/ACTION`.
/// The source gives no severities: INFO, with a note saying so.
pub fn netop_portal(text: &str) -> Vec<EventType> {
    let lines = content_lines(text);
    let start = lines
        .iter()
        .position(|l| *l == "Event Description")
        .map_or(lines.len(), |i| i + 1);
    let end = lines
        .iter()
        .position(|l| l.starts_with("Posted -"))
        .unwrap_or(lines.len());
    let token = |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    let mut out: Vec<EventType> = Vec::new();
    let mut entity = "";
    let mut i = start;
    while i < end {
        let line = lines[i];
        if token(line) && i + 1 < end && token(lines[i + 1]) {
            entity = line;
        } else if token(line) {
            out.push(EventType {
                name: format!("{entity}/{line}"),
                severity: Severity::Info,
                since: None,
                until: None,
                description: String::new(),
                notes: vec![NO_SEVERITY.to_string()],
            });
        } else if let Some(t) = out.last_mut() {
            if !t.description.is_empty() {
                t.description.push('\n');
            }
            t.description.push_str(line);
        }
        i += 1;
    }
    out
}

/// The section headings of the SAP UME table, which stand between rows.
const SAP_SECTIONS: [&str; 5] = [
    "Principal modification",
    "User mapping",
    "Login/Logoff",
    "Permission (checking)",
    "Configuration",
];

/// SAP UME: the table of events after its header (Event, Severity, Object
/// ID, Details). A row is: event, severity (Low/Medium/High/Very high),
/// object, one or more detail lines. A severity two lines after the previous
/// row's object continues that event at another severity (e.g. "User
/// creation" is logged at Medium with the company ID and at Low with all
/// attributes); the type keeps the first and notes the other. Type names are
/// the event names in capitals with `_` for spaces.
pub fn sap_ume(text: &str) -> Vec<EventType> {
    let lines = content_lines(text);
    let start = lines
        .windows(4)
        .position(|w| w == ["Event", "Severity", "Object ID", "Details"])
        .map_or(lines.len(), |i| i + 4);
    let end = lines
        .iter()
        .position(|l| *l == "Leaving content frame")
        .unwrap_or(lines.len());
    let body = &lines[start..end];
    let sev: Vec<usize> = (0..body.len())
        .filter(|&i| body[i].parse::<Severity>().is_ok() && i > 0)
        .collect();
    let mut out: Vec<EventType> = Vec::new();
    let mut section = "";
    for (k, &i) in sev.iter().enumerate() {
        let severity: Severity = body[i].parse().expect("filtered above");
        // Details run to the next row's event name, or to its severity when
        // the next row continues this event (it then has no name line).
        let details_end = match sev.get(k + 1) {
            Some(&next) if next - i == 3 => next,
            Some(&next) => next - 1,
            None => body.len(),
        };
        let mut details: Vec<&str> = body[(i + 2).min(details_end)..details_end].to_vec();
        // The next row's section heading, if any, ends this row's details.
        let next_section = details.iter().position(|d| SAP_SECTIONS.contains(d));
        let heading = next_section.map(|p| details[p]);
        if let Some(p) = next_section {
            details.truncate(p);
        }
        let object = body.get(i + 1).copied().unwrap_or("");
        let continues = k > 0 && i - sev[k - 1] == 3;
        if continues {
            if let Some(t) = out.last_mut() {
                t.notes.push(format!(
                    "also logged at {severity} with details: {}",
                    details.join("; ")
                ));
            }
        } else {
            let event = body[i - 1];
            if k == 0 {
                section = body[..i - 1]
                    .iter()
                    .rev()
                    .find(|l| SAP_SECTIONS.contains(l))
                    .copied()
                    .unwrap_or("");
            }
            out.push(EventType {
                name: event
                    .to_ascii_uppercase()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join("_"),
                severity,
                since: None,
                until: None,
                description: event.to_string(),
                notes: vec![
                    format!("category: {section}"),
                    format!("object: {object}"),
                    format!("details: {}", details.join("; ")),
                ],
            });
        }
        if let Some(h) = heading {
            section = h;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mojibake_and_nbsp_cells_are_empty() {
        assert_eq!(cell("Â"), None);
        assert_eq!(cell(" Â\u{a0}"), None);
        assert_eq!(cell("\u{a0} "), None);
        assert_eq!(cell(" 1.3.2 "), Some("1.3.2".into()));
    }
}
