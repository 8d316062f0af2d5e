//! `--metrics ADDR`: what the libraries record through the `metrics`
//! facade, served in the Prometheus text format over HTTP
//! (`metrics-exporter-prometheus`). The libraries only emit; this binary
//! is the application that picks the exporter (`docs/operations.md`,
//! "Metrics").

use std::fmt;
use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Histogram buckets, in seconds, of the shipper's delay from append to
/// ack: a healthy follower acks within milliseconds, a stalled one lags
/// by seconds to minutes.
const ACK_DELAY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Histogram buckets, in seconds, of an fsync's latency (for a process
/// that writes a log: `ship` itself records none).
const FSYNC_BUCKETS: [f64; 14] = [
    0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Histogram buckets of the records one fsync made durable.
const RECORDS_PER_FSYNC_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Why the metrics cannot be served, naming the address.
#[derive(Debug)]
pub(crate) enum ExporterError {
    /// The address cannot be listened on: in use, not an address of this
    /// host, or a port below 1024 without the right.
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        reason: String,
    },
    /// Port 0: the system would pick a port, and the exporter does not say
    /// which, so nothing could scrape it.
    NoPort {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The exporter or its recorder could not be set up.
    Setup {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
}

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExporterError::Listen { addr, reason } => write!(
                f,
                "cannot serve metrics on http://{addr}/metrics: {reason}: give --metrics another IP:PORT"
            ),
            ExporterError::NoPort { addr } => write!(
                f,
                "cannot serve metrics on http://{addr}/metrics: port 0 would be a port chosen by the system that nothing is told of: give --metrics a port"
            ),
            ExporterError::Setup { addr, reason } => {
                write!(f, "cannot serve metrics on http://{addr}/metrics: {reason}")
            }
        }
    }
}

impl std::error::Error for ExporterError {}

/// Listen on `addr` and serve, at any path, what is recorded from now on
/// (install this before the shipper or the log is made: their handles are
/// registered then). The listener is bound before this returns; the
/// server runs on the current tokio runtime until it ends.
///
/// # Errors
///
/// [`ExporterError::Listen`] if `addr` cannot be bound (the port is in
/// use, the address is not this host's), [`ExporterError::NoPort`] for
/// port 0, [`ExporterError::Setup`] if a recorder is installed already.
///
/// # Panics
///
/// Outside a tokio runtime.
pub(crate) fn serve(addr: SocketAddr) -> Result<(), ExporterError> {
    if addr.port() == 0 {
        return Err(ExporterError::NoPort { addr });
    }
    let setup = |e: BuildError| ExporterError::Setup {
        addr,
        reason: e.to_string(),
    };
    let builder = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("logbook_ship_ack_delay_seconds".into()),
            &ACK_DELAY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("logbook_wal_fsync_seconds".into()),
                &FSYNC_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("logbook_wal_records_per_fsync".into()),
                &RECORDS_PER_FSYNC_BUCKETS,
            )
        })
        .map_err(setup)?;
    let (recorder, exporter) = builder.build().map_err(|e| match e {
        BuildError::FailedToCreateHTTPListener(reason) => ExporterError::Listen { addr, reason },
        e => setup(e),
    })?;
    metrics::set_global_recorder(recorder).map_err(|e| ExporterError::Setup {
        addr,
        reason: e.to_string(),
    })?;
    tokio::spawn(async move {
        if let Err(error) = exporter.await {
            crate::output::report_note(&format!(
                "metrics on http://{addr}/metrics are no longer served: {error:?}"
            ));
        }
    });
    Ok(())
}
