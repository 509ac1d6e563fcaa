//! A log's own catalog: event-type names and attribute keys mapped to ids
//! that never change once assigned (docs/FORMAT.md, "The log's catalog").
//!
//! The log itself is the source of truth: every registration is first
//! appended (and synced) as an `AUDITLOG_CATALOG_ENTRY` record, so it is
//! CRC-framed, compacted and carried along like the data, and an event can
//! only ever follow the registration of its ids. The `CATALOG` file is a
//! checksummed cache of those records (each line with its CRC and the LSN
//! of its record), so that opening a log does not read the whole log; a
//! line that fails its CRC is damage naming the file and line, and a file
//! that lost lines, or was deleted, is completed from the log.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockUpgradableReadGuard};

use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::event::codec::{self, EventRef, TextField};
use crate::event::reserved::ENGINE_TYPES;
pub use crate::event::reserved::{
    engine_type_id, engine_type_name, CATALOG_ENTRY, CATALOG_ENTRY_ID, ENGINE_PREFIX,
    ENGINE_TYPE_BASE, MAX_TYPES,
};
use crate::event::{Event, Timestamp};
use crate::io::Vfs;
use crate::query::Prefilter;
use crate::severity::Severity;
use crate::Lsn;

pub use crate::io::{CATALOG_FILE, CATALOG_TMP_FILE};

/// How many `covered` lines the file may gather before it is rewritten.
const COVERED_LINES_MAX: usize = 64;

/// One line of the catalog: what a catalog record says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `format 2`: the first line of a version-2 file.
    Format(u32),
    /// `type ID SEVERITY NAME`.
    Type {
        id: u16,
        severity: Option<Severity>,
        name: String,
    },
    /// `key ID NAME`.
    Key { id: u32, name: String },
    /// `version LSN VERSION`: records from LSN on were written by that application version.
    Version { from: u64, version: String },
    /// `covered LSN`: every catalog record below LSN is in this file.
    Covered(u64),
}

impl Entry {
    fn parse(line: &str) -> std::result::Result<Entry, String> {
        let mut parts = line.splitn(4, ' ');
        let num = |s: Option<&str>, what: &str| -> std::result::Result<u64, String> {
            s.and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad {what} {:?}", s.unwrap_or("")))
        };
        match parts.next() {
            Some("format") => Ok(Entry::Format(num(parts.next(), "format")? as u32)),
            Some("covered") => Ok(Entry::Covered(num(parts.next(), "LSN")?)),
            Some("type") => {
                let id = num(parts.next(), "type id")?;
                let severity = match parts.next() {
                    Some("-") => None,
                    Some(s) => Some(s.parse::<Severity>().map_err(|e| e.to_string())?),
                    None => return Err("type without a severity".into()),
                };
                let name = parts.next().ok_or("type without a name")?;
                if id >= MAX_TYPES as u64 {
                    return Err(format!("type id {id} is out of range"));
                }
                Ok(Entry::Type {
                    id: id as u16,
                    severity,
                    name: name.to_string(),
                })
            }
            Some("key") => {
                let id = num(parts.next(), "key id")?;
                let name = match (parts.next(), parts.next()) {
                    (Some(n), None) => n,
                    _ => return Err("expected `key ID NAME`".into()),
                };
                Ok(Entry::Key {
                    id: u32::try_from(id).map_err(|_| format!("key id {id} is out of range"))?,
                    name: name.to_string(),
                })
            }
            Some("version") => {
                let from = num(parts.next(), "LSN")?;
                let version = match (parts.next(), parts.next()) {
                    (Some(v), None) => v,
                    _ => return Err("expected `version LSN VERSION`".into()),
                };
                Ok(Entry::Version {
                    from,
                    version: version.to_string(),
                })
            }
            _ => Err("expected `type`, `key`, `version`, `covered` or `format`".into()),
        }
    }

    /// Types by id, then keys by id, then versions: the order in which
    /// entries can be taken in.
    fn order(&self) -> (u8, u64) {
        match self {
            Entry::Type { id, .. } => (0, u64::from(*id)),
            Entry::Key { id, .. } => (1, u64::from(*id)),
            Entry::Version { from, .. } => (2, *from),
            Entry::Format(_) | Entry::Covered(_) => (3, 0),
        }
    }

    fn text(&self) -> String {
        match self {
            Entry::Format(v) => format!("format {v}"),
            Entry::Type { id, severity, name } => {
                let sev = severity.map_or("-".to_string(), |s| s.to_string());
                format!("type {id} {sev} {name}")
            }
            Entry::Key { id, name } => format!("key {id} {name}"),
            Entry::Version { from, version } => format!("version {from} {version}"),
            Entry::Covered(lsn) => format!("covered {lsn}"),
        }
    }
}

/// A `CATALOG` line: `CRC LSN ENTRY`, the CRC-32 (8 hex digits) of `LSN ENTRY`.
fn line(lsn: u64, entry: &Entry) -> String {
    let rest = format!("{lsn} {}", entry.text());
    format!("{:08x} {rest}\n", crc32fast::hash(rest.as_bytes()))
}

/// The names a log has given ids to.
#[derive(Debug, Default)]
pub struct Registry {
    /// Per type id: name, default severity, LSN of its newest catalog record.
    types: Vec<(String, Option<Severity>, u64)>,
    type_ids: HashMap<String, u16>,
    /// Per key id: name, LSN of its newest catalog record.
    keys: Vec<(String, u64)>,
    key_ids: HashMap<String, u32>,
    /// Application versions declared by writers: (first LSN written under
    /// it, version, LSN of its catalog record).
    versions: Vec<(u64, String, u64)>,
    /// Every catalog record below this LSN is in the file.
    covered: u64,
    /// `covered` lines in the file.
    covered_lines: usize,
    /// The file is missing, in the old unchecksummed format, or ends in a
    /// line cut short (a crash or a full disk while appending): a writer
    /// writes it anew rather than appending to it.
    needs_rewrite: bool,
    /// A write to the file failed: no more registrations in this process.
    failed: Option<String>,
}

fn bad(path: &Path, line: usize, what: impl Into<String>) -> Error {
    Error::BadCatalogFile {
        path: path.to_path_buf(),
        line,
        what: what.into(),
    }
}

/// What opening a log's catalog found and did beyond reading the file
/// ([`AuditLog::catalog_report`](crate::AuditLog::catalog_report)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogReport {
    /// Registrations taken from the log that the file lacked.
    pub completed_from_log: usize,
    /// The file was damaged or missing and was rebuilt from the log: why.
    pub rebuilt: Option<String>,
    /// A reader found the log shorter than the file says it was: what is
    /// missing (a writer refuses to open such a log unless repairing it).
    pub log_ends_early: Option<String>,
}

impl Registry {
    /// Reads `CATALOG` from `dir` (an empty registry if there is none).
    /// Damage (a line whose CRC fails, a line out of sequence) is an error
    /// naming the file and line; a last line cut short is left out.
    pub fn load(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Registry> {
        let path = dir.join(CATALOG_FILE);
        let bytes = match vfs.read_file(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Registry {
                    needs_rewrite: true,
                    ..Registry::default()
                })
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let mut r = Registry::default();
        let mut text = &bytes[..];
        if !text.is_empty() && !text.ends_with(b"\n") {
            // A line cut short was never acknowledged: its record is in the log.
            let cut = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            text = &text[..cut];
            r.needs_rewrite = true;
        }
        let text = std::str::from_utf8(text).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            bad(&path, line, "not UTF-8")
        })?;
        let first = text.lines().next().unwrap_or("");
        let legacy = ["type ", "key ", "version "]
            .iter()
            .any(|p| first.starts_with(p));
        r.needs_rewrite |= legacy;
        for (i, l) in text.lines().enumerate() {
            let n = i + 1;
            let (lsn, entry) = if legacy {
                (0, Entry::parse(l).map_err(|e| bad(&path, n, e))?)
            } else {
                let (crc, rest) = l
                    .split_once(' ')
                    .ok_or_else(|| bad(&path, n, "expected `CRC LSN ENTRY`"))?;
                let computed = crc32fast::hash(rest.as_bytes());
                if u32::from_str_radix(crc, 16).ok() != Some(computed) || crc.len() != 8 {
                    return Err(bad(
                        &path,
                        n,
                        format!("checksum mismatch (stored {crc}, computed {computed:08x})"),
                    ));
                }
                let (lsn, entry) = rest
                    .split_once(' ')
                    .ok_or_else(|| bad(&path, n, "expected `CRC LSN ENTRY`"))?;
                let lsn: u64 = lsn
                    .parse()
                    .map_err(|_| bad(&path, n, format!("bad LSN {lsn:?}")))?;
                (lsn, Entry::parse(entry).map_err(|e| bad(&path, n, e))?)
            };
            if n == 1 && !legacy && entry != Entry::Format(2) {
                return Err(bad(&path, n, "expected `format 2` on the first line"));
            }
            r.apply(lsn, &entry).map_err(|e| bad(&path, n, e))?;
        }
        Ok(r)
    }

    /// Takes in one entry found at `lsn` (0: a line without a record).
    /// An entry for an id already known must say the same.
    fn apply(&mut self, lsn: u64, entry: &Entry) -> std::result::Result<(), String> {
        match entry {
            Entry::Format(_) => {}
            Entry::Covered(c) => {
                self.covered = self.covered.max(*c);
                self.covered_lines += 1;
            }
            Entry::Type { id, severity, name } => {
                let (i, len) = (usize::from(*id), self.types.len());
                match self.types.get_mut(i) {
                    Some(t) if t.0 == *name && t.1 == *severity => t.2 = t.2.max(lsn),
                    Some(t) => {
                        return Err(format!(
                            "type id {id} is {} here but {name} at LSN {lsn}",
                            t.0
                        ))
                    }
                    None if i == len => {
                        if self.type_ids.contains_key(name) {
                            return Err(format!("type {name} has two ids"));
                        }
                        self.insert_type(name, *severity, lsn);
                    }
                    None => return Err(format!("type id {id} out of sequence")),
                }
            }
            Entry::Key { id, name } => {
                let (i, len) = (*id as usize, self.keys.len());
                match self.keys.get_mut(i) {
                    Some(k) if k.0 == *name => k.1 = k.1.max(lsn),
                    Some(k) => {
                        return Err(format!(
                            "key id {id} is {} here but {name} at LSN {lsn}",
                            k.0
                        ))
                    }
                    None if i == len => {
                        if self.key_ids.contains_key(name) {
                            return Err(format!("key {name} has two ids"));
                        }
                        self.insert_key(name, lsn);
                    }
                    None => return Err(format!("key id {id} out of sequence")),
                }
            }
            Entry::Version { from, version } => {
                match self.versions.iter_mut().find(|v| v.0 == *from) {
                    Some(v) if v.1 == *version => v.2 = v.2.max(lsn),
                    Some(v) => {
                        return Err(format!(
                            "version from LSN {from} is {} here but {version} at LSN {lsn}",
                            v.1
                        ))
                    }
                    None => {
                        self.versions.push((*from, version.clone(), lsn));
                        self.versions.sort_by_key(|v| v.0);
                    }
                }
            }
        }
        Ok(())
    }

    fn insert_type(&mut self, name: &str, severity: Option<Severity>, lsn: u64) -> u16 {
        let id = self.types.len() as u16;
        self.types.push((name.to_string(), severity, lsn));
        self.type_ids.insert(name.to_string(), id);
        id
    }

    fn insert_key(&mut self, name: &str, lsn: u64) -> u32 {
        let id = self.keys.len() as u32;
        self.keys.push((name.to_string(), lsn));
        self.key_ids.insert(name.to_string(), id);
        id
    }

    /// Every entry, as the file and the log hold them: (record LSN, entry).
    fn entries(&self) -> Vec<(u64, Entry)> {
        let types = self.types.iter().enumerate().map(|(i, t)| {
            let entry = Entry::Type {
                id: i as u16,
                severity: t.1,
                name: t.0.clone(),
            };
            (t.2, entry)
        });
        let keys = self.keys.iter().enumerate().map(|(i, k)| {
            let entry = Entry::Key {
                id: i as u32,
                name: k.0.clone(),
            };
            (k.1, entry)
        });
        let versions = self.versions.iter().map(|v| {
            let entry = Entry::Version {
                from: v.0,
                version: v.1.clone(),
            };
            (v.2, entry)
        });
        types.chain(keys).chain(versions).collect()
    }

    /// The id of type `name`, if registered (engine types always are).
    pub fn type_id(&self, name: &str) -> Option<u16> {
        self.type_ids
            .get(name)
            .copied()
            .or_else(|| engine_type_id(name))
    }

    /// The name of type `id`.
    pub fn type_name(&self, id: u16) -> Option<&str> {
        match self.types.get(usize::from(id)) {
            Some((n, _, _)) => Some(n.as_str()),
            None => engine_type_name(id),
        }
    }

    /// The default severity recorded for type `name`.
    pub fn default_severity(&self, name: &str) -> Option<Severity> {
        match self.type_ids.get(name) {
            Some(&id) => self.types[usize::from(id)].1,
            None => ENGINE_TYPES.iter().find(|t| t.1 == name).map(|t| t.2),
        }
    }

    /// The id of attribute key `name`, if registered.
    pub fn key_id(&self, name: &str) -> Option<u32> {
        self.key_ids.get(name).copied()
    }

    /// The name of attribute key `id`.
    pub fn key_name(&self, id: u32) -> Option<&str> {
        self.keys.get(id as usize).map(|k| k.0.as_str())
    }

    /// The application version declared for the record at `lsn`, if any.
    pub fn version_at(&self, lsn: u64) -> Option<&str> {
        let i = self.versions.partition_point(|(from, _, _)| *from <= lsn);
        i.checked_sub(1).map(|i| self.versions[i].1.as_str())
    }

    /// All registered types: (id, name); the engine's own are not listed.
    pub fn types(&self) -> impl Iterator<Item = (u16, &str)> {
        self.types
            .iter()
            .enumerate()
            .map(|(i, (n, _, _))| (i as u16, n.as_str()))
    }

    /// Records that records from `lsn` on are written by application `version`
    /// (nothing is written if that is already the current version).
    pub(crate) fn declare_version(
        &mut self,
        shared: &Shared,
        lsn: u64,
        version: &str,
    ) -> Result<()> {
        let time = Timestamp::now();
        if version.is_empty() || version.contains(char::is_whitespace) {
            return Err(Error::InvalidName {
                what: "application version",
                name: version.to_string(),
            });
        }
        if self.versions.last().is_some_and(|v| v.1 == version) {
            return Ok(());
        }
        self.record(
            shared,
            time,
            vec![Entry::Version {
                from: lsn,
                version: version.to_string(),
            }],
        )
    }

    /// Registers the types and keys not yet known: each is appended (and
    /// synced) to the log as a catalog record, then to the `CATALOG` file,
    /// before any event can use its id. Linear in the number of names.
    /// `time` is the catalog records' time: that of the first event that
    /// needs them, so that the same events appended the same way give the
    /// same bytes.
    pub(crate) fn register(
        &mut self,
        shared: &Shared,
        time: Timestamp,
        types: &[(&str, Option<Severity>)],
        keys: &[&str],
    ) -> Result<()> {
        let mut entries = Vec::new();
        let mut new_types = HashSet::new();
        for &(name, severity) in types {
            if self.type_id(name).is_none() && new_types.insert(name) {
                check_name(name, "event type")?;
                let id = self.types.len() + new_types.len() - 1;
                if id >= MAX_TYPES {
                    return Err(Error::InvalidOptions(format!(
                        "a log holds at most {MAX_TYPES} event types"
                    )));
                }
                entries.push(Entry::Type {
                    id: id as u16,
                    severity,
                    name: name.to_string(),
                });
            }
        }
        let mut new_keys = HashSet::new();
        for &name in keys {
            if self.key_id(name).is_none() && new_keys.insert(name) {
                check_name(name, "attribute key")?;
                let id = self.keys.len() + new_keys.len() - 1;
                let id = u32::try_from(id).map_err(|_| {
                    Error::InvalidOptions("a log holds at most 2^32 attribute keys".into())
                })?;
                entries.push(Entry::Key {
                    id,
                    name: name.to_string(),
                });
            }
        }
        self.record(shared, time, entries)
    }

    /// Appends `entries` as catalog records (synced), takes them in, then
    /// writes them as `CATALOG` lines. Once the records are in the log the
    /// names are registered, whatever happens to the file: a full disk
    /// leaves the file to be written whole next time (the next open
    /// completes it from the log anyway); any other failure of the file
    /// (a failed sync may have dropped lines that a later sync would claim)
    /// stops all registration in this process and poisons the log.
    fn record(&mut self, shared: &Shared, time: Timestamp, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(why) = &self.failed {
            return Err(Error::Poisoned {
                reason: format!("write to the catalog failed ({why})"),
            });
        }
        let payloads: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| record_payload(time, &e.text()))
            .collect();
        let first = shared.append_durable(&payloads)?;
        let mut text = String::new();
        for (i, e) in entries.iter().enumerate() {
            let lsn = first.0 + i as u64;
            text.push_str(&line(lsn, e));
            self.apply(lsn, e)
                .expect("new entries follow the known ones");
        }
        match self.write_lines(shared, &text) {
            Ok(()) => Ok(()),
            Err(Error::StorageFull { .. }) => {
                self.needs_rewrite = true;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                shared.poison(format!("write to {CATALOG_FILE} failed: {}", e.chain()));
                Err(e)
            }
        }
    }

    /// Appends lines to `CATALOG` and makes them durable; `text` must be
    /// taken in already (a file that must be written anew is written whole).
    fn write_lines(&mut self, shared: &Shared, text: &str) -> Result<()> {
        if self.needs_rewrite {
            // Nothing sound to append to: write the whole file anew (what is
            // known already includes `text`).
            let all = self.file_text();
            return self.replace_file(shared, &all);
        }
        append_to_file(shared, text)
    }

    /// The whole file for what is known now.
    fn file_text(&self) -> String {
        self.file_text_covering(self.covered)
    }

    /// The whole file for what is known now, saying it covers `covered`.
    fn file_text_covering(&self, covered: u64) -> String {
        let mut text = line(0, &Entry::Format(2));
        for (lsn, e) in self.entries() {
            text.push_str(&line(lsn, &e));
        }
        if covered > 0 {
            text.push_str(&line(0, &Entry::Covered(covered)));
        }
        text
    }

    /// Replaces `CATALOG` atomically: written as `CATALOG.tmp`, synced,
    /// renamed over it, directory synced.
    fn replace_file(&mut self, shared: &Shared, text: &str) -> Result<()> {
        write_whole_file(shared, text)?;
        self.needs_rewrite = false;
        self.covered_lines = usize::from(self.covered > 0);
        Ok(())
    }

    /// Notes in the file that every catalog record below `lsn` is in it, so
    /// the next open reads the log only from there. `lsn` must be durable.
    pub(crate) fn mark_covered(&mut self, shared: &Shared, lsn: u64) -> Result<()> {
        let Some(write) = self.cover_write(lsn) else {
            return Ok(());
        };
        let written = write.run(shared);
        self.covered_written(lsn, &write, written)
    }

    /// [`mark_covered`](Self::mark_covered) from a thread of the log's own
    /// (the rollover worker, after it sealed a segment). The file is written
    /// under an upgradable read: appends, which read the registry for every
    /// event, go on meanwhile; registrations, which hold the write lock from
    /// their catalog record's append to their line's write, wait, so none is
    /// half done while the mark says every record below `lsn` is in the file.
    pub(crate) fn mark_covered_shared(
        registry: &RwLock<Registry>,
        shared: &Shared,
        lsn: u64,
    ) -> Result<()> {
        let r = registry.upgradable_read();
        let Some(write) = r.cover_write(lsn) else {
            return Ok(());
        };
        let written = write.run(shared);
        RwLockUpgradableReadGuard::upgrade(r).covered_written(lsn, &write, written)
    }

    /// What marking `lsn` covered writes to the file: nothing if it is no
    /// further than the file says already (or the file cannot be written).
    fn cover_write(&self, lsn: u64) -> Option<CoverWrite> {
        if lsn <= self.covered || self.failed.is_some() {
            return None;
        }
        Some(
            if self.needs_rewrite || self.covered_lines >= COVERED_LINES_MAX {
                CoverWrite::Whole(self.file_text_covering(lsn))
            } else {
                CoverWrite::Line(line(0, &Entry::Covered(lsn)))
            },
        )
    }

    /// Takes in how writing a mark went. A full disk leaves the file to be
    /// written whole next time; any other failure ends registrations in
    /// this process (as a failed registration does).
    fn covered_written(&mut self, lsn: u64, write: &CoverWrite, written: Result<()>) -> Result<()> {
        self.covered = self.covered.max(lsn);
        match written {
            Ok(()) => {
                match write {
                    CoverWrite::Whole(_) => {
                        self.needs_rewrite = false;
                        self.covered_lines = 1;
                    }
                    CoverWrite::Line(_) => self.covered_lines += 1,
                }
                Ok(())
            }
            Err(Error::StorageFull { .. }) => {
                self.needs_rewrite = true;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// The catalog records of a compacted segment about to be removed are
    /// recorded again, so the log keeps a copy of every registration.
    pub(crate) fn rerecord_range(
        &mut self,
        shared: &Shared,
        time: Timestamp,
        from: Lsn,
        to: Lsn,
    ) -> Result<()> {
        let again: Vec<Entry> = self
            .entries()
            .into_iter()
            .filter(|(lsn, _)| (from.0..to.0).contains(lsn))
            .map(|(_, e)| e)
            .collect();
        self.record(shared, time, again)
    }
}

/// What marking an LSN covered writes to `CATALOG`.
enum CoverWrite {
    /// A `covered` line appended.
    Line(String),
    /// The whole file anew (it must be, or it gathered enough marks).
    Whole(String),
}

impl CoverWrite {
    fn run(&self, shared: &Shared) -> Result<()> {
        match self {
            CoverWrite::Line(text) => append_to_file(shared, text),
            CoverWrite::Whole(text) => write_whole_file(shared, text),
        }
    }
}

/// Appends `text` to `CATALOG` and makes it durable.
fn append_to_file(shared: &Shared, text: &str) -> Result<()> {
    let path = shared.dir.join(CATALOG_FILE);
    shared
        .opts
        .vfs
        .append_file(&path, text.as_bytes())
        .map_err(|e| Error::io("write", &path, e))
}

/// Replaces `CATALOG` with `text` atomically: written as `CATALOG.tmp`,
/// synced, renamed over it, directory synced.
fn write_whole_file(shared: &Shared, text: &str) -> Result<()> {
    let vfs = &shared.opts.vfs;
    let (tmp, path) = (
        shared.dir.join(CATALOG_TMP_FILE),
        shared.dir.join(CATALOG_FILE),
    );
    match vfs.remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove", &tmp, e))
        }
        _ => {}
    }
    vfs.append_file(&tmp, text.as_bytes())
        .map_err(|e| Error::io("write", &tmp, e))?;
    vfs.rename(&tmp, &path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    vfs.sync_dir(&shared.dir)
        .map_err(|e| Error::io("sync directory", &shared.dir, e))
}

/// The payload of a catalog record holding `entry`.
fn record_payload(time: Timestamp, entry: &str) -> Vec<u8> {
    let mut e = Event::new(time, CATALOG_ENTRY, Severity::Info);
    e.source = Some("auditlog".into());
    e.data = Some(entry.to_string());
    let mut out = Vec::with_capacity(32 + entry.len());
    codec::encode(
        &e,
        CATALOG_ENTRY_ID,
        &mut |_| unreachable!("no attributes"),
        &mut out,
    );
    out
}

/// The catalog records of the log from `from` on: (LSN, entry text). Found
/// through the index in compacted segments; raw segments are scanned.
fn records_in_log(shared: &Arc<Shared>, from: Lsn) -> Result<Vec<(u64, String)>> {
    let id = CATALOG_ENTRY_ID;
    let pre = std::sync::Arc::new(Prefilter::engine_type(id));
    let mut out = Vec::new();
    for r in shared.records(from, pre) {
        let r = r?;
        if codec::peek_type_severity(r.payload()).is_none_or(|(t, _)| t != id) {
            continue;
        }
        let e = EventRef::parse(r.payload()).map_err(|source| Error::BadEvent {
            lsn: r.lsn(),
            source,
        })?;
        let text = e.text(TextField::Data).unwrap_or("").to_string();
        out.push((r.lsn().0, text));
    }
    Ok(out)
}

/// Takes the log's catalog records from `from` on into `r`.
fn take_from_log(r: &mut Registry, shared: &Arc<Shared>, from: Lsn) -> Result<usize> {
    let path = shared.dir.join(CATALOG_FILE);
    let mut entries = Vec::new();
    for (lsn, text) in records_in_log(shared, from)? {
        let entry = Entry::parse(&text).map_err(|e| {
            bad(
                &path,
                0,
                format!("the log's catalog record at LSN {lsn} is not an entry: {e}"),
            )
        })?;
        entries.push((lsn, entry));
    }
    // Retention records a removed segment's entries again at the end of the
    // log, so the log need not hold them in id order.
    entries.sort_by_key(|(lsn, e)| (e.order(), *lsn));
    let mut added = 0;
    for (lsn, entry) in entries {
        let before = (r.types.len(), r.keys.len(), r.versions.len());
        r.apply(lsn, &entry).map_err(|e| {
            bad(
                &path,
                0,
                format!("the file disagrees with the log: {e}; run `auditlog repair`"),
            )
        })?;
        if before != (r.types.len(), r.keys.len(), r.versions.len()) {
            added += 1;
        }
    }
    Ok(added)
}

/// Opens a log's catalog: reads `CATALOG`, and for a writer completes it
/// from the log's catalog records past what it covers (all of them if the
/// file is missing). With `repair`, a damaged file is rebuilt from the log.
pub(crate) fn open(shared: &Arc<Shared>, repair: bool) -> Result<(Registry, CatalogReport)> {
    let vfs = &shared.opts.vfs;
    let mut report = CatalogReport::default();
    let next = shared.visible.load(std::sync::atomic::Ordering::Acquire);
    let loaded = Registry::load(vfs, &shared.dir).and_then(|r| match r.ends_early(next) {
        Some(why) if !shared.opts.read_only => Err(bad(&shared.dir.join(CATALOG_FILE), 0, why)),
        Some(why) => {
            // A writer writes `CATALOG` after the records it names are
            // durable: one may have appended them since the end was read.
            // Only what is still missing after looking again is missing.
            if let Some(why) = shared
                .refreshed_end()
                .map_or(Some(why), |end| r.ends_early(end))
            {
                report.log_ends_early = Some(why);
            }
            Ok(r)
        }
        None => Ok(r),
    });
    let mut r = match loaded {
        Ok(r) => r,
        Err(e) if repair && !shared.opts.read_only => {
            report.rebuilt = Some(format!("{e}"));
            Registry::default()
        }
        Err(Error::BadCatalogFile { path, line, what }) => {
            return Err(Error::BadCatalogFile {
                path,
                line,
                what: format!("{what}; `auditlog repair` rebuilds it from the log"),
            })
        }
        Err(e) => return Err(e),
    };
    if shared.opts.read_only {
        return Ok((r, report));
    }
    let from = if report.rebuilt.is_some() {
        0
    } else {
        r.scan_from()
    };
    let scanned = from < next;
    if scanned {
        match take_from_log(&mut r, shared, Lsn(from)) {
            Ok(n) => report.completed_from_log = n,
            Err(e) if repair && report.rebuilt.is_none() => {
                report.rebuilt = Some(format!("{e}"));
                r = Registry::default();
                report.completed_from_log = take_from_log(&mut r, shared, Lsn(0))?;
            }
            Err(e) => return Err(e),
        }
    }
    if r.needs_rewrite || report.rebuilt.is_some() || report.completed_from_log > 0 {
        r.covered = r.covered.max(next);
        let text = r.file_text();
        r.replace_file(shared, &text)?;
    } else if scanned {
        r.mark_covered(shared, next)?;
    }
    Ok((r, report))
}

impl Registry {
    /// Whether the file knows of records past `next`, the end of the log: a
    /// catalog record it names, or how far it says the log reached (the
    /// newest segment deleted, the log cut short). Says what, if so.
    fn ends_early(&self, next: u64) -> Option<String> {
        if let Some((lsn, e)) = self.entries().into_iter().find(|(lsn, _)| *lsn >= next) {
            return Some(format!(
                "`{}` was recorded at LSN {lsn}, but the log ends before it, at LSN {}: records at the end are missing",
                e.text(),
                next.saturating_sub(1)
            ));
        }
        (self.covered > next).then(|| {
            format!(
                "the log had reached LSN {}, but it ends at LSN {}: {} records at the end are missing",
                self.covered - 1,
                next.saturating_sub(1),
                self.covered - next
            )
        })
    }

    /// Where a scan of the log for catalog records must start: after the
    /// newest record the file names and after what it says it covers.
    fn scan_from(&self) -> u64 {
        let newest = self.entries().iter().map(|(lsn, _)| lsn + 1).max();
        self.covered.max(newest.unwrap_or(0))
    }

    /// A reader's reload: the file, completed from the log past what it covers.
    pub(crate) fn reload(shared: &Arc<Shared>) -> Result<Registry> {
        let mut r = Registry::load(&shared.opts.vfs, &shared.dir)?;
        let from = r.scan_from();
        take_from_log(&mut r, shared, Lsn(from))?;
        Ok(r)
    }

    /// Checks the file against every catalog record in the log: each record
    /// up to what the file covers is in the file, and each file line with a
    /// record points at one that says the same. Returns what disagrees.
    pub(crate) fn check_against_log(&self, shared: &Arc<Shared>) -> Result<Vec<String>> {
        let mut problems: Vec<String> = self
            .ends_early(shared.visible.load(std::sync::atomic::Ordering::Acquire))
            .into_iter()
            .collect();
        let mut from_log = Registry::default();
        let mut at: HashMap<u64, String> = HashMap::new();
        let mut entries = Vec::new();
        for (lsn, text) in records_in_log(shared, Lsn(0))? {
            match Entry::parse(&text) {
                Ok(e) => entries.push((lsn, e)),
                Err(why) => problems.push(format!("catalog record at LSN {lsn}: {why}")),
            }
            at.insert(lsn, text);
        }
        entries.sort_by_key(|(lsn, e)| (e.order(), *lsn));
        for (lsn, e) in entries {
            if let Err(why) = from_log.apply(lsn, &e) {
                problems.push(format!("the log's catalog records disagree: {why}"));
            }
        }
        let first = shared.first_lsn().0;
        for (lsn, e) in self.entries() {
            match at.get(&lsn) {
                Some(t) if *t == e.text() => {}
                Some(t) => problems.push(format!(
                    "{CATALOG_FILE} says `{}` was recorded at LSN {lsn}, but that record says `{t}`",
                    e.text()
                )),
                None if lsn == 0 || lsn < first => {}
                None => problems.push(format!(
                    "{CATALOG_FILE} says `{}` was recorded at LSN {lsn}, but there is no catalog record there",
                    e.text()
                )),
            }
        }
        // Records past what the file covers are not in it yet when a writer
        // stopped (a crash, a failed sync) between appending them and
        // writing their lines: readers take them from the log, and the next
        // writer's open writes them. Only an older one missing is damage.
        let from = self.scan_from();
        for (lsn, e) in from_log.entries() {
            if lsn >= from {
                continue;
            }
            let known = match &e {
                Entry::Type { id, name, .. } => self.type_name(*id) == Some(name),
                Entry::Key { id, name } => self.key_name(*id) == Some(name),
                Entry::Version { from, version } => self
                    .versions
                    .iter()
                    .any(|v| v.0 == *from && v.1 == *version),
                _ => true,
            };
            if !known {
                problems.push(format!(
                    "the log records `{}` at LSN {lsn}, but {CATALOG_FILE} does not say so",
                    e.text()
                ));
            }
        }
        Ok(problems)
    }

    /// Rewrites the file from the log's catalog records alone (`repair`).
    pub(crate) fn rebuild(shared: &Arc<Shared>) -> Result<Registry> {
        let mut r = Registry::default();
        take_from_log(&mut r, shared, Lsn(0))?;
        r.covered = shared.visible.load(std::sync::atomic::Ordering::Acquire);
        let text = r.file_text();
        r.replace_file(shared, &text)?;
        Ok(r)
    }
}

/// Names are stored one per line, space-separated from their id; names
/// starting with `AUDITLOG_` belong to the engine.
fn check_name(name: &str, what: &'static str) -> Result<()> {
    if name.is_empty()
        || name.len() > 256
        || name.contains(['\n', '\r'])
        || (what == "attribute key" && name.contains(' '))
    {
        return Err(Error::InvalidName {
            what,
            name: name.to_string(),
        });
    }
    if what == "event type" && name.starts_with(ENGINE_PREFIX) {
        return Err(Error::ReservedType {
            name: name.to_string(),
        });
    }
    Ok(())
}
