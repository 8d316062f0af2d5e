//! The on-disk format, and nothing else: constants, segment headers and
//! record frames. Specified in `docs/format.md`; keep the two in step.
//!
//! Everything here is pure (no I/O) and never panics on any input, so the
//! fuzzers can drive it directly.

use uuid::Uuid;

/// First bytes of every segment: `\x89LOGBK\r\n`.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89LOGBK\r\n";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Suffix of a segment file.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of a segment being created.
pub const TMP_SUFFIX: &str = ".wal.tmp";
/// Name of the writer lock file.
pub const LOCK_FILE: &str = "LOCK";
/// Digits of the zero-padded base LSN in a segment's name.
pub const SEGMENT_NAME_DIGITS: usize = 20;

// Segment header layout, each offset built from the one before it.
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + SEGMENT_MAGIC.len();
const CODEC_AT: usize = VERSION_AT + size_of::<u16>();
const FLAGS_AT: usize = CODEC_AT + size_of::<u16>();
const BASE_LSN_AT: usize = FLAGS_AT + size_of::<u32>();
const CREATED_AT: usize = BASE_LSN_AT + size_of::<u64>();
/// The id of the key of an encrypted segment (0 in the clear).
const RESERVED_AT: usize = CREATED_AT + size_of::<u64>();
const HEADER_CRC_AT: usize = RESERVED_AT + size_of::<u32>();
/// Bytes of a segment header; records start at this offset.
pub const SEGMENT_HEADER_LEN: usize = HEADER_CRC_AT + size_of::<u32>();

// Record frame layout.
const LEN_AT: usize = 0;
const CRC_AT: usize = LEN_AT + size_of::<u32>();
const LSN_AT: usize = CRC_AT + size_of::<u32>();
const SYNC_MARK_AT: usize = LSN_AT + size_of::<u64>();
const TIMESTAMP_AT: usize = SYNC_MARK_AT + size_of::<u64>();
const SESSION_AT: usize = TIMESTAMP_AT + size_of::<u64>();
/// Bytes of a record frame before its payload.
pub const RECORD_HEADER_LEN: usize = SESSION_AT + size_of::<uuid::Bytes>();
/// The largest payload a record may carry (16 MiB).
pub const MAX_PAYLOAD_LEN: usize = 16 << 20;
/// The largest segment a writer creates (1 GiB): no record lies past this
/// offset, so readers and recovery never look further (a damaged or sparse
/// file of any length costs no more than this).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;

const _: () = assert!(SEGMENT_HEADER_LEN == 40);
const _: () = assert!(RECORD_HEADER_LEN == 48);

/// A log sequence number: 1 for the first record, gapless; 0 means none.
pub type Lsn = u64;

/// The largest LSN a record may carry. `u64::MAX` is kept out of the LSN
/// space so that "the LSN after the last record" always exists; a frame
/// claiming a larger LSN is never valid, and a log that reached this LSN
/// refuses further appends.
pub const MAX_LSN: Lsn = u64::MAX - 1;

/// The file name of the segment whose first record is `base_lsn`.
#[must_use]
pub fn segment_file_name(base_lsn: Lsn) -> String {
    format!(
        "{base_lsn:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

/// The base LSN a segment file name stands for, if it is one.
#[must_use]
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// How payloads are encoded.
    pub codec_id: u16,
    /// LSN of the segment's first record.
    pub base_lsn: Lsn,
    /// When the segment was created, µs since the Unix epoch.
    pub created_us: u64,
    /// The id of the key its payloads are encrypted with
    /// ([`FLAG_ENCRYPTED`] and the `key_id` field), or `None` for a
    /// segment in the clear.
    pub key_id: Option<u32>,
}

/// Segment flag: payloads are encrypted, with the key whose id is in the
/// header's `key_id` field (`docs/format.md`, "Encrypted segments").
pub const FLAG_ENCRYPTED: u32 = 1;

impl SegmentHeader {
    /// The header's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        h[MAGIC_AT..VERSION_AT].copy_from_slice(&SEGMENT_MAGIC);
        h[VERSION_AT..CODEC_AT].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[CODEC_AT..FLAGS_AT].copy_from_slice(&self.codec_id.to_le_bytes());
        let (flags, key_id) = match self.key_id {
            Some(id) => (FLAG_ENCRYPTED, id),
            None => (0, 0),
        };
        h[FLAGS_AT..BASE_LSN_AT].copy_from_slice(&flags.to_le_bytes());
        h[BASE_LSN_AT..CREATED_AT].copy_from_slice(&self.base_lsn.to_le_bytes());
        h[CREATED_AT..RESERVED_AT].copy_from_slice(&self.created_us.to_le_bytes());
        h[RESERVED_AT..HEADER_CRC_AT].copy_from_slice(&key_id.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_CRC_AT]);
        h[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parse the header at the start of `bytes`.
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] saying which check failed. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(h) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(HeaderError::Short { len: bytes.len() });
        };
        if h[MAGIC_AT..VERSION_AT] != SEGMENT_MAGIC {
            return Err(HeaderError::Magic);
        }
        let crc = le_u32(h, HEADER_CRC_AT);
        if crc32fast::hash(&h[..HEADER_CRC_AT]) != crc {
            return Err(HeaderError::Checksum);
        }
        let version = le_u16(h, VERSION_AT);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version { found: version });
        }
        let flags = le_u32(h, FLAGS_AT);
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(HeaderError::Flags { found: flags });
        }
        Ok(SegmentHeader {
            codec_id: le_u16(h, CODEC_AT),
            base_lsn: le_u64(h, BASE_LSN_AT),
            created_us: le_u64(h, CREATED_AT),
            key_id: (flags & FLAG_ENCRYPTED != 0).then(|| le_u32(h, RESERVED_AT)),
        })
    }
}

impl SegmentHeader {
    /// Where this segment's records start: after the header, and after
    /// the seal block of an encrypted segment.
    #[must_use]
    pub fn records_start(&self) -> usize {
        if self.key_id.is_some() {
            SEGMENT_HEADER_LEN + SEAL_BLOCK_LEN
        } else {
            SEGMENT_HEADER_LEN
        }
    }
}

// Seal block layout (right after the header of an encrypted segment), each
// offset built from the one before it.
const SB_LOG_ID_AT: usize = 0;
const SB_ENC_START_AT: usize = SB_LOG_ID_AT + size_of::<uuid::Bytes>();
const SB_PREV_AT: usize = SB_ENC_START_AT + size_of::<u64>();
const SB_MAC_AT: usize = SB_PREV_AT + CHAIN_BYTES;
const SB_CRC_AT: usize = SB_MAC_AT + MAC_BYTES;
/// Bytes of an encrypted segment's seal block (`docs/format.md`,
/// "Encrypted segments"); its records start after it.
pub const SEAL_BLOCK_LEN: usize = SB_CRC_AT + size_of::<u32>();
/// Bytes of a chain value (a record's tag).
const CHAIN_BYTES: usize = 16;
/// Bytes of a MAC: a 24-byte nonce and a 16-byte tag.
const MAC_BYTES: usize = 40;

const _: () = assert!(SEAL_BLOCK_LEN == 84);

/// The seal block of an encrypted segment: what its key authenticates
/// besides the header (`docs/security.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealBlock {
    /// The log the segment belongs to.
    pub log_id: Uuid,
    /// The LSN of the log's first encrypted record: every record from it
    /// on must be encrypted.
    pub enc_start: Lsn,
    /// The chain value before the segment's first record: the tag of the
    /// record before it, zeros if that one is in the clear (or none).
    pub prev: [u8; CHAIN_BYTES],
    /// The MAC of the header's first 36 bytes and this block's first 40,
    /// under the segment's key.
    pub mac: [u8; MAC_BYTES],
}

impl SealBlock {
    /// The bytes the MAC covers in this block (log id, start, prev).
    #[must_use]
    pub fn authenticated(&self) -> [u8; SB_MAC_AT] {
        let mut b = [0u8; SB_MAC_AT];
        b[SB_LOG_ID_AT..SB_ENC_START_AT].copy_from_slice(self.log_id.as_bytes());
        b[SB_ENC_START_AT..SB_PREV_AT].copy_from_slice(&self.enc_start.to_le_bytes());
        b[SB_PREV_AT..SB_MAC_AT].copy_from_slice(&self.prev);
        b
    }

    /// The block's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; SEAL_BLOCK_LEN] {
        let mut b = [0u8; SEAL_BLOCK_LEN];
        b[..SB_MAC_AT].copy_from_slice(&self.authenticated());
        b[SB_MAC_AT..SB_CRC_AT].copy_from_slice(&self.mac);
        let crc = crc32fast::hash(&b[..SB_CRC_AT]);
        b[SB_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parse a seal block; `None` if short or its CRC fails. Never panics.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<SealBlock> {
        let b = bytes.get(..SEAL_BLOCK_LEN)?;
        if crc32fast::hash(&b[..SB_CRC_AT]) != le_u32(b, SB_CRC_AT) {
            return None;
        }
        let mut id = uuid::Bytes::default();
        id.copy_from_slice(&b[SB_LOG_ID_AT..SB_ENC_START_AT]);
        let mut prev = [0u8; CHAIN_BYTES];
        prev.copy_from_slice(&b[SB_PREV_AT..SB_MAC_AT]);
        let mut mac = [0u8; MAC_BYTES];
        mac.copy_from_slice(&b[SB_MAC_AT..SB_CRC_AT]);
        Some(SealBlock {
            log_id: Uuid::from_bytes(id),
            enc_start: le_u64(b, SB_ENC_START_AT),
            prev,
            mac,
        })
    }
}

/// The bytes of a segment header the seal block's MAC covers: all but its
/// CRC.
#[must_use]
pub fn header_authenticated(header: &[u8; SEGMENT_HEADER_LEN]) -> &[u8] {
    &header[..HEADER_CRC_AT]
}

/// Why a segment header is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The file is shorter than a header.
    #[error("file is {len} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte segment header")]
    Short {
        /// The file's length.
        len: usize,
    },
    /// The magic bytes are wrong: not a Logbook segment.
    #[error("bad magic: not a logbook segment")]
    Magic,
    /// The header CRC does not match.
    #[error("segment header checksum mismatch")]
    Checksum,
    /// Written by an unknown format version.
    #[error("unsupported format version {found} (this build reads {FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u16,
    },
    /// Flags this build does not understand.
    #[error("unknown segment flags {found:#x}")]
    Flags {
        /// The flags found.
        found: u32,
    },
}

/// The fixed fields of a record, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The record's LSN.
    pub lsn: Lsn,
    /// Every LSN below this was durable before the record was written.
    pub sync_mark: Lsn,
    /// Wall clock at append, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// The session the record belongs to.
    pub session: Uuid,
}

/// Bytes a frame with `payload_len` bytes of payload takes.
#[must_use]
pub const fn frame_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// The CRC a frame of `header` and `payload` stores: CRC-32 of its bytes
/// from the LSN field to the end of the payload (see `docs/format.md`).
#[must_use]
#[cfg(any(test, feature = "testing"))]
pub fn frame_crc(header: &FrameHeader, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header.lsn.to_le_bytes());
    hasher.update(&header.sync_mark.to_le_bytes());
    hasher.update(&header.timestamp_us.to_le_bytes());
    hasher.update(header.session.as_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Append the frame of one record to `buf`.
///
/// The caller has checked `1 <= payload.len() <= MAX_PAYLOAD_LEN`.
pub fn encode_frame(buf: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) {
    let start = buf.len();
    put_header(buf, header, payload.len());
    buf.extend_from_slice(payload);
    put_crc(buf, start);
}

/// Append the frame of one record of `payload_len` bytes to `buf`, the
/// payload written in place by `fill` (given exactly `payload_len`
/// bytes): an encrypted log's leader seals each record straight into its
/// frame this way.
pub(crate) fn encode_frame_with(
    buf: &mut Vec<u8>,
    header: &FrameHeader,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let start = buf.len();
    put_header(buf, header, payload_len);
    buf.resize(start + frame_len(payload_len), 0);
    fill(&mut buf[start + RECORD_HEADER_LEN..]);
    put_crc(buf, start);
}

/// [`encode_frame`] with a zero CRC: a frame an encrypted log queues in
/// the clear, which its leader seals and frames again (with its CRC)
/// before anything is written (`commit/disk.rs`).
pub(crate) fn encode_frame_unchecked(buf: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) {
    put_header(buf, header, payload.len());
    buf.extend_from_slice(payload);
}

/// A frame's header, with a zero CRC.
fn put_header(buf: &mut Vec<u8>, header: &FrameHeader, payload_len: usize) {
    debug_assert!(payload_len != 0 && payload_len <= MAX_PAYLOAD_LEN);
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX);
    buf.reserve(frame_len(payload_len));
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // CRC, filled by `put_crc`
    buf.extend_from_slice(&header.lsn.to_le_bytes());
    buf.extend_from_slice(&header.sync_mark.to_le_bytes());
    buf.extend_from_slice(&header.timestamp_us.to_le_bytes());
    buf.extend_from_slice(header.session.as_bytes());
}

/// Fill in the CRC of the frame at `start`, the last one of `buf`.
fn put_crc(buf: &mut [u8], start: usize) {
    let crc = crc32fast::hash(&buf[start + LSN_AT..]);
    buf[start + CRC_AT..start + LSN_AT].copy_from_slice(&crc.to_le_bytes());
}

/// Bit 31 of a frame's `payload_len` field: the frame is a **redacted
/// placeholder** left by compaction in place of a deleted record (see
/// `docs/format.md`, "Redacted placeholders"). The other bits are the
/// payload's length; the CRC is over [`REDACTED_CRC_DOMAIN`] then the
/// bytes it covers in any frame, so a flipped flag fails the CRC.
pub const REDACTED_FLAG: u32 = 1 << 31;

/// What a placeholder's CRC covers before the frame's bytes from the LSN
/// field on.
pub const REDACTED_CRC_DOMAIN: &[u8; 8] = b"LBREDACT";

/// The payload of a placeholder in a segment in the clear: one zero byte.
pub const REDACTED_CLEAR_PAYLOAD: [u8; 1] = [0];

/// Whether the frame at `bytes[0]` has the [`REDACTED_FLAG`] (its length
/// field only; nothing is checked).
#[must_use]
pub fn is_redacted(bytes: &[u8]) -> bool {
    bytes.len() >= RECORD_HEADER_LEN && le_u32(bytes, LEN_AT) & REDACTED_FLAG != 0
}

/// Append a redacted placeholder for the record with `header` to `buf`:
/// the same header, `payload` (the record's 16-byte tag in an encrypted
/// segment, [`REDACTED_CLEAR_PAYLOAD`] in the clear), the
/// [`REDACTED_FLAG`] set and the CRC over [`REDACTED_CRC_DOMAIN`] first.
pub fn encode_placeholder(buf: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) {
    let start = buf.len();
    encode_frame(buf, header, payload);
    let len = u32::try_from(payload.len()).unwrap_or(0) | REDACTED_FLAG;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(REDACTED_CRC_DOMAIN);
    hasher.update(buf.get(start + LSN_AT..).unwrap_or_default());
    let crc = hasher.finalize();
    if let Some(field) = buf.get_mut(start + LEN_AT..start + CRC_AT) {
        field.copy_from_slice(&len.to_le_bytes());
    }
    if let Some(field) = buf.get_mut(start + CRC_AT..start + LSN_AT) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
}

/// One frame as found at an offset of a segment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A frame whose length and CRC check out (its LSN is not yet checked
    /// against the expected one: see [`Frame::Valid`]'s header).
    Valid {
        /// The fixed fields.
        header: FrameHeader,
        /// The payload, borrowed from the segment.
        payload: &'a [u8],
        /// Bytes the whole frame takes.
        len: usize,
    },
    /// The 48 bytes here are all zero (or fewer than 48 zero bytes remain):
    /// the clean end of a preallocated segment.
    Zero,
    /// Not a valid frame.
    Invalid(FrameError),
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes remain than a frame header or its payload needs.
    #[error("frame truncated: needs {needed} bytes, {available} left in the file")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The length field is 0 or above `MAX_PAYLOAD_LEN` (16 MiB).
    #[error("bad payload length {len}")]
    Length {
        /// The length found.
        len: u32,
    },
    /// The CRC does not match the bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The CRC in the frame.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
}

/// Decode the frame that starts at `bytes[0]`. Never panics.
#[must_use]
pub fn decode_frame(bytes: &[u8]) -> Frame<'_> {
    let Some(head) = bytes.get(..RECORD_HEADER_LEN) else {
        if bytes.iter().all(|&b| b == 0) {
            return Frame::Zero;
        }
        return Frame::Invalid(FrameError::Truncated {
            needed: RECORD_HEADER_LEN,
            available: bytes.len(),
        });
    };
    let field = le_u32(head, LEN_AT);
    if field == 0 && head.iter().all(|&b| b == 0) {
        return Frame::Zero;
    }
    let redacted = field & REDACTED_FLAG != 0;
    let len = field & !REDACTED_FLAG;
    let payload_len = len as usize;
    if len == 0 || payload_len > MAX_PAYLOAD_LEN {
        return Frame::Invalid(FrameError::Length { len: field });
    }
    let total = frame_len(payload_len);
    let Some(frame) = bytes.get(..total) else {
        return Frame::Invalid(FrameError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    };
    let stored = le_u32(frame, CRC_AT);
    let computed = if redacted {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(REDACTED_CRC_DOMAIN);
        hasher.update(frame.get(LSN_AT..).unwrap_or_default());
        hasher.finalize()
    } else {
        crc32fast::hash(frame.get(LSN_AT..).unwrap_or_default())
    };
    if stored != computed {
        return Frame::Invalid(FrameError::Checksum { stored, computed });
    }
    let mut session = uuid::Bytes::default();
    if let Some(s) = frame.get(SESSION_AT..RECORD_HEADER_LEN) {
        session.copy_from_slice(s);
    }
    Frame::Valid {
        header: FrameHeader {
            lsn: le_u64(frame, LSN_AT),
            sync_mark: le_u64(frame, SYNC_MARK_AT),
            timestamp_us: le_u64(frame, TIMESTAMP_AT),
            session: Uuid::from_bytes(session),
        },
        payload: frame.get(RECORD_HEADER_LEN..).unwrap_or_default(),
        len: total,
    }
}

/// The fields of a frame header as they are on disk, checked or not: what
/// a diagnostic shows of damaged bytes (see [`FrameFields::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameFields {
    /// The payload length field.
    pub payload_len: u32,
    /// The stored CRC field.
    pub crc: u32,
    /// The LSN, sync mark, timestamp and session fields.
    pub header: FrameHeader,
}

impl FrameFields {
    /// Read the header fields of the frame at `bytes[0]` without checking
    /// anything; `None` if fewer than a header's bytes are there. Never
    /// panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_wal::FrameFields;
    ///
    /// assert!(FrameFields::parse(&[0u8; 47]).is_none());
    /// let fields = FrameFields::parse(&[0u8; 48]).unwrap();
    /// assert_eq!((fields.payload_len, fields.header.lsn), (0, 0));
    /// ```
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Option<FrameFields> {
        let head = bytes.get(..RECORD_HEADER_LEN)?;
        let mut session = uuid::Bytes::default();
        session.copy_from_slice(head.get(SESSION_AT..RECORD_HEADER_LEN)?);
        Some(FrameFields {
            payload_len: le_u32(head, LEN_AT),
            crc: le_u32(head, CRC_AT),
            header: FrameHeader {
                lsn: le_u64(head, LSN_AT),
                sync_mark: le_u64(head, SYNC_MARK_AT),
                timestamp_us: le_u64(head, TIMESTAMP_AT),
                session: Uuid::from_bytes(session),
            },
        })
    }
}

/// The LSN field of the (possibly invalid) frame at `bytes[0]`, if present.
#[must_use]
pub fn peek_lsn(bytes: &[u8]) -> Option<Lsn> {
    (bytes.len() >= SYNC_MARK_AT).then(|| le_u64(bytes, LSN_AT))
}

/// First bytes of the durable watermark in the `LOCK` file: `LBWM`.
pub const WATERMARK_MAGIC: [u8; 4] = *b"LBWM";
/// Flag of a [`Watermark`]: the writer that published it was poisoned by a
/// failed write or fsync; nothing at or above its `durable_end` was durable.
pub const WATERMARK_POISONED: u32 = 1;

// Watermark layout (the first bytes of `LOCK`), each offset built from the
// one before it.
const WM_MAGIC_AT: usize = 0;
const WM_FLAGS_AT: usize = WM_MAGIC_AT + WATERMARK_MAGIC.len();
const WM_DURABLE_AT: usize = WM_FLAGS_AT + size_of::<u32>();
const WM_BOOT_AT: usize = WM_DURABLE_AT + size_of::<u64>();
const WM_CRC_AT: usize = WM_BOOT_AT + size_of::<BootId>();
/// Bytes of the durable watermark at the start of `LOCK`.
pub const WATERMARK_LEN: usize = WM_CRC_AT + size_of::<u32>();

const _: () = assert!(WATERMARK_LEN == 36);

/// Which boot of the machine wrote a watermark (Linux's
/// `/proc/sys/kernel/random/boot_id`); all zeros when unknown.
pub type BootId = [u8; 16];

/// The durable watermark a writer publishes at the start of its `LOCK` file
/// (`docs/format.md`, "The durable watermark"): every LSN below
/// `durable_end` had been fsynced when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Every LSN below this was durable.
    pub durable_end: Lsn,
    /// The writer was poisoned: records at or above `durable_end` that are
    /// on disk were never made durable by it.
    pub poisoned: bool,
    /// The boot of the machine the writer ran in: a reader of the same boot
    /// may read pages the disk never got (after a failed fsync), one of
    /// another boot reads what the disk holds.
    pub boot_id: BootId,
}

/// What the `LOCK` file says about durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkState {
    /// No `LOCK` file, or an empty one (a log copied without it, or written
    /// by a version that published no watermark): nothing is known.
    Absent,
    /// A well-formed watermark.
    Valid(Watermark),
    /// Bytes that are not a whole, checked watermark (torn by a power cut,
    /// or overwritten): only the records' sync marks vouch for durability.
    Invalid,
}

impl Watermark {
    /// The watermark's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; WATERMARK_LEN] {
        let mut w = [0u8; WATERMARK_LEN];
        let flags = if self.poisoned { WATERMARK_POISONED } else { 0 };
        w[WM_MAGIC_AT..WM_FLAGS_AT].copy_from_slice(&WATERMARK_MAGIC);
        w[WM_FLAGS_AT..WM_DURABLE_AT].copy_from_slice(&flags.to_le_bytes());
        w[WM_DURABLE_AT..WM_BOOT_AT].copy_from_slice(&self.durable_end.to_le_bytes());
        w[WM_BOOT_AT..WM_CRC_AT].copy_from_slice(&self.boot_id);
        let crc = crc32fast::hash(&w[..WM_CRC_AT]);
        w[WM_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        w
    }

    /// Parse the start of a `LOCK` file's bytes. Never panics.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> WatermarkState {
        if bytes.is_empty() {
            return WatermarkState::Absent;
        }
        let Some(w) = bytes.get(..WATERMARK_LEN) else {
            return WatermarkState::Invalid;
        };
        if w[WM_MAGIC_AT..WM_FLAGS_AT] != WATERMARK_MAGIC
            || crc32fast::hash(&w[..WM_CRC_AT]) != le_u32(w, WM_CRC_AT)
        {
            return WatermarkState::Invalid;
        }
        let flags = le_u32(w, WM_FLAGS_AT);
        if flags & !WATERMARK_POISONED != 0 {
            return WatermarkState::Invalid;
        }
        let mut boot_id = BootId::default();
        boot_id.copy_from_slice(&w[WM_BOOT_AT..WM_CRC_AT]);
        WatermarkState::Valid(Watermark {
            durable_end: le_u64(w, WM_DURABLE_AT),
            poisoned: flags & WATERMARK_POISONED != 0,
            boot_id,
        })
    }
}

/// First bytes of the authenticated durable head in `LOCK`: `LBHD`.
pub const HEAD_MAGIC: [u8; 4] = *b"LBHD";

// Head layout (in `LOCK`, right after the watermark), each offset built
// from the one before it.
const HD_MAGIC_AT: usize = 0;
const HD_KEY_AT: usize = HD_MAGIC_AT + HEAD_MAGIC.len();
const HD_LOG_AT: usize = HD_KEY_AT + size_of::<u32>();
const HD_LSN_AT: usize = HD_LOG_AT + size_of::<uuid::Bytes>();
const HD_TAG_AT: usize = HD_LSN_AT + size_of::<u64>();
const HD_START_AT: usize = HD_TAG_AT + CHAIN_BYTES;
const HD_MAC_AT: usize = HD_START_AT + size_of::<u64>();
const HD_CRC_AT: usize = HD_MAC_AT + MAC_BYTES;
/// Bytes of the durable head.
pub const HEAD_LEN: usize = HD_CRC_AT + size_of::<u32>();

const _: () = assert!(HEAD_LEN == 100);

/// The durable head of an encrypted log, published in `LOCK` after the
/// watermark (`docs/security.md`): the last record the writer made durable
/// and its tag, MAC'd under the current key. A reader with the key finds
/// a replaced last record or a cut acknowledged tail against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The key the MAC is under.
    pub key_id: u32,
    /// The log.
    pub log_id: Uuid,
    /// The last durable record (0: none encrypted yet).
    pub lsn: Lsn,
    /// Its tag.
    pub tag: [u8; CHAIN_BYTES],
    /// The log's first encrypted LSN.
    pub enc_start: Lsn,
    /// The MAC of the fields above.
    pub mac: [u8; MAC_BYTES],
}

impl Head {
    /// The bytes the MAC covers.
    #[must_use]
    pub fn authenticated(&self) -> [u8; HD_MAC_AT] {
        let mut b = [0u8; HD_MAC_AT];
        b[HD_MAGIC_AT..HD_KEY_AT].copy_from_slice(&HEAD_MAGIC);
        b[HD_KEY_AT..HD_LOG_AT].copy_from_slice(&self.key_id.to_le_bytes());
        b[HD_LOG_AT..HD_LSN_AT].copy_from_slice(self.log_id.as_bytes());
        b[HD_LSN_AT..HD_TAG_AT].copy_from_slice(&self.lsn.to_le_bytes());
        b[HD_TAG_AT..HD_START_AT].copy_from_slice(&self.tag);
        b[HD_START_AT..HD_MAC_AT].copy_from_slice(&self.enc_start.to_le_bytes());
        b
    }

    /// The head's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; HEAD_LEN] {
        let mut b = [0u8; HEAD_LEN];
        b[..HD_MAC_AT].copy_from_slice(&self.authenticated());
        b[HD_MAC_AT..HD_CRC_AT].copy_from_slice(&self.mac);
        let crc = crc32fast::hash(&b[..HD_CRC_AT]);
        b[HD_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parse a head; `None` if absent, short or its CRC fails. Never
    /// panics.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Head> {
        let b = bytes.get(..HEAD_LEN)?;
        if b[HD_MAGIC_AT..HD_KEY_AT] != HEAD_MAGIC
            || crc32fast::hash(&b[..HD_CRC_AT]) != le_u32(b, HD_CRC_AT)
        {
            return None;
        }
        let mut id = uuid::Bytes::default();
        id.copy_from_slice(&b[HD_LOG_AT..HD_LSN_AT]);
        let mut tag = [0u8; CHAIN_BYTES];
        tag.copy_from_slice(&b[HD_TAG_AT..HD_START_AT]);
        let mut mac = [0u8; MAC_BYTES];
        mac.copy_from_slice(&b[HD_MAC_AT..HD_CRC_AT]);
        Some(Head {
            key_id: le_u32(b, HD_KEY_AT),
            log_id: Uuid::from_bytes(id),
            lsn: le_u64(b, HD_LSN_AT),
            tag,
            enc_start: le_u64(b, HD_START_AT),
            mac,
        })
    }
}

// ---------------------------------------------------------------------------
// The log's identity: `LOG_ID` (docs/format.md, "The log id").

/// The file that names the log: [`LOG_ID_FILE`].
pub const LOG_ID_FILE: &str = "LOG_ID";
/// First bytes of `LOG_ID`: `\x89LBLID\r\n`.
pub const LOG_ID_MAGIC: [u8; 8] = *b"\x89LBLID\r\n";
/// The version of the `LOG_ID` layout.
pub const LOG_ID_VERSION: u16 = 1;

// `LOG_ID` layout, each offset built from the one before it.
const LI_MAGIC_AT: usize = 0;
const LI_VERSION_AT: usize = LI_MAGIC_AT + LOG_ID_MAGIC.len();
const LI_FLAGS_AT: usize = LI_VERSION_AT + size_of::<u16>();
const LI_ID_AT: usize = LI_FLAGS_AT + size_of::<u16>();
const LI_CREATED_AT: usize = LI_ID_AT + size_of::<uuid::Bytes>();
const LI_CRC_AT: usize = LI_CREATED_AT + size_of::<u64>();
/// Bytes of a `LOG_ID` file.
pub const LOG_ID_LEN: usize = LI_CRC_AT + size_of::<u32>();

const _: () = assert!(LOG_ID_LEN == 40);

/// What `LOG_ID` holds: the log's stable identity, created with the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogIdFile {
    /// The log's id: a random (v4) UUID.
    pub id: Uuid,
    /// When it was created, µs since the Unix epoch.
    pub created_us: u64,
}

/// Why `LOG_ID`'s bytes are not a log id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogIdError {
    /// Fewer bytes than `LOG_ID_LEN` (40).
    #[error("{0} bytes, a log id has {LOG_ID_LEN}")]
    Short(usize),
    /// The magic is wrong.
    #[error("bad magic")]
    BadMagic,
    /// A version this build does not know.
    #[error("unknown version {0}")]
    UnknownVersion(u16),
    /// Flags this build does not know.
    #[error("unknown flags {0:#x}")]
    UnknownFlags(u16),
    /// The CRC does not match.
    #[error("CRC mismatch")]
    BadCrc,
}

impl LogIdFile {
    /// The file's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; LOG_ID_LEN] {
        let mut b = [0u8; LOG_ID_LEN];
        b[LI_MAGIC_AT..LI_VERSION_AT].copy_from_slice(&LOG_ID_MAGIC);
        b[LI_VERSION_AT..LI_FLAGS_AT].copy_from_slice(&LOG_ID_VERSION.to_le_bytes());
        b[LI_ID_AT..LI_CREATED_AT].copy_from_slice(self.id.as_bytes());
        b[LI_CREATED_AT..LI_CRC_AT].copy_from_slice(&self.created_us.to_le_bytes());
        let crc = crc32fast::hash(&b[..LI_CRC_AT]);
        b[LI_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parse a `LOG_ID` file's bytes (bytes past [`LOG_ID_LEN`] are
    /// ignored). Never panics.
    ///
    /// # Errors
    ///
    /// What is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<LogIdFile, LogIdError> {
        let Some(b) = bytes.get(..LOG_ID_LEN) else {
            return Err(LogIdError::Short(bytes.len()));
        };
        if b[LI_MAGIC_AT..LI_VERSION_AT] != LOG_ID_MAGIC {
            return Err(LogIdError::BadMagic);
        }
        if crc32fast::hash(&b[..LI_CRC_AT]) != le_u32(b, LI_CRC_AT) {
            return Err(LogIdError::BadCrc);
        }
        let version = u16::from_le_bytes([b[LI_VERSION_AT], b[LI_VERSION_AT + 1]]);
        if version != LOG_ID_VERSION {
            return Err(LogIdError::UnknownVersion(version));
        }
        let flags = u16::from_le_bytes([b[LI_FLAGS_AT], b[LI_FLAGS_AT + 1]]);
        if flags != 0 {
            return Err(LogIdError::UnknownFlags(flags));
        }
        let mut id = uuid::Bytes::default();
        id.copy_from_slice(&b[LI_ID_AT..LI_CREATED_AT]);
        Ok(LogIdFile {
            id: Uuid::from_bytes(id),
            created_us: le_u64(b, LI_CREATED_AT),
        })
    }
}

// ---------------------------------------------------------------------------
// The session index of a segment: `<segment>.idx` (docs/format.md, "The
// session index"). Derived data: checked, versioned, never needed for
// correctness. A header, a directory of sessions sorted by id (one entry
// each, with its own CRC, so a lookup reads O(log sessions) entries), then
// each session's places.

/// Suffix of a segment's session index, after the segment's own name.
pub const INDEX_SUFFIX: &str = ".idx";
/// First bytes of a session index: `\x89LBIDX\r\n`.
pub const INDEX_MAGIC: [u8; 8] = *b"\x89LBIDX\r\n";
/// The version of the index layout this build writes and reads.
pub const INDEX_VERSION: u16 = 1;

// Index header layout, each offset built from the one before it.
const IX_MAGIC_AT: usize = 0;
const IX_VERSION_AT: usize = IX_MAGIC_AT + INDEX_MAGIC.len();
const IX_FLAGS_AT: usize = IX_VERSION_AT + size_of::<u16>();
const IX_SESSIONS_AT: usize = IX_FLAGS_AT + size_of::<u16>();
const IX_BASE_AT: usize = IX_SESSIONS_AT + size_of::<u32>();
const IX_CREATED_AT: usize = IX_BASE_AT + size_of::<u64>();
const IX_COVERED_AT: usize = IX_CREATED_AT + size_of::<u64>();
const IX_NEXT_LSN_AT: usize = IX_COVERED_AT + size_of::<u64>();
const IX_LAST_OFFSET_AT: usize = IX_NEXT_LSN_AT + size_of::<u64>();
const IX_LAST_CRC_AT: usize = IX_LAST_OFFSET_AT + size_of::<u64>();
const IX_HEADER_CRC_AT: usize = IX_LAST_CRC_AT + size_of::<u32>();
/// Bytes of the index header; the directory follows.
pub const INDEX_HEADER_LEN: usize = IX_HEADER_CRC_AT + size_of::<u32>();
// A directory entry: session, where its places are, how many, their CRC,
// and the entry's own CRC.
const IX_DIR_SESSION_AT: usize = 0;
const IX_DIR_PLACES_AT: usize = IX_DIR_SESSION_AT + size_of::<uuid::Bytes>();
const IX_DIR_COUNT_AT: usize = IX_DIR_PLACES_AT + size_of::<u64>();
const IX_DIR_PLACES_CRC_AT: usize = IX_DIR_COUNT_AT + size_of::<u32>();
const IX_DIR_CRC_AT: usize = IX_DIR_PLACES_CRC_AT + size_of::<u32>();
/// Bytes of one directory entry.
pub const INDEX_DIR_ENTRY_LEN: usize = IX_DIR_CRC_AT + size_of::<u32>();
/// Bytes of one record's place: its offset (u32) and LSN (u64).
const IX_PLACE_LEN: usize = size_of::<u32>() + size_of::<u64>();

const _: () = assert!(INDEX_HEADER_LEN == 64);
const _: () = assert!(INDEX_DIR_ENTRY_LEN == 36);

/// What a session index says of its segment as a whole (its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexHeader {
    /// How many sessions the directory lists.
    pub sessions: u32,
    /// The segment's base LSN.
    pub base_lsn: Lsn,
    /// The segment header's creation time: ties the index to that file.
    pub created_us: u64,
    /// The offset just past the last indexed record.
    pub covered: u64,
    /// The LSN after the last indexed record.
    pub next_lsn: Lsn,
    /// Where the last indexed record starts (0 if none)...
    pub last_offset: u64,
    /// ...and the CRC stored in its frame: a segment whose frame there is
    /// another (recovery cut it, the writer wrote anew) is not this
    /// index's.
    pub last_crc: u32,
}

impl IndexHeader {
    /// Parse and check an index header. Never panics.
    ///
    /// # Errors
    ///
    /// Why the bytes are not the header of a valid index of this version.
    pub fn decode(bytes: &[u8]) -> Result<IndexHeader, String> {
        let h = bytes
            .get(..INDEX_HEADER_LEN)
            .ok_or_else(|| format!("{} bytes: shorter than an index header", bytes.len()))?;
        if h[IX_MAGIC_AT..IX_VERSION_AT] != INDEX_MAGIC {
            return Err("not a session index (bad magic)".to_owned());
        }
        if crc32fast::hash(&h[..IX_HEADER_CRC_AT]) != le_u32(h, IX_HEADER_CRC_AT) {
            return Err("header checksum mismatch".to_owned());
        }
        let version = le_u16(h, IX_VERSION_AT);
        if version != INDEX_VERSION {
            return Err(format!(
                "version {version}, this build reads {INDEX_VERSION}"
            ));
        }
        Ok(IndexHeader {
            sessions: le_u32(h, IX_SESSIONS_AT),
            base_lsn: le_u64(h, IX_BASE_AT),
            created_us: le_u64(h, IX_CREATED_AT),
            covered: le_u64(h, IX_COVERED_AT),
            next_lsn: le_u64(h, IX_NEXT_LSN_AT),
            last_offset: le_u64(h, IX_LAST_OFFSET_AT),
            last_crc: le_u32(h, IX_LAST_CRC_AT),
        })
    }

    /// The byte range of directory entry `i`.
    #[must_use]
    pub fn dir_entry(i: usize) -> std::ops::Range<usize> {
        let at = INDEX_HEADER_LEN + i * INDEX_DIR_ENTRY_LEN;
        at..at + INDEX_DIR_ENTRY_LEN
    }
}

/// One directory entry of a session index, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDirEntry {
    /// The session.
    pub session: Uuid,
    /// Where its places start in the index file.
    pub places_at: u64,
    /// How many records it has in the segment.
    pub count: u32,
    /// The CRC-32 of its places.
    pub places_crc: u32,
}

impl IndexDirEntry {
    /// Parse and check a directory entry. Never panics.
    ///
    /// # Errors
    ///
    /// Why the bytes are not a valid entry.
    pub fn decode(bytes: &[u8]) -> Result<IndexDirEntry, String> {
        let e = bytes
            .get(..INDEX_DIR_ENTRY_LEN)
            .ok_or("truncated directory entry")?;
        if crc32fast::hash(&e[..IX_DIR_CRC_AT]) != le_u32(e, IX_DIR_CRC_AT) {
            return Err("directory entry checksum mismatch".to_owned());
        }
        let mut id = uuid::Bytes::default();
        id.copy_from_slice(&e[IX_DIR_SESSION_AT..IX_DIR_PLACES_AT]);
        Ok(IndexDirEntry {
            session: Uuid::from_bytes(id),
            places_at: le_u64(e, IX_DIR_PLACES_AT),
            count: le_u32(e, IX_DIR_COUNT_AT),
            places_crc: le_u32(e, IX_DIR_PLACES_CRC_AT),
        })
    }

    /// The byte range of its places in the index file.
    #[must_use]
    pub fn places_range(&self) -> std::ops::Range<usize> {
        let at = usize::try_from(self.places_at).unwrap_or(usize::MAX);
        let len = (self.count as usize).saturating_mul(IX_PLACE_LEN);
        at..at.saturating_add(len)
    }

    /// Check and parse its places (the bytes of [`places_range`](Self::places_range)).
    ///
    /// # Errors
    ///
    /// A checksum mismatch.
    pub fn decode_places(&self, bytes: &[u8]) -> Result<Vec<(u32, Lsn)>, String> {
        if bytes.len() != self.count as usize * IX_PLACE_LEN
            || crc32fast::hash(bytes) != self.places_crc
        {
            return Err("places checksum mismatch".to_owned());
        }
        Ok(bytes
            .chunks_exact(IX_PLACE_LEN)
            .map(|p| (le_u32(p, 0), le_u64(p, size_of::<u32>())))
            .collect())
    }
}

/// The session index of one segment, decoded whole: where each session's
/// records are. Covers the segment's records below `covered` (all of them
/// for a sealed segment; a prefix for a tail indexed at close).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionIndex {
    /// The header's fields (`sessions` is the length of `sessions`).
    pub header: IndexHeader,
    /// Each session's records, as (offset, LSN), in log order; sessions in
    /// id order.
    pub sessions: Vec<(Uuid, Vec<(u32, Lsn)>)>,
}

impl SessionIndex {
    /// The index's bytes: header, directory, places.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let places: usize = self.sessions.iter().map(|(_, p)| p.len()).sum();
        let dir_end = INDEX_HEADER_LEN + self.sessions.len() * INDEX_DIR_ENTRY_LEN;
        let mut out = Vec::with_capacity(dir_end + places * IX_PLACE_LEN);
        let h = &self.header;
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.sessions.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.base_lsn.to_le_bytes());
        out.extend_from_slice(&h.created_us.to_le_bytes());
        out.extend_from_slice(&h.covered.to_le_bytes());
        out.extend_from_slice(&h.next_lsn.to_le_bytes());
        out.extend_from_slice(&h.last_offset.to_le_bytes());
        out.extend_from_slice(&h.last_crc.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let mut blocks = Vec::with_capacity(places * IX_PLACE_LEN);
        for (session, places) in &self.sessions {
            let start = blocks.len();
            for (offset, lsn) in places {
                blocks.extend_from_slice(&offset.to_le_bytes());
                blocks.extend_from_slice(&lsn.to_le_bytes());
            }
            let entry_start = out.len();
            out.extend_from_slice(session.as_bytes());
            out.extend_from_slice(&((dir_end + start) as u64).to_le_bytes());
            out.extend_from_slice(&(places.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(&blocks[start..]).to_le_bytes());
            let crc = crc32fast::hash(&out[entry_start..]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        out.extend_from_slice(&blocks);
        out
    }

    /// Parse and check a whole index (what `verify` does). Never panics.
    ///
    /// # Errors
    ///
    /// Why the bytes are not a valid index of this version.
    pub fn decode(bytes: &[u8]) -> Result<SessionIndex, String> {
        let header = IndexHeader::decode(bytes)?;
        let mut sessions = Vec::new();
        let mut expected_at = INDEX_HEADER_LEN + header.sessions as usize * INDEX_DIR_ENTRY_LEN;
        let mut last: Option<Uuid> = None;
        for i in 0..header.sessions as usize {
            let entry = IndexDirEntry::decode(
                bytes
                    .get(IndexHeader::dir_entry(i))
                    .ok_or("truncated directory")?,
            )?;
            if last.is_some_and(|l| l >= entry.session) {
                return Err("directory out of order".to_owned());
            }
            last = Some(entry.session);
            let range = entry.places_range();
            if range.start != expected_at {
                return Err("places out of place".to_owned());
            }
            expected_at = range.end;
            let places = entry.decode_places(bytes.get(range).ok_or("truncated places")?)?;
            sessions.push((entry.session, places));
        }
        if expected_at != bytes.len() {
            return Err(format!(
                "{} bytes after the last places",
                bytes.len().saturating_sub(expected_at)
            ));
        }
        Ok(SessionIndex { header, sessions })
    }
}

/// A session's places in a segment: (offset, LSN) of each of its records.
pub type Places = Vec<(u32, Lsn)>;

/// The places of `session` in the index `bytes`, found by a binary search
/// of its directory: reads the header, O(log sessions) directory entries
/// and the session's own places, each checked by its CRC. `Ok(None)` if the
/// index does not list the session. Never panics.
///
/// # Errors
///
/// Why the index cannot be used.
pub fn find_places(bytes: &[u8], session: &Uuid) -> Result<(IndexHeader, Option<Places>), String> {
    let header = IndexHeader::decode(bytes)?;
    let (mut lo, mut hi) = (0usize, header.sessions as usize);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let entry = IndexDirEntry::decode(
            bytes
                .get(IndexHeader::dir_entry(mid))
                .ok_or("truncated directory")?,
        )?;
        match entry.session.cmp(session) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let places = entry
                    .decode_places(bytes.get(entry.places_range()).ok_or("truncated places")?)?;
                return Ok((header, Some(places)));
            }
        }
    }
    Ok((header, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The byte tables of `docs/format.md`, checked byte by byte.
    #[test]
    fn golden_layout() {
        let header = SegmentHeader {
            codec_id: 1,
            base_lsn: 0x0102,
            created_us: 0x0a0b_0c0d,
            key_id: None,
        };
        let h = header.encode();
        assert_eq!(
            hex(&h),
            concat!(
                "894c4f47424b0d0a", // magic
                "0100",             // format_version 1
                "0100",             // codec_id 1
                "00000000",         // flags
                "0201000000000000", // base_lsn 0x0102
                "0d0c0b0a00000000", // created_us
                "00000000",         // reserved
                "792fdf30",         // header_crc of bytes 0..36
            )
        );
        assert_eq!(SegmentHeader::decode(&h), Ok(header));
        // An encrypted segment: flag 1, the key id in the reserved field.
        let encrypted = SegmentHeader {
            key_id: Some(0xdead_beef),
            ..header
        };
        let e = encrypted.encode();
        let eh = hex(&e);
        assert_eq!(&eh[24..32], "01000000", "flags: encrypted");
        assert_eq!(&eh[64..72], "efbeadde", "key id");
        assert_eq!(SegmentHeader::decode(&e), Ok(encrypted));
        // Any other flag is refused.
        let mut other = h;
        other[12] = 2;
        let crc = crc32fast::hash(&other[..HEADER_CRC_AT]);
        other[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&other),
            Err(HeaderError::Flags { found: 2 })
        );

        let mut buf = Vec::new();
        let fh = FrameHeader {
            lsn: 7,
            sync_mark: 5,
            timestamp_us: 0x1122_3344,
            session: Uuid::from_u128(0x00112233_4455_6677_8899_aabbccddeeff),
        };
        encode_frame(&mut buf, &fh, &[0x0f]);
        assert_eq!(
            hex(&buf),
            concat!(
                "01000000",                         // payload_len 1
                "b4ecd452",                         // crc of bytes 8..49
                "0700000000000000",                 // lsn 7
                "0500000000000000",                 // sync_mark 5
                "4433221100000000",                 // timestamp_us
                "00112233445566778899aabbccddeeff", // session id
                "0f",                               // payload (SessionEvent::Done)
            )
        );
        assert_eq!(
            decode_frame(&buf),
            Frame::Valid {
                header: fh,
                payload: &[0x0f],
                len: 49
            }
        );
    }

    #[test]
    fn golden_session_index() {
        let index = SessionIndex {
            header: IndexHeader {
                sessions: 2,
                base_lsn: 7,
                created_us: 0x0102,
                covered: 200,
                next_lsn: 10,
                last_offset: 152,
                last_crc: 0xdead_beef,
            },
            sessions: vec![
                (Uuid::from_u128(1), vec![(40, 7), (152, 9)]),
                (Uuid::from_u128(2), vec![(96, 8)]),
            ],
        };
        let b = index.encode();
        assert_eq!(
            hex(&b),
            concat!(
                "894c424944580d0a",                 // magic "\x89LBIDX\r\n"
                "0100",                             // version 1
                "0000",                             // flags
                "02000000",                         // 2 sessions
                "0700000000000000",                 // base LSN 7
                "0201000000000000",                 // created_us 0x0102
                "c800000000000000",                 // covered: 200 bytes
                "0a00000000000000",                 // next LSN 10
                "9800000000000000",                 // last record at 152
                "efbeadde",                         // its CRC field
                "c90f7fca",                         // header CRC
                "00000000000000000000000000000001", // directory: session 1
                "8800000000000000",                 //   places at 136
                "02000000",                         //   2 records
                "be41c21b",                         //   places CRC
                "56493b0c",                         //   entry CRC
                "00000000000000000000000000000002", // session 2
                "a000000000000000",                 //   places at 160
                "01000000",                         //   1 record
                "d2b16280",                         //   places CRC
                "4d3cecb8",                         //   entry CRC
                "280000000700000000000000",         // session 1: offset 40, LSN 7
                "980000000900000000000000",         //   offset 152, LSN 9
                "600000000800000000000000",         // session 2: offset 96, LSN 8
            )
        );
        assert_eq!(SessionIndex::decode(&b), Ok(index.clone()));
        let two = Uuid::from_u128(2);
        assert_eq!(find_places(&b, &two).map(|p| p.1), Ok(Some(vec![(96, 8)])));
        assert_eq!(find_places(&b, &Uuid::from_u128(3)).map(|p| p.1), Ok(None));
        // Any flipped byte, any cut: refused, never misread.
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(SessionIndex::decode(&bad).is_err(), "byte {i}");
            assert!(SessionIndex::decode(&b[..i]).is_err(), "cut at {i}");
            // A lookup checks what it reads: never a wrong answer.
            if let Ok((_, Some(places))) = find_places(&bad, &two) {
                assert_eq!(places, [(96, 8)], "byte {i}");
            }
        }
    }

    #[test]
    fn frame_crc_is_the_stored_crc() {
        let header = FrameHeader {
            lsn: 9,
            sync_mark: 4,
            timestamp_us: 77,
            session: Uuid::from_u128(5),
        };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &header, b"payload");
        let stored = FrameFields::parse(&buf).unwrap().crc;
        assert_eq!(frame_crc(&header, b"payload"), stored);
        assert_ne!(frame_crc(&header, b"payloaD"), stored);
    }

    #[test]
    fn golden_watermark() {
        let w = Watermark {
            durable_end: 0x0102,
            poisoned: true,
            boot_id: *b"0123456789abcdef",
        };
        let b = w.encode();
        assert_eq!(
            hex(&b),
            concat!(
                "4c42574d",                         // magic "LBWM"
                "01000000",                         // flags: poisoned
                "0201000000000000",                 // durable_end 0x0102
                "30313233343536373839616263646566", // boot_id
                "446aaf1a",                         // crc of bytes 0..32
            )
        );
        assert_eq!(Watermark::decode(&b), WatermarkState::Valid(w));
        assert_eq!(Watermark::decode(&[]), WatermarkState::Absent);
        assert_eq!(Watermark::decode(&b[..35]), WatermarkState::Invalid);
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert_eq!(Watermark::decode(&bad), WatermarkState::Invalid, "byte {i}");
        }
    }

    #[test]
    fn golden_log_id() {
        let f = LogIdFile {
            id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
            created_us: 0x0102,
        };
        let b = f.encode();
        assert_eq!(
            hex(&b),
            concat!(
                "894c424c49440d0a",                 // magic "\x89LBLID\r\n"
                "0100",                             // version 1
                "0000",                             // flags 0
                "00112233445566778899aabbccddeeff", // the id, RFC 4122 byte order
                "0201000000000000",                 // created_us 0x0102
                "bcbf648f",                         // crc of bytes 0..36
            )
        );
        assert_eq!(LogIdFile::decode(&b), Ok(f));
        assert_eq!(LogIdFile::decode(&b[..39]), Err(LogIdError::Short(39)));
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(LogIdFile::decode(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn segment_names_sort_and_parse() {
        assert_eq!(segment_file_name(1), "00000000000000000001.wal");
        assert_eq!(parse_segment_file_name("00000000000000000001.wal"), Some(1));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert!(segment_file_name(9) < segment_file_name(10));
        for bad in [
            "1.wal",
            "0000000000000000000a.wal",
            "00000000000000000001.wal.tmp",
            "x",
            "99999999999999999999.wal",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_checks() {
        let good = SegmentHeader {
            codec_id: 1,
            base_lsn: 1,
            created_us: 2,
            key_id: None,
        }
        .encode();
        assert_eq!(
            SegmentHeader::decode(&good[..39]),
            Err(HeaderError::Short { len: 39 })
        );
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::Magic));
        for i in 8..SEGMENT_HEADER_LEN {
            let mut bad = good;
            bad[i] ^= 1;
            assert_eq!(
                SegmentHeader::decode(&bad),
                Err(HeaderError::Checksum),
                "byte {i}"
            );
        }
    }

    #[test]
    fn frame_checks() {
        assert_eq!(decode_frame(&[]), Frame::Zero);
        assert_eq!(decode_frame(&[0; 100]), Frame::Zero);
        assert_eq!(decode_frame(&[0; 10]), Frame::Zero);
        let mut buf = Vec::new();
        let fh = FrameHeader {
            lsn: 1,
            sync_mark: 1,
            timestamp_us: 3,
            session: Uuid::nil(),
        };
        encode_frame(&mut buf, &fh, b"payload");
        for cut in 1..buf.len() {
            assert!(
                matches!(
                    decode_frame(&buf[..cut]),
                    Frame::Invalid(FrameError::Truncated { .. })
                ),
                "cut {cut}"
            );
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    matches!(decode_frame(&bad), Frame::Invalid(_)),
                    "flip byte {i} bit {bit}"
                );
            }
        }
        // A placeholder: the flag, the CRC over the domain first; the same
        // frame without the flag, or with the plain CRC, does not check.
        let mut ph = Vec::new();
        let header = FrameHeader {
            lsn: 7,
            sync_mark: 6,
            timestamp_us: 5,
            session: Uuid::from_u128(9),
        };
        encode_placeholder(&mut ph, &header, &REDACTED_CLEAR_PAYLOAD);
        assert!(is_redacted(&ph));
        assert_eq!(&ph[..4], &(1u32 | REDACTED_FLAG).to_le_bytes());
        assert!(
            matches!(decode_frame(&ph), Frame::Valid { header: h, payload, len: 49 } if h == header && payload == [0])
        );
        let mut unflagged = ph.clone();
        unflagged[3] &= 0x7f;
        assert!(matches!(
            decode_frame(&unflagged),
            Frame::Invalid(FrameError::Checksum { .. })
        ));
        let mut plain = Vec::new();
        encode_frame(&mut plain, &header, &REDACTED_CLEAR_PAYLOAD);
        plain[..4].copy_from_slice(&ph[..4]);
        assert!(matches!(
            decode_frame(&plain),
            Frame::Invalid(FrameError::Checksum { .. })
        ));
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_frame(&huge),
            Frame::Invalid(FrameError::Length { len: u32::MAX })
        );
    }
}
