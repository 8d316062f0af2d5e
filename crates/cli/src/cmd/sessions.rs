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
  logbook sessions ./logbook-demo --sort tokens --limit 3    the three biggest spenders
  logbook sessions ./logbook-demo --since 2h --model gpt-4.1
  logbook sessions ./logbook-demo --since @1764410000 --until @1764413600.5
  logbook sessions nats://10.0.0.5:4222               every session of every log in the stream
  logbook sessions nats://10.0.0.5:4222 --log 3601f79c  the sessions of one log (an id or a prefix)

A session is running, completed (it ended with Done), failed (it ended with
Error) or interrupted: no terminal event, and no live writer holds the log, so
the process that ran it died (`logbook replay DIR ID` shows where it stopped).
While a writer holds the log, unfinished sessions show as running. Tokens are
the prompt and completion tokens of the session's token_usage events.

The title is the title the session started with, else the first line of its
first user message; the table shortens it. Without --sort, sessions are in log
order (by their first record); --sort puts the most interesting first: started
and last newest first, events and tokens largest first, status running,
interrupted, failed, completed (ties newest first); --reverse flips the order.
--since/--until keep the sessions active in that span (their last event at or
after --since, their first before --until). --limit N shows the first N after
filtering and sorting.

--json prints one object per session with the fields session, status, error
(the last Error's message, for a failed session), title, cwd, model, events,
durable_events, skipped_records, tokens, legacy_tokens, first_lsn, last_lsn,
started and last_event (RFC 3339, UTC, to the millisecond), started_us and
last_event_us (µs since the Unix epoch), resumptions and, for a fork,
forked_from (session, at_lsn) and, read from a stream, logs (the ids of the
logs holding its records); the table notes a fork as \"fork of ID@LSN\" and a
stream's session as \"log ID\". Sealed segments counted from their session
summaries (.sum/.run files, stored by earlier listings) are not read again:
a line under the table says how many records that is (a note on stderr with
--json), and `logbook verify` checks every record.

Damage in the log is reported on stderr; the listing goes on past it (and exits 1); a torn tail at the end of the log (bytes
a crashed writer never acknowledged) gets a note and does not change the exit
status. A filter (--status, --model, --since/--until) that no session matches says
so on stderr (exit 1: nothing found).";

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

/// An order for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SortKey {
    /// By the time of its first record, newest first.
    Started,
    /// By the time of its last record, newest first.
    Last,
    /// By events, most first.
    Events,
    /// By tokens, most first.
    Tokens,
    /// Running, interrupted, failed, completed.
    Status,
}

impl SortKey {
    /// Sort `sessions` most interesting first; ties newest first, then in
    /// log order.
    fn sort(self, sessions: &mut [&SessionSummary]) {
        let rank = |s: &SessionSummary| match s.status {
            SessionStatus::Running => 0,
            SessionStatus::Interrupted => 1,
            SessionStatus::Failed(_) => 2,
            _ => 3,
        };
        sessions.sort_by(|a, b| {
            let key = match self {
                SortKey::Started => b.first_timestamp_us.cmp(&a.first_timestamp_us),
                SortKey::Last => b.last_timestamp_us.cmp(&a.last_timestamp_us),
                SortKey::Events => b.events.cmp(&a.events),
                SortKey::Tokens => b.tokens.cmp(&a.tokens),
                SortKey::Status => rank(a).cmp(&rank(b)),
            };
            key.then(b.first_timestamp_us.cmp(&a.first_timestamp_us))
                .then(a.first_lsn.cmp(&b.first_lsn))
        });
    }
}

/// List the sessions.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct SessionsArgs {
    /// The log directory, one segment file of it (only that segment's
    /// records), or nats://HOST:PORT (every log shipped to the stream).
    #[arg(value_name = "DIR|SEGMENT|URL")]
    pub(crate) dir: PathBuf,
    /// Only sessions with this status (repeatable, or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) status: Vec<StatusFilter>,
    /// Only sessions whose model is one of these (repeatable, or
    /// comma-separated; exact names).
    #[arg(long, value_delimiter = ',')]
    pub(crate) model: Vec<String>,
    /// Only sessions active at or after this time (RFC 3339, a date, epoch
    /// seconds after an @ such as @1764410000.5, or 15m ago).
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) since: Option<u64>,
    /// Only sessions active before this time (the forms of --since).
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) until: Option<u64>,
    /// Sort: most interesting first (see below); default: log order.
    #[arg(long, value_enum)]
    pub(crate) sort: Option<SortKey>,
    /// Reverse the order.
    #[arg(long)]
    pub(crate) reverse: bool,
    /// Show at most N sessions (after filtering and sorting).
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
    /// One JSON object per session (JSON Lines).
    #[arg(long)]
    pub(crate) json: bool,
    /// With a nats://HOST:PORT URL instead of a directory: the JetStream
    /// stream to read (the sessions of every log in it).
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
    /// Only the records of this log: a log id or a prefix of one (a
    /// stream holds the records of many logs; the table notes each
    /// session's log, --json has a logs field).
    #[arg(long, value_name = "ID", value_parser = crate::stream::parse_log_prefix)]
    pub(crate) log: Option<String>,
    /// Also the deleted sessions (nothing left of them but tombstones).
    #[arg(long)]
    pub(crate) include_deleted: bool,
    /// Also the sessions whose beginning was retained away (older segments
    /// removed by retention): they are not complete.
    #[arg(long)]
    pub(crate) include_truncated: bool,
}

#[derive(Debug, Serialize)]
struct SessionJson<'a> {
    session: Uuid,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    title: Option<&'a str>,
    cwd: Option<&'a str>,
    model: Option<&'a str>,
    events: u64,
    durable_events: u64,
    skipped_records: u64,
    tokens: u64,
    legacy_tokens: u64,
    first_lsn: Lsn,
    last_lsn: Lsn,
    started: String,
    last_event: String,
    started_us: u64,
    last_event_us: u64,
    resumptions: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    forked_from: Option<ForkedFromJson>,
    /// The logs holding its records, read from a stream.
    #[serde(skip_serializing_if = "<[Uuid]>::is_empty")]
    logs: &'a [Uuid],
    /// Deleted: nothing left of it but tombstones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    /// Its beginning was retained away.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

/// Where a fork came from.
#[derive(Debug, Serialize)]
struct ForkedFromJson {
    session: Uuid,
    at_lsn: Lsn,
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
            title: s.title.as_deref(),
            cwd: s.cwd.as_deref(),
            model: s.model.as_deref(),
            events: s.events,
            durable_events: s.durable_events,
            skipped_records: s.skipped_records,
            tokens: s.tokens,
            legacy_tokens: s.legacy_tokens,
            first_lsn: s.first_lsn,
            last_lsn: s.last_lsn,
            started: output::rfc3339_millis(s.first_timestamp_us),
            last_event: output::rfc3339_millis(s.last_timestamp_us),
            started_us: s.first_timestamp_us,
            last_event_us: s.last_timestamp_us,
            resumptions: s.resumptions,
            forked_from: s
                .forked_from
                .map(|(session, at_lsn)| ForkedFromJson { session, at_lsn }),
            logs: &s.logs,
            deleted: s.deleted,
            truncated: s.truncated,
        }
    }
}

pub(crate) fn run(args: &SessionsArgs) -> anyhow::Result<Outcome> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            anyhow::bail!(
                "--since {} is not before --until {}: the time range is empty",
                output::rfc3339(since),
                output::rfc3339(until)
            );
        }
    }
    let mut source = crate::stream::source(&args.dir, &args.stream)?;
    if let Some(why) = crate::stream::keep_log(&mut source, args.log.as_deref())? {
        output::report_nothing_found(&why);
        return Ok(Outcome::NothingFound);
    }
    let log = logbook_replay::list_sessions_in(&source, OnCorruption::Skip)?;
    let problems = report_damage(&log);
    let mut out = output::stdout();
    let deleted_hidden = if args.include_deleted {
        0
    } else {
        log.deleted.len()
    };
    let truncated_hidden = if args.include_truncated {
        0
    } else {
        log.sessions.iter().filter(|s| s.truncated).count()
    };
    let deleted_shown = log.deleted.iter().filter(|_| args.include_deleted);
    let mut shown: Vec<&SessionSummary> = log
        .sessions
        .iter()
        .chain(deleted_shown)
        .filter(|s| args.include_truncated || !s.truncated)
        .filter(|s| args.wants(s))
        .collect();
    if args.include_deleted && args.sort.is_none() {
        shown.sort_by_key(|s| s.first_lsn);
    }
    let matched = shown.len();
    if let Some(key) = args.sort {
        key.sort(&mut shown);
    }
    if args.reverse {
        shown.reverse();
    }
    if let Some(limit) = args.limit {
        shown.truncate(limit);
    }
    if args.json {
        if log.from_summaries.any() {
            output::report_note(&not_read_again(&log, &args.dir));
        }
        for s in &shown {
            output::json_line(&mut out, &SessionJson::new(s))?;
        }
    } else {
        print_table(&mut out, &log, &shown, "")?;
        if deleted_hidden + truncated_hidden > 0 {
            writeln!(
                out,
                "not shown: {deleted_hidden} deleted session(s) (--include-deleted), {truncated_hidden} truncated by retention (--include-truncated)"
            )?;
        }
        // Never a clean bill of health for records nobody read.
        if log.from_summaries.any() {
            writeln!(out, "{}", not_read_again(&log, &args.dir))?;
        }
        if !log.writer_known {
            writeln!(
                out,
                "from a stream: sessions without a terminal event show as running (whether their host is alive is not known here)"
            )?;
        }
    }
    out.flush()?;
    if matched == 0 && args.filters() && !log.sessions.is_empty() {
        output::report_nothing_found(&format!(
            "no session of {} matches {} ({} session(s) in all)",
            source.name(),
            args.filter_words(),
            log.sessions.len()
        ));
        if problems == 0 {
            return Ok(Outcome::NothingFound);
        }
    }
    Ok(Outcome::from_count(problems))
}

impl SessionsArgs {
    /// Whether a filter is given (--limit is not one: it cuts, it does not
    /// select).
    fn filters(&self) -> bool {
        !self.status.is_empty()
            || !self.model.is_empty()
            || self.since.is_some()
            || self.until.is_some()
    }

    /// Whether `s` passes every filter.
    fn wants(&self, s: &SessionSummary) -> bool {
        (self.status.is_empty() || self.status.iter().any(|f| f.matches(&s.status)))
            && (self.model.is_empty() || s.model.as_ref().is_some_and(|m| self.model.contains(m)))
            && self.since.is_none_or(|t| s.last_timestamp_us >= t)
            && self.until.is_none_or(|t| s.first_timestamp_us < t)
    }

    /// The filters given, in words.
    fn filter_words(&self) -> String {
        let mut words = Vec::new();
        if !self.status.is_empty() {
            let names: Vec<String> = self
                .status
                .iter()
                .filter_map(|f| f.to_possible_value())
                .map(|v| v.get_name().to_owned())
                .collect();
            words.push(format!("--status {}", names.join(",")));
        }
        if !self.model.is_empty() {
            words.push(format!("--model {}", self.model.join(",")));
        }
        if let Some(t) = self.since {
            words.push(format!("--since {}", output::rfc3339(t)));
        }
        if let Some(t) = self.until {
            words.push(format!("--until {}", output::rfc3339(t)));
        }
        words.join(" ")
    }
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

/// What a listing or `stats` says of records it counted from session
/// summaries instead of reading them: not checked here.
fn not_read_again(log: &LogSummary, path: &Path) -> String {
    records_not_read_again(
        log.from_summaries.records,
        log.from_summaries.segments,
        path,
    )
}

/// [`not_read_again`] of `records` (`segments` of them whole).
pub(crate) fn records_not_read_again(records: u64, segments: u64, path: &Path) -> String {
    format!(
        "{records} record(s){} counted from session summaries (.sum/.run), not read again: \
         not checked here (`logbook verify {}` checks every record)",
        if segments > 0 {
            format!(", {segments} sealed segment(s) whole,")
        } else {
            String::new()
        },
        path.display()
    )
}

fn lsn_list(lsns: &[Lsn]) -> String {
    let mut s: Vec<String> = lsns.iter().take(5).map(ToString::to_string).collect();
    if lsns.len() > 5 {
        s.push("…".to_owned());
    }
    s.join(", ")
}

/// The widest title the table shows, in characters.
const TITLE_WIDTH: usize = 32;

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
        "title",
        "",
    ]);
    for s in shown {
        let mut notes = Vec::new();
        if !s.logs.is_empty() {
            let logs: Vec<String> = s.logs.iter().map(output::short_id).collect();
            notes.push(format!(
                "log{} {}",
                if logs.len() > 1 { "s" } else { "" },
                logs.join(", ")
            ));
        }
        if let Some((from, at)) = s.forked_from {
            notes.push(format!("fork of {}@{at}", output::short_id(&from)));
        }
        if s.deleted {
            notes.push("deleted".to_owned());
        }
        if s.truncated {
            notes.push("truncated: its beginning was retained away".to_owned());
        }
        match &s.status {
            SessionStatus::Failed(e) => notes.push(output::flatten(e)),
            _ if s.resumptions > 0 => notes.push(format!("resumed {}x", s.resumptions)),
            _ => {}
        }
        let note = notes.join("; ");
        table.row(vec![
            output::short_id(&s.session),
            s.status.as_str().to_owned(),
            s.events.to_string(),
            s.tokens.to_string(),
            output::rfc3339_seconds(s.first_timestamp_us),
            output::rfc3339_seconds(s.last_timestamp_us),
            s.model.clone().unwrap_or_else(|| "-".to_owned()),
            s.title
                .as_deref()
                .map_or_else(|| "-".to_owned(), |t| output::shorten(t, TITLE_WIDTH)),
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
