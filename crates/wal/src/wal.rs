//! [`Wal`]: opening (with recovery), appending, syncing, retention, closing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use logbook_bus::SessionEvent;
use uuid::Uuid;

use crate::clock::now_us;
use crate::commit::{Io, WalStats, Writer};
use crate::error::WalError;
use crate::event::encode_event;
use crate::format::{BootId, LOCK_FILE, Lsn, MAX_SEGMENT_SIZE, Watermark, WatermarkState};
use crate::fs::{Fs, LockGuard, OpenMode, PathKind, StdFs};
use crate::options::{SyncPolicy, WalOptions};
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, SegmentEntry};

/// A write-ahead log in one directory, shared by any number of sessions
/// and threads.
///
/// `Wal` is `Send + Sync` and cheap to clone: clones share one writer, one
/// group commit and one directory lock. The log is closed (flushed, fsynced
/// and unlocked) when the last clone is dropped, or explicitly with
/// [`Wal::close`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use logbook_bus::{SessionBus, SessionEvent};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let session = uuid::Uuid::new_v4();
/// let bus = SessionBus::new(256).with_durable_sink(Arc::new(wal.sink(session)));
/// bus.emit(SessionEvent::Done); // returns once the record is fsynced
/// assert_eq!(wal.durable_lsn(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Arc<Writer>,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    report: RecoveryReport,
    log_id: Uuid,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.writer.close() {
            tracing::warn!(%error, dir = %self.dir.display(), "closing the log failed");
        }
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.writer.join_committer();
    }
}

impl Wal {
    /// Open (creating if needed) the log in `dir`, recovering its tail.
    ///
    /// Takes the directory's writer lock; removes leftovers of an
    /// interrupted segment creation; validates the tail segment and, as
    /// `opts.recovery` allows, cuts a torn tail. What was found and done is
    /// in [`Wal::recovery`].
    ///
    /// # Errors
    ///
    /// [`WalError::Locked`] if another writer holds the directory;
    /// [`WalError::NotFound`] / [`WalError::NotADirectory`] for a bad path;
    /// [`WalError::KeyRequired`] for an encrypted tail and no keys;
    /// [`WalError::UnrelatedKeys`] for keys that match none of the log's
    /// encrypted segments;
    /// header and corruption errors naming the segment, offset and LSN; I/O
    /// errors naming the file.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal, WalError> {
        Wal::open_with_fs(Arc::new(StdFs), dir, opts)
    }

    /// [`Wal::open`] on another file system: any [`Fs`](crate::fs::Fs), such as the
    /// simulated one of the `testing` feature (`sim::SimFs`).
    ///
    /// # Errors
    ///
    /// As [`Wal::open`].
    pub fn open_with_fs(
        fs: Arc<dyn Fs>,
        dir: impl AsRef<Path>,
        opts: WalOptions,
    ) -> Result<Wal, WalError> {
        opts.validate().map_err(WalError::InvalidOptions)?;
        let dir = dir.as_ref().to_path_buf();
        if fs.kind(&dir).map_err(|e| WalError::io("stat", &dir, e))? == PathKind::Missing
            && opts.create_if_missing
        {
            create_dir_durably(&*fs, &dir)?;
        }
        segment::check_dir(&*fs, &dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = take_lock(&*fs, &dir, &lock_path)?;
        // What the previous writer vouched for (or, poisoned, did not).
        let prior = segment::read_watermark(&*fs, &dir)?;

        let listing = segment::list(&*fs, &dir)?;
        // Keys that match none of the log's encrypted segments: refused
        // before anything is changed.
        crate::key_check::check_writer_keys(&*fs, &listing.segments, opts.encryption.as_deref())?;
        // Refused before anything is changed (recovery included).
        let encrypted = crate::chain::survey(&*fs, &listing.segments, opts.encryption.as_deref())?;
        for path in &listing.foreign {
            tracing::warn!(path = %path.display(), "ignoring a file that is not part of the log");
        }
        segment::remove_temporaries(&*fs, &dir, &listing.temporaries)?;
        segment::remove_compacting(&*fs, &dir, &listing.compacting)?;
        // Derived files left stale by a retention or compaction cut short
        // (their segment gone, or rewritten since): they may hold what was
        // removed. Their removal is made durable by the fsync below.
        crate::index::sweep(&*fs, &dir)?;
        if let Some(tail) = listing.segments.last() {
            // A tail that is not a segment is reported as such, before any
            // question about the log's id.
            let file = fs
                .open(&tail.path, OpenMode::Read)
                .map_err(|e| WalError::io("open", &tail.path, e))?;
            segment::read_header(&*file, tail)?;
        }
        let log_id = crate::log_id::ensure(
            &*fs,
            &dir,
            encrypted
                .as_ref()
                .map(|e| (e.block.log_id, e.entry.path.as_path())),
            !listing.segments.is_empty(),
        )?;
        // A previous writer may have died (or failed) between creating or
        // renaming a segment and fsyncing the directory: make every name
        // durable before adopting the tail and acknowledging anything in it.
        // This also makes the lock file's own entry durable.
        fs.sync_dir(&dir)
            .map_err(|e| WalError::fatal("fsync directory", &dir, e))?;
        sync_parent(&*fs, &dir)?;
        let mut report = RecoveryReport {
            segments: listing.segments.len(),
            temporaries: listing.temporaries.clone(),
            foreign: listing.foreign.clone(),
            ..RecoveryReport::default()
        };
        let prealloc = opts.preallocate.then_some(opts.segment_size);
        let (io, next_lsn) = match listing.segments.last() {
            None => {
                let chain = opts.encryption.as_ref().map(|ring| {
                    crate::chain::ChainState::new(ring.current().clone(), log_id, 1, 0, [0; 16])
                });
                let seal = chain.as_ref().map(|c| c.new_segment(1));
                let (entry, file, start) =
                    segment::create(&*fs, &dir, 1, opts.codec_id, seal, prealloc)?;
                report.created = true;
                report.segments = 1;
                report.tail = Some(entry.path.clone());
                let mut io = Io::new(entry, file, start, start as u64);
                io.chain = chain;
                (io, 1)
            }
            Some(tail) => {
                let (mut io, next) = recover_tail(&*fs, tail, &opts, prior, &*lock, &mut report)?;
                if let Some(ring) = &opts.encryption {
                    io.chain = Some(crate::chain::writer_chain(
                        ring,
                        log_id,
                        encrypted.as_ref(),
                        &*io.file,
                        tail,
                        io.write_pos,
                        next,
                    )?);
                }
                (io, next)
            }
        };
        if let Some(ring) = &opts.encryption {
            // The authenticated head names the last record a writer made
            // durable: a log that now ends before it lost acknowledged
            // records (cut by someone without the key, whatever the
            // watermark says). Refused: a writer would reuse their LSNs.
            if let Some(head) = crate::chain::published_head_with(&*fs, &dir, ring)? {
                if head.log_id == log_id && head.lsn >= next_lsn {
                    return Err(WalError::Forged {
                        path: dir.join(LOCK_FILE),
                        offset: crate::format::WATERMARK_LEN as u64,
                        lsn: head.lsn,
                        reason: format!(
                            "the log ends at LSN {}, before LSN {} that its writer made durable (the head): acknowledged records were cut; nothing more is written",
                            next_lsn - 1,
                            head.lsn
                        ),
                    });
                }
                if head.log_id == log_id && head.lsn >= head.enc_start.max(1) {
                    // The record at the head's LSN must be the one the head
                    // names: a stale record put back at a reused LSN opens
                    // under the key, and a writer going on from it would
                    // publish a head vouching for it.
                    let tail_tag = io
                        .chain
                        .as_ref()
                        .filter(|c| c.tag_lsn == head.lsn)
                        .map(|c| c.tag);
                    match tail_tag {
                        Some(tag) if tag == head.tag => {}
                        Some(_) => {
                            return Err(WalError::Forged {
                                path: listing
                                    .segments
                                    .last()
                                    .map_or_else(|| dir.join(LOCK_FILE), |t| t.path.clone()),
                                offset: io.write_pos,
                                lsn: head.lsn,
                                reason: "the tail's last record is not the record the writer made durable at this LSN (the head in LOCK names another): replaced; nothing more is written".into(),
                            });
                        }
                        None => crate::chain::head_record_holds(&fs, &dir, ring, &head)?,
                    }
                }
            }
        }
        report.next_lsn = next_lsn;
        let writer = Arc::new(Writer::new(
            fs.clone(),
            dir.clone(),
            opts,
            io,
            next_lsn,
            lock,
        )?);
        writer.start_segment_for_key()?;
        let flusher = if matches!(writer.options().sync, SyncPolicy::Batch { .. }) {
            let w = writer.clone();
            let handle = std::thread::Builder::new()
                .name("logbook-flusher".into())
                .spawn(move || w.run_flusher())
                .map_err(|e| WalError::io("spawn flusher thread", &dir, e))?;
            Some(handle)
        } else {
            None
        };
        Ok(Wal {
            inner: Arc::new(Inner {
                writer,
                fs,
                dir,
                report,
                log_id,
                flusher: Mutex::new(flusher),
            }),
        })
    }

    /// What `open` found and did.
    #[must_use]
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log's stable id: created with the log (its `LOG_ID` file,
    /// `docs/format.md`), the same for every writer and reader of this
    /// directory; see [`log_id`](crate::log_id).
    #[must_use]
    pub fn log_id(&self) -> Uuid {
        self.inner.log_id
    }

    /// Append one event of `session`; returns its LSN. When this returns
    /// depends on the [`SyncPolicy`].
    ///
    /// # Errors
    ///
    /// [`WalError::DiskFull`] if the disk filled up (retry later);
    /// [`WalError::Poisoned`] once a write or fsync failed;
    /// [`WalError::RecordTooLarge`]; [`WalError::Closed`].
    pub fn append(&self, session: Uuid, event: &SessionEvent) -> Result<Lsn, WalError> {
        encode_event(event, |payload| self.append_raw(session, payload))
    }

    /// Append one record with an opaque payload; returns its LSN.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`]; also [`WalError::EmptyRecord`].
    pub fn append_raw(&self, session: Uuid, payload: &[u8]) -> Result<Lsn, WalError> {
        self.inner.writer.append(session, payload, now_us())
    }

    /// Append one event of `session` without blocking the calling thread;
    /// resolves to its LSN when [`Wal::append`] would have returned: under
    /// [`SyncPolicy::Always`] once the batch holding it is fsynced, under
    /// `Batch` and `Never` once it is queued.
    ///
    /// The record is encoded and queued into the group commit when the
    /// future is first polled (a memory copy under a short lock). The
    /// write and `fdatasync` run on another thread: one appending
    /// synchronously, or the log's committer thread, started by the first
    /// async append that needs it. Records from tasks and threads that
    /// queue meanwhile share one fsync. One exception saves two thread
    /// hand-offs when there is no one to share with: if nothing else is
    /// queued or being written, the latest batch carried one record, and
    /// the task runs on a tokio runtime with
    /// at least two workers, the first poll writes and fsyncs this one
    /// record on its own worker, as a lone thread calling [`Wal::append`]
    /// would. At most one worker at a time does so (there is one leader),
    /// so the runtime's other workers keep running; on a current-thread or
    /// one-worker runtime, and outside tokio, the poll never does I/O. Under a full disk (`Batch`, `Never`) an async append
    /// fails with [`WalError::DiskFull`] without retrying the write itself:
    /// the flusher or a `sync` does.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before its first poll appends nothing. Dropping
    /// it afterwards only stops the waiting: the record is queued, keeps
    /// its LSN and becomes durable with its batch (or is lost with it, as
    /// any queued record).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), logbook_wal::WalError> {
    /// use logbook_bus::SessionEvent;
    /// use logbook_wal::{Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let session = uuid::Uuid::new_v4();
    /// let lsn = wal.append_async(session, &SessionEvent::Done).await?;
    /// assert_eq!(wal.durable_lsn(), lsn); // fsynced, by another thread
    /// # Ok(())
    /// # }
    /// ```
    pub async fn append_async(&self, session: Uuid, event: &SessionEvent) -> Result<Lsn, WalError> {
        let ticket = encode_event(event, |payload| {
            self.inner.writer.enqueue(session, payload, now_us())
        })?;
        ticket.wait().await
    }

    /// Append several events at once (each with its session) without
    /// blocking the calling thread; resolves to their LSNs, in order, when
    /// [`Wal::append_async`] would have resolved for the last one: under
    /// [`SyncPolicy::Always`] once the batch holding them is fsynced.
    ///
    /// Every event is encoded once, when the future is first polled, and
    /// checked against the log's limits before any is queued: a batch with
    /// one record the log refuses queues nothing. The records are then
    /// queued together under one hold of the writer's lock (consecutive
    /// LSNs, one group commit), as [`Wal::append_many`] queues them.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`], and [`WalError::EmptyRecord`]:
    /// [`WalError::RecordTooLarge`] (or a codec error) for any event
    /// refuses the whole batch before anything is queued. A failure of the
    /// writer afterwards ([`WalError::Poisoned`], [`WalError::DiskFull`])
    /// fails the batch, whose records may be partly durable: those before
    /// the first record the failed batch lost.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before its first poll appends nothing. Dropping
    /// it afterwards only stops the waiting: every record of the batch is
    /// queued, keeps its LSN and becomes durable with its group commit.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), logbook_wal::WalError> {
    /// use logbook_bus::SessionEvent;
    /// use logbook_wal::{Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    /// let lsns = wal.append_many_async(&[(a, SessionEvent::Done), (b, SessionEvent::Done)]).await?;
    /// assert_eq!(lsns, [1, 2]);
    /// assert_eq!(wal.durable_lsn(), 2);
    /// assert_eq!(wal.stats().fsyncs, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn append_many_async(
        &self,
        events: &[(Uuid, SessionEvent)],
    ) -> Result<Vec<Lsn>, WalError> {
        let now = now_us();
        let records = encode_batch(events.iter().map(|(session, event)| (*session, now, event)))?;
        let tickets = self.inner.writer.enqueue_many(&records, true)?;
        drop(records);
        let mut lsns = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            lsns.push(ticket.wait().await?);
        }
        Ok(lsns)
    }

    /// Hold back the group commit of async appends until the returned
    /// hold is dropped: records that [`Wal::append_async`] and
    /// [`Wal::append_many_async`] queue meanwhile share one batch instead
    /// of the committer thread fsyncing the first of them on their own.
    /// For an event loop whose tasks append one after another in one turn:
    /// hold at the first append, drop at the end of the turn.
    ///
    /// The committer waits for the last hold to end, for 64 records to
    /// wait, or for a millisecond once it is free to commit them (after its
    /// previous batch), whichever comes first, however long holds overlap;
    /// threads blocked on their records
    /// ([`Wal::append`], [`Wal::append_many`], [`Wal::sync`]) and the
    /// `Batch` flusher are never held. A hold delays when a record becomes
    /// durable, never what is acknowledged: an append still resolves only
    /// once its record is durable.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), logbook_wal::WalError> {
    /// use logbook_bus::SessionEvent;
    /// use logbook_wal::{Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let s = uuid::Uuid::new_v4();
    /// let hold = wal.hold_commit();
    /// // The first append queues under the hold; the second ends it first.
    /// let (a, b) = tokio::join!(wal.append_async(s, &SessionEvent::Done), async {
    ///     drop(hold);
    ///     wal.append_async(s, &SessionEvent::Done).await
    /// });
    /// assert_eq!((a?, b?), (1, 2));
    /// assert_eq!(wal.stats().fsyncs, 1); // one group commit for both
    /// # Ok(())
    /// # }
    /// ```
    pub fn hold_commit(&self) -> crate::CommitHold {
        self.inner.writer.hold()
    }

    /// Append several events at once (each with its session); returns their
    /// LSNs, in order, when [`Wal::append`] would have returned for the
    /// last one. Under [`SyncPolicy::Always`] they share one group commit
    /// instead of one fsync each (the committer thread of
    /// [`Wal::append_async`] writes them); the calling thread waits.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`]. On an error, the events before the failing one
    /// may have been queued (and may become durable).
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::SessionEvent;
    /// use logbook_wal::{Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    /// let lsns = wal.append_many(&[(a, SessionEvent::Done), (b, SessionEvent::Done)])?;
    /// assert_eq!(lsns, [1, 2]);
    /// assert_eq!(wal.stats().fsyncs, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_many(&self, events: &[(Uuid, SessionEvent)]) -> Result<Vec<Lsn>, WalError> {
        let now = now_us();
        self.append_batch(events.iter().map(|(session, event)| (*session, now, event)))
    }

    /// [`Wal::append_many`] with each record's time given (µs since the
    /// Unix epoch) instead of the clock's: for imports of events that
    /// happened elsewhere, whose times are kept (`docs/format.md`: a
    /// record's time is informational; nothing in the log depends on its
    /// order).
    ///
    /// # Errors
    ///
    /// As [`Wal::append_many`].
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::SessionEvent;
    /// use logbook_wal::{Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let id = uuid::Uuid::new_v4();
    /// wal.append_many_at(&[(id, 1_700_000_000_000_000, SessionEvent::Done)])?;
    /// let record = Reader::open(dir.path())?.next().unwrap()?;
    /// assert_eq!(record.timestamp_us, 1_700_000_000_000_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_many_at(
        &self,
        events: &[(Uuid, u64, SessionEvent)],
    ) -> Result<Vec<Lsn>, WalError> {
        self.append_batch(
            events
                .iter()
                .map(|(session, at, event)| (*session, *at, event)),
        )
    }

    fn append_batch<'a>(
        &self,
        events: impl ExactSizeIterator<Item = (Uuid, u64, &'a SessionEvent)>,
    ) -> Result<Vec<Lsn>, WalError> {
        self.append_timed_raw(&encode_batch(events)?)
    }

    /// [`Wal::append_many`] with opaque payloads: the records get
    /// consecutive LSNs (they are queued together), returned in order.
    ///
    /// # Errors
    ///
    /// As [`Wal::append_many`]; also [`WalError::EmptyRecord`].
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::{Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let s = uuid::Uuid::new_v4();
    /// assert_eq!(wal.append_many_raw(&[(s, b"a".to_vec()), (s, b"b".to_vec())])?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_many_raw(&self, records: &[(Uuid, Vec<u8>)]) -> Result<Vec<Lsn>, WalError> {
        let now = now_us();
        let timed: Vec<(Uuid, u64, Vec<u8>)> = records
            .iter()
            .map(|(session, payload)| (*session, now, payload.clone()))
            .collect();
        self.append_timed_raw(&timed)
    }

    /// [`Wal::append_many_raw`] with each record's time given (µs since
    /// the Unix epoch), as [`Wal::append_many_at`]: for records copied from
    /// another log (a pull from a stream), whose times are kept.
    ///
    /// # Errors
    ///
    /// As [`Wal::append_many_raw`].
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::{Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let s = uuid::Uuid::new_v4();
    /// assert_eq!(wal.append_many_raw_at(&[(s, 1_700_000_000_000_000, b"a".to_vec())])?, [1]);
    /// let record = Reader::open(dir.path())?.next().unwrap()?;
    /// assert_eq!(record.timestamp_us, 1_700_000_000_000_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_many_raw_at(
        &self,
        records: &[(Uuid, u64, Vec<u8>)],
    ) -> Result<Vec<Lsn>, WalError> {
        self.append_timed_raw(records)
    }

    /// Queue `records` (session, time, payload) together and wait as
    /// [`Wal::append`] would for the last one.
    fn append_timed_raw(&self, records: &[(Uuid, u64, Vec<u8>)]) -> Result<Vec<Lsn>, WalError> {
        let tickets = self.inner.writer.enqueue_many(records, false)?;
        let mut lsns = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            lsns.push(crate::block_on::block_on(ticket.wait())?);
        }
        Ok(lsns)
    }

    /// [`Wal::close`] without blocking a runtime worker: the final flush and
    /// fsync run on tokio's blocking pool. Prefer it to dropping the last
    /// `Wal` inside a runtime, which flushes, fsyncs and joins the log's
    /// threads on the dropping thread.
    ///
    /// # Errors
    ///
    /// As [`Wal::close`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop the close, which runs to its end
    /// on the blocking pool.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn close_async(self) -> Result<(), WalError> {
        let closing = tokio::task::spawn_blocking(move || {
            let result = self.inner.writer.close();
            drop(self);
            result
        });
        closing.await.unwrap_or(Err(WalError::Closed))
    }

    /// Write and fsync everything appended so far (a barrier); returns the
    /// last durable LSN (0 for an empty log).
    ///
    /// # Errors
    ///
    /// [`WalError::Poisoned`] or the error of the write or fsync.
    pub fn sync(&self) -> Result<Lsn, WalError> {
        self.inner.writer.sync()
    }

    /// The highest LSN known durable (0 if none): every record up to it has
    /// been fsynced.
    #[must_use]
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.writer.durable_end().saturating_sub(1)
    }

    /// The LSN of the last record appended (0 if none).
    #[must_use]
    pub fn last_lsn(&self) -> Lsn {
        self.inner.writer.next_lsn().saturating_sub(1)
    }

    /// Counters of the writer since open.
    #[must_use]
    pub fn stats(&self) -> WalStats {
        self.inner.writer.stats()
    }

    /// A handle that wakes when more of the log becomes durable, and says
    /// when the writer closed: what a live follower sleeps on
    /// (`logbook_replay::follow`).
    #[must_use]
    pub fn watch_durable(&self) -> crate::DurableWatch {
        crate::DurableWatch::new(self.inner.writer.subscribe())
    }

    /// Wait, without blocking a tokio worker, until `lsn` is durable.
    ///
    /// # Errors
    ///
    /// [`WalError::Poisoned`] if the log failed before `lsn` became durable.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future only stops the waiting.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        let mut rx = self.inner.writer.subscribe();
        let progress = rx
            .wait_for(|p| p.durable_end > lsn || p.poisoned || p.closed)
            .await
            .map(|p| *p);
        match progress {
            Ok(p) if p.durable_end > lsn => Ok(()),
            _ => Err(match self.inner.writer.poison_cause() {
                Some(cause) => WalError::Poisoned { cause },
                None => WalError::Closed,
            }),
        }
    }

    /// Remove every sealed segment whose records all have LSNs below `lsn`.
    /// The active segment is never removed. Returns how many were removed.
    ///
    /// Segments are removed oldest first, the directory fsynced after each
    /// removal, so a power cut can never leave a hole at the start of the
    /// log (unlinks may otherwise reach the disk in any order).
    ///
    /// # Errors
    ///
    /// The I/O error of listing or removing, naming the file.
    pub fn truncate_before(&self, lsn: Lsn) -> Result<usize, WalError> {
        let policy = crate::Retention {
            before_lsn: Some(lsn),
            ..crate::Retention::default()
        };
        self.retain(&policy).map(|plan| plan.segments.len())
    }

    /// Apply a retention policy once: remove the sealed segments at the
    /// front of the log that `policy` says may go (see
    /// [`Retention`](crate::Retention)), oldest first, the directory
    /// fsynced after each removal. The active segment is never removed.
    /// Returns what was removed.
    ///
    /// A session whose first records were removed is marked truncated by
    /// listings (`logbook_replay`), never passed off as complete.
    ///
    /// # Errors
    ///
    /// The I/O error of listing, reading a header or removing, naming the
    /// file (the segments before it are removed); a failed directory fsync
    /// is fatal.
    pub fn retain(&self, policy: &crate::Retention) -> Result<crate::RetentionPlan, WalError> {
        let fs = &*self.inner.fs;
        let dir = &self.inner.dir;
        self.inner.writer.with_io(|io| {
            let mut plan = crate::retain::plan(fs, dir, policy, now_us())?;
            let removed = crate::retain::remove(fs, dir, &plan, io.entry.base_lsn)?;
            plan.segments.truncate(removed);
            plan.bytes = plan.segments.iter().map(|s| s.bytes).sum();
            plan.keep_from = plan.segments.last().map_or(0, |s| s.end_lsn);
            Ok(plan)
        })
    }

    /// The largest payload an append takes with this log's options
    /// ([`WalOptions::max_payload_len`]).
    #[must_use]
    pub fn max_payload_len(&self) -> usize {
        self.inner.writer.options().max_payload_len()
    }

    /// Erase, for good, the bytes of every record a tombstone lists
    /// (`session_deleted`, `docs/format.md`): make what was appended
    /// durable, seal the active segment (when no append is in flight, so
    /// that the records are all in sealed segments), then rewrite each
    /// sealed segment that holds such a record with a redacted placeholder
    /// in its place, swapped in by an fsynced `<segment>.compact` renamed
    /// over it and a directory fsync. Survivors keep their bytes and LSNs;
    /// the session index and summaries of a rewritten segment are removed
    /// (derived data, rebuilt by the next reader).
    ///
    /// The bound: once this returns `Ok` with
    /// [`Compaction::in_active_segment`](crate::Compaction) 0, no byte of
    /// a listed record's payload is left in the log directory. Copies made
    /// before (backups, records already shipped) still hold them.
    ///
    /// Appends go on meanwhile (only the rename takes the writer's lock).
    ///
    /// # Errors
    ///
    /// The error of reading the log (corruption included: a placeholder no
    /// tombstone lists is [`WalError::Forged`]), or of writing, fsyncing or
    /// renaming, naming the file; segments rewritten before it stay so.
    pub fn compact(&self) -> Result<crate::Compaction, WalError> {
        let fs = Arc::clone(&self.inner.fs);
        let dir = self.inner.dir.clone();
        self.sync()?;
        let sealed_tail = self.inner.writer.seal_tail_if_idle()?;
        let active = self.inner.writer.with_io(|io| io.entry.base_lsn);
        let keys = self.inner.writer.options().encryption.clone();
        let writer = &self.inner.writer;
        // While appends are coming in, each chunk written is followed by a
        // pause as long as it took: on a device whose every flush carries
        // whatever is dirty, the appenders' fsyncs would otherwise carry
        // the compaction's bytes too. Alone, a compaction runs flat out.
        let (mut last, mut busy) = (writer.next_lsn(), false);
        let mut pace = |took: Option<std::time::Duration>| {
            match took {
                None => {
                    let now = writer.next_lsn();
                    busy = now != last;
                    last = now;
                }
                Some(took) if busy => std::thread::sleep(took * 2),
                Some(_) => {}
            }
            busy
        };
        // Derived files a compaction cut short left stale (their segment
        // rewritten since: a kill after a rename), removed before anything
        // else; made durable by the directory fsync at the end.
        let mut swept = crate::index::sweep(&*fs, &dir)?;
        // The run beside the first segment folds the segments after it
        // (`logbook-replay`'s summaries).
        let first_run = || -> Result<Option<PathBuf>, WalError> {
            Ok(segment::list(&*fs, &dir)?.segments.first().map(|first| {
                let mut run = first.path.as_os_str().to_owned();
                run.push(".run");
                PathBuf::from(run)
            }))
        };
        let remove_run = |run: &Option<PathBuf>| -> Result<bool, WalError> {
            let Some(run) = run else {
                return Ok(false);
            };
            match fs.remove_file(run) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(WalError::io("remove", run.clone(), e)),
            }
        };
        let run = first_run()?;
        // Reading and rewriting a segment (CRCs, copies) takes a core:
        // while appends come in, the same time again is left to them.
        let mut since = std::time::Instant::now();
        let mut swap_in = |entry: &SegmentEntry, bytes: &[u8]| -> Result<(), WalError> {
            let rewrite = since.elapsed();
            if pace(None) {
                std::thread::sleep(rewrite);
            }
            // Before the swap, every derived file covering the segment:
            // its own, and the run (a kill after the rename leaves none
            // of the old bytes' summaries behind); again after it (a
            // listing may have stored them from the old bytes meanwhile).
            crate::index::remove(&*fs, &entry.path)?;
            remove_run(&run)?;
            let result = crate::compact::swap(
                &*fs,
                &dir,
                entry,
                bytes,
                &mut |rename| writer.with_io(|_| rename()),
                &mut pace,
            );
            since = std::time::Instant::now();
            result?;
            // Best effort: what is left is removed by the sweep at the end
            // (or the next writer's `open`).
            if let Err(error) = crate::index::remove(&*fs, &entry.path) {
                tracing::warn!(%error, "cannot remove derived data of a rewritten segment");
            }
            Ok(())
        };
        let compacted =
            crate::compact::compact(&fs, &dir, keys.as_ref(), Some(active), Some(&mut swap_in));
        let mut out = match compacted {
            Ok(out) => out,
            Err(e) => {
                if matches!(&e, WalError::Io { op, .. } if op.starts_with("fsync")) {
                    // A failed fsync (of the rewritten segment, or of the
                    // directory after its rename, whose durability is then
                    // unknown): as after any failed fsync, the writer stops.
                    self.inner.writer.poison(WalError::Io {
                        op: "fsync (compaction)",
                        path: dir.clone(),
                        source: Arc::new(std::io::Error::other(e.to_string())),
                    });
                }
                return Err(e);
            }
        };
        if !out.segments.is_empty() {
            // A run (`.run`, beside the first segment) folds the segments
            // rewritten too; and a listing may have stored summaries of a
            // segment's old bytes while it was rewritten.
            remove_run(&first_run()?)?;
            swept |= crate::index::sweep(&*fs, &dir)?;
        }
        if !out.segments.is_empty() || swept {
            if let Err(e) = fs.sync_dir(&dir) {
                let e = WalError::fatal("fsync directory", &dir, e);
                self.inner.writer.poison(e.clone());
                return Err(e);
            }
        }
        out.sealed_tail = sealed_tail;
        Ok(out)
    }

    /// Flush and fsync everything, and release the lock once every clone is
    /// gone. Appends through other clones fail with [`WalError::Closed`].
    ///
    /// # Errors
    ///
    /// The error of the last flush.
    pub fn close(self) -> Result<(), WalError> {
        self.inner.writer.close()
    }
}

/// Create `dir` and every missing ancestor, fsyncing each one's parent so
/// that the new directories survive a power cut.
fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<(), WalError> {
    let mut missing = Vec::new();
    for a in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        if fs.kind(a).map_err(|e| WalError::io("stat", a, e))? != PathKind::Missing {
            break;
        }
        missing.push(a);
    }
    fs.create_dir_all(dir)
        .map_err(|e| WalError::io("create directory", dir, e))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)
                .map_err(|e| WalError::fatal("fsync directory", parent, e))?;
        }
    }
    Ok(())
}

/// Make `dir`'s own entry durable: it may have been created by hand (or
/// by an earlier open that died before fsyncing its parent). A parent this
/// process may not read is left alone: whoever created the directory there
/// had the rights to make it durable.
fn sync_parent(fs: &dyn Fs, dir: &Path) -> Result<(), WalError> {
    let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    match fs.sync_dir(parent) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::debug!(parent = %parent.display(), "cannot fsync the log directory's parent: permission denied");
            Ok(())
        }
        Err(e) => Err(WalError::fatal("fsync directory", parent, e)),
    }
}

/// Take the writer lock. A probe by [`is_locked`] holds it for an instant,
/// so a held lock is retried briefly before it is reported.
fn take_lock(fs: &dyn Fs, dir: &Path, lock_path: &Path) -> Result<Box<dyn LockGuard>, WalError> {
    for attempt in 0..5 {
        if let Some(guard) = fs
            .try_lock(lock_path)
            .map_err(|e| WalError::io("lock", lock_path, e))?
        {
            return Ok(guard);
        }
        if attempt < 4 {
            std::thread::sleep(std::time::Duration::from_millis(2 << attempt));
        }
    }
    Err(WalError::Locked {
        dir: dir.to_path_buf(),
        lock: lock_path.to_path_buf(),
    })
}

/// Validate the tail segment, cut what `opts.recovery` says to cut, and
/// make everything kept durable before new records may vouch for it.
fn recover_tail(
    fs: &dyn Fs,
    tail: &SegmentEntry,
    opts: &WalOptions,
    prior: WatermarkState,
    lock: &dyn LockGuard,
    report: &mut RecoveryReport,
) -> Result<(Io, Lsn), WalError> {
    let path = &tail.path;
    let file = fs
        .open(path, OpenMode::ReadWrite)
        .map_err(|e| WalError::io("open", path, e))?;
    let vouched;
    let analysis = {
        let contents = file.contents().map_err(|e| WalError::io("read", path, e))?;
        let bytes = capped(&contents);
        let analysis = recovery::analyze(bytes, tail, opts.recovery, prior)?;
        vouched = recovery::vouched_prefix(bytes, tail, analysis.end, prior);
        if let Some(cut) = &analysis.cut {
            tracing::warn!(
                path = %path.display(), offset = cut.offset, bytes = cut.bytes, lsn = cut.lsn,
                "cutting a torn tail: {}", cut.reason
            );
            if opts.keep_cut_bytes {
                save_cut(fs, path, bytes, analysis.end, cut.bytes)?;
            }
        }
        analysis
    };
    if analysis.cut.is_some() {
        file.set_len(analysis.end as u64)
            .map_err(|e| WalError::io("truncate", path, e))?;
    }
    if opts.preallocate
        && file.len().map_err(|e| WalError::io("stat", path, e))? < opts.segment_size
    {
        file.allocate(opts.segment_size)
            .map_err(|e| WalError::io("preallocate", path, e))?;
    }
    if let Err(e) = file.sync_data() {
        // In the boot the previous writer ran in, what reads back of the
        // tail past what it vouched for may exist only in the page cache
        // (its own failed fsync, or this one, left the pages clean): cut it
        // off, on the file and in the watermark, so that the next `open`
        // does not take it for durable. In another boot everything read
        // came from the disk, and the watermark may be older than what was
        // acknowledged: nothing is cut. A boot id that cannot be read
        // (zeros, now or in the watermark) may be this boot: cut, as for
        // the same boot (after a power cut that may cut the last batch no
        // surviving watermark or sync mark vouches for; not cutting could
        // adopt pages that never reach the disk).
        let boot_id = fs.boot_id();
        let unknown = BootId::default();
        let same_boot = matches!(prior, WatermarkState::Valid(w)
            if w.boot_id == boot_id || w.boot_id == unknown || boot_id == unknown);
        if same_boot {
            tracing::error!(error = %e, path = %path.display(), lsn = vouched.0, "fsync failed during recovery: cutting back to what was durable");
            let _ = file.set_len(vouched.1 as u64);
            let _ = lock.publish(
                &Watermark {
                    durable_end: vouched.0,
                    poisoned: true,
                    boot_id,
                }
                .encode(),
            );
        }
        return Err(WalError::fatal("fsync", path, e));
    }
    report.tail = Some(path.clone());
    report.tail_records = analysis.records;
    report.cut = analysis.cut;
    report.skipped = analysis.skipped;
    let start = segment::read_header(&*file, tail)?.records_start();
    let mut io = Io::new(tail.clone(), file, start, analysis.end as u64);
    if io.index.is_none() {
        io.index = segment::read_header(&*io.file, tail)
            .ok()
            .and_then(|header| {
                crate::index::resume(fs, path, &*io.file, &header, analysis.end as u64)
            });
    }
    Ok((io, analysis.next_lsn))
}

/// A segment's bytes up to [`MAX_SEGMENT_SIZE`]: no record lies further,
/// and a sparse or damaged file of any length costs no more than that.
fn capped(bytes: &[u8]) -> &[u8] {
    let limit = usize::try_from(MAX_SEGMENT_SIZE).unwrap_or(usize::MAX);
    bytes.get(..limit).unwrap_or(bytes)
}

/// Copy the bytes about to be cut to `<segment>.<offset>.broken`, fsynced.
fn save_cut(fs: &dyn Fs, path: &Path, bytes: &[u8], from: usize, len: u64) -> Result<(), WalError> {
    let broken = crate::walk::broken_path(path, from as u64);
    let end = from
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(bytes.len());
    let file = fs
        .open(&broken, OpenMode::CreateNew)
        .map_err(|e| WalError::io("create", &broken, e))?;
    file.write_all_at(bytes.get(from..end).unwrap_or_default(), 0)
        .map_err(|e| WalError::io("write", &broken, e))?;
    file.sync_data()
        .map_err(|e| WalError::fatal("fsync", &broken, e))?;
    if let Some(dir) = broken.parent() {
        fs.sync_dir(dir)
            .map_err(|e| WalError::fatal("fsync directory", dir, e))?;
    }
    Ok(())
}

/// What `open` would find and cut in `dir`, without changing anything or
/// taking the lock (a dry run of recovery).
///
/// # Errors
///
/// As [`Wal::open`], except that a locked directory is inspected anyway.
pub fn inspect(
    dir: impl AsRef<Path>,
    mode: crate::RecoveryMode,
) -> Result<RecoveryReport, WalError> {
    Inspection::read(dir)?.report(mode)
}

/// The tail of the log in `dir` as recovery sees it, read once: ask
/// [`Inspection::report`] what `open` would do under each
/// [`RecoveryMode`](crate::RecoveryMode) without reading it again.
///
/// # Examples
///
/// ```
/// use logbook_wal::{Inspection, RecoveryMode, Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// wal.append_raw(uuid::Uuid::nil(), b"x")?;
/// let tail = Inspection::read(dir.path())?;
/// for mode in [RecoveryMode::TolerateCorruptedTail, RecoveryMode::PointInTime] {
///     assert!(tail.report(mode)?.cut.is_none());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Inspection {
    listing: segment::Listing,
    /// The tail segment's bytes, up to [`MAX_SEGMENT_SIZE`].
    bytes: Vec<u8>,
    prior: WatermarkState,
}

impl Inspection {
    /// Read the tail segment and the durable watermark of the log in `dir`.
    ///
    /// # Errors
    ///
    /// [`WalError::NotFound`], [`WalError::NotADirectory`],
    /// [`WalError::NoLog`], or the I/O error naming the file.
    pub fn read(dir: impl AsRef<Path>) -> Result<Inspection, WalError> {
        let fs = StdFs;
        let dir = dir.as_ref();
        let listing = segment::list(&fs, dir)?;
        let Some(tail) = listing.segments.last() else {
            return Err(WalError::NoLog {
                dir: dir.to_path_buf(),
            });
        };
        let file = fs
            .open(&tail.path, OpenMode::Read)
            .map_err(|e| WalError::io("open", &tail.path, e))?;
        // Read with `pread`, not mapped: a live writer may cut the file.
        let len = file
            .len()
            .map_err(|e| WalError::io("stat", &tail.path, e))?
            .min(MAX_SEGMENT_SIZE);
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let got = segment::read_full_at(&*file, &mut buf, 0)
            .map_err(|e| WalError::io("read", &tail.path, e))?;
        buf.truncate(got);
        let prior = segment::read_watermark(&fs, dir)?;
        Ok(Inspection {
            listing,
            bytes: buf,
            prior,
        })
    }

    /// What `open` with `mode` would find and cut.
    ///
    /// # Errors
    ///
    /// What `open` would refuse with under `mode` (corruption naming the
    /// segment, offset and LSN).
    pub fn report(&self, mode: crate::RecoveryMode) -> Result<RecoveryReport, WalError> {
        let Some(tail) = self.listing.segments.last() else {
            return Ok(RecoveryReport::default());
        };
        let analysis = recovery::analyze(&self.bytes, tail, mode, self.prior)?;
        Ok(RecoveryReport {
            segments: self.listing.segments.len(),
            tail: Some(tail.path.clone()),
            tail_records: analysis.records,
            next_lsn: analysis.next_lsn,
            cut: analysis.cut,
            skipped: analysis.skipped,
            temporaries: self.listing.temporaries.clone(),
            foreign: self.listing.foreign.clone(),
            created: false,
        })
    }
}

/// Whether a writer may be live on the log in `dir`: `true` if one holds
/// its lock, or if that cannot be known.
///
/// The answer can change right after it is given; use it for reports (a
/// session without a terminal event is *interrupted* only if no writer is
/// live), not for mutual exclusion.
///
/// It needs no write access: `LOCK` is opened read-only and `flock`ed for
/// an instant (a shared lock, which conflicts with the writer's exclusive
/// one), so the answer is the same through a read-only mount (which shares
/// the writer's lock) and for another user who may only read `LOCK`. A
/// `LOCK` that cannot even be read (`EACCES`) leaves liveness unknown:
/// the answer is then `true` ("a writer may be live"), never "no writer".
/// No `LOCK` file: `false` (every writer creates one).
///
/// # Errors
///
/// [`WalError::NotFound`] / [`WalError::NotADirectory`], or the I/O error
/// (other than a permission refusal) of checking the lock file, with its
/// path.
pub fn is_locked(dir: impl AsRef<Path>) -> Result<bool, WalError> {
    is_locked_with_fs(&StdFs, dir)
}

/// [`is_locked`] on another file system. This is the one liveness check
/// of the crate (readers need none: they never fsync, and are bounded by
/// the watermark whether a writer is live or not).
///
/// # Errors
///
/// As [`is_locked`].
pub fn is_locked_with_fs(fs: &dyn Fs, dir: impl AsRef<Path>) -> Result<bool, WalError> {
    let dir = dir.as_ref();
    segment::check_dir(fs, dir)?;
    let lock = dir.join(LOCK_FILE);
    // A directory that cannot be searched is an error, as for readers.
    if fs.kind(&lock).map_err(|e| WalError::io("stat", &lock, e))? == PathKind::Missing {
        return Ok(false);
    }
    match fs.lock_is_held(&lock) {
        Ok(held) => Ok(held),
        // Not allowed to read `LOCK` (another user): whether a writer holds
        // it is unknown, and unknown is "maybe", never "no writer".
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::debug!(lock = %lock.display(), error = %e, "cannot probe the writer lock: a writer may be live");
            Ok(true)
        }
        Err(e) => Err(WalError::io("probe lock", &lock, e)),
    }
}

/// Each event of a batch encoded, with its session and time, ready to be
/// queued together: a codec error or an oversized record fails the batch
/// before anything is queued.
fn encode_batch<'a>(
    events: impl ExactSizeIterator<Item = (Uuid, u64, &'a SessionEvent)>,
) -> Result<Vec<(Uuid, u64, Vec<u8>)>, WalError> {
    let mut records = Vec::with_capacity(events.len());
    for (session, timestamp_us, event) in events {
        records.push((
            session,
            timestamp_us,
            encode_event(event, |payload| Ok(payload.to_vec()))?,
        ));
    }
    Ok(records)
}
