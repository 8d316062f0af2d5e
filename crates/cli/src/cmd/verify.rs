//! `logbook verify`: check every segment header, every record's CRC and
//! LSN continuity, and every payload's encoding; report each problem with
//! its segment file, byte offset and LSN, and go on past it.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use logbook_bus::codec::{CODEC_ID, CodecError};
use logbook_wal::{
    ChainHead, EventRecord, FrameFields, HeadCheck, Inspection, Item, Lsn, SegmentSummary,
    SegmentTable, TailDamage, WalError,
};
use serde::Serialize;

use crate::output::{self, Outcome, Table};
use crate::scan::{self, Flow};

const EXAMPLES: &str = "\
Examples:
  logbook verify ./logbook-demo          check everything; exit 1 if anything is wrong
  logbook verify ./logbook-demo --hex    also show the bytes around each problem
  logbook verify ./logbook-demo --json | jq -c 'select(.type == \"problem\")'
  logbook verify ./log --key-file ./log.key    also check the chain; print the head
  logbook verify ./log --key-file ./log.key --expect-head 76:f1447eda1afda1b83c9f91667145f4c2

What is checked: every segment header (magic, version, flags, CRC, base LSN
against the file name, codec); every record frame (length, CRC); LSN
continuity within and across segments; that every payload decodes as a
SessionEvent; and the end of the tail segment (a torn tail: bytes a crashed
writer left after its last complete record). A problem does not stop the
check: the reader resumes at the next valid record, so one bad byte does not
hide the rest of the log. Damage at the tail of a log that a live writer
holds is reported as a note (most likely a write in progress), not a problem.

With the log's keys (--key-file, LOGBOOK_KEY), also the chain of an encrypted
log: each encrypted segment's seal block, each record's tag (bound to the one
before), no segment in the clear after the first encrypted one, and the head
the writer published in LOCK. The table names each segment's key (or clear).
Then it prints the log's head, LSN:TAG (the last record and its tag), to
record elsewhere; --expect-head LSN:TAG is a problem unless the log's chain
still holds that record with that tag (the log may have grown since). Without
keys the chain is not checked, and --expect-head is refused.

--json prints JSON Lines: one object per problem, then one summary object.
A problem: {\"type\":\"problem\", \"kind\", \"segment\" (the segment file, or null),
\"offset\" (its byte offset in the segment, or null), \"lsn\" (the LSN expected
or found there, or null), \"message\"}. Kinds: bad_header, bad_segment,
corrupt_record, lsn_sequence, mid_log_corruption, durable_damaged,
undecodable_payload, unknown_codec, torn_tail, stale_bytes, forged,
decrypt_failed, bad_log_id, head_mismatch, head_missing, head_unchecked. The
summary: {\"type\":\"summary\", \"log\", \"ok\", \"problems\", \"segments\",
\"records\", \"first_lsn\", \"last_lsn\", \"unknown_kinds\", \"sealed_records\"
(records read without their key), \"tail\" (clean, torn or damaged),
\"writer_live\", \"unusable_indexes\" (a list of {\"segment\", \"reason\"}),
\"chain\" (checked, partial, not_checked or clear), \"head\" (LSN:TAG or null),
\"head_lsn\", \"head_tag\", \"published_head\" and \"expected_head\" (null or
{\"lsn\", \"tag\", \"found\": holds, differs, not_read or unchecked}),
\"segment_keys\" (a list of {\"segment\", \"key\": key id, clear, or null})}.";

/// Check the whole log.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct VerifyArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Show the bytes around each problem (and the frame header found there).
    #[arg(long)]
    pub(crate) hex: bool,
    /// JSON Lines: one object per problem, then a summary.
    #[arg(long, conflicts_with = "hex")]
    pub(crate) json: bool,
    /// A head recorded earlier (LSN:TAG, as verify prints it): a problem
    /// unless the log's chain holds it. Needs the log's key.
    #[arg(long, value_name = "LSN:TAG", value_parser = parse_head)]
    pub(crate) expect_head: Option<ChainHead>,
    /// Take the head to expect from the stream the log is shipped to
    /// (nats://HOST:PORT): its newest sealed record of this log, which
    /// must open under the key. A log rolled back, or cut together with
    /// its LOCK, no longer holds it. Needs the log's key.
    #[arg(long, value_name = "URL", conflicts_with = "expect_head")]
    pub(crate) expect_head_from: Option<String>,
    /// The stream `--expect-head-from` reads.
    #[arg(long, default_value = logbook_fleet::DEFAULT_STREAM, requires = "expect_head_from")]
    pub(crate) stream: String,
}

fn parse_head(text: &str) -> Result<ChainHead, String> {
    text.parse()
        .map_err(|e: logbook_wal::ChainHeadError| e.to_string())
}

/// Logs at least this large (in file bytes) get a progress bar, when
/// stderr is a terminal.
const PROGRESS_FROM_BYTES: u64 = 256 << 20;

/// One problem found.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// What kind of problem (see the help text for the list).
    pub(crate) kind: &'static str,
    pub(crate) text: String,
    /// Segment and offset, for `--hex`.
    pub(crate) at: Option<(PathBuf, u64)>,
    /// The LSN expected or found there, when known.
    pub(crate) lsn: Option<Lsn>,
}

impl Finding {
    /// A problem the reader reported.
    pub(crate) fn from_error(e: &WalError) -> Finding {
        let (kind, lsn) = match e {
            WalError::BadHeader { .. } => ("bad_header", None),
            WalError::BadSegment { .. } => ("bad_segment", None),
            WalError::Corrupt { lsn, .. } => ("corrupt_record", Some(*lsn)),
            WalError::Sequence { expected, .. } => ("lsn_sequence", Some(*expected)),
            WalError::MidLogCorruption { lsn, .. } => ("mid_log_corruption", Some(*lsn)),
            WalError::DurableDamaged { lsn, .. } => ("durable_damaged", Some(*lsn)),
            WalError::Forged { lsn, .. } => ("forged", Some(*lsn)),
            WalError::Decrypt { lsn, .. } => ("decrypt_failed", Some(*lsn)),
            WalError::BadLogId { .. } => ("bad_log_id", None),
            _ => ("error", None),
        };
        Finding {
            kind,
            text: scan::describe(e),
            at: e
                .location()
                .map(|(path, offset)| (path.to_path_buf(), offset)),
            lsn,
        }
    }

    /// The finding as a line of `--json` output.
    pub(crate) fn json(&self) -> ProblemJson<'_> {
        ProblemJson {
            kind_of_line: "problem",
            kind: self.kind,
            segment: self.at.as_ref().map(|(path, _)| path.as_path()),
            offset: self.at.as_ref().map(|(_, offset)| *offset),
            lsn: self.lsn,
            message: &self.text,
        }
    }
}

/// A problem in `--json` output.
#[derive(Debug, Serialize)]
pub(crate) struct ProblemJson<'a> {
    #[serde(rename = "type")]
    kind_of_line: &'static str,
    kind: &'static str,
    segment: Option<&'a Path>,
    offset: Option<u64>,
    lsn: Option<Lsn>,
    message: &'a str,
}

/// The last line of `verify --json`.
#[derive(Debug, Serialize)]
struct SummaryJson<'a> {
    #[serde(rename = "type")]
    kind_of_line: &'static str,
    log: &'a Path,
    ok: bool,
    problems: u64,
    segments: usize,
    records: u64,
    first_lsn: Option<Lsn>,
    last_lsn: Option<Lsn>,
    unknown_kinds: u64,
    sealed_records: u64,
    tail: &'static str,
    writer_live: bool,
    unusable_indexes: Vec<IndexJson<'a>>,
    chain: &'static str,
    head: Option<String>,
    head_lsn: Option<Lsn>,
    head_tag: Option<String>,
    published_head: Option<HeadJson>,
    expected_head: Option<HeadJson>,
    segment_keys: Vec<SegmentKeyJson<'a>>,
}

/// A head verify compared the log with, and what it found.
#[derive(Debug, Serialize)]
struct HeadJson {
    lsn: Lsn,
    tag: String,
    found: &'static str,
}

impl HeadJson {
    fn new((head, check): &(ChainHead, HeadCheck)) -> HeadJson {
        HeadJson {
            lsn: head.lsn,
            tag: hex(&head.tag),
            found: match check {
                HeadCheck::Holds { .. } => "holds",
                HeadCheck::Differs { .. } => "differs",
                HeadCheck::Unchecked { .. } => "unchecked",
                _ => "not_read",
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct SegmentKeyJson<'a> {
    segment: &'a Path,
    key: Option<String>,
}

#[derive(Debug, Serialize)]
struct IndexJson<'a> {
    segment: &'a Path,
    reason: &'a str,
}

/// What a check of the whole log found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) segments: Vec<SegmentSummary>,
    pub(crate) records: u64,
    pub(crate) first_lsn: Option<Lsn>,
    pub(crate) last_lsn: Option<Lsn>,
    pub(crate) problems: u64,
    /// Records of an event kind this build does not know.
    pub(crate) unknown_kinds: u64,
    /// Records of encrypted segments read without their key.
    pub(crate) sealed: u64,
    pub(crate) tail: Option<TailDamage>,
    /// Problems found in the tail segment (its frames or past its end).
    pub(crate) tail_problems: u64,
    /// Whether a live writer held the log when the tail was checked.
    pub(crate) writer_live: bool,
    /// Whether this run has keys (`--key-file`, `LOGBOOK_KEY`).
    pub(crate) keys: bool,
    /// With keys: the log's head, the last record opened and its tag.
    pub(crate) head: Option<ChainHead>,
    /// The authenticated head the writer published in `LOCK`, and what
    /// the read found of it.
    pub(crate) published: Option<(ChainHead, HeadCheck)>,
    /// `--expect-head`, and what the read found of it.
    pub(crate) expected: Option<(ChainHead, HeadCheck)>,
    /// Problems of the heads compared (counted in `problems` too).
    pub(crate) head_problems: u64,
}

impl Report {
    /// Whether any segment is encrypted.
    fn encrypted(&self) -> bool {
        self.segments.iter().any(|s| key_of(s).is_some())
    }

    /// How far the chain was checked: `checked`, `partial` (records sealed
    /// with a key not given), `not_checked` (no key), `clear` (no
    /// encrypted segment).
    fn chain(&self) -> &'static str {
        match (self.encrypted(), self.keys) {
            (false, _) => "clear",
            (true, false) => "not_checked",
            (true, true) if self.sealed > 0 => "partial",
            (true, true) => "checked",
        }
    }
}

/// A segment's key id, if its header is valid and names one.
fn key_of(info: &SegmentSummary) -> Option<u32> {
    info.header.as_ref().ok().and_then(|h| h.key_id)
}

/// A segment's key as verify names it: its id, `clear`, or `-` (a bad
/// header).
fn key_name(info: &SegmentSummary) -> String {
    match &info.header {
        Ok(h) => h
            .key_id
            .map_or_else(|| "clear".to_owned(), |id| format!("{id:08x}")),
        Err(_) => "-".to_owned(),
    }
}

/// A tag in hexadecimal.
fn hex(tag: &[u8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check the log in `dir`, handing each problem to `on_problem` as it is
/// found.
///
/// `tail` is the log's tail as recovery sees it, if the caller has already
/// read it (else it is read here).
pub(crate) fn check(
    dir: &Path,
    progress: Option<&ProgressBar>,
    tail: Option<&Inspection>,
    expect: Option<ChainHead>,
    on_problem: &mut dyn FnMut(&Finding) -> anyhow::Result<()>,
) -> anyhow::Result<Report> {
    // Problems by segment, to tell whether the tail segment has any.
    let mut by_segment: HashMap<PathBuf, u64> = HashMap::new();
    let mut report = check_counting(dir, progress, tail, expect, &mut |finding| {
        // A head not found is about the chain, not damage to the tail.
        let damage = !finding.kind.starts_with("head_");
        if let (Some((path, _)), true) = (&finding.at, damage) {
            *by_segment.entry(path.clone()).or_default() += 1;
        }
        on_problem(finding)
    })?;
    report.tail_problems = report
        .segments
        .last()
        .and_then(|tail| by_segment.get(&tail.path))
        .copied()
        .unwrap_or(0);
    Ok(report)
}

fn check_counting(
    dir: &Path,
    progress: Option<&ProgressBar>,
    tail: Option<&Inspection>,
    expect: Option<ChainHead>,
    on_problem: &mut dyn FnMut(&Finding) -> anyhow::Result<()>,
) -> anyhow::Result<Report> {
    let ring = logbook_wal::default_keys();
    // The head the writer published, if it authenticates (one that does
    // not is a problem the reader reports).
    let published = ring
        .as_ref()
        .and_then(|ring| logbook_wal::published_head(dir, ring).ok().flatten())
        .filter(|h| h.lsn > 0)
        .map(|h| ChainHead {
            lsn: h.lsn,
            tag: h.tag,
        });
    let mut reader = scan::open_reader(dir)?;
    for head in published.iter().chain(expect.iter()) {
        reader = reader.watch_head(*head);
    }
    // Whether the reader reported a problem at the published head's LSN.
    let mut published_reported = false;
    let mut report = Report {
        keys: ring.is_some(),
        ..Report::default()
    };
    let starts = segment_starts(&reader.segments());
    if let Some(bar) = progress {
        bar.set_length(starts.last().map_or(0, |s| s.1));
    }
    let mut current: Option<(PathBuf, u64)> = None;
    let mut table = SegmentTable::default();
    scan::walk(&mut reader, |item| {
        let finding = match item {
            Item::Problem(e) => Finding::from_error(&e),
            Item::Record(record) => {
                report.records += 1;
                report.first_lsn.get_or_insert(record.lsn);
                report.last_lsn = Some(record.lsn);
                table.add(&record);
                if let Some(bar) = progress {
                    if current.as_ref().is_none_or(|c| c.0 != record.segment) {
                        let base = starts
                            .iter()
                            .find(|s| s.0 == record.segment)
                            .map_or(0, |s| s.1);
                        current = Some((record.segment.to_path_buf(), base));
                    }
                    let base = current.as_ref().map_or(0, |c| c.1);
                    bar.set_position(base + record.offset);
                }
                let why = match EventRecord::decode(&record) {
                    Ok(_) => return Ok(Flow::Continue),
                    // Reported once for the segment, below.
                    Err(WalError::ForeignCodec { .. }) => return Ok(Flow::Continue),
                    // Read without its key: the frame was checked; noted below.
                    Err(WalError::Encrypted { .. }) => {
                        report.sealed += 1;
                        return Ok(Flow::Continue);
                    }
                    Err(WalError::Codec { source, .. }) => {
                        if matches!(*source, CodecError::UnknownVariant { .. }) {
                            report.unknown_kinds += 1;
                            return Ok(Flow::Continue);
                        }
                        source.to_string()
                    }
                    Err(other) => other.to_string(),
                };
                Finding {
                    kind: "undecodable_payload",
                    text: format!(
                        "{} at offset {}: LSN {}: the payload is not a SessionEvent: {why}",
                        record.segment.display(),
                        record.offset,
                        record.lsn
                    ),
                    at: Some((record.segment.to_path_buf(), record.offset)),
                    lsn: Some(record.lsn),
                }
            }
        };
        if finding.lsn.is_some() && finding.lsn == published.map(|h| h.lsn) {
            published_reported = true;
        }
        report.problems += 1;
        on_problem(&finding)?;
        Ok(Flow::Continue)
    })?;
    report.segments = table.finish(&reader);
    report.head = reader.chain_head().map(|(lsn, tag)| ChainHead { lsn, tag });
    let found = |head: &ChainHead| {
        reader
            .head_check(head)
            .cloned()
            .unwrap_or(HeadCheck::NotRead)
    };
    report.published = published.map(|h| (h, found(&h)));
    report.expected = expect.map(|h| (h, found(&h)));
    for finding in head_problems(&report, published_reported) {
        report.problems += 1;
        report.head_problems += 1;
        on_problem(&finding)?;
    }
    for info in &report.segments {
        if let Ok(header) = &info.header {
            if header.codec_id != CODEC_ID {
                report.problems += 1;
                on_problem(&Finding {
                    kind: "unknown_codec",
                    lsn: None,
                    text: format!(
                        "{}: codec {} is unknown to this build (it reads codec {CODEC_ID}); \
                         its payloads cannot be decoded",
                        info.path.display(),
                        header.codec_id
                    ),
                    at: Some((info.path.clone(), 0)),
                })?;
            }
        }
    }
    if let Some(damage) = reader.tail_damage() {
        report.writer_live = !crate::cmd::dump::tail_counts_as_problem(dir);
        if !report.writer_live {
            report.problems += 1;
            on_problem(&Finding {
                kind: "torn_tail",
                lsn: Some(damage.lsn),
                text: format!(
                    "{} (the next open cuts it; `logbook repair {}` shows what)",
                    scan::describe_tail(damage),
                    dir.display()
                ),
                at: Some((damage.path.clone(), damage.offset)),
            })?;
        }
        report.tail = Some(damage.clone());
    } else if let Some(finding) = stale_bytes_past_the_end(dir, tail) {
        // The reader stops at the first zeros; recovery also looks past
        // them for bytes a torn write left further on.
        report.writer_live = !crate::cmd::dump::tail_counts_as_problem(dir);
        if !report.writer_live {
            report.problems += 1;
            on_problem(&finding)?;
        }
    }
    Ok(report)
}

/// The problems of the heads compared: the expected head (`--expect-head`)
/// unless the log's chain holds it; the head the writer published if the
/// log ends before it and the reader did not say so already (it reports a
/// record there that is not the one published).
fn head_problems(report: &Report, published_reported: bool) -> Vec<Finding> {
    let end = report
        .segments
        .last()
        .map(|tail| (tail.path.clone(), tail.used_bytes));
    let ends_at = report.last_lsn.map_or_else(
        || "holds no record".to_owned(),
        |l| format!("ends at LSN {l}"),
    );
    let mut problems = Vec::new();
    if let Some((head, HeadCheck::NotRead)) = &report.published {
        if !published_reported && report.last_lsn.is_none_or(|l| l < head.lsn) {
            problems.push(Finding {
                kind: "head_missing",
                text: format!(
                    "the log {ends_at}, before LSN {} that its writer made durable (the head it published in LOCK): acknowledged records were cut",
                    head.lsn
                ),
                at: end.clone(),
                lsn: Some(head.lsn),
            });
        }
    }
    let Some((head, check)) = &report.expected else {
        return problems;
    };
    let at = |segment: &Path, offset: u64| {
        format!("{} at offset {offset}: LSN {}", segment.display(), head.lsn)
    };
    let (kind, text, place) = match check {
        HeadCheck::Holds { .. } => return problems,
        HeadCheck::Differs {
            segment,
            offset,
            found,
        } => (
            "head_mismatch",
            format!(
                "{} has tag {}, not {}: the log's chain does not hold the expected head {head} (the log was rolled back and written again, replaced, or is another log; or the head was recorded wrong)",
                at(segment, *offset),
                hex(found),
                hex(&head.tag)
            ),
            Some((segment.clone(), *offset)),
        ),
        HeadCheck::Unchecked {
            segment,
            offset,
            key_id: None,
        } => (
            "head_mismatch",
            format!(
                "{} is a record in the clear: it has no tag, so the log's chain does not hold the expected head {head}",
                at(segment, *offset)
            ),
            Some((segment.clone(), *offset)),
        ),
        HeadCheck::Unchecked {
            segment,
            offset,
            key_id: Some(id),
        } => (
            "head_unchecked",
            format!(
                "{} is sealed with key {id:08x}, which was not given: the expected head {head} cannot be checked (give that key with --key-file)",
                at(segment, *offset)
            ),
            Some((segment.clone(), *offset)),
        ),
        _ if report.last_lsn.is_some_and(|l| l >= head.lsn) => (
            "head_missing",
            format!(
                "the record at LSN {} was not read (see the problems above): the expected head {head} is not confirmed",
                head.lsn
            ),
            None,
        ),
        _ => (
            "head_missing",
            format!(
                "the log {ends_at}, before the expected head {head}: records were cut, or the log was rolled back to an older copy"
            ),
            end,
        ),
    };
    problems.push(Finding {
        kind,
        text,
        at: place,
        lsn: Some(head.lsn),
    });
    problems
}

/// What recovery would cut from a tail that readers see ending cleanly:
/// non-zero bytes after a run of zeros.
fn stale_bytes_past_the_end(dir: &Path, tail: Option<&Inspection>) -> Option<Finding> {
    let mode = logbook_wal::RecoveryMode::TolerateCorruptedTail;
    let report = match tail {
        Some(tail) => tail.report(mode),
        None => logbook_wal::inspect(dir, mode),
    }
    .ok()?;
    let cut = report.cut?;
    Some(Finding {
        kind: "stale_bytes",
        lsn: Some(cut.lsn),
        text: format!(
            "{} at offset {}: {} byte(s) past the end of the log, where LSN {} was due: {} \
             (the next open cuts them; `logbook repair {}` shows what)",
            cut.path.display(),
            cut.offset,
            cut.bytes,
            cut.lsn,
            cut.reason,
            dir.display()
        ),
        at: Some((cut.path, cut.offset)),
    })
}

/// Each segment's first byte in the whole log's bytes, and the total last.
fn segment_starts(paths: &[PathBuf]) -> Vec<(PathBuf, u64)> {
    let mut at = 0;
    let mut starts = Vec::with_capacity(paths.len() + 1);
    for path in paths {
        starts.push((path.clone(), at));
        at += std::fs::metadata(path).map_or(0, |m| m.len());
    }
    starts.push((PathBuf::new(), at));
    starts
}

pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let expect_head = match &args.expect_head_from {
        Some(url) => Some(head_from_stream(&args.dir, url, &args.stream)?),
        None => args.expect_head,
    };
    if let Some(head) = &expect_head {
        if logbook_wal::default_keys().is_none() {
            anyhow::bail!(
                "--expect-head {head} needs the log's key (--key-file or LOGBOOK_KEY): a head is a record's tag, which only the key checks"
            );
        }
    }
    let has_segments = std::fs::read_dir(&args.dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            logbook_wal::LogFile::of(&e.file_name().to_string_lossy())
                == Some(logbook_wal::LogFile::Segment)
        })
    });
    if has_segments {
        if let Err(WalError::NoLogId { path }) = logbook_wal::log_id(&args.dir) {
            // Not damage to a record, but a log no writer will open.
            output::report_note(&format!(
                "{} is missing: readers read this log, but a writer refuses it (it never mints \
                 a new id for a log with segments); restore it from a copy of the log, or give \
                 it a new id on purpose: logbook repair {} --new-log-id --apply",
                path.display(),
                args.dir.display()
            ));
        }
    }
    let mut out = output::stdout();
    let outcome = if args.json {
        verify_json(&args.dir, expect_head, &mut out)
    } else {
        verify_expecting(&args.dir, args.hex, expect_head, &mut out)
    };
    out.flush()?;
    outcome
}

/// The head the stream at `url` holds for the log in `dir`
/// (`--expect-head-from`).
fn head_from_stream(dir: &Path, url: &str, stream: &str) -> anyhow::Result<ChainHead> {
    let Some(ring) = logbook_wal::default_keys() else {
        anyhow::bail!(
            "--expect-head-from {url} needs the log's key (--key-file or LOGBOOK_KEY): a head is a record's tag, which only the key checks"
        );
    };
    let log = logbook_wal::log_id(dir)?;
    let target = crate::stream::target(Path::new(url), stream)?;
    let head = crate::stream::block_on(logbook_fleet::stream_head(&target, log, &ring))??;
    let Some(head) = head else {
        anyhow::bail!(
            "{url} (stream {stream}) holds no sealed record of log {log} ({}): nothing to compare the head with",
            dir.display()
        );
    };
    output::report_note(&format!("the head {url} holds for log {log}: {head}"));
    Ok(head)
}

/// Check the log and print JSON Lines to `out`: each problem, then the
/// summary.
fn verify_json(
    dir: &Path,
    expect: Option<ChainHead>,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let mut first = None;
    let report = check(dir, None, None, expect, &mut |finding| {
        first.get_or_insert_with(|| finding.text.clone());
        output::json_line(out, &finding.json())?;
        Ok(())
    })?;
    let tail = match &report.tail {
        Some(_) => "torn",
        None if report.tail_problems > 0 => "damaged",
        None => "clean",
    };
    let sealed = report.segments.len().saturating_sub(1);
    let summary = SummaryJson {
        kind_of_line: "summary",
        log: dir,
        ok: report.problems == 0,
        problems: report.problems,
        segments: report.segments.len(),
        records: report.records,
        first_lsn: report.first_lsn,
        last_lsn: report.last_lsn,
        unknown_kinds: report.unknown_kinds,
        sealed_records: report.sealed,
        tail,
        writer_live: report.writer_live,
        unusable_indexes: report
            .segments
            .iter()
            .take(sealed)
            .filter_map(|info| {
                info.index_problem.as_deref().map(|reason| IndexJson {
                    segment: &info.path,
                    reason,
                })
            })
            .collect(),
        chain: report.chain(),
        head: report.head.map(|h| h.to_string()),
        head_lsn: report.head.map(|h| h.lsn),
        head_tag: report.head.map(|h| hex(&h.tag)),
        published_head: report.published.as_ref().map(HeadJson::new),
        expected_head: report.expected.as_ref().map(HeadJson::new),
        segment_keys: report
            .segments
            .iter()
            .map(|info| SegmentKeyJson {
                segment: &info.path,
                key: info.header.is_ok().then(|| key_name(info)),
            })
            .collect(),
    };
    output::json_line(out, &summary)?;
    out.flush()?;
    report_first_problem(dir, first, &report)
}

/// Check the log and print the report to `out`.
pub(crate) fn verify(dir: &Path, hex: bool, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    verify_expecting(dir, hex, None, out)
}

/// [`verify`], comparing the log's chain with `expect` (`--expect-head`).
fn verify_expecting(
    dir: &Path,
    hex: bool,
    expect: Option<ChainHead>,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let bar = progress_bar(dir);
    let mut first = None;
    let report = check(dir, bar.as_ref(), None, expect, &mut |finding| {
        first.get_or_insert_with(|| finding.text.clone());
        let mut print = || -> anyhow::Result<()> {
            writeln!(out, "problem: {}", output::flatten(&finding.text))?;
            if hex {
                if let Some((path, offset)) = &finding.at {
                    hex_dump(out, path, *offset)?;
                }
            }
            out.flush()?;
            Ok(())
        };
        match &bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_report(out, dir, &report)?;
    out.flush()?;
    report_first_problem(dir, first, &report)
}

/// The stderr line of a check that found problems, naming the first; the
/// outcome either way.
fn report_first_problem(
    dir: &Path,
    first: Option<String>,
    report: &Report,
) -> anyhow::Result<Outcome> {
    if let Some(first) = first {
        output::report_problem(&format!(
            "{}: {} problem(s) found; the first: {first}",
            dir.display(),
            report.problems
        ));
    }
    Ok(Outcome::from_count(report.problems))
}

fn progress_bar(dir: &Path) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    let total = segment_starts(&paths).last().map_or(0, |s| s.1);
    if total < PROGRESS_FROM_BYTES {
        return None;
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "verifying {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

fn print_report(out: &mut dyn Write, dir: &Path, report: &Report) -> anyhow::Result<()> {
    let mut table = Table::new(&[
        "segment", "header", "created", "key", ">records", "LSNs", ">used", ">size",
    ]);
    for info in &report.segments {
        let (header, created) = match &info.header {
            Ok(h) => ("ok".to_owned(), output::rfc3339_seconds(h.created_us)),
            Err(e) => (format!("BAD: {e}"), "-".to_owned()),
        };
        table.row(vec![
            info.file_name(),
            header,
            created,
            key_name(info),
            info.records.to_string(),
            output::lsn_range(info.first_lsn, info.last_lsn),
            output::bytes(info.used_bytes),
            output::bytes(info.file_size),
        ]);
    }
    writeln!(out, "log {}", dir.display())?;
    table.write(out, "  ")?;
    // Session indexes are derived data: one that cannot be used costs
    // reads, never correctness. The tail is indexed when its writer closes.
    let sealed = report.segments.len().saturating_sub(1);
    for info in report.segments.iter().take(sealed) {
        if let Some(why) = &info.index_problem {
            writeln!(
                out,
                "index: {}: session index {why} (readers scan the segment instead; \
                 `logbook repair {} --apply` rebuilds it)",
                info.file_name(),
                dir.display()
            )?;
        }
    }
    match &report.tail {
        Some(damage) if report.writer_live => writeln!(
            out,
            "tail: {} (a live writer holds the log: probably a write in progress)",
            scan::describe_tail(damage)
        )?,
        Some(damage) => writeln!(out, "tail: {}", scan::describe_tail(damage))?,
        None if report.tail_problems > 0 => writeln!(
            out,
            "tail: damaged: {} problem(s) in the tail segment {} (above)",
            report.tail_problems,
            report
                .segments
                .last()
                .map_or_else(String::new, SegmentSummary::file_name)
        )?,
        None => writeln!(out, "tail: ends cleanly")?,
    }
    if report.sealed > 0 {
        writeln!(
            out,
            "note: {} record(s) encrypted with a key not given (--key-file): frames and CRCs checked, payloads not decoded{}",
            report.sealed,
            if report.keys {
                ", their chain not checked"
            } else {
                ""
            }
        )?;
    }
    print_chain(out, report)?;
    if report.unknown_kinds > 0 {
        writeln!(
            out,
            "note: {} record(s) of an event kind this build does not know (written by a newer build?)",
            report.unknown_kinds
        )?;
    }
    let lsns = match (report.first_lsn, report.last_lsn) {
        (Some(a), Some(b)) => format!("LSN {a}..={b}"),
        _ => "no LSN".to_owned(),
    };
    let segments = report.segments.len();
    if report.problems == 0 {
        writeln!(
            out,
            "OK: {segments} segment(s), {} record(s), {lsns}, no problems",
            report.records
        )?;
    } else {
        writeln!(
            out,
            "FAILED: {} problem(s); {segments} segment(s), {} valid record(s), {lsns}",
            report.problems, report.records
        )?;
    }
    Ok(())
}

/// What the check found of the log's chain (`docs/security.md`): how far
/// it was checked, its head, and the heads compared with it.
fn print_chain(out: &mut dyn Write, report: &Report) -> anyhow::Result<()> {
    match report.chain() {
        "clear" if report.keys => {
            writeln!(
                out,
                "chain: none: the log is in the clear (no encrypted segment), it has no head"
            )?;
            return Ok(());
        }
        "clear" => return Ok(()),
        "not_checked" => {
            writeln!(
                out,
                "chain: not checked: the log is encrypted and no key was given (--key-file or LOGBOOK_KEY); the tags that chain its records need the key"
            )?;
            return Ok(());
        }
        "partial" => writeln!(
            out,
            "chain: checked, but for the records sealed with a key not given (note above)"
        )?,
        _ => {
            let from = report
                .segments
                .iter()
                .find(|s| key_of(s).is_some())
                .and_then(|s| s.header.as_ref().ok())
                .map_or(0, |h| h.base_lsn);
            writeln!(
                out,
                "chain: checked: the log is encrypted from LSN {from}, each record's tag bound to the one before"
            )?;
        }
    }
    match report.head {
        Some(head) if report.problems == report.head_problems => writeln!(
            out,
            "head: {head} (the last record's LSN and tag: record it, check it later with --expect-head)"
        )?,
        Some(head) => writeln!(
            out,
            "head: {head} (the last record that opened: with the problems above, not a head to record)"
        )?,
        None => writeln!(out, "head: none (no encrypted record opened)")?,
    }
    if let Some((head, check)) = &report.published {
        let n = head.lsn;
        match check {
            HeadCheck::Holds { .. } => {
                writeln!(
                    out,
                    "head: matches the head the writer published at LSN {n}"
                )?;
            }
            HeadCheck::Unchecked {
                key_id: Some(id), ..
            } => writeln!(
                out,
                "head: the head the writer published at LSN {n} was not checked: that record is sealed with key {id:08x}, not given"
            )?,
            _ => writeln!(
                out,
                "head: does NOT match the head the writer published at LSN {n} (problem above)"
            )?,
        }
    }
    if let Some((head, check)) = &report.expected {
        if matches!(check, HeadCheck::Holds { .. }) {
            let grown = match report.head {
                Some(now) if now.lsn > head.lsn => {
                    format!(" (the log has grown since, to LSN {})", now.lsn)
                }
                _ => String::new(),
            };
            writeln!(out, "head as expected: the log's chain holds {head}{grown}")?;
        } else {
            writeln!(
                out,
                "head NOT as expected: the log's chain does not hold {head} (problem above)"
            )?;
        }
    }
    Ok(())
}

/// Bytes shown before a problem's offset.
const HEX_BEFORE: u64 = 32;
/// Bytes shown from a problem's offset on.
const HEX_AFTER: usize = 80;

/// `hexdump -C`-style lines around `offset`, the line holding it marked,
/// and the frame header fields found there.
fn hex_dump(out: &mut dyn Write, path: &Path, offset: u64) -> anyhow::Result<()> {
    let start = offset.saturating_sub(HEX_BEFORE) & !15;
    let len = usize::try_from(offset - start).unwrap_or(0) + HEX_AFTER;
    let bytes = match scan::read_bytes(path, start, len) {
        Ok(b) => b,
        Err(e) => {
            writeln!(out, "    (cannot show the bytes: {})", output::one_line(&e))?;
            return Ok(());
        }
    };
    if bytes.is_empty() {
        writeln!(
            out,
            "    (no bytes at offset {offset}: the file ends before it)"
        )?;
        return Ok(());
    }
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let at = start + 16 * i as u64;
        let mark = if (at..at + 16).contains(&offset) {
            '>'
        } else {
            ' '
        };
        let mut hexes = String::new();
        for (j, b) in chunk.iter().enumerate() {
            if j == 8 {
                hexes.push(' ');
            }
            hexes.push_str(&format!("{b:02x} "));
        }
        let text: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "  {mark} {at:08x}  {hexes:<49} |{text}|")?;
    }
    let at = usize::try_from(offset - start).unwrap_or(usize::MAX);
    // A frame's fields; offset 0 is the segment header, not a frame.
    let frame = bytes
        .get(at..)
        .filter(|_| offset != 0)
        .and_then(FrameFields::parse);
    if let Some(f) = frame {
        writeln!(
            out,
            "    frame header at {offset:#x} ({offset}): payload_len {} crc {:#010x} lsn {} sync_mark {} timestamp_us {} session {}",
            f.payload_len,
            f.crc,
            f.header.lsn,
            f.header.sync_mark,
            f.header.timestamp_us,
            f.header.session
        )?;
    }
    Ok(())
}
