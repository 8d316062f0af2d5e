//! `logbook sessions`: a table of the log's sessions, from one pass.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use logbook_replay::{LogSummary, OnCorruption, SessionStatus, SessionSummary};
use logbook_wal::Lsn;
use serde::Serialize;
use uuid::Uuid;

use crate::output::{self, Outcome, Table};
use crate::scan;

const EXAMPLES: &str = "\
Examples:
  logbook sessions ./logbook-demo
  logbook sessions ./logbook-demo --status interrupted
  logbook sessions ./logbook-demo --json | jq -r 'select(.status == \"failed\") | .error'

A session is running, completed (it ended with Done), failed (it ended with
Error) or interrupted: no terminal event, and no live writer holds the log, so
the process that ran it died (`logbook replay DIR ID` shows where it stopped).
While a writer holds the log, unfinished sessions show as running. Tokens are
the prompt and completion tokens of the session's token_usage events.

--json prints one object per session with the fields session, status, error
(the last Error's message, for a failed session), events, durable_events,
skipped_records, tokens, legacy_tokens, first_lsn, last_lsn, started,
last_event, model and resumptions. Damage in the log is reported on stderr; the
listing goes on past it (and exits 1); a torn tail at the end of the log (bytes
a crashed writer never acknowledged) gets a note and does not change the exit
status. A --status that no session has says so on stderr (exit 1: nothing
found).";

/// A status to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFilter {
    Running,
    Completed,
    Failed,
    Interrupted,
}

impl StatusFilter {
    fn matches(self, status: &SessionStatus) -> bool {
        status.as_str()
            == match self {
                StatusFilter::Running => "running",
                StatusFilter::Completed => "completed",
                StatusFilter::Failed => "failed",
                StatusFilter::Interrupted => "interrupted",
            }
    }
}

/// List the sessions.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct SessionsArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Only sessions with this status (repeatable).
    #[arg(long, value_enum)]
    pub(crate) status: Vec<StatusFilter>,
    /// One JSON object per session (JSON Lines).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Serialize)]
struct SessionJson<'a> {
    session: Uuid,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    events: u64,
    durable_events: u64,
    skipped_records: u64,
    tokens: u64,
    legacy_tokens: u64,
    first_lsn: Lsn,
    last_lsn: Lsn,
    started: String,
    last_event: String,
    model: Option<&'a str>,
    resumptions: u64,
}

impl<'a> SessionJson<'a> {
    fn new(s: &'a SessionSummary) -> SessionJson<'a> {
        SessionJson {
            session: s.session,
            status: s.status.as_str(),
            error: match &s.status {
                SessionStatus::Failed(e) => Some(e),
                _ => None,
            },
            events: s.events,
            durable_events: s.durable_events,
            skipped_records: s.skipped_records,
            tokens: s.tokens,
            legacy_tokens: s.legacy_tokens,
            first_lsn: s.first_lsn,
            last_lsn: s.last_lsn,
            started: output::rfc3339(s.first_timestamp_us),
            last_event: output::rfc3339(s.last_timestamp_us),
            model: s.model.as_deref(),
            resumptions: s.resumptions,
        }
    }
}

pub(crate) fn run(args: &SessionsArgs) -> anyhow::Result<Outcome> {
    let log = list(&args.dir)?;
    let problems = report_damage(&log);
    let mut out = output::stdout();
    let shown: Vec<&SessionSummary> = log
        .sessions
        .iter()
        .filter(|s| args.status.is_empty() || args.status.iter().any(|f| f.matches(&s.status)))
        .collect();
    if args.json {
        for s in &shown {
            output::json_line(&mut out, &SessionJson::new(s))?;
        }
    } else {
        print_table(&mut out, &log, &shown, "")?;
    }
    out.flush()?;
    if shown.is_empty() && !args.status.is_empty() && !log.sessions.is_empty() {
        output::report_nothing_found(&format!(
            "no session of the log in {} has the status asked for ({} session(s) in all)",
            args.dir.display(),
            log.sessions.len()
        ));
        if problems == 0 {
            return Ok(Outcome::NothingFound);
        }
    }
    Ok(Outcome::from_count(problems))
}

/// List the log's sessions, going on past damage.
pub(crate) fn list(dir: &Path) -> anyhow::Result<LogSummary> {
    // A missing directory, or one with no log, said as plainly as every
    // other command says it.
    scan::open_reader(dir)?;
    Ok(logbook_replay::list_sessions_with(dir, OnCorruption::Skip)?)
}

/// Report on stderr what the listing skipped; returns how many problems.
pub(crate) fn report_damage(log: &LogSummary) -> u64 {
    for e in &log.corruption {
        output::report_problem(&scan::describe(e));
    }
    let unreported = log.corruption_count - log.corruption.len() as u64;
    if unreported > 0 {
        output::report_problem(&format!("and {unreported} more problem(s)"));
    }
    if log.undecodable.count > 0 {
        output::report_problem(&format!(
            "{} record(s) pass their checksum but hold no event (LSN {})",
            log.undecodable.count,
            lsn_list(&log.undecodable.lsns)
        ));
    }
    if log.unknown.count > 0 {
        output::report_note(&format!(
            "{} record(s) of an event kind this build does not know were skipped (LSN {})",
            log.unknown.count,
            lsn_list(&log.unknown.lsns)
        ));
    }
    // A torn tail holds nothing that was acknowledged: the sessions are
    // what they are without it. Worth a note, not a problem.
    if let Some(damage) = &log.tail_damage {
        output::report_note(&format!(
            "{} ({})",
            scan::describe_tail(damage),
            if log.writer_live {
                "a live writer holds the log: probably a write in progress"
            } else {
                "never acknowledged; the next writer cuts it"
            }
        ));
    }
    log.corruption_count + log.undecodable.count
}

fn lsn_list(lsns: &[Lsn]) -> String {
    let mut s: Vec<String> = lsns.iter().take(5).map(ToString::to_string).collect();
    if lsns.len() > 5 {
        s.push("…".to_owned());
    }
    s.join(", ")
}

/// The sessions table, its totals and a word about the writer.
pub(crate) fn print_table(
    out: &mut dyn Write,
    log: &LogSummary,
    shown: &[&SessionSummary],
    indent: &str,
) -> anyhow::Result<()> {
    let mut table = Table::new(&[
        "session",
        "status",
        ">events",
        ">tokens",
        "started",
        "last event",
        "model",
        "",
    ]);
    for s in shown {
        let note = match &s.status {
            SessionStatus::Failed(e) => output::flatten(e),
            _ if s.resumptions > 0 => format!("resumed {}x", s.resumptions),
            _ => String::new(),
        };
        table.row(vec![
            output::short_id(&s.session),
            s.status.as_str().to_owned(),
            s.events.to_string(),
            s.tokens.to_string(),
            output::rfc3339_seconds(s.first_timestamp_us),
            output::rfc3339_seconds(s.last_timestamp_us),
            s.model.clone().unwrap_or_else(|| "-".to_owned()),
            note,
        ]);
    }
    table.write(out, indent)?;
    let count = |name: &str| {
        log.sessions
            .iter()
            .filter(|s| s.status.as_str() == name)
            .count()
    };
    let mut totals = format!("{} session(s)", log.sessions.len());
    for name in ["running", "completed", "failed", "interrupted"] {
        let n = count(name);
        if n > 0 {
            totals.push_str(&format!(", {n} {name}"));
        }
    }
    if shown.len() != log.sessions.len() {
        totals.push_str(&format!(" ({} shown)", shown.len()));
    }
    writeln!(out, "{indent}{totals}")?;
    if log.writer_live {
        writeln!(
            out,
            "{indent}a live writer holds the log: sessions without a terminal event show as running"
        )?;
    }
    Ok(())
}
