//! `auditlog`: append, query, follow, verify and explore audit logs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use auditlog::event::json;
use auditlog::{
    AuditLog, AuditOptions, Catalog, Durability, Event, Filter, Lsn, Options, Severity, Timestamp,
};
use auditlog_cli::formats;
use auditlog_cli::workload::{self, Workload};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "auditlog",
    version,
    about = "An append-only store for application audit events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DirArg {
    /// The log directory.
    #[arg(long, short = 'd')]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Write a realistic month of audit events and answer audit questions about it.
    Demo {
        /// Where to create the demo log (replaced if it is an earlier demo log).
        #[arg(long, short = 'd', default_value = "auditlog-demo")]
        dir: PathBuf,
        /// How many events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// Append events given as canonical JSON lines (a file, or - for standard input).
    Append {
        #[command(flatten)]
        dir: DirArg,
        /// The file to read; standard input if absent or -.
        file: Option<PathBuf>,
        #[command(flatten)]
        how: IngestArgs,
    },
    /// Import events from a file in another system's format.
    Import {
        #[command(flatten)]
        dir: DirArg,
        /// The file's format.
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// The file to read; standard input if -.
        file: PathBuf,
        #[command(flatten)]
        how: IngestArgs,
    },
    /// Write the events that match the filters in an exchange format to standard output.
    Export {
        #[command(flatten)]
        dir: DirArg,
        /// The format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        filter: Box<FilterArgs>,
    },
    /// Print the events that match the filters.
    Query {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        filter: Box<FilterArgs>,
        /// Output format (default: table on a terminal, jsonl otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Newest first.
        #[arg(long)]
        reverse: bool,
        /// At most this many events.
        #[arg(long)]
        limit: Option<usize>,
        /// Print only how many events match.
        #[arg(long)]
        count: bool,
        /// Count matching events per value of a field, most frequent first.
        #[arg(long, value_enum)]
        group_by: Option<GroupBy>,
    },
    /// Print the last events, and with -f keep printing new ones.
    Tail {
        #[command(flatten)]
        dir: DirArg,
        /// How many of the last events to print first.
        #[arg(short = 'n', default_value_t = 10)]
        lines: u64,
        /// Keep waiting for new events.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Output format (default: table on a terminal, jsonl otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Counts, sizes and ranges of the log.
    Stats {
        #[command(flatten)]
        dir: DirArg,
        /// The catalog whose since/until versions events are checked against.
        #[arg(long, default_value = "filetransfer-2.0")]
        catalog: String,
    },
    /// Check every frame's checksum; exit non-zero on any damage.
    Verify {
        #[command(flatten)]
        dir: DirArg,
    },
    /// The built-in event-type catalogs.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// List the types of a catalog.
    List {
        /// The catalog.
        #[arg(long, default_value = "filetransfer-2.0")]
        catalog: String,
    },
    /// Everything a catalog says about one type.
    Show {
        /// The type.
        name: String,
        /// The catalog.
        #[arg(long, default_value = "filetransfer-2.0")]
        catalog: String,
    },
    /// Types added, removed, and whose severity changed, from catalog A to B.
    Diff {
        /// The first catalog.
        a: String,
        /// The second catalog.
        b: String,
    },
}

/// How `append` and `import` write.
#[derive(Args, Clone)]
struct IngestArgs {
    /// When an append counts as done [default: sync for append; buffered, with one sync at
    /// the end, for import].
    #[arg(long, value_enum)]
    durability: Option<DurabilityArg>,
    /// Skip invalid records (each reported on standard error) instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
    /// Reference catalog for default severities (and, with --strict, the types allowed).
    #[arg(long, default_value = "filetransfer-2.0")]
    catalog: String,
    /// Reject event types the catalog does not know.
    #[arg(long)]
    strict: bool,
    /// The application version writing these events (see `stats`).
    #[arg(long)]
    app_version: Option<String>,
}

#[derive(Args, Clone, Default)]
struct FilterArgs {
    /// Event type (repeatable; PREFIX* matches a prefix).
    #[arg(long = "type", short = 't')]
    types: Vec<String>,
    /// Least severity (inclusive).
    #[arg(long)]
    min_severity: Option<String>,
    /// Greatest severity (inclusive).
    #[arg(long)]
    max_severity: Option<String>,
    /// Earliest time: RFC 3339, or an age like 2h, 7d, 30m.
    #[arg(long)]
    since: Option<String>,
    /// Latest time: RFC 3339, or an age like 2h.
    #[arg(long)]
    until: Option<String>,
    /// Actor (name, id or account name).
    #[arg(long)]
    actor: Option<String>,
    /// Client address or network (10.0.0.0/8).
    #[arg(long)]
    ip: Option<String>,
    /// Source.
    #[arg(long)]
    source: Option<String>,
    /// Entity type.
    #[arg(long)]
    entity_type: Option<String>,
    /// Entity id.
    #[arg(long)]
    entity_id: Option<String>,
    /// Session.
    #[arg(long)]
    session: Option<String>,
    /// Only failures (result code other than 0).
    #[arg(long)]
    failed: bool,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum ImportFormat {
    Jsonl,
    SapUme,
    NetopCsv,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    Jsonl,
    Csv,
    SapUme,
    NetopCsv,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum DurabilityArg {
    Buffered,
    Interval,
    Sync,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Table,
    Csv,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum GroupBy {
    Type,
    Severity,
    Actor,
    Ip,
    Source,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let mut text = format!("{e:#}");
            text.retain(|c| c != '\n');
            eprintln!("auditlog: {text}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo { dir, events } => demo(&dir, events),
        Command::Append { dir, file, how } => ingest(
            &dir.dir,
            file.as_deref(),
            ImportFormat::Jsonl,
            &how,
            DurabilityArg::Sync,
        ),
        Command::Import {
            dir,
            format,
            file,
            how,
        } => ingest(&dir.dir, Some(&file), format, &how, DurabilityArg::Buffered),
        Command::Export {
            dir,
            format,
            filter,
        } => export(&dir.dir, format, &filter),
        Command::Query {
            dir,
            filter,
            format,
            reverse,
            limit,
            count,
            group_by,
        } => query(&dir.dir, &filter, format, reverse, limit, count, group_by),
        Command::Tail {
            dir,
            lines,
            follow,
            format,
        } => tail(&dir.dir, lines, follow, format),
        Command::Stats { dir, catalog } => stats(&dir.dir, &catalog),
        Command::Verify { dir } => verify(&dir.dir),
        Command::Catalog { command } => catalog(command),
    }
}

fn builtin(name: &str) -> Result<Catalog> {
    Catalog::builtin(name).with_context(|| {
        format!(
            "no built-in catalog {name:?} (there are: {})",
            Catalog::builtin_names().collect::<Vec<_>>().join(", ")
        )
    })
}

fn open_read(dir: &Path) -> Result<AuditLog> {
    let opts = AuditOptions {
        log: Options::default().read_only(true),
        catalog: Catalog::builtin("filetransfer-2.0"),
        strict: false,
        app_version: None,
    };
    AuditLog::open(dir, opts).with_context(|| format!("cannot open {}", dir.display()))
}

/// RFC 3339, or an age before now: `90s`, `30m`, `2h`, `7d`.
fn parse_time(s: &str, what: &str) -> Result<Timestamp> {
    let unit = s.chars().last().unwrap_or(' ');
    if let (Some(secs), true) = (
        s[..s.len().saturating_sub(1)].parse::<i64>().ok(),
        "smhd".contains(unit),
    ) {
        let mult = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => 86_400,
        };
        return Ok(Timestamp(
            Timestamp::now().0 - secs.saturating_mul(mult).saturating_mul(1_000_000_000),
        ));
    }
    s.parse()
        .with_context(|| format!("--{what}: {s:?} is neither RFC 3339 nor an age like 2h or 7d"))
}

fn severity_arg(s: &Option<String>, what: &str) -> Result<Option<Severity>> {
    s.as_deref()
        .map(|s| s.parse::<Severity>().with_context(|| format!("--{what}")))
        .transpose()
}

impl FilterArgs {
    fn to_filter(&self) -> Result<Filter> {
        Ok(Filter {
            types: self.types.clone(),
            min_severity: severity_arg(&self.min_severity, "min-severity")?,
            max_severity: severity_arg(&self.max_severity, "max-severity")?,
            since: self
                .since
                .as_deref()
                .map(|s| parse_time(s, "since"))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|s| parse_time(s, "until"))
                .transpose()?,
            actor: self.actor.clone(),
            ip: self
                .ip
                .as_deref()
                .map(|s| s.parse().context("--ip"))
                .transpose()?,
            source: self.source.clone(),
            entity_type: self.entity_type.clone(),
            entity_id: self.entity_id.clone(),
            session: self.session.clone(),
            failed: self.failed,
        })
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    // indicatif draws nothing when standard error is not a terminal.
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Reads events in `format` and appends them in batches. Stops at the first
/// invalid record (unless skipping), after appending everything before it.
fn ingest(
    dir: &Path,
    file: Option<&Path>,
    format: ImportFormat,
    how: &IngestArgs,
    default_durability: DurabilityArg,
) -> Result<ExitCode> {
    let durability = match how.durability.unwrap_or(default_durability) {
        DurabilityArg::Buffered => Durability::Buffered,
        DurabilityArg::Interval => Durability::Interval(Duration::from_millis(200)),
        DurabilityArg::Sync => Durability::Sync,
    };
    let opts = AuditOptions {
        log: Options::default().durability(durability),
        catalog: Some(builtin(&how.catalog)?),
        strict: how.strict,
        app_version: how.app_version.clone(),
    };
    let log =
        AuditLog::open(dir, opts).with_context(|| format!("cannot open {}", dir.display()))?;
    let (name, size, input): (String, Option<u64>, Box<dyn BufRead>) = match file {
        None => ("<stdin>".into(), None, Box::new(std::io::stdin().lock())),
        Some(p) if p == Path::new("-") => {
            ("<stdin>".into(), None, Box::new(std::io::stdin().lock()))
        }
        Some(p) => {
            let f =
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (
                p.display().to_string(),
                size,
                Box::new(std::io::BufReader::new(f)),
            )
        }
    };
    let bar = progress(size.unwrap_or(0), "importing");
    let dflt = |t: &str| log.default_severity(t);
    // Each record: (line, bytes read so far, event or error).
    let records: Box<dyn Iterator<Item = (u64, u64, Result<Event, String>)>> = match format {
        ImportFormat::Jsonl | ImportFormat::SapUme => {
            let mut read = 0u64;
            Box::new(input.lines().enumerate().filter_map(move |(i, line)| {
                let n = i as u64 + 1;
                let line = match line {
                    Ok(l) => l,
                    Err(e) => return Some((n, read, Err(format!("cannot read: {e}")))),
                };
                read += line.len() as u64 + 1;
                if line.trim().is_empty() {
                    return None;
                }
                let parsed = match format {
                    ImportFormat::Jsonl => json::from_json(&line, &dflt).map_err(|e| e.to_string()),
                    _ => formats::sap::parse_line(&line).map_err(|e| e.to_string()),
                };
                Some((n, read, parsed))
            }))
        }
        ImportFormat::NetopCsv => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(input);
            let headers = rdr
                .headers()
                .with_context(|| format!("{name}:1: cannot read the header"))?
                .clone();
            if headers.iter().collect::<Vec<_>>() != formats::netop::COLUMNS {
                bail!(
                    "{name}:1: the header is not the Netop report's columns ({})",
                    formats::netop::COLUMNS.join(",")
                );
            }
            Box::new(rdr.into_records().map(move |r| match r {
                Ok(rec) => {
                    let pos = rec.position().map_or((0, 0), |p| (p.line(), p.byte()));
                    let fields: Vec<&str> = rec.iter().collect();
                    (
                        pos.0,
                        pos.1,
                        formats::netop::parse_record(&fields, &dflt).map_err(|e| e.to_string()),
                    )
                }
                Err(e) => (e.position().map_or(0, |p| p.line()), 0, Err(e.to_string())),
            }))
        }
    };
    let mut batch: Vec<(u64, Event)> = Vec::new();
    let (mut first, mut last, mut appended, mut skipped) = (None::<Lsn>, None::<Lsn>, 0u64, 0u64);
    let mut flush = |batch: &mut Vec<(u64, Event)>| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = batch.iter().map(|(_, e)| e.clone()).collect();
        let range = match log.append_batch(&events) {
            Ok(r) => r,
            Err(_) => {
                // Find the record at fault: append one by one up to it.
                for (line, e) in batch.iter() {
                    let lsn = log.append(e).with_context(|| format!("{name}:{line}"))?;
                    first.get_or_insert(lsn);
                    last = Some(lsn);
                    appended += 1;
                }
                batch.clear();
                return Ok(());
            }
        };
        first.get_or_insert(range.start);
        last = Some(Lsn(range.end.0 - 1));
        appended += events.len() as u64;
        batch.clear();
        Ok(())
    };
    let mut failure = None;
    for (line, read, parsed) in records {
        bar.set_position(read);
        match parsed {
            Ok(e) => batch.push((line, e)),
            Err(e) if how.skip_invalid => {
                bar.suspend(|| eprintln!("auditlog: {name}:{line}: skipped: {e}"));
                skipped += 1;
            }
            Err(e) => {
                failure = Some(anyhow::anyhow!("{name}:{line}: {e}"));
                break;
            }
        }
        if batch.len() >= 1000 {
            flush(&mut batch)?;
        }
    }
    // What came before a bad record stays appended.
    flush(&mut batch)?;
    bar.finish_and_clear();
    if durability != Durability::Sync {
        log.log().sync().context("sync")?;
    }
    match (first, last) {
        (Some(a), Some(b)) => println!(
            "appended {appended} event{}, LSN {a}..={b}",
            if appended == 1 { "" } else { "s" }
        ),
        _ => println!("appended 0 events"),
    }
    if skipped > 0 {
        println!("skipped {skipped} invalid records");
    }
    match failure {
        Some(e) => Err(e.context("stopped at the first invalid record; the records before it were appended (use --skip-invalid to go on)")),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn export(dir: &Path, format: ExportFormat, f: &FilterArgs) -> Result<ExitCode> {
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
                p.print(lsn, &e)?;
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
    Ok(ExitCode::SUCCESS)
}

fn color(sev: Severity) -> &'static str {
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

struct Printer {
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

    fn print(&mut self, lsn: Lsn, e: &Event) -> Result<()> {
        let o = |s: &Option<String>| s.clone().unwrap_or_default();
        match self.format {
            Format::Jsonl => writeln!(self.out, "{}", json::to_json(e, Some(lsn)))?,
            Format::Csv => {
                if !self.header_done {
                    writeln!(self.out, "{CSV_HEADER}")?;
                    self.header_done = true;
                }
                // Attributes as a JSON object, as in the canonical JSON form.
                let attrs = if e.attrs.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&e.attrs).expect("strings serialize")
                };
                let cells = [
                    lsn.to_string(),
                    e.time.to_string(),
                    e.event_type.clone(),
                    e.severity.to_string(),
                    o(&e.source),
                    e.ip.map(|i| i.to_string()).unwrap_or_default(),
                    o(&e.actor_id),
                    o(&e.actor),
                    o(&e.actor_account),
                    o(&e.account_id),
                    o(&e.session),
                    o(&e.entity_type),
                    o(&e.entity_id),
                    o(&e.entity_name),
                    e.result.map(|r| r.to_string()).unwrap_or_default(),
                    attrs,
                    o(&e.data),
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
                writeln!(
                    self.out,
                    "{on}{:>10}  {:<27}  {:<8}  {:<36}  {:<12}  {:<15}  {}{off}",
                    lsn.0,
                    e.time.to_string(),
                    e.severity.as_str(),
                    e.event_type,
                    o(&e.actor),
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

fn group_key(g: GroupBy, e: &Event) -> String {
    match g {
        GroupBy::Type => e.event_type.clone(),
        GroupBy::Severity => e.severity.to_string(),
        GroupBy::Actor => e.actor.clone().unwrap_or_else(|| "-".into()),
        GroupBy::Ip => e.ip.map_or("-".into(), |i| i.to_string()),
        GroupBy::Source => e.source.clone().unwrap_or_else(|| "-".into()),
    }
}

/// Counts per key, most frequent first (ties by key).
fn grouped(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn query(
    dir: &Path,
    f: &FilterArgs,
    format: Option<Format>,
    reverse: bool,
    limit: Option<usize>,
    count: bool,
    group_by: Option<GroupBy>,
) -> Result<ExitCode> {
    let filter = f.to_filter()?;
    let log = open_read(dir)?;
    let events = log
        .query(&filter, reverse)
        .take(limit.unwrap_or(usize::MAX));
    if count {
        let mut n = 0u64;
        for r in events {
            r?;
            n += 1;
        }
        println!("{n}");
    } else if let Some(g) = group_by {
        let mut counts = BTreeMap::new();
        for r in events {
            *counts.entry(group_key(g, &r?.1)).or_insert(0u64) += 1;
        }
        for (k, n) in grouped(counts) {
            println!("{n}\t{k}");
        }
    } else {
        let mut p = Printer::new(format);
        for r in events {
            let (lsn, e) = r?;
            p.print(lsn, &e)?;
        }
        p.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn tail(dir: &Path, n: u64, follow: bool, format: Option<Format>) -> Result<ExitCode> {
    let log = open_read(dir)?;
    let next = log.log().next_lsn();
    let from = Lsn(next.0.saturating_sub(n).max(log.log().first_lsn().0));
    let mut p = Printer::new(format);
    let mut f = log.follow(from);
    loop {
        match f.next_timeout(if follow {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        })? {
            Some((lsn, e)) => p.print(lsn, &e)?,
            None if follow => p.flush()?,
            None => break,
        }
    }
    p.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn stats(dir: &Path, catalog: &str) -> Result<ExitCode> {
    let catalog = builtin(catalog)?;
    let log = open_read(dir)?;
    let mut per_type = BTreeMap::new();
    let mut per_sev = BTreeMap::new();
    let (mut n, mut tmin, mut tmax) = (0u64, None::<Timestamp>, None::<Timestamp>);
    for r in log.query(&Filter::default(), false) {
        let (_, e) = r?;
        n += 1;
        tmin = Some(tmin.map_or(e.time, |t| t.min(e.time)));
        tmax = Some(tmax.map_or(e.time, |t| t.max(e.time)));
        *per_type.entry(e.event_type).or_insert(0u64) += 1;
        *per_sev.entry(e.severity).or_insert(0u64) += 1;
    }
    let bytes: u64 = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    println!("events      {n}");
    println!(
        "segments    {} ({} bytes allocated)",
        log.log().segment_count(),
        bytes
    );
    println!(
        "LSNs        {}..{}",
        log.log().first_lsn(),
        log.log().next_lsn()
    );
    if let (Some(a), Some(b)) = (tmin, tmax) {
        println!("time        {a} .. {b}");
    }
    println!("by severity");
    for (s, c) in &per_sev {
        println!("  {:<10} {c}", s.as_str());
    }
    println!("by type");
    for (t, c) in grouped(per_type) {
        println!("  {t:<40} {c}");
    }
    let v = log.version_report(&catalog)?;
    let outside: u64 = v.outside.values().sum();
    println!(
        "versions    {} events written under a declared application version; {outside} of a type outside that version in {}",
        v.checked,
        catalog.name()
    );
    for ((t, version), c) in &v.outside {
        let ty = catalog
            .get(t)
            .expect("counted only when the catalog has it");
        println!(
            "  {t:<40} {c} under {version} (since {}, until {})",
            ty.since.as_deref().unwrap_or("-"),
            ty.until.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> Result<ExitCode> {
    let log = open_read(dir)?;
    // One call walks everything: a spinner (drawn only on a terminal) shows it is working.
    let spinner = ProgressBar::new_spinner()
        .with_message(format!("verifying {} segments", log.log().segment_count()));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let r = log.log().verify().context("verify");
    spinner.finish_and_clear();
    let r = r?;
    println!(
        "{} segments, {} records, {} quarantined ranges",
        r.segments, r.records, r.quarantined
    );
    for d in &r.damage {
        println!("DAMAGE: {d}");
    }
    if r.damage.is_empty() {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

fn catalog(cmd: CatalogCommand) -> Result<ExitCode> {
    match cmd {
        CatalogCommand::List { catalog } => {
            for t in builtin(&catalog)?.types() {
                println!(
                    "{:<45} {:<8} {:<7} {}",
                    t.name,
                    t.severity.as_str(),
                    t.since.as_deref().unwrap_or("-"),
                    t.until.as_deref().unwrap_or("-")
                );
            }
        }
        CatalogCommand::Show { name, catalog } => {
            let c = builtin(&catalog)?;
            let Some(t) = c.get(&name) else {
                bail!(
                    "{catalog} has no type {name:?}; closest: {}",
                    c.closest(&name, 3).join(", ")
                );
            };
            println!("name         {}", t.name);
            println!("catalog      {catalog}");
            println!("severity     {}", t.severity);
            println!("since        {}", t.since.as_deref().unwrap_or("-"));
            println!("until        {}", t.until.as_deref().unwrap_or("-"));
            println!(
                "description  {}",
                t.description.replace('\n', "\n             ")
            );
            for note in &t.notes {
                println!("note         {note}");
            }
        }
        CatalogCommand::Diff { a, b } => {
            let d = builtin(&a)?.diff(&builtin(&b)?);
            for t in &d.added {
                println!("added     {t}");
            }
            for t in &d.removed {
                println!("removed   {t}");
            }
            for (t, x, y) in &d.severity_changed {
                println!("severity  {t}: {x} -> {y}");
            }
            println!(
                "{} added, {} removed, {} severity changed",
                d.added.len(),
                d.removed.len(),
                d.severity_changed.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn demo(dir: &Path, events: u64) -> Result<ExitCode> {
    if dir.exists() {
        // Replace only an earlier auditlog log, never anything else.
        auditlog::Log::open(dir, Options::default().read_only(true)).with_context(|| {
            format!(
                "{} exists and is not an auditlog log; choose another --dir",
                dir.display()
            )
        })?;
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove the old demo log {}", dir.display()))?;
    }
    let w = Workload {
        events,
        ..Workload::default()
    };
    println!(
        "Writing {events} audit events (a simulated month, {} users, {} addresses) to {}",
        w.users,
        w.addresses,
        dir.display()
    );
    let opts = AuditOptions {
        log: Options::default().durability(Durability::Buffered),
        catalog: Catalog::builtin("filetransfer-2.0"),
        strict: true,
        app_version: Some("2.0".into()),
    };
    let log = AuditLog::open(dir, opts)?;
    let bar = progress(events, "appending");
    let start = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for e in w.generate() {
        batch.push(e);
        if batch.len() == 1000 {
            log.append_batch(&batch)?;
            bar.inc(batch.len() as u64);
            batch.clear();
        }
    }
    log.append_batch(&batch)?;
    bar.inc(batch.len() as u64);
    log.log().sync()?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let frames: u64 = log
        .log()
        .iter(..)
        .map(|r| r.map(|r| 16 + r.payload().len() as u64))
        .sum::<Result<u64, _>>()?;
    println!(
        "Appended {events} events in {secs:.2} s ({:.0} events/s, durable at the end); {:.1} bytes per event in the log",
        events as f64 / secs,
        frames as f64 / events.max(1) as f64
    );
    println!();

    let day = 86_400 * 1_000_000_000i64;
    let end = w.end();
    let yesterday = Timestamp(end.0 - day);
    let questions: Vec<(String, Filter, Option<GroupBy>)> = vec![
        (
            "Failed logins by address (top 5)".into(),
            Filter {
                types: vec!["USER_AUTH_FAILED_*".into()],
                ..Filter::default()
            },
            Some(GroupBy::Ip),
        ),
        (
            format!(
                "Everything {} did yesterday ({} .. {})",
                workload::ADMIN,
                yesterday,
                end
            ),
            Filter {
                actor: Some(workload::ADMIN.into()),
                since: Some(yesterday),
                until: Some(end),
                ..Filter::default()
            },
            None,
        ),
        (
            "Quarantined packages (by day)".into(),
            Filter {
                types: vec!["PACKAGE_QUARANTINED".into()],
                ..Filter::default()
            },
            None,
        ),
        (
            format!(
                "Warnings and worse from {} during its burst",
                workload::ATTACKER
            ),
            Filter {
                ip: Some(workload::ATTACKER.parse()?),
                min_severity: Some(Severity::Warning),
                ..Filter::default()
            },
            Some(GroupBy::Type),
        ),
    ];
    for (title, filter, group) in questions {
        let t = Instant::now();
        let found: Vec<(Lsn, Event)> = log.query(&filter, false).collect::<Result<_, _>>()?;
        let took = t.elapsed();
        println!(
            "{title}: {} events, answered in {:.1} ms",
            found.len(),
            took.as_secs_f64() * 1e3
        );
        match group {
            Some(g) => {
                let mut counts = BTreeMap::new();
                for (_, e) in &found {
                    *counts.entry(group_key(g, e)).or_insert(0u64) += 1;
                }
                for (k, n) in grouped(counts).into_iter().take(5) {
                    println!("  {n:>7}  {k}");
                }
            }
            None if title.starts_with("Quarantined") => {
                let mut per_day = BTreeMap::new();
                for (_, e) in &found {
                    *per_day
                        .entry(e.time.to_string()[..10].to_string())
                        .or_insert(0u64) += 1;
                }
                let busiest = grouped(per_day);
                for (d, n) in busiest.iter().take(3) {
                    println!("  {n:>7}  {d}");
                }
                if let Some((lsn, e)) = found.first() {
                    println!("  first: {}", json::to_json(e, Some(*lsn)));
                }
            }
            None => {
                for (lsn, e) in found.iter().take(5) {
                    println!("  {}", json::to_json(e, Some(*lsn)));
                }
                if found.len() > 5 {
                    println!("  … and {} more", found.len() - 5);
                }
            }
        }
        println!();
    }
    println!(
        "Try: auditlog query --dir {} --type 'USER_AUTH_FAILED_*' --ip {} --limit 5",
        dir.display(),
        workload::ATTACKER
    );
    Ok(ExitCode::SUCCESS)
}
