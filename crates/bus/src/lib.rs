//! # logbook-bus: the session event bus
//!
//! An agent runtime streams events out of a session: text chunks, tool
//! calls, token usage, compaction, errors, `Done`. [`SessionBus`] is the
//! single emission point for all of them.
//!
//! ## Two transports, one enum
//!
//! A [`SessionEvent`] flows through two independent transports depending on
//! [`SessionEvent::is_durable`]:
//!
//! 1. **Ephemeral broadcast** — a `tokio::sync::broadcast` channel, lossy
//!    under load. Subscribers (TUIs, progress spinners) get best-effort
//!    delivery and `RecvError::Lagged` if they fall behind: acceptable for
//!    progress signals, because the next one supersedes a dropped one.
//! 2. **Durable write-ahead sink** — an `Arc<dyn `[`DurableSink`]`>`.
//!    Durable events (token usage, completed tool calls, compaction, `Done`,
//!    …) are handed synchronously to the sink *before* they are broadcast,
//!    so the log never lags behind what any observer has seen. The
//!    `logbook-wal` crate provides a sink that makes them crash-safe.
//!
//! Every event — ephemeral and durable — is also broadcast, so a live UI
//! subscribes once. An optional legacy `tokio::sync::mpsc` forwarder
//! ([`SessionBus::with_legacy_mpsc`]) serves code that has not migrated.
//!
//! ## On disk
//!
//! [`codec`] is the only module that turns events into bytes; events are
//! append-only in their tag order (see [`SessionEvent`]).
//!
//! ## Quick start
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use logbook_bus::{SessionBus, SessionEvent};
//!
//! let bus = SessionBus::new(128);
//! let mut rx = bus.subscribe();
//!
//! bus.emit(SessionEvent::Thinking);
//!
//! let ev = rx.recv().await.unwrap();
//! assert!(matches!(ev, SessionEvent::Thinking));
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bus;
pub mod codec;
mod delete;
mod event;
mod payload;
mod sink;

pub use crate::bus::SessionBus;
pub use crate::delete::{Deletions, lsn_ranges};
pub use crate::event::{KINDS, SessionEvent};
pub use crate::payload::{RlmOutcome, TokenDelta, TokenEstimate, TokenSource, ToolStream};
pub use crate::sink::{DurableSink, MemorySink, NoopSink, WriteFuture};

/// The crate's README (shown by crates.io), compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;
