//! What every replay reads: the log's records in LSN order (through the
//! library's `Reader::walk`), decoded, with undecodable records counted and
//! corruption handled as asked.

use std::ops::ControlFlow;
use std::path::Path;

use logbook_bus::codec::CodecError;
use logbook_wal::{EventRecord, Lsn, RecordRef, TailDamage, WalError};
use uuid::Uuid;

use crate::error::ReplayError;
use crate::source::{Source, SourceItem, SourceReader};

/// How many LSNs (or errors) a report lists before it only counts.
pub const MAX_REPORTED: usize = 100;

/// What a scan does when the log's reader reports corruption.
///
/// # Examples
///
/// ```
/// use logbook_replay::OnCorruption;
///
/// assert_eq!(OnCorruption::default(), OnCorruption::Fail);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnCorruption {
    /// Stop and return the reader's error (the default): a replay never
    /// silently rebuilds a session from a damaged log.
    #[default]
    Fail,
    /// Record the error, let the reader resynchronise at the next valid
    /// record, and go on; records that pass their checksum but do not
    /// decode are counted instead of failing too. For diagnostics of a
    /// damaged log. I/O errors still stop the scan.
    Skip,
}

/// Records a scan skipped: how many, and the LSNs of the first
/// [`MAX_REPORTED`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedRecords {
    /// How many were skipped.
    pub count: u64,
    /// The LSNs of the first [`MAX_REPORTED`] of them, in log order.
    pub lsns: Vec<Lsn>,
}

impl SkippedRecords {
    pub(crate) fn push(&mut self, lsn: Lsn) {
        self.count = self.count.saturating_add(1);
        if self.lsns.len() < MAX_REPORTED {
            self.lsns.push(lsn);
        }
    }
}

/// One record as the scan hands it on.
pub(crate) enum Item {
    /// A decoded event.
    Event(EventRecord),
    /// A record this build cannot decode; counted and skipped.
    Skipped {
        lsn: Lsn,
        timestamp_us: u64,
        session: Uuid,
    },
}

/// What a scan found besides the events.
#[derive(Debug, Default)]
pub(crate) struct ScanReport {
    /// Records read (of the selected session, when one is selected).
    pub(crate) records: u64,
    /// Records of an event kind this build does not know.
    pub(crate) unknown: SkippedRecords,
    /// Records that do not decode for another reason
    /// ([`OnCorruption::Skip`] only).
    pub(crate) undecodable: SkippedRecords,
    /// Corruption the reader reported ([`OnCorruption::Skip`] only): the
    /// first [`MAX_REPORTED`] errors, and how many in all.
    pub(crate) corruption: Vec<WalError>,
    pub(crate) corruption_count: u64,
    /// Damage at the end of the tail segment, where the reader stopped.
    pub(crate) tail_damage: Option<TailDamage>,
    /// Records left out because a tombstone deletes them (reads through
    /// [`scan_in`] only; counted in `records` too).
    pub(crate) deleted: SkippedRecords,
}

/// Which sessions a scan hands on.
pub(crate) enum Sessions<'a> {
    /// Every session.
    All,
    /// One session: read through the segments' session indexes.
    One(Uuid),
    /// The sessions this says yes to.
    Matching(&'a dyn Fn(&Uuid) -> bool),
}

impl Sessions<'_> {
    pub(crate) fn wants(&self, id: &Uuid) -> bool {
        match self {
            Sessions::All => true,
            Sessions::One(one) => one == id,
            Sessions::Matching(matches) => matches(id),
        }
    }
}

/// Read the log in `dir` from its first record and hand every record of
/// the selected `sessions` to `f`, in LSN order (the others are skipped
/// before their payload is decoded, and, for one session, mostly not read).
///
/// Memory is bounded by one record plus whatever `f` keeps.
pub(crate) fn scan(
    dir: &Path,
    sessions: Sessions<'_>,
    on_corruption: OnCorruption,
    mut f: impl FnMut(Item),
) -> Result<ScanReport, ReplayError> {
    scan_from(dir, 0, sessions, on_corruption, |item, _, _, _| f(item))
}

/// [`scan`] from LSN `from`, handing each item with its record and how
/// many corruption problems were skipped so far.
pub(crate) fn scan_from(
    dir: &Path,
    from: Lsn,
    sessions: Sessions<'_>,
    on_corruption: OnCorruption,
    f: impl FnMut(Item, &RecordRef<'_>, u64, Option<Uuid>),
) -> Result<ScanReport, ReplayError> {
    scan_in(
        &Source::Dir(dir.to_path_buf()),
        from,
        sessions,
        on_corruption,
        f,
    )
}

/// [`scan_from`] over any [`Source`]: a log directory, one segment file, or
/// records read elsewhere.
///
/// Records that a tombstone deletes are left out (counted in
/// [`ScanReport::deleted`]): the source's tombstones are gathered first
/// (`deleted.rs`), in a pass that reads only each record's kind.
/// Tombstones themselves are handed on.
pub(crate) fn scan_in(
    source: &Source,
    from: Lsn,
    sessions: Sessions<'_>,
    on_corruption: OnCorruption,
    f: impl FnMut(Item, &RecordRef<'_>, u64, Option<Uuid>),
) -> Result<ScanReport, ReplayError> {
    scan_until(source, from, Lsn::MAX, sessions, on_corruption, f)
}

/// [`scan_in`] of the records from LSN `from` up to LSN `until` (of each
/// log): a log directory's walk ends at its first record above `until`,
/// however fast a writer appends beside it.
pub(crate) fn scan_until(
    source: &Source,
    from: Lsn,
    until: Lsn,
    sessions: Sessions<'_>,
    on_corruption: OnCorruption,
    mut f: impl FnMut(Item, &RecordRef<'_>, u64, Option<Uuid>),
) -> Result<ScanReport, ReplayError> {
    let deletions = crate::deleted::tombstones_until(source, from, until, &sessions)?;
    let mut reader = source.reader()?.from_lsn(from).until(until);
    if let Sessions::One(id) = sessions {
        // Through the segments' session indexes: O(the session).
        reader = reader.session(id);
    }
    if deletions.is_empty() {
        return scan_reader(&source.path(), &mut reader, sessions, on_corruption, f);
    }
    let mut deleted = SkippedRecords::default();
    let mut report = scan_reader(
        &source.path(),
        &mut reader,
        sessions,
        on_corruption,
        |item, record, skipped, log| {
            let tombstone = matches!(&item, Item::Event(e) if e.event.is_tombstone());
            if !tombstone && deletions.covers(log, record.session, record.lsn) {
                deleted.push(record.lsn);
                return;
            }
            f(item, record, skipped, log);
        },
    )?;
    report.deleted = deleted;
    Ok(report)
}

/// [`scan_in`] with a reader already placed; `place` names the source in
/// errors. Every reader of this crate decodes its records here, through
/// [`decode`], whatever their source.
pub(crate) fn scan_reader(
    place: &Path,
    reader: &mut SourceReader<'_>,
    sessions: Sessions<'_>,
    on_corruption: OnCorruption,
    mut f: impl FnMut(Item, &RecordRef<'_>, u64, Option<Uuid>),
) -> Result<ScanReport, ReplayError> {
    let wanted = |id: &Uuid| sessions.wants(id);
    let mut report = ScanReport::default();
    // The source's walk: records and located problems, always progressing.
    let walked = reader.walk(|item| {
        let (record, log) = match item {
            SourceItem::Record { record, log } => (record, log),
            SourceItem::Problem(e) if on_corruption == OnCorruption::Skip => {
                tracing::warn!(error = %e, source = %place.display(), "skipping corruption");
                report.corruption_count = report.corruption_count.saturating_add(1);
                if report.corruption.len() < MAX_REPORTED {
                    report.corruption.push(e);
                }
                return ControlFlow::Continue(());
            }
            SourceItem::Problem(e) => {
                return ControlFlow::Break(ReplayError::wal("reading", place, e));
            }
        };
        if !wanted(&record.session) {
            return ControlFlow::Continue(());
        }
        report.records = report.records.saturating_add(1);
        match decode(&record) {
            Ok(event) => f(Item::Event(event), &record, report.corruption_count, log),
            Err(Undecodable::Unknown) => {
                report.unknown.push(record.lsn);
                f(skipped(&record), &record, report.corruption_count, log);
            }
            Err(Undecodable::Sealed(e)) => {
                // Read without its key: nothing of it can be told.
                return ControlFlow::Break(ReplayError::wal("decrypting", place, e));
            }
            Err(Undecodable::Other(e)) => {
                if on_corruption == OnCorruption::Fail {
                    return ControlFlow::Break(ReplayError::Undecodable {
                        dir: place.to_path_buf(),
                        lsn: record.lsn,
                        source: e,
                    });
                }
                report.undecodable.push(record.lsn);
                f(skipped(&record), &record, report.corruption_count, log);
            }
        }
        ControlFlow::Continue(())
    })?;
    if let ControlFlow::Break(e) = walked {
        return Err(e);
    }
    report.tail_damage = reader.tail_damage().cloned();
    Ok(report)
}

/// The LSN of the last record a reader of the log in `dir` returns (its
/// last durable record; 0 if it has none), reading only from the last
/// segment that holds a record: the end a fork point or a time-travelling
/// replay may not pass ([`ReplayError::PastEnd`]).
///
/// # Errors
///
/// [`ReplayError::NoLog`] if there is no log in `dir`;
/// [`ReplayError::Wal`] if it cannot be read.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// assert_eq!(logbook_replay::last_lsn(dir.path())?, 0);
/// wal.append(uuid::Uuid::new_v4(), &SessionEvent::Done)?;
/// assert_eq!(logbook_replay::last_lsn(dir.path())?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn last_lsn(dir: impl AsRef<Path>) -> Result<Lsn, ReplayError> {
    let dir = dir.as_ref();
    let segments = logbook_wal::Reader::open(dir)
        .map_err(|e| ReplayError::wal("opening", dir, e))?
        .segments();
    let bases = segments.iter().filter_map(|path| {
        // `<20 digits: its base LSN>.wal` (`docs/format.md`).
        let name = path.file_name()?.to_str()?;
        name.strip_suffix(".wal")?.parse::<Lsn>().ok()
    });
    for base in bases.collect::<Vec<_>>().into_iter().rev() {
        let mut reader = logbook_wal::Reader::open(dir)
            .map_err(|e| ReplayError::wal("opening", dir, e))?
            .from_lsn(base);
        let mut last = None;
        let _: ControlFlow<()> = reader
            .walk(|item| {
                if let logbook_wal::Item::Record(record) = item {
                    last = Some(record.lsn);
                }
                ControlFlow::<()>::Continue(())
            })
            .map_err(|e| ReplayError::wal("reading", dir, e))?;
        if let Some(last) = last {
            return Ok(last);
        }
    }
    Ok(0)
}

/// The LSN the log in `dir` starts at: its first segment's base LSN (1
/// for a log nothing was retained from; 0 if it has no segment). Read from
/// the segment file names (`docs/format.md`).
pub(crate) fn log_start(dir: &Path) -> Result<Lsn, ReplayError> {
    let segments = logbook_wal::Reader::open(dir)
        .map_err(|e| ReplayError::wal("opening", dir, e))?
        .segments();
    Ok(segments
        .first()
        .and_then(|path| {
            let name = path.file_name()?.to_str()?;
            name.strip_suffix(".wal")?.parse::<Lsn>().ok()
        })
        .unwrap_or(0))
}

/// Where the records of `source` start, for telling whether a session was
/// cut short: the log's start for a directory, the segment's base LSN for
/// one segment file (a session begun in an earlier segment is cut short
/// in that view), `None` for records read elsewhere.
pub(crate) fn view_start(source: &Source) -> Result<Option<Lsn>, ReplayError> {
    match source {
        Source::Dir(dir) => log_start(dir).map(Some),
        Source::Segment(path) => Ok(path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<Lsn>().ok())),
        Source::Shipped(_) => Ok(None),
    }
}

fn skipped(record: &RecordRef<'_>) -> Item {
    Item::Skipped {
        lsn: record.lsn,
        timestamp_us: record.timestamp_us,
        session: record.session,
    }
}

pub(crate) enum Undecodable {
    /// An event kind from a newer build: skipped, never an error.
    Unknown,
    /// Encrypted, and no key was given for it: always an error.
    Sealed(WalError),
    /// Anything else.
    Other(WalError),
}

/// The one decode of a record, opened by its source (see `source.rs`),
/// with what does not decode sorted into kinds.
pub(crate) fn decode(record: &RecordRef<'_>) -> Result<EventRecord, Undecodable> {
    EventRecord::decode(record).map_err(|e| match &e {
        WalError::Codec { source, .. } if matches!(**source, CodecError::UnknownVariant { .. }) => {
            Undecodable::Unknown
        }
        WalError::Encrypted { .. } => Undecodable::Sealed(e),
        _ => Undecodable::Other(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_records_cap_their_list_but_not_their_count() {
        let mut s = SkippedRecords::default();
        for lsn in 1..=(MAX_REPORTED as u64 + 5) {
            s.push(lsn);
        }
        assert_eq!(s.count, MAX_REPORTED as u64 + 5);
        assert_eq!(s.lsns.len(), MAX_REPORTED);
        assert_eq!(s.lsns.first(), Some(&1));
    }
}
