//! End to end: a child process runs sessions through `SessionBus` +
//! `WalSink` and is killed with `SIGKILL` in the middle of them; replay
//! must report exactly the unfinished sessions as interrupted, with the
//! tool call that was running as pending; then one is resumed, finished
//! and replayed again.
//!
//! The child is this test binary itself, re-executed with
//! [`CHILD_ENV`] set and asked to run only [`TEST_NAME`], whose first lines
//! take the child's branch.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use logbook_bus::{SessionBus, SessionEvent, TokenDelta, TokenSource};
use logbook_replay::{
    ReplayError, Role, SessionStatus, interrupted, list_sessions, resume, session_state,
};
use logbook_wal::{Wal, WalOptions, is_locked};
use uuid::Uuid;

/// Set (to the log directory) in the child's environment.
const CHILD_ENV: &str = "LOGBOOK_REPLAY_CHILD";
/// The name of the test below: the child runs only it.
const TEST_NAME: &str = "sigkill_mid_session_then_resume";
/// What the child prints once the sessions are where the parent expects.
const READY: &str = "LOGBOOK-CHILD-READY";
/// How long the parent waits for it.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the child keeps going if nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// Sessions that finish with `Done` before the crash.
const FINISHED: [u128; 2] = [0x1, 0x2];
/// Sessions cut off with a tool call running.
const UNFINISHED: [u128; 2] = [0x3, 0x4];
/// A session that keeps appending durable events until the kill.
const BUSY: u128 = 0x5;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x10_0000 + n)
}

fn tool_call_id(n: u128) -> String {
    format!("call-{n}")
}

fn prompt(n: u128) -> String {
    format!("session {n}: list the files")
}

fn usage(prompt_tokens: u64) -> SessionEvent {
    SessionEvent::TokenUsage(TokenDelta {
        source: TokenSource::Root,
        model: "m".into(),
        prompt_tokens,
        completion_tokens: 7,
        duration_ms: 1,
    })
}

fn tool_done(n: u128) -> SessionEvent {
    SessionEvent::ToolCallComplete {
        tool_call_id: tool_call_id(n),
        name: "ls".into(),
        output: "a.txt b.txt".into(),
        success: true,
        duration_ms: 3,
    }
}

/// The child: run the sessions, say READY, keep going until killed.
fn child(dir: &Path) {
    let wal = Wal::open(dir, WalOptions::default()).expect("child: open the log");
    let bus = |n: u128| SessionBus::new(64).with_durable_sink(Arc::new(wal.sink(id(n))));
    let sessions: Vec<(u128, SessionBus)> = FINISHED
        .iter()
        .chain(&UNFINISHED)
        .chain([&BUSY])
        .map(|&n| (n, bus(n)))
        .collect();
    // `try_emit` returns once the record is fsynced (the default policy):
    // everything emitted before READY is durable.
    let emit = |bus: &SessionBus, e: SessionEvent| bus.try_emit(e).expect("child: emit");
    // Interleave the sessions, step by step.
    for (n, bus) in &sessions {
        emit(
            bus,
            SessionEvent::SessionStarted {
                model: "m".into(),
                cwd: "/w".into(),
                title: Some(format!("session {n}")),
            },
        );
    }
    for (n, bus) in &sessions {
        emit(bus, SessionEvent::UserMessage(prompt(*n)));
        emit(bus, SessionEvent::Thinking);
    }
    for (n, bus) in &sessions {
        emit(
            bus,
            SessionEvent::ToolCallStart {
                tool_call_id: tool_call_id(*n),
                name: "ls".into(),
                arguments: "{\"path\":\".\"}".into(),
            },
        );
        emit(bus, usage(100));
    }
    for (n, bus) in sessions.iter().filter(|(n, _)| FINISHED.contains(n)) {
        emit(bus, tool_done(*n));
        emit(
            bus,
            SessionEvent::TextComplete(format!("session {n}: done")),
        );
        emit(bus, SessionEvent::Done);
    }
    println!("{READY}");
    std::io::stdout().flush().expect("child: flush stdout");

    // Keep working until the parent's SIGKILL lands, mid-write or not.
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < CHILD_LIFETIME {
        for (n, bus) in &sessions {
            if UNFINISHED.contains(n) {
                bus.emit(SessionEvent::ToolHeartbeat {
                    tool_call_id: tool_call_id(*n),
                    name: "ls".into(),
                    elapsed_secs: i,
                });
            } else if *n == BUSY {
                emit(bus, usage(i));
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path) -> (KillOnDrop, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), rx)
}

fn wait_ready(child: &mut KillOnDrop, lines: &mpsc::Receiver<String>) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(READY) => return,
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.0.kill();
                panic!(
                    "the child printed no {READY} within {READY_TIMEOUT:?}; its output: {seen:#?}"
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.0.wait();
                panic!("the child exited ({status:?}) before {READY}; its output: {seen:#?}");
            }
        }
    }
}

fn ids(sessions: &[u128]) -> BTreeSet<Uuid> {
    sessions.iter().map(|&n| id(n)).collect()
}

#[test]
fn sigkill_mid_session_then_resume() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_child(dir.path());
    wait_ready(&mut child, &lines);

    // The child is alive (it runs until killed): its sessions are running.
    assert!(is_locked(dir.path()).unwrap());
    assert!(interrupted(dir.path()).unwrap().is_empty());

    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the child was killed: {status:?}");
    assert!(!is_locked(dir.path()).unwrap());

    // Exactly the unfinished sessions are interrupted.
    let cut_off = interrupted(dir.path()).unwrap();
    let got: BTreeSet<Uuid> = cut_off.iter().map(|s| s.session).collect();
    let mut want = ids(&UNFINISHED);
    want.insert(id(BUSY));
    assert_eq!(got, want);
    let before = list_sessions(dir.path()).unwrap();
    for n in FINISHED {
        assert_eq!(
            before.session(id(n)).unwrap().status,
            SessionStatus::Completed
        );
        assert!(
            session_state(dir.path(), id(n))
                .unwrap()
                .pending_tool_calls()
                .is_empty()
        );
    }
    // …with the tool call that was running pending.
    for n in UNFINISHED.into_iter().chain([BUSY]) {
        let state = session_state(dir.path(), id(n)).unwrap();
        let pending: Vec<_> = state
            .pending_tool_calls()
            .iter()
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(pending, [tool_call_id(n)], "session {n}");
        assert_eq!(state.status_given(false), SessionStatus::Interrupted);
    }

    // Resume one of them in a new writer, and finish it.
    let [resumed_n, untouched_n] = UNFINISHED;
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // Before a writer recovered the log, a reader returned what the
    // watermark and the sync marks vouch for (it never fsyncs): a lower
    // bound of what recovery kept, which readers return now.
    let recovered = list_sessions(dir.path()).unwrap();
    for s in &before.sessions {
        let r = recovered.session(s.session).unwrap();
        assert_eq!(r.first_lsn, s.first_lsn);
        assert!(
            r.last_lsn >= s.last_lsn && r.events >= s.events,
            "{s:?} {r:?}"
        );
    }
    let resumed = resume(&wal, id(resumed_n)).unwrap();
    let on_disk = session_state(dir.path(), id(resumed_n)).unwrap();
    assert_eq!(
        resumed.last_lsn,
        recovered.session(id(resumed_n)).unwrap().last_lsn
    );
    assert_eq!(on_disk.resumptions().len(), 1);
    assert_eq!(on_disk.resumptions()[0].from_lsn, resumed.last_lsn);
    let pending: Vec<_> = resumed
        .pending_tool_calls
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(pending, [tool_call_id(resumed_n)]);
    assert_eq!(
        resumed
            .transcript
            .iter()
            .map(|t| (t.role, t.text.clone()))
            .collect::<Vec<_>>(),
        [(Role::User, prompt(resumed_n))]
    );
    // While this writer is live, nobody counts as interrupted.
    assert_eq!(
        list_sessions(dir.path())
            .unwrap()
            .session(id(untouched_n))
            .unwrap()
            .status,
        SessionStatus::Running
    );
    let bus = SessionBus::new(64).with_durable_sink(Arc::new(resumed.sink));
    for e in [
        tool_done(resumed_n),
        SessionEvent::TextComplete("resumed and done".into()),
        SessionEvent::Done,
    ] {
        bus.try_emit(e).unwrap();
    }
    drop(bus);
    wal.close().unwrap();

    // Replay again: the resumed session is one completed session…
    let after = list_sessions(dir.path()).unwrap();
    let summary = after.session(id(resumed_n)).unwrap();
    assert_eq!(summary.status, SessionStatus::Completed);
    assert_eq!(summary.resumptions, 1);
    let state = session_state(dir.path(), id(resumed_n)).unwrap();
    assert_eq!(state.resumptions().len(), 1);
    assert_eq!(state.resumptions()[0].lsn, resumed.resumed_lsn);
    assert_eq!(state.resumptions()[0].from_lsn, resumed.last_lsn);
    assert!(state.pending_tool_calls().is_empty());
    let call = state.tool_call(&tool_call_id(resumed_n)).unwrap();
    assert!(call.completion.as_ref().unwrap().success);
    assert_eq!(
        state.transcript().last().unwrap().text,
        "resumed and done".to_owned()
    );
    assert_eq!(state.first_lsn(), Some(summary.first_lsn));

    // …and every other session is as recovery left it (running while that
    // writer was live, as it was before the crash now that it is gone).
    for s in &recovered.sessions {
        if s.session != id(resumed_n) {
            let mut was = s.clone();
            was.status = before.session(s.session).unwrap().status.clone();
            assert_eq!(after.session(s.session), Some(&was));
        }
    }
    let still: BTreeSet<Uuid> = interrupted(dir.path())
        .unwrap()
        .iter()
        .map(|s| s.session)
        .collect();
    assert_eq!(still, BTreeSet::from([id(untouched_n), id(BUSY)]));
}

/// The runtime's startup path, in the order it needs it: open the log
/// (taking the writer lock), ask which sessions a crash left unfinished
/// *before* this writer opened it, resume all of them in one pass, serve.
/// A fresh directory is the plain first-start case.
#[test]
fn startup_path_finds_and_resumes_every_interrupted_session_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(
        logbook_replay::interrupted_at_open(&first)
            .unwrap()
            .is_empty()
    );
    let (done, cut1, cut2) = (id(1), id(2), id(3));
    first
        .append(done, &SessionEvent::UserMessage("a".into()))
        .unwrap();
    first
        .append(cut1, &SessionEvent::UserMessage("b".into()))
        .unwrap();
    first.append(done, &SessionEvent::Done).unwrap();
    first
        .append(cut2, &SessionEvent::UserMessage("c".into()))
        .unwrap();
    drop(first); // as if the process died: nothing terminal for cut1, cut2

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // The lock is ours now: the plain listing calls nothing interrupted…
    assert!(interrupted(dir.path()).unwrap().is_empty());
    // …the startup question still answers.
    let cut: Vec<Uuid> = logbook_replay::interrupted_at_open(&wal)
        .unwrap()
        .iter()
        .map(|s| s.session)
        .collect();
    assert_eq!(cut, [cut1, cut2]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let resumed = rt
        .block_on(logbook_replay::resume_many_async(&wal, &cut))
        .unwrap();
    assert_eq!(
        wal.stats().fsyncs,
        1,
        "one group commit for every SessionResumed"
    );
    assert_eq!(
        resumed
            .iter()
            .map(|r| (r.last_lsn, r.resumed_lsn))
            .collect::<Vec<_>>(),
        [(2, 5), (4, 6)]
    );
    // Still the answer after this writer appended: it is about the open.
    assert_eq!(logbook_replay::interrupted_at_open(&wal).unwrap().len(), 2);
    for r in &resumed {
        assert_eq!(
            r.state,
            session_state(dir.path(), r.state.session_id()).unwrap(),
            "the returned state is what a replay rebuilds"
        );
    }
    // A completed session is refused, nothing appended.
    let err = logbook_replay::resume_many(&wal, &[cut1, done]).unwrap_err();
    assert!(matches!(err, ReplayError::AlreadyCompleted { .. }), "{err}");
    assert_eq!(wal.last_lsn(), 6);
}
