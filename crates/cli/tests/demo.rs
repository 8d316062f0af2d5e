//! `logbook demo`, end to end, as a user runs it.

mod common;

use common::*;
use serde_json::Value;

fn sessions_json(dir: &std::path::Path) -> Vec<Value> {
    let out = logbook()
        .arg("sessions")
        .arg(dir)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    json_lines(&texts(&out).0)
}

#[test]
fn the_demo_crashes_recovers_resumes_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logbook-demo"); // missing: the demo creates it
    let out = logbook().arg("demo").arg(&dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // The child ran the sessions and was killed mid-way.
    assert!(stdout.contains("in child process"), "{stdout}");
    let lines = |prefix: &str| stdout.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(lines("  started   "), 6, "{stdout}");
    assert_eq!(lines("  mid-way   "), 2, "{stdout}");
    assert!(stdout.contains("Killed the child with SIGKILL while 2 sessions were mid-way (killed by signal 9, SIGKILL"), "{stdout}");
    // Recovery, then the sessions table with the interrupted ones.
    assert!(
        stdout.contains("== 3. Reopen the log: recovery"),
        "{stdout}"
    );
    assert!(stdout.contains("the log continues at LSN"), "{stdout}");
    let table = stdout
        .split("== 4.")
        .nth(1)
        .and_then(|s| s.split("== 5.").next())
        .unwrap();
    assert_eq!(table.matches(" interrupted ").count(), 2, "{table}");
    assert_eq!(table.matches(" completed ").count(), 3, "{table}");
    assert_eq!(table.matches(" failed ").count(), 1, "{table}");
    assert!(
        table.contains("6 session(s), 3 completed, 1 failed, 2 interrupted"),
        "{table}"
    );
    // The replayed state shows the pending tool call.
    let replay = stdout.split("== 5.").nth(1).unwrap();
    assert!(replay.contains("status:  interrupted"), "{replay}");
    assert!(replay.contains("PENDING"), "{replay}");
    assert!(
        replay.contains("1 pending: started and never completed"),
        "{replay}"
    );
    // Resumed and finished.
    assert!(
        stdout.contains("appended SessionResumed at LSN"),
        "{stdout}"
    );
    assert!(
        stdout.contains("re-ran the pending tool call bash"),
        "{stdout}"
    );
    assert!(stdout.contains("is now completed"), "{stdout}");
    // Verified, and what to try next.
    assert!(stdout.contains("== 7. logbook verify"), "{stdout}");
    assert!(stdout.contains("OK: "), "{stdout}");
    assert!(stdout.contains("no problems"), "{stdout}");
    assert!(
        stdout.contains(&format!("logbook sessions {}", dir.display())),
        "{stdout}"
    );

    // The log is left for the user, and says the same.
    let sessions = sessions_json(&dir);
    assert_eq!(sessions.len(), 6);
    let resumed: Vec<&Value> = sessions.iter().filter(|s| s["resumptions"] == 1).collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0]["status"], "completed");
    let status = |name: &str| sessions.iter().filter(|s| s["status"] == name).count();
    assert_eq!(
        (status("completed"), status("failed"), status("interrupted")),
        (4, 1, 1)
    );
    let id = resumed[0]["session"].as_str().unwrap();
    let out = logbook()
        .arg("replay")
        .arg(&dir)
        .arg(&id[..8])
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let state: Value = serde_json::from_str(texts(&out).0.trim()).unwrap();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["pending_tool_calls"].as_array().unwrap().len(), 0);
    assert_eq!(state["resumptions"].as_array().unwrap().len(), 1);
    assert!(segments(&dir).len() >= 2, "the demo's log spans segments");

    // A second run starts afresh on the demo's own log.
    let out = logbook().arg("demo").arg(&dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Removed the previous demo log"), "{stdout}");
    assert_eq!(sessions_json(&dir).len(), 6);
}

#[test]
fn the_demo_refuses_a_directory_it_does_not_own() {
    let tmp = tempfile::tempdir().unwrap();
    // Someone else's log.
    write_log(tmp.path(), 1, 5);
    let out = logbook().arg("demo").arg(tmp.path()).output().unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("did not write: refusing to remove it"),
        "{stderr}"
    );
    assert_eq!(segments(tmp.path()).len(), 1, "nothing removed");
    // A foreign file.
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = logbook().arg("demo").arg(tmp.path()).output().unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("holds notes.txt, which is not part of a logbook log"),
        "{stderr}"
    );
    assert!(tmp.path().join("notes.txt").exists());
}

#[test]
fn help_has_examples() {
    for command in [
        "dump", "verify", "stats", "sessions", "replay", "repair", "demo",
    ] {
        let out = logbook().arg(command).arg("--help").output().unwrap();
        let (stdout, _) = texts(&out);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout.contains("Examples:"), "{command}: {stdout}");
        assert!(
            stdout.contains(&format!("logbook {command} ")),
            "{command}: {stdout}"
        );
    }
    let out = logbook().arg("--help").output().unwrap();
    let (stdout, _) = texts(&out);
    assert!(
        stdout.contains("Exit status: 0 ok, 1 a problem found in the log, 2 a usage or I/O error")
    );
    assert!(!stdout.contains("demo-child"), "the child is hidden");
    let out = logbook().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no subcommand is a usage error");
}

/// `logbook demo DIR | head -1`: the demo does all its work regardless of
/// stdout (it stops printing, not working): the log it leaves is the whole
/// demo's, resumed and verified, and the exit status says so.
#[test]
fn the_demo_into_a_closed_pipe_finishes_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logbook-demo");
    let run = head_one(&["demo".as_ref(), dir.as_os_str()]);
    assert!(!run.first.is_empty());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let sessions = sessions_json(&dir);
    assert_eq!(sessions.len(), 6);
    let status = |name: &str| sessions.iter().filter(|s| s["status"] == name).count();
    assert_eq!(
        (status("completed"), status("failed"), status("interrupted")),
        (4, 1, 1)
    );
    assert_eq!(
        sessions.iter().filter(|s| s["resumptions"] == 1).count(),
        1,
        "the demo resumed a session"
    );
    let out = logbook().arg("verify").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
}

/// `logbook demo --key-file K` (and `LOGBOOK_KEY`) writes an encrypted demo
/// log: every segment is sealed with that key's id, `sessions` reads it
/// with the key and refuses it without.
#[test]
fn the_demo_honours_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("demo.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let key_id = logbook_wal::Key::from_file(&key).unwrap().id();
    let check = |dir: &std::path::Path| {
        let all = segments(dir);
        assert!(!all.is_empty());
        for segment in &all {
            let header = logbook_wal::segment_header(segment).unwrap();
            assert_eq!(
                header.key_id,
                Some(key_id),
                "{} is not sealed with the demo's key",
                segment.display()
            );
            let bytes = std::fs::read(segment).unwrap();
            assert!(
                !bytes.windows(15).any(|w| w == b"Split config.rs"),
                "{} holds the demo's text in the clear",
                segment.display()
            );
        }
        let out = logbook()
            .arg("sessions")
            .arg(dir)
            .arg("--json")
            .arg("--key-file")
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
        assert_eq!(json_lines(&texts(&out).0).len(), 6);
        let out = logbook().arg("sessions").arg(dir).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{:?}", texts(&out));
    };
    let dir = tmp.path().join("with-key-file");
    let out = logbook()
        .arg("demo")
        .arg(&dir)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    check(&dir);
    assert!(stdout.contains("encrypted with key"), "{stdout}");
    let dir = tmp.path().join("with-env");
    let out = logbook()
        .arg("demo")
        .arg(&dir)
        .env("LOGBOOK_KEY", "5a".repeat(32))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    check(&dir);
}
