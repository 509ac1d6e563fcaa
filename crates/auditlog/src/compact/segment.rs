//! A compacted segment opened for reading: its index in memory, its blocks
//! read a stripe at a time through a [`RowFilter`].

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use zstd::bulk::Decompressor;

use super::body::Body;
use super::filter::{RowFilter, SegmentPlan};
use super::format::{self, BlockMeta, Header, Index, StripeMeta, OPAQUE};
use crate::error::{BlockLoss, Corruption, Error, Problem, Result};
use crate::event::codec::Head;
use crate::io::SegmentFile;
use crate::{Lsn, SegmentId};

/// Runs `f` with this thread's zstd context (making a context per block
/// cost a twentieth of a scan). `f` runs a block's callbacks, which may read
/// the log again (an aggregate meeting a type id it does not know reloads the
/// catalog): a nested call gets a context of its own.
fn with_decompressor<T>(
    f: impl FnOnce(&mut Decompressor<'static>) -> std::result::Result<T, Problem>,
) -> std::result::Result<T, Problem> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let fresh =
        || Decompressor::new().map_err(|e| Problem::BadCompacted(format!("no zstd context: {e}")));
    CONTEXT.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => {
            if c.is_none() {
                *c = Some(fresh()?);
            }
            f(c.as_mut().expect("made above"))
        }
        Err(_) => f(&mut fresh()?),
    })
}

/// Rows read from a stripe: one buffer, and each row's LSN and bytes in it.
pub(crate) type Rows<B = Bytes> = (B, Vec<(Lsn, Range<usize>)>);

/// Rows decoded from some blocks, and the zstd frames decompressed and in
/// all in those blocks.
type Decoded = (Rows<Vec<u8>>, (u64, u64));

/// Blocks a stripe read must have to be shared among threads: fewer cost
/// less than starting the threads.
const PARALLEL_BLOCKS: usize = 8;

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
    /// Where the index starts (block filters are read from there).
    index_offset: u64,
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
            index_offset: header.index_offset,
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
            version: format::VERSION,
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

    /// Damage of block `n`, with what the index says it held.
    pub(crate) fn block_corruption(&self, n: usize, problem: Problem) -> Error {
        Error::from(self.block_damage(n, problem))
    }

    /// Damage of block `n`, with what the index says it held, as a report
    /// lists it (`verify`, a checked open, `repair`).
    pub(crate) fn block_damage(&self, n: usize, problem: Problem) -> Corruption {
        Corruption {
            block: Some(self.block_loss(n)),
            ..self.damage_at(&self.index.blocks[n], problem)
        }
    }

    /// What block `n` held, as the index says.
    fn block_loss(&self, n: usize) -> BlockLoss {
        let b = &self.index.blocks[n];
        BlockLoss {
            block: n as u32,
            records: b.rows,
            lsns: (b.min_lsn, b.max_lsn),
        }
    }

    /// Damage found where block `b` is, not of that block alone.
    pub(crate) fn corruption(&self, b: &BlockMeta, problem: Problem) -> Error {
        Error::from(self.damage_at(b, problem))
    }

    fn damage_at(&self, b: &BlockMeta, problem: Problem) -> Corruption {
        Corruption {
            path: self.path.clone(),
            segment: self.id,
            offset: b.offset,
            end: b.end(),
            lsns_lost: None,
            block: None,
            problem,
        }
    }

    /// The decompressed bytes of block `n`, checked against its CRC.
    pub(crate) fn block_raw(&self, n: usize) -> std::result::Result<Vec<u8>, Problem> {
        let body = self.block_body(n)?;
        with_decompressor(|d| body.into_raw(d))
    }

    /// The body of block `n`, checked against its CRC, not yet decompressed.
    fn block_body(&self, n: usize) -> std::result::Result<Body<'_>, Problem> {
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
        Body::parse(comp, raw_len)
    }

    /// The rows of stripe `s` with LSNs in `lo..=hi` that `filter` lets
    /// through, in LSN order; what was read is added to `plan`.
    pub(crate) fn read_stripe(
        &self,
        s: usize,
        lo: Lsn,
        hi: Lsn,
        filter: &dyn RowFilter,
        plan: &mut SegmentPlan,
        threads: usize,
    ) -> Result<Rows> {
        let st = self.index.stripes[s];
        let blocks = st.first_block as usize..(st.first_block + st.blocks) as usize;
        // Which rows of each block the key filter accepts.
        let mut wanted: Vec<Vec<(u32, u32)>> = vec![Vec::new(); blocks.len()];
        let limited = filter.keys_limited();
        if limited {
            for k in &self.index.keys {
                if k.severity != OPAQUE && !filter.key(k.type_id, k.severity) {
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
        // Which blocks to read: the index, the block filters and the
        // quarantine decide, before any is decompressed.
        let mut to_read = Vec::new();
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
            if self.passed_over(n, filter, plan) {
                continue;
            }
            plan.blocks_read += 1;
            plan.bytes_read += u64::from(b.comp_len);
            plan.rows += u64::from(b.rows);
            to_read.push((i, n));
        }
        let read =
            |part: &[(usize, usize)]| self.decode_blocks(part, &wanted, st, (lo, hi), filter);
        let ((buf, mut rows), frames) = if threads > 1 && to_read.len() >= PARALLEL_BLOCKS {
            // Contiguous runs of blocks, one per thread, joined in order:
            // the same rows, and the same first error, as one thread gives.
            let per = to_read.len().div_ceil(threads);
            let parts: Vec<Result<Decoded>> = std::thread::scope(|scope| {
                let running: Vec<_> = to_read
                    .chunks(per)
                    .map(|part| {
                        std::thread::Builder::new()
                            .name("auditlog-read".into())
                            .spawn_scoped(scope, move || read(part))
                            .map_err(|_| part)
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|t| match t {
                        Ok(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        // No thread to be had: this run is read here.
                        Err(part) => read(part),
                    })
                    .collect()
            });
            // The first run's buffers take the others (one copy less).
            let mut parts = parts.into_iter();
            let ((mut buf, mut rows), mut frames) = parts.next().expect("a run at least")?;
            for part in parts {
                let ((b, r), f) = part?;
                let at = buf.len();
                buf.extend_from_slice(&b);
                rows.extend(r.into_iter().map(|(l, x)| (l, x.start + at..x.end + at)));
                frames = (frames.0 + f.0, frames.1 + f.1);
            }
            ((buf, rows), frames)
        } else {
            read(&to_read)?
        };
        plan.frames.0 += frames.0;
        plan.frames.1 += frames.1;
        plan.records += rows.len() as u64;
        rows.sort_unstable_by_key(|r| r.0);
        if rows.windows(2).any(|w| w[0].0 == w[1].0) {
            let p = Problem::BadCompacted(format!("an LSN appears twice in stripe {s}"));
            return Err(self.corruption(&self.index.blocks[blocks.start], p));
        }
        Ok((Bytes::from(buf), rows))
    }

    /// Decodes blocks `part` of stripe `st` (each as (its place in the
    /// stripe, its number)): the rows in `lo..=hi` that `filter` and the
    /// key ranges `wanted` let through, in block order, and the frames
    /// decompressed and in all.
    fn decode_blocks(
        &self,
        part: &[(usize, usize)],
        wanted: &[Vec<(u32, u32)>],
        st: StripeMeta,
        (lo, hi): (Lsn, Lsn),
        filter: &dyn RowFilter,
    ) -> Result<Decoded> {
        let (limited, all) = (filter.keys_limited(), filter.is_all());
        let (mut buf, mut rows) = (Vec::new(), Vec::new());
        if all {
            // Every row comes out: sized once, about the blocks' raw bytes,
            // rather than grown by doubling (a stripe's worth, copied and
            // held up to twice over, was the peak of a full read).
            let blocks = part.iter().map(|&(_, n)| &self.index.blocks[n]);
            let (raw, n): (usize, usize) = blocks.fold((0, 0), |(r, n), b| {
                (r + b.raw_len as usize, n + b.rows as usize)
            });
            buf.reserve(raw + 8 * n);
            rows.reserve(n);
        }
        let mut frames = (0u64, 0u64);
        for &(i, n) in part {
            let mut body = self
                .block_body(n)
                .map_err(|p| self.block_corruption(n, p))?;
            let ranges = &wanted[i];
            let mut outside = false;
            with_decompressor(|d| {
                format::decode_block_where(
                    &mut body,
                    d,
                    filter.columns(),
                    &mut |k, fields| {
                        outside |= k.lsn < st.first_lsn || k.lsn >= st.next_lsn;
                        if k.lsn < lo || k.lsn > hi {
                            return false;
                        }
                        if k.severity == OPAQUE || all {
                            return true;
                        }
                        let head = Head {
                            type_id: k.type_id,
                            severity: k.severity,
                            time: k.time,
                        };
                        (!limited || ranges.iter().any(|&(a, z)| k.row >= a && k.row < z))
                            && filter.row(&head, fields)
                    },
                    &mut buf,
                    &mut rows,
                )
            })
            .map_err(|p| self.block_corruption(n, p))?;
            if outside {
                let p = Problem::BadCompacted(format!("block {n} holds LSNs outside its stripe"));
                return Err(self.block_corruption(n, p));
            }
            let (done, count) = body.frames();
            frames = (frames.0 + done as u64, frames.1 + count as u64);
        }
        Ok(((buf, rows), frames))
    }

    /// Visits what `filter` accepts in the whole segment, in no particular
    /// order, without building records: for each (type, severity) posting
    /// of a block whose time range lies inside the filter's, `whole` may
    /// take the posting's rows at once (and returns whether it did); every
    /// other accepted row goes to `row` with its key and the encoded fields
    /// the filter reads and the fields in `needed` (presence bits), only
    /// those decompressed (opaque rows too, with [`OPAQUE`] severity and no
    /// fields).
    pub(crate) fn visit(
        &self,
        filter: &dyn RowFilter,
        needed: u16,
        whole: &mut dyn FnMut(u16, u8, u32, &BlockMeta) -> bool,
        row: &mut dyn FnMut(&format::RowKey, &crate::event::codec::Fields<'_>) -> Result<()>,
        plan: &mut SegmentPlan,
    ) -> Result<()> {
        let n_blocks = self.index.blocks.len();
        // Per block, the row ranges of the keys the filter accepts.
        let mut wanted: Vec<Vec<(u16, u8, u32, u32)>> = vec![Vec::new(); n_blocks];
        for k in &self.index.keys {
            if k.severity != OPAQUE && !filter.key(k.type_id, k.severity) {
                continue;
            }
            for p in &k.postings {
                if let Some(w) = wanted.get_mut(p.block as usize) {
                    w.push((k.type_id, k.severity, p.first_row, p.first_row + p.rows));
                }
            }
        }
        let (since, until) = filter.time();
        for (n, b) in self.index.blocks.iter().enumerate() {
            plan.blocks += 1;
            let ranges = &mut wanted[n];
            if ranges.is_empty() {
                plan.skipped_by_key += 1;
                continue;
            }
            if self.passed_over(n, filter, plan) {
                continue;
            }
            if b.min_time >= since && b.max_time <= until {
                ranges.retain(|&(t, sev, a, z)| sev == OPAQUE || !whole(t, sev, z - a, b));
                if ranges.is_empty() {
                    continue;
                }
            }
            plan.blocks_read += 1;
            plan.bytes_read += u64::from(b.comp_len);
            plan.rows += u64::from(b.rows);
            let mut body = self
                .block_body(n)
                .map_err(|p| self.block_corruption(n, p))?;
            let mut failed = None;
            let mut matched = 0u64;
            let needed = needed | filter.columns();
            with_decompressor(|d| {
                format::scan_block(&mut body, d, needed, &mut |k, fields| {
                    if failed.is_some()
                        || !ranges.iter().any(|&(_, _, a, z)| k.row >= a && k.row < z)
                    {
                        return;
                    }
                    let ok = k.severity == OPAQUE
                        || filter.row(
                            &Head {
                                type_id: k.type_id,
                                severity: k.severity,
                                time: k.time,
                            },
                            fields,
                        );
                    if ok {
                        matched += 1;
                        if let Err(e) = row(k, fields) {
                            failed = Some(e);
                        }
                    }
                })
            })
            .map_err(|p| self.block_corruption(n, p))?;
            let (done, count) = body.frames();
            plan.frames.0 += done as u64;
            plan.frames.1 += count as u64;
            plan.records += matched;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether block `n` is passed over for its times, its filter or its
    /// damage (a block holding records that are not events is never passed
    /// over for times or values: the reader above reports them); counted
    /// in `plan`.
    fn passed_over(&self, n: usize, filter: &dyn RowFilter, plan: &mut SegmentPlan) -> bool {
        let b = &self.index.blocks[n];
        let (since, until) = filter.time();
        let has_opaque = self.has_opaque(n);
        let counter = if !has_opaque && (b.min_time > until || b.max_time < since) {
            &mut plan.skipped_by_time
        } else if !has_opaque && self.filter(n).is_some_and(|f| !filter.bloom(&f)) {
            &mut plan.skipped_by_filter
        } else if self.damaged.binary_search(&(n as u32)).is_ok() {
            &mut plan.skipped_damaged
        } else {
            return false;
        };
        *counter += 1;
        true
    }

    /// The filter of block `n`, if it has one (read from the mapped file).
    fn filter(&self, n: usize) -> Option<super::bloom::Bloom<'_>> {
        let r = self.index.filters.get(n)?;
        let at = usize::try_from(self.index_offset).ok()?;
        super::bloom::Bloom::new(self.bytes.get(at + r.start as usize..at + r.end as usize)?)
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
                    &mut |k, _| {
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
        let raw = Body::parse(comp, raw_len).and_then(|b| with_decompressor(|d| b.into_raw(d)));
        let Ok(raw) = raw else {
            return Some((len, None));
        };
        let mut metas = Vec::new();
        buf.clear();
        out.clear();
        let ok = format::decode_block(
            &raw,
            &mut |k, _| {
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
        version: format::VERSION,
    };
    (header, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block's callbacks may read the log again: the nested read gets a
    /// context of its own instead of a panic on the borrowed one.
    #[test]
    fn a_read_inside_a_blocks_callback_gets_its_own_zstd_context() {
        let frame = zstd::bulk::compress(b"nested", 3).unwrap();
        let got = with_decompressor(|outer| {
            let inner = with_decompressor(|d| {
                Body::parse(&frame, 6)
                    .and_then(|b| b.into_raw(d))
                    .map(|r| r.len())
            })?;
            let outer = Body::parse(&frame, 6)?.into_raw(outer)?;
            Ok((inner, outer))
        })
        .unwrap();
        assert_eq!(got, (6, b"nested".to_vec()));
    }
}
