//! Listing a log's sessions in one pass: [`list_sessions`],
//! [`interrupted`], [`LogSummary`] and [`SessionSummary`].

use std::path::{Path, PathBuf};

use logbook_bus::SessionEvent;
use logbook_wal::{EventRecord, Lsn, RecordRef, TailDamage, Wal, WalError};
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, ScanReport, Sessions, SkippedRecords, scan_reader};
use crate::source::SourceReader;
use crate::state::Span;
use crate::stats::{Figures, SegmentCounts};
use crate::status::SessionStatus;
use crate::summaries;

/// A one-line summary of a session.
///
/// It follows exactly the rules of [`SessionState`](crate::SessionState)
/// (the same status transitions, the same counts), but keeps only a few
/// numbers per session: listing a log of millions of events holds no event
/// and no transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSummary {
    /// The session.
    pub session: Uuid,
    /// Its status, given whether a writer was live when the listing began
    /// (see [`SessionState::status_given`](crate::SessionState::status_given)).
    pub status: SessionStatus,
    /// Events of the session, ephemeral ones included (skipped records
    /// and tombstones excluded): what a read of the session returns, as
    /// [`SessionState::events`](crate::SessionState::events).
    pub events: u64,
    /// Durable events of the session (tombstones excluded).
    pub durable_events: u64,
    /// Records of the session this build could not decode and skipped.
    pub skipped_records: u64,
    /// Total tokens over its `TokenUsage` events
    /// ([`TokenAccounts::total`](crate::TokenAccounts::total)).
    pub tokens: u64,
    /// Total tokens over its legacy `UsageReport` events, kept apart.
    pub legacy_tokens: u64,
    /// The LSN of its first record.
    pub first_lsn: Lsn,
    /// The LSN of its last record.
    pub last_lsn: Lsn,
    /// When its first record was appended, µs since the Unix epoch.
    pub first_timestamp_us: u64,
    /// When its last record was appended, µs since the Unix epoch.
    pub last_timestamp_us: u64,
    /// The model of its latest `SessionStarted`.
    pub model: Option<String>,
    /// The working directory of its latest `SessionStarted`.
    pub cwd: Option<String>,
    /// A title for listings: the title of its latest `SessionStarted` that
    /// gave one, else the first line of its first `UserMessage` with text, at most
    /// [`TITLE_MAX_CHARS`] characters (cut ones end with `…`).
    pub title: Option<String>,
    /// How many times it was resumed.
    pub resumptions: u64,
    /// The session it was forked from and the last LSN of that session
    /// its history includes (its first `SessionForked`), if it is a fork.
    pub forked_from: Option<(Uuid, Lsn)>,
    /// The logs that hold its records, in order, when they were read from
    /// a [`Source`](crate::Source) of several logs (a stream); empty for a
    /// log directory.
    pub logs: Vec<Uuid>,
    /// Nothing of it is left but tombstones: it was deleted (and nothing
    /// was appended to it since). Such sessions are listed in
    /// [`LogSummary::deleted`], never in [`LogSummary::sessions`].
    pub deleted: bool,
    /// Its beginning may have been retained away: its first record is a
    /// truncation mark (`SessionTruncated`: it was imported, pulled or
    /// forked from a truncated session), or the log's records start after
    /// LSN 1 (older segments were removed by retention) and the session's
    /// first record is not a beginning (`SessionStarted`,
    /// `SessionForked`) or is the log's first record (retention may have
    /// cut right before it). A truncated session is never passed off as
    /// complete; a session that never wrote a beginning shows as truncated
    /// once the log's front was retained (the safe side).
    pub truncated: bool,
}

/// The longest [`SessionSummary::title`], in characters.
pub const TITLE_MAX_CHARS: usize = 120;

/// The first line of `text`, trimmed, at most [`TITLE_MAX_CHARS`]
/// characters; `None` if that leaves nothing.
fn title_of(text: &str) -> Option<String> {
    let line = text.trim().lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return None;
    }
    if line.chars().count() <= TITLE_MAX_CHARS {
        return Some(line.to_owned());
    }
    let mut cut: String = line.chars().take(TITLE_MAX_CHARS - 1).collect();
    cut.push('…');
    Some(cut)
}

/// The listing's fold of one session: a [`SessionSummary`] under
/// construction, with what the records alone give. Folds of consecutive
/// stretches of the log merge ([`Tally::merge`]) into the fold of the
/// whole, which is what lets a listing reuse per-segment summaries
/// (`summaries.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) session: Uuid,
    /// The status the latest status-changing event set (`Done`, `Error`,
    /// `SessionResumed`), if any: the last one wins.
    pub(crate) status: Option<SessionStatus>,
    pub(crate) span: Span,
    pub(crate) events: u64,
    pub(crate) durable_events: u64,
    pub(crate) skipped_records: u64,
    pub(crate) tokens: u64,
    pub(crate) legacy_tokens: u64,
    /// The latest `SessionStarted`'s.
    pub(crate) model: Option<String>,
    /// The latest `SessionStarted`'s.
    pub(crate) cwd: Option<String>,
    /// The latest `SessionStarted` title.
    pub(crate) started_title: Option<String>,
    /// The first `UserMessage`'s title.
    pub(crate) message_title: Option<String>,
    pub(crate) resumptions: u64,
    /// Its first `SessionForked`'s origin.
    pub(crate) forked_from: Option<(Uuid, Lsn)>,
    /// Its tombstones (`SessionDeleted`): a listing folds a session that
    /// has any again from its records, leaving out what they delete.
    pub(crate) tombstones: u64,
    /// Its first record is a beginning (`SessionStarted`, `SessionForked`).
    pub(crate) began: bool,
    /// Its first record is a truncation mark (`SessionTruncated`).
    pub(crate) marked: bool,
}

impl Tally {
    pub(crate) fn new(session: Uuid, lsn: Lsn, timestamp_us: u64) -> Tally {
        Tally {
            session,
            status: None,
            span: Span::new(lsn, timestamp_us),
            events: 0,
            durable_events: 0,
            skipped_records: 0,
            tokens: 0,
            legacy_tokens: 0,
            model: None,
            cwd: None,
            started_title: None,
            message_title: None,
            resumptions: 0,
            forked_from: None,
            tombstones: 0,
            began: false,
            marked: false,
        }
    }

    /// The same rules as `SessionState::apply`, for the fields kept here.
    pub(crate) fn apply(&mut self, record: &EventRecord) {
        if self.events == 0 && self.skipped_records == 0 {
            self.began = record.event.is_beginning();
            self.marked = record.event.is_truncation_mark();
        }
        self.span.extend(record.lsn, record.timestamp_us);
        self.events = self.events.saturating_add(1);
        let event = &record.event;
        if !event.is_durable() {
            return;
        }
        self.durable_events = self.durable_events.saturating_add(1);
        if matches!(
            event,
            SessionEvent::Done | SessionEvent::Error(_) | SessionEvent::SessionResumed { .. }
        ) {
            let mut status = SessionStatus::Running;
            status.apply(event);
            self.status = Some(status);
        }
        match event {
            SessionEvent::TokenUsage(delta) => {
                self.tokens = self.tokens.saturating_add(delta.total())
            }
            SessionEvent::UsageReport {
                prompt_tokens,
                completion_tokens,
                ..
            } => {
                self.legacy_tokens = self
                    .legacy_tokens
                    .saturating_add(prompt_tokens.saturating_add(*completion_tokens));
            }
            SessionEvent::SessionStarted { model, cwd, title } => {
                if self.model.as_ref() != Some(model) {
                    self.model = Some(model.clone());
                }
                if self.cwd.as_ref() != Some(cwd) {
                    self.cwd = Some(cwd.clone());
                }
                if let Some(title) = title.as_deref().and_then(title_of) {
                    self.started_title = Some(title);
                }
            }
            SessionEvent::UserMessage(text) if self.message_title.is_none() => {
                self.message_title = title_of(text);
            }
            SessionEvent::SessionResumed { .. } => {
                self.resumptions = self.resumptions.saturating_add(1);
            }
            SessionEvent::SessionForked { from, at_lsn } if self.forked_from.is_none() => {
                self.forked_from = Some((*from, *at_lsn));
            }
            SessionEvent::SessionDeleted { .. } => {
                self.tombstones = self.tombstones.saturating_add(1);
            }
            _ => {}
        }
    }

    pub(crate) fn skip(&mut self, lsn: Lsn, timestamp_us: u64) {
        self.span.extend(lsn, timestamp_us);
        self.skipped_records = self.skipped_records.saturating_add(1);
    }

    /// Fold `later`, the same session's fold of the stretch of the log
    /// right after this one's, into this one: exactly the fold of both
    /// stretches in a row.
    pub(crate) fn merge(&mut self, later: Tally) {
        self.span.last_lsn = later.span.last_lsn;
        self.span.last_timestamp_us = later.span.last_timestamp_us;
        self.events = self.events.saturating_add(later.events);
        self.durable_events = self.durable_events.saturating_add(later.durable_events);
        self.skipped_records = self.skipped_records.saturating_add(later.skipped_records);
        self.tokens = self.tokens.saturating_add(later.tokens);
        self.legacy_tokens = self.legacy_tokens.saturating_add(later.legacy_tokens);
        self.resumptions = self.resumptions.saturating_add(later.resumptions);
        self.tombstones = self.tombstones.saturating_add(later.tombstones);
        self.status = later.status.or(self.status.take());
        self.model = later.model.or(self.model.take());
        self.cwd = later.cwd.or(self.cwd.take());
        self.started_title = later.started_title.or(self.started_title.take());
        if self.message_title.is_none() {
            self.message_title = later.message_title;
        }
        if self.forked_from.is_none() {
            self.forked_from = later.forked_from;
        }
    }

    pub(crate) fn finish(self, writer_live: bool) -> SessionSummary {
        SessionSummary {
            session: self.session,
            status: self
                .status
                .unwrap_or(SessionStatus::Running)
                .given(writer_live),
            // Tombstones are folded (a fold merges per-segment summaries
            // that count them) but are not the session's events.
            events: self.events.saturating_sub(self.tombstones),
            durable_events: self.durable_events.saturating_sub(self.tombstones),
            skipped_records: self.skipped_records,
            tokens: self.tokens,
            legacy_tokens: self.legacy_tokens,
            first_lsn: self.span.first_lsn,
            last_lsn: self.span.last_lsn,
            first_timestamp_us: self.span.first_timestamp_us,
            last_timestamp_us: self.span.last_timestamp_us,
            model: self.model,
            cwd: self.cwd,
            title: self.started_title.or(self.message_title),
            resumptions: self.resumptions,
            forked_from: self.forked_from,
            logs: Vec::new(),
            deleted: self.tombstones > 0
                && self.events == self.tombstones
                && self.skipped_records == 0,
            // Wherever the records were read (a stream included), a
            // session whose first record is a truncation mark is truncated.
            truncated: self.marked,
        }
    }

    /// [`Tally::finish`] in a log whose first record is `log_start`: also
    /// truncated if the log starts after LSN 1 and the session's first
    /// record is not a beginning, or is the log's first record
    /// (`state::cut_short`).
    pub(crate) fn finish_in(self, writer_live: bool, log_start: Lsn) -> SessionSummary {
        let cut = crate::state::cut_short(log_start, self.span.first_lsn, self.began);
        let mut s = self.finish(writer_live);
        s.truncated |= cut;
        s
    }
}

/// Every session of a log, and what the pass over it found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogSummary {
    /// One summary per session, ordered by the LSN of its first record;
    /// deleted sessions are not among them (see [`LogSummary::deleted`]).
    /// Records a tombstone deletes are left out of every count.
    pub sessions: Vec<SessionSummary>,
    /// The sessions nothing is left of but tombstones
    /// ([`SessionSummary::deleted`]), ordered by first LSN.
    pub deleted: Vec<SessionSummary>,
    /// Whether a live writer held the log when the listing began
    /// ([`logbook_wal::is_locked`]). Sessions without a terminal event are
    /// `Running` if so, `Interrupted` if not.
    pub writer_live: bool,
    /// Whether a writer's liveness can be known at all: true for a log
    /// directory, false for records read elsewhere (a stream), where
    /// sessions without a terminal event show as `Running` though their
    /// host may be gone.
    pub writer_known: bool,
    /// What came from session summaries (`.sum`/`.run` files) instead of
    /// being read again: those records' checksums were checked when the
    /// summaries were written, not by this listing (`logbook verify`
    /// reads every record).
    pub from_summaries: FromSummaries,
    /// Records read.
    pub records: u64,
    /// Records of an event kind this build does not know (written by a
    /// newer build): counted and skipped, never an error.
    pub unknown: SkippedRecords,
    /// Records that passed their checksum but do not decode as an event;
    /// only with [`OnCorruption::Skip`] (the default fails on the first).
    pub undecodable: SkippedRecords,
    /// Corruption the reader reported and the scan skipped, only with
    /// [`OnCorruption::Skip`]: the first [`MAX_REPORTED`](crate::MAX_REPORTED) errors.
    pub corruption: Vec<WalError>,
    /// How many corruption errors were skipped in all.
    pub corruption_count: u64,
    /// Damage at the end of the tail segment, where reading stopped: a
    /// write in progress, or the torn tail of a crashed writer that the
    /// next [`Wal::open`](logbook_wal::Wal::open) cuts. Not an error.
    pub tail_damage: Option<TailDamage>,
}

impl LogSummary {
    /// The summary of one session.
    #[must_use]
    pub fn session(&self, id: Uuid) -> Option<&SessionSummary> {
        self.sessions.iter().find(|s| s.session == id)
    }

    /// The sessions whose status is [`SessionStatus::Interrupted`].
    pub fn interrupted(&self) -> impl Iterator<Item = &SessionSummary> {
        self.sessions
            .iter()
            .filter(|s| s.status == SessionStatus::Interrupted)
    }
}

/// Summarise every session of the log in `dir`, in one pass over it.
///
/// Memory holds one small [`SessionSummary`] per session, never events.
/// Records of event kinds this build does not know are counted and skipped
/// ([`LogSummary::unknown`]); corruption fails the listing (see
/// [`list_sessions_with`] to skip it instead).
///
/// # Errors
///
/// [`ReplayError::Wal`] if the log cannot be opened or read, including the
/// corruption its reader reports (`is_corruption()` tells which);
/// [`ReplayError::Undecodable`] for a record that passed its checksum but
/// holds no event.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{SessionStatus, list_sessions};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("hi".into()))?;
/// wal.close()?;
///
/// let log = list_sessions(dir.path())?;
/// assert!(!log.writer_live);
/// assert_eq!(log.sessions[0].status, SessionStatus::Interrupted);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn list_sessions(dir: impl AsRef<Path>) -> Result<LogSummary, ReplayError> {
    list_sessions_with(dir, OnCorruption::Fail)
}

/// [`list_sessions`], choosing what happens on corruption.
///
/// With [`OnCorruption::Skip`] the listing goes on past damage, as far as
/// the reader can resynchronise, and reports what it skipped in
/// [`LogSummary::corruption`] and [`LogSummary::undecodable`]: the
/// sessions it shows may then miss events.
///
/// # Errors
///
/// As [`list_sessions`]; with [`OnCorruption::Skip`], only I/O errors and
/// a reader that fails to make progress past damage.
pub fn list_sessions_with(
    dir: impl AsRef<Path>,
    on_corruption: OnCorruption,
) -> Result<LogSummary, ReplayError> {
    let dir = dir.as_ref();
    // Asked before reading: if no writer is live now, no record can be
    // appended while we read, so "no terminal event" really means
    // "interrupted".
    let writer_live = logbook_wal::is_locked(dir)
        .map_err(|e| ReplayError::wal("checking the writer lock of", dir, e))?;
    let mut fold = fold(dir, on_corruption, Lsn::MAX)?;
    refold_deleted(dir, &mut fold.tallies, on_corruption, Lsn::MAX)?;
    let log_start = crate::scan::log_start(dir)?;
    let (tallies, report) = (fold.tallies, fold.report);
    let (sessions, deleted) = split_deleted(
        tallies
            .into_values()
            .map(|t| t.finish_in(writer_live, log_start))
            .collect(),
    );
    Ok(LogSummary {
        sessions,
        deleted,
        writer_live,
        writer_known: true,
        from_summaries: fold.from_summaries,
        records: report.records,
        unknown: report.unknown,
        undecodable: report.undecodable,
        corruption: report.corruption,
        corruption_count: report.corruption_count,
        tail_damage: report.tail_damage,
    })
}

/// The sessions of the log in `dir` that were interrupted: no terminal
/// event, and no live writer holds the log. Ordered by first LSN.
///
/// Empty while a writer is live, even if it no longer runs some session
/// (it cannot be told from one that does).
///
/// # Errors
///
/// As [`list_sessions`].
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let (done, cut) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
/// wal.append(done, &SessionEvent::Done)?;
/// wal.append(cut, &SessionEvent::UserMessage("still there?".into()))?;
/// // While the writer is live, nothing is interrupted.
/// assert!(logbook_replay::interrupted(dir.path())?.is_empty());
/// wal.close()?;
///
/// let cut_off = logbook_replay::interrupted(dir.path())?;
/// assert_eq!(cut_off.len(), 1);
/// assert_eq!(cut_off[0].session, cut);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn interrupted(dir: impl AsRef<Path>) -> Result<Vec<SessionSummary>, ReplayError> {
    let log = list_sessions(dir)?;
    Ok(log
        .sessions
        .into_iter()
        .filter(|s| s.status == SessionStatus::Interrupted)
        .collect())
}

/// What a listing or the figures of a log took from session summaries
/// (`docs/format.md`, "Session summaries") instead of reading the records
/// again. Their records were checked (CRC, LSN) when the summaries were
/// written, by whoever read them then; damage since is not seen until the
/// segments are read again (`logbook verify` reads every record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FromSummaries {
    /// Segments wholly taken from their summaries.
    pub segments: u64,
    /// Records counted from summaries, not read again (whole segments and
    /// the summarised front of the tail).
    pub records: u64,
}

impl FromSummaries {
    /// Whether anything came from summaries.
    #[must_use]
    pub fn any(&self) -> bool {
        self.records > 0
    }
}

/// What [`fold`] found: each session's tally, what the scan reported,
/// each segment's share, and the reader (for the segment table).
pub(crate) struct Fold {
    pub(crate) from_summaries: FromSummaries,
    pub(crate) tallies: FxHashMap<Uuid, Tally>,
    pub(crate) report: ScanReport,
    pub(crate) segments: Vec<SegmentCounts>,
    pub(crate) reader: SourceReader<'static>,
}

/// Fold every record below LSN `end` into its session's tally.
///
/// The sealed segments at the front of the log that have usable session
/// summaries (`summaries.rs`) are folded from those, and so is the front of
/// the next segment if it has summaries of its front whose last record the
/// log still holds; the rest is scanned from there. Each sealed segment
/// scanned cleanly gets its summaries stored for the next listing, and so
/// does the tail once it gained [`summaries::tail_step`] bytes. The answer
/// is the same either way (`tests/summaries.rs`).
pub(crate) fn fold(dir: &Path, on_corruption: OnCorruption, end: Lsn) -> Result<Fold, ReplayError> {
    let mut reader =
        logbook_wal::Reader::open(dir).map_err(|e| ReplayError::wal("opening", dir, e))?;
    let segments = reader.segments();
    let sealed = segments.len().saturating_sub(1);
    // With keys, nothing from the LSN where the log is encrypted on is
    // taken from summaries (which hold no authentication): a segment whose
    // encrypted flag was cleared must be read, and refused, not summarised
    // (`docs/security.md`).
    let summaries_end = match reader.encrypted_from() {
        Ok(Some(start)) => end.min(start),
        Ok(None) => end,
        Err(e) => return Err(ReplayError::wal("reading", dir, e)),
    };
    let mut tallies: FxHashMap<Uuid, Tally> = FxHashMap::default();
    let mut records = 0u64;
    let mut from = 0;
    let mut next_lsn = None;
    let mut part = Part::default();
    let mut shares = Vec::new();
    let mut from_summaries = FromSummaries::default();
    // The run of sealed segments at the front, folded as one.
    let mut run_len = 0;
    if let Some(run) = segments
        .first()
        .and_then(|first| usable_run(first, &segments, sealed, summaries_end))
    {
        run_len = run.segments.len();
        records = records.saturating_add(run.records);
        from_summaries.segments += run_len as u64;
        from_summaries.records = from_summaries.records.saturating_add(run.records);
        next_lsn = Some(run.last_lsn + 1);
        from = run.last_lsn + 1;
        for (s, path) in run.segments.iter().zip(&segments) {
            shares.push(SegmentCounts {
                path: path.clone(),
                records: s.records,
                first_lsn: s.first_lsn,
                last_lsn: s.last_lsn,
                figures: Figures {
                    used_bytes: s.used_bytes,
                    ..Figures::default()
                },
            });
        }
        if let Some(first) = shares.first_mut() {
            first.figures.merge(&run.figures);
        }
        tallies.reserve(run.tallies.len());
        for t in run.tallies {
            merge_into(&mut tallies, t);
        }
    }
    // Sealed segments folded cleanly from the front: once they are all of
    // them, and more than the run had, they make the next run.
    let mut front = FrontRun::new(run_len, sealed);
    for (i, segment) in segments.iter().enumerate().skip(run_len) {
        let Some(now) = summaries::Key::of(segment, i < sealed) else {
            break;
        };
        let Some(cached) = summaries::load(segment, &now) else {
            break;
        };
        // Gapless with what came before, and wholly below `end`.
        if next_lsn.is_some_and(|n| n != cached.key.base_lsn) || cached.last_lsn >= summaries_end {
            break;
        }
        if cached.key.is_whole(&now) {
            records = records.saturating_add(cached.records);
            from_summaries.segments += 1;
            from_summaries.records = from_summaries.records.saturating_add(cached.records);
            next_lsn = Some(cached.last_lsn + 1);
            from = cached.last_lsn + 1;
            shares.push(SegmentCounts {
                path: segment.clone(),
                records: cached.records,
                first_lsn: cached.first_lsn(),
                last_lsn: cached.last_lsn,
                figures: cached.figures,
            });
            for t in cached.tallies {
                merge_into(&mut tallies, t);
            }
            front.folded(true, &shares, &tallies);
            continue;
        }
        // The front of the segment, if its last record is still there: go
        // on from it, with the segment's fold so far.
        if reader
            .resume_after(cached.last_place())
            .map_err(|e| ReplayError::wal("reading", dir, e))?
        {
            records = records.saturating_add(cached.records);
            from_summaries.records = from_summaries.records.saturating_add(cached.records);
            part = Part::seeded(segment.clone(), cached);
        }
        break;
    }
    if part.segment.is_none() {
        reader = reader.from_lsn(from);
    }
    // The rest, segment by segment.
    let tail = segments.get(sealed).cloned();
    let first_segment = segments.first().cloned();
    let sealed: Vec<PathBuf> = segments.into_iter().take(sealed).collect();
    let mut source = SourceReader::of_reader(reader, dir);
    let mut report = scan_reader(
        dir,
        &mut source,
        Sessions::All,
        on_corruption,
        |item, record, skipped, _| {
            if part.segment.as_deref() != Some(record.segment) {
                // A problem skipped between the last segment's last record
                // and this one's first may lie in either: neither is cached.
                let before = part.last_count;
                let done = std::mem::take(&mut part);
                if let Some((share, clean)) =
                    done.finish(&sealed, tail.as_deref(), skipped, &mut tallies)
                {
                    shares.push(share);
                    front.folded(clean, &shares, &tallies);
                }
                part.segment = Some(record.segment.to_path_buf());
                part.corruption_before = before;
            }
            part.last_count = skipped;
            part.add(item, record, end);
        },
    )?;
    if let Some((share, clean)) = part.finish(
        &sealed,
        tail.as_deref(),
        report.corruption_count,
        &mut tallies,
    ) {
        shares.push(share);
        front.folded(clean, &shares, &tallies);
    }
    if let (Some(run), Some(first)) = (front.run, first_segment) {
        summaries::store_run(&first, &run);
    }
    report.records = report.records.saturating_add(records);
    Ok(Fold {
        from_summaries,
        tallies,
        report,
        segments: shares,
        reader: source,
    })
}

/// The run summaries stored beside `first`, if they cover only sealed
/// segments of the log as they are now, from its first one, below `end`.
fn usable_run(
    first: &Path,
    segments: &[PathBuf],
    sealed: usize,
    end: Lsn,
) -> Option<summaries::Run> {
    let run = summaries::load_run(first)?;
    let fits = !run.segments.is_empty()
        && run.segments.len() <= sealed
        && run.last_lsn < end
        && run.segments.iter().zip(segments).all(|(s, path)| {
            summaries::Key::of(path, true).is_some_and(|now| s.key.is_whole(&now))
        });
    fits.then_some(run)
}

/// The sealed segments at the front of the log folded cleanly so far, and
/// the run they make once they are all of them.
struct FrontRun {
    /// How many (from the first segment, in order).
    clean: usize,
    /// How many the run used had.
    had: usize,
    sealed: usize,
    /// The new run, once there is one to store.
    run: Option<summaries::Run>,
}

impl FrontRun {
    fn new(had: usize, sealed: usize) -> FrontRun {
        FrontRun {
            clean: had,
            had,
            sealed,
            run: None,
        }
    }

    /// The next segment was folded (`clean`: sealed, whole, nothing
    /// skipped); `shares` and `tallies` are the fold so far.
    fn folded(&mut self, clean: bool, shares: &[SegmentCounts], tallies: &FxHashMap<Uuid, Tally>) {
        if !clean || self.clean != shares.len().saturating_sub(1) || self.clean >= self.sealed {
            // Not the next one from the front, or past the sealed ones:
            // no longer a run.
            self.clean = usize::MAX;
            return;
        }
        self.clean += 1;
        if self.clean < self.sealed || self.sealed < 2 || self.sealed <= self.had {
            return;
        }
        let mut figures = Figures::default();
        let mut segments = Vec::with_capacity(shares.len());
        for s in shares {
            figures.merge(&s.figures);
            segments.push(summaries::RunSegment {
                key: match summaries::Key::of(&s.path, true) {
                    Some(key) => key,
                    None => return,
                },
                records: s.records,
                first_lsn: s.first_lsn,
                last_lsn: s.last_lsn,
                used_bytes: s.figures.used_bytes,
            });
        }
        figures.used_bytes = 0;
        self.run = Some(summaries::Run {
            last_lsn: shares.last().map_or(0, |s| s.last_lsn),
            records: shares.iter().map(|s| s.records).sum(),
            segments,
            figures,
            tallies: tallies.values().cloned().collect(),
        });
    }
}

/// Split `sessions` into the live ones and the deleted ones, each ordered
/// by first LSN.
pub(crate) fn split_deleted(
    sessions: Vec<SessionSummary>,
) -> (Vec<SessionSummary>, Vec<SessionSummary>) {
    let (mut deleted, mut live): (Vec<_>, Vec<_>) = sessions.into_iter().partition(|s| s.deleted);
    live.sort_by_key(|s| s.first_lsn);
    deleted.sort_by_key(|s| s.first_lsn);
    (live, deleted)
}

/// Fold again, from its records, every session whose tally counts a
/// tombstone, leaving out what the tombstones delete: summaries and the
/// listing's one pass fold every record, and a tombstone comes after the
/// records it deletes. One read per such session, through the session
/// indexes.
fn refold_deleted(
    dir: &Path,
    tallies: &mut FxHashMap<Uuid, Tally>,
    on_corruption: OnCorruption,
    end: Lsn,
) -> Result<(), ReplayError> {
    let with_tombstones: Vec<Uuid> = tallies
        .values()
        .filter(|t| t.tombstones > 0)
        .map(|t| t.session)
        .collect();
    let source = crate::source::Source::Dir(dir.to_path_buf());
    for id in with_tombstones {
        let mut tally: Option<Tally> = None;
        crate::scan::scan_in(
            &source,
            0,
            Sessions::One(id),
            on_corruption,
            |item, record, _, _| {
                if record.lsn >= end {
                    return;
                }
                let t =
                    tally.get_or_insert_with(|| Tally::new(id, record.lsn, record.timestamp_us));
                match item {
                    Item::Event(event) => t.apply(&event),
                    Item::Skipped {
                        lsn, timestamp_us, ..
                    } => t.skip(lsn, timestamp_us),
                }
            },
        )?;
        if let Some(t) = tally {
            tallies.insert(id, t);
        }
    }
    Ok(())
}

/// Fold `later` into the tally of its session.
fn merge_into(tallies: &mut FxHashMap<Uuid, Tally>, later: Tally) {
    match tallies.get_mut(&later.session) {
        Some(t) => t.merge(later),
        None => {
            tallies.insert(later.session, later);
        }
    }
}

/// One segment's tallies while it is being scanned.
#[derive(Default)]
struct Part {
    segment: Option<PathBuf>,
    tallies: Vec<Tally>,
    index: FxHashMap<Uuid, usize>,
    records: u64,
    /// The last record folded: LSN, offset and stored CRC (for the
    /// summaries).
    last: Option<Last>,
    /// The offset of the last record of the summaries this part started
    /// from (0 if none).
    seeded_at: u64,
    /// Its first LSN, and its figures for `stats`.
    first_lsn: Option<Lsn>,
    figures: Figures,
    /// A record was not decoded (unknown or undecodable) or lies at or
    /// past `end`: nothing to cache.
    partial: bool,
    /// Corruption problems skipped before the previous segment's last
    /// record (0 for the first segment scanned).
    corruption_before: u64,
    /// Corruption problems skipped before its latest record.
    last_count: u64,
}

/// The last record of a part: where it lies and its stored CRC.
#[derive(Default)]
struct Last {
    lsn: Lsn,
    offset: u64,
    crc: u32,
}

impl Part {
    /// A part that starts from the summaries of the front of `segment`.
    fn seeded(segment: PathBuf, cached: summaries::Summaries) -> Part {
        let index = cached
            .tallies
            .iter()
            .enumerate()
            .map(|(i, t)| (t.session, i))
            .collect();
        Part {
            segment: Some(segment),
            index,
            records: cached.records,
            last: Some(Last {
                lsn: cached.last_lsn,
                offset: cached.last_offset,
                crc: cached.last_crc,
            }),
            seeded_at: cached.last_offset,
            first_lsn: Some(cached.first_lsn()),
            figures: cached.figures,
            tallies: cached.tallies,
            ..Part::default()
        }
    }

    fn add(&mut self, item: Item, record: &RecordRef<'_>, end: Lsn) {
        let (lsn, timestamp_us, session) = (record.lsn, record.timestamp_us, record.session);
        if lsn >= end {
            self.partial = true;
            return;
        }
        self.records += 1;
        self.first_lsn.get_or_insert(lsn);
        self.figures.add(record);
        self.last = Some(Last {
            lsn,
            offset: record.offset,
            crc: record.crc(),
        });
        let tallies = &mut self.tallies;
        let i = *self.index.entry(session).or_insert_with(|| {
            tallies.push(Tally::new(session, lsn, timestamp_us));
            tallies.len() - 1
        });
        let Some(t) = self.tallies.get_mut(i) else {
            return;
        };
        match item {
            Item::Event(record) => t.apply(&record),
            Item::Skipped { .. } => {
                t.skip(lsn, timestamp_us);
                self.partial = true;
            }
        }
    }

    /// The segment ended, with `corruption_now` problems skipped so far:
    /// store its summaries if it read cleanly (no problem skipped since its
    /// first record, none of its records left out) and it is sealed, or it
    /// is the `tail` and gained [`summaries::tail_step`] bytes since its
    /// last summaries; and fold it into the listing.
    fn finish(
        self,
        sealed: &[PathBuf],
        tail: Option<&Path>,
        corruption_now: u64,
        tallies: &mut FxHashMap<Uuid, Tally>,
    ) -> Option<(SegmentCounts, bool)> {
        let part = self;
        let (Some(segment), Some(last), Some(first_lsn)) =
            (part.segment.as_ref(), part.last.as_ref(), part.first_lsn)
        else {
            return None;
        };
        let clean = !part.partial && corruption_now == part.corruption_before;
        let is_sealed = sealed.contains(segment);
        let key = summaries::Key::of(segment, is_sealed);
        let grew = tail == Some(segment.as_path())
            && key.is_some_and(|k| {
                last.offset.saturating_sub(part.seeded_at) >= summaries::tail_step(k.len)
            });
        if let (true, true, Some(key)) = (clean, is_sealed || grew, key) {
            let crc = last.crc;
            summaries::store(
                segment,
                &summaries::Summaries {
                    key,
                    last_lsn: last.lsn,
                    last_offset: last.offset,
                    last_crc: crc,
                    records: part.records,
                    figures: part.figures.clone(),
                    tallies: part.tallies.clone(),
                },
            );
        }
        let share = SegmentCounts {
            path: segment.clone(),
            records: part.records,
            first_lsn,
            last_lsn: last.lsn,
            figures: part.figures,
        };
        for t in part.tallies {
            merge_into(tallies, t);
        }
        Some((share, clean && is_sealed))
    }
}

/// The sessions the log of `wal` held unfinished when this writer opened
/// it: a crash (or an earlier run) left them without a terminal event.
/// Ordered by first LSN.
///
/// This is the startup path of a runtime: open the log (taking the writer
/// lock, so no other process can take it meanwhile), ask this, resume what
/// it returns ([`resume_many`](crate::resume_many)), then serve. Only the
/// records below [`RecoveryReport::next_lsn`](logbook_wal::RecoveryReport)
/// count: what this writer appended since does not change the answer. A
/// log that `open` just created answers an empty list.
///
/// # Errors
///
/// As [`list_sessions`].
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_wal::{Uuid, Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let cut = Uuid::new_v4();
/// {
///     let wal = Wal::open(dir.path(), WalOptions::default())?; // first start: empty
///     assert!(logbook_replay::interrupted_at_open(&wal)?.is_empty());
///     wal.append(cut, &SessionEvent::UserMessage("still there?".into()))?;
/// } // the process dies
/// let wal = Wal::open(dir.path(), WalOptions::default())?; // the next start
/// let cut_off = logbook_replay::interrupted_at_open(&wal)?;
/// assert_eq!(cut_off[0].session, cut);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn interrupted_at_open(wal: &Wal) -> Result<Vec<SessionSummary>, ReplayError> {
    let end = wal.recovery().next_lsn;
    if wal.recovery().created {
        return Ok(Vec::new());
    }
    let Fold { mut tallies, .. } = fold(wal.dir(), OnCorruption::Fail, end)?;
    refold_deleted(wal.dir(), &mut tallies, OnCorruption::Fail, end)?;
    let log_start = crate::scan::log_start(wal.dir())?;
    // Everything below `end` was written by writers that are gone.
    let mut sessions: Vec<SessionSummary> = tallies
        .into_values()
        .map(|t| t.finish_in(false, log_start))
        .filter(|s| s.status == SessionStatus::Interrupted && !s.deleted)
        .collect();
    sessions.sort_by_key(|s| s.first_lsn);
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::state::SessionState;
    use crate::testgen::{SESSION, event, records};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The listing's small fold agrees with the full one on everything
        /// they share, for every sequence of events and skipped records.
        #[test]
        fn summary_agrees_with_the_full_state(
            items in proptest::collection::vec((event(), any::<bool>()), 1..96),
            writer_live in any::<bool>(),
        ) {
            let skips: Vec<bool> = items.iter().map(|(_, s)| *s).collect();
            let records = records(items.into_iter().map(|(e, _)| e).collect());
            let mut state = SessionState::new(SESSION);
            let first = records.first().unwrap();
            let mut tally = Tally::new(SESSION, first.lsn, first.timestamp_us);
            for (r, skip) in records.iter().zip(skips) {
                if skip {
                    state.note_skipped(r.lsn, r.timestamp_us);
                    tally.skip(r.lsn, r.timestamp_us);
                } else {
                    state.apply(r);
                    tally.apply(r);
                }
            }
            let s = tally.finish(writer_live);
            prop_assert_eq!(&s.status, &state.status_given(writer_live));
            prop_assert_eq!(s.events, state.events());
            prop_assert_eq!(s.durable_events, state.durable_events());
            prop_assert_eq!(s.skipped_records, state.skipped_records());
            prop_assert_eq!(s.tokens, state.tokens().total().total);
            prop_assert_eq!(s.legacy_tokens, state.tokens().legacy().total);
            prop_assert_eq!(Some(s.first_lsn), state.first_lsn());
            prop_assert_eq!(Some(s.last_lsn), state.last_lsn());
            prop_assert_eq!(Some(s.first_timestamp_us), state.first_timestamp_us());
            prop_assert_eq!(Some(s.last_timestamp_us), state.last_timestamp_us());
            prop_assert_eq!(s.model.as_deref(), state.model());
            prop_assert_eq!(s.cwd.as_deref(), state.cwd());
            prop_assert_eq!(s.resumptions, state.resumptions().len() as u64);
        }
    }

    fn summary_of(events: Vec<SessionEvent>) -> SessionSummary {
        let records = records(events);
        let first = records.first().unwrap();
        let mut tally = Tally::new(SESSION, first.lsn, first.timestamp_us);
        for r in &records {
            tally.apply(r);
        }
        tally.finish(false)
    }

    fn started(title: Option<&str>) -> SessionEvent {
        SessionEvent::SessionStarted {
            model: "m".into(),
            cwd: "/w".into(),
            title: title.map(Into::into),
        }
    }

    #[test]
    fn title_is_the_first_user_message_first_line_without_a_started_title() {
        let s = summary_of(vec![
            started(None),
            SessionEvent::UserMessage("  \n  fix the build\nthen the docs".into()),
            SessionEvent::UserMessage("second".into()),
        ]);
        assert_eq!(s.title.as_deref(), Some("fix the build"));
        assert_eq!(s.cwd.as_deref(), Some("/w"));
    }

    #[test]
    fn a_started_title_wins_over_the_first_user_message() {
        let s = summary_of(vec![
            SessionEvent::UserMessage("hello".into()),
            started(Some("Release notes")),
        ]);
        assert_eq!(s.title.as_deref(), Some("Release notes"));
    }

    #[test]
    fn a_long_title_is_cut_to_the_limit_with_an_ellipsis() {
        let s = summary_of(vec![SessionEvent::UserMessage("é".repeat(500))]);
        let title = s.title.unwrap();
        assert_eq!(title.chars().count(), TITLE_MAX_CHARS);
        assert!(title.ends_with('…'));
        let empty = summary_of(vec![SessionEvent::UserMessage(" \n ".into())]);
        assert_eq!(empty.title, None);
    }
}
