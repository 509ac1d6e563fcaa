//! `auditlog`: append, query, follow, verify and explore audit logs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use auditlog::{AuditLog, AuditOptions, Catalog, Filter, Options, Severity, Timestamp};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod demo;
mod ingest;
mod output;
mod report;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "auditlog",
    version,
    about = "An append-only store for application audit events",
    after_help = "Exit status: 0 done; 1 an error; 2 a usage error; 3 damage on disk (readers print \
                  what they could read first; `auditlog repair` quarantines it)."
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
        /// Where to create the demo log: a missing or empty directory, or an earlier demo's
        /// (replaced unless a process is writing to it). Anything else is refused.
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
        /// Print only how many events match (counted in the engine, no event built).
        #[arg(long)]
        count: bool,
        /// Count matching events per value of one or more of: type, severity, actor, ip,
        /// source, result, session, entity_type, entity_id, hour, day (e.g. `day,severity`).
        /// Most frequent first; in key order when a key is a day or an hour.
        #[arg(long, value_delimiter = ',', conflicts_with = "limit")]
        group_by: Vec<auditlog::GroupBy>,
        /// With --group-by: only the N largest groups, largest first ("top 10 actors").
        #[arg(long, requires = "group_by")]
        top: Option<usize>,
        /// Also print (to standard error) which segments and blocks were read, and why.
        #[arg(long)]
        explain: bool,
    },
    /// Compact every sealed segment now, apply retention limits if given, and report.
    Compact {
        #[command(flatten)]
        dir: DirArg,
        /// Remove compacted segments whose newest event is older than this (30d, 12h, 90m).
        #[arg(long)]
        max_age: Option<String>,
        /// Remove the oldest compacted segments while the log takes more than this; a size
        /// with its unit (500MiB, 10G, 4096B).
        #[arg(long)]
        max_bytes: Option<String>,
        /// Remove the oldest compacted segments while the disk has less free than this
        /// (a size with its unit).
        #[arg(long)]
        min_free: Option<String>,
        /// Compact nothing and remove nothing: list what retention would remove now.
        #[arg(long)]
        dry_run: bool,
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
    /// Check every frame's and block's checksum and the catalog; exit non-zero on any damage.
    Verify {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Quarantine damaged ranges and rebuild what can be rebuilt, say what was kept and
    /// dropped, and leave a log that opens Strict (no other process may be writing).
    Repair {
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
    /// Size of segment files created from now on, with its unit [default: 64MiB]; small
    /// logs may want less.
    #[arg(long)]
    segment_size: Option<String>,
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

/// Exit status when damage kept records from being read (what could be read
/// was printed).
const DAMAGE_STATUS: u8 = 3;

/// `Ok` after the output: or, if a reader met damage it had to read past,
/// a warning naming each range and the damage status.
fn finish(log: &AuditLog) -> ExitCode {
    let unreadable = &log.log().recovery_report().unreadable;
    for c in unreadable {
        eprintln!(
            "auditlog: warning: the output is missing records: {}",
            auditlog_cli::terminal::visible(&c.to_string())
        );
    }
    let cut = &log.catalog_report().log_ends_early;
    if let Some(why) = cut {
        eprintln!(
            "auditlog: warning: the output is missing records: {}: {}",
            log.log().dir().join("CATALOG").display(),
            auditlog_cli::terminal::visible(why)
        );
    }
    if unreadable.is_empty() && cut.is_none() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "auditlog: no writer holds the log: run `auditlog repair` to quarantine the damage"
        );
        ExitCode::from(DAMAGE_STATUS)
    }
}

/// Whether `e` comes from writing to a standard output that was closed
/// (`auditlog query … | head`): the reader has what it wanted.
fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<auditlog::Error>().is_some_and(|a| {
                matches!(a, auditlog::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

fn main() -> ExitCode {
    // A closed standard output ends the program quietly with status 0,
    // whichever command was printing: `println!` panics on it, so the
    // panic of a failed print to stdout is turned into that exit.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if is_damage(&e) => {
            let text = format!("{e:#}");
            eprintln!("auditlog: {}", auditlog_cli::terminal::visible(&text));
            ExitCode::from(DAMAGE_STATUS)
        }
        Err(e) => {
            // One line, and nothing in it (a name from a file) can drive the terminal.
            let text = format!("{e:#}");
            eprintln!("auditlog: {}", auditlog_cli::terminal::visible(&text));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo { dir, events } => demo::demo(&dir, events),
        Command::Append { dir, file, how } => ingest::ingest(
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
        } => ingest::ingest(&dir.dir, Some(&file), format, &how, DurabilityArg::Buffered),
        Command::Export {
            dir,
            format,
            filter,
        } => output::export(&dir.dir, format, &filter),
        Command::Query {
            dir,
            filter,
            format,
            reverse,
            limit,
            count,
            group_by,
            top,
            explain,
        } => output::query(
            &dir.dir,
            &filter,
            output::QueryHow {
                format,
                reverse,
                limit,
                count,
                group_by,
                top,
                explain,
            },
        ),
        Command::Compact {
            dir,
            max_age,
            max_bytes,
            min_free,
            dry_run,
        } => {
            let retention = auditlog::Retention {
                max_age: max_age
                    .as_deref()
                    .map(|s| parse_age(s, "max-age"))
                    .transpose()?,
                max_bytes: max_bytes
                    .as_deref()
                    .map(|s| parse_size(s, "max-bytes"))
                    .transpose()?,
                min_free_bytes: min_free
                    .as_deref()
                    .map(|s| parse_size(s, "min-free"))
                    .transpose()?,
            };
            report::compact(&dir.dir, retention, dry_run)
        }
        Command::Tail {
            dir,
            lines,
            follow,
            format,
        } => output::tail(&dir.dir, lines, follow, format),
        Command::Stats { dir, catalog } => report::stats(&dir.dir, &catalog),
        Command::Verify { dir } => report::verify(&dir.dir),
        Command::Repair { dir } => report::repair(&dir.dir),
        Command::Catalog { command } => report::catalog(command),
    }
}

/// Whether damage on disk caused `e`.
fn is_damage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<auditlog::Error>(),
            Some(auditlog::Error::Corruption(_) | auditlog::Error::BadCatalogFile { .. })
        )
    })
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
        retention: Default::default(),
    };
    AuditLog::open(dir, opts).with_context(|| format!("cannot open {}", dir.display()))
}

/// A length of time: `90s`, `30m`, `2h`, `7d`.
fn parse_age(s: &str, what: &str) -> Result<std::time::Duration> {
    let unit = s.chars().last().unwrap_or(' ');
    let n = s[..s.len().saturating_sub(unit.len_utf8())]
        .parse::<u64>()
        .ok();
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    match n {
        Some(n) if mult > 0 => Ok(std::time::Duration::from_secs(n.saturating_mul(mult))),
        _ => anyhow::bail!("--{what}: {s:?} is not a length of time like 90m, 12h or 30d"),
    }
}

/// A size with its unit: `4096B`, `500K`/`500KiB`, `500M`/`500MiB`, `10G`/`10GiB`,
/// `1T`/`1TiB` (powers of 1024), `500KB`, `500MB`, `10GB`, `1TB` (powers of 1000).
/// A bare number is refused: `--max-bytes 10` meaning ten bytes would delete data.
fn parse_size(s: &str, what: &str) -> Result<u64> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "" => anyhow::bail!(
            "--{what}: {s:?} has no unit; give one, as in 500MiB, 10G or 4096B"
        ),
        _ => anyhow::bail!("--{what}: {s:?} has an unknown unit (B, K, KiB, M, MiB, G, GiB, T, TiB, KB, MB, GB, TB)"),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .with_context(|| format!("--{what}: {s:?} is not a size like 500MiB or 10G"))
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
