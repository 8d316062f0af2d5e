//! The log's stable identity: the `LOG_ID` file (`docs/format.md`, "The
//! log id"), created by the first [`Wal::open`](crate::Wal::open) of a
//! directory and never changed afterwards. Segments do not carry it: a log
//! is named by its directory's `LOG_ID`, so that shipping it elsewhere
//! (`logbook-fleet`) can tell its records from every other log's.

use std::io;
use std::path::Path;

use uuid::Uuid;

use crate::error::WalError;
use crate::format::{LOG_ID_FILE, LogIdFile};
use crate::fs::{Fs, OpenMode, StdFs};
use crate::segment::read_full_at;

/// The temporary a new `LOG_ID` is written to before it is renamed.
const LOG_ID_TMP: &str = "LOG_ID.tmp";

/// Read `dir/LOG_ID`: `Ok(None)` if there is none.
pub(crate) fn read(fs: &dyn Fs, dir: &Path) -> Result<Option<LogIdFile>, WalError> {
    let path = dir.join(LOG_ID_FILE);
    let file = match fs.open(&path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("open", &path, e)),
    };
    let mut buf = [0u8; crate::format::LOG_ID_LEN];
    let got = read_full_at(&*file, &mut buf, 0).map_err(|e| WalError::io("read", &path, e))?;
    LogIdFile::decode(buf.get(..got).unwrap_or_default())
        .map(Some)
        .map_err(|reason| WalError::BadLogId { path, reason })
}

/// The log's id, creating `LOG_ID` if the directory has none. Called by
/// the writer (it holds the lock, so two opens cannot create two ids).
///
/// `named` is the id the log's encrypted segments name (authenticated by
/// their seal blocks), if any: a missing `LOG_ID` is restored from it, and
/// a `LOG_ID` that says otherwise is refused. Without it, a new id is
/// minted only for a log without segments: one with segments and no
/// `LOG_ID` is [`WalError::LogIdLost`] (a new id would make it another
/// log; [`assign_log_id`] does that on purpose).
pub(crate) fn ensure(
    fs: &dyn Fs,
    dir: &Path,
    named: Option<(Uuid, &Path)>,
    has_segments: bool,
) -> Result<Uuid, WalError> {
    if let Some(existing) = read(fs, dir)? {
        if let Some((id, segment)) = named {
            if id != existing.id {
                return Err(WalError::LogIdMismatch {
                    path: dir.join(LOG_ID_FILE),
                    segment: segment.to_path_buf(),
                    found: existing.id,
                    expected: id,
                });
            }
        }
        return Ok(existing.id);
    }
    match named {
        Some((id, _)) => {
            tracing::warn!(dir = %dir.display(), %id, "LOG_ID was missing: restored from the encrypted segments");
            write(fs, dir, id)
        }
        None if has_segments => Err(WalError::LogIdLost {
            path: dir.join(LOG_ID_FILE),
        }),
        None => write(fs, dir, Uuid::new_v4()),
    }
}

/// Give the log in `dir`, which has no `LOG_ID`, a new id: for a log that
/// never had one (written before log ids existed) or whose id is lost for
/// good. It is then another log to every stream it was shipped to: its
/// records ship again under the new id. Run it with no writer open.
///
/// # Errors
///
/// [`WalError::BadLogId`] / an error naming `LOG_ID` if it already has
/// one (nothing is changed); I/O errors naming the file.
pub fn assign_log_id(dir: impl AsRef<Path>) -> Result<Uuid, WalError> {
    let dir = dir.as_ref();
    let fs = StdFs;
    crate::segment::check_dir(&fs, dir)?;
    if let Some(existing) = read(&fs, dir)? {
        return Err(WalError::InvalidOptions(format!(
            "{} already names this log ({}): nothing changed",
            dir.join(LOG_ID_FILE).display(),
            existing.id
        )));
    }
    write(&fs, dir, Uuid::new_v4())
}

/// Write `id` to `LOG_ID`: to `LOG_ID.tmp`, fsynced, renamed into place
/// and the directory fsynced, so that a crash leaves either no id or a
/// whole one.
fn write(fs: &dyn Fs, dir: &Path, id: Uuid) -> Result<Uuid, WalError> {
    let tmp = dir.join(LOG_ID_TMP);
    let path = dir.join(LOG_ID_FILE);
    // A leftover of a creation that died before its rename holds nothing
    // anyone relied on: no id was ever returned for it.
    match fs.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::io("remove", &tmp, e)),
    }
    let record = LogIdFile {
        id,
        created_us: crate::clock::now_us(),
    };
    let file = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| WalError::io("create", &tmp, e))?;
    file.write_all_at(&record.encode(), 0)
        .map_err(|e| WalError::io("write", &tmp, e))?;
    file.sync_data()
        .map_err(|e| WalError::fatal("fsync", &tmp, e))?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(|e| WalError::io("rename", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| WalError::fatal("fsync directory", dir, e))?;
    tracing::info!(dir = %dir.display(), id = %record.id, "created the log's id");
    Ok(record.id)
}

/// The stable id of the log in `dir`, from its `LOG_ID` file (created by
/// the first [`Wal::open`](crate::Wal::open) of the directory; see
/// `docs/format.md`, "The log id").
///
/// Reads only that file: no lock, no segment.
///
/// # Errors
///
/// [`WalError::NoLogId`] if the directory has no `LOG_ID` (a log written
/// before log ids existed, or a copy made without it: open it once with a
/// writer to give it one); [`WalError::BadLogId`] if the file is damaged;
/// [`WalError::NotFound`] / [`WalError::NotADirectory`] for a bad path; the
/// I/O error naming the file.
///
/// # Examples
///
/// ```
/// use logbook_wal::{Wal, WalOptions, log_id};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// assert_eq!(log_id(dir.path())?, wal.log_id());
/// drop(wal);
/// // Stable: the next writer keeps it.
/// let again = Wal::open(dir.path(), WalOptions::default())?;
/// assert_eq!(log_id(dir.path())?, again.log_id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn log_id(dir: impl AsRef<Path>) -> Result<Uuid, WalError> {
    let dir = dir.as_ref();
    crate::segment::check_dir(&StdFs, dir)?;
    match read(&StdFs, dir)? {
        Some(file) => Ok(file.id),
        None => Err(WalError::NoLogId {
            path: dir.join(LOG_ID_FILE),
        }),
    }
}
