//! Session indexes: `<segment>.idx` beside a segment, saying where each
//! session's records are (`docs/format.md`, "The session index").
//!
//! An index is derived data. The writer builds one for each segment it
//! writes from the first record, as it writes (the frames are in its
//! hands), and stores it when it seals the segment and, for the tail, when
//! the log is closed. A reader that reads a sealed segment without a
//! usable index whole builds one and stores it, if it may write there.
//! Storing is best effort and never fsynced: a missing, torn, stale or
//! damaged index is simply not used (the segment is scanned instead), and
//! every record read through an index is checked like any other (CRC, and
//! the LSN the index promised). Indexes never change what is read, only
//! how much.
//!
//! Only reads happen here on behalf of a writer's `open`: an index that no
//! longer describes its segment (recovery cut the records it covers) is
//! recognised by its last record's CRC and ignored, never removed there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::format::{
    FrameFields, INDEX_SUFFIX, IndexHeader, Lsn, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SegmentHeader, SessionIndex, find_places,
};
use crate::fs::{Fs, FsFile, OpenMode};

/// The index file of `segment`.
pub(crate) fn index_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(INDEX_SUFFIX);
    PathBuf::from(name)
}

/// An index being built, record by record, in log order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Builder {
    sessions: HashMap<Uuid, Vec<(u32, Lsn)>>,
    covered: u64,
    next_lsn: Lsn,
    last_offset: u64,
    last_crc: u32,
}

impl Builder {
    /// Note the record `lsn` of `session` at `offset`, ending at `end`,
    /// whose frame stores `crc`.
    pub(crate) fn add(&mut self, session: Uuid, offset: u64, lsn: Lsn, end: u64, crc: u32) {
        let Ok(at) = u32::try_from(offset) else {
            return;
        };
        self.sessions.entry(session).or_default().push((at, lsn));
        self.covered = end;
        self.next_lsn = lsn + 1;
        self.last_offset = offset;
        self.last_crc = crc;
    }

    /// The end of the last record added.
    pub(crate) fn covered(&self) -> u64 {
        self.covered
    }

    /// Add what `later` (built from where this one ends) holds.
    pub(crate) fn extend(&mut self, later: &Builder) {
        for (session, places) in &later.sessions {
            self.sessions
                .entry(*session)
                .or_default()
                .extend_from_slice(places);
        }
        if later.covered > self.covered {
            self.covered = later.covered;
            self.next_lsn = later.next_lsn;
            self.last_offset = later.last_offset;
            self.last_crc = later.last_crc;
        }
    }

    /// The index of the segment with `header`, covering what was added.
    pub(crate) fn finish(self, header: &SegmentHeader) -> SessionIndex {
        let mut sessions: Vec<_> = self.sessions.into_iter().collect();
        sessions.sort_unstable_by_key(|(id, _)| *id);
        SessionIndex {
            header: IndexHeader {
                sessions: u32::try_from(sessions.len()).unwrap_or(u32::MAX),
                base_lsn: header.base_lsn,
                created_us: header.created_us,
                // An empty segment's records end where its header does.
                covered: self.covered.max(SEGMENT_HEADER_LEN as u64),
                next_lsn: if self.next_lsn == 0 {
                    header.base_lsn
                } else {
                    self.next_lsn
                },
                last_offset: self.last_offset,
                last_crc: self.last_crc,
            },
            sessions,
        }
    }
}

/// Why an index with header `ih` does not describe `segment` (whose header
/// is `header` and length `len`), or `Ok` if it does: same base LSN and
/// creation time, covering no more than the file holds, and the frame at
/// its last record's place is still that record (same CRC and LSN).
fn belongs(
    segment: &dyn FsFile,
    header: &SegmentHeader,
    len: u64,
    ih: &IndexHeader,
) -> Result<(), String> {
    if ih.base_lsn != header.base_lsn || ih.created_us != header.created_us {
        return Err("stale: it belongs to another segment of that name".to_owned());
    }
    if ih.covered > len || ih.covered < SEGMENT_HEADER_LEN as u64 {
        return Err(format!(
            "stale: it covers {} bytes, the segment holds {len}",
            ih.covered
        ));
    }
    if ih.last_offset == 0 {
        return if ih.covered == SEGMENT_HEADER_LEN as u64 {
            Ok(())
        } else {
            Err("damaged: no last record".to_owned())
        };
    }
    let mut frame = [0u8; RECORD_HEADER_LEN];
    let got = crate::segment::read_full_at(segment, &mut frame, ih.last_offset)
        .map_err(|e| format!("cannot read the segment: {e}"))?;
    let last = frame.get(..got).and_then(FrameFields::parse);
    match last {
        Some(f) if f.crc == ih.last_crc && f.header.lsn + 1 == ih.next_lsn => Ok(()),
        _ => Err("stale: the segment no longer holds its last record".to_owned()),
    }
}

/// The index header and the places of `session` from the index of
/// `segment`, if it has a usable one: reads O(log sessions) directory
/// entries and that session's places (a session the index does not list
/// has no record below `covered`).
pub(crate) fn places(
    fs: &dyn Fs,
    segment: &Path,
    file: &dyn FsFile,
    header: &SegmentHeader,
    len: u64,
    session: &Uuid,
) -> Option<(IndexHeader, Vec<(u32, Lsn)>)> {
    let index = fs.open(&index_path(segment), OpenMode::Read).ok()?;
    let bytes = index.contents().ok()?;
    let (ih, places) = find_places(&bytes, session).ok()?;
    belongs(file, header, len, &ih).ok()?;
    Some((ih, places.unwrap_or_default()))
}

/// Why the index of `segment` cannot be used, or `None` if it can (the
/// whole index checked).
pub(crate) fn check(
    fs: &dyn Fs,
    segment: &Path,
    file: &dyn FsFile,
    header: &SegmentHeader,
    len: u64,
) -> Option<String> {
    let index = match fs.open(&index_path(segment), OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("missing".to_owned()),
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    let bytes = match index.contents() {
        Ok(b) => b,
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    match SessionIndex::decode(&bytes) {
        Err(why) => Some(format!("damaged: {why}")),
        Ok(i) => belongs(file, header, len, &i.header).err(),
    }
}

/// At `open`, the builder of the tail `segment`, whose records now end at
/// `end`, from an index covering exactly that far: the writer goes on with
/// it and stores a whole index when it seals the segment.
pub(crate) fn resume(
    fs: &dyn Fs,
    segment: &Path,
    file: &dyn FsFile,
    header: &SegmentHeader,
    end: u64,
) -> Option<Builder> {
    let index = fs.open(&index_path(segment), OpenMode::Read).ok()?;
    let bytes = index.contents().ok()?;
    let index = SessionIndex::decode(&bytes).ok()?;
    belongs(file, header, end, &index.header).ok()?;
    let h = index.header;
    (h.covered == end).then(|| Builder {
        sessions: index.sessions.into_iter().collect(),
        covered: h.covered,
        next_lsn: h.next_lsn,
        last_offset: h.last_offset,
        last_crc: h.last_crc,
    })
}

/// Whether readers store derived files: see [`set_derived_writes`].
static DERIVED_WRITES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Let readers of this process store derived files beside the segments
/// they read, or not (`true` by default).
///
/// Reading a log may write derived data into its directory: a
/// [`Reader`](crate::Reader) stores the session index it built on the way
/// (`<segment>.idx`), and `logbook-replay`'s listings store session
/// summaries (`<segment>.sum`, `<segment>.run`). Each is best effort,
/// never fsynced, and silently skipped where the directory cannot be
/// written (a read-only mount, another user's log). `false` turns them
/// off for the whole process (`logbook --no-derived-writes`): reads then
/// change nothing in the directory, and cost what a log without derived
/// files costs. The writer's own indexes (at segment close) and explicit
/// rebuilds ([`build_indexes`](crate::build_indexes)) are not affected.
///
/// # Examples
///
/// ```
/// logbook_wal::set_derived_writes(false);
/// assert!(!logbook_wal::derived_writes());
/// logbook_wal::set_derived_writes(true);
/// ```
pub fn set_derived_writes(enabled: bool) {
    DERIVED_WRITES.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// Whether readers of this process store derived files (see
/// [`set_derived_writes`]).
#[must_use]
pub fn derived_writes() -> bool {
    DERIVED_WRITES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Store `index` as the index of `segment`: written to a temporary and
/// renamed over the old one, not fsynced (derived data; a torn one fails
/// its CRCs and is not used). Best effort: errors are returned for the
/// caller to log, never to fail on.
pub(crate) fn store(fs: &dyn Fs, segment: &Path, index: &SessionIndex) -> std::io::Result<()> {
    let path = index_path(segment);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs.remove_file(&tmp);
    let written = fs.open(&tmp, OpenMode::CreateNew).and_then(|file| {
        file.write_all_at(&index.encode(), 0)?;
        fs.rename(&tmp, &path)
    });
    if written.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    written
}

/// The suffixes of the derived files kept beside a segment: its session
/// index, the session summaries `logbook-replay` keeps (`.sum`, and `.run`
/// for a run of segments starting with it), and their temporaries.
const DERIVED_SUFFIXES: [&str; 6] = [
    INDEX_SUFFIX,
    ".sum",
    ".run",
    ".idx.tmp",
    ".sum.tmp",
    ".run.tmp",
];

/// The derived files beside `segment` (see [`DERIVED_SUFFIXES`]).
fn derived_paths(segment: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    DERIVED_SUFFIXES.iter().map(move |suffix| {
        let mut name = segment.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Remove the derived files of `segment` (the segment is gone, or is
/// being rewritten): its session index, the session summaries
/// `logbook-replay` keeps beside it (`<segment>.sum`, and `<segment>.run`
/// for a run of segments starting with it), and their temporaries. Not
/// fsynced: the caller fsyncs the directory. Returns whether anything was
/// removed.
///
/// # Errors
///
/// The first error of a removal (but not found), naming the file: the
/// caller stops there (nothing durable may follow an error it ignored);
/// what is left is removed by [`sweep`] (the next writer's `open`, the
/// next compaction).
pub(crate) fn remove(fs: &dyn Fs, segment: &Path) -> Result<bool, crate::WalError> {
    let mut removed = false;
    for path in derived_paths(segment) {
        match fs.remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::WalError::io("remove", &path, e)),
        }
    }
    Ok(removed)
}

/// The segment a summaries file (`.sum`) or run (`.run`) was made of, as
/// it records it (`logbook-replay`'s `summaries.rs`, `docs/format.md`,
/// "Session summaries"): base LSN, creation time, length, and whether it
/// was summarised whole (sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SummaryKey {
    base_lsn: Lsn,
    created_us: u64,
    len: u64,
    sealed: bool,
}

/// First bytes of a summaries file and of a run file, and the layout
/// version both have (`logbook-replay`'s `summaries.rs`).
const SUM_MAGIC: [u8; 8] = *b"\x89LBSUM\r\n";
const RUN_MAGIC: [u8; 8] = *b"\x89LBRUN\r\n";
const SUMMARY_VERSION: u16 = 3;

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The segments a summaries (`run` false) or run (`run` true) file's
/// `bytes` record; `None` if they are not such a file of the layout this
/// build knows (then nothing can use it).
fn summary_keys(bytes: &[u8], run: bool) -> Option<Vec<SummaryKey>> {
    let magic = if run { RUN_MAGIC } else { SUM_MAGIC };
    if bytes.get(..8)? != magic {
        return None;
    }
    let version = u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?);
    if version != SUMMARY_VERSION {
        return None;
    }
    if !run {
        // base, created, len, last LSN, last offset, records; last CRC;
        // sealed.
        return Some(vec![SummaryKey {
            base_lsn: u64_at(bytes, 10)?,
            created_us: u64_at(bytes, 18)?,
            len: u64_at(bytes, 26)?,
            sealed: *bytes.get(10 + 6 * 8 + 4)? != 0,
        }]);
    }
    let n = u32::from_le_bytes(bytes.get(10..14)?.try_into().ok()?);
    let mut keys = Vec::new();
    for i in 0..usize::try_from(n).ok()? {
        // base, created, len, records, first LSN, last LSN, bytes used.
        let at = 14 + i * 7 * 8;
        keys.push(SummaryKey {
            base_lsn: u64_at(bytes, at)?,
            created_us: u64_at(bytes, at + 8)?,
            len: u64_at(bytes, at + 16)?,
            sealed: true,
        });
    }
    Some(keys)
}

/// Whether the summaries recorded as `key` still are of the segment
/// whose header is `header` and length `len`: same base LSN and creation
/// time; summarised whole at exactly this length, or its front at no
/// more than it. Otherwise the segment was rewritten (compaction: its
/// length changed) or replaced since, and the summaries, which may hold
/// what compaction erased (titles), are stale.
fn key_holds(key: &SummaryKey, header: &SegmentHeader, len: u64) -> bool {
    key.base_lsn == header.base_lsn
        && key.created_us == header.created_us
        && if key.sealed {
            key.len == len
        } else {
            key.len <= len
        }
}

/// Why the derived file `name` (in `dir`, whose segments are `segments`)
/// is to be removed, if it is: its segment is gone, or it is a summaries
/// or run file that is not of the segments there now ([`key_holds`]), or
/// one of unknown layout, or a temporary left by a store that was cut
/// short.
fn stale(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    segments: &HashMap<Lsn, PathBuf>,
) -> Option<&'static str> {
    let (stem, suffix) = DERIVED_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix).map(|stem| (stem, *suffix)))?;
    let base = crate::format::parse_segment_file_name(stem)?;
    if !segments.contains_key(&base) {
        // Listed before the segment was created? Looked at again.
        if fs.kind(&dir.join(stem)).ok()? == crate::fs::PathKind::Missing {
            return Some("its segment is gone");
        }
        return None;
    }
    if suffix.ends_with(".tmp") {
        return Some("a temporary left by a store cut short");
    }
    if suffix == INDEX_SUFFIX {
        // An index holds no payload; a stale one is never used.
        return None;
    }
    let file = fs.open(&dir.join(name), OpenMode::Read).ok()?;
    let bytes = file.contents().ok()?;
    let Some(keys) = summary_keys(&bytes, suffix == ".run") else {
        return Some("not summaries of a layout this build reads");
    };
    for key in &keys {
        let Some(path) = segments.get(&key.base_lsn) else {
            return Some("a segment it summarises is gone");
        };
        let Ok(segment) = fs.open(path, OpenMode::Read) else {
            return None;
        };
        let entry = crate::segment::SegmentEntry {
            base_lsn: key.base_lsn,
            path: path.clone(),
        };
        let (Ok(header), Ok(len)) = (
            crate::segment::read_header(&*segment, &entry),
            segment.len(),
        ) else {
            return None;
        };
        if !key_holds(key, &header, len) {
            return Some("the segment it summarises was rewritten or replaced since");
        }
    }
    None
}

/// Remove the derived files of `dir` that are stale: those whose segment
/// is gone (retention, or a compaction, cut short by a crash or an
/// error), and the summaries and runs that are not of the segments there
/// now (a compaction killed after its rename left them, or a listing
/// stored them from a segment's old bytes while it was rewritten). They
/// may hold what retention or compaction removed (sessions' titles). Not
/// fsynced: the caller fsyncs the directory if this returns `Ok(true)`
/// (something was removed).
///
/// # Errors
///
/// The I/O error of listing the directory or removing a file, naming it.
pub(crate) fn sweep(fs: &dyn Fs, dir: &Path) -> Result<bool, crate::WalError> {
    let mut names = fs
        .read_dir(dir)
        .map_err(|e| crate::WalError::io("read directory", dir, e))?;
    names.sort();
    let segments: HashMap<Lsn, PathBuf> = names
        .iter()
        .filter_map(|n| crate::format::parse_segment_file_name(n).map(|b| (b, dir.join(n))))
        .collect();
    let mut removed = false;
    for name in &names {
        if crate::format::parse_segment_file_name(name).is_some() {
            continue;
        }
        let Some(why) = stale(fs, dir, name, &segments) else {
            continue;
        };
        let path = dir.join(name);
        match fs.remove_file(&path) {
            Ok(()) => {
                tracing::debug!(path = %path.display(), why, "removed a stale derived file");
                removed = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::WalError::io("remove", &path, e)),
        }
    }
    Ok(removed)
}
