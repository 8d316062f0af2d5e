//! [`Shipper`]: every durable record of a local log, once, in LSN order,
//! to a JetStream stream.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use logbook_wal::{DurableWatch, Lsn, Reader, Wal};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::FleetError;
use crate::imports::Imports;
use crate::message::Outgoing;
use crate::resume_point::{self, ResumePoint};
use crate::retry::backoff;
use crate::target::{StreamSettings, Target};
use crate::telemetry::{self, ShipMetrics};

/// Called with each LSN the stream acknowledged (for measurements).
pub type AckObserver = Arc<dyn Fn(Lsn) + Send + Sync>;

/// Called before each retry with the failure and the wait before the next
/// attempt (to say so: `logbook ship` prints one line per retry).
pub type RetryObserver = Arc<dyn Fn(&FleetError, Duration) + Send + Sync>;

/// How a [`Shipper`] ships.
#[derive(Clone)]
pub struct ShipOptions {
    /// At most this many publishes awaiting their ack (default 256).
    pub window: usize,
    /// How a stream the shipper creates is configured.
    pub stream: StreamSettings,
    /// A one-shot ship gives up with [`FleetError::GaveUp`] after the
    /// server failed for this long without progress (default 30 s).
    /// Following never gives up. (A first connection that fails is not
    /// retried by a one-shot ship: it returns [`FleetError::Connect`] at
    /// once.)
    pub give_up_after: Duration,
    /// How often a follower looks for new records (default 20 ms); a
    /// shipper made with [`Shipper::for_wal`] does not poll.
    pub poll: Duration,
    /// Called with each LSN once the stream acknowledged it.
    pub on_ack: Option<AckObserver>,
    /// Called before each retry after a failure.
    pub on_retry: Option<RetryObserver>,
}

impl std::fmt::Debug for ShipOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShipOptions")
            .field("window", &self.window)
            .field("stream", &self.stream)
            .field("give_up_after", &self.give_up_after)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Default for ShipOptions {
    fn default() -> ShipOptions {
        ShipOptions {
            window: 256,
            stream: StreamSettings::default(),
            give_up_after: Duration::from_secs(30),
            poll: Duration::from_millis(20),
            on_ack: None,
            on_retry: None,
        }
    }
}

/// What a ship did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShipReport {
    /// The log shipped.
    pub log: Uuid,
    /// Records the stream stored.
    pub shipped: u64,
    /// Records sent again whose first copy the stream already had (it
    /// dropped them by `Nats-Msg-Id`).
    pub duplicates: u64,
    /// Records not sent because the stream already had them when the
    /// shipper (re)connected: after a reconnect, these may include records
    /// this ship stored before it (whose acks were lost).
    pub already_there: u64,
    /// Records not sent because they were imported from the stream
    /// (`IMPORTS`).
    pub imported: u64,
    /// The lowest and highest LSN the stream stored in this ship.
    pub lsns: Option<(Lsn, Lsn)>,
    /// Every LSN up to this one is in the stream or imported (0: none).
    pub shipped_through: Lsn,
    /// Times the shipper reconnected after a failure.
    pub reconnects: u64,
    /// The highest LSN read from the log (0: none).
    pub read_through: Lsn,
    /// How long the oldest record read from the log and not yet in the
    /// stream has been in the log (from its timestamp), when this report
    /// was made; zero when there is none.
    pub lag: Duration,
}

/// Ships one local log to a stream. See the crate documentation.
///
/// A shipper records what it does through the `metrics` facade
/// (`logbook_ship_*`, labelled with the log directory; `docs/operations.md`):
/// install the recorder before making the shipper.
#[derive(Debug)]
pub struct Shipper {
    dir: PathBuf,
    log: Uuid,
    target: Target,
    options: ShipOptions,
    /// Made with [`Shipper::for_wal`]: what a follower sleeps on.
    watch: Option<DurableWatch>,
    metrics: ShipMetrics,
}

/// How a follower at the end of the log waits for more.
enum Wake {
    /// Reads again after this long.
    Poll(Duration),
    /// Reads again when the writer's durable watermark moves, and a last
    /// time when the writer closes.
    Watch(DurableWatch),
}

/// What the reader thread hands the publisher.
enum Item {
    Send(Outgoing),
    /// Accounted for without sending: in the stream already, or imported.
    Skip {
        lsn: Lsn,
        imported: bool,
    },
    /// The end of the log as it was (one-shot).
    End,
}

impl Item {
    fn lsn(&self) -> Option<Lsn> {
        match self {
            Item::Send(record) => Some(record.lsn),
            Item::Skip { lsn, .. } => Some(*lsn),
            Item::End => None,
        }
    }
}

type AckFuture = Pin<
    Box<
        dyn Future<Output = Result<PublishAck, async_nats::jetstream::context::PublishError>>
            + Send,
    >,
>;

struct InFlight {
    record: Outgoing,
    /// `known` when it was sent (see `docs/fleet.md`).
    known_at_send: u64,
    ack: AckFuture,
}

impl Shipper {
    /// A shipper of the log in `dir` to `target`.
    ///
    /// # Errors
    ///
    /// [`FleetError::Wal`] if the log has no id (`logbook_wal::log_id`):
    /// open it once with a writer.
    pub fn new(
        dir: impl AsRef<Path>,
        target: Target,
        options: ShipOptions,
    ) -> Result<Shipper, FleetError> {
        let dir = dir.as_ref().to_path_buf();
        let log = logbook_wal::log_id(&dir)
            .map_err(|e| FleetError::wal(&dir, "reading the log id", e))?;
        Ok(Shipper::with(dir, log, target, options, None))
    }

    /// A shipper of the log `wal` writes, in this process: the same
    /// reads, headers and resume point as [`Shipper::new`], but
    /// [`Shipper::follow`] sleeps on the writer's durable watermark
    /// ([`Wal::watch_durable`]) instead of polling the log: each record
    /// is read as soon as it is durable, and following ends (`Ok`) once
    /// the writer is closed (or poisoned) and every record it made durable
    /// is in the stream. Nothing here delays the writer: the records are
    /// read by a [`Reader`] on a blocking thread, as by [`Shipper::new`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use logbook_fleet::{ShipOptions, Shipper, Target};
    /// use logbook_wal::{Wal, WalOptions};
    ///
    /// let wal = Wal::open("/var/lib/agent/log", WalOptions::default())?;
    /// let target = Target::parse("nats://127.0.0.1:4222")?;
    /// let shipper = Shipper::for_wal(&wal, target, ShipOptions::default());
    /// let shipping = tokio::spawn(async move { shipper.follow(|_| {}).await });
    /// // ... the agent appends to `wal`; then:
    /// wal.close()?;
    /// let report = shipping.await??; // every durable record is in the stream
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn for_wal(wal: &Wal, target: Target, options: ShipOptions) -> Shipper {
        // The watch before any reader: a record made durable later is
        // either read or wakes it.
        let watch = wal.watch_durable();
        Shipper::with(
            wal.dir().to_path_buf(),
            wal.log_id(),
            target,
            options,
            Some(watch),
        )
    }

    fn with(
        dir: PathBuf,
        log: Uuid,
        target: Target,
        options: ShipOptions,
        watch: Option<DurableWatch>,
    ) -> Shipper {
        let metrics = ShipMetrics::new(&dir);
        Shipper {
            dir,
            log,
            target,
            options: ShipOptions {
                window: options.window.max(1),
                ..options
            },
            watch,
            metrics,
        }
    }

    /// The id of the log shipped.
    #[must_use]
    pub fn log_id(&self) -> Uuid {
        self.log
    }

    /// Ship every durable record the stream lacks, wait for every ack,
    /// and return. Creates the stream if it is missing. Retries through
    /// failures (reconnecting, and finding again in the stream what it
    /// holds) until `give_up_after` passes without progress.
    ///
    /// # Errors
    ///
    /// [`FleetError::GaveUp`] (naming the URL, stream, log and LSN);
    /// [`FleetError::Connect`] at once if the first connection fails (the
    /// server refuses it, or does not answer within the target's timeout):
    /// only a server that was reached once is retried;
    /// [`FleetError::WrongStream`] or [`FleetError::SubjectsTaken`] if the
    /// stream takes other subjects, or cannot be created beside another
    /// stream that takes these;
    /// [`FleetError::Foreign`] if the log's subjects hold foreign
    /// messages; [`FleetError::Wal`] if the local log cannot be read
    /// (damage is never skipped); [`FleetError::Lost`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops shipping at any point: the stream holds
    /// a subset of the records, and the next ship sends exactly the rest.
    pub async fn ship(&self) -> Result<ShipReport, FleetError> {
        self.run(false, &mut |_| {}).await
    }

    /// Ship, then keep shipping what is appended, forever: retries every
    /// failure with backoff (at most 5 s apart), a first connection that
    /// fails included ([`ShipOptions::on_retry`] hears of each retry).
    /// `progress` is called about once a second with the totals so far.
    ///
    /// A shipper made with [`Shipper::new`] looks for new records every
    /// [`ShipOptions::poll`], and follows until the future is dropped; one
    /// made with [`Shipper::for_wal`] is woken when records become
    /// durable, and returns once the writer closed and everything it made
    /// durable is in the stream.
    ///
    /// # Errors
    ///
    /// Only errors that waiting cannot cure: foreign messages, an
    /// unreadable local log, lost records.
    ///
    /// # Cancel safety
    ///
    /// As [`Shipper::ship`].
    pub async fn follow(
        &self,
        mut progress: impl FnMut(&ShipReport) + Send,
    ) -> Result<ShipReport, FleetError> {
        self.run(true, &mut progress).await
    }

    async fn run(
        &self,
        follow: bool,
        progress: &mut (dyn FnMut(&ShipReport) + Send),
    ) -> Result<ShipReport, FleetError> {
        let mut report = ShipReport {
            log: self.log,
            ..ShipReport::default()
        };
        let mut failing_since: Option<Instant> = None;
        let mut attempt = 0u32;
        let mut connected = false;
        // The timestamp of the oldest record read and not yet in the
        // stream, across reconnections.
        let mut oldest: Option<u64> = None;
        loop {
            let before = report.shipped_through;
            match self
                .attempt(follow, &mut report, &mut connected, &mut oldest, progress)
                .await
            {
                Ok(()) => return Ok(report),
                // A server never reached (refused, no answer): say so now
                // rather than after `give_up_after`, as the readers do.
                Err(e @ FleetError::Connect { .. }) if !follow && !connected => return Err(e),
                Err(e) if e.is_transient() => {
                    if report.shipped_through > before {
                        failing_since = None;
                        attempt = 0;
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if !follow && since.elapsed() >= self.options.give_up_after {
                        return Err(FleetError::GaveUp {
                            url: self.target.url().to_owned(),
                            stream: self.target.stream().to_owned(),
                            log: self.log,
                            lsn: report.shipped_through + 1,
                            seconds: self.options.give_up_after.as_secs(),
                            reason: e.to_string(),
                        });
                    }
                    let wait = backoff(attempt, Duration::from_secs(5));
                    tracing::warn!(error = %e, ?wait, "shipping failed: reconnecting");
                    if let Some(observe) = &self.options.on_retry {
                        observe(&e, wait);
                    }
                    // Still behind by the oldest record not shipped, and
                    // more so while reconnecting.
                    report.lag = oldest.map_or(Duration::ZERO, telemetry::age);
                    self.metrics.lag_seconds.set(report.lag);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    report.reconnects += 1;
                    self.metrics.reconnects.increment(1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One connection: find the resume point, then ship until the end
    /// (one-shot) or a failure.
    async fn attempt(
        &self,
        follow: bool,
        report: &mut ShipReport,
        connected: &mut bool,
        oldest: &mut Option<u64>,
        progress: &mut (dyn FnMut(&ShipReport) + Send),
    ) -> Result<(), FleetError> {
        let context = self.target.connect().await?;
        *connected = true;
        // The target with the stream's prefix (`Target::with_prefix`).
        let (stream, target) = self
            .target
            .open_or_create_stream(&context, &self.options.stream)
            .await?;
        let target = &target;
        let point = resume_point::find(target, &stream, self.log).await?;
        report.shipped_through = report
            .shipped_through
            .max(point.committed.saturating_sub(1));
        let run_start = Instant::now();
        // Publishes of an earlier connection may still land for a while:
        // until then, acks do not raise the scan-from bound.
        let horizon = target.timeout() * 2;
        let (tx, mut rx) = mpsc::channel::<Result<Vec<Item>, FleetError>>(8);
        let reader = {
            let dir = self.dir.clone();
            let point = point.clone();
            let wake = match &self.watch {
                Some(watch) => Wake::Watch(watch.clone()),
                None => Wake::Poll(self.options.poll),
            };
            let (target, log) = (target.clone(), self.log);
            tokio::task::spawn_blocking(move || {
                read_log(&target, log, &dir, &point, follow, wake, &tx)
            })
        };
        let max_present = point.max_present();
        let mut known = point.scan_from;
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut ended = false;
        let mut pending: VecDeque<Item> = VecDeque::new();
        let mut last_progress = Instant::now();
        // Wakes the loop to report (progress, the lag gauges) when nothing
        // else does.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = 'run: loop {
            // Publish what is read, as far as the window allows.
            while inflight.len() < self.options.window {
                let Some(item) = pending.pop_front() else {
                    break;
                };
                match item {
                    Item::End => ended = true,
                    Item::Skip { lsn, imported } => {
                        if imported {
                            report.imported += 1;
                        } else {
                            report.already_there += 1;
                        }
                        if inflight.is_empty() {
                            report.shipped_through = report.shipped_through.max(lsn);
                        }
                    }
                    Item::Send(record) => {
                        let committed = inflight.front().map_or(record.lsn, |f| f.record.lsn);
                        let scan_from = if committed <= max_present {
                            point.scan_from
                        } else {
                            inflight.front().map_or(known, |f| f.known_at_send)
                        };
                        let headers = record.headers(self.log, committed, scan_from);
                        let subject = target.subject(self.log, record.session);
                        let sent = context
                            .publish_with_headers(subject, headers, record.payload.clone())
                            .await;
                        match sent {
                            Ok(ack) => inflight.push_back(InFlight {
                                record,
                                known_at_send: known,
                                ack: boxed(ack),
                            }),
                            Err(e) => {
                                self.metrics.publish_errors.increment(1);
                                break 'run Err(publish_error(target, record.lsn, &e));
                            }
                        }
                    }
                }
            }
            *oldest = inflight.front().map(|f| f.record.timestamp_us).or_else(|| {
                pending.iter().find_map(|item| match item {
                    Item::Send(record) => Some(record.timestamp_us),
                    _ => None,
                })
            });
            report.lag = oldest.map_or(Duration::ZERO, telemetry::age);
            self.metrics
                .positions(report.read_through, report.shipped_through, report.lag);
            if ended && inflight.is_empty() && pending.is_empty() {
                break Ok(());
            }
            if follow && last_progress.elapsed() >= Duration::from_secs(1) {
                progress(report);
                last_progress = Instant::now();
            }
            let want_more = pending.is_empty() && !ended;
            let front = async {
                match inflight.front_mut() {
                    Some(f) => Some((&mut f.ack).await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                ack = front => {
                    let Some(ack) = ack else { continue };
                    let Some(done) = inflight.pop_front() else { continue };
                    match ack {
                        Ok(ack) => {
                            if ack.duplicate {
                                report.duplicates += 1;
                                self.metrics.duplicates.increment(1);
                            } else {
                                report.shipped += 1;
                                self.metrics.records.increment(1);
                                self.metrics.ack_delay.record(telemetry::age(done.record.timestamp_us));
                            }
                            let lsn = done.record.lsn;
                            report.lsns = Some(report.lsns.map_or((lsn, lsn), |(a, b)| (a.min(lsn), b.max(lsn))));
                            report.shipped_through = report.shipped_through.max(lsn);
                            if run_start.elapsed() >= horizon {
                                known = known.max(ack.sequence);
                            }
                            if let Some(observe) = &self.options.on_ack {
                                observe(lsn);
                            }
                        }
                        Err(e) => {
                            self.metrics.publish_errors.increment(1);
                            break Err(publish_error(target, done.record.lsn, &e));
                        }
                    }
                }
                batch = rx.recv(), if want_more => {
                    match batch {
                        None => break Err(target.server_error("reading the local log", "the reader stopped")),
                        Some(Err(e)) => break Err(e),
                        Some(Ok(items)) => {
                            if let Some(last) = items.iter().rev().find_map(Item::lsn) {
                                report.read_through = report.read_through.max(last);
                            }
                            pending.extend(items);
                        }
                    }
                }
                _ = tick.tick(), if follow => {}
            }
        };
        drop(rx);
        if let Err(e) = reader.await {
            tracing::warn!(error = %e, "the log reader task failed");
        }
        result
    }
}

fn boxed(ack: PublishAckFuture) -> AckFuture {
    Box::pin(ack.into_future())
}

fn publish_error(
    target: &Target,
    lsn: Lsn,
    e: &async_nats::jetstream::context::PublishError,
) -> FleetError {
    let what = match e.kind() {
        PublishErrorKind::TimedOut => "no ack in time".to_owned(),
        PublishErrorKind::StreamNotFound => {
            "no stream answers (deleted, or the server is restarting)".to_owned()
        }
        _ => e.to_string(),
    };
    target.server_error("publishing", format!("LSN {lsn}: {what}"))
}

/// The redacted placeholders a shipper passes, held to the log's
/// tombstones (`docs/format.md`, "Redacted placeholders"): the shipper
/// reads without keys (an encrypted log ships encrypted), so its reader
/// cannot hold the placeholders of an encrypted segment to the (sealed)
/// tombstones itself. With the process's keys
/// ([`logbook_wal::default_keys`]), or for a segment in the clear, each
/// placeholder must be explained by a tombstone of its session after it,
/// or the shipper stops before shipping past it: a placeholder planted by
/// someone without the key (in place of a record, naming any session)
/// would otherwise keep the record out of the stream without a trace.
/// Without the keys, an encrypted segment's placeholders are taken as
/// its sealed records are, unchecked (`docs/security.md`).
struct Placeholders {
    dir: PathBuf,
    keys: Option<Arc<logbook_wal::KeyRing>>,
    /// The tombstones read so far (read again when one does not explain
    /// a placeholder: more may have been appended since).
    read: Option<logbook_wal::Tombstones>,
}

impl Placeholders {
    fn new(dir: &Path) -> Placeholders {
        Placeholders {
            dir: dir.to_path_buf(),
            keys: logbook_wal::default_keys(),
            read: None,
        }
    }

    /// `Ok` if `p` is explained (or, sealed and without the keys, cannot
    /// be checked); [`WalError::Forged`](logbook_wal::WalError::Forged)
    /// naming its segment, offset and LSN if no tombstone explains it.
    fn check(&mut self, p: &logbook_wal::Placeholder) -> Result<(), logbook_wal::WalError> {
        if p.sealed && self.keys.is_none() {
            return Ok(());
        }
        let explained = |t: &Option<logbook_wal::Tombstones>| {
            t.as_ref().is_some_and(|t| t.explain(p.session, p.lsn))
        };
        if !explained(&self.read) {
            self.read = Some(logbook_wal::Tombstones::read(&self.dir, self.keys.clone())?);
        }
        if explained(&self.read) {
            return Ok(());
        }
        Err(logbook_wal::WalError::Forged {
            path: p.segment.clone(),
            offset: p.offset,
            lsn: p.lsn,
            reason: format!(
                "a redacted placeholder of session {} that no tombstone later in the log lists (a record removed by someone other than compaction): not shipped past",
                p.session
            ),
        })
    }
}

/// The shipper's reader of `dir` from `from`: as stored (an encrypted log
/// ships encrypted, keys or not), noting redacted placeholders.
fn open_reader(dir: &Path, from: Lsn) -> Result<Reader, logbook_wal::WalError> {
    Ok(Reader::open(dir)?
        .without_keys()
        .from_lsn(from)
        .noting_redacted())
}

/// The reader side, on a blocking thread: every durable record from
/// `point.committed` on, classified; the log's own `Reader`, never a copy
/// of its read loop. At the end of the log a follower waits as `wake`
/// says; the others end.
fn read_log(
    target: &Target,
    log: Uuid,
    dir: &Path,
    point: &ResumePoint,
    follow: bool,
    mut wake: Wake,
    tx: &mpsc::Sender<Result<Vec<Item>, FleetError>>,
) {
    let send = |item: Result<Item, FleetError>| tx.blocking_send(item.map(|i| vec![i])).is_ok();
    let mut imports = match Imports::load(dir) {
        Ok(i) => i,
        Err(e) => {
            send(Err(e));
            return;
        }
    };
    let mut reader = match open_reader(dir, point.committed) {
        Ok(r) => r,
        Err(e) => {
            send(Err(FleetError::wal(dir, "opening a reader", e)));
            return;
        }
    };
    let mut expected = point.committed;
    // The writer closed: one more read to the end, then the end.
    let mut closed = false;
    // The durable LSN the watch last reported, and the last LSN read: once
    // every record up to the former is read, the batch goes out and the
    // reader sleeps on the watch again without looking for more (which
    // costs a read of `LOCK` and a listing of the directory, for nothing:
    // anything newer wakes the watch).
    let mut reported: Option<Lsn> = None;
    let mut read_to = point.committed.saturating_sub(1);
    // LSNs compaction erased (placeholders): never shipped, never missing.
    let mut erased = std::collections::HashSet::new();
    // The LSN a read failed before and the reader was opened again from.
    let mut reopened_at: Option<Lsn> = None;
    // What explains them: each placeholder is held to the log's
    // tombstones before the records after it ship, where they can be
    // read (a clear log; an encrypted one with the process's keys).
    let mut placeholders = Placeholders::new(dir);
    loop {
        let mut batch = Vec::new();
        let mut failure = None;
        let mut at_end = false;
        let mut caught_up = false;
        // Placeholders a reader replaced below had noted.
        let mut carried = Vec::new();
        while batch.len() < 1024 {
            if !closed
                && read_to >= point.max_present()
                && reported.is_some_and(|durable| read_to >= durable)
            {
                caught_up = true;
                break;
            }
            match reader.next_ref() {
                None => {
                    at_end = true;
                    break;
                }
                Some(Ok(record)) => match Outgoing::of(&record) {
                    Ok(out) => {
                        read_to = out.lsn;
                        batch.push(out);
                    }
                    Err(e) => {
                        failure = Some(FleetError::wal(dir, "reading a record to ship", e));
                        break;
                    }
                },
                Some(Err(e)) => {
                    // Retention may have removed segments ahead of this
                    // reader since it listed them: a reader opened again
                    // from the next LSN starts after them, and the records
                    // missing from both the log and the stream are then
                    // `Lost`, as at the start of the log. Once per place:
                    // damage that is really there fails again, and is
                    // reported.
                    let next = read_to + 1;
                    if reopened_at != Some(next) {
                        if let Ok(again) = open_reader(dir, next) {
                            reopened_at = Some(next);
                            carried.extend(reader.take_placeholders());
                            reader = again;
                            continue;
                        }
                    }
                    failure = Some(FleetError::wal(dir, "reading a record to ship", e));
                    break;
                }
            }
        }
        for placeholder in carried.into_iter().chain(reader.take_placeholders()) {
            if let Err(e) = placeholders.check(&placeholder) {
                send(Err(FleetError::wal(
                    dir,
                    "checking a redacted placeholder",
                    e,
                )));
                return;
            }
            erased.insert(placeholder.lsn);
        }
        // Records first, then the import list: an import's entries are
        // durable before its records are appended.
        if !batch.is_empty() {
            if let Err(e) = imports.refresh() {
                send(Err(e));
                return;
            }
        }
        let mut items = Vec::with_capacity(batch.len());
        for record in batch {
            while expected < record.lsn {
                // LSNs the local log no longer has (retention): fine only
                // if the stream has them.
                if !point.present.contains_key(&expected) && !erased.remove(&expected) {
                    send(Err(FleetError::Lost {
                        url: target.url().to_owned(),
                        stream: target.stream().to_owned(),
                        log,
                        lsn: expected,
                        dir: dir.to_path_buf(),
                    }));
                    return;
                }
                expected += 1;
            }
            expected = record.lsn + 1;
            // A pulled record is noted by its plaintext's CRC: a sealed one
            // (this log is encrypted) is compared once opened, with the
            // process's keys; without them it cannot be recognised, and
            // ships (docs/fleet.md).
            let plain = record.key_id.and_then(|key_id| {
                let prev = record.prev.unwrap_or_default();
                let ctx = logbook_wal::RecordContext {
                    log: &log,
                    lsn: record.lsn,
                    session: &record.session,
                    timestamp_us: record.timestamp_us,
                    sync_mark: record.sync_mark,
                    prev: &prev,
                };
                logbook_wal::default_keys()?.open(key_id, &ctx, &record.payload)
            });
            let payload = plain.as_deref().unwrap_or(&record.payload);
            let item = if imports.is_imported(record.lsn, record.session, payload) {
                Item::Skip {
                    lsn: record.lsn,
                    imported: true,
                }
            } else if let Some(&(session, timestamp_us)) = point.present.get(&record.lsn) {
                if (session, timestamp_us) != (record.session, record.timestamp_us) {
                    send(Err(diverged(
                        target,
                        log,
                        dir,
                        record.lsn,
                        "the stream holds another record at this LSN (the local log was cut and written anew after it was shipped?)",
                    )));
                    return;
                }
                Item::Skip {
                    lsn: record.lsn,
                    imported: false,
                }
            } else {
                Item::Send(record)
            };
            items.push(item);
        }
        if !items.is_empty() && tx.blocking_send(Ok(items)).is_err() {
            return;
        }
        if let Some(e) = failure {
            send(Err(e));
            return;
        }
        if at_end && expected <= point.max_present() {
            send(Err(diverged(
                target,
                log,
                dir,
                expected,
                &format!(
                    "the stream holds this log's records up to LSN {}, the local log ends before \
                     (restored from an older copy?)",
                    point.max_present()
                ),
            )));
            return;
        }
        if at_end || caught_up {
            if at_end && (!follow || closed) {
                send(Ok(Item::End));
                return;
            }
            if tx.is_closed() {
                return;
            }
            match &mut wake {
                Wake::Poll(poll) => std::thread::sleep(*poll),
                Wake::Watch(watch) => {
                    // Woken by the writer (more is durable, or it closed),
                    // or by the publisher going away. On this blocking
                    // thread, never on a runtime worker.
                    let woken = tokio::runtime::Handle::current().block_on(async {
                        tokio::select! {
                            more = watch.changed() => Some(more),
                            () = tx.closed() => None,
                        }
                    });
                    match woken {
                        None => return,
                        Some(None) => {
                            // Read to the end as it is now (the records
                            // read up to here may have ended the reader's
                            // view of the file).
                            closed = true;
                            reader.note_durable(watch);
                        }
                        Some(Some(durable)) => {
                            reported = Some(durable);
                            reader.note_durable(watch);
                        }
                    }
                }
            }
        }
    }
}

fn diverged(target: &Target, log: Uuid, dir: &Path, lsn: Lsn, reason: &str) -> FleetError {
    FleetError::Diverged {
        url: target.url().to_owned(),
        stream: target.stream().to_owned(),
        log,
        lsn,
        dir: dir.to_path_buf(),
        reason: reason.to_owned(),
    }
}
