//! `open_segment`: arbitrary bytes as the tail segment of a log, read by a
//! [`Reader`] and recovered by [`Wal::open_with_fs`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook_bus::{SessionEvent, codec};
use logbook_wal::format::{
    Frame, FrameHeader, Lsn, RECORD_HEADER_LEN, SegmentHeader, decode_frame, encode_frame,
    segment_file_name,
};
use logbook_wal::fs::Fs;
use logbook_wal::sim::SimFs;
use logbook_wal::{MIN_SEGMENT_SIZE, Reader, Wal, WalError, WalOptions};
use uuid::Uuid;

/// The log's directory in the simulated file system.
const DIR: &str = "/log";

/// Mode bit: prepend a valid segment header (for the chosen base LSN) to
/// the fuzzed bytes; without it, the fuzzed bytes are the whole file.
pub(crate) const WITH_HEADER: u8 = 1;
/// Mode bit: put a sealed, valid segment of [`PREFIX_RECORDS`] records
/// before the fuzzed one, which then continues at LSN `PREFIX_RECORDS + 1`.
pub(crate) const WITH_SEALED: u8 = 2;
/// Records in the sealed segment.
pub(crate) const PREFIX_RECORDS: u64 = 3;
/// Base LSNs chosen by bits 2–3 of the mode byte (without a sealed
/// segment). The last one leaves room for a single record.
pub(crate) const BASES: [Lsn; 4] = [1, 2, 1 << 40, u64::MAX - 1];

/// The session of the record appended after recovery.
const APPENDER: Uuid = Uuid::from_u128(0x00a9_9e17_de12);

/// The base LSN and file name of the fuzzed (tail) segment for `mode`.
pub(crate) fn tail_base(mode: u8) -> Lsn {
    if mode & WITH_SEALED != 0 {
        PREFIX_RECORDS + 1
    } else {
        BASES[usize::from((mode >> 2) & 3)]
    }
}

/// A segment header for `base_lsn`.
pub(crate) fn header(base_lsn: Lsn) -> [u8; logbook_wal::format::SEGMENT_HEADER_LEN] {
    SegmentHeader {
        codec_id: codec::CODEC_ID,
        base_lsn,
        created_us: 1_700_000_000_000_000,
        key_id: None,
    }
    .encode()
}

/// Append the frame of a real event record.
pub(crate) fn push_record(buf: &mut Vec<u8>, lsn: Lsn, sync_mark: Lsn, event: &SessionEvent) {
    let payload = codec::encode(event).expect("events encode");
    let header = FrameHeader {
        lsn,
        sync_mark,
        timestamp_us: 1_700_000_000_000_000_u64.wrapping_add(lsn),
        session: Uuid::from_u128(u128::from(lsn % 3)),
    };
    encode_frame(buf, &header, &payload);
}

/// The sealed segment put before the fuzzed one under [`WITH_SEALED`].
fn sealed_segment() -> Vec<u8> {
    let mut buf = header(1).to_vec();
    for lsn in 1..=PREFIX_RECORDS {
        push_record(
            &mut buf,
            lsn,
            lsn,
            &SessionEvent::UserMessage(format!("sealed {lsn}")),
        );
    }
    buf
}

fn path(base: Lsn) -> PathBuf {
    Path::new(DIR).join(segment_file_name(base))
}

/// One record a reader returned, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    lsn: Lsn,
    sync_mark: Lsn,
    session: Uuid,
    timestamp_us: u64,
    payload: Vec<u8>,
    segment: PathBuf,
    offset: u64,
}

/// How a reader's pass over the log went.
#[derive(Debug, Default)]
struct Pass {
    /// Records before the first error or end, in order.
    leading: Vec<Seen>,
    /// What ended the leading run: `None` for the end of the log.
    first_error: Option<WalError>,
    /// Every error returned.
    errors: usize,
    /// Whether the reader reported damage at the end of the tail.
    tail_damage: bool,
}

/// Read the whole log, checking every record against the file's bytes.
fn read_log(fs: &SimFs, files: &[(PathBuf, Vec<u8>)], total: usize) -> Pass {
    let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), DIR)
        .expect("a directory holding a segment opens for reading");
    // Every step returns a record (at least a frame header of bytes) or an
    // error followed by a resynchronisation past it: more steps than this
    // is a reader going round in circles.
    let bound = 2 * (total / RECORD_HEADER_LEN + files.len()) + 16;
    let mut pass = Pass::default();
    let mut last: Option<(Lsn, PathBuf, u64)> = None;
    let mut clean = true;
    let first_base = tail_or_first_base(files);
    for step in 0.. {
        assert!(step <= bound, "the reader did not stop after {bound} steps");
        let seen = match reader.next_ref() {
            None => break,
            Some(Err(e)) => {
                assert!(e.is_corruption(), "a reader of a simulated log failed: {e}");
                pass.errors += 1;
                if clean {
                    pass.first_error = Some(e);
                }
                clean = false;
                continue;
            }
            Some(Ok(r)) => Seen {
                lsn: r.lsn,
                sync_mark: r.sync_mark,
                session: r.session,
                timestamp_us: r.timestamp_us,
                payload: r.payload.to_vec(),
                segment: r.segment.to_path_buf(),
                offset: r.offset,
            },
        };
        check_against_file(&seen, files);
        match &last {
            None if clean => assert_eq!(seen.lsn, first_base, "the first record"),
            None => {}
            Some((prev, _, _)) if clean => {
                assert_eq!(Some(seen.lsn), prev.checked_add(1), "LSNs are gapless");
            }
            Some((prev, _, _)) => assert!(seen.lsn > *prev, "LSNs increase across errors"),
        }
        if let Some((_, seg, off)) = &last {
            if *seg == seen.segment {
                assert!(seen.offset > *off, "records move forward in a segment");
            }
        }
        last = Some((seen.lsn, seen.segment.clone(), seen.offset));
        if clean {
            pass.leading.push(seen);
        }
    }
    pass.tail_damage = reader.tail_damage().is_some();
    pass
}

fn tail_or_first_base(files: &[(PathBuf, Vec<u8>)]) -> Lsn {
    files
        .first()
        .and_then(|(p, _)| p.file_name())
        .and_then(|n| logbook_wal::format::parse_segment_file_name(&n.to_string_lossy()))
        .unwrap_or(1)
}

/// The record, re-encoded from what the reader returned, is the file's
/// bytes at its offset: a CRC-valid frame with exactly those fields.
fn check_against_file(seen: &Seen, files: &[(PathBuf, Vec<u8>)]) {
    let (_, bytes) = files
        .iter()
        .find(|(p, _)| *p == seen.segment)
        .expect("a record of a file in the log");
    let at = usize::try_from(seen.offset).expect("an offset in memory");
    assert!(
        at >= logbook_wal::format::SEGMENT_HEADER_LEN,
        "record inside the header"
    );
    let header = FrameHeader {
        lsn: seen.lsn,
        sync_mark: seen.sync_mark,
        timestamp_us: seen.timestamp_us,
        session: seen.session,
    };
    let mut again = Vec::new();
    encode_frame(&mut again, &header, &seen.payload);
    assert_eq!(
        bytes.get(at..at + again.len()),
        Some(again.as_slice()),
        "the record re-encodes to its file's bytes (so its CRC holds)"
    );
    assert!(
        matches!(decode_frame(&bytes[at..]), Frame::Valid { len, .. } if len == again.len()),
        "a valid frame of its own length"
    );
}

/// `data[0]` is a mode byte: bit 0 prepends a valid segment header to the
/// rest; bit 1 puts a sealed segment of 3 valid records before it, which it
/// then continues at LSN 4; otherwise bits 2–3 choose its base LSN among 1,
/// 2, 2^40 and `u64::MAX - 1`. The rest is the tail segment's bytes.
///
/// 1. A [`Reader`] goes through the log to its end (in bounded steps): every
///    record it returns is a CRC-valid frame of its file at its offset,
///    LSNs start at the base and go up by one until the first error and
///    only up after it, and every error is a corruption error.
/// 2. [`Wal::open_with_fs`] (default recovery mode, torn tails cut) either
///    fails with a corruption error, or keeps exactly the records the reader
///    returned before any problem: then the reader returned no error at
///    all, `next_lsn` is one past the last of them, a new reader returns
///    exactly them with no damage, and an append gets `next_lsn` and
///    survives a power cut and another recovery. A reader that reported
///    mid-log corruption (damage that later records vouch was durable)
///    means recovery must refuse to open.
///
/// # Panics
///
/// When an invariant breaks.
pub fn open_segment(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let base = tail_base(mode);
    let mut tail = Vec::with_capacity(rest.len() + 40);
    if mode & WITH_HEADER != 0 {
        tail.extend_from_slice(&header(base));
    }
    tail.extend_from_slice(rest);
    let mut files = Vec::new();
    if mode & WITH_SEALED != 0 {
        files.push((path(1), sealed_segment()));
    }
    let tail_path = path(base);
    files.push((tail_path.clone(), tail));
    let total = files.iter().map(|(_, b)| b.len()).sum();

    let fs = SimFs::new(u64::from(mode));
    fs.create_dir_all(Path::new(DIR)).expect("mkdir");
    for (p, bytes) in &files {
        fs.set_file_bytes(p, bytes.clone());
    }
    // The log's id (a writer never mints one for a log with segments).
    fs.set_file_bytes(
        Path::new(DIR).join(logbook_wal::format::LOG_ID_FILE),
        logbook_wal::format::LogIdFile {
            id: Uuid::from_u128(u128::from(mode) + 1),
            created_us: 1,
        }
        .encode()
        .to_vec(),
    );

    // 1. Read.
    let pass = read_log(&fs, &files, total);
    let tail_records: Vec<&Seen> = pass
        .leading
        .iter()
        .filter(|s| s.segment == tail_path)
        .collect();

    // 2. Recover.
    let opts = WalOptions {
        segment_size: MIN_SEGMENT_SIZE,
        ..WalOptions::default()
    };
    let wal = match Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts.clone()) {
        Ok(wal) => wal,
        Err(e) => {
            assert!(e.is_corruption(), "open failed on a simulated log: {e}");
            return;
        }
    };
    assert!(
        pass.first_error.is_none(),
        "recovery opened a log a reader found damaged: {:?}",
        pass.first_error
    );
    assert_eq!(pass.errors, 0);
    let report = wal.recovery().clone();
    assert_eq!(report.tail.as_ref(), Some(&tail_path));
    assert_eq!(report.tail_records, tail_records.len() as u64, "{report:?}");
    let next = base + tail_records.len() as u64;
    assert_eq!(report.next_lsn, next, "{report:?}");
    assert_eq!(wal.last_lsn(), next - 1);
    assert_eq!(wal.durable_lsn(), next - 1);

    // What recovery kept, read back: exactly the leading records.
    let kept: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|(p, _)| (p.clone(), fs.file_bytes(p).expect("segment still there")))
        .collect();
    let total = kept.iter().map(|(_, b)| b.len()).sum();
    let again = read_log(&fs, &kept, total);
    assert_eq!(again.errors, 0);
    assert!(!again.tail_damage, "damage left after recovery");
    assert_eq!(again.leading, pass.leading, "recovery kept other records");

    // Appending works, and survives a power cut and another recovery.
    if next == u64::MAX {
        return; // the LSN space is used up: nothing more to check
    }
    let lsn = wal
        .append_raw(APPENDER, b"after recovery")
        .expect("append after recovery");
    assert_eq!(lsn, next);
    fs.power_cut();
    drop(wal);
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts).expect("reopen after append");
    assert_eq!(wal.recovery().next_lsn, next + 1);
    drop(wal);
    let mut reader = Reader::open_with_fs(Arc::new(fs), DIR).expect("reader");
    let mut last = None;
    while let Some(r) = reader.next_ref() {
        let r = r.expect("no error after recovery");
        last = Some((r.lsn, r.session, r.payload.to_vec()));
    }
    assert_eq!(last, Some((next, APPENDER, b"after recovery".to_vec())));
}
