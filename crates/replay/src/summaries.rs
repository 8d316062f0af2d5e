//! Per-segment session summaries: `<segment>.sum`, each session's
//! [`Tally`] over a segment, cached beside it so that a listing folds the
//! segment from a few bytes instead of its records (`docs/format.md`,
//! "Session summaries").
//!
//! Two kinds. A sealed segment's summaries cover all of it, and are used
//! while the segment is as it was (base LSN, creation time, length). The
//! tail's summaries cover its front up to a record: they are used while
//! the log still holds that record at that offset with that CRC (the
//! reader goes straight past it, [`logbook_wal::Reader::resume_after`]),
//! and the listing scans only what the tail gained since; they stay usable
//! after the segment is sealed, until a whole summary replaces them.
//!
//! A run of sealed segments at the front of the log is also folded as one,
//! `<first segment>.run` ([`Run`]), so that a listing of a log whose
//! sessions span many segments reads one fold per session, not one per
//! session per segment.
//!
//! Derived data, like the session index: a listing that finds no usable
//! summary scans the segment, and stores one if it read cleanly (no damage,
//! no record it could not decode, no event kind it does not know): always
//! for a sealed segment, for the tail once it gained [`tail_step`] bytes
//! since its last summary. Stored best effort, never fsynced, used only if
//! its CRC checks.

use std::path::{Path, PathBuf};

use logbook_wal::{Lsn, Place};
use uuid::Uuid;

use crate::list::Tally;
use crate::state::Span;
use crate::stats::Figures;
use crate::status::SessionStatus;

/// First bytes of a summaries file: `\x89LBSUM\r\n`.
const MAGIC: [u8; 8] = *b"\x89LBSUM\r\n";
/// The tail gets new summaries once a listing read [`tail_step`] bytes of
/// it past the last ones: a quarter of the file (preallocated to the
/// segment size), at most 1 MiB. So a small log gets none, and a growing
/// tail is summarised again every MiB, not at every listing.
const TAIL_STEP: u64 = 1 << 20;

/// The bytes a tail of `len` must gain before it is summarised again.
pub(crate) fn tail_step(len: u64) -> u64 {
    TAIL_STEP.min(len / 4)
}

/// The layout version this build writes and reads.
const VERSION: u16 = 3;

/// A segment's summaries (the whole of a sealed one, or the front of the
/// tail up to a record), and what they are of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summaries {
    /// The segment as it was summarised.
    pub(crate) key: Key,
    /// The LSN of its last record summarised.
    pub(crate) last_lsn: Lsn,
    /// That record's offset and CRC: a summary of the front of a segment
    /// is used only while the log still holds that very record there.
    pub(crate) last_offset: u64,
    pub(crate) last_crc: u32,
    /// Records summarised.
    pub(crate) records: u64,
    /// Their figures for `stats` (bytes by kind, time span, bytes used).
    pub(crate) figures: Figures,
    /// Each session's fold over them, in order of first record.
    pub(crate) tallies: Vec<Tally>,
}

impl Summaries {
    /// The LSN of the first record summarised.
    pub(crate) fn first_lsn(&self) -> Lsn {
        self.tallies
            .iter()
            .map(|t| t.span.first_lsn)
            .min()
            .unwrap_or(self.last_lsn)
    }

    /// Where the last record summarised lies.
    pub(crate) fn last_place(&self) -> Place {
        Place {
            segment_base: self.key.base_lsn,
            offset: self.last_offset,
            lsn: self.last_lsn,
            crc: self.last_crc,
        }
    }
}

/// What ties a summaries file to its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) base_lsn: Lsn,
    pub(crate) created_us: u64,
    /// The file's length when it was summarised.
    pub(crate) len: u64,
    /// Whether it was sealed then, and summarised whole.
    pub(crate) sealed: bool,
}

impl Key {
    /// The key of `segment` as it is now (`sealed` as given); `None` for an
    /// encrypted segment, which gets no summaries: they would hold its
    /// titles, models and working directories in the clear.
    pub(crate) fn of(segment: &Path, sealed: bool) -> Option<Key> {
        let header = logbook_wal::segment_header(segment).ok()?;
        if header.key_id.is_some() {
            return None;
        }
        let len = std::fs::metadata(segment).ok()?.len();
        Some(Key {
            base_lsn: header.base_lsn,
            created_us: header.created_us,
            len,
            sealed,
        })
    }

    /// Whether these summaries are of `now`'s segment, sealed, whole.
    pub(crate) fn is_whole(&self, now: &Key) -> bool {
        self.sealed && now.sealed && self == now
    }
}

/// The summaries file of `segment`.
pub(crate) fn path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".sum");
    PathBuf::from(name)
}

/// The summaries stored for `segment` (whose key is `now`), if a valid
/// file holds summaries of this very segment: the whole of it, or its
/// front (see [`Key::is_whole`] and [`Summaries::last_place`]).
pub(crate) fn load(segment: &Path, now: &Key) -> Option<Summaries> {
    let bytes = std::fs::read(path(segment)).ok()?;
    let summaries = decode(&bytes)?;
    let of_it = summaries.key.base_lsn == now.base_lsn
        && summaries.key.created_us == now.created_us
        && summaries.key.len <= now.len;
    of_it.then_some(summaries)
}

/// Store `summaries` beside `segment` (best effort: a log on a read-only
/// file system simply gets none).
pub(crate) fn store(segment: &Path, summaries: &Summaries) {
    store_file(&path(segment), &encode(summaries), segment);
}

/// Write `bytes` to `target` through a temporary renamed over it (never
/// fsynced: derived data), or leave nothing; nothing at all when derived
/// writes are off ([`logbook_wal::set_derived_writes`]).
fn store_file(target: &Path, bytes: &[u8], segment: &Path) {
    if !logbook_wal::derived_writes() {
        // Turned off for this process (`logbook --no-derived-writes`).
        return;
    }
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, target));
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

/// The file's bytes: magic, version, base LSN, creation time, file length,
/// the last record's LSN and offset, the record count, the last record's
/// CRC, whether the segment was sealed, the figures, the tallies, and a
/// CRC-32 of everything before it.
pub(crate) fn encode(s: &Summaries) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for v in [
        s.key.base_lsn,
        s.key.created_us,
        s.key.len,
        s.last_lsn,
        s.last_offset,
        s.records,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&s.last_crc.to_le_bytes());
    out.push(u8::from(s.key.sealed));
    put_figures(&mut out, &s.figures);
    put_tallies(&mut out, &s.tallies);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_figures(out: &mut Vec<u8>, f: &Figures) {
    for v in [f.used_bytes, f.min_timestamp_us, f.max_timestamp_us] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(f.kinds.len() as u32).to_le_bytes());
    for (records, bytes) in &f.kinds {
        out.extend_from_slice(&records.to_le_bytes());
        out.extend_from_slice(&bytes.to_le_bytes());
    }
}

fn put_tallies(out: &mut Vec<u8>, tallies: &[Tally]) {
    out.extend_from_slice(&(tallies.len() as u32).to_le_bytes());
    for t in tallies {
        out.extend_from_slice(t.session.as_bytes());
        let (tag, failed) = match &t.status {
            None => (0u8, None),
            Some(SessionStatus::Running | SessionStatus::Interrupted) => (1, None),
            Some(SessionStatus::Completed) => (2, None),
            Some(SessionStatus::Failed(msg)) => (3, Some(msg.as_str())),
        };
        out.push(tag);
        put_str(out, failed);
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
            t.tombstones,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for s in [&t.model, &t.cwd, &t.started_title, &t.message_title] {
            put_str(out, s.as_deref());
        }
        match t.forked_from {
            None => out.push(0),
            Some((from, at_lsn)) => {
                out.push(1);
                out.extend_from_slice(from.as_bytes());
                out.extend_from_slice(&at_lsn.to_le_bytes());
            }
        }
        // 0: neither, 1: a beginning, 2: a truncation mark.
        out.push(u8::from(t.began) | (u8::from(t.marked) << 1));
    }
}

/// A reader of the file's fields; every read checks its bounds.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    /// The body of a file that starts with `magic`, `VERSION` and ends with
    /// a CRC-32 of the rest, past the magic and version.
    fn open<'a>(bytes: &'a [u8], magic: &[u8]) -> Option<Cursor<'a>> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut c = Cursor(body);
        (c.take(magic.len())? == magic && c.take(2)? == VERSION.to_le_bytes()).then_some(c)
    }
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
    fn figures(&mut self) -> Option<Figures> {
        let (used_bytes, min_timestamp_us, max_timestamp_us) =
            (self.u64()?, self.u64()?, self.u64()?);
        let kinds_len = self.u32()?;
        // Kinds this build knows, and one for the others: a file of another
        // build's kind count is not used.
        if kinds_len as usize != logbook_bus::KINDS.len() + 1 {
            return None;
        }
        let mut kinds = Vec::with_capacity(kinds_len as usize);
        for _ in 0..kinds_len {
            kinds.push((self.u64()?, self.u64()?));
        }
        Some(Figures {
            used_bytes,
            min_timestamp_us,
            max_timestamp_us,
            kinds,
        })
    }
    fn tallies(&mut self) -> Option<Vec<Tally>> {
        let n = self.u32()?;
        let mut tallies = Vec::new();
        for _ in 0..n {
            let session = Uuid::from_bytes(self.take(16)?.try_into().ok()?);
            let tag = *self.take(1)?.first()?;
            let failed = self.str()?;
            let status = match (tag, failed) {
                (0, None) => None,
                (1, None) => Some(SessionStatus::Running),
                (2, None) => Some(SessionStatus::Completed),
                (3, Some(msg)) => Some(SessionStatus::Failed(msg)),
                _ => return None,
            };
            let span = Span {
                first_lsn: self.u64()?,
                last_lsn: self.u64()?,
                first_timestamp_us: self.u64()?,
                last_timestamp_us: self.u64()?,
            };
            let (events, durable_events, skipped_records) = (self.u64()?, self.u64()?, self.u64()?);
            let (tokens, legacy_tokens, resumptions) = (self.u64()?, self.u64()?, self.u64()?);
            let tombstones = self.u64()?;
            let (model, cwd) = (self.str()?, self.str()?);
            let (started_title, message_title) = (self.str()?, self.str()?);
            let forked_from = match *self.take(1)?.first()? {
                0 => None,
                1 => Some((
                    Uuid::from_bytes(self.take(16)?.try_into().ok()?),
                    self.u64()?,
                )),
                _ => return None,
            };
            // 0: neither, 1: a beginning, 2: a truncation mark.
            let (began, marked) = match *self.take(1)?.first()? {
                0 => (false, false),
                1 => (true, false),
                2 => (false, true),
                _ => return None,
            };
            tallies.push(Tally {
                session,
                status,
                span,
                events,
                durable_events,
                skipped_records,
                tokens,
                legacy_tokens,
                model,
                cwd,
                started_title,
                message_title,
                resumptions,
                tombstones,
                forked_from,
                began,
                marked,
            });
        }
        Some(tallies)
    }
}

/// Parse a summaries file; `None` if it is not a valid one. Never panics.
pub(crate) fn decode(bytes: &[u8]) -> Option<Summaries> {
    let mut c = Cursor::open(bytes, &MAGIC)?;
    let (base_lsn, created_us, len) = (c.u64()?, c.u64()?, c.u64()?);
    let (last_lsn, last_offset, records, last_crc) = (c.u64()?, c.u64()?, c.u64()?, c.u32()?);
    let sealed = match *c.take(1)?.first()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let key = Key {
        base_lsn,
        created_us,
        len,
        sealed,
    };
    let figures = c.figures()?;
    let tallies = c.tallies()?;
    c.0.is_empty().then_some(Summaries {
        key,
        last_lsn,
        last_offset,
        last_crc,
        records,
        figures,
        tallies,
    })
}

/// First bytes of a run's summaries file: `\x89LBRUN\r\n`.
const RUN_MAGIC: [u8; 8] = *b"\x89LBRUN\r\n";

/// The summaries of a run of sealed segments at the front of the log,
/// folded as one: `<first segment>.run`. A listing folds the run from one
/// file instead of one per segment (whose folds, one per session each,
/// add up to sessions × segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    /// Each segment of the run, in order, as it was summarised.
    pub(crate) segments: Vec<RunSegment>,
    /// The last LSN of the run.
    pub(crate) last_lsn: Lsn,
    /// Records in it.
    pub(crate) records: u64,
    /// Its figures, all segments together (`used_bytes` unused).
    pub(crate) figures: Figures,
    /// Each session's fold over the whole run.
    pub(crate) tallies: Vec<Tally>,
}

/// One segment of a [`Run`]: its key (sealed, whole) and its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunSegment {
    pub(crate) key: Key,
    pub(crate) records: u64,
    pub(crate) first_lsn: Lsn,
    pub(crate) last_lsn: Lsn,
    pub(crate) used_bytes: u64,
}

/// The run's file beside its first segment.
fn run_path(first: &Path) -> PathBuf {
    let mut name = first.as_os_str().to_owned();
    name.push(".run");
    PathBuf::from(name)
}

/// The run stored beside `first`, if a valid file holds one.
pub(crate) fn load_run(first: &Path) -> Option<Run> {
    decode_run(&std::fs::read(run_path(first)).ok()?)
}

/// Store `run` beside its first segment (best effort).
pub(crate) fn store_run(first: &Path, run: &Run) {
    store_file(&run_path(first), &encode_run(run), first);
}

/// The run file's bytes: magic, version, the number of segments, per
/// segment its base LSN, creation time, length, records, first and last
/// LSN and bytes used; the run's last LSN and record count; its figures;
/// its tallies; a CRC-32 of everything before it.
pub(crate) fn encode_run(run: &Run) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&RUN_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(run.segments.len() as u32).to_le_bytes());
    for s in &run.segments {
        for v in [
            s.key.base_lsn,
            s.key.created_us,
            s.key.len,
            s.records,
            s.first_lsn,
            s.last_lsn,
            s.used_bytes,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&run.last_lsn.to_le_bytes());
    out.extend_from_slice(&run.records.to_le_bytes());
    put_figures(&mut out, &run.figures);
    put_tallies(&mut out, &run.tallies);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parse a run file; `None` if it is not a valid one. Never panics.
pub(crate) fn decode_run(bytes: &[u8]) -> Option<Run> {
    let mut c = Cursor::open(bytes, &RUN_MAGIC)?;
    let n = c.u32()?;
    let mut segments = Vec::new();
    for _ in 0..n {
        let key = Key {
            base_lsn: c.u64()?,
            created_us: c.u64()?,
            len: c.u64()?,
            sealed: true,
        };
        segments.push(RunSegment {
            key,
            records: c.u64()?,
            first_lsn: c.u64()?,
            last_lsn: c.u64()?,
            used_bytes: c.u64()?,
        });
    }
    let (last_lsn, records) = (c.u64()?, c.u64()?);
    let figures = c.figures()?;
    let tallies = c.tallies()?;
    c.0.is_empty().then_some(Run {
        segments,
        last_lsn,
        records,
        figures,
        tallies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summaries {
        Summaries {
            key: Key {
                base_lsn: 1,
                created_us: 2,
                len: 4096,
                sealed: false,
            },
            last_lsn: 7,
            last_offset: 300,
            last_crc: 0xdead_beef,
            records: 7,
            figures: Figures {
                used_bytes: 500,
                min_timestamp_us: 10,
                max_timestamp_us: 70,
                kinds: (0..=logbook_bus::KINDS.len() as u64)
                    .map(|i| (i, i * 100))
                    .collect(),
            },
            tallies: vec![Tally {
                session: Uuid::from_u128(0x0102),
                status: Some(SessionStatus::Failed("x".into())),
                span: Span {
                    first_lsn: 1,
                    last_lsn: 7,
                    first_timestamp_us: 10,
                    last_timestamp_us: 70,
                },
                events: 7,
                durable_events: 6,
                skipped_records: 0,
                tokens: 5,
                legacy_tokens: 0,
                model: Some("m".into()),
                cwd: None,
                started_title: None,
                message_title: Some("hi".into()),
                resumptions: 1,
                forked_from: Some((Uuid::from_u128(0x0304), 9)),
                tombstones: 2,
                began: true,
                marked: false,
            }],
        }
    }

    /// The layout `docs/format.md` describes, byte for byte.
    #[test]
    fn golden_bytes() {
        let bytes = encode(&sample());
        let n = logbook_bus::KINDS.len() as u64 + 1;
        let kinds_hex: String = std::iter::once(hex_le(n as u32))
            .chain((0..n).map(|i| format!("{}{}", hex_u64(i), hex_u64(i * 100))))
            .collect();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expected = [
            "894c4253554d0d0a",                 // magic
            "0300",                             // version 3
            "0100000000000000",                 // base LSN
            "0200000000000000",                 // created_us
            "0010000000000000",                 // file length
            "0700000000000000",                 // last LSN
            "2c01000000000000",                 // last offset
            "0700000000000000",                 // records
            "efbeadde",                         // last CRC
            "00",                               // sealed: no (the front of a tail)
            "f401000000000000",                 // bytes used
            "0a00000000000000",                 // earliest time
            "4600000000000000",                 // latest time
            &kinds_hex,                         // kinds: count, then (records, bytes) each
            "01000000",                         // sessions
            "00000000000000000000000000000102", // session id
            "03",                               // failed
            "0100000078",                       // "x"
            "0100000000000000",                 // first LSN
            "0700000000000000",                 // last LSN
            "0a00000000000000",                 // first time
            "4600000000000000",                 // last time
            "0700000000000000",                 // events
            "0600000000000000",                 // durable events
            "0000000000000000",                 // skipped
            "0500000000000000",                 // tokens
            "0000000000000000",                 // legacy tokens
            "0100000000000000",                 // resumptions
            "0200000000000000",                 // tombstones
            "010000006d",                       // model "m"
            "ffffffff",                         // cwd: none
            "ffffffff",                         // started title: none
            "020000006869",                     // message title "hi"
            "01",                               // a fork
            "00000000000000000000000000000304", // of this session
            "0900000000000000",                 // at this LSN
            "01",                               // began with a beginning
        ]
        .concat();
        let crc = crc32fast::hash(&bytes[..bytes.len() - 4]);
        assert_eq!(hex, format!("{expected}{}", hex_le(crc)));
        assert_eq!(decode(&bytes), Some(sample()));
    }

    fn hex_u64(v: u64) -> String {
        v.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hex_le(v: u32) -> String {
        v.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn run_sample() -> Run {
        let s = sample();
        Run {
            segments: vec![RunSegment {
                key: Key {
                    sealed: true,
                    ..s.key
                },
                records: 7,
                first_lsn: 1,
                last_lsn: 7,
                used_bytes: 500,
            }],
            last_lsn: 7,
            records: 7,
            figures: s.figures,
            tallies: s.tallies,
        }
    }

    /// The run file's layout (`docs/format.md`): its own head, then the
    /// figures and tallies laid out as in a segment's summaries.
    #[test]
    fn run_golden_bytes() {
        let run = run_sample();
        let bytes = encode_run(&run);
        let head: String = [
            "894c4252554e0d0a", // magic
            "0300",             // version 3
            "01000000",         // segments
            "0100000000000000", // base LSN
            "0200000000000000", // created_us
            "0010000000000000", // length
            "0700000000000000", // records
            "0100000000000000", // first LSN
            "0700000000000000", // last LSN
            "f401000000000000", // bytes used
            "0700000000000000", // the run's last LSN
            "0700000000000000", // its records
        ]
        .concat();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex[..head.len()], head);
        // The rest: figures and tallies exactly as a segment's file has them.
        let one = encode(&sample());
        let shared = &one[8 + 2 + 6 * 8 + 4 + 1..one.len() - 4];
        assert_eq!(&bytes[head.len() / 2..bytes.len() - 4], shared);
        assert_eq!(decode_run(&bytes), Some(run));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert_eq!(decode_run(&b), None, "byte {i}");
            assert_eq!(decode_run(&bytes[..i]), None, "cut at {i}");
        }
        assert_eq!(decode(&bytes), None, "not a segment's summaries");
        assert_eq!(decode_run(&one), None, "not a run");
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert_eq!(decode(&b), None, "byte {i}");
            assert_eq!(decode(&bytes[..i]), None, "cut at {i}");
        }
    }
}
