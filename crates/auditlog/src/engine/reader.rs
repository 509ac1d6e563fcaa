//! Reading: forward and backward iterators, random reads, and followers.
//!
//! Readers never copy a payload: a [`Record`] is a `Bytes` slice of the
//! segment's memory map. Every frame is checked against its CRC before it is
//! returned; damage is an `Err`, never a record.

use std::collections::VecDeque;
use std::ops::{Bound, Range, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::compact::filter::{All, RowFilter, SegmentPlan};
use crate::engine::chunks::RuledOut;
use crate::engine::{At, Plans, Seg, Shared};
use crate::error::{Problem, Result};
use crate::raw::frame::{self, FRAME_HEADER_LEN};
use crate::raw::recovery::{Skip, INDEX_STRIDE};
use crate::{Log, Lsn};

/// One record, borrowed from the memory map (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    lsn: Lsn,
    payload: Bytes,
}

impl Record {
    pub(crate) fn new(lsn: Lsn, payload: Bytes) -> Record {
        Record { lsn, payload }
    }

    /// Its LSN.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Its payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as `Bytes` (still no copy; keeps the segment mapped).
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

/// Runs `f` on the plan entry of segment `id` in `plans` (a fresh entry
/// unless the last one is this segment's), or on a scratch entry.
pub(crate) fn with_plan<T>(
    plans: &Option<Plans>,
    id: crate::SegmentId,
    compacted: bool,
    lsns: (Lsn, Lsn),
    f: impl FnOnce(&mut SegmentPlan) -> T,
) -> T {
    let Some(plans) = plans else {
        return f(&mut SegmentPlan::default());
    };
    let mut plans = plans.lock();
    if plans
        .last()
        .is_none_or(|p| p.segment != id || p.compacted != compacted)
    {
        plans.push(SegmentPlan {
            segment: id,
            compacted,
            lsns,
            ..SegmentPlan::default()
        });
    }
    f(plans.last_mut().expect("pushed"))
}

/// Checkpoints `(lsn, offset)` every [`INDEX_STRIDE`] frames of a segment,
/// extended lazily by hopping over frame headers.
#[derive(Debug)]
pub(crate) struct SparseIndex {
    points: Vec<(Lsn, u64)>,
    next_off: u64,
    next_lsn: Lsn,
    count: u64,
    /// A header that does not chain (damage): the index stops there.
    stuck: bool,
}

impl SparseIndex {
    pub(crate) fn new(start: u64, first_lsn: Lsn) -> Self {
        SparseIndex {
            points: Vec::new(),
            next_off: start,
            next_lsn: first_lsn,
            count: 0,
            stuck: false,
        }
    }

    pub(crate) fn from_scan(points: Vec<(Lsn, u64)>, end: u64, next_lsn: Lsn, count: u64) -> Self {
        SparseIndex {
            points,
            next_off: end,
            next_lsn,
            count,
            stuck: false,
        }
    }

    /// Extends the index over `bytes[..end]` until it passes `target`.
    fn extend(&mut self, bytes: &[u8], end: u64, target: Lsn, skips: &[Skip]) {
        while !self.stuck && self.next_lsn <= target && self.next_off < end {
            if self.count.is_multiple_of(INDEX_STRIDE) {
                self.points.push((self.next_lsn, self.next_off));
            }
            match hop(bytes, self.next_off, self.next_lsn, end, skips) {
                Some((off, lsn, frames)) => {
                    self.next_off = off;
                    self.next_lsn = lsn;
                    self.count += frames;
                }
                None => self.stuck = true,
            }
        }
    }

    /// The last checkpoint at or before `lsn`.
    fn checkpoint(&self, lsn: Lsn) -> Option<(Lsn, u64)> {
        let i = self.points.partition_point(|p| p.0 <= lsn);
        i.checked_sub(1).map(|i| self.points[i])
    }
}

fn skip_at(skips: &[Skip], off: u64) -> Option<&Skip> {
    skips.iter().find(|s| s.start == off && s.end > s.start)
}

/// Steps over the frame (or quarantined range) at `off` without checking its
/// CRC: `(next offset, next LSN, frames stepped)`, or `None` if the header
/// does not chain.
fn hop(bytes: &[u8], off: u64, lsn: Lsn, end: u64, skips: &[Skip]) -> Option<(u64, Lsn, u64)> {
    if let Some(s) = skip_at(skips, off) {
        return Some((s.end, s.next_lsn, 0));
    }
    let (len, _, l) = frame::peek(bytes, off, end)?;
    let next = off + FRAME_HEADER_LEN as u64 + u64::from(len);
    (l == lsn.0 && next <= end).then_some((next, Lsn(lsn.0 + 1), 1))
}

/// Offset and expected LSN of the first frame at or after `lsn` in `seg`.
pub(crate) fn locate_in(seg: &Seg, bytes: &[u8], end: u64, lsn: Lsn) -> (u64, Lsn) {
    locate(seg, bytes, end, lsn)
}

/// Offset and expected LSN of the first frame at or after `lsn` in `seg`.
fn locate(seg: &Seg, bytes: &[u8], end: u64, lsn: Lsn) -> (u64, Lsn) {
    let mut index = seg.index.lock();
    index.extend(bytes, end, lsn, &seg.skips);
    let (mut l, mut off) = index
        .checkpoint(lsn)
        .unwrap_or((seg.first_lsn, crate::raw::segment::DATA_START));
    drop(index);
    while l < lsn && off < end {
        match hop(bytes, off, l, end, &seg.skips) {
            Some((o, n, _)) => (off, l) = (o, n),
            None => break, // the reader reports the damage at `off`
        }
    }
    (off, l)
}

/// The position of a forward reader.
struct Cursor {
    shared: Arc<Shared>,
    seg: Option<Arc<Seg>>,
    bytes: Bytes,
    off: u64,
    lsn: Lsn,
    failed: bool,
    /// What the reader wants: compacted blocks and raw chunks it rules
    /// out are skipped, and rows it rejects are not returned.
    pre: Arc<dyn RowFilter>,
    explain: Option<Plans>,
    /// The compacted stripe being read: its buffer, its remaining records
    /// (LSN and place in the buffer), and the LSN after it.
    stripe_bytes: Bytes,
    stripe: VecDeque<(Lsn, Range<usize>)>,
    stripe_end: Option<Lsn>,
    /// In a raw segment, the frames its index says the filter wants, and
    /// where the index ends (the reader scans on from there).
    jumps: VecDeque<(Lsn, u64)>,
    jumps_end: Option<(u64, Lsn)>,
}

impl Cursor {
    fn new(shared: Arc<Shared>, lsn: Lsn) -> Self {
        Cursor {
            shared,
            seg: None,
            bytes: Bytes::new(),
            off: 0,
            lsn,
            failed: false,
            pre: Arc::new(All),
            explain: None,
            stripe_bytes: Bytes::new(),
            stripe: VecDeque::new(),
            stripe_end: None,
            jumps: VecDeque::new(),
            jumps_end: None,
        }
    }

    /// Entering raw segment `seg` (mapped to `end`) with a filter: extends
    /// its index, and with a filter on keys, plans the frames to visit.
    fn plan_raw(&mut self, seg: &Seg, end: u64) {
        self.jumps.clear();
        self.jumps_end = None;
        if self.pre.is_all() {
            return;
        }
        let mut chunks = seg.chunks.lock();
        chunks.extend(&self.bytes, end, seg.record_max, &seg.skips);
        let (index_end, index_lsn) = chunks.end();
        if !self.pre.keys_limited() || index_lsn <= self.lsn {
            return;
        }
        let wanted = chunks.wanted(&*self.pre, self.lsn, &self.bytes, &seg.skips);
        if self.explain.is_some() {
            let first = chunks.chunks.partition_point(|c| c.next_lsn <= self.lsn);
            let n = chunks.chunks.len();
            let (mut touched, mut at, mut last) = (0u64, 0usize, usize::MAX);
            for &(_, off) in &wanted {
                while at < n && chunks.chunks[at].end <= off {
                    at += 1;
                }
                if at < n && at != last {
                    touched += 1;
                    last = at;
                }
            }
            let total = (chunks.chunks.len() - first) as u64;
            let touched = touched.min(total);
            let next = Lsn(seg.next_lsn.load(Ordering::Acquire));
            with_plan(&self.explain, seg.id, false, (seg.first_lsn, next), |p| {
                p.blocks += total;
                p.blocks_read += touched;
                p.skipped_by_key += total - touched;
            });
        }
        self.jumps = wanted.into();
        self.jumps_end = Some((index_end, index_lsn));
    }

    /// The next record with an LSN below `upto`.
    fn next(&mut self, upto: Lsn) -> Option<Result<Record>> {
        Some(self.advance(upto)?.map(|(lsn, at)| {
            let bytes = match at {
                Place::Stripe(_) => &self.stripe_bytes,
                Place::Raw(_) => &self.bytes,
            };
            Record::new(lsn, bytes.slice(at.range()))
        }))
    }

    /// The next record with an LSN below `upto`, borrowed from the cursor's
    /// buffers: no reference count taken and dropped per record.
    fn next_ref(&mut self, upto: Lsn) -> Option<Result<(Lsn, &[u8])>> {
        Some(self.advance(upto)?.map(|(lsn, at)| {
            let bytes = match at {
                Place::Stripe(_) => &self.stripe_bytes,
                Place::Raw(_) => &self.bytes,
            };
            (lsn, &bytes[at.range()])
        }))
    }

    /// Moves to the next record with an LSN below `upto`: its LSN and where
    /// its payload is.
    fn advance(&mut self, upto: Lsn) -> Option<Result<(Lsn, Place)>> {
        loop {
            if let Some((lsn, _)) = self.stripe.front() {
                if *lsn >= upto {
                    return None;
                }
                let (lsn, r) = self.stripe.pop_front().expect("a front record");
                self.lsn = Lsn(lsn.0 + 1);
                return Some(Ok((lsn, Place::Stripe(r))));
            }
            if let Some(end) = self.stripe_end.take() {
                self.lsn = self.lsn.max(end);
                // The stripe is used up: its buffer goes before the next is
                // read (records handed out keep their own references).
                self.stripe_bytes = Bytes::new();
            }
            if self.failed || self.lsn >= upto {
                return None;
            }
            let seg = match &self.seg {
                Some(s) => s.clone(),
                None => {
                    let seg = match self.shared.find(self.lsn)? {
                        At::Compact(c) => {
                            let lsn = self.lsn.max(c.first_lsn);
                            let s = c.stripe_for(lsn)?;
                            let st = c.index.stripes[s];
                            let hi = Lsn(st.next_lsn.0 - 1);
                            let read = with_plan(
                                &self.explain,
                                c.id,
                                true,
                                (c.first_lsn, c.next_lsn),
                                |plan| {
                                    let threads = self.shared.opts.read_threads;
                                    c.read_stripe(s, lsn, hi, &*self.pre, plan, threads)
                                },
                            );
                            match read {
                                Ok((bytes, rows)) => {
                                    self.stripe_bytes = bytes;
                                    self.stripe = rows.into();
                                    self.lsn = lsn;
                                    self.stripe_end = Some(st.next_lsn);
                                    continue;
                                }
                                Err(e) => {
                                    self.failed = true;
                                    return Some(Err(e));
                                }
                            }
                        }
                        At::Raw(seg) => seg,
                    };
                    self.lsn = self.lsn.max(seg.first_lsn);
                    let end = seg.end.load(Ordering::Acquire);
                    if let Err(e) = self.map(&seg, end) {
                        self.failed = true;
                        return Some(Err(e));
                    }
                    (self.off, self.lsn) = locate(&seg, &self.bytes, end, self.lsn);
                    self.plan_raw(&seg, end);
                    if self.explain.is_some() {
                        let next = Lsn(seg.next_lsn.load(Ordering::Acquire));
                        with_plan(&self.explain, seg.id, false, (seg.first_lsn, next), |_| ());
                    }
                    self.seg = Some(seg.clone());
                    seg
                }
            };
            if self.lsn >= upto {
                return None;
            }
            let end = seg.end.load(Ordering::Acquire);
            if end > self.bytes.len() as u64 {
                if let Err(e) = self.map(&seg, end) {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            if let Some(s) = skip_at(&seg.skips, self.off) {
                self.off = s.end;
                self.lsn = self.lsn.max(s.next_lsn);
                continue;
            }
            if self.off >= end {
                if !seg.closed.load(Ordering::Acquire) {
                    return None; // the tail: more may come
                }
                // Closed after `end` was read: what was published in between
                // comes first (closing follows every publish).
                if seg.end.load(Ordering::Acquire) > end {
                    continue;
                }
                self.lsn = self.lsn.max(Lsn(seg.next_lsn.load(Ordering::Acquire)));
                self.seg = None;
                continue;
            }
            if let Some((index_end, index_lsn)) = self.jumps_end {
                if self.lsn >= index_lsn {
                    self.jumps_end = None;
                } else {
                    match self.jumps.front().copied() {
                        Some((l, off)) if l == self.lsn => {
                            self.jumps.pop_front();
                            self.off = off;
                        }
                        Some((l, _)) if l >= upto => return None,
                        Some((l, off)) => {
                            (self.off, self.lsn) = (off, l);
                            continue;
                        }
                        None => {
                            (self.off, self.lsn) = (index_end, index_lsn);
                            self.jumps_end = None;
                            continue;
                        }
                    }
                }
            } else if !self.pre.is_all() && !self.pre.keys_limited() {
                let skip = {
                    let chunks = seg.chunks.lock();
                    chunks.at(self.off).map(|c| {
                        let why = c.ruled_out(&*self.pre, &self.bytes, &seg.skips);
                        (why, c.end, c.next_lsn)
                    })
                };
                if let Some((ruled_out, c_end, c_next)) = skip {
                    if self.explain.is_some() {
                        let next = Lsn(seg.next_lsn.load(Ordering::Acquire));
                        with_plan(&self.explain, seg.id, false, (seg.first_lsn, next), |p| {
                            p.blocks += 1;
                            match ruled_out {
                                Some(RuledOut::Key) => p.skipped_by_key += 1,
                                Some(RuledOut::Time) => p.skipped_by_time += 1,
                                Some(RuledOut::Filter) => p.skipped_by_filter += 1,
                                None => p.blocks_read += 1,
                            }
                        });
                    }
                    if ruled_out.is_some() && c_next <= upto {
                        (self.off, self.lsn) = (c_end, self.lsn.max(c_next));
                        continue;
                    }
                }
            }
            let max = seg.record_max;
            let result = match frame::decode(&self.bytes, self.off, end, max) {
                Ok(f) if f.lsn == self.lsn => {
                    let start = self.off as usize + FRAME_HEADER_LEN;
                    let wanted = self.pre.payload(&self.bytes[start..f.next as usize]);
                    if self.explain.is_some() {
                        let next = Lsn(seg.next_lsn.load(Ordering::Acquire));
                        with_plan(&self.explain, seg.id, false, (seg.first_lsn, next), |p| {
                            p.rows += 1;
                            p.bytes_read += f.next - self.off;
                            p.records += u64::from(wanted);
                        });
                    }
                    self.off = f.next;
                    self.lsn = Lsn(self.lsn.0 + 1);
                    if !wanted {
                        // Checked (CRC) and not wanted: no record to build.
                        continue;
                    }
                    return Some(Ok((f.lsn, Place::Raw(start..f.next as usize))));
                }
                Ok(f) => Problem::LsnMismatch {
                    expected: self.lsn,
                    found: f.lsn,
                },
                Err(p) => p,
            };
            self.failed = true;
            return Some(Err(self.damage_at(&seg, end, result)));
        }
    }

    /// The damage a read met at the cursor, measured as recovery measures
    /// it: up to the next valid frame, with the LSNs in between; or, with
    /// none after it, to the end of the data, with the rest of the segment's.
    fn damage_at(&self, seg: &Seg, end: u64, problem: Problem) -> crate::Error {
        let s = crate::raw::recovery::scan(
            &self.bytes,
            self.off,
            end,
            self.lsn,
            seg.record_max,
            &seg.skips,
        );
        match s.damage.into_iter().find(|d| d.start == self.off) {
            Some(d) => seg.corruption(d.start, d.end, d.lsns_lost, problem),
            None => {
                let next = Lsn(seg.next_lsn.load(Ordering::Acquire));
                let lost = (next > self.lsn).then(|| (self.lsn, Lsn(next.0 - 1)));
                seg.corruption(self.off, end, lost, problem)
            }
        }
    }

    fn map(&mut self, seg: &Seg, end: u64) -> Result<()> {
        self.bytes = Bytes::from_owner(seg.view_to(end)?);
        Ok(())
    }
}

/// Every record of raw segment `seg`, checked (the compactor's input).
pub(crate) fn read_segment(
    shared: &Arc<Shared>,
    seg: &Arc<Seg>,
) -> Result<impl Iterator<Item = Result<Record>>> {
    let end = seg.end.load(Ordering::Acquire);
    let mut cursor = Cursor::new(shared.clone(), seg.first_lsn);
    cursor.map(seg, end)?;
    cursor.off = crate::raw::segment::DATA_START;
    cursor.seg = Some(seg.clone());
    let upto = Lsn(seg.next_lsn.load(Ordering::Acquire));
    Ok(std::iter::from_fn(move || cursor.next(upto)))
}

/// A forward reader over part of one raw segment, from the frame at `off`
/// (LSN `lsn`) on, returning the records `pre` accepts (what a visit scans
/// of the chunks it cannot count from the index).
pub(crate) struct RawRange(Cursor);

impl RawRange {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        seg: &Arc<Seg>,
        bytes: Bytes,
        (off, lsn): (u64, Lsn),
        pre: Arc<dyn RowFilter>,
    ) -> Self {
        let mut cursor = Cursor::new(shared.clone(), lsn);
        cursor.seg = Some(seg.clone());
        cursor.bytes = bytes;
        cursor.off = off;
        cursor.pre = pre;
        RawRange(cursor)
    }

    /// The next record below `upto`.
    pub(crate) fn next(&mut self, upto: Lsn) -> Option<Result<Record>> {
        self.0.next(upto)
    }
}

/// Records newest first, a segment checkpoint at a time.
struct RevCursor {
    shared: Arc<Shared>,
    pre: Arc<dyn RowFilter>,
    explain: Option<Plans>,
    lo: Lsn,
    /// The highest LSN not yet returned (inclusive); below `lo` when done.
    hi: Lsn,
    buf: Vec<Record>,
    /// The record [`Iter::next_ref`] lent last.
    held: Option<Record>,
    failed: bool,
}

impl RevCursor {
    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(r) = self.buf.pop() {
                return Some(Ok(r));
            }
            if self.failed || self.hi < self.lo || self.hi.0 == 0 {
                return None;
            }
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }

    /// Loads the records from the checkpoint at or before `hi` up to `hi`.
    fn refill(&mut self) -> Result<()> {
        let seg = match self.shared.find(self.hi) {
            None => {
                self.hi = Lsn(0);
                return Ok(());
            }
            Some(At::Compact(c)) => {
                let Some(s) = c.stripe_for(self.hi).filter(|_| self.hi >= c.first_lsn) else {
                    self.hi = Lsn(0);
                    return Ok(());
                };
                let st = c.index.stripes[s];
                let lo = self.lo.max(st.first_lsn);
                let (bytes, rows) = with_plan(
                    &self.explain,
                    c.id,
                    true,
                    (c.first_lsn, c.next_lsn),
                    |plan| {
                        let threads = self.shared.opts.read_threads;
                        c.read_stripe(s, lo, self.hi, &*self.pre, plan, threads)
                    },
                )?;
                self.buf = rows
                    .into_iter()
                    .map(|(lsn, r)| Record::new(lsn, bytes.slice(r)))
                    .collect();
                self.hi = Lsn(st.first_lsn.0 - 1);
                return Ok(());
            }
            Some(At::Raw(seg)) => seg,
        };
        if self.hi < seg.first_lsn {
            self.hi = Lsn(0);
            return Ok(());
        }
        let end = seg.end.load(Ordering::Acquire);
        let bytes = Bytes::from_owner(seg.view_to(end)?);
        let (cp_lsn, cp_off) = {
            let mut index = seg.index.lock();
            index.extend(&bytes, end, self.hi, &seg.skips);
            index
                .checkpoint(self.hi)
                .unwrap_or((seg.first_lsn, crate::raw::segment::DATA_START))
        };
        let mut cursor = Cursor::new(self.shared.clone(), cp_lsn);
        cursor.seg = Some(seg.clone());
        cursor.bytes = bytes;
        cursor.off = cp_off;
        cursor.pre = self.pre.clone();
        cursor.explain = self.explain.clone();
        cursor.plan_raw(&seg, end);
        let upto = Lsn(self.hi.0 + 1);
        while let Some(r) = cursor.next(upto) {
            let r = r?;
            if r.lsn >= self.lo {
                self.buf.push(r);
            }
        }
        self.hi = Lsn(cp_lsn.0.saturating_sub(1));
        Ok(())
    }
}

/// Where a cursor's record is: in its compacted stripe's buffer or its
/// mapped raw segment.
enum Place {
    Stripe(Range<usize>),
    Raw(Range<usize>),
}

impl Place {
    fn range(&self) -> Range<usize> {
        match self {
            Place::Stripe(r) | Place::Raw(r) => r.clone(),
        }
    }
}

/// An iterator over records, forward or newest first. Yields `Err` (and then
/// stops) at damage it meets.
pub struct Iter {
    inner: IterInner,
}

enum IterInner {
    Forward { cursor: Cursor, upto: Lsn },
    Backward(RevCursor),
}

impl Iter {
    /// The next record, borrowed until the next call: what a query that
    /// looks at each record once uses (forward, no reference count per
    /// record).
    pub(crate) fn next_ref(&mut self) -> Option<Result<(Lsn, &[u8])>> {
        match &mut self.inner {
            IterInner::Forward { cursor, upto } => cursor.next_ref(*upto),
            IterInner::Backward(rev) => {
                let r = match rev.next()? {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e)),
                };
                let held = rev.held.insert(r);
                Some(Ok((held.lsn, &held.payload[..])))
            }
        }
    }
}

impl Iterator for Iter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            IterInner::Forward { cursor, upto } => cursor.next(*upto),
            IterInner::Backward(rev) => rev.next(),
        }
    }
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Iter")
    }
}

/// A reader that waits for new records: `tail -f`.
pub struct Follower {
    cursor: Cursor,
    /// LSN ranges passed over: removed (retention) or quarantined before
    /// this follower read them.
    missed: Vec<(Lsn, Lsn)>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("next", &self.cursor.lsn)
            .finish()
    }
}

/// How often a read-only follower looks for another process's appends.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

impl Follower {
    /// The next record, waiting up to `timeout` for one to be appended.
    /// `Ok(None)` when none came in time.
    ///
    /// # Errors
    /// Damage met while reading ([`Error::Corruption`](crate::Error::Corruption)); [`Error::Io`](crate::Error::Io) when
    /// a read-only follower looks for new segments.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Record>> {
        let deadline = Instant::now() + timeout;
        let shared = self.cursor.shared.clone();
        loop {
            let visible = shared.visible.load(Ordering::SeqCst);
            let expected = self.cursor.lsn;
            if let Some(r) = self.cursor.next(Lsn(visible)) {
                if let Ok(rec) = &r {
                    if rec.lsn() > expected {
                        self.missed.push((expected, Lsn(rec.lsn().0 - 1)));
                    }
                }
                return r.map(Some);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if shared.opts.read_only {
                std::thread::sleep(POLL_INTERVAL.min(deadline - now));
                super::open::refresh(&shared)?;
            } else {
                shared.followers.fetch_add(1, Ordering::SeqCst);
                let mut g = shared.follow_lock.lock();
                if shared.visible.load(Ordering::SeqCst) == visible {
                    shared.follow_cv.wait_until(&mut g, deadline);
                }
                drop(g);
                shared.followers.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// LSN of the next record this follower will return.
    pub fn position(&self) -> Lsn {
        self.cursor.lsn
    }

    /// The LSN ranges (inclusive) this follower passed over because their
    /// records were gone when it got there: removed by retention, or
    /// quarantined, before it read them.
    pub fn missed(&self) -> &[(Lsn, Lsn)] {
        &self.missed
    }
}

impl Log {
    fn bounds(&self, range: impl RangeBounds<Lsn>) -> (Lsn, Lsn) {
        let lo = match range.start_bound() {
            Bound::Included(l) => *l,
            Bound::Excluded(l) => Lsn(l.0.saturating_add(1)),
            Bound::Unbounded => self.first_lsn(),
        };
        let visible = self.next_lsn();
        let end = match range.end_bound() {
            Bound::Included(l) => Lsn(l.0.saturating_add(1)),
            Bound::Excluded(l) => *l,
            Bound::Unbounded => visible,
        };
        (lo.max(Lsn(1)), end.min(visible))
    }

    /// Records in an LSN range, oldest first. The end is fixed when called:
    /// records appended later are not returned (use [`follow`](Self::follow)).
    pub fn iter(&self, range: impl RangeBounds<Lsn>) -> Iter {
        let (lo, upto) = self.bounds(range);
        Iter {
            inner: IterInner::Forward {
                cursor: Cursor::new(self.shared.clone(), lo),
                upto,
            },
        }
    }

    /// Records in an LSN range, newest first.
    pub fn iter_rev(&self, range: impl RangeBounds<Lsn>) -> Iter {
        let (lo, upto) = self.bounds(range);
        Iter {
            inner: IterInner::Backward(RevCursor {
                shared: self.shared.clone(),
                pre: Arc::new(All),
                explain: None,
                lo,
                hi: Lsn(upto.0.saturating_sub(1)),
                buf: Vec::new(),
                held: None,
                failed: false,
            }),
        }
    }

    /// The record at `lsn`; `Ok(None)` if there is none (not yet written,
    /// removed, or lost to quarantined damage).
    ///
    /// # Errors
    /// Damage where the record should be.
    pub fn read(&self, lsn: Lsn) -> Result<Option<Record>> {
        match self.iter(lsn..=lsn).next() {
            Some(Ok(r)) if r.lsn == lsn => Ok(Some(r)),
            Some(Ok(_)) | None => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }

    /// A follower starting at `from` (use [`next_lsn`](Self::next_lsn) for
    /// only new records).
    pub fn follow(&self, from: Lsn) -> Follower {
        Follower {
            cursor: Cursor::new(self.shared.clone(), from.max(Lsn(1))),
            missed: Vec::new(),
        }
    }
}

/// Records from `from` on, oldest first, of which compacted segments return
/// only those `pre` may match.
pub(crate) fn planned_from(shared: &Arc<Shared>, from: Lsn, pre: Arc<dyn RowFilter>) -> Iter {
    let lo = shared.first_lsn().max(from).max(Lsn(1));
    let upto = Lsn(shared.visible.load(Ordering::Acquire));
    let mut cursor = Cursor::new(shared.clone(), lo);
    cursor.pre = pre;
    Iter {
        inner: IterInner::Forward { cursor, upto },
    }
}

/// Every record, forward or newest first, through a prefilter (see
/// [`Log::iter_planned`]).
pub(crate) fn planned(
    shared: &Arc<Shared>,
    from: Lsn,
    reverse: bool,
    pre: Arc<dyn RowFilter>,
    explain: Option<Plans>,
) -> Iter {
    let first = shared.first_lsn();
    let (lo, upto) = (
        first.max(from).max(Lsn(1)),
        Lsn(shared.visible.load(Ordering::Acquire)),
    );
    let inner = if reverse {
        IterInner::Backward(RevCursor {
            shared: shared.clone(),
            pre,
            explain,
            lo,
            hi: Lsn(upto.0.saturating_sub(1)),
            buf: Vec::new(),
            held: None,
            failed: false,
        })
    } else {
        let mut cursor = Cursor::new(shared.clone(), lo);
        cursor.pre = pre;
        cursor.explain = explain;
        IterInner::Forward { cursor, upto }
    };
    Iter { inner }
}
