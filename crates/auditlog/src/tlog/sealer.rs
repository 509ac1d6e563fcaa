//! The sealer: a thread that trails the writer, hashes each durable record
//! into the tree, keeps the `TREE` file of block hashes, and at most once a
//! second (when events were appended) signs a checkpoint, which it appends
//! to `CHECKPOINTS` and to the log itself. The append path does no hashing.
//!
//! On start it rebuilds the tree's edge from `TREE` and the records after
//! the last complete block, and checks that the root equals the last
//! checkpoint's: a log changed since it was sealed is not sealed again
//! (the sealer stops and says why; `auditlog verify` says where).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::note::{Checkpoint, SealKey, SignedNote};
use super::store::{self, CHECKPOINTS_FILE, TREE_FILE};
use super::tree::{leaf_hash, Frontier, Hash, BLOCK, BLOCK_LEVEL};
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::event::codec;
use crate::event::reserved::{engine_type_id, CHECKPOINT};
use crate::event::{Event, Timestamp};
use crate::query::Prefilter;
use crate::severity::Severity;
use crate::Lsn;

/// Called with each new signed checkpoint (its note text): an application
/// ships it elsewhere (the external anchor).
#[derive(Clone)]
pub struct CheckpointHook(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for CheckpointHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointHook")
    }
}

/// How often the sealer looks for new durable records.
const ROUND: Duration = Duration::from_secs(1);
/// A round signs once this many events came since the last checkpoint…
const EVENTS_PER_CHECKPOINT: u64 = 1300;
/// …or once the oldest of them has waited this long. A checkpoint costs
/// about 650 bytes (its entry and its record): at least 1,300 events apiece
/// keeps that under 0.5 bytes an event, and a slow writer's events are
/// still sealed within a minute. Segment seals, `seal_now` and closing the
/// log sign at once.
const MAX_UNSEALED: Duration = Duration::from_secs(60);

/// What the sealer has done, for [`AuditLog::seal_status`](crate::AuditLog::seal_status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealStatus {
    /// Records LSN 1..=`sealed` are covered by the newest checkpoint.
    pub sealed: u64,
    /// Checkpoints signed since the log was opened.
    pub checkpoints: u64,
    /// Rounds done since the log was opened.
    pub rounds: u64,
    /// Why the sealer stopped, if it did.
    pub error: Option<String>,
}

/// What the sealer is asked: to stop, or to do a round now.
#[derive(Default)]
struct Asks {
    stop: bool,
    now: bool,
}

/// The running sealer; dropping it seals what is durable and stops it.
pub(crate) struct Sealer {
    asks: Arc<(Mutex<Asks>, Condvar)>,
    handle: Option<JoinHandle<()>>,
    status: Arc<(Mutex<SealStatus>, Condvar)>,
}

impl Sealer {
    /// Starts sealing the log of `shared` with `key`; `sealed` is told how
    /// far checkpoints reach after every round (retention keeps the rest).
    pub(crate) fn start(
        shared: Arc<Shared>,
        key: SealKey,
        hook: Option<CheckpointHook>,
        sealed: Box<dyn Fn(u64) + Send>,
    ) -> Sealer {
        let asks = Arc::new((Mutex::new(Asks::default()), Condvar::new()));
        let status = Arc::new((Mutex::new(SealStatus::default()), Condvar::new()));
        let (a, st) = (asks.clone(), status.clone());
        let handle = std::thread::Builder::new()
            .name("auditlog-sealer".into())
            .spawn(move || run(shared, key, hook, sealed, &a, &st))
            .expect("a thread can be started");
        Sealer {
            asks,
            handle: Some(handle),
            status,
        }
    }

    /// What it has done so far.
    pub(crate) fn status(&self) -> SealStatus {
        self.status.0.lock().clone()
    }

    /// Does a round now (what is durable is sealed, if events came) and
    /// waits for it; the status after it.
    pub(crate) fn seal_now(&self) -> SealStatus {
        let (lock, cv) = &*self.status;
        let mut s = lock.lock();
        let want = s.rounds + 1;
        self.asks.0.lock().now = true;
        self.asks.1.notify_all();
        while s.rounds < want && s.error.is_none() {
            if cv.wait_for(&mut s, Duration::from_secs(30)).timed_out() {
                break;
            }
        }
        s.clone()
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.asks.0.lock().stop = true;
        self.asks.1.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    shared: Arc<Shared>,
    key: SealKey,
    hook: Option<CheckpointHook>,
    sealed: Box<dyn Fn(u64) + Send>,
    asks: &(Mutex<Asks>, Condvar),
    status: &(Mutex<SealStatus>, Condvar),
) {
    let fail = |e: Error| {
        status.0.lock().error = Some(e.to_string());
        status.1.notify_all();
    };
    let mut work = match Work::resume(shared, key, hook) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    status.0.lock().sealed = work.sealed;
    sealed(work.sealed);
    loop {
        let (stopping, asked) = {
            let mut g = asks.0.lock();
            if !g.stop && !g.now {
                asks.1.wait_for(&mut g, ROUND);
            }
            let asked = g.now;
            g.now = false;
            (g.stop, asked)
        };
        match work.round(stopping || asked) {
            Ok(signed) => {
                sealed(work.sealed);
                let mut s = status.0.lock();
                s.sealed = work.sealed;
                s.checkpoints += u64::from(signed);
                s.rounds += 1;
                status.1.notify_all();
            }
            Err(e) => return fail(e),
        }
        if stopping {
            return;
        }
    }
}

/// The sealer's state between rounds.
struct Work {
    shared: Arc<Shared>,
    key: SealKey,
    hook: Option<CheckpointHook>,
    origin: String,
    /// The tree over every record hashed so far.
    tree: Frontier,
    /// The leaves of the current, incomplete block.
    block: Frontier,
    /// Block hashes computed but not yet in `TREE`.
    pending: Vec<Hash>,
    /// Size of the newest checkpoint.
    sealed: u64,
    /// Whether events (not only checkpoint records) were hashed since it.
    unsealed_events: bool,
    /// How many, and since when.
    events_since: u64,
    since: std::time::Instant,
}

/// The checkpoint records in the log: (LSN, the note if the record holds one).
pub(crate) fn notes_in_log(shared: &Arc<Shared>) -> Result<Vec<(Lsn, Option<String>)>> {
    let id = engine_type_id(CHECKPOINT).expect("an engine type");
    let mut out = Vec::new();
    for r in shared.records(Lsn(0), Arc::new(Prefilter::engine_type(id))) {
        let r = r?;
        if codec::peek_type_severity(r.payload()).is_none_or(|(t, _)| t != id) {
            continue;
        }
        let note = codec::EventRef::parse(r.payload())
            .ok()
            .and_then(|e| e.text(codec::TextField::Data).map(String::from));
        out.push((r.lsn(), note));
    }
    Ok(out)
}

/// The origin line of the checkpoints of log `log_id`.
pub(crate) fn origin(log_id: u128) -> String {
    format!("auditlog/{log_id:032x}")
}

fn io_err(what: &'static str, dir: &std::path::Path, name: &str, e: std::io::Error) -> Error {
    Error::io(what, dir.join(name), e)
}

impl Work {
    fn resume(shared: Arc<Shared>, key: SealKey, hook: Option<CheckpointHook>) -> Result<Work> {
        let (vfs, dir, log_id) = (shared.vfs(), shared.dir().to_path_buf(), shared.log_id());
        let verifier = key.verifier();
        // The newest checkpoint our key signed, if any, and its edge.
        let mut last = None;
        let mut edge = Vec::new();
        match store::read(&*vfs, &dir, CHECKPOINTS_FILE)
            .map_err(|e| io_err("read", &dir, CHECKPOINTS_FILE, e))?
        {
            None => store::replace(
                &*vfs,
                &dir,
                CHECKPOINTS_FILE,
                &store::checkpoints_header(log_id),
            )
            .map_err(|e| io_err("create", &dir, CHECKPOINTS_FILE, e))?,
            Some(bytes) => {
                // Damaged: the checkpoints the log itself carries stand in,
                // and the file is written again from them.
                let (notes, torn) = match store::decode_checkpoint_entries(&bytes, log_id) {
                    Ok(x) => x,
                    Err(_) => (
                        notes_in_log(&shared)?
                            .into_iter()
                            .filter_map(|(_, n)| Some((n?, Vec::new())))
                            .collect(),
                        true,
                    ),
                };
                for (n, e) in &notes {
                    if let Ok(note) = SignedNote::parse(n) {
                        if note.verified_by(&verifier) {
                            last = Checkpoint::from_body(&note.text).ok();
                            edge.clone_from(e);
                        }
                    }
                }
                if torn {
                    let mut fresh = store::checkpoints_header(log_id);
                    for (n, e) in &notes {
                        fresh.extend(store::checkpoint_entry_with(n, e));
                    }
                    store::replace(&*vfs, &dir, CHECKPOINTS_FILE, &fresh)
                        .map_err(|e| io_err("rewrite", &dir, CHECKPOINTS_FILE, e))?;
                }
            }
        }
        let sealed = last.as_ref().map_or(0, |c| c.size);
        let whole = sealed / BLOCK;
        let mut blocks = match store::read(&*vfs, &dir, TREE_FILE)
            .map_err(|e| io_err("read", &dir, TREE_FILE, e))?
        {
            // Damaged: built again from the records (which the root check
            // below vouches for); if they were pruned, sealing stops there.
            Some(bytes) => store::decode_tree(&bytes, log_id).map_or_else(|_| Vec::new(), |t| t.0),
            None => Vec::new(),
        };
        // Entries past the newest checkpoint are not vouched for: dropped.
        if blocks.len() as u64 != whole {
            blocks.truncate(whole as usize);
        }
        let mut work = Work {
            origin: origin(log_id),
            shared,
            key,
            hook,
            tree: Frontier::new(),
            block: Frontier::new(),
            pending: Vec::new(),
            sealed,
            unsealed_events: false,
            events_since: 0,
            since: std::time::Instant::now(),
        };
        for b in &blocks {
            work.tree.push_subtree(BLOCK_LEVEL, *b);
        }
        // Blocks the file lacks (a crash before it was written), and the
        // leaves of the last partial block, from the log; if retention
        // removed those, the partial block from the checkpoint's edge.
        let from = blocks.len() as u64 * BLOCK + 1;
        if from <= sealed && from < work.shared.first_lsn().0 && from > whole * BLOCK {
            for (level, h) in &edge {
                work.tree.push_subtree(*level, *h);
                work.block.push_subtree(*level, *h);
            }
        } else {
            work.hash_records(from, sealed + 1)?;
        }
        let mut fresh = store::tree_header(log_id);
        for (n, b) in blocks.iter().chain(work.pending.iter()).enumerate() {
            fresh.extend_from_slice(&store::tree_entry(n as u64, b));
        }
        work.pending.clear();
        store::replace(&*vfs, &dir, TREE_FILE, &fresh)
            .map_err(|e| io_err("rewrite", &dir, TREE_FILE, e))?;
        if let Some(c) = &last {
            if c.origin != work.origin {
                return Err(Error::InvalidOptions(format!(
                    "cannot seal: the newest checkpoint is of {}, this log is {}",
                    c.origin, work.origin
                )));
            }
            if work.tree.root() != c.root {
                return Err(Error::InvalidOptions(format!(
                    "cannot seal: records LSN 1..={} no longer hash to the root their checkpoint signed; the log was changed after it was sealed (`auditlog verify` says where)",
                    c.size
                )));
            }
        }
        work.unsealed_events = false;
        Ok(work)
    }

    /// Hashes records `from..upto` into the tree (block hashes to `pending`).
    fn hash_records(&mut self, from: u64, upto: u64) -> Result<()> {
        if from >= upto {
            return Ok(());
        }
        let checkpoint_id = engine_type_id(CHECKPOINT).expect("an engine type");
        let mut expect = from;
        let all = Arc::new(Prefilter::default());
        for r in self.shared.records(Lsn(from), all) {
            let r = r?;
            let lsn = r.lsn().0;
            if lsn >= upto {
                break;
            }
            if lsn != expect {
                return Err(Error::InvalidOptions(format!(
                    "cannot seal: records LSN {expect}..={} are missing (removed or quarantined before they were sealed)",
                    lsn - 1
                )));
            }
            let leaf = leaf_hash(lsn, r.payload());
            self.tree.push(leaf);
            self.block.push(leaf);
            if self.block.size() == BLOCK {
                self.pending.push(self.block.root());
                self.block = Frontier::new();
            }
            if codec::peek_type_severity(r.payload()).is_none_or(|(t, _)| t != checkpoint_id) {
                if !self.unsealed_events {
                    self.since = std::time::Instant::now();
                }
                self.unsealed_events = true;
                self.events_since += 1;
            }
            expect += 1;
        }
        if expect < upto {
            return Err(Error::InvalidOptions(format!(
                "cannot seal: records LSN {expect}..={} are missing",
                upto - 1
            )));
        }
        Ok(())
    }

    /// One round: hash what became durable, signing a checkpoint at the
    /// end of each raw segment sealed since the last round, and at the end
    /// of what is durable when events came since the last checkpoint and
    /// `now` is asked (a request, closing) or enough came or waited long
    /// enough. Whether it signed.
    fn round(&mut self, now: bool) -> Result<bool> {
        let durable = self.shared.durable_end();
        let mut signed = false;
        // Segment seals first: a checkpoint at each sealed segment's end.
        for start in self.shared.raw_starts() {
            let end = start.saturating_sub(1);
            if end > self.tree.size() && start <= durable {
                let from = self.tree.size() + 1;
                self.hash_records(from, end + 1)?;
                signed |= self.sign()?;
            }
        }
        let size = self.tree.size();
        self.hash_records(size + 1, durable)?;
        let due = now
            || self.events_since >= EVENTS_PER_CHECKPOINT
            || self.since.elapsed() >= MAX_UNSEALED;
        if due {
            signed |= self.sign()?;
        } else {
            self.write_blocks()?;
        }
        Ok(signed)
    }

    /// Appends the block hashes computed since the last call to `TREE`.
    fn write_blocks(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (vfs, dir) = (self.shared.vfs(), self.shared.dir().to_path_buf());
        let first = self.tree.size() / BLOCK - self.pending.len() as u64;
        let mut bytes = Vec::with_capacity(self.pending.len() * 36);
        for (i, b) in self.pending.iter().enumerate() {
            bytes.extend_from_slice(&store::tree_entry(first + i as u64, b));
        }
        vfs.append_file(&dir.join(TREE_FILE), &bytes)
            .map_err(|e| io_err("append to", &dir, TREE_FILE, e))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the pending block hashes, and signs a checkpoint of the tree
    /// as it is if events came since the last. Whether it signed.
    fn sign(&mut self) -> Result<bool> {
        self.write_blocks()?;
        let (vfs, dir) = (self.shared.vfs(), self.shared.dir().to_path_buf());
        if !self.unsealed_events || self.tree.size() == self.sealed {
            return Ok(false);
        }
        let c = Checkpoint {
            origin: self.origin.clone(),
            size: self.tree.size(),
            root: self.tree.root(),
        };
        let note = self.key.sign_note(&c.body());
        let edge = self.tree.edge_below(BLOCK_LEVEL);
        vfs.append_file(
            &dir.join(CHECKPOINTS_FILE),
            &store::checkpoint_entry_with(&note, &edge),
        )
        .map_err(|e| io_err("append to", &dir, CHECKPOINTS_FILE, e))?;
        // And into the log, so that every copy of it carries its checkpoints.
        let mut e = Event::new(Timestamp::now(), CHECKPOINT, Severity::Info);
        e.source = Some("auditlog".into());
        e.entity_type = Some("checkpoint".into());
        e.entity_id = Some(c.size.to_string());
        e.data = Some(note.clone());
        let mut buf = Vec::new();
        let id = engine_type_id(CHECKPOINT).expect("an engine type");
        codec::encode(&e, id, &mut |_| 0, &mut buf);
        self.shared.append_durable(&[buf])?;
        self.sealed = c.size;
        self.unsealed_events = false;
        self.events_since = 0;
        if let Some(h) = &self.hook {
            (h.0)(&note);
        }
        Ok(true)
    }
}
