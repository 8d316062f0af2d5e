//! `logbook repair`: what recovery would cut (a dry run), and `--apply`
//! to cut it, keeping a copy of every byte it cuts.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use logbook_wal::{Inspection, RecoveryMode, RecoveryReport, Wal, WalError, WalOptions};

use serde::Serialize;

use crate::cmd::verify::Finding;
use crate::output::{self, LogProblem, Outcome};
use crate::scan;

const EXAMPLES: &str = "\
Examples:
  logbook repair ./logbook-demo                      what recovery would do (changes nothing)
  logbook repair ./logbook-demo --apply              cut a torn tail, keeping the cut bytes
  logbook repair ./logbook-demo --mode point-in-time             a dry run of another mode
  logbook repair ./logbook-demo --mode point-in-time --apply     cut mid-log damage and all after it
  logbook repair ./logbook-demo --json | jq -c 'select(.type == \"problem\")'

Recovery looks at the tail segment, the only one a writer appends to. A torn
tail (bytes written after the last fsync, never acknowledged) is cut; before
anything is cut, the bytes are copied to <segment>.<offset>.broken beside the
segment. Damage to a record that had been acknowledged (valid records written
after it was durable follow it) is mid-log corruption: repair refuses it unless
--mode says what to do: point-in-time cuts everything from the damage on (into
the .broken file), skip-corrupted keeps every valid record and leaves the damaged
bytes in place for readers to skip. absolute cuts nothing and only checks.
Skipping writes nothing: after --mode skip-corrupted --apply the damage is
still in the tail segment and a default open still refuses it, so it says
\"not repaired\" and exits 1 (it only cuts a torn tail beyond the damage).

--apply refuses while a live writer holds the log. It removes no file but the
log's own leftovers of an interrupted segment creation (*.wal.tmp, which never
hold records; it checks), exactly as opening the log would; it never deletes
any other file. Damage in sealed segments is reported but not repaired:
readers report and skip it (see `logbook verify`).

Exit status: 0 when nothing needs repair (or --apply repaired everything), 1
when the log has a problem that is (still) there, 2 on usage or I/O errors
(a read-only log for --apply) and when the log is locked.

--json prints JSON Lines: one object per problem, then one summary object.
A problem: {\"type\":\"problem\", \"kind\", \"segment\", \"offset\", \"lsn\" (null where
unknown), \"action\", \"bytes\" (for a cut), \"message\"}. Kinds: those of
`logbook verify --json`, and leftover_temporary. Actions: would_cut, cut,
skip (readers skip it; nothing is written), would_remove, removed, refused,
none (outside the tail segment: repair does not touch it). The summary:
{\"type\":\"summary\", \"log\", \"mode\", \"apply\", \"outcome\" (nothing_to_repair,
would_repair, repaired, not_repaired, refused), \"segments\", \"tail\",
\"tail_records\", \"next_lsn\", \"problems\", \"writer_live\", \"saved_to\" (the
file holding cut bytes, or null)}.";

/// A recovery mode (`logbook_wal::RecoveryMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Cut a torn tail; refuse to cut acknowledged records (the default).
    TolerateTail,
    /// Cut at the first damaged frame, whatever follows it.
    PointInTime,
    /// Keep every valid frame; readers skip the damaged ones.
    SkipCorrupted,
    /// Cut nothing; fail on any damage.
    Absolute,
}

impl Mode {
    fn recovery(self) -> RecoveryMode {
        match self {
            Mode::TolerateTail => RecoveryMode::TolerateCorruptedTail,
            Mode::PointInTime => RecoveryMode::PointInTime,
            Mode::SkipCorrupted => RecoveryMode::SkipCorrupted,
            Mode::Absolute => RecoveryMode::AbsoluteConsistency,
        }
    }
}

/// Show, or do, what recovery does to the log.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct RepairArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Change the log (without it, a dry run that changes nothing).
    #[arg(long)]
    pub(crate) apply: bool,
    /// The recovery mode [default: tolerate-tail].
    #[arg(long, value_enum)]
    pub(crate) mode: Option<Mode>,
    /// JSON Lines: one object per problem, then a summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// Give a log that has no LOG_ID (written before log ids, or whose id
    /// is lost for good) a new id; nothing else is repaired. It is then
    /// another log to every stream it was shipped to.
    #[arg(long, conflicts_with_all = ["mode", "json"])]
    pub(crate) new_log_id: bool,
}

/// `repair --new-log-id`: a dry run says what `--apply` would do.
fn new_log_id(args: &RepairArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    match logbook_wal::log_id(dir) {
        Ok(id) => anyhow::bail!(
            "{} already has an id ({id}): nothing changed",
            dir.join("LOG_ID").display()
        ),
        Err(WalError::NoLogId { .. }) => {}
        Err(e) => return Err(anyhow::Error::new(e).context("reading the log id")),
    }
    if !args.apply {
        writeln!(
            out,
            "{} has no LOG_ID: --apply gives it a new id (restore LOG_ID from a copy instead, if \
             one exists: with a new id the log ships again as another log); nothing changed \
             (dry run)",
            dir.display()
        )?;
        return Ok(Outcome::Clean);
    }
    anyhow::ensure!(
        !logbook_wal::is_locked(dir)?,
        "a live writer holds {}: nothing changed",
        dir.display()
    );
    let id = logbook_wal::assign_log_id(dir)?;
    writeln!(out, "{} now has the id {id}", dir.display())?;
    Ok(Outcome::Clean)
}

pub(crate) fn run(args: &RepairArgs) -> anyhow::Result<Outcome> {
    let mut out = output::stdout();
    if args.new_log_id {
        return new_log_id(args, &mut out);
    }
    if !args.json {
        let outcome = repair(args, &mut out, &mut None);
        out.flush()?;
        return outcome;
    }
    let mut json = Some(RepairJson::new(args));
    let outcome = repair(args, &mut std::io::sink(), &mut json);
    // A refusal is an answer too: its problem and summary are printed
    // before its error line. An I/O error prints no JSON.
    let refused = matches!(&outcome, Err(e) if output::exit_code(e) == output::EXIT_PROBLEM);
    if let Some(json) = json.filter(|_| outcome.is_ok() || refused) {
        json.write(&mut out)?;
    }
    out.flush()?;
    outcome
}

/// What `--json` prints, gathered as the repair goes.
#[derive(Debug)]
struct RepairJson {
    problems: Vec<ProblemJson>,
    summary: SummaryJson,
}

/// A problem in `repair --json`.
#[derive(Debug, Serialize)]
struct ProblemJson {
    #[serde(rename = "type")]
    kind_of_line: &'static str,
    kind: &'static str,
    segment: Option<PathBuf>,
    offset: Option<u64>,
    lsn: Option<u64>,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    message: String,
}

/// The last line of `repair --json`.
#[derive(Debug, Serialize)]
struct SummaryJson {
    #[serde(rename = "type")]
    kind_of_line: &'static str,
    log: PathBuf,
    mode: String,
    apply: bool,
    outcome: &'static str,
    segments: Option<usize>,
    tail: Option<PathBuf>,
    tail_records: Option<u64>,
    next_lsn: Option<u64>,
    problems: usize,
    writer_live: bool,
    saved_to: Option<PathBuf>,
}

impl RepairJson {
    fn new(args: &RepairArgs) -> RepairJson {
        RepairJson {
            problems: Vec::new(),
            summary: SummaryJson {
                kind_of_line: "summary",
                log: args.dir.clone(),
                mode: mode_name(args.mode.unwrap_or(Mode::TolerateTail)),
                apply: args.apply,
                outcome: "nothing_to_repair",
                segments: None,
                tail: None,
                tail_records: None,
                next_lsn: None,
                problems: 0,
                writer_live: false,
                saved_to: None,
            },
        }
    }

    fn finding(&mut self, finding: &Finding, action: &'static str) {
        self.problems.push(ProblemJson {
            kind_of_line: "problem",
            kind: finding.kind,
            segment: finding.at.as_ref().map(|(path, _)| path.clone()),
            offset: finding.at.as_ref().map(|(_, offset)| *offset),
            lsn: finding.lsn,
            action,
            bytes: None,
            message: output::flatten(&finding.text),
        });
    }

    /// What recovery found (or did) in the tail segment.
    fn report(&mut self, mode: Mode, report: &RecoveryReport, applied: bool) {
        let s = &mut self.summary;
        s.segments = Some(report.segments);
        s.tail.clone_from(&report.tail);
        s.tail_records = Some(report.tail_records);
        s.next_lsn = Some(report.next_lsn);
        if let Some(cut) = &report.cut {
            let kind = if mode == Mode::PointInTime && cut.frames_dropped > 0 {
                "mid_log_corruption"
            } else {
                "torn_tail"
            };
            self.problems.push(ProblemJson {
                kind_of_line: "problem",
                kind,
                segment: Some(cut.path.clone()),
                offset: Some(cut.offset),
                lsn: Some(cut.lsn),
                action: if applied { "cut" } else { "would_cut" },
                bytes: Some(cut.bytes),
                message: output::flatten(&cut.reason),
            });
            s.saved_to = Some(logbook_wal::broken_path(&cut.path, cut.offset));
        }
        for skipped in &report.skipped {
            self.problems.push(ProblemJson {
                kind_of_line: "problem",
                kind: "corrupt_record",
                segment: Some(skipped.path.clone()),
                offset: Some(skipped.offset),
                lsn: Some(skipped.lsn),
                action: "skip",
                bytes: None,
                message: lost_lsns(skipped.lsn, skipped.resumed_at),
            });
        }
        for tmp in &report.temporaries {
            self.problems.push(ProblemJson {
                kind_of_line: "problem",
                kind: "leftover_temporary",
                segment: Some(tmp.clone()),
                offset: None,
                lsn: None,
                action: if applied { "removed" } else { "would_remove" },
                bytes: None,
                message: "an interrupted segment creation; it holds no record".to_owned(),
            });
        }
    }

    fn write(mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        self.summary.problems = self.problems.len();
        for problem in &self.problems {
            output::json_line(out, problem)?;
        }
        output::json_line(out, &self.summary)?;
        Ok(())
    }
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn repair(
    args: &RepairArgs,
    out: &mut dyn Write,
    json: &mut Option<RepairJson>,
) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    let mode = args.mode.unwrap_or(Mode::TolerateTail);
    let live = logbook_wal::is_locked(dir)?;
    if let Some(json) = json {
        json.summary.writer_live = live;
    }
    if args.apply && live {
        bail!(
            "log {} is locked by a live writer (lock file {}): stop it before repairing; \
             read-only commands work meanwhile",
            dir.display(),
            logbook_wal::lock_path(dir).display()
        );
    }
    // The tail, read once for every question below.
    let inspection = Inspection::read(dir)?;
    let report = match inspection.report(mode.recovery()) {
        Ok(report) => report,
        Err(e)
            if matches!(
                e,
                WalError::MidLogCorruption { .. } | WalError::DurableDamaged { .. }
            ) || (mode == Mode::Absolute && e.is_corruption()) =>
        {
            let why = if mode == Mode::Absolute {
                "mode absolute cuts nothing and fails on any damage"
            } else {
                "recovery does not cut acknowledged records unless told to"
            };
            if let Some(json) = json {
                json.finding(&Finding::from_error(&e), "refused");
                json.summary.outcome = "refused";
            }
            if args.apply {
                return Err(LogProblem(format!(
                    "{}; nothing changed: {why}: rerun with --mode point-in-time (cut from the \
                     damage on, saving the cut bytes)",
                    scan::describe(&e)
                ))
                .into());
            }
            writeln!(
                out,
                "repair {} (dry run, mode {}: nothing is changed)",
                dir.display(),
                mode_name(mode)
            )?;
            writeln!(out, "  refused: {}; {why}", scan::describe(&e))?;
            explain_alternatives(out, dir, &inspection)?;
            out.flush()?;
            output::report_problem(&format!(
                "{}; --mode point-in-time can repair it (cutting from the damage on)",
                scan::describe(&e)
            ));
            return Ok(Outcome::Problems);
        }
        Err(e @ (WalError::BadHeader { .. } | WalError::BadSegment { .. })) => {
            if let Some(json) = json {
                json.finding(&Finding::from_error(&e), "refused");
                json.summary.outcome = "refused";
            }
            return Err(LogProblem(format!(
                "{e}; recovery cannot repair the tail segment's header: move the file out of the \
                 directory (logbook never deletes it) and run repair again"
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let tail = report.tail.clone().unwrap_or_default();
    let sealed = sealed_problems(dir, &tail, &inspection)?;
    if let Some(json) = json {
        for finding in &sealed.findings {
            json.finding(finding, "none");
        }
    }
    if args.apply {
        apply(args, mode, &report, &sealed, out, json)
    } else {
        if let Some(json) = json {
            json.report(mode, &report, false);
            if report.cut.is_some() || !report.skipped.is_empty() {
                json.summary.outcome = "would_repair";
            }
        }
        dry_run(dir, mode, &report, &sealed, live, out)
    }
}

/// Problems outside what recovery looks at (the tail segment's frames):
/// in sealed segments, and gaps between segments.
fn sealed_problems(dir: &Path, tail: &Path, inspection: &Inspection) -> anyhow::Result<Sealed> {
    let mut sealed = Sealed::default();
    crate::cmd::verify::check(dir, None, Some(inspection), None, &mut |finding| {
        let in_tail_frames = finding
            .at
            .as_ref()
            .is_some_and(|(path, offset)| path == tail && *offset > 0);
        if !in_tail_frames {
            sealed.count += 1;
            sealed.first.get_or_insert_with(|| finding.text.clone());
            sealed.findings.push(finding.clone());
        }
        Ok(())
    })?;
    Ok(sealed)
}

/// Problems outside what recovery repairs.
#[derive(Debug, Default)]
struct Sealed {
    count: u64,
    first: Option<String>,
    findings: Vec<Finding>,
}

fn print_findings(
    out: &mut dyn Write,
    mode: Mode,
    report: &RecoveryReport,
    sealed: &Sealed,
    dir: &Path,
    verb: (&str, &str),
) -> anyhow::Result<()> {
    let (cut_verb, remove_verb) = verb;
    if let Some(tail) = &report.tail {
        writeln!(
            out,
            "  segments: {}; tail {} with {} valid record(s); the log continues at LSN {}",
            report.segments,
            name(tail),
            report.tail_records,
            report.next_lsn
        )?;
    }
    if let Some(cut) = &report.cut {
        let dropped = match (mode, cut.frames_dropped) {
            (_, 0) => String::new(),
            (Mode::TolerateTail, n) => {
                format!(", and {n} whole-looking frame(s) after it, never acknowledged")
            }
            (_, n) => format!(", and {n} valid frame(s) after it"),
        };
        writeln!(
            out,
            "  {cut_verb}: {} from offset {}: {} byte(s), LSN {} on{dropped}: {}",
            name(&cut.path),
            cut.offset,
            cut.bytes,
            cut.lsn,
            cut.reason
        )?;
    }
    for skipped in &report.skipped {
        writeln!(
            out,
            "  skip: {} at offset {}: {}; the damaged bytes stay in place (readers skip them)",
            name(&skipped.path),
            skipped.offset,
            lost_lsns(skipped.lsn, skipped.resumed_at)
        )?;
    }
    for tmp in &report.temporaries {
        writeln!(
            out,
            "  {remove_verb}: {} (an interrupted segment creation; it holds no record)",
            name(tmp)
        )?;
    }
    for foreign in &report.foreign {
        writeln!(out, "  left alone: {} (not part of the log)", name(foreign))?;
    }
    if sealed.count > 0 {
        writeln!(
            out,
            "  sealed segments: {} problem(s) that recovery does not touch; readers report and \
             skip them (`logbook verify {}` lists them)",
            sealed.count,
            dir.display()
        )?;
    } else {
        writeln!(out, "  sealed segments: no problem")?;
    }
    Ok(())
}

fn dry_run(
    dir: &Path,
    mode: Mode,
    report: &RecoveryReport,
    sealed: &Sealed,
    live: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    writeln!(
        out,
        "repair {} (dry run, mode {}: nothing is changed)",
        dir.display(),
        mode_name(mode)
    )?;
    print_findings(
        out,
        mode,
        report,
        sealed,
        dir,
        ("would cut", "would remove"),
    )?;
    if let Some(cut) = &report.cut {
        writeln!(
            out,
            "  the cut bytes would be saved to {}",
            name(&logbook_wal::broken_path(&cut.path, cut.offset))
        )?;
    }
    if live {
        writeln!(
            out,
            "  a live writer holds the log: damage at its tail may be a write in progress, and \
             --apply refuses until the writer stops"
        )?;
    }
    let to_fix = report.cut.is_some() || !report.skipped.is_empty();
    let summary = summary_line(dir, report, sealed, "would cut").map(|line| {
        line.replace(
            " --apply` does it",
            &format!("{} --apply` does it", mode_flag(mode)),
        )
    });
    if report.cut.is_none() && !report.skipped.is_empty() {
        writeln!(
            out,
            "{}",
            skip_changes_nothing(dir, "--apply would write nothing")
        )?;
    } else if to_fix {
        writeln!(
            out,
            "to repair: logbook repair {}{} --apply",
            dir.display(),
            mode_flag(mode)
        )?;
    } else if !report.temporaries.is_empty() {
        writeln!(
            out,
            "nothing to cut; --apply (or the next writer) removes the leftover temporaries"
        )?;
    } else {
        writeln!(out, "nothing to repair in the tail segment")?;
    }
    out.flush()?;
    if let Some(line) = summary {
        output::report_problem(&line);
    }
    Ok(Outcome::from_count(u64::from(to_fix) + sealed.count))
}

/// ` --mode NAME`, or nothing for the default mode.
fn mode_flag(mode: Mode) -> String {
    match mode {
        Mode::TolerateTail => String::new(),
        other => format!(" --mode {}", mode_name(other)),
    }
}

fn mode_name(mode: Mode) -> String {
    mode.to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

fn apply(
    args: &RepairArgs,
    mode: Mode,
    planned: &RecoveryReport,
    sealed: &Sealed,
    out: &mut dyn Write,
    json: &mut Option<RepairJson>,
) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    writeln!(out, "repair {} (mode {})", dir.display(), mode_name(mode))?;
    if planned.cut.is_none() && planned.temporaries.is_empty() && !planned.skipped.is_empty() {
        if let Some(json) = json {
            json.report(mode, planned, true);
            json.summary.outcome = "not_repaired";
        }
        // Skipping is what a reader (or a writer opened in this mode) does:
        // nothing on disk changes, and a default open still refuses.
        print_findings(out, mode, planned, sealed, dir, ("cut", "removed"))?;
        writeln!(out, "{}", skip_changes_nothing(dir, "nothing was written"))?;
        out.flush()?;
        if let Some(line) = summary_line(dir, planned, sealed, "skips") {
            output::report_problem(&format!("{line}; nothing was written"));
        }
        return Ok(Outcome::Problems);
    }
    let nothing_to_do =
        planned.cut.is_none() && planned.skipped.is_empty() && planned.temporaries.is_empty();
    if nothing_to_do {
        if let Some(json) = json {
            json.report(mode, planned, true);
        }
        print_findings(out, mode, planned, sealed, dir, ("cut", "removed"))?;
        writeln!(
            out,
            "nothing to repair in the tail segment; nothing changed"
        )?;
        rebuild_indexes(dir, out)?;
        out.flush()?;
        if let Some(line) = summary_line(dir, planned, sealed, "") {
            output::report_problem(&line);
        }
        return Ok(Outcome::from_count(sealed.count));
    }
    let options = WalOptions {
        recovery: mode.recovery(),
        keep_cut_bytes: true,
        preallocate: false,
        create_if_missing: false,
        ..WalOptions::default()
    };
    // A log that cannot be written (a read-only file system, no write
    // permission) fails here, before anything is changed.
    let wal = Wal::open(dir, crate::keys::writer_options(options)).with_context(|| {
        format!(
            "cannot repair the log in {} (nothing changed)",
            dir.display()
        )
    })?;
    let report = wal.recovery().clone();
    wal.close()?;
    if let Some(json) = json {
        json.report(mode, &report, true);
        json.summary.outcome = if report.skipped.is_empty() {
            "repaired"
        } else {
            "not_repaired"
        };
    }
    print_findings(out, mode, &report, sealed, dir, ("cut", "removed"))?;
    if let Some(cut) = &report.cut {
        let broken = logbook_wal::broken_path(&cut.path, cut.offset);
        writeln!(
            out,
            "  the cut bytes are in {} ({} byte(s))",
            broken.display(),
            std::fs::metadata(&broken).map_or(0, |m| m.len())
        )?;
    }
    if !report.skipped.is_empty() {
        writeln!(
            out,
            "{}",
            skip_changes_nothing(
                dir,
                "the cut is done; for the skipped damage nothing was written"
            )
        )?;
        out.flush()?;
        let mut left = RecoveryReport::default();
        left.skipped.clone_from(&report.skipped);
        if let Some(line) = summary_line(dir, &left, sealed, "skips") {
            output::report_problem(&line);
        }
        return Ok(Outcome::Problems);
    }
    writeln!(
        out,
        "repaired: the log continues at LSN {}",
        report.next_lsn
    )?;
    rebuild_indexes(dir, out)?;
    out.flush()?;
    if let Some(line) = summary_line(dir, &RecoveryReport::default(), sealed, "") {
        output::report_problem(&line);
    }
    Ok(Outcome::from_count(sealed.count))
}

/// Rebuild the session indexes that sealed segments lack (derived data,
/// `docs/format.md`), and say so when there were any.
fn rebuild_indexes(dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let rebuilt = logbook_wal::build_indexes(dir)?;
    if rebuilt > 0 {
        writeln!(out, "session indexes rebuilt: {rebuilt} sealed segment(s)")?;
    }
    Ok(())
}

/// What `--mode skip-corrupted` cannot do: skipping damage changes no
/// byte, so the damage stays in the tail segment and a default open (the
/// next writer's) still refuses the log.
fn skip_changes_nothing(dir: &Path, what: &str) -> String {
    format!(
        "not repaired: {what}: skip-corrupted leaves the damaged bytes in the tail segment, where \
         readers skip them but a default open (mode tolerate-tail) still refuses them; a writer \
         may open the log with RecoveryMode::SkipCorrupted, or `logbook repair {} --mode \
         point-in-time --apply` cuts from the damage on (saving the cut bytes)",
        dir.display()
    )
}

/// After a refusal: what the two other modes would do.
fn explain_alternatives(
    out: &mut dyn Write,
    dir: &Path,
    inspection: &Inspection,
) -> anyhow::Result<()> {
    if let Ok(r) = inspection.report(RecoveryMode::PointInTime) {
        if let Some(cut) = &r.cut {
            writeln!(
                out,
                "  --mode point-in-time would cut {} from offset {}: {} byte(s), LSN {} on, \
                 dropping {} valid frame(s) (saved to {})",
                name(&cut.path),
                cut.offset,
                cut.bytes,
                cut.lsn,
                cut.frames_dropped,
                name(&logbook_wal::broken_path(&cut.path, cut.offset))
            )?;
        }
    }
    if let Ok(r) = inspection.report(RecoveryMode::SkipCorrupted) {
        for s in &r.skipped {
            writeln!(
                out,
                "  --mode skip-corrupted would keep every valid record and skip the damage in {} \
                 at offset {} ({}), writing nothing: a default open would still refuse it",
                name(&s.path),
                s.offset,
                lost_lsns(s.lsn, s.resumed_at)
            )?;
        }
        if let Some(cut) = &r.cut {
            writeln!(
                out,
                "  --mode skip-corrupted would also cut {} byte(s) of garbage at the end (offset {})",
                cut.bytes, cut.offset
            )?;
        }
    }
    writeln!(
        out,
        "to repair: logbook repair {} --mode point-in-time --apply",
        dir.display()
    )?;
    Ok(())
}

/// Which LSNs a skipped stretch lost.
fn lost_lsns(due: u64, resumed_at: u64) -> String {
    match resumed_at.saturating_sub(due) {
        0 => "no LSN lost".to_owned(),
        1 => format!("LSN {due} lost"),
        _ => format!("LSN {due} to {} lost", resumed_at - 1),
    }
}

/// The one stderr line of a repair that leaves a problem: what recovery
/// would cut, and the problems it does not touch.
fn summary_line(
    dir: &Path,
    report: &RecoveryReport,
    sealed: &Sealed,
    verb: &str,
) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(cut) = report.cut.as_ref().filter(|_| !verb.is_empty()) {
        parts.push(format!(
            "{} at offset {}: recovery {verb} {} byte(s) (LSN {} on); `logbook repair {} --apply` does it",
            cut.path.display(),
            cut.offset,
            cut.bytes,
            cut.lsn,
            dir.display()
        ));
    }
    if let Some(s) = report.skipped.first().filter(|_| !verb.is_empty()) {
        parts.push(format!(
            "{} at offset {}: damaged records to skip ({})",
            s.path.display(),
            s.offset,
            lost_lsns(s.lsn, s.resumed_at)
        ));
    }
    if let Some(first) = &sealed.first {
        parts.push(format!(
            "{} problem(s) outside the tail that repair does not touch (`logbook verify {}` \
             lists them); the first: {first}",
            sealed.count,
            dir.display()
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
