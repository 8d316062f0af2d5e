//! Rebuilding one session's full state from a log ([`session_state`]),
//! naming it by its id or by a prefix of it.

use std::collections::BTreeSet;
use std::path::Path;

use std::ops::ControlFlow;

use logbook_wal::{Lsn, WalError};
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, Sessions, SkippedRecords, scan_in};
use crate::source::{Source, SourceItem};
use crate::state::SessionState;

/// The full [`SessionState`] of `session`, rebuilt from the log in `dir`.
///
/// One streaming pass over the log: records of other sessions are skipped
/// before they are decoded, and memory is bounded by the state being built,
/// never by the size of the log. Records of the session that this build
/// cannot decode are counted in
/// [`SessionState::skipped_records`]. The state's status is the records'
/// own; use [`SessionState::status_given`] with
/// [`logbook_wal::is_locked`] to tell an interrupted session from a
/// running one.
///
/// # Errors
///
/// [`ReplayError::UnknownSession`] if the log holds no record of
/// `session`; [`ReplayError::Wal`] if the log cannot be opened or read,
/// corruption included; [`ReplayError::Undecodable`] for a record of the
/// session that passed its checksum but holds no event.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{Role, SessionStatus, session_state};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("2 + 2?".into()))?;
/// wal.append(id, &SessionEvent::TextComplete("4".into()))?;
/// wal.append(id, &SessionEvent::Done)?;
///
/// let state = session_state(dir.path(), id)?;
/// assert_eq!(state.status(), &SessionStatus::Completed);
/// assert_eq!(state.transcript()[1].role, Role::Assistant);
/// assert_eq!(state.last_lsn(), Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn session_state(dir: impl AsRef<Path>, session: Uuid) -> Result<SessionState, ReplayError> {
    session_state_with(dir, session, OnCorruption::Fail).map(|(state, _)| state)
}

/// The records of `session` in the log in `dir`, in LSN order, as events:
/// what an application that keeps its own state in a session (a
/// checkpointer, a conversation store) reads back. Read through the
/// segments' session indexes (`logbook_wal::Reader::session`): the other
/// sessions' records are not read where a segment has an index. Records a
/// tombstone deletes are left out, and so are the tombstones; records of
/// an event kind this build does not know are skipped (as in
/// [`session_state`]). An unknown session has no records: the answer is
/// empty, not an error.
///
/// # Errors
///
/// [`ReplayError::Wal`] if the log cannot be opened or read, corruption
/// included; [`ReplayError::Undecodable`] for a record of the session
/// that passed its checksum but holds no event.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{delete_after, session_events};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// let kept = wal.append(id, &SessionEvent::UserMessage("one".into()))?;
/// wal.append(id, &SessionEvent::UserMessage("two".into()))?;
/// delete_after(&wal, id, kept)?;
/// let events: Vec<SessionEvent> = session_events(dir.path(), id)?.into_iter().map(|r| r.event).collect();
/// assert_eq!(events, [SessionEvent::UserMessage("one".into())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn session_events(
    dir: impl AsRef<Path>,
    session: Uuid,
) -> Result<Vec<logbook_wal::EventRecord>, ReplayError> {
    session_events_from(dir.as_ref(), session, 0, None)
}

/// The last `n` of the records of `session` that `keep` accepts, in LSN
/// order: the same as the last `n` of [`session_events`] filtered by
/// `keep`, read from the end. The session indexes tell where its latest
/// records start (`logbook_wal::Reader::session_starts`); the log is read
/// forwards from there (every record checked as always), and further
/// back, twice as far each time, while fewer than `n` records that `keep`
/// accepts survive the deletions read (a tombstone covers only LSNs below
/// its own, so the tombstones that delete a record read are read too).
/// Its cost is O(n) records where little of the session's end is deleted,
/// not O(the session).
///
/// An encrypted log is read forwards whole, as [`session_events`] does:
/// a reader with keys opens every record of an encrypted segment in order
/// to check the log's chain, and does not trust its index.
///
/// # Errors
///
/// As [`session_events`].
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{delete_records, session_tail};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// let mut lsns = Vec::new();
/// for text in ["one", "two", "three", "four"] {
///     lsns.push(wal.append(id, &SessionEvent::UserMessage(text.into()))?);
/// }
/// delete_records(&wal, id, &[lsns[3]])?;
/// let last: Vec<SessionEvent> = session_tail(dir.path(), id, 2, |_| true)?
///     .into_iter()
///     .map(|r| r.event)
///     .collect();
/// assert_eq!(last, [SessionEvent::UserMessage("two".into()), SessionEvent::UserMessage("three".into())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn session_tail(
    dir: impl AsRef<Path>,
    session: Uuid,
    n: usize,
    keep: impl Fn(&logbook_wal::EventRecord) -> bool,
) -> Result<Vec<logbook_wal::EventRecord>, ReplayError> {
    let dir = dir.as_ref();
    if n == 0 {
        return Ok(Vec::new());
    }
    let last_n = |records: Vec<logbook_wal::EventRecord>| {
        let mut kept: Vec<_> = records.into_iter().filter(|r| keep(r)).collect();
        let cut = kept.len().saturating_sub(n);
        kept.drain(..cut);
        kept
    };
    let reader = logbook_wal::Reader::open(dir).map_err(|e| ReplayError::wal("opening", dir, e))?;
    let mut starts = reader.session_starts(session);
    let mut opened = Some(reader);
    // One start past the `n`th: the first may be where an index stops,
    // with nothing after it.
    let mut step = n.saturating_add(1);
    let mut from = None;
    loop {
        let mut exhausted = false;
        for _ in 0..step {
            match starts.next() {
                Some(lsn) => from = Some(lsn),
                None => {
                    exhausted = true;
                    break;
                }
            }
        }
        if starts.encrypted() {
            return session_events(dir, session).map(last_n);
        }
        // Out of starts: the read from the first (the session's first
        // record or below) is the whole read.
        let from = if exhausted { 0 } else { from.unwrap_or(0) };
        // The first round reads with the reader already open.
        let read = session_events_from(dir, session, from, opened.take())?;
        let kept = last_n(read);
        if kept.len() >= n || from == 0 {
            return Ok(kept);
        }
        // Twice as far back.
        step = step.saturating_mul(2);
    }
}

/// [`session_events`] from LSN `from` on (a tombstone covers only LSNs
/// below its own: the deletions of what is read are read with it).
fn session_events_from(
    dir: &Path,
    session: Uuid,
    from: Lsn,
    opened: Option<logbook_wal::Reader>,
) -> Result<Vec<logbook_wal::EventRecord>, ReplayError> {
    // One pass: a tombstone deletes only records of its own session, so the
    // session's own records hold every tombstone that applies to them.
    let source = Source::Dir(dir.to_path_buf());
    let mut reader = match opened {
        // A reader of `dir` that has read nothing yet.
        Some(reader) => crate::source::SourceReader::of_reader(reader, dir),
        None => source.reader()?,
    }
    .session(session);
    if from > 0 {
        reader = reader.from_lsn(from);
    }
    let mut read = Vec::new();
    let mut deletions = crate::deleted::LogDeletions::default();
    crate::scan::scan_reader(
        &source.path(),
        &mut reader,
        Sessions::One(session),
        OnCorruption::Fail,
        |item, _, _, log| {
            if let Item::Event(e) = item {
                deletions.note(log, e.session, e.lsn, &e.event);
                read.push((log, e));
            }
        },
    )?;
    Ok(read
        .into_iter()
        .filter(|(log, e)| !e.event.is_tombstone() && !deletions.covers(*log, e.session, e.lsn))
        .map(|(_, e)| e)
        .collect())
}

/// What [`session_state_with`] stepped over to rebuild a session from a
/// damaged log (empty with [`OnCorruption::Fail`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Damage {
    /// Corruption the reader reported and the rebuild skipped: the first
    /// [`MAX_REPORTED`](crate::MAX_REPORTED) errors. A damaged record's
    /// session is unknown: it may be this session's.
    pub corruption: Vec<WalError>,
    /// How many corruption errors were skipped in all.
    pub corruption_count: u64,
    /// Records of the session that passed their checksum but hold no event.
    pub undecodable: SkippedRecords,
}

impl Damage {
    /// Whether nothing was skipped.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.corruption_count == 0 && self.undecodable.count == 0
    }
}

/// [`session_state`], choosing what happens on corruption: with
/// [`OnCorruption::Skip`] the rebuild goes on past damage, as far as the
/// reader can resynchronise, and returns what it skipped beside the state.
///
/// # Errors
///
/// As [`session_state`]; with [`OnCorruption::Skip`], corruption is not
/// an error (only I/O errors and a reader that makes no progress are).
pub fn session_state_with(
    dir: impl AsRef<Path>,
    session: Uuid,
    on_corruption: OnCorruption,
) -> Result<(SessionState, Damage), ReplayError> {
    session_state_until(dir, session, on_corruption, None)
}

/// Where a time-travelling replay stops (inclusive).
///
/// # Examples
///
/// ```
/// use logbook_replay::Until;
///
/// assert_ne!(Until::Lsn(5), Until::Time(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Until {
    /// The session's records up to and including this LSN.
    Lsn(Lsn),
    /// The session's records appended at or before this time, µs since
    /// the Unix epoch.
    Time(u64),
}

impl Until {
    fn includes(self, lsn: Lsn, timestamp_us: u64) -> bool {
        match self {
            Until::Lsn(at) => lsn <= at,
            Until::Time(at) => timestamp_us <= at,
        }
    }
}

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Until::Lsn(lsn) => write!(f, "LSN {lsn}"),
            Until::Time(us) => write!(f, "{us} µs since the epoch"),
        }
    }
}

/// The state of `session` as it was at LSN `at`: the fold of its records
/// up to and including that LSN (time travel). Records after it are read
/// past, not applied.
///
/// # Errors
///
/// As [`session_state`], [`ReplayError::BeforeSession`] if the
/// session's first record comes after `at`, and [`ReplayError::PastEnd`]
/// if `at` is past the log's last durable record.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{SessionStatus, session_state_at};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("2 + 2?".into()))?; // LSN 1
/// let answer = wal.append(id, &SessionEvent::TextComplete("4".into()))?; // LSN 2
/// wal.append(id, &SessionEvent::Done)?; // LSN 3
///
/// let then = session_state_at(dir.path(), id, answer)?;
/// assert_eq!(then.transcript().len(), 2);
/// assert_eq!(then.status(), &SessionStatus::Running);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn session_state_at(
    dir: impl AsRef<Path>,
    session: Uuid,
    at: Lsn,
) -> Result<SessionState, ReplayError> {
    session_state_until(dir, session, OnCorruption::Fail, Some(Until::Lsn(at))).map(|(s, _)| s)
}

/// [`session_state_with`], stopping at `until` (all of the session's
/// records if `None`): [`session_state_at`] for a point given as an LSN or
/// a time, choosing what happens on corruption.
///
/// # Errors
///
/// As [`session_state_with`], [`ReplayError::BeforeSession`] if the
/// session has no record at or before `until`, and
/// [`ReplayError::PastEnd`] if `until` is an LSN past the log's last
/// durable record.
pub fn session_state_until(
    dir: impl AsRef<Path>,
    session: Uuid,
    on_corruption: OnCorruption,
    until: Option<Until>,
) -> Result<(SessionState, Damage), ReplayError> {
    session_state_in(
        &Source::Dir(dir.as_ref().to_path_buf()),
        session,
        on_corruption,
        until,
    )
}

/// [`session_state_until`] of any [`Source`]: a log directory, one segment
/// file, or records read elsewhere (a stream: the session's records from
/// every log that holds them, in the order they were written).
///
/// # Errors
///
/// As [`session_state_until`].
pub fn session_state_in(
    source: &Source,
    session: Uuid,
    on_corruption: OnCorruption,
    until: Option<Until>,
) -> Result<(SessionState, Damage), ReplayError> {
    if let (Some(Until::Lsn(at)), Source::Dir(dir)) = (until, source) {
        let last = crate::scan::last_lsn(dir)?;
        if at > last {
            return Err(ReplayError::PastEnd { lsn: at, last });
        }
    }
    let mut state = SessionState::new(session);
    let mut first_lsn = None;
    let report = scan_in(
        source,
        0,
        Sessions::One(session),
        on_corruption,
        |item, _, _, _| {
            let (lsn, timestamp_us) = match &item {
                Item::Event(record) => (record.lsn, record.timestamp_us),
                Item::Skipped {
                    lsn, timestamp_us, ..
                } => (*lsn, *timestamp_us),
            };
            first_lsn.get_or_insert(lsn);
            if until.is_some_and(|u| !u.includes(lsn, timestamp_us)) {
                return;
            }
            match item {
                Item::Event(record) => state.apply(&record),
                Item::Skipped {
                    lsn, timestamp_us, ..
                } => state.note_skipped(lsn, timestamp_us),
            }
        },
    )?;
    if report.records == 0 {
        return Err(ReplayError::UnknownSession(session));
    }
    state.note_deleted(report.deleted.count);
    if let Some(start) = crate::scan::view_start(source)? {
        state.note_log_start(start);
    }
    if let (true, Some(tombstone_lsn)) = (state.is_deleted(), state.last_tombstone()) {
        return Err(ReplayError::DeletedSession {
            session,
            tombstone_lsn,
        });
    }
    if let (Some(until), None, Some(first_lsn)) = (until, state.first_lsn(), first_lsn) {
        return Err(ReplayError::BeforeSession {
            session,
            at: until.to_string(),
            first_lsn,
        });
    }
    let damage = Damage {
        corruption: report.corruption,
        corruption_count: report.corruption_count,
        undecodable: report.undecodable,
    };
    Ok((state, damage))
}

/// [`session_state_with`] for the one session whose id starts with
/// `prefix` (hex digits and hyphens, as a UUID is written), found and
/// rebuilt in the same single pass over the log.
///
/// # Errors
///
/// [`ReplayError::NoSessionWithPrefix`] if no session's id starts with
/// `prefix`; [`ReplayError::AmbiguousPrefix`] (listing them) if several
/// do; otherwise as [`session_state_with`].
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{OnCorruption, session_state_by_prefix};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::parse_str("0123abcd-0000-4000-8000-000000000000")?;
/// wal.append(id, &SessionEvent::Done)?;
/// let (state, _) = session_state_by_prefix(dir.path(), "0123", OnCorruption::Fail)?;
/// assert_eq!(state.session_id(), id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn session_state_by_prefix(
    dir: impl AsRef<Path>,
    prefix: &str,
    on_corruption: OnCorruption,
) -> Result<(SessionState, Damage), ReplayError> {
    session_state_by_prefix_in(
        &Source::Dir(dir.as_ref().to_path_buf()),
        prefix,
        on_corruption,
    )
}

/// [`session_state_by_prefix`] of any [`Source`] (see
/// [`session_state_in`]).
///
/// # Errors
///
/// As [`session_state_by_prefix`].
pub fn session_state_by_prefix_in(
    source: &Source,
    prefix: &str,
    on_corruption: OnCorruption,
) -> Result<(SessionState, Damage), ReplayError> {
    let prefix = prefix.to_ascii_lowercase();
    let matches = |id: &Uuid| has_prefix(id, &prefix);
    // Every matching id; the state of the first only while it is the only
    // one (several make the prefix ambiguous: memory stays one state).
    let mut matched: BTreeSet<Uuid> = BTreeSet::new();
    let mut state: Option<SessionState> = None;
    let report = scan_in(
        source,
        0,
        Sessions::Matching(&matches),
        on_corruption,
        |item, _, _, _| {
            let session = match &item {
                Item::Event(record) => record.session,
                Item::Skipped { session, .. } => *session,
            };
            matched.insert(session);
            if matched.len() > 1 {
                state = None;
                return;
            }
            let state = state.get_or_insert_with(|| SessionState::new(session));
            match item {
                Item::Event(record) => state.apply(&record),
                Item::Skipped {
                    lsn, timestamp_us, ..
                } => state.note_skipped(lsn, timestamp_us),
            }
        },
    )?;
    match (matched.len(), state) {
        (1, Some(state)) if state.is_deleted() => Err(ReplayError::DeletedSession {
            session: state.session_id(),
            tombstone_lsn: state.last_tombstone().unwrap_or_default(),
        }),
        (1, Some(mut state)) => Ok((
            {
                state.note_deleted(report.deleted.count);
                if let Some(start) = crate::scan::view_start(source)? {
                    state.note_log_start(start);
                }
                state
            },
            Damage {
                corruption: report.corruption,
                corruption_count: report.corruption_count,
                undecodable: report.undecodable,
            },
        )),
        (0, _) => Err(ReplayError::NoSessionWithPrefix(prefix)),
        _ => Err(ReplayError::AmbiguousPrefix {
            prefix,
            sessions: matched.into_iter().collect(),
        }),
    }
}

/// Whether `id`, written as a UUID in lower case, starts with `prefix`
/// (already lower case).
fn has_prefix(id: &Uuid, prefix: &str) -> bool {
    let mut buf = Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut buf).starts_with(prefix)
}

/// The sessions of the log in `dir` whose id starts with `prefix`, in id
/// order: one pass over the records' headers, no payload decoded.
/// Damaged records are stepped over (their session is unknown).
///
/// # Errors
///
/// [`ReplayError::Wal`] if the log cannot be opened or read (I/O);
/// [`ReplayError::NoLog`] if there is none.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::parse_str("0123abcd-0000-4000-8000-000000000000")?;
/// wal.append(id, &SessionEvent::Done)?;
/// assert_eq!(logbook_replay::sessions_with_prefix(dir.path(), "0123")?, [id]);
/// assert!(logbook_replay::sessions_with_prefix(dir.path(), "9")?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sessions_with_prefix(dir: impl AsRef<Path>, prefix: &str) -> Result<Vec<Uuid>, ReplayError> {
    sessions_with_prefix_in(&Source::Dir(dir.as_ref().to_path_buf()), prefix)
}

/// [`sessions_with_prefix`] of any [`Source`].
///
/// # Errors
///
/// As [`sessions_with_prefix`].
pub fn sessions_with_prefix_in(source: &Source, prefix: &str) -> Result<Vec<Uuid>, ReplayError> {
    let prefix = prefix.to_ascii_lowercase();
    let mut reader = source.reader()?;
    let mut seen = BTreeSet::new();
    let mut last = None;
    let _: ControlFlow<()> = reader.walk(|item| {
        if let SourceItem::Record { record, .. } = item {
            // Sessions come in runs: test each run's id once.
            if last != Some(record.session) {
                last = Some(record.session);
                if has_prefix(&record.session, &prefix) {
                    seen.insert(record.session);
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(seen.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{SESSION, event, small_log};
    use logbook_wal::EventRecord;
    use logbook_wal::Reader;
    use proptest::prelude::*;

    /// The session's records, read back (real LSNs and times), and the log.
    fn log_of(events: &[(SessionEvent, bool)]) -> (tempfile::TempDir, Vec<EventRecord>) {
        let dir = tempfile::tempdir().unwrap();
        let wal = small_log(dir.path());
        let other = Uuid::from_u128(7);
        for (e, ours) in events {
            wal.append(if *ours { SESSION } else { other }, e).unwrap();
        }
        wal.close().unwrap();
        let mut mine = Vec::new();
        let mut reader = Reader::open(dir.path()).unwrap();
        while let Some(r) = reader.next_ref() {
            let r = r.unwrap();
            if r.session == SESSION {
                mine.push(EventRecord::decode(&r).unwrap());
            }
        }
        (dir, mine)
    }

    /// `got` is the model's state `want`; or, where the records up to
    /// the point delete the session (the generator writes tombstones
    /// too), it is refused as deleted, naming the last tombstone.
    fn agrees(
        got: Result<SessionState, ReplayError>,
        want: &SessionState,
    ) -> Result<(), TestCaseError> {
        match got {
            Ok(state) => {
                prop_assert!(!want.is_deleted(), "a deleted session's state was returned");
                prop_assert_eq!(&state, want);
            }
            Err(ReplayError::DeletedSession { tombstone_lsn, .. }) => {
                prop_assert!(want.is_deleted(), "a live session refused as deleted");
                prop_assert_eq!(Some(tombstone_lsn), want.last_tombstone());
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
        Ok(())
    }

    fn fold(records: &[EventRecord], until: Until) -> SessionState {
        let mut state = SessionState::new(SESSION);
        // Its own reading of "up to", not the library's.
        let keep = |r: &&EventRecord| match until {
            Until::Lsn(k) => r.lsn <= k,
            Until::Time(t) => r.timestamp_us <= t,
        };
        for r in records.iter().filter(keep) {
            state.apply(r);
        }
        state
    }

    use logbook_bus::SessionEvent;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The state at LSN k (or at time t) is the fold of the session's
        /// records up to k (appended at or before t); before its first
        /// record there is none.
        #[test]
        fn state_at_a_point_is_the_fold_of_the_records_up_to_it(
            events in prop::collection::vec((event(), any::<bool>()), 1..80),
            at in any::<prop::sample::Index>(),
        ) {
            let (dir, mine) = log_of(&events);
            prop_assume!(!mine.is_empty());
            let k = at.index(events.len() + 1) as Lsn;
            let by_lsn = session_state_until(dir.path(), SESSION, OnCorruption::Fail, Some(Until::Lsn(k)));
            if k < mine[0].lsn {
                let is_before = matches!(by_lsn, Err(ReplayError::BeforeSession { first_lsn, .. }) if first_lsn == mine[0].lsn);
                prop_assert!(is_before);
            } else {
                let want = fold(&mine, Until::Lsn(k));
                agrees(by_lsn.map(|(state, _)| state), &want)?;
                agrees(session_state_at(dir.path(), SESSION, k), &want)?;
            }
            let t = mine[at.index(mine.len())].timestamp_us;
            let by_time = session_state_until(dir.path(), SESSION, OnCorruption::Fail, Some(Until::Time(t)));
            agrees(by_time.map(|(state, _)| state), &fold(&mine, Until::Time(t)))?;
            // At the log's last LSN: the whole session; past it: refused.
            let last = events.len() as Lsn;
            let whole = fold(&mine, Until::Lsn(last));
            agrees(session_state_at(dir.path(), SESSION, last), &whole)?;
            agrees(session_state(dir.path(), SESSION), &whole)?;
            let past = session_state_at(dir.path(), SESSION, last + 1);
            prop_assert!(
                matches!(past, Err(ReplayError::PastEnd { lsn, last: l }) if lsn == last + 1 && l == last),
                "{:?}", past
            );
        }
    }
}
