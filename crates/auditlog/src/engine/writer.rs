//! Appends and group commit (rollover is `rollover`'s).
//!
//! An append reserves its LSNs and byte range under the writer lock. A small
//! batch (up to 64 KiB) is then copied into the mapped segment and published
//! before the lock is released: on few cores, a writer preempted between
//! reserving and publishing would stall every writer after it. A larger batch
//! releases the lock first, computes its CRCs and copies in parallel with
//! others, and publishes in LSN order: it waits until the bytes before its
//! range are published, then publishes its own (a ticket). Rollover waits for
//! every reserved range of the old segment to be published before sealing it.
//!
//! `Sync` appends use group commit: the first waiter becomes the leader, syncs
//! everything visible, and every waiter whose LSN that covered returns without
//! a sync of its own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::rollover::{self, rollover};
use super::state::{SyncRounds, SyncState};
use crate::engine::{Seg, Shared, WriterState};
use crate::error::{Error, Result};
use crate::options::Durability;
use crate::raw::frame::{encode_header, FRAME_HEADER_LEN};
use crate::raw::segment::{self, DATA_START};
use crate::Lsn;

/// Batches up to this many bytes are copied with the writer lock held; larger
/// ones reserve their range, release the lock, and copy in parallel.
const COPY_UNDER_LOCK_MAX: u64 = 64 << 10;

/// Appends `payloads` as consecutive records; returns the first LSN and the
/// one after the last.
pub(crate) fn append_batch<P: AsRef<[u8]>>(
    shared: &Shared,
    payloads: &[P],
    durability: Durability,
) -> Result<(Lsn, Lsn)> {
    if shared.opts.read_only {
        return Err(Error::ReadOnly);
    }
    let max = shared.opts.record_bytes_max;
    let largest = payloads.iter().map(|p| p.as_ref().len()).max().unwrap_or(0);
    if largest > max as usize {
        return Err(Error::RecordTooLarge { len: largest, max });
    }
    shared.check_poison()?;
    let frame = |p: &P| (FRAME_HEADER_LEN + p.as_ref().len()) as u64;
    let total: u64 = payloads.iter().map(frame).sum();
    let mut guard = shared.writer.lock();
    let st = guard.as_mut().ok_or(Error::ReadOnly)?;
    let fresh = shared.opts.new_segment_bytes()
        - DATA_START
        - (segment::MARK_LEN + segment::FOOTER_LEN) as u64;
    if payloads.is_empty() {
        return Ok((st.next_lsn, st.next_lsn));
    }
    if total > fresh {
        // Larger than a whole segment: write it across rollovers without
        // letting go of the lock, so its LSNs stay consecutive.
        let first = st.next_lsn;
        // One past the last record of the batch written and published.
        let mut done = first;
        let mut rest = payloads;
        while !rest.is_empty() {
            let room = st.tail.data_limit() - st.off;
            let mut n = 0;
            let mut bytes = 0;
            if !st.tail.closed.load(Ordering::Acquire) {
                let fits = |p: &P| p.as_ref().len() <= st.tail.record_max as usize;
                while n < rest.len() && bytes + frame(&rest[n]) <= room && fits(&rest[n]) {
                    bytes += frame(&rest[n]);
                    n += 1;
                }
            }
            let step = if n == 0 {
                let needed: u64 = rest.iter().map(frame).sum();
                rollover(shared, st, needed)
            } else {
                let (off, lsn0) = reserve(shared, st, n, bytes);
                let written = write_and_publish(shared, &st.tail, off, lsn0, &rest[..n], bytes);
                if written.is_ok() {
                    done = st.next_lsn;
                    rest = &rest[n..];
                }
                written
            };
            if let Err(e) = step {
                if done == first {
                    return Err(e);
                }
                // Part of the batch is in: say exactly which part (and, if
                // its sync failed, that it is not durable).
                drop(guard);
                finish(shared, first, done, durability)?;
                return Err(Error::BatchCut {
                    first,
                    next: done,
                    source: Box::new(e),
                });
            }
        }
        let next = st.next_lsn;
        drop(guard);
        return finish(shared, first, next, durability);
    }
    shared.check_poison()?;
    // A segment holds records up to the limit in its header: a larger one
    // (the limit was raised since it was created) starts a new segment.
    if st.tail.closed.load(Ordering::Acquire)
        || st.off + total > st.tail.data_limit()
        || largest > st.tail.record_max as usize
    {
        rollover(shared, st, total)?;
    }
    let (off, lsn0) = reserve(shared, st, payloads.len(), total);
    if total <= COPY_UNDER_LOCK_MAX {
        // Small: copy and publish under the lock. A writer preempted between
        // reserving and publishing would stall every later one (measured:
        // 64 Sync threads on 2 cores went from 23k to 80k appends/s).
        write_and_publish(shared, &st.tail, off, lsn0, payloads, total)?;
        drop(guard);
    } else {
        let seg = st.tail.clone();
        drop(guard);
        write_and_publish(shared, &seg, off, lsn0, payloads, total)?;
    }
    finish(
        shared,
        lsn0,
        Lsn(lsn0.0 + payloads.len() as u64),
        durability,
    )
}

/// Syncs `first..next`, just written, if `durability` asks for it: a failed
/// sync is [`Error::NotDurable`] (the records are in, readers see them).
fn finish(shared: &Shared, first: Lsn, next: Lsn, durability: Durability) -> Result<(Lsn, Lsn)> {
    match durability {
        Durability::Sync => sync_to(shared, next).map_err(|e| Error::NotDurable {
            first,
            next,
            source: Box::new(e),
        })?,
        Durability::Buffered | Durability::Interval(_) => {}
    }
    Ok((first, next))
}

/// Takes the next `n` LSNs and `bytes` bytes of the tail (which must fit).
fn reserve(shared: &Shared, st: &mut WriterState, n: usize, bytes: u64) -> (u64, Lsn) {
    let off = st.off;
    let lsn0 = st.next_lsn;
    assert!(
        off + bytes <= st.tail.data_limit(),
        "reservation past the end of the segment"
    );
    st.off += bytes;
    st.next_lsn = Lsn(lsn0.0 + n as u64);
    if st.off >= st.spare_at {
        st.spare_at = u64::MAX;
        shared.rollovers.want_spare();
    }
    if st.off >= st.prefault_at {
        st.prefault_at = st.off + super::rollover::PREFAULT_AHEAD / 2;
        shared.rollovers.writer_at(st.tail.id, st.off);
    }
    (off, lsn0)
}

/// Copies reserved frames into the segment and publishes them in turn.
fn write_and_publish<P: AsRef<[u8]>>(
    shared: &Shared,
    seg: &Seg,
    off: u64,
    lsn0: Lsn,
    payloads: &[P],
    bytes: u64,
) -> Result<()> {
    if let Err(e) = write_frames(seg, off, lsn0, payloads) {
        shared.poison(format!(
            "write to {} failed: {}",
            seg.path.display(),
            e.chain()
        ));
        return Err(e);
    }
    publish(
        shared,
        seg,
        off,
        off + bytes,
        Lsn(lsn0.0 + payloads.len() as u64),
    )
}

fn write_frames<P: AsRef<[u8]>>(seg: &Seg, mut off: u64, lsn0: Lsn, payloads: &[P]) -> Result<()> {
    for (i, p) in payloads.iter().enumerate() {
        let p = p.as_ref();
        let header = encode_header(Lsn(lsn0.0 + i as u64), p);
        let io = |e| Error::io("write to segment", &seg.path, e);
        seg.file.write_at(off, &header).map_err(io)?;
        seg.file
            .write_at(off + FRAME_HEADER_LEN as u64, p)
            .map_err(io)?;
        off += (FRAME_HEADER_LEN + p.len()) as u64;
    }
    Ok(())
}

/// Waits for the bytes before `off` to be published, then publishes `off..end`.
fn publish(shared: &Shared, seg: &Seg, off: u64, end: u64, next_lsn: Lsn) -> Result<()> {
    let mut spins = 0u32;
    while seg.end.load(Ordering::Acquire) != off {
        // A poisoned log will never publish the range before ours.
        shared.check_poison()?;
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    seg.file.freeze(end);
    seg.next_lsn.store(next_lsn.0, Ordering::Release);
    // Releasing the ticket lets the next writer publish, possibly before our
    // `visible` update lands: `fetch_max` keeps `visible` from moving back.
    seg.end.store(end, Ordering::Release);
    shared.visible.fetch_max(next_lsn.0, Ordering::SeqCst);
    shared.notify_followers();
    Ok(())
}

/// Returns once every LSN below `target` is durable, syncing if needed.
///
/// Group commit in rounds: one caller at a time leads a round and syncs every
/// record visible when it starts. Callers that round covers park on its
/// queue and are all woken when it ends; later callers park on the next
/// round's queue, and only one of them is woken to lead it (its sync covers
/// the rest). Woken threads need no lock to go on (a condition variable
/// would hand its mutex from one to the next: with 64 writers on two cores
/// that chain of wake-ups cost more than the sync).
pub(crate) fn sync_to(shared: &Shared, target: Lsn) -> Result<()> {
    let rounds = &shared.sync_rounds;
    // Back with a record: one fewer for the next leader to wait for.
    let _ = rounds
        .returning
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    // The round this call counted itself in (see `gather`).
    let mut counted = None;
    loop {
        // A poisoned log promises nothing, not even what it synced before.
        shared.check_poison()?;
        if shared.durable.load(Ordering::Acquire) >= target.0 {
            return Ok(());
        }
        let mut st = shared.sync_state.lock();
        if shared.durable.load(Ordering::Acquire) >= target.0 {
            return Ok(());
        }
        if st.leading {
            let round = if target.0 <= st.upto {
                st.round
            } else {
                st.round + 1
            };
            count_in(&mut st, &mut counted, round);
            drop(st);
            if wait_yielding(rounds, round) {
                continue;
            }
            // SAFETY: the key is the address of a field of `shared`, used by
            // nothing but this queue. `validate` runs with the queue locked
            // and only loads atomics; it parks only while the round is not
            // done and a leader is at work (ending a round sets both before
            // it unparks, so no wake-up is missed and no thread waits for a
            // leader that is gone: without one it loops and leads). Bounded:
            // the one waiter of the next round a round's end wakes to lead
            // may find its record made durable meanwhile (a seal of the
            // segment it is in) and leave without leading; the others would
            // then sleep until some other call came.
            unsafe {
                parking_lot_core::park(
                    rounds.key(round),
                    || {
                        rounds.done.load(Ordering::Acquire) < round
                            && rounds.leading.load(Ordering::Acquire)
                    },
                    || {},
                    |_, _| {},
                    parking_lot_core::DEFAULT_PARK_TOKEN,
                    Some(std::time::Instant::now() + PARKED_MAX),
                );
            }
            continue;
        }
        st.leading = true;
        rounds.leading.store(true, Ordering::Release);
        let round = st.round + 1;
        count_in(&mut st, &mut counted, round);
        drop(st);
        gather(shared);
        let mut st = shared.sync_state.lock();
        // Read `visible` before choosing the segment to sync: every segment
        // before the tail found afterwards is sealed once the pending
        // rollover is finished, so the sync covers every LSN below `visible`.
        let visible = shared.visible.load(Ordering::SeqCst);
        st.round += 1;
        st.upto = visible;
        let round = st.round;
        drop(st);
        // The round ends however the sync ends, a panic included: waiters
        // must never wait for a leader that is gone.
        let _end = EndRound { shared, round };
        let started = std::time::Instant::now();
        sync_tail(shared, visible)?;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        rounds.last_sync_ns.store(took, Ordering::Relaxed);
    }
}

/// How long a waiter parked for a round sleeps before it looks again for a
/// leader (see `sync_to`): long next to a sync, short next to a stall.
const PARKED_MAX: Duration = Duration::from_millis(10);

/// Counts the calling thread among those `round` covers, once.
fn count_in(st: &mut SyncState, counted: &mut Option<u64>, round: u64) {
    if *counted != Some(round) {
        *counted = Some(round);
        st.waiting[(round % 2) as usize] += 1;
    }
}

/// Waits for `round` to end (or its leader to be gone) by yielding the CPU,
/// for at most twice as long as the last sync took; false if it has not by
/// then (the caller parks). A parked waiter costs the leader a wake-up, which
/// on a virtual machine is an interrupt of another CPU: at 64 writers on
/// two cores those wake-ups were a quarter of all the time spent. A waiter
/// that yields needs none, and gives its CPU to the writers still
/// appending. Bounded, so that a slow disk does not keep threads spinning.
fn wait_yielding(rounds: &SyncRounds, round: u64) -> bool {
    // Twice the last sync: of 0, 1, 2 and 4 times, 2 gave the most appends
    // at 16 and 64 writers (175, 196, 222, 205 k/s at 64; medians of three).
    let limit = Duration::from_nanos(rounds.last_sync_ns.load(Ordering::Relaxed) * 2)
        .min(Duration::from_millis(1));
    let start = std::time::Instant::now();
    loop {
        if rounds.done.load(Ordering::Acquire) >= round || !rounds.leading.load(Ordering::Acquire) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Before a leader reads what to sync: while threads the last round covered
/// are still on their way back with their next record, it waits for them
/// (yielding the CPU they need), at most half as long as the last sync
/// took. Without it, the next sync starts the moment the last ends and
/// takes only those already back: at 64 writers on two cores the writers
/// fell into two groups, each synced while the other appended, and a round
/// covered 28 records; waiting for them, it covers 61 (measured), so each
/// sync carries about twice as many. A lone writer never waits: it is back
/// (and has said so) before it leads again.
fn gather(shared: &Shared) {
    let rounds = &shared.sync_rounds;
    if rounds.returning.load(Ordering::Acquire) == 0 {
        return;
    }
    let limit = Duration::from_nanos(rounds.last_sync_ns.load(Ordering::Relaxed) / 2)
        .min(Duration::from_millis(1));
    let start = std::time::Instant::now();
    while rounds.returning.load(Ordering::Acquire) > 0 && start.elapsed() < limit {
        std::thread::yield_now();
    }
}

/// Ends a group-commit round when dropped: no leader, and its waiters and one
/// of the next round's woken.
struct EndRound<'a> {
    shared: &'a Shared,
    round: u64,
}

impl Drop for EndRound<'_> {
    fn drop(&mut self) {
        let rounds = &self.shared.sync_rounds;
        {
            let mut st = self.shared.sync_state.lock();
            st.leading = false;
            rounds.leading.store(false, Ordering::Release);
            rounds.done.fetch_max(self.round, Ordering::AcqRel);
            let covered = std::mem::take(&mut st.waiting[(self.round % 2) as usize]);
            rounds.returning.store(covered, Ordering::Release);
        }
        // SAFETY: keys of `shared`'s own queues (see `sync_to`); nothing is
        // called with a queue locked.
        unsafe {
            parking_lot_core::unpark_all(
                rounds.key(self.round),
                parking_lot_core::DEFAULT_UNPARK_TOKEN,
            );
            parking_lot_core::unpark_one(rounds.key(self.round + 1), |_| {
                parking_lot_core::DEFAULT_UNPARK_TOKEN
            });
        }
    }
}

/// The leader's sync: the tail segment up to its published end. If the sync
/// mark was written since the last sync, the range reaches it, so it becomes
/// durable with this one; then the mark is written anew (at most every
/// [`MARK_EVERY`]).
fn sync_tail(shared: &Shared, visible: u64) -> Result<()> {
    shared.check_poison()?;
    let Some(tail) = shared.segments.read().last().cloned() else {
        return Ok(());
    };
    // Every segment before this tail is sealed, or is the one a pending
    // rollover seals: finished, the LSNs below `visible` are in this tail
    // or durable.
    rollover::finish_pending(shared)?;
    let (end, next) = published(&tail);
    let from = tail.synced_end.load(Ordering::Acquire);
    if end > from {
        let (upto, with_mark) = tail.sync_upto(end);
        let synced = tail.file.sync_range(from, upto - from).and_then(|()| {
            if with_mark {
                tail.mark_synced();
            }
            tail.write_mark(end, next, MARK_EVERY)
        });
        if let Err(e) = synced {
            shared.poison(format!("fsync of {} failed: {e}", tail.path.display()));
            return Err(Error::io("sync segment", &tail.path, e));
        }
        tail.synced_end.fetch_max(end, Ordering::AcqRel);
    }
    shared.durable.fetch_max(visible, Ordering::AcqRel);
    Ok(())
}

/// How often a sync writes the sync mark: each write costs the next sync one
/// more page, so under a steady stream of syncs the mark lags by up to this.
const MARK_EVERY: Duration = Duration::from_millis(10);

/// A segment's published end and the LSN after it, read as a pair
/// (`publish` stores the LSN, then the end).
fn published(seg: &Seg) -> (u64, Lsn) {
    loop {
        let before = seg.next_lsn.load(Ordering::Acquire);
        let end = seg.end.load(Ordering::Acquire);
        if seg.next_lsn.load(Ordering::Acquire) == before {
            return (end, Lsn(before));
        }
    }
}

/// At close, after the last sync: the sync mark says how far that reached,
/// and is made durable, so that damage to the last records is told from a
/// torn write at the next open.
pub(crate) fn close_mark(shared: &Shared) -> Result<()> {
    let Some(tail) = shared.segments.read().last().cloned() else {
        return Ok(());
    };
    let Some(at) = tail.mark_offset() else {
        return Ok(());
    };
    let end = tail.synced_end.load(Ordering::Acquire);
    let (published_end, next) = published(&tail);
    if tail.sealed.load(Ordering::Acquire) || published_end != end {
        return Ok(());
    }
    tail.write_mark(end, next, Duration::ZERO)
        .and_then(|()| tail.file.sync_range(at, segment::MARK_LEN as u64))
        .map_err(|e| Error::io("sync segment", &tail.path, e))
}

/// The background flusher of `Durability::Interval`.
pub(crate) fn flusher(shared: &Shared, every: Duration) {
    let mut stop = shared.shutdown.lock();
    while !*stop {
        shared.shutdown_cv.wait_for(&mut stop, every);
        if *stop {
            break;
        }
        let visible = Lsn(shared.visible.load(Ordering::Acquire));
        // An error poisons the log; appenders see it on their next call.
        let _ = parking_lot::MutexGuard::unlocked(&mut stop, || sync_to(shared, visible));
    }
}

impl crate::Log {
    /// Seals the active segment if it holds any record, and starts a small
    /// new one, so that [`compact`](Self::compact) takes everything written
    /// so far (what `auditlog compact` does on a log no writer has open).
    /// Returns whether a segment was sealed.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only log; a failed write or sync of the
    /// footer, or a failed creation of the new segment.
    pub fn seal(&self) -> Result<bool> {
        let shared = &self.shared;
        if shared.opts.read_only {
            return Err(Error::ReadOnly);
        }
        shared.check_poison()?;
        let mut guard = shared.writer.lock();
        let st = guard.as_mut().ok_or(Error::ReadOnly)?;
        if st.off == DATA_START && !st.tail.closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        st.sealed_on_request = true;
        rollover(shared, st, 0)?;
        drop(guard);
        rollover::finish_pending(shared)?;
        Ok(true)
    }

    /// Appends one record with the log's default durability; returns its LSN.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch).
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.append_with(payload, self.shared.opts.durability)
    }

    /// Appends one record with the given durability; returns its LSN.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch).
    pub fn append_with(&self, payload: &[u8], durability: Durability) -> Result<Lsn> {
        append_batch(&self.shared, std::slice::from_ref(&payload), durability).map(|(a, _)| a)
    }

    /// Appends records as one batch (consecutive LSNs, one sync for all in
    /// `Sync` mode). Returns the LSN range `first..next`.
    ///
    /// The batch's LSNs are consecutive. A batch larger than a whole segment
    /// is split across rollovers; if creating a new segment then fails (a full
    /// disk), the part already written stays appended and the error is returned.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::RecordTooLarge`] (nothing written);
    /// [`Error::StorageFull`] and [`Error::Io`]; [`Error::Poisoned`] once a
    /// write or sync has failed (no record of this batch published);
    /// [`Error::BatchCut`] as above; [`Error::NotDurable`] when the records
    /// were written but the sync `Sync` asks for failed (exactly which).
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<std::ops::Range<Lsn>> {
        self.append_batch_with(payloads, self.shared.opts.durability)
    }

    /// [`append_batch`](Self::append_batch) with the given durability.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch).
    pub fn append_batch_with<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
        durability: Durability,
    ) -> Result<std::ops::Range<Lsn>> {
        append_batch(&self.shared, payloads, durability).map(|(a, b)| a..b)
    }

    /// Makes every record appended so far durable.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::Io`] from the sync, after which the log
    /// is [`Error::Poisoned`] (durability can no longer be promised).
    pub fn sync(&self) -> Result<()> {
        if self.shared.opts.read_only {
            return Err(Error::ReadOnly);
        }
        sync_to(&self.shared, self.next_lsn())
    }

    /// Returns once the record at `lsn` (and every one before it) is durable.
    ///
    /// # Errors
    /// As [`sync`](Self::sync).
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        if self.shared.opts.read_only {
            return Err(Error::ReadOnly);
        }
        sync_to(
            &self.shared,
            Lsn(lsn.0.saturating_add(1).min(self.next_lsn().0)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Log, Options};
    use std::sync::Arc;

    /// The waiter a round's end wakes to lead the next round leaves without
    /// leading when its record became durable meanwhile: the waiters behind
    /// it still get their sync (they look again for a leader after
    /// [`PARKED_MAX`]).
    #[test]
    fn a_woken_waiter_that_leaves_without_leading_strands_no_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
        let shared = log.shared.clone();
        // A leader at work on round 1 (no thread: this test ends its round).
        {
            let mut st = shared.sync_state.lock();
            st.leading = true;
            st.round = 1;
            shared.sync_rounds.leading.store(true, Ordering::Release);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let append = |payload: &'static [u8]| {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                let r = log.append_with(payload, Durability::Sync);
                tx.send((payload, r.is_ok())).unwrap();
            })
        };
        // Both wait for round 2; `b` parks first, so it is the one woken to lead.
        let b = append(b"b");
        let parked = |n: u64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while shared.sync_state.lock().waiting[0] < n && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            // Counted in, then parked at once (no sync to time a yield by).
            std::thread::sleep(Duration::from_millis(50));
        };
        parked(1);
        let c = append(b"c");
        parked(2);
        // `b`'s record made durable by other means (a seal does this).
        let b_next = shared.visible.load(Ordering::Acquire) - 1;
        shared.durable.fetch_max(b_next, Ordering::AcqRel);
        drop(EndRound {
            shared: &shared,
            round: 1,
        });
        let mut done = Vec::new();
        for _ in 0..2 {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((p, ok)) => {
                    assert!(ok);
                    done.push(p);
                }
                Err(_) => panic!("a waiter was stranded: only {done:?} returned"),
            }
        }
        b.join().unwrap();
        c.join().unwrap();
        assert!(log.durable_lsn() >= log.next_lsn());
    }
}
