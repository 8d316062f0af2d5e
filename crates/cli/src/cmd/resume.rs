//! `logbook resume DIR SESSION --from nats://…`: pull a session from a
//! stream into this host's log and resume it here.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

use crate::output::{self, Outcome};
use crate::stream;

const EXAMPLES: &str = "\
Examples:
  logbook resume /var/lib/agent/log 3f2a9c1e-… --from nats://10.0.0.5:4222

Pulls every record of the session that this log lacks from the stream (the
records shipped by the host it ran on), appends them to this log (listed in its
IMPORTS file, so that `logbook ship` never sends them again), then appends a
durable SessionResumed: the session is resumed here, and what this host writes
next ships as this log's. `logbook replay nats://… SESSION` then shows one
session across both hosts. A completed session cannot be resumed (exit 2).";

/// Resume a session from a stream on this host's log.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ResumeArgs {
    /// This host's log directory (created if missing).
    pub(crate) dir: PathBuf,
    /// The session's id (whole).
    pub(crate) session: Uuid,
    /// The NATS server: nats://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub(crate) from: String,
    /// The JetStream stream.
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
}

pub(crate) fn run(args: &ResumeArgs) -> anyhow::Result<Outcome> {
    let target = stream::target(std::path::Path::new(&args.from), &args.stream)?;
    let wal = Wal::open(
        &args.dir,
        crate::keys::writer_options(WalOptions::default()),
    )?;
    let pulled = stream::block_on(logbook_fleet::resume_from_stream(
        &target,
        &wal,
        args.session,
    ));
    let pulled = match pulled? {
        Ok(p) => p,
        Err(e @ logbook_fleet::FleetError::UnknownSession { .. }) => {
            output::report_nothing_found(&e.to_string());
            return Ok(Outcome::NothingFound);
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = output::stdout();
    let r = &pulled.resumed;
    writeln!(
        out,
        "session {} resumed in {}: {} record(s) pulled from {} ({} already here); SessionResumed at LSN {} (from LSN {}); {} pending tool call(s)",
        args.session,
        args.dir.display(),
        pulled.imported,
        stream::name(&target),
        pulled.already_here,
        r.resumed_lsn,
        r.last_lsn,
        r.pending_tool_calls.len()
    )?;
    out.flush()?;
    wal.close()?;
    Ok(Outcome::Clean)
}
