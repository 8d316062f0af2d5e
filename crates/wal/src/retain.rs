//! Retention: which sealed segments at the front of the log a policy
//! removes ([`Retention`], [`RetentionPlan`]), and their removal, oldest
//! first, the directory fsynced after each one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::WalError;
use crate::format::Lsn;
use crate::fs::{Fs, OpenMode};
use crate::segment::{self, SegmentEntry};

/// A retention policy: which sealed segments at the front of the log may
/// be removed. Each limit given removes segments; a segment goes if any
/// limit says so, and only from the front (never the active one), so the
/// log keeps no hole.
///
/// [`WalOptions::retention`](crate::WalOptions::retention) applies it each
/// time the writer rolls to a new segment; [`Wal::retain`](crate::Wal::retain)
/// applies it once; [`retention_plan`] says what it would remove.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use logbook_wal::Retention;
///
/// let month = Retention { max_age: Some(Duration::from_secs(30 * 86_400)), ..Retention::default() };
/// assert!(!month.is_none());
/// assert!(Retention::default().is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove a sealed segment once its newest record is older than this
    /// (its records were all appended before the next segment was
    /// created: that segment's `created_us` bounds them).
    pub max_age: Option<Duration>,
    /// Remove sealed segments, oldest first, while the segments' files
    /// together take more than this many bytes.
    pub max_bytes: Option<u64>,
    /// Remove the sealed segments whose records all have LSNs below this.
    pub before_lsn: Option<Lsn>,
}

impl Retention {
    /// Whether no limit is set (nothing is ever removed).
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none() && self.before_lsn.is_none()
    }
}

/// One segment a retention pass removes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetainedSegment {
    /// The segment file.
    pub path: PathBuf,
    /// The LSN of its first record.
    pub first_lsn: Lsn,
    /// The LSN after its last record (the next segment's first).
    pub end_lsn: Lsn,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// What a retention pass removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPlan {
    /// The segments, oldest first.
    pub segments: Vec<RetainedSegment>,
    /// Their bytes in all.
    pub bytes: u64,
    /// The first LSN the log keeps (0 if nothing is removed).
    pub keep_from: Lsn,
}

impl RetentionPlan {
    /// Whether it removes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// What `policy` would remove from the log in `dir` now, read without the
/// writer lock (a dry run: `logbook retain` without `--apply`). The last
/// segment is never removed.
///
/// # Errors
///
/// [`WalError`] naming the file for a directory or segment header that
/// cannot be read.
pub fn retention_plan(
    dir: impl AsRef<Path>,
    policy: &Retention,
) -> Result<RetentionPlan, WalError> {
    let fs = crate::fs::StdFs;
    plan(&fs, dir.as_ref(), policy, crate::clock::now_us())
}

/// The plan of `policy` for the log in `dir` at time `now_us`.
pub(crate) fn plan(
    fs: &dyn Fs,
    dir: &Path,
    policy: &Retention,
    now_us: u64,
) -> Result<RetentionPlan, WalError> {
    let mut out = RetentionPlan::default();
    if policy.is_none() {
        return Ok(out);
    }
    let listing = segment::list(fs, dir)?;
    let segments = &listing.segments;
    let sizes = segments
        .iter()
        .map(|s| {
            fs.open(&s.path, OpenMode::Read)
                .and_then(|f| f.len())
                .map_err(|e| WalError::io("read the size of", &s.path, e))
        })
        .collect::<Result<Vec<u64>, WalError>>()?;
    let mut total: u64 = sizes.iter().sum();
    let cutoff = policy
        .max_age
        .map(|age| now_us.saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX)));
    for (i, pair) in segments.windows(2).enumerate() {
        let [seg, next] = pair else { continue };
        let bytes = sizes.get(i).copied().unwrap_or(0);
        let by_lsn = policy.before_lsn.is_some_and(|b| next.base_lsn <= b);
        let by_size = policy.max_bytes.is_some_and(|m| total > m);
        let by_age = match cutoff {
            Some(cutoff) => created_us(fs, next)? < cutoff,
            None => false,
        };
        if !(by_lsn || by_size || by_age) {
            break;
        }
        total = total.saturating_sub(bytes);
        out.bytes = out.bytes.saturating_add(bytes);
        out.keep_from = next.base_lsn;
        out.segments.push(RetainedSegment {
            path: seg.path.clone(),
            first_lsn: seg.base_lsn,
            end_lsn: next.base_lsn,
            bytes,
        });
    }
    Ok(out)
}

fn created_us(fs: &dyn Fs, entry: &SegmentEntry) -> Result<u64, WalError> {
    let file = fs
        .open(&entry.path, OpenMode::Read)
        .map_err(|e| WalError::io("open", &entry.path, e))?;
    Ok(segment::read_header(&*file, entry)?.created_us)
}

/// Remove the segments of `plan` (all sealed, at the front), oldest first,
/// each with its derived files (index, summaries: they may hold the
/// removed sessions' titles), fsyncing the directory after each removal
/// so that a power cut never leaves a hole at the start of the log, nor a
/// removed segment's derived files (their removal is made durable with
/// the segment's; those a power cut or an error still leaves are removed
/// by the next writer's `open`, `index::sweep`). Only a segment below
/// `active_base` is removed. Returns how many were removed.
///
/// # Errors
///
/// The error of a removal (naming the file; the segments before it are
/// gone), or a failed directory fsync ([`Removal::Fatal`]: the writer
/// poisons).
pub(crate) fn remove(
    fs: &dyn Fs,
    dir: &Path,
    plan: &RetentionPlan,
    active_base: Lsn,
) -> Result<usize, Removal> {
    let mut gone = 0;
    for seg in &plan.segments {
        if seg.first_lsn >= active_base || seg.end_lsn > active_base {
            break;
        }
        // Its derived files first: a power cut between the two leaves the
        // segment without them (rebuilt), never them without it. An error
        // stops the pass (the next one tries again).
        crate::index::remove(fs, &seg.path).map_err(Removal::Failed)?;
        if let Err(e) = fs.remove_file(&seg.path) {
            return Err(Removal::Failed(WalError::io("remove", &seg.path, e)));
        }
        if let Err(e) = fs.sync_dir(dir) {
            return Err(Removal::Fatal(WalError::fatal("fsync directory", dir, e)));
        }
        gone += 1;
    }
    Ok(gone)
}

/// Why [`remove`] stopped.
#[derive(Debug)]
pub(crate) enum Removal {
    /// A file could not be removed: nothing is lost, the next pass tries
    /// again.
    Failed(WalError),
    /// The directory could not be fsynced: the writer must poison.
    Fatal(WalError),
}

impl From<Removal> for WalError {
    fn from(r: Removal) -> WalError {
        match r {
            Removal::Failed(e) | Removal::Fatal(e) => e,
        }
    }
}
