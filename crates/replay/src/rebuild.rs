//! Rebuilding one session's full state from a log ([`session_state`]),
//! naming it by its id or by a prefix of it.

use std::collections::BTreeSet;
use std::path::Path;

use std::ops::ControlFlow;

use logbook_wal::{Item as WalkItem, Reader, WalError};
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, Sessions, SkippedRecords, scan};
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
    let mut state = SessionState::new(session);
    let report = scan(
        dir.as_ref(),
        Sessions::One(session),
        on_corruption,
        |item| match item {
            Item::Event(record) => state.apply(&record),
            Item::Skipped {
                lsn, timestamp_us, ..
            } => state.note_skipped(lsn, timestamp_us),
        },
    )?;
    if report.records == 0 {
        return Err(ReplayError::UnknownSession(session));
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
    let prefix = prefix.to_ascii_lowercase();
    let matches = |id: &Uuid| has_prefix(id, &prefix);
    // Every matching id; the state of the first only while it is the only
    // one (several make the prefix ambiguous: memory stays one state).
    let mut matched: BTreeSet<Uuid> = BTreeSet::new();
    let mut state: Option<SessionState> = None;
    let report = scan(
        dir.as_ref(),
        Sessions::Matching(&matches),
        on_corruption,
        |item| {
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
        (1, Some(state)) => Ok((
            state,
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
    let dir = dir.as_ref();
    let prefix = prefix.to_ascii_lowercase();
    let mut reader = Reader::open(dir).map_err(|e| ReplayError::wal("opening", dir, e))?;
    let mut seen = BTreeSet::new();
    let mut last = None;
    let _: ControlFlow<()> = reader
        .walk(|item| {
            if let WalkItem::Record(record) = item {
                // Sessions come in runs: test each run's id once.
                if last != Some(record.session) {
                    last = Some(record.session);
                    if has_prefix(&record.session, &prefix) {
                        seen.insert(record.session);
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| ReplayError::wal("reading", dir, e))?;
    Ok(seen.into_iter().collect())
}
