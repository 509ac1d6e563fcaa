//! A file system in memory that fails the way disks and kernels do.
//!
//! What it models, each seeded and repeatable:
//! - **power loss** ([`FaultyFs::crash`]): every byte made durable by a sync
//!   survives; of the writes since, a random prefix survives in order and the
//!   last surviving one may be torn at a 512-byte sector boundary; directory
//!   changes not made durable by a directory sync may or may not survive;
//! - **a failed `fsync`** ([`FaultyFs::fail_sync_after`]): the sync reports an
//!   error and, as Linux does, forgets the dirty data it could not write, so a
//!   later sync "succeeds" without persisting it;
//! - **a full disk** ([`FaultyFs::set_space_limit`]): creating a file whose
//!   blocks would exceed the limit fails with `StorageFull`, and an append to
//!   a small file is cut short where the space ends;
//!
//! Handles opened before a crash stop working after it (every call fails with
//! an I/O error), as the process that held them would be gone.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::mmap::View;
use super::{LockGuard, SegmentFile, Vfs};

/// Sector size at which [`FaultyFs::crash`] tears the last surviving write.
pub const SECTOR: u64 = 512;

/// The fault-injecting in-memory file system. Cheap to clone (shared state).
///
/// A handle belongs to the generation it was made (or cloned) in: after a
/// [`crash`](Self::crash) through another handle, its file-system operations
/// fail, as those of a process the power loss outlived would (its threads
/// must not rename, create or remove files in the rebooted image). The
/// handle that crashed it, and clones made after, go on.
#[derive(Debug, Default)]
pub struct FaultyFs {
    inner: Arc<Inner>,
    generation: AtomicU64,
}

impl Clone for FaultyFs {
    fn clone(&self) -> Self {
        FaultyFs {
            inner: self.inner.clone(),
            generation: AtomicU64::new(self.inner.generation.load(Ordering::Acquire)),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<FsState>,
    /// Bumped by every crash; handles from an older generation are dead.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct FsState {
    files: BTreeMap<PathBuf, Entry>,
    dirs: HashSet<PathBuf>,
    locks: HashSet<PathBuf>,
    /// The number of syncs still allowed to succeed before one fails.
    syncs_until_failure: Option<u64>,
    space_limit: Option<u64>,
}

#[derive(Debug)]
struct Entry {
    file: Arc<FaultFile>,
    exists: bool,
    durable_exists: bool,
}

#[derive(Debug)]
struct FaultFile {
    /// Weak: the file system owns its files, not the other way round.
    fs: Weak<Inner>,
    generation: u64,
    state: Mutex<FileState>,
}

#[derive(Debug, Default, Clone)]
struct FileState {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (offset, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    frozen: u64,
}

/// A file-system operation through a handle from before a simulated crash.
fn dead_fs() -> io::Error {
    io::Error::other("file system handle from before a simulated crash")
}

fn dead() -> io::Error {
    io::Error::other("file handle from before a simulated crash")
}

fn injected_sync_failure() -> io::Error {
    io::Error::other("injected fsync failure")
}

impl FaultyFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the sync after the next `n` successful ones fail (`0`: the very next).
    pub fn fail_sync_after(&self, n: u64) {
        self.inner.state.lock().syncs_until_failure = Some(n);
    }

    /// Limits the total size of all files; `None` removes the limit.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.inner.state.lock().space_limit = bytes;
    }

    /// Simulates power loss, choosing what survives from `seed`, and "reboots":
    /// afterwards the file system holds only what survived, and handles
    /// opened before the crash fail on every call.
    pub fn crash(&self, seed: u64) {
        let mut rng = SplitMix64(seed);
        let mut st = self.inner.state.lock();
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.generation.store(generation, Ordering::Release);
        let mut files = BTreeMap::new();
        for (path, entry) in std::mem::take(&mut st.files) {
            let survives = if entry.exists == entry.durable_exists {
                entry.exists
            } else {
                rng.next().is_multiple_of(2)
            };
            if !survives {
                continue;
            }
            let old = entry.file.state.lock().clone();
            let mut image = old.durable.clone();
            if image.len() < old.current.len() {
                image.resize(old.current.len(), 0);
            }
            let keep = if old.pending.is_empty() {
                0
            } else {
                (rng.next() % (old.pending.len() as u64 + 1)) as usize
            };
            for (i, (off, data)) in old.pending.iter().enumerate().take(keep) {
                let mut len = data.len();
                if i + 1 == keep && rng.next().is_multiple_of(2) {
                    // Tear: only the sectors up to a random boundary reached the disk.
                    let sectors = (off + data.len() as u64).div_ceil(SECTOR) - off / SECTOR;
                    let cut = (off / SECTOR + rng.next() % sectors.max(1)) * SECTOR;
                    len = cut.saturating_sub(*off).min(data.len() as u64) as usize;
                }
                let off = *off as usize;
                image[off..off + len].copy_from_slice(&data[..len]);
            }
            let file = Arc::new(FaultFile {
                fs: Arc::downgrade(&self.inner),
                generation,
                state: Mutex::new(FileState {
                    current: image.clone(),
                    durable: image,
                    pending: Vec::new(),
                    frozen: 0,
                }),
            });
            files.insert(
                path,
                Entry {
                    file,
                    exists: true,
                    durable_exists: true,
                },
            );
        }
        st.files = files;
        st.locks.clear();
        st.syncs_until_failure = None;
    }

    /// Creates (or replaces) a file with these contents, durably, directory
    /// entry included: for tests and fuzzers that start from given bytes.
    pub fn put_file(&self, path: &Path, contents: &[u8]) {
        let mut st = self.inner.state.lock();
        if let Some(dir) = path.parent() {
            for d in dir.ancestors() {
                st.dirs.insert(d.to_path_buf());
            }
        }
        let file = self.new_file(path, contents.to_vec(), &mut st);
        file.state.lock().durable = contents.to_vec();
        if let Some(e) = st.files.get_mut(path) {
            e.durable_exists = true;
        }
    }

    /// The current contents of a file (as a reader would see them now).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.inner.state.lock();
        let entry = st.files.get(path).filter(|e| e.exists)?;
        let contents = entry.file.state.lock().current.clone();
        Some(contents)
    }

    /// The state, for a file-system operation through this handle: refused
    /// if a crash came after the handle was made (checked under the lock
    /// the crash takes, so no operation straddles one).
    fn state(&self) -> io::Result<parking_lot::MutexGuard<'_, FsState>> {
        let st = self.inner.state.lock();
        if self.generation.load(Ordering::Acquire) != self.inner.generation.load(Ordering::Acquire)
        {
            return Err(dead_fs());
        }
        Ok(st)
    }

    fn live(&self, path: &Path) -> io::Result<Arc<FaultFile>> {
        let st = self.state()?;
        st.files
            .get(path)
            .filter(|e| e.exists)
            .map(|e| e.file.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }

    fn new_file(&self, path: &Path, contents: Vec<u8>, st: &mut FsState) -> Arc<FaultFile> {
        let file = Arc::new(FaultFile {
            fs: Arc::downgrade(&self.inner),
            generation: self.inner.generation.load(Ordering::Acquire),
            state: Mutex::new(FileState {
                current: contents,
                ..FileState::default()
            }),
        });
        st.files.insert(
            path.to_path_buf(),
            Entry {
                file: file.clone(),
                exists: true,
                durable_exists: false,
            },
        );
        file
    }
}

impl FsState {
    /// Bytes of all files that exist now.
    fn used_bytes(&self) -> u64 {
        self.files
            .values()
            .filter(|e| e.exists)
            .map(|e| e.file.state.lock().current.len() as u64)
            .sum()
    }
}

impl Inner {
    /// Counts a sync, failing it if a failure was scheduled.
    fn sync_allowed(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        match st.syncs_until_failure {
            Some(0) => {
                st.syncs_until_failure = None;
                Err(injected_sync_failure())
            }
            Some(n) => {
                st.syncs_until_failure = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Vfs for FaultyFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state()?;
        for dir in path.ancestors() {
            st.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.state()?;
        if !st.dirs.contains(path) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                path.display().to_string(),
            ));
        }
        Ok(st
            .files
            .iter()
            .filter(|(p, e)| e.exists && p.parent() == Some(path))
            .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn create_segment(&self, path: &Path, len: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let mut st = self.state()?;
        if st.files.get(path).is_some_and(|e| e.exists) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        if let Some(limit) = st.space_limit {
            if st.used_bytes() + len > limit {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device",
                ));
            }
        }
        let file = self.new_file(path, vec![0; len as usize], &mut st);
        Ok(file)
    }

    fn open_segment(&self, path: &Path, _writable: bool) -> io::Result<Arc<dyn SegmentFile>> {
        Ok(self.live(path)?)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state()?;
        match st.files.get_mut(path).filter(|e| e.exists) {
            Some(e) => {
                e.exists = false;
                Ok(())
            }
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state()?;
        let file = match st.files.get_mut(from).filter(|e| e.exists) {
            Some(e) => {
                e.exists = false;
                e.file.clone()
            }
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        // Until the directory is synced, a crash may keep the old name, the
        // new one, both or neither (each decided on its own).
        let durable_exists = st.files.get(to).is_some_and(|e| e.durable_exists);
        st.files.insert(
            to.to_path_buf(),
            Entry {
                file,
                exists: true,
                durable_exists,
            },
        );
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_allowed()?;
        let mut st = self.state()?;
        st.files.retain(|p, e| {
            if p.parent() == Some(path) {
                e.durable_exists = e.exists;
            }
            e.exists || e.durable_exists
        });
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.live(path)?;
        let contents = file.state.lock().current.clone();
        Ok(contents)
    }

    fn append_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let file = match self.live(path) {
            Ok(f) => f,
            Err(_) => {
                let mut st = self.state()?;
                self.new_file(path, Vec::new(), &mut st)
            }
        };
        // The write reaches the page cache as far as space allows (a full
        // disk cuts it short), then the sync makes it durable, or fails and
        // leaves it to be lost at a crash.
        let room = {
            let st = self.state()?;
            st.space_limit
                .map_or(usize::MAX, |l| l.saturating_sub(st.used_bytes()) as usize)
        };
        let fits = room.min(data.len());
        file.state.lock().current.extend_from_slice(&data[..fits]);
        if fits < data.len() {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        self.inner.sync_allowed()?;
        let mut f = file.state.lock();
        f.durable = f.current.clone();
        Ok(())
    }

    fn writer_active(&self, dir: &Path) -> io::Result<bool> {
        Ok(self.state()?.locks.contains(dir))
    }

    fn free_bytes(&self, _path: &Path) -> io::Result<u64> {
        let st = self.state()?;
        let Some(limit) = st.space_limit else {
            return Ok(u64::MAX);
        };
        Ok(limit.saturating_sub(st.used_bytes()))
    }

    fn try_lock(&self, dir: &Path, owner: &str) -> io::Result<Option<LockGuard>> {
        let mut st = self.state()?;
        if !st.locks.insert(dir.to_path_buf()) {
            return Ok(None);
        }
        let path = &dir.join(super::LOCK_FILE);
        let file = match st.files.get(path).filter(|e| e.exists) {
            Some(e) => e.file.clone(),
            None => self.new_file(path, Vec::new(), &mut st),
        };
        let mut f = file.state.lock();
        f.current = owner.as_bytes().to_vec();
        f.durable = f.current.clone();
        drop(f);
        Ok(Some(Box::new(FaultLock {
            fs: self.inner.clone(),
            path: dir.to_path_buf(),
            generation: self.inner.generation.load(Ordering::Acquire),
        })))
    }
}

struct FaultLock {
    fs: Arc<Inner>,
    path: PathBuf,
    generation: u64,
}

impl Drop for FaultLock {
    fn drop(&mut self) {
        if self.fs.generation.load(Ordering::Acquire) == self.generation {
            self.fs.state.lock().locks.remove(&self.path);
        }
    }
}

impl FaultFile {
    fn check_alive(&self) -> io::Result<Arc<Inner>> {
        match self.fs.upgrade() {
            Some(fs) if fs.generation.load(Ordering::Acquire) == self.generation => Ok(fs),
            _ => Err(dead()),
        }
    }
}

impl SegmentFile for FaultFile {
    fn file_len(&self) -> u64 {
        self.state.lock().current.len() as u64
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_alive()?;
        let mut f = self.state.lock();
        assert!(offset >= f.frozen, "write below the frozen offset");
        let off = offset as usize;
        let end = off + data.len();
        assert!(end <= f.current.len(), "write past the end of the file");
        f.current[off..end].copy_from_slice(data);
        f.pending.push((offset, data.to_vec()));
        Ok(())
    }

    fn sync_range(&self, _offset: u64, _len: u64) -> io::Result<()> {
        let result = self.check_alive()?.sync_allowed();
        let mut f = self.state.lock();
        // Checked again under the file's lock: a crash between the check
        // above and this lock has taken its image of the file already, so
        // this sync never happened (it must not report success: the caller
        // would go on to rename a segment whose header the image lacks).
        // A crash after this check waits for the lock, and its image has
        // what this sync makes durable.
        self.check_alive()?;
        if result.is_ok() {
            f.durable = f.current.clone();
        }
        // On failure the kernel drops the dirty pages it could not write:
        // they stay visible in the cache but will never reach the disk.
        f.pending.clear();
        result
    }

    fn freeze(&self, end: u64) {
        let mut f = self.state.lock();
        assert!(
            end <= f.current.len() as u64,
            "freeze past the end of the file"
        );
        f.frozen = f.frozen.max(end);
    }

    fn frozen(&self) -> u64 {
        self.state.lock().frozen
    }

    fn view(&self) -> io::Result<View> {
        let f = self.state.lock();
        Ok(View::heap(Arc::from(&f.current[..f.frozen as usize])))
    }

    fn inspect(&self, f: &mut dyn FnMut(&[u8])) {
        let st = self.state.lock();
        f(&st.current);
    }
}

/// A small, seedable pseudo-random generator (SplitMix64), for repeatable faults.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next pseudo-random number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133e_b133);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_from_before_a_crash_changes_nothing_after_it() {
        let fs = FaultyFs::new();
        let old = fs.clone();
        let dir = Path::new("/log");
        old.create_dir_all(dir).unwrap();
        old.append_file(&dir.join("a"), b"durable").unwrap();
        let seg = old.create_segment(&dir.join("b.tmp"), 64).unwrap();
        old.sync_dir(dir).unwrap();
        fs.crash(1);
        // The old process's threads: every operation refused, nothing changed.
        assert!(old.rename(&dir.join("b.tmp"), &dir.join("b")).is_err());
        assert!(old.remove_file(&dir.join("a")).is_err());
        assert!(old.append_file(&dir.join("a"), b" and more").is_err());
        assert!(old.append_file(&dir.join("c"), b"new").is_err());
        assert!(old.create_segment(&dir.join("d"), 64).is_err());
        assert!(old.sync_dir(dir).is_err());
        assert!(old.try_lock(dir, "old").is_err());
        assert!(seg.write_at(0, b"x").is_err());
        // The rebooted system: the handle that crashed it, and new clones.
        let mut names = fs.list_dir(dir).unwrap();
        names.sort();
        assert_eq!(names, ["a", "b.tmp"]);
        assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"durable");
        let new = fs.clone();
        new.rename(&dir.join("b.tmp"), &dir.join("b")).unwrap();
        assert!(fs.try_lock(dir, "new").unwrap().is_some());
    }
}
