//! The segmented write-ahead log: [`Log`] and its readers.
//!
//! - `segment`, `frame`: the on-disk structures (pure, no I/O);
//! - `recovery`: the frame-by-frame scan and its decision table (pure);
//! - `quarantine`: the file that lists ranges `Repair` dropped;
//! - `open`: opening a directory (lock, segments, recovery), and refresh;
//! - `verify`: walking every frame of every segment;
//! - `writer`: appends, rollover, group commit;
//! - `reader`: iterators, random reads, followers;
//! - `compactor`: sealed segments to compacted ones, and retention.

mod compactor;
pub mod frame;
mod open;
pub mod quarantine;
mod reader;
pub mod recovery;
pub mod segment;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::compact::{CSeg, Explain, Prefilter};
use crate::error::{Corruption, Error, Result};
use crate::io::{LockGuard, SegmentFile, View};
use crate::options::{Compaction, Durability, Options};
use crate::{Lsn, SegmentId};
pub(crate) use compactor::{remove_oldest, write_compacted};
pub use compactor::{CompactReport, CompactedInfo};
pub(crate) use reader::{planned, planned_from};
pub use reader::{Follower, Iter, Record};
use recovery::Skip;
pub(crate) use writer::append_batch;

/// Why [`Seg::create`] failed.
pub(crate) enum CreateError {
    /// Nothing was created (e.g. the disk is full); the log is unchanged.
    NotCreated(Error),
    /// A write or sync failed after the file was created.
    Failed(Error),
}

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

/// What [`Log::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files walked.
    pub segments: usize,
    /// Valid records seen.
    pub records: u64,
    /// Ranges listed in the quarantine file (known, skipped).
    pub quarantined: usize,
    /// Damage not yet quarantined. Empty for a healthy log.
    pub damage: Vec<Corruption>,
}

/// One segment, as the running log knows it.
#[derive(Debug)]
pub(crate) struct Seg {
    pub(crate) id: SegmentId,
    pub(crate) first_lsn: Lsn,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn SegmentFile>,
    pub(crate) capacity: u64,
    /// The largest payload its frames may have (from its header).
    pub(crate) record_max: u32,
    /// It has a sync mark before its footer (format version 2).
    pub(crate) has_mark: bool,
    /// The sync mark's state; held to write the mark, and to seal (after
    /// which the segment is frozen).
    pub(crate) mark: Mutex<MarkState>,
    /// One past the last visible frame.
    pub(crate) end: AtomicU64,
    /// One past the last visible LSN in this segment.
    pub(crate) next_lsn: AtomicU64,
    pub(crate) sealed: AtomicBool,
    /// Bytes below this are durable.
    pub(crate) synced_end: AtomicU64,
    /// Quarantined ranges, sorted.
    pub(crate) skips: Vec<Skip>,
    pub(crate) index: Mutex<reader::SparseIndex>,
    view: Mutex<Option<View>>,
}

impl Seg {
    /// A segment holding no visible frame yet (callers set `end`, `next_lsn`,
    /// `sealed` and `skips` from what recovery found).
    pub(crate) fn new(
        header: &segment::Header,
        record_max: u32,
        path: PathBuf,
        file: Arc<dyn SegmentFile>,
    ) -> Seg {
        let first_lsn = header.first_lsn;
        Seg {
            id: header.segment,
            first_lsn,
            path,
            record_max,
            has_mark: header.has_mark(),
            mark: Mutex::new(MarkState::default()),
            capacity: file.file_len(),
            file,
            end: segment::DATA_START.into(),
            next_lsn: first_lsn.0.into(),
            sealed: false.into(),
            synced_end: segment::DATA_START.into(),
            skips: Vec::new(),
            index: Mutex::new(reader::SparseIndex::new(segment::DATA_START, first_lsn)),
            view: Mutex::new(None),
        }
    }

    /// Creates segment `id` in `dir` atomically: allocated and given its
    /// header under a temporary name, synced, renamed into place, and the
    /// directory synced. A crash leaves either no segment or a complete empty
    /// one (plus, perhaps, a temporary file that the next open removes).
    pub(crate) fn create(
        opts: &Options,
        dir: &Path,
        log_id: u128,
        id: SegmentId,
        first_lsn: Lsn,
    ) -> Result<Seg, CreateError> {
        let vfs = &opts.vfs;
        let tmp = dir.join(segment::creating_file_name(id));
        let path = dir.join(segment::file_name(id));
        let len = opts.new_segment_bytes();
        let file = match vfs.create_segment(&tmp, len) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Left by an earlier attempt that failed (nothing else uses this name).
                vfs.remove_file(&tmp).map_err(|e| {
                    CreateError::NotCreated(Error::io("remove incomplete segment", &tmp, e))
                })?;
                vfs.create_segment(&tmp, len)
            }
            other => other,
        }
        .map_err(|e| CreateError::NotCreated(Error::io("create segment", &tmp, e)))?;
        let header = segment::Header {
            segment: id,
            first_lsn,
            len,
            log_id,
            record_max: opts.record_bytes_max,
            version: segment::FORMAT_VERSION,
        };
        file.write_at(0, &header.encode())
            .and_then(|()| file.sync_range(0, segment::DATA_START))
            .map_err(|e| Error::io("write segment header", &tmp, e))
            .and_then(|()| {
                vfs.rename(&tmp, &path)
                    .map_err(|e| Error::io("rename segment", &tmp, e))
            })
            .and_then(|()| {
                vfs.sync_dir(dir)
                    .map_err(|e| Error::io("sync directory", dir, e))
            })
            .map_err(CreateError::Failed)?;
        file.freeze(segment::DATA_START);
        Ok(Seg::new(&header, opts.record_bytes_max, path, file))
    }

    /// The largest offset frames may reach.
    pub(crate) fn data_limit(&self) -> u64 {
        self.mark_offset()
            .unwrap_or(self.capacity - segment::FOOTER_LEN as u64)
    }

    /// Where its sync mark is, if it has one.
    pub(crate) fn mark_offset(&self) -> Option<u64> {
        self.has_mark
            .then(|| self.capacity - (segment::FOOTER_LEN + segment::MARK_LEN) as u64)
    }

    /// Records in the sync mark that everything below `end` (LSNs below
    /// `next`) is durable, if the mark was last written at least `every`
    /// ago; the next sync that reaches the mark makes it durable. Nothing
    /// once the segment is sealed (its footer says more).
    pub(crate) fn write_mark(&self, end: u64, next: Lsn, every: Duration) -> std::io::Result<()> {
        let Some(at) = self.mark_offset() else {
            return Ok(());
        };
        let mut state = self.mark.lock();
        let now = Instant::now();
        if self.sealed.load(Ordering::Acquire)
            || state.written.is_some_and(|t| now.duration_since(t) < every)
        {
            return Ok(());
        }
        let mark = segment::SyncMark {
            synced_end: end,
            next_lsn: next,
        };
        self.file.write_at(at, &mark.encode())?;
        *state = MarkState {
            written: Some(now),
            dirty: true,
        };
        Ok(())
    }

    /// Where the next sync of this segment must reach: the sync mark if one
    /// was written since the last sync (which then counts it as synced),
    /// else `end`.
    pub(crate) fn sync_upto(&self, end: u64) -> (u64, bool) {
        match self.mark_offset() {
            Some(at) if self.mark.lock().dirty => (at + segment::MARK_LEN as u64, true),
            _ => (end, false),
        }
    }

    /// The sync mark written before is durable now.
    pub(crate) fn mark_synced(&self) {
        self.mark.lock().dirty = false;
    }

    /// A view covering at least `0..end`.
    pub(crate) fn view_to(&self, end: u64) -> Result<View> {
        let mut cached = self.view.lock();
        if let Some(v) = cached.as_ref() {
            if v.len() as u64 >= end {
                return Ok(v.clone());
            }
        }
        let v = self
            .file
            .view()
            .map_err(|e| Error::io("map segment", &self.path, e))?;
        *cached = Some(v.clone());
        Ok(v)
    }

    pub(crate) fn corruption(
        &self,
        offset: u64,
        end: u64,
        lost: Option<(Lsn, Lsn)>,
        problem: crate::Problem,
    ) -> Error {
        Error::from(Corruption {
            path: self.path.clone(),
            segment: self.id,
            offset,
            end,
            lsns_lost: lost,
            problem,
        })
    }
}

/// When a segment's sync mark was last written, and whether a sync has
/// made that durable yet.
#[derive(Debug, Default)]
pub(crate) struct MarkState {
    pub(crate) written: Option<Instant>,
    pub(crate) dirty: bool,
}

pub(crate) struct WriterState {
    pub(crate) tail: Arc<Seg>,
    /// Next free offset in the tail.
    pub(crate) off: u64,
    pub(crate) next_lsn: Lsn,
}

/// The state of group commit (see `writer::sync_to`).
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// A leader is syncing.
    pub(crate) leading: bool,
    /// The number of the latest round.
    pub(crate) round: u64,
    /// The latest round makes every LSN below this durable.
    pub(crate) upto: u64,
}

/// Where an LSN is: a compacted or a raw segment.
pub(crate) enum At {
    Compact(Arc<CSeg>),
    Raw(Arc<Seg>),
}

/// Run by the background thread after each compaction pass (retention).
pub(crate) type MaintenanceHook = Arc<dyn Fn(&Arc<Shared>) -> Result<()> + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    /// The log's identity, in every segment header it writes.
    pub(crate) log_id: u128,
    /// Compacted segments: always older than every raw one. Lock order:
    /// `compacted` before `segments`.
    pub(crate) compacted: RwLock<Vec<Arc<CSeg>>>,
    pub(crate) segments: RwLock<Vec<Arc<Seg>>>,
    /// Held while compacting or removing segments.
    pub(crate) compact_lock: Mutex<()>,
    pub(crate) maintenance: Mutex<Option<MaintenanceHook>>,
    /// The last background compaction or retention error, if the last pass failed.
    pub(crate) background_error: Mutex<Option<String>>,
    /// After a failed background pass: how long until the next one.
    pub(crate) background_retry: Mutex<Option<std::time::Duration>>,
    pub(crate) writer: Mutex<Option<WriterState>>,
    /// One past the last LSN readers may see.
    pub(crate) visible: AtomicU64,
    /// One past the last LSN known durable.
    pub(crate) durable: AtomicU64,
    pub(crate) poisoned: AtomicBool,
    pub(crate) poison_reason: Mutex<String>,
    /// Group commit: who leads, and the two alternating rounds' waiters.
    pub(crate) sync_state: Mutex<SyncState>,
    pub(crate) sync_rounds: [Condvar; 2],
    pub(crate) follow_lock: Mutex<()>,
    pub(crate) follow_cv: Condvar,
    pub(crate) followers: AtomicUsize,
    pub(crate) shutdown: Mutex<bool>,
    pub(crate) shutdown_cv: Condvar,
    pub(crate) report: RecoveryReport,
    pub(crate) quarantined: usize,
    pub(crate) _lock: Option<LockGuard>,
}

impl Shared {
    pub(crate) fn poison(&self, what: String) {
        let mut reason = self.poison_reason.lock();
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            *reason = what;
        }
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            Err(Error::Poisoned {
                reason: self.poison_reason.lock().clone(),
            })
        } else {
            Ok(())
        }
    }

    /// Wakes followers blocked for new records, if any are.
    pub(crate) fn notify_followers(&self) {
        if self.followers.load(Ordering::SeqCst) > 0 {
            let _g = self.follow_lock.lock();
            self.follow_cv.notify_all();
        }
    }

    /// LSN of the oldest record still in the log.
    pub(crate) fn first_lsn(&self) -> Lsn {
        if let Some(c) = self.compacted.read().first() {
            return c.first_lsn;
        }
        self.segments.read().first().map_or(Lsn(1), |s| s.first_lsn)
    }

    /// The segment holding `lsn`, or the first one after it; `None` when
    /// `lsn` is past a sealed last segment (its successor is not there yet).
    pub(crate) fn find(&self, lsn: Lsn) -> Option<At> {
        let compacted = self.compacted.read();
        let segs = self.segments.read();
        if segs.first().is_none_or(|s| lsn < s.first_lsn) {
            let i = compacted.partition_point(|c| c.next_lsn <= lsn);
            if let Some(c) = compacted.get(i) {
                return Some(At::Compact(c.clone()));
            }
        }
        let i = segs
            .partition_point(|s| s.first_lsn <= lsn)
            .saturating_sub(1);
        let seg = segs.get(i)?;
        if lsn.0 < seg.next_lsn.load(Ordering::Acquire) || lsn < seg.first_lsn {
            return Some(At::Raw(seg.clone()));
        }
        match segs.get(i + 1) {
            Some(next) => Some(At::Raw(next.clone())),
            None => (!seg.sealed.load(Ordering::Acquire)).then(|| At::Raw(seg.clone())),
        }
    }
}

/// An open log. `Send + Sync`: share it between threads with `Arc` or `&`.
///
/// Dropping it stops its background flusher and syncs what was appended.
pub struct Log {
    pub(crate) shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .field("next_lsn", &self.next_lsn())
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed, unless read-only) the log in directory `dir`,
    /// recovering from a crash as docs/DURABILITY.md describes.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Log> {
        let mut tries = 0;
        let shared = loop {
            match open::open(dir.as_ref(), opts.clone()) {
                // Beside a live writer, a segment listed a moment ago may
                // have been compacted or removed since: list again.
                Err(Error::Io { source, .. })
                    if opts.read_only
                        && source.kind() == std::io::ErrorKind::NotFound
                        && tries < 5 =>
                {
                    tries += 1;
                }
                other => break Arc::new(other?),
            }
        };
        let flusher = match shared.opts.durability {
            Durability::Interval(every) if !shared.opts.read_only => {
                let s = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("auditlog-flusher".into())
                        .spawn(move || writer::flusher(&s, every))
                        .map_err(|e| Error::io("start flusher thread for", &shared.dir, e))?,
                )
            }
            _ => None,
        };
        let compactor = match shared.opts.compaction {
            Compaction::Background(every) if !shared.opts.read_only => {
                let s = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("auditlog-compactor".into())
                        .spawn(move || compactor::background(&s, every))
                        .map_err(|e| Error::io("start compactor thread for", &shared.dir, e))?,
                )
            }
            _ => None,
        };
        Ok(Log {
            shared,
            flusher,
            compactor,
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What opening found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// LSN the next append will get; every LSN below it is readable (except
    /// LSNs lost to quarantined damage).
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.shared.visible.load(Ordering::Acquire))
    }

    /// LSN of the oldest record still in the log.
    pub fn first_lsn(&self) -> Lsn {
        self.shared.first_lsn()
    }

    /// Every LSN below this one is durable.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.durable.load(Ordering::Acquire))
    }

    /// Number of segment files, raw and compacted.
    pub fn segment_count(&self) -> usize {
        self.shared.compacted.read().len() + self.shared.segments.read().len()
    }

    /// Compacts every sealed raw segment now, oldest first (the background
    /// compactor does the same on its own unless [`Compaction::Manual`]).
    pub fn compact(&self) -> Result<CompactReport> {
        compactor::compact(&self.shared)
    }

    /// The compacted segments, oldest first.
    pub fn compacted_segments(&self) -> Vec<CompactedInfo> {
        self.shared
            .compacted
            .read()
            .iter()
            .map(|c| CompactedInfo::of(c))
            .collect()
    }

    /// The raw segments: (number, first LSN, file bytes, bytes used by records).
    pub fn raw_segments(&self) -> Vec<(SegmentId, Lsn, u64, u64)> {
        self.shared
            .segments
            .read()
            .iter()
            .map(|s| {
                let used = s.end.load(Ordering::Acquire) - segment::DATA_START;
                (s.id, s.first_lsn, s.capacity, used)
            })
            .collect()
    }

    /// Removes the oldest compacted segment, which must be `id`. Its records
    /// are gone for good: [`AuditLog`](crate::AuditLog) records each removal
    /// as an event first (retention); this is the primitive under it.
    pub fn remove_oldest_compacted(&self, id: SegmentId) -> Result<CompactedInfo> {
        if self.shared.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let _g = self.shared.compact_lock.lock();
        compactor::remove_oldest(&self.shared, id)
    }

    /// The error of the last background compaction or retention pass, if it failed.
    pub fn background_error(&self) -> Option<String> {
        self.shared.background_error.lock().clone()
    }

    /// After a failed background pass, how long the compactor waits before
    /// the next: it doubles with each failure in a row (up to a minute) and
    /// is back to the configured interval after a pass succeeds.
    pub fn background_retry_in(&self) -> Option<std::time::Duration> {
        *self.shared.background_retry.lock()
    }

    /// Records in an LSN range, forward or newest first, of which the
    /// compacted segments return only those `pre` may match (raw segments
    /// return every record); what was read goes into `explain`.
    pub(crate) fn iter_planned(
        &self,
        reverse: bool,
        pre: Prefilter,
        explain: Option<Arc<Mutex<Explain>>>,
    ) -> Iter {
        reader::planned(&self.shared, reverse, pre, explain)
    }

    /// Picks up records appended by another process since this read-only log
    /// was opened (a no-op for the writer, which sees its own appends).
    pub fn refresh(&self) -> Result<()> {
        open::refresh(&self.shared)
    }

    /// Walks every frame of every segment and checks every checksum.
    pub fn verify(&self) -> Result<VerifyReport> {
        verify::verify(&self.shared)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        *self.shared.shutdown.lock() = true;
        self.shared.shutdown_cv.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        if let Some(h) = self.compactor.take() {
            let _ = h.join();
        }
        if !self.shared.opts.read_only && !self.shared.poisoned.load(Ordering::Acquire) {
            let synced = writer::sync_to(
                &self.shared,
                Lsn(self.shared.visible.load(Ordering::Acquire)),
            );
            if synced.is_ok() {
                let _ = writer::close_mark(&self.shared);
            }
        }
    }
}
