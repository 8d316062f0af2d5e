//! `logbook dump`: every record, readable or as JSON Lines.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use logbook_bus::KINDS;
use logbook_wal::{Lsn, RecordRef};

use crate::output::{self, Outcome};
use crate::render::{self, JsonRecord};
use crate::scan::{self, End, Flow, Item};

const EXAMPLES: &str = "\
Examples:
  logbook dump ./logbook-demo                          every record, one line each
  logbook dump ./logbook-demo | head                   the first ten
  logbook dump ./logbook-demo --session 3f2a9c1e       one session (an id or its prefix)
  logbook dump ./logbook-demo --kind token_usage --kind done
  logbook dump ./logbook-demo --from-lsn 100 --limit 20 --full
  logbook dump ./logbook-demo --since 15m              the last fifteen minutes
  logbook dump ./logbook-demo --since 2024-05-01T10:00:00Z --until 2024-05-01T11:00:00Z
  logbook dump ./logbook-demo --json | jq -r .kind     JSON Lines
  logbook dump /var/lib/agent/log --follow             keep printing as a writer appends

Each line: LSN, time (RFC 3339, UTC), session (first 8 characters; all with
--full), kind, and a summary of the event. --json prints one object per record
with the fields lsn, ts, session, kind, durable (whether the event kind is a
durable one), event (the SessionEvent as serde_json writes it; null with an
extra `error` field when the payload does not decode).

Problems in the log (corruption, a torn tail) are reported on stderr, one line
each; the dump goes on past them and exits 1.";

/// Print the log's records.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct DumpArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Only this session: a session id or a prefix of one (repeatable).
    #[arg(long, value_name = "ID", value_parser = parse_session_prefix)]
    pub(crate) session: Vec<String>,
    /// Only events of this kind (repeatable).
    #[arg(long, value_name = "KIND", value_parser = kind_parser())]
    pub(crate) kind: Vec<String>,
    /// Start at this LSN.
    #[arg(long, value_name = "LSN")]
    pub(crate) from_lsn: Option<Lsn>,
    /// Stop after this LSN.
    #[arg(long, value_name = "LSN")]
    pub(crate) to_lsn: Option<Lsn>,
    /// Only records appended at or after this time (RFC 3339, a date, or a
    /// duration back from now such as 15m).
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) since: Option<u64>,
    /// Only records appended before this time.
    #[arg(long, value_name = "TIME", value_parser = output::parse_time)]
    pub(crate) until: Option<u64>,
    /// Print at most this many records.
    #[arg(long, short = 'n', value_name = "N")]
    pub(crate) limit: Option<u64>,
    /// Whole payloads and whole session ids instead of a summary.
    #[arg(long)]
    pub(crate) full: bool,
    /// Keep printing records as a live writer appends them, until
    /// interrupted (like `tail -f`).
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// One JSON object per record (JSON Lines).
    #[arg(long)]
    pub(crate) json: bool,
    /// How often --follow looks for new records, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200, hide = true)]
    pub(crate) poll_ms: u64,
}

/// `--kind`'s values: the kinds of `logbook_bus::KINDS`, and `unknown`.
fn kind_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(KINDS.iter().copied().chain(["unknown"]))
}

/// A session id or a prefix of one: hexadecimal digits and dashes.
pub(crate) fn parse_session_prefix(text: &str) -> Result<String, String> {
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() > 36 || !s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(format!(
            "`{text}` is not a session id or a prefix of one (like 3f2a9c1e)"
        ));
    }
    Ok(s)
}

struct Filter {
    sessions: Vec<String>,
    kinds: HashSet<String>,
    to_lsn: Option<Lsn>,
    since: Option<u64>,
    until: Option<u64>,
}

impl Filter {
    fn wants(&self, record: &RecordRef<'_>) -> bool {
        if let Some(since) = self.since {
            if record.timestamp_us < since {
                return false;
            }
        }
        if let Some(until) = self.until {
            if record.timestamp_us >= until {
                return false;
            }
        }
        if !self.sessions.is_empty() {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = record.session.hyphenated().encode_lower(&mut buf);
            if !self.sessions.iter().any(|p| id.starts_with(p.as_str())) {
                return false;
            }
        }
        if !self.kinds.is_empty() && !self.kinds.contains(render::kind_of(record.payload)) {
            return false;
        }
        true
    }

    fn past_the_end(&self, lsn: Lsn) -> bool {
        self.to_lsn.is_some_and(|to| lsn > to)
    }
}

pub(crate) fn run(args: &DumpArgs) -> anyhow::Result<Outcome> {
    let mut out = output::stdout_until_closed();
    let outcome = dump(args, &mut out);
    out.flush()?;
    outcome
}

fn dump(args: &DumpArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let mut reader = scan::open_reader(&args.dir)?;
    if let Some(from) = args.from_lsn {
        reader = reader.from_lsn(from);
    }
    let filter = Filter {
        sessions: args.session.clone(),
        kinds: args.kind.iter().cloned().collect(),
        to_lsn: args.to_lsn,
        since: args.since,
        until: args.until,
    };
    let mut printed = 0u64;
    let mut problems = 0u64;
    let limit_reached = |printed: u64| args.limit.is_some_and(|n| printed >= n);
    if limit_reached(0) {
        return Ok(Outcome::Clean);
    }
    let mut last_tail_note = None;
    loop {
        let end = scan::walk(&mut reader, |item| {
            match item {
                Item::Problem(e) => {
                    problems += 1;
                    // Keep the problem in its place among the records; a
                    // closed stdout ends the dump, but after the report.
                    let flushed = out.flush();
                    output::report_problem(&scan::describe(&e));
                    flushed?;
                }
                Item::Record(record) => {
                    if filter.past_the_end(record.lsn) {
                        return Ok(Flow::Stop);
                    }
                    if filter.wants(&record) {
                        if print_record(out, &record, args)? {
                            problems += 1;
                        }
                        printed += 1;
                        if limit_reached(printed) {
                            return Ok(Flow::Stop);
                        }
                    }
                    if filter.to_lsn == Some(record.lsn) {
                        return Ok(Flow::Stop);
                    }
                }
            }
            Ok(Flow::Continue)
        })?;
        if end == End::Stopped {
            break;
        }
        if let Some(damage) = reader.tail_damage() {
            if last_tail_note.as_ref() != Some(&(damage.path.clone(), damage.offset)) {
                last_tail_note = Some((damage.path.clone(), damage.offset));
                if tail_counts_as_problem(&args.dir) {
                    problems += 1;
                    output::report_problem(&format!(
                        "{} (not a live write: no writer holds the log; `logbook repair` shows what recovery cuts)",
                        scan::describe_tail(damage)
                    ));
                } else if !args.follow {
                    output::report_note(&format!(
                        "{} (a live writer holds the log: probably a write in progress)",
                        scan::describe_tail(damage)
                    ));
                }
            }
        }
        if !args.follow {
            break;
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(args.poll_ms.max(1)));
    }
    Ok(Outcome::from_count(problems))
}

/// Whether damage at the tail is a problem: it is, unless a live writer
/// holds the log (then it is most likely a write in progress).
pub(crate) fn tail_counts_as_problem(dir: &Path) -> bool {
    !logbook_wal::is_locked(dir).unwrap_or(false)
}

/// Print one record; returns whether its payload is a problem (it passed
/// its checksum but is not an event, nor one of a kind written by a newer
/// build).
fn print_record(
    out: &mut dyn Write,
    record: &RecordRef<'_>,
    args: &DumpArgs,
) -> anyhow::Result<bool> {
    let decoded = render::decode(record);
    if args.json {
        output::json_line(out, &JsonRecord::new(record, &decoded))?;
    } else {
        writeln!(out, "{}", render::text_line(record, &decoded, args.full))?;
    }
    let bad = decoded.is_err() && render::kind_of(record.payload) != "unknown";
    if bad {
        let flushed = out.flush();
        output::report_problem(&format!(
            "{} at offset {}: LSN {}: the payload is not a SessionEvent",
            record.segment.display(),
            record.offset,
            record.lsn
        ));
        flushed?;
    }
    Ok(bad)
}
