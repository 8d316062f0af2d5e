//! `logbook export` and `logbook import`: sessions as JSON Lines.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use logbook_replay::{ExportFilter, ReplayError};
use logbook_wal::{Wal, WalOptions};

use crate::cmd::replay::{Resolved, resolve_session};
use crate::output::{self, Outcome};

const EXPORT_EXAMPLES: &str = "\
Examples:
  logbook export ./logbook-demo > sessions.jsonl
  logbook export ./logbook-demo --session 1d17157b --since 2h > one.jsonl

Writes one JSON object per record, in LSN order, with the fields v (the format
version, 1), lsn, session, ts (RFC 3339, UTC, to the microsecond), ts_us (µs
since the Unix epoch), kind (the event's stable kind name) and event (the event,
as `logbook dump --json` prints it). docs/json.md describes every kind and
field. `logbook import` reads it back into any log. Records of an event kind this
build does not know are left out and counted on stderr. A damaged log is an
error (exit 1): an export never leaves records out silently.";

/// Write sessions as JSON Lines (docs/json.md).
#[derive(Debug, Args)]
#[command(after_help = EXPORT_EXAMPLES)]
pub(crate) struct ExportArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Only this session (an id, or a prefix of one that only it has).
    #[arg(long, value_name = "ID", value_parser = crate::cmd::dump::parse_session_prefix)]
    pub(crate) session: Option<String>,
    /// Only records appended at or after this time (RFC 3339, a date,
    /// @epoch-seconds or a duration back from now such as 15m).
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) since: Option<u64>,
    /// Only records appended before this time.
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) until: Option<u64>,
}

const IMPORT_EXAMPLES: &str = "\
Examples:
  logbook import ./other-log sessions.jsonl
  logbook export ./a --session 1d17157b | logbook import ./b -

Appends the events of an export (docs/json.md) to the log in DIR (created if
missing), in the order of the lines: each keeps its session and its time; LSNs
are new. Every line is checked first: a bad line is named with its number and
nothing is appended (exit 2). The log must not be held by a live writer.";

/// Append the events of an export to a log.
#[derive(Debug, Args)]
#[command(after_help = IMPORT_EXAMPLES)]
pub(crate) struct ImportArgs {
    /// The log directory (created if missing).
    pub(crate) dir: PathBuf,
    /// The export to read: a file, or - for standard input.
    pub(crate) file: PathBuf,
}

pub(crate) fn export(args: &ExportArgs) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    drop(crate::scan::open_reader(dir)?);
    let mut filter = ExportFilter::all().between(args.since, args.until);
    if let Some(prefix) = &args.session {
        let id = match resolve_session(dir, prefix)? {
            Resolved::One(id) => id,
            Resolved::None(why) => {
                output::report_nothing_found(&why);
                return Ok(Outcome::NothingFound);
            }
        };
        filter = filter.session(id);
    }
    let mut out = output::stdout();
    let done = match logbook_replay::export(dir, filter, &mut out) {
        Ok(done) => done,
        Err(ReplayError::Write { source }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(Outcome::Clean);
        }
        Err(e) => return Err(e.into()),
    };
    if done.skipped > 0 {
        output::report_note(&format!(
            "{} record(s) of an event kind this build does not know were left out",
            done.skipped
        ));
    }
    if done.records == 0 {
        output::report_nothing_found(&format!(
            "no record in the log in {} matches",
            dir.display()
        ));
        return Ok(Outcome::NothingFound);
    }
    Ok(Outcome::Clean)
}

pub(crate) fn import(args: &ImportArgs) -> anyhow::Result<Outcome> {
    let input: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let source = if args.file.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        args.file.display().to_string()
    };
    // Every line is checked before the log is opened: a bad file changes
    // nothing, not even a missing directory.
    let lines = read_all(input).with_context(|| format!("cannot read {source}"))?;
    match logbook_replay::import_check(&lines[..]) {
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("{source}: nothing imported")));
        }
        Ok(0) => {
            output::report_nothing_found(&format!("no event in {source}: nothing imported"));
            return Ok(Outcome::NothingFound);
        }
        Ok(_) => {}
    }
    let wal = Wal::open(
        &args.dir,
        crate::keys::writer_options(WalOptions::default()),
    )
    .with_context(|| {
        format!(
            "cannot import into the log in {} (nothing imported)",
            args.dir.display()
        )
    })?;
    let done =
        logbook_replay::import(&wal, &lines[..]).with_context(|| format!("importing {source}"))?;
    wal.close()?;
    let mut out = output::stdout();
    let (first, last) = done.lsns.unwrap_or_default();
    writeln!(
        out,
        "imported {} event(s) of {} session(s) from {source} as LSNs {first}..={last}",
        done.records, done.sessions
    )?;
    out.flush()?;
    Ok(Outcome::Clean)
}

fn read_all(mut input: Box<dyn BufRead>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    Ok(bytes)
}
