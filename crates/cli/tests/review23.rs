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
    let json = logbook().args(["replay", d, &id, "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        text.contains("truncated") && json["truncated"] == true,
        "replay passes a session cut short by retention off as whole:\n{text}\njson truncated: {}, status: {}",
        json["truncated"],
        json["status"]
    );
}
