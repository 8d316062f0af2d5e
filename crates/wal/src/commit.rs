//! The write path: group commit.
//!
//! Appenders encode their record into a shared pending buffer under the
//! state lock and take the next LSN. Under `SyncPolicy::Always` each then
//! waits until its LSN is durable; the first waiter to find no I/O in
//! progress becomes the **leader**: it takes the whole pending buffer,
//! writes it with one `write` (split only at a segment roll), calls
//! `fdatasync` once, publishes the new durable watermark and wakes every
//! waiter. Records that queued up meanwhile form the next batch. At one
//! appender the caller does its own write and fsync, with no hand-off to
//! another thread; with many, one fsync carries many records.
//!
//! Failure handling (see `docs/durability.md`):
//! * a failed fsync, whatever its errno (`ENOSPC` and `EDQUOT` included),
//!   and a failed write other than a full disk **poison** the writer: every
//!   record not yet durable fails, and so does every later call; the fsync
//!   is never retried.
//! * a write that fails with `ENOSPC`/`EDQUOT` is not fatal: the partial
//!   write is cut back to the last whole record and what was written before
//!   it is fsynced. Under `SyncPolicy::Always` the rest of the batch (and
//!   everything queued behind it) fails with `DiskFull`; none of it was
//!   acknowledged, so its LSNs are reused. Under `Batch` and `Never` those
//!   records already returned `Ok(lsn)`: they stay queued with their LSNs
//!   (an LSN never names two records), the log is *stalled* (`sync` and new
//!   appends fail with `DiskFull`, each retrying the write first), and the
//!   first write that succeeds once space is free un-stalls it.
//!
//! After every fsync that moves the durable point, and when it is
//! poisoned, the leader publishes the durable watermark in the lock file
//! (`docs/format.md`, "The durable watermark") for readers and for the next
//! `open`.

use std::collections::BTreeMap;
use std::mem;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::JoinHandle;

use tokio::sync::watch;
use uuid::Uuid;

use crate::error::WalError;
use crate::format::{
    BootId, FrameHeader, HEAD_LEN, Head, LOCK_FILE, Lsn, MAX_LSN, WATERMARK_LEN, Watermark,
    encode_frame, encode_frame_unchecked,
};
use crate::fs::{Fs, LockGuard};
use crate::options::{SyncPolicy, WalOptions};
use crate::telemetry::WalMetrics;

mod discards;
mod disk;
mod durable;

use discards::Discards;
pub(crate) use disk::Io;
use disk::Outcome;
pub use durable::CommitHold;

/// How many batches a leader leads in a row, beyond its own, when records
/// keep queuing up behind it.
const EXTRA_BATCHES: u32 = 1;

/// Under `SyncPolicy::Never` in an encrypted log, how many buffers
/// (`WalOptions::buffer_bytes`) appenders may queue ahead of the committer
/// thread sealing and writing the batch before: past this, an appender
/// waits for that batch (or, nobody leading, leads it itself).
const SEAL_AHEAD_BUFFERS: usize = 2;

/// What the watch channel publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Progress {
    /// Every LSN below this is durable.
    pub(crate) durable_end: Lsn,
    pub(crate) poisoned: bool,
    /// The writer was closed and its final sync is over: nothing more
    /// will become durable (set by `Writer::close` only).
    pub(crate) closed: bool,
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WalStats {
    /// Records appended (acknowledged or queued) since open.
    pub appends: u64,
    /// Batches handed to the file system.
    pub writes: u64,
    /// `fdatasync` calls on segments.
    pub fsyncs: u64,
    /// Records made durable by those fsyncs.
    pub records_synced: u64,
    /// Segments created since open.
    pub segments_created: u64,
    /// Time spent in those `fdatasync` calls, in microseconds (divided by
    /// `fsyncs`: the disk's mean flush latency).
    pub fsync_micros: u64,
}

#[derive(Debug)]
struct State {
    next_lsn: Lsn,
    pending: Vec<u8>,
    pending_first: Lsn,
    spare: Vec<u8>,
    /// Every LSN below this was handed to the file system.
    written_end: Lsn,
    /// Every LSN below this is durable.
    durable_end: Lsn,
    leader: bool,
    /// Number of the batch now filling up in `pending`; the one in flight,
    /// if any, is `batch - 1`.
    batch: u64,
    /// Threads waiting on each of `Writer::turn`: a leader skips the
    /// wake-up (a `futex` system call) of a condition variable nobody waits
    /// on, which at one appender is every batch.
    waiting: [usize; 2],
    /// Appenders waiting in `seal_aside` for the queue to shrink.
    room_waiting: usize,
    /// What full disks discarded, by epoch, while a waiter may need it.
    discards: Discards,
    /// Under `Batch` and `Never`: a write failed for a full disk and the
    /// records it could not write are still queued (see the module docs).
    stalled: Option<WalError>,
    /// Tasks waiting for their record to be durable (`Wal::append_async`),
    /// by LSN and a number telling apart two waits on a reused LSN.
    async_waiters: BTreeMap<(Lsn, u64), Waker>,
    /// Numbers the async waits.
    async_seq: u64,
    /// Under `Always`: every async record is below this LSN; the committer
    /// thread leads until they are durable.
    async_until: Lsn,
    /// Under `Never`: an async append filled the buffer; the committer
    /// thread writes it.
    async_flush: bool,
    /// How many records the latest batch carried: more than one means
    /// appenders are queuing up behind each other (see [`durable`]).
    last_batch: u64,
    /// Live [`CommitHold`]s: an idle committer waits for the last to end
    /// (at most [`durable::HOLD_LIMIT`] from when it began to wait) before
    /// it leads.
    holds: usize,
    /// When the committer began to wait for the holds with records queued
    /// (None: it is not waiting for them; reset at each batch it leads).
    held_since: Option<std::time::Instant>,
    /// The committer knows of the records queued under the holds (told by
    /// the first of them, or waiting already): later ones need not wake
    /// it. Reset at each batch it leads.
    hold_noticed: bool,
    /// Records below this LSN have a thread blocked on them
    /// (`Wal::append_many`): no hold delays their batch.
    unheld_until: Lsn,
    poisoned: Option<Arc<WalError>>,
    closed: bool,
    stats: WalStats,
}

/// The shared writer of one log directory.
#[derive(Debug)]
pub(crate) struct Writer {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: WalOptions,
    max_payload: usize,
    state: Mutex<State>,
    /// Waiters for durability and for the leader's turn, by the parity of
    /// their batch: finishing a batch wakes its own appenders, and just one
    /// appender of the next batch to lead it, not the whole crowd.
    turn: [Condvar; 2],
    /// Wakes the `SyncPolicy::Batch` flusher.
    flusher: Condvar,
    /// Wakes the committer thread of async appends (see [`durable`]).
    committer: Condvar,
    /// Wakes appenders waiting in `seal_aside`: a leader notifies it when
    /// it takes the queue and when it ends a batch (the queue shrank, or
    /// the log failed, or nobody leads any more).
    room: Condvar,
    committer_thread: Mutex<Option<JoinHandle<()>>>,
    io: Mutex<Io>,
    durable_end: AtomicU64,
    progress: watch::Sender<Progress>,
    /// The writer lock; its file carries the durable watermark.
    lock: Box<dyn LockGuard>,
    /// The watermark last published (written under the `io` lock only).
    published: AtomicU64,
    /// Whether a failed publication was already reported.
    publish_failed: AtomicBool,
    /// The machine's boot, written into every watermark.
    boot_id: BootId,
    /// What is recorded beside `State::stats` (`telemetry.rs`).
    metrics: WalMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    /// A writer continuing the log at `next_lsn`, whose records below it are
    /// all durable. Publishes (and fsyncs) that watermark in the lock file
    /// before anything can be appended.
    pub(crate) fn new(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        opts: WalOptions,
        io: Io,
        next_lsn: Lsn,
        lock: Box<dyn LockGuard>,
    ) -> Result<Writer, WalError> {
        let mut io = io;
        let lock_path = dir.join(LOCK_FILE);
        let boot_id = fs.boot_id();
        let watermark = Watermark {
            durable_end: next_lsn,
            poisoned: false,
            boot_id,
        };
        let mut bytes = watermark.encode().to_vec();
        if let Some(chain) = io.chain.as_mut() {
            bytes.extend_from_slice(&chain.head().encode());
        }
        lock.publish(&bytes)
            .map_err(|e| WalError::io("write the durable watermark", &lock_path, e))?;
        lock.sync()
            .map_err(|e| WalError::fatal("fsync", &lock_path, e))?;
        let metrics = WalMetrics::new(&dir);
        metrics.durable_lsn.set(next_lsn.saturating_sub(1) as f64);
        let (progress, _) = watch::channel(Progress {
            durable_end: next_lsn,
            poisoned: false,
            closed: false,
        });
        Ok(Writer {
            fs,
            dir,
            max_payload: opts.max_payload_len(),
            opts,
            state: Mutex::new(State {
                next_lsn,
                pending: Vec::new(),
                pending_first: next_lsn,
                spare: Vec::new(),
                written_end: next_lsn,
                durable_end: next_lsn,
                leader: false,
                batch: 0,
                waiting: [0; 2],
                room_waiting: 0,
                discards: Discards::default(),
                stalled: None,
                async_waiters: BTreeMap::new(),
                async_seq: 0,
                async_until: 0,
                async_flush: false,
                last_batch: 0,
                holds: 0,
                held_since: None,
                hold_noticed: false,
                unheld_until: 0,
                poisoned: None,
                closed: false,
                stats: WalStats::default(),
            }),
            turn: [Condvar::new(), Condvar::new()],
            flusher: Condvar::new(),
            committer: Condvar::new(),
            room: Condvar::new(),
            committer_thread: Mutex::new(None),
            io: Mutex::new(io),
            durable_end: AtomicU64::new(next_lsn),
            progress,
            lock,
            published: AtomicU64::new(next_lsn),
            publish_failed: AtomicBool::new(false),
            boot_id,
            metrics,
        })
    }

    /// Publish the durable watermark in the lock file (called by the leader,
    /// under the `io` lock). A failure only makes readers lag and the next
    /// `open` less strict; it is reported once and does not poison.
    fn publish_watermark(&self, durable_end: Lsn, poisoned: bool, head: Option<Head>) {
        let durable_end = durable_end.max(self.published.load(Ordering::Relaxed));
        self.published.store(durable_end, Ordering::Relaxed);
        let watermark = Watermark {
            durable_end,
            poisoned,
            boot_id: self.boot_id,
        }
        .encode();
        let mut bytes = [0u8; WATERMARK_LEN + HEAD_LEN];
        bytes[..WATERMARK_LEN].copy_from_slice(&watermark);
        let len = match head {
            Some(head) => {
                bytes[WATERMARK_LEN..].copy_from_slice(&head.encode());
                bytes.len()
            }
            None => WATERMARK_LEN,
        };
        if let Err(error) = self.lock.publish(bytes.get(..len).unwrap_or_default()) {
            if !self.publish_failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, dir = %self.dir.display(), "cannot publish the durable watermark in LOCK: readers of this log will lag");
            }
        }
    }

    /// The id of the key new segments are encrypted with, if any.
    pub(crate) fn key_id(&self) -> Option<u32> {
        self.opts
            .encryption
            .as_ref()
            .map(|ring| ring.current().id())
    }

    /// At open: if this writer has a key and the tail segment was written
    /// in the clear or with another key, start a new segment, so that every
    /// segment holds one key or none. A writer without a key refuses an
    /// encrypted tail: a log never goes back to the clear by accident.
    pub(crate) fn start_segment_for_key(&self) -> Result<(), WalError> {
        let mut io = lock(&self.io);
        let header = crate::segment::read_header(&*io.file, &io.entry)?;
        if header.key_id == self.key_id() {
            return Ok(());
        }
        if let (None, Some(key_id)) = (self.key_id(), header.key_id) {
            return Err(WalError::KeyRequired {
                segment: io.entry.path.clone(),
                key_id,
            });
        }
        let next = lock(&self.state).next_lsn;
        let mut out = Outcome {
            written_bytes: 0,
            written_end: next,
            durable_end: None,
            error: None,
            fsyncs: 0,
            fsync_micros: 0,
            segments_created: 0,
        };
        self.roll(&mut io, next, &mut out)
    }

    /// Seal the active segment and start the next one, if it holds
    /// records and nothing is queued (every LSN handed out is durable);
    /// `Ok(false)` if it did not (an empty tail, or appends in flight).
    pub(crate) fn seal_tail_if_idle(&self) -> Result<bool, WalError> {
        let mut io = lock(&self.io);
        let next = lock(&self.state).next_lsn;
        if self.durable_end() != next || io.write_pos <= io.records_start {
            return Ok(false);
        }
        let mut out = Outcome {
            written_bytes: 0,
            written_end: next,
            durable_end: None,
            error: None,
            fsyncs: 0,
            fsync_micros: 0,
            segments_created: 0,
        };
        let rolled = self.roll(&mut io, next, &mut out);
        drop(io);
        // Its fsyncs and segment counted as a batch's are (the fsyncs'
        // latency is recorded by `roll`).
        {
            let mut st = lock(&self.state);
            st.stats.fsyncs += out.fsyncs;
            st.stats.fsync_micros += out.fsync_micros;
            st.stats.segments_created += out.segments_created;
        }
        self.metrics.fsyncs.increment(out.fsyncs);
        self.metrics.segments.increment(out.segments_created);
        if let Err(e) = rolled {
            // As in the commit path: a full disk while creating the next
            // segment leaves the sealed one active; anything else (a
            // failed fsync) poisons.
            if e.is_disk_full() {
                self.metrics.disk_full.increment(1);
            } else {
                self.poison(e.clone());
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Poison the writer from outside the commit path (a failed directory
    /// fsync of a compaction): every later append and sync fails until the
    /// log is reopened, as after any failed fsync.
    pub(crate) fn poison(&self, error: WalError) {
        let mut st = lock(&self.state);
        if st.poisoned.is_none() {
            tracing::error!(%error, "log poisoned: every later append fails until it is reopened");
            st.poisoned = Some(Arc::new(error));
            self.metrics.poisoned.set(1.0);
        }
        // Async waiters learn it when polled; the committer exits.
        let wakers = mem::take(&mut st.async_waiters);
        drop(st);
        for (_, waker) in wakers {
            waker.wake();
        }
        self.committer.notify_one();
        self.progress.send_modify(|p| p.poisoned = true);
    }

    pub(crate) fn options(&self) -> &WalOptions {
        &self.opts
    }

    pub(crate) fn durable_end(&self) -> Lsn {
        self.durable_end.load(Ordering::Acquire)
    }

    pub(crate) fn next_lsn(&self) -> Lsn {
        lock(&self.state).next_lsn
    }

    pub(crate) fn stats(&self) -> WalStats {
        lock(&self.state).stats
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub(crate) fn poison_cause(&self) -> Option<Arc<WalError>> {
        lock(&self.state).poisoned.clone()
    }

    pub(crate) fn with_io<T>(&self, f: impl FnOnce(&mut Io) -> T) -> T {
        f(&mut lock(&self.io))
    }

    /// Refuse a payload the log cannot take, before anything is queued.
    fn admit(&self, payload: &[u8]) -> Result<(), WalError> {
        if payload.is_empty() {
            return Err(WalError::EmptyRecord);
        }
        if payload.len() > self.max_payload {
            return Err(WalError::RecordTooLarge {
                size: payload.len(),
                max: self.max_payload,
            });
        }
        Ok(())
    }

    /// Give the record the next LSN and queue it; returns its LSN and the
    /// epoch it was queued in.
    fn queue(
        &self,
        st: &mut State,
        session: Uuid,
        payload: &[u8],
        timestamp_us: u64,
    ) -> Result<(Lsn, usize), WalError> {
        let lsn = st.next_lsn;
        if lsn > MAX_LSN {
            return Err(WalError::LsnExhausted);
        }
        st.next_lsn += 1;
        st.stats.appends += 1;
        self.metrics.appends.increment(1);
        let header = FrameHeader {
            lsn,
            sync_mark: st.durable_end,
            timestamp_us,
            session,
        };
        // In the clear as queued; an encrypted log's leader seals the batch
        // and frames it again, CRC included (`disk.rs`).
        if self.opts.encryption.is_some() {
            encode_frame_unchecked(&mut st.pending, &header, payload);
        } else {
            encode_frame(&mut st.pending, &header, payload);
        }
        Ok((lsn, st.discards.epoch()))
    }

    /// Append one record; see the module docs for when this returns.
    pub(crate) fn append(
        self: &Arc<Self>,
        session: Uuid,
        payload: &[u8],
        timestamp_us: u64,
    ) -> Result<Lsn, WalError> {
        self.admit(payload)?;
        let mut st = lock(&self.state);
        Self::check_open(&st)?;
        if st.stalled.is_some() {
            st = self.retry_stalled(st)?;
        }
        let (lsn, epoch) = self.queue(&mut st, session, payload, timestamp_us)?;
        match self.opts.sync {
            SyncPolicy::Always => self.wait_for(st, lsn, epoch),
            SyncPolicy::Batch { max_bytes, .. } => {
                // Wake the flusher when its clock starts (the first record
                // of an idle log) and when the byte bound is reached.
                if lsn == st.durable_end || st.pending.len() >= max_bytes {
                    self.flusher.notify_one();
                }
                Ok(lsn)
            }
            SyncPolicy::Never if self.opts.encryption.is_some() => {
                if st.pending.len() >= self.opts.buffer_bytes {
                    self.seal_aside(st)?;
                }
                Ok(lsn)
            }
            SyncPolicy::Never => {
                if st.pending.len() >= self.opts.buffer_bytes && !st.leader {
                    let st = self.lead(st, false);
                    // A full disk keeps this record queued with its LSN
                    // (the log is stalled): only poisoning fails it.
                    if let Some(cause) = &st.poisoned {
                        return Err(WalError::Poisoned {
                            cause: cause.clone(),
                        });
                    }
                }
                Ok(lsn)
            }
        }
    }

    /// Under `SyncPolicy::Never` in an encrypted log, a full buffer is
    /// sealed and written by the committer thread while appenders go on
    /// filling the next one: sealing (an AES-GCM pass over every payload)
    /// then runs beside the appending thread rather than on it. Appenders
    /// queue at most [`SEAL_AHEAD_BUFFERS`] buffers ahead of it.
    fn seal_aside<'a>(self: &'a Arc<Self>, mut st: MutexGuard<'a, State>) -> Result<(), WalError> {
        if !mem::replace(&mut st.async_flush, true) {
            // The committer is yet to be told (until it takes the batch,
            // every append finds the buffer full: one wake-up is enough).
            // Started before anyone waits for it, with the state unlocked.
            drop(st);
            self.start_committer()?;
            st = lock(&self.state);
            if !st.leader {
                self.committer.notify_one();
            }
        }
        let ahead = SEAL_AHEAD_BUFFERS * self.opts.buffer_bytes;
        while st.pending.len() >= ahead && st.poisoned.is_none() && st.stalled.is_none() {
            // The committer was told (`async_flush`) and takes the queue
            // as soon as the batch before is written: leading it here
            // instead would seal on this thread while the committer sat
            // idle (the two race for the lock as a batch ends), and the
            // chain lets only one thread seal at a time.
            if !st.leader && !st.async_flush {
                st = self.lead(st, false);
                continue;
            }
            // Woken when a leader takes the queue or ends a batch,
            // whichever batch it is.
            st.room_waiting += 1;
            st = self.room.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.room_waiting -= 1;
        }
        if let Some(cause) = &st.poisoned {
            return Err(WalError::Poisoned {
                cause: cause.clone(),
            });
        }
        Ok(())
    }

    /// Under a stall (see the module docs), retry writing the queued
    /// records before accepting a new one; still full: `DiskFull`.
    fn retry_stalled<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, WalError> {
        let st = if st.leader {
            st
        } else {
            let sync = matches!(self.opts.sync, SyncPolicy::Batch { .. });
            self.lead(st, sync)
        };
        Self::check_open(&st)?;
        match &st.stalled {
            Some(error) => Err(error.clone()),
            None => Ok(st),
        }
    }

    /// Write and fsync everything appended so far; returns the last
    /// durable LSN.
    pub(crate) fn sync(&self) -> Result<Lsn, WalError> {
        self.sync_locked(lock(&self.state))
    }

    fn sync_locked<'a>(&'a self, st: MutexGuard<'a, State>) -> Result<Lsn, WalError> {
        if let Some(cause) = &st.poisoned {
            return Err(WalError::Poisoned {
                cause: cause.clone(),
            });
        }
        let last = st.next_lsn - 1;
        let epoch = st.discards.epoch();
        if last < st.durable_end {
            return Ok(last);
        }
        self.wait_for(st, last, epoch)
    }

    fn check_open(st: &State) -> Result<(), WalError> {
        if let Some(cause) = &st.poisoned {
            return Err(WalError::Poisoned {
                cause: cause.clone(),
            });
        }
        if st.closed {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    /// The error for a record of `epoch` discarded by a full disk, if it was.
    fn discarded(st: &State, lsn: Lsn, epoch: usize) -> Result<(), WalError> {
        st.discards.check(lsn, epoch)
    }

    /// Wait until `lsn` (queued in `epoch`) is durable, leading batches
    /// when nobody else does. Holds `epoch` meanwhile (see [`Discards`]).
    fn wait_for<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        lsn: Lsn,
        epoch: usize,
    ) -> Result<Lsn, WalError> {
        st.discards.hold(epoch);
        let (mut st, result) = self.wait_holding(st, lsn, epoch);
        st.discards.release(epoch);
        result
    }

    fn wait_holding<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        lsn: Lsn,
        epoch: usize,
    ) -> (MutexGuard<'a, State>, Result<Lsn, WalError>) {
        loop {
            if let Err(e) = Self::discarded(&st, lsn, epoch) {
                return (st, Err(e));
            }
            if lsn < st.durable_end {
                return (st, Ok(lsn));
            }
            if let Some(cause) = &st.poisoned {
                let cause = cause.clone();
                return (st, Err(WalError::Poisoned { cause }));
            }
            st = if st.leader {
                let batch = if lsn >= st.pending_first {
                    st.batch
                } else {
                    st.batch.wrapping_sub(1)
                };
                let parity = (batch % 2) as usize;
                st.waiting[parity] += 1;
                let mut st = self.turn[parity]
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                st.waiting[parity] -= 1;
                st
            } else {
                self.lead(st, true)
            };
        }
    }

    /// Take the leader's turn: write the pending batch (and fsync it when
    /// `sync`), publish the outcome and wake its appenders. If records
    /// queued up meanwhile, lead their batch too (up to
    /// [`EXTRA_BATCHES`] times) rather than wake another thread to do it:
    /// the hand-off would leave the disk idle for a wake-up.
    fn lead<'a>(&'a self, st: MutexGuard<'a, State>, sync: bool) -> MutexGuard<'a, State> {
        self.lead_batches(st, sync, EXTRA_BATCHES)
    }

    /// [`Writer::lead`], leading at most `extra_batches` batches beyond
    /// the first.
    fn lead_batches<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        sync: bool,
        extra_batches: u32,
    ) -> MutexGuard<'a, State> {
        let mut extra = 0;
        loop {
            st.leader = true;
            let first = st.pending_first;
            let end = st.next_lsn;
            let spare = mem::take(&mut st.spare);
            let mut batch = mem::replace(&mut st.pending, spare);
            st.pending_first = end;
            let taken = st.batch;
            st.batch = st.batch.wrapping_add(1);
            let batch_sync = sync && st.durable_end < end;
            let room = st.room_waiting > 0;
            drop(st);
            if room {
                self.room.notify_all();
            }

            let outcome = {
                let mut io = lock(&self.io);
                self.write_batch(&mut io, &batch, first, end, batch_sync)
            };

            st = lock(&self.state);
            let rest = batch.get(outcome.written_bytes..).unwrap_or_default();
            let everyone = self.publish(&mut st, outcome, rest);
            st.last_batch = end - first;
            batch.clear();
            st.spare = batch;
            let more = st.next_lsn > st.pending_first;
            let go_on = more && sync && !everyone && extra < extra_batches;
            if !go_on {
                st.leader = false;
            }
            // Async waiters whose record is now durable (all of them if the
            // log failed: they learn it when polled).
            let wakers = if everyone {
                mem::take(&mut st.async_waiters)
            } else {
                let durable = st.durable_end;
                let rest = st.async_waiters.split_off(&(durable, 0));
                mem::replace(&mut st.async_waiters, rest)
            };
            let committer = !go_on
                && (st.poisoned.is_some() || st.durable_end < st.async_until || st.async_flush);
            // Whom to wake, decided under the lock: a thread that starts
            // waiting after it is released sees this turn's outcome first.
            let parity = |batch: u64| (batch % 2) as usize;
            let waiting = st.waiting;
            let next = (more && !go_on)
                .then_some(parity(st.batch))
                .filter(|&p| waiting[p] > 0);
            let taken = Some(parity(taken)).filter(|&p| waiting[p] > 0);
            let room = st.room_waiting > 0;
            // Notify with the lock released, so that woken threads do not
            // immediately block on it; the next batch's leader goes first.
            drop(st);
            for (_, waker) in wakers {
                waker.wake();
            }
            if committer {
                self.committer.notify_one();
            }
            if room {
                self.room.notify_all();
            }
            if everyone {
                for (turn, &n) in self.turn.iter().zip(&waiting) {
                    if n > 0 {
                        turn.notify_all();
                    }
                }
            } else {
                if let Some(next) = next {
                    self.turn[next].notify_one();
                }
                if let Some(taken) = taken {
                    self.turn[taken].notify_all();
                }
            }
            st = lock(&self.state);
            if !go_on {
                return st;
            }
            extra += 1;
        }
    }

    /// Record what a leader's turn achieved. Returns whether every waiter
    /// must wake (the log failed, or a full disk discarded records).
    fn publish(&self, st: &mut State, outcome: Outcome, rest: &[u8]) -> bool {
        let epoch_before = st.discards.epoch();
        st.stats.writes += 1;
        st.stats.fsyncs += outcome.fsyncs;
        st.stats.fsync_micros += outcome.fsync_micros;
        st.stats.segments_created += outcome.segments_created;
        st.written_end = st.written_end.max(outcome.written_end);
        let m = &self.metrics;
        m.batches.increment(1);
        m.written_bytes.increment(outcome.written_bytes as u64);
        m.fsyncs.increment(outcome.fsyncs);
        m.segments.increment(outcome.segments_created);
        if let Some(d) = outcome.durable_end {
            if d > st.durable_end {
                st.stats.records_synced += d - st.durable_end;
                m.synced.increment(d - st.durable_end);
                m.records_per_fsync.record((d - st.durable_end) as f64);
                m.durable_lsn.set((d - 1) as f64);
                st.durable_end = d;
            }
        }
        if outcome.error.as_ref().is_some_and(WalError::is_disk_full) {
            m.disk_full.increment(1);
        }
        match outcome.error {
            None => {
                if st.stalled.take().is_some() {
                    m.stalled.set(0.0);
                }
            }
            Some(error) if error.is_disk_full() && self.opts.sync != SyncPolicy::Always => {
                // These records returned `Ok(lsn)`: keep them queued, in
                // front of what queued meanwhile, with their LSNs. Waiters
                // (`sync` callers) of this epoch fail with the error.
                let from = outcome.written_end;
                if st.stalled.is_none() {
                    tracing::warn!(%error, from_lsn = from, "disk full: queued records are kept; sync and appends fail until space is free");
                    m.stalls.increment(1);
                    m.stalled.set(1.0);
                }
                let mut kept = Vec::with_capacity(rest.len() + st.pending.len());
                kept.extend_from_slice(rest);
                kept.extend_from_slice(&st.pending);
                st.pending = kept;
                st.pending_first = from;
                st.discards.push(from, error.clone());
                st.stalled = Some(error);
            }
            Some(error) if error.is_disk_full() => {
                // Nothing from `written_end` on was acknowledged: drop it all
                // (including what queued meanwhile) and reuse its LSNs.
                let from = outcome.written_end;
                tracing::warn!(%error, from_lsn = from, "disk full: failing the batch; appends resume once space is free");
                st.pending.clear();
                st.pending_first = from;
                st.next_lsn = from;
                st.async_until = st.async_until.min(from);
                st.discards.push(from, error);
            }
            Some(error) => {
                tracing::error!(%error, "log poisoned: every later append fails until it is reopened");
                st.poisoned = Some(Arc::new(error));
                m.poisoned.set(1.0);
            }
        }
        m.queued.set((st.next_lsn - st.written_end) as f64);
        self.durable_end.store(st.durable_end, Ordering::Release);
        // `closed` is left as it is: only `close` sets it, once its own sync
        // is over. `st.closed` is set when `close` *begins*, and a batch
        // already in flight then (the flusher's, another caller's) ends here
        // before the records queued behind it are durable: announcing
        // "closed" with this older durable end would tell a follower that
        // nothing more is coming (`DurableWatch::changed` returns `None`,
        // `Wal::wait_durable` fails with `Closed`) while the close is still
        // making those records durable.
        self.progress.send_modify(|p| {
            p.durable_end = st.durable_end;
            p.poisoned = st.poisoned.is_some();
        });
        st.poisoned.is_some() || st.discards.epoch() != epoch_before
    }

    /// Mark the writer closed, flush and fsync everything pending, and make
    /// the durable watermark itself durable (once).
    pub(crate) fn close(&self) -> Result<(), WalError> {
        let mut st = lock(&self.state);
        let first = !st.closed;
        st.closed = true;
        self.flusher.notify_all();
        self.committer.notify_all();
        let synced = self.sync_locked(st);
        // Whatever the sync did: nothing more will become durable.
        self.progress.send_modify(|p| p.closed = true);
        synced?;
        if first {
            let mut io = lock(&self.io);
            // The tail's index, up to its last record (all durable now).
            self.store_index(&mut io);
            // Advisory, like every publication: the records are durable
            // whatever becomes of the watermark.
            if let Err(error) = self.lock.sync() {
                tracing::warn!(%error, dir = %self.dir.display(), "cannot fsync the durable watermark in LOCK at close");
            }
        }
        Ok(())
    }

    /// The `SyncPolicy::Batch` flusher: make queued records durable within
    /// `max_delay`, or as soon as `max_bytes` are pending.
    pub(crate) fn run_flusher(&self) {
        let SyncPolicy::Batch {
            max_delay,
            max_bytes,
        } = self.opts.sync
        else {
            return;
        };
        let mut st = lock(&self.state);
        loop {
            if st.closed || st.poisoned.is_some() {
                return;
            }
            if st.next_lsn == st.durable_end {
                st = self
                    .flusher
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            if st.pending.len() < max_bytes || st.stalled.is_some() {
                st = self
                    .flusher
                    .wait_timeout(st, max_delay)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                if st.closed {
                    return;
                }
            }
            let last = st.next_lsn - 1;
            let epoch = st.discards.epoch();
            if last >= st.durable_end {
                match self.wait_for(st, last, epoch) {
                    // Reported once when the stall began; retried every `max_delay`.
                    Err(error) if error.is_disk_full() => {
                        tracing::debug!(%error, "background flush: disk still full");
                    }
                    Err(error) => tracing::warn!(%error, "background flush failed"),
                    Ok(_) => {}
                }
                st = lock(&self.state);
            }
        }
    }
}
