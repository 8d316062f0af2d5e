//! Issue 23: "A session whose beginning was retained away is marked as
//! truncated in listings and replay, never passed off as complete." Each
//! test carries a truncated session somewhere its log's start no longer
//! says so (another log, an export, a fork of a fork, the stream) and
//! checks that every view still marks it truncated.

mod common;
#[path = "../../fleet/tests/common/mod.rs"]
mod nats;

use std::path::Path;

use common::{json_lines, logbook, texts};
use logbook_bus::SessionEvent;
use logbook_wal::Wal;
use serde_json::Value;
use uuid::Uuid;

/// A log in `dir` whose session (returned) began at LSN 1 and lost its
/// beginning to `retain --before 40 --apply`; the other sessions are one
/// record each.
fn truncated_log(dir: &Path) -> Uuid {
    let s = Uuid::new_v4();
    {
        let wal = Wal::open(dir, common::small_options()).unwrap();
        for i in 0..60 {
            wal.append(s, &common::event(i, 60, false)).unwrap();
            wal.append(
                Uuid::new_v4(),
                &SessionEvent::UserMessage(format!("filler {i} {}", "x".repeat(80))),
            )
            .unwrap();
        }
        wal.close().unwrap();
    }
    let out = logbook()
        .arg("retain")
        .arg(dir)
        .args(["--before", "40", "--apply"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    s
}

fn ok(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    stdout
}

/// `sessions --json` (every session) line of `id` in `source`, and
/// whether the listing without `--include-truncated` shows it.
fn listed(source: &str, id: Uuid) -> (Value, bool) {
    let all = ok(logbook().args(["sessions", source, "--include-truncated", "--json"]));
    let line = json_lines(&all)
        .into_iter()
        .find(|l| l["session"] == id.to_string())
        .unwrap_or_else(|| panic!("{id} not listed:\n{all}"));
    let shown = ok(logbook().args(["sessions", source, "--json"]));
    (line, shown.contains(&id.to_string()))
}

/// What `replay` says of `id` in `source`: its text and its JSON.
fn replayed(source: &str, id: Uuid) -> (String, Value) {
    let id = id.to_string();
    let text = ok(logbook().args(["replay", source, &id]));
    let json = ok(logbook().args(["replay", source, &id, "--json"]));
    (text, json_lines(&json).remove(0))
}

/// Every view of `id` in `source` says it is truncated.
fn assert_marked_truncated(source: &str, id: Uuid, what: &str) {
    let (line, shown) = listed(source, id);
    let (text, json) = replayed(source, id);
    assert!(
        line["truncated"] == true
            && !shown
            && text.contains("truncated:")
            && json["truncated"] == true,
        "{what}: passed off as whole: sessions --json {line}, shown without \
         --include-truncated: {shown}, replay --json truncated: {}\n{text}",
        json["truncated"]
    );
}

/// An export of a session whose beginning was retained away, imported
/// into a new log (which starts at LSN 1), was listed and replayed there
/// as a whole session: the mark was the source log's start, which the
/// export did not carry.
#[test]
fn an_export_of_a_truncated_session_imported_into_a_new_log_is_still_truncated() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let s = truncated_log(&a);
    let a_str = a.to_str().unwrap();
    assert_marked_truncated(a_str, s, "in its own log");
    let exported = ok(logbook().args(["export", a_str, "--session", &s.to_string()]));
    let file = root.path().join("s.jsonl");
    std::fs::write(&file, &exported).unwrap();
    ok(logbook().arg("import").arg("--create").arg(&b).arg(&file));
    assert_marked_truncated(b.to_str().unwrap(), s, "imported into a new log");
    // As of a point of its history too.
    let b_str = b.to_str().unwrap();
    let at = ok(logbook().args(["replay", b_str, &s.to_string(), "--at", "3", "--json"]));
    let at = json_lines(&at).remove(0);
    assert_eq!(
        (at["last_lsn"].as_u64(), &at["truncated"]),
        (Some(3), &Value::Bool(true)),
        "{at}"
    );
    // The export says so: its first line for the session is the mark.
    let first = json_lines(&exported).remove(0);
    assert_eq!(first["kind"], "session_truncated", "{first}");
    // And an export of the imported copy says so again, once.
    let again = ok(logbook().arg("export").arg(&b));
    let marks = json_lines(&again)
        .iter()
        .filter(|l| l["kind"] == "session_truncated")
        .count();
    assert_eq!(marks, 1, "{again}");
}

/// A fork of a truncated session is written copy first, `SessionForked`
/// after (so it is truncated too); a fork of that fork then copies the
/// first fork's `SessionForked` before its own, and its origin (the first
/// `SessionForked`) named the original, not the fork it was taken from.
#[test]
fn a_fork_of_a_fork_of_a_truncated_session_names_the_fork_it_came_from() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let s = truncated_log(&a);
    let a_str = a.to_str().unwrap();
    let fork = |of: Uuid| -> Uuid {
        let at = replayed(a_str, of).1["last_lsn"].to_string();
        let out = ok(logbook().args(["fork", a_str, &of.to_string(), "--at", &at, "--json"]));
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["truncated"], true, "{v}");
        Uuid::parse_str(v["session"].as_str().unwrap()).unwrap()
    };
    let first = fork(s);
    let second = fork(first);
    assert_marked_truncated(a_str, second, "a fork of a fork");
    let (line, _) = listed(a_str, second);
    let (_, json) = replayed(a_str, second);
    assert_eq!(
        (
            line["forked_from"]["session"].as_str(),
            json["forked_from"]["session"].as_str()
        ),
        (
            Some(first.to_string().as_str()),
            Some(first.to_string().as_str())
        ),
        "sessions: {line}\nreplay: {json}"
    );
}

/// The stream holds a log from LSN 1 whatever was retained locally since,
/// so its readers cannot take truncation from a log's start: a fork of a
/// truncated session, shipped, was listed and replayed from the stream as
/// whole, and a pull of it into a new log was whole there too.
#[test]
fn a_truncated_fork_read_or_pulled_from_the_stream_is_still_truncated() {
    let Some(bin) = nats::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = nats::Server::single(&bin, root.path());
    let url = server.url();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    // Shipped whole, then retained locally, then forked and shipped again.
    let s = Uuid::new_v4();
    {
        let wal = Wal::open(&a, common::small_options()).unwrap();
        for i in 0..60 {
            wal.append(s, &common::event(i, 60, false)).unwrap();
            wal.append(
                Uuid::new_v4(),
                &SessionEvent::UserMessage(format!("filler {i} {}", "x".repeat(80))),
            )
            .unwrap();
        }
        wal.close().unwrap();
    }
    let a_str = a.to_str().unwrap();
    ok(logbook().args(["ship", a_str, "--to", &url]));
    ok(logbook().args(["retain", a_str, "--before", "40", "--apply"]));
    let out = ok(logbook().args(["fork", a_str, &s.to_string(), "--at", "119", "--json"]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["truncated"], true, "{v}");
    let f = Uuid::parse_str(v["session"].as_str().unwrap()).unwrap();
    ok(logbook().args(["ship", a_str, "--to", &url]));
    assert_marked_truncated(&url, f, "a truncated fork read from the stream");
    // Pulled into a new log.
    ok(logbook()
        .arg("resume")
        .arg(&b)
        .args([&f.to_string(), "--from", &url]));
    assert_marked_truncated(b.to_str().unwrap(), f, "a truncated fork pulled");
}
