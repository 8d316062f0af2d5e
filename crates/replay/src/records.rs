//! Listing sessions from records that come from elsewhere than a local
//! log directory (a stream holding many logs): [`summarize`].

use std::collections::HashMap;

use logbook_wal::RecordRef;
use uuid::Uuid;

use crate::list::{LogSummary, Tally};
use crate::scan::{SkippedRecords, Undecodable, decode};

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
    for record in records {
        count = count.saturating_add(1);
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
    LogSummary {
        sessions: tallies.into_iter().map(|t| t.finish(writer_live)).collect(),
        writer_live,
        records: count,
        unknown,
        undecodable,
        corruption: Vec::new(),
        corruption_count: 0,
        tail_damage: None,
    }
}
