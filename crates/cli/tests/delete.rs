//! `logbook delete` (dry run, then `--apply`), and what `dump` and
//! `sessions` show of deleted records and sessions.

mod common;

use common::logbook;
use logbook_bus::SessionEvent;
use logbook_wal::Wal;
use uuid::Uuid;

fn two_sessions(dir: &std::path::Path) -> (Uuid, Uuid) {
    let wal = Wal::open(dir, common::small_options()).unwrap();
    let (secret, other) = (Uuid::new_v4(), Uuid::new_v4());
    for i in 0..10 {
        wal.append(
            secret,
            &SessionEvent::UserMessage(format!("purple-elephant {i}")),
        )
        .unwrap();
        wal.append(other, &SessionEvent::UserMessage(format!("other {i}")))
            .unwrap();
    }
    wal.close().unwrap();
    (secret, other)
}

fn stdout(args: &[&str]) -> String {
    let out = logbook().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn delete_is_a_dry_run_until_apply_and_then_every_view_hides_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, other) = two_sessions(dir.path());
    let d = dir.path().to_str().unwrap();
    let id = secret.to_string();

    let dry = stdout(&["delete", d, &id]);
    assert!(dry.contains("would delete 10 record(s)"), "{dry}");
    assert!(
        stdout(&["dump", d]).contains("purple-elephant"),
        "a dry run writes nothing"
    );

    let applied = stdout(&["delete", d, &id, "--apply", "--json"]);
    let v: serde_json::Value = serde_json::from_str(applied.trim()).unwrap();
    assert_eq!(v["records"], 10);
    assert_eq!(v["applied"], true);
    assert_eq!(v["tombstone_lsn"], 21);

    let dump = stdout(&["dump", d]);
    assert!(!dump.contains("purple-elephant"), "{dump}");
    assert!(
        dump.contains("session_deleted"),
        "the tombstone shows: {dump}"
    );
    assert!(dump.contains("deletes the whole session"), "{dump}");
    let all = stdout(&["dump", d, "--include-deleted"]);
    assert_eq!(all.matches("purple-elephant").count(), 10);
    assert_eq!(all.matches("[deleted]").count(), 10);
    let json = stdout(&["dump", d, "--include-deleted", "--json"]);
    assert_eq!(json.matches("\"deleted\":true").count(), 10);

    let sessions = stdout(&["sessions", d]);
    assert!(!sessions.contains(&id[..8]), "{sessions}");
    assert!(sessions.contains(&other.to_string()[..8]));
    assert!(sessions.contains("1 deleted session(s)"), "{sessions}");
    let with = stdout(&["sessions", d, "--include-deleted", "--json"]);
    assert!(with.contains("\"deleted\":true"), "{with}");

    let replay = logbook().args(["replay", d, &id]).output().unwrap();
    assert!(!replay.status.success());
    assert!(!String::from_utf8_lossy(&replay.stdout).contains("purple-elephant"));

    let export = stdout(&["export", d]);
    assert!(!export.contains("purple-elephant"));

    // Deleting again: nothing found, nothing changed.
    let again = logbook()
        .args(["delete", d, &id, "--apply"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn delete_after_pops_the_tail_of_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = two_sessions(dir.path());
    let d = dir.path().to_str().unwrap();
    let id = secret.to_string();
    // The secret session's records are the odd LSNs; keep up to LSN 5.
    let out = stdout(&["delete", d, &id, "--after", "5", "--apply"]);
    assert!(out.contains("deleted 7 record(s)"), "{out}");
    let dump = stdout(&["dump", d, "--session", &id]);
    assert_eq!(dump.matches("purple-elephant").count(), 3, "{dump}");
}

/// `delete --after` an LSN past the log's end named no point of the log
/// and was taken as "nothing to delete" (exit 0): like `fork --at` and
/// `replay --at`, it is refused (exit 2), naming the last LSN, with and
/// without `--apply`, and nothing is written.
#[test]
fn delete_after_past_the_end_of_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = two_sessions(dir.path());
    let d = dir.path().to_str().unwrap();
    let id = secret.to_string();
    let before = stdout(&["dump", d, "--include-deleted"]);
    for after in ["100000", "18446744073709551615"] {
        for apply in [false, true] {
            let mut args = vec!["delete", d, &id, "--after", after];
            if apply {
                args.push("--apply");
            }
            let out = logbook().args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains("past the end of the log"), "{stderr}");
            assert!(stderr.contains("LSN 20"), "{stderr}");
        }
    }
    assert_eq!(stdout(&["dump", d, "--include-deleted"]), before);
    // In the library too.
    let wal = Wal::open(dir.path(), common::small_options()).unwrap();
    match logbook_replay::delete_after(&wal, secret, 21) {
        Err(logbook_replay::ReplayError::PastEnd { lsn: 21, last: 20 }) => {}
        other => panic!("{other:?}"),
    }
    match logbook_replay::plan_delete(dir.path(), secret, &logbook_replay::Selection::After(21)) {
        Err(logbook_replay::ReplayError::PastEnd { lsn: 21, last: 20 }) => {}
        other => panic!("{other:?}"),
    }
    // The last LSN itself is a point of the log: nothing after it.
    assert!(
        logbook_replay::delete_after(&wal, secret, 20)
            .unwrap()
            .lsns
            .is_empty()
    );
    wal.close().unwrap();
}

#[test]
fn retain_is_a_dry_run_until_apply_and_sessions_hides_truncated_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = two_sessions(dir.path());
    let wal = Wal::open(dir.path(), common::small_options()).unwrap();
    for i in 0..200 {
        wal.append(
            Uuid::new_v4(),
            &SessionEvent::UserMessage(format!("filler {i}")),
        )
        .unwrap();
    }
    wal.close().unwrap();
    let d = dir.path().to_str().unwrap();
    let dry = stdout(&["retain", d, "--before", "100"]);
    assert!(dry.contains("would remove"), "{dry}");
    assert!(dry.contains("run again with --apply"), "{dry}");
    assert!(stdout(&["dump", d]).contains("purple-elephant 0"));
    let applied = stdout(&["retain", d, "--before", "100", "--apply", "--json"]);
    let v: serde_json::Value = serde_json::from_str(applied.trim()).unwrap();
    assert_eq!(v["applied"], true);
    assert!(v["keep_from"].as_u64().unwrap() > 1);
    assert!(!stdout(&["dump", d]).contains("purple-elephant 0"));
    // No session began with a SessionStarted: every one left shows as
    // truncated.
    let sessions = stdout(&["sessions", d]);
    assert!(sessions.contains("truncated by retention"), "{sessions}");
    assert!(!sessions.contains("filler"), "{sessions}");
    let all = stdout(&["sessions", d, "--include-truncated", "--json"]);
    assert!(!all.contains(&secret.to_string()), "removed whole");
    assert!(all.contains("\"truncated\":true"));
    let bad = logbook().args(["retain", d]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .map(|p| p.display().to_string())
        .collect()
}

/// The erasure proof through the command line: delete, see the
/// reclaimable bytes, compact (dry run, then --apply), and no file of the
/// log holds the phrase; the other session is intact and verify passes.
#[test]
fn delete_then_compact_erases_the_session_from_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, other) = two_sessions(dir.path());
    let d = dir.path().to_str().unwrap();
    let before_other = stdout(&["replay", d, &other.to_string()]);
    // Summaries that hold the session's title.
    stdout(&["sessions", d]);
    stdout(&["delete", d, &secret.to_string(), "--apply"]);
    assert!(!files_holding(dir.path(), b"purple-elephant").is_empty());
    let stats = stdout(&["stats", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
    // All in the active segment: compact --apply seals it first.
    assert_eq!(v["reclaimable"]["in_active_segment"], 10, "{stats}");
    let dry = stdout(&["compact", d]);
    assert!(dry.contains("--apply seals it first"), "{dry}");
    assert!(!files_holding(dir.path(), b"purple-elephant").is_empty());
    let done = stdout(&["compact", d, "--apply", "--json"]);
    let v: serde_json::Value = serde_json::from_str(done.trim()).unwrap();
    assert_eq!(v["erased"], 10, "{done}");
    assert_eq!(v["in_active_segment"], 0, "{done}");
    assert_eq!(
        files_holding(dir.path(), b"purple-elephant"),
        Vec::<String>::new()
    );
    assert!(!files_holding(dir.path(), b"other 3").is_empty());
    assert_eq!(stdout(&["replay", d, &other.to_string()]), before_other);
    stdout(&["verify", d]);
    let dump = stdout(&["dump", d, "--include-deleted"]);
    assert!(!dump.contains("purple-elephant"));
    assert!(stdout(&["compact", d, "--apply"]).contains("nothing to erase"));
}
