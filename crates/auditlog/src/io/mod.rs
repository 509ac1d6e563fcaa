//! The file seam: every byte auditlog writes or reads goes through [`Vfs`] and
//! [`SegmentFile`], so tests can swap the real file system ([`RealFs`]) for one
//! that loses unsynced data, tears writes and fails `fsync` (`FaultyFs`, in
//! `testing` with the `testing` feature).
//!
//! Segment files are written only at or above their *frozen* offset and read
//! only below it: [`SegmentFile::freeze`] is the line between the bytes the
//! writer still owns and the bytes readers may look at without copying.

#[cfg(any(test, feature = "testing"))]
pub(crate) mod fault;
mod mmap;
mod real;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use mmap::View;
pub use real::RealFs;

/// File name of the writer's lock file: it names the holder's pid, while the
/// lock itself is held on the directory.
pub const LOCK_FILE: &str = "LOCK";

/// File name of the marker `auditlog demo` leaves in a directory it created:
/// the engine ignores it; the demo replaces only a directory that has it.
pub const DEMO_MARKER: &str = "DEMO";

/// File name of a log's catalog cache (written by the catalog layer; the
/// engine only knows the name, so that opening the directory accepts it).
pub const CATALOG_FILE: &str = "CATALOG";
/// Name under which a new `CATALOG` is written before it replaces the old one.
pub const CATALOG_TMP_FILE: &str = "CATALOG.tmp";

/// File names of a sealed log's tamper evidence (written by the sealer; the
/// engine only knows the names, so that opening the directory accepts them):
/// the verifier key, the signer key, the block hashes, the checkpoints, and
/// the new files that replace the last two.
pub const SEAL_FILES: [&str; 7] = [
    "PUBKEY",
    "PUBKEY.tmp",
    "KEY",
    "TREE",
    "CHECKPOINTS",
    "TREE.tmp",
    "CHECKPOINTS.tmp",
];

/// A held exclusive lock on a log directory; dropping it releases the lock.
pub type LockGuard = Box<dyn Send + Sync>;

/// The directory-level file operations auditlog needs.
///
/// Implementations must be usable from many threads at once.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Creates `path` and its parents (mode 0700 where the platform has modes).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries in directory `path`, unsorted. `NotFound` if it does not exist.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Creates a new file of exactly `len` bytes with its blocks allocated
    /// (so later writes inside it cannot fail for lack of space), and opens it
    /// for writing. Fails with `AlreadyExists` if the file exists and with
    /// `StorageFull` if the space cannot be allocated (leaving no file behind).
    fn create_segment(&self, path: &Path, len: u64) -> io::Result<Arc<dyn SegmentFile>>;
    /// Like [`create_segment`](Vfs::create_segment), with only the blocks of
    /// its first `allocated` bytes allocated: nothing may be written past
    /// them until [`SegmentFile::allocate`] has succeeded (a write into a
    /// hole of a mapped file on a full disk is a SIGBUS, not an error). The
    /// spare segment waits this way, taking little disk. By default
    /// allocates the whole file.
    fn create_segment_allocating(
        &self,
        path: &Path,
        len: u64,
        allocated: u64,
    ) -> io::Result<Arc<dyn SegmentFile>> {
        let _ = allocated;
        self.create_segment(path, len)
    }
    /// Opens an existing segment file, for writing or read-only. No file of a
    /// log is ever opened through a symbolic link: implementations refuse them.
    fn open_segment(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn SegmentFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists (durable after [`sync_dir`](Self::sync_dir)).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Reads a whole small file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Appends `data` to a small file (created with mode 0600 if missing) and
    /// makes it durable before returning.
    fn append_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Takes the exclusive writer's lock on the log directory `dir` itself
    /// (so removing or replacing a file in it cannot break the lock) and
    /// writes `owner` into `dir/LOCK`. `Ok(None)` when another holder has it.
    fn try_lock(&self, dir: &Path, owner: &str) -> io::Result<Option<LockGuard>>;
    /// Whether a writer holds the lock of log directory `dir` now.
    fn writer_active(&self, dir: &Path) -> io::Result<bool>;
    /// Bytes free on the file system holding directory `path`.
    fn free_bytes(&self, path: &Path) -> io::Result<u64>;
}

/// One fixed-size, preallocated segment file.
pub trait SegmentFile: Send + Sync + fmt::Debug {
    /// The file's size in bytes (fixed when it was created).
    fn file_len(&self) -> u64;
    /// Writes `data` at `offset`. `offset` must be at or above [`frozen`](Self::frozen)
    /// and the write must end inside the file; both are asserted.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the bytes in `offset..offset + len` durable (`msync`/`fdatasync`).
    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Declares every byte below `end` final: never written again, readable
    /// through [`view`](Self::view). Never moves backward.
    fn freeze(&self, end: u64);
    /// The current frozen offset.
    fn frozen(&self) -> u64;
    /// A zero-copy view of the frozen bytes `0..frozen()`.
    fn view(&self) -> io::Result<View>;
    /// Calls `f` with every byte of the file, frozen or not. Only for recovery
    /// and for read-only followers: the writing process must not be writing to
    /// the file (asserted for files opened for writing: call it before the
    /// first `write_at` above the frozen offset).
    fn inspect(&self, f: &mut dyn FnMut(&[u8]));
    /// Prepares the bytes in `offset..offset + len` (clipped to the file)
    /// for writing, so that the writes there do not wait for the memory
    /// behind them (a memory map's first-touch page faults). Changes no
    /// byte; by default does nothing.
    fn prefault(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Lets go of this process's mapping of the file's pages (a memory
    /// map's page-table entries) without changing a byte: the next read
    /// maps them again. Done before a sealed segment is synced: writing
    /// back pages a process maps writable takes a TLB flush on every CPU
    /// that runs it, for each page, which stalls the writer meanwhile. By
    /// default does nothing.
    fn release_pages(&self) -> io::Result<()> {
        Ok(())
    }
    /// Allocates the blocks of the whole file, so that no write inside it
    /// can fail for lack of space (`StorageFull` if they cannot be had). A
    /// file whose blocks are all allocated takes no time. By default does
    /// nothing (files that have no holes).
    fn allocate(&self) -> io::Result<()> {
        Ok(())
    }
}
