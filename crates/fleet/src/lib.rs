//! # logbook-fleet: every log of every host in one NATS JetStream stream
//!
//! A Logbook log lives on one machine. This crate **ships** it to a
//! JetStream stream, where every session of every host lands, replicated
//! by the NATS cluster, and **reads** it back from there: list, replay
//! and resume any session from any host (`docs/fleet.md`).
//!
//! ## The model
//!
//! * **The local log is the source of truth.** Shipping only *reads* it,
//!   through [`logbook_wal::Reader`] (durable records only), on a blocking
//!   thread beside the writer: a slow or dead server never delays
//!   `emit`, and nothing shipping does changes the log.
//! * **One message per record, in LSN order.** Subject
//!   `<prefix>.<log id>.<session>` (one session of any log:
//!   `<prefix>.*.<session>`); header `Nats-Msg-Id: <log id>:<lsn>`, so
//!   JetStream drops a resent duplicate; headers with the log id, LSN,
//!   session, event kind, timestamp and codec; the payload is the record's
//!   payload, unchanged. The log id is the log's `LOG_ID`
//!   ([`logbook_wal::log_id`]).
//! * **Exactly once, resumed from the stream itself.** Publishes are
//!   pipelined ([`ShipOptions::window`]) and their acks awaited in order.
//!   On any failure the shipper reconnects and asks the stream what it
//!   holds of the log (two headers on every message make that a short
//!   read, see `docs/fleet.md`), then sends exactly what is missing:
//!   killing it at any moment and starting it again leaves every record
//!   in the stream once.
//! * **Following.** [`Shipper::follow`] keeps shipping what is appended:
//!   a shipper of a directory ([`Shipper::new`]) polls the log; one made
//!   from the writer's own [`Wal`](logbook_wal::Wal)
//!   ([`Shipper::for_wal`]) sleeps on its durable watermark and ships each
//!   record as soon as it is durable.
//! * **Metrics.** A shipper records what it ships and how far behind it is
//!   through the `metrics` facade (`logbook_ship_*`, `docs/operations.md`);
//!   the application installs the exporter.
//! * **Reading** ([`read`], [`in_log_order`]) yields [`FleetRecord`]s
//!   that decode and render like a local log's records.
//! * **Resume anywhere** ([`resume_from_stream`]): pull a session's
//!   records into another host's log (listed in its `IMPORTS` file, so its
//!   shipper never sends them again) and resume it there.
//!
//! ## Example
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use logbook_fleet::{Select, ShipOptions, Shipper, Target, in_log_order, read};
//!
//! let target = Target::parse("nats://127.0.0.1:4222")?;
//! let shipper = Shipper::new("/var/lib/agent/log", target.clone(), ShipOptions::default())?;
//! let report = shipper.ship().await?; // what the stream lacked, acknowledged
//! println!("shipped {} records of log {}", report.shipped, report.log);
//!
//! let mine = in_log_order(read(&target, Select::Log(shipper.log_id())).await?);
//! assert!(mine.windows(2).all(|w| w[0].lsn < w[1].lsn));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod erase;
mod error;
mod imports;
mod message;
mod pull;
mod read;
mod resume_point;
mod retry;
mod ship;
mod target;
mod telemetry;

pub use crate::erase::{StreamErasure, erase_in_stream};
pub use crate::error::FleetError;
pub use crate::message::FleetRecord;
pub use crate::pull::{Pulled, SessionPull, fetch_session, resume_from_stream};
pub use crate::read::{Select, in_log_order, read, stream_head, to_source};
pub use crate::ship::{AckObserver, RetryObserver, ShipOptions, ShipReport, Shipper};
pub use crate::target::{DEFAULT_PREFIX, DEFAULT_STREAM, StreamSettings, Target};

/// The crate's README (shown by crates.io), compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;
