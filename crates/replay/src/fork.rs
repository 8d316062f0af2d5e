//! Forking a session at a point of its history ([`fork`]): a new session
//! that starts with a durable `SessionForked` record and a copy of the
//! original's events up to that point, so that it can be resumed and
//! diverge while the original stays as it was.

use logbook_bus::SessionEvent;
use logbook_wal::{Lsn, Wal};
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, Sessions, scan};

/// A fork, as [`fork`] made it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forked {
    /// The new session.
    pub session: Uuid,
    /// The session it was forked from.
    pub from: Uuid,
    /// The last LSN of `from` its history includes.
    pub at_lsn: Lsn,
    /// The LSN of its `SessionForked` record (its first; its second, after
    /// a truncation mark, when the original was truncated, see
    /// [`Forked::truncated`]).
    pub forked_lsn: Lsn,
    /// Events copied after it.
    pub copied: u64,
    /// Whether the original's beginning was retained away
    /// (`SessionState::truncated`): the fork then begins with a truncation
    /// mark (`SessionTruncated`) before its `SessionForked` record, so that
    /// it is marked truncated as the original is, in this log and wherever
    /// its records go (an export, the stream, a pull), never passed off as
    /// whole.
    pub truncated: bool,
}

/// Fork `session` at `at_lsn`: append, as one batch, a new session's
/// durable `SessionForked { from: session, at_lsn }` record followed by a
/// copy of every event of `session` up to and including LSN `at_lsn`, in
/// order; return once they are durable (whatever the log's sync policy).
/// The original is not changed; the fork can be resumed
/// ([`resume`](crate::resume)) and go its own way. `at_lsn` need not be one
/// of the session's own LSNs: its records at or before it are copied.
///
/// Whatever this writer appended before the call is made durable first
/// (readers see durable records only), so the copy misses none of them.
/// The copy holds the events, not the records: the fork's records get new
/// LSNs and times (the original's are in its history, where
/// `SessionState::forked_from` points). A crash before `fork` returns can
/// leave a prefix of the batch, as for any append not yet acknowledged.
///
/// A fork of a session whose beginning was retained away (truncated) lacks
/// that beginning too: it is written with a truncation mark
/// (`SessionTruncated`) first, then the `SessionForked` record and the
/// copy, so listings and replay mark it truncated
/// (`SessionState::truncated`), as they mark the original. The copy holds
/// no tombstone and no truncation mark of the original.
///
/// # Errors
///
/// [`ReplayError::PastEnd`] if `at_lsn` is past the log's last record
/// (nothing is appended); [`ReplayError::UnknownSession`] if the log holds
/// no record of `session`; [`ReplayError::DeletedSession`] if every record
/// of it is deleted; [`ReplayError::BeforeSession`] if its first
/// record comes after `at_lsn`; [`ReplayError::CannotCopy`] if a record to copy is of an
/// event kind this build does not know (it cannot be copied faithfully);
/// [`ReplayError::Undecodable`] if one does not decode at all; [`ReplayError::Wal`] if the log cannot be read or the
/// batch cannot be appended and synced. Nothing is appended unless every
/// record to copy was read.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{fork, session_state};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("plan A?".into()))?;
/// let at = wal.append(id, &SessionEvent::TextComplete("A it is".into()))?;
/// wal.append(id, &SessionEvent::UserMessage("actually, no".into()))?;
///
/// let forked = fork(&wal, id, at)?;
/// wal.append(forked.session, &SessionEvent::UserMessage("plan B then".into()))?;
///
/// let state = session_state(dir.path(), forked.session)?;
/// assert_eq!(state.forked_from(), Some((id, at)));
/// let said: Vec<&str> = state.transcript().iter().map(|e| e.text.as_str()).collect();
/// assert_eq!(said, ["plan A?", "A it is", "plan B then"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fork(wal: &Wal, session: Uuid, at_lsn: Lsn) -> Result<Forked, ReplayError> {
    fork_as(wal, session, at_lsn, Uuid::new_v4())
}

/// [`fork`] into the session `new` chosen by the caller instead of a
/// random one: for an application whose sessions have ids of its own
/// making (a LangGraph thread copied to a thread it names). `new` must
/// hold no record yet (a session whose records were all deleted may be
/// reused): the fork's records would otherwise be merged into its
/// history.
///
/// # Errors
///
/// As [`fork`], and [`ReplayError::ForkTargetExists`] if `new` is
/// `session` or already has records that are not deleted (nothing is
/// appended).
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{fork_as, session_state};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let (id, copy) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
/// let at = wal.append(id, &SessionEvent::UserMessage("hi".into()))?;
/// assert_eq!(fork_as(&wal, id, at, copy)?.session, copy);
/// assert_eq!(session_state(dir.path(), copy)?.forked_from(), Some((id, at)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fork_as(wal: &Wal, session: Uuid, at_lsn: Lsn, new: Uuid) -> Result<Forked, ReplayError> {
    let dir = wal.dir();
    if new == session {
        return Err(ReplayError::ForkTargetExists {
            session: new,
            from: session,
            existing: 0,
        });
    }
    // Readers return durable records only: make what this writer appended
    // so far durable, so that the history up to `at_lsn` is all there.
    let durable = wal
        .sync()
        .map_err(|e| ReplayError::wal("syncing before a fork in", dir, e))?;
    if at_lsn > durable {
        return Err(ReplayError::PastEnd {
            lsn: at_lsn,
            last: durable,
        });
    }
    // Through the segments' session index: a new id costs next to nothing.
    let existing = crate::rebuild::session_events(dir, new)?.len() as u64;
    if existing > 0 {
        return Err(ReplayError::ForkTargetExists {
            session: new,
            from: session,
            existing,
        });
    }
    let mut events = Vec::new();
    let mut first_lsn = None;
    let mut undecodable = None;
    // Whether the session's first record is a beginning, or a truncation
    // mark: the rule of `SessionState::truncated`.
    let (mut began, mut marked) = (false, false);
    // The latest tombstone, and whether any record of the session (at
    // any LSN) is not deleted: none is a deleted session.
    let (mut last_tombstone, mut visible) = (None, false);
    let report = scan(dir, Sessions::One(session), OnCorruption::Fail, |item| {
        let lsn = match &item {
            Item::Event(record) => record.lsn,
            Item::Skipped { lsn, .. } => *lsn,
        };
        if let Item::Event(record) = &item {
            if record.event.is_tombstone() {
                last_tombstone = Some(lsn);
            } else if !record.event.is_truncation_mark() {
                visible = true;
            }
        }
        if first_lsn.is_none() {
            (began, marked) = match &item {
                Item::Event(record) => (
                    record.event.is_beginning(),
                    record.event.is_truncation_mark(),
                ),
                Item::Skipped { .. } => (false, false),
            };
        }
        first_lsn.get_or_insert(lsn);
        if lsn > at_lsn {
            return;
        }
        match item {
            // A tombstone's LSNs are the original's: the fork copies only
            // what was not deleted, and no tombstone. A truncation mark
            // means something only first: the fork writes its own.
            Item::Event(record)
                if record.event.is_tombstone() || record.event.is_truncation_mark() => {}
            Item::Event(record) => events.push(record.event),
            Item::Skipped { lsn, .. } => {
                undecodable.get_or_insert(lsn);
            }
        }
    })?;
    let Some(first_lsn) = first_lsn.filter(|_| report.records > 0) else {
        return Err(ReplayError::UnknownSession(session));
    };
    // Every record of it deleted (as `replay` says): nothing to fork.
    if let (false, None, Some(tombstone_lsn)) = (visible, undecodable, last_tombstone) {
        return Err(ReplayError::DeletedSession {
            session,
            tombstone_lsn,
        });
    }
    if first_lsn > at_lsn {
        return Err(ReplayError::BeforeSession {
            session,
            at: format!("LSN {at_lsn}"),
            first_lsn,
        });
    }
    if let Some(lsn) = undecodable {
        return Err(ReplayError::CannotCopy { session, lsn });
    }
    let truncated =
        marked || crate::state::cut_short(crate::scan::log_start(dir)?, first_lsn, began);
    let copied = events.len() as u64;
    let mark = truncated.then(|| SessionEvent::SessionTruncated {
        reason: format!("a fork of session {session}, whose beginning was retained away"),
    });
    let forked = SessionEvent::SessionForked {
        from: session,
        at_lsn,
    };
    let batch: Vec<(Uuid, SessionEvent)> = mark
        .into_iter()
        .chain(std::iter::once(forked))
        .chain(events)
        .map(|event| (new, event))
        .collect();
    let lsns = wal
        .append_many(&batch)
        .map_err(|e| ReplayError::wal("appending a fork to", dir, e))?;
    // Durable whatever the log's policy (under `Always` this returns at once).
    wal.sync()
        .map_err(|e| ReplayError::wal("syncing a fork in", dir, e))?;
    Ok(Forked {
        session: new,
        from: session,
        at_lsn,
        forked_lsn: lsns
            .get(usize::from(truncated))
            .copied()
            .unwrap_or_default(),
        copied,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rebuild::{session_state, session_state_at};
    use crate::state::SessionState;
    use crate::testgen::{SESSION, pooled_event, small_log};
    use proptest::prelude::*;

    /// What a fork must share with the original at the fork point: all but
    /// LSNs, times, the id, and the fork record itself.
    fn history(s: &SessionState) -> impl PartialEq + std::fmt::Debug {
        (
            s.transcript()
                .iter()
                .map(|e| (e.role, e.text.clone()))
                .collect::<Vec<_>>(),
            s.tool_calls()
                .map(|c| (c.id.clone(), c.name.clone(), c.is_pending()))
                .collect::<Vec<_>>(),
            s.tokens().total(),
            s.status().clone(),
            s.model().map(str::to_owned),
            s.title().map(str::to_owned),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// A fork at any point holds the original's history as it was
        /// there, then goes its own way; the original is not changed.
        #[test]
        fn a_fork_is_the_original_at_the_point_then_diverges(
            events in prop::collection::vec((pooled_event(), any::<bool>()), 1..60),
            at in any::<prop::sample::Index>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let wal = small_log(dir.path());
            let other = Uuid::from_u128(7);
            let mut lsns = Vec::new();
            for (e, ours) in &events {
                let lsn = wal.append(if *ours { SESSION } else { other }, e).unwrap();
                if *ours {
                    lsns.push(lsn);
                }
            }
            prop_assume!(!lsns.is_empty());
            let at_lsn = lsns[at.index(lsns.len())];
            let before = session_state(dir.path(), SESSION).unwrap();
            let forked = fork(&wal, SESSION, at_lsn).unwrap();
            wal.append(forked.session, &SessionEvent::UserMessage("the fork's own".into())).unwrap();
            let mine = session_state_at(dir.path(), forked.session, forked.forked_lsn + forked.copied).unwrap();
            let then = session_state_at(dir.path(), SESSION, at_lsn).unwrap();
            prop_assert_eq!(history(&mine), history(&then));
            prop_assert_eq!(mine.forked_from(), Some((SESSION, at_lsn)));
            prop_assert_eq!(mine.first_lsn(), Some(forked.forked_lsn));
            prop_assert_eq!(mine.events(), then.events() + 1);
            prop_assert_eq!(forked.copied, then.events());
            let now = session_state(dir.path(), forked.session).unwrap();
            prop_assert_eq!(now.transcript().last().map(|e| e.text.as_str()), Some("the fork's own"));
            prop_assert_eq!(session_state(dir.path(), SESSION).unwrap(), before);
        }
    }

    #[test]
    fn a_fork_needs_a_session_and_a_point_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal = small_log(dir.path());
        wal.append(Uuid::from_u128(1), &SessionEvent::Done).unwrap();
        let second = wal
            .append(SESSION, &SessionEvent::UserMessage("hi".into()))
            .unwrap();
        assert!(matches!(
            fork(&wal, Uuid::from_u128(9), second),
            Err(ReplayError::UnknownSession(_))
        ));
        assert!(matches!(
            fork(&wal, SESSION, second - 1),
            Err(ReplayError::BeforeSession { first_lsn, .. }) if first_lsn == second
        ));
        assert_eq!(wal.last_lsn(), second, "nothing appended");
    }

    /// A fork point past the log's last record is refused, and nothing is
    /// appended (it was stored as "fork of …@9999" for good).
    #[test]
    fn a_fork_past_the_end_of_the_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wal = small_log(dir.path());
        let mut last = 0;
        for i in 0..81 {
            last = wal
                .append(SESSION, &SessionEvent::UserMessage(format!("m{i}")))
                .unwrap();
        }
        assert_eq!(last, 81);
        match fork(&wal, SESSION, 9999) {
            Err(ReplayError::PastEnd {
                lsn: 9999,
                last: 81,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(wal.last_lsn(), 81, "nothing appended");
        assert!(fork(&wal, SESSION, 81).is_ok(), "the last LSN is a point");
    }

    /// A fork into the session itself, or into one that has records, is
    /// refused (the histories would merge), and nothing is appended; a
    /// session whose records were all deleted may take a fork.
    #[test]
    fn a_fork_into_a_session_with_records_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wal = small_log(dir.path());
        let taken = Uuid::from_u128(2);
        let at = wal
            .append(SESSION, &SessionEvent::UserMessage("mine".into()))
            .unwrap();
        wal.append(taken, &SessionEvent::UserMessage("theirs".into()))
            .unwrap();
        let last = wal.last_lsn();
        match fork_as(&wal, SESSION, at, SESSION) {
            Err(e @ ReplayError::ForkTargetExists { .. }) => {
                assert!(e.to_string().contains("into itself"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        match fork_as(&wal, SESSION, at, taken) {
            Err(
                e @ ReplayError::ForkTargetExists {
                    existing: 1,
                    session,
                    from,
                },
            ) => {
                assert_eq!((session, from), (taken, SESSION));
                assert!(e.to_string().contains("already has 1 record(s)"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(wal.last_lsn(), last, "nothing appended");
        crate::delete::delete_session(&wal, taken).unwrap();
        let forked = fork_as(&wal, SESSION, at, taken).unwrap();
        assert_eq!(forked.session, taken);
        assert_eq!(
            session_state(dir.path(), taken).unwrap().forked_from(),
            Some((SESSION, at))
        );
    }
}
