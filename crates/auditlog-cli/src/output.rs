//! `query`, `tail` and `export`: events out, as JSON lines, a table, CSV or
//! another system's format.

use std::collections::BTreeMap;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use auditlog::event::json;
use auditlog::{EventFields, Filter, Lsn, Severity};
use auditlog_cli::formats;
use auditlog_cli::terminal::visible;

use crate::{open_read, progress, ExportFormat, FilterArgs, Format};

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

const CSV_HEADER: &str = "lsn,time,type,severity,source,ip,actor_id,actor,actor_account,account_id,session,entity_type,entity_id,entity_name,result,attrs,data";

pub(crate) struct Printer {
    format: Format,
    colored: bool,
    out: BufWriter<std::io::Stdout>,
    header_done: bool,
}

impl Printer {
    fn new(format: Option<Format>) -> Printer {
        let tty = std::io::stdout().is_terminal();
        let format = format.unwrap_or(if tty { Format::Table } else { Format::Jsonl });
        Printer {
            format,
            colored: tty && format == Format::Table,
            out: BufWriter::new(std::io::stdout()),
            header_done: false,
        }
    }

    fn print(&mut self, lsn: Lsn, e: &EventFields<'_>) -> Result<()> {
        let o = |s: Option<&str>| s.unwrap_or_default().to_string();
        match self.format {
            Format::Jsonl => writeln!(self.out, "{}", json::fields_to_json(e, Some(lsn)))?,
            Format::Csv => {
                if !self.header_done {
                    writeln!(self.out, "{CSV_HEADER}")?;
                    self.header_done = true;
                }
                // Attributes as a JSON object, as in the canonical JSON form.
                let attrs = if e.attrs.is_empty() {
                    String::new()
                } else {
                    let map: BTreeMap<&str, &str> = e.attrs.iter().copied().collect();
                    serde_json::to_string(&map).expect("strings serialize")
                };
                let cells = [
                    lsn.to_string(),
                    e.time.to_string(),
                    e.event_type.to_string(),
                    e.severity.to_string(),
                    o(e.source),
                    e.ip.map(|i| i.to_string()).unwrap_or_default(),
                    o(e.actor_id),
                    o(e.actor),
                    o(e.actor_account),
                    o(e.account_id),
                    o(e.session),
                    o(e.entity_type),
                    o(e.entity_id),
                    o(e.entity_name),
                    e.result.map(|r| r.to_string()).unwrap_or_default(),
                    attrs,
                    o(e.data),
                ];
                let mut w = csv::Writer::from_writer(Vec::new());
                w.write_record(&cells)?;
                self.out
                    .write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?)?;
            }
            Format::Table => {
                if !self.header_done {
                    writeln!(
                        self.out,
                        "{:>10}  {:<27}  {:<8}  {:<36}  {:<12}  {:<15}  RESULT",
                        "LSN", "TIME", "SEVERITY", "TYPE", "ACTOR", "IP"
                    )?;
                    self.header_done = true;
                }
                let (on, off) = if self.colored {
                    (color(e.severity), "\x1b[0m")
                } else {
                    ("", "")
                };
                // Fields come from whoever wrote the events: never raw to a terminal.
                writeln!(
                    self.out,
                    "{on}{:>10}  {:<27}  {:<8}  {:<36}  {:<12}  {:<15}  {}{off}",
                    lsn.0,
                    e.time.to_string(),
                    e.severity.as_str(),
                    visible(e.event_type),
                    visible(&o(e.actor)),
                    e.ip.map(|i| i.to_string()).unwrap_or_default(),
                    e.result.map(|r| r.to_string()).unwrap_or_default()
                )?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("write to standard output")
    }
}

/// Counts per key, most frequent first (ties by key).
pub(crate) fn grouped(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// How `query` prints.
pub(crate) struct QueryHow {
    pub(crate) format: Option<Format>,
    pub(crate) reverse: bool,
    pub(crate) limit: Option<usize>,
    pub(crate) count: bool,
    pub(crate) group_by: Vec<auditlog::GroupBy>,
    pub(crate) top: Option<usize>,
    pub(crate) explain: bool,
}

pub(crate) fn query(dir: &Path, f: &FilterArgs, how: QueryHow) -> Result<ExitCode> {
    let QueryHow {
        format,
        reverse,
        limit,
        count,
        group_by,
        top,
        explain,
    } = how;
    let filter = f.to_filter()?;
    let log = open_read(dir)?;
    let started = std::time::Instant::now();
    if count || !group_by.is_empty() {
        // Counted inside the engine: from the index where it can, else from
        // the columns; no event is built.
        let agg = log.aggregate(&filter, &group_by, top)?;
        if group_by.is_empty() {
            println!("{}", agg.total.min(limit.map_or(u64::MAX, |l| l as u64)));
        } else {
            let timed = group_by
                .iter()
                .any(|g| matches!(g, auditlog::GroupBy::Day | auditlog::GroupBy::Hour));
            let mut groups = agg.groups.clone();
            if top.is_none() && !timed {
                groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
            }
            let mut out = std::io::stdout().lock();
            for g in &groups {
                let key: Vec<String> = g
                    .key
                    .iter()
                    .map(|v| visible(&v.to_string()).into_owned())
                    .collect();
                if writeln!(out, "{}\t{}", g.count, key.join("\t")).is_err() {
                    break; // a closed pipe (`| head`) ends the listing
                }
            }
        }
        if explain {
            eprintln!(
                "{}; {} events counted from the index alone; {:.1} ms",
                agg.explain,
                agg.from_index,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        return Ok(crate::finish(&log));
    }
    let mut q = if explain {
        log.query_explained(&filter, reverse)
    } else {
        log.query(&filter, reverse)
    };
    let mut p = Printer::new(format);
    // Straight from the events read in place: none is built.
    let mut left = limit.map_or(u64::MAX, |l| l as u64);
    let mut failed = None;
    if left > 0 {
        q.for_each_view(&mut |v| {
            if let Err(e) = p.print(v.lsn(), &v.fields()) {
                failed = Some(e);
                return Ok(false);
            }
            left -= 1;
            Ok(left > 0)
        })?;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    p.flush()?;
    if let Some(plan) = q.explain() {
        eprintln!("{plan}; {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(crate::finish(&log))
}

pub(crate) fn tail(dir: &Path, n: u64, follow: bool, format: Option<Format>) -> Result<ExitCode> {
    let log = open_read(dir)?;
    // From the n-th newest event (the log's own catalog records are not events).
    let from = match log.query(&Filter::default(), true).take(n as usize).last() {
        Some(r) => r?.0,
        None => log.log().next_lsn(),
    };
    let mut p = Printer::new(format);
    if follow {
        // Following never ends on its own: say now what cannot be read.
        crate::finish(&log);
    }
    let mut f = log.follow(from);
    let mut told = 0;
    loop {
        match f.next_timeout(if follow {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        })? {
            Some((lsn, e)) => p.print(lsn, &e.fields())?,
            None if follow => p.flush()?,
            None => break,
        }
        // Records gone before they could be printed are said, not skipped silently.
        for (a, b) in &f.missed()[told..] {
            p.flush()?;
            eprintln!("auditlog: warning: records LSN {a}..={b} were removed (retention) or quarantined before they could be printed");
        }
        told = f.missed().len();
    }
    p.flush()?;
    Ok(crate::finish(&log))
}

pub(crate) fn export(dir: &Path, format: ExportFormat, f: &FilterArgs) -> Result<ExitCode> {
    let filter = f.to_filter()?;
    let log = open_read(dir)?;
    let bar = progress(log.log().next_lsn().0.saturating_sub(1), "exporting");
    let stdout = std::io::stdout();
    match format {
        ExportFormat::Jsonl | ExportFormat::Csv => {
            let mut p = Printer::new(Some(if format == ExportFormat::Csv {
                Format::Csv
            } else {
                Format::Jsonl
            }));
            for r in log.query(&filter, false) {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                p.print(lsn, &e.fields())?;
            }
            p.flush()?;
        }
        ExportFormat::SapUme => {
            let mut out = BufWriter::new(stdout.lock());
            for r in log.query(&filter, false) {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                writeln!(out, "{}", formats::sap::to_line(&e))?;
            }
            out.flush()?;
        }
        ExportFormat::NetopCsv => {
            let mut w = csv::Writer::from_writer(stdout.lock());
            w.write_record(formats::netop::COLUMNS)?;
            for r in log.query(&filter, false) {
                let (lsn, e) = r?;
                bar.set_position(lsn.0);
                w.write_record(formats::netop::to_record(&e))?;
            }
            w.flush()?;
        }
    }
    bar.finish_and_clear();
    Ok(crate::finish(&log))
}
