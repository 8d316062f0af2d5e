//! Reading records back from the stream: every log's, one log's or one
//! session's, in stream order ([`read`]) or in each log's LSN order
//! ([`in_log_order`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use logbook_replay::{Shipped, Source};
use uuid::Uuid;

use crate::error::FleetError;
use crate::message::FleetRecord;
use crate::target::Target;

/// Which records to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Select {
    /// Every record of every log.
    All,
    /// One log's records.
    Log(Uuid),
    /// One session's records, from every log that wrote it.
    Session(Uuid),
}

impl Select {
    fn filter(self, target: &Target) -> String {
        match self {
            Select::All => target.all_filter(),
            Select::Log(log) => target.log_filter(log),
            Select::Session(session) => target.session_filter(session),
        }
    }
}

/// How long a read retries through a server that fails before it has
/// found the stream (a restart, a stream leader being elected) before it
/// gives up; also how long a server without JetStream takes to be an
/// error.
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(30);

/// How long a read retries once the stream was found. A 3-node nats-server
/// 2.9 cluster that lost a node was seen to leave the creation of a
/// consumer unanswered for up to a minute after the kill (the consumer
/// made on a survivor at once, its answer lost), so a read retries for
/// longer than that.
pub(crate) const READ_DEADLINE_FOUND: Duration = Duration::from_secs(90);

/// Every record `select` picks, in the stream's order (the order the
/// server stored them: each log's records in LSN order, except that a
/// record resent after a failed publish lands after later ones).
///
/// The stream must exist; reading never creates or changes anything but
/// a short-lived ordered consumer. Retries through transient failures for
/// up to 30 s, or 90 s once the stream was found (an unreachable server
/// fails at once).
///
/// # Errors
///
/// [`FleetError::Connect`], [`FleetError::NoStream`],
/// [`FleetError::Server`] (naming the URL and stream), and
/// [`FleetError::Foreign`] for a message that is not a Logbook record.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future drops its consumer (the server
/// removes it once idle).
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), logbook_fleet::FleetError> {
/// use logbook_fleet::{Select, Target, in_log_order, read};
///
/// let target = Target::parse("nats://127.0.0.1:4222")?;
/// for record in in_log_order(read(&target, Select::All).await?) {
///     println!("{} {} {}", record.log, record.lsn, record.session);
/// }
/// # Ok(())
/// # }
/// ```
pub async fn read(target: &Target, select: Select) -> Result<Vec<FleetRecord>, FleetError> {
    // An unreachable server fails at once; a server that answers but
    // fails (restarting, electing a stream leader) is retried.
    let context = target.connect().await?;
    let found = std::cell::Cell::new(false);
    let deadline = || {
        if found.get() {
            READ_DEADLINE_FOUND
        } else {
            READ_DEADLINE
        }
    };
    crate::retry::until(deadline, "reading the stream", || async {
        let (stream, target) = target.open_stream(&context).await?;
        found.set(true);
        read_from(
            &target,
            &stream,
            &select.filter(&target),
            DeliverPolicy::All,
            false,
        )
        .await
    })
    .await
}

/// Read the messages of `stream` under `filter` from `policy` on, until
/// the last one there when the read started.
pub(crate) async fn read_from(
    target: &Target,
    stream: &Stream,
    filter: &str,
    policy: DeliverPolicy,
    headers_only: bool,
) -> Result<Vec<FleetRecord>, FleetError> {
    let timeout = target.timeout();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: policy,
            headers_only,
            ..Default::default()
        })
        .await
        .map_err(|e| target.server_error("creating a consumer", e))?;
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| target.server_error("reading messages", e))?;
    loop {
        let next = tokio::time::timeout(timeout, messages.next())
            .await
            .map_err(|_| {
                target.server_error("reading messages", format!("no message within {timeout:?}"))
            })?;
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(target.server_error("reading messages", e)),
            None => return Err(target.server_error("reading messages", "the consumer ended")),
        };
        let info = message
            .info()
            .map_err(|e| target.server_error("reading messages", e))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        let record = parse_message(
            target,
            message.subject.as_str(),
            message.headers.as_ref(),
            message.payload.clone(),
            seq,
        )?;
        out.push(record);
        if pending == 0 {
            return Ok(out);
        }
    }
}

/// The message at stream sequence `seq` as a record of `target`'s;
/// [`FleetError::Foreign`] (naming the URL, stream and sequence) for one
/// that is not a Logbook record.
pub(crate) fn parse_message(
    target: &Target,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: bytes::Bytes,
    seq: u64,
) -> Result<FleetRecord, FleetError> {
    FleetRecord::parse(subject, headers, payload, seq, target.prefix()).map_err(|reason| {
        FleetError::Foreign {
            url: target.url().to_owned(),
            stream: target.stream().to_owned(),
            seq,
            reason,
        }
    })
}

/// `records` (as [`read`] returns them) in each log's LSN order: the logs
/// in the order of their first record in the stream, each log's records by
/// LSN, a record found twice kept once. One session moved from host to
/// host (resumed elsewhere) reads as it was written: the records of the
/// log it started in, then those of the log that resumed it.
#[must_use]
pub fn in_log_order(records: Vec<FleetRecord>) -> Vec<FleetRecord> {
    let mut order: HashMap<Uuid, usize> = HashMap::new();
    for r in &records {
        let next = order.len();
        order.entry(r.log).or_insert(next);
    }
    let mut records = records;
    records.sort_by_key(|r| (order.get(&r.log).copied().unwrap_or(usize::MAX), r.lsn));
    records.dedup_by_key(|r| (r.log, r.lsn));
    records
}

/// `records` (as [`read`] returns them) as a [`Source`] that every reader
/// of `logbook-replay` reads as it reads a log directory, decoding each
/// record the same way (a sealed one opened with the process's keys):
/// each log's records in LSN order ([`in_log_order`]), named
/// `the stream S at URL`, each record's place `URL/STREAM/<log id>` (its
/// offset is its stream sequence).
///
/// # Examples
///
/// ```
/// use logbook_fleet::{FleetRecord, Target, to_source};
/// use logbook_replay::{OnCorruption, list_sessions_in};
///
/// let payload = logbook_bus::codec::encode(&logbook_bus::SessionEvent::Done)?;
/// let record = FleetRecord::new(uuid::Uuid::from_u128(1), 1, 1_000, uuid::Uuid::from_u128(2), payload.into());
/// let source = to_source(&Target::parse("nats://127.0.0.1:4222")?, vec![record]);
/// assert_eq!(source.name(), "the stream LOGBOOK at nats://127.0.0.1:4222");
/// let log = list_sessions_in(&source, OnCorruption::Skip)?;
/// assert_eq!(log.sessions[0].logs, [uuid::Uuid::from_u128(1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn to_source(target: &Target, records: Vec<FleetRecord>) -> Source {
    let mut places: HashMap<Uuid, Arc<Path>> = HashMap::new();
    let records = in_log_order(records)
        .iter()
        .map(|r| {
            let place = places
                .entry(r.log)
                .or_insert_with(|| {
                    Arc::from(PathBuf::from(format!(
                        "{}/{}/{}",
                        target.url(),
                        target.stream(),
                        r.log
                    )))
                })
                .clone();
            r.to_shipped(place)
        })
        .collect();
    Source::Shipped(Shipped {
        name: format!("the stream {} at {}", target.stream(), target.url()),
        records,
    })
}

/// The head of `log` as its stream holds it: the newest sealed record of
/// that log in the stream that opens under `ring`, as a
/// [`logbook_wal::ChainHead`] (its LSN and tag). The outside anchor for a
/// log's head (`docs/security.md`, "What it does not protect"): a log
/// directory rolled back, or cut together with its `LOCK`, no longer holds
/// the record the stream names (`logbook verify --expect-head-from`).
///
/// `None` if the stream holds no sealed record of `log`.
///
/// # Errors
///
/// The errors of [`read`]; [`FleetError::Wal`] if the newest sealed record
/// of `log` in the stream does not open under `ring` (a forged or damaged
/// message, or a key missing from the ring): the anchor is refused, never
/// replaced by an older record.
///
/// # Cancel safety
///
/// Cancel safe, as [`read`].
pub async fn stream_head(
    target: &Target,
    log: Uuid,
    ring: &logbook_wal::KeyRing,
) -> Result<Option<logbook_wal::ChainHead>, FleetError> {
    let records = in_log_order(read(target, Select::Log(log)).await?);
    let Some(newest) = records.iter().rev().find(|r| r.key_id.is_some()) else {
        return Ok(None);
    };
    newest
        .unsealed(Some(ring))
        .map_err(|source| FleetError::Wal {
            dir: PathBuf::from(format!("{} (log {log})", target.url())),
            op: "open the stream's newest sealed record",
            source,
        })?;
    let tag = logbook_wal::tag_of(&newest.payload).ok_or_else(|| FleetError::Wal {
        dir: PathBuf::from(format!("{} (log {log})", target.url())),
        op: "read the stream's newest sealed record",
        source: logbook_wal::WalError::Decrypt {
            path: PathBuf::from(format!("log {log}")),
            offset: 0,
            lsn: newest.lsn,
            key_id: newest.key_id.unwrap_or(0),
        },
    })?;
    Ok(Some(logbook_wal::ChainHead {
        lsn: newest.lsn,
        tag,
    }))
}
