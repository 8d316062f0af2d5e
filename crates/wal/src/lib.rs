//! # logbook-wal: the durable log behind `SessionBus`
//!
//! A [`Wal`] is a directory of **segments**: append-only files named by the
//! LSN of their first record, each starting with a checked header and
//! holding CRC-protected **record frames** back to back (`docs/format.md`).
//! Every record carries a gapless LSN, a timestamp, a session id and an
//! opaque payload; [`WalSink`] plugs a session into a
//! [`SessionBus`](logbook_bus::SessionBus) and encodes its events with
//! `logbook_bus::codec`.
//!
//! ## Writing
//!
//! Many threads and sessions append at once. Appends are **group
//! committed**: one writer at a time writes every queued record with one
//! `write` and one `fdatasync`, and releases all their appenders together.
//! [`SyncPolicy`] chooses when an append returns: after the fsync (default),
//! after queuing (a flusher fsyncs within a bound), or never fsynced. Any
//! failed fsync (whatever its errno) or failed write **poisons** the log,
//! but a full disk does not: under `Always` it fails the batch it hit,
//! under `Batch`/`Never` it keeps the queued records, with their LSNs, until
//! a write succeeds. [`Wal::append_async`] and the bus's `emit_async` wait
//! for durability without blocking a tokio worker. One writer per
//! directory: [`Wal::open`] takes a lock.
//!
//! ## Recovery and reading
//!
//! [`Wal::open`] validates the tail segment only, cuts a torn tail (bytes
//! written after the last fsync) and refuses, by default, to cut anything
//! that had been acknowledged ([`RecoveryMode`], [`RecoveryReport`]).
//! A [`Reader`] iterates records from any LSN across segments, checking
//! every CRC and LSN, on a live log or a copy, without the lock; it returns
//! only records known durable (the writer publishes its durable watermark
//! in `LOCK`, see `docs/format.md`).
//!
//! ## Metrics
//!
//! The writer records appends, batches, bytes, fsyncs and their latency,
//! records per fsync, the commit queue's depth, the durable LSN, full-disk
//! writes, stalls and poisoning through the `metrics` facade
//! (`logbook_wal_*`, labelled `dir`; `docs/operations.md` lists them). The
//! application installs a recorder, before opening the log; without one,
//! recording costs nothing measurable. Readers never fsync, so they record
//! nothing.
//!
//! ## Quick start
//!
//! ```
//! use std::sync::Arc;
//! use logbook_bus::{SessionBus, SessionEvent};
//! use logbook_wal::{EventRecord, Reader, Wal, WalOptions};
//!
//! # let dir = tempfile::tempdir()?;
//! let wal = Wal::open(dir.path(), WalOptions::default())?;
//! let session = uuid::Uuid::new_v4();
//! let bus = SessionBus::new(256).with_durable_sink(Arc::new(wal.sink(session)));
//! bus.emit(SessionEvent::UserMessage("hi".into()));
//! bus.emit(SessionEvent::Done); // returns once the record is fsynced
//!
//! let mut reader = Reader::open(dir.path())?;
//! let mut events = Vec::new();
//! while let Some(record) = reader.next_ref() {
//!     events.push(EventRecord::decode(&record?)?.event);
//! }
//! assert_eq!(events, [SessionEvent::UserMessage("hi".into()), SessionEvent::Done]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod block_on;
mod chain;
mod clock;
mod commit;
mod compact;
mod crypto;
mod durable_watch;
mod error;
mod event;
#[cfg(feature = "testing")]
pub mod format;
#[cfg(not(feature = "testing"))]
#[allow(
    unreachable_pub,
    reason = "the format's items are public under the `testing` feature (golden bytes, fuzz seeds); without it, only what lib.rs re-exports is"
)]
mod format;
pub mod fs;
mod index;
mod key_check;
mod keyfile;
mod log_id;
mod options;
mod reader;
mod recovery;
mod retain;
mod scan;
mod segment;
#[cfg(any(test, feature = "testing"))]
pub mod sim;
mod sink;
mod telemetry;
mod wal;
mod walk;

pub use crate::chain::{ChainHead, ChainHeadError, HeadCheck, chain_before, published_head};
pub use crate::commit::{CommitHold, WalStats};
pub use crate::compact::{CompactedSegment, Compaction, compaction_plan};
pub use crate::crypto::{
    CHAIN_LEN, Chain, Key, KeyError, KeyRing, RecordContext, SEAL_OVERHEAD, default_keys,
    install_default_keys, tag_of,
};
pub use crate::durable_watch::DurableWatch;
pub use crate::error::WalError;
pub use crate::event::EventRecord;
pub use crate::format::{
    FLAG_ENCRYPTED, FrameError, FrameFields, Head, HeaderError, LogIdError, Lsn, MAX_PAYLOAD_LEN,
    MAX_SEGMENT_SIZE, SealBlock, SegmentHeader,
};
pub use crate::index::{derived_writes, set_derived_writes};
pub use crate::log_id::{assign_log_id, log_id};
pub use crate::options::{MIN_SEGMENT_SIZE, RecoveryMode, SyncPolicy, WalOptions};
pub use crate::reader::{
    Place, Placeholder, RawRecord, Reader, RecordRef, SessionStarts, TailDamage, Tombstones,
};
pub use crate::recovery::{Cut, RecoveryReport, Skipped};
pub use crate::retain::{RetainedSegment, Retention, RetentionPlan, retention_plan};
pub use crate::segment::LogFile;
pub use crate::sink::WalSink;
pub use crate::wal::{Inspection, Wal, inspect, is_locked, is_locked_with_fs};
pub use crate::walk::{
    Item, SegmentSummary, SegmentTable, broken_path, build_indexes, lock_path, segment_header,
};
/// Sessions are named by UUIDs: re-exported so that users need no `uuid`
/// dependency of their own to name one.
pub use uuid::Uuid;

/// The crate's README (shown by crates.io), compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;
