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
}

impl SegmentHeader {
    /// The header's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        h[MAGIC_AT..VERSION_AT].copy_from_slice(&SEGMENT_MAGIC);
        h[VERSION_AT..CODEC_AT].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[CODEC_AT..FLAGS_AT].copy_from_slice(&self.codec_id.to_le_bytes());
        h[FLAGS_AT..BASE_LSN_AT].copy_from_slice(&0u32.to_le_bytes());
        h[BASE_LSN_AT..CREATED_AT].copy_from_slice(&self.base_lsn.to_le_bytes());
        h[CREATED_AT..RESERVED_AT].copy_from_slice(&self.created_us.to_le_bytes());
        h[RESERVED_AT..HEADER_CRC_AT].copy_from_slice(&0u32.to_le_bytes());
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
        if flags != 0 {
            return Err(HeaderError::Flags { found: flags });
        }
        Ok(SegmentHeader {
            codec_id: le_u16(h, CODEC_AT),
            base_lsn: le_u64(h, BASE_LSN_AT),
            created_us: le_u64(h, CREATED_AT),
        })
    }
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

/// Append the frame of one record to `buf`.
///
/// The caller has checked `1 <= payload.len() <= MAX_PAYLOAD_LEN`.
pub fn encode_frame(buf: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_PAYLOAD_LEN);
    let start = buf.len();
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.reserve(frame_len(payload.len()));
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // CRC, filled below
    buf.extend_from_slice(&header.lsn.to_le_bytes());
    buf.extend_from_slice(&header.sync_mark.to_le_bytes());
    buf.extend_from_slice(&header.timestamp_us.to_le_bytes());
    buf.extend_from_slice(header.session.as_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[start + LSN_AT..]);
    buf[start + CRC_AT..start + LSN_AT].copy_from_slice(&crc.to_le_bytes());
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
    let len = le_u32(head, LEN_AT);
    if len == 0 && head.iter().all(|&b| b == 0) {
        return Frame::Zero;
    }
    let payload_len = len as usize;
    if len == 0 || payload_len > MAX_PAYLOAD_LEN {
        return Frame::Invalid(FrameError::Length { len });
    }
    let total = frame_len(payload_len);
    let Some(frame) = bytes.get(..total) else {
        return Frame::Invalid(FrameError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    };
    let stored = le_u32(frame, CRC_AT);
    let computed = crc32fast::hash(frame.get(LSN_AT..).unwrap_or_default());
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
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_frame(&huge),
            Frame::Invalid(FrameError::Length { len: u32::MAX })
        );
    }
}
