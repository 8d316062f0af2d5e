//! What a [`Shipper`](crate::Shipper) records through the [`metrics`]
//! facade, for the application's exporter (`logbook ship --metrics`
//! serves them in the Prometheus text format; `docs/operations.md`,
//! "Metrics", says what each means and what to alert on).
//!
//! Registered once per shipper, labelled `dir` (the log directory, as the
//! log's own `logbook_wal_*` metrics are): positions as well as rates, so
//! that the lag is one subtraction away.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logbook_wal::Lsn;
use metrics::{Counter, Gauge, Histogram, Unit};

/// Records the stream stored.
pub(crate) const RECORDS: &str = "logbook_ship_records_total";
/// Records sent again that the stream dropped as duplicates.
pub(crate) const DUPLICATES: &str = "logbook_ship_duplicates_total";
/// Publishes that failed (an error ack, no ack in time, a lost connection).
pub(crate) const PUBLISH_ERRORS: &str = "logbook_ship_publish_errors_total";
/// Reconnections after a failure.
pub(crate) const RECONNECTS: &str = "logbook_ship_reconnects_total";
/// The highest LSN read from the log.
pub(crate) const READ_LSN: &str = "logbook_ship_read_lsn";
/// Every LSN up to this one is in the stream.
pub(crate) const SHIPPED_LSN: &str = "logbook_ship_shipped_lsn";
/// Records read from the log and not yet in the stream.
pub(crate) const LAG_RECORDS: &str = "logbook_ship_lag_records";
/// Age of the oldest record read and not yet in the stream.
pub(crate) const LAG_SECONDS: &str = "logbook_ship_lag_seconds";
/// For each record the stream stored: from its append to the ack.
pub(crate) const ACK_DELAY: &str = "logbook_ship_ack_delay_seconds";

/// One shipper's handles.
#[derive(Debug, Clone)]
pub(crate) struct ShipMetrics {
    pub(crate) records: Counter,
    pub(crate) duplicates: Counter,
    pub(crate) publish_errors: Counter,
    pub(crate) reconnects: Counter,
    pub(crate) read_lsn: Gauge,
    pub(crate) shipped_lsn: Gauge,
    pub(crate) lag_records: Gauge,
    pub(crate) lag_seconds: Gauge,
    pub(crate) ack_delay: Histogram,
}

impl ShipMetrics {
    /// Register (and describe) the handles of the shipper of the log in
    /// `dir` with the recorder installed now, if any.
    pub(crate) fn new(dir: &Path) -> ShipMetrics {
        describe();
        let labels = [("dir", dir.display().to_string())];
        ShipMetrics {
            records: metrics::counter!(RECORDS, &labels),
            duplicates: metrics::counter!(DUPLICATES, &labels),
            publish_errors: metrics::counter!(PUBLISH_ERRORS, &labels),
            reconnects: metrics::counter!(RECONNECTS, &labels),
            read_lsn: metrics::gauge!(READ_LSN, &labels),
            shipped_lsn: metrics::gauge!(SHIPPED_LSN, &labels),
            lag_records: metrics::gauge!(LAG_RECORDS, &labels),
            lag_seconds: metrics::gauge!(LAG_SECONDS, &labels),
            ack_delay: metrics::histogram!(ACK_DELAY, &labels),
        }
    }

    /// Set the position and lag gauges: `read` and `shipped` LSNs, and the
    /// lag of the oldest record read and not yet in the stream, if any.
    pub(crate) fn positions(&self, read: Lsn, shipped: Lsn, lag: Duration) {
        self.read_lsn.set(read as f64);
        self.shipped_lsn.set(shipped as f64);
        self.lag_records.set(read.saturating_sub(shipped) as f64);
        self.lag_seconds.set(lag);
    }
}

/// The time since `timestamp_us` (µs since the Unix epoch, a record's
/// timestamp); zero for a time in the future (a clock stepped back).
pub(crate) fn age(timestamp_us: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(Duration::from_micros(timestamp_us))
}

/// The help texts, once per recorder (describing again is harmless).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RECORDS,
        "Records the stream stored (acknowledged, not duplicates)."
    );
    describe_counter!(
        DUPLICATES,
        "Records sent again that the stream already had (dropped by Nats-Msg-Id)."
    );
    describe_counter!(
        PUBLISH_ERRORS,
        "Publishes that failed: an error ack, no ack in time, a lost connection."
    );
    describe_counter!(RECONNECTS, "Times the shipper reconnected after a failure.");
    describe_gauge!(READ_LSN, "The highest LSN the shipper read from the log.");
    describe_gauge!(
        SHIPPED_LSN,
        "Every LSN of the log up to this one is in the stream (or imported from it)."
    );
    describe_gauge!(
        LAG_RECORDS,
        "Records read from the log and not yet in the stream (read_lsn - shipped_lsn)."
    );
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest record read from the log and not yet in the stream (0 when none)."
    );
    describe_histogram!(
        ACK_DELAY,
        Unit::Seconds,
        "For each record the stream stored: from its append (its timestamp) to the stream's ack."
    );
}
