//! Review 23: an outside attack on deletion, retention and erasure
//! (issue 23) through the command line. Each test is one reproduction of
//! a defect: it fails on the code it was written against.

mod common;

use common::logbook;
use logbook_bus::SessionEvent;
use logbook_wal::Wal;
use uuid::Uuid;

/// Issue 23: "A session whose beginning was retained away is marked as
/// truncated in listings and replay, never passed off as complete."
/// `sessions --include-truncated` marks it; `replay SESSION` does not: the
/// text says `status: completed` and nothing about truncation, and
/// `--json` has no `truncated` field (`cmd/replay.rs` never reads
/// `SessionState::truncated`).
#[test]
fn replay_of_a_session_cut_short_by_retention_does_not_say_it_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = Uuid::new_v4();
    {
        let wal = Wal::open(dir.path(), common::small_options()).unwrap();
        for i in 0..60 {
            wal.append(s, &common::event(i, 60, true)).unwrap();
            wal.append(
                Uuid::new_v4(),
                &SessionEvent::UserMessage(format!("filler {i} {}", "x".repeat(80))),
            )
            .unwrap();
        }
        wal.close().unwrap();
    }
    let out = logbook()
        .args(["retain", d, "--before", "40", "--apply"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = s.to_string();
    // The listing marks it.
    let listed = logbook()
        .args(["sessions", d, "--include-truncated", "--json"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let line = listed
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("\"truncated\":true"), "{line}");
    // The replay must say so too.
    let text = logbook().args(["replay", d, &id]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let json = logbook()
        .args(["replay", d, &id, "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        text.contains("truncated") && json["truncated"] == true,
        "replay passes a session cut short by retention off as whole:\n{text}\njson truncated: {}, status: {}",
        json["truncated"],
        json["status"]
    );
}

/// `logbook compact DIR` (the dry run) on an encrypted log, without its
/// key or with a wrong one, answers "nothing to erase (nothing changed)"
/// and exits 0, although a tombstone deletes a session there (with the
/// key it says so). An operator checking whether an erasure is due is told
/// it is not. `compact.rs` `gather` reads the log with no key and passes
/// over every record it cannot open (their payloads are sealed, so
/// `listed_ranges` finds no tombstone) instead of refusing, as `stats` and
/// `compact --apply` do.
#[test]
fn compact_dry_run_without_the_key_says_nothing_to_erase() {
    let tmp = tempfile::tempdir().unwrap();
    let (clear, enc) = (tmp.path().join("clear"), tmp.path().join("enc"));
    let (key, wrong) = (tmp.path().join("key"), tmp.path().join("wrong"));
    std::fs::write(&key, format!("{}\n", "11".repeat(32))).unwrap();
    std::fs::write(&wrong, format!("{}\n", "22".repeat(32))).unwrap();
    let written = common::write_log(&clear, 2, 8);
    let exported = logbook().arg("export").arg(&clear).output().unwrap();
    let file = tmp.path().join("all.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let out = logbook()
        .arg("import")
        .arg("--create")
        .arg(&enc)
        .arg(&file)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = written.sessions[0].to_string();
    let out = logbook()
        .arg("delete")
        .arg(&enc)
        .arg(&id)
        .arg("--apply")
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let with_key = logbook()
        .arg("compact")
        .arg(&enc)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    let with_key = String::from_utf8_lossy(&with_key.stdout).into_owned();
    assert!(!with_key.contains("nothing to erase"), "{with_key}");
    for keys in [
        vec![],
        vec!["--key-file".to_owned(), wrong.display().to_string()],
    ] {
        let out = logbook()
            .arg("compact")
            .arg(&enc)
            .args(&keys)
            .env_remove("LOGBOOK_KEY")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !(out.status.success() && stdout.contains("nothing to erase")),
            "{keys:?}: `compact` says {stdout:?} (exit 0); with the key: {with_key:?}"
        );
    }
}
