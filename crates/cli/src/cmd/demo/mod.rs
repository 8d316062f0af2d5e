//! `logbook demo`: the whole story on a real log. A child process runs six
//! agent sessions concurrently through `SessionBus` + `WalSink`; the
//! parent `SIGKILL`s it while two are mid-way, reopens the log (recovery),
//! lists the sessions, replays an interrupted one, resumes and finishes
//! it, and verifies the log.

mod agent;
mod child;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use logbook_wal::{EventRecord, LogFile};
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

pub(crate) use self::child::ChildArgs;
use crate::output::{self, Outcome};

const EXAMPLES: &str = "\
Examples:
  logbook demo                    on ./logbook-demo
  logbook demo /tmp/logbook-demo

A child process (`logbook demo-child DIR`) runs six agent sessions at once,
each on its own SessionBus whose durable sink is the log (token usage, tool
calls, text, compaction, an RLM loop, a failure). Once four have ended and two
are mid-way, the demo kills the child with SIGKILL, reopens the log and prints
the recovery report, the sessions (two interrupted), the rebuilt state of one
interrupted session; then resumes it, finishes it and verifies the log. It
leaves the directory for you to explore with the other subcommands.

DIR may be missing or empty. If it holds a log an earlier `logbook demo` wrote,
that log's files (*.wal, *.wal.tmp, LOCK, *.broken) are removed first; the demo
refuses a directory with any other file in it, a log it did not write, and a
log that a live writer holds.";

/// Run the demo.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct DemoArgs {
    /// Where to write the demo's log.
    #[arg(default_value = "./logbook-demo")]
    pub(crate) dir: PathBuf,
}

/// The demo's segment size: the smallest allowed, so that its small log
/// spans several segments.
const SEGMENT_SIZE: u64 = logbook_wal::MIN_SEGMENT_SIZE;

/// How long the parent waits for the child to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(25);

/// The options the demo's writers use.
pub(crate) fn wal_options() -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE,
        ..WalOptions::default()
    }
}

pub(crate) fn child(args: &ChildArgs) -> anyhow::Result<Outcome> {
    child::run(args)
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<Outcome> {
    let mut out = output::stdout();
    let outcome = demo(&args.dir, &mut out);
    out.flush()?;
    outcome
}

/// Make `dir` ready for a fresh demo log, or refuse.
fn prepare(dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", dir.display())),
        Ok(m) if !m.is_dir() => bail!("{} is not a directory", dir.display()),
        Ok(_) => {}
    }
    let mut owned = Vec::new();
    let mut segments = 0;
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("read directory {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("read directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(kind) = LogFile::of(&name) else {
            bail!(
                "{} holds {name}, which is not part of a logbook log: refusing to use the \
                 directory for the demo; give another one (logbook demo DIR)",
                dir.display()
            );
        };
        if kind == LogFile::Segment {
            segments += 1;
        }
        owned.push(entry.path());
    }
    if owned.is_empty() {
        return Ok(());
    }
    if logbook_wal::is_locked(dir)? {
        bail!(
            "log {} is locked by a live writer (lock file {}): refusing to remove it",
            dir.display(),
            logbook_wal::lock_path(dir).display()
        );
    }
    if segments > 0 && !is_demo_log(dir)? {
        bail!(
            "{} holds a logbook log that `logbook demo` did not write: refusing to remove it; \
             give another directory (logbook demo DIR)",
            dir.display()
        );
    }
    for path in &owned {
        std::fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
    }
    writeln!(
        out,
        "Removed the previous demo log in {} ({} files).",
        dir.display(),
        owned.len()
    )?;
    Ok(())
}

/// Whether the log's first record opens a demo session.
fn is_demo_log(dir: &Path) -> anyhow::Result<bool> {
    let mut reader = logbook_wal::Reader::open(dir)?;
    let Some(first) = reader.next_ref() else {
        return Ok(false);
    };
    let first = first.with_context(|| {
        format!(
            "cannot tell whether {} holds a demo log; refusing to remove it",
            dir.display()
        )
    })?;
    Ok(matches!(
        EventRecord::decode(&first).map(|r| r.event),
        Ok(logbook_bus::SessionEvent::SessionStarted { cwd, .. }) if cwd.starts_with(agent::DEMO_CWD)
    ))
}

/// What the child said.
#[derive(Debug, Default)]
struct ChildReport {
    midway: Vec<(Uuid, String)>,
}

fn demo(dir: &Path, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    prepare(dir, out)?;
    std::fs::create_dir_all(dir).with_context(|| format!("create directory {}", dir.display()))?;
    let exe = std::env::current_exe().context("finding the logbook executable")?;
    let mut child = Command::new(&exe)
        .arg("demo-child")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} demo-child", exe.display()))?;
    writeln!(
        out,
        "== 1. Six agent sessions write to {} through SessionBus + WalSink, in child process {}",
        dir.display(),
        child.id()
    )?;
    out.flush()?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().context("the child's stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut report = ChildReport::default();
    let deadline = Instant::now() + READY_TIMEOUT;
    let ready = loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            break false;
        };
        if line == "ready" {
            break true;
        }
        show_child_line(out, &line, &mut report)?;
        out.flush()?;
    };
    if !ready {
        let _ = child.kill();
        let status = child.wait().ok();
        bail!(
            "the demo's child process did not get its sessions going (exit status {}); the log is \
             left in {}",
            status.map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            dir.display()
        );
    }
    let killed_at = Instant::now();
    child.kill().context("killing the demo's child process")?;
    let status = child
        .wait()
        .context("waiting for the demo's child process")?;
    writeln!(
        out,
        "\n== 2. Killed the child with SIGKILL while {} sessions were mid-way ({}, {} after it started)",
        report.midway.len(),
        describe_status(&status),
        output::span(micros(killed_at.duration_since(started)))
    )?;

    writeln!(out, "\n== 3. Reopen the log: recovery")?;
    let wal = Wal::open(dir, wal_options())?;
    print_recovery(out, wal.recovery())?;
    wal.close()?;

    let resumed = post_crash(dir, &report, out)?;

    writeln!(out, "\n== 7. logbook verify {}", dir.display())?;
    let verified = crate::cmd::verify::verify(dir, false, out)?;

    writeln!(
        out,
        "\nDone in {}. The log is left in {} for you to explore:",
        output::span(micros(started.elapsed())),
        dir.display()
    )?;
    let d = dir.display();
    let (resumed, left) = resumed;
    let id = output::short_id(&resumed);
    let left = left.first().map_or_else(String::new, output::short_id);
    let next = [
        format!("logbook sessions {d}"),
        format!("logbook replay {d} {id}           # the resumed session"),
        format!("logbook replay {d} {left}           # the one still interrupted"),
        format!("logbook dump {d} --session {id}"),
        format!("logbook dump {d} --kind token_usage --json | head -3"),
        format!("logbook stats {d}"),
        format!("logbook verify {d} --hex"),
        format!("logbook repair {d}"),
    ];
    for line in next {
        writeln!(out, "  {line}")?;
    }
    Ok(verified)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn describe_status(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => "killed by signal 9, SIGKILL".to_owned(),
        Some(signal) => format!("killed by signal {signal}"),
        None => status.to_string(),
    }
}

fn show_child_line(
    out: &mut dyn Write,
    line: &str,
    report: &mut ChildReport,
) -> anyhow::Result<()> {
    let mut words = line.splitn(3, ' ');
    let (verb, id, rest) = (words.next(), words.next(), words.next().unwrap_or(""));
    let id = id.and_then(|s| Uuid::parse_str(s).ok());
    match (verb, id) {
        (Some("started"), Some(id)) => {
            writeln!(out, "  started   {}  {rest}", output::short_id(&id))?;
        }
        (Some("finished"), Some(id)) => {
            let (status, title) = rest.split_once(' ').unwrap_or((rest, ""));
            writeln!(out, "  {status:<9} {}  {title}", output::short_id(&id))?;
        }
        (Some("midway"), Some(id)) => {
            report.midway.push((id, rest.to_owned()));
            writeln!(out, "  mid-way   {}  {rest}", output::short_id(&id))?;
        }
        _ => writeln!(out, "  child: {line}")?,
    }
    Ok(())
}

fn print_recovery(out: &mut dyn Write, r: &logbook_wal::RecoveryReport) -> anyhow::Result<()> {
    let tail = r.tail.as_ref().map_or_else(String::new, |t| {
        t.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    });
    writeln!(
        out,
        "  {} segment(s); tail {tail} holds {} valid record(s); the log continues at LSN {}",
        r.segments, r.tail_records, r.next_lsn
    )?;
    match &r.cut {
        Some(cut) => writeln!(
            out,
            "  cut a torn tail: {} byte(s) at offset {} ({} whole-looking frame(s) never acknowledged): {}",
            cut.bytes, cut.offset, cut.frames_dropped, cut.reason
        )?,
        None => writeln!(
            out,
            "  nothing to cut: every acknowledged record is intact (a killed process tears no \
             write; a power cut can, and recovery cuts what was never acknowledged)"
        )?,
    }
    for tmp in &r.temporaries {
        writeln!(
            out,
            "  removed {} (an interrupted segment creation)",
            tmp.display()
        )?;
    }
    Ok(())
}

/// Steps 4 to 6: the sessions, the replayed state of an interrupted one,
/// and its resumption. Returns the resumed session and the ones still
/// interrupted.
fn post_crash(
    dir: &Path,
    report: &ChildReport,
    out: &mut dyn Write,
) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
    writeln!(out, "\n== 4. logbook sessions {}", dir.display())?;
    let log = crate::cmd::sessions::list(dir)?;
    crate::cmd::sessions::report_damage(&log);
    let all: Vec<_> = log.sessions.iter().collect();
    crate::cmd::sessions::print_table(out, &log, &all, "  ")?;

    let interrupted: Vec<Uuid> = log.interrupted().map(|s| s.session).collect();
    let Some(id) = report
        .midway
        .iter()
        .filter(|m| m.1.starts_with(child::RESUMED_TITLE))
        .map(|m| m.0)
        .find(|id| interrupted.contains(id))
        .or_else(|| interrupted.first().copied())
    else {
        bail!(
            "no session of the log in {} is interrupted after the crash",
            dir.display()
        );
    };
    let short = output::short_id(&id);
    writeln!(
        out,
        "\n== 5. logbook replay {} {short}: the interrupted session, rebuilt from the log",
        dir.display()
    )?;
    let state = logbook_replay::session_state(dir, id)?;
    crate::cmd::replay::print_state(out, &state, false, "  ")?;

    writeln!(
        out,
        "\n== 6. Resume {short} (logbook_replay::resume) and finish its work"
    )?;
    let wal = Wal::open(dir, wal_options())?;
    let resumed = logbook_replay::resume(&wal, id)?;
    writeln!(
        out,
        "  appended SessionResumed at LSN {} (the session stopped at LSN {}); {} transcript \
         entries and {} pending tool call(s) handed back",
        resumed.resumed_lsn,
        resumed.last_lsn,
        resumed.transcript.len(),
        resumed.pending_tool_calls.len()
    )?;
    let model = state.model().unwrap_or("claude-sonnet-4").to_owned();
    let pending = resumed.pending_tool_calls.clone();
    let agent = agent::Agent::new(id, Arc::new(resumed.sink), Duration::ZERO);
    // The agent writes with `emit_async`: drive it on a runtime of this thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        for call in &pending {
            let arguments = call
                .start
                .as_ref()
                .map_or_else(|| "{}".to_owned(), |s| s.arguments.clone());
            agent.tool_start(&call.id, &call.name, &arguments).await?;
            agent
                .tool_end(
                    &call.id,
                    &call.name,
                    "running 212 tests\ntest result: ok. 212 passed; 0 failed",
                    true,
                )
                .await?;
            writeln!(
                out,
                "  re-ran the pending tool call {} [{}] {}: ok",
                call.name,
                call.id,
                crate::render::quote(&arguments, false)
            )?;
        }
        agent
            .usage(logbook_bus::TokenSource::Root, &model, 16_400, 210)
            .await?;
        agent
            .say("All 212 tests pass: the loader and the validator now live in separate modules.")
            .await?;
        agent.done().await
    })?;
    wal.close()?;
    let state = logbook_replay::session_state(dir, id)?;
    writeln!(
        out,
        "  emitted the tool completion, a TextComplete and Done through the returned sink: \
         {short} is now {} (LSN {}..={}, resumed {} time(s))",
        state.status(),
        state.first_lsn().unwrap_or_default(),
        state.last_lsn().unwrap_or_default(),
        state.resumptions().len()
    )?;
    let left = interrupted.into_iter().filter(|i| *i != id).collect();
    Ok((id, left))
}
