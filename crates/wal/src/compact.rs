//! Erasure by compaction: sealed segments rewritten with every record a
//! tombstone lists replaced by a **redacted placeholder** (the record's
//! frame header, and its 16-byte tag in an encrypted segment or one zero
//! byte in the clear: `docs/format.md`, "Redacted placeholders"), each
//! swapped in by an fsynced `<segment>.compact` renamed over the segment.
//!
//! Survivors keep their bytes and LSNs; the log stays gapless, and an
//! encrypted log's chain stays verifiable (the next record's associated
//! data commits to the placeholder's tag). A reader accepts a placeholder
//! only if a tombstone of the same session later in the log lists its LSN
//! (`reader.rs`), so removing a record is never silent.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook_bus::SessionEvent;
use uuid::Uuid;

use crate::error::WalError;
use crate::format::{Frame, Lsn, decode_frame};
use crate::fs::{Fs, OpenMode};
use crate::segment::{self, SegmentEntry};

/// Bytes a compaction writes at a time (and fsyncs, while appends come
/// in).
const WRITE_CHUNK: usize = 1 << 20;

/// The suffix of a segment being compacted: `<segment>.compact`, removed
/// by the next `open` (the segment it would replace is still in place).
pub(crate) const COMPACT_SUFFIX: &str = ".compact";

/// The inclusive LSN ranges a tombstone's payload lists (`None`: not a
/// tombstone of codec 1). Only listed LSNs are ever erased: an
/// `after_lsn` alone names records by session, which a placeholder's clear
/// header does not authenticate.
///
/// The ranges come back sorted by their first LSN, for [`is_listed`].
pub(crate) fn listed_ranges(payload: &[u8]) -> Option<Vec<(u64, u64)>> {
    let tag = logbook_bus::codec::peek_tag(payload)?;
    if logbook_bus::KINDS.get(usize::try_from(tag).ok()?) != Some(&"session_deleted") {
        return None;
    }
    match logbook_bus::codec::decode(payload) {
        Ok(SessionEvent::SessionDeleted { mut ranges, .. }) => {
            ranges.sort_unstable();
            // Merged, so that they do not overlap.
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
            for (a, b) in ranges {
                match merged.last_mut() {
                    Some((_, end)) if a <= end.saturating_add(1) => *end = (*end).max(b),
                    _ => merged.push((a, b)),
                }
            }
            Some(merged)
        }
        _ => None,
    }
}

/// Whether `lsn` lies in one of `ranges` (sorted and merged, as
/// [`listed_ranges`] returns them): a binary search.
pub(crate) fn is_listed(ranges: &[(u64, u64)], lsn: Lsn) -> bool {
    let end = ranges.partition_point(|&(a, _)| a <= lsn);
    end.checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|&(_, b)| b >= lsn)
}

/// One segment a compaction rewrote (or would rewrite).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactedSegment {
    /// The segment file.
    pub path: PathBuf,
    /// Records erased (replaced by placeholders) in it.
    pub erased: u64,
    /// Its size before.
    pub bytes_before: u64,
    /// Its size after.
    pub bytes_after: u64,
}

/// What a compaction erased (or, planned, would erase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compaction {
    /// The segments rewritten, in log order.
    pub segments: Vec<CompactedSegment>,
    /// Records erased in all.
    pub erased: u64,
    /// Bytes reclaimed in all (sizes before minus after).
    pub reclaimed: u64,
    /// Records that tombstones list but that lie in the active segment,
    /// which is never rewritten: erased by a later compaction, once it is
    /// sealed. [`Wal::compact`](crate::Wal::compact) seals it first when
    /// no append is in flight.
    pub in_active_segment: u64,
    /// Whether the active segment was sealed first.
    pub sealed_tail: bool,
    /// Sealed segments left as they were because they could not be read
    /// cleanly (damage): path and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// A tombstone's LSN and the ranges it lists.
type Listing = (Lsn, Vec<(u64, u64)>);

/// Swaps a rewritten segment in (`Wal::compact`); `None`: a dry run.
pub(crate) type SwapIn<'a> = &'a mut dyn FnMut(&SegmentEntry, &[u8]) -> Result<(), WalError>;

/// Runs a step under the writer's lock.
pub(crate) type Locked<'a> =
    &'a mut dyn FnMut(&mut dyn FnMut() -> Result<(), WalError>) -> Result<(), WalError>;

/// Asked with `None` whether appends are coming in (then each chunk is
/// fsynced on its own); told with `Some` how long a chunk took to write
/// and fsync, and may pause (to leave the device to the appends).
pub(crate) type Pace<'a> = &'a mut dyn FnMut(Option<std::time::Duration>) -> bool;

/// What the tombstones of a log list: per session, the tombstones' LSNs
/// and ranges; and every tombstone's LSN (never erased).
#[derive(Debug, Default)]
struct Listed {
    by_session: HashMap<Uuid, Vec<Listing>>,
    tombstones: HashSet<Lsn>,
}

impl Listed {
    fn erases(&self, session: Uuid, lsn: Lsn) -> bool {
        !self.tombstones.contains(&lsn)
            && self
                .by_session
                .get(&session)
                .is_some_and(|t| t.iter().any(|(at, r)| lsn < *at && is_listed(r, lsn)))
    }
}

/// The tombstones of the log in `dir`, read with `keys` (an encrypted
/// log's tombstones are sealed): [`WalError::Encrypted`] for a record
/// sealed with a key `keys` lacks.
fn gather(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    keys: Option<&Arc<crate::KeyRing>>,
) -> Result<Listed, WalError> {
    let mut reader = crate::Reader::open_with_fs(Arc::clone(fs), dir)?;
    if let Some(keys) = keys {
        reader = reader.with_keys(Arc::clone(keys));
    }
    let mut listed = Listed::default();
    while let Some(record) = reader.next_ref() {
        let record = match record {
            Ok(record) => record,
            // Damage: passed over (the reader goes on after it). A damaged
            // tombstone deletes nothing for readers either, so nothing
            // unlisted is erased; the damaged segment itself is left as
            // it is and reported (`Compaction::skipped`).
            Err(e) if e.is_corruption() => continue,
            Err(e) => return Err(e),
        };
        // Still sealed (no key with its id): it may be a tombstone, so
        // what the log deletes cannot be known. Refused, never read as
        // "nothing to erase".
        if let Some(key_id) = record.key_id {
            return Err(WalError::Encrypted {
                segment: record.segment.to_path_buf(),
                lsn: record.lsn,
                key_id,
            });
        }
        if record.codec_id != logbook_bus::codec::CODEC_ID {
            continue;
        }
        if let Some(ranges) = listed_ranges(record.payload) {
            listed.tombstones.insert(record.lsn);
            listed
                .by_session
                .entry(record.session)
                .or_default()
                .push((record.lsn, ranges));
        }
    }
    Ok(listed)
}

/// The compacted bytes of the segment `entry` (whole in `bytes`), or
/// `None` if nothing in it is to be erased; the count erased.
fn rewrite(
    entry: &SegmentEntry,
    bytes: &[u8],
    listed: &Listed,
) -> Result<Option<(Vec<u8>, u64)>, String> {
    let header = segment::check_header(
        bytes
            .get(..crate::format::SEGMENT_HEADER_LEN)
            .unwrap_or_default(),
        entry,
    )
    .map_err(|e| e.to_string())?;
    let start = header.records_start();
    let encrypted = header.key_id.is_some();
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(bytes.get(..start).ok_or("shorter than its header")?);
    let (mut at, mut lsn, mut erased) = (start, entry.base_lsn, 0u64);
    while at < bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        let (header, payload, len) = match decode_frame(rest) {
            Frame::Valid {
                header,
                payload,
                len,
            } if header.lsn == lsn => (header, payload, len),
            Frame::Zero => break,
            Frame::Valid { header, .. } => {
                return Err(format!(
                    "offset {at}: LSN {} where {lsn} was expected",
                    header.lsn
                ));
            }
            Frame::Invalid(e) => return Err(format!("offset {at} (LSN {lsn}): {e}")),
        };
        let frame = rest.get(..len).unwrap_or_default();
        if !crate::format::is_redacted(frame) && listed.erases(header.session, lsn) {
            let placeholder: Vec<u8> = if encrypted {
                crate::crypto::tag_of(payload)
                    .ok_or_else(|| {
                        format!("offset {at} (LSN {lsn}): a sealed payload shorter than its tag")
                    })?
                    .to_vec()
            } else {
                crate::format::REDACTED_CLEAR_PAYLOAD.to_vec()
            };
            crate::format::encode_placeholder(&mut out, &header, &placeholder);
            erased += 1;
        } else {
            out.extend_from_slice(frame);
        }
        at += len;
        lsn += 1;
    }
    Ok((erased > 0).then_some((out, erased)))
}

/// Plan or run a compaction of the log in `dir`: every sealed segment
/// (base below `active_base`) read; with `apply`, each one holding a
/// record to erase rewritten and swapped in (see [`swap`]).
pub(crate) fn compact(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    keys: Option<&Arc<crate::KeyRing>>,
    active_base: Option<Lsn>,
    mut swap_in: Option<SwapIn<'_>>,
) -> Result<Compaction, WalError> {
    let listed = gather(fs, dir, keys)?;
    let listing = segment::list(&**fs, dir)?;
    let active_base = active_base
        .or_else(|| listing.segments.last().map(|s| s.base_lsn))
        .unwrap_or(0);
    let mut out = Compaction::default();
    for entry in &listing.segments {
        let file = fs
            .open(&entry.path, OpenMode::Read)
            .map_err(|e| WalError::io("open", &entry.path, e))?;
        let contents = file
            .contents()
            .map_err(|e| WalError::io("read", &entry.path, e))?;
        if entry.base_lsn >= active_base {
            // The active segment: count what it holds to erase.
            if let Ok(Some((_, n))) = rewrite(entry, &contents, &listed) {
                out.in_active_segment += n;
            }
            continue;
        }
        let (bytes, erased) = match rewrite(entry, &contents, &listed) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(why) => {
                out.skipped.push((entry.path.clone(), why));
                continue;
            }
        };
        if let Some(swap_in) = swap_in.as_mut() {
            swap_in(entry, &bytes)?;
        }
        let before = contents.len() as u64;
        out.erased += erased;
        out.reclaimed += before.saturating_sub(bytes.len() as u64);
        out.segments.push(CompactedSegment {
            path: entry.path.clone(),
            erased,
            bytes_before: before,
            bytes_after: bytes.len() as u64,
        });
    }
    Ok(out)
}

/// Write `bytes` as `<segment>.compact`, fsync it, rename it over the
/// segment, fsync the directory: a crash at any step leaves the old
/// segment or the new one, and at most a `.compact` file the next `open`
/// removes. The rename runs under the writer's lock (`rename_locked`),
/// after a check that the segment is still there: retention may have
/// removed it meanwhile.
pub(crate) fn swap(
    fs: &dyn Fs,
    dir: &Path,
    entry: &SegmentEntry,
    bytes: &[u8],
    rename_locked: Locked<'_>,
    pace: Pace<'_>,
) -> Result<(), WalError> {
    let tmp = compact_path(&entry.path);
    match fs.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::io("remove", &tmp, e)),
    }
    let file = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| WalError::io("create", &tmp, e))?;
    // In chunks, each made durable before the next is written: one large
    // write and fsync would hold the device's queue for its whole length,
    // and the writer's own fsyncs (its appends) would wait behind it.
    let sync = || {
        file.sync_data()
            .map_err(|e| WalError::fatal("fsync", &tmp, e))
    };
    let mut written = Ok(());
    for (i, chunk) in bytes.chunks(WRITE_CHUNK).enumerate() {
        let started = std::time::Instant::now();
        written = file
            .write_all_at(chunk, (i * WRITE_CHUNK) as u64)
            .map_err(|e| WalError::io("write", &tmp, e));
        if written.is_err() {
            break;
        }
        // While appends come in, each chunk is made durable before the
        // next, and a pause follows (see `Wal::compact`).
        if pace(None) {
            written = sync();
            if written.is_err() {
                break;
            }
            pace(Some(started.elapsed()));
        }
    }
    if written.is_ok() {
        written = sync();
    }
    drop(file);
    if let Err(e) = written {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    rename_locked(&mut || {
        if fs
            .kind(&entry.path)
            .map_err(|e| WalError::io("stat", &entry.path, e))?
            == crate::fs::PathKind::Missing
        {
            // Removed by retention meanwhile: nothing to replace.
            return fs
                .remove_file(&tmp)
                .map_err(|e| WalError::io("remove", &tmp, e));
        }
        fs.rename(&tmp, &entry.path)
            .map_err(|e| WalError::io("rename", &tmp, e))
    })?;
    // Outside the writer's lock: its appends need not wait for it.
    fs.sync_dir(dir)
        .map_err(|e| WalError::fatal("fsync directory", dir, e))
}

/// `<segment>.compact`.
pub(crate) fn compact_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(COMPACT_SUFFIX);
    PathBuf::from(name)
}

/// What compaction would erase in the log in `dir` now, read without the
/// writer lock (a dry run: `logbook compact` without `--apply`; `stats`'s
/// reclaimable bytes). With `keys` for an encrypted log (its tombstones
/// are sealed).
///
/// # Errors
///
/// [`WalError`] for a log that cannot be read (corruption included: the
/// tombstones are read with a full, checked read);
/// [`WalError::Encrypted`] for a record sealed with a key not given (it
/// may be a tombstone: what would be erased cannot be told).
pub fn compaction_plan(
    dir: impl AsRef<Path>,
    keys: Option<Arc<crate::KeyRing>>,
) -> Result<Compaction, WalError> {
    let fs: Arc<dyn Fs> = Arc::new(crate::fs::StdFs);
    let keys = keys.or_else(crate::default_keys);
    compact(&fs, dir.as_ref(), keys.as_ref(), None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tombstone(ranges: Vec<(u64, u64)>) -> Vec<u8> {
        logbook_bus::codec::encode(&SessionEvent::SessionDeleted {
            after_lsn: None,
            ranges,
            reason: String::new(),
        })
        .unwrap_or_default()
    }

    #[test]
    fn listed_ranges_are_sorted_merged_and_searched() {
        let r = listed_ranges(&tombstone(vec![(9, 9), (1, 3), (2, 5), (7, 7), (6, 6)]));
        assert_eq!(r.as_deref(), Some(&[(1, 7), (9, 9)][..]));
        let r = r.unwrap_or_default();
        for lsn in 0..12 {
            assert_eq!(
                is_listed(&r, lsn),
                (1..=7).contains(&lsn) || lsn == 9,
                "{lsn}"
            );
        }
        assert!(
            listed_ranges(&logbook_bus::codec::encode(&SessionEvent::Done).unwrap_or_default())
                .is_none()
        );
    }
}
