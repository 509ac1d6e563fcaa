//! Compacted segments: sealed raw segments rewritten as zstd-compressed,
//! columnar blocks sorted by (type, severity) inside LSN stripes, with an
//! index of which blocks hold each (type, severity), and each block's LSN
//! and time range.
//!
//! - [`format`]: the bytes (pure, fuzzed);
//! - [`body`]: a block's columns compressed in a few zstd frames, and
//!   decompressed a frame at a time;
//! - [`build`]: records → file bytes (pure);
//! - [`bloom`]: the filter of each block (actors, sessions, entities,
//!   networks);
//! - [`filter`]: the seam a query plugs into ([`RowFilter`]), and what a
//!   reader read ([`SegmentPlan`]);
//! - [`segment`]: a compacted segment opened for reading (`CSeg`): loading
//!   (and rebuilding a damaged index), reading a stripe through a filter.
//!
//! Nothing here knows of `Log`: the compactor (taking sealed segments, the
//! atomic swap) is `engine::compactor`.

pub mod bloom;
pub mod body;
pub mod build;
pub mod filter;
pub mod format;
pub(crate) mod segment;

use crate::SegmentId;
pub use filter::{RowFilter, SegmentPlan};
pub(crate) use segment::{CSeg, LoadError};

/// File name suffix of a compacted segment.
pub const COMPACTED_SUFFIX: &str = ".cseg";
/// File name suffix of a compacted segment being written.
pub const WRITING_SUFFIX: &str = ".cseg.tmp";

/// The file name of compacted segment `id`.
pub fn file_name(id: SegmentId) -> String {
    format!("{:020}{COMPACTED_SUFFIX}", id.0)
}

/// The temporary name compacted segment `id` is written under.
pub fn writing_file_name(id: SegmentId) -> String {
    format!("{:020}{WRITING_SUFFIX}", id.0)
}

fn parse_with(name: &str, suffix: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok().map(SegmentId))
        .flatten()
}

/// The segment number of a compacted segment's file name.
pub fn parse_file_name(name: &str) -> Option<SegmentId> {
    parse_with(name, COMPACTED_SUFFIX)
}

/// The segment number of a compacted segment's temporary file name.
pub fn parse_writing_file_name(name: &str) -> Option<SegmentId> {
    parse_with(name, WRITING_SUFFIX)
}
