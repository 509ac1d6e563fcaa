//! The index of a raw segment, kept in memory beside it: postings (where
//! each (type, severity) is: the LSN and offset of every such frame) and a
//! summary of every run of [`CHUNK_FRAMES`] frames (how many of each key,
//! the time range, whether any record is not an event). It is built as
//! readers reach new frames, each frame checked against its CRC once, so
//! the writer pays nothing; a filtered read then goes straight to the
//! frames of the keys it wants, past the chunks whose times it rules out,
//! and counts come from the summaries. A reopened log rebuilds it the
//! same way on its first filtered read, without checking again the CRCs of
//! the frames its recovery scan checked (those of unsealed segments).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::compact::bloom::{self, Bloom};
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
    /// Its first LSN.
    pub(crate) first_lsn: Lsn,
    /// One past its last LSN.
    pub(crate) next_lsn: Lsn,
    /// The keys present: (`type_id << 8 | severity`, frames), sorted by key.
    pub(crate) keys: Box<[(u32, u32)]>,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    /// A record that is not an event (never skipped: the reader above reports it).
    pub(crate) opaque: bool,
    /// The filter of its actors, sessions, entities and networks, made the
    /// first time a query asks (a query on types and times never does).
    filter: std::sync::OnceLock<Box<[u8]>>,
}

/// Why a chunk was passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuledOut {
    /// No (type, severity) the filter accepts.
    Key,
    /// Its times are outside the filter's.
    Time,
    /// Its filter rules out the actor, session, entity or network asked for.
    Filter,
}

impl Chunk {
    /// Frames in it.
    pub(crate) fn frames_hint(&self) -> u32 {
        self.keys.iter().map(|k| k.1).sum::<u32>() + u32::from(self.opaque)
    }

    /// Whether `filter` rules out every record of the chunk, and why;
    /// `None` if it may hold a match.
    pub(crate) fn ruled_out(
        &self,
        filter: &dyn RowFilter,
        bytes: &[u8],
        skips: &[Skip],
    ) -> Option<RuledOut> {
        if self.opaque || filter.is_all() {
            return None;
        }
        if filter.keys_limited()
            && !self
                .keys
                .iter()
                .any(|&(k, _)| filter.key((k >> 8) as u16, k as u8))
        {
            return Some(RuledOut::Key);
        }
        let (since, until) = filter.time();
        if self.min_time > until || self.max_time < since {
            return Some(RuledOut::Time);
        }
        let values = self.filter.get_or_init(|| self.values(bytes, skips));
        Bloom::new(values)
            .is_some_and(|b| !filter.bloom(&b))
            .then_some(RuledOut::Filter)
    }

    /// The filter of the chunk's values, from its frames in `bytes` (checked
    /// against their CRCs when the chunk was summarised).
    fn values(&self, bytes: &[u8], skips: &[Skip]) -> Box<[u8]> {
        let mut values = bloom::Fixed::new(12);
        let mut off = self.start;
        while off < self.end {
            if let Some(s) = skips.iter().find(|s| s.start == off && s.end > s.start) {
                off = s.end;
                continue;
            }
            let Some((len, _, _)) = frame::peek(bytes, off, self.end) else {
                break;
            };
            let start = off as usize + FRAME_HEADER_LEN;
            let next = start + len as usize;
            if let Some((_, fields)) = bytes.get(start..next).and_then(codec::split) {
                values.insert_row(&fields);
            }
            off = next as u64;
        }
        values.finish().into_boxed_slice()
    }
}

/// Hashes the postings' keys (small integers) with one multiply: the map
/// is looked up once per frame summarised.
#[derive(Debug, Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The key of a record that is not an event, in [`ChunkIndex::postings`].
pub(crate) const OPAQUE_KEY: u32 = u32::MAX;

/// The chunks of one raw segment, complete ones only, in order, and the
/// postings of the frames they cover.
#[derive(Debug)]
pub(crate) struct ChunkIndex {
    pub(crate) chunks: Vec<Chunk>,
    /// Per key (`type_id << 8 | severity`, or [`OPAQUE_KEY`]): the (LSN,
    /// offset) of each of its frames, in order.
    pub(crate) postings: HashMap<u32, Vec<(Lsn, u64)>, BuildHasherDefault<KeyHasher>>,
    /// Where the next chunk starts.
    next_off: u64,
    next_lsn: Lsn,
    /// A frame that does not check (damage): the index stops there, and
    /// readers scan on and report it.
    stuck: bool,
    /// Frames ending at or before this offset were checked against their
    /// CRCs by the open's recovery scan: summarising them checks the rest.
    checked_end: u64,
}

impl ChunkIndex {
    pub(crate) fn new(start: u64, first_lsn: Lsn) -> Self {
        ChunkIndex {
            chunks: Vec::new(),
            postings: Default::default(),
            next_off: start,
            next_lsn: first_lsn,
            stuck: false,
            checked_end: start,
        }
    }

    /// Says that the frames before `end` were checked against their CRCs
    /// (by a recovery scan that found every one before it valid).
    pub(crate) fn checked_before(&mut self, end: u64) {
        self.checked_end = self.checked_end.max(end);
    }

    /// Extends the index over the complete chunks of `bytes[..end]`.
    pub(crate) fn extend(&mut self, bytes: &[u8], end: u64, record_max: u32, skips: &[Skip]) {
        while !self.stuck && self.next_off < end {
            let mut frames = Vec::with_capacity(CHUNK_FRAMES as usize);
            let at = Place {
                start: self.next_off,
                first_lsn: self.next_lsn,
                end,
                checked_end: self.checked_end,
            };
            match summarise(bytes, &at, record_max, skips, &mut frames) {
                Ok(Some(c)) => {
                    // One look-up per key of the chunk, not per frame
                    // (`summarise` sorted the frames by key).
                    for run in frames.chunk_by(|a, b| a.0 == b.0) {
                        let list = self.postings.entry(run[0].0).or_default();
                        list.extend(run.iter().map(|&(_, lsn, off)| (lsn, off)));
                    }
                    (self.next_off, self.next_lsn) = (c.end, c.next_lsn);
                    self.chunks.push(c);
                }
                Ok(None) => return, // the rest is not a whole chunk yet
                Err(()) => self.stuck = true,
            }
        }
    }

    /// Where the index ends: the offset and LSN after its last chunk.
    pub(crate) fn end(&self) -> (u64, Lsn) {
        (self.next_off, self.next_lsn)
    }

    /// The frames at or after `from` the filter's keys and times can
    /// match, in order, as far as the index reaches (see [`end`](Self::end)).
    pub(crate) fn wanted(
        &self,
        filter: &dyn RowFilter,
        from: Lsn,
        bytes: &[u8],
        skips: &[Skip],
    ) -> Vec<(Lsn, u64)> {
        let mut out: Vec<(Lsn, u64)> = Vec::new();
        for (&key, list) in &self.postings {
            if key != OPAQUE_KEY && !filter.key((key >> 8) as u16, key as u8) {
                continue;
            }
            let at = list.partition_point(|p| p.0 < from);
            out.extend_from_slice(&list[at..]);
        }
        out.sort_unstable();
        // Frames in chunks the filter's times or values rule out go (opaque
        // ones stay: such a chunk is never ruled out).
        let mut c = 0;
        out.retain(|&(_, off)| {
            while c < self.chunks.len() && self.chunks[c].end <= off {
                c += 1;
            }
            self.chunks
                .get(c)
                .is_none_or(|ch| ch.ruled_out(filter, bytes, skips).is_none())
        });
        out
    }

    /// The chunk starting at `off`, if one does.
    pub(crate) fn at(&self, off: u64) -> Option<&Chunk> {
        let i = self.chunks.partition_point(|c| c.start < off);
        self.chunks.get(i).filter(|c| c.start == off)
    }
}

/// Where a chunk to summarise starts, and what bounds it.
struct Place {
    start: u64,
    first_lsn: Lsn,
    /// The end of the bytes readable now.
    end: u64,
    /// See [`ChunkIndex::checked_before`].
    checked_end: u64,
}

/// The chunk starting at `at.start`: `Ok(None)` if fewer than
/// [`CHUNK_FRAMES`] frames follow before `at.end`, `Err` at a frame that
/// does not check.
fn summarise(
    bytes: &[u8],
    at: &Place,
    record_max: u32,
    skips: &[Skip],
    frames_out: &mut Vec<(u32, Lsn, u64)>,
) -> Result<Option<Chunk>, ()> {
    let &Place {
        start,
        first_lsn,
        end,
        checked_end,
    } = at;
    let (mut off, mut lsn, mut frames) = (start, first_lsn, 0u32);
    let (mut min_time, mut max_time, mut opaque) = (i64::MAX, i64::MIN, false);
    while frames < CHUNK_FRAMES {
        if off >= end {
            return Ok(None);
        }
        if let Some(s) = skips.iter().find(|s| s.start == off && s.end > s.start) {
            (off, lsn) = (s.end, lsn.max(s.next_lsn));
            continue;
        }
        let f = if off < checked_end {
            // Bounded by `checked_end`: a frame reaching past it is checked whole.
            frame::decode_checked_before(bytes, off, checked_end, record_max)
                .or_else(|_| frame::decode(bytes, off, end, record_max))
        } else {
            frame::decode(bytes, off, end, record_max)
        }
        .map_err(|_| ())?;
        if f.lsn != lsn {
            return Err(());
        }
        let payload = &bytes[(off as usize + FRAME_HEADER_LEN)..f.next as usize];
        match codec::peek_structure(payload) {
            Some((type_id, severity, time)) => {
                let key = u32::from(type_id) << 8 | u32::from(severity.code());
                frames_out.push((key, lsn, off));
                min_time = min_time.min(time.0);
                max_time = max_time.max(time.0);
            }
            None => {
                opaque = true;
                frames_out.push((OPAQUE_KEY, lsn, off));
            }
        }
        (off, lsn, frames) = (f.next, Lsn(lsn.0 + 1), frames + 1);
    }
    // By key, each key's frames still in order: the chunk's counts here,
    // the postings in `extend`.
    frames_out.sort_by_key(|f| f.0);
    let counted: Vec<(u32, u32)> = frames_out
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run[0].0 != OPAQUE_KEY)
        .map(|run| (run[0].0, run.len() as u32))
        .collect();
    Ok(Some(Chunk {
        start,
        end: off,
        first_lsn,
        next_lsn: lsn,
        keys: counted.into_boxed_slice(),
        min_time,
        max_time,
        opaque,
        filter: std::sync::OnceLock::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::frame::encode_header;

    /// `n` frames of opaque payloads from LSN 1, from offset 0; the offset
    /// of each.
    fn frames(n: u64) -> (Vec<u8>, Vec<u64>) {
        let (mut bytes, mut offs) = (Vec::new(), Vec::new());
        for lsn in 1..=n {
            let payload = format!("record {lsn}").into_bytes();
            offs.push(bytes.len() as u64);
            bytes.extend_from_slice(&encode_header(Lsn(lsn), &payload));
            bytes.extend_from_slice(&payload);
        }
        (bytes, offs)
    }

    fn index(bytes: &[u8], checked_end: u64) -> ChunkIndex {
        let mut index = ChunkIndex::new(0, Lsn(1));
        index.checked_before(checked_end);
        index.extend(bytes, bytes.len() as u64, 1 << 20, &[]);
        index
    }

    #[test]
    fn frames_past_what_recovery_checked_are_checked_against_their_crcs() {
        let n = u64::from(CHUNK_FRAMES) * 2;
        let (mut bytes, offs) = frames(n);
        let second = offs[CHUNK_FRAMES as usize];
        assert_eq!(index(&bytes, second).chunks.len(), 2);
        // A payload byte of the second chunk flipped: past `checked_end`,
        // so the index stops before that chunk.
        bytes[second as usize + FRAME_HEADER_LEN + 2] ^= 1;
        let damaged = index(&bytes, second);
        assert_eq!(damaged.chunks.len(), 1);
        assert_eq!(damaged.end(), (second, Lsn(u64::from(CHUNK_FRAMES) + 1)));
        // With nothing checked before, a flip in the first chunk stops it
        // at once.
        let (mut bytes, _) = frames(n);
        bytes[FRAME_HEADER_LEN + 2] ^= 1;
        assert!(index(&bytes, 0).chunks.is_empty());
        // What the scan checked is not checked again (the work saved): the
        // flip below `checked_end` goes unseen by the index (readers check
        // each frame they return).
        assert_eq!(index(&bytes, second).chunks.len(), 2);
    }
}
