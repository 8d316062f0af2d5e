//! The lenient walk every tool shares: each record and each located problem
//! of a log, in order, going on past corruption; and the table of segments
//! such a walk saw.
//!
//! [`Reader::next_ref`] already resumes at the next valid record after
//! reporting corruption; [`Reader::walk`] wraps that loop once, so a
//! dumper, a checker, a replayer or a shipper never writes its own (each
//! with its own idea of when to give up), and [`SegmentTable`] collects what
//! `verify` and `stats` print per segment without reading a frame twice.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{Lsn, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::reader::{Reader, RecordRef};
use crate::segment::{self, SegmentEntry};

/// One step of [`Reader::walk`].
#[derive(Debug)]
pub enum Item<'a> {
    /// A valid record.
    Record(RecordRef<'a>),
    /// Corruption the reader reported ([`WalError::is_corruption`]), with
    /// its place in [`WalError::location`]; the walk resumes after it.
    Problem(WalError),
}

impl Reader {
    /// Feed every record and every corruption problem of the log, in log
    /// order, to `f`, until the current end of the log (returns
    /// `Continue(())`) or until `f` breaks (returns its `Break`).
    ///
    /// The walk always makes progress: after a problem the reader resumes
    /// at the next valid record (or the next segment), so a damaged log is
    /// walked to its end with every problem reported once. Call it again
    /// later to follow a live writer.
    ///
    /// # Errors
    ///
    /// The first error that is not corruption: an unreadable segment, a
    /// directory that cannot be listed (each naming its path).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use logbook_wal::{Item, Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// wal.append_raw(uuid::Uuid::nil(), b"a")?;
    /// wal.append_raw(uuid::Uuid::nil(), b"b")?;
    /// let (mut records, mut problems) = (0, 0);
    /// let end = Reader::open(dir.path())?.walk(|item| {
    ///     match item {
    ///         Item::Record(_) => records += 1,
    ///         Item::Problem(_) => problems += 1,
    ///     }
    ///     ControlFlow::<()>::Continue(())
    /// })?;
    /// assert_eq!((end, records, problems), (ControlFlow::Continue(()), 2, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn walk<B>(
        &mut self,
        mut f: impl FnMut(Item<'_>) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, WalError> {
        loop {
            let item = match self.next_ref() {
                None => return Ok(ControlFlow::Continue(())),
                Some(Ok(record)) => Item::Record(record),
                Some(Err(e)) if e.is_corruption() => Item::Problem(e),
                Some(Err(e)) => return Err(e),
            };
            if let ControlFlow::Break(b) = f(item) {
                return Ok(ControlFlow::Break(b));
            }
        }
    }
}

/// What a walk saw of one segment: its header and size, and the records
/// read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentSummary {
    /// The segment file.
    pub path: PathBuf,
    /// The file's size (a preallocated segment is larger than its records).
    pub file_size: u64,
    /// Its header, or why it is not valid.
    pub header: Result<SegmentHeader, String>,
    /// Valid records read from it.
    pub records: u64,
    /// The first and last LSN among them.
    pub first_lsn: Option<Lsn>,
    /// See `first_lsn`.
    pub last_lsn: Option<Lsn>,
    /// The end of its last valid record: the bytes in use (the header's
    /// length when it holds none).
    pub used_bytes: u64,
    /// Why its session index (`docs/format.md`, "The session index")
    /// cannot be used — `"missing"`, `"damaged: …"`, `"stale: …"` — or
    /// `None` when it can. Derived data: readers then scan the segment.
    pub index_problem: Option<String>,
}

impl SegmentSummary {
    /// The file name, for display.
    #[must_use]
    pub fn file_name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Per-segment counts of a walk: feed it every record with
/// [`SegmentTable::add`], then [`SegmentTable::finish`] with the reader.
///
/// # Examples
///
/// ```
/// use std::ops::ControlFlow;
/// use logbook_wal::{Item, Reader, SegmentTable, Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// wal.append_raw(uuid::Uuid::nil(), b"a")?;
/// let mut reader = Reader::open(dir.path())?;
/// let mut table = SegmentTable::default();
/// reader.walk(|item| {
///     if let Item::Record(r) = item {
///         table.add(&r);
///     }
///     ControlFlow::<()>::Continue(())
/// })?;
/// let segments = table.finish(&reader);
/// assert_eq!(segments.len(), 1);
/// assert_eq!((segments[0].records, segments[0].first_lsn), (1, Some(1)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct SegmentTable {
    /// Counts by segment, in the order records arrived.
    seen: Vec<Counts>,
}

#[derive(Debug)]
struct Counts {
    path: PathBuf,
    records: u64,
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
    used_bytes: u64,
}

impl SegmentTable {
    /// Count one record.
    pub fn add(&mut self, record: &RecordRef<'_>) {
        if self.seen.last().is_none_or(|c| c.path != record.segment) {
            match self.seen.iter().position(|c| c.path == record.segment) {
                Some(i) => {
                    let counts = self.seen.remove(i);
                    self.seen.push(counts);
                }
                None => self.seen.push(Counts {
                    path: record.segment.to_path_buf(),
                    records: 0,
                    first_lsn: None,
                    last_lsn: None,
                    used_bytes: SEGMENT_HEADER_LEN as u64,
                }),
            }
        }
        if let Some(c) = self.seen.last_mut() {
            c.records += 1;
            c.first_lsn.get_or_insert(record.lsn);
            c.last_lsn = Some(record.lsn);
            c.used_bytes = c.used_bytes.max(record.end_offset());
        }
    }

    /// Count `records` records of `segment` known without reading them (a
    /// summary of it): LSNs `first_lsn..=last_lsn`, the last one ending at
    /// offset `used_bytes`. Added to what was counted of it so far.
    pub fn add_counts(
        &mut self,
        segment: &Path,
        records: u64,
        first_lsn: Lsn,
        last_lsn: Lsn,
        used_bytes: u64,
    ) {
        match self.seen.iter_mut().find(|c| c.path == segment) {
            Some(c) => {
                c.records += records;
                c.first_lsn = Some(c.first_lsn.map_or(first_lsn, |f| f.min(first_lsn)));
                c.last_lsn = Some(c.last_lsn.map_or(last_lsn, |l| l.max(last_lsn)));
                c.used_bytes = c.used_bytes.max(used_bytes);
            }
            None => self.seen.push(Counts {
                path: segment.to_path_buf(),
                records,
                first_lsn: Some(first_lsn),
                last_lsn: Some(last_lsn),
                used_bytes: used_bytes.max(SEGMENT_HEADER_LEN as u64),
            }),
        }
    }

    /// The table: every segment of `reader`'s log in order (those that held
    /// no record too), with its header and file size read now.
    #[must_use]
    pub fn finish(self, reader: &Reader) -> Vec<SegmentSummary> {
        let mut seen = self.seen;
        let mut table = Vec::new();
        for entry in reader.segment_entries() {
            let counts = seen
                .iter()
                .position(|c| c.path == entry.path)
                .map(|i| seen.swap_remove(i));
            table.push(summary(reader, entry, counts));
        }
        // Segments read but since removed (`truncate_before`) keep their counts.
        for counts in seen {
            let entry = SegmentEntry {
                base_lsn: counts.first_lsn.unwrap_or(0),
                path: counts.path.clone(),
            };
            table.push(summary(reader, &entry, Some(counts)));
        }
        table
    }
}

fn summary(reader: &Reader, entry: &SegmentEntry, counts: Option<Counts>) -> SegmentSummary {
    let (header, file_size, index_problem) = look_at(reader.fs(), entry);
    let (records, first_lsn, last_lsn, used_bytes) = counts
        .map_or((0, None, None, SEGMENT_HEADER_LEN as u64), |c| {
            (c.records, c.first_lsn, c.last_lsn, c.used_bytes)
        });
    SegmentSummary {
        path: entry.path.clone(),
        file_size,
        header,
        records,
        first_lsn,
        last_lsn,
        used_bytes,
        index_problem,
    }
}

/// A segment's header (or why it is not valid), its file size, and why its
/// session index cannot be used (`None` when it can), from one open of it.
fn look_at(
    fs: &dyn crate::fs::Fs,
    entry: &SegmentEntry,
) -> (Result<SegmentHeader, String>, u64, Option<String>) {
    let file = match fs.open(&entry.path, crate::fs::OpenMode::Read) {
        Ok(file) => file,
        Err(e) => {
            return (
                Err(format!("cannot read: {e}")),
                0,
                Some("missing".to_owned()),
            );
        }
    };
    let file_size = file.len().unwrap_or(0);
    let header = segment::read_header(&*file, entry).map_err(|e| match e {
        WalError::BadHeader { reason, .. } => reason.to_string(),
        WalError::BadSegment { reason, .. } => reason,
        other => other.to_string(),
    });
    let index_problem = match &header {
        Ok(h) => crate::index::check(fs, &entry.path, &*file, h, file_size),
        Err(_) => Some("missing".to_owned()),
    };
    (header, file_size, index_problem)
}

/// Read and check the header of the segment file at `path` (its magic,
/// version, CRC, and base LSN against the file's name).
///
/// # Errors
///
/// [`WalError::BadHeader`] / [`WalError::BadSegment`] naming the file, or
/// the I/O error of reading it.
///
/// # Examples
///
/// ```
/// use logbook_wal::{Reader, Wal, WalOptions, segment_header};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let first = Reader::open(dir.path())?.segments()[0].clone();
/// assert_eq!(segment_header(&first)?.base_lsn, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn segment_header(path: &Path) -> Result<SegmentHeader, WalError> {
    let fs = crate::fs::StdFs;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base_lsn =
        crate::format::parse_segment_file_name(&name).ok_or_else(|| WalError::BadSegment {
            path: path.to_path_buf(),
            reason: "not a segment file name (20 digits and .wal)".to_owned(),
        })?;
    let entry = SegmentEntry {
        base_lsn,
        path: path.to_path_buf(),
    };
    let file = crate::fs::Fs::open(&fs, path, crate::fs::OpenMode::Read)
        .map_err(|e| WalError::io("open", path, e))?;
    segment::read_header(&*file, &entry)
}

impl RecordRef<'_> {
    /// The offset just past this record's frame in its segment.
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.offset + (RECORD_HEADER_LEN + self.payload.len()) as u64
    }
}

/// The writer lock of the log in `dir`, whose file also carries the
/// durable watermark (`docs/format.md`).
///
/// # Examples
///
/// ```
/// use std::path::Path;
///
/// assert_eq!(logbook_wal::lock_path(Path::new("log")), Path::new("log/LOCK"));
/// ```
#[must_use]
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(crate::format::LOCK_FILE)
}

/// The file that recovery (and `logbook repair`) saves the bytes it cuts
/// from `segment` at `offset` into, beside the segment:
/// `<segment>.<offset>.broken`.
///
/// # Examples
///
/// ```
/// use std::path::Path;
///
/// let saved = logbook_wal::broken_path(Path::new("log/00000000000000000001.wal"), 4096);
/// assert_eq!(saved, Path::new("log/00000000000000000001.wal.4096.broken"));
/// ```
#[must_use]
pub fn broken_path(segment: &Path, offset: u64) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(format!(".{offset}.broken"));
    PathBuf::from(name)
}

/// Whether the sealed segment `entry` has a usable session index.
fn has_usable_index(fs: &dyn crate::fs::Fs, entry: &SegmentEntry) -> bool {
    look_at(fs, entry).2.is_none()
}

/// Build and store the session index of every sealed segment of the log in
/// `dir` that has no usable one (`docs/format.md`, "The session index"),
/// reading each such segment whole through a [`Reader`]; a segment with
/// damage gets none. Returns how many were stored. Indexes are derived
/// data: this never changes a segment.
///
/// # Errors
///
/// The I/O error of listing or reading the log; [`WalError::NoLog`] if
/// there is none. Failing to store an index is not an error (it is
/// counted out).
///
/// # Examples
///
/// ```
/// use logbook_wal::{Wal, WalOptions, build_indexes};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// wal.append_raw(uuid::Uuid::nil(), b"x")?;
/// // Sealed segments are indexed by their writer: nothing is missing here.
/// assert_eq!(build_indexes(dir.path())?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn build_indexes(dir: impl AsRef<Path>) -> Result<usize, WalError> {
    let dir = dir.as_ref();
    let reader = Reader::open(dir)?;
    let fs = reader.fs_arc();
    let entries = reader.segment_entries().to_vec();
    let sealed = entries.len().saturating_sub(1);
    let mut stored = 0;
    for entry in entries.iter().take(sealed) {
        if has_usable_index(&*fs, entry) {
            continue;
        }
        let mut reader = Reader::open_with_fs(fs.clone(), dir)?
            .from_lsn(entry.base_lsn)
            .indexing();
        // Reading past the segment's last record stores its index.
        let _: ControlFlow<()> = reader.walk(|item| match item {
            Item::Record(r) if r.segment != entry.path => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })?;
        if has_usable_index(&*fs, entry) {
            stored += 1;
        }
    }
    Ok(stored)
}
