//! [`FleetError`]: every way shipping and reading a stream can fail, with
//! the URL and stream (and log, LSN or stream sequence) it concerns.

use std::path::PathBuf;

use logbook_wal::{Lsn, WalError};
use uuid::Uuid;

/// An error of `logbook-fleet`.
///
/// Every variant about the server names its URL and, where there is one,
/// the stream; every variant about the local log names its directory or
/// file. Nothing here ever follows a change to the local log: shipping
/// only reads it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The URL is not `nats://HOST:PORT`.
    #[error("`{url}` is not a NATS URL: {reason} (expected nats://HOST:PORT)")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The subject prefix is not one subject token.
    #[error("`{prefix}` is not a subject prefix: {reason}")]
    BadPrefix {
        /// What was given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached (or did not answer in time).
    #[error("{url}: cannot connect to the NATS server: {reason}")]
    Connect {
        /// The server.
        url: String,
        /// Why.
        reason: String,
    },
    /// The stream does not exist (a reader never creates it).
    #[error("{url}: JetStream stream {stream} does not exist")]
    NoStream {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
    },
    /// The stream exists but does not take the records' subjects.
    #[error(
        "{url}: JetStream stream {stream} exists but does not take the subjects {want} (its \
         subjects: {subjects}): choose another stream (--stream) or subject prefix \
         (--subject-prefix)"
    )]
    WrongStream {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
        /// The subjects it takes.
        subjects: String,
        /// The subjects the records need.
        want: String,
    },
    /// The stream cannot be created: another stream of the server already
    /// takes its subjects (a server refuses overlapping streams).
    #[error(
        "{url}: cannot create JetStream stream {stream} for the subjects {subjects}: {} already \
         takes them; give this stream a subject prefix of its own (--subject-prefix)",
        other.as_deref().map_or_else(|| "another stream".to_owned(), |o| format!("stream {o}"))
    )]
    SubjectsTaken {
        /// The server.
        url: String,
        /// The stream that could not be created.
        stream: String,
        /// Its subjects.
        subjects: String,
        /// The stream that takes them, if the server said.
        other: Option<String>,
    },
    /// A request to the server failed or timed out.
    #[error("{url}, stream {stream}: {op}: {reason}")]
    Server {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
        /// What was being done.
        op: &'static str,
        /// The server's or the client's error.
        reason: String,
    },
    /// A message of the stream is not a Logbook record (its headers are
    /// missing or malformed).
    #[error("{url}, stream {stream}, message {seq}: not a Logbook record: {reason}")]
    Foreign {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
        /// The message's stream sequence.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Shipping stopped: the server kept failing until the deadline.
    #[error(
        "{url}, stream {stream}: shipping log {log} stopped at LSN {lsn}: the server kept \
         failing for {seconds} s: {reason}"
    )]
    GaveUp {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
        /// The log being shipped.
        log: Uuid,
        /// The first LSN not known to be in the stream.
        lsn: Lsn,
        /// How long it kept trying.
        seconds: u64,
        /// The last failure.
        reason: String,
    },
    /// The stream says this log holds records the local log does not have
    /// any more and that the stream lacks (removed by retention before they
    /// were shipped).
    #[error(
        "{url}, stream {stream}: log {log}: LSN {lsn} is missing from the stream and from the \
         local log ({}): it can never be shipped",
        dir.display()
    )]
    Lost {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
        /// The log.
        log: Uuid,
        /// The first LSN lost.
        lsn: Lsn,
        /// The local log.
        dir: PathBuf,
    },
    /// The stream and the local log disagree about the log's records: the
    /// shipper stops rather than ship a different history under the same
    /// LSNs.
    #[error(
        "{url}, stream {stream}: log {log} ({}), LSN {lsn}: {reason}",
        dir.display()
    )]
    Diverged {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
        /// The log.
        log: Uuid,
        /// Where they disagree.
        lsn: Lsn,
        /// The local log.
        dir: PathBuf,
        /// How.
        reason: String,
    },
    /// The stream has no record of the session.
    #[error("{url}, stream {stream}: no record of session {session}")]
    UnknownSession {
        /// The server.
        url: String,
        /// The stream.
        stream: String,
        /// The session.
        session: Uuid,
    },
    /// The session completed: only an unfinished session can be resumed.
    /// Refused before anything was written.
    #[error(
        "session {session} completed (Done at LSN {lsn} of log {log}): only an unfinished \
         session can be resumed; nothing was changed in {}",
        dir.display()
    )]
    Completed {
        /// The session.
        session: Uuid,
        /// The log that holds its `Done`.
        log: Uuid,
        /// The `Done`'s LSN in that log.
        lsn: Lsn,
        /// The local log directory the session was to be resumed in.
        dir: PathBuf,
    },
    /// Reading or writing the local log failed.
    #[error("log {}: {op}: {source}", dir.display())]
    Wal {
        /// The log directory.
        dir: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The log's error.
        #[source]
        source: WalError,
    },
    /// The local log's import list (`IMPORTS`) could not be read or written.
    #[error("{}: {op}: {source}", path.display())]
    Imports {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Resuming the pulled session failed.
    #[error("log {}: resuming session {session}: {source}", dir.display())]
    Resume {
        /// The log directory.
        dir: PathBuf,
        /// The session.
        session: Uuid,
        /// The replay layer's error.
        #[source]
        source: Box<logbook_replay::ReplayError>,
    },
}

impl FleetError {
    /// Whether retrying later may succeed: the server was unreachable,
    /// slow or failing (not a bad URL, a missing stream, foreign messages
    /// or a local problem).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FleetError::Connect { .. } | FleetError::Server { .. } | FleetError::GaveUp { .. }
        )
    }

    pub(crate) fn wal(dir: impl Into<PathBuf>, op: &'static str, source: WalError) -> FleetError {
        FleetError::Wal {
            dir: dir.into(),
            op,
            source,
        }
    }
}
