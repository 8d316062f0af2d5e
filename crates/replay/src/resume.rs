//! Picking an unfinished session up where it stopped: [`resume`].

use std::time::{SystemTime, UNIX_EPOCH};

use logbook_bus::SessionEvent;
use logbook_wal::{EventRecord, Lsn, Reader, Wal, WalSink};
use uuid::Uuid;

use std::collections::HashMap;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, Sessions, scan};
use crate::state::{SessionState, TranscriptEntry};
use crate::status::SessionStatus;
use crate::tools::ToolCall;

/// What a runtime needs to continue a session: returned by [`resume`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Resumed {
    /// The session's state, rebuilt from the log, with the
    /// `SessionResumed` record applied: its status is `Running`, and it
    /// equals what a later replay rebuilds up to that record.
    pub state: SessionState,
    /// The session's last LSN before it was resumed: the `from_lsn` of the
    /// `SessionResumed` event.
    pub last_lsn: Lsn,
    /// The LSN of the `SessionResumed` record.
    pub resumed_lsn: Lsn,
    /// Tool calls that were started and never completed, by start LSN: the
    /// runtime decides whether to re-run them or to report them failed.
    pub pending_tool_calls: Vec<ToolCall>,
    /// The user/assistant conversation so far, in log order.
    pub transcript: Vec<TranscriptEntry>,
    /// A fresh sink for the session's further events: attach it to the
    /// session's [`SessionBus`](logbook_bus::SessionBus).
    pub sink: WalSink,
}

/// Resume `session` on the log `wal` writes.
///
/// Rebuilds the session's state by reading `wal.dir()` (the caller holds
/// the writer, so the log cannot change under it except through `wal`),
/// then appends a durable `SessionResumed { from_lsn: last_lsn }` record
/// through a fresh [`WalSink`] and waits until it is durable, whatever the
/// log's [`SyncPolicy`](logbook_wal::SyncPolicy). Later replays see the
/// runs before and after as one session, re-opened by that record.
///
/// Only a session that did not complete can be resumed: `Running` (which,
/// with the caller holding the writer, includes every interrupted session)
/// or `Failed` (a runtime may retry after an error; the session is then
/// `Running` again). The caller must make sure nothing else in the process
/// still writes the session.
///
/// # Errors
///
/// [`ReplayError::UnknownSession`] if the log has no record of `session`;
/// [`ReplayError::AlreadyCompleted`] if its last terminal event is `Done`;
/// [`ReplayError::Wal`] if reading the log, or appending and syncing the
/// `SessionResumed` record, fails (nothing was appended if reading failed);
/// [`ReplayError::Undecodable`] as for [`session_state`](crate::session_state).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use logbook_bus::{SessionBus, SessionEvent};
/// use logbook_replay::{SessionStatus, resume, session_state};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let id = uuid::Uuid::new_v4();
/// {
///     // A run that dies after starting a tool call.
///     let wal = Wal::open(dir.path(), WalOptions::default())?;
///     wal.append(id, &SessionEvent::ToolCallStart {
///         tool_call_id: "t1".into(), name: "ls".into(), arguments: "{}".into(),
///     })?;
/// }
/// // The next run picks it up.
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let resumed = resume(&wal, id)?;
/// assert_eq!(resumed.last_lsn, 1);
/// assert_eq!(resumed.pending_tool_calls[0].id, "t1");
///
/// let bus = SessionBus::new(64).with_durable_sink(Arc::new(resumed.sink));
/// bus.emit(SessionEvent::Done);
///
/// let state = session_state(dir.path(), id)?;
/// assert_eq!(state.status(), &SessionStatus::Completed);
/// assert_eq!(state.resumptions()[0].from_lsn, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resume(wal: &Wal, session: Uuid) -> Result<Resumed, ReplayError> {
    resume_many(wal, &[session])?
        .pop()
        .ok_or(ReplayError::UnknownSession(session))
}

/// Resume several unfinished sessions in one pass: one scan of the log
/// rebuilds all of them, their `SessionResumed` records are appended
/// together ([`Wal::append_many`]: one group commit) and read back in one
/// pass. The result is in the order of `sessions`, each as [`resume`]
/// returns it.
///
/// # Errors
///
/// As [`resume`], for the first session that cannot be resumed (nothing is
/// appended then), or the error of the append.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{interrupted_at_open, resume_many};
/// use logbook_wal::{Uuid, Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
/// {
///     let wal = Wal::open(dir.path(), WalOptions::default())?;
///     wal.append(a, &SessionEvent::UserMessage("one".into()))?;
///     wal.append(b, &SessionEvent::UserMessage("two".into()))?;
/// } // the process dies
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let cut_off: Vec<Uuid> = interrupted_at_open(&wal)?.iter().map(|s| s.session).collect();
/// let resumed = resume_many(&wal, &cut_off)?;
/// assert_eq!((resumed[0].last_lsn, resumed[1].last_lsn), (1, 2));
/// assert_eq!((resumed[0].resumed_lsn, resumed[1].resumed_lsn), (3, 4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resume_many(wal: &Wal, sessions: &[Uuid]) -> Result<Vec<Resumed>, ReplayError> {
    let dir = wal.dir();
    let mut states: HashMap<Uuid, SessionState> = sessions
        .iter()
        .map(|&id| (id, SessionState::new(id)))
        .collect();
    // One session: let the scan skip the others' payloads.
    let only = match sessions {
        [one] => Some(*one),
        _ => None,
    };
    scan(
        dir,
        only.map_or(Sessions::All, Sessions::One),
        OnCorruption::Fail,
        |item| match item {
            Item::Event(record) => {
                if let Some(state) = states.get_mut(&record.session) {
                    state.apply(&record);
                }
            }
            Item::Skipped {
                lsn,
                timestamp_us,
                session,
            } => {
                if let Some(state) = states.get_mut(&session) {
                    state.note_skipped(lsn, timestamp_us);
                }
            }
        },
    )?;
    // A session whose beginning was retained away resumes as truncated,
    // as a later replay shows it.
    let log_start = crate::scan::log_start(dir)?;
    let mut plans = Vec::with_capacity(sessions.len());
    for &session in sessions {
        let mut state = states
            .remove(&session)
            .ok_or(ReplayError::UnknownSession(session))?;
        state.note_log_start(log_start);
        if let (true, Some(tombstone_lsn)) = (state.is_deleted(), state.last_tombstone()) {
            return Err(ReplayError::DeletedSession {
                session,
                tombstone_lsn,
            });
        }
        if *state.status() == SessionStatus::Completed {
            return Err(ReplayError::AlreadyCompleted {
                session,
                done_lsn: state.ended_at().unwrap_or_default(),
            });
        }
        let last_lsn = state
            .last_lsn()
            .ok_or(ReplayError::UnknownSession(session))?;
        plans.push((session, state, last_lsn));
    }
    let records: Vec<(Uuid, SessionEvent)> = plans
        .iter()
        .map(|(session, _, last_lsn)| {
            (
                *session,
                SessionEvent::SessionResumed {
                    from_lsn: *last_lsn,
                },
            )
        })
        .collect();
    let lsns = wal
        .append_many(&records)
        .map_err(|e| ReplayError::wal("appending SessionResumed to", dir, e))?;
    // Durable whatever the log's policy (under `Always` this returns at once).
    wal.sync()
        .map_err(|e| ReplayError::wal("syncing SessionResumed in", dir, e))?;
    let stamps = appended_many_at(wal, &lsns);
    let mut out = Vec::with_capacity(plans.len());
    for ((session, mut state, last_lsn), (lsn, (_, event))) in
        plans.into_iter().zip(lsns.into_iter().zip(records))
    {
        let pending_tool_calls = state.pending_tool_calls().into_iter().cloned().collect();
        let transcript = state.transcript().to_vec();
        let timestamp_us = stamps.get(&lsn).copied().unwrap_or_else(now_us);
        state.apply(&EventRecord {
            lsn,
            timestamp_us,
            session,
            event,
        });
        out.push(Resumed {
            state,
            last_lsn,
            resumed_lsn: lsn,
            pending_tool_calls,
            transcript,
            sink: wal.sink(session),
        });
    }
    Ok(out)
}

/// [`resume_many`] from a task: the scan and the append run on tokio's
/// blocking pool, so no runtime worker waits for the disk.
///
/// # Errors
///
/// As [`resume_many`].
///
/// # Cancel safety
///
/// Dropping the future does not stop the work, which runs to its end on
/// the blocking pool (the sessions may then be resumed).
///
/// # Panics
///
/// Outside a tokio runtime.
pub async fn resume_many_async(wal: &Wal, sessions: &[Uuid]) -> Result<Vec<Resumed>, ReplayError> {
    let dir = wal.dir().to_path_buf();
    let (wal, sessions) = (wal.clone(), sessions.to_vec());
    match tokio::task::spawn_blocking(move || resume_many(&wal, &sessions)).await {
        Ok(resumed) => resumed,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(ReplayError::wal(
            "resuming sessions in",
            &dir,
            logbook_wal::WalError::Closed,
        )),
    }
}

/// The timestamps the log gave the records at `lsns`, read back in one pass.
fn appended_many_at(wal: &Wal, lsns: &[Lsn]) -> HashMap<Lsn, u64> {
    let mut want: std::collections::HashSet<Lsn> = lsns.iter().copied().collect();
    let mut out = HashMap::new();
    let Some(&first) = lsns.iter().min() else {
        return out;
    };
    if let Ok(reader) = Reader::open(wal.dir()) {
        let mut reader = reader.from_lsn(first);
        while !want.is_empty() {
            match reader.next_ref() {
                Some(Ok(rec)) => {
                    if want.remove(&rec.lsn) {
                        out.insert(rec.lsn, rec.timestamp_us);
                    }
                }
                _ => break,
            }
        }
    }
    out
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
