//! Listing sessions from any [`Source`] ([`list_sessions_in`]), and from
//! records handed one by one ([`summarize`]).

use std::collections::HashMap;

use logbook_wal::RecordRef;
use uuid::Uuid;

use crate::error::ReplayError;
use crate::list::{FromSummaries, LogSummary, Tally};
use crate::scan::{Item, OnCorruption, Sessions, scan_in};
use crate::scan::{SkippedRecords, Undecodable, decode};
use crate::source::Source;

/// The [`LogSummary`] of `records`, with the same rules as
/// [`list_sessions`](crate::list_sessions): one summary per session, in
/// the order of each session's first record here; records of an unknown
/// event kind are counted in `unknown`, records that do not decode in
/// `undecodable`, both skipped. `writer_live` says how sessions without a
/// terminal event show: `Running` if true, `Interrupted` if false.
///
/// The records may come from several logs (their LSNs are then each
/// log's own): give each session's records in the order they were
/// written.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use logbook_bus::{SessionEvent, codec};
/// use logbook_replay::{SessionStatus, summarize};
/// use logbook_wal::RecordRef;
///
/// let id = uuid::Uuid::from_u128(7);
/// let payloads = [codec::encode(&SessionEvent::UserMessage("hi".into()))?, codec::encode(&SessionEvent::Done)?];
/// let records = payloads.iter().zip(1..).map(|(payload, lsn)| RecordRef {
///     lsn, timestamp_us: lsn * 10, sync_mark: 0, session: id, payload,
///     codec_id: codec::CODEC_ID, segment: Path::new("elsewhere"), offset: 0,
///     frame_crc: 0, key_id: None,
/// });
/// let log = summarize(records, false);
/// assert_eq!(log.sessions[0].status, SessionStatus::Completed);
/// assert_eq!(log.sessions[0].title.as_deref(), Some("hi"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn summarize<'a>(
    records: impl IntoIterator<Item = RecordRef<'a>>,
    writer_live: bool,
) -> LogSummary {
    let mut tallies: Vec<Tally> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let mut unknown = SkippedRecords::default();
    let mut undecodable = SkippedRecords::default();
    let mut count = 0u64;
    // A tombstone comes after what it deletes: gather them first.
    let records: Vec<RecordRef<'a>> = records.into_iter().collect();
    let mut deletions = logbook_bus::Deletions::new();
    for record in &records {
        if let Ok(Some(("session_deleted", _))) = logbook_wal::EventRecord::peek_kind(record) {
            if let Ok(e) = decode(record) {
                deletions.note(record.session, record.lsn, &e.event);
            }
        }
    }
    for record in records {
        count = count.saturating_add(1);
        if deletions.covers(record.session, record.lsn)
            && !matches!(
                logbook_wal::EventRecord::peek_kind(&record),
                Ok(Some(("session_deleted", _)))
            )
        {
            continue;
        }
        let i = *index.entry(record.session).or_insert_with(|| {
            tallies.push(Tally::new(record.session, record.lsn, record.timestamp_us));
            tallies.len() - 1
        });
        let Some(t) = tallies.get_mut(i) else {
            continue;
        };
        match decode(&record) {
            Ok(event) => t.apply(&event),
            Err(why) => {
                match why {
                    Undecodable::Unknown => unknown.push(record.lsn),
                    Undecodable::Sealed(_) | Undecodable::Other(_) => undecodable.push(record.lsn),
                }
                t.skip(record.lsn, record.timestamp_us);
            }
        }
    }
    let (sessions, deleted) =
        crate::list::split_deleted(tallies.into_iter().map(|t| t.finish(writer_live)).collect());
    LogSummary {
        sessions,
        deleted,
        writer_live,
        writer_known: true,
        from_summaries: FromSummaries::default(),
        records: count,
        unknown,
        undecodable,
        corruption: Vec::new(),
        corruption_count: 0,
        tail_damage: None,
    }
}

/// Summarise every session of `source`, in one pass: [`list_sessions_with`](crate::list_sessions_with)
/// for a log directory (with its session summaries), the same fold over
/// the records of one segment file or of records read elsewhere (a
/// stream, each session's records from every log that holds them, in the
/// order they were written). For records read elsewhere,
/// [`LogSummary::writer_known`] is false: sessions without a terminal
/// event are `Running` (whether their host is alive is not known), and
/// each session's [`logs`](crate::SessionSummary::logs) are listed.
///
/// # Errors
///
/// As [`list_sessions_with`](crate::list_sessions_with).
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{OnCorruption, Source, list_sessions_in};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// wal.append(uuid::Uuid::nil(), &SessionEvent::Done)?;
/// wal.close()?;
/// let log = list_sessions_in(&Source::of(dir.path()), OnCorruption::Skip)?;
/// assert_eq!(log.sessions.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn list_sessions_in(
    source: &Source,
    on_corruption: OnCorruption,
) -> Result<LogSummary, ReplayError> {
    if let Source::Dir(dir) = source {
        return crate::list::list_sessions_with(dir, on_corruption);
    }
    let liveness = source.writer_live()?;
    let writer_live = liveness.unwrap_or(true);
    let mut tallies: Vec<Tally> = Vec::new();
    let mut logs: Vec<Vec<Uuid>> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let report = scan_in(
        source,
        0,
        Sessions::All,
        on_corruption,
        |item, record, _, log| {
            let i = *index.entry(record.session).or_insert_with(|| {
                tallies.push(Tally::new(record.session, record.lsn, record.timestamp_us));
                logs.push(Vec::new());
                tallies.len() - 1
            });
            if let (Some(log), Some(seen)) = (log, logs.get_mut(i)) {
                if seen.last() != Some(&log) && !seen.contains(&log) {
                    seen.push(log);
                }
            }
            let Some(t) = tallies.get_mut(i) else {
                return;
            };
            match item {
                Item::Event(event) => t.apply(&event),
                Item::Skipped {
                    lsn, timestamp_us, ..
                } => t.skip(lsn, timestamp_us),
            }
        },
    )?;
    let shipped = matches!(source, Source::Shipped(_));
    // A one-segment view: a session begun before its segment is cut short.
    let start = match source {
        Source::Segment(_) => crate::scan::view_start(source)?,
        _ => None,
    };
    let (sessions, deleted) = crate::list::split_deleted(
        tallies
            .into_iter()
            .zip(logs)
            .map(|(t, logs)| {
                let mut s = match start {
                    Some(start) => t.finish_in(writer_live, start),
                    None => t.finish(writer_live),
                };
                if shipped {
                    s.logs = logs;
                }
                s
            })
            .collect(),
    );
    Ok(LogSummary {
        sessions,
        deleted,
        writer_live: liveness.unwrap_or(false),
        writer_known: liveness.is_some(),
        from_summaries: FromSummaries::default(),
        records: report.records,
        unknown: report.unknown,
        undecodable: report.undecodable,
        corruption: report.corruption,
        corruption_count: report.corruption_count,
        tail_damage: report.tail_damage,
    })
}
