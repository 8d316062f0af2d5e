//! Lossless live follow: a session's (or every session's) records from an
//! LSN on, read from the log and then followed as they become durable
//! ([`follow`]), and a bus subscriber that takes durable events from there
//! and ephemeral ones from the bus ([`LosslessSubscriber`]).
//!
//! A `SessionBus` broadcast is lossy by design: a slow subscriber gets
//! `RecvError::Lagged` and misses events. Durable events are in the log
//! before they are broadcast, so a follower of the log misses none: it
//! reads what is there, then sleeps on the writer's durable watermark
//! ([`DurableWatch`]), never polling.

use std::collections::VecDeque;
use std::path::PathBuf;

use logbook_bus::{SessionBus, SessionEvent};
use logbook_wal::{DurableWatch, EventRecord, Lsn, Reader, Wal, WalError};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::error::ReplayError;

/// Records read per trip to the blocking pool.
const BATCH: usize = 1024;

/// A live follower of a log: see [`follow`].
#[derive(Debug)]
pub struct Follow {
    dir: PathBuf,
    watch: DurableWatch,
    /// Off while a read runs on the blocking pool.
    reader: Option<Reader>,
    /// A second reader of the same records, ahead of `reader`: after each
    /// batch it reads on to the durable end, noting the tombstones there,
    /// before the batch is returned (off with `reader`).
    scout: Option<Reader>,
    /// The read running on the blocking pool, and whether the writer had
    /// closed when it began.
    pending: Option<(tokio::task::JoinHandle<Batch>, bool)>,
    buffered: VecDeque<EventRecord>,
    /// Records skipped: of an event kind this build does not know.
    skipped: u64,
    /// The writer closed (or failed): read what is left, then end.
    closing: bool,
    done: bool,
    /// The tombstones seen: those durable when the follow began, then
    /// those the scout read since (each hides what it deletes among the
    /// records not yet returned).
    deletions: crate::deleted::LogDeletions,
    log: Option<Uuid>,
    deleted: u64,
}

/// Follow the log of `wal` from LSN `from`: every durable record of
/// `session` (or of every session if `None`), in LSN order, exactly once;
/// first what the log holds, then each record as it becomes durable. The
/// follower sleeps on the writer's durable watermark between records (no
/// polling) and ends, after the last durable record, when the writer is
/// closed. Reading runs on tokio's blocking pool.
///
/// Records a tombstone deletes are left out: the tombstones durable when
/// the follow begins are gathered first (a pass over the records from
/// `from`, reading only their kinds, in this call). After each batch of
/// records it reads, the follower reads on to the durable end, noting the
/// tombstones there, before it returns any record of the batch: a record
/// read after its tombstone was durable is never returned. A record
/// returned before its tombstone was durable was not deleted then; the
/// tombstone follows it, for the caller to act on.
///
/// # Errors
///
/// [`ReplayError::Wal`] if the log cannot be opened.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use logbook_bus::{SessionBus, SessionEvent};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("hi".into()))?;
/// let mut follow = logbook_replay::follow(&wal, 0, Some(id))?;
/// assert_eq!(follow.next().await.transpose()?.map(|r| r.lsn), Some(1));
/// wal.append(id, &SessionEvent::Done)?; // woken by the durable watermark
/// assert_eq!(follow.next().await.transpose()?.map(|r| r.event), Some(SessionEvent::Done));
/// wal.close()?;
/// assert!(follow.next().await.is_none()); // the writer closed: the end
/// # Ok(())
/// # }
/// ```
pub fn follow(wal: &Wal, from: Lsn, session: Option<Uuid>) -> Result<Follow, ReplayError> {
    let dir = wal.dir().to_path_buf();
    // The watch first: a record made durable after it is seen by the
    // reader, or wakes the watch.
    let watch = wal.watch_durable();
    let mut reader = Reader::open(&dir)
        .map_err(|e| ReplayError::wal("opening", &dir, e))?
        .from_lsn(from);
    if let Some(id) = session {
        reader = reader.session(id);
    }
    let mut scout = Reader::open(&dir)
        .map_err(|e| ReplayError::wal("opening", &dir, e))?
        .from_lsn(from);
    if let Some(id) = session {
        scout = scout.session(id);
    }
    let mut tombstones = Vec::new();
    scout_to_end(&mut scout, &mut tombstones).map_err(|e| ReplayError::wal("reading", &dir, e))?;
    let log = logbook_wal::log_id(&dir).ok();
    let mut deletions = crate::deleted::LogDeletions::default();
    for t in &tombstones {
        deletions.note(log, t.session, t.lsn, &t.event);
    }
    Ok(Follow {
        deletions,
        log,
        scout: Some(scout),
        deleted: 0,
        dir,
        watch,
        reader: Some(reader),
        pending: None,
        buffered: VecDeque::new(),
        skipped: 0,
        closing: false,
        done: false,
    })
}

impl Follow {
    /// The next record; `None` once the writer closed and every durable
    /// record was returned (or after an error).
    ///
    /// # Errors
    ///
    /// [`ReplayError::Wal`] for corruption or an I/O error while reading,
    /// [`ReplayError::Undecodable`] for a record that holds no event; the
    /// follower ends after either.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a read already running on the blocking pool goes on,
    /// and the next call takes its records; no record is lost or returned
    /// twice.
    pub async fn next(&mut self) -> Option<Result<EventRecord, ReplayError>> {
        loop {
            if let Some(record) = self.buffered.pop_front() {
                if !record.event.is_tombstone()
                    && self.deletions.covers(self.log, record.session, record.lsn)
                {
                    self.deleted += 1;
                    continue;
                }
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            // Whatever became durable up to now is readable now.
            if self.pending.is_none() {
                let (Some(reader), Some(scout)) = (self.reader.take(), self.scout.take()) else {
                    self.done = true;
                    return None;
                };
                let read = tokio::task::spawn_blocking(move || read_batch(reader, scout));
                self.pending = Some((read, self.closing));
            }
            let Some((read, closing)) = self.pending.as_mut() else {
                continue;
            };
            let closing = *closing;
            // Awaited in place: a cancelled `next` leaves it running, and
            // the next call picks it up.
            let joined = read.await;
            self.pending = None;
            let Ok(Batch {
                reader,
                scout,
                records,
                tombstones,
                skipped,
                error,
            }) = joined
            else {
                self.done = true;
                return None;
            };
            self.reader = Some(reader);
            self.scout = Some(scout);
            self.skipped += skipped;
            // Every tombstone durable when the batch was read, before any
            // record of it is returned.
            for t in &tombstones {
                self.deletions.note(self.log, t.session, t.lsn, &t.event);
            }
            if let Some(e) = error {
                self.done = true;
                return Some(Err(match e {
                    Failure::Wal(e) => ReplayError::wal("following", &self.dir, e),
                    Failure::Undecodable(lsn, source) => ReplayError::Undecodable {
                        dir: self.dir.clone(),
                        lsn,
                        source,
                    },
                }));
            }
            if !records.is_empty() {
                self.buffered.extend(records);
                continue;
            }
            if closing {
                self.done = true;
                return None;
            }
            // Nothing new: sleep until more is durable, or the writer closes
            // (then read once more, for what the close made durable).
            if self.watch.changed().await.is_none() {
                self.closing = true;
            }
        }
    }

    /// Records left out so far because a tombstone deletes them.
    #[must_use]
    pub fn deleted(&self) -> u64 {
        self.deleted
    }

    /// Records skipped so far: of an event kind this build does not know.
    #[must_use]
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[derive(Debug)]
enum Failure {
    Wal(WalError),
    Undecodable(Lsn, WalError),
}

/// What one trip to the blocking pool read.
#[derive(Debug)]
struct Batch {
    reader: Reader,
    scout: Reader,
    records: Vec<EventRecord>,
    /// The tombstones the scout read, up to the durable end it reached
    /// after the records were read.
    tombstones: Vec<EventRecord>,
    skipped: u64,
    error: Option<Failure>,
}

/// Up to [`BATCH`] records from where `reader` is, then the tombstones
/// from where `scout` is to the durable end (on the blocking pool).
fn read_batch(mut reader: Reader, mut scout: Reader) -> Batch {
    let mut records = Vec::new();
    let mut skipped = 0;
    let mut error = None;
    while records.len() < BATCH {
        let record = match reader.next_ref() {
            None => break,
            Some(Err(e)) => {
                error = Some(Failure::Wal(e));
                break;
            }
            Some(Ok(record)) => record,
        };
        match EventRecord::decode(&record) {
            Ok(event) => records.push(event),
            Err(e) if is_unknown_kind(&e) => skipped += 1,
            Err(e) => {
                error = Some(Failure::Undecodable(record.lsn, e));
                break;
            }
        }
    }
    let mut tombstones = Vec::new();
    if let (Err(e), None) = (scout_to_end(&mut scout, &mut tombstones), &error) {
        error = Some(Failure::Wal(e));
    }
    Batch {
        reader,
        scout,
        records,
        tombstones,
        skipped,
        error,
    }
}

/// Read `scout` on to the durable end, keeping the tombstones it passes
/// (reading only the kind of every other record).
fn scout_to_end(scout: &mut Reader, tombstones: &mut Vec<EventRecord>) -> Result<(), WalError> {
    while let Some(record) = scout.next_ref() {
        let record = record?;
        if let Ok(Some(("session_deleted", _))) = EventRecord::peek_kind(&record) {
            if let Ok(decoded) = EventRecord::decode(&record) {
                tombstones.push(decoded);
            }
        }
    }
    Ok(())
}

fn is_unknown_kind(e: &WalError) -> bool {
    matches!(e, WalError::Codec { source, .. }
        if matches!(**source, logbook_bus::codec::CodecError::UnknownVariant { .. }))
}

/// What a [`LosslessSubscriber`] hands on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Delivery {
    /// A durable event, with its record: every one exactly once, in order.
    Durable(EventRecord),
    /// An ephemeral event from the bus (best effort: the bus may drop
    /// some for a slow subscriber, counted exactly in
    /// [`LosslessSubscriber::lost_ephemeral`]).
    Ephemeral(SessionEvent),
}

/// A `SessionBus` subscriber that never misses a durable event.
///
/// It takes the session's durable events from the log ([`follow`]: read,
/// then followed on the durable watermark), and the ephemeral ones from
/// the bus's lossy broadcast of ephemeral events only
/// (`SessionBus::subscribe_ephemeral`). So a subscriber slower than the
/// bus still gets every durable event exactly once, in order; when it
/// lags, it loses only ephemeral progress signals, and counts exactly
/// those. Both streams are live: the
/// bus hands a durable event to the log before broadcasting it, so the
/// log's copy is never later than the broadcast one by more than the
/// follower's wake-up.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use logbook_bus::{SessionBus, SessionEvent};
/// use logbook_replay::{Delivery, LosslessSubscriber};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// let bus = SessionBus::new(1).with_durable_sink(Arc::new(wal.sink(id)));
/// let mut sub = LosslessSubscriber::new(&wal, &bus, id)?;
/// for i in 0..10 {
///     bus.emit(SessionEvent::UserMessage(format!("m{i}"))); // capacity 1: the bus drops most
/// }
/// let mut seen = Vec::new();
/// while seen.len() < 10 {
///     if let Some(Delivery::Durable(r)) = sub.next().await.transpose()? {
///         seen.push(r.lsn);
///     }
/// }
/// assert_eq!(seen, (1..=10).collect::<Vec<u64>>());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LosslessSubscriber {
    follow: Follow,
    bus: Option<broadcast::Receiver<SessionEvent>>,
    lost: u64,
}

impl LosslessSubscriber {
    /// Subscribe to `session` of `wal` from its first record: durable
    /// events from the log, ephemeral ones from `bus` (the session's bus,
    /// through `SessionBus::subscribe_ephemeral`: from now on).
    ///
    /// # Errors
    ///
    /// As [`follow`].
    pub fn new(
        wal: &Wal,
        bus: &SessionBus,
        session: Uuid,
    ) -> Result<LosslessSubscriber, ReplayError> {
        Ok(LosslessSubscriber {
            follow: follow(wal, 0, Some(session))?,
            bus: Some(bus.subscribe_ephemeral()),
            lost: 0,
        })
    }

    /// The next event: a durable one as soon as it is durable, or an
    /// ephemeral one as the bus sends it. `None` once the log's writer
    /// closed and every durable event was handed on.
    ///
    /// # Errors
    ///
    /// As [`Follow::next`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Follow::next`] and `broadcast::Receiver::recv`.
    pub async fn next(&mut self) -> Option<Result<Delivery, ReplayError>> {
        loop {
            let Some(bus) = self.bus.as_mut() else {
                return self.follow.next().await.map(|r| r.map(Delivery::Durable));
            };
            tokio::select! {
                biased;
                durable = self.follow.next() => {
                    return durable.map(|r| r.map(Delivery::Durable));
                }
                live = bus.recv() => match live {
                    Ok(event) if event.is_durable() => {} // never sent on this channel
                    Ok(event) => return Some(Ok(Delivery::Ephemeral(event))),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.lost = self.lost.saturating_add(n);
                    }
                    Err(broadcast::error::RecvError::Closed) => self.bus = None,
                },
            }
        }
    }

    /// Ephemeral events the bus dropped for this subscriber (it lagged):
    /// exactly those, as the bus's ephemeral channel carries no durable
    /// event (and durable events are never lost: they come from the log).
    #[must_use]
    pub fn lost_ephemeral(&self) -> u64 {
        self.lost
    }
}
