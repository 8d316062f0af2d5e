//! Rebuilding one session's full state from a log: [`session_state`].

use std::path::Path;

use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, scan};
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
    let mut state = SessionState::new(session);
    let report = scan(
        dir.as_ref(),
        Some(session),
        OnCorruption::Fail,
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
    Ok(state)
}
