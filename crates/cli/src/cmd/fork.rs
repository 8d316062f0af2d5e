//! `logbook fork`: a new session whose history is another's up to a point.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use logbook_replay::ReplayError;
use logbook_wal::{Lsn, Wal, WalOptions};
use serde::Serialize;
use uuid::Uuid;

use crate::cmd::replay::{Resolved, resolve_session};
use crate::output::{self, Outcome};

const EXAMPLES: &str = "\
Examples:
  logbook fork ./logbook-demo 1d17157b --at 57
  logbook fork ./logbook-demo 1d17157b --at 57 --json | jq -r .session

Appends a new session to the log: a durable session_forked record (naming the
session and LSN it came from), then a copy of every event of the session up to
and including --at (an LSN: a whole number, at most the log's last; a later one
is refused, exit 2), in order, and waits until they are durable. The original
is not changed. The new session's id is printed; `logbook replay` shows its
history and `logbook sessions` where it came from; resume it to go on from
there. The log must not be held by a live writer (fork it from inside the
program that writes it with logbook_replay::fork). --json prints one object
with session, from, at_lsn, forked_lsn, truncated and copied.";

/// Fork a session at a point of its history.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ForkArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// The session: its id, or a prefix of it that only it has.
    #[arg(value_parser = crate::cmd::dump::parse_session_prefix)]
    pub(crate) session: String,
    /// The last LSN of the session's history the fork includes (a whole
    /// number, at most the log's last LSN).
    #[arg(long, value_name = "LSN", value_parser = output::parse_lsn)]
    pub(crate) at: Lsn,
    /// One JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Serialize)]
struct ForkJson {
    session: Uuid,
    from: Uuid,
    at_lsn: Lsn,
    forked_lsn: Lsn,
    /// The original's beginning was retained away: the fork is marked
    /// truncated too.
    truncated: bool,
    copied: u64,
}

pub(crate) fn run(args: &ForkArgs) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    drop(crate::scan::open_reader(dir)?);
    let id = match resolve_session(dir, &args.session)? {
        Resolved::One(id) => id,
        Resolved::None(why) => {
            output::report_nothing_found(&why);
            return Ok(Outcome::NothingFound);
        }
    };
    // Refused before the log is opened for writing (which would touch it).
    let last = logbook_replay::last_lsn(dir)?;
    if args.at > last {
        return Err(
            anyhow::Error::new(ReplayError::PastEnd { lsn: args.at, last }).context(format!(
                "cannot fork at LSN {} in the log in {} (nothing changed)",
                args.at,
                dir.display()
            )),
        );
    }
    let options = WalOptions {
        create_if_missing: false,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir, crate::keys::writer_options(options)).with_context(|| {
        format!(
            "cannot fork in the log in {} (nothing changed)",
            dir.display()
        )
    })?;
    let forked = match logbook_replay::fork(&wal, id, args.at) {
        Ok(forked) => forked,
        Err(e @ (ReplayError::UnknownSession(_) | ReplayError::BeforeSession { .. })) => {
            wal.close()?;
            output::report_nothing_found(&format!("{e} (nothing changed)"));
            return Ok(Outcome::NothingFound);
        }
        Err(e @ ReplayError::PastEnd { .. }) => {
            wal.close()?;
            return Err(anyhow::Error::new(e).context(format!(
                "cannot fork at LSN {} in the log in {} (nothing changed)",
                args.at,
                dir.display()
            )));
        }
        Err(e) => {
            wal.close()?;
            return Err(anyhow::Error::new(e).context("nothing changed"));
        }
    };
    wal.close()?;
    let mut out = output::stdout();
    if args.json {
        output::json_line(
            &mut out,
            &ForkJson {
                session: forked.session,
                from: forked.from,
                at_lsn: forked.at_lsn,
                forked_lsn: forked.forked_lsn,
                truncated: forked.truncated,
                copied: forked.copied,
            },
        )?;
    } else {
        writeln!(
            out,
            "forked {} at LSN {} as {}: session_forked at LSN {}, {} event(s) copied{}",
            forked.from,
            forked.at_lsn,
            forked.session,
            forked.forked_lsn,
            forked.copied,
            if forked.truncated {
                " (the original's beginning was retained away: the fork is marked truncated too, a session_truncated record first)"
            } else {
                ""
            }
        )?;
    }
    out.flush()?;
    Ok(Outcome::Clean)
}
