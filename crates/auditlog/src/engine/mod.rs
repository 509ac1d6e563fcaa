//! The engine: [`Log`], a segmented write-ahead log of opaque records over
//! the on-disk formats of [`raw`](crate::raw) and [`compact`](crate::compact).
//!
//! - `state`: the shared state of a running log (segments, writer, group
//!   commit, followers);
//! - `open`: opening a directory (lock, segments, log identity, recovery,
//!   Strict/Repair), and refresh;
//! - `writer`: appends, group commit, the Interval flusher;
//! - `rollover`: the next segment prepared in the background, the old one
//!   sealed off the append path, and the worker thread that does both;
//! - `reader`: iterators, random reads, followers, and the in-memory chunk
//!   index of raw segments that lets a filtered read skip them;
//! - `visit`: every row a filter accepts, without building records (what
//!   aggregates read);
//! - `compactor`: sealed segments to compacted ones (the atomic swap),
//!   removal of the oldest, the background thread;
//! - `maintenance`: what retention and the catalog ask of a running log
//!   (sizes, free space, the maintenance lock, removal, durable appends);
//! - `verify`: walking every frame and block.

mod chunks;
mod compactor;
mod maintenance;
mod open;
mod reader;
mod rollover;
mod state;
mod verify;
mod visit;
mod writer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::compact::{RowFilter, SegmentPlan};
use crate::error::{Error, Result};
use crate::options::{Compaction, Durability, Options};
use crate::raw::segment;
use crate::{Lsn, SegmentId};
pub(crate) use compactor::{remove_oldest, write_compacted};
pub use compactor::{CompactReport, CompactedInfo};
pub use open::RecoveryReport;
pub(crate) use reader::planned_from;
pub use reader::{Follower, Iter, Record};
pub use rollover::RolloverStats;
pub(crate) use state::{At, CreateError, MaintenanceHook, SealHook, Seg, Shared, WriterState};
pub use verify::VerifyReport;
pub(crate) use visit::{visit, Visitor};
pub(crate) use writer::append_batch;

/// Where a reader records what it read (`Explain`).
pub(crate) type Plans = Arc<Mutex<Vec<SegmentPlan>>>;

/// An open log. `Send + Sync`: share it between threads with `Arc` or `&`.
///
/// Dropping it stops its background flusher and syncs what was appended.
pub struct Log {
    pub(crate) shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    roller: Option<JoinHandle<()>>,
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
    ///
    /// # Errors
    /// [`Error::InvalidOptions`]; [`Error::NotFound`] (read-only, no
    /// directory); [`Error::Locked`] (another writer); [`Error::ForeignFile`]
    /// (a file that is not the log's, or a symbolic link); [`Error::Corruption`]
    /// when `Strict` recovery finds damage that is not a torn tail;
    /// [`Error::Io`] and [`Error::StorageFull`].
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
        let roller = if shared.opts.read_only {
            None
        } else {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("auditlog-rollover".into())
                    .spawn(move || rollover::worker(&s))
                    .map_err(|e| Error::io("start rollover thread for", &shared.dir, e))?,
            )
        };
        Ok(Log {
            shared,
            flusher,
            compactor,
            roller,
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

    /// The log's identity, random at creation and named by every segment:
    /// tells one log from another (an export directory records it).
    pub fn id(&self) -> u128 {
        self.shared.log_id()
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
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; damage in a segment being compacted (it stays
    /// raw and readable); [`Error::Io`] or [`Error::StorageFull`] while
    /// writing the compacted file (the raw segment is kept).
    pub fn compact(&self) -> Result<CompactReport> {
        compactor::compact(&self.shared)
    }

    /// How the writer's rollovers to new segments went since the log was
    /// opened (all zero for a read-only log).
    pub fn rollover_stats(&self) -> RolloverStats {
        self.shared.rollovers.stats()
    }

    /// For tests: while `hold` is set, the background worker leaves the
    /// second half of each rollover (seal, rename) to whoever needs it
    /// (a sync, the next rollover, [`seal`](Self::seal), close), so that
    /// tests can look at, and crash in, the state between the two.
    #[doc(hidden)]
    pub fn hold_rollover_worker(&self, hold: bool) {
        self.shared.rollovers.hold.store(hold, Ordering::Release);
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
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::InvalidOptions`] when `id` is not the
    /// oldest compacted segment; [`Error::Io`] while removing it.
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

    /// Records from LSN `from` on, forward or newest first, of which the
    /// compacted segments return only those `pre` may match (raw segments
    /// return every record); what was read goes into `explain`.
    pub(crate) fn iter_planned(
        &self,
        from: Lsn,
        reverse: bool,
        filter: Arc<dyn RowFilter>,
        plans: Option<Plans>,
    ) -> Iter {
        reader::planned(&self.shared, from, reverse, filter, plans)
    }

    /// Picks up records appended by another process since this read-only log
    /// was opened (a no-op for the writer, which sees its own appends).
    ///
    /// # Errors
    /// [`Error::Io`] reading the directory or a new segment; damage in a
    /// new segment's header.
    pub fn refresh(&self) -> Result<()> {
        open::refresh(&self.shared)
    }

    /// Walks every frame of every segment and checks every checksum.
    ///
    /// # Errors
    /// [`Error::Io`] reading a file; damage is not an error but the report's
    /// content.
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
        self.shared.rollovers.stop_worker();
        if let Some(h) = self.roller.take() {
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
