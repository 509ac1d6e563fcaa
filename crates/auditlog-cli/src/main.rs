//! `auditlog`: append, query, follow, verify and explore audit logs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use auditlog::{AuditLog, AuditOptions, Catalog, Filter, Options, Severity};
use auditlog_cli::{select, when};
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
    /// Colors in tables and short output: auto (on a terminal, unless
    /// NO_COLOR is set), always or never.
    #[arg(long, value_enum, global = true, default_value_t = ColorArg::Auto)]
    color: ColorArg,
    /// Threads a read may decompress compacted blocks on (queries, exports,
    /// tail, stats) [default: the cores, at most 4]: a read of many blocks
    /// shares them out, which makes full scans faster for more memory; 1
    /// reads on one thread.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=64))]
    read_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

/// When to color output.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) enum ColorArg {
    /// On a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

#[derive(Args, Clone)]
struct DirArg {
    /// The log directory [default: $AUDITLOG_DIR].
    #[arg(long, short = 'd', env = "AUDITLOG_DIR", hide_env = true)]
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
    /// Write the events that match the filters in an exchange format to
    /// standard output, or (Parquet) into a directory a lake engine reads.
    ///
    /// docs/EXPORT.md describes each format and the OCSF mapping.
    Export {
        #[command(flatten)]
        dir: DirArg,
        /// The format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        filter: Box<FilterArgs>,
        #[command(flatten)]
        to: Box<ExportArgs>,
    },
    /// Print the events that match the filters (with -f, keep printing new ones).
    Query {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        filter: Box<FilterArgs>,
        #[command(flatten)]
        out: Box<OutputArgs>,
        /// Newest first.
        #[arg(long, short = 'r', conflicts_with = "follow")]
        reverse: bool,
        /// At most this many events, the first ones in the order printed.
        #[arg(long, conflicts_with_all = ["lines", "follow"])]
        limit: Option<usize>,
        /// Only the last N matching events (printed oldest first, or newest
        /// first with -r), as journalctl -n.
        #[arg(long, short = 'n')]
        lines: Option<usize>,
        /// After printing, keep waiting for new matching events (stop with Ctrl-C).
        #[arg(long, short = 'f', conflicts_with_all = ["count", "group_by", "explain"])]
        follow: bool,
        /// Print only how many events match (counted in the engine, no event built).
        #[arg(long, conflicts_with = "lines")]
        count: bool,
        /// Count matching events per value of one or more of: type, severity, actor, ip,
        /// source, result, session, entity_type, entity_id, hour, day (e.g. `day,severity`).
        /// Most frequent first; in key order when a key is a day or an hour.
        #[arg(
            long,
            value_delimiter = ',',
            conflicts_with_all = ["limit", "lines", "grep", "after_lsn", "since_lsn", "cursor_file"]
        )]
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
        /// The sealed log's signing key, when not kept in the directory.
        #[arg(long, env = "AUDITLOG_KEY", hide_env = true)]
        key: Option<PathBuf>,
    },
    /// Print the last events that match the filters, and with -f keep printing new ones.
    Tail {
        #[command(flatten)]
        dir: DirArg,
        /// How many of the last events to print first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
        /// Keep waiting for new events (stop with Ctrl-C).
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        filter: Box<FilterArgs>,
        #[command(flatten)]
        out: Box<OutputArgs>,
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
    ///
    /// A sealed log (`auditlog keygen`) is also checked against its signed
    /// checkpoints: every record is hashed again. Exit status 4 when that
    /// shows tampering (changed, cut, rolled back or re-signed).
    Verify {
        #[command(flatten)]
        dir: DirArg,
        /// Checkpoints kept outside the log (`auditlog anchor` printed them):
        /// the log must reach their size and agree with their root.
        #[arg(long, num_args = 1..)]
        anchor: Vec<PathBuf>,
        /// The public key to trust (what `keygen` printed) instead of the
        /// log's own PUBKEY, which whoever can write the log can replace.
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// Fail when events after the newest checkpoint are not sealed yet.
        #[arg(long)]
        require_sealed: bool,
    },
    /// Create the key that seals a log: from then on, writers sign
    /// checkpoints of it (docs/TAMPER.md). Prints the public key.
    Keygen {
        #[command(flatten)]
        dir: DirArg,
        /// Keep the signing key in this file rather than in the log directory
        /// (writers then need `--key PATH` or AUDITLOG_KEY).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The key's name, printed in every signature [default: auditlog.<directory name>].
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the newest signed checkpoint: keep it somewhere else, and give
    /// it to `verify --anchor` later.
    Anchor {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Print a proof that one event is in the log, against the newest
    /// checkpoint that covers it; `verify-proof` checks it without the log.
    Prove {
        #[command(flatten)]
        dir: DirArg,
        /// The event's LSN.
        #[arg(long)]
        lsn: u64,
    },
    /// Check a proof `prove` printed, without the log: the checkpoint is
    /// signed by the public key given, and the event hashes to its root.
    VerifyProof {
        /// The proof file (- for standard input).
        proof: PathBuf,
        /// The public key to trust (what `keygen` printed).
        #[arg(long)]
        pubkey: PathBuf,
    },
    /// Quarantine damaged ranges and rebuild what can be rebuilt, say what was kept and
    /// dropped, and leave a log that opens Strict (no other process may be writing).
    Repair {
        #[command(flatten)]
        dir: DirArg,
        /// The sealed log's signing key, when not kept in the directory.
        #[arg(long, env = "AUDITLOG_KEY", hide_env = true)]
        key: Option<PathBuf>,
    },
    /// The built-in event-type catalogs.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Write a shell completion script to standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual page (roff) to standard output, or one page per
    /// command into a directory.
    Man {
        /// A directory to write auditlog.1, auditlog-query.1, … into.
        #[arg(long)]
        out_dir: Option<PathBuf>,
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
    /// Where each built-in type lands in OCSF 1.8.0 (class, activity,
    /// status), as the Markdown table docs/EXPORT.md prints.
    Ocsf,
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
    /// Skip invalid records (bad JSON or fields, unknown types with
    /// --strict, oversized records: each named on standard error) instead of
    /// stopping.
    #[arg(long)]
    skip_invalid: bool,
    /// Start at this line of the input (what a stopped import says to rerun
    /// with: the lines before it are in the log already).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    from_line: Option<u64>,
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
    /// The key that seals the log (`auditlog keygen --key PATH` made it), when
    /// it is not kept in the log directory as KEY.
    #[arg(long, env = "AUDITLOG_KEY", hide_env = true)]
    key: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Event type (repeatable or comma-separated; `*` matches any run of
    /// characters: USER_AUTH_FAILED_*, *FAILED*). Checked against the types
    /// the log and the catalog know, ignoring case.
    #[arg(long = "type", short = 't', value_delimiter = ',')]
    types: Vec<String>,
    /// Priority: a name (debug, info, notice, warning, err, crit, alert,
    /// emerg), a syslog number 0-7, or a range FROM..TO; one priority means
    /// it and everything more severe.
    #[arg(long, short = 'p', conflicts_with_all = ["min_severity", "max_severity"])]
    priority: Option<String>,
    /// Least severity (inclusive).
    #[arg(long)]
    min_severity: Option<String>,
    /// Greatest severity (inclusive).
    #[arg(long)]
    max_severity: Option<String>,
    /// Earliest time: now, today, yesterday, -1h, 1h30m (ago), 2w, 2026-11-22,
    /// '2026-11-22 10:00' (local time unless --utc or --tz), or RFC 3339.
    #[arg(long, short = 'S', allow_hyphen_values = true)]
    since: Option<String>,
    /// Latest time (inclusive), in the same forms; a date alone means the
    /// end of that day.
    #[arg(long, short = 'U', allow_hyphen_values = true)]
    until: Option<String>,
    /// Read and print times in UTC rather than the local zone.
    #[arg(long)]
    utc: bool,
    /// Read and print times in this zone (Europe/Prague, +01:00).
    #[arg(long, conflicts_with = "utc")]
    tz: Option<String>,
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
    /// Only events a text field of which (type, source, actor, session,
    /// entity, data, attribute values) matches this regular expression;
    /// case-insensitive unless it has an upper-case letter.
    #[arg(long, short = 'g')]
    grep: Option<String>,
    /// Only events after this LSN: a cursor (the last LSN a run printed).
    #[arg(long)]
    after_lsn: Option<u64>,
    /// Only events from this LSN on (the same as --after-lsn N-1).
    #[arg(long, conflicts_with = "after_lsn", value_parser = clap::value_parser!(u64).range(1..))]
    since_lsn: Option<u64>,
    /// A cursor kept in a file: read at start (if the file exists), and the
    /// position reached written at exit, atomically, so the next run prints
    /// exactly the events added since (no gap, no duplicate).
    #[arg(long)]
    cursor_file: Option<PathBuf>,
}

/// How events are printed.
#[derive(Args, Clone, Default)]
pub(crate) struct OutputArgs {
    /// Output format [default: table on a terminal, jsonl otherwise].
    #[arg(long, short = 'o', alias = "format", value_enum)]
    pub(crate) output: Option<Format>,
    /// Only these fields, in this order (comma-separated: lsn, time, type,
    /// severity, source, ip, actor_id, actor, actor_account, account_id,
    /// session, entity_type, entity_id, entity_name, result, attrs, data).
    #[arg(long, value_delimiter = ',')]
    pub(crate) output_fields: Vec<String>,
}

/// What `import` reads.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum ImportFormat {
    /// Canonical JSON lines (docs/EVENTS.md).
    Jsonl,
    /// auditlog's own CSV (`export --format csv`, `query -o csv`), any of its columns.
    Csv,
    /// SAP UME security audit lines.
    SapUme,
    /// The Netop Portal log report (CSV).
    NetopCsv,
}

/// What `export` writes.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// Canonical JSON lines (docs/EVENTS.md).
    Jsonl,
    /// auditlog's own CSV.
    Csv,
    /// SAP UME security audit lines.
    SapUme,
    /// The Netop Portal log report (CSV).
    NetopCsv,
    /// OCSF 1.8.0 events, one JSON object per line.
    Ocsf,
    /// OCSF-mapped Parquet files under --out, partitioned by class and day.
    Parquet,
    /// RFC 5424 syslog messages, the event as structured data.
    Syslog,
    /// ArcSight Common Event Format lines.
    Cef,
}

/// Where and how `export` writes, for the formats that need more than
/// standard output.
#[derive(Args, Clone)]
pub(crate) struct ExportArgs {
    /// The directory Parquet files go into (created if missing). What it
    /// already holds is not exported again: a second run adds what is new.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Parquet directory layout: `hive` (class_uid=…/day=…/) or
    /// `security-lake` (ext/SOURCE/region=…/accountId=…/eventDay=…/).
    #[arg(long, value_enum, default_value = "hive")]
    pub(crate) layout: LakeLayout,
    /// Security Lake: the custom source's name.
    #[arg(long, default_value = "auditlog")]
    pub(crate) lake_source: String,
    /// Security Lake: the AWS region of the lake.
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// Security Lake: the AWS account the events come from.
    #[arg(long)]
    pub(crate) account_id: Option<String>,
    /// Syslog: frame each message with its length (RFC 6587 octet
    /// counting), which carries line breaks; else one message per line.
    #[arg(long)]
    pub(crate) octet_counting: bool,
    /// Syslog: the facility, 0–23 [default: 13, log audit].
    #[arg(long, default_value_t = 13, value_parser = clap::value_parser!(u8).range(0..=23))]
    pub(crate) facility: u8,
    /// Syslog: the HOSTNAME field [default: this machine's name].
    #[arg(long)]
    pub(crate) hostname: Option<String>,
}

/// How Parquet files are laid out in the export directory.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum LakeLayout {
    /// `class_uid=3002/day=2026-11-23/part-….parquet`
    Hive,
    /// Amazon Security Lake's custom-source layout:
    /// `ext/SOURCE/region=…/accountId=…/eventDay=20261123/part-….parquet`
    SecurityLake,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum DurabilityArg {
    Buffered,
    Interval,
    Sync,
}

/// How `query` and `tail` print events.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Format {
    /// One canonical JSON object per line (docs/EVENTS.md).
    #[value(alias = "json")]
    Jsonl,
    /// The canonical JSON, indented.
    JsonPretty,
    /// Aligned columns, sized to the terminal.
    Table,
    /// CSV with a header.
    Csv,
    /// The fields only, as key=value (with --output-fields, their values only).
    Cat,
    /// One line per event: ISO time, severity, type, then key=value fields.
    ShortIso,
}

/// An argument whose value is wrong (a time, a priority, a type, a size):
/// a usage error, exit status 2, as clap's own.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error saying `what`.
pub(crate) fn usage(what: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(what.into()))
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
            || c.downcast_ref::<csv::Error>().is_some_and(|e| {
                matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
            })
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
    let threads = cli.read_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        usize::from,
    );
    READ_THREADS.store(threads, std::sync::atomic::Ordering::Relaxed);
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| c.is::<Usage>()) => {
            let text = format!("{e:#}");
            eprintln!("auditlog: {}", auditlog_cli::terminal::visible(&text));
            ExitCode::from(2)
        }
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
            to,
        } => output::export(&dir.dir, format, &filter, &to),
        Command::Query {
            dir,
            filter,
            out,
            reverse,
            limit,
            lines,
            follow,
            count,
            group_by,
            top,
            explain,
        } => output::query(
            &dir.dir,
            &filter,
            output::QueryHow {
                out: *out,
                color: cli.color,
                reverse,
                limit,
                lines,
                follow,
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
            key,
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
            report::compact(&dir.dir, retention, dry_run, key.as_deref())
        }
        Command::Tail {
            dir,
            lines,
            follow,
            filter,
            out,
        } => output::query(
            &dir.dir,
            &filter,
            output::QueryHow {
                out: *out,
                color: cli.color,
                lines: Some(lines),
                follow,
                ..Default::default()
            },
        ),
        Command::Stats { dir, catalog } => report::stats(&dir.dir, &catalog),
        Command::Verify {
            dir,
            anchor,
            pubkey,
            require_sealed,
        } => report::verify(&dir.dir, &anchor, pubkey.as_deref(), require_sealed),
        Command::Keygen { dir, key, name } => report::keygen(&dir.dir, key.as_deref(), name),
        Command::Anchor { dir } => report::anchor(&dir.dir),
        Command::Prove { dir, lsn } => report::prove(&dir.dir, lsn),
        Command::VerifyProof { proof, pubkey } => report::verify_proof(&proof, &pubkey),
        Command::Repair { dir, key } => report::repair(&dir.dir, key.as_deref()),
        Command::Catalog { command } => report::catalog(command),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "auditlog", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => man(out_dir.as_deref()),
    }
}

/// The manual page of `auditlog` (and, into a directory, of each command).
fn man(out_dir: Option<&Path>) -> Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        std::io::Write::write_all(&mut std::io::stdout().lock(), &page)?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pages = vec![("auditlog".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("auditlog-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
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

/// The signing key in file `path`, if one was given.
pub(crate) fn seal_key(path: Option<&Path>) -> Result<Option<auditlog::SealKey>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key {}", path.display()))?;
    auditlog::SealKey::from_text(&text)
        .map(Some)
        .with_context(|| format!("{} is not a signing key", path.display()))
}

/// `--read-threads`, for every command that opens the log to read it.
static READ_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

fn open_read(dir: &Path) -> Result<AuditLog> {
    let threads = READ_THREADS.load(std::sync::atomic::Ordering::Relaxed);
    let opts = AuditOptions {
        log: Options::default().read_only(true).read_threads(threads),
        catalog: Catalog::builtin("filetransfer-2.0"),
        strict: false,
        app_version: None,
        ..Default::default()
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
        _ => Err(usage(format!(
            "--{what}: {s:?} is not a length of time like 90m, 12h or 30d"
        ))),
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
        "" => {
            return Err(usage(format!(
                "--{what}: {s:?} has no unit; give one, as in 500MiB, 10G or 4096B"
            )))
        }
        _ => return Err(usage(format!("--{what}: {s:?} has an unknown unit (B, K, KiB, M, MiB, G, GiB, T, TiB, KB, MB, GB, TB)"))),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| usage(format!("--{what}: {s:?} is not a size like 500MiB or 10G")))
}

fn severity_arg(s: &Option<String>, what: &str) -> Result<Option<Severity>> {
    s.as_deref()
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| usage(format!("--{what}: {e}")))
        })
        .transpose()
}

impl FilterArgs {
    /// The clock times are read against and shown in.
    pub(crate) fn clock(&self) -> Result<when::Clock> {
        when::Clock::new(self.utc, self.tz.as_deref()).map_err(usage)
    }

    /// The filter these arguments name, with the `--type` values checked
    /// against the types `known`.
    pub(crate) fn to_filter(&self, clock: &when::Clock, known: &[String]) -> Result<Filter> {
        let (min_severity, max_severity) = match &self.priority {
            Some(p) => {
                let (lo, hi) =
                    select::priority(p).map_err(|e| usage(format!("--priority: {e}")))?;
                (Some(lo), (hi != Severity::Critical).then_some(hi))
            }
            None => (
                severity_arg(&self.min_severity, "min-severity")?,
                severity_arg(&self.max_severity, "max-severity")?,
            ),
        };
        let time = |s: &Option<String>, end, what| {
            s.as_deref()
                .map(|s| {
                    clock
                        .parse(s, end)
                        .map_err(|e| usage(format!("--{what}: {e}")))
                })
                .transpose()
        };
        let since = time(&self.since, when::End::Since, "since")?;
        let until = time(&self.until, when::End::Until, "until")?;
        if let (Some(a), Some(b)) = (since, until) {
            if a > b {
                return Err(usage(format!(
                    "--since ({}) is later than --until ({}): no event can match",
                    clock.show(a),
                    clock.show(b)
                )));
            }
        }
        let types = if self.types.is_empty() {
            Vec::new()
        } else {
            select::resolve_types(&self.types, known).map_err(usage)?
        };
        Ok(Filter {
            types,
            min_severity,
            max_severity,
            since,
            until,
            actor: self.actor.clone(),
            ip: self
                .ip
                .as_deref()
                .map(|s| s.parse().map_err(|e| usage(format!("--ip: {e}"))))
                .transpose()?,
            source: self.source.clone(),
            entity_type: self.entity_type.clone(),
            entity_id: self.entity_id.clone(),
            session: self.session.clone(),
            failed: self.failed,
        })
    }

    /// The `-g` search, if given.
    pub(crate) fn grep(&self) -> Result<Option<select::Grep>> {
        self.grep
            .as_deref()
            .map(select::Grep::new)
            .transpose()
            .map_err(usage)
    }

    /// Where reading starts: after `--after-lsn` or the cursor file's LSN,
    /// whichever is later.
    pub(crate) fn start_after(&self) -> Result<u64> {
        let mut after = self
            .after_lsn
            .or(self.since_lsn.map(|n| n - 1))
            .unwrap_or(0);
        if let Some(path) = &self.cursor_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let lsn = text.trim().parse::<u64>().with_context(|| {
                        format!(
                            "--cursor-file {}: {:?} is not an LSN (a file this option wrote holds one number)",
                            path.display(),
                            text.trim()
                        )
                    })?;
                    after = after.max(lsn);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
        Ok(after)
    }

    /// Writes `lsn` to the cursor file, if one was given: a new file renamed
    /// over the old one (and synced), so a crash leaves the old or the new.
    pub(crate) fn save_cursor(&self, lsn: u64) -> Result<()> {
        let Some(path) = &self.cursor_file else {
            return Ok(());
        };
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, format!("{lsn}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::new(e).context(format!("cannot write cursor file {}", path.display()))
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
