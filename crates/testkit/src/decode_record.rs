//! `decode_record`: arbitrary bytes as a record frame (and as a segment
//! header).

use logbook_wal::format::{
    Frame, FrameError, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, REDACTED_CRC_DOMAIN, REDACTED_FLAG,
    SEGMENT_HEADER_LEN, SegmentHeader, decode_frame, encode_frame, encode_placeholder, frame_len,
    is_redacted,
};

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The payload length in the length field at `bytes[0]`: the field without
/// its [`REDACTED_FLAG`] (a redacted placeholder's marker).
fn payload_len(bytes: &[u8]) -> usize {
    (le_u32(bytes, 0) & !REDACTED_FLAG) as usize
}

/// Decode `data` as the frame at the start of a segment's records, and as a
/// segment header.
///
/// Asserts that decoding never panics and that:
///
/// * a `Valid` frame's payload is 1 to [`MAX_PAYLOAD_LEN`] bytes, its length
///   is the header plus the payload and fits in `data`, and
///   `encode_frame(header, payload)` (`encode_placeholder` for a frame whose
///   length field has the redacted flag) gives exactly `data[..len]` (so
///   the CRC holds and nothing was read from outside the frame);
/// * `Zero` means the frame header (or all of a shorter `data`) is zeros;
/// * each `Invalid` reason is true of the bytes: a truncated frame really
///   needs more than there is, a bad length really is 0 or above the limit
///   (no allocation is ever sized by it), a checksum mismatch really has
///   the stored and computed CRCs it reports;
/// * a header that decodes re-encodes to the same bytes, except for the
///   reserved field that readers ignore.
///
/// # Panics
///
/// When an invariant breaks.
pub fn decode_record(data: &[u8]) {
    match decode_frame(data) {
        Frame::Valid {
            header,
            payload,
            len,
        } => {
            assert!(
                !payload.is_empty() && payload.len() <= MAX_PAYLOAD_LEN,
                "payload of {} bytes accepted",
                payload.len()
            );
            assert_eq!(len, frame_len(payload.len()));
            assert!(len <= data.len(), "frame of {len} bytes in {}", data.len());
            assert_eq!(payload_len(data), payload.len());
            let mut again = Vec::with_capacity(len);
            if is_redacted(data) {
                encode_placeholder(&mut again, &header, payload);
            } else {
                encode_frame(&mut again, &header, payload);
            }
            assert_eq!(
                again,
                data[..len],
                "a valid frame must re-encode to its bytes"
            );
            // The payload is the frame's, not a copy from elsewhere.
            assert_eq!(payload, &data[RECORD_HEADER_LEN..len]);
        }
        Frame::Zero => {
            let head = &data[..data.len().min(RECORD_HEADER_LEN)];
            assert!(
                head.iter().all(|&b| b == 0),
                "non-zero bytes taken for zeros"
            );
        }
        Frame::Invalid(FrameError::Truncated { needed, available }) => {
            assert_eq!(available, data.len());
            assert!(needed > available, "needs {needed}, has {available}");
            if data.len() >= RECORD_HEADER_LEN {
                assert_eq!(needed, frame_len(payload_len(data)));
            }
        }
        Frame::Invalid(FrameError::Length { len }) => {
            assert!(data.len() >= RECORD_HEADER_LEN);
            assert_eq!(len, le_u32(data, 0));
            let payload = payload_len(data);
            assert!(
                payload == 0 || payload > MAX_PAYLOAD_LEN,
                "length {len} refused"
            );
        }
        Frame::Invalid(FrameError::Checksum { stored, computed }) => {
            assert_ne!(stored, computed);
            assert_eq!(stored, le_u32(data, 4));
            let end = frame_len(payload_len(data));
            let mut hasher = crc32fast::Hasher::new();
            if is_redacted(data) {
                hasher.update(REDACTED_CRC_DOMAIN);
            }
            hasher.update(&data[8..end]);
            assert_eq!(computed, hasher.finalize());
        }
        Frame::Invalid(other) => panic!("unexpected frame error {other:?}"),
    }

    if let Ok(header) = SegmentHeader::decode(data) {
        let again = header.encode();
        // Bytes 32..36 are the reserved field: not checked by readers, so
        // not necessarily re-encoded as found.
        assert_eq!(again[..32], data[..32], "header fields re-encode");
        assert_eq!(SegmentHeader::decode(&again), Ok(header));
        assert_eq!(again.len(), SEGMENT_HEADER_LEN);
    }
}
