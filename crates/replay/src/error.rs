//! [`ReplayError`]: every way a replay, a listing or a resume can fail.

use std::path::{Path, PathBuf};

use logbook_wal::{Lsn, WalError};
use uuid::Uuid;

/// An error of `logbook-replay`.
///
/// Errors of the log itself keep the [`WalError`] as their
/// [`source`](std::error::Error::source) (it names the segment, offset and
/// LSN); the message of this error says what the replay was doing and in
/// which directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The log could not be opened, read or written. The source is the
    /// log's error; [`ReplayError::is_corruption`] tells damage on disk
    /// apart from I/O failures.
    #[error("{op} the log in {}", dir.display())]
    Wal {
        /// What the replay was doing (`"opening"`, `"reading"`, …).
        op: &'static str,
        /// The log directory.
        dir: PathBuf,
        /// The log's error.
        #[source]
        source: WalError,
    },
    /// A record passed its checksum but its payload is not an event this
    /// build can decode, and is not merely a newer event kind (those are
    /// counted and skipped, never an error). Only returned in strict mode.
    #[error("record LSN {lsn} in the log in {} holds an undecodable event", dir.display())]
    Undecodable {
        /// The log directory.
        dir: PathBuf,
        /// The record's LSN.
        lsn: Lsn,
        /// The decoding error ([`WalError::Codec`]).
        #[source]
        source: WalError,
    },
    /// The session has no record in the log.
    #[error("session {0} is not in the log")]
    UnknownSession(Uuid),
    /// The session was deleted: a tombstone deletes every record of it
    /// and nothing was appended to it since (`logbook_bus::Deletions`).
    #[error("session {session} was deleted (tombstone at LSN {tombstone_lsn})")]
    DeletedSession {
        /// The session.
        session: Uuid,
        /// The LSN of its latest tombstone.
        tombstone_lsn: Lsn,
    },
    /// A run to delete is not named by a `UserMessage` of the session
    /// (`Selection::Runs`).
    #[error(
        "LSN {lsn} is not a user message of session {session}: a run is named by the user message that opened it"
    )]
    NotARun {
        /// The session.
        session: Uuid,
        /// The LSN given.
        lsn: Lsn,
    },
    /// An event kind that this build does not know, or that cannot be
    /// pruned (`session_deleted`).
    #[error("{0} is not an event kind that can be pruned")]
    UnknownKind(String),
    /// No session's id starts with this prefix.
    #[error("no session in the log starts with {0}")]
    NoSessionWithPrefix(String),
    /// Several sessions' ids start with this prefix.
    #[error("{prefix} names {} sessions in the log: give more of the id", sessions.len())]
    AmbiguousPrefix {
        /// The prefix given.
        prefix: String,
        /// The sessions it names, in id order.
        sessions: Vec<Uuid>,
    },
    /// The session ended with `Done`: there is nothing to resume.
    #[error(
        "session {session} completed (Done at LSN {done_lsn}); only an unfinished session can be resumed"
    )]
    AlreadyCompleted {
        /// The session.
        session: Uuid,
        /// The LSN of its last `Done`.
        done_lsn: Lsn,
    },
    /// The session has records, but none at or before the point asked for
    /// (a time-travelling replay or a fork before its first record).
    #[error("session {session} has no record at or before {at}: its first is LSN {first_lsn}")]
    BeforeSession {
        /// The session.
        session: Uuid,
        /// The point asked for, as the user gave it ("LSN 3", a time).
        at: String,
        /// The LSN of its first record.
        first_lsn: Lsn,
    },
    /// An LSN past the end of the log: no durable record has it yet (a
    /// fork or a time-travelling replay may only name a point the log
    /// holds).
    #[error("LSN {lsn} is past the end of the log: its last durable record is LSN {last}")]
    PastEnd {
        /// The LSN asked for.
        lsn: Lsn,
        /// The log's last durable LSN (0 for an empty log).
        last: Lsn,
    },
    /// A record to copy is of an event kind this build does not know (a
    /// newer build wrote it): a fork would lose it.
    #[error(
        "record LSN {lsn} of session {session} is of an event kind this build does not know: it cannot be copied into a fork"
    )]
    CannotCopy {
        /// The session.
        session: Uuid,
        /// The record's LSN.
        lsn: Lsn,
    },
    /// A fork into a session that already has records (or into the
    /// session forked itself): its history and the fork's would be
    /// merged into one. A fork goes to a new session.
    #[error(
        "{}",
        if session == from {
            format!("cannot fork session {from} into itself: a fork goes to a new session")
        } else {
            format!("cannot fork session {from} into session {session}: it already has {existing} record(s), and the fork's would be merged into its history; fork into a new session (or delete that one first)")
        }
    )]
    ForkTargetExists {
        /// The session the fork was to go to.
        session: Uuid,
        /// The session to fork.
        from: Uuid,
        /// How many records `session` has (deleted ones left out).
        existing: u64,
    },
    /// A line of an import is not a valid export line (`docs/json.md`).
    #[error("line {line}: {reason}")]
    BadImportLine {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A session of an import is in the log already: importing it would
    /// append its records a second time (the same file imported twice),
    /// or mix them into another session of the same id.
    #[error(
        "session {session} is already in the log, {}{}",
        if *same { format!("and its {existing} record(s) there include every one the file has of it: the file was imported before") } else { format!("with {existing} record(s): importing would append the file's to them") },
        if *sessions > 1 { format!(" (as are {} more session(s) of the file)", sessions - 1) } else { String::new() }
    )]
    SessionExists {
        /// The first session of the file (in file order) the log has.
        session: Uuid,
        /// How many records the log has of it.
        existing: u64,
        /// Whether the log already holds every record of the file's for
        /// that session (same time, same event): an import done before.
        same: bool,
        /// How many sessions of the file the log has.
        sessions: u64,
    },
    /// Reading an import failed.
    #[error("reading line {line} of the import: {source}")]
    Read {
        /// The line being read, from 1.
        line: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an export failed.
    #[error("writing the export: {source}")]
    Write {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// There is no log in the directory yet: it does not exist, or holds no
    /// segment. An ordinary answer on a first start, not damage.
    #[error("there is no log in {} yet", dir.display())]
    NoLog {
        /// The directory.
        dir: PathBuf,
        /// What the log said ([`WalError::NotFound`] or [`WalError::NoLog`]).
        #[source]
        source: WalError,
    },
    /// A replay speed factor that is not a finite number above zero.
    #[error("replay speed must be a finite number above zero, not {0}")]
    InvalidSpeed(f64),
}

impl ReplayError {
    pub(crate) fn wal(op: &'static str, dir: &Path, source: WalError) -> ReplayError {
        if matches!(source, WalError::NotFound { .. } | WalError::NoLog { .. }) {
            return ReplayError::NoLog {
                dir: dir.to_path_buf(),
                source,
            };
        }
        ReplayError::Wal {
            op,
            dir: dir.to_path_buf(),
            source,
        }
    }

    /// The log's error behind this one, if there is one.
    #[must_use]
    pub fn wal_error(&self) -> Option<&WalError> {
        match self {
            ReplayError::Wal { source, .. }
            | ReplayError::Undecodable { source, .. }
            | ReplayError::NoLog { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether this error reports damage on disk (see
    /// [`WalError::is_corruption`]).
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        self.wal_error().is_some_and(WalError::is_corruption)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn wal_errors_keep_their_source_and_context() {
        let e = ReplayError::wal(
            "reading",
            Path::new("/logs"),
            WalError::NotFound {
                path: "/logs".into(),
            },
        );
        assert_eq!(e.to_string(), "there is no log in /logs yet");
        assert_eq!(e.source().unwrap().to_string(), "/logs does not exist");
        assert!(!e.is_corruption());
        assert!(matches!(e.wal_error(), Some(WalError::NotFound { .. })));
    }

    #[test]
    fn corruption_is_recognised() {
        let e = ReplayError::wal(
            "reading",
            Path::new("/logs"),
            WalError::Sequence {
                path: "/logs/x.wal".into(),
                offset: 64,
                expected: 3,
                found: 9,
            },
        );
        assert!(e.is_corruption());
        assert!(!ReplayError::UnknownSession(Uuid::nil()).is_corruption());
    }
}
