//! [`AuditLog`]: audit events over the storage core, with the log's own
//! catalog and filtered queries.

use std::ops::Range;
use std::path::Path;

use std::sync::Arc;

use parking_lot::RwLock;

use crate::catalog::registry::{self, CatalogReport, Registry, CATALOG_ENTRY_ID};
use crate::catalog::Catalog;
use crate::compact::filter::RowFilter;
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::event::codec::{self, EventRef};
use crate::event::reserved::ENGINE_TYPES;
use crate::event::{Event, EventFields, Timestamp};
use crate::query::Filter;
use crate::query::{Aggregate, Compiled, Counter, Explain, GroupBy, Names, Query};
use crate::retention::{self, Removal, Retention};
use crate::severity::Severity;
use crate::tlog::check::{SealCheck, TamperReport};
use crate::tlog::note::{SealKey, Verifier};
use crate::tlog::sealer::{CheckpointHook, SealStatus, Sealer};
use crate::tlog::store;
use crate::{Log, Lsn, Options};

/// How an [`AuditLog`] is opened.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// The storage options.
    pub log: Options,
    /// A reference catalog: default severities of its types, and with
    /// `strict` the only types accepted.
    pub catalog: Option<Catalog>,
    /// Reject event types neither the log's catalog nor the reference has.
    pub strict: bool,
    /// The application version of this writer: events whose type the
    /// reference catalog says is outside it are counted by [`AuditLog::version_report`].
    pub app_version: Option<String>,
    /// What the log keeps: applied by the background compactor after each
    /// pass, and by [`AuditLog::apply_retention`].
    pub retention: Retention,
    /// The key that signs the log's checkpoints (docs/TAMPER.md). A writer
    /// of a sealed log (one with a `PUBKEY` file) needs it: given here, or
    /// kept in the log directory as `KEY`. Given to a log that is not yet
    /// sealed, it seals it from now on.
    pub seal_key: Option<SealKey>,
    /// Called with each signed checkpoint (its note text), to keep it
    /// outside the log: the external anchor `auditlog verify --anchor` takes.
    pub on_checkpoint: Option<CheckpointHook>,
}

/// A log of audit events.
///
/// ```
/// use auditlog::{AuditLog, AuditOptions, Catalog, Event, Filter, Severity, Timestamp};
/// let dir = tempfile::tempdir()?;
/// let opts = AuditOptions { catalog: Catalog::builtin("filetransfer-2.0"), strict: true, ..Default::default() };
/// let log = AuditLog::open(dir.path(), opts)?;
/// let mut e = Event::new(Timestamp::now(), "USER_LOGGED_IN", Severity::Info);
/// e.actor = Some("alice".into());
/// log.append(&e)?;
/// let filter = Filter { actor: Some("alice".into()), ..Filter::default() };
/// assert_eq!(log.query(&filter, false).count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AuditLog {
    /// First, so that it is dropped first: its last round seals what the
    /// log made durable on the way out, while the log is still open.
    sealer: Option<Sealer>,
    log: Log,
    registry: Arc<RwLock<Registry>>,
    reference: Option<Catalog>,
    strict: bool,
    retention: Retention,
    /// What retention remembers between passes.
    retention_state: Arc<retention::State>,
    catalog_report: CatalogReport,
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // The next open reads the log for catalog records only past this
        // point, and knows the log reached it: so it must be durable first.
        if !self.log.shared.opts.read_only && self.log.sync().is_ok() {
            let next = self.log.next_lsn().0;
            let _ = self.registry.write().mark_covered(&self.log.shared, next);
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("log", &self.log)
            .field("strict", &self.strict)
            .finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the audit log in `dir`.
    ///
    /// # Errors
    /// Those of [`Log::open`] (I/O, [`Error::Locked`], [`Error::NotFound`]
    /// read-only, [`Error::ForeignFile`], [`Error::Corruption`] in `Strict`
    /// mode, [`Error::InvalidOptions`]); [`Error::BadCatalogFile`] when the
    /// log's `CATALOG` is damaged and cannot be rebuilt from the log.
    pub fn open(dir: impl AsRef<Path>, opts: AuditOptions) -> Result<AuditLog> {
        let log = Log::open(dir.as_ref(), opts.log.clone())?;
        let repair = opts.log.recovery == crate::RecoveryMode::Repair;
        let (mut registry, catalog_report) = registry::open(&log.shared, repair)?;
        if let (Some(v), false) = (&opts.app_version, opts.log.read_only) {
            registry.declare_version(&log.shared, log.next_lsn().0, v)?;
        }
        let registry = Arc::new(RwLock::new(registry));
        if !opts.log.read_only {
            // Without it, an open after a crash would read every segment
            // written since the last clean close for catalog records (a
            // second per GB, measured): with it, at most the unsealed ones.
            let registry = registry.clone();
            let hook: crate::engine::SealHook = Arc::new(move |shared| {
                let durable = shared.durable.load(std::sync::atomic::Ordering::Acquire);
                // A failed write ends registrations in this process (see
                // `Registry::mark_covered`); the appends of known names go on.
                let _ = Registry::mark_covered_shared(&registry, shared, durable);
            });
            *log.shared.after_seal.lock() = Some(hook);
        }
        let key = if opts.log.read_only {
            None
        } else {
            seal_key(&log.shared, opts.seal_key)?
        };
        let retention_state = Arc::new(retention::State::new(key.is_some()));
        if !opts.log.read_only && !opts.retention.is_none() {
            let (registry, policy, state) = (
                registry.clone(),
                opts.retention.clone(),
                retention_state.clone(),
            );
            let hook: crate::engine::MaintenanceHook = Arc::new(move |shared| {
                retention::apply(shared, &registry, &policy, Timestamp::now(), &state).map(|_| ())
            });
            *log.shared.maintenance.lock() = Some(hook);
        }
        let sealer = key.map(|key| {
            let state = retention_state.clone();
            let sealed = Box::new(move |upto| state.set_sealed(upto));
            Sealer::start(log.shared.clone(), key, opts.on_checkpoint, sealed)
        });
        Ok(AuditLog {
            sealer,
            log,
            registry,
            reference: opts.catalog,
            strict: opts.strict,
            retention: opts.retention,
            retention_state,
            catalog_report,
        })
    }

    /// What the sealer has done: how far the newest checkpoint reaches,
    /// how many were signed, and why it stopped if it did. `None` for a log
    /// that is not sealed (or opened read-only).
    pub fn seal_status(&self) -> Option<SealStatus> {
        self.sealer.as_ref().map(Sealer::status)
    }

    /// Seals now what is durable (signing a checkpoint if events came since
    /// the last) and waits for it; `None` for a log that is not sealed.
    pub fn seal_now(&self) -> Option<SealStatus> {
        self.sealer.as_ref().map(Sealer::seal_now)
    }

    /// Checks the log against its signed checkpoints and `check`'s anchors
    /// (docs/TAMPER.md): every record is hashed again (on every core) and
    /// the root at each checkpoint's size compared with the signed one; the
    /// log's end with the largest size vouched for; checkpoints for forks
    /// and rollbacks; signatures with the trusted key.
    ///
    /// # Errors
    /// Damage met while reading (tampering is not an error: it is the
    /// report's `problems`).
    pub fn verify_seal(&self, check: &SealCheck) -> Result<TamperReport> {
        crate::tlog::check::verify(&self.log.shared, check, &|k| Names::key_name(self, k))
    }

    /// A proof that the record at `lsn` is in the log, against the newest
    /// checkpoint that covers it: checkable without the log
    /// ([`InclusionProof::verify`](crate::InclusionProof::verify)).
    ///
    /// # Errors
    /// No checkpoint covers `lsn` yet; the record or the hashes it needs
    /// are not in the log (pruned, damaged).
    pub fn prove(&self, lsn: Lsn) -> Result<crate::InclusionProof> {
        let event = match self.log.read(lsn)? {
            Some(r) => EventRef::parse(r.payload())
                .ok()
                .and_then(|e| self.to_event(lsn, &e).ok())
                .map(|e| crate::event::json::to_json(&e, Some(lsn))),
            None => None,
        };
        crate::tlog::proof::prove(&self.log.shared, lsn, event)
    }

    /// The newest checkpoint the log's `CHECKPOINTS` holds (its signed note
    /// text, what `auditlog anchor` prints); `None` if there is none.
    ///
    /// # Errors
    /// `CHECKPOINTS` unreadable, or damaged before its last entry.
    pub fn newest_checkpoint(&self) -> Result<Option<String>> {
        let (vfs, dir) = (self.log.shared.vfs(), self.log.shared.dir());
        let Some(bytes) = store::read(&*vfs, dir, store::CHECKPOINTS_FILE)
            .map_err(|e| Error::io("read", dir.join(store::CHECKPOINTS_FILE), e))?
        else {
            return Ok(None);
        };
        let (notes, _) = store::decode_checkpoints(&bytes, self.log.shared.log_id())
            .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        Ok(notes.into_iter().last())
    }

    /// What opening found in the log's `CATALOG` beyond reading it: entries
    /// completed from the log, or a rebuild by `Repair`.
    pub fn catalog_report(&self) -> &CatalogReport {
        &self.catalog_report
    }

    /// Checks the log's `CATALOG` file against every catalog record in the
    /// log (part of what `auditlog verify` checks): an empty list when they agree.
    ///
    /// # Errors
    /// Damage met while reading the log's catalog records.
    pub fn verify_catalog(&self) -> Result<Vec<String>> {
        self.registry.read().check_against_log(&self.log.shared)
    }

    /// Writes the log's `CATALOG` file anew from the catalog records in the
    /// log alone (what `auditlog repair` does when [`verify_catalog`](Self::verify_catalog)
    /// finds a disagreement).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only log; damage met while reading the
    /// log; a failed write of the file.
    pub fn rebuild_catalog(&self) -> Result<()> {
        if self.log.shared.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let mut registry = self.registry.write();
        *registry = Registry::rebuild(&self.log.shared)?;
        Ok(())
    }

    /// Applies the retention policy now (the background compactor also does
    /// after each pass): removes whole compacted segments, oldest first, each
    /// removal recorded first as an [`RETENTION_APPLIED`](crate::RETENTION_APPLIED) event.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; I/O or a full disk while recording or removing
    /// (a removal not recorded durably is not made).
    pub fn apply_retention(&self) -> Result<Vec<Removal>> {
        self.apply_retention_at(Timestamp::now())
    }

    /// [`apply_retention`](Self::apply_retention) as if the time were `now`.
    ///
    /// # Errors
    /// As [`apply_retention`](Self::apply_retention).
    pub fn apply_retention_at(&self, now: Timestamp) -> Result<Vec<Removal>> {
        // A sealed log removes only what a checkpoint covers: seal first.
        if let Some(sealer) = &self.sealer {
            sealer.seal_now();
        }
        retention::apply(
            &self.log.shared,
            &self.registry,
            &self.retention,
            now,
            &self.retention_state,
        )
    }

    /// What [`apply_retention_at`](Self::apply_retention_at) would remove at
    /// `now`, removing nothing (`auditlog compact --dry-run`); each
    /// [`Removal::marker`] is `Lsn(0)`.
    ///
    /// # Errors
    /// Reading the free space of the file system, if a free-space limit is set.
    pub fn retention_plan_at(&self, now: Timestamp) -> Result<Vec<Removal>> {
        retention::dry_run(&self.log.shared, &self.retention, now)
    }

    /// The storage log underneath.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The default severity of `event_type`: the log's catalog's, else the reference's.
    pub fn default_severity(&self, event_type: &str) -> Option<Severity> {
        self.registry
            .read()
            .default_severity(event_type)
            .or_else(|| self.reference.as_ref()?.get(event_type).map(|t| t.severity))
    }

    /// Appends one event; returns its LSN.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch).
    pub fn append(&self, e: &Event) -> Result<Lsn> {
        self.append_all(std::slice::from_ref(e)).map(|r| r.start)
    }

    /// Appends events with consecutive LSNs (one sync for all in `Sync` mode).
    ///
    /// Each event's type and attribute keys are looked up once, under one
    /// read of the catalog, and encoded into a buffer the thread reuses:
    /// no allocation per event once its names are registered.
    ///
    /// # Errors
    /// For an event, nothing written: [`Error::ReservedType`] (`AUDITLOG_…`),
    /// [`Error::UnknownType`] (with `strict`), [`Error::InvalidName`],
    /// [`Error::RecordTooLarge`]. For the log: [`Error::ReadOnly`],
    /// [`Error::StorageFull`], [`Error::Io`], [`Error::Poisoned`] after an
    /// earlier failed write or sync, [`Error::BatchCut`] when only the
    /// first part of a batch larger than a segment went in,
    /// [`Error::NotDurable`] when the events were written but their sync
    /// (`Sync` durability) failed: they are in the log, not durable.
    pub fn append_batch(&self, events: &[Event]) -> Result<Range<Lsn>> {
        self.append_all(events)
    }

    /// Appends one event given as borrowed fields (no `String` to build);
    /// returns its LSN.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch).
    pub fn append_fields(&self, e: &EventFields<'_>) -> Result<Lsn> {
        self.append_fields_batch(std::slice::from_ref(e))
            .map(|r| r.start)
    }

    /// [`append_batch`](Self::append_batch) of events given as borrowed
    /// fields: what an application appending from its own structures uses,
    /// with nothing copied before the encoding. Attributes are stored by
    /// key, as an [`Event`]'s map holds them: given out of order they are
    /// sorted, and of a key given twice the last value is kept.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch).
    pub fn append_fields_batch(&self, events: &[EventFields<'_>]) -> Result<Range<Lsn>> {
        let ordered = |e: &EventFields<'_>| e.attrs.windows(2).all(|w| w[0].0 < w[1].0);
        if events.iter().all(ordered) {
            return self.append_all(events);
        }
        let fixed: Vec<EventFields<'_>> = events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if !ordered(&e) {
                    e.attrs.sort_by_key(|&(k, _)| k); // stable: repeats keep their order
                    let mut kept: Vec<(&str, &str)> = Vec::with_capacity(e.attrs.len());
                    for (k, v) in e.attrs {
                        match kept.last_mut() {
                            Some(last) if last.0 == k => last.1 = v,
                            _ => kept.push((k, v)),
                        }
                    }
                    e.attrs = kept;
                }
                e
            })
            .collect();
        self.append_all(&fixed)
    }

    /// Encodes `events` (registering their names first if the catalog does
    /// not have them all) and appends them as one batch.
    fn append_all<E: Appendable>(&self, events: &[E]) -> Result<Range<Lsn>> {
        if let Some(e) = events
            .iter()
            .find(|e| e.type_name().starts_with(registry::ENGINE_PREFIX))
        {
            return Err(Error::ReservedType {
                name: e.type_name().to_string(),
            });
        }
        thread_local! {
            /// The encoding of the events being appended and where each
            /// ends: reused, so that appends allocate nothing.
            static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<usize>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        SCRATCH.with(|scratch| {
            let mut own = (Vec::new(), Vec::new());
            let mut borrowed = scratch.try_borrow_mut();
            let (buf, ends) = match borrowed.as_deref_mut() {
                Ok(s) => s,
                Err(_) => &mut own,
            };
            let mut registered = false;
            while !self.encode_all(events, buf, ends) {
                if registered {
                    // Registration said yes, yet a name is missing.
                    return Err(Error::InvalidOptions(
                        "an event's type or attribute key could not be registered".into(),
                    ));
                }
                self.register(events)?;
                registered = true;
            }
            let appended = if let [end] = ends[..] {
                self.log.append(&buf[..end]).map(|l| l..Lsn(l.0 + 1))
            } else {
                let mut start = 0;
                let payloads: Vec<&[u8]> = ends
                    .iter()
                    .map(|&end| {
                        let p = &buf[start..end];
                        start = end;
                        p
                    })
                    .collect();
                self.log.append_batch(&payloads)
            };
            // A thread that once appended a huge batch does not keep its memory.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
                *ends = Vec::new();
            }
            appended
        })
    }

    /// Encodes every event into `buf` (each one's end in `ends`) under one
    /// read of the catalog; false if a type or key is not registered yet.
    fn encode_all<E: Appendable>(
        &self,
        events: &[E],
        buf: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) -> bool {
        buf.clear();
        ends.clear();
        let reg = self.registry.read();
        for e in events {
            let Some(id) = reg.type_id(e.type_name()) else {
                return false;
            };
            let mut known = true;
            e.encode(
                id,
                &mut |k| {
                    reg.key_id(k).unwrap_or_else(|| {
                        known = false;
                        0
                    })
                },
                buf,
            );
            if !known {
                return false;
            }
            ends.push(buf.len());
        }
        true
    }

    /// Registers the types and attribute keys of `events` the log does not know yet.
    fn register<E: Appendable>(&self, events: &[E]) -> Result<()> {
        let mut types = Vec::new();
        for e in events {
            let name = e.type_name();
            let known = self.reference.as_ref().and_then(|c| c.get(name));
            if self.strict && known.is_none() && self.registry.read().type_id(name).is_none() {
                let suggestions = match &self.reference {
                    Some(c) => c.closest(name, 3).into_iter().map(String::from).collect(),
                    None => Vec::new(),
                };
                return Err(Error::UnknownType {
                    name: name.to_string(),
                    suggestions,
                });
            }
            types.push((name, known.map(|t| t.severity)));
        }
        let mut keys: Vec<&str> = Vec::new();
        for e in events {
            e.each_key(&mut |k| keys.push(k));
        }
        let time = events.first().map_or_else(Timestamp::now, |e| e.time());
        let mut registry = self.registry.write();
        registry.register(&self.log.shared, time, &types, &keys)
    }

    /// Reloads the log's catalog (a read-only log sees types another process
    /// registered). A writer's own catalog is always complete.
    fn reload_registry(&self) -> Result<()> {
        reload(&self.log.shared, &self.registry)
    }

    /// The event types a filter can name in this log: those it has
    /// registered (its own catalog, not the reference one), in registration
    /// order, then the engine's own (`AUDITLOG_…`). What a tool checks
    /// `--type` names against.
    ///
    /// # Errors
    /// A read-only log rereads its catalog first (another process may have
    /// registered types since): damage in it.
    pub fn type_names(&self) -> Result<Vec<String>> {
        self.reload_registry()?;
        Ok(self
            .registry
            .read()
            .types()
            .map(|(_, n)| n.to_string())
            .chain(ENGINE_TYPES.iter().map(|(_, n, _)| n.to_string()))
            .collect())
    }

    /// The events matching `filter`, oldest first (newest first if `reverse`).
    ///
    /// Compacted segments are read through their index: only blocks that can
    /// hold the filter's types, severities and times are decompressed. Raw
    /// segments are scanned.
    pub fn query<'a>(&'a self, filter: &'a Filter, reverse: bool) -> Query<'a> {
        self.planned_query(filter, reverse, None)
    }

    /// Like [`query`](Self::query), and records which segments and blocks
    /// were read and why: see [`Query::explain`].
    pub fn query_explained<'a>(&'a self, filter: &'a Filter, reverse: bool) -> Query<'a> {
        self.planned_query(filter, reverse, Some(Default::default()))
    }

    /// Like [`query`](Self::query), of the events from LSN `from` on only:
    /// what a reader that stopped after LSN `n` asks with `from = n + 1`
    /// (LSNs stay the same through compaction, so there is no gap and no
    /// duplicate). Reading starts at `from`; earlier segments are not read.
    pub fn query_from<'a>(&'a self, filter: &'a Filter, from: Lsn, reverse: bool) -> Query<'a> {
        let compiled = Arc::new(self.compile(filter));
        let inner = self.log.iter_planned(from, reverse, compiled.clone(), None);
        Query::new(self, inner, compiled, None)
    }

    fn planned_query<'a>(
        &'a self,
        filter: &'a Filter,
        reverse: bool,
        plans: Option<crate::engine::Plans>,
    ) -> Query<'a> {
        let compiled = Arc::new(self.compile(filter));
        let inner = self
            .log
            .iter_planned(Lsn(1), reverse, compiled.clone(), plans.clone());
        Query::new(self, inner, compiled, plans)
    }

    fn compile(&self, filter: &Filter) -> Compiled {
        Compiled::new(filter, self.registry.read().types())
    }

    /// How many events match `filter`, counted inside the engine: from the
    /// index postings alone where the filter names only types, severities
    /// and times whole blocks lie inside; else from the columns of the
    /// blocks and frames that can match, without building any event.
    ///
    /// # Errors
    /// Damage met while reading ([`Error::Corruption`]); a record that is
    /// not an event ([`Error::BadEvent`]).
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        self.aggregate(filter, &[], None).map(|a| a.total)
    }

    /// The events matching `filter`, counted by group: by type, severity,
    /// actor, address, source, result, session, entity, hour or day, or
    /// several at once (`[GroupBy::Day, GroupBy::Severity]`). With `top`,
    /// only the `top` largest groups, largest first ("top 10 actors by
    /// failed logins"); else every group in key order. Computed inside the
    /// engine as [`count`](Self::count) is.
    ///
    /// # Errors
    /// Damage met while reading; a record that is not an event.
    pub fn aggregate(
        &self,
        filter: &Filter,
        by: &[GroupBy],
        top: Option<usize>,
    ) -> Result<Aggregate> {
        let compiled = Arc::new(self.compile(filter));
        let plans: crate::engine::Plans = Default::default();
        let mut counter = Counter::new(&compiled, self, by);
        crate::engine::visit(
            &self.log.shared,
            compiled.clone(),
            &mut counter,
            Some(&plans),
        )?;
        let (total, from_index) = (counter.total, counter.from_index);
        let groups = counter.finish(top)?;
        let segments = plans.lock().clone();
        Ok(Aggregate {
            by: by.to_vec(),
            groups,
            total,
            explain: Explain { segments },
            from_index,
        })
    }

    /// Events whose type lies outside the declared application version's
    /// since/until range in `catalog` (both ends inclusive): count per type.
    ///
    /// # Errors
    /// Damage met while reading; a record that is not an event.
    pub fn version_report(&self, catalog: &Catalog) -> Result<VersionReport> {
        let mut report = VersionReport::default();
        for r in self.query(&Filter::default(), false) {
            let (lsn, e) = r?;
            let registry = self.registry.read();
            let Some(version) = registry.version_at(lsn.0) else {
                continue;
            };
            report.checked += 1;
            let Some(t) = catalog.get(&e.event_type) else {
                continue;
            };
            let before = t
                .since
                .as_deref()
                .is_some_and(|s| compare_versions(version, s).is_lt());
            let after = t
                .until
                .as_deref()
                .is_some_and(|u| compare_versions(version, u).is_gt());
            if before || after {
                *report
                    .outside
                    .entry((e.event_type, version.to_string()))
                    .or_insert(0) += 1;
            }
        }
        Ok(report)
    }

    /// A follower returning events from `from` on, waiting for new ones.
    /// It owns what it needs (it is `Send + 'static`: move it into a thread),
    /// and sees the types other writers register later.
    pub fn follow(&self, from: Lsn) -> AuditFollower {
        self.follow_filtered(&Filter::default(), from)
    }

    /// A follower returning the events that match `filter` from `from` on,
    /// waiting for new ones (`auditlog query -f`). Records that do not match
    /// are passed over without building an event.
    pub fn follow_filtered(&self, filter: &Filter, from: Lsn) -> AuditFollower {
        AuditFollower {
            shared: self.log.shared.clone(),
            registry: self.registry.clone(),
            compiled: self.compile(filter),
            inner: self.log.follow(from),
        }
    }

    /// The owned event of `r`, naming its type and keys from the log's catalog
    /// (reloaded once if another process registered names since).
    fn to_event(&self, lsn: Lsn, r: &EventRef<'_>) -> Result<Event> {
        to_event(&self.log.shared, &self.registry, lsn, r)
    }
}

/// The key a writer seals with: `given`, or the log's `KEY` file; checked
/// against `PUBKEY`, which is written when a log is sealed for the first
/// time. `None` for a log that is not sealed.
fn seal_key(shared: &Arc<Shared>, given: Option<SealKey>) -> Result<Option<SealKey>> {
    let (vfs, dir) = (shared.vfs(), shared.dir());
    let read = |name: &str| {
        store::read(&*vfs, dir, name).map_err(|e| Error::io("read", dir.join(name), e))
    };
    let text = |name: &str, bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .map_err(|_| Error::InvalidOptions(format!("{} is not text", dir.join(name).display())))
    };
    let public = match read(store::PUBKEY_FILE)? {
        Some(b) => Some(
            Verifier::from_text(&text(store::PUBKEY_FILE, b)?).map_err(|e| {
                Error::InvalidOptions(format!("{}: {e}", dir.join(store::PUBKEY_FILE).display()))
            })?,
        ),
        None => None,
    };
    let key = match given {
        Some(k) => Some(k),
        None => match read(store::KEY_FILE)? {
            Some(b) => Some(SealKey::from_text(&text(store::KEY_FILE, b)?).map_err(|e| {
                Error::InvalidOptions(format!("{}: {e}", dir.join(store::KEY_FILE).display()))
            })?),
            None => None,
        },
    };
    match (public, key) {
        (None, None) => Ok(None),
        (Some(v), None) => Err(Error::InvalidOptions(format!(
            "{} is sealed with key {v} but no signing key was given: pass it \
             (`--key PATH`, AuditOptions::seal_key) or keep it in the log as {}",
            dir.display(),
            store::KEY_FILE
        ))),
        (Some(v), Some(k)) if k.verifier() != v => Err(Error::InvalidOptions(format!(
            "the signing key given ({}) is not the log's ({v}, in {})",
            k.verifier(),
            store::PUBKEY_FILE
        ))),
        (Some(_), Some(k)) => Ok(Some(k)),
        (None, Some(k)) => {
            store::replace(
                &*vfs,
                dir,
                store::PUBKEY_FILE,
                format!("{}\n", k.verifier()).as_bytes(),
            )
            .map_err(|e| Error::io("write", dir.join(store::PUBKEY_FILE), e))?;
            Ok(Some(k))
        }
    }
}

/// Rereads the catalog of a read-only log (a writer's own is always complete).
fn reload(shared: &Arc<Shared>, registry: &RwLock<Registry>) -> Result<()> {
    if !shared.opts.read_only {
        return Ok(());
    }
    let fresh = Registry::reload(shared)?;
    *registry.write() = fresh;
    Ok(())
}

/// The owned event of `r`, naming its type and keys from the log's catalog
/// (reread once if another process registered names since).
fn to_event(
    shared: &Arc<Shared>,
    registry: &RwLock<Registry>,
    lsn: Lsn,
    r: &EventRef<'_>,
) -> Result<Event> {
    let convert = |reg: &Registry| {
        r.to_event(&|id| reg.type_name(id).map(String::from), &|k| {
            reg.key_name(k).map(String::from)
        })
    };
    // Bind first: the read guard must be gone before a reload takes the write lock.
    let first = convert(&registry.read());
    match first {
        Ok(e) => Ok(e),
        Err(_) => {
            reload(shared, registry)?;
            convert(&registry.read()).map_err(|source| Error::BadEvent { lsn, source })
        }
    }
}

impl Names for AuditLog {
    fn type_name(&self, id: u16) -> Option<String> {
        if let Some(n) = self.registry.read().type_name(id) {
            return Some(n.to_string());
        }
        self.reload_registry().ok()?;
        self.registry.read().type_name(id).map(String::from)
    }

    fn to_event(&self, lsn: Lsn, r: &EventRef<'_>) -> Result<Event> {
        AuditLog::to_event(self, lsn, r)
    }

    fn key_name(&self, id: u32) -> Option<String> {
        if let Some(n) = self.registry.read().key_name(id) {
            return Some(n.to_string());
        }
        self.reload_registry().ok()?;
        self.registry.read().key_name(id).map(String::from)
    }
}

/// What [`AuditLog::version_report`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionReport {
    /// Events written under a declared application version.
    pub checked: u64,
    /// Events outside their version's range: (type, version) → count.
    pub outside: std::collections::BTreeMap<(String, String), u64>,
}

/// Compares dotted versions numerically (`1.10` > `1.9`; missing parts are 0;
/// non-numeric parts compare as text).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| s.split('.').map(|p| p.to_string()).collect::<Vec<_>>();
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).map_or("0", String::as_str);
        let y = pb.get(i).map_or("0", String::as_str);
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            _ => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

/// Events as they are appended (`tail -f`), optionally only those that
/// match a filter. Owns what it needs: `Send + 'static`.
pub struct AuditFollower {
    shared: Arc<Shared>,
    registry: Arc<RwLock<Registry>>,
    compiled: Compiled,
    inner: crate::Follower,
}

impl std::fmt::Debug for AuditFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFollower")
            .field("next", &self.inner.position())
            .finish()
    }
}

impl AuditFollower {
    /// The LSN ranges (inclusive) passed over because their records were
    /// gone when the follower got there (retention, or quarantined damage).
    pub fn missed(&self) -> &[(Lsn, Lsn)] {
        self.inner.missed()
    }

    /// The LSN of the next record this follower will look at: everything
    /// before it has been returned or did not match.
    pub fn position(&self) -> Lsn {
        self.inner.position()
    }

    /// The next matching event, waiting up to `timeout`; `Ok(None)` if none
    /// came. The log's own catalog records are passed over.
    ///
    /// # Errors
    /// Damage met while reading; a record that is not an event, or whose
    /// type the log's catalog does not name.
    pub fn next_timeout(&mut self, timeout: std::time::Duration) -> Result<Option<(Lsn, Event)>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Some(r) = self.inner.next_timeout(left)? else {
                return Ok(None);
            };
            let (lsn, payload) = (r.lsn(), r.payload());
            let bad = |source| Error::BadEvent { lsn, source };
            let Some((head, fields)) = codec::split(payload) else {
                // Not an event: parsing says exactly what is wrong.
                return Err(EventRef::parse(payload).err().map_or_else(
                    || Error::BadEvent {
                        lsn,
                        source: codec::DecodeError {
                            offset: 0,
                            what: "not an event".into(),
                        },
                    },
                    bad,
                ));
            };
            if head.type_id == CATALOG_ENTRY_ID || !self.compiled.row(&head, &fields) {
                continue;
            }
            let ev = EventRef::parse(payload).map_err(bad)?;
            let event = to_event(&self.shared, &self.registry, lsn, &ev)?;
            if !self.compiled.knows_type(head.type_id)
                && !self.compiled.type_name_matches(&event.event_type)
            {
                continue; // a type registered since, that the filter does not name
            }
            return Ok(Some((lsn, event)));
        }
    }
}

/// An event [`AuditLog`] appends: owned ([`Event`]) or borrowed ([`EventFields`]).
trait Appendable {
    fn type_name(&self) -> &str;
    fn time(&self) -> Timestamp;
    fn each_key<'a>(&'a self, f: &mut dyn FnMut(&'a str));
    fn encode(&self, type_id: u16, key_id: &mut dyn FnMut(&str) -> u32, out: &mut Vec<u8>);
}

impl Appendable for Event {
    fn type_name(&self) -> &str {
        &self.event_type
    }
    fn time(&self) -> Timestamp {
        self.time
    }
    fn each_key<'a>(&'a self, f: &mut dyn FnMut(&'a str)) {
        for k in self.attrs.keys() {
            f(k);
        }
    }
    fn encode(&self, type_id: u16, key_id: &mut dyn FnMut(&str) -> u32, out: &mut Vec<u8>) {
        codec::encode(self, type_id, key_id, out);
    }
}

impl Appendable for EventFields<'_> {
    fn type_name(&self) -> &str {
        self.event_type
    }
    fn time(&self) -> Timestamp {
        self.time
    }
    fn each_key<'a>(&'a self, f: &mut dyn FnMut(&'a str)) {
        for &(k, _) in &self.attrs {
            f(k);
        }
    }
    fn encode(&self, type_id: u16, key_id: &mut dyn FnMut(&str) -> u32, out: &mut Vec<u8>) {
        codec::encode_fields(self, type_id, key_id, out);
    }
}
