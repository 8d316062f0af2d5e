//! `logbook ship`: send a log's durable records to a NATS JetStream
//! stream, once each.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use logbook_fleet::{FleetError, ShipOptions, ShipReport, Shipper, StreamSettings};

use crate::output::{self, Outcome};
use crate::{exporter, stream};

const EXAMPLES: &str = "\
Examples:
  logbook ship /var/lib/agent/log --to nats://10.0.0.5:4222
  logbook ship /var/lib/agent/log --to nats://10.0.0.5:4222 --follow
  logbook ship /var/lib/agent/log --to nats://10.0.0.5:4222 --follow --metrics 127.0.0.1:9464
  logbook ship ./log --to nats://127.0.0.1:4222 --stream FLEET --replicas 3
  logbook ship ./log --to nats://127.0.0.1:4222 --stream TEST --subject-prefix test

Ships every durable record of the log that the stream lacks, one message per
record in LSN order (subject logbook.<log id>.<session>, Nats-Msg-Id
<log id>:<LSN>), waits for the stream's acks, prints what was shipped and exits
0. Where it stopped is found in the stream itself: run it again, or kill it at
any moment and restart it, and every record is in the stream once. The stream
is created if missing (--replicas for a cluster). The log is only read: a
writer may be appending meanwhile, and nothing shipping does changes it.

Two streams on one server need two subject prefixes (--subject-prefix; the
default is logbook): a server refuses a stream whose subjects overlap
another's, and so does `ship` (exit 2, naming the stream that has them). The
read commands and `resume` need only --stream: they find its prefix.

--follow keeps shipping what is appended (progress on stderr), reconnecting
with backoff when the server goes away or cannot be reached, one line on
stderr per retry. Without it, a server that cannot be reached at the start
(connection refused, no answer within 5 s) is an error at once (exit 2), and a
server that fails later is retried for --give-up seconds, then an error; so
are a wrong URL and a stream that takes other subjects.

--metrics IP:PORT serves the shipper's figures (records shipped, lag in LSNs
and in seconds, publish errors, reconnects) in the Prometheus text format at
http://IP:PORT/metrics while it follows; an address that cannot be listened on
(a port in use) is an error at once (exit 2). The endpoint has no
authentication: keep it on a loopback or private address. On a terminal, a
progress line shows records shipped and the lag.";

/// Ship a log to a NATS JetStream stream.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ShipArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// The NATS server: nats://HOST:PORT (a cluster's servers: several,
    /// comma-separated).
    #[arg(long, value_name = "URL")]
    pub(crate) to: String,
    /// The JetStream stream.
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
    /// The first token of the records' subjects (PREFIX.LOG_ID.SESSION):
    /// one per stream on a server.
    #[arg(long, value_name = "PREFIX", default_value = logbook_fleet::DEFAULT_PREFIX)]
    pub(crate) subject_prefix: String,
    /// Keep shipping what is appended, until interrupted.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Replicas of the stream, when it is created (1, or 3 on a cluster).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) replicas: usize,
    /// Without --follow, give up after the server failed this many seconds
    /// in a row.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub(crate) give_up: u64,
    /// With --follow: serve metrics in the Prometheus text format on this
    /// address (IP:PORT, such as 127.0.0.1:9464), at /metrics.
    #[arg(long, value_name = "IP:PORT", requires = "follow")]
    pub(crate) metrics: Option<SocketAddr>,
    /// Publishes awaiting their ack at most.
    #[arg(long, value_name = "N", default_value_t = 256, hide = true)]
    pub(crate) window: usize,
}

pub(crate) fn run(args: &ShipArgs) -> anyhow::Result<Outcome> {
    let target = stream::target(std::path::Path::new(&args.to), &args.stream)?
        .with_prefix(&args.subject_prefix)?;
    // A live progress line on a terminal; elsewhere, a note a second.
    let bar = (args.follow && std::io::stderr().is_terminal()).then(progress_bar);
    let retry_bar = bar.clone();
    let options = ShipOptions {
        window: args.window,
        stream: StreamSettings {
            replicas: args.replicas,
            ..StreamSettings::default()
        },
        give_up_after: Duration::from_secs(args.give_up),
        // One line per retry: a shipper that waits says why.
        on_retry: Some(Arc::new(move |e: &FleetError, wait: Duration| {
            let note = || {
                output::report_note(&format!("{e}; retrying in {:.1} s", wait.as_secs_f64()));
            };
            match &retry_bar {
                Some(bar) => bar.suspend(note),
                None => note(),
            }
        })),
        ..ShipOptions::default()
    };
    let report = if args.follow {
        let shipped = stream::block_on(async {
            // First, so that a bad address fails at once, and so that the
            // shipper's metrics are registered with this recorder.
            if let Some(addr) = args.metrics {
                exporter::serve(addr)?;
            }
            let shipper = Shipper::new(&args.dir, target.clone(), options)?;
            let report = shipper
                .follow(|r| match &bar {
                    Some(bar) => bar.set_message(progress(r)),
                    None => output::report_note(&format!("{} (following)", progress(r))),
                })
                .await?;
            anyhow::Ok(report)
        });
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        shipped??
    } else {
        let shipper = Shipper::new(&args.dir, target.clone(), options)?;
        stream::block_on(shipper.ship())??
    };
    let mut out = output::stdout();
    let lsns = report
        .lsns
        .map_or_else(String::new, |(a, b)| format!(" (LSN {a}..={b})"));
    writeln!(
        out,
        "shipped {} record(s){lsns} of log {} in {} to {}; {} already there, {} imported from the stream, through LSN {}",
        report.shipped,
        args.dir.display(),
        report.log,
        stream::name(&target),
        report.already_there + report.duplicates,
        report.imported,
        report.shipped_through
    )?;
    out.flush()?;
    Ok(Outcome::Clean)
}

fn progress(r: &ShipReport) -> String {
    format!(
        "shipped {} record(s), through LSN {}, {} reconnect(s); lag {} record(s), {:.1} s",
        r.shipped,
        r.shipped_through,
        r.reconnects,
        r.read_through.saturating_sub(r.shipped_through),
        r.lag.as_secs_f64()
    )
}

/// The live progress line of `--follow` on a terminal.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    bar.set_message("connecting");
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
