//! `logbook replay`: the rebuilt state of one session.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use logbook_replay::{
    Damage, OnCorruption, ReplayError, SessionState, SessionStatus, SessionSummary, Source,
    TokenTotals, ToolCall, Until,
};
use logbook_wal::{EventRecord, Lsn, WalError};
use serde::Serialize;
use uuid::Uuid;

use crate::output::{self, Outcome, Table};
use crate::render;
use crate::scan;

const EXAMPLES: &str = "\
Examples:
  logbook replay ./logbook-demo 1d17157b       a session id, or a prefix of one
  logbook replay ./logbook-demo 1d17157b --json | jq .pending_tool_calls
  logbook replay ./logbook-demo 1d17157b --at 57            as it was at LSN 57
  logbook replay ./logbook-demo 1d17157b --at 2026-11-29T10:00:00Z

Shows what the log knows of the session, rebuilt from its records: its status,
the transcript (user messages, assistant texts, thinking), every tool call with
the pending ones (started, never completed) marked, token totals by model and
by source, compaction and RLM history, and resumptions. A session with no
terminal event is interrupted when no live writer holds the log.

--json prints one object with the fields session, title, model, cwd, status,
error, first_lsn, last_lsn, started, last_event, events, durable_events,
skipped_records, transcript (lsn, role, text), tool_calls (id, name, pending,
starts, start_lsn, arguments, completion: lsn, output, success, duration_ms),
pending_tool_calls (ids), tokens (total, by_model, by_source, legacy: prompt,
completion, total, requests, duration_ms), compaction and rlm (lsn, ts, kind,
event), resumptions (lsn, ts, from_lsn), kinds (kind: count) and damage
(segment, offset, lsn, may_touch: whether the damaged record may be this
session's). Events of the JSON have the shape of `logbook dump --json`.

--at shows the session as it was at a point of its history: its records up to
and including an LSN (a bare whole number), or appended at or before a time
(RFC 3339, a date, @epoch-seconds or a duration back from now: a bare number is
always an LSN). Its status is then the one its records gave it at that point;
the JSON has an as_of field. A point before the session's first record is
\"nothing found\" (exit 1); an LSN past the end of the log is refused (exit 2).

Damage in the log does not stop a replay: the session is rebuilt from every
record that can be read, each damaged place is reported on stderr with its
segment, offset and LSN and the sessions that were open there (its records
may be theirs), and the exit status is 1. --strict refuses instead: a replay
from a damaged log is an error (exit 1). An unknown session is \"nothing
found\" (exit 1); an ambiguous prefix is a usage error (exit 2).

Given nats://HOST:PORT instead of a directory, replay rebuilds the session from
the records of every log in the stream (--stream, default LOGBOOK) that wrote
it: a session resumed on another host reads as one, the records of the log it
started in first. LSNs are each log's own. Without a terminal event it shows as
running (the stream cannot tell whether its host is alive).";

/// Show one session's rebuilt state.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ReplayArgs {
    /// The log directory, one segment file of it (only that segment's
    /// records), or nats://HOST:PORT (every log shipped to the stream).
    #[arg(value_name = "DIR|SEGMENT|URL")]
    pub(crate) dir: PathBuf,
    /// The session: its id, or a prefix of it that only it has.
    #[arg(value_parser = crate::cmd::dump::parse_session_prefix)]
    pub(crate) session: String,
    /// One JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Refuse to replay from a log with any damage (exit 1), instead of
    /// replaying what can be read and reporting the damage.
    #[arg(long)]
    pub(crate) strict: bool,
    /// The session as it was at this point: an LSN (a bare whole number) or
    /// a time (RFC 3339, a date, @epoch-seconds, or a duration back from now).
    #[arg(long, value_name = "LSN|TIME", value_parser = parse_at)]
    pub(crate) at: Option<Until>,
    /// With a nats://HOST:PORT URL instead of a directory: the JetStream
    /// stream to read (the session's records from every log in it).
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
    /// Only the records of this log: a log id or a prefix of one (a
    /// stream holds the records of many logs).
    #[arg(long, value_name = "ID", value_parser = crate::stream::parse_log_prefix)]
    pub(crate) log: Option<String>,
}

/// `--at`: an LSN or a time, by the one rule (`output::parse_lsn`,
/// `output::parse_time`): a bare whole number is an LSN, a time has a form
/// no LSN has (`@1764410000` for epoch seconds).
fn parse_at(text: &str) -> Result<Until, String> {
    output::parse_lsn(text)
        .map(Until::Lsn)
        .or_else(|_| output::parse_time(text).map(Until::Time))
}

pub(crate) fn run(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let shipped = crate::stream::is_url(&args.dir);
    if shipped && args.at.is_some() {
        anyhow::bail!(
            "--at replays a session from a log directory, not from a stream: its LSNs are those of one log"
        );
    }
    let mut source = crate::stream::source(&args.dir, &args.stream)?;
    if let Some(why) = crate::stream::keep_log(&mut source, args.log.as_deref())? {
        output::report_nothing_found(&why);
        return Ok(Outcome::NothingFound);
    }
    let on_corruption = if args.strict {
        OnCorruption::Fail
    } else {
        OnCorruption::Skip
    };
    // A whole id, or a prefix found and replayed in the same pass.
    let found = match (Uuid::parse_str(&args.session), args.at) {
        (Ok(id), at) => logbook_replay::session_state_in(&source, id, on_corruption, at),
        (Err(_), None) => {
            logbook_replay::session_state_by_prefix_in(&source, &args.session, on_corruption)
        }
        (Err(_), Some(at)) => match resolve_session_in(&source, &args.session)? {
            Resolved::One(id) => {
                logbook_replay::session_state_in(&source, id, on_corruption, Some(at))
            }
            Resolved::None(why) => {
                output::report_nothing_found(&why);
                return Ok(Outcome::NothingFound);
            }
        },
    };
    let (state, damage) = match found {
        Ok(found) => found,
        Err(ReplayError::UnknownSession(id)) => {
            output::report_nothing_found(&format!(
                "{} holds no record of session {id}",
                source.name()
            ));
            return Ok(Outcome::NothingFound);
        }
        Err(ReplayError::NoSessionWithPrefix(_)) => {
            output::report_nothing_found(&no_session_with_prefix(&source, &args.session));
            return Ok(Outcome::NothingFound);
        }
        Err(ReplayError::AmbiguousPrefix { sessions, .. }) => {
            return Err(ambiguous_prefix(&source, &args.session, &sessions));
        }
        Err(e @ ReplayError::BeforeSession { .. }) => {
            output::report_nothing_found(&e.to_string());
            return Ok(Outcome::NothingFound);
        }
        Err(ReplayError::PastEnd { lsn, last }) => {
            anyhow::bail!(
                "--at {lsn}: LSN {lsn} is past the end of the log in {} (its last durable record \
                 is LSN {last}); a bare number is an LSN: for seconds since the Unix epoch write \
                 --at @{lsn}",
                args.dir.display()
            );
        }
        Err(e) => return Err(e.into()),
    };
    // At a past point, the status is the records' own then: running
    // until a terminal event, whatever became of the writer since.
    let writer = match (args.at, source.writer_live()?) {
        (Some(_), _) => Writer::AsOf,
        (None, Some(true)) => Writer::Live,
        (None, Some(false)) => Writer::Gone,
        (None, None) => Writer::Unknown,
    };
    if let (Writer::Gone, Source::Dir(dir)) = (writer, &source) {
        note_torn_tail(dir);
    }
    let places = if damage.is_empty() {
        Vec::new()
    } else {
        report_damage(&source, &state, &damage)?
    };
    let mut out = output::stdout();
    if args.json {
        let mut json = StateJson::new(&state, writer.is_live());
        json.damage = places.iter().map(DamageJson::new).collect();
        json.as_of = args.at.map(|at| AsOfJson::new(at, &state));
        json.logs = state_logs(&source, state.session_id());
        output::json_line(&mut out, &json)?;
    } else {
        if let Some(at) = args.at {
            writeln!(
                out,
                "as of {} (its last record then: LSN {})",
                as_of_text(at),
                state.last_lsn().unwrap_or_default()
            )?;
        }
        print_state_as(&mut out, &state, writer, "")?;
        let logs = state_logs(&source, state.session_id());
        if !logs.is_empty() {
            writeln!(
                out,
                "  logs:    {}",
                logs.iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        for place in places.iter().filter(|p| p.may_touch) {
            writeln!(
                out,
                "damage: {} at offset {}{}: this session was open there; it may miss events",
                place.segment.display(),
                place.offset,
                place
                    .lsn
                    .map_or_else(String::new, |l| format!(" (LSN {l})"))
            )?;
        }
    }
    out.flush()?;
    Ok(if damage.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}

/// What is known of the writer of the replayed session's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// A live writer holds the log.
    Live,
    /// No live writer holds the log.
    Gone,
    /// Not known: records read from a stream (their host may or may not
    /// be alive).
    Unknown,
    /// A state as it was at a past point (`--at`): its status is its
    /// records' own then.
    AsOf,
}

impl Writer {
    /// Whether sessions without a terminal event show as running.
    fn is_live(self) -> bool {
        self != Writer::Gone
    }
}

/// The logs that hold a session's records, for records read from a
/// stream of several logs (empty for a log directory).
fn state_logs(source: &Source, session: Uuid) -> Vec<Uuid> {
    let Source::Shipped(shipped) = source else {
        return Vec::new();
    };
    let mut logs: Vec<Uuid> = Vec::new();
    for r in shipped.records.iter().filter(|r| r.session == session) {
        if !logs.contains(&r.log) {
            logs.push(r.log);
        }
    }
    logs
}

/// A damaged place a lenient replay stepped over.
#[derive(Debug)]
struct DamagePlace {
    segment: PathBuf,
    offset: u64,
    /// The LSN due there, if the damage names one.
    lsn: Option<Lsn>,
    /// Whether the replayed session was open there (the damaged records
    /// may be its).
    may_touch: bool,
}

#[derive(Debug, Serialize)]
struct DamageJson {
    segment: String,
    offset: u64,
    lsn: Option<Lsn>,
    may_touch: bool,
}

impl DamageJson {
    fn new(p: &DamagePlace) -> DamageJson {
        DamageJson {
            segment: p.segment.display().to_string(),
            offset: p.offset,
            lsn: p.lsn,
            may_touch: p.may_touch,
        }
    }
}

/// The LSN a corruption error says was due where it is.
fn lsn_due(e: &WalError) -> Option<Lsn> {
    match e {
        WalError::Corrupt { lsn, .. } | WalError::MidLogCorruption { lsn, .. } => Some(*lsn),
        WalError::Sequence { expected, .. } => Some(*expected),
        _ => None,
    }
}

/// Report each damaged place on stderr, with the sessions that were open
/// there (a damaged record's session cannot be known: it may be any of
/// them); returns the places.
fn report_damage(
    source: &Source,
    state: &SessionState,
    damage: &Damage,
) -> anyhow::Result<Vec<DamagePlace>> {
    let log = logbook_replay::list_sessions_in(source, OnCorruption::Skip)?;
    let mut places = Vec::new();
    for e in &damage.corruption {
        let lsn = lsn_due(e);
        // Open at `lsn`: started before it, and not ended before it.
        let open: Vec<&SessionSummary> = log
            .sessions
            .iter()
            .filter(|s| {
                lsn.is_none_or(|lsn| {
                    let ended = matches!(
                        s.status,
                        SessionStatus::Completed | SessionStatus::Failed(_)
                    );
                    s.first_lsn < lsn && !(ended && s.last_lsn < lsn)
                })
            })
            .collect();
        let may_touch = open.iter().any(|s| s.session == state.session_id());
        let mut names: Vec<String> = open
            .iter()
            .take(SHOW_IDS)
            .map(|s| output::short_id(&s.session))
            .collect();
        if open.len() > SHOW_IDS {
            names.push(format!("and {} more", open.len() - SHOW_IDS));
        }
        output::report_problem(&format!(
            "{}; the damaged record(s) may belong to any of the {} session(s) open there ({}); {}",
            scan::describe(e),
            open.len(),
            names.join(", "),
            if may_touch {
                format!(
                    "session {} is one of them: its replay may miss events",
                    state.session_id()
                )
            } else {
                format!("session {} is not one of them", state.session_id())
            }
        ));
        if let Some((segment, offset)) = e.location() {
            places.push(DamagePlace {
                segment: segment.to_path_buf(),
                offset,
                lsn,
                may_touch,
            });
        }
    }
    let unreported = damage.corruption_count - damage.corruption.len() as u64;
    if unreported > 0 {
        output::report_problem(&format!("and {unreported} more damaged place(s)"));
    }
    if damage.undecodable.count > 0 {
        output::report_problem(&format!(
            "{} record(s) of session {} pass their checksum but hold no event (LSN {}); the \
             replay leaves them out",
            damage.undecodable.count,
            state.session_id(),
            damage
                .undecodable
                .lsns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(places)
}

/// Session ids an ambiguity or a damage report lists before it counts.
const SHOW_IDS: usize = 4;

/// A note on stderr if the log ends in a torn tail (which the replay
/// leaves out: it holds nothing that was acknowledged).
fn note_torn_tail(dir: &Path) {
    let report = logbook_wal::inspect(dir, logbook_wal::RecoveryMode::TolerateCorruptedTail);
    if let Ok(logbook_wal::RecoveryReport { cut: Some(cut), .. }) = report {
        output::report_note(&format!(
            "{} at offset {}: torn tail where LSN {} was due ({} byte(s) never acknowledged; the \
             next writer cuts them): the replay shows the records before it",
            cut.path.display(),
            cut.offset,
            cut.lsn,
            cut.bytes
        ));
    }
}

/// What a session id or prefix names.
pub(crate) enum Resolved {
    /// One session (a full id is taken as it is, even if the log does
    /// not hold it).
    One(Uuid),
    /// No session of the log: why, to say on stderr ("nothing found").
    None(String),
}

/// The session a full id or a unique prefix names. Every command that
/// takes a session (`dump --session`, `replay`, `fork`, `export --session`)
/// resolves it here.
///
/// # Errors
///
/// A prefix that several sessions share (a usage error: exit 2), or the
/// log's errors.
pub(crate) fn resolve_session(dir: &Path, text: &str) -> anyhow::Result<Resolved> {
    resolve_session_in(&Source::Dir(dir.to_path_buf()), text)
}

/// [`resolve_session`] in any source (a log directory, a segment file, a
/// stream's records).
pub(crate) fn resolve_session_in(source: &Source, text: &str) -> anyhow::Result<Resolved> {
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(Resolved::One(id));
    }
    let matching = logbook_replay::sessions_with_prefix_in(source, text)?;
    match matching.as_slice() {
        [] => Ok(Resolved::None(no_session_with_prefix(source, text))),
        [one] => Ok(Resolved::One(*one)),
        many => Err(ambiguous_prefix(source, text, many)),
    }
}

/// What a prefix that names no session says.
fn no_session_with_prefix(source: &Source, text: &str) -> String {
    format!("no session in {} starts with {text}", source.name())
}

/// The refusal of a prefix that names several sessions: the same from
/// every command.
fn ambiguous_prefix(source: &Source, text: &str, many: &[Uuid]) -> anyhow::Error {
    ambiguous_prefix_in(&source.name(), text, many)
}

/// [`ambiguous_prefix`] of sessions found in `place` (a log, a stream).
pub(crate) fn ambiguous_prefix_in(place: &str, text: &str, many: &[Uuid]) -> anyhow::Error {
    let mut shown: Vec<String> = many
        .iter()
        .take(SHOW_IDS)
        .map(ToString::to_string)
        .collect();
    if many.len() > SHOW_IDS {
        shown.push(format!("and {} more", many.len() - SHOW_IDS));
    }
    anyhow::anyhow!(
        "{text} names {} sessions in {place} ({}): give more of the id",
        many.len(),
        shown.join(", ")
    )
}

/// The state, readable.
pub(crate) fn print_state(
    out: &mut dyn Write,
    state: &SessionState,
    writer_live: bool,
    indent: &str,
) -> anyhow::Result<()> {
    let writer = if writer_live {
        Writer::Live
    } else {
        Writer::Gone
    };
    print_state_as(out, state, writer, indent)
}

/// [`print_state`], with what is known of the writer.
fn print_state_as(
    out: &mut dyn Write,
    state: &SessionState,
    writer: Writer,
    indent: &str,
) -> anyhow::Result<()> {
    let status = state.status_given(writer.is_live());
    writeln!(
        out,
        "{indent}session {}{}",
        state.session_id(),
        state
            .title()
            .map_or_else(String::new, |t| format!("  {}", render::quote(t, true)))
    )?;
    let status_text = match &status {
        SessionStatus::Interrupted => {
            "interrupted (no terminal event, and no live writer holds the log)".to_owned()
        }
        SessionStatus::Running => match writer {
            Writer::AsOf => "running (no terminal event yet at that point)".to_owned(),
            Writer::Live => "running (a live writer holds the log)".to_owned(),
            Writer::Unknown => "running (no terminal event; from a stream, whether its host \
                 is alive is not known here)"
                .to_owned(),
            Writer::Gone => "running".to_owned(),
        },
        SessionStatus::Failed(e) => format!("failed: {}", output::flatten(e)),
        other => other.to_string(),
    };
    writeln!(out, "{indent}  status:  {status_text}")?;
    if state.truncated() {
        writeln!(
            out,
            "{indent}  truncated: its beginning was retained away (from this log, or from the one its records came from): not the whole session"
        )?;
    }
    if let Some((from, at_lsn)) = state.forked_from() {
        writeln!(
            out,
            "{indent}  fork of: session {from}, its history up to LSN {at_lsn}"
        )?;
    }
    writeln!(
        out,
        "{indent}  model:   {}    cwd: {}",
        state.model().unwrap_or("-"),
        state.cwd().unwrap_or("-")
    )?;
    if let (Some(a), Some(b), Some(t0), Some(t1)) = (
        state.first_lsn(),
        state.last_lsn(),
        state.first_timestamp_us(),
        state.last_timestamp_us(),
    ) {
        writeln!(
            out,
            "{indent}  records: LSN {a}..={b}, {} event(s) ({} durable), {} .. {} ({})",
            state.events(),
            state.durable_events(),
            output::rfc3339_seconds(t0),
            output::rfc3339_seconds(t1),
            output::span(t1.saturating_sub(t0))
        )?;
    }
    if state.skipped_records() > 0 {
        writeln!(
            out,
            "{indent}  skipped: {} record(s) of an event kind this build does not know",
            state.skipped_records()
        )?;
    }
    for r in state.resumptions() {
        writeln!(
            out,
            "{indent}  resumed: at LSN {} ({}), after LSN {}",
            r.lsn,
            output::rfc3339_seconds(r.timestamp_us),
            r.from_lsn
        )?;
    }

    writeln!(out, "{indent}transcript:")?;
    if state.transcript().is_empty() {
        writeln!(out, "{indent}  (none)")?;
    }
    for entry in state.transcript() {
        let mut lines = entry.text.lines();
        writeln!(
            out,
            "{indent}  {:>6}  {:<9}  {}",
            entry.lsn,
            entry.role.as_str(),
            lines.next().unwrap_or("")
        )?;
        for line in lines {
            writeln!(out, "{indent}  {:>6}  {:<9}  {line}", "", "")?;
        }
    }

    writeln!(out, "{indent}tool calls:")?;
    if state.tool_calls().len() == 0 {
        writeln!(out, "{indent}  (none)")?;
    } else {
        let mut table = Table::new(&[">LSN", "tool", "id", "result", "arguments"]);
        for call in state.tool_calls() {
            table.row(vec![
                call.start
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |s| s.lsn.to_string()),
                call.name.clone(),
                call.id.clone(),
                tool_result(call),
                call.start
                    .as_ref()
                    .map_or_else(String::new, |s| render::quote(&s.arguments, false)),
            ]);
        }
        table.write(out, &format!("{indent}  "))?;
        let pending = state.pending_tool_calls();
        let running = matches!(status, SessionStatus::Running);
        if !pending.is_empty() {
            writeln!(
                out,
                "{indent}  {} {}: started and {} completed ({})",
                pending.len(),
                if running { "running" } else { "pending" },
                if running { "not yet" } else { "never" },
                pending
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
    }

    writeln!(out, "{indent}tokens:")?;
    let tokens = state.tokens();
    let mut table = Table::new(&["", ">requests", ">prompt", ">completion", ">total", ">time"]);
    let row = |name: String, t: TokenTotals| {
        vec![
            name,
            t.requests.to_string(),
            t.prompt.to_string(),
            t.completion.to_string(),
            t.total.to_string(),
            output::span(t.duration_ms.saturating_mul(1000)),
        ]
    };
    for (model, t) in tokens.by_model() {
        table.row(row(format!("model {model}"), t));
    }
    for (source, t) in tokens.by_source() {
        table.row(row(format!("source {source}"), t));
    }
    table.row(row("total".to_owned(), tokens.total()));
    if tokens.legacy().requests > 0 {
        table.row(row("usage_report (legacy)".to_owned(), tokens.legacy()));
    }
    table.write(out, &format!("{indent}  "))?;

    for (name, records) in [("compaction", state.compaction()), ("rlm", state.rlm())] {
        if records.is_empty() {
            continue;
        }
        writeln!(out, "{indent}{name}:")?;
        for r in records {
            writeln!(
                out,
                "{indent}  {:>6}  {:<21} {}",
                r.lsn,
                r.event.kind(),
                render::summary(&r.event, false)
            )?;
        }
    }
    Ok(())
}

fn tool_result(call: &ToolCall) -> String {
    match (&call.start, &call.completion) {
        (_, Some(c)) => format!(
            "{} in {} ms",
            if c.success { "ok" } else { "FAILED" },
            c.duration_ms
        ),
        (Some(_), None) => "PENDING".to_owned(),
        (None, None) => "-".to_owned(),
    }
}

#[derive(Debug, Serialize)]
struct TotalsJson {
    prompt: u64,
    completion: u64,
    total: u64,
    requests: u64,
    duration_ms: u64,
}

impl From<TokenTotals> for TotalsJson {
    fn from(t: TokenTotals) -> TotalsJson {
        TotalsJson {
            prompt: t.prompt,
            completion: t.completion,
            total: t.total,
            requests: t.requests,
            duration_ms: t.duration_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct NamedTotals {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(flatten)]
    totals: TotalsJson,
}

#[derive(Debug, Serialize)]
struct TokensJson {
    total: TotalsJson,
    by_model: Vec<NamedTotals>,
    by_source: Vec<NamedTotals>,
    legacy: TotalsJson,
}

#[derive(Debug, Serialize)]
struct TranscriptJson<'a> {
    lsn: Lsn,
    role: &'static str,
    text: &'a str,
}

#[derive(Debug, Serialize)]
struct CompletionJson<'a> {
    lsn: Lsn,
    output: &'a str,
    success: bool,
    duration_ms: u64,
}

#[derive(Debug, Serialize)]
struct ToolJson<'a> {
    id: &'a str,
    name: &'a str,
    pending: bool,
    starts: u32,
    start_lsn: Option<Lsn>,
    arguments: Option<&'a str>,
    completion: Option<CompletionJson<'a>>,
}

#[derive(Debug, Serialize)]
struct RecordJson {
    lsn: Lsn,
    ts: String,
    kind: &'static str,
    event: serde_json::Value,
}

impl RecordJson {
    fn new(r: &EventRecord) -> RecordJson {
        RecordJson {
            lsn: r.lsn,
            ts: output::rfc3339(r.timestamp_us),
            kind: r.event.kind(),
            event: render::event_json(&r.event),
        }
    }
}

#[derive(Debug, Serialize)]
struct ResumptionJson {
    lsn: Lsn,
    ts: String,
    from_lsn: Lsn,
}

#[derive(Debug, Serialize)]
struct StateJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<AsOfJson>,
    session: Uuid,
    title: Option<&'a str>,
    model: Option<&'a str>,
    cwd: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
    started: Option<String>,
    last_event: Option<String>,
    events: u64,
    durable_events: u64,
    skipped_records: u64,
    transcript: Vec<TranscriptJson<'a>>,
    tool_calls: Vec<ToolJson<'a>>,
    pending_tool_calls: Vec<&'a str>,
    tokens: TokensJson,
    compaction: Vec<RecordJson>,
    rlm: Vec<RecordJson>,
    resumptions: Vec<ResumptionJson>,
    kinds: serde_json::Map<String, serde_json::Value>,
    damage: Vec<DamageJson>,
    /// Whether its beginning was retained away (`SessionState::truncated`):
    /// not the whole session.
    truncated: bool,
    /// For a fork: the session and LSN its history was taken from.
    #[serde(skip_serializing_if = "Option::is_none")]
    forked_from: Option<ForkedFromJson>,
    /// The logs holding its records, read from a stream.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logs: Vec<Uuid>,
}

/// Where a fork came from (as in `sessions --json`).
#[derive(Debug, Serialize)]
struct ForkedFromJson {
    session: Uuid,
    at_lsn: Lsn,
}

impl<'a> StateJson<'a> {
    fn new(state: &'a SessionState, writer_live: bool) -> StateJson<'a> {
        let status = state.status_given(writer_live);
        let tokens = state.tokens();
        StateJson {
            as_of: None,
            session: state.session_id(),
            title: state.title(),
            model: state.model(),
            cwd: state.cwd(),
            status: status.as_str(),
            error: match &status {
                SessionStatus::Failed(e) => Some(e.clone()),
                _ => None,
            },
            first_lsn: state.first_lsn(),
            last_lsn: state.last_lsn(),
            started: state.first_timestamp_us().map(output::rfc3339),
            last_event: state.last_timestamp_us().map(output::rfc3339),
            events: state.events(),
            durable_events: state.durable_events(),
            skipped_records: state.skipped_records(),
            transcript: state
                .transcript()
                .iter()
                .map(|t| TranscriptJson {
                    lsn: t.lsn,
                    role: t.role.as_str(),
                    text: &t.text,
                })
                .collect(),
            tool_calls: state
                .tool_calls()
                .map(|c| ToolJson {
                    id: &c.id,
                    name: &c.name,
                    pending: c.is_pending(),
                    starts: c.starts,
                    start_lsn: c.start.as_ref().map(|s| s.lsn),
                    arguments: c.start.as_ref().map(|s| s.arguments.as_str()),
                    completion: c.completion.as_ref().map(|x| CompletionJson {
                        lsn: x.lsn,
                        output: &x.output,
                        success: x.success,
                        duration_ms: x.duration_ms,
                    }),
                })
                .collect(),
            pending_tool_calls: state
                .pending_tool_calls()
                .into_iter()
                .map(|c| c.id.as_str())
                .collect(),
            tokens: TokensJson {
                total: tokens.total().into(),
                by_model: tokens
                    .by_model()
                    .map(|(m, t)| NamedTotals {
                        model: Some(m.to_owned()),
                        source: None,
                        totals: t.into(),
                    })
                    .collect(),
                by_source: tokens
                    .by_source()
                    .map(|(s, t)| NamedTotals {
                        model: None,
                        source: Some(s.as_str()),
                        totals: t.into(),
                    })
                    .collect(),
                legacy: tokens.legacy().into(),
            },
            compaction: state.compaction().iter().map(RecordJson::new).collect(),
            rlm: state.rlm().iter().map(RecordJson::new).collect(),
            resumptions: state
                .resumptions()
                .iter()
                .map(|r| ResumptionJson {
                    lsn: r.lsn,
                    ts: output::rfc3339(r.timestamp_us),
                    from_lsn: r.from_lsn,
                })
                .collect(),
            kinds: state
                .kind_counts()
                .map(|(k, n)| (k.to_owned(), serde_json::Value::from(n)))
                .collect(),
            damage: Vec::new(),
            truncated: state.truncated(),
            forked_from: state
                .forked_from()
                .map(|(session, at_lsn)| ForkedFromJson { session, at_lsn }),
            logs: Vec::new(),
        }
    }
}

/// `--at` in words.
fn as_of_text(at: Until) -> String {
    match at {
        Until::Lsn(lsn) => format!("LSN {lsn}"),
        Until::Time(us) => output::rfc3339(us),
        _ => at.to_string(),
    }
}

/// Where a `--at` replay stopped.
#[derive(Debug, Serialize)]
struct AsOfJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    lsn: Option<Lsn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    /// The session's last record at that point.
    last_lsn: Option<Lsn>,
}

impl AsOfJson {
    fn new(at: Until, state: &SessionState) -> AsOfJson {
        let (lsn, time) = match at {
            Until::Lsn(lsn) => (Some(lsn), None),
            Until::Time(us) => (None, Some(output::rfc3339(us))),
            _ => (None, None),
        };
        AsOfJson {
            lsn,
            time,
            last_lsn: state.last_lsn(),
        }
    }
}
