//! A simulated file system for tests and fuzzing: it keeps written bytes
//! apart from synced ones, and directory entries apart from those made
//! durable by a directory fsync, so a test can cut the power and see only
//! what a real disk would be guaranteed to keep (plus any subset, reordering
//! or tearing of the rest). It also injects I/O errors and a full disk.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use logbook_wal::{sim::SimFs, Wal, WalOptions};
//! use uuid::Uuid;
//!
//! let fs = SimFs::new(7);
//! let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", WalOptions::default())?;
//! let lsn = wal.append_raw(Uuid::nil(), b"hello")?; // acknowledged: fsynced
//! fs.power_cut();                                    // every handle dies, unsynced bytes torn
//! drop(wal);
//! let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", WalOptions::default())?;
//! assert_eq!(wal.last_lsn(), lsn);
//! # Ok::<(), logbook_wal::WalError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::fs::{Contents, Fs, FsFile, LockGuard, OpenMode, PathKind};

/// An I/O operation a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `write_all_at`.
    Write,
    /// `sync_data`.
    Sync,
    /// A directory fsync.
    SyncDir,
    /// `allocate`.
    Allocate,
    /// `set_len`.
    SetLen,
    /// `rename`.
    Rename,
    /// Opening with [`OpenMode::CreateNew`].
    Create,
    /// `remove_file`.
    Remove,
    /// Writing or fsyncing the durable watermark in the lock file.
    Publish,
    /// `read_at` and `contents` (never counted as a mutation: a power cut
    /// is not scheduled on reads).
    Read,
    /// Any operation on a session index (`*.idx`, `*.idx.tmp`): derived
    /// data, counted apart, so that a fault set on one of the log's own
    /// operations lands on the log's and not on an index's. (Index writes
    /// are mutations: power cuts are scheduled on them too.)
    Index,
}

/// The kind an operation on `path` counts as: [`Op::Index`] for a session
/// index, else `op`.
fn kind_of(op: Op, path: &Path) -> Op {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.ends_with(".idx") || name.ends_with(".idx.tmp") {
        Op::Index
    } else {
        op
    }
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// Bytes whose writeback failed (an fsync returned an error): as on
    /// Linux, their pages are now clean in the cache, reads return the new
    /// bytes, but no later fsync writes them; the medium keeps the old
    /// byte given here, until the position is written again.
    stale: BTreeMap<usize, u8>,
}

impl Inode {
    /// An fsync failed: every byte not yet synced is lost for good.
    fn writeback_failed(&mut self) {
        let len = self.data.len();
        for i in 0..len {
            let old = self.synced.get(i).copied();
            if Some(self.data[i]) != old {
                self.stale.entry(i).or_insert(old.unwrap_or(0));
            }
        }
    }

    /// A successful fsync: everything reaches the medium but the bytes whose
    /// writeback failed earlier.
    fn sync(&mut self) {
        self.synced = self.data.clone();
        for (&i, &b) in &self.stale {
            if let Some(s) = self.synced.get_mut(i) {
                *s = b;
            }
        }
    }
}

type InodeRef = Arc<Mutex<Inode>>;

#[derive(Debug, Clone, Copy)]
struct Fault {
    after: u64,
    errno: i32,
    /// For writes: how many bytes land before the error.
    partial: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    /// Directories whose entry in their parent was made durable.
    durable_dirs: BTreeSet<PathBuf>,
    entries: BTreeMap<PathBuf, InodeRef>,
    durable: BTreeMap<PathBuf, InodeRef>,
    locks: BTreeSet<PathBuf>,
    faults: BTreeMap<Op, Fault>,
    capacity: Option<u64>,
    generation: u64,
    rng: u64,
    ops: BTreeMap<Op, u64>,
    mutations: u64,
    cut_at: Option<u64>,
    was_cut: bool,
    holds: BTreeMap<Op, Arc<GateState>>,
    /// Power cuts so far: the boot number.
    boots: u64,
    /// The boot id cannot be read (see [`SimFs::set_boot_id_unknown`]).
    boot_unknown: bool,
    /// Opens refused, by path: (for writing, for reading) errnos.
    refused: BTreeMap<PathBuf, (Option<i32>, Option<i32>)>,
}

#[derive(Debug, Default)]
struct GateState {
    /// (released, threads waiting at it)
    state: Mutex<(bool, usize)>,
    opened: std::sync::Condvar,
}

/// Holds every `op` of a [`SimFs`] until [`Gate::release`] (see
/// [`SimFs::hold`]). Dropping the gate releases it.
#[derive(Debug)]
pub struct Gate {
    fs: SimFs,
    op: Op,
    gate: Arc<GateState>,
}

impl Gate {
    /// How many threads are held at the gate now.
    #[must_use]
    pub fn waiting(&self) -> usize {
        lock(&self.gate.state).1
    }

    /// Let every held and later operation through (a gate held on the
    /// same operation since, by a later [`SimFs::hold`], stays).
    pub fn release(&self) {
        lock(&self.gate.state).0 = true;
        self.gate.opened.notify_all();
        let mut st = self.fs.st();
        if st
            .holds
            .get(&self.op)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
        {
            st.holds.remove(&self.op);
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
    }
}

/// The simulated file system. Clones share the same state.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl State {
    fn next_rand(&mut self) -> u64 {
        // splitmix64: small, seedable, good enough to pick fault shapes.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_rand() % n }
    }

    /// Count one `op`; return the injected error if one is due.
    fn check(&mut self, op: Op) -> Result<(), (io::Error, Option<usize>)> {
        *self.ops.entry(op).or_default() += 1;
        if op == Op::Read {
            return self.injected(op);
        }
        self.mutations += 1;
        if self.cut_at == Some(self.mutations) {
            self.cut_at = None;
            self.was_cut = true;
            self.power_cut();
            return Err((errno(libc::EIO), None));
        }
        self.injected(op)
    }

    /// The injected error for `op`, if one is due.
    fn injected(&mut self, op: Op) -> Result<(), (io::Error, Option<usize>)> {
        if let Some(f) = self.faults.get_mut(&op) {
            if f.after == 0 {
                let f = *f;
                self.faults.remove(&op);
                return Err((errno(f.errno), f.partial));
            }
            f.after -= 1;
        }
        Ok(())
    }

    fn power_cut(&mut self) {
        let st = self;
        st.generation += 1;
        st.boots += 1;
        st.locks.clear();
        // A directory whose entry was never made durable vanishes, and with
        // it everything in it.
        st.dirs = st.durable_dirs.clone();
        let dirs = st.dirs.clone();
        let reachable = |p: &Path| {
            p.ancestors()
                .skip(1)
                .all(|a| a.as_os_str().is_empty() || dirs.contains(a))
        };
        st.dirs.retain(|d| reachable(d));
        st.durable.retain(|p, _| reachable(p));
        // Unlinks not yet made durable by a directory fsync may each have
        // reached the disk or not, in any order (FAULTS.md, 5).
        let unlinked: Vec<PathBuf> = st
            .durable
            .keys()
            .filter(|p| !st.entries.contains_key(*p))
            .cloned()
            .collect();
        for p in unlinked {
            if st.below(2) == 0 {
                st.durable.remove(&p);
            }
        }
        st.entries = st.durable.clone();
        let inodes: Vec<InodeRef> = st.entries.values().cloned().collect();
        let mut done = BTreeSet::new();
        for inode in inodes {
            if !done.insert(Arc::as_ptr(&inode) as usize) {
                continue;
            }
            let mut ino = lock(&inode);
            let (lo, hi) = (
                ino.synced.len().min(ino.data.len()),
                ino.synced.len().max(ino.data.len()),
            );
            let len = lo + usize::try_from(st.below((hi - lo) as u64 + 1)).unwrap_or(0);
            let mut out = vec![0u8; len];
            const SECTOR: usize = 512;
            let mut at = 0;
            while at < len {
                let end = (at + SECTOR).min(len);
                // Each sector's unsynced bytes share one fate: the new bytes,
                // the old ones, zeros, or a torn mix of new bytes and
                // garbage. Synced bytes are never changed.
                let fate = st.below(4);
                let cut = at + usize::try_from(st.below((end - at) as u64)).unwrap_or(0);
                for (i, b) in out.iter_mut().enumerate().take(end).skip(at) {
                    let (new, old) = (ino.data.get(i).copied(), ino.synced.get(i).copied());
                    *b = if new == old {
                        new.unwrap_or(0)
                    } else {
                        match fate {
                            0 => new.unwrap_or(0),
                            1 => old.unwrap_or(0),
                            2 => 0,
                            _ if i < cut => new.unwrap_or(0),
                            _ => st.next_rand() as u8,
                        }
                    };
                }
                at = end;
            }
            ino.data = out.clone();
            ino.synced = out;
            ino.stale.clear();
        }
    }

    fn used(&self) -> u64 {
        let mut seen = BTreeSet::new();
        let mut used = 0u64;
        for inode in self.entries.values() {
            if seen.insert(Arc::as_ptr(inode) as usize) {
                used += lock(inode).data.len() as u64;
            }
        }
        used
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent()
            .is_none_or(|p| p.as_os_str().is_empty() || self.dirs.contains(p))
    }
}

impl SimFs {
    /// An empty file system whose random choices (how a power cut tears
    /// unsynced bytes) follow `seed`.
    #[must_use]
    pub fn new(seed: u64) -> SimFs {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        SimFs {
            state: Arc::new(Mutex::new(State {
                durable_dirs: dirs.clone(),
                dirs,
                rng: seed,
                ..State::default()
            })),
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Make the `after + 1`-th next `op` fail with `errno` (once).
    pub fn fail_after(&self, op: Op, after: u64, errno: i32) {
        self.st().faults.insert(
            op,
            Fault {
                after,
                errno,
                partial: None,
            },
        );
    }

    /// Make the `after + 1`-th next write land only its first `bytes`
    /// bytes, then fail with `errno` (once).
    pub fn fail_write_partially(&self, after: u64, bytes: usize, errno: i32) {
        self.st().faults.insert(
            Op::Write,
            Fault {
                after,
                errno,
                partial: Some(bytes),
            },
        );
    }

    /// Hold every `op` (before it takes effect) until the returned gate is
    /// released: lets a test see what other threads and tasks do while an
    /// fsync (`Op::Sync`) or a write (`Op::Write`, a file's
    /// `write_all_at`) is in progress. Other operations are not held.
    #[must_use]
    pub fn hold(&self, op: Op) -> Gate {
        let gate = Arc::new(GateState::default());
        self.st().holds.insert(op, gate.clone());
        Gate {
            fs: self.clone(),
            op,
            gate,
        }
    }

    /// Wait at `op`'s gate, if one is held.
    fn pass(&self, op: Op) {
        let gate = self.st().holds.get(&op).cloned();
        if let Some(gate) = gate {
            let mut state = lock(&gate.state);
            state.1 += 1;
            while !state.0 {
                state = gate
                    .opened
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.1 -= 1;
        }
    }

    /// Make the boot id unknown (`unknown`: [`Fs::boot_id`] answers all
    /// zeros, as on a machine whose `/proc/sys/kernel/random/boot_id`
    /// cannot be read) or known again (a new id at every power cut).
    pub fn set_boot_id_unknown(&self, unknown: bool) {
        self.st().boot_unknown = unknown;
    }

    /// Make opening `path` fail: for writing (any mode but
    /// [`OpenMode::Read`], and taking the writer lock) with `write`, for
    /// reading with `read` (`None`: allowed). `EROFS` for writing alone is
    /// a read-only mount of a log a writer may use elsewhere; `EACCES` for
    /// writing alone, a user who may read the file but not write it;
    /// `EACCES` for both, one who may not even read it.
    pub fn refuse_open(&self, path: impl AsRef<Path>, write: Option<i32>, read: Option<i32>) {
        self.st()
            .refused
            .insert(path.as_ref().to_path_buf(), (write, read));
    }

    /// Remove every pending fault.
    pub fn clear_faults(&self) {
        self.st().faults.clear();
    }

    /// Limit the bytes all files may hold together (`None`: no limit).
    /// Writes and allocations past it fail with `ENOSPC` after landing what
    /// fits.
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.st().capacity = capacity;
    }

    /// Bytes all files hold together.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.st().used()
    }

    /// How many times `op` was attempted so far.
    #[must_use]
    pub fn op_count(&self, op: Op) -> u64 {
        self.st().ops.get(&op).copied().unwrap_or(0)
    }

    /// A process crash: every open handle (and lock) dies; everything
    /// written so far stays, synced or not.
    pub fn crash(&self) {
        let mut st = self.st();
        st.generation += 1;
        st.locks.clear();
    }

    /// A power cut: every open handle dies, directory entries revert to
    /// their last directory fsync, and each file keeps its synced bytes
    /// while its unsynced bytes are, sector by sector, kept, lost, zeroed or
    /// torn into garbage, and its length lands anywhere between the synced
    /// and the written one.
    pub fn power_cut(&self) {
        self.st().power_cut();
    }

    /// Cut the power at the `n`-th next mutating operation (write, fsync,
    /// allocate, truncate, create, rename, remove), which then fails with
    /// `EIO`: a cut in the middle of whatever the log was doing.
    pub fn cut_power_after(&self, n: u64) {
        let mut st = self.st();
        st.cut_at = Some(st.mutations.saturating_add(n.max(1)));
        st.was_cut = false;
    }

    /// Whether a power cut scheduled by [`SimFs::cut_power_after`] happened
    /// since it was scheduled.
    #[must_use]
    pub fn power_was_cut(&self) -> bool {
        self.st().was_cut
    }

    /// The current (written, possibly unsynced) bytes of a file.
    #[must_use]
    pub fn file_bytes(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        self.st()
            .entries
            .get(path.as_ref())
            .map(|i| lock(i).data.clone())
    }

    /// Replace a file's bytes (written and synced, its name and every
    /// directory above it durable), e.g. to corrupt it.
    pub fn set_file_bytes(&self, path: impl AsRef<Path>, bytes: Vec<u8>) {
        let mut st = self.st();
        for dir in path.as_ref().ancestors().skip(1) {
            if !dir.as_os_str().is_empty() {
                st.dirs.insert(dir.to_path_buf());
                st.durable_dirs.insert(dir.to_path_buf());
            }
        }
        let inode = Arc::new(Mutex::new(Inode {
            data: bytes.clone(),
            synced: bytes,
            stale: BTreeMap::new(),
        }));
        st.entries
            .insert(path.as_ref().to_path_buf(), inode.clone());
        st.durable.insert(path.as_ref().to_path_buf(), inode);
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    inode: InodeRef,
    generation: u64,
    writable: bool,
    /// A session index's file: its mutations count as [`Op::Index`].
    index: bool,
}

impl SimFile {
    /// The kind a mutation `op` on this file counts as (reads stay reads).
    fn op(&self, op: Op) -> Op {
        if self.index && op != Op::Read {
            Op::Index
        } else {
            op
        }
    }
}

#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
    inode: InodeRef,
    generation: u64,
}

impl SimLock {
    /// The state, if this lock (its process) is still alive.
    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.fs.st();
        if st.generation != self.generation {
            return Err(errno(libc::EIO));
        }
        Ok(st)
    }
}

impl LockGuard for SimLock {
    fn publish(&self, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.live()?;
        st.check(Op::Publish).map_err(|(e, _)| e)?;
        let mut ino = lock(&self.inode);
        if ino.data.len() < bytes.len() {
            ino.data.resize(bytes.len(), 0);
        }
        ino.data[..bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.live()?;
        st.check(Op::Publish).map_err(|(e, _)| e)?;
        let mut ino = lock(&self.inode);
        ino.synced = ino.data.clone();
        Ok(())
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.fs.st();
        if st.generation == self.generation {
            st.locks.remove(&self.path);
        }
    }
}

impl Fs for SimFs {
    fn kind(&self, path: &Path) -> io::Result<PathKind> {
        let st = self.st();
        Ok(if st.dirs.contains(path) {
            PathKind::Dir
        } else if st.entries.contains_key(path) {
            PathKind::File
        } else {
            PathKind::Missing
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        for p in path.ancestors() {
            if st.entries.contains_key(p) {
                return Err(errno(libc::ENOTDIR));
            }
            st.dirs.insert(p.to_path_buf());
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.st();
        if !st.dirs.contains(path) {
            return Err(errno(libc::ENOENT));
        }
        let files = st.entries.keys().filter(|p| p.parent() == Some(path));
        let dirs = st.dirs.iter().filter(|p| p.parent() == Some(path));
        Ok(files
            .chain(dirs)
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>> {
        let mut st = self.st();
        if let Some(&(write, read)) = st.refused.get(path) {
            let refusal = if mode == OpenMode::Read { read } else { write };
            if let Some(code) = refusal {
                return Err(errno(code));
            }
        }
        let inode = match mode {
            OpenMode::Read | OpenMode::ReadWrite => st
                .entries
                .get(path)
                .cloned()
                .ok_or_else(|| errno(libc::ENOENT))?,
            OpenMode::CreateNew => {
                if st.entries.contains_key(path) || st.dirs.contains(path) {
                    return Err(errno(libc::EEXIST));
                }
                if !st.parent_exists(path) {
                    return Err(errno(libc::ENOENT));
                }
                st.check(kind_of(Op::Create, path)).map_err(|(e, _)| e)?;
                let inode = InodeRef::default();
                st.entries.insert(path.to_path_buf(), inode.clone());
                inode
            }
        };
        Ok(Box::new(SimFile {
            fs: self.clone(),
            inode,
            generation: st.generation,
            writable: mode != OpenMode::Read,
            index: kind_of(Op::Read, path) == Op::Index,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.st();
        st.check(kind_of(Op::Rename, to)).map_err(|(e, _)| e)?;
        let inode = st.entries.remove(from).ok_or_else(|| errno(libc::ENOENT))?;
        st.entries.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        st.check(kind_of(Op::Remove, path)).map_err(|(e, _)| e)?;
        st.entries
            .remove(path)
            .map(drop)
            .ok_or_else(|| errno(libc::ENOENT))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        if !st.dirs.contains(path) {
            return Err(errno(libc::ENOENT));
        }
        st.check(Op::SyncDir).map_err(|(e, _)| e)?;
        let st = &mut *st;
        let children: Vec<PathBuf> = st
            .dirs
            .iter()
            .filter(|d| d.parent() == Some(path))
            .cloned()
            .collect();
        st.durable_dirs.extend(children);
        st.durable.retain(|p, _| p.parent() != Some(path));
        for (p, inode) in &st.entries {
            if p.parent() == Some(path) {
                st.durable.insert(p.clone(), inode.clone());
            }
        }
        Ok(())
    }

    fn boot_id(&self) -> crate::format::BootId {
        // A new boot at every power cut; all zeros only when made unknown.
        let st = self.st();
        if st.boot_unknown {
            return crate::format::BootId::default();
        }
        let mut id = [0xb0; 16];
        id[..8].copy_from_slice(&st.boots.to_le_bytes());
        id
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let mut st = self.st();
        if let Some(&(Some(code), _)) = st.refused.get(path) {
            return Err(errno(code));
        }
        if !st.entries.contains_key(path) {
            if !st.parent_exists(path) {
                return Err(errno(libc::ENOENT));
            }
            st.entries.insert(path.to_path_buf(), InodeRef::default());
        }
        let inode = st.entries.get(path).cloned().unwrap_or_default();
        if !st.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        let generation = st.generation;
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            inode,
            generation,
        })))
    }

    fn lock_is_held(&self, path: &Path) -> io::Result<bool> {
        self.probe_lock(path)
    }
}

impl SimFs {
    /// See [`Fs::lock_is_held`]: opening the file read-only may be refused
    /// ([`SimFs::refuse_open`]); flock needs no more.
    fn probe_lock(&self, path: &Path) -> io::Result<bool> {
        let st = self.st();
        if let Some(&(_, Some(code))) = st.refused.get(path) {
            return Err(errno(code));
        }
        if !st.entries.contains_key(path) {
            return Ok(false);
        }
        Ok(st.locks.contains(path))
    }
}

impl SimFile {
    /// The state, if this handle is still alive.
    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.fs.st();
        if st.generation != self.generation {
            return Err(errno(libc::EIO));
        }
        Ok(st)
    }

    fn writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(errno(libc::EBADF))
        }
    }
}

fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| errno(libc::EFBIG))
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut st = self.live()?;
        st.check(self.op(Op::Read)).map_err(|(e, _)| e)?;
        let ino = lock(&self.inode);
        let off = to_usize(offset)?;
        let Some(src) = ino.data.get(off..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writable()?;
        self.fs.pass(self.op(Op::Write));
        let mut st = self.live()?;
        let (mut n, mut fail) = (buf.len(), None);
        if let Err((e, partial)) = st.check(self.op(Op::Write)) {
            n = partial.unwrap_or(0).min(buf.len());
            fail = Some(e);
        }
        let off = to_usize(offset)?;
        if let Some(cap) = st.capacity {
            let cur = lock(&self.inode).data.len();
            let growth = (off + n).saturating_sub(cur) as u64;
            let free = cap.saturating_sub(st.used());
            if growth > free {
                n -= usize::try_from(growth - free).unwrap_or(n).min(n);
                fail = Some(errno(libc::ENOSPC));
            }
        }
        let mut ino = lock(&self.inode);
        if ino.data.len() < off + n {
            ino.data.resize(off + n, 0);
        }
        ino.data[off..off + n].copy_from_slice(&buf[..n]);
        let rewritten: Vec<usize> = ino.stale.range(off..off + n).map(|(i, _)| *i).collect();
        for i in rewritten {
            ino.stale.remove(&i);
        }
        fail.map_or(Ok(()), Err)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.pass(Op::Sync);
        let mut st = self.live()?;
        if let Err((e, _)) = st.check(self.op(Op::Sync)) {
            // Linux marks the pages clean after a failed writeback; a
            // power cut (already applied if this was one) keeps nothing.
            if st.generation == self.generation {
                lock(&self.inode).writeback_failed();
            }
            return Err(e);
        }
        lock(&self.inode).sync();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        let mut st = self.live()?;
        st.check(self.op(Op::SetLen)).map_err(|(e, _)| e)?;
        let len = to_usize(len)?;
        let cur = lock(&self.inode).data.len();
        if let Some(cap) = st.capacity {
            if len > cur && (len - cur) as u64 > cap.saturating_sub(st.used()) {
                return Err(errno(libc::ENOSPC));
            }
        }
        let mut ino = lock(&self.inode);
        ino.data.resize(len, 0);
        let _ = ino.stale.split_off(&len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let _st = self.live()?;
        Ok(lock(&self.inode).data.len() as u64)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        let mut st = self.live()?;
        st.check(self.op(Op::Allocate)).map_err(|(e, _)| e)?;
        let len = to_usize(len)?;
        let cur = lock(&self.inode).data.len();
        if len <= cur {
            return Ok(());
        }
        if let Some(cap) = st.capacity {
            if (len - cur) as u64 > cap.saturating_sub(st.used()) {
                return Err(errno(libc::ENOSPC));
            }
        }
        lock(&self.inode).data.resize(len, 0);
        Ok(())
    }

    fn contents(&self) -> io::Result<Contents> {
        let mut st = self.live()?;
        st.check(self.op(Op::Read)).map_err(|(e, _)| e)?;
        Ok(Contents::Owned(lock(&self.inode).data.clone()))
    }
}
