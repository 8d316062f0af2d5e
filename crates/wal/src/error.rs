//! [`WalError`]: every way the log can fail, with the path, offset and LSN
//! it applies to.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{FrameError, HeaderError, Lsn};

/// An error of the log.
///
/// Every variant that concerns a file names it; corruption also names the
/// byte offset and the LSN that was expected there.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"write"`, `"fsync"`, `"open"`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The disk is full (a write, segment creation or preallocation failed
    /// with `ENOSPC` or `EDQUOT`; a failed fsync is never this, it poisons).
    /// The partial write was cut back. Under `SyncPolicy::Always` nothing of
    /// the failed batch was acknowledged; under `Batch` and `Never` the
    /// records that returned `Ok` stay queued with their LSNs. Appends
    /// succeed again once space is freed.
    #[error("disk full: {op} {}: {source}", path.display())]
    DiskFull {
        /// What was being done.
        op: &'static str,
        /// The file being written.
        path: PathBuf,
        /// The OS error (`ENOSPC` or `EDQUOT`).
        #[source]
        source: Arc<io::Error>,
    },
    /// Another writer holds the directory's lock.
    #[error("log {} is locked by another writer (lock file {})", dir.display(), lock.display())]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The path does not exist.
    #[error("{} does not exist", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The path is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory holds no segment.
    #[error("{} holds no logbook segment (*.wal)", dir.display())]
    NoLog {
        /// The directory.
        dir: PathBuf,
    },
    /// A segment's header is invalid.
    #[error("{}: bad segment header: {reason}", path.display())]
    BadHeader {
        /// The segment.
        path: PathBuf,
        /// Which check failed.
        reason: HeaderError,
    },
    /// A segment's header disagrees with its file name or its neighbours.
    #[error("{}: {reason}", path.display())]
    BadSegment {
        /// The segment.
        path: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// A frame is damaged where a record was expected.
    #[error("{} at offset {offset}: corrupt record (expected LSN {lsn}): {reason}", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the frame in the segment.
        offset: u64,
        /// The LSN expected at that offset.
        lsn: Lsn,
        /// What is wrong with the frame.
        reason: FrameError,
    },
    /// A valid frame carries the wrong LSN.
    #[error("{} at offset {offset}: expected LSN {expected}, found {found}", path.display())]
    Sequence {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// The LSN expected.
        expected: Lsn,
        /// The LSN found.
        found: Lsn,
    },
    /// A record that had been acknowledged as durable is damaged (valid
    /// records written after it was fsynced follow it). Recovery refuses
    /// to cut it under the chosen recovery mode.
    #[error(
        "{} at offset {offset}: LSN {lsn} is corrupt, and {valid_after} valid record(s) written after it \
         had been made durable follow it (first at offset {next_offset}): acknowledged data is damaged",
        path.display()
    )]
    MidLogCorruption {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the damaged frame.
        offset: u64,
        /// The LSN expected there.
        lsn: Lsn,
        /// The first valid frame after the damage.
        next_offset: u64,
        /// How many valid frames follow the damage.
        valid_after: u64,
    },
    /// A record the log's writer had made durable (its LSN is below the
    /// durable watermark it published in `LOCK`, see `docs/format.md`) is
    /// damaged or missing. Recovery refuses to cut it under the chosen mode.
    #[error(
        "{} at offset {offset}: LSN {lsn} is {what}, but the log's writer had made every LSN below \
         {durable_end} durable: acknowledged data is damaged",
        path.display()
    )]
    DurableDamaged {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// The LSN expected there.
        lsn: Lsn,
        /// The durable watermark that vouches for it.
        durable_end: Lsn,
        /// What is there instead (`"damaged (…)"`, `"missing (…)"`).
        what: String,
    },
    /// The log directory has no `LOG_ID` file (`docs/format.md`, "The log
    /// id"): a log written before log ids existed, or a copy made without
    /// it.
    #[error(
        "{} is missing: this log has no id (copied without it, or written before log ids \
         existed): restore it from a backup or a copy of this log; one that never had an id gets \
         a new one from logbook_wal::assign_log_id (it is then another log to a stream)",
        path.display()
    )]
    NoLogId {
        /// The missing `LOG_ID` file.
        path: PathBuf,
    },
    /// The log's `LOG_ID` file is damaged.
    #[error("{}: not a log id: {reason}", path.display())]
    BadLogId {
        /// The `LOG_ID` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: crate::format::LogIdError,
    },
    /// A record is larger than the log accepts.
    #[error("record of {size} bytes is larger than the limit of {max} bytes")]
    RecordTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A record's payload is empty.
    #[error("record payload is empty")]
    EmptyRecord,
    /// An earlier write or fsync failed: the log accepts nothing more until
    /// it is reopened (which recovers from what is on disk).
    #[error("log is poisoned by an earlier failure: {cause}")]
    Poisoned {
        /// The first failure.
        cause: Arc<WalError>,
    },
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// The log reached the largest LSN (`format::MAX_LSN`).
    #[error("log has used every LSN up to {}", crate::format::MAX_LSN)]
    LsnExhausted,
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A record of an encrypted segment, read without the segment's key
    /// (no key ring given, or none with that id): its payload is still the
    /// sealed bytes.
    #[error("record LSN {lsn} of {} is encrypted with key {key_id:08x}, and no key with that id was given", segment.display())]
    Encrypted {
        /// The segment file.
        segment: PathBuf,
        /// The record's LSN.
        lsn: Lsn,
        /// The id of the key it is encrypted with.
        key_id: u32,
    },
    /// A writer without a key opened a log whose tail segment is
    /// encrypted: it would write in the clear after it. Open it with a key
    /// ring (`WalOptions::encryption`).
    #[error("the tail segment {} is encrypted with key {key_id:08x}: a writer needs a key ring (nothing was written)", segment.display())]
    KeyRequired {
        /// The tail segment.
        segment: PathBuf,
        /// The id of its key.
        key_id: u32,
    },
    /// A writer was given keys none of which is the key of any of the
    /// log's encrypted segments (most likely the wrong key file). Nothing
    /// was changed: without this refusal the writer would have started a
    /// new segment under a key the log's readers do not have.
    #[error("none of the keys given ({}) matches the log: {} is encrypted with key {key_id:08x} (nothing was written)", hex_ids(given), segment.display())]
    UnrelatedKeys {
        /// The newest encrypted segment.
        segment: PathBuf,
        /// The id of its key.
        key_id: u32,
        /// The ids of the keys given, the current one first.
        given: Vec<u32>,
    },
    /// A record of an encrypted segment whose payload does not decrypt with
    /// its key: its bytes were changed (with the frame CRC recomputed), it
    /// was moved from another LSN, session or log, or the key is not the
    /// one it was written with.
    #[error("{} offset {offset} (LSN {lsn}): the payload does not decrypt with key {key_id:08x} (tampered, moved from another place, or another key)", path.display())]
    Decrypt {
        /// The segment file.
        path: PathBuf,
        /// The frame's offset.
        offset: u64,
        /// The record's LSN.
        lsn: Lsn,
        /// The key id of the segment.
        key_id: u32,
    },
    /// Something a reader with the key would act on is not what the key
    /// holder wrote (`docs/security.md`): a segment in the clear where the
    /// log is encrypted, a segment or record out of the log's chain, a
    /// segment of another log, a head that does not check, acknowledged
    /// records cut. Located like corruption.
    #[error("{} offset {offset} (LSN {lsn}): {reason}", path.display())]
    Forged {
        /// The file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// The LSN concerned.
        lsn: Lsn,
        /// What does not check.
        reason: String,
    },
    /// The log has segments but its `LOG_ID` is missing, and no encrypted
    /// segment names the id: a new id would make it another log.
    #[error(
        "{}: the log's id is missing and its segments do not name it: restore LOG_ID from a backup or a copy of this log (a new id, `logbook repair DIR --new-log-id --apply` or `logbook_wal::assign_log_id`, makes it another log: a shipped log ships again under it)",
        path.display()
    )]
    LogIdLost {
        /// The missing `LOG_ID` file.
        path: PathBuf,
    },
    /// `LOG_ID` names another log than the log's encrypted segments do.
    #[error("{}: LOG_ID says {found}, but the encrypted segment {} (authenticated) belongs to log {expected}", path.display(), segment.display())]
    LogIdMismatch {
        /// The `LOG_ID` file.
        path: PathBuf,
        /// The segment whose seal block names the log.
        segment: PathBuf,
        /// What `LOG_ID` says.
        found: uuid::Uuid,
        /// What the segment says.
        expected: uuid::Uuid,
    },
    /// A record's segment says its payloads use a codec this build cannot
    /// decode (its header's codec id is not `logbook_bus::codec::CODEC_ID`).
    #[error(
        "{}, LSN {lsn}: payload codec {codec_id}, but this build decodes codec {}",
        segment.display(),
        logbook_bus::codec::CODEC_ID
    )]
    ForeignCodec {
        /// The segment file.
        segment: PathBuf,
        /// The record's LSN.
        lsn: Lsn,
        /// The codec id in the segment's header.
        codec_id: u16,
    },
    /// The payload could not be encoded or decoded.
    #[error("LSN {lsn}: {source}")]
    Codec {
        /// The record's LSN (0 when encoding).
        lsn: Lsn,
        /// The codec's error.
        #[source]
        source: Arc<logbook_bus::codec::CodecError>,
    },
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> WalError {
        let path = path.into();
        if is_disk_full(&source) {
            return WalError::DiskFull {
                op,
                path,
                source: Arc::new(source),
            };
        }
        WalError::Io {
            op,
            path,
            source: Arc::new(source),
        }
    }

    /// A failed `fsync` (of a file or a directory), whatever its errno: the
    /// kernel may already have dropped the dirty pages, so it is never a
    /// recoverable "disk full" (`ENOSPC` and `EDQUOT` included) and never
    /// retried. Also for any other failure after which the file's state is
    /// unknown (a failed cut-back).
    pub(crate) fn fatal(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// Whether this is [`WalError::DiskFull`].
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WalError::DiskFull { .. })
    }

    /// The file and byte offset this error is about, when it names a place
    /// in a segment: the frame's offset for corruption, 0 for a segment's
    /// header or name. `None` for errors about no particular byte (I/O,
    /// options, a locked or missing directory).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use logbook_wal::WalError;
    ///
    /// let e = WalError::Sequence {
    ///     path: "log/00000000000000000001.wal".into(),
    ///     offset: 112,
    ///     expected: 3,
    ///     found: 5,
    /// };
    /// assert_eq!(e.location(), Some((Path::new("log/00000000000000000001.wal"), 112)));
    /// ```
    #[must_use]
    pub fn location(&self) -> Option<(&Path, u64)> {
        match self {
            WalError::Corrupt { path, offset, .. }
            | WalError::Sequence { path, offset, .. }
            | WalError::MidLogCorruption { path, offset, .. }
            | WalError::DurableDamaged { path, offset, .. }
            | WalError::Decrypt { path, offset, .. }
            | WalError::Forged { path, offset, .. } => Some((path, *offset)),
            WalError::BadHeader { path, .. }
            | WalError::BadSegment { path, .. }
            | WalError::BadLogId { path, .. } => Some((path, 0)),
            _ => None,
        }
    }

    /// Whether this error is, or was caused by, corruption on disk.
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            WalError::BadHeader { .. }
                | WalError::BadSegment { .. }
                | WalError::Corrupt { .. }
                | WalError::Sequence { .. }
                | WalError::MidLogCorruption { .. }
                | WalError::DurableDamaged { .. }
                | WalError::BadLogId { .. }
                | WalError::Decrypt { .. }
                | WalError::Forged { .. }
        )
    }
}

pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> io::Error {
        let kind = match &e {
            WalError::Io { source, .. } => source.kind(),
            WalError::DiskFull { .. } => io::ErrorKind::StorageFull,
            WalError::NotFound { .. } | WalError::NoLogId { .. } | WalError::LogIdLost { .. } => {
                io::ErrorKind::NotFound
            }
            WalError::Locked { .. } => io::ErrorKind::WouldBlock,
            WalError::RecordTooLarge { .. }
            | WalError::EmptyRecord
            | WalError::InvalidOptions(_) => io::ErrorKind::InvalidInput,
            WalError::Corrupt { .. }
            | WalError::Sequence { .. }
            | WalError::MidLogCorruption { .. }
            | WalError::DurableDamaged { .. }
            | WalError::BadHeader { .. }
            | WalError::BadSegment { .. }
            | WalError::ForeignCodec { .. }
            | WalError::BadLogId { .. }
            | WalError::Codec { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Key ids as the log prints them, comma-separated.
fn hex_ids(ids: &[u32]) -> String {
    ids.iter()
        .map(|id| format!("{id:08x}"))
        .collect::<Vec<_>>()
        .join(", ")
}
