//! Opening a log directory: lock, segment checks, recovery, quarantine;
//! and, for read-only logs, picking up another process's appends.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::compact::{self, CSeg};
use crate::engine::reader::SparseIndex;
use crate::engine::rollover::{self, Pending, Rollovers, Spare};
use crate::engine::{CreateError, Seg, Shared, WriterState};
use crate::error::{Corruption, Error, Problem, Result};
use crate::io::SegmentFile;
use crate::options::{Options, RecoveryMode};
use crate::raw::frame::FRAME_HEADER_LEN;
use crate::raw::quarantine::{self, QUARANTINE_FILE};
use crate::raw::recovery::{self, Damage, Skip};
use crate::raw::segment::{self, Footer, Header, SyncMark, DATA_START, FOOTER_LEN, HEADER_LEN};
use crate::{Lsn, SegmentId};

/// What opening the log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files in the log.
    pub segments: usize,
    /// Bytes of a torn tail that were cleared (a crash interrupted a write).
    pub torn_tail_bytes: u64,
    /// Damage found and quarantined by [`RecoveryMode::Repair`](crate::RecoveryMode::Repair).
    pub repaired: Vec<Corruption>,
    /// Damage a read-only open found with no writer running: the records in
    /// these ranges cannot be read (the rest of the log can). A reader must
    /// say so: the log is not whole.
    pub unreadable: Vec<Corruption>,
    /// An interrupted segment creation that was undone.
    pub removed_incomplete_segment: Option<PathBuf>,
    /// Raw segments removed because their compacted form was complete (a
    /// crash interrupted the swap after the rename).
    pub removed_compacted_raw: Vec<PathBuf>,
    /// Compacted segments written but not renamed into place (a crash
    /// interrupted compaction), removed.
    pub removed_incomplete_compacted: Vec<PathBuf>,
    /// Names of `.seg.tmp` files found (removed by a writer).
    pub(crate) creating: Vec<String>,
}

pub use crate::io::LOCK_FILE;

fn check_options(o: &Options) -> Result<()> {
    let segment_bytes = o.new_segment_bytes();
    let min = (HEADER_LEN + segment::MARK_LEN + FOOTER_LEN + FRAME_HEADER_LEN) as u64
        + u64::from(o.record_bytes_max);
    if segment_bytes < min {
        return Err(Error::InvalidOptions(format!(
            "segment_bytes {segment_bytes} is too small for records of up to {} bytes (needs at least {min})",
            o.record_bytes_max
        )));
    }
    if usize::try_from(segment_bytes).is_err() || segment_bytes > (1 << 40) {
        return Err(Error::InvalidOptions(format!(
            "segment_bytes {segment_bytes} is too large"
        )));
    }
    Ok(())
}

/// What a log directory holds.
#[derive(Default)]
struct Listing {
    /// Raw segment numbers, sorted.
    raw: Vec<SegmentId>,
    /// Raw segments whose creation a crash interrupted.
    creating: Vec<String>,
    /// Compacted segment numbers, sorted.
    compacted: Vec<SegmentId>,
    /// Compacted segments a crash interrupted before their rename.
    writing: Vec<String>,
}

/// Lists `dir`, refusing any file that is not ours.
fn list_dir(o: &Options, dir: &Path) -> Result<Listing> {
    let names = o.vfs.list_dir(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound {
            path: dir.to_path_buf(),
        },
        _ => Error::io("list log directory", dir, e),
    })?;
    let mut l = Listing::default();
    for name in names {
        if let Some(id) = segment::parse_file_name(&name) {
            l.raw.push(id);
        } else if segment::parse_creating_file_name(&name).is_some() {
            l.creating.push(name);
        } else if let Some(id) = compact::parse_file_name(&name) {
            l.compacted.push(id);
        } else if compact::parse_writing_file_name(&name).is_some() {
            l.writing.push(name);
        } else if name != LOCK_FILE
            && name != crate::io::DEMO_MARKER
            && name != QUARANTINE_FILE
            && name != crate::io::CATALOG_FILE
            && name != crate::io::CATALOG_TMP_FILE
            && name != quarantine::QUARANTINE_TMP_FILE
            && !crate::io::SEAL_FILES.contains(&name.as_str())
        {
            let what = if name.ends_with(segment::SEGMENT_SUFFIX) {
                "a segment name must be 20 digits and .seg"
            } else {
                "unknown file name"
            };
            return Err(Error::ForeignFile {
                path: dir.join(name),
                what,
            });
        }
    }
    l.raw.sort();
    l.compacted.sort();
    Ok(l)
}

/// The raw segment numbers in `dir`, sorted.
fn list_segments(o: &Options, dir: &Path) -> Result<Vec<SegmentId>> {
    list_dir(o, dir).map(|l| l.raw)
}

struct Found {
    seg: Seg,
    damage: Vec<Damage>,
    torn_bytes: u64,
}

pub(crate) fn open(dir: &Path, mut opts: Options) -> Result<Shared> {
    check_options(&opts)?;
    let vfs = opts.vfs.clone();
    if !opts.read_only {
        vfs.create_dir_all(dir)
            .map_err(|e| Error::io("create log directory", dir, e))?;
    }
    let listing = list_dir(&opts, dir)?;
    // A read-only open beside a live writer treats a gap in the last segment
    // as an append still being copied; with no writer, it is damage.
    let live_writer = opts.read_only && vfs.writer_active(dir).unwrap_or(true);
    let lock = if opts.read_only {
        None
    } else {
        let path = dir.join(LOCK_FILE);
        let owner = format!("pid {}\n", std::process::id());
        match vfs
            .try_lock(dir, &owner)
            .map_err(|e| Error::io("lock", dir, e))?
        {
            Some(guard) => Some(guard),
            None => {
                let pid = vfs.read_file(&path).ok().and_then(|b| {
                    String::from_utf8_lossy(&b)
                        .trim()
                        .strip_prefix("pid ")?
                        .parse()
                        .ok()
                });
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                    pid,
                });
            }
        }
    };
    let qpath = dir.join(QUARANTINE_FILE);
    let mut entries = match vfs.read_file(&qpath) {
        Ok(b) => quarantine::parse_file(&qpath, &b)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read", &qpath, e)),
    };
    let mut report = RecoveryReport::default();
    let (compacted, ids) = load_compacted(&opts, dir, listing, &mut entries, &mut report)?;
    let creating = std::mem::take(&mut report.creating);
    let all: Vec<SegmentId> = compacted
        .iter()
        .map(|c| c.id)
        .chain(ids.iter().copied())
        .collect();
    for w in all.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            let missing = SegmentId(w[0].0 + 1);
            return Err(Error::from(Corruption {
                path: dir.join(segment::file_name(missing)),
                segment: missing,
                offset: 0,
                end: 0,
                lsns_lost: None,
                block: None,
                problem: Problem::MissingSegment,
            }));
        }
    }

    // The `.seg.tmp` after the last segment may be a writer's spare, or a
    // segment a rollover started: looked at once the last one is loaded.
    // (After the last compacted one when no raw segment is left: the
    // compactor may take the old segment of a rollover between its seal and
    // the new one's rename.)
    let after_last = ids
        .last()
        .or(compacted.last().map(|c| &c.id))
        .map(|l| SegmentId(l.0 + 1));
    let (next_tmp, creating): (Vec<String>, Vec<String>) = creating
        .into_iter()
        .partition(|n| after_last.is_some() && segment::parse_creating_file_name(n) == after_last);
    if !opts.read_only && !creating.is_empty() {
        // Segments a crash interrupted while creating: never held records.
        for name in creating {
            let path = dir.join(name);
            vfs.remove_file(&path)
                .map_err(|e| Error::io("remove incomplete segment", &path, e))?;
            report.removed_incomplete_segment = Some(path);
        }
        vfs.sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    let mut segs: Vec<Seg> = Vec::new();
    let mut new_damage: Vec<(SegmentId, PathBuf, Damage)> = Vec::new();
    // Headers first: each segment's successor says which LSNs a damaged end held.
    let mut files = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let path = dir.join(segment::file_name(id));
        let writable = i + 1 == ids.len() && !opts.read_only;
        let file = vfs
            .open_segment(&path, writable)
            .map_err(|e| Error::io("open segment", &path, e))?;
        let mut header = None;
        file.inspect(&mut |b| header = Header::decode(b).ok());
        files.push((id, path, file, header));
    }
    // New segments grow to the size asked for, else to what the newest one
    // says (or its own size, if it says nothing).
    if opts.segment_bytes.is_none() {
        if let Some(h) = files.iter().rev().find_map(|f| f.3) {
            let size = if h.grow_to > 0 { h.grow_to } else { h.len };
            let inherited = opts.clone().segment_bytes(size);
            if check_options(&inherited).is_ok() {
                opts = inherited;
            }
        }
    }
    // Compacted segments carry the identity's low 32 bits: a log left with
    // none but those keeps them in the identity it gets.
    let tag = compacted.iter().map(|c| c.log_tag).find(|&t| t != 0);
    // With no raw segment, a segment a rollover started (still `.seg.tmp`)
    // is the only one that holds the whole identity (compacted segments
    // keep its low 32 bits).
    let started_id = match (files.is_empty(), next_tmp.first()) {
        (true, Some(name)) => opts
            .vfs
            .open_segment(&dir.join(name), false)
            .ok()
            .and_then(|f| {
                let mut h = None;
                f.inspect(&mut |b| h = Header::decode(b).ok());
                h
            })
            .map(|h| h.log_id)
            .filter(|&id| id != 0 && tag.is_none_or(|t| t == id as u32)),
        _ => None,
    };
    let (log_id, held) = log_identity(
        &opts,
        files
            .iter()
            .filter_map(|f| f.3.map(|h| h.log_id))
            .chain(started_id),
        tag,
    );
    let log_id_partial = !held && tag.is_some();
    if let Some(c) = compacted
        .iter()
        .find(|c| c.log_tag != 0 && c.log_tag != log_id as u32)
    {
        return Err(Error::from(Corruption {
            path: c.path.clone(),
            segment: c.id,
            offset: 0,
            end: compact::format::HEADER_LEN as u64,
            lsns_lost: None,
            block: None,
            problem: Problem::ForeignSegment {
                log_id,
                found: u128::from(c.log_tag),
            },
        }));
    }
    let next_firsts: Vec<Option<Lsn>> = (0..files.len())
        .map(|i| files.get(i + 1).and_then(|f| f.3.map(|h| h.first_lsn)))
        .collect();
    for (i, (id, path, file, _)) in files.into_iter().enumerate() {
        let place = Place {
            log_id,
            id,
            path: &path,
            expected_first: match segs.last() {
                Some(s) => Some(Lsn(s.next_lsn.load(Ordering::Relaxed))),
                None => compacted.last().map(|c| c.next_lsn),
            },
            next_first: next_firsts[i],
            is_last: i + 1 == ids.len(),
            live_writer,
        };
        match load_segment(&opts, &place, file, skips_for(&entries, id)) {
            Ok(found) => {
                report.torn_tail_bytes += found.torn_bytes;
                for d in found.damage {
                    new_damage.push((id, path.clone(), d));
                }
                segs.push(found.seg);
            }
            Err(LoadError::Corrupt(problem, offset, end)) => {
                return Err(Error::from(Corruption {
                    path,
                    segment: id,
                    offset,
                    end,
                    lsns_lost: None,
                    block: None,
                    problem,
                }));
            }
            Err(LoadError::Other(e)) => return Err(e),
        }
    }

    let mut spare = None;
    let mut started = None;
    if let (Some(name), Some(id)) = (next_tmp.first(), after_last) {
        let tmp = dir.join(name);
        let expected = match segs.last() {
            Some(s) => Some(Lsn(s.next_lsn.load(Ordering::Relaxed))),
            None => compacted.last().map(|c| c.next_lsn),
        };
        match next_segment_file(&opts, &tmp, id, log_id, expected)? {
            // With no raw segment, the open creates one under this number.
            NextTmp::Spare(_) if segs.is_empty() => remove_stray(&opts, dir, &tmp, &mut report)?,
            NextTmp::Spare(file) => {
                // A spare up to the size made allocated whole was; a
                // larger one may still have its hole (it is allocated
                // before use either way).
                let allocated = file.file_len() <= super::rollover::SPARE_HEAD;
                spare = Some(Spare {
                    id,
                    tmp,
                    file,
                    allocated,
                })
            }
            NextTmp::Started(file) => {
                let place = Place {
                    log_id,
                    id,
                    path: &tmp,
                    expected_first: expected,
                    next_first: None,
                    is_last: true,
                    live_writer,
                };
                match load_segment(&opts, &place, file, skips_for(&entries, id)) {
                    Ok(mut found) => {
                        report.torn_tail_bytes += found.torn_bytes;
                        for d in found.damage {
                            new_damage.push((id, tmp.clone(), d));
                        }
                        found.seg.path = dir.join(segment::file_name(id));
                        if let Some(prev) = segs.last() {
                            if opts.read_only {
                                prev.set_sealed();
                            } else {
                                prev.closed.store(true, Ordering::Relaxed);
                            }
                        }
                        segs.push(found.seg);
                        started = Some(tmp);
                    }
                    Err(_) => remove_stray(&opts, dir, &tmp, &mut report)?,
                }
            }
            NextTmp::Stray => remove_stray(&opts, dir, &tmp, &mut report)?,
            NextTmp::Gone => {}
        }
    }

    if !new_damage.is_empty() {
        if opts.recovery == RecoveryMode::Strict && !opts.read_only {
            // The first damaged range; `verify` lists them all.
            let (id, path, d) = &new_damage[0];
            return Err(Error::from(corruption(*id, path, d)));
        }
        // A reader skips damage in memory and says what it could not read.
        let unread = opts.read_only && opts.recovery == RecoveryMode::Strict;
        let mut text = String::new();
        for (id, path, d) in &new_damage {
            let e = quarantine::Entry::from_damage(*id, d);
            text.push_str(&e.to_line());
            entries.push(e);
            let c = corruption(*id, path, d);
            if unread {
                report.unreadable.push(c);
            } else {
                report.repaired.push(c);
            }
        }
        if !opts.read_only {
            quarantine::append(&vfs, dir, &text)?;
        }
        for seg in &mut segs {
            seg.skips = skips_for(&entries, seg.id);
        }
    }

    if segs.is_empty() && !opts.read_only {
        let (id, first) = compacted.last().map_or((SegmentId(1), Lsn(1)), |c| {
            (SegmentId(c.id.0 + 1), c.next_lsn)
        });
        let len = opts.next_segment_bytes(0, 0);
        match Seg::create(&opts, dir, log_id, id, first, len) {
            Ok(seg) => segs.push(seg),
            Err(CreateError::NotCreated(e) | CreateError::Failed(e)) => return Err(e),
        }
    }
    let next = segs.last().map_or_else(
        || compacted.last().map_or(1, |c| c.next_lsn.0),
        |s| s.next_lsn.load(Ordering::Relaxed),
    );
    // What a crashed writer left in the page cache counts only once it is on disk.
    if let (Some(tail), false) = (segs.last(), opts.read_only) {
        let end = tail.end.load(Ordering::Relaxed);
        tail.file
            .sync_range(0, end)
            .map_err(|e| Error::io("sync segment", &tail.path, e))?;
        tail.synced_end.store(end, Ordering::Relaxed);
    }
    report.segments = compacted.len() + segs.len();
    let segs: Vec<Arc<Seg>> = segs.into_iter().map(Arc::new).collect();
    let writer = (!opts.read_only).then(|| {
        let tail = segs.last().expect("a writer always has a segment").clone();
        WriterState {
            sealed_on_request: false,
            spare_at: rollover::spare_at(&tail),
            // Not before this process has written a while: a command that
            // appends a few records should not fault in megabytes for them.
            prefault_at: tail.end.load(Ordering::Relaxed) + rollover::PREFAULT_AHEAD / 2,
            off: tail.end.load(Ordering::Relaxed),
            next_lsn: Lsn(next),
            tail,
        }
    });
    // A rollover a crash cut in two is finished as any other: the old
    // segment sealed, the new one named, by the background thread or the
    // first sync. Until then, only what precedes the old segment is durable.
    // (No old raw segment when the compactor took it: only the rename is left.)
    let pending = started.filter(|_| !opts.read_only).map(|tmp| {
        let n = segs.len();
        let old = n.checked_sub(2).map(|i| &segs[i]);
        Pending {
            old: old.filter(|o| !o.sealed.load(Ordering::Relaxed)).cloned(),
            new: segs[n - 1].clone(),
            tmp,
        }
    });
    // (The new segment's records count once it is named, however synced.)
    let durable = match &pending {
        Some(Pending { old: Some(old), .. }) => old.first_lsn.0,
        Some(Pending { new, .. }) => new.first_lsn.0,
        None => next,
    };
    let spare = spare.filter(|_| !opts.read_only);
    let shared = Shared {
        dir: dir.to_path_buf(),
        opts,
        log_id,
        log_id_partial,
        compacted: RwLock::new(compacted.into_iter().map(Arc::new).collect()),
        segments: RwLock::new(segs),
        compact_lock: Mutex::new(()),
        maintenance: Mutex::new(None),
        after_seal: Mutex::new(None),
        background_error: Mutex::new(None),
        background_retry: Mutex::new(None),
        writer: Mutex::new(writer),
        visible: next.into(),
        durable: durable.into(),
        poisoned: false.into(),
        poison_reason: Mutex::new(String::new()),
        sync_state: Mutex::new(Default::default()),
        sync_rounds: Default::default(),
        follow_lock: Mutex::new(()),
        follow_cv: Condvar::new(),
        followers: 0.into(),
        shutdown: Mutex::new(false),
        shutdown_cv: Condvar::new(),
        quarantined: entries.len(),
        report,
        rollovers: Rollovers::new(spare, pending),
        _lock: lock,
    };
    Ok(shared)
}

/// What the `.seg.tmp` after the last segment is.
enum NextTmp {
    /// A spare a writer made ahead: no header yet.
    Spare(Arc<dyn SegmentFile>),
    /// A segment a rollover started: its header continues the log.
    Started(Arc<dyn SegmentFile>),
    /// Anything else: an interrupted creation, never part of the log.
    Stray,
    /// Renamed or removed since the directory was listed (a live writer).
    Gone,
}

fn next_segment_file(
    opts: &Options,
    tmp: &Path,
    id: SegmentId,
    log_id: u128,
    expected_first: Option<Lsn>,
) -> Result<NextTmp> {
    let file = match opts.vfs.open_segment(tmp, !opts.read_only) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(NextTmp::Gone),
        // Not a file we can map (empty, say): not a segment.
        Err(_) => return Ok(NextTmp::Stray),
    };
    let len = file.file_len();
    let mut kind = NextTmp::Stray;
    file.inspect(&mut |b| {
        if b.len() >= HEADER_LEN && b[..HEADER_LEN].iter().all(|&x| x == 0) {
            if len.is_multiple_of(Options::FIRST_SEGMENT_BYTES) {
                kind = NextTmp::Spare(file.clone());
            }
        } else if let Ok(h) = Header::decode(b) {
            let ours = h.log_id == 0 || h.log_id == log_id;
            if h.segment == id && h.len == len && ours && Some(h.first_lsn) == expected_first {
                kind = NextTmp::Started(file.clone());
            }
        }
    });
    Ok(kind)
}

/// Removes a `.seg.tmp` that is not part of the log (a writer does).
fn remove_stray(opts: &Options, dir: &Path, tmp: &Path, report: &mut RecoveryReport) -> Result<()> {
    if opts.read_only {
        return Ok(());
    }
    opts.vfs
        .remove_file(tmp)
        .map_err(|e| Error::io("remove incomplete segment", tmp, e))?;
    opts.vfs
        .sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))?;
    report.removed_incomplete_segment = Some(tmp.to_path_buf());
    Ok(())
}

/// The log's identity: the one most of its segment headers hold (version-1
/// headers hold none); a new log gets a random one, ending in `tag` if its
/// compacted segments have one. Also whether a header held it.
fn log_identity(opts: &Options, ids: impl Iterator<Item = u128>, tag: Option<u32>) -> (u128, bool) {
    let mut counts: Vec<(u128, usize)> = Vec::new();
    for id in ids.filter(|&id| id != 0) {
        match counts.iter_mut().find(|c| c.0 == id) {
            Some(c) => c.1 += 1,
            None => counts.push((id, 1)),
        }
    }
    // The most common; on a tie, the oldest segment's.
    let best = counts.iter().map(|c| c.1).max();
    match counts.iter().find(|c| Some(c.1) == best) {
        Some(&(id, _)) => (id, true),
        None => {
            let id = opts.new_log_id.unwrap_or_else(random_id);
            (tag.map_or(id, |t| id >> 32 << 32 | u128::from(t)), false)
        }
    }
}

/// 128 bits no other log has: the process's random hash keys, the time and
/// the pid, mixed.
fn random_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    let b = h.finish();
    (u128::from(a) << 64 | u128::from(b)).max(1)
}

fn skips_for(entries: &[quarantine::Entry], id: SegmentId) -> Vec<Skip> {
    let mut skips: Vec<Skip> = entries
        .iter()
        .filter(|e| e.segment == id && !e.compacted)
        .map(|e| e.skip)
        .collect();
    skips.sort_by_key(|s| s.start);
    skips
}

pub(super) fn corruption(id: SegmentId, path: &Path, d: &Damage) -> Corruption {
    Corruption {
        path: path.to_path_buf(),
        segment: id,
        offset: d.start,
        end: d.end,
        lsns_lost: d.lsns_lost,
        block: None,
        problem: d.problem.clone(),
    }
}

enum LoadError {
    Corrupt(Problem, u64, u64),
    Other(Error),
}

/// Where a segment stands in the log.
struct Place<'a> {
    id: SegmentId,
    path: &'a Path,
    /// Its first LSN, as its predecessor says.
    expected_first: Option<Lsn>,
    /// Its successor's first LSN, from that one's header.
    next_first: Option<Lsn>,
    is_last: bool,
    /// Read-only, beside a writer holding the lock.
    live_writer: bool,
    /// The log's identity.
    log_id: u128,
}

fn load_segment(
    opts: &Options,
    place: &Place<'_>,
    file: Arc<dyn SegmentFile>,
    skips: Vec<Skip>,
) -> std::result::Result<Found, LoadError> {
    let Place {
        id,
        path,
        expected_first,
        next_first,
        is_last,
        live_writer,
        log_id,
    } = *place;
    let len = file.file_len();
    let mut header = Err(Problem::Zeroed);
    let mut footer = Ok(None);
    file.inspect(&mut |b| {
        header = Header::decode(b);
        footer = Footer::decode(b);
    });
    // Segments are created atomically (see `Seg::create`), so a `.seg` file
    // without a valid header is damage, never an interrupted creation.
    let header = header.map_err(|p| LoadError::Corrupt(p, 0, HEADER_LEN as u64))?;
    let mismatch = |field, expected: u64, found: u64| {
        LoadError::Corrupt(
            Problem::Mismatch {
                field,
                expected,
                found,
            },
            0,
            HEADER_LEN as u64,
        )
    };
    if header.segment != id {
        return Err(mismatch("segment number in header", id.0, header.segment.0));
    }
    if header.log_id != 0 && header.log_id != log_id {
        return Err(LoadError::Corrupt(
            Problem::ForeignSegment {
                log_id,
                found: header.log_id,
            },
            0,
            HEADER_LEN as u64,
        ));
    }
    let record_max = header.record_max_or(opts.record_bytes_max);
    // A file shorter than its header says lost its end; `Repair` keeps the rest.
    let truncated = len < header.len && len >= (HEADER_LEN + FOOTER_LEN) as u64;
    // A truncation `Repair` already quarantined reads like any quarantined range.
    let known_cut = skips.iter().any(|k| k.end >= header.len);
    if header.len != len && !(truncated && (opts.recovery == RecoveryMode::Repair || known_cut)) {
        return Err(LoadError::Corrupt(
            Problem::Truncated {
                len,
                expected: header.len,
            },
            len.min(header.len),
            header.len,
        ));
    }
    if let Some(e) = expected_first {
        if header.first_lsn != e {
            return Err(mismatch("first LSN in header", e.0, header.first_lsn.0));
        }
    }
    if header.first_lsn.0 == 0 {
        return Err(mismatch("first LSN in header", 1, 0));
    }
    let footer_problem = if truncated {
        Some(Problem::Truncated {
            len,
            expected: header.len,
        })
    } else {
        footer.as_ref().err().cloned()
    };
    let footer = footer.ok().flatten().filter(|f| {
        !truncated
            && f.segment == id
            && f.first_lsn == header.first_lsn
            && f.data_end <= len - FOOTER_LEN as u64
    });
    let mut seg = Seg::new(&header, record_max, path.to_path_buf(), file);
    seg.sealed.store(footer.is_some(), Ordering::Relaxed);
    seg.closed.store(footer.is_some(), Ordering::Relaxed);
    seg.skips = skips;
    let mut found_damage = Vec::new();
    let mut torn_bytes = 0;
    match footer {
        // A sealed segment is trusted by its footer, except the last: the
        // writer continues after it, so its footer is checked against its
        // frames (a footer claiming more records would leave a gap of LSNs).
        Some(f) if !opts.check_sealed && !is_last => {
            seg.end.store(f.data_end, Ordering::Relaxed);
            seg.next_lsn.store(f.last_lsn.0 + 1, Ordering::Relaxed);
        }
        _ => {
            let limit = match footer {
                Some(f) => f.data_end,
                None if truncated => len,
                None => seg.data_limit(),
            };
            let mut scan = None;
            let mut data_crc = 0;
            let mut end_problem = None;
            let mut mark = None;
            seg.file.inspect(&mut |b| {
                if seg.has_mark && !truncated {
                    mark = SyncMark::decode(b).filter(|m| m.synced_end <= limit);
                }
                let s = recovery::scan(
                    b,
                    DATA_START,
                    limit,
                    header.first_lsn,
                    record_max,
                    &seg.skips,
                );
                end_problem = crate::raw::frame::decode(b, s.valid_end, limit, record_max).err();
                if let Some(f) = footer {
                    data_crc = crc32fast::hash(&b[..f.data_end as usize]);
                }
                scan = Some(s);
            });
            let mut s = scan.expect("inspect calls back");
            // Every frame before the first damage (or the end) checked.
            let checked = s.damage.first().map_or(s.valid_end, |d| d.start);
            seg.chunks.get_mut().checked_before(checked);
            let mut lost_end_next: Option<Lsn> = None;
            if let Some(f) = footer {
                let whole_ok = data_crc == f.data_crc || !seg.skips.is_empty();
                let known = seg.skips.iter().any(|k| k.start == s.valid_end);
                if s.valid_end < f.data_end && !known {
                    // The footer says more records follow than the scan found.
                    let next_lsn = Lsn(f.last_lsn.0 + 1).max(s.next_lsn);
                    found_damage.push(Damage {
                        start: s.valid_end,
                        end: f.data_end,
                        lsns_lost: (s.next_lsn <= f.last_lsn).then_some((s.next_lsn, f.last_lsn)),
                        problem: end_problem.clone().unwrap_or(Problem::Zeroed),
                        next_lsn,
                    });
                    lost_end_next = Some(next_lsn);
                } else if s.next_lsn.0 != f.last_lsn.0 + 1 && !known {
                    // Frames end where the footer says, with other LSNs: the footer lies.
                    return Err(LoadError::Corrupt(
                        Problem::Mismatch {
                            field: "footer last LSN",
                            expected: s.next_lsn.0 - 1,
                            found: f.last_lsn.0,
                        },
                        len - FOOTER_LEN as u64,
                        len,
                    ));
                } else if s.damage.is_empty() && !whole_ok {
                    return Err(LoadError::Corrupt(
                        Problem::DataCrc {
                            stored: f.data_crc,
                            computed: data_crc,
                        },
                        0,
                        f.data_end,
                    ));
                }
            } else if !is_last || truncated {
                // It should be sealed but its footer (or its end) is gone: what
                // follows the last valid frame is lost, up to the next segment.
                let next_lsn = next_first.unwrap_or(s.next_lsn).max(s.next_lsn);
                // A range quarantined before may start here (the scan could not
                // step over it: it runs past the cut); the damage starts after it.
                let (mut start, mut first_lost) = (s.valid_end, s.next_lsn);
                while let Some(k) = seg.skips.iter().find(|k| k.start == start) {
                    (start, first_lost) = (k.end, k.next_lsn.max(first_lost));
                }
                // To the file's end, or past it if truncated.
                let end = if truncated { header.len } else { len };
                if start < end {
                    found_damage.push(Damage {
                        start,
                        end,
                        lsns_lost: (next_lsn > first_lost)
                            .then(|| (first_lost, Lsn(next_lsn.0 - 1))),
                        problem: footer_problem.unwrap_or(Problem::Zeroed),
                        next_lsn,
                    });
                }
                seg.set_sealed();
                lost_end_next = Some(next_lsn);
            } else if let Some(m) = mark.filter(|m| s.valid_end < m.synced_end && !live_writer) {
                // The writer had synced past where the valid frames end: not
                // a write cut short by a crash but damage to durable records.
                let next_lsn = m.next_lsn.max(s.next_lsn);
                let end = m.synced_end.max(s.garbage_end);
                if !seg.skips.iter().any(|k| k.start == s.valid_end) {
                    found_damage.push(Damage {
                        start: s.valid_end,
                        end,
                        lsns_lost: (next_lsn > s.next_lsn)
                            .then(|| (s.next_lsn, Lsn(next_lsn.0 - 1))),
                        problem: end_problem.clone().unwrap_or(Problem::Zeroed),
                        next_lsn,
                    });
                }
                // Kept for inspection, never cleared: appends go after it.
                s.valid_end = end;
                s.garbage_end = end;
                lost_end_next = Some(next_lsn);
            } else if live_writer && !s.damage.is_empty() {
                // Beside a live writer, frames after a gap may be appends
                // still being copied: the visible log ends at the gap.
                let d = s.damage[0].clone();
                s.valid_end = d.start;
                s.next_lsn = d.lsns_lost.map_or(d.next_lsn, |l| l.0);
                s.index.retain(|p| p.1 < d.start);
                s.damage.clear();
            }
            let sealed = seg.sealed.load(Ordering::Relaxed);
            if !sealed && !opts.read_only && s.garbage_end > s.valid_end {
                torn_bytes = s.garbage_end - s.valid_end;
                let zeros = vec![0u8; torn_bytes as usize];
                seg.file
                    .write_at(s.valid_end, &zeros)
                    .and_then(|()| seg.file.sync_range(s.valid_end, torn_bytes))
                    .map_err(|e| LoadError::Other(Error::io("clear torn tail of", path, e)))?;
            }
            seg.end.store(s.valid_end, Ordering::Relaxed);
            seg.next_lsn
                .store(lost_end_next.unwrap_or(s.next_lsn).0, Ordering::Relaxed);
            *seg.index.lock() = SparseIndex::from_scan(s.index, s.valid_end, s.next_lsn, s.count);
            found_damage.extend(s.damage);
            found_damage.sort_by_key(|d| d.start);
        }
    }
    let frozen = if seg.sealed.load(Ordering::Relaxed) {
        len
    } else {
        seg.end.load(Ordering::Relaxed)
    };
    seg.file.freeze(frozen);
    Ok(Found {
        seg,
        damage: found_damage,
        torn_bytes,
    })
}

/// Read-only logs: picks up frames and segments another process appended.
pub(crate) fn refresh(shared: &Shared) -> Result<()> {
    if !shared.opts.read_only {
        return Ok(());
    }
    loop {
        let Some(tail) = shared.segments.read().last().cloned() else {
            // The writer may not have created its first segment yet.
            let ids = list_segments(&shared.opts, &shared.dir)?;
            if ids.is_empty() {
                return Ok(());
            }
            add_segment(shared, ids[0], Lsn(1))?;
            continue;
        };
        if !tail.sealed.load(Ordering::Acquire) {
            let start = tail.end.load(Ordering::Acquire);
            let first = Lsn(tail.next_lsn.load(Ordering::Acquire));
            let max = tail.record_max;
            let mut found = None;
            tail.file.inspect(&mut |b| {
                let footer = Footer::decode(b).ok().flatten();
                let limit = footer.map_or(tail.data_limit(), |f| f.data_end);
                let s = recovery::scan(b, start, limit, first, max, &tail.skips);
                // Beside a live writer, the visible log ends at the first gap.
                let (end, next) = match s.damage.first() {
                    Some(d) => (d.start, d.lsns_lost.map_or(d.next_lsn, |l| l.0)),
                    None => (s.valid_end, s.next_lsn),
                };
                let sealed =
                    footer.is_some_and(|f| f.data_end == end && f.last_lsn.0 + 1 == next.0);
                found = Some((end, next, sealed));
            });
            let (end, next, sealed) = found.expect("inspect calls back");
            if end > start {
                tail.file.freeze(end);
                tail.next_lsn.store(next.0, Ordering::Release);
                tail.end.store(end, Ordering::Release);
                shared.visible.fetch_max(next.0, Ordering::SeqCst);
            }
            if !sealed {
                return Ok(());
            }
            tail.file.freeze(tail.capacity);
            tail.set_sealed();
        }
        let next_id = SegmentId(tail.id.0 + 1);
        let names = match shared.opts.vfs.list_dir(&shared.dir) {
            Ok(names) => names,
            Err(e) => return Err(Error::io("list log directory", &shared.dir, e)),
        };
        if !names.contains(&segment::file_name(next_id)) {
            // The writer's compactor (or retention) may have compacted or
            // removed what follows while this reader was not looking: if
            // the directory holds later segments, read it again.
            let later = names.iter().any(|n| {
                segment::parse_file_name(n)
                    .or_else(|| compact::parse_file_name(n))
                    .is_some_and(|id| id > tail.id)
            });
            if later {
                return reload(shared);
            }
            return Ok(());
        }
        let next = Lsn(tail.next_lsn.load(Ordering::Acquire));
        if !add_segment(shared, next_id, next)? {
            return Ok(());
        }
    }
}

/// Read-only logs: takes the segments as the directory lists them now (the
/// writer compacted or removed some). Readers holding the old ones keep them.
fn reload(shared: &Shared) -> Result<()> {
    let mut tries = 0;
    let fresh = loop {
        match open(&shared.dir, shared.opts.clone()) {
            // A segment listed a moment ago was compacted since: list again.
            Err(Error::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && tries < 5 =>
            {
                tries += 1;
            }
            other => break other?,
        }
    };
    let mut compacted = shared.compacted.write();
    let mut segments = shared.segments.write();
    *compacted = fresh.compacted.into_inner();
    *segments = fresh.segments.into_inner();
    shared
        .visible
        .fetch_max(fresh.visible.load(Ordering::SeqCst), Ordering::SeqCst);
    Ok(())
}

/// Opens a segment the writer created after this read-only log was opened.
/// False if it is not ready yet (header not written).
fn add_segment(shared: &Shared, id: SegmentId, first: Lsn) -> Result<bool> {
    let path = shared.dir.join(segment::file_name(id));
    let file = match shared.opts.vfs.open_segment(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("open segment", &path, e)),
    };
    let mut header = None;
    file.inspect(&mut |b| header = Header::decode(b).ok());
    let Some(h) = header.filter(|h| h.segment == id && h.len == file.file_len()) else {
        return Ok(false);
    };
    let damaged = |problem| {
        Err(Error::from(Corruption {
            path: path.clone(),
            segment: id,
            offset: 0,
            end: HEADER_LEN as u64,
            lsns_lost: None,
            block: None,
            problem,
        }))
    };
    if h.first_lsn != first {
        return damaged(Problem::Mismatch {
            field: "first LSN in header",
            expected: first.0,
            found: h.first_lsn.0,
        });
    }
    if h.log_id != 0 && h.log_id != shared.log_id {
        return damaged(Problem::ForeignSegment {
            log_id: shared.log_id,
            found: h.log_id,
        });
    }
    let record_max = h.record_max_or(shared.opts.record_bytes_max);
    file.freeze(DATA_START);
    shared
        .segments
        .write()
        .push(Arc::new(Seg::new(&h, record_max, path, file)));
    Ok(true)
}

fn io_corruption(path: &Path, id: SegmentId, (problem, offset, end): compact::LoadError) -> Error {
    Error::from(Corruption {
        path: path.to_path_buf(),
        segment: id,
        offset,
        end,
        lsns_lost: None,
        block: None,
        problem,
    })
}

/// Loads the compacted segments; finishes or undoes swaps a crash
/// interrupted; returns them and the raw segment numbers left.
///
/// - `N.cseg.tmp`: written but never renamed: removed.
/// - `N.cseg` beside `N.seg`: the rename happened (after the sync), the raw
///   removal did not. The compacted one is kept if its header and index
///   check, and the raw one removed; else the reverse.
///
/// With `Repair`, a damaged header or index is rebuilt from the intact
/// blocks, and every block is checked: damaged ones go to the quarantine
/// file and are skipped. With `check_sealed`, `Strict` checks every block too.
fn load_compacted(
    opts: &Options,
    dir: &Path,
    listing: Listing,
    entries: &mut Vec<quarantine::Entry>,
    report: &mut RecoveryReport,
) -> Result<(Vec<CSeg>, Vec<SegmentId>)> {
    let vfs = &opts.vfs;
    let writable = !opts.read_only;
    let Listing {
        mut raw,
        creating,
        compacted: ids,
        writing,
    } = listing;
    report.creating = creating;
    let mut changed = false;
    if writable {
        for name in writing {
            let path = dir.join(name);
            vfs.remove_file(&path)
                .map_err(|e| Error::io("remove incomplete compacted segment", &path, e))?;
            report.removed_incomplete_compacted.push(path);
            changed = true;
        }
    }
    // Headers of the neighbours, for rebuilding a damaged one's LSN range.
    let raw_first = raw.iter().find(|r| !ids.contains(r)).and_then(|&id| {
        let path = dir.join(segment::file_name(id));
        let file = vfs.open_segment(&path, false).ok()?;
        let mut first = None;
        file.inspect(&mut |b| first = Header::decode(b).ok().map(|h| h.first_lsn));
        first
    });
    let repair = opts.recovery == RecoveryMode::Repair;
    let mut out: Vec<CSeg> = Vec::new();
    let mut new_entries = String::new();
    for (i, &id) in ids.iter().enumerate() {
        let path = dir.join(compact::file_name(id));
        let file = vfs
            .open_segment(&path, false)
            .map_err(|e| Error::io("open compacted segment", &path, e))?;
        let has_raw = raw.binary_search(&id).is_ok();
        let prev_next = out.last().map(|c| c.next_lsn);
        let loaded = CSeg::load(id, &path, file.clone(), None);
        let loaded = match loaded {
            Ok(c) => Ok(c),
            Err(e) if has_raw => Err(e),
            Err(e) if repair => {
                // Rebuild: the LSN range is what the neighbours say.
                let next_first = ids.get(i + 1).and_then(|&n| {
                    let f = vfs
                        .open_segment(&dir.join(compact::file_name(n)), false)
                        .ok()?;
                    let mut first = None;
                    f.inspect(&mut |b| {
                        first = compact::format::Header::decode(b).ok().map(|h| h.first_lsn)
                    });
                    first
                });
                match next_first.or(raw_first) {
                    Some(next) => {
                        let mut c = CSeg::load(id, &path, file, Some((prev_next, next)))
                            .map_err(|e| io_corruption(&path, id, e))?;
                        // What was rebuilt stays rebuilt: the file is
                        // written anew (damaged blocks in place, quarantined
                        // below), so the next open is Strict again.
                        if let (true, Some(bytes)) = (writable, c.rewritten(0)) {
                            let (_, file) = crate::engine::write_compacted(opts, dir, id, &bytes)?;
                            c = CSeg::load(id, &path, file, None)
                                .map_err(|e| io_corruption(&path, id, e))?;
                        }
                        report.repaired.push(Corruption {
                            path: path.clone(),
                            segment: id,
                            offset: e.1,
                            end: e.2,
                            lsns_lost: None,
                            block: None,
                            problem: e.0,
                        });
                        Ok(c)
                    }
                    None => return Err(io_corruption(&path, id, e)),
                }
            }
            Err(e) => return Err(io_corruption(&path, id, e)),
        };
        let raw_path = dir.join(segment::file_name(id));
        let mut c = match loaded {
            Ok(c) => {
                if has_raw {
                    if writable {
                        vfs.remove_file(&raw_path)
                            .map_err(|e| Error::io("remove compacted raw segment", &raw_path, e))?;
                        report.removed_compacted_raw.push(raw_path);
                        changed = true;
                    }
                    raw.retain(|&r| r != id);
                }
                c
            }
            Err(_) => {
                // Damaged, and the raw segment is still there: keep that.
                if writable {
                    vfs.remove_file(&path)
                        .map_err(|e| Error::io("remove damaged compacted segment", &path, e))?;
                    report.removed_incomplete_compacted.push(path);
                    changed = true;
                }
                continue;
            }
        };
        if let Some(p) = prev_next {
            if c.first_lsn != p {
                return Err(io_corruption(
                    &path,
                    id,
                    (
                        Problem::Mismatch {
                            field: "first LSN in compacted header",
                            expected: p.0,
                            found: c.first_lsn.0,
                        },
                        0,
                        compact::format::HEADER_LEN as u64,
                    ),
                ));
            }
        }
        let known: Vec<u64> = entries
            .iter()
            .filter(|e| e.compacted && e.segment == id)
            .map(|e| e.skip.start)
            .collect();
        c.damaged = c
            .index
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| known.contains(&b.offset))
            .map(|(n, _)| n as u32)
            .collect();
        if repair || opts.check_sealed {
            for (n, problem) in c.check_blocks() {
                if c.damaged.binary_search(&(n as u32)).is_ok() {
                    continue;
                }
                let b = c.index.blocks[n];
                let corruption = c.block_damage(n, problem);
                if !repair {
                    return Err(Error::from(corruption));
                }
                let e = quarantine::Entry {
                    segment: id,
                    skip: Skip {
                        start: b.offset,
                        end: b.end(),
                        next_lsn: Lsn(0),
                    },
                    lost: None,
                    problem: format!(
                        "{} rows of LSNs {}..={}: {}",
                        b.rows, b.min_lsn, b.max_lsn, corruption.problem
                    )
                    .replace(['\n', '\r'], " "),
                    compacted: true,
                };
                new_entries.push_str(&e.to_line());
                entries.push(e);
                report.repaired.push(corruption);
                c.damaged.push(n as u32);
                c.damaged.sort_unstable();
            }
        }
        out.push(c);
    }
    if writable && !new_entries.is_empty() {
        quarantine::append(vfs, dir, &new_entries)?;
    }
    if changed {
        vfs.sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
    }
    if let (Some(last), Some(&first_raw)) = (out.last(), raw.first()) {
        if first_raw <= last.id {
            return Err(Error::from(Corruption {
                path: dir.join(segment::file_name(first_raw)),
                segment: first_raw,
                offset: 0,
                end: 0,
                lsns_lost: None,
                block: None,
                problem: Problem::Mismatch {
                    field: "raw segment number after the compacted ones",
                    expected: last.id.0 + 1,
                    found: first_raw.0,
                },
            }));
        }
    }
    Ok((out, raw))
}
