//! Figures of a whole log (`logbook stats`): records and frame bytes by
//! event kind, sessions, LSN and time span, per segment, from the same fold
//! as a listing (`list.rs`), so that segments with session summaries are
//! counted from those instead of their records.

use std::path::Path;

use logbook_bus::{KINDS, SessionEvent};
use logbook_wal::{
    EventRecord, Lsn, RecordRef, SegmentSummary, SegmentTable, TailDamage, WalError,
};

use std::collections::HashSet;

use uuid::Uuid;

use crate::error::ReplayError;
use crate::list::{self, FromSummaries};
use crate::scan::{OnCorruption, Sessions, scan_reader};
use crate::source::Source;

/// A segment's figures besides its sessions' tallies: what `stats` adds up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Figures {
    /// The end of its last record counted.
    pub(crate) used_bytes: u64,
    /// The earliest and latest record time (`u64::MAX` and 0 when none).
    pub(crate) min_timestamp_us: u64,
    pub(crate) max_timestamp_us: u64,
    /// (records, frame bytes) by kind: [`KINDS`] order, then one for kinds
    /// this build does not know.
    pub(crate) kinds: Vec<(u64, u64)>,
}

impl Default for Figures {
    fn default() -> Figures {
        Figures {
            used_bytes: 0,
            min_timestamp_us: u64::MAX,
            max_timestamp_us: 0,
            kinds: vec![(0, 0); KINDS.len() + 1],
        }
    }
}

impl Figures {
    /// Count one record.
    pub(crate) fn add(&mut self, record: &RecordRef<'_>) {
        let end = record.end_offset();
        let bytes = end.saturating_sub(record.offset);
        self.used_bytes = self.used_bytes.max(end);
        self.min_timestamp_us = self.min_timestamp_us.min(record.timestamp_us);
        self.max_timestamp_us = self.max_timestamp_us.max(record.timestamp_us);
        let kind = EventRecord::peek_kind(record)
            .ok()
            .flatten()
            .and_then(|(name, _)| KINDS.iter().position(|k| *k == name))
            .unwrap_or(KINDS.len());
        if let Some(slot) = self.kinds.get_mut(kind) {
            slot.0 += 1;
            slot.1 += bytes;
        }
    }

    /// Add `other`'s counts (a later stretch of the same log) to these.
    pub(crate) fn merge(&mut self, other: &Figures) {
        self.used_bytes = self.used_bytes.max(other.used_bytes);
        self.min_timestamp_us = self.min_timestamp_us.min(other.min_timestamp_us);
        self.max_timestamp_us = self.max_timestamp_us.max(other.max_timestamp_us);
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
    }
}

/// One segment's share of a fold: its path, records, LSNs and figures.
#[derive(Debug)]
pub(crate) struct SegmentCounts {
    pub(crate) path: std::path::PathBuf,
    pub(crate) records: u64,
    pub(crate) first_lsn: Lsn,
    pub(crate) last_lsn: Lsn,
    pub(crate) figures: Figures,
}

/// Records and frame bytes of one event kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindCount {
    /// The kind's stable name ([`KINDS`]), or `"unknown"` for a kind this
    /// build does not know.
    pub kind: &'static str,
    /// Records of that kind.
    pub records: u64,
    /// Their frame bytes (the 48-byte record header plus the payload).
    pub bytes: u64,
}

/// Figures of a whole log: see [`log_stats`].
#[derive(Debug)]
#[non_exhaustive]
pub struct LogStats {
    /// Every segment, in order, with what was counted in it.
    pub segments: Vec<SegmentSummary>,
    /// Records counted.
    pub records: u64,
    /// Their frame bytes.
    pub bytes: u64,
    /// The first and last LSN counted.
    pub first_lsn: Option<Lsn>,
    /// See `first_lsn`.
    pub last_lsn: Option<Lsn>,
    /// The earliest and latest record time, µs since the Unix epoch.
    pub first_timestamp_us: Option<u64>,
    /// See `first_timestamp_us`.
    pub last_timestamp_us: Option<u64>,
    /// Sessions seen.
    pub sessions: u64,
    /// Records of a durable event kind.
    pub durable: u64,
    /// Records and bytes by kind, the kinds with records only, in
    /// [`KINDS`] order (unknown kinds last).
    pub by_kind: Vec<KindCount>,
    /// The corruption skipped: the first [`MAX_REPORTED`](crate::MAX_REPORTED)
    /// problems, each naming its segment, offset and LSN.
    pub problems: Vec<WalError>,
    /// How many problems in all.
    pub problem_count: u64,
    /// Damage at the end of the tail segment, where reading stopped.
    pub tail_damage: Option<TailDamage>,
    /// Each log's share, for records read elsewhere (a stream of several
    /// logs), in order of first appearance; empty for a log directory.
    pub logs: Vec<LogCount>,
    /// What came from session summaries instead of being read again (see
    /// [`FromSummaries`]): the problems above are those of the records
    /// read.
    pub from_summaries: FromSummaries,
}

/// One log's share of records read elsewhere: see [`LogStats::logs`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogCount {
    /// The log's id.
    pub log: Uuid,
    /// Its records.
    pub records: u64,
    /// Their frame bytes.
    pub bytes: u64,
    /// Its first and last LSN here.
    pub first_lsn: Lsn,
    /// See `first_lsn`.
    pub last_lsn: Lsn,
}

/// Figures of the log in `dir`: records and frame bytes by event kind,
/// sessions, durable records, LSN and time span, and a table of its
/// segments. Goes on past damage (as [`OnCorruption::Skip`]), counting
/// what is still valid and reporting each problem.
///
/// Sealed segments with session summaries (`docs/format.md`, "Session
/// summaries") are counted from those, as a listing does, and the listing's
/// summaries are stored on the way: the cost is that of the part of the
/// log no summary covers.
///
/// # Errors
///
/// [`ReplayError::Wal`] if the log cannot be opened or read (I/O), or if
/// the reader cannot make progress past damage.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("hi".into()))?;
/// wal.append(id, &SessionEvent::Done)?;
/// wal.close()?;
///
/// let stats = logbook_replay::log_stats(dir.path())?;
/// assert_eq!((stats.records, stats.sessions, stats.durable), (2, 1, 2));
/// let kinds: Vec<&str> = stats.by_kind.iter().map(|k| k.kind).collect();
/// assert_eq!(kinds, ["done", "user_message"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn log_stats(dir: impl AsRef<Path>) -> Result<LogStats, ReplayError> {
    let dir = dir.as_ref();
    let fold = list::fold(dir, OnCorruption::Skip, Lsn::MAX)?;
    let mut table = SegmentTable::default();
    let mut figures = Figures::default();
    let (mut first_lsn, mut last_lsn) = (None::<Lsn>, None::<Lsn>);
    for s in &fold.segments {
        table.add_counts(
            &s.path,
            s.records,
            s.first_lsn,
            s.last_lsn,
            s.figures.used_bytes,
        );
        figures.merge(&s.figures);
        first_lsn = Some(first_lsn.map_or(s.first_lsn, |f| f.min(s.first_lsn)));
        last_lsn = Some(last_lsn.map_or(s.last_lsn, |l| l.max(s.last_lsn)));
    }
    let segments = fold
        .reader
        .log_reader()
        .map(|reader| table.finish(reader))
        .unwrap_or_default();
    let mut stats = totals(&figures, segments, first_lsn, last_lsn);
    stats.sessions = fold.tallies.len() as u64;
    stats.problems = fold.report.corruption;
    stats.problem_count = fold.report.corruption_count;
    stats.tail_damage = fold.report.tail_damage;
    stats.from_summaries = fold.from_summaries;
    Ok(stats)
}

/// The figures of a whole log, by kind, without the sessions and problems.
fn totals(
    figures: &Figures,
    segments: Vec<SegmentSummary>,
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
) -> LogStats {
    let mut by_kind = Vec::new();
    let mut durable = 0;
    for (i, &(records, bytes)) in figures.kinds.iter().enumerate() {
        if records == 0 {
            continue;
        }
        if SessionEvent::tag_is_durable(i).unwrap_or(false) {
            durable += records;
        }
        by_kind.push(KindCount {
            kind: KINDS.get(i).copied().unwrap_or("unknown"),
            records,
            bytes,
        });
    }
    let records = by_kind.iter().map(|k| k.records).sum();
    let bytes = by_kind.iter().map(|k| k.bytes).sum();
    LogStats {
        segments,
        records,
        bytes,
        first_lsn,
        last_lsn,
        first_timestamp_us: (records > 0).then_some(figures.min_timestamp_us),
        last_timestamp_us: (records > 0).then_some(figures.max_timestamp_us),
        sessions: 0,
        durable,
        by_kind,
        problems: Vec::new(),
        problem_count: 0,
        tail_damage: None,
        logs: Vec::new(),
        from_summaries: FromSummaries::default(),
    }
}

/// [`log_stats`] of any [`Source`]: a log directory (with its session
/// summaries), one segment file, or records read elsewhere (a stream:
/// [`LogStats::logs`] has each log's share, and the segment table is
/// empty). Goes on past damage, as [`log_stats`] does; a record that does
/// not decrypt with the process's keys is a problem; one sealed with a
/// key that was not given is an error naming the key it needs, as for a
/// log directory.
///
/// # Errors
///
/// As [`log_stats`].
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{Source, log_stats_in};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// wal.append(uuid::Uuid::nil(), &SessionEvent::Done)?;
/// wal.close()?;
/// let segment = logbook_wal::Reader::open(dir.path())?.segments()[0].clone();
/// let stats = log_stats_in(&Source::of(&segment))?;
/// assert_eq!((stats.records, stats.sessions, stats.segments.len()), (1, 1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn log_stats_in(source: &Source) -> Result<LogStats, ReplayError> {
    if let Source::Dir(dir) = source {
        return log_stats(dir);
    }
    let mut reader = source.reader()?;
    let mut table = SegmentTable::default();
    let mut figures = Figures::default();
    let mut logs: Vec<LogCount> = Vec::new();
    let mut sessions: HashSet<Uuid> = HashSet::new();
    let (mut first_lsn, mut last_lsn) = (None::<Lsn>, None::<Lsn>);
    let report = scan_reader(
        &source.path(),
        &mut reader,
        Sessions::All,
        OnCorruption::Skip,
        |_, record, _, log| {
            table.add(record);
            figures.add(record);
            sessions.insert(record.session);
            first_lsn = Some(first_lsn.map_or(record.lsn, |f| f.min(record.lsn)));
            last_lsn = Some(last_lsn.map_or(record.lsn, |l| l.max(record.lsn)));
            let (Some(log), Source::Shipped(_)) = (log, source) else {
                return;
            };
            let bytes = record.end_offset().saturating_sub(record.offset);
            match logs.last_mut() {
                Some(l) if l.log == log => {
                    l.records += 1;
                    l.bytes += bytes;
                    l.first_lsn = l.first_lsn.min(record.lsn);
                    l.last_lsn = l.last_lsn.max(record.lsn);
                }
                _ => logs.push(LogCount {
                    log,
                    records: 1,
                    bytes,
                    first_lsn: record.lsn,
                    last_lsn: record.lsn,
                }),
            }
        },
    )?;
    let segments = match reader.log_reader() {
        Some(r) => table.finish(r),
        None => Vec::new(),
    };
    let mut stats = totals(&figures, segments, first_lsn, last_lsn);
    stats.sessions = sessions.len() as u64;
    stats.problems = report.corruption;
    stats.problem_count = report.corruption_count;
    stats.tail_damage = report.tail_damage;
    stats.logs = logs;
    Ok(stats)
}
