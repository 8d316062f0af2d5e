//! # logbook-replay: rebuild sessions, find the crashed ones, resume them
//!
//! The reason the log exists: after a crash, an agent runtime must know
//! which sessions were cut off and pick them up where they stopped. This
//! crate reads a `logbook-wal` directory and answers that, in three layers.
//!
//! ## 1. The fold: [`SessionState`]
//!
//! A pure reducer over one session's records ([`SessionState::apply`]),
//! with no I/O, so live observers, replay and tests share it: identity and
//! timing, the transcript, tool calls and which are still **pending**,
//! token totals, compaction and RLM history, resumptions, and a
//! [`SessionStatus`]. The records alone give `Running`, `Completed` or
//! `Failed`; a session with no terminal event is `Interrupted` when no
//! live writer holds the log ([`SessionState::status_given`] with
//! [`logbook_wal::is_locked`]). Terminal states are sticky; only a
//! `SessionResumed` record re-opens a session.
//!
//! ## 2. The summary: [`list_sessions`], [`session_state`], [`interrupted`]
//!
//! One streaming pass over the log: [`list_sessions`] keeps a few numbers
//! per session ([`SessionSummary`]), [`session_state`] builds one
//! session's full state and skips the other sessions' records undecoded.
//! Memory is bounded by what is built, never by the size of the log.
//! A record this build cannot decode (an event kind written by a newer
//! build) is counted and skipped with its LSN, never fatal; corruption is
//! returned as the log's reader reports it ([`OnCorruption`] chooses,
//! for a listing, to skip it instead).
//!
//! ## 3. Resume and re-publish: [`resume`], [`publish`]
//!
//! [`resume`] hands a runtime the rebuilt state, the last LSN, the pending
//! tool calls, the transcript and a fresh [`WalSink`](logbook_wal::WalSink),
//! after appending a durable `SessionResumed { from_lsn }` record so later
//! replays see both runs as one session. [`publish`] streams a recorded
//! session into a [`SessionBus`](logbook_bus::SessionBus) so a live UI
//! shows it as it would a live one, as fast as possible or at the recorded
//! [`Pace`].
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use logbook_bus::{SessionBus, SessionEvent};
//! use logbook_replay::{SessionStatus, list_sessions, resume};
//! use logbook_wal::{Wal, WalOptions};
//!
//! # let dir = tempfile::tempdir()?;
//! let (finished, cut_off) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
//! {
//!     let wal = Wal::open(dir.path(), WalOptions::default())?;
//!     for (id, prompt) in [(finished, "hello"), (cut_off, "list the files")] {
//!         let bus = SessionBus::new(64).with_durable_sink(Arc::new(wal.sink(id)));
//!         bus.emit(SessionEvent::SessionStarted {
//!             model: "m".into(), cwd: "/work".into(), title: None,
//!         });
//!         bus.emit(SessionEvent::UserMessage(prompt.into()));
//!     }
//!     wal.append(finished, &SessionEvent::Done)?;
//!     wal.append(cut_off, &SessionEvent::ToolCallStart {
//!         tool_call_id: "t1".into(), name: "ls".into(), arguments: "{}".into(),
//!     })?;
//! } // The writer goes away without finishing `cut_off`.
//!
//! let log = list_sessions(dir.path())?;
//! assert_eq!(log.sessions.len(), 2);
//! assert_eq!(log.session(finished).unwrap().status, SessionStatus::Completed);
//! assert_eq!(log.session(cut_off).unwrap().status, SessionStatus::Interrupted);
//!
//! // Pick it up again: the tool call that was running is pending.
//! let wal = Wal::open(dir.path(), WalOptions::default())?;
//! let resumed = resume(&wal, cut_off)?;
//! assert_eq!(resumed.pending_tool_calls[0].id, "t1");
//! assert_eq!(resumed.transcript[0].text, "list the files");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod delete;
mod deleted;
mod error;
mod export;
mod follow;
mod fork;
mod list;
mod publish;
mod rebuild;
mod records;
mod resume;
mod retain;
mod scan;
mod source;
mod state;
mod stats;
mod status;
mod summaries;
#[cfg(test)]
mod testgen;
mod tokens;
mod tools;

pub use crate::delete::{
    DeletePlan, MAX_RANGES_PER_TOMBSTONE, Selection, delete, delete_after, delete_records,
    delete_runs, delete_session, plan_delete, prune,
};
pub use crate::deleted::{LogDeletions, tombstones_in};
pub use crate::error::ReplayError;
pub use crate::export::{
    EXPORT_VERSION, ExportFilter, ImportOptions, Transfer, event_from_json, event_to_json, export,
    import, import_check, import_plan, import_with,
};
pub use crate::follow::{Delivery, Follow, LosslessSubscriber, follow};
pub use crate::fork::{Forked, fork, fork_as};
pub use crate::list::{
    FromSummaries, LogSummary, SessionSummary, TITLE_MAX_CHARS, interrupted, interrupted_at_open,
    list_sessions, list_sessions_with,
};
pub use crate::publish::{Pace, publish};
pub use crate::rebuild::{
    Damage, Until, session_events, session_state, session_state_at, session_state_by_prefix,
    session_state_by_prefix_in, session_state_in, session_state_until, session_state_with,
    session_tail, sessions_with_prefix, sessions_with_prefix_in,
};
pub use crate::records::{list_sessions_in, summarize};
pub use crate::resume::{Resumed, resume, resume_many, resume_many_async};
pub use crate::retain::{RetentionPreview, retention_preview};
pub use crate::scan::{MAX_REPORTED, OnCorruption, SkippedRecords, last_lsn};
pub use crate::source::{Shipped, ShippedRecord, Source, SourceItem, SourceReader};
pub use crate::state::{Resumption, Role, SessionState, TranscriptEntry};
pub use crate::stats::{KindCount, LogCount, LogStats, log_stats, log_stats_in};
pub use crate::status::SessionStatus;
pub use crate::tokens::{TokenAccounts, TokenTotals};
pub use crate::tools::{ApprovalRequest, ToolCall, ToolCompletion, ToolMetadata, ToolStart};

/// The README's quick start, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The crate's README (shown by crates.io), compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;
