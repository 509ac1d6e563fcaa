//! `stats`, `verify` and `catalog`: reports about a log and the catalogs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use auditlog::{Filter, Timestamp};
use indicatif::ProgressBar;

use crate::output::grouped;
use crate::{builtin, open_read, CatalogCommand};

pub(crate) fn stats(dir: &Path, catalog: &str) -> Result<ExitCode> {
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

pub(crate) fn verify(dir: &Path) -> Result<ExitCode> {
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

pub(crate) fn catalog(cmd: CatalogCommand) -> Result<ExitCode> {
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
