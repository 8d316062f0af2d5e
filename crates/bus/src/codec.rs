//! The one place where [`SessionEvent`]s become bytes and back.
//!
//! The codec is bincode 2 in serde mode with its `standard` configuration:
//! little-endian, variable-length integers, enum variants tagged by their
//! index (a varint, so one byte for the first 251 variants), strings and
//! byte arrays prefixed by their varint length, `Option` by a `0`/`1` byte.
//! The log stores [`CODEC_ID`] in every segment header, so a future codec can
//! be introduced beside this one without touching the record format.
//!
//! Decoding never panics and never allocates more than [`MAX_EVENT_BYTES`]
//! for any input: length prefixes are checked against that limit before
//! anything is allocated. The encoder always writes the minimal encoding;
//! the decoder, like bincode, also accepts non-minimal integers (a `251`
//! marker before a small value), so two byte strings can decode to the same
//! event. Nothing relies on the opposite: records are identified by LSN and
//! protected by their CRC, never by their payload bytes.

use crate::SessionEvent;
use crate::event::KINDS;

/// The codec id written into every segment header: bincode 2.0 serde,
/// `standard()` configuration. Never reuse a value for another codec.
pub const CODEC_ID: u16 = 1;

/// The largest encoded event the decoder accepts (16 MiB); also the bound on
/// any single allocation the decoder makes.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// bincode's varint marks values of 251 and above with a prefix byte.
const VARINT_SINGLE_BYTE_MAX: u8 = 250;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_EVENT_BYTES>()
}

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The event could not be serialised (it should not happen for the
    /// types of this crate).
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// The payload names a variant this build does not know: it was most
    /// likely written by a newer version. Readers skip such records.
    #[error("unknown event tag {tag} (written by a newer build?)")]
    UnknownVariant {
        /// The variant index found in the payload.
        tag: u32,
    },
    /// The bytes are not a valid encoding of an event.
    #[error("cannot decode event: {0}")]
    Decode(String),
    /// An event was decoded but bytes were left over.
    #[error("event used {used} of {len} payload bytes")]
    TrailingBytes {
        /// Bytes the event used.
        used: usize,
        /// Bytes in the payload.
        len: usize,
    },
}

/// Append the encoding of `event` to `buf`.
///
/// # Errors
///
/// [`CodecError::Encode`] if serialisation fails; `buf` may then hold a
/// partial encoding past its old length, which the caller should truncate.
///
/// # Examples
///
/// ```
/// use logbook_bus::{codec, SessionEvent};
///
/// let mut buf = Vec::new();
/// codec::encode_into(&SessionEvent::Done, &mut buf)?;
/// assert_eq!(buf, [15]); // variant 15, no fields
/// assert_eq!(codec::decode(&buf)?, SessionEvent::Done);
/// # Ok::<(), codec::CodecError>(())
/// ```
pub fn encode_into(event: &SessionEvent, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(event, buf, config())
        .map(drop)
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// The encoding of `event` as a new vector.
///
/// # Errors
///
/// As [`encode_into`].
pub fn encode(event: &SessionEvent) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::new();
    encode_into(event, &mut buf)?;
    Ok(buf)
}

/// The variant tag at the start of an encoded event, if it is readable
/// (bincode's varint: one byte below 251, else a marker byte and a 2-, 4- or
/// 8-byte little-endian integer).
#[must_use]
pub fn peek_tag(bytes: &[u8]) -> Option<u32> {
    let le = |n: usize| -> Option<u64> {
        let raw = bytes.get(1..1 + n)?;
        let mut buf = [0u8; 8];
        buf.get_mut(..n)?.copy_from_slice(raw);
        Some(u64::from_le_bytes(buf))
    };
    let tag = match *bytes.first()? {
        b @ 0..=VARINT_SINGLE_BYTE_MAX => u64::from(b),
        251 => le(2)?,
        252 => le(4)?,
        253 => le(8)?,
        _ => return None,
    };
    u32::try_from(tag).ok()
}

/// The kind name (see [`KINDS`]) and whether it is durable,
/// of an encoded event, read from its tag without decoding it; `None` for
/// a tag this build does not know or an unreadable one.
///
/// # Examples
///
/// ```
/// use logbook_bus::{SessionEvent, codec};
///
/// let bytes = codec::encode(&SessionEvent::Done)?;
/// assert_eq!(codec::peek_kind(&bytes), Some(("done", true)));
/// assert_eq!(codec::peek_kind(&[]), None);
/// # Ok::<(), codec::CodecError>(())
/// ```
#[must_use]
pub fn peek_kind(bytes: &[u8]) -> Option<(&'static str, bool)> {
    let tag = usize::try_from(peek_tag(bytes)?).ok()?;
    let name = KINDS.get(tag).copied()?;
    Some((name, SessionEvent::tag_is_durable(tag)?))
}

/// Decode one event that fills `bytes` exactly.
///
/// Never panics, for any input.
///
/// # Errors
///
/// [`CodecError::UnknownVariant`] for a variant this build does not know,
/// [`CodecError::TrailingBytes`] if the event does not use every byte, and
/// [`CodecError::Decode`] for anything else that is not an event.
pub fn decode(bytes: &[u8]) -> Result<SessionEvent, CodecError> {
    if let Some(tag) = peek_tag(bytes) {
        if tag as usize >= KINDS.len() {
            return Err(CodecError::UnknownVariant { tag });
        }
    }
    let (event, used) = bincode::serde::decode_from_slice::<SessionEvent, _>(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            used,
            len: bytes.len(),
        });
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::one_of_each;
    use crate::{TokenDelta, TokenSource};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Pins the on-disk encoding. If this fails, an edit changed the bytes
    /// that existing logs hold: revert it, or add a new variant at the end.
    #[test]
    fn golden_bytes() {
        let id = Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        let cases: Vec<(SessionEvent, &str)> = vec![
            (SessionEvent::Done, "0f"),
            (SessionEvent::Error("boom".into()), "1004626f6f6d"),
            (
                SessionEvent::TokenUsage(TokenDelta {
                    source: TokenSource::RlmSubcall,
                    model: "m".into(),
                    prompt_tokens: 300,
                    completion_tokens: 5,
                    duration_ms: 0,
                }),
                "0702016dfb2c010500",
            ),
            (
                SessionEvent::ToolCallStart {
                    tool_call_id: "t1".into(),
                    name: "ls".into(),
                    arguments: "{}".into(),
                },
                "08027431026c73027b7d",
            ),
            (
                SessionEvent::ContextTruncated {
                    trace_id: id,
                    dropped_tokens: 7,
                    kept_messages: 2,
                    archive_ref: None,
                },
                "151000112233445566778899aabbccddeeff070200",
            ),
            (SessionEvent::SessionResumed { from_lsn: 251 }, "19fbfb00"),
            (
                SessionEvent::SessionForked {
                    from: id,
                    at_lsn: 7,
                },
                "1a1000112233445566778899aabbccddeeff07",
            ),
            (
                SessionEvent::SessionDeleted {
                    after_lsn: Some(0),
                    ranges: vec![],
                    reason: String::new(),
                },
                "1b01000000",
            ),
            (
                SessionEvent::SessionDeleted {
                    after_lsn: None,
                    ranges: vec![(3, 4), (300, 300)],
                    reason: "runs".into(),
                },
                "1b00020304fb2c01fb2c010472756e73",
            ),
            (
                SessionEvent::Custom {
                    name: "ab".into(),
                    data: vec![0, 1, 255],
                },
                "1c026162030001ff",
            ),
            (
                SessionEvent::SessionTruncated {
                    reason: "ab".into(),
                },
                "1d026162",
            ),
        ];
        for (event, want) in cases {
            let bytes = encode(&event).unwrap();
            assert_eq!(hex(&bytes), want, "{event:?}");
            assert_eq!(decode(&bytes).unwrap(), event);
        }
    }

    #[test]
    fn every_variant_round_trips() {
        for event in one_of_each() {
            let bytes = encode(&event).unwrap();
            assert_eq!(peek_tag(&bytes), Some(event.tag() as u32));
            assert_eq!(decode(&bytes).unwrap(), event);
        }
    }

    #[test]
    fn unknown_variant_is_reported_as_such() {
        let tag = KINDS.len() as u8;
        assert!(
            matches!(decode(&[tag]), Err(CodecError::UnknownVariant { tag: t }) if t == u32::from(tag))
        );
    }

    #[test]
    fn trailing_and_truncated_bytes_are_errors() {
        assert!(matches!(
            decode(&[15, 0]),
            Err(CodecError::TrailingBytes { used: 1, len: 2 })
        ));
        let bytes = encode(&SessionEvent::TextComplete("hello".into())).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn non_minimal_integers_decode_and_re_encode_minimally() {
        // Found by the `event_roundtrip` fuzzer: tag 15 (`Done`) written as a u16.
        assert_eq!(decode(&[0xfb, 0x0f, 0x00]).unwrap(), SessionEvent::Done);
        assert_eq!(encode(&SessionEvent::Done).unwrap(), [0x0f]);
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // TextComplete with a claimed length of u64::MAX.
        let mut bytes = vec![12, 0xff];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(CodecError::Decode(_))));
    }

    /// Arbitrary events, built by `arbitrary` from proptest-chosen bytes so
    /// that one derive serves both the fuzzer and the property tests.
    pub(crate) fn arb_event() -> impl Strategy<Value = SessionEvent> {
        proptest::collection::vec(any::<u8>(), 0..512).prop_filter_map(
            "not enough entropy",
            |raw| {
                let mut u = arbitrary::Unstructured::new(&raw);
                <SessionEvent as arbitrary::Arbitrary>::arbitrary(&mut u).ok()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn round_trip(event in arb_event()) {
            let bytes = encode(&event).unwrap();
            prop_assert_eq!(decode(&bytes).unwrap(), event);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(event) = decode(&bytes) {
                // Whatever decodes re-encodes minimally, to the same event.
                let again = encode(&event).unwrap();
                prop_assert!(again.len() <= bytes.len());
                prop_assert_eq!(decode(&again).unwrap(), event);
            }
        }
    }

    /// The property test above only proves something for the variants it
    /// draws: check that its generator reaches every one of them.
    #[test]
    fn generator_reaches_every_variant() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = arb_event();
        let mut seen = vec![false; KINDS.len()];
        for _ in 0..20_000 {
            let event = strategy.new_tree(&mut runner).unwrap().current();
            seen[event.tag()] = true;
        }
        let missing: Vec<_> = KINDS
            .iter()
            .zip(&seen)
            .filter(|(_, s)| !**s)
            .map(|(k, _)| *k)
            .collect();
        assert!(missing.is_empty(), "never generated: {missing:?}");
    }
}
