//! The `SessionEvent` layer on top of the record log: encoding an event
//! into a record's payload and [`EventRecord`], one record decoded. The
//! record layer below never sees an event; all encoding goes through
//! `logbook_bus::codec`.

use std::cell::RefCell;
use std::sync::Arc;

use logbook_bus::{SessionEvent, codec};
use uuid::Uuid;

use crate::error::WalError;
use crate::format::Lsn;
use crate::reader::RecordRef;

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encode `event` into a reused per-thread buffer and hand it to `f`.
pub(crate) fn encode_event<T>(
    event: &SessionEvent,
    f: impl FnOnce(&[u8]) -> Result<T, WalError>,
) -> Result<T, WalError> {
    ENCODE_BUF.with(|cell| {
        let mut owned;
        let mut guard = cell.try_borrow_mut();
        let buf: &mut Vec<u8> = match guard.as_deref_mut() {
            Ok(buf) => buf,
            Err(_) => {
                owned = Vec::new();
                &mut owned
            }
        };
        buf.clear();
        codec::encode_into(event, buf).map_err(|e| WalError::Codec {
            lsn: 0,
            source: Arc::new(e),
        })?;
        f(buf)
    })
}

/// One decoded record: a session's event with its place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The record's LSN.
    pub lsn: Lsn,
    /// When it was appended, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// The session it belongs to.
    pub session: Uuid,
    /// The event.
    pub event: SessionEvent,
}

impl EventRecord {
    /// Decode a record's payload.
    ///
    /// # Errors
    ///
    /// [`WalError::Encrypted`] if the record is still sealed (read without
    /// its key); [`WalError::ForeignCodec`] if the record's segment uses
    /// another codec than [`codec::CODEC_ID`]; [`WalError::Codec`] with the
    /// record's LSN
    /// if the payload does not decode; its source is
    /// [`codec::CodecError::UnknownVariant`] for an event kind this build
    /// does not know (written by a newer one), which readers should count
    /// and skip.
    pub fn decode(record: &RecordRef<'_>) -> Result<EventRecord, WalError> {
        Self::check_codec(record)?;
        let event = codec::decode(record.payload).map_err(|e| WalError::Codec {
            lsn: record.lsn,
            source: Arc::new(e),
        })?;
        Ok(EventRecord {
            lsn: record.lsn,
            timestamp_us: record.timestamp_us,
            session: record.session,
            event,
        })
    }

    /// The kind name of a record's event and whether that kind is durable,
    /// read from its tag without decoding the rest (for filters and
    /// counts); `None` for a kind this build does not know.
    ///
    /// # Errors
    ///
    /// [`WalError::Encrypted`] and [`WalError::ForeignCodec`], as
    /// [`EventRecord::decode`].
    pub fn peek_kind(record: &RecordRef<'_>) -> Result<Option<(&'static str, bool)>, WalError> {
        Self::check_codec(record)?;
        Ok(codec::peek_kind(record.payload))
    }

    fn check_codec(record: &RecordRef<'_>) -> Result<(), WalError> {
        if let Some(key_id) = record.key_id {
            return Err(WalError::Encrypted {
                segment: record.segment.to_path_buf(),
                lsn: record.lsn,
                key_id,
            });
        }
        if record.codec_id != codec::CODEC_ID {
            return Err(WalError::ForeignCodec {
                segment: record.segment.to_path_buf(),
                lsn: record.lsn,
                codec_id: record.codec_id,
            });
        }
        Ok(())
    }
}
