//! Erasure in the stream: [`erase_in_stream`] removes from the stream the
//! messages of the records a log's tombstones delete, as compaction
//! erases them from the log.

use std::collections::HashMap;

use async_nats::jetstream::consumer::DeliverPolicy;
use logbook_bus::SessionEvent;
use uuid::Uuid;

use crate::error::FleetError;
use crate::message::FleetRecord;
use crate::target::Target;

/// A tombstone found in the stream: its LSN, its stream sequence,
/// whether it deletes its session whole, and the ranges it lists.
type Found = (u64, u64, bool, Vec<(u64, u64)>);

/// What [`erase_in_stream`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamErasure {
    /// Tombstones of the log found in the stream.
    pub tombstones: u64,
    /// Messages removed by purging a wholly deleted session's subject up
    /// to its tombstone.
    pub purged: u64,
    /// Messages removed one by one (records a tombstone lists).
    pub deleted: u64,
}

/// Remove from the stream of `target` every message of `log` that a
/// tombstone of that log (a `session_deleted` record shipped like any
/// other) deletes: for a session deleted whole, a purge of its subject
/// (`<prefix>.<log>.<session>`) below the tombstone's stream sequence
/// (JetStream purge with a subject filter); then each remaining message
/// whose LSN a tombstone of its session lists, by its stream sequence. The
/// tombstones themselves stay, so that other readers of the stream honour
/// them.
///
/// Idempotent and resumable: it reads what the stream holds now, and a
/// message already gone is not an error; after a crash, run it again.
/// Records of an encrypted log are read with the process's keys
/// (`logbook_wal::install_default_keys`): without them its tombstones
/// cannot be read, and nothing is removed.
///
/// Copies already pulled to other hosts (`logbook resume`) are not
/// reached: delete and compact there too.
///
/// # Errors
///
/// [`FleetError::Connect`], [`FleetError::NoStream`],
/// [`FleetError::Server`] (naming the URL and stream), and
/// [`FleetError::Foreign`] for a message that is not a Logbook record.
///
/// # Cancel safety
///
/// Not cancel safe as a whole: a dropped future may have removed some of
/// the messages; run it again to finish.
pub async fn erase_in_stream(target: &Target, log: Uuid) -> Result<StreamErasure, FleetError> {
    let context = target.connect().await?;
    let (stream, target) = target.open_stream(&context).await?;
    let records = crate::read::read_from(
        &target,
        &stream,
        &target.log_filter(log),
        DeliverPolicy::All,
        false,
    )
    .await?;
    let mut out = StreamErasure::default();
    let mut tombstones: HashMap<Uuid, Vec<Found>> = HashMap::new();
    for r in &records {
        if let Some((whole, ranges)) = tombstone(r) {
            out.tombstones += 1;
            tombstones
                .entry(r.session)
                .or_default()
                .push((r.lsn, r.stream_seq, whole, ranges));
        }
    }
    if tombstones.is_empty() {
        return Ok(out);
    }
    for (session, ts) in &tombstones {
        // A session deleted whole: its subject, below the latest such
        // tombstone's message.
        if let Some(seq) = ts.iter().filter(|t| t.2).map(|t| t.1).max() {
            let purged = stream
                .purge()
                .filter(target.subject(log, *session))
                .sequence(seq)
                .await
                .map_err(|e| target.server_error("purging a deleted session", e))?;
            out.purged += purged.purged;
        }
    }
    for r in &records {
        let Some(ts) = tombstones.get(&r.session) else {
            continue;
        };
        let listed = ts.iter().any(|(at, seq, _, ranges)| {
            r.lsn < *at && r.stream_seq != *seq && {
                // Sorted by first LSN (see `tombstone`): the last range
                // starting at or below the LSN is the one to look at.
                let end = ranges.partition_point(|&(a, _)| a <= r.lsn);
                end.checked_sub(1)
                    .and_then(|i| ranges.get(i))
                    .is_some_and(|&(_, b)| b >= r.lsn)
            }
        });
        if !listed || tombstone(r).is_some() {
            continue;
        }
        match stream.delete_message(r.stream_seq).await {
            Ok(_) => out.deleted += 1,
            // Already gone (purged above, or by an earlier run).
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(target.server_error("deleting a deleted record", e)),
        }
    }
    Ok(out)
}

/// Whether `r` is a tombstone, and then whether it deletes its session
/// whole and the ranges it lists.
fn tombstone(r: &FleetRecord) -> Option<(bool, Vec<(u64, u64)>)> {
    match r.decode().ok()?.event {
        SessionEvent::SessionDeleted {
            after_lsn, ranges, ..
        } => {
            // Sorted and merged, for a binary search.
            let mut sorted: Vec<(u64, u64)> = ranges.into_iter().filter(|(a, b)| a <= b).collect();
            sorted.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
            for (a, b) in sorted {
                match merged.last_mut() {
                    Some((_, end)) if a <= end.saturating_add(1) => *end = (*end).max(b),
                    _ => merged.push((a, b)),
                }
            }
            Some((after_lsn == Some(0), merged))
        }
        _ => None,
    }
}

/// Whether the server says the message is not there (JetStream error
/// codes 10057 "no message found", 10043 "sequence not found").
fn is_not_found(e: &async_nats::jetstream::stream::DeleteMessageError) -> bool {
    use async_nats::jetstream::stream::DeleteMessageErrorKind;
    match e.kind() {
        DeleteMessageErrorKind::JetStream(err) => {
            matches!(err.error_code().0, 10043 | 10057)
        }
        _ => false,
    }
}
