//! A log's own catalog: event-type names and attribute keys mapped to ids
//! that never change once assigned, persisted in the log directory's
//! `CATALOG` file (docs/FORMAT.md, "CATALOG").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::Vfs;
use crate::severity::Severity;

/// File name of a log's catalog.
pub const CATALOG_FILE: &str = "CATALOG";

/// The names a log has given ids to.
#[derive(Debug, Default)]
pub struct Registry {
    types: Vec<(String, Option<Severity>)>,
    type_ids: HashMap<String, u16>,
    keys: Vec<String>,
    key_ids: HashMap<String, u32>,
    /// Application versions declared by writers: (first LSN written under it, version).
    versions: Vec<(u64, String)>,
}

fn bad(path: &Path, line: usize, what: impl Into<String>) -> Error {
    Error::BadCatalogFile {
        path: path.to_path_buf(),
        line,
        what: what.into(),
    }
}

impl Registry {
    /// Loads `CATALOG` from `dir` (empty if there is none).
    pub fn load(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Registry> {
        let path = dir.join(CATALOG_FILE);
        let bytes = match vfs.read_file(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let text = String::from_utf8(bytes).map_err(|_| bad(&path, 0, "not UTF-8"))?;
        let mut r = Registry::default();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let mut parts = line.splitn(4, ' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("type"), Some(id), Some(sev), Some(name)) => {
                    let id: usize = id
                        .parse()
                        .map_err(|_| bad(&path, n, format!("bad id {id:?}")))?;
                    if id != r.types.len() || id > usize::from(u16::MAX) {
                        return Err(bad(&path, n, format!("type id {id} out of sequence")));
                    }
                    let sev = match sev {
                        "-" => None,
                        s => Some(
                            s.parse::<Severity>()
                                .map_err(|e| bad(&path, n, e.to_string()))?,
                        ),
                    };
                    r.insert_type(name, sev);
                }
                (Some("key"), Some(id), Some(name), None) => {
                    let id: usize = id
                        .parse()
                        .map_err(|_| bad(&path, n, format!("bad id {id:?}")))?;
                    if id != r.keys.len() {
                        return Err(bad(&path, n, format!("key id {id} out of sequence")));
                    }
                    r.insert_key(name);
                }
                (Some("version"), Some(lsn), Some(v), None) => {
                    let lsn: u64 = lsn
                        .parse()
                        .map_err(|_| bad(&path, n, format!("bad LSN {lsn:?}")))?;
                    r.versions.push((lsn, v.to_string()));
                }
                _ if line.is_empty() => {}
                _ => {
                    return Err(bad(
                        &path,
                        n,
                        "expected `type ID SEVERITY NAME` or `key ID NAME`",
                    ))
                }
            }
        }
        Ok(r)
    }

    fn insert_type(&mut self, name: &str, severity: Option<Severity>) -> u16 {
        let id = self.types.len() as u16;
        self.types.push((name.to_string(), severity));
        self.type_ids.insert(name.to_string(), id);
        id
    }

    fn insert_key(&mut self, name: &str) -> u32 {
        let id = self.keys.len() as u32;
        self.keys.push(name.to_string());
        self.key_ids.insert(name.to_string(), id);
        id
    }

    /// The id of type `name`, if registered.
    pub fn type_id(&self, name: &str) -> Option<u16> {
        self.type_ids.get(name).copied()
    }

    /// The name of type `id`.
    pub fn type_name(&self, id: u16) -> Option<&str> {
        self.types.get(usize::from(id)).map(|(n, _)| n.as_str())
    }

    /// The default severity recorded for type `name`.
    pub fn default_severity(&self, name: &str) -> Option<Severity> {
        self.type_id(name)
            .and_then(|id| self.types[usize::from(id)].1)
    }

    /// The id of attribute key `name`, if registered.
    pub fn key_id(&self, name: &str) -> Option<u32> {
        self.key_ids.get(name).copied()
    }

    /// The name of attribute key `id`.
    pub fn key_name(&self, id: u32) -> Option<&str> {
        self.keys.get(id as usize).map(String::as_str)
    }

    /// The application version declared for the record at `lsn`, if any.
    pub fn version_at(&self, lsn: u64) -> Option<&str> {
        let i = self.versions.partition_point(|(from, _)| *from <= lsn);
        i.checked_sub(1).map(|i| self.versions[i].1.as_str())
    }

    /// Records that records from `lsn` on are written by application `version`
    /// (nothing is written if that is already the current version).
    pub fn declare_version(
        &mut self,
        vfs: &Arc<dyn Vfs>,
        dir: &Path,
        lsn: u64,
        version: &str,
    ) -> Result<()> {
        if version.is_empty() || version.contains(char::is_whitespace) {
            return Err(Error::InvalidName {
                what: "application version",
                name: version.to_string(),
            });
        }
        if self.versions.last().is_some_and(|(_, v)| v == version) {
            return Ok(());
        }
        let path = dir.join(CATALOG_FILE);
        vfs.append_file(&path, format!("version {lsn} {version}\n").as_bytes())
            .map_err(|e| Error::io("write", &path, e))?;
        sync_dir(vfs, dir)?;
        self.versions.push((lsn, version.to_string()));
        Ok(())
    }

    /// All registered types: (id, name).
    pub fn types(&self) -> impl Iterator<Item = (u16, &str)> {
        self.types
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (i as u16, n.as_str()))
    }

    /// Registers the types and keys not yet known, appending them durably to
    /// the `CATALOG` file first (so an id is never handed out unrecorded).
    pub fn register(
        &mut self,
        vfs: &Arc<dyn Vfs>,
        dir: &Path,
        types: &[(&str, Option<Severity>)],
        keys: &[&str],
    ) -> Result<()> {
        let mut text = String::new();
        let mut new_types = Vec::new();
        let mut new_keys = Vec::new();
        for &(name, sev) in types {
            if self.type_id(name).is_none() && !new_types.iter().any(|(n, _)| *n == name) {
                if self.types.len() + new_types.len() > usize::from(u16::MAX) {
                    return Err(Error::InvalidOptions(
                        "a log holds at most 65,536 event types".into(),
                    ));
                }
                check_name(name, "event type")?;
                let id = self.types.len() + new_types.len();
                let sev_text = sev.map_or("-".to_string(), |s| s.to_string());
                text.push_str(&format!("type {id} {sev_text} {name}\n"));
                new_types.push((name, sev));
            }
        }
        for &name in keys {
            if self.key_id(name).is_none() && !new_keys.contains(&name) {
                check_name(name, "attribute key")?;
                let id = self.keys.len() + new_keys.len();
                text.push_str(&format!("key {id} {name}\n"));
                new_keys.push(name);
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        let path: PathBuf = dir.join(CATALOG_FILE);
        vfs.append_file(&path, text.as_bytes())
            .map_err(|e| Error::io("write", &path, e))?;
        // The file may have just been created: its name must be durable too
        // before an event uses an id it gives.
        sync_dir(vfs, dir)?;
        for (name, sev) in new_types {
            self.insert_type(name, sev);
        }
        for name in new_keys {
            self.insert_key(name);
        }
        Ok(())
    }
}

/// Names are stored one per line, space-separated from their id.
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
    Ok(())
}

fn sync_dir(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<()> {
    vfs.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))
}
