//! [`WalOptions`], [`SyncPolicy`] and [`RecoveryMode`].

use std::time::Duration;

use crate::format::{MAX_PAYLOAD_LEN, MAX_SEGMENT_SIZE, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

/// When an append is acknowledged, relative to `fdatasync`.
///
/// See `docs/durability.md` for exactly what survives a process crash and a
/// power cut under each policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// `append` returns only once the record is written and fsynced.
    /// Concurrent appenders share one write and one `fdatasync` (group
    /// commit).
    #[default]
    Always,
    /// `append` returns once the record is queued; a background flusher
    /// writes and fsyncs it within `max_delay`, or sooner once `max_bytes`
    /// are pending. Use [`Wal::wait_durable`](crate::Wal::wait_durable) or
    /// [`Wal::sync`](crate::Wal::sync) to learn when it is durable.
    Batch {
        /// The longest a queued record waits to be made durable.
        max_delay: Duration,
        /// Pending bytes that trigger a flush before `max_delay`.
        max_bytes: usize,
    },
    /// Records are buffered and written when the buffer fills, on
    /// [`Wal::sync`](crate::Wal::sync) and on close; the log never calls
    /// `fdatasync` except on sync, segment roll and close. For tests and
    /// bulk loads.
    Never,
}

/// What `open` does with damage in the tail segment (after RocksDB's
/// `WALRecoveryMode`). See `docs/format.md`, "Recovery modes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Cut a torn tail (bytes written after the last fsync); fail on damage
    /// to anything that had been durable.
    #[default]
    TolerateCorruptedTail,
    /// Fail on any damage; cut nothing.
    AbsoluteConsistency,
    /// Cut at the first damaged frame, whatever follows it.
    PointInTime,
    /// Keep every valid frame; skip damaged ones.
    SkipCorrupted,
}

/// Options of [`Wal::open`](crate::Wal::open).
///
/// # Examples
///
/// ```
/// use logbook_wal::{SyncPolicy, WalOptions};
///
/// let opts = WalOptions { segment_size: 8 << 20, sync: SyncPolicy::Never, ..WalOptions::default() };
/// assert_eq!(opts.segment_size, 8 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Roll to a new segment once the active one would exceed this many
    /// bytes (default 64 MiB).
    pub segment_size: u64,
    /// When appends are acknowledged (default [`SyncPolicy::Always`]).
    pub sync: SyncPolicy,
    /// What `open` does with a damaged tail (default
    /// [`RecoveryMode::TolerateCorruptedTail`]).
    pub recovery: RecoveryMode,
    /// Preallocate each segment to `segment_size` when it is created
    /// (default true).
    pub preallocate: bool,
    /// Create the directory if it is missing (default true).
    pub create_if_missing: bool,
    /// Bytes buffered before a write under [`SyncPolicy::Never`] (default
    /// 1 MiB).
    pub buffer_bytes: usize,
    /// The codec id written into new segment headers (default: the
    /// `logbook-bus` codec).
    pub codec_id: u16,
    /// Before recovery cuts a torn tail, copy the bytes it cuts to
    /// `<segment>.<offset>.broken` beside the segment (default false;
    /// `logbook repair --apply` sets it).
    pub keep_cut_bytes: bool,
    /// Encrypt record payloads at rest (default `None`: in the clear).
    /// New segments are encrypted with the ring's current key, and a
    /// writer whose current key differs from the tail segment's starts a
    /// new segment first, so every segment holds one key (or none);
    /// readers take a ring ([`Reader::with_keys`](crate::Reader::with_keys))
    /// holding the keys of the segments they read (`docs/format.md`,
    /// "Encrypted segments").
    pub encryption: Option<std::sync::Arc<crate::KeyRing>>,
    /// A retention policy the writer applies each time it rolls to a new
    /// segment (default: none, nothing is removed). See
    /// [`Retention`](crate::Retention).
    pub retention: crate::Retention,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 << 20,
            sync: SyncPolicy::Always,
            recovery: RecoveryMode::TolerateCorruptedTail,
            preallocate: true,
            create_if_missing: true,
            buffer_bytes: 1 << 20,
            codec_id: logbook_bus::codec::CODEC_ID,
            keep_cut_bytes: false,
            encryption: None,
            retention: crate::Retention::default(),
        }
    }
}

/// The smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

impl WalOptions {
    /// The largest payload a record may carry with these options: the format's
    /// limit, lowered so that one record always fits in an empty segment.
    #[must_use]
    pub fn max_payload_len(&self) -> usize {
        let room = usize::try_from(self.segment_size).unwrap_or(usize::MAX);
        let framed =
            MAX_PAYLOAD_LEN.min(room.saturating_sub(SEGMENT_HEADER_LEN + RECORD_HEADER_LEN));
        if self.encryption.is_some() {
            // An encrypted segment's records start after its seal block.
            framed.saturating_sub(crate::SEAL_OVERHEAD + crate::format::SEAL_BLOCK_LEN)
        } else {
            framed
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.segment_size > MAX_SEGMENT_SIZE {
            return Err(format!(
                "segment_size {} is above the maximum {MAX_SEGMENT_SIZE}",
                self.segment_size
            ));
        }
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(format!(
                "segment_size {} is below the minimum {MIN_SEGMENT_SIZE}",
                self.segment_size
            ));
        }
        if let SyncPolicy::Batch { max_delay, .. } = self.sync {
            if max_delay.is_zero() {
                return Err("SyncPolicy::Batch needs a max_delay above zero".into());
            }
        }
        Ok(())
    }
}
