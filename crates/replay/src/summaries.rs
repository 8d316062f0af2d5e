//! Per-segment session summaries: `<segment>.sum`, a sealed segment's
//! [`Tally`] of every session, cached beside it so that a listing folds a
//! sealed segment from a few bytes instead of its records
//! (`docs/format.md`, "Session summaries").
//!
//! Derived data, like the session index: a listing that finds no usable
//! summary for a sealed segment scans it, and stores one if the segment
//! read cleanly (no damage, no record it could not decode, no event kind
//! it does not know). Stored best effort, never fsynced; a summary is used
//! only if its CRC checks and it names the segment exactly as it is now
//! (base LSN, creation time, length).

use std::path::{Path, PathBuf};

use logbook_wal::Lsn;
use uuid::Uuid;

use crate::list::Tally;
use crate::state::Span;
use crate::status::SessionStatus;

/// First bytes of a summaries file: `\x89LBSUM\r\n`.
const MAGIC: [u8; 8] = *b"\x89LBSUM\r\n";
/// The layout version this build writes and reads.
const VERSION: u16 = 1;

/// A sealed segment's summaries, and what they are of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summaries {
    /// The segment as it was summarised: base LSN, header creation time,
    /// file length.
    pub(crate) key: Key,
    /// The LSN of its last record (its base LSN − 1 if it has none).
    pub(crate) last_lsn: Lsn,
    /// Records in it.
    pub(crate) records: u64,
    /// Each session's fold over the segment, in order of first record.
    pub(crate) tallies: Vec<Tally>,
}

/// What ties a summaries file to its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) base_lsn: Lsn,
    pub(crate) created_us: u64,
    pub(crate) len: u64,
}

impl Key {
    /// The key of `segment` as it is now.
    pub(crate) fn of(segment: &Path) -> Option<Key> {
        let header = logbook_wal::segment_header(segment).ok()?;
        let len = std::fs::metadata(segment).ok()?.len();
        Some(Key {
            base_lsn: header.base_lsn,
            created_us: header.created_us,
            len,
        })
    }
}

/// The summaries file of `segment`.
pub(crate) fn path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".sum");
    PathBuf::from(name)
}

/// The summaries of `segment`, if a usable file holds them.
pub(crate) fn load(segment: &Path) -> Option<Summaries> {
    let key = Key::of(segment)?;
    let bytes = std::fs::read(path(segment)).ok()?;
    let summaries = decode(&bytes)?;
    (summaries.key == key).then_some(summaries)
}

/// Store `summaries` beside `segment` (best effort: a log on a read-only
/// file system simply gets none).
pub(crate) fn store(segment: &Path, summaries: &Summaries) {
    let target = path(segment);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written =
        std::fs::write(&tmp, encode(summaries)).and_then(|()| std::fs::rename(&tmp, &target));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(%error, segment = %segment.display(), "cannot store session summaries");
    }
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// The file's bytes: magic, version, the key, the last LSN, the record
/// count, the tallies, and a CRC-32 of everything before it.
pub(crate) fn encode(s: &Summaries) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for v in [
        s.key.base_lsn,
        s.key.created_us,
        s.key.len,
        s.last_lsn,
        s.records,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(s.tallies.len() as u32).to_le_bytes());
    for t in &s.tallies {
        out.extend_from_slice(t.session.as_bytes());
        let (tag, failed) = match &t.status {
            None => (0u8, None),
            Some(SessionStatus::Running | SessionStatus::Interrupted) => (1, None),
            Some(SessionStatus::Completed) => (2, None),
            Some(SessionStatus::Failed(msg)) => (3, Some(msg.as_str())),
        };
        out.push(tag);
        put_str(&mut out, failed);
        for v in [
            t.span.first_lsn,
            t.span.last_lsn,
            t.span.first_timestamp_us,
            t.span.last_timestamp_us,
            t.events,
            t.durable_events,
            t.skipped_records,
            t.tokens,
            t.legacy_tokens,
            t.resumptions,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for s in [&t.model, &t.cwd, &t.started_title, &t.message_title] {
            put_str(&mut out, s.as_deref());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A reader of the file's fields; every read checks its bounds.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<Option<String>> {
        let len = self.u32()?;
        if len == u32::MAX {
            return Some(None);
        }
        let bytes = self.take(len as usize)?;
        Some(Some(String::from_utf8(bytes.to_vec()).ok()?))
    }
}

/// Parse a summaries file; `None` if it is not a valid one. Never panics.
pub(crate) fn decode(bytes: &[u8]) -> Option<Summaries> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut c = Cursor(body);
    if c.take(MAGIC.len())? != MAGIC || c.take(2)? != VERSION.to_le_bytes() {
        return None;
    }
    let key = Key {
        base_lsn: c.u64()?,
        created_us: c.u64()?,
        len: c.u64()?,
    };
    let (last_lsn, records) = (c.u64()?, c.u64()?);
    let n = c.u32()?;
    let mut tallies = Vec::new();
    for _ in 0..n {
        let session = Uuid::from_bytes(c.take(16)?.try_into().ok()?);
        let tag = *c.take(1)?.first()?;
        let failed = c.str()?;
        let status = match (tag, failed) {
            (0, None) => None,
            (1, None) => Some(SessionStatus::Running),
            (2, None) => Some(SessionStatus::Completed),
            (3, Some(msg)) => Some(SessionStatus::Failed(msg)),
            _ => return None,
        };
        let span = Span {
            first_lsn: c.u64()?,
            last_lsn: c.u64()?,
            first_timestamp_us: c.u64()?,
            last_timestamp_us: c.u64()?,
        };
        let (events, durable_events, skipped_records) = (c.u64()?, c.u64()?, c.u64()?);
        let (tokens, legacy_tokens, resumptions) = (c.u64()?, c.u64()?, c.u64()?);
        tallies.push(Tally {
            session,
            status,
            span,
            events,
            durable_events,
            skipped_records,
            tokens,
            legacy_tokens,
            model: c.str()?,
            cwd: c.str()?,
            started_title: c.str()?,
            message_title: c.str()?,
            resumptions,
        });
    }
    c.0.is_empty().then_some(Summaries {
        key,
        last_lsn,
        records,
        tallies,
    })
}
