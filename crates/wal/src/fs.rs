//! The I/O seam: every file-system call the log makes goes through [`Fs`]
//! and [`FsFile`], so tests can swap the real file system ([`StdFs`]) for
//! the simulated one of the `testing` feature (`sim`), which injects
//! faults and power cuts.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;

use fs2::FileExt as _;

use crate::format::BootId;

/// How [`Fs::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; the file must not exist yet.
    CreateNew,
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Nothing there.
    Missing,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Something else (socket, device, …).
    Other,
}

/// A held lock; dropping it releases the lock.
///
/// The lock file also carries the writer's durable watermark
/// (`docs/format.md`, "The durable watermark"), written through the guard.
pub trait LockGuard: Send + Sync + fmt::Debug {
    /// Write `bytes` at the start of the lock file (not fsynced).
    ///
    /// # Errors
    ///
    /// The OS error.
    fn publish(&self, bytes: &[u8]) -> io::Result<()>;
    /// `fdatasync` the lock file.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn sync(&self) -> io::Result<()>;
}

/// The file-system calls the log makes.
pub trait Fs: Send + Sync + fmt::Debug + 'static {
    /// What is at `path`.
    ///
    /// # Errors
    ///
    /// The OS error, other than "not found".
    fn kind(&self, path: &Path) -> io::Result<PathKind>;
    /// `mkdir -p`.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Open a file.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>>;
    /// Rename a file (atomically replacing `to`).
    ///
    /// # Errors
    ///
    /// The OS error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Make the directory's entries durable (`fsync` on the directory).
    ///
    /// # Errors
    ///
    /// The OS error.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Take an exclusive lock on `path` (created if missing), without
    /// waiting. `Ok(None)` if someone else holds it.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
    /// Whether someone holds the lock [`Fs::try_lock`] takes on `path`,
    /// asked without write access: the file is opened read-only (never
    /// created) and a shared lock is tried on it for an instant, so the
    /// answer is the same through a read-only mount and for a user who
    /// may only read the file. `Ok(false)` if `path` does not exist.
    ///
    /// # Errors
    ///
    /// The OS error (`EACCES` if the file cannot even be read: then
    /// whether a writer is live is unknown, not "no").
    fn lock_is_held(&self, path: &Path) -> io::Result<bool>;
    /// Which boot of the machine this is: Linux's
    /// `/proc/sys/kernel/random/boot_id` (all zeros if it cannot be read).
    fn boot_id(&self) -> BootId {
        let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
            return BootId::default();
        };
        uuid::Uuid::parse_str(text.trim()).map_or(BootId::default(), |u| *u.as_bytes())
    }
}

/// An open file.
pub trait FsFile: Send + Sync + fmt::Debug {
    /// Read at `offset`; returns the bytes read (0 at end of file).
    ///
    /// # Errors
    ///
    /// The OS error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`. On error, a prefix may have been
    /// written.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`.
    ///
    /// # Errors
    ///
    /// The OS error. The file's state is then unknown: never retry.
    fn sync_data(&self) -> io::Result<()>;
    /// `ftruncate`.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reserve blocks so that the file is at least `len` bytes; the new
    /// bytes read as zeros.
    ///
    /// # Errors
    ///
    /// The OS error (`ENOSPC` when the disk is full).
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// The whole file, memory-mapped where the file system allows it.
    /// Only called for sealed segments, which nobody writes.
    ///
    /// # Errors
    ///
    /// The OS error.
    fn contents(&self) -> io::Result<Contents>;
}

/// The bytes of a whole file: mapped, or read into memory.
pub enum Contents {
    /// A read-only memory map.
    Mapped(memmap2::Mmap),
    /// A copy.
    Owned(Vec<u8>),
}

impl fmt::Debug for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contents::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
            Contents::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
        }
    }
}

impl Deref for Contents {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Contents::Mapped(m) => m,
            Contents::Owned(v) => v,
        }
    }
}

/// Files up to this size are read whole into memory by
/// [`FsFile::contents`] (the real file system's): small index files and
/// segments, for which a read costs less than a mapping.
const READ_WHOLE_UP_TO: u64 = 64 << 10;

/// Read `file` from its start into `buf` until it is full or the file
/// ends; how many bytes were read.
fn read_fully(file: &StdFile, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match file.read_at(rest, got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

#[derive(Debug)]
struct StdLock(File);

impl LockGuard for StdLock {
    fn publish(&self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all_at(bytes, 0)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Drop for StdLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlock explicitly so the
        // release does not wait for other handles to the same description.
        let _ = fs2::FileExt::unlock(&self.0);
    }
}

impl Fs for StdFs {
    fn kind(&self, path: &Path) -> io::Result<PathKind> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(PathKind::Dir),
            Ok(m) if m.is_file() => Ok(PathKind::File),
            Ok(_) => Ok(PathKind::Other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathKind::Missing),
            Err(e) => Err(e),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
        };
        Ok(Box::new(StdFile(o.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock_exclusive() {
            Ok(()) => Ok(Some(Box::new(StdLock(file)))),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::EWOULDBLOCK) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn lock_is_held(&self, path: &Path) -> io::Result<bool> {
        StdFs::probe_lock(path)
    }
}

impl StdFs {
    /// See [`Fs::lock_is_held`].
    fn probe_lock(path: &Path) -> io::Result<bool> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        // `flock` works on a descriptor opened read-only (a shared lock
        // conflicts with the writer's exclusive one), on any mount of the
        // file. fs2's, not std's `File::try_lock_shared`.
        match fs2::FileExt::try_lock_shared(&file) {
            Ok(()) => {
                let _ = fs2::FileExt::unlock(&file);
                Ok(false)
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::EWOULDBLOCK) =>
            {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

impl FsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        // Not fs2's `allocate`: it reports a stale errno when
        // `posix_fallocate` fails (the function returns its error code).
        match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // File systems without fallocate: extend instead; bytes read as zeros.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {
                if self.len()? < len {
                    self.0.set_len(len)?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn contents(&self) -> io::Result<Contents> {
        let len = self.len()?;
        if len == 0 {
            return Ok(Contents::Owned(Vec::new()));
        }
        if len <= READ_WHOLE_UP_TO {
            // Cheaper read than mapped (no `mmap`, page faults, `munmap`).
            let mut bytes = vec![0; usize::try_from(len).unwrap_or(0)];
            let got = read_fully(self, &mut bytes)?;
            bytes.truncate(got);
            return Ok(Contents::Owned(bytes));
        }
        #[expect(unsafe_code, reason = "memmap2 cannot map a file safely; see SAFETY")]
        // SAFETY: `contents` is only called for sealed segments. The writer
        // never writes, truncates or removes-and-reuses a sealed segment
        // while this process reads it (retention unlinks, which keeps the
        // mapping valid). The one way to break the map is another process
        // truncating the file under us (e.g. a manual `truncate`), which
        // would raise SIGBUS; `logbook repair` only ever cuts the *active*
        // segment, and only while it holds the writer lock.
        let map = unsafe { memmap2::Mmap::map(&self.0)? };
        Ok(Contents::Mapped(map))
    }
}
