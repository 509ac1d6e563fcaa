//! Compacted segments: sealed raw segments rewritten as zstd-compressed,
//! columnar blocks sorted by (type, severity) inside LSN stripes, with an
//! index of which blocks hold each (type, severity), and each block's LSN
//! and time range.
//!
//! - `format`: the bytes (pure, fuzzed);
//! - `build`: records → file bytes (pure);
//! - this module: a compacted segment as the running log knows it, and
//!   reading a stripe of it through a [`Prefilter`], with an [`Explain`] of
//!   what was read and why.
//!
//! The compactor itself (taking sealed segments, the atomic swap) is in
//! `wal::compactor`; retention is in `wal::compactor` too.

pub mod build;
pub mod format;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Corruption, Error, Problem, Result};
use crate::io::SegmentFile;
use crate::wal::Record;
use crate::{Lsn, SegmentId};
use format::{BlockMeta, Header, Index, OPAQUE};

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

/// Which records a reader wants, as far as the index can tell: a superset
/// of a query's matches (the query checks every record it gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefilter {
    /// Per type id, whether it can match (`None`: every type; ids past the
    /// end can match).
    pub types: Option<Vec<bool>>,
    /// Least severity code.
    pub min_severity: u8,
    /// Greatest severity code.
    pub max_severity: u8,
    /// Earliest time (ns, inclusive).
    pub since: i64,
    /// Latest time (ns, inclusive).
    pub until: i64,
}

impl Default for Prefilter {
    fn default() -> Self {
        Prefilter {
            types: None,
            min_severity: 0,
            max_severity: u8::MAX,
            since: i64::MIN,
            until: i64::MAX,
        }
    }
}

impl Prefilter {
    /// Whether records of this key can match. Opaque records always can (the
    /// reader above reports them as it would in a scan).
    pub fn key_ok(&self, type_id: u16, severity: u8) -> bool {
        severity == OPAQUE
            || (severity >= self.min_severity
                && severity <= self.max_severity
                && self
                    .types
                    .as_ref()
                    .is_none_or(|t| t.get(usize::from(type_id)).copied().unwrap_or(true)))
    }

    /// Whether a raw record's payload can match, from its fixed-offset
    /// header only (anything that does not look like an event can).
    pub fn payload_ok(&self, payload: &[u8]) -> bool {
        if self.is_all() {
            return true;
        }
        let (Some((id, sev)), Some(t)) = (
            crate::event::codec::peek_type_severity(payload),
            crate::event::codec::peek_time(payload),
        ) else {
            return true;
        };
        self.key_ok(id, sev.code()) && t.0 >= self.since && t.0 <= self.until
    }

    fn is_all(&self) -> bool {
        !self.keys_limited() && self.since == i64::MIN && self.until == i64::MAX
    }

    fn keys_limited(&self) -> bool {
        self.types.is_some() || self.min_severity > 0 || self.max_severity < OPAQUE - 1
    }

    fn time_ok(&self, min: i64, max: i64) -> bool {
        min <= self.until && max >= self.since
    }
}

/// What a reader read of one segment, and why (`auditlog query --explain`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentPlan {
    /// The segment.
    pub segment: SegmentId,
    /// Compacted (index used) or raw (scanned).
    pub compacted: bool,
    /// The LSNs it covers.
    pub lsns: (Lsn, Lsn),
    /// Blocks in the stripes looked at.
    pub blocks: u64,
    /// Blocks decompressed.
    pub blocks_read: u64,
    /// Blocks skipped: no (type, severity) the filter accepts.
    pub skipped_by_key: u64,
    /// Blocks skipped: their time range is outside the filter's.
    pub skipped_by_time: u64,
    /// Blocks skipped: outside the LSN range read.
    pub skipped_by_lsn: u64,
    /// Blocks skipped: quarantined damage.
    pub skipped_damaged: u64,
    /// Compressed bytes read.
    pub bytes_read: u64,
    /// Records passed on to the filter.
    pub records: u64,
}

/// What a query read: one entry per segment, in the order read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explain {
    /// Per segment.
    pub segments: Vec<SegmentPlan>,
}

impl Explain {
    pub(crate) fn entry(
        &mut self,
        segment: SegmentId,
        compacted: bool,
        lsns: (Lsn, Lsn),
    ) -> &mut SegmentPlan {
        let fresh = self
            .segments
            .last()
            .is_none_or(|p| p.segment != segment || p.compacted != compacted);
        if fresh {
            self.segments.push(SegmentPlan {
                segment,
                compacted,
                lsns,
                ..SegmentPlan::default()
            });
        }
        self.segments.last_mut().expect("pushed")
    }

    /// Blocks decompressed, of blocks in the stripes looked at.
    pub fn blocks(&self) -> (u64, u64) {
        self.segments
            .iter()
            .fold((0, 0), |(r, t), p| (r + p.blocks_read, t + p.blocks))
    }
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.segments {
            if p.compacted {
                writeln!(
                    f,
                    "segment {} compacted, LSNs {}..={}: read {} of {} blocks ({} bytes); skipped {} by type/severity index, {} by time range, {} by LSN range, {} damaged; {} records to the filter",
                    p.segment, p.lsns.0, p.lsns.1 .0.saturating_sub(1), p.blocks_read, p.blocks, p.bytes_read,
                    p.skipped_by_key, p.skipped_by_time, p.skipped_by_lsn, p.skipped_damaged, p.records
                )?;
            } else {
                writeln!(
                    f,
                    "segment {} raw, LSNs {}..={}: scanned, {} records to the filter",
                    p.segment,
                    p.lsns.0,
                    p.lsns.1 .0.saturating_sub(1),
                    p.records
                )?;
            }
        }
        let (read, total) = self.blocks();
        write!(f, "total: {read} of {total} compacted blocks read")
    }
}

/// A compacted segment, as the running log knows it.
#[derive(Debug)]
pub(crate) struct CSeg {
    pub(crate) id: SegmentId,
    pub(crate) first_lsn: Lsn,
    /// One past its last LSN.
    pub(crate) next_lsn: Lsn,
    pub(crate) path: PathBuf,
    pub(crate) bytes: Bytes,
    pub(crate) index: Index,
    pub(crate) records: u64,
    /// Bytes of the index.
    pub(crate) index_len: u64,
    /// Raw bytes of all blocks (for the compression ratio).
    pub(crate) raw_bytes: u64,
    /// The low 32 bits of its log's identity (0: unknown).
    pub(crate) log_tag: u32,
    /// Blocks quarantined by `Repair` (by block number), sorted.
    pub(crate) damaged: Vec<u32>,
    /// Blocks holding records that are not events, sorted.
    opaque: Vec<u32>,
    _file: Arc<dyn SegmentFile>,
}

/// Why a compacted segment did not load: (problem, byte range).
pub(crate) type LoadError = (Problem, u64, u64);

impl CSeg {
    /// Loads the compacted segment in `file`. With `repair`, a damaged header
    /// or index is rebuilt from the blocks (taking the LSN range from what
    /// the neighbours say: the previous segment's end, if there is one, else
    /// the least LSN of the blocks; and the next segment's start).
    pub(crate) fn load(
        id: SegmentId,
        path: &Path,
        file: Arc<dyn SegmentFile>,
        repair: Option<(Option<Lsn>, Lsn)>,
    ) -> std::result::Result<CSeg, LoadError> {
        file.freeze(file.file_len());
        let view = file
            .view()
            .map_err(|e| (Problem::BadCompacted(format!("cannot map: {e}")), 0, 0))?;
        let bytes = Bytes::from_owner(view);
        let len = bytes.len() as u64;
        let loaded = Header::decode(&bytes)
            .map_err(|p| (p, 0, format::HEADER_LEN as u64))
            .and_then(|h| {
                if h.segment != id {
                    return Err((
                        Problem::Mismatch {
                            field: "segment number in compacted header",
                            expected: id.0,
                            found: h.segment.0,
                        },
                        0,
                        format::HEADER_LEN as u64,
                    ));
                }
                let idx = &bytes[h.index_offset as usize..];
                Index::decode(idx, &h)
                    .map(|i| (h, i))
                    .map_err(|p| (p, h.index_offset, len))
            });
        let (header, index) = match (loaded, repair) {
            (Ok(loaded), _) => loaded,
            (Err(e), None) => return Err(e),
            (Err(_), Some((first, next))) => rebuild(id, &bytes, first, next),
        };
        let raw_bytes = index.blocks.iter().map(|b| u64::from(b.raw_len)).sum();
        let mut opaque: Vec<u32> = index
            .keys
            .iter()
            .filter(|k| k.severity == OPAQUE)
            .flat_map(|k| k.postings.iter().map(|p| p.block))
            .collect();
        opaque.sort_unstable();
        Ok(CSeg {
            id,
            first_lsn: header.first_lsn,
            next_lsn: header.next_lsn,
            path: path.to_path_buf(),
            records: header.records,
            index_len: u64::from(header.index_len),
            log_tag: header.log_tag,
            raw_bytes,
            index,
            bytes,
            damaged: Vec::new(),
            opaque,
            _file: file,
        })
    }

    /// The file anew: this header and index (rebuilt by `Repair`) around the
    /// blocks, which stay where they are. `None` if the blocks do not follow
    /// each other from the header on (a damaged one was left out), as a
    /// valid file's must.
    pub(crate) fn rewritten(&self, log_tag: u32) -> Option<Vec<u8>> {
        let mut at = format::HEADER_LEN as u64;
        for b in &self.index.blocks {
            if b.offset != at {
                return None;
            }
            at = b.end();
        }
        let index = self.index.encode();
        let header = Header {
            segment: self.id,
            first_lsn: self.first_lsn,
            next_lsn: self.next_lsn,
            records: self.records,
            index_offset: at,
            index_len: u32::try_from(index.len()).ok()?,
            log_tag,
        };
        let mut bytes = header.encode().to_vec();
        if at > format::HEADER_LEN as u64 {
            bytes.extend_from_slice(self.bytes.get(format::HEADER_LEN..at as usize)?);
        }
        bytes.extend_from_slice(&index);
        Some(bytes)
    }

    /// Bytes of the file.
    pub(crate) fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The latest event time in the segment (`None` if it holds no event).
    pub(crate) fn max_time(&self) -> Option<i64> {
        self.index
            .blocks
            .iter()
            .map(|b| b.max_time)
            .max()
            .filter(|&t| t != i64::MIN)
    }

    /// The earliest event time in the segment.
    pub(crate) fn min_time(&self) -> Option<i64> {
        self.index
            .blocks
            .iter()
            .map(|b| b.min_time)
            .min()
            .filter(|&t| t != i64::MAX)
    }

    /// The stripe holding `lsn` (or the first after it).
    pub(crate) fn stripe_for(&self, lsn: Lsn) -> Option<usize> {
        let i = self.index.stripes.partition_point(|s| s.next_lsn <= lsn);
        (i < self.index.stripes.len()).then_some(i)
    }

    pub(crate) fn corruption(&self, b: &BlockMeta, problem: Problem) -> Error {
        Error::from(Corruption {
            path: self.path.clone(),
            segment: self.id,
            offset: b.offset,
            end: b.end(),
            lsns_lost: None,
            problem,
        })
    }

    /// The decompressed bytes of block `n`, checked against its CRC.
    pub(crate) fn block_raw(&self, n: usize) -> std::result::Result<Vec<u8>, Problem> {
        let b = &self.index.blocks[n];
        let at = b.offset as usize;
        let (comp_len, raw_len, crc) = format::decode_block_header(&self.bytes[at..])?;
        if comp_len != b.comp_len || raw_len != b.raw_len {
            return Err(Problem::BadCompacted(format!(
                "block {n} header says {comp_len}/{raw_len} bytes, the index {}/{}",
                b.comp_len, b.raw_len
            )));
        }
        let comp = &self.bytes[at + format::BLOCK_HEADER_LEN..b.end() as usize];
        let computed = crc32fast::hash(comp);
        if computed != crc {
            return Err(Problem::FrameCrc {
                stored: crc,
                computed,
            });
        }
        let raw = zstd::bulk::decompress(comp, raw_len as usize)
            .map_err(|e| Problem::BadCompacted(format!("block {n} does not decompress: {e}")))?;
        if raw.len() != raw_len as usize {
            return Err(Problem::BadCompacted(format!(
                "block {n} decompresses to {} bytes, not {raw_len}",
                raw.len()
            )));
        }
        Ok(raw)
    }

    /// The records of stripe `s` with LSNs in `lo..=hi` that `pre` lets
    /// through, in LSN order; what was read goes into `explain`.
    pub(crate) fn read_stripe(
        &self,
        s: usize,
        lo: Lsn,
        hi: Lsn,
        pre: &Prefilter,
        explain: Option<&mut Explain>,
    ) -> Result<Vec<Record>> {
        let st = self.index.stripes[s];
        let blocks = st.first_block as usize..(st.first_block + st.blocks) as usize;
        // Which rows of each block the key filter accepts.
        let mut wanted: Vec<Vec<(u32, u32)>> = vec![Vec::new(); blocks.len()];
        let limited = pre.keys_limited();
        if limited {
            for k in &self.index.keys {
                if !pre.key_ok(k.type_id, k.severity) {
                    continue;
                }
                let from = k
                    .postings
                    .partition_point(|p| (p.block as usize) < blocks.start);
                for p in k.postings[from..]
                    .iter()
                    .take_while(|p| (p.block as usize) < blocks.end)
                {
                    wanted[p.block as usize - blocks.start]
                        .push((p.first_row, p.first_row + p.rows));
                }
            }
        }
        // What was read goes straight into the explain entry (or nowhere).
        let mut scratch = SegmentPlan::default();
        let plan = match explain {
            Some(e) => e.entry(self.id, true, (self.first_lsn, self.next_lsn)),
            None => &mut scratch,
        };
        let mut buf = Vec::new();
        let mut rows = Vec::new();
        for (i, n) in blocks.clone().enumerate() {
            let b = &self.index.blocks[n];
            plan.blocks += 1;
            if b.max_lsn < lo || b.min_lsn > hi {
                plan.skipped_by_lsn += 1;
                continue;
            }
            if limited && wanted[i].is_empty() {
                plan.skipped_by_key += 1;
                continue;
            }
            let has_opaque = self.has_opaque(n);
            if !pre.time_ok(b.min_time, b.max_time) && !has_opaque {
                plan.skipped_by_time += 1;
                continue;
            }
            if self.damaged.binary_search(&(n as u32)).is_ok() {
                plan.skipped_damaged += 1;
                continue;
            }
            plan.blocks_read += 1;
            plan.bytes_read += u64::from(b.comp_len);
            let raw = self.block_raw(n).map_err(|p| self.corruption(b, p))?;
            let ranges = &wanted[i];
            let before = rows.len();
            format::decode_block(
                &raw,
                &mut |k| {
                    k.lsn >= lo
                        && k.lsn <= hi
                        && (!limited || ranges.iter().any(|&(a, z)| k.row >= a && k.row < z))
                        && (k.severity == OPAQUE || (k.time >= pre.since && k.time <= pre.until))
                },
                &mut buf,
                &mut rows,
            )
            .map_err(|p| self.corruption(b, p))?;
            if rows[before..]
                .iter()
                .any(|(l, _)| *l < st.first_lsn || *l >= st.next_lsn)
            {
                let p = Problem::BadCompacted(format!("block {n} holds LSNs outside its stripe"));
                return Err(self.corruption(b, p));
            }
        }
        plan.records += rows.len() as u64;
        rows.sort_unstable_by_key(|r| r.0);
        if rows.windows(2).any(|w| w[0].0 == w[1].0) {
            let p = Problem::BadCompacted(format!("an LSN appears twice in stripe {s}"));
            return Err(self.corruption(&self.index.blocks[blocks.start], p));
        }
        let buf = Bytes::from(buf);
        Ok(rows
            .into_iter()
            .map(|(lsn, r)| Record::new(lsn, buf.slice(r)))
            .collect())
    }

    fn has_opaque(&self, block: usize) -> bool {
        self.opaque.binary_search(&(block as u32)).is_ok()
    }

    /// Checks every block (CRC, decompression, rows inside their stripe) and
    /// the row count; returns the damaged blocks with what is wrong.
    pub(crate) fn check_blocks(&self) -> Vec<(usize, Problem)> {
        let mut bad = Vec::new();
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        for (n, b) in self.index.blocks.iter().enumerate() {
            let st = self.index.stripes.get(b.stripe as usize).copied();
            let r = self.block_raw(n).and_then(|raw| {
                buf.clear();
                out.clear();
                let mut outside = false;
                let rows = format::decode_block(
                    &raw,
                    &mut |k| {
                        outside |= st.is_none_or(|s| k.lsn < s.first_lsn || k.lsn >= s.next_lsn);
                        false
                    },
                    &mut buf,
                    &mut out,
                )?;
                if rows != b.rows || outside {
                    return Err(Problem::BadCompacted(format!(
                        "block {n} holds {rows} rows (index: {}) or LSNs outside its stripe",
                        b.rows
                    )));
                }
                Ok(())
            });
            if let Err(p) = r {
                bad.push((n, p));
            }
        }
        bad
    }
}

/// Rebuilds a damaged header or index from the blocks that are intact:
/// walks the block headers from the start of the data, keeps each block
/// whose CRC and rows check, and puts them all in one stripe.
/// A header and index for the blocks of `bytes`. Every block-shaped region keeps its place: a damaged one (its
/// CRC, compression or columns do not check, or its LSNs lie outside the
/// range), or garbage between two blocks, is indexed as a one-row block that
/// holds nothing readable, which `Repair` then quarantines as it would any
/// damaged block, so the rebuilt file can be written back whole. With no
/// `first` (no segment before this one), the range starts at the least LSN
/// the intact blocks hold.
fn rebuild(id: SegmentId, bytes: &[u8], first: Option<Lsn>, next: Lsn) -> (Header, Index) {
    let (mut blocks, mut metas_of) = (Vec::new(), Vec::new());
    let mut at = format::HEADER_LEN;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    // A block whose data checks, starting at `at`: its length and rows.
    let mut read_block = |at: usize| -> Option<(usize, Option<Vec<format::RowKey>>)> {
        let (comp_len, raw_len, crc) = format::decode_block_header(bytes.get(at..)?).ok()?;
        let start = at + format::BLOCK_HEADER_LEN;
        let comp = bytes.get(start..start + comp_len as usize)?;
        let len = format::BLOCK_HEADER_LEN + comp_len as usize;
        if crc32fast::hash(comp) != crc || raw_len > format::MAX_BLOCK_RAW {
            return Some((len, None));
        }
        let Ok(raw) = zstd::bulk::decompress(comp, raw_len as usize) else {
            return Some((len, None));
        };
        let mut metas = Vec::new();
        buf.clear();
        out.clear();
        let ok = format::decode_block(
            &raw,
            &mut |k| {
                metas.push(*k);
                false
            },
            &mut buf,
            &mut out,
        );
        let outside = |k: &format::RowKey| first.is_some_and(|f| k.lsn < f) || k.lsn >= next;
        let good = ok.is_ok() && !metas.is_empty() && !metas.iter().any(outside);
        Some((len, good.then_some(metas)))
    };
    while at < bytes.len() {
        match read_block(at) {
            Some((len, metas)) => {
                blocks.push((at, len));
                metas_of.push(metas);
                at += len;
            }
            None => {
                // Garbage, or the old index: blocks go on only where an intact
                // one starts again.
                let resume = (at + 1..bytes.len().saturating_sub(3))
                    .filter(|&q| &bytes[q..q + 4] == format::BLOCK_MAGIC)
                    .find(|&q| matches!(read_block(q), Some((_, Some(_)))));
                match resume {
                    Some(q) if q - at >= format::BLOCK_HEADER_LEN => {
                        blocks.push((at, q - at));
                        metas_of.push(None);
                        at = q;
                    }
                    _ => break,
                }
            }
        }
    }
    let good_min = metas_of.iter().flatten().flatten().map(|k| k.lsn).min();
    let first = first.or(good_min).unwrap_or(next);
    let mut index = Index::default();
    let mut keys: std::collections::BTreeMap<(u16, u8), Vec<format::Posting>> = Default::default();
    let mut records = 0u64;
    for ((offset, len), metas) in blocks.into_iter().zip(metas_of) {
        let n = index.blocks.len() as u32;
        let comp_len = (len - format::BLOCK_HEADER_LEN) as u32;
        let Some(metas) = metas else {
            // Nothing readable: one row, in the range, under the opaque key.
            if next <= first {
                continue;
            }
            index.blocks.push(BlockMeta {
                offset: offset as u64,
                comp_len,
                raw_len: 0,
                rows: 1,
                stripe: 0,
                min_lsn: first,
                max_lsn: first,
                min_time: i64::MAX,
                max_time: i64::MIN,
            });
            keys.entry((0, OPAQUE)).or_default().push(format::Posting {
                block: n,
                first_row: 0,
                rows: 1,
            });
            records += 1;
            continue;
        };
        let raw_len = format::decode_block_header(&bytes[offset..]).map_or(0, |h| h.1);
        let events = metas.iter().filter(|k| k.severity != OPAQUE);
        index.blocks.push(BlockMeta {
            offset: offset as u64,
            comp_len,
            raw_len,
            rows: metas.len() as u32,
            stripe: 0,
            min_lsn: metas.iter().map(|k| k.lsn).min().unwrap_or(next),
            max_lsn: metas.iter().map(|k| k.lsn).max().unwrap_or(next),
            min_time: events.clone().map(|k| k.time).min().unwrap_or(i64::MAX),
            max_time: events.map(|k| k.time).max().unwrap_or(i64::MIN),
        });
        for k in &metas {
            let list = keys.entry((k.type_id, k.severity)).or_default();
            match list.last_mut() {
                Some(p) if p.block == n && p.first_row + p.rows == k.row => p.rows += 1,
                _ => list.push(format::Posting {
                    block: n,
                    first_row: k.row,
                    rows: 1,
                }),
            }
        }
        records += metas.len() as u64;
    }
    if next > first {
        index.stripes.push(format::StripeMeta {
            first_lsn: first,
            next_lsn: next,
            first_block: 0,
            blocks: index.blocks.len() as u32,
        });
    }
    index.keys = keys
        .into_iter()
        .map(|((type_id, severity), postings)| format::KeyEntry {
            type_id,
            severity,
            postings,
        })
        .collect();
    let header = Header {
        segment: id,
        first_lsn: first,
        next_lsn: next,
        records,
        index_offset: 0,
        index_len: 0,
        log_tag: 0,
    };
    (header, index)
}
