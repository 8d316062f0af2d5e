//! The demo's child process (`logbook demo-child DIR`): six agent sessions
//! run as concurrent tokio tasks on a multi-thread runtime with two worker
//! threads, all writing to one log through `SessionBus` + `WalSink`. Each
//! session writes its events with `SessionBus::emit_async`, whose future
//! resolves once the log's group commit has fsynced the record (on the
//! log's own committer thread), and paces itself with `tokio::time::sleep`:
//! no worker thread ever blocks. Four sessions run to their end (three
//! complete, one fails); two stop mid-way and keep going until the parent
//! kills the process.
//!
//! It tells the parent how it is doing on stdout, one line each:
//! `started ID TITLE`, `finished ID STATUS TITLE`, `midway ID TITLE: WHAT`
//! and, once every session has finished or is mid-way, `ready`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use logbook_bus::{SessionEvent, TokenSource};
use logbook_wal::Wal;
use uuid::Uuid;

use super::agent::Agent;
use crate::output::Outcome;

/// The demo's child process.
#[derive(Debug, Args)]
pub(crate) struct ChildArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
}

/// How long the child lives if nobody kills it.
const LIFETIME: Duration = Duration::from_secs(60);

/// The runtime's worker threads, shared by the six sessions.
const WORKERS: usize = 2;

/// The cut-off session the demo resumes: its tool call is deterministically
/// pending when the child is killed.
pub(crate) const RESUMED_TITLE: &str = "Refactor the config loader";

/// Sessions that run to their end.
const FINISHING: usize = 4;
/// Sessions that are cut off.
const CUT_OFF: usize = 2;

enum Msg {
    Started(Uuid, &'static str),
    Finished(Uuid, &'static str, &'static str),
    Midway(Uuid, &'static str, String),
    Failed(String),
}

/// What a session does: one of the script functions below.
#[derive(Debug, Clone, Copy)]
enum Script {
    FixFlakyTest,
    SummariseIncident,
    ResearchRlm,
    UpgradeCi,
    RefactorConfig,
    MigrateBilling,
}

impl Script {
    async fn run(self, a: &mut Agent, tx: &mpsc::Sender<Msg>) -> anyhow::Result<&'static str> {
        match self {
            Script::FixFlakyTest => fix_flaky_test(a, tx).await,
            Script::SummariseIncident => summarise_incident(a, tx).await,
            Script::ResearchRlm => research_rlm(a, tx).await,
            Script::UpgradeCi => upgrade_ci(a, tx).await,
            Script::RefactorConfig => refactor_config(a, tx).await,
            Script::MigrateBilling => migrate_billing(a, tx).await,
        }
    }
}

const SCRIPTS: [(&str, Script); FINISHING + CUT_OFF] = [
    ("Fix the flaky retry test", Script::FixFlakyTest),
    ("Summarise last night's incident", Script::SummariseIncident),
    ("Survey write-ahead log designs", Script::ResearchRlm),
    ("Upgrade the CI image", Script::UpgradeCi),
    (RESUMED_TITLE, Script::RefactorConfig),
    ("Migrate the billing tables", Script::MigrateBilling),
];

pub(crate) fn run(args: &ChildArgs) -> anyhow::Result<Outcome> {
    let wal = Wal::open(&args.dir, super::wal_options())?;
    // Declared after `wal`, so dropped before it on an early return: the
    // sessions stop at their next `.await`, and the last `Wal` is dropped
    // on this thread, outside the runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("demo-session")
        .enable_time()
        .build()?;
    let (tx, rx) = mpsc::channel();
    for (i, (title, script)) in SCRIPTS.into_iter().enumerate() {
        let id = Uuid::new_v4();
        let sink = Arc::new(wal.sink(id));
        let tx = tx.clone();
        let pace = Duration::from_millis(25 + 10 * i as u64);
        runtime.spawn(async move {
            let mut agent = Agent::new(id, sink, pace);
            let _ = tx.send(Msg::Started(id, title));
            match script.run(&mut agent, &tx).await {
                Ok(status) => {
                    let _ = tx.send(Msg::Finished(id, status, title));
                }
                Err(e) => {
                    let _ = tx.send(Msg::Failed(format!("{e:#}")));
                }
            }
        });
    }
    drop(tx);
    // This thread is no worker of the runtime: it may block on the channel.
    let deadline = Instant::now() + LIFETIME;
    let parent = std::os::unix::process::parent_id();
    let (mut finished, mut midway) = (0, 0);
    let mut out = std::io::stdout().lock();
    let mut ready = false;
    while Instant::now() < deadline {
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(msg) => msg,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Orphaned (the demo itself was killed): stop writing.
                if std::os::unix::process::parent_id() != parent {
                    break;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let line = match msg {
            Msg::Started(id, title) => format!("started {id} {title}"),
            Msg::Finished(id, status, title) => {
                finished += 1;
                format!("finished {id} {status} {title}")
            }
            Msg::Midway(id, title, what) => {
                midway += 1;
                format!("midway {id} {title}: {what}")
            }
            Msg::Failed(e) => anyhow::bail!("a demo session failed: {e}"),
        };
        writeln!(out, "{line}")?;
        if !ready && finished == FINISHING && midway == CUT_OFF {
            ready = true;
            writeln!(out, "ready")?;
        }
        out.flush()?;
    }
    // Nobody killed us, or the demo is gone: leave the cut-off sessions as
    // they are, as a crash would.
    std::process::exit(3);
}

async fn fix_flaky_test(a: &mut Agent, _: &mpsc::Sender<Msg>) -> anyhow::Result<&'static str> {
    let model = "claude-sonnet-4";
    a.start(model, "payments-api", "Fix the flaky retry test")
        .await?;
    a.user("tests/retry.rs fails about one run in ten on CI. Find out why and fix it.")
        .await?;
    a.think(
        "A test that fails one run in ten smells like timing: look for sleeps and shared clocks.",
    )
    .await?;
    a.usage(TokenSource::Root, model, 4_120, 310).await?;
    a.tool(
        "read_file",
        r#"{"path":"tests/retry.rs"}"#,
        "fn retries_with_backoff() {\n    let start = Instant::now();\n    assert!(start.elapsed() < Duration::from_millis(50));\n}",
        true,
    ).await?;
    a.usage(TokenSource::Root, model, 5_870, 420).await?;
    a.tool(
        "edit_file",
        r#"{"path":"tests/retry.rs","patch":"use a paused tokio clock instead of Instant::now()"}"#,
        "1 file changed, 6 insertions(+), 3 deletions(-)",
        true,
    )
    .await?;
    a.tool(
        "bash",
        r#"{"command":"cargo test --test retry -- --test-threads 1"}"#,
        "running 4 tests\ntest retries_with_backoff ... ok\ntest result: ok. 4 passed; 0 failed",
        true,
    )
    .await?;
    a.usage(TokenSource::Root, model, 6_940, 180).await?;
    a.say("The test measured wall-clock time around a real sleep, so a slow CI runner could exceed 50 ms. It now runs on tokio's paused clock and passes deterministically.").await?;
    a.done().await?;
    Ok("completed")
}

async fn summarise_incident(a: &mut Agent, _: &mpsc::Sender<Msg>) -> anyhow::Result<&'static str> {
    let model = "gpt-4.1";
    a.start(model, "ops-notes", "Summarise last night's incident")
        .await?;
    a.user("Summarise the 02:10 paging incident from the attached logs for the postmortem.")
        .await?;
    a.usage(TokenSource::Root, model, 61_300, 900).await?;
    a.tool(
        "grep_logs",
        r#"{"query":"level=error","since":"02:00"}"#,
        "1,204 matching lines; top: upstream connect error (1,130)",
        true,
    )
    .await?;
    a.usage(TokenSource::Root, model, 118_400, 1_250).await?;
    let trace_id = Uuid::new_v4();
    a.emit(SessionEvent::CompactionStarted {
        trace_id,
        reason: "context above 90% of the window".into(),
        before_tokens: 119_650,
        budget: 64_000,
    })
    .await?;
    a.pause().await;
    a.usage(TokenSource::ToolEmbedded, "gpt-4.1-mini", 119_650, 2_400)
        .await?;
    a.emit(SessionEvent::CompactionCompleted {
        trace_id,
        strategy: "summarize_older_turns".into(),
        before_tokens: 119_650,
        after_tokens: 21_300,
        kept_messages: 6,
    })
    .await?;
    a.usage(TokenSource::Root, model, 22_100, 640).await?;
    a.say("At 02:10 a certificate rotation restarted the ingress pods one zone at a time; upstream connect errors peaked at 02:14 and cleared at 02:31. No data was lost.").await?;
    a.done().await?;
    Ok("completed")
}

async fn research_rlm(a: &mut Agent, _: &mpsc::Sender<Msg>) -> anyhow::Result<&'static str> {
    let (root, small) = ("claude-opus-4", "claude-haiku-4");
    a.start(root, "storage-notes", "Survey write-ahead log designs")
        .await?;
    a.user("Compare how RocksDB, etcd and PostgreSQL recover a torn WAL tail.")
        .await?;
    let trace_id = Uuid::new_v4();
    for iteration in 1..=3u32 {
        a.emit(SessionEvent::RlmProgress {
            trace_id,
            iteration,
            max_iterations: 8,
            status: format!("reading source {iteration} of 3"),
        })
        .await?;
        a.usage(
            TokenSource::RlmIteration,
            root,
            9_000 + 2_000 * u64::from(iteration),
            700,
        )
        .await?;
        a.usage(TokenSource::RlmSubcall, small, 14_000, 1_100)
            .await?;
        a.pause().await;
    }
    a.emit(SessionEvent::RlmSubcallFallback {
        requested_model: small.into(),
        fallback_model: "gpt-4.1-mini".into(),
        reason: "rate limited (429)".into(),
    })
    .await?;
    a.usage(TokenSource::RlmSubcall, "gpt-4.1-mini", 13_500, 950)
        .await?;
    a.emit(SessionEvent::RlmComplete {
        trace_id,
        outcome: logbook_bus::RlmOutcome::Converged,
        iterations: 3,
        subcalls: 4,
        input_tokens: 86_500,
        output_tokens: 6_450,
        elapsed_ms: 41_800,
        reason: None,
        root_model: root.into(),
        subcall_model_used: Some(small.into()),
    })
    .await?;
    a.say("All three cut the tail at the first record that fails its checksum; RocksDB makes it a choice (WALRecoveryMode), etcd repairs only the last segment, PostgreSQL stops replay at the first invalid record.").await?;
    a.done().await?;
    Ok("completed")
}

async fn upgrade_ci(a: &mut Agent, _: &mpsc::Sender<Msg>) -> anyhow::Result<&'static str> {
    let model = "claude-sonnet-4";
    a.start(model, "infra", "Upgrade the CI image").await?;
    a.user("Move CI from debian:bookworm to debian:trixie and make sure the build still passes.")
        .await?;
    a.usage(TokenSource::Root, model, 3_200, 260).await?;
    a.tool(
        "bash",
        r#"{"command":"docker build -f ci/Dockerfile ."}"#,
        "E: Unable to locate package libssl1.1\nerror: build step 3 failed",
        false,
    )
    .await?;
    a.emit(SessionEvent::StreamRetry {
        attempt: 1,
        max_restarts: 2,
        reason: "provider returned 529 overloaded".into(),
    })
    .await?;
    a.pause().await;
    a.emit(SessionEvent::Error(
        "provider returned 529 overloaded after 2 restarts".into(),
    ))
    .await?;
    Ok("failed")
}

async fn refactor_config(a: &mut Agent, tx: &mpsc::Sender<Msg>) -> anyhow::Result<&'static str> {
    let model = "claude-sonnet-4";
    a.start(model, "payments-api", RESUMED_TITLE).await?;
    a.user("Split config.rs into a loader and a validator, and keep every test green.")
        .await?;
    a.think("Read the file first, then move validation into its own module, then run the tests.")
        .await?;
    a.usage(TokenSource::Root, model, 7_400, 520).await?;
    a.tool(
        "read_file",
        r#"{"path":"src/config.rs"}"#,
        "pub struct Config { ... }  // 412 lines",
        true,
    )
    .await?;
    a.usage(TokenSource::Root, model, 12_900, 2_100).await?;
    a.tool(
        "edit_file",
        r#"{"path":"src/config/validate.rs","create":true}"#,
        "created src/config/validate.rs (138 lines); src/config.rs: 151 deletions",
        true,
    )
    .await?;
    a.say("I moved validation into src/config/validate.rs; now running the whole test suite.")
        .await?;
    a.usage(TokenSource::Root, model, 15_200, 90).await?;
    let call = a.next_call("bash");
    a.tool_start(&call, "bash", r#"{"command":"cargo test --workspace"}"#)
        .await?;
    let _ = tx.send(Msg::Midway(
        a.id,
        RESUMED_TITLE,
        "waiting for `cargo test --workspace`".into(),
    ));
    // The test suite takes a while: heartbeats (ephemeral) until killed.
    for elapsed_secs in 1.. {
        tokio::time::sleep(Duration::from_millis(250)).await;
        a.emit(SessionEvent::ToolHeartbeat {
            tool_call_id: call.clone(),
            name: "bash".into(),
            elapsed_secs,
        })
        .await?;
    }
    Ok("completed")
}

async fn migrate_billing(a: &mut Agent, tx: &mpsc::Sender<Msg>) -> anyhow::Result<&'static str> {
    let model = "gpt-4.1";
    a.start(model, "billing", "Migrate the billing tables")
        .await?;
    a.user("Apply the pending billing migrations one by one and check row counts after each.")
        .await?;
    a.usage(TokenSource::Root, model, 5_100, 400).await?;
    // Busy until killed: one migration step after another, each durable.
    for step in 1.. {
        a.tool(
            "sql",
            &format!(r#"{{"migration":"2024_05_{step:03}_billing.sql"}}"#),
            &format!(
                "migration {step} applied; invoices: {} rows",
                120_000 + step * 37
            ),
            true,
        )
        .await?;
        a.usage(TokenSource::Root, model, 6_000 + 150 * step, 120)
            .await?;
        if step == 3 {
            let _ = tx.send(Msg::Midway(
                a.id,
                "Migrate the billing tables",
                "applying migrations, one durable step after another".into(),
            ));
        }
    }
    Ok("completed")
}
