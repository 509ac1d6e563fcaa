//! `append` and `import`: reading events in a format and appending them in batches.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use auditlog::event::json;
use auditlog::{AuditLog, AuditOptions, Durability, Event, Lsn, Options};
use auditlog_cli::formats;

use crate::{builtin, progress, DurabilityArg, ImportFormat, IngestArgs};

/// Reads events in `format` and appends them in batches. Stops at the first
/// invalid record (unless skipping), after appending everything before it.
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
    let opts = AuditOptions {
        log: Options::default().durability(durability),
        catalog: Some(builtin(&how.catalog)?),
        strict: how.strict,
        app_version: how.app_version.clone(),
        retention: Default::default(),
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
