//! `stats`, `verify` and `catalog`: reports about a log and the catalogs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use auditlog::{Filter, GroupBy, GroupValue, Timestamp};
use indicatif::ProgressBar;

use auditlog_cli::terminal::visible;

use crate::output::grouped;
use crate::{builtin, open_read, CatalogCommand};

pub(crate) fn stats(dir: &Path, catalog: &str) -> Result<ExitCode> {
    let catalog = builtin(catalog)?;
    let log = open_read(dir)?;
    // Counted in the engine, from the index where it can.
    let all = Filter::default();
    let agg = log.aggregate(&all, &[GroupBy::Type, GroupBy::Severity], None)?;
    let mut per_type = BTreeMap::new();
    let mut per_sev = BTreeMap::new();
    for g in &agg.groups {
        *per_type.entry(g.key[0].to_string()).or_insert(0u64) += g.count;
        if let GroupValue::Severity(s) = g.key[1] {
            *per_sev.entry(s).or_insert(0u64) += g.count;
        }
    }
    let n = agg.total;
    let first = log.query(&all, false).next().transpose()?;
    let last = log.query(&all, true).next().transpose()?;
    let (tmin, tmax) = (first.map(|(_, e)| e.time), last.map(|(_, e)| e.time));
    let raw = log.log().raw_segments();
    let compacted = log.log().compacted_segments();
    let raw_alloc: u64 = raw.iter().map(|r| r.2).sum();
    let raw_used: u64 = raw.iter().map(|r| r.3).sum();
    let c_bytes: u64 = compacted.iter().map(|c| c.bytes).sum();
    let c_index: u64 = compacted.iter().map(|c| c.index_bytes).sum();
    let c_raw: u64 = compacted.iter().map(|c| c.raw_bytes).sum();
    let c_records: u64 = compacted.iter().map(|c| c.records).sum();
    println!("events      {n}");
    println!(
        "segments    {} raw ({raw_alloc} bytes allocated, {raw_used} used by records), {} compacted",
        raw.len(),
        compacted.len()
    );
    if !compacted.is_empty() {
        println!(
            "compacted   {c_records} events in {c_bytes} bytes ({:.1} bytes/event), index {c_index} bytes ({:.2}%), {c_raw} bytes uncompressed: ratio {:.1}x",
            c_bytes as f64 / c_records.max(1) as f64,
            c_index as f64 * 100.0 / c_bytes.max(1) as f64,
            c_raw as f64 / c_bytes.max(1) as f64,
        );
    }
    println!(
        "LSNs        {}..{}",
        log.log().first_lsn(),
        log.log().next_lsn()
    );
    if let (Some(a), Some(b)) = (tmin, tmax) {
        println!("time        {a} .. {b} (first and last event)");
    }
    println!("by severity");
    for (s, c) in &per_sev {
        println!("  {:<10} {c}", s.as_str());
    }
    println!("by type");
    for (t, c) in grouped(per_type) {
        println!("  {:<40} {c}", visible(&t));
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
    Ok(crate::finish(&log))
}

pub(crate) fn compact(
    dir: &Path,
    retention: auditlog::Retention,
    dry_run: bool,
    key: Option<&Path>,
) -> Result<ExitCode> {
    let opts = auditlog::AuditOptions {
        log: auditlog::Options::default()
            .compaction(auditlog::Compaction::Manual)
            .read_only(dry_run),
        catalog: auditlog::Catalog::builtin("filetransfer-2.0"),
        retention,
        seal_key: crate::seal_key(key)?,
        ..Default::default()
    };
    if !dir.is_dir() {
        bail!("cannot open {}: no such directory", dir.display());
    }
    let log = auditlog::AuditLog::open(dir, opts)
        .with_context(|| format!("cannot open {}", dir.display()))?;
    if dry_run {
        let plan = log.retention_plan_at(Timestamp::now())?;
        // No writer has the log open (this one holds its lock), so the
        // active segment is sealed and compacted too.
        let raw = log.log().raw_segments();
        let with_records = raw.iter().filter(|s| s.3 > 0).count();
        if with_records > 0 {
            println!("{with_records} raw segments would be compacted first (not counted below)");
        }
        for r in &plan {
            println!(
                "would remove segment {} (LSNs {}..={}, {} events, {} bytes): {}",
                r.segment, r.lsns.0, r.lsns.1, r.records, r.bytes, r.policy
            );
        }
        if plan.is_empty() {
            println!("retention would remove nothing");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut owed = Vec::new();
    let spinner = ProgressBar::new_spinner().with_message("compacting");
    spinner.enable_steady_tick(Duration::from_millis(100));
    // This command holds the log's lock, so no writer is appending: the
    // active segment is sealed and compacted with the rest (a new, small
    // one takes the next append).
    let r = match log.log().seal() {
        Ok(_) | Err(auditlog::Error::StorageFull { .. }) => log.log().compact(),
        Err(e) => Err(e),
    };
    spinner.finish_and_clear();
    // On a full disk compaction cannot write; retention is how space comes
    // back, so it runs anyway, and compaction is tried again after it.
    let r = match r {
        Err(auditlog::Error::StorageFull { .. }) => {
            println!("the disk is full: applying retention before compacting");
            print_removals(&log.apply_retention()?, &mut owed);
            log.log().compact()?
        }
        other => other?,
    };
    if r.segments == 0 {
        println!("nothing to compact");
    } else {
        let secs = r.elapsed.as_secs_f64();
        println!(
            "compacted {} segments, {} events in {:.2} s ({:.0} events/s)",
            r.segments,
            r.records,
            secs,
            r.records as f64 / secs.max(1e-9)
        );
        println!(
            "  {} bytes of records -> {} bytes ({:.1} bytes/event, index {} bytes); {} bytes of segment files freed",
            r.raw_data_bytes,
            r.compacted_bytes,
            r.compacted_bytes as f64 / r.records.max(1) as f64,
            r.index_bytes,
            r.raw_file_bytes.saturating_sub(r.compacted_bytes)
        );
    }
    print_removals(&log.apply_retention()?, &mut owed);
    if !owed.is_empty() {
        println!(
            "{} removals are not recorded yet: there is no room for their markers",
            owed.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what retention removed; a removal printed before while its marker
/// was owed (`owed`) is now only said to be recorded.
fn print_removals(removals: &[auditlog::Removal], owed: &mut Vec<auditlog::SegmentId>) {
    for removed in removals {
        if let Some(i) = owed.iter().position(|&s| s == removed.segment) {
            owed.remove(i);
            println!(
                "the removal of segment {} is recorded as LSN {}",
                removed.segment, removed.marker
            );
            continue;
        }
        if removed.marker.0 == 0 {
            owed.push(removed.segment);
        }
        let recorded = match removed.marker.0 {
            0 => "the disk is full: its marker is written as soon as there is room".to_string(),
            lsn => format!("recorded as LSN {lsn}"),
        };
        println!(
            "retention removed segment {} (LSNs {}..={}, {} events, {} bytes): {}; {recorded}",
            removed.segment,
            removed.lsns.0,
            removed.lsns.1,
            removed.records,
            removed.bytes,
            removed.policy,
        );
    }
}

/// Exit status when a sealed log shows tampering.
const TAMPER_STATUS: u8 = 4;

pub(crate) fn verify(
    dir: &Path,
    anchors: &[PathBuf],
    pubkey: Option<&Path>,
    require_sealed: bool,
) -> Result<ExitCode> {
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
        println!("DAMAGE: {}", visible(&d.to_string()));
    }
    // The catalog: every record naming a type or key agrees with CATALOG.
    let catalog = log.verify_catalog().context("verify the catalog")?;
    for p in &catalog {
        println!("DAMAGE: {}: {}", dir.join("CATALOG").display(), visible(p));
    }
    let damaged = !(r.damage.is_empty() && catalog.is_empty());
    // The seal: against the checkpoints in the log and the anchors given.
    let mut check = auditlog::SealCheck {
        require_sealed,
        ..Default::default()
    };
    for a in anchors {
        let text = std::fs::read_to_string(a)
            .with_context(|| format!("cannot read the anchor {}", a.display()))?;
        check.anchors.push((a.display().to_string(), text));
    }
    if let Some(p) = pubkey {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the public key {}", p.display()))?;
        check.key = Some(
            auditlog::SealVerifier::from_text(&text)
                .with_context(|| format!("{} is not a public key", p.display()))?,
        );
    }
    let spinner = ProgressBar::new_spinner().with_message("checking the seal");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let seal = log.verify_seal(&check).context("check the seal");
    spinner.finish_and_clear();
    let seal = seal?;
    match &seal.key {
        None if seal.problems.is_empty() => println!("not sealed (`auditlog keygen` seals a log)"),
        None => {}
        Some(k) => println!(
            "sealed with key {}: {} checkpoints; records LSN 1..={} as signed ({} hashed again)",
            visible(k),
            seal.checkpoints,
            seal.sealed,
            seal.records_hashed
        ),
    }
    if let Some((a, b, events)) = seal.unsealed.filter(|u| u.2 > 0) {
        println!("not sealed yet: records LSN {a}..={b} ({events} events) come after the newest checkpoint");
    }
    for n in &seal.notes {
        println!("note: {}", visible(n));
    }
    for d in &seal.damage {
        println!("DAMAGE: {}", visible(d));
    }
    for p in &seal.problems {
        println!("TAMPERED: {}", visible(p));
    }
    if seal.is_tampered() {
        Ok(ExitCode::from(TAMPER_STATUS))
    } else if damaged || !seal.damage.is_empty() {
        Ok(ExitCode::FAILURE)
    } else {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    }
}

/// `auditlog keygen`: a new signing key for the log in `dir`, kept in the
/// directory (or at `key`), and its public half in the directory.
pub(crate) fn keygen(dir: &Path, key: Option<&Path>, name: Option<String>) -> Result<ExitCode> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pubkey = dir.join("PUBKEY");
    if pubkey.exists() {
        let old = std::fs::read_to_string(&pubkey).unwrap_or_default();
        bail!(
            "{} is sealed already, with key {}",
            dir.display(),
            visible(old.trim())
        );
    }
    let name = name.unwrap_or_else(|| {
        let base = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .or_else(|| {
                let d = dir.canonicalize().ok()?;
                d.file_name().map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "log".into());
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_whitespace() || c == '+' || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        format!("auditlog.{base}")
    });
    let k = auditlog::SealKey::generate(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = key.map_or_else(|| dir.join("KEY"), Path::to_path_buf);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("cannot create the key file {}", key_path.display()))?;
    f.write_all(format!("{}\n", k.to_text()).as_bytes())?;
    f.sync_all()?;
    let public = format!("{}\n", k.verifier());
    std::fs::write(&pubkey, &public)
        .with_context(|| format!("cannot write {}", pubkey.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    print!("{public}");
    eprintln!(
        "auditlog: the signing key is in {} (mode 0600); keep a copy of the public key above \
         away from the log: `verify --pubkey` trusts it, not the log's own PUBKEY",
        key_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `auditlog anchor`: the newest signed checkpoint, as text to keep elsewhere.
pub(crate) fn anchor(dir: &Path) -> Result<ExitCode> {
    let log = open_read(dir)?;
    match log.newest_checkpoint()? {
        Some(note) => {
            print!("{note}");
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "{} has no checkpoint yet (is it sealed? `auditlog keygen` seals a log)",
            dir.display()
        ),
    }
}

/// Opens the log in `Repair` mode: damaged ranges go to `QUARANTINE`, a
/// damaged `CATALOG` is rebuilt from the log; then says what was kept and
/// dropped, and checks that the log now opens `Strict`.
pub(crate) fn repair(dir: &Path, key: Option<&Path>) -> Result<ExitCode> {
    if !dir.is_dir() {
        bail!("cannot repair {}: no such directory", dir.display());
    }
    let opts = auditlog::AuditOptions {
        log: auditlog::Options::default()
            .recovery(auditlog::RecoveryMode::Repair)
            .check_sealed(true)
            .compaction(auditlog::Compaction::Manual),
        seal_key: crate::seal_key(key)?,
        ..Default::default()
    };
    let log = auditlog::AuditLog::open(dir, opts)
        .with_context(|| format!("cannot repair {}", dir.display()))?;
    let report = log.log().recovery_report().clone();
    for c in &report.repaired {
        println!("dropped: {}", visible(&c.to_string()));
    }
    if report.torn_tail_bytes > 0 {
        println!(
            "cleared a torn tail of {} bytes (a write cut short by a crash; never acknowledged as durable)",
            report.torn_tail_bytes
        );
    }
    if let Some(why) = &log.catalog_report().rebuilt {
        println!("rebuilt CATALOG from the log: {}", visible(why));
    }
    let problems = log.verify_catalog().context("check the catalog")?;
    if !problems.is_empty() {
        for p in &problems {
            println!("CATALOG: {}", visible(p));
        }
        log.rebuild_catalog().context("rebuild CATALOG")?;
        println!("rebuilt CATALOG from the log");
    }
    let kept = log
        .query(&Filter::default(), false)
        .count_matches()
        .context("count the events kept")?;
    let lsns = (log.log().first_lsn(), log.log().next_lsn());
    drop(log);
    // The proof: a Strict open that checks every sealed segment and block.
    let strict = auditlog::AuditOptions {
        log: auditlog::Options::default()
            .check_sealed(true)
            .compaction(auditlog::Compaction::Manual),
        ..Default::default()
    };
    auditlog::AuditLog::open(dir, strict).with_context(|| {
        format!(
            "{} still does not open Strict after the repair",
            dir.display()
        )
    })?;
    println!(
        "kept {kept} events (LSN {}..{}); {} damaged range{} dropped; the log opens Strict",
        lsns.0,
        lsns.1,
        report.repaired.len(),
        if report.repaired.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
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
            let m = auditlog::catalog::ocsf::mapping(&t.name);
            println!(
                "ocsf         {} {} / {} {} (type_uid {}){}",
                m.class_uid,
                m.class_name,
                m.activity_id,
                m.activity_name,
                m.type_uid(),
                if m.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.note)
                }
            );
        }
        CatalogCommand::Ocsf => print!("{}", auditlog_cli::formats::ocsf::mapping_table()),
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

/// `auditlog prove`: the inclusion proof of one event.
pub(crate) fn prove(dir: &Path, lsn: u64) -> Result<ExitCode> {
    let log = open_read(dir)?;
    let proof = log
        .prove(auditlog::Lsn(lsn))
        .with_context(|| format!("cannot prove LSN {lsn}"))?;
    print!("{}", proof.to_text());
    Ok(ExitCode::SUCCESS)
}

/// `auditlog verify-proof`: checks a proof with a trusted public key.
pub(crate) fn verify_proof(proof: &Path, pubkey: &Path) -> Result<ExitCode> {
    let text = if proof == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(proof)
            .with_context(|| format!("cannot read {}", proof.display()))?
    };
    let key = std::fs::read_to_string(pubkey)
        .with_context(|| format!("cannot read the public key {}", pubkey.display()))?;
    let key = auditlog::SealVerifier::from_text(&key)
        .with_context(|| format!("{} is not a public key", pubkey.display()))?;
    let p = auditlog::InclusionProof::from_text(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    match p.verify(&key) {
        Ok(cp) => {
            println!(
                "ok: record LSN {} is in log {} as of its checkpoint of {} records, signed by {}",
                p.lsn,
                visible(&cp.origin),
                cp.size,
                key.name()
            );
            if let Some(e) = &p.event {
                println!(
                    "event (as the log names it; the proof covers its encoded bytes): {}",
                    visible(e)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("TAMPERED: {}", visible(&e.to_string()));
            Ok(ExitCode::from(TAMPER_STATUS))
        }
    }
}
