//! `query`, `tail` and `export`: events out, as JSON lines, a table, CSV,
//! journalctl's forms or another system's format; once, or followed.

use std::collections::BTreeMap;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use auditlog::event::json;
use auditlog::{AuditLog, Catalog, Event, EventFields, Filter, Lsn, Severity};
use auditlog_cli::formats;
use auditlog_cli::select::{self, field_text, Grep};
use auditlog_cli::terminal::visible;
use auditlog_cli::when::Clock;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::{
    open_read, progress, ColorArg, ExportArgs, ExportFormat, FilterArgs, Format, OutputArgs, Usage,
};

pub(crate) fn color(sev: Severity) -> &'static str {
    match sev {
        Severity::Debug => "\x1b[2m",
        Severity::Info => "",
        Severity::Notice => "\x1b[36m",
        Severity::Warning => "\x1b[33m",
        Severity::Error => "\x1b[31m",
        Severity::Critical => "\x1b[1;31m",
    }
}

/// The columns of a table when `--output-fields` names none.
const TABLE_FIELDS: [&str; 7] = ["lsn", "time", "severity", "type", "actor", "ip", "result"];

/// Whether to color: `--color`, then NO_COLOR (any non-empty value), then
/// whether standard output is a terminal.
fn use_color(arg: ColorArg) -> bool {
    match arg {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

/// The width of the terminal standard output is, else `COLUMNS`; `None`
/// when neither says (a pipe: nothing is cut).
fn terminal_width() -> Option<usize> {
    if std::io::stdout().is_terminal() {
        // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given,
        // which lives for the call; fd 1 is open (it is a terminal).
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return Some(usize::from(ws.ws_col));
        }
    }
    std::env::var("COLUMNS")
        .ok()?
        .parse()
        .ok()
        .filter(|&w| w > 0)
}

/// Prints events in one of the [`Format`]s.
pub(crate) struct Printer {
    format: Format,
    /// The fields to print (`--output-fields`); empty: the format's own.
    fields: Vec<&'static str>,
    clock: Clock,
    colored: bool,
    /// Table columns: (field, width); the last is not padded.
    columns: Vec<(&'static str, usize)>,
    /// Cut cells to their column (a terminal's width is known).
    cut: bool,
    out: BufWriter<std::io::Stdout>,
    header_done: bool,
}

impl Printer {
    /// A printer to standard output; `max_lsn` sizes a table's LSN column.
    fn new(out: &OutputArgs, clock: Clock, color: ColorArg, max_lsn: u64) -> Result<Printer> {
        let tty = std::io::stdout().is_terminal();
        let format = out
            .output
            .unwrap_or(if tty { Format::Table } else { Format::Jsonl });
        let fields = select::output_fields(&out.output_fields).map_err(anyhow::Error::msg)?;
        let width = terminal_width();
        let columns = if format == Format::Table {
            let names: Vec<&'static str> = if fields.is_empty() {
                TABLE_FIELDS.to_vec()
            } else {
                fields.clone()
            };
            let time = clock.show_ms(auditlog::Timestamp(0)).len();
            layout(&names, width, max_lsn.to_string().len(), time)
        } else {
            Vec::new()
        };
        Ok(Printer {
            format,
            fields,
            clock,
            colored: use_color(color) && matches!(format, Format::Table | Format::ShortIso),
            columns,
            cut: width.is_some(),
            out: BufWriter::new(std::io::stdout()),
            header_done: false,
        })
    }

    fn print(&mut self, lsn: Lsn, e: &EventFields<'_>) -> Result<()> {
        match self.format {
            Format::Jsonl if self.fields.is_empty() => {
                writeln!(self.out, "{}", json::fields_to_json(e, Some(lsn)))?
            }
            Format::JsonPretty if self.fields.is_empty() => {
                writeln!(self.out, "{}", json::fields_to_json_pretty(e, Some(lsn)))?
            }
            Format::Jsonl | Format::JsonPretty => {
                let v = json::fields_to_value(e, Some(lsn));
                let pretty = self.format == Format::JsonPretty;
                let pairs: Vec<String> = self
                    .fields
                    .iter()
                    .filter_map(|f| {
                        let value = v.get(*f)?;
                        let text = if pretty {
                            serde_json::to_string_pretty(value)
                                .expect("a value serializes")
                                .replace('\n', "\n  ")
                        } else {
                            value.to_string()
                        };
                        Some(format!("\"{f}\":{}{text}", if pretty { " " } else { "" }))
                    })
                    .collect();
                if pretty {
                    writeln!(self.out, "{{\n  {}\n}}", pairs.join(",\n  "))?
                } else {
                    writeln!(self.out, "{{{}}}", pairs.join(","))?
                }
            }
            Format::Csv => {
                let names: &[&str] = if self.fields.is_empty() {
                    &select::FIELDS
                } else {
                    &self.fields
                };
                let mut w = csv::Writer::from_writer(Vec::new());
                if !self.header_done {
                    w.write_record(names)?;
                    self.header_done = true;
                }
                w.write_record(names.iter().map(|f| field_text(e, lsn, f)))?;
                self.out
                    .write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?)?;
            }
            Format::Table => self.table_row(lsn, e)?,
            Format::Cat => {
                let line = if self.fields.is_empty() {
                    let pairs = pairs(e, lsn, &select::FIELDS[4..]);
                    if pairs.is_empty() {
                        visible(e.event_type).into_owned()
                    } else {
                        format!("{} {pairs}", visible(e.event_type))
                    }
                } else {
                    self.fields
                        .iter()
                        .map(|f| visible(&field_text(e, lsn, f)).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                writeln!(self.out, "{line}")?;
            }
            Format::ShortIso => {
                let (on, off) = self.paint(e.severity);
                let rest = if self.fields.is_empty() {
                    let mut names = vec!["lsn"];
                    names.extend_from_slice(&select::FIELDS[4..]);
                    pairs(e, lsn, &names)
                } else {
                    pairs(e, lsn, &self.fields)
                };
                writeln!(
                    self.out,
                    "{on}{} {} {}: {rest}{off}",
                    self.clock.show_secs(e.time),
                    e.severity.as_str(),
                    visible(e.event_type)
                )?;
            }
        }
        Ok(())
    }

    fn paint(&self, sev: Severity) -> (&'static str, &'static str) {
        if self.colored {
            (color(sev), "\x1b[0m")
        } else {
            ("", "")
        }
    }

    fn table_row(&mut self, lsn: Lsn, e: &EventFields<'_>) -> Result<()> {
        if !self.header_done {
            let head: Vec<String> = self
                .columns
                .iter()
                .map(|(f, _)| f.to_ascii_uppercase())
                .collect();
            let line = self.row_text(head.iter().map(String::as_str));
            writeln!(self.out, "{line}")?;
            self.header_done = true;
        }
        let cells: Vec<String> = self
            .columns
            .iter()
            .map(|(f, _)| match *f {
                "time" => self.clock.show_ms(e.time),
                // Fields come from whoever wrote the events: never raw to a terminal.
                f => visible(&field_text(e, lsn, f)).into_owned(),
            })
            .collect();
        let line = self.row_text(cells.iter().map(String::as_str));
        let (on, off) = self.paint(e.severity);
        writeln!(self.out, "{on}{line}{off}")?;
        Ok(())
    }

    /// Cells padded to their columns (numbers to the right), cut with `…`
    /// when the terminal is too narrow; widths count wide characters twice.
    fn row_text<'c>(&self, cells: impl Iterator<Item = &'c str>) -> String {
        let mut line = String::new();
        let n = self.columns.len();
        for (i, ((field, width), cell)) in self.columns.iter().zip(cells).enumerate() {
            let last = i + 1 == n;
            let text = if self.cut || !last {
                fit(cell, *width, self.cut)
            } else {
                cell.to_string()
            };
            let pad = width.saturating_sub(text.width());
            if matches!(*field, "lsn" | "result") {
                line.push_str(&" ".repeat(pad));
                line.push_str(&text);
            } else {
                line.push_str(&text);
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                line.push_str("  ");
            }
        }
        line.trim_end().to_string()
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("write to standard output")
    }
}

/// `key=value` for each of `names` the event has (values with spaces,
/// quotes or `=` quoted as JSON strings; nothing can drive a terminal).
fn pairs(e: &EventFields<'_>, lsn: Lsn, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|f| {
            let v = field_text(e, lsn, f);
            if v.is_empty() {
                return None;
            }
            let quoted = v
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control());
            let v = if quoted {
                serde_json::to_string(&v).expect("strings serialize")
            } else {
                v
            };
            Some(format!("{f}={}", visible(&v)))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` in at most `width` columns: cut with `…` if `cut` and it is wider.
fn fit(s: &str, width: usize, cut: bool) -> String {
    if !cut || s.width() <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Column widths for `names`: each field's natural width, the text ones
/// narrowed (the widest first, to no less than 4) until the row fits `width`.
fn layout(
    names: &[&'static str],
    width: Option<usize>,
    lsn: usize,
    time: usize,
) -> Vec<(&'static str, usize)> {
    let natural = |f: &str| match f {
        "lsn" => lsn,
        "time" => time,
        "severity" => 8,
        "type" => 36,
        "ip" => 15,
        "result" => 6,
        "data" | "attrs" => 40,
        _ => 14,
    };
    let fixed = |f: &str| matches!(f, "lsn" | "time" | "severity" | "ip" | "result");
    let mut cols: Vec<(&'static str, usize)> = names
        .iter()
        .map(|f| (*f, natural(f).max(f.len())))
        .collect();
    if let Some(width) = width {
        let total = |c: &[(&str, usize)]| {
            c.iter().map(|(_, w)| w).sum::<usize>() + 2 * c.len().saturating_sub(1)
        };
        while total(&cols) > width {
            let widest = cols
                .iter_mut()
                .filter(|(f, w)| !fixed(f) && *w > 4)
                .max_by_key(|(_, w)| *w);
            match widest {
                Some((_, w)) => *w -= 1,
                None => break,
            }
        }
    }
    cols
}

/// Counts per key, most frequent first (ties by key).
pub(crate) fn grouped(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// How `query` (and `tail`) print.
#[derive(Default)]
pub(crate) struct QueryHow {
    pub(crate) out: OutputArgs,
    pub(crate) color: ColorArg,
    pub(crate) reverse: bool,
    pub(crate) limit: Option<usize>,
    pub(crate) lines: Option<usize>,
    pub(crate) follow: bool,
    pub(crate) count: bool,
    pub(crate) group_by: Vec<auditlog::GroupBy>,
    pub(crate) top: Option<usize>,
    pub(crate) explain: bool,
}

/// What the filter arguments select in an open log.
pub(crate) struct Selection {
    pub(crate) filter: Filter,
    pub(crate) grep: Option<Grep>,
    /// Only events after this LSN (the cursor).
    pub(crate) after: u64,
    pub(crate) clock: Clock,
}

impl Selection {
    pub(crate) fn new(log: &AuditLog, f: &FilterArgs) -> Result<Selection> {
        let clock = f.clock()?;
        let mut known = log.type_names()?;
        if let Some(c) = Catalog::builtin("filetransfer-2.0") {
            known.extend(c.types().iter().map(|t| t.name.clone()));
        }
        Ok(Selection {
            filter: f.to_filter(&clock, &known)?,
            grep: f.grep()?,
            after: f.start_after()?,
            clock,
        })
    }

    fn wants(&self, e: &EventFields<'_>) -> bool {
        self.grep.as_ref().is_none_or(|g| g.matches(e))
    }
}

pub(crate) fn query(dir: &Path, f: &FilterArgs, how: QueryHow) -> Result<ExitCode> {
    let log = open_read(dir)?;
    let sel = Selection::new(&log, f)?;
    let started = std::time::Instant::now();
    // Everything before this was there when the listing started: the
    // listing covers it, a follower starts from it.
    let end = log.log().next_lsn().0;
    if how.count || !how.group_by.is_empty() {
        // With a cursor, exactly what lies before `end` is counted.
        let upto = f.cursor_file.is_some().then_some(end);
        aggregate(&log, &sel, &how, upto, started)?;
        // A count with a cursor counts what is new, and moves the cursor on.
        f.save_cursor(end.saturating_sub(1).max(sel.after))?;
        return Ok(crate::finish(&log));
    }
    let mut p = Printer::new(&how.out, sel.clock.clone(), how.color, end)?;
    let mut last = None;
    if let Some(n) = how.lines {
        // The last n, found newest first and printed in the order asked.
        let mut newest: Vec<(Lsn, Event)> = Vec::new();
        if n > 0 {
            for r in log.query_from(&sel.filter, Lsn(sel.after + 1), true) {
                let (lsn, e) = r?;
                if sel.wants(&e.fields()) {
                    newest.push((lsn, e));
                    if newest.len() == n {
                        break;
                    }
                }
            }
        }
        if !how.reverse {
            newest.reverse();
        }
        for (lsn, e) in &newest {
            p.print(*lsn, &e.fields())?;
        }
        last = newest.iter().map(|(l, _)| l.0).max();
    } else {
        let mut q = if how.explain {
            log.query_explained(&sel.filter, how.reverse)
        } else {
            log.query_from(&sel.filter, Lsn(sel.after + 1), how.reverse)
        };
        // Straight from the events read in place: none is built.
        let mut left = how.limit.map_or(u64::MAX, |l| l as u64);
        let mut failed = None;
        if left > 0 {
            q.for_each_view(&mut |v| {
                let fields = v.fields();
                if v.lsn().0 <= sel.after || !sel.wants(&fields) {
                    return Ok(true);
                }
                if let Err(e) = p.print(v.lsn(), &fields) {
                    failed = Some(e);
                    return Ok(false);
                }
                last = last.max(Some(v.lsn().0));
                left -= 1;
                Ok(left > 0)
            })?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if left == 0 && !how.reverse {
            // Cut short by --limit: the next run goes on after the last printed.
            p.flush()?;
            f.save_cursor(last.unwrap_or(sel.after))?;
            return Ok(crate::finish(&log));
        }
        if let Some(plan) = q.explain() {
            p.flush()?;
            eprintln!("{plan}; {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        }
    }
    p.flush()?;
    let reached = last.unwrap_or(0).max(end.saturating_sub(1)).max(sel.after);
    if !how.follow {
        f.save_cursor(reached)?;
        return Ok(crate::finish(&log));
    }
    follow(&log, &sel, f, &mut p, reached)
}

/// Counts in the engine; with `-g` or a cursor, by reading the events
/// (those before LSN `upto` only, if given).
fn aggregate(
    log: &AuditLog,
    sel: &Selection,
    how: &QueryHow,
    upto: Option<u64>,
    started: std::time::Instant,
) -> Result<()> {
    if sel.grep.is_some() || sel.after > 0 || upto.is_some() {
        let mut n = 0u64;
        let limit = how.limit.map_or(u64::MAX, |l| l as u64);
        let upto = upto.unwrap_or(u64::MAX);
        log.query_from(&sel.filter, Lsn(sel.after + 1), false)
            .for_each_view(&mut |v| {
                if v.lsn().0 >= upto {
                    return Ok(false);
                }
                if sel.wants(&v.fields()) {
                    n += 1;
                }
                Ok(n < limit)
            })?;
        println!("{n}");
        return Ok(());
    }
    // Counted inside the engine: from the index where it can, else from
    // the columns; no event is built.
    let agg = log.aggregate(&sel.filter, &how.group_by, how.top)?;
    if how.group_by.is_empty() {
        println!(
            "{}",
            agg.total.min(how.limit.map_or(u64::MAX, |l| l as u64))
        );
    } else {
        let timed = how
            .group_by
            .iter()
            .any(|g| matches!(g, auditlog::GroupBy::Day | auditlog::GroupBy::Hour));
        let mut groups = agg.groups.clone();
        if how.top.is_none() && !timed {
            groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        }
        let mut out = std::io::stdout().lock();
        let names: Vec<&str> = how.group_by.iter().map(|g| g.name()).collect();
        let form = how.out.output;
        if form == Some(Format::Csv) {
            // A header, then one record per group: the keys, then the count.
            let mut w = csv::Writer::from_writer(out);
            let mut header = names.clone();
            header.push("count");
            let mut result = w.write_record(&header);
            for g in &groups {
                if result.is_err() {
                    break;
                }
                let mut rec: Vec<String> = g.key.iter().map(|v| v.to_string()).collect();
                rec.push(g.count.to_string());
                result = w.write_record(&rec);
            }
            let _ = w.flush(); // a closed pipe ends the listing
            return Ok(());
        }
        for g in &groups {
            let line = match form {
                Some(Format::Jsonl | Format::JsonPretty) => {
                    // One object per group: each dimension by its name, and the count.
                    let mut o = serde_json::Map::new();
                    for (name, v) in names.iter().zip(&g.key) {
                        o.insert((*name).to_string(), serde_json::Value::from(v.to_string()));
                    }
                    o.insert("count".into(), serde_json::Value::from(g.count));
                    let v = serde_json::Value::Object(o);
                    if form == Some(Format::JsonPretty) {
                        serde_json::to_string_pretty(&v)
                    } else {
                        serde_json::to_string(&v)
                    }
                    .expect("strings and numbers serialize")
                }
                _ => {
                    let key: Vec<String> = g
                        .key
                        .iter()
                        .map(|v| visible(&v.to_string()).into_owned())
                        .collect();
                    format!("{}\t{}", g.count, key.join("\t"))
                }
            };
            if writeln!(out, "{line}").is_err() {
                break; // a closed pipe (`| head`) ends the listing
            }
        }
    }
    if how.explain {
        eprintln!(
            "{}; {} events counted from the index alone; {:.1} ms",
            agg.explain,
            agg.from_index,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Prints new matching events as they become durable, until SIGINT or
/// SIGTERM (or a closed output); then writes the cursor.
fn follow(
    log: &AuditLog,
    sel: &Selection,
    f: &FilterArgs,
    p: &mut Printer,
    reached: u64,
) -> Result<ExitCode> {
    // Following never ends on its own: say now what cannot be read.
    crate::finish(log);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    let mut follower = log.follow_filtered(&sel.filter, Lsn(reached + 1));
    // Everything before this LSN is printed (and flushed) or did not match.
    let mut done = reached;
    let mut told = 0;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        // Flush as soon as nothing more is waiting: under a steady writer
        // as well as an idle one, an event is out as soon as it is read.
        let next = match follower.next_timeout(Duration::ZERO) {
            Ok(None) => match p.flush() {
                Ok(()) => {
                    done = done.max(follower.position().0.saturating_sub(1));
                    follower.next_timeout(Duration::from_millis(100))
                }
                Err(e) => break Err(e),
            },
            other => other,
        };
        match next {
            Ok(Some((lsn, e))) => {
                if sel.wants(&e.fields()) {
                    if let Err(e) = p.print(lsn, &e.fields()) {
                        break Err(e);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => break Err(e.into()),
        }
        // Records gone before they could be printed are said, not skipped silently.
        if follower.missed().len() > told {
            if let Err(e) = p.flush() {
                break Err(e);
            }
            for (a, b) in &follower.missed()[told..] {
                eprintln!("auditlog: warning: records LSN {a}..={b} were removed (retention) or quarantined before they could be printed");
            }
            told = follower.missed().len();
        }
    };
    if result.is_ok() && p.flush().is_ok() {
        done = done.max(follower.position().0.saturating_sub(1));
    }
    f.save_cursor(done)?;
    result?;
    Ok(crate::finish(log))
}

pub(crate) fn export(
    dir: &Path,
    format: ExportFormat,
    f: &FilterArgs,
    to: &ExportArgs,
) -> Result<ExitCode> {
    if format == ExportFormat::Parquet {
        return lake_export(dir, f, to);
    }
    if to.out.is_some() {
        return Err(Usage(
            "--out is for --format parquet; the other formats write to standard output".into(),
        )
        .into());
    }
    let log = open_read(dir)?;
    let sel = Selection::new(&log, f)?;
    let end = log.log().next_lsn().0;
    let bar = progress(end.saturating_sub(1), "exporting");
    let stdout = std::io::stdout();
    let events = log
        .query_from(&sel.filter, Lsn(sel.after + 1), false)
        .filter(|r| r.as_ref().map_or(true, |(_, e)| sel.wants(&e.fields())));
    match format {
        ExportFormat::Jsonl | ExportFormat::Csv => {
            let out = OutputArgs {
                output: Some(if format == ExportFormat::Csv {
                    Format::Csv
                } else {
                    Format::Jsonl
                }),
                output_fields: Vec::new(),
            };
            let mut p = Printer::new(&out, sel.clock.clone(), ColorArg::Never, end)?;
            for r in events {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                p.print(lsn, &e.fields())?;
            }
            p.flush()?;
        }
        ExportFormat::SapUme => {
            let mut out = BufWriter::new(stdout.lock());
            for r in events {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                writeln!(out, "{}", formats::sap::to_line(&e))?;
            }
            out.flush()?;
        }
        ExportFormat::Ocsf => {
            let mut out = BufWriter::new(stdout.lock());
            for r in events {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                serde_json::to_writer(&mut out, &formats::ocsf::to_value(lsn.0, &e.fields()))?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        ExportFormat::Syslog => {
            let o = formats::syslog::SyslogOptions {
                facility: to.facility,
                hostname: formats::syslog::clean_hostname(
                    &to.hostname
                        .clone()
                        .unwrap_or_else(auditlog_cli::terminal::hostname),
                ),
                octet_counting: to.octet_counting,
            };
            let mut out = BufWriter::new(stdout.lock());
            for r in events {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                out.write_all(formats::syslog::to_message(lsn.0, &e.fields(), &o).as_bytes())?;
            }
            out.flush()?;
        }
        ExportFormat::Cef => {
            let mut out = BufWriter::new(stdout.lock());
            for r in events {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                writeln!(out, "{}", formats::cef::to_line(lsn.0, &e.fields()))?;
            }
            out.flush()?;
        }
        ExportFormat::Parquet => unreachable!("written by lake::export"),
        ExportFormat::NetopCsv => {
            let mut w = csv::Writer::from_writer(stdout.lock());
            w.write_record(formats::netop::COLUMNS)?;
            for r in events {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                w.write_record(formats::netop::to_record(&e))?;
            }
            w.flush()?;
        }
    }
    bar.finish_and_clear();
    f.save_cursor(end.saturating_sub(1).max(sel.after))?;
    Ok(crate::finish(&log))
}

/// `export --format parquet --out DIR`: what is new since the directory's
/// state (or the cursor, whichever is later), as one committed run.
fn lake_export(dir: &Path, f: &FilterArgs, to: &ExportArgs) -> Result<ExitCode> {
    use auditlog_cli::lake::{self, LakeWriter, Layout};
    let Some(out) = &to.out else {
        return Err(Usage(
            "--format parquet writes files: give the directory with --out DIR".into(),
        )
        .into());
    };
    let layout = match to.layout {
        crate::LakeLayout::Hive => Layout::Hive,
        crate::LakeLayout::SecurityLake => {
            let (Some(region), Some(account_id)) = (&to.region, &to.account_id) else {
                return Err(
                    Usage("--layout security-lake needs --region and --account-id".into()).into(),
                );
            };
            Layout::SecurityLake {
                source: to.lake_source.clone(),
                region: region.clone(),
                account_id: account_id.clone(),
            }
        }
    };
    let log = open_read(dir)?;
    let sel = Selection::new(&log, f)?;
    let _lock = lake::lock(out)?;
    let previous = lake::recover(out)?;
    if previous.is_none() && sel.after == 0 {
        // Files but no state: exporting from the start would add every
        // event again. Say where the files end, and how to go on.
        if let Some(last) = lake::newest_part_lsn(out)? {
            anyhow::bail!(
                "{} holds Parquet files up to LSN {last} but no {} (deleted?): exporting from the start would duplicate them; go on with --after-lsn {last}, or export into an empty directory",
                out.display(),
                lake::STATE_FILE
            );
        }
    }
    let through = log.log().next_lsn().0.saturating_sub(1);
    let mut w = LakeWriter::new(out, layout, log.log().id(), previous, through)?;
    let after = (w.first_lsn() - 1).max(sel.after);
    let first_kept = log.log().first_lsn().0;
    if first_kept > after + 1 && after < through {
        eprintln!(
            "auditlog: warning: records LSN {}..={} were removed (retention) or quarantined before they were exported",
            after + 1,
            first_kept - 1
        );
    }
    let bar = progress(through, "exporting");
    let mut seen = 0u64;
    let mut q = log.query_from(&sel.filter, Lsn(after + 1), false);
    let mut failed = None;
    q.for_each_view(&mut |v| {
        let lsn = v.lsn().0;
        if lsn > through {
            return Ok(false);
        }
        seen += 1;
        if seen.is_multiple_of(65_536) {
            bar.set_position(lsn);
        }
        let e = v.fields();
        if sel.wants(&e) {
            if let Err(err) = w.add(lsn, &e) {
                failed = Some(err);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let summary = w.commit()?;
    bar.finish_and_clear();
    eprintln!(
        "auditlog: exported {} events into {} files under {} (the directory holds LSN ..={}, {} events in {} files)",
        summary.events,
        summary.files.len(),
        out.display(),
        summary.state.through_lsn,
        summary.state.events,
        summary.state.files
    );
    f.save_cursor(through.max(sel.after))?;
    Ok(crate::finish(&log))
}
