//! What the layers above (retention, the catalog) may ask of a running
//! log besides appending and reading: the facts retention plans from, the
//! removal of the oldest compacted segment, and the one-pass-at-a-time
//! lock that compaction and removals share. Methods, so that nothing above
//! the engine touches its segment lists or options.

use std::sync::Arc;

use parking_lot::MutexGuard;

use super::{CompactedInfo, Iter, Shared};
use crate::compact::RowFilter;
use crate::error::{Error, Result};
use crate::options::Durability;
use crate::{Lsn, SegmentId};

impl Shared {
    /// Whether the log was opened read-only.
    pub(crate) fn is_read_only(&self) -> bool {
        self.opts.read_only
    }

    /// The compacted segments, oldest first, and the bytes all segment
    /// files take (raw ones at their allocated size), seen at one moment.
    pub(crate) fn segment_sizes(&self) -> (Vec<CompactedInfo>, u64) {
        let compacted = self.compacted.read();
        let raw = self.segments.read();
        let total = compacted.iter().map(|c| c.file_len()).sum::<u64>()
            + raw.iter().map(|s| s.capacity).sum::<u64>();
        (
            compacted.iter().map(|c| CompactedInfo::of(c)).collect(),
            total,
        )
    }

    /// Picks up what another process appended since this read-only log
    /// last looked; the LSN after the newest record it can now read.
    pub(crate) fn refreshed_end(&self) -> Result<u64> {
        super::open::refresh(self)?;
        Ok(self.visible.load(std::sync::atomic::Ordering::Acquire))
    }

    /// The first LSN of each raw segment, oldest first: where each sealed
    /// one ends (the next one's first, less one).
    pub(crate) fn raw_starts(&self) -> Vec<u64> {
        self.segments.read().iter().map(|s| s.first_lsn.0).collect()
    }

    /// Every LSN below this one is durable.
    pub(crate) fn durable_end(&self) -> u64 {
        self.durable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The file system the log lives on.
    pub(crate) fn vfs(&self) -> Arc<dyn crate::io::Vfs> {
        self.opts.vfs.clone()
    }

    /// The log's directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The log's identity (every segment names it).
    pub(crate) fn log_id(&self) -> u128 {
        self.log_id
    }

    /// Whether the identity was made up around the low 32 bits compacted
    /// segments carry (no raw segment was left to hold it).
    pub(crate) fn log_id_partial(&self) -> bool {
        self.log_id_partial
    }

    /// Bytes free on the log's file system.
    pub(crate) fn free_bytes(&self) -> Result<u64> {
        self.opts
            .vfs
            .free_bytes(&self.dir)
            .map_err(|e| Error::io("read free space of", &self.dir, e))
    }

    /// Held for a whole maintenance pass: compactions and removals take it,
    /// so one pass sees the segments it planned from.
    pub(crate) fn maintenance(&self) -> MutexGuard<'_, ()> {
        self.compact_lock.lock()
    }

    /// Removes the oldest compacted segment, which must be `id` (the caller
    /// holds [`maintenance`](Self::maintenance)).
    pub(crate) fn remove_oldest_compacted(&self, id: SegmentId) -> Result<CompactedInfo> {
        super::remove_oldest(self, id)
    }

    /// Appends records and waits until they are durable; the first one's LSN.
    pub(crate) fn append_durable<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Lsn> {
        super::append_batch(self, payloads, Durability::Sync)
            .map(|(first, _)| first)
            // Internal records: their callers want the cause, not the range.
            .map_err(|e| match e {
                Error::NotDurable { source, .. } => *source,
                e => e,
            })
    }

    /// Every record `filter` may accept, oldest first, from `from` on.
    pub(crate) fn records(self: &Arc<Self>, from: Lsn, filter: Arc<dyn RowFilter>) -> Iter {
        super::planned_from(self, from, filter)
    }
}
