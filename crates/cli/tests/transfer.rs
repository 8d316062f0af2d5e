//! LSNs and times on the command line, forks past the end, and `import`
//! into logs that already hold records: references remapped, duplicates
//! and mistyped directories refused, dry runs, segment sizes.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use uuid::Uuid;

fn run(args: &[&str], dir: &Path, rest: &[&str]) -> (Option<i32>, String, String) {
    let out = logbook().args(args).arg(dir).args(rest).output().unwrap();
    let (stdout, stderr) = texts(&out);
    (out.status.code(), stdout, stderr)
}

/// Each segment's name, length and a hash of its bytes (short to print).
fn segment_bytes(dir: &Path) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    segments(dir)
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                bytes.len(),
                h.finish(),
            )
        })
        .collect()
}

fn export_to(dir: &Path, file: &Path, rest: &[&str]) {
    let (code, stdout, stderr) = run(&["export"], dir, rest);
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::write(file, stdout).unwrap();
}

fn sessions_json(dir: &Path) -> Vec<Value> {
    let (code, stdout, stderr) = run(&["sessions", "--json"], dir, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    json_lines(&stdout)
}

fn replay_json(dir: &Path, id: &str, rest: &[&str]) -> Value {
    let (code, stdout, stderr) = run(&["replay", "--json"], dir, &[&[id], rest].concat());
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

fn transcript(state: &Value) -> Vec<String> {
    state["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect()
}

/// A log of two sessions (s0 completed: LSNs 1, 3, .. 11; s1 not: 2, 4,
/// .. 12), a fork of s0 at LSN 5 (LSNs 13..=16) and a resumption of s1
/// (`SessionResumed { from_lsn: 12 }` at LSN 17).
fn forked_and_resumed(dir: &Path) -> (Uuid, Uuid, Uuid) {
    let w = write_log(dir, 2, 6);
    let (s0, s1) = (w.sessions[0], w.sessions[1]);
    let (code, stdout, stderr) = run(&["fork", "--json"], dir, &[&s0.to_string(), "--at", "5"]);
    assert_eq!(code, Some(0), "{stderr}");
    let forked: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(forked["forked_lsn"], 13);
    let fork = Uuid::parse_str(forked["session"].as_str().unwrap()).unwrap();
    let wal = logbook_wal::Wal::open(dir, small_options()).unwrap();
    let resumed = logbook_replay::resume(&wal, s1).unwrap();
    assert_eq!((resumed.last_lsn, resumed.resumed_lsn), (12, 17));
    drop(resumed);
    wal.close().unwrap();
    (s0, s1, fork)
}

/// Bug: an import into a log that already holds records kept the
/// source's LSNs in `SessionForked.at_lsn` and `SessionResumed.from_lsn`,
/// so they pointed at other records. They now point at the same records
/// under their new LSNs.
#[test]
fn import_into_a_non_empty_log_remaps_fork_and_resume_lsns() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (s0, s1, fork) = forked_and_resumed(&a);
    let file = tmp.path().join("a.jsonl");
    export_to(&a, &file, &[]);
    write_log(&b, 1, 7); // LSNs 1..=7: a's LSN n is imported as n + 7
    let (code, stdout, stderr) = run(&["import"], &b, &[file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("as LSNs 8..=24"), "{stdout}");

    let listed = sessions_json(&b);
    let of = |id: Uuid| {
        listed
            .iter()
            .find(|v| v["session"] == id.to_string())
            .unwrap_or_else(|| panic!("{id} not listed: {listed:?}"))
            .clone()
    };
    assert_eq!(of(fork)["forked_from"]["session"], s0.to_string());
    assert_eq!(
        of(fork)["forked_from"]["at_lsn"],
        12,
        "s0's LSN 5 is LSN 12 in b"
    );
    let (_, table, _) = run(&["sessions"], &b, &[]);
    let fork_line = table
        .lines()
        .find(|l| l.starts_with(&fork.to_string()[..8]))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        fork_line.contains(&format!("fork of {}@12", &s0.to_string()[..8])),
        "{fork_line}"
    );
    // The fork point names the record it did in a: s0 as it was there is
    // the fork's history.
    let then = replay_json(&b, &s0.to_string(), &["--at", "12"]);
    assert_eq!(then["last_lsn"], 12);
    let forked = replay_json(&b, &fork.to_string(), &[]);
    assert_eq!(transcript(&forked), transcript(&then));
    assert!(!transcript(&then).is_empty());
    // The resumption says where s1 stopped, in b's LSNs.
    let resumed = replay_json(&b, &s1.to_string(), &[]);
    assert_eq!(resumed["resumptions"][0]["from_lsn"], 19, "{resumed}");
    assert_eq!(resumed["resumptions"][0]["lsn"], 24);
}

/// A fork whose original is not in the file cannot be remapped: the import
/// is refused, naming the line, and nothing is created.
#[test]
fn import_refuses_a_reference_to_a_record_not_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let (_, _, fork) = forked_and_resumed(&a);
    let file = tmp.path().join("fork.jsonl");
    export_to(&a, &file, &["--session", &fork.to_string()]);
    let c = tmp.path().join("c");
    let (code, _, stderr) = run(&["import", "--create"], &c, &[file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("line 1:"), "{stderr}");
    assert!(stderr.contains("LSN 5"), "{stderr}");
    assert!(stderr.contains("not in the file"), "{stderr}");
    assert!(!c.exists(), "nothing created");
}

/// Bug: `fork --at 9999` on a 12-record log stored "fork of …@9999" for
/// good; `replay --at` took any LSN. Both now refuse an LSN past the end
/// (exit 2), and nothing is written.
#[test]
fn fork_and_replay_refuse_an_lsn_past_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 2, 6);
    let s0 = w.sessions[0].to_string();
    let before = segment_bytes(dir);
    let (code, stdout, stderr) = run(&["fork"], dir, &[&s0, "--at", "9999"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("LSN 9999 is past the end"), "{stderr}");
    assert!(stderr.contains("LSN 12"), "{stderr}");
    assert!(stderr.contains("nothing changed"), "{stderr}");
    assert_eq!(segment_bytes(dir), before, "nothing written");
    // The last LSN is a valid fork point.
    let (code, _, stderr) = run(&["fork"], dir, &[&s0, "--at", "12"]);
    assert_eq!(code, Some(0), "{stderr}");
    for at in ["9999", "1796314709"] {
        let (code, stdout, stderr) = run(&["replay"], dir, &[&s0, "--at", at]);
        assert_eq!(code, Some(2), "{at}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("LSN {at} is past the end")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("@{at}")),
            "says how to give epoch seconds: {stderr}"
        );
    }
}

/// One rule for LSNs and times on every option: a bare whole number is an
/// LSN; a time is RFC 3339, a date, @epoch-seconds or a duration. An
/// option refuses the kind it does not take, saying how to write it.
#[test]
fn a_bare_number_is_an_lsn_and_a_time_never_looks_like_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 2, 6);
    let s0 = w.sessions[0].to_string();
    // Time options refuse a bare number (it would be an LSN).
    for (cmd, option) in [
        ("dump", "--since"),
        ("dump", "--until"),
        ("sessions", "--since"),
        ("sessions", "--until"),
        ("export", "--since"),
        ("export", "--until"),
    ] {
        let (code, _, stderr) = run(&[cmd], dir, &[option, "1764410000"]);
        assert_eq!(code, Some(2), "{cmd} {option}: {stderr}");
        assert!(stderr.contains("@1764410000"), "{cmd} {option}: {stderr}");
        let (code, _, stderr) = run(&[cmd], dir, &[option, "@1764410000"]);
        assert_ne!(code, Some(2), "{cmd} {option} @: {stderr}");
    }
    // LSN options refuse a time.
    for (args, at) in [
        (vec!["fork", "--at"], "@1764410000"),
        (vec!["fork", "--at"], "2026-01-01"),
        (vec!["fork", "--at"], "15m"),
        (vec!["dump", "--from-lsn"], "@5"),
        (vec!["dump", "--to-lsn"], "2026-01-01"),
    ] {
        let mut rest: Vec<&str> = Vec::new();
        if args[0] == "fork" {
            rest.push(&s0);
        }
        rest.push(args[1]);
        rest.push(at);
        let (code, _, stderr) = run(&[args[0]], dir, &rest);
        assert_eq!(code, Some(2), "{args:?} {at}: {stderr}");
        assert!(stderr.contains("takes an LSN"), "{args:?} {at}: {stderr}");
    }
    // `replay --at` takes either: a bare number is an LSN, @N a time.
    let state = replay_json(dir, &s0, &["--at", "6"]);
    assert_eq!(state["as_of"]["lsn"], 6);
    let placed = placement(dir);
    let t = placed[2].timestamp_us;
    let epoch = format!("@{}.{:06}", t / 1_000_000, t % 1_000_000);
    let state = replay_json(dir, &s0, &["--at", &epoch]);
    assert!(state["as_of"]["time"].is_string(), "{state}");
    assert!(state["last_lsn"].as_u64().unwrap() >= 3, "{state}");
}

/// `import` of a file already imported would double its sessions: refused
/// (exit 2, nothing written) unless `--new-ids`, which imports them under
/// new ids (a fork among them names its original's new id).
#[test]
fn importing_the_same_file_twice_is_refused_unless_new_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (s0, _, fork) = forked_and_resumed(&a);
    let file = tmp.path().join("a.jsonl");
    export_to(&a, &file, &[]);
    write_log(&b, 1, 3);
    let (code, _, stderr) = run(&["import"], &b, &[file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let before = segment_bytes(&b);
    let (code, _, stderr) = run(&["import"], &b, &[file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("already"), "{stderr}");
    assert!(stderr.contains("--new-ids"), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    assert_eq!(segment_bytes(&b), before, "nothing written");
    assert_eq!(sessions_json(&b).len(), 4);
    let (code, stdout, stderr) = run(&["import", "--new-ids"], &b, &[file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("under new ids"), "{stdout}");
    let listed = sessions_json(&b);
    assert_eq!(listed.len(), 7);
    let known = [s0, fork]
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    let new_fork = listed
        .iter()
        .find(|v| {
            !v["forked_from"].is_null() && !known.contains(&v["session"].as_str().unwrap().into())
        })
        .unwrap();
    let new_origin = new_fork["forked_from"]["session"].as_str().unwrap();
    assert_ne!(new_origin, s0.to_string(), "names the new copy of s0");
    assert!(listed.iter().any(|v| v["session"] == new_origin));
}

/// `import --dry-run` says what it would import and writes nothing; a
/// mistyped directory is refused unless `--create`; `--segment-size`
/// sizes the segments an import creates, and a new log's first segment is
/// sized by the import.
#[test]
fn import_dry_run_create_and_segment_size() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let w = write_log(&a, 2, 50);
    let file = tmp.path().join("a.jsonl");
    export_to(&a, &file, &[]);
    let file = file.to_str().unwrap();
    // No log there: refused, nothing created.
    let typo = tmp.path().join("bb");
    let (code, _, stderr) = run(&["import"], &typo, &[file]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no log in"), "{stderr}");
    assert!(stderr.contains("--create"), "{stderr}");
    assert!(!typo.exists(), "nothing created");
    // A dry run: what would be imported, nothing written.
    write_log(&b, 1, 4);
    let before = segment_bytes(&b);
    let (code, stdout, stderr) = run(&["import", "--dry-run"], &b, &[file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("would import 100 event(s) of 2 session(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("as LSNs 5..=104"), "{stdout}");
    assert!(stdout.contains("nothing written"), "{stdout}");
    assert_eq!(segment_bytes(&b), before);
    let (code, stdout, stderr) = run(&["import", "--dry-run", "--create"], &typo, &[file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("a new log"), "{stdout}");
    assert!(!typo.exists(), "a dry run creates nothing");
    // A dry run sees a duplicate too.
    let (code, _, stderr) = run(&["import"], &b, &[file]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = run(&["import", "--dry-run"], &b, &[file]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("already"), "{stderr}");
    // A new log: a segment no larger than what was imported, not 64 MiB;
    // into an existing log: its tail is not grown either.
    let (code, _, stderr) = run(&["import", "--create"], &typo, &[file]);
    assert_eq!(code, Some(0), "{stderr}");
    let sizes = |dir: &Path| -> Vec<u64> {
        segments(dir)
            .iter()
            .map(|s| std::fs::metadata(s).unwrap().len())
            .collect()
    };
    assert!(
        sizes(&typo).iter().all(|s| *s < 1 << 20),
        "{:?}",
        sizes(&typo)
    );
    assert!(sizes(&b).iter().all(|s| *s < 1 << 20), "{:?}", sizes(&b));
    // --segment-size: every segment the import creates at most that.
    let c = tmp.path().join("c");
    let (code, _, stderr) = run(
        &["import", "--create", "--segment-size", "4KiB"],
        &c,
        &[file],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(segments(&c).len() > 1);
    for s in segments(&c) {
        assert!(
            std::fs::metadata(&s).unwrap().len() <= 4096,
            "{}",
            s.display()
        );
    }
    assert_eq!(sessions_json(&c).len(), w.sessions.len());
    let (code, _, stderr) = run(&["import", "--create", "--segment-size", "12"], &c, &[file]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--segment-size"), "{stderr}");
}
