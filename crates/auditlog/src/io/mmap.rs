//! The only module with `unsafe`: the memory map of a segment file (and the
//! `posix_fallocate` call that backs it with real blocks, and the `statvfs`
//! call that tells the free space retention keeps).
//!
//! The invariant everything here rests on: within this process, bytes of a
//! mapped segment below its frozen offset are never written again, and bytes
//! at or above it are only written through [`MappedFile::write_at`], never read
//! through a reference. Readers get slices of the frozen prefix only.
//! A writable file also refuses [`MappedFile::inspect`] (a slice of the whole
//! map) once writes above the frozen offset have begun.
//!
//! What this module cannot prevent: another process truncating or rewriting
//! the file behind our back (the general hazard of `mmap`). auditlog never
//! truncates a segment and only appends above the frozen offset, and the
//! directory is 0700, so only a hostile or broken process of the same user can.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::MmapRaw;

/// A segment file mapped into memory (shared mapping).
///
/// The map keeps the file alive, not a descriptor: a log has thousands of
/// segments, far more than a process may have files open. Only a file whose
/// blocks may still have to be allocated (a spare being made, or any file an
/// open maps writable) keeps its descriptor, until [`allocate`](Self::allocate).
#[derive(Debug)]
pub(crate) struct MappedFile {
    path: PathBuf,
    file: parking_lot::Mutex<Option<File>>,
    map: MmapRaw,
    len: u64,
    writable: bool,
    frozen: AtomicU64,
    /// Set on the first `write_at` above the frozen offset; `inspect` is refused after.
    writing: AtomicBool,
}

impl MappedFile {
    /// Maps all of `file` (`len` bytes), read-write when `writable`; keeps
    /// the descriptor only if `to_allocate` (see [`allocate`](Self::allocate)).
    pub(crate) fn new(
        path: &Path,
        file: File,
        len: u64,
        writable: bool,
        to_allocate: bool,
    ) -> io::Result<Self> {
        if len == 0 || usize::try_from(len).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("segment file has an unusable length of {len} bytes"),
            ));
        }
        let map = if writable {
            memmap2::MmapOptions::new()
                .len(len as usize)
                .map_raw(&file)?
        } else {
            memmap2::MmapOptions::new()
                .len(len as usize)
                .map_raw_read_only(&file)?
        };
        Ok(Self {
            path: path.to_path_buf(),
            file: parking_lot::Mutex::new(to_allocate.then_some(file)),
            map,
            len,
            writable,
            frozen: AtomicU64::new(0),
            writing: AtomicBool::new(false),
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Drops this process's page-table entries for the whole map
    /// (`MADV_DONTNEED`); the bytes stay what they are. See
    /// [`SegmentFile::release_pages`](super::SegmentFile::release_pages).
    pub(crate) fn release_pages(&self) -> io::Result<()> {
        // SAFETY: the map is a shared mapping of a file (`map_raw` and
        // `map_raw_read_only` map MAP_SHARED). For such a mapping
        // MADV_DONTNEED only removes the page-table entries: a dirty entry's
        // state moves to the page cache, and the next access faults the
        // same page of the file back in. Every byte reads as before, so the
        // slices readers hold over the frozen prefix stay valid and
        // unchanged (the data loss the advice is unsafe for is that of
        // private mappings, which this module never makes).
        unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        }
    }

    /// Faults in the pages of `offset..offset + len` (clipped to the map),
    /// writable, so that the writes there take no page fault
    /// (`MADV_POPULATE_WRITE`, Linux 5.14; elsewhere nothing). Writes
    /// nothing: the pages hold what the file holds.
    pub(crate) fn prefault(&self, offset: u64, len: u64) -> io::Result<()> {
        if !self.writable || offset >= self.len || len == 0 {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            let len = len.min(self.len - offset) as usize;
            match self
                .map
                .advise_range(memmap2::Advice::PopulateWrite, offset as usize, len)
            {
                // Older kernels do not know the advice: the writes fault instead.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
                other => other,
            }
        }
        #[cfg(not(target_os = "linux"))]
        Ok(())
    }

    pub(crate) fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        assert!(
            self.writable,
            "write to a read-only map of {}",
            self.path.display()
        );
        let end = offset
            .checked_add(data.len() as u64)
            .expect("write end overflows");
        assert!(
            end <= self.len,
            "write past the end of {}",
            self.path.display()
        );
        assert!(
            offset >= self.frozen.load(Ordering::Acquire),
            "write below the frozen offset of {}",
            self.path.display()
        );
        self.writing.store(true, Ordering::Release);
        // SAFETY: the map is `len` bytes long and `offset + data.len() <= len`
        // (asserted above), so the destination is inside the mapping. The range
        // is at or above the frozen offset, so no reader holds a slice over it
        // (slices are only made of the frozen prefix), and the writer hands out
        // disjoint ranges to concurrent callers (frames by reservation; the
        // sync mark and the footer, past every frame, under the segment's
        // mark lock), so no two writes overlap.
        // `data` is a Rust slice and cannot alias the mapping's unfrozen bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(offset as usize),
                data.len(),
            );
        }
        Ok(())
    }

    pub(crate) fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len).min(self.len);
        // msync(MS_SYNC) on Linux writes back the range and waits, like fdatasync.
        self.map
            .flush_range(offset as usize, (end - offset.min(end)) as usize)
    }

    pub(crate) fn freeze(&self, end: u64) {
        assert!(
            end <= self.len,
            "freeze past the end of {}",
            self.path.display()
        );
        self.frozen.fetch_max(end, Ordering::AcqRel);
    }

    pub(crate) fn frozen(&self) -> u64 {
        self.frozen.load(Ordering::Acquire)
    }

    pub(crate) fn inspect(&self, f: &mut dyn FnMut(&[u8])) {
        assert!(
            !self.writing.load(Ordering::Acquire),
            "inspect of {} while it is being written",
            self.path.display()
        );
        // SAFETY: the mapping is `len` bytes of readable memory that lives as
        // long as `self`. No in-process writer touches it: read-only maps are
        // never written, and a writable one has not begun writing (asserted
        // above; `write_at` sets `writing` before its first copy, and recovery,
        // the only caller on writable files, runs before any writer exists).
        let bytes = unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len as usize) };
        f(bytes);
    }
}

/// `posix_fallocate(fd, 0, len)`: `Ok(0)` on success, else the error number it returned.
pub(crate) fn fallocate(file: &File, len: u64) -> io::Result<i32> {
    use std::os::unix::io::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment length too large"))?;
    // SAFETY: the fd is borrowed from a live `File` for the whole call;
    // posix_fallocate reads no memory of ours.
    Ok(unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) })
}

impl MappedFile {
    /// Runs `allocate` on the file's descriptor, then lets the descriptor go.
    /// Nothing to do for a file mapped without it: its blocks were all
    /// allocated when it was created, or it is never written (read-only).
    pub(crate) fn allocate(
        &self,
        allocate: impl FnOnce(&File) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut file = self.file.lock();
        if let Some(f) = file.as_ref() {
            allocate(f)?;
            *file = None;
        }
        Ok(())
    }
}

/// Bytes free for an unprivileged user on the file system holding `path` (`statvfs`).
pub(crate) fn free_space(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated string alive for the call, and `st`
    // points to writable memory the size of a `statvfs`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled in the whole struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::useless_conversion)] // u32 on some targets
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// A cheap, clonable, zero-copy view of the frozen prefix of a segment file.
///
/// Holding a view keeps the mapping alive, even after the file is removed.
#[derive(Clone, Debug)]
pub struct View {
    inner: ViewInner,
}

#[derive(Clone, Debug)]
enum ViewInner {
    Mapped { file: Arc<MappedFile>, len: usize },
    Heap(Arc<[u8]>),
}

impl View {
    /// A view of the first `frozen()` bytes of a mapped file.
    pub(crate) fn mapped(file: Arc<MappedFile>) -> Self {
        let len = file.frozen() as usize;
        Self {
            inner: ViewInner::Mapped { file, len },
        }
    }

    /// A view of bytes held on the heap (for file systems that are not the
    /// operating system's, such as the fault-injecting one of `testing`).
    pub fn heap(bytes: Arc<[u8]>) -> Self {
        Self {
            inner: ViewInner::Heap(bytes),
        }
    }

    /// The viewed bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.inner {
            ViewInner::Mapped { file, len } => {
                // SAFETY: `len` was the frozen offset when this view was made,
                // and bytes below the frozen offset are never written again in
                // this process (`MappedFile::write_at` asserts it). The map lives
                // as long as the `Arc<MappedFile>` this view holds.
                unsafe { std::slice::from_raw_parts(file.map.as_ptr(), *len) }
            }
            ViewInner::Heap(bytes) => bytes,
        }
    }

    /// Number of viewed bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}
