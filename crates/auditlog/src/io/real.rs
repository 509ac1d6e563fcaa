//! The real file system: segment files are preallocated and memory-mapped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::mmap::{fallocate, MappedFile, View};
use super::{LockGuard, SegmentFile, Vfs};

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Vfs for RealFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_symlink() {
                return Err(symlink_error(&path.join(&name)));
            }
            names.push(name);
        }
        Ok(names)
    }

    fn create_segment(&self, path: &Path, len: u64) -> io::Result<Arc<dyn SegmentFile>> {
        self.create_segment_allocating(path, len, len)
    }

    fn create_segment_allocating(
        &self,
        path: &Path,
        len: u64,
        allocated: u64,
    ) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        // The first `allocated` bytes backed by blocks, the rest a hole.
        let made = allocate(&file, allocated.min(len)).and_then(|()| file.set_len(len));
        if let Err(e) = made {
            let _ = fs::remove_file(path);
            return Err(e);
        }
        let mapped = MappedFile::new(path, file, len, true, allocated < len)?;
        Ok(Arc::new(RealSegment(Arc::new(mapped))))
    }

    fn open_segment(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let file = no_follow(OpenOptions::new().read(true).write(writable))
            .open(path)
            .map_err(|e| follow_error(path, e))?;
        let len = file.metadata()?.len();
        // A writable file may be a spare a crash left before its blocks
        // were allocated: it keeps its descriptor until they are.
        let mapped = MappedFile::new(path, file, len, writable, writable)?;
        Ok(Arc::new(RealSegment(Arc::new(mapped))))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        no_follow(OpenOptions::new().read(true))
            .open(path)
            .map_err(|e| follow_error(path, e))?
            .read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn append_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut file = no_follow(OpenOptions::new().append(true).create(true).mode(0o600))
            .open(path)
            .map_err(|e| follow_error(path, e))?;
        file.write_all(data)?;
        file.sync_data()
    }

    fn free_bytes(&self, path: &Path) -> io::Result<u64> {
        super::mmap::free_space(path)
    }

    fn try_lock(&self, dir: &Path, owner: &str) -> io::Result<Option<LockGuard>> {
        // The lock is on the directory itself: removing or replacing the LOCK
        // file cannot let a second writer in.
        let dir_file = open_dir(dir)?;
        match dir_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let path = dir.join(super::LOCK_FILE);
        let mut file = no_follow(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600),
        )
        .open(&path)
        .map_err(|e| follow_error(&path, e))?;
        file.write_all(owner.as_bytes())?;
        Ok(Some(Box::new((dir_file, file))))
    }

    fn writer_active(&self, dir: &Path) -> io::Result<bool> {
        let dir_file = open_dir(dir)?;
        match dir_file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// `options` set never to follow a symbolic link in the last component.
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    options.custom_flags(libc::O_NOFOLLOW)
}

fn open_dir(dir: &Path) -> io::Result<File> {
    no_follow(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW),
    )
    .open(dir)
    .map_err(|e| follow_error(dir, e))
}

fn symlink_error(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link: auditlog never follows links in a log directory",
            path.display()
        ),
    )
}

/// `ELOOP` from an `O_NOFOLLOW` open means the path is a symbolic link.
fn follow_error(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        symlink_error(path)
    } else {
        e
    }
}

/// Allocates the blocks of `file` up to `len` so that writes through the map
/// never hit a hole on a full disk (which would be a SIGBUS, not an error).
fn allocate(file: &File, len: u64) -> io::Result<()> {
    match fallocate(file, len)? {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => {
            // File systems without fallocate: write the zeros ourselves.
            // (Only ever on a file nothing was written to yet: a new
            // segment, or a spare before its header.)
            use std::os::unix::fs::FileExt;
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < len {
                let n = (len - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_all()
        }
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[derive(Debug)]
struct RealSegment(Arc<MappedFile>);

impl SegmentFile for RealSegment {
    fn file_len(&self) -> u64 {
        self.0.len()
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        // The size never changes (preallocated), so syncing the data range is enough.
        self.0.sync_range(offset, len)
    }
    fn freeze(&self, end: u64) {
        self.0.freeze(end)
    }
    fn frozen(&self) -> u64 {
        self.0.frozen()
    }
    fn view(&self) -> io::Result<View> {
        Ok(View::mapped(self.0.clone()))
    }
    fn inspect(&self, f: &mut dyn FnMut(&[u8])) {
        self.0.inspect(f)
    }
    fn prefault(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.prefault(offset, len)
    }
    fn release_pages(&self) -> io::Result<()> {
        self.0.release_pages()
    }
    fn allocate(&self) -> io::Result<()> {
        // Only spares are allocated after their creation, before their
        // header is written (see `allocate` on file systems without
        // fallocate).
        self.0.allocate(|file| allocate(file, self.0.len()))
    }
}
