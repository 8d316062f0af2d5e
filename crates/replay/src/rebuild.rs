//! Rebuilding one session's full state from a log: [`session_state`].

use std::path::Path;

use logbook_wal::WalError;
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, SkippedRecords, scan};
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
        Some(session),
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
