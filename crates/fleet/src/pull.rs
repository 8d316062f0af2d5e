//! Resume anywhere: [`resume_from_stream`] pulls one session's records
//! from the stream into this host's log and resumes the session there.
//! [`fetch_session`] and [`SessionPull`] split it in two: the read of the
//! stream and every check, which change nothing, then the writes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use logbook_bus::Deletions;
use logbook_replay::{ReplayError, Resumed, SessionState, SessionStatus};
use logbook_wal::{Lsn, Reader, Wal, WalError};
use uuid::Uuid;

use crate::error::FleetError;
use crate::imports::{Entry, Imports};
use crate::message::FleetRecord;
use crate::read::{Select, in_log_order, read};
use crate::target::Target;

/// What [`resume_from_stream`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Pulled {
    /// Records of other logs appended to this one (and listed in its
    /// `IMPORTS`, so that its shipper never sends them again).
    pub imported: u64,
    /// Records of the session the stream holds that this log already had
    /// (its own, or imported before).
    pub already_here: u64,
    /// Records of the session the stream holds that were left out: its
    /// tombstones (their LSNs are their own log's, meaningless here) and
    /// the records they delete (`logbook_bus::Deletions`, one set per
    /// log), as every reader of the stream leaves them out.
    pub deleted: u64,
    /// The session, resumed on this log: its `SessionResumed` record is
    /// durable, and its sink takes the session's next events.
    pub resumed: Resumed,
}

/// Pull `session`'s records from the stream into the log `wal` writes,
/// then resume it there ([`logbook_replay::resume`]: a durable
/// `SessionResumed { from_lsn }`, then a sink for new events).
///
/// The records of other logs that this log lacks and that no tombstone in
/// the stream deletes are appended (tombstones are not: their LSNs name
/// their own log's records), in the session's order (each log's records by LSN, the logs in the order the
/// session reached them), with their payloads unchanged. Before they are
/// appended, `IMPORTS` in the log directory lists them (fsynced): the
/// shipper of this log skips them, so what the stream already has is never
/// shipped twice, while the `SessionResumed` record and everything after
/// it ship as this log's. Pulling the same session again imports nothing
/// new.
///
/// The caller must not append to `wal` while this runs (the imported
/// records' LSNs are planned before they are written).
///
/// # Errors
///
/// [`FleetError::UnknownSession`] if the stream has no record of it; the
/// errors of [`read`]; [`FleetError::Completed`] if the session completed
/// (nothing was written); [`FleetError::Imports`] or [`FleetError::Wal`]
/// if the local log cannot be read or written (nothing was appended if the
/// import list could not be written); [`FleetError::Resume`] if the
/// session cannot be rebuilt.
///
/// # Cancel safety
///
/// Not cancel safe once the records are read: the local writes run to
/// their end on the blocking pool, and a pull cut short is completed by
/// running it again.
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use logbook_bus::{SessionBus, SessionEvent};
/// use logbook_fleet::{Target, resume_from_stream};
/// use logbook_wal::{Wal, WalOptions};
///
/// let target = Target::parse("nats://127.0.0.1:4222")?;
/// let wal = Wal::open("/var/lib/agent/log", WalOptions::default())?;
/// let session: uuid::Uuid = "3f2a9c1e-0000-4000-8000-000000000000".parse()?;
/// let pulled = resume_from_stream(&target, &wal, session).await?;
/// let bus = SessionBus::new(64).with_durable_sink(Arc::new(pulled.resumed.sink));
/// bus.emit(SessionEvent::UserMessage("go on".into()));
/// # Ok(())
/// # }
/// ```
pub async fn resume_from_stream(
    target: &Target,
    wal: &Wal,
    session: Uuid,
) -> Result<Pulled, FleetError> {
    fetch_session(target, session).await?.resume_into(wal).await
}

/// One session's records, read from the stream by [`fetch_session`],
/// to be checked against a log ([`SessionPull::check`]) and pulled into it
/// ([`SessionPull::resume_into`]).
#[derive(Debug, Clone)]
pub struct SessionPull {
    session: Uuid,
    /// In the session's order ([`in_log_order`]).
    records: Vec<FleetRecord>,
}

/// Read `session`'s records from the stream (every log's, in the
/// session's order): the first half of [`resume_from_stream`], which
/// changes nothing anywhere.
///
/// # Errors
///
/// [`FleetError::UnknownSession`] if the stream has no record of it; the
/// errors of [`read`].
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use logbook_fleet::{Target, fetch_session};
/// use logbook_wal::{Wal, WalOptions};
///
/// let target = Target::parse("nats://127.0.0.1:4222")?;
/// let session: uuid::Uuid = "3f2a9c1e-0000-4000-8000-000000000000".parse()?;
/// let pull = fetch_session(&target, session).await?;
/// // Refused (completed, say) before the log is even created:
/// pull.check("/var/lib/agent/log".as_ref())?;
/// let wal = Wal::open("/var/lib/agent/log", WalOptions::default())?;
/// let pulled = pull.resume_into(&wal).await?;
/// # Ok(())
/// # }
/// ```
pub async fn fetch_session(target: &Target, session: Uuid) -> Result<SessionPull, FleetError> {
    let records = in_log_order(read(target, Select::Session(session)).await?);
    if records.is_empty() {
        return Err(FleetError::UnknownSession {
            url: target.url().to_owned(),
            stream: target.stream().to_owned(),
            session,
        });
    }
    Ok(SessionPull { session, records })
}

impl SessionPull {
    /// The session.
    #[must_use]
    pub fn session(&self) -> Uuid {
        self.session
    }

    /// Its records in the stream, in the session's order.
    #[must_use]
    pub fn records(&self) -> &[FleetRecord] {
        &self.records
    }

    /// Whether [`SessionPull::resume_into`] a writer of the log in `dir`
    /// would go ahead, found by reading only: nothing is created or
    /// written, not even `dir` when it is missing (it then stands for a
    /// new, empty log). Blocking: it reads the local log.
    ///
    /// # Errors
    ///
    /// As [`SessionPull::resume_into`] before its first write:
    /// [`FleetError::Completed`], [`FleetError::Wal`] (a sealed record
    /// without its key, a local log that cannot be read),
    /// [`FleetError::Imports`], [`FleetError::Resume`] (the local records of
    /// the session cannot be rebuilt).
    pub fn check(&self, dir: &Path) -> Result<(), FleetError> {
        let me = match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                plan(dir, None, self.session, &self.records)?;
                return Ok(());
            }
            _ => match logbook_wal::log_id(dir) {
                Ok(id) => Some(id),
                Err(WalError::NoLogId { .. }) => None,
                Err(e) => return Err(FleetError::wal(dir, "reading the log id", e)),
            },
        };
        plan(
            dir,
            Some(me.unwrap_or_default()),
            self.session,
            &self.records,
        )
        .map(|_| ())
    }

    /// Pull the records into the log `wal` writes and resume the session
    /// there: the second half of [`resume_from_stream`], which says more.
    ///
    /// # Errors
    ///
    /// As [`resume_from_stream`].
    ///
    /// # Cancel safety
    ///
    /// As [`resume_from_stream`].
    pub async fn resume_into(self, wal: &Wal) -> Result<Pulled, FleetError> {
        let SessionPull { session, records } = self;
        let wal = wal.clone();
        let dir = wal.dir().to_path_buf();
        let task = tokio::task::spawn_blocking(move || -> Result<Pulled, FleetError> {
            let dir = wal.dir().to_path_buf();
            let Plan {
                wanted,
                already_here,
                deleted,
            } = plan(&dir, Some(wal.log_id()), session, &records)?;
            if !wanted.is_empty() {
                let first = wal.last_lsn() + 1;
                let entries: Vec<Entry> = (first..)
                    .zip(&wanted)
                    .map(|(local_lsn, r)| Entry {
                        local_lsn,
                        session,
                        origin_log: r.log,
                        origin_lsn: r.lsn,
                        payload_crc: crc32fast::hash(&r.payload),
                    })
                    .collect();
                Imports::append(&dir, &entries)?;
                // With their own times, as an import keeps them.
                let timed: Vec<(Uuid, u64, Vec<u8>)> = wanted
                    .iter()
                    .map(|r| (session, r.timestamp_us, r.payload.to_vec()))
                    .collect();
                let lsns = wal
                    .append_many_raw_at(&timed)
                    .map_err(|e| FleetError::wal(&dir, "appending the pulled records", e))?;
                wal.sync()
                    .map_err(|e| FleetError::wal(&dir, "syncing the pulled records", e))?;
                if lsns.first() != Some(&first) {
                    tracing::warn!(dir = %dir.display(), "another writer appended during the pull: its imported records may be shipped again as this log's");
                }
            }
            let resumed =
                logbook_replay::resume(&wal, session).map_err(|source| FleetError::Resume {
                    dir: dir.clone(),
                    session,
                    source: Box::new(source),
                })?;
            Ok(Pulled {
                imported: wanted.len() as u64,
                already_here,
                deleted,
                resumed,
            })
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(FleetError::wal(&dir, "pulling a session", WalError::Closed)),
        }
    }
}

/// What a pull appends, decided before anything is written.
struct Plan {
    /// The records this log lacks, in the clear, in the session's order.
    wanted: Vec<FleetRecord>,
    /// The records it has.
    already_here: u64,
    /// The tombstones of other logs and the records they delete: left
    /// out.
    deleted: u64,
}

/// Which of `records` the log in `dir` (`me`: its id; `None`: no log
/// there yet) lacks, and whether the session may be resumed there. Reads
/// only.
fn plan(
    dir: &Path,
    me: Option<Uuid>,
    session: Uuid,
    records: &[FleetRecord],
) -> Result<Plan, FleetError> {
    let landed = match me {
        Some(_) => landed_origins(dir, session)?,
        None => HashSet::new(),
    };
    // Sealed records come in the clear here (this log seals them again
    // with its own key, if it has one): the process's keys.
    let keys = logbook_wal::default_keys();
    // Per log, the session's first sealed record: a record of that log in
    // the clear after it is not the key holder's (a log never goes back to
    // the clear), as every stream reader refuses it.
    let mut sealed_from: HashMap<Uuid, Lsn> = HashMap::new();
    for r in records.iter().filter(|r| r.key_id.is_some()) {
        let first = sealed_from.entry(r.log).or_insert(r.lsn);
        *first = (*first).min(r.lsn);
    }
    // The tombstones of each other log, as every stream reader honours
    // them (`logbook_bus::Deletions`, the one rule; LSNs are per log). A
    // tombstone follows the records it deletes: gathered before any record
    // is taken. A record this log has is opened only to look for one (it
    // was opened when it was pulled; one that does not open now is passed
    // over: what this log has, it keeps).
    let mut opened: Vec<Option<(FleetRecord, bool)>> = Vec::with_capacity(records.len());
    let mut deletions: HashMap<Uuid, Deletions> = HashMap::new();
    for r in records {
        if Some(r.log) == me {
            opened.push(None);
            continue;
        }
        let open = match r.unsealed(keys.as_deref()) {
            Ok(open) => open,
            Err(_) if landed.contains(&(r.log, r.lsn)) => {
                opened.push(None);
                continue;
            }
            Err(e) => return Err(FleetError::wal(dir, "decrypting a pulled record", e)),
        };
        // A record of a kind this build does not know deletes nothing.
        let tombstone = open.decode().is_ok_and(|event| {
            deletions
                .entry(r.log)
                .or_default()
                .note(r.session, r.lsn, &event.event)
        });
        opened.push(Some((open, tombstone)));
    }
    let mut wanted = Vec::new();
    let mut already_here = 0;
    let mut deleted = 0;
    for (r, open) in records.iter().zip(opened) {
        if r.key_id.is_none() && sealed_from.get(&r.log).is_some_and(|&f| r.lsn >= f) {
            return Err(FleetError::wal(
                dir,
                "checking a pulled record",
                WalError::Forged {
                    path: PathBuf::from(format!("log {}", r.log)),
                    offset: r.stream_seq,
                    lsn: r.lsn,
                    reason: "a record in the clear after the log's sealed records: not the key holder's; nothing was changed".to_owned(),
                },
            ));
        }
        if Some(r.log) == me || landed.contains(&(r.log, r.lsn)) {
            already_here += 1;
            continue;
        }
        let Some((open, tombstone)) = open else {
            continue;
        };
        if tombstone
            || deletions
                .get(&r.log)
                .is_some_and(|d| d.covers(r.session, r.lsn))
        {
            deleted += 1;
            continue;
        }
        wanted.push(open);
    }
    refuse_completed(dir, me, session, &wanted)?;
    Ok(Plan {
        wanted,
        already_here,
        deleted,
    })
}

/// The origins (log, LSN) of the records `IMPORTS` lists for `session`
/// that are in the log at the LSN their entry names, with the session and
/// payload CRC the entry names: an entry alone proves nothing, since it is
/// made durable before its record is appended (`docs/fleet.md`).
fn landed_origins(dir: &Path, session: Uuid) -> Result<HashSet<(Uuid, Lsn)>, FleetError> {
    let imports = Imports::load(dir)?;
    let mut landed = HashSet::new();
    let Some(from) = imports.first_lsn_of(session) else {
        return Ok(landed);
    };
    let reader = match Reader::open(dir) {
        Ok(reader) => reader,
        // No segment: none of the entries' records landed.
        Err(WalError::NoLog { .. }) => return Ok(landed),
        Err(e) => return Err(FleetError::wal(dir, "opening a reader", e)),
    };
    // With the process's keys (the one decode path): entries hold the
    // plaintext's CRC, as the shipper compares it.
    // Noting placeholders: an imported record deleted here and erased by
    // compaction landed all the same; pulled again, it would come back.
    let mut reader = reader.from_lsn(from).session(session).noting_redacted();
    while let Some(record) = reader.next_ref() {
        let record =
            record.map_err(|e| FleetError::wal(dir, "reading the log for imported records", e))?;
        if let Some(origin) = imports.landed_origin(record.lsn, record.session, record.payload) {
            landed.insert(origin);
        }
    }
    for erased in reader.take_placeholders() {
        if let Some(origin) = imports.erased_origin(erased.lsn, erased.session) {
            landed.insert(origin);
        }
    }
    Ok(landed)
}

/// [`FleetError::Completed`] if the session, as the log in `dir` would
/// hold it once `wanted` is appended, completed (its last terminal event is
/// `Done`): the same rule as `logbook_replay::resume`, applied before
/// anything is written.
fn refuse_completed(
    dir: &Path,
    me: Option<Uuid>,
    session: Uuid,
    wanted: &[FleetRecord],
) -> Result<(), FleetError> {
    let resume_error = |source: ReplayError| FleetError::Resume {
        dir: dir.to_path_buf(),
        session,
        source: Box::new(source),
    };
    let mut state = match me {
        None => SessionState::new(session),
        Some(_) => match logbook_replay::session_state(dir, session) {
            Ok(state) => state,
            // Nothing of it here, or no log yet (an empty directory).
            Err(ReplayError::UnknownSession(_) | ReplayError::NoLog { .. }) => {
                SessionState::new(session)
            }
            Err(e) => return Err(resume_error(e)),
        },
    };
    // The pulled records follow the session's local ones.
    let base = state.last_lsn().unwrap_or(0);
    for (lsn, r) in (base + 1..).zip(wanted) {
        // A record of a kind this build does not know ends nothing.
        if let Ok(mut event) = r.decode() {
            event.lsn = lsn;
            state.apply(&event);
        }
    }
    if *state.status() != SessionStatus::Completed {
        return Ok(());
    }
    let done = state.ended_at().unwrap_or_default();
    let (log, lsn) = match usize::try_from(done.saturating_sub(base + 1))
        .ok()
        .and_then(|i| wanted.get(i))
    {
        Some(r) if done > base => (r.log, r.lsn),
        _ => (me.unwrap_or_default(), done),
    };
    Err(FleetError::Completed {
        session,
        log,
        lsn,
        dir: PathBuf::from(dir),
    })
}

#[cfg(test)]
mod tests {
    use logbook_bus::SessionEvent;
    use logbook_wal::WalOptions;

    use super::*;

    fn record(log: Uuid, lsn: Lsn, session: Uuid, event: &SessionEvent) -> FleetRecord {
        let payload = logbook_bus::codec::encode(event).unwrap();
        FleetRecord::new(log, lsn, 1_000 + lsn, session, payload.into())
    }

    /// A crash (or a full disk, or a failed fsync) between the `IMPORTS`
    /// entries and the records: the entries alone count for nothing, the
    /// records landed at the LSNs they name do, and a record of another
    /// payload at such an LSN does not.
    #[test]
    fn an_import_entry_counts_only_once_its_record_landed() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let (session, origin) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let me = wal.log_id();
        wal.append(session, &SessionEvent::UserMessage("own".into()))
            .unwrap();
        let pulled: Vec<FleetRecord> = (10..13)
            .map(|lsn| {
                record(
                    origin,
                    lsn,
                    session,
                    &SessionEvent::UserMessage(format!("m{lsn}")),
                )
            })
            .collect();
        let entries: Vec<Entry> = (2..)
            .zip(&pulled)
            .map(|(local_lsn, r)| Entry {
                local_lsn,
                session,
                origin_log: origin,
                origin_lsn: r.lsn,
                payload_crc: crc32fast::hash(&r.payload),
            })
            .collect();
        Imports::append(dir.path(), &entries).unwrap();
        // The crash: no record appended.
        let landed = landed_origins(dir.path(), session).unwrap();
        assert!(landed.is_empty(), "{landed:?}");
        let first = plan(dir.path(), Some(me), session, &pulled).unwrap();
        assert_eq!((first.wanted.len(), first.already_here), (3, 0));

        // Two records land where their entries say; the third LSN gets
        // another record.
        wal.append_many_raw(&[
            (session, pulled[0].payload.to_vec()),
            (session, pulled[1].payload.to_vec()),
        ])
        .unwrap();
        wal.append(session, &SessionEvent::UserMessage("another".into()))
            .unwrap();
        let landed = landed_origins(dir.path(), session).unwrap();
        assert_eq!(
            landed,
            HashSet::from([(origin, 10), (origin, 11)]),
            "not (origin, 12): LSN 4 holds another record"
        );
        let second = plan(dir.path(), Some(me), session, &pulled).unwrap();
        assert_eq!((second.wanted.len(), second.already_here), (1, 2));
        assert_eq!(second.wanted[0].lsn, 12);
    }

    /// The check reads only: a missing directory stays missing, an empty
    /// one is a log with nothing yet, and a completed session is refused
    /// naming the log and LSN of its `Done`.
    #[test]
    fn the_check_changes_nothing_and_refuses_a_completed_session() {
        let root = tempfile::tempdir().unwrap();
        let (session, origin) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let unfinished = SessionPull {
            session,
            records: vec![record(
                origin,
                7,
                session,
                &SessionEvent::UserMessage("hi".into()),
            )],
        };
        let missing = root.path().join("missing");
        unfinished.check(&missing).unwrap();
        assert!(!missing.exists());
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        unfinished.check(&empty).unwrap();
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

        let mut done = unfinished.clone();
        done.records
            .push(record(origin, 8, session, &SessionEvent::Done));
        let e = done.check(&missing).unwrap_err();
        assert!(
            matches!(e, FleetError::Completed { log, lsn: 8, .. } if log == origin),
            "{e}"
        );
        // Resumed after an error elsewhere (Failed) is not completed.
        let mut failed = unfinished;
        failed.records.push(record(
            origin,
            8,
            session,
            &SessionEvent::Error("boom".into()),
        ));
        failed.check(&missing).unwrap();
        assert!(!missing.exists());
    }
}
