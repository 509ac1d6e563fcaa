//! auditlog: an embeddable, append-only storage engine for audit events.
//!
//! Two layers:
//! - [`AuditLog`]: audit [`Event`]s with compact type ids from the log's own
//!   catalog, built-in [`Catalog`]s from the seed documents, and filtered
//!   queries ([`Filter`]) evaluated on the encoded bytes;
//! - [`Log`], the storage core: a segmented write-ahead log of opaque records,
//!   CRC-framed, memory-mapped, appended from many threads with group commit,
//!   and recovered after a crash by telling a torn tail from real damage.
//!
//! ```
//! use auditlog::{Durability, Log, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let opts = Options::default().segment_bytes(1 << 20).record_bytes_max(64 << 10);
//! let log = Log::open(dir.path(), opts)?;
//! let first = log.append(b"user alice logged in")?;          // durable on return (Sync)
//! log.append_with(b"user bob logged in", Durability::Buffered)?;
//! for record in log.iter(first..) {
//!     let record = record?;
//!     println!("{} {}", record.lsn(), String::from_utf8_lossy(record.payload()));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The on-disk format is specified in `docs/FORMAT.md`, and what each
//! durability mode promises in `docs/DURABILITY.md`.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod audit;
pub mod catalog;
mod compact;
mod engine;
mod error;
pub mod event;
pub mod io;
mod options;
pub mod query;
mod raw;
mod retention;
mod severity;
mod tlog;

/// The on-disk formats, pure encoders and decoders, for tools and fuzzers.
/// docs/FORMAT.md is the contract; these modules are not a stable API.
pub mod format {
    pub use crate::catalog::registry::{self, Registry, MAX_TYPES};
    pub use crate::compact::format as compacted;
    pub use crate::compact::{file_name as compacted_file_name, COMPACTED_SUFFIX};
    pub use crate::event::codec;
    pub use crate::raw::{frame, quarantine, recovery, segment};
    pub use crate::tlog::{note, store as sealed_files, tree};
}

/// A test kit (feature `testing`): a file system that loses unsynced data,
/// tears writes, fails `fsync` and fills up, and a seedable generator.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    pub use crate::io::fault::{FaultyFs, SplitMix64, SECTOR};
}

use std::fmt;

pub use audit::{compare_versions, AuditFollower, AuditLog, AuditOptions, VersionReport};
pub use catalog::{Catalog, EventType};
pub use engine::{
    CompactReport, CompactedInfo, Follower, Iter, Log, Record, RecoveryReport, RolloverStats,
    VerifyReport,
};
pub use error::{BlockLoss, Corruption, Error, Problem, Result};
pub use event::{Event, EventFields, Timestamp};
pub use options::{Compaction, Durability, Options, RecoveryMode};
pub use query::{
    glob_matches, Aggregate, Explain, Filter, Group, GroupBy, GroupValue, IpNet, Query, SegmentPlan,
};
pub use retention::{Removal, Retention, RETENTION_APPLIED};
pub use severity::{Severity, UnknownSeverity};
pub use tlog::check::{SealCheck, TamperReport};
pub use tlog::note::{Checkpoint, NoteError, SealKey, SignedNote, Verifier as SealVerifier};
pub use tlog::proof::InclusionProof;
pub use tlog::sealer::{CheckpointHook, SealStatus};

/// A log sequence number: the dense, increasing position of a record. The first record is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number of a segment file (also its file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentId(pub u64);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
