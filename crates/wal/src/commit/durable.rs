//! Async appends: queue a record without blocking, and a future that
//! resolves when the batch holding it is durable.
//!
//! [`Writer::enqueue`] encodes the record into the pending batch under the
//! state lock (a memory copy, never I/O) and returns a [`Ticket`]. Under
//! `SyncPolicy::Always` the ticket waits for durability: the record is
//! written and fsynced by whichever thread leads next — a thread appending
//! synchronously, or the writer's **committer thread**, started by the
//! first async append that needs it, which leads whenever async records are
//! not yet durable and nobody else leads. All records queued meanwhile, sync
//! and async, share its fsync.
//!
//! The uncontended case leads on the task's thread instead: nobody leads,
//! nothing else is queued, no task waits, the latest batch carried a single
//! record (appenders are not queuing up behind each other: where they are,
//! a one-record batch would cost the others an fsync), and the thread is in
//! a tokio runtime with another worker to run the other tasks meanwhile.
//! The task then writes and fsyncs its one-record batch itself, as a lone
//! thread calling `append` does, and skips the two hand-offs (to the
//! committer and back through the waker) that otherwise cost a lone task
//! about a fifth of its rate. It leads that batch only, never the next, so its worker is
//! inside at most one fsync; with one leader at a time, at most one worker
//! is. On a current-thread (or one-worker) runtime and outside tokio the
//! committer always leads, and polling a ticket never does I/O.
//!
//! A waiting ticket registers its task's waker under its LSN; the
//! leader wakes exactly the tickets its fsync made durable (every ticket,
//! if the log failed), with no channel scanned per record.
//!
//! Under `Batch` and `Never` a ticket is ready at once, as the blocking
//! append returns once queued: the flusher (`Batch`) or a `sync` (`Never`)
//! makes it durable. An async append under `Never` that fills the buffer
//! leaves the write to the committer thread, and so does a blocking one in
//! an encrypted log (`Writer::seal_aside`: the committer seals the batch
//! while appenders fill the next).
//!
//! Cancelling (dropping) a waiting ticket removes its waker; the record
//! stays queued and becomes durable with its batch.
//!
//! A [`CommitHold`] gathers a run of async appends into one batch: while
//! one is alive, the committer does not start a batch for the records
//! queued meanwhile until the last hold ends, [`HOLD_RECORDS`] wait, or
//! [`HOLD_LIMIT`] has passed since it began to wait for them. An event
//! loop holds for the rest of its turn: its tasks queue their records one
//! after another, and without the hold the committer would fsync the first
//! few on their own while the loop queues the rest, one fsync (with its
//! CPU and wake-ups) per few records. Only the committer waits: a thread
//! blocked on its records (`append`, `append_many`, `sync`, the `Batch`
//! flusher) leads or is led at once, and a closing log is not held.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Writer, lock};
use crate::error::WalError;
use crate::format::Lsn;
use crate::options::SyncPolicy;

/// The longest an idle committer with records queued waits for
/// [`CommitHold`]s to end, counted from when it began to wait (after its
/// previous batch): a hold that is never dropped (or an
/// event loop stuck in a long callback) delays a group commit by this much
/// at most.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_millis(1);

/// Records queued under a hold that make a batch worth its fsync: the
/// committer stops waiting for the hold's end once this many wait.
const HOLD_RECORDS: u64 = 64;

/// Holds back the group commit of async appends while alive (see the
/// module docs): [`Wal::hold_commit`](crate::Wal::hold_commit).
#[derive(Debug)]
#[must_use = "the hold ends when this is dropped"]
pub struct CommitHold {
    /// Weak: a hold outliving the last `Wal` clone must not keep the
    /// writer (and so the directory's lock) alive.
    writer: Weak<Writer>,
}

impl Drop for CommitHold {
    fn drop(&mut self) {
        let Some(writer) = self.writer.upgrade() else {
            return;
        };
        let mut st = lock(&writer.state);
        st.holds -= 1;
        if st.holds > 0 {
            return;
        }
        let kick = !st.leader && st.durable_end < st.async_until;
        drop(st);
        if kick {
            writer.committer.notify_one();
        }
    }
}

/// Whether this thread may write and fsync one batch without stalling its
/// async runtime: it runs on a tokio runtime with another worker to run
/// the other tasks meanwhile. (A leader is alone: at most one worker is
/// ever inside such a write.)
fn spare_worker() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|rt| rt.metrics().num_workers() >= 2)
}

/// An enqueued record: ready, or waiting for its batch's fsync.
#[derive(Debug)]
pub(crate) enum Ticket {
    /// Queued (or durable): nothing to wait for under this policy.
    Ready(Lsn),
    /// Durable once this resolves.
    Waiting(Durable),
}

impl Ticket {
    /// Wait for the ticket.
    pub(crate) async fn wait(self) -> Result<Lsn, WalError> {
        match self {
            Ticket::Ready(lsn) => Ok(lsn),
            Ticket::Waiting(durable) => durable.await,
        }
    }
}

/// Resolves when `lsn` is durable, or with the error that lost it.
#[derive(Debug)]
pub(crate) struct Durable {
    writer: Arc<Writer>,
    lsn: Lsn,
    epoch: usize,
    /// The key of this wait's waker, once registered.
    key: Option<(Lsn, u64)>,
}

impl Future for Durable {
    type Output = Result<Lsn, WalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut st = lock(&this.writer.state);
        let outcome = if let Err(e) = Writer::discarded(&st, this.lsn, this.epoch) {
            Some(Err(e))
        } else if this.lsn < st.durable_end {
            Some(Ok(this.lsn))
        } else {
            st.poisoned.as_ref().map(|cause| {
                Err(WalError::Poisoned {
                    cause: cause.clone(),
                })
            })
        };
        if let Some(outcome) = outcome {
            if let Some(key) = this.key.take() {
                st.async_waiters.remove(&key);
            }
            return Poll::Ready(outcome);
        }
        let key = *this.key.get_or_insert_with(|| {
            st.async_seq += 1;
            (this.lsn, st.async_seq)
        });
        st.async_waiters.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Durable {
    /// A wait for `lsn`, queued in `epoch`, which it holds (see
    /// [`Discards`](super::discards::Discards)) until dropped.
    fn new(writer: &Arc<Writer>, st: &mut super::State, lsn: Lsn, epoch: usize) -> Durable {
        st.discards.hold(epoch);
        Durable {
            writer: writer.clone(),
            lsn,
            epoch,
            key: None,
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        let mut st = lock(&self.writer.state);
        if let Some(key) = self.key.take() {
            st.async_waiters.remove(&key);
        }
        st.discards.release(self.epoch);
    }
}

impl Writer {
    /// Queue one record without blocking on I/O; see the module docs.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        session: Uuid,
        payload: &[u8],
        timestamp_us: u64,
    ) -> Result<Ticket, WalError> {
        self.admit(payload)?;
        let mut st = lock(&self.state);
        Self::check_open(&st)?;
        if let Some(error) = &st.stalled {
            // A full disk: the flusher (`Batch`) or a `sync` (`Never`)
            // retries; an async append never writes on its caller's thread.
            return Err(error.clone());
        }
        let (lsn, epoch) = self.queue(&mut st, session, payload, timestamp_us)?;
        match self.opts.sync {
            SyncPolicy::Always => {
                st.async_until = st.async_until.max(lsn + 1);
                let idle = !st.leader;
                let held = st.holds > 0;
                let durable = Durable::new(self, &mut st, lsn, epoch);
                if idle
                    && !held
                    && st.last_batch <= 1
                    && lsn == st.pending_first
                    && st.async_waiters.is_empty()
                    && spare_worker()
                {
                    // Uncontended: lead this one batch here, as a lone
                    // thread would (see the module docs).
                    drop(self.lead_batches(st, true, 0));
                    return Ok(Ticket::Waiting(durable));
                }
                // Under a hold, the committer hears of the first record
                // only (it then waits for the hold's end, or its limit).
                let wake = idle
                    && (!held || !mem::replace(&mut st.hold_noticed, true) || Self::hold_full(&st));
                drop(st);
                self.start_committer()?;
                if wake {
                    self.committer.notify_one();
                }
                Ok(Ticket::Waiting(durable))
            }
            SyncPolicy::Batch { max_bytes, .. } => {
                if lsn == st.durable_end || st.pending.len() >= max_bytes {
                    self.flusher.notify_one();
                }
                Ok(Ticket::Ready(lsn))
            }
            SyncPolicy::Never => {
                if st.pending.len() >= self.opts.buffer_bytes {
                    st.async_flush = true;
                    let idle = !st.leader;
                    drop(st);
                    self.start_committer()?;
                    if idle {
                        self.committer.notify_one();
                    }
                }
                Ok(Ticket::Ready(lsn))
            }
        }
    }

    /// [`Writer::enqueue`] for several records at once, queued under one
    /// hold of the state lock: under `Always` they share one batch.
    /// `async_caller`: the caller awaits the tickets (and may be held back
    /// by a [`CommitHold`]); otherwise a thread blocks on them, and the
    /// committer leads their batch at once.
    pub(crate) fn enqueue_many(
        self: &Arc<Self>,
        records: &[(Uuid, u64, Vec<u8>)],
        async_caller: bool,
    ) -> Result<Vec<Ticket>, WalError> {
        for (_, _, payload) in records {
            self.admit(payload)?;
        }
        let mut st = lock(&self.state);
        Self::check_open(&st)?;
        if let Some(error) = &st.stalled {
            return Err(error.clone());
        }
        // The whole batch must fit in the LSNs left, or none of it is
        // queued (all or nothing).
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        if count > 0 && st.next_lsn.saturating_add(count - 1) > super::MAX_LSN {
            return Err(WalError::LsnExhausted);
        }
        let mut queued = Vec::with_capacity(records.len());
        for (session, timestamp_us, payload) in records {
            queued.push(self.queue(&mut st, *session, payload, *timestamp_us)?);
        }
        let Some(&(last, _)) = queued.last() else {
            return Ok(Vec::new());
        };
        let wait = match self.opts.sync {
            SyncPolicy::Always => {
                st.async_until = st.async_until.max(last + 1);
                if !async_caller {
                    st.unheld_until = st.unheld_until.max(last + 1);
                }
                true
            }
            SyncPolicy::Batch { .. } => {
                self.flusher.notify_one();
                false
            }
            SyncPolicy::Never => {
                st.async_flush |= st.pending.len() >= self.opts.buffer_bytes;
                false
            }
        };
        let flush = st.async_flush && !st.leader;
        // Under a hold, as in `enqueue`: the committer hears of the first
        // records only.
        let held = async_caller && st.holds > 0;
        let wake = flush
            || (wait
                && (!held || !mem::replace(&mut st.hold_noticed, true) || Self::hold_full(&st)));
        let tickets = queued
            .into_iter()
            .map(|(lsn, epoch)| {
                if wait {
                    Ticket::Waiting(Durable::new(self, &mut st, lsn, epoch))
                } else {
                    Ticket::Ready(lsn)
                }
            })
            .collect();
        drop(st);
        if wait || flush {
            self.start_committer()?;
        }
        if wake {
            self.committer.notify_one();
        }
        Ok(tickets)
    }

    /// A [`CommitHold`] on this writer.
    pub(crate) fn hold(self: &Arc<Self>) -> CommitHold {
        let mut st = lock(&self.state);
        st.holds += 1;
        CommitHold {
            writer: Arc::downgrade(self),
        }
    }

    /// Whether the records queued under the holds make a batch worth its
    /// fsync already ([`HOLD_RECORDS`]).
    fn hold_full(st: &super::State) -> bool {
        st.next_lsn - st.pending_first >= HOLD_RECORDS
    }

    /// How much longer an idle committer with records queued waits for
    /// the holds to end: None when there are none, it has waited
    /// [`HOLD_LIMIT`] already (counted from when it began to wait: a record
    /// is held back at most that long once the committer is free), or the
    /// records held make a full batch. Marks the committer as knowing of
    /// the records queued.
    fn hold_left(st: &mut super::State) -> Option<Duration> {
        if st.holds == 0 || Self::hold_full(st) {
            return None;
        }
        st.hold_noticed = true;
        let since = *st.held_since.get_or_insert_with(Instant::now);
        HOLD_LIMIT
            .checked_sub(since.elapsed())
            .filter(|left| !left.is_zero())
    }

    /// Start the committer thread, once.
    pub(super) fn start_committer(self: &Arc<Self>) -> Result<(), WalError> {
        let mut slot = lock(&self.committer_thread);
        if slot.is_none() {
            let writer = self.clone();
            let handle = std::thread::Builder::new()
                .name("logbook-committer".into())
                .spawn(move || writer.run_committer())
                .map_err(|e| WalError::io("spawn the committer thread", &self.dir, e))?;
            *slot = Some(handle);
        }
        Ok(())
    }

    /// The committer thread: lead while async records wait and nobody else
    /// leads; exit once the log is closed (or poisoned).
    fn run_committer(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.poisoned.is_some() {
                // Poisoned from outside the commit path (a compaction):
                // async waiters learn it when polled.
                let wakers = mem::take(&mut st.async_waiters);
                drop(st);
                for (_, waker) in wakers {
                    waker.wake();
                }
                return;
            }
            let want_sync = st.durable_end < st.async_until;
            if !st.leader && (want_sync || st.async_flush) {
                let held = !st.async_flush && !st.closed && st.durable_end >= st.unheld_until;
                if held {
                    if let Some(left) = Self::hold_left(&mut st) {
                        st = self
                            .committer
                            .wait_timeout(st, left)
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                        continue;
                    }
                }
                st.async_flush = false;
                // The records queued after this batch start a wait of
                // their own (and the first of them wakes the committer if
                // it is waiting untimed by then).
                st.hold_noticed = false;
                st.held_since = None;
                st = self.lead(st, want_sync);
                continue;
            }
            if st.closed && !want_sync {
                return;
            }
            // Nothing to commit (another leader took what was held): the
            // next record queued under a hold must wake this thread.
            st.hold_noticed = false;
            st.held_since = None;
            st = self
                .committer
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Wait for the committer thread to exit (after `close`).
    pub(crate) fn join_committer(&self) {
        let handle = lock(&self.committer_thread).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}
