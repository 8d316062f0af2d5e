//! [`Reader`]: iterate records from any LSN across segments, verifying
//! every CRC and LSN, on a live log or a copy, without the writer lock.
//!
//! Sealed segments are memory-mapped; the tail segment (which a live writer
//! may be appending to) is read with `pread` in chunks. At the tail, a
//! reader stops cleanly at the last complete record; call
//! [`Reader::next_ref`] again later to follow new records (it also picks up
//! segments created since).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::error::WalError;
use crate::format::{
    FrameError, FrameFields, FrameHeader, Lsn, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    WatermarkState,
};
use crate::fs::{Fs, OpenMode, StdFs};
use crate::scan::{Problem, find_next_valid};
use crate::segment::{self, SegmentEntry};

mod ahead;
mod cursor;
mod starts;

pub use starts::SessionStarts;

/// A tail's index is stored again by a reader once it covers this many
/// more bytes (or a quarter of the file, if less) than the last one, at
/// most; see [`tail_index_step`].
const TAIL_INDEX_STEP: u64 = 256 << 10;

/// A tail's index is stored again by a reader once it covers this many
/// more bytes than the last one, at least.
const MIN_TAIL_INDEX_STEP: u64 = 16 << 10;

/// How many more bytes than the last stored index a reader's index of a
/// tail (of `len` bytes, records up to `covered`) must cover to be stored
/// again: a sixteenth of what it covers, from [`MIN_TAIL_INDEX_STEP`] to
/// [`TAIL_INDEX_STEP`] (or a quarter of the file, if less). A small tail
/// is indexed in small steps, so a one-session read after it scans little
/// (a read of a session's latest records, `Reader::session_starts`, is
/// then O(those records)); a long one in larger steps, so rewriting its
/// whole index costs a few times the bytes it newly covers at most.
fn tail_index_step(covered: u64, len: u64) -> u64 {
    (covered / 16)
        .clamp(MIN_TAIL_INDEX_STEP, TAIL_INDEX_STEP)
        .min(len / 4)
}

use cursor::{Current, Jumps, Peek};

/// One record, borrowed from the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// When it was appended, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Every LSN below this was durable before this record was written.
    pub sync_mark: Lsn,
    /// The session it belongs to.
    pub session: Uuid,
    /// The payload (an encoded `SessionEvent` for codec 1).
    pub payload: &'a [u8],
    /// How the payload is encoded: the codec id in its segment's header.
    pub codec_id: u16,
    /// The segment file it is in.
    pub segment: &'a Path,
    /// Its byte offset in that segment.
    pub offset: u64,
    /// The CRC stored in its frame (over the bytes on disk: for an
    /// encrypted record, the sealed payload).
    pub frame_crc: u32,
    /// `Some(key id)` if the payload is still sealed: the record is in an
    /// encrypted segment and the reader has no key with that id
    /// ([`Reader::with_keys`]). `None` for a record in the clear or
    /// decrypted.
    pub key_id: Option<u32>,
}

impl RecordRef<'_> {
    /// The CRC stored in this record's frame: the CRC-32 of its LSN, sync
    /// mark, timestamp, session and payload as stored (`docs/format.md`).
    /// The reader returned the record because that CRC checked out.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::{FrameFields, Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// wal.append_raw(uuid::Uuid::nil(), b"hello")?;
    /// let mut reader = Reader::open(dir.path())?;
    /// let record = reader.next_ref().unwrap()?;
    /// let bytes = std::fs::read(record.segment)?;
    /// let stored = FrameFields::parse(&bytes[record.offset as usize..]).unwrap().crc;
    /// assert_eq!(record.crc(), stored);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn crc(&self) -> u32 {
        self.frame_crc
    }
}

/// Where one record lies, and what identifies it there: a reader can
/// later go straight past it ([`Reader::resume_after`]) if the log still
/// holds that very record. Taken from [`RecordRef::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    /// The base LSN of its segment (the segment's name).
    pub segment_base: Lsn,
    /// Its byte offset in that segment.
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// The CRC stored in its frame ([`RecordRef::crc`]).
    pub crc: u32,
}

impl RecordRef<'_> {
    /// Where this record lies: its segment, offset, LSN and CRC. Computes
    /// the CRC ([`RecordRef::crc`]); the segment's base LSN is read from
    /// its file name.
    #[must_use]
    pub fn place(&self) -> Place {
        let segment_base = self
            .segment
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(crate::format::parse_segment_file_name)
            .unwrap_or(0);
        Place {
            segment_base,
            offset: self.offset,
            lsn: self.lsn,
            crc: self.crc(),
        }
    }
}

/// One record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's LSN.
    pub lsn: Lsn,
    /// When it was appended, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Every LSN below this was durable before this record was written.
    pub sync_mark: Lsn,
    /// The session it belongs to.
    pub session: Uuid,
    /// The payload.
    pub payload: Vec<u8>,
    /// How the payload is encoded: the codec id in its segment's header.
    pub codec_id: u16,
    /// The segment file it is in.
    pub segment: PathBuf,
    /// Its byte offset in that segment.
    pub offset: u64,
}

impl RecordRef<'_> {
    /// An owned copy.
    #[must_use]
    pub fn to_owned_record(&self) -> RawRecord {
        RawRecord {
            lsn: self.lsn,
            timestamp_us: self.timestamp_us,
            sync_mark: self.sync_mark,
            session: self.session,
            payload: self.payload.to_vec(),
            codec_id: self.codec_id,
            segment: self.segment.to_path_buf(),
            offset: self.offset,
        }
    }
}

/// Damage at the end of the tail segment: a write in progress, or the torn
/// tail of a crashed writer that the next `open` will cut.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TailDamage {
    /// The tail segment.
    pub path: PathBuf,
    /// Offset of the first incomplete or invalid frame.
    pub offset: u64,
    /// The LSN due there.
    pub lsn: Lsn,
    /// What is there.
    pub reason: String,
}

/// Reads records in LSN order.
///
/// Sealed segments are memory-mapped; the tail segment (which a live writer
/// may be appending to) is read with `pread` in chunks. At the tail, a
/// reader stops cleanly at the last complete record; call
/// [`Reader::next_ref`] again later to follow new records (it also picks up
/// segments created since).
///
/// On the tail segment a record is returned only once it is known durable:
/// below the durable watermark the writer publishes in `LOCK`, or vouched
/// for by a later record's sync mark (`docs/format.md`). A reader never
/// fsyncs anything: the unvouched tail of a writer that crashed is returned
/// once the next [`Wal::open`](crate::Wal::open) has recovered it, so what a
/// reader returns is never more than what recovery keeps.
///
/// After yielding an error, iteration resumes at the next valid record, so
/// a tool can report every problem in one pass; stop at the first error for
/// strict behaviour.
///
/// # Examples
///
/// ```
/// use logbook_wal::{Reader, Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// for i in 0..3u8 {
///     wal.append_raw(uuid::Uuid::nil(), &[i + 1])?;
/// }
/// let mut reader = Reader::open(dir.path())?.from_lsn(2);
/// let lsns: Vec<u64> = reader.by_ref().map(|r| r.map(|r| r.lsn)).collect::<Result<_, _>>()?;
/// assert_eq!(lsns, [2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Reader {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segments: Vec<SegmentEntry>,
    /// Index in `segments` of the segment to open next (or open now).
    index: usize,
    current: Option<Current>,
    from_lsn: Lsn,
    /// The LSN the next segment must start with, once known.
    continues_at: Option<Lsn>,
    /// After an error: resynchronise before the next step.
    resync: bool,
    tail_damage: Option<TailDamage>,
    /// Every LSN below this is known durable (see [`Reader::durable_bound`]).
    vouched: Lsn,
    /// No watermark to respect: return every complete record.
    unbounded: bool,
    /// The (offset, LSN) of damage seen on the tail in bytes read after the
    /// latest evidence of durability: the next look at it is final.
    confirmed: Option<(usize, Lsn)>,
    /// Only this session's records (see [`Reader::session`]).
    only: Option<Uuid>,
    /// The index of the sealed segment being scanned whole for `only`,
    /// built on the way (stored at its clean end; dropped at any damage).
    building: Option<crate::index::Builder>,
    /// On the tail: `building` goes on from the index that covered the
    /// segment up to this offset (`None`: it covers it from its start).
    building_on: Option<u64>,
    /// On the tail: how far the index stored last (by anyone) covers it.
    tail_indexed: u64,
    /// Build indexes even without `only` (see [`Reader::indexing`]).
    index_all: bool,
    /// Only the segment with this base LSN (see
    /// [`Reader::open_segment_file`]).
    one_segment: Option<Lsn>,
    /// Keys to decrypt encrypted segments with (see [`Reader::with_keys`]).
    keys: Option<Arc<crate::KeyRing>>,
    /// The log's id (bound into every sealed payload), once needed.
    log: Option<Uuid>,
    /// The last decrypted payload.
    plain: Vec<u8>,
    /// Opens the records of the key last used.
    opener: Option<crate::crypto::Opener>,
    /// Opens records ahead on a second thread, on long runs.
    ahead: ahead::OpenAhead,
    /// With keys: what the log's chain says (`docs/security.md`), found on
    /// first need.
    chain: Option<ChainView>,
    /// The last record decrypted and its tag: the chain value before the
    /// next one.
    last_tag: Option<(Lsn, crate::crypto::Chain)>,
    /// Heads looked for ([`Reader::watch_head`]) and what was found.
    watched: Vec<(crate::ChainHead, crate::HeadCheck)>,
    /// A problem found on the way (the head in `LOCK` does not
    /// authenticate), returned by the next call of `next_ref`.
    pending: Option<WalError>,
    /// Redacted placeholders passed that no tombstone read since explains
    /// (session, LSN, segment, offset): each is an error at the end of the
    /// read (`docs/format.md`, "Redacted placeholders").
    redactions: Vec<(Uuid, Lsn, PathBuf, u64)>,
    /// Placeholders passed in all.
    redacted: u64,
    /// The LSNs of placeholders passed since the last
    /// [`Reader::take_redacted`] (when asked for: [`Reader::noting_redacted`]).
    noted_redacted: Option<Vec<Placeholder>>,
}

/// A redacted placeholder a reader passed ([`Reader::noting_redacted`],
/// [`Reader::take_placeholders`]): where it is, and what its clear header
/// says (nothing authenticates its session).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placeholder {
    /// Its LSN.
    pub lsn: Lsn,
    /// The session its clear header names.
    pub session: Uuid,
    /// Its segment.
    pub segment: PathBuf,
    /// Its offset in the segment.
    pub offset: u64,
    /// Whether its segment is encrypted (then only a reader with the key
    /// reads the tombstones that must explain it).
    pub sealed: bool,
}

/// A tombstone's LSN and the inclusive LSN ranges it lists.
type Listing = (Lsn, Vec<(u64, u64)>);

/// The tombstones of a log (`session_deleted` records, codec 1): what
/// explains a redacted placeholder (`docs/format.md`, "Redacted
/// placeholders"). Read by [`Tombstones::read`].
#[derive(Debug, Clone, Default)]
pub struct Tombstones {
    /// Per session, each tombstone's LSN and the ranges it lists.
    by_session: std::collections::HashMap<Uuid, Vec<Listing>>,
}

impl Tombstones {
    /// The tombstones of the log in `dir` that a reader with `keys` reads
    /// (an encrypted log's tombstones are sealed: without its keys, none
    /// of them). Records that cannot be read are passed over (a
    /// placeholder they would explain then stays unexplained).
    ///
    /// # Errors
    ///
    /// The error of opening a reader of `dir`.
    pub fn read(dir: &Path, keys: Option<Arc<crate::KeyRing>>) -> Result<Tombstones, WalError> {
        let reader = Reader::open(dir)?;
        let mut reader = match keys {
            Some(keys) => reader.with_keys(keys),
            None => reader.without_keys(),
        };
        let mut out = Tombstones::default();
        while let Some(record) = reader.next_ref() {
            let Ok(record) = record else {
                continue;
            };
            if record.key_id.is_some() || record.codec_id != logbook_bus::codec::CODEC_ID {
                continue;
            }
            if let Some(ranges) = crate::compact::listed_ranges(record.payload) {
                out.by_session
                    .entry(record.session)
                    .or_default()
                    .push((record.lsn, ranges));
            }
        }
        Ok(out)
    }

    /// Whether a tombstone of `session` after `lsn` lists it: the
    /// placeholder at `lsn` naming `session` is one compaction left.
    #[must_use]
    pub fn explain(&self, session: Uuid, lsn: Lsn) -> bool {
        self.by_session.get(&session).is_some_and(|t| {
            t.iter()
                .any(|(at, ranges)| lsn < *at && crate::compact::is_listed(ranges, lsn))
        })
    }
}

/// A record [`Reader::next_checked`] validated: where it is, and whether
/// its payload was opened into the reader's `plain` buffer.
#[derive(Debug, Clone, Copy)]
struct Checked {
    header: FrameHeader,
    at: usize,
    len: usize,
    frame_crc: u32,
    decrypted: bool,
    /// Decrypted by opening ahead: the plaintext is
    /// `ahead::OpenAhead::plain`, not the reader's `plain` buffer.
    opened_ahead: bool,
    still_sealed: Option<u32>,
    /// A redacted placeholder: passed over, never returned.
    redacted: bool,
}

impl Checked {
    /// The record's payload: opened ahead (`ahead`), opened by the reader
    /// (`plain`), or as stored in `cur`'s segment.
    fn payload<'a>(
        &self,
        cur: &'a Current,
        plain: &'a [u8],
        ahead: &'a ahead::OpenAhead,
    ) -> &'a [u8] {
        if self.opened_ahead {
            ahead.plain()
        } else if self.decrypted {
            plain
        } else {
            let (bytes, base) = cur.bytes();
            bytes
                .get(self.at - base + RECORD_HEADER_LEN..self.at - base + self.len)
                .unwrap_or_default()
        }
    }
}

/// Drop from `pending` the placeholders the record with `header` and
/// `payload` explains: a tombstone (`session_deleted`, codec 1) of the
/// same session, after them, whose ranges list their LSNs.
fn explain_redactions(
    pending: &mut Vec<(Uuid, Lsn, PathBuf, u64)>,
    header: &FrameHeader,
    codec_id: u16,
    payload: &[u8],
) {
    if codec_id != logbook_bus::codec::CODEC_ID {
        return;
    }
    let Some(ranges) = crate::compact::listed_ranges(payload) else {
        return;
    };
    pending.retain(|(session, lsn, _, _)| {
        !(*session == header.session
            && *lsn < header.lsn
            && crate::compact::is_listed(&ranges, *lsn))
    });
}

/// What a reader with keys knows of the log's chain.
#[derive(Debug, Clone, Copy)]
struct ChainView {
    /// Every record from this LSN on must be encrypted (`Lsn::MAX`: none
    /// found to be).
    enc_start: Lsn,
    /// The authenticated durable head in `LOCK`, if any.
    head: Option<crate::format::Head>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader of the log in `dir`, from its first record.
    ///
    /// # Errors
    ///
    /// [`WalError::NotFound`], [`WalError::NotADirectory`],
    /// [`WalError::NoLog`] (no segment in the directory), or the I/O error
    /// of listing it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Reader, WalError> {
        Reader::open_with_fs(Arc::new(StdFs), dir)
    }

    /// [`Reader::open`] on another file system.
    ///
    /// # Errors
    ///
    /// As [`Reader::open`].
    pub fn open_with_fs(fs: Arc<dyn Fs>, dir: impl AsRef<Path>) -> Result<Reader, WalError> {
        let dir = dir.as_ref().to_path_buf();
        let listing = segment::list(&*fs, &dir)?;
        if listing.segments.is_empty() {
            return Err(WalError::NoLog { dir });
        }
        Ok(Reader {
            fs,
            dir,
            segments: listing.segments,
            index: 0,
            current: None,
            from_lsn: 0,
            continues_at: None,
            resync: false,
            tail_damage: None,
            vouched: 0,
            unbounded: false,
            confirmed: None,
            only: None,
            building: None,
            building_on: None,
            tail_indexed: 0,
            index_all: false,
            one_segment: None,
            keys: crate::crypto::default_keys(),
            log: None,
            plain: Vec::new(),
            opener: None,
            ahead: ahead::OpenAhead::default(),
            chain: None,
            last_tag: None,
            watched: Vec::new(),
            pending: None,
            redactions: Vec::new(),
            redacted: 0,
            noted_redacted: None,
        })
    }

    /// A reader of one segment file of a log: its records and the problems
    /// in it, exactly as a reader of the whole log (of the directory that
    /// holds the file) sees them in that segment, and nothing of the other
    /// segments. The file keeps its name (the base LSN is in it); whether
    /// it is the log's tail (whose last records are returned once known
    /// durable) is judged by the other segments of its directory. The LSN
    /// continuity with the segment before it is not checked.
    ///
    /// # Errors
    ///
    /// [`WalError::NotFound`] if the file does not exist,
    /// [`WalError::BadSegment`] if it is not a file or its name is not a
    /// segment file name (20 digits and `.wal`), or the I/O error of
    /// listing its directory.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::{Reader, Wal, WalOptions, segment_header};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let options = WalOptions { segment_size: 4096, ..WalOptions::default() };
    /// let wal = Wal::open(dir.path(), options)?;
    /// for _ in 0..100 {
    ///     wal.append_raw(uuid::Uuid::nil(), &[7; 64])?;
    /// }
    /// let second = Reader::open(dir.path())?.segments()[1].clone();
    /// let mut reader = Reader::open_segment_file(&second)?;
    /// let lsns: Vec<u64> = reader.by_ref().map(|r| r.map(|r| r.lsn)).collect::<Result<_, _>>()?;
    /// // The second segment's records, from its base LSN on, and no others.
    /// assert_eq!(lsns[0], segment_header(&second)?.base_lsn);
    /// assert!(lsns.len() < 100 && lsns.windows(2).all(|w| w[1] == w[0] + 1));
    /// assert_eq!(reader.segments(), [second]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_segment_file(path: impl AsRef<Path>) -> Result<Reader, WalError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(WalError::NotFound {
                path: path.to_path_buf(),
            });
        }
        if !path.is_file() {
            return Err(WalError::BadSegment {
                path: path.to_path_buf(),
                reason: "not a file: a segment file is needed".to_owned(),
            });
        }
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(crate::format::parse_segment_file_name)
            .ok_or_else(|| WalError::BadSegment {
                path: path.to_path_buf(),
                reason: "not a segment file name (20 digits and .wal)".to_owned(),
            })?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let mut reader = Reader::open(dir)?;
        reader.one_segment = Some(base);
        reader.index = reader
            .segments
            .iter()
            .position(|s| s.base_lsn == base)
            .unwrap_or(reader.segments.len());
        Ok(reader)
    }

    /// Decrypt the records of encrypted segments with the keys of `ring`
    /// (`docs/format.md`, "Encrypted segments"). Without it, or without
    /// the key a segment names, its records are returned still sealed
    /// ([`RecordRef::key_id`]), their frames checked as always; decoding
    /// one is then [`WalError::Encrypted`]. A record whose payload does not
    /// decrypt (tampered, moved, another key with the same id) is
    /// [`WalError::Decrypt`], a located problem like corruption.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use logbook_wal::{Key, KeyRing, Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let ring = Arc::new(KeyRing::new(Key::new([42; 32])));
    /// let wal = Wal::open(dir.path(), WalOptions { encryption: Some(ring.clone()), ..WalOptions::default() })?;
    /// wal.append_raw(uuid::Uuid::nil(), b"secret")?;
    ///
    /// let mut reader = Reader::open(dir.path())?.with_keys(ring);
    /// assert_eq!(reader.next_ref().unwrap()?.payload, b"secret");
    /// let mut blind = Reader::open(dir.path())?;
    /// let sealed = blind.next_ref().unwrap()?;
    /// assert_ne!(sealed.payload, b"secret");
    /// assert!(sealed.key_id.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_keys(mut self, ring: Arc<crate::KeyRing>) -> Reader {
        self.keys = Some(ring);
        self
    }

    /// Never decrypt: return every record as stored, sealed payloads
    /// sealed ([`RecordRef::key_id`]), even if the process installed
    /// default keys ([`install_default_keys`](crate::install_default_keys)).
    /// For copies of the log that must stay encrypted (shipping).
    #[must_use]
    pub fn without_keys(mut self) -> Reader {
        self.keys = None;
        self
    }

    /// Start at `lsn`: segments that end before it are not even opened.
    #[must_use]
    pub fn from_lsn(mut self, lsn: Lsn) -> Reader {
        self.from_lsn = lsn;
        if self.current.is_none() {
            // The last segment whose base is at or below `lsn`; a reader of
            // one segment stays on it (records below `lsn` are passed over),
            // never placed on an earlier one it would not read.
            let i = self.segments.partition_point(|s| s.base_lsn <= lsn);
            self.index = i.saturating_sub(1);
            if let Some(base) = self.one_segment {
                if let Some(at) = self.segments.iter().position(|s| s.base_lsn == base) {
                    self.index = self.index.max(at);
                }
            }
        }
        self
    }

    /// Go straight past the record at `place` if the log still holds that
    /// very record there (same segment, offset, LSN and CRC, and it is
    /// complete): the next record returned is the one after it, and the
    /// segment's bytes before it are not read. Returns `false`, leaving
    /// the reader as it was, if it does not (the segment is gone, or was
    /// cut back and written again since `place` was taken, or the bytes
    /// there are not that record).
    ///
    /// Call it on a reader that has not returned anything yet. Records
    /// after `place` are checked and bounded by durability as always.
    ///
    /// # Errors
    ///
    /// The I/O error of opening or reading the segment. A segment that
    /// cannot be read as one (a bad header) answers `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::{Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// for i in 1..=3u8 {
    ///     wal.append_raw(uuid::Uuid::nil(), &[i])?;
    /// }
    /// let place = Reader::open(dir.path())?.next_ref().unwrap()?.place();
    /// let mut reader = Reader::open(dir.path())?;
    /// assert!(reader.resume_after(place)?);
    /// let lsns: Vec<u64> = reader.map(|r| r.map(|r| r.lsn)).collect::<Result<_, _>>()?;
    /// assert_eq!(lsns, [2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resume_after(&mut self, place: Place) -> Result<bool, WalError> {
        let Some(index) = self
            .segments
            .iter()
            .position(|s| s.base_lsn == place.segment_base)
        else {
            return Ok(false);
        };
        let Ok(offset) = usize::try_from(place.offset) else {
            return Ok(false);
        };
        let saved = (self.index, self.current.take(), self.continues_at);
        self.index = index;
        match self.open_segment(index) {
            Ok(()) => {}
            Err(e) if e.is_corruption() => {
                (self.index, self.current, self.continues_at) = saved;
                return Ok(false);
            }
            Err(e) => {
                (self.index, self.current, self.continues_at) = saved;
                return Err(e);
            }
        }
        let found = match self.current.as_mut() {
            Some(cur) if offset >= SEGMENT_HEADER_LEN => {
                cur.offset = offset;
                cur.expected = place.lsn;
                cur.jumps = None;
                cur.invalidate();
                match cur.peek() {
                    Ok(Peek::Record { len, header }) => {
                        let (bytes, base) = cur.bytes();
                        let crc = bytes
                            .get(offset - base..)
                            .and_then(FrameFields::parse)
                            .map(|f| f.crc);
                        (header.lsn == place.lsn && crc == Some(place.crc)).then_some(len)
                    }
                    Ok(_) => None,
                    Err(e) => {
                        (self.index, self.current, self.continues_at) = saved;
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let (Some(len), Some(cur)) = (found, self.current.as_mut()) else {
            (self.index, self.current, self.continues_at) = saved;
            return Ok(false);
        };
        cur.offset = offset + len;
        cur.expected = place.lsn + 1;
        cur.positioned = false;
        cur.invalidate();
        self.from_lsn = self.from_lsn.max(place.lsn + 1);
        self.building = None;
        Ok(true)
    }

    /// Only the records of `session`, read through each segment's session
    /// index where there is a usable one (`docs/format.md`, "The session
    /// index"): its other records are not even read. A segment without one
    /// is scanned, and if it is sealed and reads whole without damage, its
    /// index is built on the way and stored (best effort). Every record
    /// returned is checked as always (CRC, and the LSN the index promised),
    /// so the answer is the same as filtering a full scan.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::{Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    /// for s in [a, b, a] {
    ///     wal.append_raw(s, b"x")?;
    /// }
    /// let lsns: Vec<u64> = Reader::open(dir.path())?
    ///     .session(a)
    ///     .map(|r| r.map(|r| r.lsn))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(lsns, [1, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn session(mut self, session: Uuid) -> Reader {
        self.only = Some(session);
        self
    }

    /// The segments found so far, in order.
    #[must_use]
    pub fn segments(&self) -> Vec<PathBuf> {
        self.segments
            .iter()
            .filter(|s| self.one_segment.is_none_or(|base| base == s.base_lsn))
            .map(|s| s.path.clone())
            .collect()
    }

    /// The segments found so far, with their base LSNs.
    pub(crate) fn segment_entries(&self) -> &[SegmentEntry] {
        &self.segments
    }

    /// The file system it reads.
    pub(crate) fn fs(&self) -> &dyn Fs {
        &*self.fs
    }

    /// The file system it reads, shared.
    pub(crate) fn fs_arc(&self) -> Arc<dyn Fs> {
        self.fs.clone()
    }

    /// Build the session index of each sealed segment read whole that has
    /// no usable one (as [`Reader::session`] does), whatever is returned.
    pub(crate) fn indexing(mut self) -> Reader {
        self.index_all = true;
        self
    }

    /// With keys: the LSN from which the log is encrypted (from its
    /// authenticated seal blocks and head), if it is: no record from it on
    /// may be in the clear. What a shortcut past the records (summaries,
    /// `logbook-replay`) must not stand in for (`docs/security.md`).
    /// `None` without keys or on a log with no encrypted segment.
    ///
    /// # Errors
    ///
    /// [`WalError::Forged`] if `LOCK` holds a head that does not
    /// authenticate under the reader's keys.
    pub fn encrypted_from(&mut self) -> Result<Option<Lsn>, WalError> {
        let view = self.chain_view()?;
        Ok((view.enc_start != Lsn::MAX).then_some(view.enc_start))
    }

    /// With keys, on an encrypted log: the last record this reader
    /// opened and its tag, the chain value every later record depends on
    /// (`docs/security.md`). After a whole-log read without problems, the
    /// log's **head**: a value an operator can record elsewhere and
    /// compare later (`logbook verify --expect-head`).
    #[must_use]
    pub fn chain_head(&self) -> Option<(Lsn, crate::crypto::Chain)> {
        self.last_tag
    }

    /// Look for `head` (a record's LSN and tag, recorded earlier) as this
    /// reader goes: when it returns the record at that LSN, note whether
    /// it carries that tag ([`Reader::head_check`]). After a whole-log read
    /// with keys, [`HeadCheck::Holds`](crate::HeadCheck::Holds) means the
    /// log's chain holds the head: it is the log whose head was recorded,
    /// grown or not. Call it more than once to look for several heads.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use logbook_wal::{ChainHead, HeadCheck, Key, KeyRing, Reader, Wal, WalOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let ring = Arc::new(KeyRing::new(Key::new([7; 32])));
    /// let wal = Wal::open(dir.path(), WalOptions { encryption: Some(ring.clone()), ..WalOptions::default() })?;
    /// wal.append_raw(uuid::Uuid::nil(), b"one")?;
    /// let mut reader = Reader::open(dir.path())?.with_keys(ring.clone());
    /// reader.by_ref().for_each(drop);
    /// let (lsn, tag) = reader.chain_head().unwrap();
    /// let head = ChainHead { lsn, tag };
    ///
    /// wal.append_raw(uuid::Uuid::nil(), b"two")?; // the log grows
    /// let mut reader = Reader::open(dir.path())?.with_keys(ring).watch_head(head);
    /// reader.by_ref().for_each(drop);
    /// assert!(matches!(reader.head_check(&head), Some(HeadCheck::Holds { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn watch_head(mut self, head: crate::ChainHead) -> Reader {
        self.watched.push((head, crate::HeadCheck::NotRead));
        self
    }

    /// What this reader found so far of a head given to
    /// [`Reader::watch_head`] (`None` for a head not given to it).
    #[must_use]
    pub fn head_check(&self, head: &crate::ChainHead) -> Option<&crate::HeadCheck> {
        self.watched.iter().find(|(h, _)| h == head).map(|(_, c)| c)
    }

    /// How many records this reader took opened by its second thread
    /// (records opened ahead, `reader/ahead.rs`): for tests.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    #[must_use]
    pub fn opened_ahead(&self) -> u64 {
        self.ahead.taken
    }

    /// This reader, never opening ahead (every record opened on the
    /// reading thread): what a reader with open-ahead is compared with,
    /// for tests.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    #[must_use]
    pub fn without_open_ahead(mut self) -> Reader {
        self.ahead.switch_off();
        self
    }

    /// Damage seen at the end of the tail segment by the last call that
    /// returned `None`, if any.
    #[must_use]
    pub fn tail_damage(&self) -> Option<&TailDamage> {
        self.tail_damage.as_ref()
    }

    /// The next record, borrowed; `None` at the current end of the log (call
    /// again later to follow a live writer).
    ///
    /// # Errors
    ///
    /// Corruption ([`WalError::Corrupt`], [`WalError::Sequence`],
    /// [`WalError::BadHeader`], [`WalError::BadSegment`],
    /// [`WalError::MidLogCorruption`]) naming the segment, offset and LSN;
    /// I/O errors naming the file.
    pub fn next_ref(&mut self) -> Option<Result<RecordRef<'_>, WalError>> {
        // With keys, every record of an encrypted segment the reader passes
        // is opened, also those of other sessions than the one asked for
        // (`Reader::session`): each is the chain value of the next, so a
        // stale or replaced record among them shows (`docs/security.md`).
        //
        // Every tombstone passed explains the placeholders held so far,
        // whatever session is asked for: a placeholder's session is its
        // clear header's, which nothing authenticates, so a one-session
        // read holds every placeholder it passes to the tombstones it
        // reads, as a whole-log read does.
        let checked = loop {
            match self.next_checked()? {
                Err(e) => return Some(Err(e)),
                Ok(c) if c.redacted => {}
                Ok(c) if self.only.is_some_and(|s| s != c.header.session) => {
                    if !self.redactions.is_empty() && c.still_sealed.is_none() {
                        self.explain_skipped(&c);
                    }
                }
                Ok(c) => break c,
            }
        };
        let cur = self.current.as_ref()?;
        let Checked {
            header,
            at,
            frame_crc,
            still_sealed,
            ..
        } = checked;
        let payload = checked.payload(cur, &self.plain, &self.ahead);
        if !self.redactions.is_empty() && still_sealed.is_none() {
            explain_redactions(&mut self.redactions, &header, cur.codec_id, payload);
        }
        Some(Ok(RecordRef {
            lsn: header.lsn,
            timestamp_us: header.timestamp_us,
            sync_mark: header.sync_mark,
            session: header.session,
            payload,
            codec_id: cur.codec_id,
            segment: &cur.entry.path,
            offset: at as u64,
            frame_crc,
            key_id: still_sealed,
        }))
    }

    /// Let the record `c` (of another session than the one asked for,
    /// passed over) explain the placeholders held so far.
    fn explain_skipped(&mut self, c: &Checked) {
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        let payload = c.payload(cur, &self.plain, &self.ahead);
        explain_redactions(&mut self.redactions, &c.header, cur.codec_id, payload);
    }

    /// The next record [`Reader::next_ref`] considers, checked (and, with
    /// its key, opened into `plain`), whatever its session.
    fn next_checked(&mut self) -> Option<Result<Checked, WalError>> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        let (header, len) = match self.advance() {
            Ok(Some(record)) => record,
            Ok(None) => {
                return self
                    .pending
                    .take()
                    .or_else(|| self.unexplained_redaction())
                    .or_else(|| self.cut_below_head())
                    .map(Err);
            }
            Err(e) => return Some(Err(e)),
        };
        // `advance` left `offset` on the record it validated: step past it,
        // then lend its bytes (checked once, not again).
        let cur = self.current.as_mut()?;
        let at = cur.offset;
        cur.offset += len;
        cur.expected += 1;
        cur.positioned = false;
        let key_id = cur.header.key_id;
        if self.keys.is_some() && key_id.is_none() {
            // A record in the clear where the log is encrypted: planted.
            let view = match self.chain_view() {
                Ok(view) => view,
                Err(e) => return Some(Err(e)),
            };
            if header.lsn >= view.enc_start {
                let cur = self.current.as_ref()?;
                return Some(Err(WalError::Forged {
                    path: cur.entry.path.clone(),
                    offset: at as u64,
                    lsn: header.lsn,
                    reason: format!(
                        "a record in the clear where the log is encrypted (from LSN {})",
                        view.enc_start
                    ),
                }));
            }
        }
        let cur = self.current.as_ref()?;
        let key = cur.key.as_ref();
        if key.is_some() && self.log.is_none() {
            self.log = cur.seal.map(|s| s.log_id);
        }
        let cur = self.current.as_ref()?;
        let (bytes, base) = cur.bytes();
        let frame = bytes.get(at - base..at - base + len).unwrap_or_default();
        let frame_crc = FrameFields::parse(frame).map_or(0, |f| f.crc);
        let stored = frame.get(RECORD_HEADER_LEN..).unwrap_or_default();
        if crate::format::is_redacted(frame) {
            // A placeholder compaction left for a deleted record: its tag
            // (encrypted) or one zero byte (clear). The chain goes on from
            // the tag; a tombstone read later must explain it.
            let encrypted = cur.header.key_id.is_some();
            let size_ok = if encrypted {
                stored.len() == crate::crypto::CHAIN_LEN
            } else {
                stored == crate::format::REDACTED_CLEAR_PAYLOAD
            };
            let path = cur.entry.path.clone();
            if !size_ok {
                return Some(Err(WalError::Forged {
                    path,
                    offset: at as u64,
                    lsn: header.lsn,
                    reason: "a redacted placeholder whose payload is not what compaction writes"
                        .to_owned(),
                }));
            }
            if key.is_some() {
                self.last_tag = crate::crypto::tag_of(stored).map(|tag| (header.lsn, tag));
                // Opening ahead goes on past it (`reader/ahead.rs`).
                self.ahead.passed(header.lsn, at, len);
            }
            self.redacted += 1;
            if let Some(noted) = self.noted_redacted.as_mut() {
                noted.push(Placeholder {
                    lsn: header.lsn,
                    session: header.session,
                    segment: path.clone(),
                    offset: at as u64,
                    sealed: encrypted,
                });
            }
            // Without the key of an encrypted segment, its tombstones
            // cannot be read: its placeholders are taken as its sealed
            // records are, unchecked. With it, every placeholder passed is
            // held to the tombstones read, whatever session its clear
            // (unauthenticated) header names: a reader with keys passes
            // every record of an encrypted segment, other sessions'
            // tombstones included (`advance`, no index), so a placeholder
            // planted in place of one of the session's records, naming
            // another session, is reported, never silently taken. A
            // one-session read of a clear segment sees only that
            // session's records (through its index), so only its
            // placeholders are held there (nothing authenticates a clear
            // log anyway: `docs/security.md`).
            let checkable = !encrypted || key.is_some();
            let sees_all = self.only.is_none() || (encrypted && self.keys.is_some());
            if checkable && (sees_all || self.only == Some(header.session)) {
                self.redactions
                    .push((header.session, header.lsn, path, at as u64));
            }
            return Some(Ok(Checked {
                header,
                at,
                len,
                frame_crc,
                decrypted: false,
                opened_ahead: false,
                still_sealed: None,
                redacted: true,
            }));
        }
        let mut opened_ahead = false;
        let (decrypted, still_sealed) = match (key, self.log) {
            (Some(key), Some(log)) => {
                let prev = match self.last_tag {
                    Some((lsn, tag)) if lsn + 1 == header.lsn => Ok(tag),
                    _ => cur.chain_before(at),
                };
                let prev = match prev {
                    Ok(prev) => prev,
                    Err(e) => return Some(Err(e)),
                };
                let ctx = crate::crypto::RecordContext::of(&log, &header, &prev);
                let due = ahead::Due {
                    segment: cur.entry.base_lsn,
                    at,
                    len,
                    ctx: &ctx,
                    sealed: stored,
                };
                let opener = match &mut self.opener {
                    Some(o) if o.key().same_key(key) => o,
                    slot => slot.insert(crate::crypto::Opener::new(key.clone())),
                };
                opened_ahead = self.ahead.take(&due);
                if !opened_ahead && !opener.open_into(&ctx, stored, &mut self.plain) {
                    return Some(Err(WalError::Decrypt {
                        path: cur.entry.path.clone(),
                        offset: at as u64,
                        lsn: header.lsn,
                        key_id: key.id(),
                    }));
                }
                let tag = crate::crypto::tag_of(stored).unwrap_or_default();
                self.ahead.after(&due, key, tag, bytes, base);
                self.last_tag = Some((header.lsn, tag));
                if let Some(head) = self.chain.and_then(|v| v.head) {
                    if head.lsn == header.lsn && head.tag != tag {
                        note_head(
                            &mut self.watched,
                            header.lsn,
                            &cur.entry.path,
                            at as u64,
                            Some(tag),
                            None,
                        );
                        return Some(Err(WalError::Forged {
                            path: cur.entry.path.clone(),
                            offset: at as u64,
                            lsn: header.lsn,
                            reason: "this is not the record the writer made durable at this LSN (the head in LOCK names another): replaced".to_owned(),
                        }));
                    }
                }
                (true, None)
            }
            _ => (false, key_id),
        };
        let opened = match still_sealed {
            None if key.is_some() => self.last_tag.map(|(_, tag)| tag),
            _ => None,
        };
        note_head(
            &mut self.watched,
            header.lsn,
            &cur.entry.path,
            at as u64,
            opened,
            still_sealed,
        );
        Some(Ok(Checked {
            header,
            at,
            len,
            frame_crc,
            decrypted,
            opened_ahead,
            still_sealed,
            redacted: false,
        }))
    }

    /// The first redacted placeholder passed that no tombstone read since
    /// explains, as the error it is (once: the list is cleared).
    fn unexplained_redaction(&mut self) -> Option<WalError> {
        let (session, lsn, path, offset) = self.redactions.first().cloned()?;
        let more = self.redactions.len() - 1;
        self.redactions.clear();
        Some(WalError::Forged {
            path,
            offset,
            lsn,
            reason: format!(
                "a redacted placeholder of session {session} that no tombstone later in the log lists (a record removed by someone other than compaction){}",
                if more > 0 {
                    format!("; {more} more")
                } else {
                    String::new()
                }
            ),
        })
    }

    /// Note the LSN of each redacted placeholder passed, for
    /// [`Reader::take_redacted`]: a reader that must account for every LSN
    /// (a shipper) learns which ones compaction erased.
    #[must_use]
    pub fn noting_redacted(mut self) -> Reader {
        self.noted_redacted = Some(Vec::new());
        self
    }

    /// The LSNs of the redacted placeholders passed since the last call
    /// (only with [`Reader::noting_redacted`]; empty otherwise).
    pub fn take_redacted(&mut self) -> Vec<Lsn> {
        self.take_placeholders()
            .into_iter()
            .map(|p| p.lsn)
            .collect()
    }

    /// The redacted placeholders passed since the last call (or
    /// [`Reader::take_redacted`]), with where they are and the session
    /// they name, for a reader that reads without keys to hold them to
    /// the log's [`Tombstones`] itself (only with
    /// [`Reader::noting_redacted`]; empty otherwise).
    pub fn take_placeholders(&mut self) -> Vec<Placeholder> {
        self.noted_redacted
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Redacted placeholders passed so far (records erased by compaction:
    /// never returned; each must be listed by a tombstone read later).
    #[must_use]
    pub fn redacted(&self) -> u64 {
        self.redacted
    }

    /// Move to the next record to return, leaving the current segment's
    /// `offset` on it; returns its validated header and frame length.
    /// `Ok(None)` at the current end of the log, or of what is known
    /// durable in it.
    ///
    /// On the tail segment a record is returned only once it is known
    /// durable (below the writer's watermark or vouched for by a later
    /// record's sync mark), and its bytes are always re-read after that
    /// evidence was obtained: bytes read before could belong to a write that
    /// the writer then cut back (a full disk) and rewrote. Damage is judged
    /// the same way, only from bytes read after the evidence (FAULTS.md: a
    /// concurrent `pwrite` is not atomic for a reader).
    fn advance(&mut self) -> Result<Option<(FrameHeader, usize)>, WalError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let is_tail = self.is_tail();
            let Some(cur) = self.current.as_mut() else {
                return Ok(None);
            };
            if self.resync {
                self.resync = false;
                self.confirmed = None;
                cur.ensure(usize::MAX)?;
                let (bytes, base) = cur.bytes();
                match find_next_valid(bytes, cur.offset - base, cur.expected.saturating_sub(1)) {
                    Some(found) => {
                        cur.offset = base + found.offset;
                        cur.expected = found.header.lsn;
                    }
                    None => {
                        self.finish_segment();
                        continue;
                    }
                }
            }
            if let Some(jumps) = cur.jumps.as_mut() {
                if !cur.positioned {
                    match jumps.places.next() {
                        Some((offset, lsn)) => {
                            cur.offset = offset as usize;
                            cur.expected = lsn;
                            cur.positioned = true;
                        }
                        None => {
                            // Past the index: scan the rest (a tail indexed
                            // at close may have grown since), and index it.
                            cur.offset = jumps.covered;
                            cur.expected = jumps.next_lsn;
                            cur.jumps = None;
                            if is_tail {
                                self.building = Some(crate::index::Builder::default());
                                self.building_on = Some(cur.offset as u64);
                                self.tail_indexed = cur.offset as u64;
                            }
                        }
                    }
                }
            }
            let jumping = cur.jumps.is_some();
            match cur.peek()? {
                Peek::Record { len, header } => {
                    let lsn = header.lsn;
                    if is_tail && !self.unbounded && lsn >= self.vouched {
                        if self.find_evidence(lsn)? {
                            continue;
                        }
                        // Perhaps sealed since (every record of a sealed
                        // segment is durable).
                        if self.refresh()? {
                            continue;
                        }
                        self.store_tail_index();
                        return Ok(None);
                    }
                    self.confirmed = None;
                    if let Some(building) = self.building.as_mut() {
                        // The CRC field, for the index to know its last
                        // record again (see `index::belongs`).
                        let (bytes, base) = cur.bytes();
                        let crc = bytes
                            .get(cur.offset - base..)
                            .and_then(FrameFields::parse)
                            .map_or(0, |f| f.crc);
                        building.add(
                            header.session,
                            cur.offset as u64,
                            lsn,
                            (cur.offset + len) as u64,
                            crc,
                        );
                    }
                    let opens_all = self.keys.is_some() && cur.key.is_some();
                    if lsn >= self.from_lsn
                        && (opens_all || self.only.is_none_or(|s| s == header.session))
                    {
                        return Ok(Some((header, len)));
                    }
                    cur.offset += len;
                    cur.expected += 1;
                    cur.positioned = false;
                }
                Peek::End if jumping => {
                    // The index promised a record where there is none.
                    let (path, offset, lsn) =
                        (cur.entry.path.clone(), cur.offset as u64, cur.expected);
                    cur.positioned = false;
                    return Err(damage(
                        Problem::Frame(FrameError::Length { len: 0 }),
                        path,
                        offset,
                        lsn,
                    ));
                }
                Peek::End => {
                    if !is_tail {
                        self.store_built_index();
                        self.finish_segment();
                    } else if !self.refresh()? {
                        self.store_tail_index();
                        return Ok(None);
                    }
                }
                Peek::Bad(problem) => {
                    let offset = cur.offset as u64;
                    let lsn = cur.expected;
                    let path = cur.entry.path.clone();
                    // A damaged segment gets no index built on the way.
                    self.building = None;
                    if jumping {
                        // Damage where the index points: report it, and go
                        // on to the next place (no resynchronising).
                        cur.positioned = false;
                        return Err(damage(problem, path, offset, lsn));
                    }
                    if is_tail {
                        // Judge only bytes read after the latest evidence.
                        if self.confirmed != Some((cur.offset, lsn)) {
                            cur.invalidate();
                            self.confirmed = Some((cur.offset, lsn));
                            self.reload_bound()?;
                            continue;
                        }
                        cur.ensure(usize::MAX)?;
                        let (bytes, base) = cur.bytes();
                        let survey =
                            crate::scan::survey_after_damage(bytes, cur.offset - base, lsn);
                        if lsn >= self.vouched {
                            if survey.vouching.is_some() {
                                // A later record proves `lsn` was durable:
                                // re-read it once more before calling it
                                // damaged.
                                self.vouched = lsn + 1;
                                self.confirmed = None;
                                continue;
                            }
                            // A write in progress, or a torn tail that the
                            // next `open` cuts.
                            self.confirmed = None;
                            if self.refresh()? {
                                continue;
                            }
                            self.tail_damage = Some(TailDamage {
                                path,
                                offset,
                                lsn,
                                reason: describe(problem),
                            });
                            return Ok(None);
                        }
                        self.confirmed = None;
                        self.resync = true;
                        if let Some(next) = survey.vouching {
                            return Err(WalError::MidLogCorruption {
                                path,
                                offset,
                                lsn,
                                next_offset: (next + base) as u64,
                                valid_after: survey.valid_frames,
                            });
                        }
                        return Err(damage(problem, path, offset, lsn));
                    }
                    self.resync = true;
                    return Err(damage(problem, path, offset, lsn));
                }
            }
        }
    }

    /// Look for evidence that `lsn` (a complete record on the tail) is
    /// durable: the watermark in `LOCK`, then the sync marks of the records
    /// after it. `Ok(true)` if found (the tail's bytes have been dropped, to
    /// be re-read).
    ///
    /// A reader never makes records durable itself (it never fsyncs): a
    /// crashed writer's tail that nothing vouches for is returned only once
    /// the next `open` has recovered it (and published its watermark), so
    /// what a reader returns is never more than what recovery keeps.
    fn find_evidence(&mut self, lsn: Lsn) -> Result<bool, WalError> {
        self.reload_bound()?;
        if self.unbounded || lsn < self.vouched {
            if let Some(cur) = self.current.as_mut() {
                cur.invalidate();
            }
            return Ok(true);
        }
        let Some(cur) = self.current.as_mut() else {
            return Ok(false);
        };
        let (bytes, base) = cur.bytes();
        let ahead = crate::scan::max_sync_mark(bytes, cur.offset - base, cur.expected);
        if ahead > lsn {
            self.vouched = self.vouched.max(ahead);
            cur.invalidate();
            return Ok(true);
        }
        Ok(false)
    }

    fn watermark(&self) -> Result<WatermarkState, WalError> {
        match segment::read_watermark(&*self.fs, &self.dir) {
            // Not allowed to read it: only the sync marks vouch.
            Err(WalError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Ok(WatermarkState::Invalid)
            }
            other => other,
        }
    }

    /// Read the writer's durable watermark from `LOCK`.
    fn reload_bound(&mut self) -> Result<(), WalError> {
        match self.watermark()? {
            WatermarkState::Absent => self.unbounded = true,
            WatermarkState::Invalid => self.unbounded = false,
            WatermarkState::Valid(w) => {
                self.unbounded = false;
                self.vouched = self.vouched.max(w.durable_end);
            }
        }
        Ok(())
    }

    /// Every LSN below this is known durable (the writer's watermark, or a
    /// record's sync mark); records at or above it on the tail segment are
    /// not returned yet. `u64::MAX` when the log has no watermark (no
    /// `LOCK` file: a copy, or a log written before watermarks existed),
    /// whose complete records are all returned.
    #[must_use]
    pub fn durable_bound(&self) -> Lsn {
        if self.unbounded {
            Lsn::MAX
        } else {
            self.vouched
        }
    }

    /// Take the durable LSN reported by `watch`, a [`DurableWatch`] of
    /// this log's writer in this process, as the reader's bound (it is
    /// published in `LOCK` before the watch moves, so this spares the read
    /// of `LOCK` that the next record past the bound would cost), and read
    /// the tail segment's end afresh on the next call. A follower woken by
    /// the watch calls this, then reads up to the LSN it reported.
    ///
    /// The watch must be of the writer of this log: a reader given
    /// another log's watch may return records not yet durable.
    ///
    /// [`DurableWatch`]: crate::DurableWatch
    pub fn note_durable(&mut self, watch: &crate::DurableWatch) {
        let end = watch.durable_lsn().saturating_add(1);
        self.vouched = self.vouched.max(end);
        if let Some(cur) = self.current.as_mut() {
            cur.invalidate();
        }
    }

    fn is_tail(&self) -> bool {
        self.index + 1 >= self.segments.len()
    }

    /// At the clean end of a sealed segment read whole for one session:
    /// store the index built on the way (best effort; a read-only log
    /// simply gets none).
    fn store_built_index(&mut self) {
        let (Some(building), Some(cur)) = (self.building.take(), self.current.as_ref()) else {
            return;
        };
        if !crate::index::derived_writes() {
            return;
        }
        let index = building.finish(&cur.header);
        if let Err(error) = crate::index::store(&*self.fs, &cur.entry.path, &index) {
            tracing::debug!(%error, segment = %cur.entry.path.display(), "cannot store a session index");
        }
    }

    /// At the current end of the tail read for one session: store the
    /// index built on the way if it covers [`tail_index_step`] more than
    /// the last one did, on top of
    /// the index it went on from. Best effort; never fsynced. So a tail's
    /// index keeps up with it "from time to time", by its readers, besides
    /// the writer's at close.
    fn store_tail_index(&mut self) {
        if !crate::index::derived_writes() {
            return;
        }
        let (Some(building), Some(cur)) = (self.building.as_ref(), self.current.as_ref()) else {
            return;
        };
        let cursor::Data::Tail { file, .. } = &cur.data else {
            return;
        };
        let Ok(len) = file.len() else {
            return;
        };
        let covered = building.covered();
        if covered
            < self
                .tail_indexed
                .saturating_add(tail_index_step(covered, len))
        {
            return;
        }
        let index = match self.building_on {
            None => building.clone(),
            Some(from) => {
                match crate::index::resume(&*self.fs, &cur.entry.path, &**file, &cur.header, from) {
                    Some(mut earlier) => {
                        earlier.extend(building);
                        earlier
                    }
                    None => return,
                }
            }
        };
        let path = &cur.entry.path;
        match crate::index::store(&*self.fs, path, &index.finish(&cur.header)) {
            Ok(()) => self.tail_indexed = covered,
            Err(error) => {
                tracing::debug!(%error, segment = %path.display(), "cannot store a session index");
            }
        }
    }

    fn finish_segment(&mut self) {
        self.leave_segment();
        self.index += 1;
    }

    /// Drop the current segment; the next one opened must continue it.
    fn leave_segment(&mut self) {
        self.building = None;
        if let Some(cur) = self.current.take() {
            self.continues_at = Some(cur.expected);
        }
    }

    /// Re-list the directory. `Ok(true)` if the current segment is no longer
    /// the tail (a newer one appeared): it has been finished and the caller
    /// should continue with the next one.
    fn refresh(&mut self) -> Result<bool, WalError> {
        let listing = segment::list(&*self.fs, &self.dir)?;
        let current_base = self.segments.get(self.index).map(|s| s.base_lsn);
        self.segments = listing.segments;
        if let Some(base) = current_base {
            match self.segments.iter().position(|s| s.base_lsn == base) {
                Some(index) => self.index = index,
                None => {
                    // Removed since it was listed (retention, a reader
                    // lagging behind it): what it held past this reader is
                    // gone. Go on with the first segment after it, whose
                    // continuity with what was read is checked: the records
                    // missing are an error naming them, never an end.
                    self.index = self
                        .segments
                        .iter()
                        .position(|s| s.base_lsn > base)
                        .unwrap_or(self.segments.len());
                    self.leave_segment();
                    return Ok(true);
                }
            }
        }
        if self.is_tail() {
            // Still the tail: re-read its end, which may have grown.
            if let Some(cur) = self.current.as_mut() {
                cur.invalidate();
            }
            return Ok(false);
        }
        // Sealed since: re-read it whole, and continue.
        if let Some(cur) = self.current.take() {
            let (offset, expected) = (cur.offset, cur.expected);
            self.open_segment(self.index)?;
            if let Some(new) = self.current.as_mut() {
                new.offset = offset;
                new.expected = expected;
                // Go on scanning from here: its index (if it has one by
                // now) would start over, and records before `offset` were
                // not seen by this reader to build one.
                new.jumps = None;
            }
            self.building = None;
        }
        Ok(true)
    }

    fn open_next(&mut self) -> Result<bool, WalError> {
        if self.index >= self.segments.len() {
            self.refresh()?;
            if self.index >= self.segments.len() {
                return Ok(false);
            }
        }
        if let Some(base) = self.one_segment {
            // Past the one segment asked for (or it is gone).
            if self.segments.get(self.index).map(|s| s.base_lsn) != Some(base) {
                return Ok(false);
            }
        }
        self.tail_damage = None;
        self.open_segment(self.index)?;
        Ok(true)
    }

    /// With keys: check a segment against the log's chain before reading
    /// it (`docs/security.md`), and give it its key. An encrypted segment's
    /// seal block must authenticate under its key, name this log, and (read
    /// right after the segment before it) continue that segment's last
    /// record; a segment in the clear must lie before the log's first
    /// encrypted LSN.
    fn check_chain(&mut self, cur: &mut Current) -> Result<(), WalError> {
        let Some(ring) = self.keys.clone() else {
            return Ok(());
        };
        self.chain_view()?;
        let entry = cur.entry.clone();
        let forged = |offset: usize, reason: String| WalError::Forged {
            path: entry.path.clone(),
            offset: offset as u64,
            lsn: entry.base_lsn,
            reason,
        };
        let (Some(key_id), Some(block)) = (cur.header.key_id, cur.seal) else {
            let view = self.chain_view()?;
            if entry.base_lsn >= view.enc_start {
                return Err(forged(
                    0,
                    format!(
                        "a segment in the clear where the log is encrypted (from LSN {})",
                        view.enc_start
                    ),
                ));
            }
            return Ok(());
        };
        let Some(key) = ring.get(key_id) else {
            return Ok(()); // its records come back sealed
        };
        if !crate::chain::seal_block_checks(key, &cur.header, &block) {
            return Err(forged(
                SEGMENT_HEADER_LEN,
                format!("the segment header does not authenticate under key {key_id:08x}"),
            ));
        }
        let log = match self.log {
            Some(log) => log,
            None => {
                let log = match crate::log_id::read(&*self.fs, &self.dir)? {
                    Some(file) => file.id,
                    None => block.log_id,
                };
                self.log = Some(log);
                log
            }
        };
        if block.log_id != log {
            return Err(forged(
                SEGMENT_HEADER_LEN,
                format!(
                    "the segment belongs to log {} (authenticated), not to this log ({log}, as LOG_ID or the segments before it say): LOG_ID was replaced, or the segment was taken from another log",
                    block.log_id
                ),
            ));
        }
        if let Some((lsn, tag)) = self.last_tag {
            if lsn + 1 == entry.base_lsn && block.prev != tag {
                return Err(forged(
                    SEGMENT_HEADER_LEN,
                    format!(
                        "the segment does not continue the log's chain after LSN {lsn} (segments replaced, reordered or cut)"
                    ),
                ));
            }
        }
        cur.key = Some(key.clone());
        Ok(())
    }

    /// At the end of a whole-log read with keys: the error if the log ends
    /// before the authenticated head, where the reader knows every record
    /// was durable (acknowledged records were cut). Once.
    fn cut_below_head(&mut self) -> Option<WalError> {
        if self.one_segment.is_some() {
            return None;
        }
        let head = self.chain?.head?;
        let reached = self
            .last_tag
            .map_or(0, |(lsn, _)| lsn)
            .max(self.from_lsn.saturating_sub(1));
        if reached >= head.lsn {
            return None;
        }
        if let Some(view) = self.chain.as_mut() {
            view.head = None;
        }
        Some(WalError::Forged {
            path: self.dir.join(crate::format::LOCK_FILE),
            offset: crate::format::WATERMARK_LEN as u64,
            lsn: head.lsn,
            reason: format!(
                "the log ends at LSN {reached}, before LSN {} that its writer made durable (the head): acknowledged records were cut",
                head.lsn
            ),
        })
    }

    /// With keys: the log's first encrypted LSN and authenticated head,
    /// found once (the head in `LOCK`, the newest encrypted segment).
    fn chain_view(&mut self) -> Result<ChainView, WalError> {
        if let Some(view) = self.chain {
            return Ok(view);
        }
        let mut view = ChainView {
            enc_start: Lsn::MAX,
            head: None,
        };
        let Some(ring) = self.keys.clone() else {
            return Ok(view);
        };
        if self.log.is_none() {
            self.log = crate::log_id::read(&*self.fs, &self.dir)?.map(|f| f.id);
        }
        if let Some(head) = crate::chain::read_head(&*self.fs, &self.dir) {
            // A head of another log than `LOG_ID` names says nothing of
            // this one (the segments' own checks name the mismatch).
            let ours = self.log.is_none_or(|log| log == head.log_id);
            if !ours {
                // Ignored.
            } else if crate::chain::head_checks(&ring, &head) {
                view.head = Some(head);
                view.enc_start = head.enc_start;
                // Authenticated evidence that every record through the
                // head was durable, whatever the (unauthenticated)
                // watermark says: a log that ends before it was cut.
                self.vouched = self.vouched.max(head.lsn + 1);
            } else if ring.get(head.key_id).is_some() {
                // Reported once, by `next_ref`; the segments are read
                // all the same (a bad head must not hide the log).
                self.pending = Some(crate::chain::head_forged(&self.dir, &head));
            }
        }
        if let Some(block) = self.segments.iter().rev().find_map(|entry| {
            // One that cannot be opened is reported where it is read.
            crate::chain::authentic_seal(&*self.fs, entry, &ring)
                .ok()
                .flatten()
        }) {
            view.enc_start = view.enc_start.min(block.enc_start);
        }
        self.chain = Some(view);
        Ok(view)
    }

    /// Open segment `index` as the current one. On any error the segment is
    /// skipped (the reader moves on to the next one, whose continuity is then
    /// not checked), so iterating past errors always terminates.
    fn open_segment(&mut self, index: usize) -> Result<(), WalError> {
        let Some(entry) = self.segments.get(index).cloned() else {
            return Ok(());
        };
        let tail = self.is_tail_index(index);
        let expected = self.continues_at.take();
        let opened = (|| {
            let path = &entry.path;
            let file = self
                .fs
                .open(path, OpenMode::Read)
                .map_err(|e| WalError::io("open", path, e))?;
            let header = segment::read_header(&*file, &entry)?;
            let seal = match header.key_id {
                Some(_) => Some(crate::chain::read_seal_block(&*file, &entry)?),
                None => None,
            };
            let len = file.len().map_err(|e| WalError::io("stat", path, e))?;
            let mut jumps = None;
            self.building = None;
            // An encrypted segment's index is not used by a reader with
            // keys: nothing authenticates it (`docs/security.md`).
            let trusted_index = header.key_id.is_none() || self.keys.is_none();
            if (self.only.is_some() || self.index_all) && trusted_index {
                let usable = match self.only {
                    Some(session) => {
                        crate::index::places(&*self.fs, path, &*file, &header, len, &session)
                    }
                    None => crate::index::check(&*self.fs, path, &*file, &header, len)
                        .is_none()
                        .then(|| (crate::format::IndexHeader::default(), Vec::new())),
                };
                match usable {
                    Some((index, mut places)) if self.only.is_some() => {
                        // Places below `from_lsn` would be passed over
                        // unreturned: they are not even visited.
                        places.retain(|&(_, lsn)| lsn >= self.from_lsn);
                        jumps = Some(Jumps {
                            places: places.into_iter(),
                            covered: usize::try_from(index.covered).unwrap_or(usize::MAX),
                            next_lsn: index.next_lsn,
                        });
                    }
                    Some(_) => {}
                    None => {
                        // Scanned from its start: build its index on the
                        // way (a tail's is stored as it grows).
                        self.building = Some(crate::index::Builder::default());
                        self.building_on = None;
                        self.tail_indexed = SEGMENT_HEADER_LEN as u64;
                    }
                }
            }
            let mut current = Current::open(entry.clone(), header, seal, file, tail)?;
            current.jumps = jumps;
            let gap = expected
                .filter(|&e| e != header.base_lsn)
                .map(|e| WalError::BadSegment {
                    path: path.clone(),
                    reason: format!(
                        "segment starts at LSN {} but the previous one ended before LSN {e}",
                        header.base_lsn
                    ),
                });
            Ok((current, gap))
        })();
        let opened = opened.and_then(|(mut current, gap)| {
            self.check_chain(&mut current)?;
            Ok((current, gap))
        });
        match opened {
            Ok((current, gap)) => {
                self.current = Some(current);
                // A gap is reported once; the segment is read anyway.
                gap.map_or(Ok(()), Err)
            }
            Err(e) => {
                self.current = None;
                if self.index == index {
                    self.index += 1;
                }
                Err(e)
            }
        }
    }

    fn is_tail_index(&self, index: usize) -> bool {
        index + 1 >= self.segments.len()
    }
}

impl Iterator for Reader {
    type Item = Result<RawRecord, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(|r| r.to_owned_record()))
    }
}

/// Note what the record at `lsn` (at `offset` of `segment`) says of the
/// heads watched at that LSN: its tag if it was opened, else the key it is
/// still sealed with (`None`: in the clear).
fn note_head(
    watched: &mut [(crate::ChainHead, crate::HeadCheck)],
    lsn: Lsn,
    segment: &Path,
    offset: u64,
    opened: Option<crate::crypto::Chain>,
    key_id: Option<u32>,
) {
    for (head, check) in watched.iter_mut().filter(|(h, _)| h.lsn == lsn) {
        let segment = segment.to_path_buf();
        *check = match opened {
            Some(found) if found == head.tag => crate::HeadCheck::Holds { segment, offset },
            Some(found) => crate::HeadCheck::Differs {
                segment,
                offset,
                found,
            },
            None => crate::HeadCheck::Unchecked {
                segment,
                offset,
                key_id,
            },
        };
    }
}

/// The error for damage at `offset` where `lsn` was due.
fn damage(problem: Problem, path: PathBuf, offset: u64, lsn: Lsn) -> WalError {
    match problem {
        Problem::Frame(reason) => WalError::Corrupt {
            path,
            offset,
            lsn,
            reason,
        },
        Problem::Sequence { found } => WalError::Sequence {
            path,
            offset,
            expected: lsn,
            found,
        },
    }
}

fn describe(problem: Problem) -> String {
    match problem {
        Problem::Frame(FrameError::Truncated { needed, available }) => {
            format!("incomplete frame ({available} of {needed} bytes)")
        }
        Problem::Frame(e) => e.to_string(),
        Problem::Sequence { found } => format!("frame with LSN {found}"),
    }
}

#[cfg(test)]
mod segment_file_tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::walk::Item;
    use crate::{Wal, WalOptions};

    /// A closed log of `n` records over several small segments.
    fn log(n: u8) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions {
            segment_size: 4096,
            preallocate: false,
            ..WalOptions::default()
        };
        let wal = Wal::open(dir.path(), options).unwrap();
        for i in 0..n {
            wal.append_raw(Uuid::from_u128(u128::from(i % 3)), &[i; 200])
                .unwrap();
        }
        wal.close().unwrap();
        dir
    }

    /// Every record and problem of `reader`: (LSN, segment) or the error.
    fn walk(reader: &mut Reader) -> Vec<Result<(Lsn, PathBuf), WalError>> {
        let mut items = Vec::new();
        let end = reader
            .walk(|item| {
                items.push(match item {
                    Item::Record(r) => Ok((r.lsn, r.segment.to_path_buf())),
                    Item::Problem(e) => Err(e),
                });
                ControlFlow::<()>::Continue(())
            })
            .unwrap();
        assert_eq!(end, ControlFlow::Continue(()));
        items
    }

    #[test]
    fn each_segment_file_reads_as_its_part_of_the_whole_log() {
        let dir = log(60);
        let whole: Vec<(Lsn, PathBuf)> = walk(&mut Reader::open(dir.path()).unwrap())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let segments = Reader::open(dir.path()).unwrap().segments();
        assert!(segments.len() >= 3, "{segments:?}");
        let mut joined = Vec::new();
        for segment in &segments {
            let mut reader = Reader::open_segment_file(segment).unwrap();
            assert_eq!(reader.segments(), std::slice::from_ref(segment));
            let part: Vec<(Lsn, PathBuf)> =
                walk(&mut reader).into_iter().map(Result::unwrap).collect();
            assert!(!part.is_empty());
            assert!(part.iter().all(|(_, s)| s == segment));
            joined.extend(part);
        }
        assert_eq!(joined, whole);
    }

    #[test]
    fn damage_in_the_segment_is_reported_and_the_others_are_not_read() {
        use std::os::unix::fs::FileExt;
        let dir = log(60);
        let segments = Reader::open(dir.path()).unwrap().segments();
        // Damage the first record of the first and of the second segment.
        for segment in &segments[..2] {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(segment)
                .unwrap();
            file.write_all_at(&[0xAA; 8], SEGMENT_HEADER_LEN as u64 + 60)
                .unwrap();
        }
        let items = walk(&mut Reader::open_segment_file(&segments[1]).unwrap());
        let problems: Vec<&WalError> = items.iter().filter_map(|i| i.as_ref().err()).collect();
        assert_eq!(problems.len(), 1, "{items:?}");
        assert_eq!(problems[0].location().unwrap().0, segments[1].as_path());
        assert!(items.iter().skip(1).all(Result::is_ok));
    }

    #[test]
    fn a_file_that_is_not_a_segment_is_refused() {
        let dir = log(3);
        let other = dir.path().join("notes.wal");
        std::fs::write(&other, b"x").unwrap();
        assert!(matches!(
            Reader::open_segment_file(&other),
            Err(WalError::BadSegment { .. })
        ));
        assert!(matches!(
            Reader::open_segment_file(dir.path().join("00000000000000000099.wal")),
            Err(WalError::NotFound { .. })
        ));
        assert!(matches!(
            Reader::open_segment_file(dir.path()),
            Err(WalError::BadSegment { .. })
        ));
    }
}
