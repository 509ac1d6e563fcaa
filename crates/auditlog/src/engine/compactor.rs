//! The compactor: turns sealed raw segments into compacted ones and swaps
//! them in; and the removal of whole compacted segments for retention.
//!
//! The swap, for segment N (docs/DURABILITY.md, "Compaction"):
//! 1. write `N.cseg.tmp` whole and sync it;
//! 2. rename it to `N.cseg` and sync the directory;
//! 3. swap it for the raw segment in memory (readers holding the raw
//!    segment's map keep reading it);
//! 4. remove `N.seg` and sync the directory.
//!
//! A crash before 2 leaves a `.cseg.tmp` that the next open removes; after
//! 2, both files may exist and the next open keeps the compacted one (whose
//! header and index it checks) and removes the raw one.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::compact::{self, build, CSeg};
use crate::engine::{reader, Seg, Shared};
use crate::error::{Error, Result};
use crate::io::SegmentFile;
use crate::options::Options;
use crate::{Lsn, SegmentId};

/// What one [`Log::compact`](crate::Log::compact) call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Raw segments compacted.
    pub segments: usize,
    /// Records they held.
    pub records: u64,
    /// Bytes of the raw segment files replaced.
    pub raw_file_bytes: u64,
    /// Bytes of those segments' records as framed in the raw files.
    pub raw_data_bytes: u64,
    /// Bytes of the compacted files written, index included.
    pub compacted_bytes: u64,
    /// Bytes of their indexes.
    pub index_bytes: u64,
    /// Compressed blocks written.
    pub blocks: u64,
    /// Time spent.
    pub elapsed: Duration,
}

/// One compacted segment, as [`Log::compacted_segments`](crate::Log::compacted_segments) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactedInfo {
    /// Its number.
    pub segment: SegmentId,
    /// Its first LSN.
    pub first_lsn: Lsn,
    /// One past its last LSN.
    pub next_lsn: Lsn,
    /// Records it holds.
    pub records: u64,
    /// Bytes of its file.
    pub bytes: u64,
    /// Bytes of its index.
    pub index_bytes: u64,
    /// Bytes of its blocks once decompressed.
    pub raw_bytes: u64,
    /// Blocks it holds.
    pub blocks: u64,
    /// Its earliest and latest event time (ns), if it holds events.
    pub times: Option<(i64, i64)>,
}

impl CompactedInfo {
    pub(crate) fn of(c: &CSeg) -> Self {
        CompactedInfo {
            segment: c.id,
            first_lsn: c.first_lsn,
            next_lsn: c.next_lsn,
            records: c.records,
            bytes: c.file_len(),
            index_bytes: c.index_len,
            raw_bytes: c.raw_bytes,
            blocks: c.index.blocks.len() as u64,
            times: c.min_time().zip(c.max_time()),
        }
    }
}

/// Compacts every sealed raw segment, oldest first (never the tail). The
/// segment the last rollover closed is sealed first, if it is not yet.
pub(crate) fn compact(shared: &Arc<Shared>) -> Result<CompactReport> {
    if shared.opts.read_only {
        return Err(Error::ReadOnly);
    }
    super::rollover::finish_pending(shared)?;
    let _one_at_a_time = shared.compact_lock.lock();
    let started = Instant::now();
    let mut report = CompactReport::default();
    loop {
        if *shared.shutdown.lock() {
            break;
        }
        let seg = {
            let segs = shared.segments.read();
            match segs.first() {
                Some(s) if segs.len() > 1 && s.sealed.load(Ordering::Acquire) => s.clone(),
                _ => break,
            }
        };
        compact_one(shared, &seg, &mut report)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Why building a compacted segment failed: reading the raw one, or compressing.
enum BuildError {
    Read(Error),
    Io(std::io::Error),
}

impl From<std::io::Error> for BuildError {
    fn from(e: std::io::Error) -> Self {
        BuildError::Io(e)
    }
}

fn compact_one(shared: &Arc<Shared>, seg: &Arc<Seg>, report: &mut CompactReport) -> Result<()> {
    let vfs = &shared.opts.vfs;
    let dir = &shared.dir;
    let next = Lsn(seg.next_lsn.load(Ordering::Acquire));
    // Record by record, every frame checked; the builder holds a stripe at a time.
    let mut records = reader::read_segment(shared, seg)?;
    let mut count = 0u64;
    let mut counted = std::iter::from_fn(|| {
        let r = records.next()?;
        count += 1;
        Some(
            r.map(|r| (r.lsn(), r.into_payload()))
                .map_err(BuildError::Read),
        )
    });
    let tag = shared.log_id as u32;
    let built = build::build(
        tag,
        seg.id,
        seg.first_lsn,
        next,
        &mut counted,
        seg.end.load(Ordering::Acquire) - crate::raw::segment::DATA_START,
        &shared.opts.compact,
    )
    .map_err(|e| match e {
        BuildError::Read(e) => e,
        BuildError::Io(e) => Error::io("compress segment", &seg.path, e),
    })?;
    let len = built.bytes.len() as u64;
    let (path, file) = write_compacted(&shared.opts, dir, seg.id, &built.bytes)?;
    let cseg = CSeg::load(seg.id, &path, file, None).map_err(|(problem, offset, end)| {
        Error::from(crate::Corruption {
            path: path.clone(),
            segment: seg.id,
            offset,
            end,
            lsns_lost: None,
            block: None,
            problem,
        })
    })?;
    {
        let mut compacted = shared.compacted.write();
        let mut segs = shared.segments.write();
        // Only the compactor removes raw segments, under `compact_lock`.
        assert!(
            segs.first().is_some_and(|s| s.id == seg.id),
            "compacted segment is no longer the first raw one"
        );
        segs.remove(0);
        compacted.push(Arc::new(cseg));
    }
    vfs.remove_file(&seg.path)
        .map_err(|e| Error::io("remove compacted raw segment", &seg.path, e))?;
    sync_dir(shared, dir)?;
    report.segments += 1;
    report.records += count;
    report.raw_file_bytes += seg.capacity;
    report.raw_data_bytes += seg.end.load(Ordering::Acquire) - crate::raw::segment::DATA_START;
    report.compacted_bytes += len;
    report.index_bytes += built.index_len as u64;
    report.blocks += built.blocks as u64;
    Ok(())
}

/// Writes `bytes` as compacted segment `id` of `dir`, whole or not at all:
/// as `N.cseg.tmp`, synced, renamed over `N.cseg`, the directory synced.
pub(crate) fn write_compacted(
    opts: &Options,
    dir: &Path,
    id: SegmentId,
    bytes: &[u8],
) -> Result<(PathBuf, Arc<dyn SegmentFile>)> {
    let vfs = &opts.vfs;
    let tmp = dir.join(compact::writing_file_name(id));
    let path = dir.join(compact::file_name(id));
    let len = bytes.len() as u64;
    let file = match vfs.create_segment(&tmp, len) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by an attempt that failed.
            vfs.remove_file(&tmp)
                .map_err(|e| Error::io("remove incomplete compacted segment", &tmp, e))?;
            vfs.create_segment(&tmp, len)
        }
        other => other,
    }
    .map_err(|e| Error::io("create compacted segment", &tmp, e))?;
    let written = file
        .write_at(0, bytes)
        .and_then(|()| file.sync_range(0, len))
        .map_err(|e| Error::io("write compacted segment", &tmp, e));
    if let Err(e) = written {
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    vfs.rename(&tmp, &path)
        .map_err(|e| Error::io("rename compacted segment", &tmp, e))?;
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))?;
    Ok((path, file))
}

fn sync_dir(shared: &Shared, dir: &Path) -> Result<()> {
    shared
        .opts
        .vfs
        .sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Removes the oldest compacted segment if it is `id` (retention). The
/// caller has recorded the removal first.
pub(crate) fn remove_oldest(shared: &Shared, id: SegmentId) -> Result<CompactedInfo> {
    let removed = {
        let mut compacted = shared.compacted.write();
        match compacted.first() {
            Some(c) if c.id == id => compacted.remove(0),
            _ => {
                return Err(Error::InvalidOptions(format!(
                    "segment {id} is not the oldest compacted segment"
                )))
            }
        }
    };
    let info = CompactedInfo::of(&removed);
    shared
        .opts
        .vfs
        .remove_file(&removed.path)
        .map_err(|e| Error::io("remove segment (retention)", &removed.path, e))?;
    sync_dir(shared, &shared.dir)?;
    Ok(info)
}

/// The background thread: compacts, then runs the maintenance hook
/// (retention), every `every` until the log is dropped.
pub(crate) fn background(shared: &Arc<Shared>, every: Duration) {
    let mut wait = every;
    loop {
        {
            let mut stop = shared.shutdown.lock();
            if !*stop {
                shared.shutdown_cv.wait_for(&mut stop, wait);
            }
            if *stop {
                return;
            }
        }
        if shared.poisoned.load(Ordering::Acquire) {
            continue;
        }
        let result = compact(shared).map(|_| ()).and_then(|()| {
            let hook = shared.maintenance.lock().clone();
            match hook {
                Some(h) => h(shared),
                None => Ok(()),
            }
        });
        // A pass that fails (a full disk) is tried again later and later,
        // not every `every`: an idle writer must not spin on it.
        wait = match &result {
            Ok(()) => every,
            Err(_) => (wait * 2).clamp(every, BACKOFF_MAX.max(every)),
        };
        *shared.background_retry.lock() = result.is_err().then_some(wait);
        *shared.background_error.lock() = result.err().map(|e| e.to_string());
    }
}

/// The longest wait between background passes that keep failing.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);
