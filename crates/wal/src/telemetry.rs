//! What the writer records through the [`metrics`] facade, for an
//! application to export with the recorder of its choice
//! (`docs/operations.md`, "Metrics", says what each one means and what to
//! alert on).
//!
//! The handles are registered once, when the log is opened, with the label
//! `dir` (the log directory as given to `Wal::open`): a process holds a few
//! logs at most, so the label stays low in cardinality. A recorder
//! installed after the log was opened does not see it. Without a recorder
//! every handle is a no-op: recording costs a branch on a `None` (the
//! `buffered` bench shows no difference, `docs/performance.md`).
//!
//! Counters are recorded where [`WalStats`](crate::WalStats) is updated,
//! under the writer's state lock or by the leader, never anywhere else:
//! only `appends` is on the append path, once per record.

use std::path::Path;

use metrics::{Counter, Gauge, Histogram, Unit};

/// Records appended (acknowledged or queued).
pub(crate) const APPENDS: &str = "logbook_wal_appends_total";
/// Batches handed to the file system.
pub(crate) const BATCHES: &str = "logbook_wal_batches_total";
/// Bytes of frames handed to the file system.
pub(crate) const WRITTEN_BYTES: &str = "logbook_wal_written_bytes_total";
/// `fdatasync` calls on segments.
pub(crate) const FSYNCS: &str = "logbook_wal_fsyncs_total";
/// Latency of each of those calls.
pub(crate) const FSYNC_SECONDS: &str = "logbook_wal_fsync_seconds";
/// Records made durable by each batch that moved the durable watermark.
pub(crate) const RECORDS_PER_FSYNC: &str = "logbook_wal_records_per_fsync";
/// Records made durable.
pub(crate) const SYNCED: &str = "logbook_wal_synced_records_total";
/// Segments created.
pub(crate) const SEGMENTS: &str = "logbook_wal_segments_created_total";
/// Records appended but not yet handed to the file system, after each batch.
pub(crate) const QUEUED: &str = "logbook_wal_queued_records";
/// The highest durable LSN.
pub(crate) const DURABLE_LSN: &str = "logbook_wal_durable_lsn";
/// Writes that failed for a full disk (or quota).
pub(crate) const DISK_FULL: &str = "logbook_wal_disk_full_total";
/// Times the log stalled on a full disk (`Batch`/`Never`).
pub(crate) const STALLS: &str = "logbook_wal_stalls_total";
/// 1 while the log is stalled.
pub(crate) const STALLED: &str = "logbook_wal_stalled";
/// 1 once the log is poisoned.
pub(crate) const POISONED: &str = "logbook_wal_poisoned";

/// One writer's handles.
#[derive(Debug, Clone)]
pub(crate) struct WalMetrics {
    pub(crate) appends: Counter,
    pub(crate) batches: Counter,
    pub(crate) written_bytes: Counter,
    pub(crate) fsyncs: Counter,
    pub(crate) fsync_seconds: Histogram,
    pub(crate) records_per_fsync: Histogram,
    pub(crate) synced: Counter,
    pub(crate) segments: Counter,
    pub(crate) queued: Gauge,
    pub(crate) durable_lsn: Gauge,
    pub(crate) disk_full: Counter,
    pub(crate) stalls: Counter,
    pub(crate) stalled: Gauge,
    pub(crate) poisoned: Gauge,
}

impl WalMetrics {
    /// Register (and describe) the handles of the log in `dir` with the
    /// recorder installed now, if any.
    pub(crate) fn new(dir: &Path) -> WalMetrics {
        describe();
        let labels = [("dir", dir.display().to_string())];
        let m = WalMetrics {
            appends: metrics::counter!(APPENDS, &labels),
            batches: metrics::counter!(BATCHES, &labels),
            written_bytes: metrics::counter!(WRITTEN_BYTES, &labels),
            fsyncs: metrics::counter!(FSYNCS, &labels),
            fsync_seconds: metrics::histogram!(FSYNC_SECONDS, &labels),
            records_per_fsync: metrics::histogram!(RECORDS_PER_FSYNC, &labels),
            synced: metrics::counter!(SYNCED, &labels),
            segments: metrics::counter!(SEGMENTS, &labels),
            queued: metrics::gauge!(QUEUED, &labels),
            durable_lsn: metrics::gauge!(DURABLE_LSN, &labels),
            disk_full: metrics::counter!(DISK_FULL, &labels),
            stalls: metrics::counter!(STALLS, &labels),
            stalled: metrics::gauge!(STALLED, &labels),
            poisoned: metrics::gauge!(POISONED, &labels),
        };
        // A log reopened in the same process starts healthy.
        m.stalled.set(0.0);
        m.poisoned.set(0.0);
        m
    }
}

/// The help texts, once per recorder (describing again is harmless).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        APPENDS,
        "Records appended to the log (acknowledged or queued)."
    );
    describe_counter!(
        BATCHES,
        "Group-commit batches written to the log's segments."
    );
    describe_counter!(
        WRITTEN_BYTES,
        Unit::Bytes,
        "Bytes of record frames written to the log's segments."
    );
    describe_counter!(FSYNCS, "fdatasync calls on the log's segments.");
    describe_histogram!(
        FSYNC_SECONDS,
        Unit::Seconds,
        "Latency of each fdatasync of a segment."
    );
    describe_histogram!(
        RECORDS_PER_FSYNC,
        "Records made durable by each batch that moved the durable watermark."
    );
    describe_counter!(SYNCED, "Records made durable (fsynced).");
    describe_counter!(SEGMENTS, "Segments created.");
    describe_gauge!(
        QUEUED,
        "Records appended but not yet written, sampled at the end of each batch: the commit queue's depth."
    );
    describe_gauge!(DURABLE_LSN, "The highest LSN known durable.");
    describe_counter!(
        DISK_FULL,
        "Writes that failed for a full disk or quota (ENOSPC, EDQUOT)."
    );
    describe_counter!(
        STALLS,
        "Times the log stalled on a full disk with records queued (SyncPolicy Batch or Never)."
    );
    describe_gauge!(
        STALLED,
        "1 while the log is stalled on a full disk (sync and appends fail until space is free), else 0."
    );
    describe_gauge!(
        POISONED,
        "1 once the log is poisoned (a failed fsync or write): every later append fails until it is reopened."
    );
}
