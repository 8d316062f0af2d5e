//! `event_roundtrip`: the event codec, both ways.

use arbitrary::{Arbitrary, Unstructured};
use logbook_bus::codec::{self, CodecError, MAX_EVENT_BYTES};
use logbook_bus::{KINDS, SessionEvent};

/// Two checks on the same bytes:
///
/// * **structured:** `data` drives `arbitrary` to build a [`SessionEvent`];
///   `codec::encode` then `codec::decode` gives it back, and the encoding
///   starts with the event's tag ([`codec::peek_tag`]);
/// * **raw:** `data` itself is decoded; that never panics, and an event it
///   decodes to encodes to at most `data.len()` bytes that decode to the
///   same event (the decoder also accepts bincode's non-minimal integer
///   encodings, the encoder always writes the minimal one), while an error
///   names an unknown tag only when the tag really is unknown.
///
/// # Panics
///
/// When an invariant breaks.
pub fn event_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(event) = SessionEvent::arbitrary(&mut u) {
        let bytes = codec::encode(&event).expect("every event encodes");
        assert!(bytes.len() <= MAX_EVENT_BYTES);
        assert_eq!(
            codec::peek_tag(&bytes),
            u32::try_from(event.tag()).ok(),
            "{event:?}"
        );
        assert_eq!(KINDS.get(event.tag()).copied(), Some(event.kind()));
        match codec::decode(&bytes) {
            Ok(back) => assert_eq!(back, event, "round trip of {bytes:02x?}"),
            Err(e) => panic!("{event:?} encoded as {bytes:02x?} does not decode: {e}"),
        }
    }

    match codec::decode(data) {
        Ok(event) => {
            let again = codec::encode(&event).expect("a decoded event encodes");
            assert!(
                again.len() <= data.len(),
                "{event:?}: the encoder is minimal"
            );
            assert_eq!(
                codec::decode(&again).expect("a re-encoded event decodes"),
                event,
                "{event:?} changed through re-encoding"
            );
        }
        Err(CodecError::UnknownVariant { tag }) => {
            assert!(
                tag as usize >= KINDS.len(),
                "known tag {tag} called unknown"
            );
            assert_eq!(codec::peek_tag(data), Some(tag));
        }
        Err(_) => {}
    }
}
