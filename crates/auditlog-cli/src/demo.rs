//! `demo`: a realistic month of audit events, and audit questions answered from it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use auditlog::event::json;
use auditlog::io::{RealFs, Vfs, DEMO_MARKER};
use auditlog::{
    AuditLog, AuditOptions, Catalog, Compaction, Durability, Event, Filter, GroupBy, Lsn, Options,
    Severity, Timestamp,
};
use auditlog_cli::workload::{self, Workload};

use crate::progress;

/// Makes `dir` ready for a new demo log: creates it if missing, takes it if
/// empty, and empties it only if an earlier demo created it (its `DEMO`
/// marker) and no process holds its lock. Anything else is refused, and
/// nothing is changed.
fn prepare_dir(dir: &Path) -> Result<()> {
    let choose = "nothing was changed; choose another directory with --dir";
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot list {}", dir.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Vec::new()
        }
        Err(e) => {
            return Err(e).with_context(|| format!("{} cannot be read; {choose}", dir.display()))
        }
    };
    let marker = dir.join(DEMO_MARKER);
    if !names.is_empty() {
        let is_demo = std::fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file());
        anyhow::ensure!(
            is_demo,
            "{} is not empty and was not created by `auditlog demo` (it holds {}); {choose}",
            dir.display(),
            shown_names(&names)
        );
        // The lock is held on the directory for as long as the old files go.
        let owner = format!("pid {} (auditlog demo)\n", std::process::id());
        let lock = RealFs
            .try_lock(dir, &owner)
            .with_context(|| format!("cannot lock {}", dir.display()))?;
        anyhow::ensure!(
            lock.is_some(),
            "{} is an earlier demo log, but another process is writing to it; {choose}",
            dir.display()
        );
        for name in &names {
            let path = dir.join(name);
            let removed = if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    std::fs::write(
        &marker,
        "created by `auditlog demo`: it replaces this directory's log\n",
    )
    .with_context(|| format!("cannot write {}", marker.display()))
}

/// At most five names, for a message.
fn shown_names(names: &[String]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort();
    let mut text = sorted
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if sorted.len() > 5 {
        text.push_str(&format!(" and {} more", sorted.len() - 5));
    }
    text
}

pub(crate) fn demo(dir: &Path, events: u64) -> Result<ExitCode> {
    prepare_dir(dir)?;
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
        // Small segments and manual compaction, so the demo can show a log
        // answered by scanning and then through the compacted index.
        log: Options::default()
            .durability(Durability::Buffered)
            .segment_bytes(16 << 20)
            .compaction(Compaction::Manual),
        catalog: Catalog::builtin("filetransfer-2.0"),
        strict: true,
        app_version: Some("2.0".into()),
        ..Default::default()
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
    // First as written: every question reads the raw segments (their in-memory
    // index is built by the first).
    let mut scan_ms = Vec::new();
    for (_, filter, _) in &questions {
        let t = Instant::now();
        let n = log
            .query(filter, false)
            .try_fold(0u64, |n, r| r.map(|_| n + 1))?;
        scan_ms.push((n, t.elapsed().as_secs_f64() * 1e3));
    }
    let r = log.log().compact()?;
    let compacted: u64 = log.log().compacted_segments().iter().map(|c| c.bytes).sum();
    println!(
        "Compacted {} sealed segments ({} events) in {:.2} s ({:.0} events/s): {:.1} bytes per event, index included (the active segment stays raw)",
        r.segments,
        r.records,
        r.elapsed.as_secs_f64(),
        r.records as f64 / r.elapsed.as_secs_f64().max(1e-9),
        compacted as f64 / r.records.max(1) as f64
    );
    println!();
    for ((title, filter, group), (scan_n, scan)) in questions.into_iter().zip(scan_ms) {
        let t = Instant::now();
        let mut q = log.query_explained(&filter, false);
        let found: Vec<(Lsn, Event)> = q.by_ref().collect::<Result<_, _>>()?;
        let took = t.elapsed();
        let (read, total) = q.explain().map_or((0, 0), |e| e.blocks());
        anyhow::ensure!(
            scan_n == found.len() as u64,
            "the index and the scan disagree"
        );
        println!(
            "{title}: {} events, answered in {:.1} ms (read {read} of {total} compressed blocks; {scan:.1} ms before compaction, from the raw segments and their in-memory index)",
            found.len(),
            took.as_secs_f64() * 1e3
        );
        // Groups are counted inside the engine (the index, or the columns).
        let top = |by: GroupBy, n: usize| -> Result<()> {
            let t = Instant::now();
            let agg = log.aggregate(&filter, &[by], Some(n))?;
            anyhow::ensure!(
                agg.total == found.len() as u64,
                "the count and the query disagree"
            );
            for g in &agg.groups {
                println!("  {:>7}  {}", g.count, g.key[0]);
            }
            println!(
                "  (top {n} by {}, counted in the engine in {:.1} ms)",
                by.name(),
                t.elapsed().as_secs_f64() * 1e3
            );
            Ok(())
        };
        match group {
            Some(g) => top(g, 5)?,
            None if title.starts_with("Quarantined") => {
                top(GroupBy::Day, 3)?;
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
