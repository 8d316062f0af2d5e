//! Walking the frames of one segment's bytes: shared by recovery, readers
//! and `verify`, so that every one of them applies the same validity rules
//! (`docs/format.md`, "What makes a record valid").

use crate::format::{
    Frame, FrameError, FrameHeader, Lsn, MAX_LSN, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, decode_frame,
    peek_lsn,
};

/// What lies at one offset of a segment, where LSN `expected` is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// The expected record.
    Record {
        header: FrameHeader,
        payload: &'a [u8],
        len: usize,
    },
    /// The clean end: end of file or zeros.
    End,
    /// Something else.
    Bad(Problem),
}

/// Why the bytes where a record was due are not that record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Not a valid frame at all.
    Frame(FrameError),
    /// A valid frame, but with another LSN.
    Sequence { found: Lsn },
}

/// Decode what is at `bytes[offset..]`, expecting LSN `expected`.
pub(crate) fn step(bytes: &[u8], offset: usize, expected: Lsn) -> Step<'_> {
    let rest = bytes.get(offset..).unwrap_or_default();
    match decode_frame(rest) {
        Frame::Zero => Step::End,
        Frame::Invalid(e) => Step::Bad(Problem::Frame(e)),
        Frame::Valid { header, .. } if header.lsn != expected || header.lsn > MAX_LSN => {
            Step::Bad(Problem::Sequence { found: header.lsn })
        }
        Frame::Valid {
            header,
            payload,
            len,
        } => Step::Record {
            header,
            payload,
            len,
        },
    }
}

/// Bytes compared at a time by [`first_nonzero`] and [`last_nonzero`].
const WORD: usize = 16;

fn word_is_zero(w: &[u8]) -> bool {
    let mut a = [0u8; WORD];
    a.copy_from_slice(w);
    // Only compared with zero: the byte order does not matter.
    u128::from_le_bytes(a) == 0
}

/// The offset of the first non-zero byte. A word at a time: the zeroed
/// tail of a preallocated (or sparse) segment is scanned on every open.
pub(crate) fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let words = bytes.chunks_exact(WORD);
    let rest = words.remainder();
    let skip = words.take_while(|w| word_is_zero(w)).count() * WORD;
    let tail = bytes.get(skip..).unwrap_or(rest);
    tail.iter().position(|&b| b != 0).map(|p| skip + p)
}

/// The offset of the last non-zero byte, a word at a time.
pub(crate) fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let words = bytes.len() / WORD * WORD;
    if let Some(p) = bytes
        .get(words..)
        .and_then(|r| r.iter().rposition(|&b| b != 0))
    {
        return Some(words + p);
    }
    let zero_words = bytes
        .get(..words)
        .unwrap_or_default()
        .chunks_exact(WORD)
        .rev()
        .take_while(|w| word_is_zero(w))
        .count();
    let end = words - zero_words * WORD;
    bytes.get(..end)?.iter().rposition(|&b| b != 0)
}

/// A CRC-valid frame found by [`find_next_valid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) offset: usize,
    pub(crate) header: FrameHeader,
    pub(crate) len: usize,
}

/// The first offset at or after `from` holding a CRC-valid frame whose LSN
/// is above `after`. Cheap checks (plausible length, plausible LSN) run
/// before the CRC, and runs of zeros are skipped whole, so scanning the
/// zeroed tail of a preallocated segment is fast.
pub(crate) fn find_next_valid(bytes: &[u8], from: usize, after: Lsn) -> Option<Found> {
    let mut at = from;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.first() == Some(&0) {
            // The length field of a frame is non-zero, so a frame's first
            // non-zero byte is within its first 4: skip the zero run.
            match first_nonzero(rest) {
                None => return None,
                Some(nz) if nz > 3 => {
                    at += nz - 3;
                    continue;
                }
                Some(_) => {}
            }
        }
        let plausible_lsn = peek_lsn(rest)
            .is_some_and(|l| l > after && l <= MAX_LSN && l - after <= (bytes.len() as u64));
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if plausible_lsn && len != 0 && len <= MAX_PAYLOAD_LEN {
            if let Frame::Valid { header, len, .. } = decode_frame(rest) {
                return Some(Found {
                    offset: at,
                    header,
                    len,
                });
            }
        }
        at += 1;
    }
    None
}

/// The highest sync mark among the consecutive valid records from
/// `offset` on (where LSN `expected` is due): every LSN below it was
/// durable before the record carrying it was written. 0 if none.
pub(crate) fn max_sync_mark(bytes: &[u8], offset: usize, expected: Lsn) -> Lsn {
    let (mut at, mut lsn, mut max) = (offset, expected, 0);
    while let Step::Record { header, len, .. } = step(bytes, at, lsn) {
        max = max.max(header.sync_mark);
        at += len;
        lsn += 1;
    }
    max
}

/// What follows the first bad frame of a segment (see `docs/format.md`,
/// "Torn tails and the sync mark").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AfterDamage {
    /// CRC-valid frames with an LSN at or above the damaged one.
    pub(crate) valid_frames: u64,
    /// The first of them.
    pub(crate) first: Option<Found>,
    /// The first of them that proves the damaged LSN had been durable
    /// (its `sync_mark` is above it).
    pub(crate) vouching: Option<usize>,
}

/// Survey the bytes after damage at `from`, where LSN `lsn` was due.
pub(crate) fn survey_after_damage(bytes: &[u8], from: usize, lsn: Lsn) -> AfterDamage {
    let mut out = AfterDamage::default();
    let mut at = from;
    while let Some(found) = find_next_valid(bytes, at, lsn.saturating_sub(1)) {
        out.valid_frames += 1;
        out.first.get_or_insert(found);
        if found.header.sync_mark > lsn && out.vouching.is_none() {
            out.vouching = Some(found.offset);
        }
        at = found.offset + found.len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_frame;
    use uuid::Uuid;

    fn frames(lsns: &[(Lsn, Lsn)]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for &(lsn, sync_mark) in lsns {
            offsets.push(buf.len());
            let h = FrameHeader {
                lsn,
                sync_mark,
                timestamp_us: 0,
                session: Uuid::nil(),
            };
            encode_frame(&mut buf, &h, format!("payload {lsn}").as_bytes());
        }
        (buf, offsets)
    }

    #[test]
    fn walks_records_then_end() {
        let (mut buf, offs) = frames(&[(1, 1), (2, 1)]);
        buf.extend_from_slice(&[0; 100]);
        assert!(matches!(step(&buf, offs[0], 1), Step::Record { header, .. } if header.lsn == 1));
        assert!(matches!(step(&buf, offs[1], 2), Step::Record { .. }));
        assert!(matches!(
            step(&buf, offs[1], 3),
            Step::Bad(Problem::Sequence { found: 2 })
        ));
        let end = offs[1] + 48 + 9;
        assert_eq!(step(&buf, end, 3), Step::End);
        assert_eq!(step(&buf, buf.len(), 3), Step::End);
    }

    #[test]
    fn finds_the_next_valid_frame_past_garbage_and_zeros() {
        let (tail, _) = frames(&[(5, 5)]);
        let mut buf = vec![0xAB; 37];
        buf.extend_from_slice(&[0; 5000]);
        let at = buf.len();
        buf.extend_from_slice(&tail);
        let found = find_next_valid(&buf, 0, 4).unwrap();
        assert_eq!(found.offset, at);
        assert_eq!(found.header.lsn, 5);
        assert_eq!(
            find_next_valid(&buf, 0, 5),
            None,
            "LSN must be above `after`"
        );
    }

    #[test]
    fn survey_tells_torn_tails_from_mid_log_damage() {
        // LSN 3 damaged; 4 was written in the same batch (sync mark 3): torn tail.
        let (mut buf, offs) = frames(&[(3, 3), (4, 3)]);
        buf[offs[0] + 50] ^= 0xff;
        let s = survey_after_damage(&buf, offs[0], 3);
        assert_eq!(
            (s.valid_frames, s.first.map(|f| f.offset), s.vouching),
            (1, Some(offs[1]), None)
        );
        // 4 was written after 3 was durable (sync mark 4): mid-log damage.
        let (mut buf, offs) = frames(&[(3, 3), (4, 4)]);
        buf[offs[0] + 50] ^= 0xff;
        let s = survey_after_damage(&buf, offs[0], 3);
        assert_eq!(s.vouching, Some(offs[1]));
    }

    #[test]
    fn nonzero_scans_agree_with_the_plain_ones() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100] {
            for at in 0..len {
                let mut b = vec![0u8; len];
                b[at] = 7;
                assert_eq!(first_nonzero(&b), Some(at), "len {len} at {at}");
                assert_eq!(last_nonzero(&b), Some(at), "len {len} at {at}");
                if at + 3 < len {
                    b[at + 3] = 1;
                    assert_eq!(first_nonzero(&b), Some(at));
                    assert_eq!(last_nonzero(&b), Some(at + 3));
                }
            }
            assert_eq!(first_nonzero(&vec![0; len]), None);
            assert_eq!(last_nonzero(&vec![0; len]), None);
        }
    }
}
