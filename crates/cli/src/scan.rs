//! Walking a log with [`Reader`]: records and problems in order, going on
//! past corruption (the reader resumes at the next valid record) and
//! stopping at the first I/O error. Shared by `dump`, `verify`, `stats` and
//! `repair`; also the per-segment table that `verify` and `stats` print.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use logbook_wal::format::SegmentHeader;
use logbook_wal::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use logbook_wal::{Lsn, Reader, RecordRef, TailDamage, WalError};

/// One step of a walk.
pub(crate) enum Item<'a> {
    /// A valid record.
    Record(RecordRef<'a>),
    /// Corruption the reader reported; it resumes after it.
    Problem(WalError),
}

/// Whether a walk goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// At the current end of the log.
    EndOfLog,
    /// The callback said stop.
    Stopped,
}

/// Consecutive identical errors after which the reader is taken to be
/// stuck (it should always make progress after corruption).
const STUCK_AFTER: u32 = 3;

/// Feed every record and every problem of `reader`, in log order, to `f`,
/// until the current end of the log or until `f` says stop.
///
/// # Errors
///
/// The first error that is not corruption (I/O: an unreadable segment, a
/// directory that cannot be listed), or `f`'s error.
pub(crate) fn walk(
    reader: &mut Reader,
    mut f: impl FnMut(Item<'_>) -> anyhow::Result<Flow>,
) -> anyhow::Result<End> {
    let mut last_error = String::new();
    let mut repeats = 0;
    loop {
        let item = match reader.next_ref() {
            None => return Ok(End::EndOfLog),
            Some(Ok(record)) => {
                repeats = 0;
                Item::Record(record)
            }
            Some(Err(e)) if e.is_corruption() => {
                let text = e.to_string();
                if text == last_error {
                    repeats += 1;
                    if repeats >= STUCK_AFTER {
                        bail!("the reader makes no progress past this problem: {text}");
                    }
                } else {
                    repeats = 0;
                    last_error = text;
                }
                Item::Problem(e)
            }
            Some(Err(e)) => return Err(e.into()),
        };
        if f(item)? == Flow::Stop {
            return Ok(End::Stopped);
        }
    }
}

/// Open a reader on `dir`, naming the directory in errors.
pub(crate) fn open_reader(dir: &Path) -> anyhow::Result<Reader> {
    Ok(Reader::open(dir)?)
}

/// The segment file and byte offset a problem is at, if it names one.
pub(crate) fn location(e: &WalError) -> Option<(PathBuf, u64)> {
    match e {
        WalError::Corrupt { path, offset, .. }
        | WalError::Sequence { path, offset, .. }
        | WalError::MidLogCorruption { path, offset, .. } => Some((path.clone(), *offset)),
        WalError::BadHeader { path, .. } | WalError::BadSegment { path, .. } => {
            Some((path.clone(), 0))
        }
        _ => None,
    }
}

/// A problem the reader reported, on one line. Mid-log corruption is
/// worded for a reader (the log's own message speaks of recovery).
pub(crate) fn describe(e: &WalError) -> String {
    match e {
        WalError::MidLogCorruption {
            path,
            offset,
            lsn,
            next_offset,
            valid_after,
        } => format!(
            "{} at offset {offset}: corrupt record (expected LSN {lsn}), followed by \
             {valid_after} valid record(s) written after it was durable (the first at offset \
             {next_offset}): mid-log corruption",
            path.display()
        ),
        other => other.to_string(),
    }
}

/// A torn tail on one line.
pub(crate) fn describe_tail(damage: &TailDamage) -> String {
    format!(
        "{} at offset {}: torn tail where LSN {} was due: {}",
        damage.path.display(),
        damage.offset,
        damage.lsn,
        damage.reason
    )
}

/// What was seen of one segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentInfo {
    pub(crate) path: PathBuf,
    /// File size on disk (preallocated segments are larger than their records).
    pub(crate) file_size: u64,
    /// The header, or why it is not valid.
    pub(crate) header: Option<Result<SegmentHeader, String>>,
    pub(crate) records: u64,
    pub(crate) first_lsn: Option<Lsn>,
    pub(crate) last_lsn: Option<Lsn>,
    /// End of the last valid record: the bytes in use.
    pub(crate) used_bytes: u64,
}

impl SegmentInfo {
    pub(crate) fn file_name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    pub(crate) fn lsn_range(&self) -> String {
        match (self.first_lsn, self.last_lsn) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "-".to_owned(),
        }
    }
}

/// Per-segment counts, filled record by record (records arrive in segment
/// order) and completed with each segment's header and size.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    pub(crate) list: Vec<SegmentInfo>,
}

impl Segments {
    pub(crate) fn add(&mut self, record: &RecordRef<'_>) {
        let same = self.list.last().is_some_and(|s| s.path == record.segment);
        if !same {
            let known = self.list.iter().position(|s| s.path == record.segment);
            match known {
                Some(i) => {
                    let info = self.list.remove(i);
                    self.list.push(info);
                }
                None => self.list.push(SegmentInfo {
                    path: record.segment.to_path_buf(),
                    ..SegmentInfo::default()
                }),
            }
        }
        if let Some(info) = self.list.last_mut() {
            info.records += 1;
            info.first_lsn.get_or_insert(record.lsn);
            info.last_lsn = Some(record.lsn);
            let end = record.offset + (RECORD_HEADER_LEN + record.payload.len()) as u64;
            info.used_bytes = info.used_bytes.max(end);
        }
    }

    /// Add the segments that held no record, in `paths`' order, and read
    /// every header and file size.
    pub(crate) fn complete(&mut self, paths: &[PathBuf]) {
        let mut list = Vec::with_capacity(paths.len());
        for path in paths {
            let info = match self.list.iter().position(|s| &s.path == path) {
                Some(i) => self.list.swap_remove(i),
                None => SegmentInfo {
                    path: path.clone(),
                    used_bytes: SEGMENT_HEADER_LEN as u64,
                    ..SegmentInfo::default()
                },
            };
            list.push(info);
        }
        list.append(&mut self.list);
        for info in &mut list {
            info.file_size = std::fs::metadata(&info.path).map_or(0, |m| m.len());
            info.header = Some(read_header(&info.path));
            if info.records > 0 {
                info.used_bytes = info.used_bytes.max(SEGMENT_HEADER_LEN as u64);
            }
        }
        self.list = list;
    }
}

/// Read and decode a segment header.
pub(crate) fn read_header(path: &Path) -> Result<SegmentHeader, String> {
    let mut buf = Vec::with_capacity(SEGMENT_HEADER_LEN);
    File::open(path)
        .and_then(|f| f.take(SEGMENT_HEADER_LEN as u64).read_to_end(&mut buf))
        .map_err(|e| format!("cannot read: {e}"))?;
    SegmentHeader::decode(&buf).map_err(|e| e.to_string())
}

/// Read `len` bytes of `path` from `offset` (fewer at the end of the file).
pub(crate) fn read_bytes(path: &Path, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("seek {}", path.display()))?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64)
        .read_to_end(&mut buf)
        .with_context(|| format!("read {}", path.display()))?;
    Ok(buf)
}
