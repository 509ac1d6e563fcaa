//! `append` and `import`: reading events in a format and appending them.
//!
//! A thread reads and parses the input; this one appends whatever has
//! arrived as one batch (up to [`BATCH_MAX`]), so lines from a slow pipe are
//! committed as soon as they are read and a big file still goes in big
//! batches. SIGINT and SIGTERM stop the reading: what was read is committed,
//! then a summary is printed.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use auditlog::event::json;
use auditlog::{AuditLog, AuditOptions, Catalog, Durability, Error, Event, Lsn, Options};
use auditlog_cli::formats;
use auditlog_cli::terminal::visible;

use crate::{builtin, progress, DurabilityArg, ImportFormat, IngestArgs};

/// The most records appended as one batch.
const BATCH_MAX: usize = 1000;

/// One record of the input: its line, the bytes read so far, and the event
/// or why it is not one.
type Item = (u64, u64, Result<Event, String>);

/// Reads events in `format` and appends them. Stops at the first invalid
/// record (unless skipping), after appending everything before it.
pub(crate) fn ingest(
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
    // The input first: a file that cannot be read leaves no log behind.
    let (name, size, input): (String, Option<u64>, Box<dyn BufRead + Send>) = match file {
        None => ("<stdin>".into(), None, stdin()),
        Some(p) if p == Path::new("-") => ("<stdin>".into(), None, stdin()),
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
    let mut log_opts = Options::default().durability(durability);
    if let Some(size) = &how.segment_size {
        log_opts = log_opts.segment_bytes(crate::parse_size(size, "segment-size")?);
    }
    let opts = AuditOptions {
        log: log_opts,
        catalog: Some(builtin(&how.catalog)?),
        strict: how.strict,
        app_version: how.app_version.clone(),
        seal_key: crate::seal_key(how.key.as_deref())?,
        ..Default::default()
    };
    let log = Arc::new(
        AuditLog::open(dir, opts).with_context(|| format!("cannot open {}", dir.display()))?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot handle signals")?;
    }
    let (tx, rx) = mpsc::sync_channel::<Item>(4 * BATCH_MAX);
    {
        let (log, skip, from) = (log.clone(), how.skip_invalid, how.from_line);
        let catalog = how.catalog.clone();
        // Not joined: on a signal it may be blocked reading a pipe.
        std::thread::spawn(move || {
            let reader = Reader {
                log: &log,
                catalog: &catalog,
                tx: &tx,
                skip,
                from_line: from.unwrap_or(1),
            };
            reader.parse(format, input)
        });
    }
    let bar = progress(size.unwrap_or(0), "importing");
    let mut out = Outcome {
        synced_each: durability == Durability::Sync,
        ..Outcome::default()
    };
    let mut batch: Vec<(u64, Event)> = Vec::new();
    let mut failure = None;
    let push = |item: Item, batch: &mut Vec<(u64, Event)>, out: &mut Outcome| {
        let (line, read, parsed) = item;
        bar.set_position(read);
        match parsed {
            Ok(e) => batch.push((line, e)),
            Err(e) if how.skip_invalid => {
                bar.suspend(|| eprintln!("auditlog: {name}:{line}: skipped: {}", visible(&e)));
                out.skipped += 1;
            }
            Err(e) => return Some((line, e)),
        }
        None
    };
    'read: loop {
        // Wait for a record, looking up now and then for a signal.
        let first = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(item) => break item,
                Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {}
                Err(_) => break 'read,
            }
        };
        failure = push(first, &mut batch, &mut out);
        // Then everything that is here already, as one batch.
        while failure.is_none() && batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(item) => failure = push(item, &mut batch, &mut out),
                Err(_) => break,
            }
        }
        out.append(&log, &mut batch, how.skip_invalid, &name)?;
        if failure.is_some() {
            break;
        }
    }
    bar.finish_and_clear();
    let interrupted = stop.load(Ordering::Relaxed);
    if durability != Durability::Sync {
        if let Err(e) = log.log().sync() {
            let what = match (out.not_durable_from(log.log().durable_lsn()), out.last) {
                (Some((a, line)), Some(b)) => format!(
                    "the events appended from {name}:{line} on (LSN {a}..={b}) are in the log but not known to be durable: they may not survive a crash"
                ),
                _ => "every event appended is durable".to_string(),
            };
            return Err(anyhow::Error::new(e).context(format!("sync failed: {what}")));
        }
    }
    out.print(interrupted);
    match failure {
        Some((line, e)) => {
            let done = match (out.first, out.last) {
                (Some(a), Some(b)) => format!(
                    "the {} events before it are in the log (LSN {a}..={b}): fix the line and \
                     rerun with --from-line {line} to go on without duplicates",
                    out.appended
                ),
                _ => "nothing was appended".to_string(),
            };
            anyhow::bail!("{name}:{line}: {e}; stopped there, {done} (or use --skip-invalid)")
        }
        None if interrupted => Ok(ExitCode::from(130)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Standard input, for the reading thread (std's own buffer serves: a line
/// is handed on as soon as it is complete).
fn stdin() -> Box<dyn BufRead + Send> {
    Box::new(std::io::BufReader::new(std::io::stdin()))
}

/// What was appended and skipped so far.
#[derive(Default)]
struct Outcome {
    first: Option<Lsn>,
    last: Option<Lsn>,
    appended: u64,
    skipped: u64,
    /// The last input line appended.
    last_line: Option<u64>,
    /// Each batch was synced as it was appended (`Sync` durability).
    synced_each: bool,
    /// The batches appended that were not durable when last looked at: the
    /// first LSN of each and its events' lines (consecutive LSNs).
    pending: std::collections::VecDeque<(Lsn, Vec<u64>)>,
}

impl Outcome {
    /// Counts the events on `lines`, appended as `first..` (one LSN each);
    /// `durable` says whether they are, else what the log says is.
    fn took(&mut self, log: &AuditLog, first: Lsn, lines: &[u64], durable: bool) {
        let next = Lsn(first.0 + lines.len() as u64);
        self.first.get_or_insert(first);
        self.last = Some(Lsn(next.0 - 1));
        self.appended += lines.len() as u64;
        self.last_line = lines.last().copied();
        if !durable {
            self.pending.push_back((first, lines.to_vec()));
        }
        let upto = log.log().durable_lsn();
        while let Some((a, l)) = self.pending.front() {
            if a.0 + l.len() as u64 > upto.0 {
                break;
            }
            self.pending.pop_front();
        }
    }

    /// The first event appended that is not durable (below `upto` all
    /// are), and its line.
    fn not_durable_from(&self, upto: Lsn) -> Option<(Lsn, u64)> {
        self.pending.iter().find_map(|(a, lines)| {
            let skip = upto.0.saturating_sub(a.0) as usize;
            lines.get(skip).map(|&l| (Lsn(a.0 + skip as u64), l))
        })
    }

    /// Appends `batch` and empties it. A record the log refuses for what it
    /// is (an unknown type, a reserved or bad name, too large) is found by
    /// appending one by one, and skipped with `skip`; a storage failure
    /// stops everything with an error saying exactly which lines are in.
    fn append(
        &mut self,
        log: &AuditLog,
        batch: &mut Vec<(u64, Event)>,
        skip: bool,
        name: &str,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = batch.iter().map(|(_, e)| e.clone()).collect();
        let lines: Vec<u64> = batch.iter().map(|(l, _)| *l).collect();
        batch.clear();
        match log.append_batch(&events) {
            Ok(r) => {
                self.took(log, r.start, &lines, self.synced_each);
                Ok(())
            }
            Err(e) if refuses_the_record(&e) => {
                for (e, line) in events.iter().zip(&lines) {
                    match log.append(e) {
                        Ok(lsn) => self.took(log, lsn, &[*line], self.synced_each),
                        Err(err) if skip && refuses_the_record(&err) => {
                            let err = err.to_string();
                            eprintln!("auditlog: {name}:{line}: skipped: {}", visible(&err));
                            self.skipped += 1;
                        }
                        Err(Error::NotDurable {
                            first,
                            next,
                            source,
                        }) => {
                            return Err(self.not_durable(log, first, next, source, &[*line], name))
                        }
                        Err(err) => return Err(self.stopped(log, err, name, *line)),
                    }
                }
                Ok(())
            }
            Err(Error::BatchCut {
                first,
                next,
                source,
            }) => {
                let n = (next.0 - first.0) as usize;
                self.took(log, first, &lines[..n], self.synced_each);
                Err(self.stopped(log, *source, name, lines[n]))
            }
            Err(Error::NotDurable {
                first,
                next,
                source,
            }) => Err(self.not_durable(log, first, next, source, &lines, name)),
            Err(e) => Err(self.stopped(log, e, name, lines[0])),
        }
    }

    /// The error of an append of the events on `lines` that wrote
    /// `first..next` (the first of them) but could not sync them.
    fn not_durable(
        &mut self,
        log: &AuditLog,
        first: Lsn,
        next: Lsn,
        source: Box<Error>,
        lines: &[u64],
        name: &str,
    ) -> anyhow::Error {
        let n = (next.0 - first.0) as usize;
        self.took(log, first, &lines[..n], false);
        // The line after the last one written: nothing from there on is in.
        let at = lines.get(n).copied().unwrap_or(lines[n - 1] + 1);
        self.stopped(
            log,
            Error::NotDurable {
                first,
                next,
                source,
            },
            name,
            at,
        )
    }

    /// The error that stops an import at `line`: syncs what is in, if the
    /// log still can, and says what is in and which of it is not durable.
    fn stopped(&self, log: &AuditLog, e: Error, name: &str, line: u64) -> anyhow::Error {
        // What is in is made durable now, if the log still can.
        let synced = log.log().sync().is_ok();
        let done = match (self.first, self.last, self.last_line) {
            (Some(a), Some(b), Some(l)) => {
                let unsynced = match self.not_durable_from(log.log().durable_lsn()) {
                    Some((lsn, from)) if !synced => format!(
                        ", but those from {name}:{from} on (LSN {lsn}..={b}) are not known to be durable (the log could not sync them): they may not survive a crash"
                    ),
                    _ => String::new(),
                };
                format!(
                    "{} events up to {name}:{l} are in the log (LSN {a}..={b}){unsynced}; nothing from line {line} on was appended (rerun with --from-line {line} to go on without duplicates)",
                    self.appended
                )
            }
            _ => format!("nothing from line {line} on was appended"),
        };
        anyhow::Error::new(e).context(format!("{name}:{line}: {done}"))
    }

    fn print(&self, interrupted: bool) {
        let s = if self.appended == 1 { "" } else { "s" };
        match (self.first, self.last) {
            (Some(a), Some(b)) => println!("appended {} event{s}, LSN {a}..={b}", self.appended),
            _ => println!("appended 0 events"),
        }
        if self.skipped > 0 {
            println!("skipped {} invalid records", self.skipped);
        }
        if interrupted {
            println!("interrupted: everything read before the signal was appended");
        }
    }
}

/// Errors that concern the record itself, not the log: nothing was written.
fn refuses_the_record(e: &Error) -> bool {
    matches!(
        e,
        Error::UnknownType { .. }
            | Error::InvalidName { .. }
            | Error::ReservedType { .. }
            | Error::RecordTooLarge { .. }
    )
}

/// The reading thread: parses the input and sends each record.
struct Reader<'a> {
    log: &'a AuditLog,
    /// The reference catalog's name (for "did you mean").
    catalog: &'a str,
    tx: &'a mpsc::SyncSender<Item>,
    /// Go on after an invalid record.
    skip: bool,
    /// Records on lines before this one are passed over (`--from-line`).
    from_line: u64,
}

impl Reader<'_> {
    /// Parses `input` in `format` and sends each record; returns at the end
    /// of the input, after an invalid record unless skipping, or when nobody
    /// listens any more.
    fn parse(&self, format: ImportFormat, input: Box<dyn BufRead + Send>) {
        match format {
            ImportFormat::Jsonl | ImportFormat::SapUme => self.lines(format, input),
            ImportFormat::NetopCsv | ImportFormat::Csv => {
                if let Err(e) = self.csv(format, input) {
                    let _ = self.tx.send((1, 0, Err(format!("{e:#}"))));
                }
            }
        }
    }

    /// Sends `item`; whether to go on.
    fn send(&self, item: Item) -> bool {
        let stop = item.2.is_err() && !self.skip;
        self.tx.send(item).is_ok() && !stop
    }

    fn lines(&self, format: ImportFormat, input: Box<dyn BufRead + Send>) {
        let mut read = 0u64;
        for (i, line) in input.lines().enumerate() {
            let n = i as u64 + 1;
            let item = match line {
                Ok(line) => {
                    read += line.len() as u64 + 1;
                    // A byte-order mark some editors put first is not data.
                    let text = if n == 1 {
                        line.strip_prefix('\u{feff}').unwrap_or(&line)
                    } else {
                        &line
                    };
                    if text.trim().is_empty() || n < self.from_line {
                        continue;
                    }
                    let parsed = match format {
                        ImportFormat::Jsonl => self.json(text),
                        _ => formats::sap::parse_line(text).map_err(|e| e.to_string()),
                    };
                    (n, read, parsed)
                }
                Err(e) => (n, read, Err(format!("cannot read: {e}"))),
            };
            if !self.send(item) {
                return;
            }
        }
    }

    /// One JSON line, with the mistakes people make named as such.
    fn json(&self, line: &str) -> Result<Event, String> {
        if line.trim_start().starts_with('[') {
            return Err("a JSON array: give one JSON object per line (JSON lines; \
                        `jq -c '.[]'` turns an array into them)"
                .into());
        }
        let dflt = |t: &str| self.log.default_severity(t);
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            return Err(format!("not JSON: {e}"));
        }
        json::from_json(line, &dflt).map_err(|e| {
            // No severity and a type nobody knows: most likely a typo in the type.
            let typo = e.field.as_deref() == Some("severity") && e.what.starts_with("missing");
            let typed: Option<String> = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("type")?.as_str().map(String::from));
            match (typo, typed, Catalog::builtin(self.catalog)) {
                (true, Some(t), Some(c)) => {
                    let near = c.closest(&t, 3);
                    format!(
                        "unknown event type {t:?}: catalog {} does not have it{} (give a \
                         \"severity\" to store a type of your own)",
                        self.catalog,
                        if near.is_empty() {
                            String::new()
                        } else {
                            format!("; did you mean {}?", near.join(", "))
                        }
                    )
                }
                _ => e.to_string(),
            }
        })
    }

    /// A Netop report or auditlog's own CSV.
    fn csv(&self, format: ImportFormat, input: Box<dyn BufRead + Send>) -> Result<()> {
        let dflt = |t: &str| self.log.default_severity(t);
        let mut input = input;
        // A byte-order mark before the header is not part of it.
        if input.fill_buf()?.starts_with("\u{feff}".as_bytes()) {
            input.consume(3);
        }
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(input);
        let headers = rdr.headers().context("cannot read the header")?.clone();
        let header: Vec<&str> = headers.iter().collect();
        if format == ImportFormat::Csv {
            formats::events_csv::check_header(&header).map_err(|e| anyhow::anyhow!("{e}"))?;
        } else if header != formats::netop::COLUMNS {
            bail!(
                "the header is not the Netop report's columns ({})",
                formats::netop::COLUMNS.join(",")
            );
        }
        for r in rdr.into_records() {
            let item = match r {
                Ok(rec) => {
                    let pos = rec.position().map_or((0, 0), |p| (p.line(), p.byte()));
                    if pos.0 < self.from_line {
                        continue;
                    }
                    let fields: Vec<&str> = rec.iter().collect();
                    let parsed = if format == ImportFormat::Csv {
                        formats::events_csv::parse_record(&header, &fields, &dflt)
                    } else {
                        formats::netop::parse_record(&fields, &dflt)
                    };
                    let parsed = parsed.map_err(|e| e.to_string());
                    (pos.0, pos.1, parsed)
                }
                Err(e) => (e.position().map_or(0, |p| p.line()), 0, Err(e.to_string())),
            };
            if !self.send(item) {
                break;
            }
        }
        Ok(())
    }
}
