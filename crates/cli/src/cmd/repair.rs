//! `logbook repair`: what recovery would cut (a dry run), and `--apply`
//! to cut it, keeping a copy of every byte it cuts.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use logbook_wal::{Inspection, RecoveryMode, RecoveryReport, Wal, WalError, WalOptions};

use crate::output::{self, LogProblem, Outcome};
use crate::scan;

const EXAMPLES: &str = "\
Examples:
  logbook repair ./logbook-demo                      what recovery would do (changes nothing)
  logbook repair ./logbook-demo --apply              cut a torn tail, keeping the cut bytes
  logbook repair ./logbook-demo --mode point-in-time             a dry run of another mode
  logbook repair ./logbook-demo --mode point-in-time --apply     cut mid-log damage and all after it

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
(a read-only log for --apply) and when the log is locked.";

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
}

pub(crate) fn run(args: &RepairArgs) -> anyhow::Result<Outcome> {
    let mut out = output::stdout();
    let outcome = repair(args, &mut out);
    out.flush()?;
    outcome
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn repair(args: &RepairArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    let mode = args.mode.unwrap_or(Mode::TolerateTail);
    let live = logbook_wal::is_locked(dir)?;
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
    if args.apply {
        apply(args, mode, &report, &sealed, out)
    } else {
        dry_run(dir, mode, &report, &sealed, live, out)
    }
}

/// Problems outside what recovery looks at (the tail segment's frames):
/// in sealed segments, and gaps between segments.
fn sealed_problems(dir: &Path, tail: &Path, inspection: &Inspection) -> anyhow::Result<Sealed> {
    let mut sealed = Sealed::default();
    crate::cmd::verify::check(dir, None, Some(inspection), &mut |finding| {
        let in_tail_frames = finding
            .at
            .as_ref()
            .is_some_and(|(path, offset)| path == tail && *offset > 0);
        if !in_tail_frames {
            sealed.count += 1;
            sealed.first.get_or_insert_with(|| finding.text.clone());
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
) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    writeln!(out, "repair {} (mode {})", dir.display(), mode_name(mode))?;
    if planned.cut.is_none() && planned.temporaries.is_empty() && !planned.skipped.is_empty() {
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
    let wal = Wal::open(dir, options).with_context(|| {
        format!(
            "cannot repair the log in {} (nothing changed)",
            dir.display()
        )
    })?;
    let report = wal.recovery().clone();
    wal.close()?;
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
