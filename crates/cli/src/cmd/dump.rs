//! `logbook dump`: every record, readable or as JSON Lines.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use logbook_bus::KINDS;
use logbook_replay::{Source, SourceItem, SourceReader};
use logbook_wal::{EventRecord, Lsn, RecordRef};
use uuid::Uuid;

use crate::cmd::replay::{Resolved, resolve_session_in};
use crate::output::{self, Outcome};
use crate::render::{self, JsonRecord};
use crate::scan::{self, End, Flow};

const EXAMPLES: &str = "\
Examples:
  logbook dump ./logbook-demo                          every record, one line each
  logbook dump ./logbook-demo | head                   the first ten
  logbook dump ./logbook-demo --session 3f2a9c1e       one session (an id or its prefix)
  logbook dump ./logbook-demo --kind token_usage --kind done
  logbook dump ./logbook-demo --from-lsn 100 --limit 20 --full
  logbook dump ./logbook-demo --since 15m              the last fifteen minutes
  logbook dump ./logbook-demo --since 2024-05-01T10:00:00Z --until 2024-05-01T11:00:00Z
  logbook dump ./logbook-demo --since @1764410000 --until @1764410060.5  epoch seconds
  logbook dump ./logbook-demo --json | jq -r .kind     JSON Lines
  logbook dump /var/lib/agent/log --follow             keep printing as a writer appends
  logbook dump /var/lib/agent/log --follow --from-end  only what is appended from now on
  logbook dump ./logbook-demo --last 5 --follow        the last five records, then follow
  logbook dump ./logbook-demo/00000000000000000037.wal one segment file
  logbook dump ./logbook-demo --physical               where each frame is: segment, offset, length, CRC
  logbook dump nats://10.0.0.5:4222                    every log shipped to the stream LOGBOOK
  logbook dump nats://10.0.0.5:4222 --log 3601f79c     one of them (a log id or a prefix)

Each line: LSN, time (RFC 3339, UTC), session (first 8 characters; all with
--full), kind, and a summary of the event. --json prints one object per record
with the fields lsn, ts, session, kind, durable (whether the event kind is a
durable one) and event: always an object, whose kind is the event's variant
name (Done, TokenUsage) beside the variant's fields, a text under value:
{\"kind\":\"Done\"}, {\"kind\":\"UserMessage\",\"value\":\"hi\"}. A payload that does
not decode has the event {\"kind\":null} and an extra `error` field.

Given a segment file instead of a directory, dump prints that segment's
records and the problems in it (continuity with the segment before it is not
checked); --session, --kind and the other filters still apply. --physical
puts where each record is after its LSN: the segment file, the frame's byte
offset in it, the frame's length (header and payload) and its CRC; with
--json, the fields segment, offset, frame_len and crc.

Problems in the log (corruption, a torn tail) are reported on stderr, one line
each; the dump goes on past them and exits 1. A filter that matches nothing (an
unknown session, an empty LSN or time range) says so on stderr and exits 1; a
session prefix that several sessions share is refused (exit 2), as by replay.
A closed stdout (`| head`) ends the dump: exit 1 if a problem was reported
before, else 0.

Given nats://HOST:PORT instead of a directory, dump reads every record of
every log shipped to the stream (--stream, default LOGBOOK), each log's in LSN
order, one log after the other; LSNs are each log's own, so each line starts
with its log's id (the first 8 characters; all with --full) and --json has a
log field; --log keeps one log. Records of an encrypted log decode with its
key (--key-file), as from its directory. --follow, --last, --from-end and
--physical need a directory.

--follow stops at --to-lsn, at --limit, and at the end of the log once the
time is past --until. A followed log that is removed and created again is
noted on stderr and followed anew from its first record (a log that is gone
gets a note and is waited for).";

/// Print the log's records.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct DumpArgs {
    /// The log directory, one segment file of a log
    /// (DIR/00000000000000000001.wal): only that segment's records, or
    /// nats://HOST:PORT (every log shipped to the stream).
    #[arg(value_name = "DIR|SEGMENT|URL")]
    pub(crate) dir: PathBuf,
    /// Only this session: a session id or a prefix of one (repeatable).
    #[arg(long, value_name = "ID", value_parser = parse_session_prefix)]
    pub(crate) session: Vec<String>,
    /// Only events of this kind (repeatable, or several separated by
    /// commas: --kind token_usage,done).
    #[arg(long, value_name = "KIND", value_parser = kind_parser(), value_delimiter = ',')]
    pub(crate) kind: Vec<String>,
    /// Start at this LSN.
    #[arg(long, value_name = "LSN", value_parser = output::parse_lsn)]
    pub(crate) from_lsn: Option<Lsn>,
    /// Stop after this LSN.
    #[arg(long, value_name = "LSN", value_parser = output::parse_lsn)]
    pub(crate) to_lsn: Option<Lsn>,
    /// Only records appended at or after this time (RFC 3339, a date, epoch
    /// seconds after an @ such as @1764410000.5, or a duration back from now
    /// such as 15m; a bare number is an LSN, refused here).
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
    /// Start at the end of the log: print only what is appended from now
    /// on (with --follow).
    #[arg(long, conflicts_with_all = ["from_lsn", "last"])]
    pub(crate) from_end: bool,
    /// Print only the last N records that pass the filters (then go on
    /// with what is appended, with --follow).
    #[arg(long, value_name = "N", conflicts_with = "from_lsn")]
    pub(crate) last: Option<u64>,
    /// Also where each record is: its segment file, the frame's offset in
    /// it, the frame's length in bytes and its CRC (in JSON: segment,
    /// offset, frame_len, crc).
    #[arg(long)]
    pub(crate) physical: bool,
    /// With a nats://HOST:PORT URL instead of a directory: the JetStream
    /// stream to read (every log in it).
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
    /// Only the records of this log: a log id or a prefix of one (a
    /// stream holds the records of many logs; each line then starts with
    /// its log's id, and --json has a log field).
    #[arg(long, value_name = "ID", value_parser = crate::stream::parse_log_prefix)]
    pub(crate) log: Option<String>,
    /// Also the records a tombstone deletes, for as long as their bytes
    /// exist (until a compaction erases them); each is marked deleted.
    #[arg(long)]
    pub(crate) include_deleted: bool,
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
    sessions: Vec<Uuid>,
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
        if !self.sessions.is_empty() && !self.sessions.contains(&record.session) {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(render::kind_of(record).0) {
            return false;
        }
        true
    }

    /// Whether any filter is given (an LSN range counts).
    fn is_set(&self) -> bool {
        !self.sessions.is_empty()
            || !self.kinds.is_empty()
            || self.since.is_some()
            || self.until.is_some()
            || self.to_lsn.is_some()
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
    let shipped = crate::stream::is_url(&args.dir);
    if shipped && (args.follow || args.last.is_some() || args.from_end || args.physical) {
        anyhow::bail!(
            "--follow, --last, --from-end and --physical read a log directory, not a stream"
        );
    }
    let mut source = crate::stream::source(&args.dir, &args.stream)?;
    let segment = matches!(source, Source::Segment(_));
    let dir = source.dir().map(Path::to_path_buf);
    if args.follow && segment {
        anyhow::bail!(
            "--follow follows a log directory, not one segment file: give {} instead",
            dir.as_deref().unwrap_or(Path::new(".")).display()
        );
    }
    if let (Some(from), Some(to)) = (args.from_lsn, args.to_lsn) {
        if from > to {
            output::report_nothing_found(&format!(
                "--from-lsn {from} is past --to-lsn {to}: the LSN range is empty"
            ));
            return Ok(Outcome::NothingFound);
        }
    }
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            output::report_nothing_found(&format!(
                "--since {} is not before --until {}: the time range is empty",
                output::rfc3339(since),
                output::rfc3339(until)
            ));
            return Ok(Outcome::NothingFound);
        }
    }
    if let Some(why) = crate::stream::keep_log(&mut source, args.log.as_deref())? {
        output::report_nothing_found(&why);
        return Ok(Outcome::NothingFound);
    }
    let mut sessions = Vec::with_capacity(args.session.len());
    for text in &args.session {
        match resolve_session_in(&source, text)? {
            Resolved::One(id) => sessions.push(id),
            Resolved::None(why) => {
                output::report_nothing_found(&why);
                return Ok(Outcome::NothingFound);
            }
        }
    }
    let filter = Filter {
        sessions,
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
    let start = if args.from_end || args.last.is_some() {
        Some(start_of_last(&source, &filter, args.last.unwrap_or(0))?)
    } else {
        args.from_lsn
    };
    let open = |start: Option<Lsn>| -> anyhow::Result<SourceReader<'_>> {
        let mut reader = source.reader()?;
        if let [one] = filter.sessions.as_slice() {
            // One session: through the segments' session indexes.
            reader = reader.session(*one);
        }
        Ok(match start {
            Some(lsn) => reader.from_lsn(lsn),
            None => reader,
        })
    };
    // Deleted records are left out unless asked for: the tombstones first
    // (each comes after what it deletes). Following, a scout reads the
    // same records on to the end after each record is read and before it
    // is shown, so a record read after its tombstone was durable is never
    // shown (the library's rule: `LogDeletions::note_through_end`).
    let mut deletions = logbook_replay::tombstones_in(&source, start.unwrap_or(0))?;
    let mut scout = if args.follow {
        Some(open(start)?)
    } else {
        None
    };
    if let Some(scout) = scout.as_mut() {
        deletions.note_through_end(scout)?;
    }
    let mut reader = open(start)?;
    let mut following = Following::new(reader.log_reader());
    let mut last_tail_note = None;
    loop {
        let walked = scan::walk_source(&mut reader, |item| {
            match item {
                SourceItem::Problem(e) => {
                    problems += 1;
                    // Keep the problem in its place among the records; a
                    // closed stdout ends the dump, but after the report.
                    let flushed = out.flush();
                    output::report_problem(&scan::describe(&e));
                    flushed?;
                }
                SourceItem::Record { record, log } => {
                    if filter.past_the_end(record.lsn) {
                        // Records of several logs: the next log starts
                        // again from its first LSN.
                        return Ok(if shipped { Flow::Continue } else { Flow::Stop });
                    }
                    deletions.note_record(log, &record);
                    if let Some(scout) = scout.as_mut() {
                        deletions.note_through_end(scout)?;
                    }
                    let deleted = deletions.hides(log, &record);
                    if deleted && !args.include_deleted {
                        return Ok(Flow::Continue);
                    }
                    if filter.wants(&record) {
                        let log = if shipped { log } else { None };
                        if print_record(out, &record, log, deleted, args)? {
                            problems += 1;
                        }
                        printed += 1;
                        if limit_reached(printed) {
                            return Ok(Flow::Stop);
                        }
                    }
                    if filter.to_lsn == Some(record.lsn) && !shipped {
                        return Ok(Flow::Stop);
                    }
                }
                _ => {}
            }
            Ok(Flow::Continue)
        });
        let end = match walked {
            // A followed log removed under the reader: see below.
            Err(e) if args.follow && !output::is_broken_pipe(&e) && following.changed() => {
                End::EndOfLog
            }
            other => other?,
        };
        if end == End::Stopped {
            break;
        }
        if let (Some(damage), Some(dir)) = (reader.tail_damage(), dir.as_deref()) {
            if last_tail_note.as_ref() != Some(&(damage.path.clone(), damage.offset)) {
                last_tail_note = Some((damage.path.clone(), damage.offset));
                if tail_counts_as_problem(dir) {
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
        let Some(dir) = dir.as_deref() else {
            break;
        };
        // Nothing appended from now on can be before --until.
        if args.until.is_some_and(|until| now_us() >= until) {
            break;
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(args.poll_ms.max(1)));
        if following.changed() {
            // Removed and created again (or replaced): follow the new log
            // from its first record, once it has one.
            match open(None) {
                Ok(new) => {
                    output::report_note(&format!(
                        "the log in {} was removed and created again: following the new log \
                         from its first record",
                        dir.display()
                    ));
                    reader = new;
                    scout = Some(open(None)?);
                    deletions = logbook_replay::LogDeletions::default();
                    following = Following::new(reader.log_reader());
                    last_tail_note = None;
                }
                Err(_) => following.note_absence(dir),
            }
        }
    }
    if printed == 0 && !args.follow && (filter.is_set() || args.from_lsn.is_some()) {
        let ephemeral: Vec<&str> = args
            .kind
            .iter()
            .map(String::as_str)
            .filter(|k| *k != "unknown" && !render::kind_is_durable(k))
            .collect();
        let hint = if ephemeral.is_empty() {
            String::new()
        } else {
            format!(
                " ({} {} ephemeral: a SessionBus never hands such events to its log)",
                ephemeral.join(", "),
                if ephemeral.len() == 1 { "is" } else { "are" }
            )
        };
        output::report_nothing_found(&format!(
            "no record of {} matches {}{hint}",
            source.name(),
            filter_words(args)
        ));
        return Ok(if problems > 0 {
            Outcome::Problems
        } else {
            Outcome::NothingFound
        });
    }
    Ok(Outcome::from_count(problems))
}

/// The filters given, as on the command line.
fn filter_words(args: &DumpArgs) -> String {
    let mut words = Vec::new();
    for s in &args.session {
        words.push(format!("--session {s}"));
    }
    for k in &args.kind {
        words.push(format!("--kind {k}"));
    }
    if let Some(l) = args.from_lsn {
        words.push(format!("--from-lsn {l}"));
    }
    if let Some(l) = args.to_lsn {
        words.push(format!("--to-lsn {l}"));
    }
    if let Some(t) = args.since {
        words.push(format!("--since {}", output::rfc3339(t)));
    }
    if let Some(t) = args.until {
        words.push(format!("--until {}", output::rfc3339(t)));
    }
    words.join(" ")
}

/// Now, in µs since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The LSN to start at to show the last `n` records that pass `filter`
/// (the end of the log for 0): one pass over the log, keeping only LSNs.
/// Problems are reported by the dump itself, for the part it shows.
fn start_of_last(source: &Source, filter: &Filter, n: u64) -> anyhow::Result<Lsn> {
    let mut reader = source.reader()?;
    let mut last = std::collections::VecDeque::new();
    let mut next = 0;
    let cap = usize::try_from(n).unwrap_or(usize::MAX);
    scan::walk_source(&mut reader, |item| {
        if let SourceItem::Record { record, .. } = item {
            next = record.lsn + 1;
            if cap > 0 && filter.wants(&record) && !filter.past_the_end(record.lsn) {
                if last.len() == cap {
                    last.pop_front();
                }
                last.push_back(record.lsn);
            }
        }
        Ok(Flow::Continue)
    })?;
    Ok(last.front().copied().unwrap_or(next))
}

/// Which log a follower reads: the newest segment its reader knows, and
/// that segment's creation time from its header. A log removed and created
/// again has other segments (or the same names, created at another time).
struct Following {
    segment: Option<(PathBuf, Option<u64>)>,
    /// Whether the absence of the log has been reported.
    absence_noted: bool,
}

impl Following {
    fn new(reader: Option<&logbook_wal::Reader>) -> Following {
        Following {
            segment: reader
                .and_then(|r| r.segments().last().cloned())
                .map(|path| {
                    let created = logbook_wal::segment_header(&path)
                        .ok()
                        .map(|h| h.created_us);
                    (path, created)
                }),
            absence_noted: false,
        }
    }

    /// Whether the log followed is no longer there: its newest segment is
    /// gone, or is another file of the same name.
    fn changed(&self) -> bool {
        let Some((path, created)) = &self.segment else {
            return false;
        };
        if !path.exists() {
            return true;
        }
        match logbook_wal::segment_header(path) {
            Ok(h) => created.is_some_and(|c| c != h.created_us),
            Err(_) => false,
        }
    }

    /// Say once on stderr that the log is gone.
    fn note_absence(&mut self, dir: &Path) {
        if !self.absence_noted {
            output::report_note(&format!(
                "the log in {} is gone (removed?): waiting for a log to be created there",
                dir.display()
            ));
            self.absence_noted = true;
        }
    }
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
    log: Option<Uuid>,
    deleted: bool,
    args: &DumpArgs,
) -> anyhow::Result<bool> {
    let decoded = render::decode(record);
    let physical = args.physical.then(|| render::Physical::of(record));
    if args.json {
        let mut json = JsonRecord::new(record, &decoded);
        json.physical = physical;
        json.log = log;
        json.deleted = deleted;
        output::json_line(out, &json)?;
    } else {
        let mut line = render::text_line(record, &decoded, args.full, physical.as_ref());
        if deleted {
            line.push_str("  [deleted]");
        }
        match log {
            Some(log) if args.full => writeln!(out, "{log}  {line}")?,
            Some(log) => writeln!(out, "{}  {line}", output::short_id(&log))?,
            None => writeln!(out, "{line}")?,
        }
    }
    // A kind newer than this build is not damage; a foreign codec or a
    // known kind that does not decode is.
    let bad = decoded.is_err() && !matches!(EventRecord::peek_kind(record), Ok(None));
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
