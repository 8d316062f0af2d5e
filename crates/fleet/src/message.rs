//! One record as a JetStream message: its subject, its headers, and
//! [`FleetRecord`], a message read back.

use std::path::Path;
use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use logbook_replay::ShippedRecord;
use logbook_wal::{EventRecord, Lsn, RecordRef};
use uuid::Uuid;

/// `Nats-Msg-Id`: `<log id>:<LSN>`, JetStream's duplicate key.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
/// The log's id.
pub(crate) const LOG: &str = "Logbook-Log";
/// The record's LSN in its log.
pub(crate) const LSN: &str = "Logbook-Lsn";
/// The record's session.
pub(crate) const SESSION: &str = "Logbook-Session";
/// The event kind (`logbook_bus::KINDS`), `unknown` for a newer one.
pub(crate) const KIND: &str = "Logbook-Kind";
/// The record's timestamp, µs since the Unix epoch.
pub(crate) const TIMESTAMP: &str = "Logbook-Ts";
/// The payload's codec (the segment header's codec id).
pub(crate) const CODEC: &str = "Logbook-Codec";
/// When this message was first sent, every LSN of the log below this was
/// in the stream (`docs/fleet.md`, "Where to resume").
pub(crate) const COMMITTED: &str = "Logbook-Committed";
/// Every message of the log with an LSN at or above `Logbook-Committed`
/// has a stream sequence above this one.
pub(crate) const SCAN_FROM: &str = "Logbook-Scan-From";
/// The key id (8 hex digits) of a record shipped still sealed (its log is
/// encrypted at rest); absent for a record in the clear.
pub(crate) const KEY: &str = "Logbook-Key";
/// The record's sync mark (bound into a sealed record's tag).
pub(crate) const SYNC_MARK: &str = "Logbook-Sync";
/// The chain value a sealed record was sealed against (32 hex digits):
/// the tag of the record before it in its log (`docs/security.md`).
pub(crate) const PREV: &str = "Logbook-Prev";

/// One record read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRecord {
    /// The log it was written to.
    pub log: Uuid,
    /// Its LSN in that log.
    pub lsn: Lsn,
    /// When it was appended, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Its session.
    pub session: Uuid,
    /// The payload's codec id.
    pub codec_id: u16,
    /// The payload, as in the log (empty when only headers were read).
    pub payload: Bytes,
    /// The message's sequence in the stream.
    pub stream_seq: u64,
    /// Where to resume (see [`COMMITTED`]).
    pub(crate) committed: Lsn,
    /// Where to scan from (see [`SCAN_FROM`]).
    pub(crate) scan_from: u64,
    /// The key its payload is sealed with (its `Logbook-Key` header), if
    /// it is.
    pub key_id: Option<u32>,
    /// Its sync mark (0 if the message does not say).
    pub sync_mark: Lsn,
    /// For a sealed record: the chain value it was sealed against (the
    /// tag of the record before it in its log), bound into its tag.
    pub prev: Option<logbook_wal::Chain>,
}

impl FleetRecord {
    /// The record as stored in the stream, as the log's readers lend a
    /// record: `place` stands for its segment (say, the stream's URL and
    /// the log id), its stream sequence for the offset; the sync mark is 0.
    /// Its payload is *still sealed* if its log is encrypted
    /// ([`RecordRef::key_id`]): to decode it, use [`FleetRecord::decode`]
    /// or read it through [`FleetRecord::to_shipped`] (every reader of
    /// `logbook-replay` opens it there, with the process's keys).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use logbook_fleet::FleetRecord;
    ///
    /// let record = FleetRecord::new(uuid::Uuid::nil(), 7, 1_000, uuid::Uuid::nil(), vec![1, 2].into());
    /// let raw = record.as_record_ref(Path::new("nats://h:4222/LOGBOOK"));
    /// assert_eq!((raw.lsn, raw.payload, raw.key_id), (7, &[1, 2][..], None));
    /// ```
    #[must_use]
    pub fn as_record_ref<'a>(&'a self, place: &'a Path) -> RecordRef<'a> {
        RecordRef {
            lsn: self.lsn,
            timestamp_us: self.timestamp_us,
            sync_mark: self.sync_mark,
            session: self.session,
            payload: &self.payload,
            codec_id: self.codec_id,
            segment: place,
            offset: self.stream_seq,
            frame_crc: 0,
            key_id: self.key_id,
        }
    }

    /// The record as a [`logbook_replay::ShippedRecord`], for a
    /// [`logbook_replay::Source`] every reader of `logbook-replay` reads
    /// (and decodes) as it reads a log directory: `place` stands for its
    /// segment in messages, its stream sequence for the offset.
    #[must_use]
    pub fn to_shipped(&self, place: Arc<Path>) -> ShippedRecord {
        ShippedRecord {
            log: self.log,
            lsn: self.lsn,
            timestamp_us: self.timestamp_us,
            session: self.session,
            codec_id: self.codec_id,
            payload: self.payload.to_vec(),
            key_id: self.key_id,
            sync_mark: self.sync_mark,
            prev: self.prev,
            place,
            offset: self.stream_seq,
        }
    }

    /// A record with codec 1 and no stream position (for tests and
    /// examples).
    #[must_use]
    pub fn new(
        log: Uuid,
        lsn: Lsn,
        timestamp_us: u64,
        session: Uuid,
        payload: Bytes,
    ) -> FleetRecord {
        FleetRecord {
            log,
            lsn,
            timestamp_us,
            session,
            codec_id: logbook_bus::codec::CODEC_ID,
            payload,
            stream_seq: 0,
            committed: 0,
            scan_from: 0,
            key_id: None,
            sync_mark: 0,
            prev: None,
        }
    }

    /// This record with its payload decrypted by `ring` if it is sealed
    /// (the key id, log, LSN, session, time, sync mark and chain value it
    /// was sealed for are in its headers, and all bound into its tag); as
    /// it is if it is not.
    ///
    /// # Errors
    ///
    /// [`logbook_wal::WalError::Encrypted`] (naming the log and LSN) if the
    /// ring has no key with its id, [`logbook_wal::WalError::Decrypt`] if
    /// the tag does not check.
    pub fn unsealed(
        &self,
        ring: Option<&logbook_wal::KeyRing>,
    ) -> Result<FleetRecord, logbook_wal::WalError> {
        let Some(key_id) = self.key_id else {
            return Ok(self.clone());
        };
        if ring.and_then(|r| r.get(key_id)).is_none() {
            return Err(logbook_wal::WalError::Encrypted {
                segment: std::path::PathBuf::from(format!("log {}", self.log)),
                lsn: self.lsn,
                key_id,
            });
        }
        // The one way a shipped record is opened (`ShippedRecord::open`).
        let shipped = self.to_shipped(Arc::from(Path::new(&format!("log {}", self.log))));
        let mut buf = Vec::new();
        let plain = shipped.open(ring, &mut buf)?.payload.to_vec();
        Ok(FleetRecord {
            payload: Bytes::from(plain),
            key_id: None,
            ..self.clone()
        })
    }

    /// Decode the event, opened with the process's keys
    /// ([`logbook_wal::default_keys`]) if it is sealed: the one decode of
    /// every reader ([`ShippedRecord::decode`]).
    ///
    /// # Errors
    ///
    /// As [`ShippedRecord::decode`]: [`logbook_wal::WalError::Encrypted`]
    /// (naming the log and LSN) if no key with its id was given,
    /// [`logbook_wal::WalError::Decrypt`] if its payload does not open,
    /// and the errors of [`EventRecord::decode`].
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_fleet::FleetRecord;
    ///
    /// let payload = logbook_bus::codec::encode(&logbook_bus::SessionEvent::Done)?;
    /// let record = FleetRecord::new(uuid::Uuid::nil(), 7, 1_000, uuid::Uuid::nil(), payload.into());
    /// let decoded = record.decode()?;
    /// assert_eq!((decoded.lsn, decoded.event), (7, logbook_bus::SessionEvent::Done));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(&self) -> Result<EventRecord, logbook_wal::WalError> {
        let place: Arc<Path> = Arc::from(Path::new(&format!("log {}", self.log)));
        self.to_shipped(place).decode()
    }

    /// Read a message's headers (and payload). `Err` says what is not a
    /// Logbook record about it.
    pub(crate) fn parse(
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: Bytes,
        stream_seq: u64,
        prefix: &str,
    ) -> Result<FleetRecord, String> {
        let headers = headers.ok_or("it has no headers")?;
        let get = |name: &str| -> Result<&str, String> {
            headers
                .get(name)
                .map(|v| v.as_str())
                .ok_or_else(|| format!("no {name} header"))
        };
        let number = |name: &str| -> Result<u64, String> {
            get(name)?
                .parse()
                .map_err(|_| format!("{name} is not a number"))
        };
        let uuid = |name: &str| -> Result<Uuid, String> {
            Uuid::parse_str(get(name)?).map_err(|_| format!("{name} is not a UUID"))
        };
        let log = uuid(LOG)?;
        let session = uuid(SESSION)?;
        let lsn = number(LSN)?;
        let want = format!("{prefix}.{log}.{session}");
        if subject != want {
            return Err(format!("its subject {subject} is not {want}"));
        }
        if get(MSG_ID)? != msg_id(log, lsn) {
            return Err(format!("{MSG_ID} is not {}", msg_id(log, lsn)));
        }
        Ok(FleetRecord {
            log,
            lsn,
            timestamp_us: number(TIMESTAMP)?,
            session,
            codec_id: u16::try_from(number(CODEC)?).map_err(|_| format!("{CODEC} is too large"))?,
            payload,
            stream_seq,
            committed: number(COMMITTED)?,
            scan_from: number(SCAN_FROM)?,
            key_id: match headers.get(KEY) {
                None => None,
                Some(v) => Some(
                    u32::from_str_radix(v.as_str(), 16)
                        .map_err(|_| format!("{KEY} is not a key id"))?,
                ),
            },
            sync_mark: match headers.get(SYNC_MARK) {
                None => 0,
                Some(v) => v
                    .as_str()
                    .parse()
                    .map_err(|_| format!("{SYNC_MARK} is not a number"))?,
            },
            prev: match headers.get(PREV) {
                None => None,
                Some(v) => {
                    Some(parse_chain(v.as_str()).ok_or(format!("{PREV} is not 32 hex digits"))?)
                }
            },
        })
    }
}

/// A chain value from 32 hex digits.
fn parse_chain(text: &str) -> Option<logbook_wal::Chain> {
    let mut out = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A chain value as 32 hex digits.
pub(crate) fn chain_hex(chain: &logbook_wal::Chain) -> String {
    chain.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Nats-Msg-Id` of a record.
pub(crate) fn msg_id(log: Uuid, lsn: Lsn) -> String {
    format!("{log}:{lsn}")
}

/// What the shipper sends for one record.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) lsn: Lsn,
    pub(crate) timestamp_us: u64,
    pub(crate) session: Uuid,
    pub(crate) codec_id: u16,
    pub(crate) kind: &'static str,
    pub(crate) payload: Bytes,
    /// Shipped still sealed with this key.
    pub(crate) key_id: Option<u32>,
    pub(crate) sync_mark: Lsn,
    /// The chain value a sealed record was sealed against.
    pub(crate) prev: Option<logbook_wal::Chain>,
}

impl Outgoing {
    /// # Errors
    ///
    /// For a sealed record, reading its chain value from its segment.
    pub(crate) fn of(record: &RecordRef<'_>) -> Result<Outgoing, logbook_wal::WalError> {
        let kind = match EventRecord::peek_kind(record) {
            Ok(Some((kind, _))) => kind,
            // Sealed: its kind is not said in the clear either.
            Err(logbook_wal::WalError::Encrypted { .. }) => "encrypted",
            _ => "unknown",
        };
        let prev = match record.key_id {
            Some(_) => logbook_wal::chain_before(record)?,
            None => None,
        };
        Ok(Outgoing {
            lsn: record.lsn,
            timestamp_us: record.timestamp_us,
            session: record.session,
            codec_id: record.codec_id,
            kind,
            payload: Bytes::copy_from_slice(record.payload),
            key_id: record.key_id,
            sync_mark: record.sync_mark,
            prev,
        })
    }

    pub(crate) fn headers(&self, log: Uuid, committed: Lsn, scan_from: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(MSG_ID, msg_id(log, self.lsn).as_str());
        h.insert(LOG, log.to_string().as_str());
        h.insert(LSN, self.lsn.to_string().as_str());
        h.insert(SESSION, self.session.to_string().as_str());
        h.insert(KIND, self.kind);
        h.insert(TIMESTAMP, self.timestamp_us.to_string().as_str());
        h.insert(CODEC, self.codec_id.to_string().as_str());
        h.insert(COMMITTED, committed.to_string().as_str());
        h.insert(SCAN_FROM, scan_from.to_string().as_str());
        if let Some(key_id) = self.key_id {
            h.insert(KEY, format!("{key_id:08x}").as_str());
            h.insert(SYNC_MARK, self.sync_mark.to_string().as_str());
        }
        if let Some(prev) = &self.prev {
            h.insert(PREV, chain_hex(prev).as_str());
        }
        h
    }
}
