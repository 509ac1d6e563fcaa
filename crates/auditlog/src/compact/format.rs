//! The compacted segment format: pure encoding and decoding, no I/O.
//! docs/FORMAT.md, "Compacted segments", describes every byte.
//!
//! ```text
//! 0..64            header (magic AUDITCMP, LSN range, where the index is)
//! 64..             blocks: "ABLK", compressed length, raw length, CRC, body
//!                  (the raw block compressed: one zstd frame, or from
//!                  version 3 a few: body.rs)
//! index_offset..   index: CRC, then the block table, the stripe table and
//!                  the (type, severity) postings
//! ```
//!
//! A segment's records are cut into *stripes* of consecutive LSNs; inside a
//! stripe they are sorted by (type, severity, actor, LSN) and cut into blocks, so a
//! query for a few types reads a few blocks. A block is columnar: LSNs, keys,
//! times, presence bits, one column per optional field, and opaque payloads
//! (records that are not events), each column contiguous so zstd sees like
//! next to like.

use std::ops::Range;

use zstd::bulk::Decompressor;

pub use super::body::Body;
use crate::error::Problem;
use crate::event::codec;
use crate::{Lsn, SegmentId};

/// The first eight bytes of a compacted segment.
pub const MAGIC: &[u8; 8] = b"AUDITCMP";
/// The format version written (2 adds a filter per block to the index; 3
/// compresses a block's columns in a few zstd frames, so a filter
/// decompresses only those it reads; 4 stores a block's times in a unit,
/// a power of ten of nanoseconds; versions 1 to 3 are still read).
pub const VERSION: u32 = 4;
/// Bytes of the file header.
pub const HEADER_LEN: usize = 64;
/// The first four bytes of a block.
pub const BLOCK_MAGIC: &[u8; 4] = b"ABLK";
/// Bytes of a block's header.
pub const BLOCK_HEADER_LEN: usize = 16;
/// The severity byte of a record that is not an event (stored whole).
pub const OPAQUE: u8 = 0xFF;
/// The largest raw (decompressed) block a reader accepts.
pub const MAX_BLOCK_RAW: u32 = 1 << 30;
/// Bytes of one block table entry.
pub const BLOCK_ENTRY_LEN: usize = 56;
/// Bytes of one stripe table entry.
pub const STRIPE_ENTRY_LEN: usize = 24;

const FIELD_COLUMNS: usize = codec::FIELDS.len();
/// Columns of a block: LSN, key, time, presence bits, the optional fields, opaque.
pub const COLUMNS: usize = 4 + FIELD_COLUMNS + 1;
/// The presence bits of every optional field.
const ALL_FIELDS: u16 = (1 << FIELD_COLUMNS) - 1;
const COL_LSN: usize = 0;
const COL_KEY: usize = 1;
const COL_TIME: usize = 2;
const COL_BITS: usize = 3;
const COL_OPAQUE: usize = COLUMNS - 1;
/// The first byte of a raw block that states its time unit (version 4): a
/// row count of zero, which no earlier block has. The unit's exponent follows.
const TIME_UNIT_MARK: u8 = 0;
/// The largest exponent of a block's time unit (10^9 ns: seconds).
const MAX_TIME_EXP: u8 = 9;

fn bad(what: impl Into<String>) -> Problem {
    Problem::BadCompacted(what.into())
}

/// The file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The segment number (the raw segment it replaced).
    pub segment: SegmentId,
    /// The first LSN the segment covers.
    pub first_lsn: Lsn,
    /// One past the last LSN it covers.
    pub next_lsn: Lsn,
    /// Records it holds.
    pub records: u64,
    /// Where the index starts.
    pub index_offset: u64,
    /// Bytes of the index.
    pub index_len: u32,
    /// The low 32 bits of the identity of the log it belongs to (0: unknown,
    /// as in files written before it was recorded, or rebuilt by `Repair`).
    pub log_tag: u32,
    /// The format version (1, 2 or 3).
    pub version: u32,
}

impl Header {
    /// The 64 bytes of the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.log_tag.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.next_lsn.0.to_le_bytes());
        b[40..48].copy_from_slice(&self.records.to_le_bytes());
        b[48..56].copy_from_slice(&self.index_offset.to_le_bytes());
        b[56..60].copy_from_slice(&self.index_len.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the header at the start of `file`, checking it against the file's length.
    pub fn decode(file: &[u8]) -> Result<Header, Problem> {
        let b = file.get(..HEADER_LEN).ok_or(Problem::Truncated {
            len: file.len() as u64,
            expected: HEADER_LEN as u64,
        })?;
        if &b[0..8] != MAGIC {
            return Err(Problem::BadMagic {
                found: b[0..8].try_into().expect("8 bytes"),
            });
        }
        let stored = le32(&b[60..64]);
        let computed = crc32fast::hash(&b[..60]);
        if stored != computed {
            return Err(Problem::HeaderCrc {
                what: "compacted segment header",
                stored,
                computed,
            });
        }
        let version = le32(&b[8..12]);
        if !(1..=VERSION).contains(&version) {
            return Err(Problem::UnsupportedVersion(version));
        }
        let h = Header {
            segment: SegmentId(le64(&b[16..24])),
            first_lsn: Lsn(le64(&b[24..32])),
            next_lsn: Lsn(le64(&b[32..40])),
            records: le64(&b[40..48]),
            index_offset: le64(&b[48..56]),
            index_len: le32(&b[56..60]),
            log_tag: le32(&b[12..16]),
            version,
        };
        let index_end = h.index_offset.checked_add(u64::from(h.index_len));
        if h.index_offset < HEADER_LEN as u64 || index_end != Some(file.len() as u64) {
            return Err(bad(format!(
                "index at {}+{} does not end the {}-byte file",
                h.index_offset,
                h.index_len,
                file.len()
            )));
        }
        if h.first_lsn.0 == 0 || h.next_lsn < h.first_lsn {
            return Err(bad(format!(
                "LSN range {}..{} is empty or backward",
                h.first_lsn, h.next_lsn
            )));
        }
        Ok(h)
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

/// Where a block is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockMeta {
    /// Offset of its header in the file.
    pub offset: u64,
    /// Bytes of its zstd frame.
    pub comp_len: u32,
    /// Bytes once decompressed.
    pub raw_len: u32,
    /// Records in it.
    pub rows: u32,
    /// The stripe it belongs to.
    pub stripe: u32,
    /// Its least LSN.
    pub min_lsn: Lsn,
    /// Its greatest LSN.
    pub max_lsn: Lsn,
    /// Its earliest event time (ns; opaque records do not count).
    pub min_time: i64,
    /// Its latest event time.
    pub max_time: i64,
}

impl BlockMeta {
    /// One past the block's last byte.
    pub fn end(&self) -> u64 {
        self.offset + BLOCK_HEADER_LEN as u64 + u64::from(self.comp_len)
    }
}

/// A stripe: a run of consecutive LSNs whose records are sorted by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StripeMeta {
    /// Its first LSN.
    pub first_lsn: Lsn,
    /// One past its last LSN (the next stripe's first).
    pub next_lsn: Lsn,
    /// Its first block.
    pub first_block: u32,
    /// Its number of blocks.
    pub blocks: u32,
}

/// Where one (type, severity) is inside one block: rows `first_row..first_row + rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    /// The block.
    pub block: u32,
    /// The first row holding the key.
    pub first_row: u32,
    /// How many rows, consecutive, hold it.
    pub rows: u32,
}

/// The blocks holding one (type, severity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The type id ([`OPAQUE`] severity: records that are not events, type 0).
    pub type_id: u16,
    /// The severity code.
    pub severity: u8,
    /// Its postings, in block order.
    pub postings: Vec<Posting>,
}

/// The index of a compacted segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    /// Every block, in file order.
    pub blocks: Vec<BlockMeta>,
    /// Every stripe, in LSN order.
    pub stripes: Vec<StripeMeta>,
    /// Every (type, severity) present.
    pub keys: Vec<KeyEntry>,
    /// Per block, where its filter (a Bloom filter, FORMAT.md) is (an empty range:
    /// none, as in version 1 files; nothing is ruled out): in `filter_data`
    /// for an index being built; in the index's bytes, from their start, for
    /// a decoded one (which copies no filter: a reader takes them from the
    /// mapped file).
    pub filters: Vec<Range<u32>>,
    /// The filters' bytes of an index being built (empty when decoded).
    pub filter_data: Vec<u8>,
}

impl Index {
    /// The index bytes: CRC of the rest, then the tables.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        for n in [self.blocks.len(), self.stripes.len(), self.keys.len()] {
            b.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for m in &self.blocks {
            b.extend_from_slice(&m.offset.to_le_bytes());
            b.extend_from_slice(&m.comp_len.to_le_bytes());
            b.extend_from_slice(&m.raw_len.to_le_bytes());
            b.extend_from_slice(&m.rows.to_le_bytes());
            b.extend_from_slice(&m.stripe.to_le_bytes());
            b.extend_from_slice(&m.min_lsn.0.to_le_bytes());
            b.extend_from_slice(&m.max_lsn.0.to_le_bytes());
            b.extend_from_slice(&m.min_time.to_le_bytes());
            b.extend_from_slice(&m.max_time.to_le_bytes());
        }
        for s in &self.stripes {
            b.extend_from_slice(&s.first_lsn.0.to_le_bytes());
            b.extend_from_slice(&s.next_lsn.0.to_le_bytes());
            b.extend_from_slice(&s.first_block.to_le_bytes());
            b.extend_from_slice(&s.blocks.to_le_bytes());
        }
        for k in &self.keys {
            b.extend_from_slice(&k.type_id.to_le_bytes());
            b.push(k.severity);
            b.push(0);
            b.extend_from_slice(&(k.postings.len() as u32).to_le_bytes());
            for p in &k.postings {
                b.extend_from_slice(&p.block.to_le_bytes());
                b.extend_from_slice(&p.first_row.to_le_bytes());
                b.extend_from_slice(&p.rows.to_le_bytes());
            }
        }
        // Version 2: a filter per block (length 0: none).
        b.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for n in 0..self.blocks.len() {
            let f = self
                .filters
                .get(n)
                .and_then(|r| self.filter_data.get(r.start as usize..r.end as usize))
                .unwrap_or(&[]);
            b.extend_from_slice(&(f.len() as u16).to_le_bytes());
            b.extend_from_slice(f);
        }
        let crc = crc32fast::hash(&b[4..]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks an index against its header: blocks inside the
    /// file before the index, stripes covering the header's LSN range in
    /// order, postings inside their blocks.
    pub fn decode(bytes: &[u8], h: &Header) -> Result<Index, Problem> {
        let mut r = Rd::new(bytes);
        let stored = r
            .u32()
            .ok_or_else(|| bad("index shorter than its checksum"))?;
        let computed = crc32fast::hash(&bytes[4..]);
        if stored != computed {
            return Err(Problem::HeaderCrc {
                what: "compacted segment index",
                stored,
                computed,
            });
        }
        let short = || bad("index ends early");
        let (nb, ns, nk) = (
            r.u32().ok_or_else(short)?,
            r.u32().ok_or_else(short)?,
            r.u32().ok_or_else(short)?,
        );
        let fixed = nb as usize * BLOCK_ENTRY_LEN + ns as usize * STRIPE_ENTRY_LEN;
        if r.left() < fixed {
            return Err(short());
        }
        let mut blocks = Vec::with_capacity(nb as usize);
        let mut at = HEADER_LEN as u64;
        for i in 0..nb {
            let m = BlockMeta {
                offset: r.u64().ok_or_else(short)?,
                comp_len: r.u32().ok_or_else(short)?,
                raw_len: r.u32().ok_or_else(short)?,
                rows: r.u32().ok_or_else(short)?,
                stripe: r.u32().ok_or_else(short)?,
                min_lsn: Lsn(r.u64().ok_or_else(short)?),
                max_lsn: Lsn(r.u64().ok_or_else(short)?),
                min_time: r.i64().ok_or_else(short)?,
                max_time: r.i64().ok_or_else(short)?,
            };
            if m.offset != at || m.end() > h.index_offset {
                return Err(bad(format!(
                    "block {i} at {} does not follow the previous one (at {at}) inside the data",
                    m.offset
                )));
            }
            if m.rows == 0 || m.raw_len > MAX_BLOCK_RAW || m.min_lsn > m.max_lsn {
                return Err(bad(format!("block {i} has impossible sizes or LSNs")));
            }
            if m.min_lsn < h.first_lsn || m.max_lsn >= h.next_lsn {
                return Err(bad(format!(
                    "block {i} holds LSNs {}..={} outside the segment's",
                    m.min_lsn, m.max_lsn
                )));
            }
            at = m.end();
            blocks.push(m);
        }
        if at != h.index_offset {
            return Err(bad(format!(
                "blocks end at {at}, the index starts at {}",
                h.index_offset
            )));
        }
        let mut stripes = Vec::with_capacity(ns as usize);
        let (mut lsn, mut block) = (h.first_lsn, 0u32);
        for i in 0..ns {
            let s = StripeMeta {
                first_lsn: Lsn(r.u64().ok_or_else(short)?),
                next_lsn: Lsn(r.u64().ok_or_else(short)?),
                first_block: r.u32().ok_or_else(short)?,
                blocks: r.u32().ok_or_else(short)?,
            };
            let end = s.first_block.checked_add(s.blocks);
            if s.first_lsn != lsn || s.next_lsn <= s.first_lsn || s.first_block != block {
                return Err(bad(format!("stripe {i} does not follow the previous one")));
            }
            let Some(end) = end.filter(|&e| e <= nb) else {
                return Err(bad(format!("stripe {i} names blocks past the last")));
            };
            for b in &blocks[s.first_block as usize..end as usize] {
                if b.stripe != i || b.min_lsn < s.first_lsn || b.max_lsn >= s.next_lsn {
                    return Err(bad(format!("a block of stripe {i} lies outside it")));
                }
            }
            (lsn, block) = (s.next_lsn, end);
            stripes.push(s);
        }
        if lsn != h.next_lsn && !(ns == 0 && h.first_lsn == h.next_lsn) || block != nb {
            return Err(bad("stripes do not cover the segment's LSNs and blocks"));
        }
        let mut keys = Vec::with_capacity((nk as usize).min(r.left() / 8));
        let mut rows = 0u64;
        for _ in 0..nk {
            let type_id = r.u16().ok_or_else(short)?;
            let severity = r.u8().ok_or_else(short)?;
            r.u8().ok_or_else(short)?;
            let n = r.u32().ok_or_else(short)?;
            if r.left() < n as usize * 12 {
                return Err(short());
            }
            let mut postings = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let p = Posting {
                    block: r.u32().ok_or_else(short)?,
                    first_row: r.u32().ok_or_else(short)?,
                    rows: r.u32().ok_or_else(short)?,
                };
                let inside = blocks.get(p.block as usize).is_some_and(|b| {
                    p.rows > 0 && u64::from(p.first_row) + u64::from(p.rows) <= u64::from(b.rows)
                });
                if !inside {
                    return Err(bad(format!(
                        "posting of type {type_id} names rows outside block {}",
                        p.block
                    )));
                }
                rows += u64::from(p.rows);
                postings.push(p);
            }
            keys.push(KeyEntry {
                type_id,
                severity,
                postings,
            });
        }
        let mut filters = Vec::new();
        if h.version >= 2 {
            let n = r.u32().ok_or_else(short)?;
            if n != nb {
                return Err(bad(format!("{n} block filters for {nb} blocks")));
            }
            for i in 0..n {
                let len = r.u16().ok_or_else(short)?;
                let start = r.at as u32;
                let f = r.take(usize::from(len)).ok_or_else(short)?;
                if len > 0 && super::bloom::Bloom::new(f).is_none() {
                    return Err(bad(format!("the filter of block {i} is malformed")));
                }
                filters.push(start..start + u32::from(len));
            }
        }
        if r.left() != 0 {
            return Err(bad(format!("{} bytes after the index", r.left())));
        }
        let block_rows: u64 = blocks.iter().map(|b| u64::from(b.rows)).sum();
        if rows != block_rows || block_rows != h.records {
            return Err(bad(format!(
                "postings hold {rows} rows, blocks {block_rows}, the header says {}",
                h.records
            )));
        }
        Ok(Index {
            blocks,
            stripes,
            keys,
            filters,
            filter_data: Vec::new(),
        })
    }
}

/// The header of a block: checks its magic and returns (compressed length,
/// raw length, CRC).
pub fn decode_block_header(b: &[u8]) -> Result<(u32, u32, u32), Problem> {
    let b = b
        .get(..BLOCK_HEADER_LEN)
        .ok_or_else(|| bad("block header past the end"))?;
    if &b[0..4] != BLOCK_MAGIC {
        return Err(bad(format!("block magic {:02x?}", &b[0..4])));
    }
    Ok((le32(&b[4..8]), le32(&b[8..12]), le32(&b[12..16])))
}

/// A bounds-checked little-endian reader.
struct Rd<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Rd<'a> {
    fn new(b: &'a [u8]) -> Self {
        Rd { b, at: 0 }
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(le32)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(le64)
    }
    fn i64(&mut self) -> Option<i64> {
        self.u64().map(|v| v as i64)
    }
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        // Most varints of a block (LSN steps, small times, lengths) are one byte.
        if let Some(&b) = self.b.get(self.at).filter(|&&b| b < 0x80) {
            self.at += 1;
            return Some(u64::from(b));
        }
        self.long_varint()
    }
    #[inline(never)]
    fn long_varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// One record going into a block.
#[derive(Debug, Clone, Copy)]
pub struct RowIn<'a> {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its type id (0 for opaque records).
    pub type_id: u16,
    /// Its severity code, or [`OPAQUE`].
    pub severity: u8,
    /// Its time (0 for opaque records).
    pub time: i64,
    /// Its actor's name (empty if none, and for opaque records): rows of a
    /// key are sorted by it, so one actor's rows share a few blocks.
    pub actor: &'a [u8],
    /// The whole payload.
    pub payload: &'a [u8],
}

impl<'a> RowIn<'a> {
    /// A row for `payload`: an event if it has an event's structure (its
    /// bytes come back exactly either way), else opaque.
    pub fn new(lsn: Lsn, payload: &'a [u8]) -> RowIn<'a> {
        match codec::split(payload) {
            Some((head, fields)) => RowIn {
                lsn,
                type_id: head.type_id,
                severity: head.severity,
                time: head.time,
                actor: fields.text(codec::TextField::Actor).unwrap_or_default(),
                payload,
            },
            None => RowIn {
                lsn,
                type_id: 0,
                severity: OPAQUE,
                time: 0,
                actor: &[],
                payload,
            },
        }
    }
}

/// The exponent of the largest power of ten of nanoseconds (up to seconds)
/// that divides every time of `rows`: events stamped to the millisecond
/// store their times in milliseconds, in fewer and more alike bytes.
fn time_exponent(rows: &[RowIn<'_>]) -> u8 {
    (1..=MAX_TIME_EXP)
        .rev()
        .find(|&e| {
            let unit = 10i64.pow(u32::from(e));
            rows.iter().all(|r| r.time % unit == 0)
        })
        .unwrap_or(0)
}

/// The raw (uncompressed) bytes of a block holding `rows`, in their order.
/// Event rows must have an event's structure ([`RowIn::new`] checks).
pub fn encode_block(rows: &[RowIn<'_>]) -> Vec<u8> {
    let mut cols: Vec<Vec<u8>> = vec![Vec::new(); COLUMNS];
    let exp = time_exponent(rows);
    let unit = 10i64.pow(u32::from(exp));
    // Times are stored as differences of quotients by the unit (exact, and
    // without overflow where a difference of times would wrap).
    let (mut prev_lsn, mut prev_time) = (rows.first().map_or(0, |r| r.lsn.0), 0i64);
    for r in rows {
        put_varint(
            &mut cols[COL_LSN],
            zigzag(r.lsn.0.wrapping_sub(prev_lsn) as i64),
        );
        prev_lsn = r.lsn.0;
        cols[COL_KEY].extend_from_slice(&r.type_id.to_le_bytes());
        cols[COL_KEY].push(r.severity);
        let time = r.time / unit;
        put_varint(&mut cols[COL_TIME], zigzag(time.wrapping_sub(prev_time)));
        prev_time = time;
        if r.severity == OPAQUE {
            cols[COL_BITS].extend_from_slice(&0u16.to_le_bytes());
            put_varint(&mut cols[COL_OPAQUE], r.payload.len() as u64);
            cols[COL_OPAQUE].extend_from_slice(r.payload);
            continue;
        }
        let p = r.payload;
        cols[COL_BITS].extend_from_slice(&p[11..13]);
        let bits = u16::from_le_bytes([p[11], p[12]]);
        let mut at = codec::HEADER_LEN;
        for (i, col) in cols[4..4 + FIELD_COLUMNS].iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                let n = codec::field_len(i, &p[at..]).expect("a valid event");
                col.extend_from_slice(&p[at..at + n]);
                at += n;
            }
        }
    }
    let mut out = Vec::with_capacity(cols.iter().map(Vec::len).sum::<usize>() + 64);
    out.extend_from_slice(&[TIME_UNIT_MARK, exp]);
    put_varint(&mut out, rows.len() as u64);
    put_varint(&mut out, rows.first().map_or(0, |r| r.lsn.0));
    for c in &cols {
        put_varint(&mut out, c.len() as u64);
        out.extend_from_slice(c);
    }
    out
}

/// The key of row `row` and its presence bits, read from the LSN, key,
/// time and presence columns; `prev` is the previous row's LSN and time in
/// the block's `unit` (the first row's: the block's first LSN, and 0).
/// Inlined: returned through memory, its result cost a tenth of a scan in
/// store-forwarding stalls.
#[inline(always)]
fn next_key(
    cols: &mut [Rd<'_>; COLUMNS],
    row: u32,
    prev: &mut (u64, i64),
    unit: i64,
) -> Result<(RowKey, u16), Problem> {
    let short = || bad("block ends early");
    let delta = cols[COL_LSN].varint().ok_or_else(short)?;
    prev.0 = prev.0.wrapping_add(unzigzag(delta) as u64);
    if prev.0 == 0 {
        return Err(bad("LSN 0 in a block"));
    }
    let type_id = cols[COL_KEY].u16().ok_or_else(short)?;
    let severity = cols[COL_KEY].u8().ok_or_else(short)?;
    prev.1 = prev
        .1
        .wrapping_add(unzigzag(cols[COL_TIME].varint().ok_or_else(short)?));
    let bits = cols[COL_BITS].u16().ok_or_else(short)?;
    let key = RowKey {
        row,
        lsn: Lsn(prev.0),
        type_id,
        severity,
        time: prev.1.wrapping_mul(unit),
    };
    Ok((key, bits))
}

/// Reads the next row's fields in `bits` (presence bits) from their columns
/// into `fields`, in column order.
#[inline(always)]
fn next_fields<'a>(
    cols: &mut [Rd<'a>; COLUMNS],
    bits: u16,
    fields: &mut codec::Fields<'a>,
) -> Result<(), Problem> {
    let mut read = bits;
    while read != 0 {
        let i = read.trailing_zeros() as usize;
        read &= read - 1;
        let col = &mut cols[4 + i];
        let n = codec::field_len(i, &col.b[col.at..])
            .ok_or_else(|| bad(format!("field {} does not decode", codec::FIELDS[i])))?;
        fields.set(i, col.take(n).ok_or_else(|| bad("block ends early"))?);
    }
    Ok(())
}

/// Where each column of the raw block `raw` starts (its length's first
/// byte), or `None` if its column table does not hold.
pub fn column_starts(raw: &[u8]) -> Option<[usize; COLUMNS]> {
    let mut r = Rd::new(raw);
    prefix(&mut r).ok()?;
    let mut starts = [0; COLUMNS];
    for s in &mut starts {
        *s = r.at;
        let n = usize::try_from(r.varint()?).ok()?;
        r.take(n)?;
    }
    (r.left() == 0).then_some(starts)
}

/// Whether `raw_prefix`, the first bytes of a raw block, holds its columns
/// up to `last` (or is malformed before: more bytes would not help).
fn holds_columns(raw_prefix: &[u8], last: usize) -> bool {
    let mut r = Rd::new(raw_prefix);
    match prefix(&mut r) {
        Ok(_) => {}
        Err(Short) => return false,
        // Malformed: more bytes would not help.
        Err(Bad(_)) => return true,
    }
    for _ in 0..=last {
        let Some(n) = r.varint() else { return false };
        match usize::try_from(n) {
            Ok(n) if n <= r.left() => r.at += n,
            Ok(_) if n <= u64::from(MAX_BLOCK_RAW) => return false,
            _ => return true,
        }
    }
    true
}

/// Why a raw block's prefix does not read: it is cut short, or wrong.
enum PrefixError {
    Short,
    Bad(String),
}
use PrefixError::{Bad, Short};

/// A raw block's prefix: its row count, first LSN and time unit (1 ns for
/// blocks before version 4, which start with the row count).
fn prefix(r: &mut Rd<'_>) -> Result<(u64, u64, i64), PrefixError> {
    let mut unit = 1;
    if r.b.get(r.at) == Some(&TIME_UNIT_MARK) {
        r.at += 1;
        let exp = r.u8().ok_or(Short)?;
        if exp > MAX_TIME_EXP {
            return Err(Bad(format!("block time unit 10^{exp} ns")));
        }
        unit = 10i64.pow(u32::from(exp));
    }
    let rows = r.varint().ok_or(Short)?;
    let first_lsn = r.varint().ok_or(Short)?;
    Ok((rows, first_lsn, unit))
}

/// The columns of a raw block, found from its column table: all of them
/// (`last` = the last column: `raw` must be the whole block), or those up
/// to `last` only (the rest empty; `raw` may be a prefix of the block);
/// with its row count, first LSN and time unit.
fn columns(raw: &[u8], last: usize) -> Result<(u32, u64, i64, [Rd<'_>; COLUMNS]), Problem> {
    let mut r = Rd::new(raw);
    let short = || bad("block ends early");
    let (rows, first_lsn, unit) = prefix(&mut r).map_err(|e| match e {
        Short => short(),
        Bad(what) => bad(what),
    })?;
    let rows = u32::try_from(rows)
        .ok()
        .filter(|&n| n > 0 && n as usize <= raw.len())
        .ok_or_else(|| bad(format!("block claims {rows} rows")))?;
    let mut cols: [Rd<'_>; COLUMNS] = std::array::from_fn(|_| Rd::new(&[]));
    for c in &mut cols[..=last] {
        let n = r.varint().ok_or_else(short)?;
        let n = usize::try_from(n).map_err(|_| short())?;
        *c = Rd::new(r.take(n).ok_or_else(short)?);
    }
    if last == COLUMNS - 1 && r.left() != 0 {
        return Err(bad(format!("{} bytes after the last column", r.left())));
    }
    if cols[COL_KEY].left() != rows as usize * 3 || cols[COL_BITS].left() != rows as usize * 2 {
        return Err(bad("key or presence column does not match the row count"));
    }
    Ok((rows, first_lsn, unit, cols))
}

/// Walks every row of a block's `body`, decompressing only the frames that
/// hold the LSN, key, time and presence columns and the optional fields in
/// `needed` (presence bits), and hands `row` each row's key with those
/// fields alone (rows that are not events: no fields). The block's row
/// count. What aggregates read, and the first pass of [`decode_block_where`].
pub fn scan_block(
    body: &mut Body<'_>,
    d: &mut Decompressor<'_>,
    needed: u16,
    row: &mut dyn FnMut(&RowKey, &codec::Fields<'_>),
) -> Result<u32, Problem> {
    let needed = needed & ALL_FIELDS;
    let last = match needed {
        0 => COL_BITS,
        n => 4 + (15 - n.leading_zeros() as usize),
    };
    while !holds_columns(body.raw(), last) && body.decompress_next(d)? {}
    let (rows, first_lsn, unit, mut cols) = columns(body.raw(), last)?;
    let mut prev = (first_lsn, 0i64);
    let mut fields = codec::Fields::default();
    for n in 0..rows {
        let (key, bits) = next_key(&mut cols, n, &mut prev, unit)?;
        fields.clear();
        if key.severity != OPAQUE {
            if bits >> FIELD_COLUMNS != 0 {
                return Err(bad(format!("unknown presence bits {bits:#06x}")));
            }
            // Only the fields asked for.
            next_fields(&mut cols, bits & needed, &mut fields)?;
        }
        row(&key, &fields);
    }
    Ok(rows)
}

/// Like [`decode_block`], in two passes over a block's `body`: the first
/// ([`scan_block`]) decompresses and reads only the key columns and the
/// optional fields in `needed`, and asks `want` of each row with those
/// fields alone; only if a row is wanted does the second pass decompress
/// the rest and walk the columns to rebuild the wanted rows. A block where
/// nothing matches costs the frames and a walk of the columns the filter
/// reads. `want` must decide from the fields in `needed` only (rows that
/// are not events are asked with no fields).
pub fn decode_block_where(
    body: &mut Body<'_>,
    d: &mut Decompressor<'_>,
    needed: u16,
    want: &mut dyn FnMut(&RowKey, &codec::Fields<'_>) -> bool,
    buf: &mut Vec<u8>,
    out: &mut Vec<(Lsn, Range<usize>)>,
) -> Result<u32, Problem> {
    if needed & ALL_FIELDS == ALL_FIELDS {
        // The filter reads every column: one pass does.
        return decode_block(body.decompress_all(d)?, want, buf, out);
    }
    let mut wanted: Vec<u32> = Vec::new();
    let rows = scan_block(body, d, needed, &mut |k, fields| {
        if want(k, fields) {
            wanted.push(k.row);
        }
    })?;
    if wanted.is_empty() {
        return Ok(rows);
    }
    // The second pass stops after the last wanted row (the first checked
    // the key columns and the filter's fields of every row).
    let (mut next, upto) = (0, wanted[wanted.len() - 1] + 1);
    decode_rows(
        body.decompress_all(d)?,
        &mut |k, _| {
            let hit = wanted.get(next) == Some(&k.row);
            next += usize::from(hit);
            hit
        },
        buf,
        out,
        upto,
    )?;
    Ok(rows)
}

/// What a block decoder learns about each row before deciding whether to
/// rebuild its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    /// Its position in the block.
    pub row: u32,
    /// Its LSN.
    pub lsn: Lsn,
    /// Its type id.
    pub type_id: u16,
    /// Its severity code, or [`OPAQUE`].
    pub severity: u8,
    /// Its time.
    pub time: i64,
}

/// Decodes a raw block: calls `want` with each row's key and encoded fields
/// (empty for opaque rows), and for rows it accepts appends the rebuilt payload to `buf` and `(lsn, range in buf)` to
/// `out`. Returns the number of rows. Never panics, whatever the bytes.
pub fn decode_block(
    raw: &[u8],
    want: &mut dyn FnMut(&RowKey, &codec::Fields<'_>) -> bool,
    buf: &mut Vec<u8>,
    out: &mut Vec<(Lsn, Range<usize>)>,
) -> Result<u32, Problem> {
    decode_rows(raw, want, buf, out, u32::MAX)
}

/// [`decode_block`] of the rows before `upto` only; the block's row count.
/// The columns are checked to hold exactly the rows only when every row is
/// walked.
fn decode_rows(
    raw: &[u8],
    want: &mut dyn FnMut(&RowKey, &codec::Fields<'_>) -> bool,
    buf: &mut Vec<u8>,
    out: &mut Vec<(Lsn, Range<usize>)>,
    upto: u32,
) -> Result<u32, Problem> {
    let (rows, first_lsn, unit, mut cols) = columns(raw, COLUMNS - 1)?;
    let short = || bad("block ends early");
    let mut prev = (first_lsn, 0i64);
    let mut fields = codec::Fields::default();
    let upto = upto.min(rows);
    for row in 0..upto {
        let (key, bits) = next_key(&mut cols, row, &mut prev, unit)?;
        let (lsn, type_id, severity, time) = (key.lsn.0, key.type_id, key.severity, key.time);
        let start = buf.len();
        fields.clear();
        if severity == OPAQUE {
            let n = cols[COL_OPAQUE].varint().ok_or_else(short)?;
            let p = usize::try_from(n)
                .ok()
                .and_then(|n| cols[COL_OPAQUE].take(n))
                .ok_or_else(short)?;
            if want(&key, &fields) {
                buf.extend_from_slice(p);
                out.push((Lsn(lsn), start..buf.len()));
            }
            continue;
        }
        if bits >> FIELD_COLUMNS != 0 {
            return Err(bad(format!("unknown presence bits {bits:#06x}")));
        }
        next_fields(&mut cols, bits, &mut fields)?;
        if want(&key, &fields) {
            buf.extend_from_slice(&type_id.to_le_bytes());
            buf.push(severity);
            buf.extend_from_slice(&time.to_le_bytes());
            buf.extend_from_slice(&bits.to_le_bytes());
            let mut present = bits;
            while present != 0 {
                let i = present.trailing_zeros() as usize;
                present &= present - 1;
                buf.extend_from_slice(fields.encoding(i));
            }
            out.push((Lsn(lsn), start..buf.len()));
        }
    }
    if upto == rows && cols.iter().any(|c| c.left() != 0) {
        return Err(bad("a column holds more than its rows"));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_extremes() {
        for v in [0, 1, -1, i64::MAX, i64::MIN, 12345, -98765] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    /// Events whose times share a power of ten of nanoseconds are stored in
    /// that unit and come back exactly, whatever the times (negative, at
    /// the ends of the range, mixed with opaque rows and with finer ones).
    #[test]
    fn times_are_stored_in_the_largest_unit_that_divides_them_all() {
        use crate::event::{Event, Timestamp};
        let ms = 1_000_000i64;
        let cases: [(&[i64], u8); 7] = [
            (
                &[1_700_000_000_123 * ms, 1_700_000_000_120 * ms, -5 * ms],
                6,
            ),
            (&[1_700_000_000 * 1_000_000_000, 0, -7_000_000_000], 9),
            (&[1_700_000_000_123_456_000, 1_000], 3),
            (&[1_700_000_000_123 * ms, 1_700_000_000_123 * ms + 1], 0),
            (&[i64::MIN, i64::MAX, 0], 0),
            (&[i64::MAX / ms * ms, i64::MIN / ms * ms, 0], 6),
            (&[0, 0], 9),
        ];
        for (times, exp) in cases {
            let mut payloads: Vec<Vec<u8>> = times
                .iter()
                .map(|&t| {
                    let mut p = Vec::new();
                    let e = Event::new(Timestamp(t), "T", crate::Severity::Info);
                    codec::encode(&e, 1, &mut |_| 0, &mut p);
                    p
                })
                .collect();
            payloads.push(b"not an event".to_vec());
            let rows: Vec<RowIn<'_>> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| RowIn::new(Lsn(7 + i as u64), p))
                .collect();
            let raw = encode_block(&rows);
            assert_eq!(raw[..2], [TIME_UNIT_MARK, exp], "{times:?}");
            let (mut buf, mut out) = (Vec::new(), Vec::new());
            let mut got = Vec::new();
            decode_block(
                &raw,
                &mut |k, _| {
                    got.push(k.time);
                    true
                },
                &mut buf,
                &mut out,
            )
            .unwrap();
            assert_eq!(got[..times.len()], times[..], "exponent {exp}");
            for ((_, range), p) in out.iter().zip(&payloads) {
                assert_eq!(&buf[range.clone()], &p[..]);
            }
        }
        // An exponent past seconds is refused, not multiplied out.
        let mut raw = encode_block(&[RowIn::new(Lsn(1), b"x")]);
        raw[1] = MAX_TIME_EXP + 1;
        let err = decode_block(&raw, &mut |_, _| true, &mut Vec::new(), &mut Vec::new());
        assert!(err.is_err());
    }

    #[test]
    fn a_block_of_opaque_rows_round_trips() {
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i)]).collect();
        let rows: Vec<RowIn<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RowIn::new(Lsn(100 + i as u64 * 3), p))
            .collect();
        let raw = encode_block(&rows);
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let n = decode_block(&raw, &mut |_, _| true, &mut buf, &mut out).unwrap();
        assert_eq!(n, 50);
        for ((lsn, range), row) in out.iter().zip(&rows) {
            assert_eq!(*lsn, row.lsn);
            assert_eq!(&buf[range.clone()], row.payload);
        }
        for cut in 0..raw.len() {
            let _ = decode_block(&raw[..cut], &mut |_, _| true, &mut buf, &mut out);
        }
    }
}
