//! The index of a raw segment: a summary of every run of [`CHUNK_FRAMES`]
//! frames (the (type, severity) keys present, the time range, whether any
//! record is not an event), kept in memory beside the segment. It is built
//! as readers reach new frames, each frame checked against its CRC once,
//! so the writer pays nothing; a filtered read then skips every chunk the
//! summary rules out, and scans (and checks again) only the others. A
//! reopened log rebuilds it the same way.

use crate::compact::RowFilter;
use crate::event::codec;
use crate::raw::frame::{self, FRAME_HEADER_LEN};
use crate::raw::recovery::Skip;
use crate::Lsn;

/// Frames summarised by one chunk.
pub(crate) const CHUNK_FRAMES: u32 = 256;

/// One run of frames: where it is and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    /// Offset of its first frame (or quarantined range).
    pub(crate) start: u64,
    /// One past its last byte.
    pub(crate) end: u64,
    /// One past its last LSN.
    pub(crate) next_lsn: Lsn,
    /// The keys present: `type_id << 8 | severity`, sorted, once each.
    keys: Box<[u32]>,
    min_time: i64,
    max_time: i64,
    /// A record that is not an event (never skipped: the reader above reports it).
    opaque: bool,
}

impl Chunk {
    /// Whether `filter` rules out every record of the chunk: by key (`Some(true)`)
    /// or by time (`Some(false)`); `None` if it may hold a match.
    pub(crate) fn ruled_out(&self, filter: &dyn RowFilter) -> Option<bool> {
        if self.opaque || filter.is_all() {
            return None;
        }
        if filter.keys_limited()
            && !self
                .keys
                .iter()
                .any(|&k| filter.key((k >> 8) as u16, k as u8))
        {
            return Some(true);
        }
        let (since, until) = filter.time();
        (self.min_time > until || self.max_time < since).then_some(false)
    }
}

/// The chunks of one raw segment, complete ones only, in order.
#[derive(Debug)]
pub(crate) struct ChunkIndex {
    pub(crate) chunks: Vec<Chunk>,
    /// Where the next chunk starts.
    next_off: u64,
    next_lsn: Lsn,
    /// A frame that does not check (damage): the index stops there, and
    /// readers scan on and report it.
    stuck: bool,
}

impl ChunkIndex {
    pub(crate) fn new(start: u64, first_lsn: Lsn) -> Self {
        ChunkIndex {
            chunks: Vec::new(),
            next_off: start,
            next_lsn: first_lsn,
            stuck: false,
        }
    }

    /// Extends the index over the complete chunks of `bytes[..end]`.
    pub(crate) fn extend(&mut self, bytes: &[u8], end: u64, record_max: u32, skips: &[Skip]) {
        while !self.stuck && self.next_off < end {
            match summarise(bytes, self.next_off, self.next_lsn, end, record_max, skips) {
                Ok(Some(c)) => {
                    (self.next_off, self.next_lsn) = (c.end, c.next_lsn);
                    self.chunks.push(c);
                }
                Ok(None) => return, // the rest is not a whole chunk yet
                Err(()) => self.stuck = true,
            }
        }
    }

    /// The chunk starting at `off`, if one does.
    pub(crate) fn at(&self, off: u64) -> Option<&Chunk> {
        let i = self.chunks.partition_point(|c| c.start < off);
        self.chunks.get(i).filter(|c| c.start == off)
    }
}

/// The chunk starting at `off`: `Ok(None)` if fewer than [`CHUNK_FRAMES`]
/// frames follow before `end`, `Err` at a frame that does not check.
fn summarise(
    bytes: &[u8],
    start: u64,
    first_lsn: Lsn,
    end: u64,
    record_max: u32,
    skips: &[Skip],
) -> Result<Option<Chunk>, ()> {
    let (mut off, mut lsn, mut frames) = (start, first_lsn, 0u32);
    let mut keys = Vec::new();
    let (mut min_time, mut max_time, mut opaque) = (i64::MAX, i64::MIN, false);
    while frames < CHUNK_FRAMES {
        if off >= end {
            return Ok(None);
        }
        if let Some(s) = skips.iter().find(|s| s.start == off && s.end > s.start) {
            (off, lsn) = (s.end, lsn.max(s.next_lsn));
            continue;
        }
        let f = frame::decode(bytes, off, end, record_max).map_err(|_| ())?;
        if f.lsn != lsn {
            return Err(());
        }
        let payload = &bytes[(off as usize + FRAME_HEADER_LEN)..f.next as usize];
        match codec::split(payload) {
            Some((h, _)) => {
                keys.push(u32::from(h.type_id) << 8 | u32::from(h.severity));
                min_time = min_time.min(h.time);
                max_time = max_time.max(h.time);
            }
            None => opaque = true,
        }
        (off, lsn, frames) = (f.next, Lsn(lsn.0 + 1), frames + 1);
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(Some(Chunk {
        start,
        end: off,
        next_lsn: lsn,
        keys: keys.into_boxed_slice(),
        min_time,
        max_time,
        opaque,
    }))
}
