//! Deleting, at the logical level: [`delete`] appends a tombstone
//! (`SessionEvent::SessionDeleted`) that every reader of session content
//! honours from the moment it is durable; [`plan_delete`] says what it
//! would delete, without writing (a dry run).
//!
//! Erasure of the bytes is a separate step (`Wal::compact`): until then the
//! deleted records are still in the segments (`logbook dump
//! --include-deleted` shows them).

use std::path::Path;

use logbook_bus::{Deletions, KINDS, SessionEvent, lsn_ranges};
use logbook_wal::{Lsn, Wal};
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, Sessions, scan_reader};
use crate::source::Source;

/// What of a session to delete.
///
/// # Examples
///
/// ```
/// use logbook_replay::Selection;
///
/// // Undo the last turn: everything after the record at LSN 41.
/// let pop = Selection::After(41);
/// assert_ne!(pop, Selection::Session);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selection {
    /// The whole session: every record of it so far (LangGraph's
    /// `delete_thread`, the Agents SDK's `clear_session`). The session can
    /// go on afterwards; what is appended later is not deleted.
    Session,
    /// Its records after this LSN (pop, undo: the Agents SDK's `pop_item`).
    After(Lsn),
    /// The records of these runs. A **run** is named by the LSN of the
    /// `UserMessage` that opened it and holds that record and every record
    /// of the session after it, up to the next `UserMessage` (LangGraph's
    /// `delete_for_runs`).
    Runs(Vec<Lsn>),
    /// Keep only the latest `keep` records of the event kind `kind` (a
    /// name of `logbook_bus::KINDS`); delete the older ones (LangGraph's
    /// `prune`, keep the latest).
    KeepLatest {
        /// The event kind.
        kind: String,
        /// How many of the latest to keep.
        keep: usize,
    },
    /// These records of the session, named by their LSNs (a checkpointer
    /// deleting the checkpoints of some runs, an application dropping
    /// records it chose). LSNs that are not live records of the session
    /// (another session's, already deleted, tombstones) are left alone.
    Records(Vec<Lsn>),
}

/// The most LSN ranges one tombstone lists: a deletion that lists more
/// (a session interleaved with others has one range per record) appends
/// several tombstones, in one group commit. One tombstone's ranges then
/// decode within the codec's allocation bound (`MAX_EVENT_BYTES`, 16 MiB)
/// with room to spare.
pub const MAX_RANGES_PER_TOMBSTONE: usize = 1 << 16;

/// What a deletion deletes (or would: see [`plan_delete`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeletePlan {
    /// The session.
    pub session: Uuid,
    /// The LSNs of the records it deletes that were not deleted yet, and
    /// of those a tombstone hides that none lists (a delete cut short:
    /// listed now, so compaction erases them), in order (tombstones are
    /// never deleted).
    pub lsns: Vec<Lsn>,
    /// Their frame bytes in the log: what a compaction reclaims.
    pub bytes: u64,
    /// The tombstones it appends (none: nothing to delete, nothing is
    /// appended): one, or several when it lists more than
    /// [`MAX_RANGES_PER_TOMBSTONE`] ranges of LSNs.
    pub tombstones: Vec<SessionEvent>,
    /// The LSN of the deletion's last tombstone, once appended
    /// ([`delete`]). With `after_lsn` (a whole session, a pop) it bounds the
    /// deletion: the selected records of the session below it are deleted,
    /// those appended after it are not. Records appended while the delete
    /// planned (after the end it read to, below this tombstone: deleted by
    /// `after_lsn`) are listed by further tombstones of ranges only,
    /// appended after it (in `tombstones`, their LSNs in `lsns`).
    pub tombstone_lsn: Option<Lsn>,
}

/// What [`delete`] would delete of `session` in the log in `dir`, without
/// writing anything: the dry run of `logbook delete`.
///
/// # Errors
///
/// [`ReplayError::UnknownSession`] if the log has no record of `session`;
/// [`ReplayError::DeletedSession`] if nothing of it is left but
/// tombstones; [`ReplayError::PastEnd`] for [`Selection::After`] an LSN
/// past the log's last durable record; [`ReplayError::NotARun`] for a run that is not a
/// `UserMessage` of the session; [`ReplayError::UnknownKind`] for a kind
/// that is not in `logbook_bus::KINDS`; [`ReplayError::Wal`] if the log
/// cannot be read (corruption included).
pub fn plan_delete(
    dir: impl AsRef<Path>,
    session: Uuid,
    selection: &Selection,
) -> Result<DeletePlan, ReplayError> {
    past_end(selection, crate::scan::last_lsn(dir.as_ref())?)?;
    plan_in(
        &Source::Dir(dir.as_ref().to_path_buf()),
        session,
        selection,
        "",
        MAX_RANGES_PER_TOMBSTONE,
        Lsn::MAX,
    )
}

/// [`ReplayError::PastEnd`] for a pop after an LSN past `last`, the log's
/// last durable record: like a fork or a replay at such a point, it names
/// a point the log does not hold (a typo, or the wrong log).
fn past_end(selection: &Selection, last: Lsn) -> Result<(), ReplayError> {
    match selection {
        Selection::After(after) if *after > last => Err(ReplayError::PastEnd { lsn: *after, last }),
        _ => Ok(()),
    }
}

/// Bytes one range takes in a tombstone at most (two varints of 9 bytes).
const RANGE_BYTES: usize = 18;

fn plan_in(
    source: &Source,
    session: Uuid,
    selection: &Selection,
    reason: &str,
    per_tombstone: usize,
    until: Lsn,
) -> Result<DeletePlan, ReplayError> {
    if let Selection::KeepLatest { kind, .. } = selection {
        if !KINDS.contains(&kind.as_str()) || kind == "session_deleted" {
            return Err(ReplayError::UnknownKind(kind.clone()));
        }
    }
    // (LSN, kind if known, frame bytes) of each record of the session, read
    // with no tombstone applied, and its tombstones: as they delete
    // (`hiding`), and as they list (`listing`: ranges only).
    let mut all: Vec<(Lsn, Option<&'static str>, u64)> = Vec::new();
    let (mut hiding, mut listing) = (Deletions::new(), Deletions::new());
    let mut last_tombstone = None;
    let mut reader = source.reader()?.from_lsn(0).until(until).session(session);
    let report = scan_reader(
        &source.path(),
        &mut reader,
        Sessions::One(session),
        OnCorruption::Fail,
        |item, record, _, _| {
            let bytes = record.end_offset().saturating_sub(record.offset);
            match item {
                Item::Event(e) if e.event.is_tombstone() => {
                    last_tombstone = Some(e.lsn);
                    hiding.note(session, e.lsn, &e.event);
                    if let SessionEvent::SessionDeleted { ranges, .. } = &e.event {
                        let listed = SessionEvent::SessionDeleted {
                            after_lsn: None,
                            ranges: ranges.clone(),
                            reason: String::new(),
                        };
                        listing.note(session, e.lsn, &listed);
                    }
                }
                Item::Event(e) => all.push((e.lsn, Some(e.event.kind()), bytes)),
                Item::Skipped { lsn, .. } => all.push((lsn, None, bytes)),
            }
        },
    )?;
    if report.records == 0 {
        return Err(ReplayError::UnknownSession(session));
    }
    // Records a tombstone hides (by `after_lsn`) that none lists: left by
    // a delete cut short (a crash kept the tombstone that hides, not all
    // those that list). Compaction erases listed records only, so every
    // delete lists them: running it again repairs the cut.
    let unlisted: Vec<(Lsn, u64)> = all
        .iter()
        .filter(|r| hiding.covers(session, r.0) && !listing.covers(session, r.0))
        .map(|&(l, _, b)| (l, b))
        .collect();
    let live: Vec<(Lsn, Option<&'static str>, u64)> = all
        .into_iter()
        .filter(|r| !hiding.covers(session, r.0))
        .collect();
    if let (true, Some(tombstone_lsn)) = (live.is_empty(), last_tombstone) {
        if unlisted.is_empty() {
            return Err(ReplayError::DeletedSession {
                session,
                tombstone_lsn,
            });
        }
        // Nothing of it is left but what the cut delete hides: list that.
        return Ok(tombstones_of(
            session,
            unlisted,
            None,
            reason,
            per_tombstone,
        ));
    }
    let (chosen, tombstone): (Vec<(Lsn, u64)>, _) = match selection {
        Selection::Session => (
            live.iter().map(|&(l, _, b)| (l, b)).collect(),
            (Some(0), Vec::new()),
        ),
        Selection::After(after) => (
            live.iter()
                .filter(|r| r.0 > *after)
                .map(|&(l, _, b)| (l, b))
                .collect(),
            (Some(*after), Vec::new()),
        ),
        Selection::Runs(runs) => {
            let mut chosen = Vec::new();
            for &run in runs {
                let start = live
                    .iter()
                    .position(|r| r.0 == run && r.1 == Some("user_message"))
                    .ok_or(ReplayError::NotARun { session, lsn: run })?;
                chosen.extend(
                    live.iter()
                        .skip(start)
                        .enumerate()
                        .take_while(|(i, r)| *i == 0 || r.1 != Some("user_message"))
                        .map(|(_, &(l, _, b))| (l, b)),
                );
            }
            chosen.sort_unstable();
            chosen.dedup();
            let ranges = lsn_ranges(chosen.iter().map(|c| c.0));
            (chosen, (None, ranges))
        }
        Selection::KeepLatest { kind, keep } => {
            let of_kind: Vec<(Lsn, u64)> = live
                .iter()
                .filter(|r| r.1 == Some(kind.as_str()))
                .map(|&(l, _, b)| (l, b))
                .collect();
            let older = of_kind.len().saturating_sub(*keep);
            let chosen: Vec<(Lsn, u64)> = of_kind.into_iter().take(older).collect();
            let ranges = lsn_ranges(chosen.iter().map(|c| c.0));
            (chosen, (None, ranges))
        }
        Selection::Records(lsns) => {
            let wanted: std::collections::BTreeSet<Lsn> = lsns.iter().copied().collect();
            let chosen: Vec<(Lsn, u64)> = live
                .iter()
                .filter(|r| wanted.contains(&r.0))
                .map(|&(l, _, b)| (l, b))
                .collect();
            let ranges = lsn_ranges(chosen.iter().map(|c| c.0));
            (chosen, (None, ranges))
        }
    };
    // Every record deleted is listed, whatever the selection: compaction
    // erases only listed records (a placeholder's session is not
    // authenticated, its LSN in a sealed tombstone is).
    let (after_lsn, _) = tombstone;
    let mut chosen = chosen;
    chosen.extend(unlisted);
    chosen.sort_unstable();
    chosen.dedup();
    Ok(tombstones_of(
        session,
        chosen,
        after_lsn,
        reason,
        per_tombstone,
    ))
}

/// The plan deleting `chosen` ((LSN, frame bytes), sorted) of `session`:
/// tombstones listing them, `per_tombstone` ranges each. Only the last
/// carries `after_lsn`: a delete appends them in this order in one batch,
/// and a crash may keep any prefix of a batch; a prefix without the last
/// deletes exactly what it lists, one with it lists everything it hides
/// (below the plan's end). Deleted, hence listed, hence erased.
fn tombstones_of(
    session: Uuid,
    chosen: Vec<(Lsn, u64)>,
    after_lsn: Option<Lsn>,
    reason: &str,
    per_tombstone: usize,
) -> DeletePlan {
    let ranges = lsn_ranges(chosen.iter().map(|c| c.0));
    let parts: Vec<&[(Lsn, Lsn)]> = ranges.chunks(per_tombstone.max(1)).collect();
    let count = parts.len();
    DeletePlan {
        session,
        bytes: chosen.iter().map(|c| c.1).sum(),
        tombstones: parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| SessionEvent::SessionDeleted {
                after_lsn: if i + 1 == count { after_lsn } else { None },
                ranges: part.to_vec(),
                reason: reason.to_owned(),
            })
            .collect(),
        lsns: chosen.into_iter().map(|c| c.0).collect(),
        tombstone_lsn: None,
    }
}

/// Delete `selection` of `session` in the log of `wal`: append a tombstone
/// (`SessionEvent::SessionDeleted`, with `reason` for people) and make it
/// durable, whatever the log's sync policy. From then on every reader that
/// answers with session content leaves the deleted records out
/// (`logbook_bus::Deletions` has the rule). The bytes stay in the segments
/// until a compaction erases them.
///
/// Nothing is appended when nothing is left to delete.
///
/// # Errors
///
/// As [`plan_delete`], and [`ReplayError::Wal`] if the tombstone cannot be
/// appended or made durable (then it may or may not be in the log: a read
/// tells).
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{Selection, delete, session_state};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("one".into()))?;
/// let kept = wal.append(id, &SessionEvent::TextComplete("1".into()))?;
/// wal.append(id, &SessionEvent::UserMessage("two".into()))?;
/// let done = delete(&wal, id, &Selection::After(kept), "pop")?;
/// assert_eq!(done.lsns, [3]);
/// assert_eq!(session_state(dir.path(), id)?.transcript().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn delete(
    wal: &Wal,
    session: Uuid,
    selection: &Selection,
    reason: &str,
) -> Result<DeletePlan, ReplayError> {
    let dir = wal.dir();
    // Readers return durable records only: what was appended so far must
    // be seen by the plan, which reads up to there and no further (a
    // writer appending to the session beside it never keeps it chasing).
    let until = wal
        .sync()
        .map_err(|e| ReplayError::wal("syncing before a delete in", dir, e))?;
    past_end(selection, until)?;
    // Each tombstone fits in a record of this log (its segment size may
    // be small), its reason and framing aside.
    let room = wal.max_payload_len().saturating_sub(reason.len() + 64) / RANGE_BYTES;
    let mut plan = plan_in(
        &Source::Dir(dir.to_path_buf()),
        session,
        selection,
        reason,
        room.min(MAX_RANGES_PER_TOMBSTONE),
        until,
    )?;
    if plan.tombstones.is_empty() {
        return Ok(plan);
    }
    let batch: Vec<(Uuid, SessionEvent)> = plan
        .tombstones
        .iter()
        .map(|t| (session, t.clone()))
        .collect();
    let lsns = wal
        .append_many(&batch)
        .map_err(|e| ReplayError::wal("appending a tombstone to", dir, e))?;
    wal.sync()
        .map_err(|e| ReplayError::wal("syncing a tombstone in", dir, e))?;
    plan.tombstone_lsn = lsns.last().copied();
    // A tombstone with `after_lsn` (a whole session, a pop) deletes every
    // record of the session below it above that LSN, those appended
    // between the plan's end and the tombstone too. Compaction erases only
    // listed records, so they are listed, by tombstones of ranges only
    // (which delete exactly what they list: nothing appended meanwhile is
    // deleted unlisted). Every record deleted is listed, hence erased.
    let after = plan.tombstones.iter().find_map(|t| match t {
        SessionEvent::SessionDeleted { after_lsn, .. } => *after_lsn,
        _ => None,
    });
    if let (Some(after), Some(&last)) = (after, lsns.last()) {
        let raced = appended_between(dir, session, until, last, after)?;
        if !raced.is_empty() {
            let ranges = lsn_ranges(raced.iter().map(|r| r.0));
            let more: Vec<SessionEvent> = ranges
                .chunks(room.clamp(1, MAX_RANGES_PER_TOMBSTONE))
                .map(|part| SessionEvent::SessionDeleted {
                    after_lsn: None,
                    ranges: part.to_vec(),
                    reason: reason.to_owned(),
                })
                .collect();
            let batch: Vec<(Uuid, SessionEvent)> =
                more.iter().map(|t| (session, t.clone())).collect();
            wal.append_many(&batch)
                .map_err(|e| ReplayError::wal("appending a tombstone to", dir, e))?;
            wal.sync()
                .map_err(|e| ReplayError::wal("syncing a tombstone in", dir, e))?;
            plan.tombstones.extend(more);
            plan.bytes += raced.iter().map(|r| r.1).sum::<u64>();
            plan.lsns.extend(raced.iter().map(|r| r.0));
            plan.lsns.sort_unstable();
        }
    }
    Ok(plan)
}

/// (LSN, frame bytes) of each record of `session` after LSN `until` (the
/// end the plan read to) and below `tombstone` (the last tombstone the
/// delete appended), above `after`, tombstones aside: records appended
/// while the delete planned, which its tombstones delete by `after_lsn`.
/// Read with no tombstone applied: the delete's own delete them all.
fn appended_between(
    dir: &Path,
    session: Uuid,
    until: Lsn,
    tombstone: Lsn,
    after: Lsn,
) -> Result<Vec<(Lsn, u64)>, ReplayError> {
    let mut raced = Vec::new();
    if tombstone <= until.saturating_add(1) {
        return Ok(raced);
    }
    let source = Source::Dir(dir.to_path_buf());
    let mut reader = source
        .reader()?
        .from_lsn(until + 1)
        .session(session)
        .until(tombstone - 1);
    scan_reader(
        dir,
        &mut reader,
        Sessions::One(session),
        OnCorruption::Fail,
        |item, record, _, _| {
            let bytes = record.end_offset().saturating_sub(record.offset);
            let lsn = match item {
                Item::Event(e) if e.event.is_tombstone() => return,
                Item::Event(e) => e.lsn,
                Item::Skipped { lsn, .. } => lsn,
            };
            if lsn > after {
                raced.push((lsn, bytes));
            }
        },
    )?;
    Ok(raced)
}

/// [`delete`] of the whole session.
///
/// # Errors
///
/// As [`delete`].
pub fn delete_session(wal: &Wal, session: Uuid) -> Result<DeletePlan, ReplayError> {
    delete(wal, session, &Selection::Session, "session")
}

/// [`delete`] of the session's records after `after` (pop, undo).
///
/// # Errors
///
/// As [`delete`].
pub fn delete_after(wal: &Wal, session: Uuid, after: Lsn) -> Result<DeletePlan, ReplayError> {
    delete(wal, session, &Selection::After(after), "after")
}

/// [`delete`] of the records of `runs` (each named by the LSN of the
/// `UserMessage` that opened it, see [`Selection::Runs`]).
///
/// # Errors
///
/// As [`delete`].
pub fn delete_runs(wal: &Wal, session: Uuid, runs: &[Lsn]) -> Result<DeletePlan, ReplayError> {
    delete(wal, session, &Selection::Runs(runs.to_vec()), "runs")
}

/// [`delete`] of the records of `session` at `lsns` ([`Selection::Records`]).
///
/// # Errors
///
/// As [`delete`].
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{delete_records, session_events};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// for text in ["a", "b", "c"] {
///     wal.append(id, &SessionEvent::TextComplete(text.into()))?;
/// }
/// assert_eq!(delete_records(&wal, id, &[2])?.lsns, [2]);
/// let left: Vec<u64> = session_events(dir.path(), id)?.iter().map(|r| r.lsn).collect();
/// assert_eq!(left, [1, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn delete_records(wal: &Wal, session: Uuid, lsns: &[Lsn]) -> Result<DeletePlan, ReplayError> {
    delete(wal, session, &Selection::Records(lsns.to_vec()), "records")
}

/// [`delete`] of all but the latest `keep` records of `kind` (prune).
///
/// # Errors
///
/// As [`delete`].
pub fn prune(wal: &Wal, session: Uuid, kind: &str, keep: usize) -> Result<DeletePlan, ReplayError> {
    delete(
        wal,
        session,
        &Selection::KeepLatest {
            kind: kind.to_owned(),
            keep,
        },
        "prune",
    )
}
