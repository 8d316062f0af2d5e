//! `logbook stats`: segments, records and bytes by event kind, sessions,
//! time span, durable against total.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use logbook_wal::Lsn;
use serde::Serialize;

use logbook_replay::Source;

use crate::output::{self, Outcome, Table};
use crate::scan;

const EXAMPLES: &str = "\
Examples:
  logbook stats ./logbook-demo
  logbook stats ./logbook-demo --json | jq .by_kind

Bytes are frame bytes: the 48-byte record header plus the payload. `durable`
counts the records whose event kind is durable (the kinds a SessionBus hands
to its sink); a record of an ephemeral kind was appended directly. --json
prints one object with the fields dir, segments (file, size, used_bytes,
base_lsn, created, key_id (the id of the segment's key, null in the clear),
records, first_lsn, last_lsn), records, bytes, first_lsn,
last_lsn, first_ts, last_ts, span_us, sessions, durable, by_kind (kind,
records, bytes; the largest share of the bytes first), problems and
from_summaries (segments, records: counted from session summaries, .sum/.run
files, without reading them again; `problems` is about the records read, and
the text says so; `logbook verify` checks every record). Of a stream
(nats://HOST:PORT): url, stream and logs (log, records, bytes, first_lsn,
last_lsn) instead of dir, segments and the LSN range; --log keeps one log.";

/// Summarise the log.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct StatsArgs {
    /// The log directory, one segment file of it (only that segment's
    /// records), or nats://HOST:PORT (every log shipped to the stream).
    #[arg(value_name = "DIR|SEGMENT|URL")]
    pub(crate) dir: PathBuf,
    /// One JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// With a nats://HOST:PORT URL instead of a directory: the JetStream
    /// stream to read.
    #[arg(long, value_name = "NAME", default_value = logbook_fleet::DEFAULT_STREAM)]
    pub(crate) stream: String,
    /// Only the records of this log: a log id or a prefix of one (a
    /// stream holds the records of many logs).
    #[arg(long, value_name = "ID", value_parser = crate::stream::parse_log_prefix)]
    pub(crate) log: Option<String>,
}

#[derive(Debug, Serialize)]
struct SegmentJson {
    file: String,
    size: u64,
    used_bytes: u64,
    base_lsn: Option<Lsn>,
    created: Option<String>,
    /// The id of the segment's key (8 hex digits), or null in the clear
    /// (or with an unreadable header).
    key_id: Option<String>,
    records: u64,
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
}

/// Records and frame bytes of one event kind, in `--json`.
#[derive(Debug, Serialize)]
pub(crate) struct KindJson {
    pub(crate) kind: String,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// `kinds`, the largest share of the bytes first (then by name): the
/// order `stats` shows them in, for a log or a stream.
pub(crate) fn by_share(mut kinds: Vec<KindJson>) -> Vec<KindJson> {
    kinds.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.kind.cmp(&b.kind)));
    kinds
}

/// What `stats` prints after its records line, for a log or a stream.
pub(crate) struct Totals<'a> {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) durable: u64,
    pub(crate) first_ts: Option<&'a str>,
    pub(crate) last_ts: Option<&'a str>,
    pub(crate) span_us: u64,
    pub(crate) sessions: u64,
    pub(crate) by_kind: &'a [KindJson],
    pub(crate) problems: u64,
    pub(crate) from_summaries: &'a FromSummariesJson,
    /// The log, for the `logbook verify` a reader is pointed to.
    pub(crate) path: &'a Path,
}

/// The durable count, time span, sessions, the by-kind table and the
/// problem count.
pub(crate) fn write_totals(out: &mut dyn Write, t: &Totals<'_>) -> anyhow::Result<()> {
    writeln!(
        out,
        "durable: {} of {} records are of a durable kind",
        t.durable, t.records
    )?;
    if let (Some(a), Some(b)) = (t.first_ts, t.last_ts) {
        writeln!(out, "time: {a} .. {b} ({})", output::span(t.span_us))?;
    }
    writeln!(out, "sessions: {}", t.sessions)?;
    if !t.by_kind.is_empty() {
        writeln!(out, "by kind:")?;
        let mut table = Table::new(&["kind", ">records", ">bytes", ">share"]);
        for k in t.by_kind {
            #[expect(clippy::cast_precision_loss, reason = "a display percentage")]
            let share = if t.bytes == 0 {
                0.0
            } else {
                k.bytes as f64 * 100.0 / t.bytes as f64
            };
            table.row(vec![
                k.kind.clone(),
                k.records.to_string(),
                output::bytes(k.bytes),
                format!("{share:.1}%"),
            ]);
        }
        table.write(out, "  ")?;
    }
    writeln!(
        out,
        "{}",
        problems_line(t.problems, t.from_summaries, t.path)
    )?;
    Ok(())
}

/// The problems line: how many problems in the records read, and what
/// was not read again (counted from session summaries), never a bare
/// "0" for records nobody checked.
pub(crate) fn problems_line(problems: u64, from: &FromSummariesJson, path: &Path) -> String {
    if from.records == 0 {
        return format!("problems: {problems}");
    }
    format!(
        "problems: {problems} in the records read; {}",
        crate::cmd::sessions::records_not_read_again(from.records, from.segments, path)
    )
}

#[derive(Debug, Serialize)]
struct StatsJson {
    #[serde(flatten)]
    place: PlaceJson,
    records: u64,
    bytes: u64,
    #[serde(flatten)]
    lsns: Option<LsnsJson>,
    first_ts: Option<String>,
    last_ts: Option<String>,
    span_us: u64,
    sessions: u64,
    durable: u64,
    by_kind: Vec<KindJson>,
    problems: u64,
    from_summaries: FromSummariesJson,
    /// What `logbook compact --apply` would erase: records a tombstone
    /// lists (a log directory only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reclaimable: Option<ReclaimableJson>,
}

#[derive(Debug, Serialize)]
struct ReclaimableJson {
    /// Bytes a compaction frees in sealed segments.
    bytes: u64,
    /// Records it erases there.
    records: u64,
    /// Records deleted in the active segment (erased once it is sealed;
    /// `compact --apply` seals it first when no writer is live).
    in_active_segment: u64,
}

/// Where the figures are of: a log directory and its segments, or a
/// stream and its logs.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum PlaceJson {
    Dir {
        dir: String,
        segments: Vec<SegmentJson>,
    },
    Stream {
        url: String,
        stream: String,
        logs: Vec<LogJson>,
    },
}

/// The LSN range of one log (not given for a stream: each log has its
/// own).
#[derive(Debug, Serialize)]
struct LsnsJson {
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
}

/// One log's share of a stream.
#[derive(Debug, Serialize)]
struct LogJson {
    log: uuid::Uuid,
    records: u64,
    bytes: u64,
    first_lsn: Lsn,
    last_lsn: Lsn,
}

/// What was counted from session summaries and not read again.
#[derive(Debug, Serialize)]
pub(crate) struct FromSummariesJson {
    pub(crate) segments: u64,
    pub(crate) records: u64,
}

pub(crate) fn run(args: &StatsArgs) -> anyhow::Result<Outcome> {
    let mut source = crate::stream::source(&args.dir, &args.stream)?;
    if let Some(why) = crate::stream::keep_log(&mut source, args.log.as_deref())? {
        output::report_nothing_found(&why);
        return Ok(Outcome::NothingFound);
    }
    let log = logbook_replay::log_stats_in(&source)?;
    let mut problems = 0u64;
    for e in &log.problems {
        problems += 1;
        output::report_problem(&scan::describe(e));
    }
    if log.problem_count > problems {
        output::report_problem(&format!(
            "and {} more problems not listed",
            log.problem_count - problems
        ));
        problems = log.problem_count;
    }
    if let (Some(damage), Some(dir)) = (&log.tail_damage, source.dir()) {
        if crate::cmd::dump::tail_counts_as_problem(dir) {
            problems += 1;
            output::report_problem(&scan::describe_tail(damage));
        }
    }
    let (first_ts, last_ts) = (log.first_timestamp_us, log.last_timestamp_us);
    let shipped = matches!(source, Source::Shipped(_));
    let place = if shipped {
        let target = crate::stream::target(&args.dir, &args.stream)?;
        PlaceJson::Stream {
            url: target.url().to_owned(),
            stream: target.stream().to_owned(),
            logs: log
                .logs
                .iter()
                .map(|l| LogJson {
                    log: l.log,
                    records: l.records,
                    bytes: l.bytes,
                    first_lsn: l.first_lsn,
                    last_lsn: l.last_lsn,
                })
                .collect(),
        }
    } else {
        PlaceJson::Dir {
            dir: args.dir.display().to_string(),
            segments: log
                .segments
                .iter()
                .map(|s| {
                    let header = s.header.as_ref().ok();
                    SegmentJson {
                        file: s.file_name(),
                        size: s.file_size,
                        used_bytes: s.used_bytes,
                        base_lsn: header.map(|h| h.base_lsn),
                        created: header.map(|h| output::rfc3339(h.created_us)),
                        key_id: header.and_then(|h| h.key_id).map(|id| format!("{id:08x}")),
                        records: s.records,
                        first_lsn: s.first_lsn,
                        last_lsn: s.last_lsn,
                    }
                })
                .collect(),
        }
    };
    let stats = StatsJson {
        place,
        records: log.records,
        bytes: log.bytes,
        lsns: (!shipped).then_some(LsnsJson {
            first_lsn: log.first_lsn,
            last_lsn: log.last_lsn,
        }),
        first_ts: first_ts.map(output::rfc3339),
        last_ts: last_ts.map(output::rfc3339),
        span_us: last_ts.unwrap_or(0).saturating_sub(first_ts.unwrap_or(0)),
        sessions: log.sessions,
        durable: log.durable,
        by_kind: by_share(
            log.by_kind
                .iter()
                .map(|k| KindJson {
                    kind: k.kind.to_owned(),
                    records: k.records,
                    bytes: k.bytes,
                })
                .collect(),
        ),
        problems,
        from_summaries: FromSummariesJson {
            segments: log.from_summaries.segments,
            records: log.from_summaries.records,
        },
        reclaimable: match source.dir() {
            Some(dir) if !matches!(source, Source::Segment(_)) => {
                logbook_wal::compaction_plan(dir, None)
                    .ok()
                    .map(|c| ReclaimableJson {
                        bytes: c.reclaimed,
                        records: c.erased,
                        in_active_segment: c.in_active_segment,
                    })
            }
            _ => None,
        },
    };
    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &stats)?;
    } else {
        print_text(&mut out, &stats, &args.dir)?;
    }
    out.flush()?;
    Ok(Outcome::from_count(problems))
}

fn print_text(out: &mut dyn Write, s: &StatsJson, path: &Path) -> anyhow::Result<()> {
    match &s.place {
        PlaceJson::Dir { dir, segments } => {
            let on_disk: u64 = segments.iter().map(|x| x.size).sum();
            let used: u64 = segments.iter().map(|x| x.used_bytes).sum();
            writeln!(out, "log {dir}")?;
            writeln!(
                out,
                "segments: {}, {} on disk, {} in use",
                segments.len(),
                output::bytes(on_disk),
                output::bytes(used)
            )?;
            let mut table = Table::new(&[
                "segment", "created", "key", ">records", "LSNs", ">used", ">size",
            ]);
            for seg in segments {
                table.row(vec![
                    seg.file.clone(),
                    seg.created.as_deref().map_or("-".to_owned(), |c| {
                        c.chars().take(19).collect::<String>() + "Z"
                    }),
                    match (&seg.key_id, &seg.created) {
                        (Some(id), _) => id.clone(),
                        (None, Some(_)) => "clear".to_owned(),
                        (None, None) => "-".to_owned(),
                    },
                    seg.records.to_string(),
                    match (seg.first_lsn, seg.last_lsn) {
                        (Some(a), Some(b)) => format!("{a}..={b}"),
                        _ => "-".to_owned(),
                    },
                    output::bytes(seg.used_bytes),
                    output::bytes(seg.size),
                ]);
            }
            table.write(out, "  ")?;
        }
        PlaceJson::Stream { url, stream, logs } => {
            writeln!(out, "stream {stream} at {url}")?;
            writeln!(out, "logs: {}", logs.len())?;
            let mut table = Table::new(&["log", ">records", "LSNs", ">bytes"]);
            for l in logs {
                table.row(vec![
                    l.log.to_string(),
                    l.records.to_string(),
                    format!("{}..={}", l.first_lsn, l.last_lsn),
                    output::bytes(l.bytes),
                ]);
            }
            table.write(out, "  ")?;
        }
    }
    if let Some(r) = &s.reclaimable {
        if r.records + r.in_active_segment > 0 {
            writeln!(
                out,
                "reclaimable: {} in {} deleted record(s) (`logbook compact {} --apply`){}",
                output::bytes(r.bytes),
                r.records,
                path.display(),
                if r.in_active_segment > 0 {
                    format!(", and {} in the active segment", r.in_active_segment)
                } else {
                    String::new()
                }
            )?;
        }
    }
    let lsns = match s.lsns.as_ref().map(|l| (l.first_lsn, l.last_lsn)) {
        Some((Some(a), Some(b))) => format!(", LSN {a}..={b}"),
        _ => String::new(),
    };
    writeln!(
        out,
        "records: {}{lsns}, {} in frames",
        s.records,
        output::bytes(s.bytes)
    )?;
    write_totals(
        out,
        &Totals {
            records: s.records,
            bytes: s.bytes,
            durable: s.durable,
            first_ts: s.first_ts.as_deref(),
            last_ts: s.last_ts.as_deref(),
            span_us: s.span_us,
            sessions: s.sessions,
            by_kind: &s.by_kind,
            problems: s.problems,
            from_summaries: &s.from_summaries,
            path,
        },
    )
}
