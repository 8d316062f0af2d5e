//! The log directory: which files are segments, which are leftovers of an
//! interrupted segment creation, which are foreign; and creating, sealing
//! and opening segment files.

use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{
    LOCK_FILE, LOG_ID_FILE, Lsn, MAX_LSN, SEGMENT_HEADER_LEN, SegmentHeader, TMP_SUFFIX,
    WATERMARK_LEN, Watermark, WatermarkState, parse_segment_file_name, segment_file_name,
};
use crate::fs::{Fs, FsFile, OpenMode, PathKind};

/// One segment file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentEntry {
    pub(crate) base_lsn: Lsn,
    pub(crate) path: PathBuf,
}

/// What a directory holds.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segments, by base LSN.
    pub(crate) segments: Vec<SegmentEntry>,
    /// `*.wal.compact` files: compactions interrupted before their rename
    /// (the segment they would replace is in place).
    pub(crate) compacting: Vec<PathBuf>,
    /// `*.wal.tmp` files: segments whose creation was interrupted.
    pub(crate) temporaries: Vec<PathBuf>,
    /// Everything else but the lock file.
    pub(crate) foreign: Vec<PathBuf>,
}

/// What a file in a log directory is to the log (see `docs/format.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFile {
    /// A segment, `<base LSN, 20 digits>.wal`.
    Segment,
    /// An unfinished segment creation, `<20 digits>.wal.tmp`, which the
    /// next `open` removes.
    Temporary,
    /// A segment being compacted, `<20 digits>.wal.compact`, which the
    /// next `open` removes (the segment it would replace is in place).
    Compacting,
    /// The writer lock, which carries the durable watermark: `LOCK`.
    Lock,
    /// The log's stable id, `LOG_ID` (see [`log_id`](crate::log_id)), or
    /// one being created (`LOG_ID.tmp`, which the next `open` replaces).
    LogId,
    /// `IMPORTS`: which of this log's records were copied from another
    /// log by `logbook-fleet` (resuming a session from a stream), so that
    /// they are not shipped again (`docs/fleet.md`).
    Imports,
    /// Bytes recovery or `repair` cut, saved as
    /// `<segment>.<offset>.broken` (see [`broken_path`](crate::broken_path)).
    Broken,
    /// Derived data beside a segment: its session index, `<segment>.idx`,
    /// or its session summaries, `<segment>.sum`, and those of the run of
    /// sealed segments it starts, `<segment>.run` (written by
    /// `logbook-replay`), or one of them being written (`….tmp`).
    Index,
}

impl LogFile {
    /// What the file named `name` is to a log; `None` for a file that is
    /// not the log's.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::LogFile;
    ///
    /// assert_eq!(LogFile::of("00000000000000000001.wal"), Some(LogFile::Segment));
    /// assert_eq!(LogFile::of("00000000000000000001.wal.4096.broken"), Some(LogFile::Broken));
    /// assert_eq!(LogFile::of("00000000000000000001.wal.idx"), Some(LogFile::Index));
    /// assert_eq!(LogFile::of("00000000000000000001.wal.sum"), Some(LogFile::Index));
    /// assert_eq!(LogFile::of("00000000000000000001.wal.run"), Some(LogFile::Index));
    /// assert_eq!(LogFile::of("LOG_ID"), Some(LogFile::LogId));
    /// assert_eq!(LogFile::of("notes.txt"), None);
    /// ```
    #[must_use]
    pub fn of(name: &str) -> Option<LogFile> {
        let is_segment = |stem: &str| parse_segment_file_name(&format!("{stem}.wal")).is_some();
        if parse_segment_file_name(name).is_some() {
            Some(LogFile::Segment)
        } else if name == LOCK_FILE {
            Some(LogFile::Lock)
        } else if name == LOG_ID_FILE || name == "LOG_ID.tmp" {
            Some(LogFile::LogId)
        } else if name == "IMPORTS" {
            Some(LogFile::Imports)
        } else if name.strip_suffix(TMP_SUFFIX).is_some_and(is_segment) {
            Some(LogFile::Temporary)
        } else if name
            .strip_suffix(crate::compact::COMPACT_SUFFIX)
            .is_some_and(|s| parse_segment_file_name(s).is_some())
        {
            Some(LogFile::Compacting)
        } else if name
            .strip_suffix(".idx")
            .or_else(|| name.strip_suffix(".idx.tmp"))
            .or_else(|| name.strip_suffix(".sum"))
            .or_else(|| name.strip_suffix(".sum.tmp"))
            .or_else(|| name.strip_suffix(".run"))
            .or_else(|| name.strip_suffix(".run.tmp"))
            .is_some_and(|s| parse_segment_file_name(s).is_some())
        {
            Some(LogFile::Index)
        } else if name
            .strip_suffix(".broken")
            .and_then(|s| s.split_once(".wal."))
            .is_some_and(|(seg, offset)| {
                is_segment(seg) && !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit())
            })
        {
            Some(LogFile::Broken)
        } else {
            None
        }
    }
}

/// Check that `dir` is an existing directory.
pub(crate) fn check_dir(fs: &dyn Fs, dir: &Path) -> Result<(), WalError> {
    match fs.kind(dir).map_err(|e| WalError::io("stat", dir, e))? {
        PathKind::Dir => Ok(()),
        PathKind::Missing => Err(WalError::NotFound {
            path: dir.to_path_buf(),
        }),
        PathKind::File | PathKind::Other => Err(WalError::NotADirectory {
            path: dir.to_path_buf(),
        }),
    }
}

/// List `dir`, warning about foreign files (which are never touched).
pub(crate) fn list(fs: &dyn Fs, dir: &Path) -> Result<Listing, WalError> {
    check_dir(fs, dir)?;
    let mut names = fs
        .read_dir(dir)
        .map_err(|e| WalError::io("read directory", dir, e))?;
    names.sort();
    let mut out = Listing::default();
    for name in names {
        let path = dir.join(&name);
        if let Some(base_lsn) = parse_segment_file_name(&name) {
            if base_lsn == 0 || base_lsn > MAX_LSN {
                return Err(WalError::BadSegment {
                    path,
                    reason: format!(
                        "a segment's base LSN must be between 1 and {MAX_LSN}, the name says {base_lsn}"
                    ),
                });
            }
            out.segments.push(SegmentEntry { base_lsn, path });
        } else {
            match LogFile::of(&name) {
                Some(LogFile::Temporary) => out.temporaries.push(path),
                Some(LogFile::Compacting) => out.compacting.push(path),
                Some(LogFile::Lock | LogFile::LogId | LogFile::Imports | LogFile::Index) => {}
                _ => out.foreign.push(path),
            }
        }
    }
    out.segments.sort_by_key(|s| s.base_lsn);
    Ok(out)
}

/// The durable watermark the log's writer published in `LOCK` (see
/// `docs/format.md`, "The durable watermark"). A missing file is
/// [`WatermarkState::Absent`].
pub(crate) fn read_watermark(fs: &dyn Fs, dir: &Path) -> Result<WatermarkState, WalError> {
    let path = dir.join(LOCK_FILE);
    let file = match fs.open(&path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WatermarkState::Absent),
        Err(e) => return Err(WalError::io("open", &path, e)),
    };
    let mut buf = [0u8; WATERMARK_LEN];
    let got = read_full_at(&*file, &mut buf, 0).map_err(|e| WalError::io("read", &path, e))?;
    Ok(Watermark::decode(buf.get(..got).unwrap_or_default()))
}

/// Read from `offset` until `buf` is full or the file ends; returns the
/// bytes read.
pub(crate) fn read_full_at(
    file: &dyn FsFile,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = file.read_at(buf.get_mut(got..).unwrap_or_default(), offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Read and check the header of an open segment.
pub(crate) fn read_header(
    file: &dyn FsFile,
    entry: &SegmentEntry,
) -> Result<SegmentHeader, WalError> {
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    let got = read_full_at(file, &mut buf, 0).map_err(|e| WalError::io("read", &entry.path, e))?;
    check_header(buf.get(..got).unwrap_or_default(), entry)
}

/// Check a segment header's bytes against the file's name.
pub(crate) fn check_header(bytes: &[u8], entry: &SegmentEntry) -> Result<SegmentHeader, WalError> {
    let header = SegmentHeader::decode(bytes).map_err(|reason| WalError::BadHeader {
        path: entry.path.clone(),
        reason,
    })?;
    if header.base_lsn != entry.base_lsn {
        return Err(WalError::BadSegment {
            path: entry.path.clone(),
            reason: format!(
                "header says base LSN {}, file name says {}",
                header.base_lsn, entry.base_lsn
            ),
        });
    }
    Ok(header)
}

/// Create the segment whose first record will be `base_lsn`: write its
/// header to a temporary file, preallocate, fsync, rename into place and
/// fsync the directory; with `seal`, an encrypted segment whose seal block
/// chains it to the log. Returns where its records start. On failure
/// nothing is left behind but, at worst, a temporary file that the next
/// `open` removes.
pub(crate) fn create(
    fs: &dyn Fs,
    dir: &Path,
    base_lsn: Lsn,
    codec_id: u16,
    seal: Option<crate::chain::NewSeal<'_>>,
    preallocate: Option<u64>,
) -> Result<(SegmentEntry, Box<dyn FsFile>, usize), WalError> {
    let name = segment_file_name(base_lsn);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| WalError::io("create", &tmp, e))?;
    let result = (|| {
        if let Some(len) = preallocate {
            file.allocate(len)
                .map_err(|e| WalError::io("preallocate", &tmp, e))?;
        }
        let header = SegmentHeader {
            codec_id,
            base_lsn,
            created_us: crate::clock::now_us(),
            key_id: seal.map(|s| s.key.id()),
        };
        let mut bytes = header.encode().to_vec();
        if let Some(seal) = seal {
            bytes.extend_from_slice(&seal.block(&header).encode());
        }
        file.write_all_at(&bytes, 0)
            .map_err(|e| WalError::io("write", &tmp, e))?;
        file.sync_data()
            .map_err(|e| WalError::fatal("fsync", &tmp, e))?;
        fs.rename(&tmp, &path)
            .map_err(|e| WalError::io("rename", &tmp, e))?;
        fs.sync_dir(dir)
            .map_err(|e| WalError::fatal("fsync directory", dir, e))
    })();
    if let Err(e) = result {
        // Best effort: the next open removes a leftover temporary anyway.
        if fs.remove_file(&tmp).is_ok() {
            let _ = fs.sync_dir(dir);
        }
        return Err(e);
    }
    let start = if seal.is_some() {
        SEGMENT_HEADER_LEN + crate::format::SEAL_BLOCK_LEN
    } else {
        SEGMENT_HEADER_LEN
    };
    Ok((SegmentEntry { base_lsn, path }, file, start))
}

/// Whether a leftover temporary holds something past its segment header
/// (an interrupted creation writes only the header, then zeros).
fn holds_data(fs: &dyn Fs, path: &Path) -> Result<bool, WalError> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| WalError::io("open", path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut at = SEGMENT_HEADER_LEN as u64;
    loop {
        let n = file
            .read_at(&mut buf, at)
            .map_err(|e| WalError::io("read", path, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            return Ok(false);
        };
        if crate::scan::first_nonzero(chunk).is_some() {
            return Ok(true);
        }
        at += n as u64;
    }
}

/// Remove what interrupted compactions left: each `.compact` file was to
/// replace a segment still in place (its rename never happened), and may
/// hold survivors' bytes only, never a record the segment lacks.
pub(crate) fn remove_compacting(
    fs: &dyn Fs,
    dir: &Path,
    compacting: &[PathBuf],
) -> Result<(), WalError> {
    for path in compacting {
        tracing::info!(path = %path.display(), "removing an interrupted compaction");
        fs.remove_file(path)
            .map_err(|e| WalError::io("remove", path, e))?;
    }
    if !compacting.is_empty() {
        fs.sync_dir(dir)
            .map_err(|e| WalError::fatal("fsync directory", dir, e))?;
    }
    Ok(())
}

/// Remove the temporaries of interrupted segment creations. One that holds
/// something past its header may not be the log's to remove: it is moved
/// aside to `<name>.0.broken` (kept, and out of the way of the segment the
/// writer may create under that name), with a warning; refusing to open
/// over it would stop the writer for a file that holds no record.
pub(crate) fn remove_temporaries(
    fs: &dyn Fs,
    dir: &Path,
    temporaries: &[PathBuf],
) -> Result<(), WalError> {
    let mut removed = false;
    for tmp in temporaries {
        if holds_data(fs, tmp)? {
            let aside = crate::walk::broken_path(tmp, 0);
            tracing::warn!(path = %tmp.display(), to = %aside.display(), "an unfinished segment creation holds data past its header: moved aside, not removed");
            fs.rename(tmp, &aside)
                .map_err(|e| WalError::io("rename", tmp, e))?;
            removed = true;
            continue;
        }
        tracing::info!(path = %tmp.display(), "removing an interrupted segment creation");
        fs.remove_file(tmp)
            .map_err(|e| WalError::io("remove", tmp, e))?;
        removed = true;
    }
    if removed {
        fs.sync_dir(dir)
            .map_err(|e| WalError::fatal("fsync directory", dir, e))?;
    }
    Ok(())
}
