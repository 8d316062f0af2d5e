//! Resume anywhere: [`resume_from_stream`] pulls one session's records
//! from the stream into this host's log and resumes the session there.

use logbook_replay::Resumed;
use logbook_wal::Wal;
use uuid::Uuid;

use crate::error::FleetError;
use crate::imports::{Entry, Imports};
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
    /// The session, resumed on this log: its `SessionResumed` record is
    /// durable, and its sink takes the session's next events.
    pub resumed: Resumed,
}

/// Pull `session`'s records from the stream into the log `wal` writes,
/// then resume it there ([`logbook_replay::resume`]: a durable
/// `SessionResumed { from_lsn }`, then a sink for new events).
///
/// The records of other logs that this log lacks are appended, in the
/// session's order (each log's records by LSN, the logs in the order the
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
/// errors of [`read`]; [`FleetError::Imports`] or [`FleetError::Wal`] if
/// the local log cannot be written (nothing was appended if the import
/// list could not be written); [`FleetError::Resume`] if the session
/// completed (`AlreadyCompleted`) or cannot be rebuilt.
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
    let records = in_log_order(read(target, Select::Session(session)).await?);
    if records.is_empty() {
        return Err(FleetError::UnknownSession {
            url: target.url().to_owned(),
            stream: target.stream().to_owned(),
            session,
        });
    }
    let wal = wal.clone();
    let dir = wal.dir().to_path_buf();
    let task = tokio::task::spawn_blocking(move || -> Result<Pulled, FleetError> {
        let dir = wal.dir().to_path_buf();
        let me = wal.log_id();
        let imports = Imports::load(&dir)?;
        let mut wanted = Vec::new();
        let mut already_here = 0;
        for r in records {
            if r.log == me || imports.has_origin(r.log, r.lsn) {
                already_here += 1;
            } else {
                wanted.push(r);
            }
        }
        if !wanted.is_empty() {
            // Sealed records come in the clear here (this log seals them
            // again with its own key, if it has one): the process's keys.
            let keys = logbook_wal::default_keys();
            let mut payloads: Vec<(Uuid, Vec<u8>)> = Vec::with_capacity(wanted.len());
            for r in &wanted {
                let open = r
                    .unsealed(keys.as_deref())
                    .map_err(|e| FleetError::wal(&dir, "decrypting a pulled record", e))?;
                payloads.push((session, open.payload.to_vec()));
            }
            let first = wal.last_lsn() + 1;
            let entries: Vec<Entry> = (first..)
                .zip(wanted.iter().zip(&payloads))
                .map(|(local_lsn, (r, (_, plain)))| Entry {
                    local_lsn,
                    session,
                    origin_log: r.log,
                    origin_lsn: r.lsn,
                    payload_crc: crc32fast::hash(plain),
                })
                .collect();
            Imports::append(&dir, &entries)?;
            let lsns = wal
                .append_many_raw(&payloads)
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
            resumed,
        })
    });
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(FleetError::wal(
            &dir,
            "pulling a session",
            logbook_wal::WalError::Closed,
        )),
    }
}
