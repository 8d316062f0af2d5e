//! The tombstones of a source, gathered before a read that must leave
//! deleted records out (`logbook_bus::Deletions` holds the rule).

use std::ops::ControlFlow;

use logbook_bus::{Deletions, SessionEvent};
use logbook_wal::{EventRecord, Lsn};
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::Sessions;
use crate::source::{Source, SourceItem, SourceReader};

/// The tombstones of each log of a source (LSNs are per log; a log
/// directory is one log, `None` when its id cannot be read): what
/// [`tombstones_in`] found, for a reader that walks a source itself (a
/// dump) and must leave deleted records out.
#[derive(Debug, Clone, Default)]
pub struct LogDeletions {
    logs: FxHashMap<Option<Uuid>, Deletions>,
}

impl LogDeletions {
    /// Take note of `record` of `log` if it is a tombstone (read after
    /// the set was gathered: a followed log).
    pub fn note_record(&mut self, log: Option<Uuid>, record: &logbook_wal::RecordRef<'_>) {
        if let Ok(Some(("session_deleted", _))) = EventRecord::peek_kind(record) {
            if let Ok(decoded) = EventRecord::decode(record) {
                self.note(log, record.session, record.lsn, &decoded.event);
            }
        }
    }

    /// Whether `record` of `log` is left out of session content: a
    /// tombstone deletes it (a tombstone itself never is).
    #[must_use]
    pub fn hides(&self, log: Option<Uuid>, record: &logbook_wal::RecordRef<'_>) -> bool {
        self.covers(log, record.session, record.lsn)
            && !matches!(
                EventRecord::peek_kind(record),
                Ok(Some(("session_deleted", _)))
            )
    }

    /// Read `scout` on to the end of what its source holds now, taking
    /// note of the tombstones it passes (only each record's kind is read;
    /// a problem is passed over, for the main read to report). A follower
    /// calls this after reading a record and before showing it, with a
    /// scout reading the same records ahead of it: a record read after
    /// its tombstone was durable is then never shown (`follow` does the
    /// same, a batch at a time).
    ///
    /// # Errors
    ///
    /// [`ReplayError::Wal`] for I/O errors of the source.
    pub fn note_through_end(&mut self, scout: &mut SourceReader<'_>) -> Result<(), ReplayError> {
        let _: ControlFlow<()> = scout.walk(|item| {
            if let SourceItem::Record { record, log } = item {
                self.note_record(log, &record);
            }
            ControlFlow::Continue(())
        })?;
        Ok(())
    }

    pub(crate) fn note(
        &mut self,
        log: Option<Uuid>,
        session: Uuid,
        lsn: Lsn,
        event: &SessionEvent,
    ) {
        if event.is_tombstone() {
            self.logs.entry(log).or_default().note(session, lsn, event);
        }
    }

    /// Whether the record at `lsn` of `session` in `log` is deleted (a
    /// tombstone is never asked about: see `Deletions::covers`).
    pub(crate) fn covers(&self, log: Option<Uuid>, session: Uuid, lsn: Lsn) -> bool {
        self.logs.get(&log).is_some_and(|d| d.covers(session, lsn))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.logs.values().all(Deletions::is_empty)
    }
}

/// The tombstones of every session in `source` from LSN `from` on: what a
/// reader that walks the source itself needs to leave deleted records out
/// ([`LogDeletions::hides`]). A tombstone covers only LSNs below its own,
/// so none before `from` deletes a record at or after it.
///
/// # Errors
///
/// [`ReplayError::Wal`] for I/O errors of the source.
pub fn tombstones_in(source: &Source, from: Lsn) -> Result<LogDeletions, ReplayError> {
    tombstones(source, from, &Sessions::All)
}

/// The tombstones of the selected sessions in `source` from LSN `from` on
/// (a tombstone covers only LSNs below its own, so none before `from` can
/// delete a record at or after it). Reads only each record's kind; a record
/// whose kind cannot be read (damaged, sealed without its key, from a newer
/// build) is passed over here and reported by the read that follows.
///
/// # Errors
///
/// [`ReplayError::Wal`] for I/O errors of the source.
pub(crate) fn tombstones(
    source: &Source,
    from: Lsn,
    sessions: &Sessions<'_>,
) -> Result<LogDeletions, ReplayError> {
    tombstones_until(source, from, Lsn::MAX, sessions)
}

/// [`tombstones`] up to LSN `until` (of each log): the walk of a log
/// directory ends at its first record above it.
pub(crate) fn tombstones_until(
    source: &Source,
    from: Lsn,
    until: Lsn,
    sessions: &Sessions<'_>,
) -> Result<LogDeletions, ReplayError> {
    // A segment of a log directory: the tombstones of the whole log (a
    // tombstone is appended after what it deletes, often in a later
    // segment), so a one-segment view hides what the log deletes.
    let whole;
    let source = match (source, source.dir()) {
        (Source::Segment(_), Some(dir)) => {
            whole = Source::Dir(dir.to_path_buf());
            &whole
        }
        _ => source,
    };
    let mut reader = source.reader()?.from_lsn(from).until(until);
    if let Sessions::One(id) = sessions {
        reader = reader.session(*id);
    }
    let mut found = LogDeletions::default();
    let _: ControlFlow<()> = reader.walk(|item| {
        let SourceItem::Record { record, log } = item else {
            return ControlFlow::Continue(());
        };
        if !sessions.wants(&record.session) {
            return ControlFlow::Continue(());
        }
        found.note_record(log, &record);
        ControlFlow::Continue(())
    })?;
    Ok(found)
}
