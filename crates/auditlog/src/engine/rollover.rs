//! Rollover: moving the writer to its next segment without making appends
//! wait for a file system.
//!
//! A background worker keeps a *spare* ready: the next segment's file under
//! its `.seg.tmp` name, with no header yet, its first part allocated and
//! pre-faulted and the rest allocated once the tail is three quarters full
//! (see [`Spare`]).
//! A rollover, under the writer lock, closes the tail, writes the spare's
//! header into its (mapped) first page and makes it the tail: no system
//! call. The rest of a rollover is *pending* until the worker, or whoever
//! needs it first, finishes it: the old segment is sealed (CRC of its bytes,
//! footer, sync), then the new one named (its header synced, renamed to
//! `.seg`, the directory synced). Needing it first: a sync (a record in the
//! new segment is durable only once both are done), the next rollover (one
//! pending at a time), [`Log::seal`](crate::Log::seal), and close.
//!
//! The order on disk is what recovery relies on: a segment is named `.seg`
//! only once its predecessor's seal is durable, so a `.seg` without a footer
//! followed by another `.seg` is still damage. A started `.seg.tmp` after an
//! unsealed last `.seg` is a rollover a crash cut in two; the next open
//! finishes it when the LSNs continue, and otherwise removes it (nothing in
//! it was durable: its first sync would have named it).
//!
//! When the spare is not ready (the first rollover after an open that found
//! none, a spare too small for a large batch, a full disk), the rollover
//! does it all itself, as the writer always did: seal, create, sync. These
//! rollovers are counted ([`RolloverStats::created`]), and so are those
//! that wait for the worker ([`RolloverStats::waited`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::state::{record_max_for, CreateError, Seg, Shared, WriterState};
use crate::error::{Error, Result};
use crate::io::SegmentFile;
use crate::raw::segment::{self, Footer, Header, DATA_START};
use crate::{Lsn, SegmentId};

/// How rollovers went since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloverStats {
    /// Rollovers to a new segment.
    pub rollovers: u64,
    /// Rollovers that started the spare segment the background worker had
    /// ready: no file system call under the writer lock.
    pub from_spare: u64,
    /// Rollovers that created the new segment themselves (no spare was
    /// ready, or it did not fit), sealing the old one first.
    pub created: u64,
    /// Rollovers that waited for the worker: for the spare it was still
    /// preparing, or for the previous rollover's seal.
    pub waited: u64,
    /// Bytes of the spare segment ready now (0: none).
    pub spare_bytes: u64,
}

/// The next segment's file, made ahead of need under its `.seg.tmp` name,
/// with no header: its first [`SPARE_HEAD`] bytes allocated and
/// pre-faulted, the rest a hole until the tail is three quarters full (so
/// that a log at rest does not hold a whole empty segment of disk), then
/// allocated by the worker. A rollover only starts an allocated spare (it
/// allocates one that is not, and counts the wait).
pub(crate) struct Spare {
    pub(crate) id: SegmentId,
    pub(crate) tmp: PathBuf,
    pub(crate) file: Arc<dyn SegmentFile>,
    /// All of its blocks are allocated (see [`SegmentFile::allocate`]).
    pub(crate) allocated: bool,
}

#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    /// The worker is making the spare with this number.
    Preparing(SegmentId),
    Ready(Spare),
}

/// The half of a rollover done after the writer moved on.
pub(crate) struct Pending {
    /// The segment the rollover closed, if it was not sealed yet.
    pub(crate) old: Option<Arc<Seg>>,
    /// The segment it started from the spare, still named `tmp`.
    pub(crate) new: Arc<Seg>,
    pub(crate) tmp: PathBuf,
}

/// Rollover's part of the running log's state.
#[derive(Default)]
pub(crate) struct Rollovers {
    slot: Mutex<Slot>,
    /// Signalled when a spare being prepared is ready (or failed).
    slot_cv: Condvar,
    pending: Mutex<Option<Pending>>,
    /// Held while a pending rollover is finished: whoever finds `pending`
    /// empty while holding it knows no rollover is half done.
    finishing: Mutex<()>,
    /// The writer asked for a spare (its tail is half full).
    wanted: AtomicBool,
    /// How far the worker pre-faulted the tail: (segment, offset).
    faulted: Mutex<(SegmentId, u64)>,
    /// Where the writer is in the tail: (segment, offset), as it last said.
    writer_at: Mutex<(SegmentId, u64)>,
    /// Tests: the worker leaves pending rollovers to others.
    pub(crate) hold: AtomicBool,
    /// Wakes the worker: a count of requests, and whether to stop.
    wake: Mutex<(u64, bool)>,
    wake_cv: Condvar,
    rollovers: AtomicU64,
    /// Segments sealed (by anyone): the worker runs the seal hook when it moved.
    sealed: AtomicU64,
    from_spare: AtomicU64,
    created: AtomicU64,
    waited: AtomicU64,
}

impl Rollovers {
    /// With what an open found: a spare to use, a rollover to finish.
    pub(crate) fn new(spare: Option<Spare>, pending: Option<Pending>) -> Self {
        Rollovers {
            slot: Mutex::new(spare.map_or(Slot::Empty, Slot::Ready)),
            pending: Mutex::new(pending),
            ..Rollovers::default()
        }
    }

    pub(crate) fn stats(&self) -> RolloverStats {
        let spare_bytes = match &*self.slot.lock() {
            Slot::Ready(s) => s.file.file_len(),
            _ => 0,
        };
        RolloverStats {
            rollovers: self.rollovers.load(Ordering::Relaxed),
            from_spare: self.from_spare.load(Ordering::Relaxed),
            created: self.created.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
            spare_bytes,
        }
    }

    /// Asks the worker for the next spare (the writer does once its tail
    /// is half full, so that a log of a few records never gets one).
    pub(crate) fn want_spare(&self) {
        self.wanted.store(true, Ordering::Release);
        self.wake_worker();
    }

    /// The writer reached `off` in segment `id`: the worker faults in the
    /// pages up to [`PREFAULT_AHEAD`] past it.
    pub(crate) fn writer_at(&self, id: SegmentId, off: u64) {
        *self.writer_at.lock() = (id, off);
        self.wake_worker();
    }

    fn wake_worker(&self) {
        self.wake.lock().0 += 1;
        self.wake_cv.notify_one();
    }

    /// Tells the worker to stop after what it is doing.
    pub(crate) fn stop_worker(&self) {
        self.wake.lock().1 = true;
        self.wake_cv.notify_one();
    }
}

/// How far ahead of the writer the worker keeps the tail's pages faulted
/// in: enough for the writer not to catch up between two of its reports
/// (every half of this), without holding a whole segment's pages (64 MiB
/// by default) in memory ahead of need.
pub(crate) const PREFAULT_AHEAD: u64 = 8 << 20;

/// How much of a spare is allocated and faulted in when it is made: what
/// the writer meets first after the rollover, while the worker, woken by
/// it, faults in the rest of [`PREFAULT_AHEAD`] (it does so before sealing
/// the old segment). More would be disk held by an empty file: at 8 MiB it
/// was 9% of a 2 M-event log's bytes. At 3.8 M appends/s of demo events a
/// writer takes about 4 ms to cross it.
pub(crate) const SPARE_HEAD: u64 = 1 << 20;

/// Moves the writer to a new segment (the writer lock is held): the spare
/// if it is ready and fits, else one created now.
pub(crate) fn rollover(shared: &Shared, st: &mut WriterState, needed: u64) -> Result<()> {
    let r = &shared.rollovers;
    let old = st.tail.clone();
    if !old.closed.load(Ordering::Acquire) {
        // Every reserved range of the old segment must be published first.
        while old.end.load(Ordering::Acquire) != st.off {
            shared.check_poison()?;
            std::thread::yield_now();
        }
    }
    let mut waited = false;
    // One rollover pending at a time: the previous one is finished first.
    {
        let _finishing = r.finishing.try_lock().unwrap_or_else(|| {
            waited = true;
            r.finishing.lock()
        });
        let previous = r.pending.lock().take();
        if let Some(p) = previous {
            waited = true;
            finish(shared, p)?;
        }
    }
    old.closed.store(true, Ordering::Release);
    let id = SegmentId(old.id.0 + 1);
    // A segment sealed on request was not full: the next starts small again.
    let used = if st.sealed_on_request {
        0
    } else {
        old.end.load(Ordering::Acquire) - DATA_START
    };
    let want = shared.opts.next_segment_bytes(used, needed);
    let mut slot = r.slot.lock();
    while matches!(*slot, Slot::Preparing(p) if p == id) {
        waited = true;
        r.slot_cv.wait(&mut slot);
    }
    let spare = match std::mem::take(&mut *slot) {
        Slot::Ready(s) if s.id == id && fits(&s, needed, want) && s.allocated => Some(s),
        Slot::Ready(mut s) if s.id == id && fits(&s, needed, want) => {
            // The worker has not allocated its blocks yet: done here (no
            // write may reach a hole of the map).
            waited = true;
            match s.file.allocate() {
                Ok(()) => {
                    s.allocated = true;
                    Some(s)
                }
                Err(_) => {
                    // Creating the segment below says what is wrong.
                    let _ = shared.opts.vfs.remove_file(&s.tmp);
                    None
                }
            }
        }
        Slot::Ready(s) => {
            // Not the one needed now: a new log's first rollovers double the size.
            let _ = shared.opts.vfs.remove_file(&s.tmp);
            None
        }
        other => {
            *slot = other;
            None
        }
    };
    let seg = match spare {
        Some(spare) => {
            let tmp = spare.tmp.clone();
            let seg = start(shared, spare, st.next_lsn)?;
            let old = (!old.sealed.load(Ordering::Acquire)).then_some(old);
            *r.pending.lock() = Some(Pending {
                old,
                new: seg.clone(),
                tmp,
            });
            r.from_spare.fetch_add(1, Ordering::Relaxed);
            seg
        }
        None => {
            r.created.fetch_add(1, Ordering::Relaxed);
            if !old.sealed.load(Ordering::Acquire) {
                seal(shared, &old)?;
            }
            create(shared, id, st.next_lsn, want)?
        }
    };
    // Pushed before the slot is released: the worker makes the next spare
    // for the segment after the last one.
    shared.segments.write().push(seg.clone());
    drop(slot);
    r.rollovers.fetch_add(1, Ordering::Relaxed);
    if waited {
        r.waited.fetch_add(1, Ordering::Relaxed);
    }
    st.prefault_at = DATA_START + PREFAULT_AHEAD / 2;
    r.writer_at(seg.id, DATA_START);
    st.tail = seg;
    st.off = DATA_START;
    if std::mem::take(&mut st.sealed_on_request) {
        // Sealed on request, not full (`auditlog compact` does this and
        // exits): like a fresh log's, the new tail asks for a spare once half
        // full, so a log sealed and left keeps none beside its small tail.
        st.spare_at = spare_at(&st.tail);
    } else {
        // A log that fills segments gets its next spare at once: the thread
        // seals the old segment first, which takes tens of milliseconds at
        // 64 MiB.
        st.spare_at = u64::MAX;
        r.want_spare();
    }
    Ok(())
}

/// Where in the tail an open found the writer asks for the first spare:
/// half way, so that a log of a few records never gets one.
pub(crate) fn spare_at(tail: &Seg) -> u64 {
    // (A truncated tail a `Repair` open kept may be shorter than a header.)
    DATA_START + tail.data_limit().saturating_sub(DATA_START) / 2
}

/// Whether the spare can be the next segment: the size the next segment
/// gets (twice what the old one used, up to the segment size; small again
/// after a seal on request), with room for `needed` bytes of frames.
fn fits(s: &Spare, needed: u64, want: u64) -> bool {
    let len = s.file.file_len();
    let overhead = DATA_START + (segment::MARK_LEN + segment::FOOTER_LEN) as u64;
    len == want && len >= needed + overhead
}

/// Gives the spare its header (in memory: synced when the rollover is
/// finished) and makes it a segment starting at `first`.
fn start(shared: &Shared, spare: Spare, first: Lsn) -> Result<Arc<Seg>> {
    let len = spare.file.file_len();
    let record_max = record_max_for(&shared.opts, len);
    let header = Header {
        segment: spare.id,
        first_lsn: first,
        len,
        log_id: shared.log_id,
        record_max,
        grow_to: shared.opts.new_segment_bytes(),
        version: segment::FORMAT_VERSION,
    };
    if let Err(e) = spare.file.write_at(0, &header.encode()) {
        let e = Error::io("write segment header", &spare.tmp, e);
        shared.poison(format!(
            "starting segment {} failed: {}",
            spare.id,
            e.chain()
        ));
        return Err(e);
    }
    spare.file.freeze(DATA_START);
    let path = shared.dir.join(segment::file_name(spare.id));
    Ok(Arc::new(Seg::new(&header, record_max, path, spare.file)))
}

/// Creates segment `id` now (no spare was ready).
fn create(shared: &Shared, id: SegmentId, first: Lsn, len: u64) -> Result<Arc<Seg>> {
    match Seg::create(&shared.opts, &shared.dir, shared.log_id, id, first, len) {
        Ok(seg) => Ok(Arc::new(seg)),
        Err(CreateError::NotCreated(e)) => Err(e),
        Err(CreateError::Failed(e)) => {
            shared.poison(format!("creating segment {id} failed: {}", e.chain()));
            Err(e)
        }
    }
}

/// Finishes the pending rollover, if there is one.
pub(crate) fn finish_pending(shared: &Shared) -> Result<()> {
    let r = &shared.rollovers;
    let _finishing = r.finishing.lock();
    let pending = r.pending.lock().take();
    match pending {
        Some(p) => finish(shared, p),
        None => Ok(()),
    }
}

/// Seals the old segment, then names the new one.
fn finish(shared: &Shared, p: Pending) -> Result<()> {
    if let Some(old) = &p.old {
        if !old.sealed.load(Ordering::Acquire) {
            seal(shared, old)?;
        }
    }
    let new = &p.new;
    let vfs = &shared.opts.vfs;
    let named = new
        .file
        .sync_range(0, DATA_START)
        .map_err(|e| Error::io("sync segment header", &p.tmp, e))
        .and_then(|()| {
            vfs.rename(&p.tmp, &new.path)
                .map_err(|e| Error::io("rename segment", &p.tmp, e))
        })
        .and_then(|()| {
            vfs.sync_dir(&shared.dir)
                .map_err(|e| Error::io("sync directory", &shared.dir, e))
        });
    if let Err(e) = named {
        shared.poison(format!("starting segment {} failed: {}", new.id, e.chain()));
        return Err(e);
    }
    Ok(())
}

/// Writes the footer of a closed segment and makes the whole segment durable.
pub(crate) fn seal(shared: &Shared, seg: &Seg) -> Result<()> {
    let end = seg.end.load(Ordering::Acquire);
    let next = seg.next_lsn.load(Ordering::Acquire);
    let view = seg.view_to(end)?;
    let footer = Footer {
        segment: seg.id,
        first_lsn: seg.first_lsn,
        last_lsn: Lsn(next - 1),
        count: next - seg.first_lsn.0,
        data_end: end,
        data_crc: crc32fast::hash(&view.bytes()[..end as usize]),
    };
    let at = seg.capacity - segment::FOOTER_LEN as u64;
    // No sync mark is written once the footer is (the mark lock orders them).
    let _mark = seg.mark.lock();
    let result = seg
        .file
        .write_at(at, &footer.encode())
        // Written back while this process maps its pages, every page's
        // cleaning would interrupt the writer's CPU (a TLB flush each):
        // unmapped first, the writeback disturbs no one.
        .and_then(|()| seg.file.release_pages())
        .and_then(|()| seg.file.sync_range(0, seg.capacity));
    if let Err(e) = result {
        shared.poison(format!("sealing {} failed: {e}", seg.path.display()));
        return Err(Error::io("seal segment", &seg.path, e));
    }
    seg.file.freeze(seg.capacity);
    seg.synced_end.store(end, Ordering::Release);
    seg.set_sealed();
    shared.durable.fetch_max(next, Ordering::AcqRel);
    shared.rollovers.sealed.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// The background worker of a writable log: finishes pending rollovers,
/// keeps a spare ready, and runs the seal hook after segments were sealed,
/// until [`Rollovers::stop_worker`].
pub(crate) fn worker(shared: &Shared) {
    let r = &shared.rollovers;
    let mut seen = 0;
    let mut sealed = r.sealed.load(Ordering::Acquire);
    loop {
        if shared.check_poison().is_err() {
            // Nothing more is written; wait to be stopped.
            let mut wake = r.wake.lock();
            while !wake.1 {
                r.wake_cv.wait(&mut wake);
            }
            return;
        }
        // A new tail's pages first: past the spare's head the writer would
        // fault them in itself while the old segment is sealed.
        fault_ahead(shared);
        // Errors poison the log: appenders see them on their next call.
        if !r.hold.load(Ordering::Acquire) {
            let _ = finish_pending(shared);
        }
        allocate_spare(shared);
        // A spare that could not be made (a full disk) is tried again after
        // a while; meanwhile rollovers create their segments themselves.
        let again = match prepare(shared) {
            Ok(()) => Duration::from_secs(60),
            Err(_) => Duration::from_secs(1),
        };
        // Last: the writer may soon need the spare more than this.
        let now_sealed = r.sealed.load(Ordering::Acquire);
        if now_sealed != sealed {
            sealed = now_sealed;
            let hook = shared.after_seal.lock().clone();
            if let Some(hook) = hook {
                hook(shared);
            }
        }
        let mut wake = r.wake.lock();
        if wake.0 == seen && !wake.1 {
            r.wake_cv.wait_for(&mut wake, again);
        }
        if wake.1 {
            return;
        }
        seen = wake.0;
    }
}

/// Faults in the tail's pages up to [`PREFAULT_AHEAD`] past where the
/// writer last said it was (a spare started with its first pages done).
fn fault_ahead(shared: &Shared) {
    let r = &shared.rollovers;
    let (id, at) = *r.writer_at.lock();
    let Some(tail) = shared.segments.read().last().cloned() else {
        return;
    };
    if tail.id != id || tail.closed.load(Ordering::Acquire) {
        return;
    }
    let mut faulted = r.faulted.lock();
    let from = if faulted.0 == id {
        faulted.1.max(at)
    } else {
        at
    };
    let to = (at + PREFAULT_AHEAD).min(tail.capacity);
    if from < to {
        let _ = tail.file.prefault(from, to - from);
    }
    *faulted = (id, to.max(from));
}

/// Allocates the rest of the spare once the writer is three quarters into
/// the tail: until then the spare takes only its first part of the disk.
fn allocate_spare(shared: &Shared) {
    let r = &shared.rollovers;
    let (id, at) = *r.writer_at.lock();
    let Some(tail) = shared.segments.read().last().cloned() else {
        return;
    };
    if tail.id != id || at < tail.capacity / 4 * 3 {
        return;
    }
    let spare = {
        let mut slot = r.slot.lock();
        match std::mem::take(&mut *slot) {
            Slot::Ready(s) if !s.allocated => {
                // A rollover meanwhile waits for it, as for a spare being made.
                *slot = Slot::Preparing(s.id);
                s
            }
            other => {
                *slot = other;
                return;
            }
        }
    };
    // On failure (a full disk) the rollover tries again, and says why.
    let allocated = spare.file.allocate().is_ok();
    *r.slot.lock() = Slot::Ready(Spare { allocated, ..spare });
    r.slot_cv.notify_all();
}

/// Makes the spare for the segment after the last one, if the writer asked
/// for one and there is none.
fn prepare(shared: &Shared) -> Result<()> {
    let r = &shared.rollovers;
    let (id, len) = {
        let mut slot = r.slot.lock();
        if !r.wanted.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        if let Slot::Ready(s) = &*slot {
            // A spare an open found: mapped, but not faulted in by this
            // process (past its head it may be a hole: never faulted in).
            let _ = s.file.prefault(0, SPARE_HEAD.min(s.file.file_len()));
            return Ok(());
        }
        if !matches!(*slot, Slot::Empty) {
            return Ok(());
        }
        let Some(tail) = shared.segments.read().last().cloned() else {
            return Ok(());
        };
        // Twice the tail, as a full tail's successor would be.
        let len = shared
            .opts
            .next_segment_bytes(tail.data_limit().saturating_sub(DATA_START), 0);
        let id = SegmentId(tail.id.0 + 1);
        *slot = Slot::Preparing(id);
        (id, len)
    };
    let made = make_spare(shared, id, len);
    let mut slot = r.slot.lock();
    let result = match made {
        Ok(spare) => {
            *slot = Slot::Ready(spare);
            Ok(())
        }
        Err(e) => {
            *slot = Slot::Empty;
            r.wanted.store(true, Ordering::Release);
            Err(e)
        }
    };
    r.slot_cv.notify_all();
    result
}

fn make_spare(shared: &Shared, id: SegmentId, len: u64) -> Result<Spare> {
    let vfs = &shared.opts.vfs;
    let tmp = shared.dir.join(segment::creating_file_name(id));
    // The first part allocated now, the rest when the tail is nearly full.
    let first = SPARE_HEAD.min(len);
    let file = match vfs.create_segment_allocating(&tmp, len, first) {
        // Left by a process that stopped before using it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => vfs
            .remove_file(&tmp)
            .and_then(|()| vfs.create_segment_allocating(&tmp, len, first)),
        other => other,
    }
    .map_err(|e| Error::io("create segment", &tmp, e))?;
    // Best effort: without it, the writes fault their pages in themselves.
    // The rest is faulted in as the writer comes (see `fault_ahead`).
    let _ = file.prefault(0, first);
    Ok(Spare {
        id,
        tmp,
        file,
        allocated: first == len,
    })
}
