//! Where a shipper resumes, found in the stream itself (`docs/fleet.md`,
//! "Where to resume"): no local progress file, which could be lost with
//! the host or disagree with the stream.
//!
//! Every message carries two headers set when it was sent:
//! `Logbook-Committed: c` (every LSN of the log below `c` was then known
//! to be in the stream) and `Logbook-Scan-From: s` (every message of the
//! log with an LSN at or above `c` has a stream sequence above `s`). Any
//! one message's pair is true forever after, so the last message of the
//! log in the stream gives `(c, s)`; reading the log's messages after `s`
//! (headers only) gives exactly which LSNs at or above `c` are there. The
//! shipper then sends precisely the missing ones: a gap left by a publish
//! that failed while later ones succeeded is filled, and nothing in the
//! stream is sent again.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use logbook_wal::Lsn;
use uuid::Uuid;

use crate::error::FleetError;
use crate::message::FleetRecord;
use crate::read::{parse_message, read_from};
use crate::target::Target;

/// What the stream holds of one log, as far as shipping needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResumePoint {
    /// Every LSN below this is in the stream.
    pub(crate) committed: Lsn,
    /// Every message of the log with an LSN at or above `committed` has a
    /// stream sequence above this.
    pub(crate) scan_from: u64,
    /// The LSNs at or above `committed` that are in the stream, with the
    /// session and timestamp of the record there (to tell it from another
    /// record at the same LSN).
    pub(crate) present: BTreeMap<Lsn, (Uuid, u64)>,
    /// The highest stream sequence the scan saw (0: none).
    pub(crate) scan_end: u64,
}

impl ResumePoint {
    /// The highest LSN of the log in the stream (0: none known).
    pub(crate) fn max_present(&self) -> Lsn {
        self.present.last_key_value().map_or(0, |(lsn, _)| *lsn)
    }
}

/// Find where shipping `log` resumes: through two short-lived consumers
/// (the log's last message, then its messages after the scan start,
/// headers only), or, if a consumer step fails, by asking the stream's
/// leader for those messages one at a time ([`by_leader`]).
///
/// A 3-node nats-server 2.9 cluster that just lost a node can leave the
/// creation of a consumer unanswered for a minute, while its stream leader
/// answers as soon as one is elected: the fallback lets shipping go on
/// meanwhile. It costs a request per message scanned, so it is not the
/// first choice.
pub(crate) async fn find(
    target: &Target,
    stream: &Stream,
    log: Uuid,
) -> Result<ResumePoint, FleetError> {
    match by_consumers(target, stream, log).await {
        Err(e @ FleetError::Server { .. }) => {
            tracing::debug!(%log, error = %e, "resume point: asking the stream leader instead");
            by_leader(target, stream, log).await.map_err(|fallback| {
                tracing::debug!(%log, error = %fallback, "resume point: the stream leader failed too");
                e
            })
        }
        other => other,
    }
}

/// [`find`] through consumers.
async fn by_consumers(
    target: &Target,
    stream: &Stream,
    log: Uuid,
) -> Result<ResumePoint, FleetError> {
    let filter = target.log_filter(log);
    let last = read_from(target, stream, &filter, DeliverPolicy::Last, true).await?;
    let Some(last) = last.last() else {
        return Ok(ResumePoint::empty());
    };
    let scan = read_from(
        target,
        stream,
        &filter,
        DeliverPolicy::ByStartSequence {
            start_sequence: last.scan_from + 1,
        },
        true,
    )
    .await?;
    Ok(ResumePoint::from_scan(log, last, &scan))
}

/// [`find`] by asking the stream's leader (`STREAM.MSG.GET`) for the
/// log's last message, then for each of its messages after the scan
/// start, to the end of the stream.
async fn by_leader(target: &Target, stream: &Stream, log: Uuid) -> Result<ResumePoint, FleetError> {
    let filter = target.log_filter(log);
    let last = match stream.get_last_raw_message_by_subject(&filter).await {
        Ok(message) => parse(target, message)?,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
            return Ok(ResumePoint::empty());
        }
        Err(e) => return Err(target.server_error("finding the log's last message", e)),
    };
    let mut scan = Vec::new();
    let mut from = last.scan_from + 1;
    loop {
        match stream.get_first_raw_message_by_subject(&filter, from).await {
            Ok(message) => {
                let record = parse(target, message)?;
                from = record.stream_seq + 1;
                scan.push(record);
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => break,
            Err(e) => return Err(target.server_error("reading the log's last messages", e)),
        }
    }
    Ok(ResumePoint::from_scan(log, &last, &scan))
}

impl ResumePoint {
    /// No message of the log is in the stream.
    fn empty() -> ResumePoint {
        ResumePoint {
            committed: 1,
            ..ResumePoint::default()
        }
    }

    /// From the log's last message and its messages after the scan start.
    fn from_scan(log: Uuid, last: &FleetRecord, scan: &[FleetRecord]) -> ResumePoint {
        let present: BTreeMap<Lsn, (Uuid, u64)> = scan
            .iter()
            .filter(|r| r.lsn >= last.committed)
            .map(|r| (r.lsn, (r.session, r.timestamp_us)))
            .collect();
        let point = ResumePoint {
            committed: last.committed.max(1),
            scan_from: last.scan_from,
            present,
            scan_end: scan.last().map_or(last.stream_seq, |r| r.stream_seq),
        };
        tracing::debug!(%log, committed = point.committed, scan_from = point.scan_from, scanned = scan.len(), present = point.present.len(), "resume point");
        point
    }
}

/// A message the stream leader gave as a record of this target's.
fn parse(target: &Target, message: StreamMessage) -> Result<FleetRecord, FleetError> {
    parse_message(
        target,
        message.subject.as_str(),
        Some(&message.headers),
        message.payload,
        message.sequence,
    )
}
