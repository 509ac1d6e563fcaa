//! Checking a log against its checkpoints and external anchors: every
//! record is hashed again (on every core), the roots at each checkpoint's
//! size are recomputed and compared with what was signed, and the log's end
//! with the largest size any checkpoint or anchor vouches for.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::note::{Checkpoint, SignedNote, Verifier};
use super::sealer::{notes_in_log, origin};
use super::store::{self, CHECKPOINTS_FILE, PUBKEY_FILE, TREE_FILE};
use super::tree::{leaf_hash, Frontier, Hash, BLOCK, BLOCK_LEVEL};
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::event::codec::{self, EventRef, TextField};
use crate::event::reserved::{engine_type_id, CHECKPOINT, RETENTION_APPLIED};
use crate::query::Prefilter;
use crate::Lsn;

/// What [`AuditLog::verify_seal`](crate::AuditLog::verify_seal) checks
/// against.
#[derive(Debug, Clone, Default)]
pub struct SealCheck {
    /// Checkpoints kept outside the log (signed note texts, as `auditlog
    /// anchor` prints them), with where each came from (for messages).
    pub anchors: Vec<(String, String)>,
    /// The public key to trust; the log's `PUBKEY` if `None` (an attacker
    /// who can write the log can replace that one: give yours).
    pub key: Option<Verifier>,
    /// Fail on records after the newest checkpoint (else they are reported).
    pub require_sealed: bool,
}

/// What [`AuditLog::verify_seal`](crate::AuditLog::verify_seal) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TamperReport {
    /// The key checkpoints were checked with (`None`: the log is not sealed).
    pub key: Option<String>,
    /// Valid checkpoints found (in `CHECKPOINTS` and in the log).
    pub checkpoints: usize,
    /// Records hashed again.
    pub records_hashed: u64,
    /// The largest checked size: records LSN 1..=`sealed` are as signed.
    pub sealed: u64,
    /// Records after the newest checkpoint: (first LSN, last LSN, events
    /// among them that are not checkpoints).
    pub unsealed: Option<(Lsn, Lsn, u64)>,
    /// Evidence of tampering: each names the file or LSNs.
    pub problems: Vec<String>,
    /// Files of the seal that fail their own checksums (damage, as a disk
    /// makes it): what they held is not used, and what needed it is noted.
    pub damage: Vec<String>,
    /// What could not be checked, and other facts worth saying.
    pub notes: Vec<String>,
}

impl TamperReport {
    /// Whether anything shows the log was changed, cut or re-signed.
    pub fn is_tampered(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// A checkpoint found somewhere, and where.
struct Found {
    at: String,
    cp: Checkpoint,
    /// The LSN of the record it was written in (checkpoints in the log).
    lsn: Option<u64>,
}

/// Checks the log of `shared`; `key_name` names attribute key ids (the
/// log's catalog), for retention markers.
pub(crate) fn verify(
    shared: &Arc<Shared>,
    check: &SealCheck,
    key_name: &dyn Fn(u32) -> Option<String>,
) -> Result<TamperReport> {
    let mut report = TamperReport::default();
    let (vfs, dir) = (shared.vfs(), shared.dir().to_path_buf());
    let read = |name: &str| {
        store::read(&*vfs, &dir, name).map_err(|e| Error::io("read", dir.join(name), e))
    };
    let mut log_id = shared.log_id();
    if shared.log_id_partial() {
        // No raw segment is left to hold the identity: the one the seal
        // files name, if the compacted segments carry its low 32 bits, so
        // that what is missing is told rather than "another log".
        let named = read(CHECKPOINTS_FILE)?
            .as_deref()
            .and_then(store::checkpoints_log_id);
        if let Some(named) = named.filter(|&id| id as u32 == log_id as u32) {
            report.notes.push(format!(
                "no raw segment is left to hold the log's identity (deleted): checked as \
                 log {named:032x}, which {CHECKPOINTS_FILE} names and the compacted \
                 segments end in"
            ));
            log_id = named;
        }
    }
    let end = shared.refreshed_end()?.saturating_sub(1);
    let first = shared.first_lsn().0.max(1);
    let key = match &check.key {
        Some(k) => Some(k.clone()),
        None => match read(PUBKEY_FILE)? {
            Some(b) => match Verifier::from_text(&String::from_utf8_lossy(&b)) {
                Ok(v) => Some(v),
                Err(e) => {
                    report
                        .problems
                        .push(format!("{}: {e}", dir.join(PUBKEY_FILE).display()));
                    None
                }
            },
            None => None,
        },
    };
    report.key = key.as_ref().map(|k| k.to_string());

    // Every checkpoint: the file's, the log's, the anchors.
    let mut notes: Vec<(String, String, Option<u64>)> = Vec::new();
    // Whether CHECKPOINTS was there and read whole.
    let mut file_read = false;
    match read(CHECKPOINTS_FILE)? {
        Some(bytes) => match store::decode_checkpoints(&bytes, log_id) {
            Ok((ns, _)) => {
                file_read = true;
                for (i, n) in ns.into_iter().enumerate() {
                    notes.push((format!("{CHECKPOINTS_FILE} entry {}", i + 1), n, None));
                }
            }
            Err(e) => seal_file_error(&mut report, &dir, e),
        },
        None if key.is_some() => report.notes.push(format!("{CHECKPOINTS_FILE} is missing")),
        None => {}
    }
    let ckpt_id = engine_type_id(CHECKPOINT).expect("an engine type");
    for (lsn, note) in notes_in_log(shared)? {
        match note {
            Some(n) => notes.push((format!("checkpoint record LSN {lsn}"), n, Some(lsn.0))),
            None => report
                .problems
                .push(format!("checkpoint record LSN {lsn}: not a checkpoint")),
        }
    }
    for (from, text) in &check.anchors {
        notes.push((format!("anchor {from}"), text.clone(), None));
    }
    let want_origin = origin(log_id);
    let mut found: Vec<Found> = Vec::new();
    for (at, text, lsn) in notes {
        let Some(key) = &key else {
            report.problems.push(format!(
                "{at}: a checkpoint, but the log has no {PUBKEY_FILE} to check it with (give the public key)"
            ));
            continue;
        };
        let note = match SignedNote::parse(&text) {
            Ok(n) => n,
            Err(e) => {
                report.problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        if !note.verified_by(key) {
            report.problems.push(format!(
                "{at}: its signature does not verify with key {} (signed by {}): re-signed or altered",
                key.name(),
                note.signatures.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        let cp = match Checkpoint::from_body(&note.text) {
            Ok(c) => c,
            Err(e) => {
                report.problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        if cp.origin != want_origin {
            report.problems.push(format!(
                "{at}: a checkpoint of {}, not of this log ({want_origin})",
                cp.origin
            ));
            continue;
        }
        if let Some(l) = lsn {
            if cp.size >= l {
                report.problems.push(format!(
                    "{at}: covers {} records, more than came before it",
                    cp.size
                ));
                continue;
            }
        }
        found.push(Found { at, cp, lsn });
    }
    report.checkpoints = found.iter().filter(|f| !f.at.starts_with("anchor")).count();

    // The sealer writes each checkpoint to CHECKPOINTS, then into the log:
    // one missing from either was removed (but for the newest of the file,
    // whose record a crash may have kept from the log).
    let in_file: Vec<&Found> = found
        .iter()
        .filter(|f| f.at.starts_with(CHECKPOINTS_FILE))
        .collect();
    let in_records: Vec<&Found> = found.iter().filter(|f| f.lsn.is_some()).collect();
    if file_read {
        for r in &in_records {
            if !in_file.iter().any(|f| f.cp == r.cp) {
                report.problems.push(format!(
                    "{}: a checkpoint of {} records that {CHECKPOINTS_FILE} does not hold (an entry was removed)",
                    r.at, r.cp.size
                ));
            }
        }
        for (i, f) in in_file.iter().enumerate() {
            if !in_records.iter().any(|r| r.cp == f.cp) {
                // Its record comes after the records it covers: one covering
                // less than the pruned prefix may have gone with it.
                if f.cp.size + 1 < first {
                    continue;
                }
                if i + 1 == in_file.len() && f.cp.size <= end {
                    report.notes.push(format!(
                        "{}: the newest checkpoint has no record in the log (a crash before it was written)",
                        f.at
                    ));
                } else {
                    report.problems.push(format!(
                        "{}: a checkpoint of {} records whose record is not in the log (removed)",
                        f.at, f.cp.size
                    ));
                }
            }
        }
    }

    // Forks and rollbacks among the log's own checkpoints.
    let mut by_size: BTreeMap<u64, (&Found, Hash)> = BTreeMap::new();
    let mut prev: Option<&Found> = None;
    for f in found.iter().filter(|f| f.lsn.is_some()) {
        if let Some(p) = prev {
            if f.cp.size < p.cp.size {
                report.problems.push(format!(
                    "{}: rolls back to {} records after {} said {}",
                    f.at, f.cp.size, p.at, p.cp.size
                ));
            }
        }
        prev = Some(f);
    }
    for f in &found {
        match by_size.get(&f.cp.size) {
            Some((g, root)) if *root != f.cp.root => report.problems.push(format!(
                "{} and {}: two different roots for the first {} records (a fork)",
                g.at, f.at, f.cp.size
            )),
            Some(_) => {}
            None => {
                by_size.insert(f.cp.size, (f, f.cp.root));
            }
        }
    }
    if key.is_none() && found.is_empty() {
        report
            .notes
            .push("the log is not sealed (no PUBKEY, no checkpoint)".into());
        return Ok(report);
    }

    // The end: nothing vouched for may be missing.
    if let Some((&max, (f, _))) = by_size.iter().next_back() {
        if max > end {
            report.problems.push(format!(
                "the log ends at LSN {end}; {} says {max}: {} records missing at the end",
                f.at,
                max - end
            ));
        }
    }
    // A pruned prefix must have been pruned by retention.
    if first > 1 {
        let ret = engine_type_id(RETENTION_APPLIED).expect("an engine type");
        let mut covered = 0u64;
        for r in shared.records(Lsn(0), Arc::new(Prefilter::engine_type(ret))) {
            let r = r?;
            // The marker's text says `… (LSNs A..=B, …`: B is the last removed.
            if let Ok(e) = EventRef::parse(r.payload()) {
                if e.type_id != ret {
                    continue;
                }
                if let Some(text) = e.text(TextField::Data) {
                    if let Some(last) = text
                        .split("..=")
                        .nth(1)
                        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|d| d.parse::<u64>().ok())
                    {
                        covered = covered.max(last);
                    }
                }
            }
        }
        if covered + 1 < first {
            report.problems.push(format!(
                "records LSN {}..={} are gone and no retention record says they were removed",
                covered + 1,
                first - 1
            ));
        }
    }

    // Hash every record again: the blocks wholly present, on every core.
    let tree = match read(TREE_FILE)? {
        Some(b) => match store::decode_tree(&b, log_id) {
            Ok((t, _)) => t,
            Err(e) => {
                seal_file_error(&mut report, &dir, e);
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let first_block = (first - 1).div_ceil(BLOCK); // first block with every leaf present
    let whole_blocks = end / BLOCK;
    let (hashed, gaps) = hash_blocks(shared, first_block, whole_blocks)?;
    report.records_hashed = (whole_blocks.saturating_sub(first_block)) * BLOCK;
    for g in gaps {
        report.problems.push(g);
    }
    let mut blocks: Vec<Option<Hash>> = vec![None; whole_blocks as usize];
    for (b, h) in (0..first_block).zip(tree.iter()) {
        blocks[b as usize] = Some(*h);
    }
    // The tree retention recorded at the prefix it removed: its edge must be
    // what TREE's hashes of those records make.
    if let Some((size, root, edge)) = newest_retention_tree(shared, key_name)? {
        if edge.root() != root || edge.size() != size {
            report.problems.push(format!(
                "the newest retention marker's tree of {size} records does not hash to the root it records"
            ));
        }
        let mut at = 0u64;
        for &(level, hash) in edge.peaks() {
            if level >= BLOCK_LEVEL {
                let (a, n) = ((at / BLOCK) as usize, 1usize << (level - BLOCK_LEVEL));
                if let Some(blocks) = tree.get(a..a + n) {
                    if super::tree::root_of(blocks) != hash {
                        report.problems.push(format!(
                            "{}: the hashes of records LSN {}..={} (removed by retention) are not those retention recorded",
                            dir.join(TREE_FILE).display(),
                            at + 1,
                            at + (1u64 << level)
                        ));
                    }
                }
            }
            at += 1u64 << level;
        }
    }
    let mut changed = Vec::new();
    for (i, h) in hashed.iter().enumerate() {
        let b = first_block as usize + i;
        blocks[b] = Some(*h);
        if let Some(t) = tree.get(b) {
            if t != h {
                changed.push(b as u64);
            }
        }
    }

    // The roots at every checked size.
    let mut frontier = Frontier::new();
    let mut at_block = 0u64;
    let mut sealed = 0;
    for (&size, (f, root)) in &by_size {
        if size > end {
            continue;
        }
        let whole = size / BLOCK;
        let mut missing = false;
        while at_block < whole {
            match blocks[at_block as usize] {
                Some(h) => frontier.push_subtree(BLOCK_LEVEL, h),
                None => {
                    missing = true;
                    break;
                }
            }
            at_block += 1;
        }
        if missing {
            report.notes.push(format!(
                "{}: records before LSN {} are pruned and {TREE_FILE} lacks their hashes: not checked",
                f.at,
                (at_block + 1) * BLOCK
            ));
            break;
        }
        let mut partial = frontier.clone();
        let from = whole * BLOCK + 1;
        if from <= size {
            if from < first {
                report.notes.push(format!(
                    "{}: records LSN {from}..{first} are pruned: not checked",
                    f.at
                ));
                continue;
            }
            for r in shared.records(Lsn(from), Arc::new(Prefilter::default())) {
                let r = r?;
                if r.lsn().0 > size {
                    break;
                }
                partial.push(leaf_hash(r.lsn().0, r.payload()));
                report.records_hashed += 1;
            }
        }
        if partial.size() != size {
            report.problems.push(format!(
                "{}: records LSN {}..={size} are missing",
                f.at,
                partial.size() + 1
            ));
            continue;
        }
        if partial.root() != *root {
            // Where: the first whole block whose hash is not the one the
            // sealer wrote, else the records past the last whole block.
            let hint = match changed.iter().find(|&&b| b < whole) {
                Some(b) => format!(
                    "; the records of LSN {}..={} differ from when they were sealed",
                    b * BLOCK + 1,
                    (b + 1) * BLOCK
                ),
                None if from <= size => {
                    format!("; the change is among records LSN {from}..={size}")
                }
                None => String::new(),
            };
            report.problems.push(format!(
                "{}: records LSN 1..={size} do not hash to the root it signed: changed after they were sealed{hint}",
                f.at
            ));
        } else {
            sealed = sealed.max(size);
        }
    }
    report.sealed = sealed;
    if !changed.is_empty() && report.problems.is_empty() {
        report.problems.push(format!(
            "{}: the hash of records LSN {}..={} is not the one the sealer wrote",
            dir.join(TREE_FILE).display(),
            changed[0] * BLOCK + 1,
            (changed[0] + 1) * BLOCK
        ));
    }
    if key.is_some() && found.iter().all(|f| f.at.starts_with("anchor")) && end >= first {
        report.problems.push(format!(
            "the log is sealed ({PUBKEY_FILE}) but holds no checkpoint: its checkpoints were removed"
        ));
    }

    // What came after the newest checkpoint.
    let newest = by_size.keys().next_back().copied().unwrap_or(0).min(end);
    if newest < end {
        let mut events = 0;
        for r in shared.records(Lsn(newest + 1), Arc::new(Prefilter::default())) {
            let r = r?;
            if codec::peek_type_severity(r.payload()).is_none_or(|(t, _)| t != ckpt_id) {
                events += 1;
            }
        }
        report.unsealed = Some((Lsn(newest + 1), Lsn(end), events));
        if check.require_sealed && events > 0 {
            report.problems.push(format!(
                "records LSN {}..={end} ({events} events) are not sealed by any checkpoint",
                newest + 1
            ));
        }
    }
    Ok(report)
}

/// The tree the newest retention marker recorded: (size, root, edge).
fn newest_retention_tree(
    shared: &Arc<Shared>,
    key_name: &dyn Fn(u32) -> Option<String>,
) -> Result<Option<(u64, Hash, Frontier)>> {
    use base64::Engine as _;
    let id = engine_type_id(RETENTION_APPLIED).expect("an engine type");
    let mut newest = None;
    for r in shared.records(Lsn(0), Arc::new(Prefilter::engine_type(id))) {
        let r = r?;
        let Ok(e) = EventRef::parse(r.payload()) else {
            continue;
        };
        if e.type_id != id {
            continue;
        }
        let get = |name: &str| {
            e.attrs()
                .find(|(k, _)| key_name(*k).as_deref() == Some(name))
                .map(|(_, v)| v.to_string())
        };
        let tree = (|| {
            let size = get("tree_size")?.parse().ok()?;
            let root: Hash = base64::engine::general_purpose::STANDARD
                .decode(get("tree_root")?)
                .ok()?
                .try_into()
                .ok()?;
            let edge = Frontier::from_peaks_text(&get(super::tree::EDGE_ATTR)?)?;
            Some((size, root, edge))
        })();
        if tree.is_some() {
            newest = tree;
        }
    }
    Ok(newest)
}

/// A seal file that cannot be read: damage, unless it is another log's
/// (the segments beside it were replaced or deleted: tampering).
fn seal_file_error(report: &mut TamperReport, dir: &std::path::Path, e: store::StoreError) {
    let text = format!("{}: {e}", dir.display());
    if e.what.starts_with("belongs to another log") {
        report.problems.push(format!(
            "{text}: the log's segments are not the ones it was sealed for (replaced or deleted)"
        ));
    } else {
        report.damage.push(text);
    }
}

/// The hashes of blocks `from..to`, on every core; and the gaps found.
fn hash_blocks(shared: &Arc<Shared>, from: u64, to: u64) -> Result<(Vec<Hash>, Vec<String>)> {
    if from >= to {
        return Ok((Vec::new(), Vec::new()));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let per = (to - from).div_ceil(threads);
    let parts: Vec<Result<(Vec<Hash>, Vec<String>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (a, b) = (from + t * per, (from + (t + 1) * per).min(to));
                s.spawn(move || hash_range(shared, a, b))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a hashing thread does not panic"))
            .collect()
    });
    let mut hashes = Vec::new();
    let mut gaps = Vec::new();
    for p in parts {
        let (h, g) = p?;
        hashes.extend(h);
        gaps.extend(g);
    }
    Ok((hashes, gaps))
}

/// The hashes of blocks `a..b`; a block with a missing record gets the
/// empty root (and a gap is reported), so the roots that need it fail.
fn hash_range(shared: &Arc<Shared>, a: u64, b: u64) -> Result<(Vec<Hash>, Vec<String>)> {
    let mut out = Vec::new();
    let mut gaps = Vec::new();
    if a >= b {
        return Ok((out, gaps));
    }
    let (lo, hi) = (a * BLOCK + 1, b * BLOCK);
    let mut block = Frontier::new();
    let mut expect = lo;
    for r in shared.records(Lsn(lo), Arc::new(Prefilter::default())) {
        let r = r?;
        let lsn = r.lsn().0;
        if lsn > hi {
            break;
        }
        if lsn != expect {
            gaps.push(format!("records LSN {expect}..={} are missing", lsn - 1));
            while expect < lsn {
                // Stand-ins: the block's hash will not match.
                block.push([0; 32]);
                if block.size() == BLOCK {
                    out.push(block.root());
                    block = Frontier::new();
                }
                expect += 1;
            }
        }
        block.push(leaf_hash(lsn, r.payload()));
        if block.size() == BLOCK {
            out.push(block.root());
            block = Frontier::new();
        }
        expect += 1;
    }
    if expect <= hi {
        gaps.push(format!("records LSN {expect}..={hi} are missing"));
        while expect <= hi {
            block.push([0; 32]);
            if block.size() == BLOCK {
                out.push(block.root());
                block = Frontier::new();
            }
            expect += 1;
        }
    }
    Ok((out, gaps))
}
