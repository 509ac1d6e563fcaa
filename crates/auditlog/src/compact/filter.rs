//! The seam between storage and queries: what a reader wants, asked of
//! each block (or raw chunk) and each row before any event is built. The
//! storage knows nothing of filters; the query layer implements
//! [`RowFilter`] (as fst's automata are passed to its readers).

use crate::event::codec::{Fields, Head};

/// The severity byte of a record that is not an event (stored whole).
pub use super::format::OPAQUE;

/// What a reader wants. Every answer may err on the side of `true`: a
/// reader above checks what it gets, so a filter only ever removes work.
pub trait RowFilter: Send + Sync {
    /// Whether events of this (type id, severity code) can match. Records
    /// that are not events are never asked about: they are always returned,
    /// so the reader above reports them.
    fn key(&self, type_id: u16, severity: u8) -> bool;

    /// Whether [`key`](Self::key) rejects anything (if not, the index of
    /// keys is not consulted).
    fn keys_limited(&self) -> bool;

    /// The times that can match, in nanoseconds, inclusive.
    fn time(&self) -> (i64, i64) {
        (i64::MIN, i64::MAX)
    }

    /// Whether one event can match, from its head and encoded fields.
    fn row(&self, head: &Head, fields: &Fields<'_>) -> bool {
        let _ = fields;
        let (since, until) = self.time();
        self.key(head.type_id, head.severity) && head.time >= since && head.time <= until
    }

    /// The optional fields [`row`](Self::row) reads (presence bits, see
    /// `event::codec::FIELDS`): a block reader decodes only these before
    /// it knows a row matches. All of them unless a filter says less.
    fn columns(&self) -> u16 {
        (1 << crate::event::codec::FIELDS.len()) - 1
    }

    /// Whether a raw record's payload can match (anything that does not
    /// have an event's structure can).
    fn payload(&self, payload: &[u8]) -> bool {
        match crate::event::codec::split(payload) {
            Some((head, fields)) => self.row(&head, &fields),
            None => true,
        }
    }

    /// Whether a block (or raw chunk) whose filter this is can hold a match
    /// (see [`super::bloom`]).
    fn bloom(&self, filter: &super::bloom::Bloom<'_>) -> bool {
        let _ = filter;
        true
    }

    /// Whether it wants every record (readers then skip the checks).
    fn is_all(&self) -> bool {
        false
    }
}

/// Wants every record.
#[derive(Debug, Clone, Copy, Default)]
pub struct All;

impl RowFilter for All {
    fn key(&self, _: u16, _: u8) -> bool {
        true
    }
    fn keys_limited(&self) -> bool {
        false
    }
    fn row(&self, _: &Head, _: &Fields<'_>) -> bool {
        true
    }
    fn payload(&self, _: &[u8]) -> bool {
        true
    }
    fn is_all(&self) -> bool {
        true
    }
}

/// What a reader read of one segment, and why (`auditlog query --explain`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentPlan {
    /// The segment.
    pub segment: crate::SegmentId,
    /// Compacted (index used) or raw (read through its in-memory chunk index).
    pub compacted: bool,
    /// The LSNs it covers.
    pub lsns: (crate::Lsn, crate::Lsn),
    /// Blocks (raw: chunks) in the stripes looked at.
    pub blocks: u64,
    /// Blocks decompressed (raw: chunks scanned).
    pub blocks_read: u64,
    /// Blocks skipped: no (type, severity) the filter accepts.
    pub skipped_by_key: u64,
    /// Blocks skipped: their time range is outside the filter's.
    pub skipped_by_time: u64,
    /// Blocks skipped: their filter rules out the actor, session, entity or
    /// network asked for.
    pub skipped_by_filter: u64,
    /// Blocks skipped: outside the LSN range read.
    pub skipped_by_lsn: u64,
    /// Blocks skipped: quarantined damage.
    pub skipped_damaged: u64,
    /// Compressed bytes read (raw: bytes scanned).
    pub bytes_read: u64,
    /// zstd frames in the blocks read, and how many of them were
    /// decompressed: a filter decompresses the frames holding the columns it
    /// reads, and the others only in blocks where a row matches (compacted
    /// format 3 has four frames per block, earlier formats one).
    pub frames: (u64, u64),
    /// Rows looked at in the blocks read.
    pub rows: u64,
    /// Records passed on to the reader above (the rest were rejected on
    /// their columns).
    pub records: u64,
}
