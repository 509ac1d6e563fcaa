//! The running log's shared state: its segments (raw and compacted), the
//! writer's position, group commit, followers, and poisoning.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::chunks::ChunkIndex;
use super::reader;
use super::RecoveryReport;
use crate::compact::CSeg;
use crate::error::{Corruption, Error, Result};
use crate::io::{LockGuard, SegmentFile, View};
use crate::options::Options;
use crate::raw::recovery::Skip;
use crate::raw::segment;
use crate::{Lsn, SegmentId};

/// Why [`Seg::create`] failed.
pub(crate) enum CreateError {
    /// Nothing was created (e.g. the disk is full); the log is unchanged.
    NotCreated(Error),
    /// A write or sync failed after the file was created.
    Failed(Error),
}

/// The largest record a new segment of `len` bytes takes: a small segment
/// takes records up to what fits in it; a larger one starts a segment of its own.
pub(crate) fn record_max_for(opts: &Options, len: u64) -> u32 {
    let overhead = segment::DATA_START
        + (segment::MARK_LEN + segment::FOOTER_LEN + crate::raw::frame::FRAME_HEADER_LEN) as u64;
    opts.record_bytes_max
        .min(u32::try_from(len.saturating_sub(overhead)).unwrap_or(u32::MAX))
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
    /// Its footer is written and the whole segment durable.
    pub(crate) sealed: AtomicBool,
    /// It takes no more frames (a rollover moved on, or it is sealed); a
    /// closed segment may wait a moment for its seal (see `rollover`).
    pub(crate) closed: AtomicBool,
    /// Bytes below this are durable.
    pub(crate) synced_end: AtomicU64,
    /// Quarantined ranges, sorted.
    pub(crate) skips: Vec<Skip>,
    pub(crate) index: Mutex<reader::SparseIndex>,
    /// What each run of frames holds (for filtered reads to skip).
    pub(crate) chunks: Mutex<ChunkIndex>,
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
            closed: false.into(),
            synced_end: segment::DATA_START.into(),
            skips: Vec::new(),
            index: Mutex::new(reader::SparseIndex::new(segment::DATA_START, first_lsn)),
            chunks: Mutex::new(ChunkIndex::new(segment::DATA_START, first_lsn)),
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
        len: u64,
    ) -> Result<Seg, CreateError> {
        let vfs = &opts.vfs;
        let tmp = dir.join(segment::creating_file_name(id));
        let path = dir.join(segment::file_name(id));
        let record_max = record_max_for(opts, len);
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
            record_max,
            grow_to: opts.new_segment_bytes(),
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
        Ok(Seg::new(&header, record_max, path, file))
    }

    /// Marks it sealed (and so closed).
    pub(crate) fn set_sealed(&self) {
        self.closed.store(true, Ordering::Release);
        self.sealed.store(true, Ordering::Release);
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
            block: None,
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
    /// The tail was sealed by [`Log::seal`](crate::Log::seal), not filled.
    pub(crate) sealed_on_request: bool,
    /// Next free offset in the tail.
    pub(crate) off: u64,
    /// Once `off` reaches this, the writer asks for the next spare segment.
    pub(crate) spare_at: u64,
    /// Once `off` reaches this, the writer tells the worker where it is, so
    /// that it faults in the pages ahead (`rollover::fault_ahead`).
    pub(crate) prefault_at: u64,
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
    /// Threads that waited for a round, by its parity: the round in progress
    /// and the next (see `writer::gather`).
    pub(crate) waiting: [u64; 2],
}

/// What threads waiting for a group-commit round look at without the
/// `sync_state` lock, and the addresses they park on (one per round parity).
#[derive(Debug, Default)]
pub(crate) struct SyncRounds {
    /// The latest round that ended.
    pub(crate) done: AtomicU64,
    /// A leader is syncing (mirrors `SyncState::leading`).
    pub(crate) leading: AtomicBool,
    /// Threads the last round covered that have not come back with their
    /// next record yet (see `writer::gather`).
    pub(crate) returning: AtomicU64,
    /// How long the last sync took, in nanoseconds.
    pub(crate) last_sync_ns: AtomicU64,
    /// Only their addresses matter: the keys of the two parities' queues.
    pub(crate) keys: [u8; 2],
}

impl SyncRounds {
    /// The key the waiters of `round` park on.
    pub(crate) fn key(&self, round: u64) -> usize {
        &self.keys[(round % 2) as usize] as *const u8 as usize
    }
}

/// Where an LSN is: a compacted or a raw segment.
pub(crate) enum At {
    Compact(Arc<CSeg>),
    Raw(Arc<Seg>),
}

/// Run by the background thread after each compaction pass (retention).
pub(crate) type MaintenanceHook = Arc<dyn Fn(&Arc<Shared>) -> Result<()> + Send + Sync>;

/// Run by the rollover worker after segments were sealed (the catalog notes
/// how far the log is durable, so that an open after a crash reads little).
pub(crate) type SealHook = Arc<dyn Fn(&Shared) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    /// The log's identity, in every segment header it writes.
    pub(crate) log_id: u128,
    /// No segment held the identity at open, only the low 32 bits of it
    /// that compacted segments carry (its raw segments were all deleted):
    /// `log_id` is made up around them.
    pub(crate) log_id_partial: bool,
    /// Compacted segments: always older than every raw one. Lock order:
    /// `compacted` before `segments`.
    pub(crate) compacted: RwLock<Vec<Arc<CSeg>>>,
    pub(crate) segments: RwLock<Vec<Arc<Seg>>>,
    /// Held while compacting or removing segments.
    pub(crate) compact_lock: Mutex<()>,
    pub(crate) maintenance: Mutex<Option<MaintenanceHook>>,
    pub(crate) after_seal: Mutex<Option<SealHook>>,
    /// The last background compaction or retention error, if the last pass failed.
    pub(crate) background_error: Mutex<Option<String>>,
    /// After a failed background pass: how long until the next one.
    pub(crate) background_retry: Mutex<Option<std::time::Duration>>,
    pub(crate) writer: Mutex<Option<WriterState>>,
    /// The spare segment, the rollover waiting for its seal, the worker.
    pub(crate) rollovers: super::rollover::Rollovers,
    /// One past the last LSN readers may see.
    pub(crate) visible: AtomicU64,
    /// One past the last LSN known durable.
    pub(crate) durable: AtomicU64,
    pub(crate) poisoned: AtomicBool,
    pub(crate) poison_reason: Mutex<String>,
    /// Group commit: who leads, and which rounds are done (see
    /// `writer::sync_to`).
    pub(crate) sync_state: Mutex<SyncState>,
    pub(crate) sync_rounds: SyncRounds,
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
