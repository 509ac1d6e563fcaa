//! How a log is opened.

use std::sync::Arc;
use std::time::Duration;

use crate::io::{RealFs, Vfs};

/// When an append counts as done. See docs/DURABILITY.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Returns once the record is in the OS page cache: survives a process
    /// crash, not a power loss.
    Buffered,
    /// Like `Buffered`, and a background thread syncs at least this often:
    /// a power loss loses at most about this much.
    Interval(Duration),
    /// Returns only when the record is on stable storage (group commit:
    /// concurrent writers share one sync).
    Sync,
}

/// What opening a log does about damage that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open, with an error that says where the damage is.
    Strict,
    /// Record the damaged ranges in the quarantine file, skip them, and open.
    Repair,
}

/// When sealed segments are compacted (see docs/FORMAT.md, "Compacted segments").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compaction {
    /// A background thread compacts each sealed segment, looking this often.
    Background(Duration),
    /// Only when [`Log::compact`](crate::Log::compact) is called (`auditlog compact`).
    Manual,
}

/// Options for [`Log::open`](crate::Log::open). Build with the setters:
///
/// ```
/// use auditlog::{Durability, Options, RecoveryMode};
/// let opts = Options::default()
///     .segment_bytes(16 << 20)
///     .durability(Durability::Buffered)
///     .recovery(RecoveryMode::Repair);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// `None`: the size of the log's newest segment, or 64 MiB for a new log.
    pub(crate) segment_bytes: Option<u64>,
    pub(crate) record_bytes_max: u32,
    pub(crate) durability: Durability,
    pub(crate) recovery: RecoveryMode,
    pub(crate) read_only: bool,
    pub(crate) check_sealed: bool,
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) compaction: Compaction,
    pub(crate) compact: crate::compact::build::Params,
    pub(crate) new_log_id: Option<u128>,
    pub(crate) read_threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: None,
            record_bytes_max: 1 << 20,
            durability: Durability::Sync,
            recovery: RecoveryMode::Strict,
            read_only: false,
            check_sealed: false,
            vfs: Arc::new(RealFs),
            compaction: Compaction::Background(Duration::from_secs(1)),
            compact: Default::default(),
            new_log_id: None,
            read_threads: 1,
        }
    }
}

impl Options {
    /// Size of each segment file created from now on, header and footer
    /// included; existing ones keep their size. By default a log goes on
    /// with the size of its newest segment (so a log made with small
    /// segments stays small whoever opens it), and a new log gets 64 MiB.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        // (A new log's first segments are smaller: they double up to this.)
        self.segment_bytes = Some(bytes);
        self
    }

    /// Threads a read may use to decompress and filter the blocks of one
    /// compacted stripe (a query, an export, `tail`, a newest-first read).
    /// By default 1: reads run on the calling thread only. With more, a
    /// stripe read that has at least 8 blocks to read shares them among
    /// that many threads (selective queries never start one); a full scan
    /// of compacted data on two cores runs about 1.6 times as fast. Threads
    /// live for one stripe read, and the rows and errors are those of one
    /// thread; the cost is memory: each thread's rows are buffered until
    /// the stripe is joined, and the allocator keeps per-thread arenas
    /// (a full read of every event held about 30 MiB more at its peak).
    pub fn read_threads(mut self, threads: usize) -> Self {
        self.read_threads = threads.clamp(1, 64);
        self
    }

    /// The size of new segments when no log says otherwise.
    pub(crate) const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

    /// The size segments grow to.
    pub(crate) fn new_segment_bytes(&self) -> u64 {
        self.segment_bytes.unwrap_or(Self::DEFAULT_SEGMENT_BYTES)
    }

    /// The size of the first segment of a new log, and of the segment after
    /// one sealed on request: a log of a few events takes this much.
    pub(crate) const FIRST_SEGMENT_BYTES: u64 = 64 << 10;

    /// The size of the next segment: twice the bytes the last one used
    /// (so a log's segments double as it fills them, from
    /// [`FIRST_SEGMENT_BYTES`](Self::FIRST_SEGMENT_BYTES) up to
    /// [`segment_bytes`](Self::segment_bytes)), and room for `needed` bytes
    /// of frames at least; in units of 64 KiB.
    pub(crate) fn next_segment_bytes(&self, last_used: u64, needed: u64) -> u64 {
        let max = self.new_segment_bytes();
        let overhead = (crate::raw::segment::HEADER_LEN
            + crate::raw::segment::MARK_LEN
            + crate::raw::segment::FOOTER_LEN) as u64;
        let want = (2 * last_used)
            .max(needed + overhead)
            .max(Self::FIRST_SEGMENT_BYTES);
        want.next_multiple_of(Self::FIRST_SEGMENT_BYTES).min(max)
    }

    /// The identity a log created by this open gets, instead of a random
    /// one (for byte-exact fixtures and tools; an existing log keeps its own).
    #[doc(hidden)]
    pub fn new_log_id(mut self, id: u128) -> Self {
        self.new_log_id = Some(id);
        self
    }

    /// Largest record payload accepted (default 1 MiB). Each segment records
    /// the limit it was written with, and is read with that limit, so a
    /// reopen with another one misreads nothing.
    pub fn record_bytes_max(mut self, bytes: u32) -> Self {
        self.record_bytes_max = bytes;
        self
    }

    /// Default durability of appends (default [`Durability::Sync`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// What to do about damage found when opening (default [`RecoveryMode::Strict`]).
    pub fn recovery(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }

    /// Open without the write lock, for reading beside a running writer.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Also walk every frame of sealed segments when opening (default off:
    /// their footers are trusted, and damage in them is found when read or by
    /// [`Log::verify`](crate::Log::verify)).
    pub fn check_sealed(mut self, check: bool) -> Self {
        self.check_sealed = check;
        self
    }

    /// The file system to use (default: the real one). Tests pass a
    /// `FaultyFs` (`auditlog::testing`).
    pub fn vfs(mut self, vfs: Arc<dyn Vfs>) -> Self {
        self.vfs = vfs;
        self
    }

    /// When to compact sealed segments (default: in the background, looking
    /// every second). Read-only logs never compact.
    pub fn compaction(mut self, compaction: Compaction) -> Self {
        self.compaction = compaction;
        self
    }

    /// Target raw bytes per compressed block of a compacted segment (default
    /// 16 KiB): a query for one actor, session or network decompresses whole
    /// every block holding one of its rows, so smaller blocks answer it
    /// sooner; larger ones compress a little better.
    pub fn compact_block_bytes(mut self, bytes: usize) -> Self {
        self.compact.block_bytes = bytes.max(1);
        self
    }

    /// Records per stripe of a compacted segment (default 131,072): records
    /// are sorted by type inside a stripe, so larger stripes make type
    /// queries read fewer blocks, and reading in LSN order decompresses a
    /// whole stripe at a time.
    pub fn compact_stripe_records(mut self, records: usize) -> Self {
        self.compact.stripe_rows = records.max(1);
        self
    }

    /// The zstd level of compacted blocks (default 3).
    pub fn compact_level(mut self, level: i32) -> Self {
        self.compact.level = level;
        self
    }
}
