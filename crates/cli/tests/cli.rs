//! End to end: the `logbook` binary on logs these tests write.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use logbook_bus::SessionEvent;
use logbook_wal::{Wal, WalOptions};
use serde_json::Value;

fn rfc3339(us: u64) -> String {
    humantime_like(us)
}

/// RFC 3339 with microseconds, computed independently of the binary.
fn humantime_like(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn dump_prints_every_record_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 3, 12);
    let out = logbook().arg("dump").arg(tmp.path()).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), w.records.len());
    for (i, (line, (session, event))) in lines.iter().zip(&w.records).enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], (i + 1).to_string(), "{line}");
        assert!(cols[1].ends_with('Z'), "{line}");
        assert_eq!(cols[2], &session.to_string()[..8], "{line}");
        assert_eq!(cols[3], event.kind(), "{line}");
    }
    assert!(stdout.contains("session finished"));
}

#[test]
fn dump_json_round_trips_field_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 2, 15);
    let placed = placement(tmp.path());
    let out = logbook()
        .args(["dump", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let (stdout, _) = texts(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), w.records.len());
    for ((line, (session, event)), place) in lines.iter().zip(&w.records).zip(&placed) {
        let v: Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["durable", "event", "kind", "lsn", "session", "ts"]);
        assert_eq!(v["lsn"].as_u64(), Some(place.lsn));
        assert_eq!(v["ts"].as_str(), Some(rfc3339(place.timestamp_us).as_str()));
        assert_eq!(v["session"].as_str(), Some(session.to_string().as_str()));
        assert_eq!(v["kind"].as_str(), Some(event.kind()));
        assert_eq!(v["durable"].as_bool(), Some(event.is_durable()));
        // One shape for every event: an object with its kind.
        assert!(v["event"]["kind"].is_string(), "{v}");
        assert_eq!(&event_from_json(&v["event"]), event);
    }
}

/// Every event of `dump --json` (a unit variant like `Done`, a text like
/// `UserMessage`, a struct like `TokenUsage`) is an object carrying its
/// kind, so `jq '.event | keys'` works on every record.
#[test]
fn dump_json_events_have_one_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(tmp.path(), small_options()).unwrap();
    let id = uuid::Uuid::new_v4();
    let events = [
        SessionEvent::UserMessage("hi".into()),
        SessionEvent::SessionResumed { from_lsn: 1 },
        event(2, 10, false),
        SessionEvent::Done,
    ];
    for e in &events {
        wal.append(id, e).unwrap();
    }
    wal.close().unwrap();
    let out = logbook()
        .args(["dump", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let lines = json_lines(&texts(&out).0);
    let shapes: Vec<String> = lines.iter().map(|v| v["event"].to_string()).collect();
    assert_eq!(
        shapes,
        [
            r#"{"kind":"UserMessage","value":"hi"}"#.to_owned(),
            r#"{"from_lsn":1,"kind":"SessionResumed"}"#.to_owned(),
            serde_json::to_string(&lines[2]["event"]).unwrap(),
            r#"{"kind":"Done"}"#.to_owned(),
        ]
    );
    assert_eq!(lines[2]["event"]["kind"], "TokenUsage");
    assert_eq!(lines[2]["event"]["prompt_tokens"], 102);
    for (v, e) in lines.iter().zip(&events) {
        assert_eq!(&event_from_json(&v["event"]), e);
    }
}

/// Back from the JSON shape of an event to the event (serde's own shape).
fn event_from_json(v: &Value) -> SessionEvent {
    let mut fields = v.as_object().unwrap().clone();
    let kind = fields.remove("kind").unwrap();
    let kind = kind.as_str().unwrap().to_owned();
    let serde_shape = if fields.is_empty() {
        Value::String(kind)
    } else if let Some(value) = fields.remove("value") {
        serde_json::json!({ kind: value })
    } else {
        serde_json::json!({ kind: fields })
    };
    serde_json::from_value(serde_shape).unwrap()
}

#[test]
fn dump_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 3, 12);
    let dir = tmp.path();
    let lsns = |args: &[&str]| -> Vec<u64> {
        let out = logbook()
            .arg("dump")
            .arg(dir)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
        json_lines(&texts(&out).0)
            .iter()
            .map(|v| v["lsn"].as_u64().unwrap())
            .collect()
    };
    let expect = |f: &dyn Fn(u64, &(uuid::Uuid, SessionEvent)) -> bool| -> Vec<u64> {
        w.records
            .iter()
            .enumerate()
            .filter(|(i, r)| f(*i as u64 + 1, r))
            .map(|(i, _)| i as u64 + 1)
            .collect()
    };
    let s1 = w.sessions[1];
    assert_eq!(
        lsns(&["--session", &s1.to_string()]),
        expect(&|_, r| r.0 == s1)
    );
    assert_eq!(
        lsns(&["--session", &s1.to_string()[..6]]),
        expect(&|_, r| r.0 == s1)
    );
    assert_eq!(
        lsns(&["--kind", "token_usage", "--kind", "done"]),
        expect(&|_, r| matches!(r.1.kind(), "token_usage" | "done"))
    );
    assert_eq!(
        lsns(&["--from-lsn", "5", "--to-lsn", "9"]),
        vec![5, 6, 7, 8, 9]
    );
    assert_eq!(
        lsns(&["--limit", "4", "--from-lsn", "30"]),
        vec![30, 31, 32, 33]
    );
    assert_eq!(
        lsns(&["--since", "2000-01-01T00:00:00Z"]).len(),
        w.records.len()
    );
    // Nothing matches: said on stderr, exit 1.
    for args in [
        &["--until", "2000-01-01"][..],
        &["--since", "2999-01-01T00:00:00+02:00"],
    ] {
        let out = logbook().arg("dump").arg(dir).args(args).output().unwrap();
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.starts_with("logbook: nothing found: "), "{stderr}");
    }
    // Between two records' times: exactly the ones at or after it.
    let placed = placement(dir);
    let mid = placed[20].timestamp_us;
    let since = rfc3339(mid);
    assert_eq!(
        lsns(&["--since", &since]),
        placed
            .iter()
            .filter(|p| p.timestamp_us >= mid)
            .map(|p| p.lsn)
            .collect::<Vec<_>>()
    );

    // Text mode: --full shows the whole session id.
    let out = logbook()
        .arg("dump")
        .arg(dir)
        .args(["--full", "--limit", "1"])
        .output()
        .unwrap();
    assert!(texts(&out).0.contains(&w.sessions[0].to_string()));

    // Usage errors: exit 2.
    for bad in [
        &["--kind", "no_such_kind"][..],
        &["--since", "yesterday at noon"],
        &["--session", "not-hex!"],
        &["--from-lsn", "-3"],
    ] {
        let out = logbook().arg("dump").arg(dir).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn dump_into_a_closed_pipe_is_success() {
    let tmp = tempfile::tempdir().unwrap();
    write_big_log(tmp.path(), 3000);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("logbook"))
        .arg("dump")
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("       1  "), "{first}");
    drop(stdout); // like `head -1` exiting
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn dump_follow_prints_what_a_live_writer_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_size: 4096,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let id = uuid::Uuid::new_v4();
    wal.append(id, &SessionEvent::UserMessage("before".into()))
        .unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("logbook"))
        .args(["dump", "--follow", "--json", "--poll-ms", "20"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = |rx: &mpsc::Receiver<String>| -> Value {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("dump --follow printed nothing in time");
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(next(&rx)["lsn"], 1);
    // Enough records to roll over to new segments while it follows.
    let mut expected = Vec::new();
    for i in 0..150 {
        let e = SessionEvent::TextComplete(format!("appended while following, number {i}"));
        let lsn = wal.append(id, &e).unwrap();
        expected.push((lsn, e));
    }
    wal.append(id, &SessionEvent::Done).unwrap();
    for (lsn, e) in &expected {
        let v = next(&rx);
        assert_eq!(v["lsn"].as_u64(), Some(*lsn));
        assert_eq!(&event_from_json(&v["event"]), e);
    }
    assert_eq!(next(&rx)["kind"], "done");
    assert!(segments(dir).len() >= 3, "segments rolled while following");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn verify_and_stats_on_a_clean_log() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 3, 45);
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3);

    let out = logbook().arg("verify").arg(tmp.path()).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "OK: {} segment(s), {} record(s), LSN 1..={}, no problems",
            segs.len(),
            w.records.len(),
            w.records.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("tail: ends cleanly"));

    let out = logbook()
        .args(["stats", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_str(texts(&out).0.trim()).unwrap();
    let n = w.records.len() as u64;
    assert_eq!(v["records"], n);
    assert_eq!(v["first_lsn"], 1);
    assert_eq!(v["last_lsn"], n);
    assert_eq!(v["sessions"], 3);
    assert_eq!(v["durable"], n);
    assert_eq!(v["problems"], 0);
    let segs_json = v["segments"].as_array().unwrap();
    assert_eq!(segs_json.len(), segs.len());
    let mut next_lsn = 1;
    for (s, path) in segs_json.iter().zip(&segs) {
        assert_eq!(s["file"].as_str(), path.file_name().unwrap().to_str());
        assert_eq!(s["base_lsn"], next_lsn);
        assert_eq!(s["first_lsn"], next_lsn);
        assert_eq!(s["size"], std::fs::metadata(path).unwrap().len());
        assert_eq!(s["used_bytes"], s["size"], "not preallocated");
        next_lsn = s["last_lsn"].as_u64().unwrap() + 1;
    }
    assert_eq!(next_lsn, n + 1);
    let by_kind = v["by_kind"].as_array().unwrap();
    let total: u64 = by_kind.iter().map(|k| k["records"].as_u64().unwrap()).sum();
    assert_eq!(total, n);
    let bytes: u64 = by_kind.iter().map(|k| k["bytes"].as_u64().unwrap()).sum();
    assert_eq!(v["bytes"], bytes);
    let dones = w
        .records
        .iter()
        .filter(|r| r.1 == SessionEvent::Done)
        .count() as u64;
    let done = by_kind.iter().find(|k| k["kind"] == "done").unwrap();
    assert_eq!(done["records"], dones);
    assert_eq!(done["bytes"], dones * 49, "48-byte header + 1-byte payload");

    let out = logbook().arg("stats").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("sessions: 3"), "{stdout}");
    assert!(
        stdout.contains(&format!("segments: {}", segs.len())),
        "{stdout}"
    );
}

#[test]
fn verify_reports_every_problem_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 3, 45);
    let (sealed_lsn, tail_lsn) = middle_lsns(tmp.path());
    let placed = placement(tmp.path());
    let (seg1, off1) = smash_placed(&placed, sealed_lsn);
    let (seg2, off2) = smash_placed(&placed, tail_lsn);
    let out = logbook()
        .args(["verify", "--hex"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let problems: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    assert_eq!(problems.len(), 2, "{stdout}");
    assert!(problems[0].contains(&format!(
        "{} at offset {off1}: corrupt record (expected LSN {sealed_lsn})",
        seg1.display()
    )));
    assert!(problems[1].contains(&format!(
        "{} at offset {off2}: corrupt record (expected LSN {tail_lsn}), followed by",
        seg2.display()
    )));
    // Every other record was still read.
    let valid = w.records.len() - 2;
    assert!(
        stdout.contains(&format!(
            "FAILED: 2 problem(s); {} segment(s), {valid} valid record(s)",
            segments(tmp.path()).len()
        )),
        "{stdout}"
    );
    // --hex: the marked line and the frame header.
    assert!(
        stdout.contains(&format!("  > {:08x}", off1 & !15)),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("frame header at {off1:#x} ({off1}): payload_len")));
    assert!(stdout.contains("aa aa aa aa"), "{stdout}");
}

#[test]
fn verify_reports_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 2, 20);
    let (seg, off, _) = cut_tail(tmp.path());
    let out = logbook().arg("verify").arg(tmp.path()).output().unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "problem: {} at offset {off}: torn tail where LSN {} was due: incomplete frame",
            seg.display(),
            w.records.len()
        )),
        "{stdout}"
    );
}

#[test]
fn repair_dry_run_then_apply_keeps_the_cut_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 2, 20);
    let (seg, off, mut cut) = cut_tail(dir);
    // Recovery cuts (and keeps) up to the last non-zero byte.
    while cut.last() == Some(&0) {
        cut.pop();
    }
    let before: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let seg_bytes = std::fs::read(&seg).unwrap();

    let out = logbook().arg("repair").arg(dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("dry run"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "would cut: {} from offset {off}: {} byte(s), LSN {} on",
            seg.file_name().unwrap().to_str().unwrap(),
            cut.len(),
            w.records.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("--apply"), "{stdout}");
    // A dry run changes nothing.
    let after: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len());
    assert_eq!(std::fs::read(&seg).unwrap(), seg_bytes);

    let out = logbook()
        .args(["repair", "--apply"])
        .arg(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let broken = format!("{}.{off}.broken", seg.display());
    assert!(stdout.contains(&broken), "{stdout}");
    assert_eq!(std::fs::read(&broken).unwrap(), cut);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), off);
    assert!(stdout.contains(&format!("the log continues at LSN {}", w.records.len())));

    // Now the log verifies, and a second repair has nothing to do.
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let out = logbook()
        .args(["repair", "--apply"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(texts(&out).0.contains("nothing changed"));
    assert!(std::path::Path::new(&broken).exists(), "never deletes");
}

#[test]
fn repair_refuses_mid_log_corruption_unless_given_a_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 3, 45);
    let (_, tail_lsn) = middle_lsns(dir);
    let (seg, off) = smash(dir, tail_lsn);
    let seg_bytes = std::fs::read(&seg).unwrap();

    let out = logbook().arg("repair").arg(dir).output().unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("refused:"), "{stdout}");
    assert!(
        stdout.contains("--mode point-in-time would cut"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--mode skip-corrupted would keep every valid record"),
        "{stdout}"
    );

    let out = logbook()
        .args(["repair", "--apply"])
        .arg(dir)
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{} at offset {off}", seg.display())),
        "{stderr}"
    );
    assert!(stderr.contains("--mode"), "{stderr}");
    assert_eq!(std::fs::read(&seg).unwrap(), seg_bytes, "nothing changed");

    let out = logbook()
        .args(["repair", "--apply", "--mode", "point-in-time"])
        .arg(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let broken = format!("{}.{off}.broken", seg.display());
    assert_eq!(
        std::fs::read(&broken).unwrap(),
        seg_bytes[off as usize..],
        "everything cut is kept"
    );
    let out = logbook()
        .args(["dump", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(texts(&out).0.lines().count() as u64, tail_lsn - 1);
    let _ = w;
}

#[test]
fn repair_skip_corrupted_keeps_every_valid_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 3, 45);
    let (_, tail_lsn) = middle_lsns(dir);
    smash(dir, tail_lsn);
    let out = logbook()
        .args(["repair", "--apply", "--mode", "skip-corrupted"])
        .arg(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    // Skipping changes no byte: it says so, and does not claim a repair.
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("LSN {tail_lsn} lost")), "{stdout}");
    assert!(
        stdout.contains("not repaired: nothing was written"),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("repaired")),
        "{stdout}"
    );
    assert!(stdout.contains("a default open"), "{stdout}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // And it is true: a default open still refuses, verify still fails.
    match Wal::open(dir, small_options()) {
        Err(e) => assert!(e.is_corruption(), "{e}"),
        Ok(_) => panic!("a default open succeeded after `not repaired`"),
    }
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", texts(&out));
    // The damaged record stays in place: dump still reports it, and shows
    // every other record.
    let out = logbook()
        .args(["dump", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout.lines().count(), w.records.len() - 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn records_of_unknown_kinds_and_undecodable_payloads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let id = uuid::Uuid::new_v4();
    {
        let wal = Wal::open(dir, small_options()).unwrap();
        wal.append(id, &SessionEvent::UserMessage("hi".into()))
            .unwrap();
        wal.append_raw(id, &[60, 1, 2]).unwrap(); // a kind from a newer build
        wal.append(id, &SessionEvent::Done).unwrap();
    }
    let out = logbook()
        .args(["dump", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["kind"], "unknown");
    assert_eq!(lines[1]["durable"], false);
    assert_eq!(lines[1]["event"], serde_json::json!({ "kind": null }));
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("unknown event tag 60")
    );
    assert!(lines[0].get("error").is_none());
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("note: 1 record(s) of an event kind this build does not know"));

    // A payload that passed its checksum and is no event: a problem.
    {
        let wal = Wal::open(dir, small_options()).unwrap();
        wal.append_raw(id, &[12, 0xff, 0xff, 0xff]).unwrap();
    }
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("LSN 4: the payload is not a SessionEvent"),
        "{stdout}"
    );
    let out = logbook().arg("dump").arg(dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("(undecodable: "), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("LSN 4: the payload is not a SessionEvent"),
        "{stderr}"
    );
}

#[test]
fn a_log_of_another_codec_is_refused_not_misread() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let wal = Wal::open(
            dir,
            WalOptions {
                codec_id: 7,
                ..small_options()
            },
        )
        .unwrap();
        // Bytes that codec 1 would read as a valid event.
        let bytes = logbook_bus::codec::encode(&SessionEvent::Done).unwrap();
        wal.append_raw(uuid::Uuid::new_v4(), &bytes).unwrap();
    }
    let out = logbook().arg("dump").arg(dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("payload codec 7"), "{stdout}");
    assert!(stdout.contains("(undecodable: "), "{stdout}");
    assert!(!stdout.contains("session finished"), "{stdout}");
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
}

#[test]
fn verify_finds_stale_bytes_that_readers_take_for_the_end() {
    // A torn write whose later page reached the disk and its earlier one
    // did not: zeros, then bytes. Readers stop at the zeros; recovery cuts.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 1, 5);
    let tail = segments(dir).pop().unwrap();
    let end = std::fs::metadata(&tail).unwrap().len();
    let mut bytes = std::fs::read(&tail).unwrap();
    bytes.extend_from_slice(&[0; 200]);
    bytes.extend_from_slice(&[0x5a; 30]);
    std::fs::write(&tail, &bytes).unwrap();
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "problem: {} at offset {end}: 230 byte(s) past the end of the log, where LSN {} was due",
            tail.display(),
            w.records.len() + 1
        )),
        "{stdout}"
    );
    let out = logbook()
        .args(["repair", "--apply"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
}

/// Lines a child prints on one of its streams, as they come.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line, or a failure once `deadline` has passed.
fn next_line(rx: &mpsc::Receiver<String>, deadline: Instant, what: &str) -> String {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|_| panic!("no line in time: {what}"))
}

#[test]
fn dump_follow_notices_a_log_removed_and_created_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (old, new) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let wal = Wal::open(&dir, small_options()).unwrap();
    for i in 0..3 {
        wal.append(old, &event(i, 10, false)).unwrap();
    }
    wal.close().unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("logbook"))
        .args(["dump", "--follow", "--json", "--poll-ms", "20"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    for lsn in 1..=3 {
        let v: Value = serde_json::from_str(&next_line(&out, deadline, "old log")).unwrap();
        assert_eq!(v["lsn"], lsn);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let wal = Wal::open(&dir, small_options()).unwrap();
    wal.append(new, &SessionEvent::UserMessage("in the new log".into()))
        .unwrap();
    let v: Value = serde_json::from_str(&next_line(&out, deadline, "new log")).unwrap();
    assert_eq!(v["lsn"], 1, "{v}");
    assert_eq!(v["session"], new.to_string(), "{v}");
    let note = loop {
        let line = next_line(&err, deadline, "a note on stderr");
        if line.contains("created again") {
            break line;
        }
    };
    assert!(note.starts_with("logbook: note: "), "{note}");
    assert!(note.contains(&dir.display().to_string()), "{note}");
    child.kill().unwrap();
    child.wait().unwrap();
    wal.close().unwrap();
}

/// `dump --follow` noted a tombstone only when its walk reached it: the
/// records a tombstone deletes, read after it was durable (appended and
/// deleted while the follower slept), were printed as live. Now it reads
/// on to the end for tombstones before it shows a record (the library's
/// `LogDeletions::note_through_end`, as `follow` does).
#[test]
fn dump_follow_shows_no_record_read_after_its_tombstone_was_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (s, keep) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let wal = Wal::open(dir, WalOptions::default()).unwrap();
    wal.append(keep, &SessionEvent::UserMessage("other".into()))
        .unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("logbook"))
        .args(["dump", "--follow", "--json", "--poll-ms", "1500"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let first: Value = serde_json::from_str(&next_line(&out, deadline, "first")).unwrap();
    assert_eq!(first["lsn"], 1);
    // While it sleeps: appended, then deleted.
    let batch: Vec<(uuid::Uuid, SessionEvent)> = (0..3000)
        .map(|i| (s, SessionEvent::UserMessage(format!("SECRET {i}"))))
        .collect();
    wal.append_many(&batch).unwrap();
    logbook_replay::delete_session(&wal, s).unwrap();
    wal.append(keep, &SessionEvent::UserMessage("after".into()))
        .unwrap();
    let mut leaked = 0;
    loop {
        let line = next_line(&out, deadline, "the record after the delete");
        if line.contains("SECRET") {
            leaked += 1;
        }
        if line.contains("\"after\"") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    wal.close().unwrap();
    assert_eq!(leaked, 0, "deleted records shown by dump --follow");
}

/// Wait for a child to exit by itself; kill it and fail past `deadline`.
fn exits_by_itself(child: &mut std::process::Child, deadline: Instant) -> Option<i32> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the child did not exit by itself");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dump_follow_until_a_past_time_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 2, 5);
    let until = rfc3339(placement(dir).last().unwrap().timestamp_us + 1);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("logbook"))
        .args(["dump", "--follow", "--poll-ms", "20", "--until", &until])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let code = exits_by_itself(&mut child, Instant::now() + Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert_eq!(out.iter().count(), w.records.len());
}

#[test]
fn dump_from_the_end_and_the_last_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 3, 10);
    let n = w.records.len() as u64;
    let lsns = |args: &[&str]| -> Vec<u64> {
        let out = logbook()
            .arg("dump")
            .arg(dir)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?}", texts(&out));
        json_lines(&texts(&out).0)
            .iter()
            .map(|v| v["lsn"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(lsns(&["--from-end"]), Vec::<u64>::new());
    assert_eq!(lsns(&["--last", "3"]), vec![n - 2, n - 1, n]);
    assert_eq!(lsns(&["--last", "1000"]).len() as u64, n);
    // The last N of those that pass the filters.
    let session = w.sessions[0].to_string();
    let mine: Vec<u64> = (1..=n)
        .filter(|l| w.records[*l as usize - 1].0 == w.sessions[0])
        .collect();
    assert_eq!(
        lsns(&["--last", "2", "--session", &session]),
        mine[mine.len() - 2..]
    );

    // With --follow: only what is appended after the start (for
    // --from-end), or the last record and then what is appended.
    let wal = Wal::open(dir, small_options()).unwrap();
    for args in [&["--from-end"][..], &["--last", "1"][..]] {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("logbook"))
            .args(["dump", "--follow", "--json", "--poll-ms", "20"])
            .args(args)
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let end = wal.last_lsn();
        let first = if args[0] == "--last" {
            let v: Value = serde_json::from_str(&next_line(&out, deadline, "last")).unwrap();
            assert_eq!(v["lsn"], end, "the last record first");
            wal.append(w.sessions[0], &SessionEvent::UserMessage("later".into()))
                .unwrap();
            next_line(&out, deadline, "appended")
        } else {
            // Append until the follower shows something: whatever it shows
            // first is past the end it started at.
            loop {
                wal.append(w.sessions[0], &SessionEvent::UserMessage("later".into()))
                    .unwrap();
                if let Ok(line) = out.recv_timeout(Duration::from_millis(50)) {
                    break line;
                }
                assert!(Instant::now() < deadline, "nothing followed in time");
            }
        };
        let v: Value = serde_json::from_str(&first).unwrap();
        assert!(v["lsn"].as_u64().unwrap() > end, "{v} (the end was {end})");
        child.kill().unwrap();
        child.wait().unwrap();
    }
    wal.close().unwrap();
}

#[test]
fn session_prefixes_and_filters_that_match_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wal = Wal::open(dir, small_options()).unwrap();
    let a = uuid::Uuid::from_u128(0x0050_1111_0000_4000_8000_0000_0000_0001);
    let b = uuid::Uuid::from_u128(0x0050_2222_0000_4000_8000_0000_0000_0002);
    for i in 0..4 {
        wal.append(a, &event(i, 4, true)).unwrap();
        wal.append(b, &event(i, 4, true)).unwrap();
    }
    wal.close().unwrap();
    let run = |args: &[&str]| {
        let out = logbook()
            .arg(args[0])
            .arg(dir)
            .args(&args[1..])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        (out.status.code(), stdout, stderr)
    };
    // An ambiguous prefix: refused the same way by dump and replay.
    let (code, stdout, dump_err) = run(&["dump", "--session", "0050"]);
    assert_eq!(code, Some(2), "{stdout}{dump_err}");
    assert!(stdout.is_empty(), "{stdout}");
    let (code, _, replay_err) = run(&["replay", "0050"]);
    assert_eq!(code, Some(2), "{replay_err}");
    assert_eq!(dump_err, replay_err);
    assert_eq!(dump_err.lines().count(), 1, "{dump_err}");
    assert!(dump_err.contains("0050 names 2 sessions"), "{dump_err}");
    // A unique prefix is one session.
    let (code, stdout, _) = run(&["dump", "--session", "00502"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 4);
    // Filters that match nothing say so on stderr, exit 1.
    for args in [
        &["dump", "--session", "ffff"][..],
        &["replay", "ffff"][..],
        &["replay", "ffffffff-ffff-4fff-8fff-ffffffffffff"][..],
        &["dump", "--from-lsn", "12", "--to-lsn", "10"][..],
        &["dump", "--from-lsn", "100"][..],
        &["dump", "--kind", "compaction_failed"][..],
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("logbook: nothing found: "),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn sessions_with_a_status_nobody_has_is_nothing_found() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 2, 5);
    let out = logbook()
        .args(["sessions", "--status", "failed"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.starts_with("logbook: nothing found: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let out = logbook()
        .args(["sessions", "--status", "completed"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
}

#[test]
fn stats_by_kind_largest_share_first() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 3, 20);
    let out = logbook()
        .args(["stats", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stats: Value = serde_json::from_str(texts(&out).0.trim()).unwrap();
    let bytes: Vec<u64> = stats["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["bytes"].as_u64().unwrap())
        .collect();
    assert!(bytes.len() > 3, "{stats}");
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
}

/// Session indexes are derived data: `verify` names a sealed segment whose
/// index is missing or damaged (a note on stdout, not a problem: exit 0),
/// and `repair --apply` rebuilds them, changing no segment.
#[test]
fn verify_reports_unusable_session_indexes_and_repair_rebuilds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_log(dir, 3, 40);
    let segs = segments(dir);
    assert!(segs.len() > 2, "several segments");
    let index = |seg: &std::path::Path| {
        let mut name = seg.as_os_str().to_owned();
        name.push(".idx");
        std::path::PathBuf::from(name)
    };
    for seg in &segs {
        assert!(index(seg).exists(), "the writer indexed {}", seg.display());
    }
    let before: Vec<Vec<u8>> = segs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    std::fs::remove_file(index(&segs[0])).unwrap();
    let mut damaged = std::fs::read(index(&segs[1])).unwrap();
    damaged[70] ^= 1;
    std::fs::write(index(&segs[1]), &damaged).unwrap();

    let out = logbook().arg("verify").arg(dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stdout.contains(&format!("index: {}: session index missing", name(&segs[0]))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("index: {}: session index damaged", name(&segs[1]))),
        "{stdout}"
    );

    let out = logbook()
        .args(["repair", "--apply"])
        .arg(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("session indexes rebuilt: 2 sealed segment(s)"),
        "{stdout}"
    );
    let out = logbook().arg("verify").arg(dir).output().unwrap();
    assert!(!texts(&out).0.contains("index: "), "{:?}", texts(&out));
    let after: Vec<Vec<u8>> = segs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(before == after, "no segment changed");
}

/// Three sessions written one after the other, 30 ms apart:
/// A (model alpha, no started title: titled by its first user message,
/// 110 tokens, completed), B (model beta, titled "Named B", 600 tokens,
/// interrupted, the most events), C (model alpha, a long first message,
/// 10 tokens, failed). Returns their ids in that order.
fn write_three_sessions(dir: &std::path::Path) -> [uuid::Uuid; 3] {
    use logbook_bus::{TokenDelta, TokenSource};
    let wal = Wal::open(dir, small_options()).unwrap();
    let ids = [
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    ];
    let started = |model: &str, title: Option<&str>| SessionEvent::SessionStarted {
        model: model.into(),
        cwd: format!("/work/{model}"),
        title: title.map(Into::into),
    };
    let tokens = |n: u64| {
        SessionEvent::TokenUsage(TokenDelta {
            source: TokenSource::Root,
            model: "m".into(),
            prompt_tokens: n,
            completion_tokens: 0,
            duration_ms: 1,
        })
    };
    let sessions: [Vec<SessionEvent>; 3] = [
        vec![
            started("alpha", None),
            SessionEvent::UserMessage("first question\nwith a second line".into()),
            tokens(110),
            SessionEvent::Done,
        ],
        vec![
            started("beta", Some("Named B")),
            SessionEvent::UserMessage("hello".into()),
            tokens(600),
            SessionEvent::TextComplete("one".into()),
            SessionEvent::TextComplete("two".into()),
        ],
        vec![
            started("alpha", None),
            SessionEvent::UserMessage(format!("a long request {}", "x".repeat(80))),
            tokens(10),
            SessionEvent::Error("boom".into()),
        ],
    ];
    for (id, events) in ids.iter().zip(sessions) {
        for e in events {
            wal.append(*id, &e).unwrap();
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    wal.close().unwrap();
    ids
}

/// `logbook sessions DIR ARGS --json`: exit code and the sessions' ids.
fn sessions_json(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let out = logbook()
        .arg("sessions")
        .arg(dir)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    (out.status.code(), json_lines(&stdout), stderr)
}

fn ids_of(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v["session"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn sessions_json_has_title_cwd_and_millisecond_times() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = write_three_sessions(tmp.path());
    let (code, v, stderr) = sessions_json(tmp.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(ids_of(&v), [a, b, c].map(|id| id.to_string()));
    assert_eq!(v[0]["title"], "first question");
    assert_eq!(v[1]["title"], "Named B");
    assert!(
        v[2]["title"]
            .as_str()
            .unwrap()
            .starts_with("a long request x")
    );
    assert_eq!(v[0]["cwd"], "/work/alpha");
    assert_eq!(v[1]["cwd"], "/work/beta");
    for s in &v {
        for (text, us) in [("started", "started_us"), ("last_event", "last_event_us")] {
            let text = s[text].as_str().unwrap();
            let us = s[us].as_u64().unwrap();
            // 2026-11-29T18:22:28.910Z: to the millisecond, and the same
            // instant as the µs field.
            assert_eq!(text.len(), "2026-11-29T18:22:28.910Z".len(), "{text}");
            assert_eq!(text, format!("{}Z", &rfc3339(us)[..23]), "{s}");
        }
    }
}

#[test]
fn sessions_table_shows_a_shortened_title() {
    let tmp = tempfile::tempdir().unwrap();
    write_three_sessions(tmp.path());
    let out = logbook().arg("sessions").arg(tmp.path()).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains("  title"), "{stdout}");
    assert!(lines[1].contains("  first question"), "{stdout}");
    assert!(!lines[1].contains("second line"), "{stdout}");
    assert!(lines[2].contains("  Named B"), "{stdout}");
    // 32 characters at most, the last one an ellipsis.
    let long = format!("a long request {}…", "x".repeat(32 - 16));
    assert!(lines[3].contains(&format!("  {long}  ")), "{stdout}");
    assert!(lines[3].ends_with("boom"), "{stdout}");
}

#[test]
fn sessions_sort_reverse_and_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = write_three_sessions(tmp.path());
    let ids = [a, b, c].map(|id| id.to_string());
    let [a, b, c] = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];
    for (args, expected) in [
        (&["--sort", "tokens"][..], [b, a, c]),
        (&["--sort", "events"], [b, c, a]),
        (&["--sort", "status"], [b, c, a]),
        (&["--sort", "started"], [c, b, a]),
        (&["--sort", "last"], [c, b, a]),
        (&["--sort", "started", "--reverse"], [a, b, c]),
        (&["--reverse"], [c, b, a]),
    ] {
        let (code, v, stderr) = sessions_json(tmp.path(), args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_eq!(ids_of(&v), expected, "{args:?}");
    }
    let (code, v, _) = sessions_json(tmp.path(), &["--sort", "tokens", "--limit", "1"]);
    assert_eq!(code, Some(0));
    assert_eq!(ids_of(&v), [b]);
    let out = logbook()
        .arg("sessions")
        .arg(tmp.path())
        .args(["--limit", "2"])
        .output()
        .unwrap();
    let (stdout, _) = texts(&out);
    // The header, two sessions, the totals, and what came from summaries
    // (stored by the listings above).
    assert_eq!(stdout.lines().count(), 1 + 2 + 1 + 1, "{stdout}");
    assert!(stdout.ends_with("checks every record)\n"), "{stdout}");
    assert!(
        stdout.contains("3 session(s), 1 completed, 1 failed, 1 interrupted (2 shown)"),
        "{stdout}"
    );
}

#[test]
fn sessions_model_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = write_three_sessions(tmp.path());
    let ids = [a, b, c].map(|id| id.to_string());
    let [a, b, c] = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];
    let (code, v, _) = sessions_json(tmp.path(), &["--model", "alpha"]);
    assert_eq!(code, Some(0));
    assert_eq!(ids_of(&v), [a, c]);
    let (_, v, _) = sessions_json(tmp.path(), &["--model", "beta,alpha"]);
    assert_eq!(ids_of(&v), [a, b, c]);
    let (_, v, _) = sessions_json(tmp.path(), &["--model", "beta", "--model", "gamma"]);
    assert_eq!(ids_of(&v), [b]);
    // --status also takes a comma-separated list, and combines with --model.
    let (_, v, _) = sessions_json(tmp.path(), &["--status", "failed,interrupted"]);
    assert_eq!(ids_of(&v), [b, c]);
    let (_, v, _) = sessions_json(
        tmp.path(),
        &["--status", "failed,interrupted", "--model", "alpha"],
    );
    assert_eq!(ids_of(&v), [c]);
    let (code, v, stderr) = sessions_json(tmp.path(), &["--model", "alph"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(v.is_empty());
    // After the note on what came from summaries (stored by the listings
    // above), not read again.
    let (note, stderr) = stderr.split_once('\n').unwrap();
    assert!(note.contains("not read again"), "{note}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "logbook: nothing found: no session of the log in {} matches --model alph (3 session(s) in all)",
            tmp.path().display()
        )
    );
}

#[test]
fn sessions_since_and_until_keep_the_sessions_active_in_the_span() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = write_three_sessions(tmp.path());
    let ids = [a, b, c].map(|id| id.to_string());
    let [a, b, c] = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];
    let (_, all, _) = sessions_json(tmp.path(), &[]);
    let us = |i: usize, field: &str| all[i][field].as_u64().unwrap();
    // Epoch seconds with a fraction, after an '@' (a bare number is an LSN).
    let epoch = |us: u64| format!("@{}.{:06}", us / 1_000_000, us % 1_000_000);
    let b_start = epoch(us(1, "started_us"));
    let (code, v, stderr) = sessions_json(tmp.path(), &["--since", &b_start]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(ids_of(&v), [b, c]);
    let (_, v, _) = sessions_json(tmp.path(), &["--until", &b_start]);
    assert_eq!(ids_of(&v), [a]);
    // A session active across --since (started before, ended after) is in.
    let b_mid = epoch(us(1, "started_us") + 1);
    let (_, v, _) = sessions_json(
        tmp.path(),
        &["--since", &b_mid, "--until", &epoch(us(2, "started_us"))],
    );
    assert_eq!(ids_of(&v), [b]);
    // RFC 3339 and durations still work; nothing in the last second of 1970.
    let (_, v, _) = sessions_json(tmp.path(), &["--since", "1h"]);
    assert_eq!(v.len(), 3);
    let (code, v, stderr) = sessions_json(tmp.path(), &["--until", "1970-01-02T00:00:00Z"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(v.is_empty());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("logbook: nothing found: ")),
        "{stderr}"
    );
    // An empty span is a usage error.
    let (code, _, stderr) = sessions_json(tmp.path(), &["--since", "@200", "--until", "@100"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `logbook ARGS DIR`: exit code, JSON lines on stdout, stderr.
fn json_run(args: &[&str], dir: &std::path::Path) -> (Option<i32>, Vec<Value>, String) {
    let out = logbook().args(args).arg(dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    (out.status.code(), json_lines(&stdout), stderr)
}

#[test]
fn verify_json_lists_each_problem_then_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 3, 45);
    let (code, v, stderr) = json_run(&["verify", "--json"], dir);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["type"], "summary");
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["records"], w.records.len());
    assert_eq!(v[0]["tail"], "clean");
    assert_eq!(v[0]["segments"], segments(dir).len());

    let placed = placement(dir);
    let (sealed_lsn, _) = middle_lsns(dir);
    let (seg2, off2, _) = cut_tail(dir);
    let (seg1, off1) = smash_placed(&placed, sealed_lsn);
    let (code, v, stderr) = json_run(&["verify", "--json"], dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[0]["type"], "problem");
    assert_eq!(v[0]["kind"], "corrupt_record");
    assert_eq!(v[0]["segment"], seg1.to_str().unwrap());
    assert_eq!(v[0]["offset"], off1);
    assert_eq!(v[0]["lsn"], sealed_lsn);
    assert!(v[0]["message"].as_str().unwrap().contains("corrupt record"));
    assert_eq!(v[1]["kind"], "torn_tail");
    assert_eq!(v[1]["segment"], seg2.to_str().unwrap());
    assert_eq!(v[1]["offset"], off2);
    assert_eq!(v[1]["lsn"], w.records.len());
    assert_eq!(v[2]["type"], "summary");
    assert_eq!(v[2]["ok"], false);
    assert_eq!(v[2]["problems"], 2);
    assert_eq!(v[2]["tail"], "torn");
    assert_eq!(v[2]["records"], w.records.len() - 2);
    // --hex is for people.
    let (code, _, stderr) = json_run(&["verify", "--json", "--hex"], dir);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn repair_json_dry_run_apply_and_after() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 2, 20);
    let (seg, off, mut cut) = cut_tail(dir);
    // Recovery cuts (and keeps) up to the last non-zero byte.
    while cut.last() == Some(&0) {
        cut.pop();
    }
    let lsn = w.records.len();
    let (code, v, stderr) = json_run(&["repair", "--json"], dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0]["type"], "problem");
    assert_eq!(v[0]["kind"], "torn_tail");
    assert_eq!(v[0]["action"], "would_cut");
    assert_eq!(v[0]["segment"], seg.to_str().unwrap());
    assert_eq!(v[0]["offset"], off);
    assert_eq!(v[0]["lsn"], lsn);
    assert_eq!(v[0]["bytes"], cut.len());
    let s = &v[1];
    assert_eq!(s["type"], "summary");
    assert_eq!(s["outcome"], "would_repair");
    assert_eq!(s["mode"], "tolerate-tail");
    assert_eq!(s["apply"], false);
    assert_eq!(s["problems"], 1);
    assert_eq!(s["next_lsn"], lsn);

    let (code, v, stderr) = json_run(&["repair", "--json", "--apply"], dir);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v[0]["action"], "cut");
    assert_eq!(v[1]["outcome"], "repaired");
    let saved = v[1]["saved_to"].as_str().unwrap();
    assert_eq!(std::fs::read(saved).unwrap(), cut);

    let (code, v, stderr) = json_run(&["repair", "--json"], dir);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["outcome"], "nothing_to_repair");
    assert_eq!(v[0]["problems"], 0);
}

#[test]
fn repair_json_refusal_and_damage_outside_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_log(dir, 3, 45);
    let (sealed_lsn, tail_lsn) = middle_lsns(dir);
    let placed = placement(dir);
    let (seg1, off1) = smash_placed(&placed, sealed_lsn);
    let (seg2, off2) = smash_placed(&placed, tail_lsn);
    for apply in [false, true] {
        let args: &[&str] = if apply {
            &["repair", "--json", "--apply"]
        } else {
            &["repair", "--json"]
        };
        let (code, v, stderr) = json_run(args, dir);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let refused: Vec<&Value> = v.iter().filter(|p| p["action"] == "refused").collect();
        assert_eq!(refused.len(), 1, "{v:?}");
        assert_eq!(refused[0]["segment"], seg2.to_str().unwrap());
        assert_eq!(refused[0]["offset"], off2);
        assert_eq!(refused[0]["lsn"], tail_lsn);
        let summary = v.last().unwrap();
        assert_eq!(summary["outcome"], "refused");
        assert_eq!(summary["apply"], apply);
    }
    // With a mode that repairs the tail, the sealed damage is listed and
    // left alone.
    let (code, v, stderr) = json_run(&["repair", "--json", "--mode", "point-in-time"], dir);
    assert_eq!(code, Some(1), "{stderr}");
    let untouched: Vec<&Value> = v.iter().filter(|p| p["action"] == "none").collect();
    assert_eq!(untouched.len(), 1, "{v:?}");
    assert_eq!(untouched[0]["kind"], "corrupt_record");
    assert_eq!(untouched[0]["segment"], seg1.to_str().unwrap());
    assert_eq!(untouched[0]["offset"], off1);
    assert_eq!(untouched[0]["lsn"], sealed_lsn);
    let cut = v.iter().find(|p| p["action"] == "would_cut").unwrap();
    assert_eq!(cut["offset"], off2);
    assert_eq!(cut["kind"], "mid_log_corruption");
    assert_eq!(v.last().unwrap()["outcome"], "would_repair");
    assert_eq!(v.last().unwrap()["mode"], "point-in-time");
}

#[test]
fn dump_of_one_segment_file_prints_its_records_and_its_problems_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = write_log(dir, 3, 40);
    let placed = placement(dir);
    let segs = segments(dir);
    assert!(segs.len() >= 3, "{segs:?}");
    let mut all = Vec::new();
    for seg in &segs {
        let (code, v, stderr) = json_run(&["dump", "--json"], seg);
        assert_eq!(code, Some(0), "{}: {stderr}", seg.display());
        assert!(stderr.is_empty(), "{stderr}");
        let lsns: Vec<u64> = v.iter().map(|r| r["lsn"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = placed
            .iter()
            .filter(|p| &p.segment == seg)
            .map(|p| p.lsn)
            .collect();
        assert_eq!(lsns, expected, "{}", seg.display());
        all.extend(lsns);
    }
    assert_eq!(all.len(), w.records.len());
    // Damage in the first segment is the first segment's problem only.
    let first_lsn = placed.iter().find(|p| p.segment == segs[0]).unwrap().lsn + 2;
    let (seg0, off0) = smash_placed(&placed, first_lsn);
    let (code, _, stderr) = json_run(&["dump", "--json"], &segs[1]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let (code, v, stderr) = json_run(&["dump", "--json"], &seg0);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{} at offset {off0}", seg0.display())),
        "{stderr}"
    );
    assert!(v.iter().all(|r| r["lsn"] != first_lsn));
    // Filters apply; one that matches nothing names the segment.
    let (code, v, _) = json_run(&["dump", "--json", "--kind", "done"], &segs[1]);
    assert_eq!(code, Some(1));
    assert!(v.is_empty());
    let out = logbook()
        .args(["dump", "--kind", "done"])
        .arg(&segs[1])
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "logbook: nothing found: no record of the segment {} matches --kind done",
            segs[1].display()
        )
    );
    // Not a segment, or --follow: usage errors, on one line.
    for (args, path) in [
        (&["dump"][..], dir.join("LOCK")),
        (&["dump", "--follow"], segs[1].clone()),
    ] {
        let out = logbook().args(args).arg(&path).output().unwrap();
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("logbook: error: "), "{stderr}");
    }
}

#[test]
fn dump_physical_shows_segment_offset_frame_length_and_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_log(dir, 2, 30);
    let placed = placement(dir);
    // The stored CRC, read here from the frame: its second 4 bytes.
    let stored_crc = |p: &Placed| {
        let bytes = std::fs::read(&p.segment).unwrap();
        let at = p.offset as usize + 4;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    };
    let (code, v, stderr) = json_run(&["dump", "--json", "--physical"], dir);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v.len(), placed.len());
    for (r, p) in v.iter().zip(&placed) {
        assert_eq!(r["lsn"], p.lsn);
        assert_eq!(
            r["segment"],
            p.segment.file_name().unwrap().to_str().unwrap()
        );
        assert_eq!(r["offset"], p.offset);
        assert_eq!(r["frame_len"], p.len);
        assert_eq!(r["crc"], stored_crc(p));
    }
    let out = logbook()
        .args(["dump", "--physical"])
        .arg(dir)
        .output()
        .unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(0));
    for (line, p) in stdout.lines().zip(&placed) {
        let expected = format!(
            "{:>8}  {}  offset {:>8}  len {:>6}  crc {:#010x}  ",
            p.lsn,
            p.segment.file_name().unwrap().to_str().unwrap(),
            p.offset,
            p.len,
            stored_crc(p)
        );
        assert!(line.starts_with(&expected), "{line}\n{expected}");
    }
    // Without --physical, none of it.
    let (_, v, _) = json_run(&["dump", "--json"], dir);
    assert!(v[0].get("crc").is_none());
}

#[test]
fn dump_since_and_until_take_epoch_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_log(dir, 2, 20);
    let placed = placement(dir);
    let pivot = &placed[placed.len() / 2];
    let epoch = format!(
        "{}.{:06}",
        pivot.timestamp_us / 1_000_000,
        pivot.timestamp_us % 1_000_000
    );
    let from: Vec<u64> = placed
        .iter()
        .filter(|p| p.timestamp_us >= pivot.timestamp_us)
        .map(|p| p.lsn)
        .collect();
    let before: Vec<u64> = placed
        .iter()
        .filter(|p| p.timestamp_us < pivot.timestamp_us)
        .map(|p| p.lsn)
        .collect();
    let lsns = |v: &[Value]| -> Vec<u64> { v.iter().map(|r| r["lsn"].as_u64().unwrap()).collect() };
    let since = format!("@{epoch}");
    let (code, v, stderr) = json_run(&["dump", "--json", "--since", &since], dir);
    assert_eq!(code, Some(0), "{since}: {stderr}");
    assert_eq!(lsns(&v), from, "{since}");
    // Without the '@' it is a bare number: an LSN, refused as a time.
    let (code, _, stderr) = json_run(&["dump", "--json", "--since", &epoch], dir);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("write @{epoch}")), "{stderr}");
    let (code, v, stderr) = json_run(&["dump", "--json", "--until", &since], dir);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lsns(&v), before);
    // Whole seconds: nothing was written in 1970.
    let (code, v, stderr) = json_run(&["dump", "--json", "--until", "@86400"], dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(v.is_empty());
    // Not a time: a usage error naming the forms.
    let (code, _, stderr) = json_run(&["dump", "--since", "@12x"], dir);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("@epoch-seconds (@1764410000 or @1764410000.5)"),
        "{stderr}"
    );
}

#[test]
fn completions_for_each_shell_come_from_the_command_line_definition() {
    for (shell, marker) in [
        ("bash", "_logbook()"),
        ("zsh", "#compdef logbook"),
        ("fish", "complete -c logbook"),
    ] {
        let out = logbook().args(["completions", shell]).output().unwrap();
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}");
        // Every command and a recent flag are there.
        for word in ["sessions", "verify", "repair", "physical", "reverse"] {
            assert!(stdout.contains(word), "{shell}: {word}");
        }
    }
    let out = logbook().args(["completions", "tcsh"]).output().unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Hidden from the command list, named in the help's epilogue.
    let out = logbook().arg("--help").output().unwrap();
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("logbook completions bash"), "{stdout}");
    assert!(stdout.contains("logbook man"), "{stdout}");
}

#[test]
fn man_prints_the_page_or_writes_one_per_command() {
    let out = logbook().arg("man").output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(".TH logbook 1"), "{stdout}");
    assert!(stdout.contains("sessions"), "{stdout}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let out = logbook().args(["man", "--dir"]).arg(&dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "logbook-compact.1",
            "logbook-delete.1",
            "logbook-demo.1",
            "logbook-dump.1",
            "logbook-export.1",
            "logbook-fork.1",
            "logbook-import.1",
            "logbook-key-id.1",
            "logbook-key-new.1",
            "logbook-key.1",
            "logbook-repair.1",
            "logbook-replay.1",
            "logbook-resume.1",
            "logbook-retain.1",
            "logbook-sessions.1",
            "logbook-ship.1",
            "logbook-stats.1",
            "logbook-verify.1",
            "logbook.1",
        ]
    );
    // It names each file it wrote.
    assert_eq!(stdout.lines().count(), names.len(), "{stdout}");
    let dump = std::fs::read_to_string(dir.join("logbook-dump.1")).unwrap();
    assert!(dump.contains(".TH logbook-dump 1"), "{dump}");
    assert!(dump.contains("\\-\\-physical"), "{dump}");
    assert!(dump.contains("logbook dump"), "{dump}");
}

/// `fork` appends a new session holding the original's history up to the
/// LSN given; `sessions` notes where it came from; `replay` shows it; the
/// original is unchanged; a point before the session or an unknown one is
/// "nothing found" and changes nothing.
#[test]
fn fork_makes_a_session_from_another_up_to_an_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 2, 6);
    let original = w.sessions[1];
    // The original's third record (records alternate between the two).
    let at = 6u64;
    let before = logbook()
        .args(["replay", "--json"])
        .arg(tmp.path())
        .arg(original.to_string())
        .output()
        .unwrap();
    let out = logbook()
        .args(["fork", "--json"])
        .arg(tmp.path())
        .arg(&original.to_string()[..8])
        .args(["--at", &at.to_string()])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let forked: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(forked["from"], original.to_string());
    assert_eq!(forked["at_lsn"], at);
    assert_eq!(forked["forked_lsn"], 13, "after the 12 records");
    assert_eq!(forked["copied"], 3);
    let fork_id = forked["session"].as_str().unwrap().to_owned();
    // Its history: the original's first three events, after the fork record.
    let replay = logbook()
        .args(["replay", "--json"])
        .arg(tmp.path())
        .arg(&fork_id)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&replay);
    assert_eq!(replay.status.code(), Some(0), "{stderr}");
    let state: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(state["events"], 4);
    let texts_of = |v: &Value| -> Vec<String> {
        v["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let originals: Vec<String> = w
        .records
        .iter()
        .enumerate()
        .filter(|(i, (s, _))| *s == original && (*i as u64) < at)
        .filter_map(|(_, (_, e))| match e {
            SessionEvent::UserMessage(t) | SessionEvent::TextComplete(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts_of(&state), originals);
    // Where it came from.
    let sessions = logbook().arg("sessions").arg(tmp.path()).output().unwrap();
    let (stdout, _) = texts(&sessions);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&fork_id[..8]))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains(&format!("fork of {}@{at}", &original.to_string()[..8])),
        "{line}"
    );
    let json = logbook()
        .args(["sessions", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let fork_line = json_lines(&texts(&json).0)
        .into_iter()
        .find(|v| v["session"] == fork_id.as_str())
        .unwrap();
    assert_eq!(fork_line["forked_from"]["session"], original.to_string());
    assert_eq!(fork_line["forked_from"]["at_lsn"], at);
    // The original is as it was.
    let after = logbook()
        .args(["replay", "--json"])
        .arg(tmp.path())
        .arg(original.to_string())
        .output()
        .unwrap();
    assert_eq!(texts(&before).0, texts(&after).0);
    // Nothing found, nothing changed.
    let segment_bytes = || {
        segments(tmp.path())
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect::<Vec<_>>()
    };
    let bytes = segment_bytes();
    for (session, at) in [(original.to_string(), "1"), ("0000".to_owned(), "5")] {
        let out = logbook()
            .arg("fork")
            .arg(tmp.path())
            .arg(&session)
            .args(["--at", at])
            .output()
            .unwrap();
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.starts_with("logbook: nothing found:"), "{stderr}");
    }
    assert_eq!(segment_bytes(), bytes);
}

/// `replay --at` shows a session as it was at an LSN or a time.
#[test]
fn replay_at_shows_the_session_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    // Two sessions interleaved: the first's LSNs are 1, 3, .. 11, and it
    // ends with Done.
    let w = write_log(tmp.path(), 2, 6);
    let id = w.sessions[0].to_string();
    let at = |point: &str| {
        let out = logbook()
            .args(["replay", "--json"])
            .arg(tmp.path())
            .arg(&id)
            .args(["--at", point])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        (out.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = at("6");
    assert_eq!(code, Some(0), "{stderr}");
    let state: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(state["events"], 3);
    assert_eq!(state["last_lsn"], 5);
    assert_eq!(state["as_of"]["lsn"], 6);
    assert_eq!(state["as_of"]["last_lsn"], 5);
    assert_eq!(state["status"], "running", "not yet done at LSN 6");
    // The whole session: done.
    let (code, stdout, _) = at("11");
    assert_eq!(code, Some(0));
    let state: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(state["status"], "completed");
    // By time: the time of record 2.
    let dump = logbook()
        .args(["dump", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let records = json_lines(&texts(&dump).0);
    let t3 = records[2]["ts"].as_str().unwrap().to_owned();
    let (code, stdout, stderr) = at(&t3);
    assert_eq!(code, Some(0), "{stderr}");
    let state: Value = serde_json::from_str(stdout.trim()).unwrap();
    // Records appended in the same µs as LSN 3 count too.
    assert!(state["last_lsn"].as_u64().unwrap() >= 3, "{state}");
    assert_eq!(state["as_of"]["time"], t3.as_str());
    // Before its first record.
    let (code, _, stderr) = at("0");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no record at or before LSN 0"), "{stderr}");
    // Text output says which point.
    let out = logbook()
        .arg("replay")
        .arg(tmp.path())
        .arg(&id)
        .args(["--at", "4"])
        .output()
        .unwrap();
    assert!(
        texts(&out)
            .0
            .starts_with("as of LSN 4 (its last record then: LSN 3)"),
        "{}",
        texts(&out).0
    );
}

/// `export` then `import` into another log (from a file and from standard
/// input) then `export` again: the same lines, LSNs aside; a bad line is
/// named, exits 2 and creates nothing.
#[test]
fn export_import_round_trip_and_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let w = write_log(&a, 3, 5);
    let exported = logbook().arg("export").arg(&a).output().unwrap();
    let (first, stderr) = texts(&exported);
    assert_eq!(exported.status.code(), Some(0), "{stderr}");
    let lines = json_lines(&first);
    assert_eq!(lines.len(), w.records.len());
    for (line, (session, event)) in lines.iter().zip(&w.records) {
        assert_eq!(line["v"], 1);
        assert_eq!(line["session"], session.to_string());
        assert_eq!(line["kind"], event.kind());
        assert!(line["ts_us"].as_u64().unwrap() > 0);
    }
    let file = tmp.path().join("export.jsonl");
    std::fs::write(&file, &first).unwrap();
    let out = logbook()
        .args(["import", "--create"])
        .arg(&b)
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("imported 15 event(s) of 3 session(s)"),
        "{stdout}"
    );
    let out = logbook()
        .args(["import", "--create"])
        .arg(&c)
        .arg("-")
        .write_stdin(first.clone())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    let strip = |text: &str| {
        json_lines(text)
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("lsn");
                v
            })
            .collect::<Vec<_>>()
    };
    for dir in [&b, &c] {
        let again = logbook().arg("export").arg(dir).output().unwrap();
        assert_eq!(strip(&first), strip(&texts(&again).0));
    }
    // One session only.
    let one = logbook()
        .arg("export")
        .arg(&a)
        .args(["--session", &w.sessions[1].to_string()[..8]])
        .output()
        .unwrap();
    let one = json_lines(&texts(&one).0);
    assert_eq!(one.len(), 5);
    assert!(
        one.iter()
            .all(|l| l["session"] == w.sessions[1].to_string())
    );
    // A bad line: named, nothing created.
    let mut bad = first.lines().take(4).collect::<Vec<_>>().join("\n");
    bad.push_str("\n{\"v\":1,\"lsn\":5}\n");
    std::fs::write(&file, bad).unwrap();
    let d = tmp.path().join("d");
    let out = logbook()
        .args(["import", "--create"])
        .arg(&d)
        .arg(&file)
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 5: not an export line"), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    assert!(!d.exists(), "nothing created");
}

/// An encrypted log through the CLI: `import --key-file` writes one;
/// `sessions`, `replay` and `export` read it with the key, and without it
/// fail naming the segment and the key id (exit 2); `verify` without the
/// key checks every frame and notes what it could not decode.
#[test]
fn an_encrypted_log_reads_with_its_key_and_names_the_key_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (clear, enc) = (tmp.path().join("clear"), tmp.path().join("enc"));
    let w = write_log(&clear, 2, 5);
    let key = tmp.path().join("key");
    std::fs::write(&key, "42".repeat(32)).unwrap();
    let exported = logbook().arg("export").arg(&clear).output().unwrap();
    let file = tmp.path().join("all.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let out = logbook()
        .args(["import", "--create"])
        .arg(&enc)
        .arg(&file)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    // Nothing of the events in the clear on disk.
    for segment in segments(&enc) {
        let bytes = std::fs::read(&segment).unwrap();
        assert!(!bytes.windows(13).any(|x| x == b"answer number"));
    }
    let with_key = |args: &[&str]| {
        logbook()
            .args(args)
            .arg(&enc)
            .arg("--key-file")
            .arg(&key)
            .output()
            .unwrap()
    };
    let listed = with_key(&["sessions", "--json"]);
    assert_eq!(listed.status.code(), Some(0), "{}", texts(&listed).1);
    assert_eq!(json_lines(&texts(&listed).0).len(), 2);
    let again = with_key(&["export"]);
    let strip = |text: &str| {
        json_lines(text)
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("lsn");
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&texts(&exported).0), strip(&texts(&again).0));
    let replayed = logbook()
        .args(["replay", "--json"])
        .arg(&enc)
        .arg(w.sessions[0].to_string())
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(replayed.status.code(), Some(0), "{}", texts(&replayed).1);
    let state: Value = serde_json::from_str(texts(&replayed).0.trim()).unwrap();
    assert_eq!(state["events"], 5);
    assert_eq!(state["status"], "completed");
    // Without the key: exit 2, naming the segment and the key.
    let out = logbook().arg("sessions").arg(&enc).output().unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("00000000000000000001.wal is encrypted with key"),
        "{stderr}"
    );
    let out = logbook()
        .arg("replay")
        .arg(&enc)
        .arg(w.sessions[0].to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", texts(&out).1);
    // verify without the key: frames checked, payloads noted, exit 0.
    let out = logbook().arg("verify").arg(&enc).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("note: 10 record(s) encrypted with a key not given"),
        "{stdout}"
    );
    // A bad key file is a clear error.
    std::fs::write(&key, "not a key").unwrap();
    let out = with_key(&["sessions"]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--key-file"), "{stderr}");
    assert!(
        !stderr.contains("not a key"),
        "never prints the key: {stderr}"
    );
}

/// `replay` of a forked session says it is a fork, and of what, as
/// `sessions` does (text and JSON; issue 21, the new user's bug 10).
#[test]
fn replay_of_a_fork_says_it_is_a_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_log(tmp.path(), 2, 6);
    let original = w.sessions[1].to_string();
    let out = logbook()
        .args(["fork", "--json"])
        .arg(tmp.path())
        .args([&original, "--at", "6"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let fork: Value = serde_json::from_str(texts(&out).0.trim()).unwrap();
    let fork_id = fork["session"].as_str().unwrap().to_owned();
    let text = logbook()
        .arg("replay")
        .arg(tmp.path())
        .arg(&fork_id)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&text);
    assert_eq!(text.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "fork of: session {original}, its history up to LSN 6"
        )),
        "{stdout}"
    );
    let json = logbook()
        .args(["replay", "--json"])
        .arg(tmp.path())
        .arg(&fork_id)
        .output()
        .unwrap();
    let state: Value = serde_json::from_str(texts(&json).0.trim()).unwrap();
    assert_eq!(
        state["forked_from"]["session"],
        original.as_str(),
        "{state}"
    );
    assert_eq!(state["forked_from"]["at_lsn"], 6, "{state}");
    // The original is no fork.
    let json = logbook()
        .args(["replay", "--json"])
        .arg(tmp.path())
        .arg(&original)
        .output()
        .unwrap();
    let state: Value = serde_json::from_str(texts(&json).0.trim()).unwrap();
    assert!(state.get("forked_from").is_none(), "{state}");
}

/// Damage in a sealed segment after `sessions` stored its summaries
/// (`.sum`/`.run`): `verify` finds it (exit 1); `sessions` and `stats`,
/// which count that segment from its summaries without reading it again,
/// never report it as checked: they say how much they did not read and
/// point to `logbook verify` (text and JSON), and `stats` never prints a
/// bare "problems: 0" (issue 21, the new user's bug 3).
#[test]
fn sessions_and_stats_over_damage_behind_summaries_never_claim_a_check() {
    let tmp = tempfile::tempdir().unwrap();
    write_log(tmp.path(), 3, 40);
    assert!(segments(tmp.path()).len() >= 3);
    let run = |args: &[&str]| {
        let out = logbook().args(args).arg(tmp.path()).output().unwrap();
        let (stdout, stderr) = texts(&out);
        (out.status.code(), stdout, stderr)
    };
    // A first pass reads every record (and stores the summaries): its
    // "problems: 0" is a checked one.
    let (code, stdout, _) = run(&["stats"]);
    assert_eq!(code, Some(0));
    assert!(stdout.lines().any(|l| l == "problems: 0"), "{stdout}");
    let (code, _, stderr) = run(&["sessions"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "sum")),
        "no summaries were stored"
    );
    // Four bytes overwritten inside the first (sealed) segment.
    let (lsn, _) = middle_lsns(tmp.path());
    let p = placement(tmp.path())
        .into_iter()
        .find(|p| p.lsn == lsn)
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p.segment)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"XXXX", p.offset + 52).unwrap();
    let (code, _, _) = run(&["verify"]);
    assert_eq!(code, Some(1));
    let verify_hint = format!("logbook verify {}", tmp.path().display());
    for args in [&["sessions"][..], &["sessions", "--json"][..]] {
        let (code, stdout, stderr) = run(args);
        // Either it saw the damage (exit 1), or it says it did not look:
        // on stdout under the table, on stderr beside JSON Lines.
        let said = if args.len() > 1 { &stderr } else { &stdout };
        assert!(
            code == Some(1)
                || (code == Some(0)
                    && said.contains("not read again")
                    && said.contains(&verify_hint)),
            "{args:?}: {code:?}\n{stdout}\n{stderr}"
        );
    }
    let (code, stdout, stderr) = run(&["stats"]);
    let problems = stdout
        .lines()
        .find(|l| l.starts_with("problems:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        code == Some(1) || (problems.contains("not read again") && problems.contains(&verify_hint)),
        "{code:?}: {problems}\n{stderr}"
    );
    assert_ne!(problems, "problems: 0");
    let (_, stdout, _) = run(&["stats", "--json"]);
    let stats: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        stats["problems"].as_u64() > Some(0)
            || stats["from_summaries"]["records"].as_u64() > Some(0),
        "{stats}"
    );
}

/// The keys of the chain tests: a key file holding `byte` 32 times, and
/// its ring.
fn chain_key(
    dir: &std::path::Path,
    byte: u8,
) -> (std::path::PathBuf, std::sync::Arc<logbook_wal::KeyRing>) {
    let hex = format!("{byte:02x}").repeat(32);
    let path = dir.join(format!("key-{byte:02x}"));
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    let key = logbook_wal::Key::from_hex(&hex).unwrap();
    (path, std::sync::Arc::new(logbook_wal::KeyRing::new(key)))
}

/// An encrypted log of `n` records over several small segments in `dir`.
fn encrypted_chain_log(
    dir: &std::path::Path,
    ring: &std::sync::Arc<logbook_wal::KeyRing>,
    n: usize,
) {
    let wal = Wal::open(
        dir,
        WalOptions {
            encryption: Some(ring.clone()),
            ..small_options()
        },
    )
    .unwrap();
    let id = uuid::Uuid::new_v4();
    for i in 0..n {
        wal.append(id, &event(i, n, true)).unwrap();
    }
    wal.close().unwrap();
}

/// The log's head as the library sees it after a whole read with `ring`:
/// `LSN:HEX`.
fn library_head(
    dir: &std::path::Path,
    ring: &std::sync::Arc<logbook_wal::KeyRing>,
) -> (u64, String) {
    let mut reader = logbook_wal::Reader::open(dir)
        .unwrap()
        .with_keys(ring.clone());
    for r in reader.by_ref() {
        r.unwrap();
    }
    let (lsn, tag) = reader.chain_head().unwrap();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    (lsn, hex)
}

fn verify_with(
    dir: &std::path::Path,
    key: &std::path::Path,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let out = logbook()
        .arg("verify")
        .arg(dir)
        .arg("--key-file")
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    (out.status.code(), stdout, stderr)
}

/// `verify --key-file` on a clean encrypted log: the chain is checked, the
/// head printed is the library's `Reader::chain_head` after a whole read,
/// and it matches the head the writer published in LOCK; `--expect-head`
/// with that head passes (also once the log has grown), with a wrong tag or
/// an LSN past the end is a problem, malformed or without the key a usage
/// error.
#[test]
fn verify_with_the_key_prints_the_head_and_compares_an_expected_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (key, ring) = chain_key(tmp.path(), 0x42);
    encrypted_chain_log(&dir, &ring, 90);
    assert!(segments(&dir).len() >= 2);
    let (lsn, tag) = library_head(&dir, &ring);
    assert_eq!(lsn, 90);
    let head = format!("{lsn}:{tag}");

    let (code, stdout, stderr) = verify_with(&dir, &key, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("chain: checked"), "{stdout}");
    assert!(stdout.contains(&format!("head: {head} (")), "{stdout}");
    assert!(
        stdout.contains("head: matches the head the writer published at LSN 90"),
        "{stdout}"
    );
    let (code, v, stderr) = json_run(
        &["verify", "--json", "--key-file", key.to_str().unwrap()],
        &dir,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let s = v.last().unwrap();
    assert_eq!(s["chain"], "checked");
    assert_eq!(s["head"], head.as_str());
    assert_eq!(s["head_lsn"], lsn);
    assert_eq!(s["head_tag"], tag.as_str());
    assert_eq!(s["published_head"]["lsn"], lsn);
    assert_eq!(s["published_head"]["found"], "holds");
    assert_eq!(s["expected_head"], Value::Null);
    assert_eq!(s["sealed_records"], 0);

    // The recorded head.
    let (code, stdout, stderr) = verify_with(&dir, &key, &["--expect-head", &head]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("head as expected: the log's chain holds {head}")),
        "{stdout}"
    );

    // The log grows: the recorded head is still in its chain.
    let wal = Wal::open(
        &dir,
        WalOptions {
            encryption: Some(ring.clone()),
            ..small_options()
        },
    )
    .unwrap();
    for i in 0..5 {
        wal.append(uuid::Uuid::new_v4(), &event(i + 1, 10, false))
            .unwrap();
    }
    wal.close().unwrap();
    let (code, stdout, stderr) = verify_with(&dir, &key, &["--expect-head", &head]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "head as expected: the log's chain holds {head} (the log has grown since, to LSN 95)"
        )),
        "{stdout}"
    );
    let (new_lsn, new_tag) = library_head(&dir, &ring);
    assert!(
        stdout.contains(&format!("head: {new_lsn}:{new_tag} (")),
        "{stdout}"
    );

    // A wrong tag: a located problem, exit 1.
    let mut wrong = tag.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = format!("{lsn}:{}", String::from_utf8(wrong).unwrap());
    let (code, v, stderr) = json_run(
        &[
            "verify",
            "--json",
            "--key-file",
            key.to_str().unwrap(),
            "--expect-head",
            &wrong,
        ],
        &dir,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0]["kind"], "head_mismatch");
    assert_eq!(v[0]["lsn"], lsn);
    assert!(v[0]["segment"].as_str().unwrap().ends_with(".wal"), "{v:?}");
    assert!(v[0]["offset"].as_u64().unwrap() > 0);
    assert_eq!(v[1]["expected_head"]["found"], "differs");
    let (code, stdout, _) = verify_with(&dir, &key, &["--expect-head", &wrong]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("head NOT as expected"), "{stdout}");

    // An LSN past the end.
    let past = format!("99:{tag}");
    let (code, stdout, stderr) = verify_with(&dir, &key, &["--expect-head", &past]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("problem: the log ends at LSN 95, before the expected head 99:"),
        "{stdout}"
    );

    // Malformed: a usage error.
    for bad in [
        "60",
        "60:abc",
        "x:00112233445566778899aabbccddeeff",
        "0:00112233445566778899aabbccddeeff",
    ] {
        let (code, _, stderr) = verify_with(&dir, &key, &["--expect-head", bad]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("is not a head"), "{stderr}");
    }

    // Without the key: the chain is not checked, and --expect-head is a
    // usage error saying why.
    let out = logbook().arg("verify").arg(&dir).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("chain: not checked: the log is encrypted and no key was given"),
        "{stdout}"
    );
    assert!(!stdout.contains("head:"), "{stdout}");
    let (code, v, _) = json_run(&["verify", "--json"], &dir);
    assert_eq!(code, Some(0));
    assert_eq!(v[0]["chain"], "not_checked");
    assert_eq!(v[0]["head"], Value::Null);
    assert_eq!(v[0]["sealed_records"], 95);
    let out = logbook()
        .arg("verify")
        .arg(&dir)
        .args(["--expect-head", &head])
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs the log's key"), "{stderr}");
}

/// A record of a sealed segment whose ciphertext was changed (its CRC
/// fixed): `verify --key-file` reports it where it is, as a problem.
#[test]
fn verify_with_the_key_locates_a_tampered_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (key, ring) = chain_key(tmp.path(), 0x43);
    encrypted_chain_log(&dir, &ring, 60);
    let victim = logbook_wal::Reader::open(&dir)
        .unwrap()
        .with_keys(ring.clone())
        .map(Result::unwrap)
        .nth(20)
        .unwrap();
    let (seg, at) = (victim.segment.clone(), victim.offset as usize);
    let mut bytes = std::fs::read(&seg).unwrap();
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 48 + 2] ^= 0x01;
    let crc = crc32fast::hash(&bytes[at + 8..at + 48 + len]);
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();

    let (code, v, stderr) = json_run(
        &["verify", "--json", "--key-file", key.to_str().unwrap()],
        &dir,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(v[0]["type"], "problem");
    assert_eq!(v[0]["kind"], "decrypt_failed");
    assert_eq!(v[0]["segment"], seg.to_str().unwrap());
    assert_eq!(v[0]["offset"], at);
    assert_eq!(v[0]["lsn"], victim.lsn);
    let s = v.last().unwrap();
    assert_eq!(s["ok"], false);
    assert!(s["problems"].as_u64().unwrap() >= 1);
    let (code, stdout, _) = verify_with(&dir, &key, &[]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains(&format!(
            "problem: {} offset {at} (LSN {}): the payload does not decrypt",
            seg.display(),
            victim.lsn
        )),
        "{stdout}"
    );
    assert!(stdout.contains("not a head to record"), "{stdout}");
}

/// A segment in the clear planted after the encrypted ones: a located
/// problem (never its records), and the key table names it `clear`.
#[test]
fn verify_with_the_key_locates_a_planted_clear_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (key, ring) = chain_key(tmp.path(), 0x44);
    encrypted_chain_log(&dir, &ring, 30);
    // A clear segment from LSN 31, as a keyless attacker writes one: the
    // frames of a clear log's records 31 and 32 under a header of its own.
    let other = tmp.path().join("other");
    let wal = Wal::open(
        &other,
        WalOptions {
            segment_size: 1 << 20,
            ..small_options()
        },
    )
    .unwrap();
    for i in 0..32 {
        let e = if i < 30 {
            SessionEvent::Done
        } else {
            SessionEvent::UserMessage("FORGED".into())
        };
        wal.append(uuid::Uuid::nil(), &e).unwrap();
    }
    wal.close().unwrap();
    let placed = placement(&other);
    let (from, to) = (
        placed[30].offset as usize,
        (placed[31].offset + placed[31].len) as usize,
    );
    let bytes = std::fs::read(&placed[30].segment).unwrap();
    let header = logbook_wal::SegmentHeader {
        codec_id: logbook_bus::codec::CODEC_ID,
        base_lsn: 31,
        created_us: 1,
        key_id: None,
    };
    let mut planted_bytes = header.encode().to_vec();
    planted_bytes.extend_from_slice(&bytes[from..to]);
    let planted = dir.join("00000000000000000031.wal");
    std::fs::write(&planted, planted_bytes).unwrap();

    let (code, v, stderr) = json_run(
        &["verify", "--json", "--key-file", key.to_str().unwrap()],
        &dir,
    );
    assert_eq!(code, Some(1), "{stderr}");
    let forged: Vec<&Value> = v.iter().filter(|p| p["kind"] == "forged").collect();
    assert_eq!(forged.len(), 1, "{v:?}");
    assert_eq!(forged[0]["segment"], planted.to_str().unwrap());
    assert_eq!(forged[0]["offset"], 0);
    assert_eq!(forged[0]["lsn"], 31);
    let s = v.last().unwrap();
    assert_eq!(s["records"], 30, "the forged records are not counted");
    assert_eq!(s["head_lsn"], 30);
    let keys: Vec<&Value> = s["segment_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["key"])
        .collect();
    assert_eq!(keys.last().unwrap().as_str(), Some("clear"));
    let (code, stdout, _) = verify_with(&dir, &key, &[]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains(&format!(
            "problem: {} offset 0 (LSN 31): a segment in the clear where the log is encrypted",
            planted.display()
        )),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.contains("00000000000000000031.wal "))
        .unwrap();
    assert!(row.contains(" clear "), "{stdout}");
}

/// A log that went clear, then key A, then key B: verify names each
/// segment's key, or `clear`, in the table and in JSON, and checks the
/// chain across them.
#[test]
fn verify_names_each_segments_key_clear_then_a_then_b() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (key_a, ring_a) = chain_key(tmp.path(), 0x0a);
    let (key_b, _) = chain_key(tmp.path(), 0x0b);
    let both = std::sync::Arc::new(
        logbook_wal::KeyRing::from_keys(vec![
            logbook_wal::Key::from_file(&key_b).unwrap(),
            logbook_wal::Key::from_file(&key_a).unwrap(),
        ])
        .unwrap(),
    );
    let id = uuid::Uuid::new_v4();
    for ring in [None, Some(ring_a.clone()), Some(both.clone())] {
        let wal = Wal::open(
            &dir,
            WalOptions {
                encryption: ring,
                ..WalOptions::default()
            },
        )
        .unwrap();
        for i in 1..4 {
            wal.append(id, &event(i, 10, false)).unwrap();
        }
        wal.close().unwrap();
    }
    assert_eq!(segments(&dir).len(), 3);
    let hex_id =
        |k: &std::path::Path| format!("{:08x}", logbook_wal::Key::from_file(k).unwrap().id());
    let (a, b) = (hex_id(&key_a), hex_id(&key_b));
    let args = [
        "--key-file",
        key_b.to_str().unwrap(),
        "--key-file",
        key_a.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = verify_with(&dir, &key_b, &args[2..]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains(".wal")).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows[0].contains(" clear "), "{stdout}");
    assert!(rows[1].contains(&format!(" {a} ")), "{stdout}");
    assert!(rows[2].contains(&format!(" {b} ")), "{stdout}");
    assert!(
        stdout.contains("chain: checked: the log is encrypted from LSN 4"),
        "{stdout}"
    );
    let (lsn, tag) = library_head(&dir, &both);
    assert!(stdout.contains(&format!("head: {lsn}:{tag} (")), "{stdout}");
    let mut json = vec!["verify", "--json"];
    json.extend(args);
    let (code, v, stderr) = json_run(&json, &dir);
    assert_eq!(code, Some(0), "{stderr}");
    let keys: Vec<Option<&str>> = v[0]["segment_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str())
        .collect();
    assert_eq!(keys, [Some("clear"), Some(a.as_str()), Some(b.as_str())]);

    // With key B alone: A's records come back sealed, and the chain is
    // checked only in part (said so).
    let (code, stdout, stderr) = verify_with(&dir, &key_b, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("chain: checked, but for the records sealed with a key not given"),
        "{stdout}"
    );
}

/// `sessions` and `replay` of any segment file but the log's first found
/// nothing ("0 session(s)") while `dump` of the same file showed its
/// records: the reader placed itself at LSN 0, on the log's first segment,
/// which a one-segment reader does not read. A one-segment source lists
/// and replays what it holds.
#[test]
fn sessions_and_replay_of_a_later_segment_file_show_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wal = Wal::open(dir, small_options()).unwrap();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for i in 0..60 {
        wal.append(
            a,
            &SessionEvent::UserMessage(format!("alpha {i} {}", "x".repeat(40))),
        )
        .unwrap();
        wal.append(
            b,
            &SessionEvent::UserMessage(format!("bravo {i} {}", "y".repeat(40))),
        )
        .unwrap();
    }
    wal.close().unwrap();
    let segments = segments(dir);
    assert!(segments.len() >= 3, "{segments:?}");
    for seg in &segments {
        let seg = seg.to_str().unwrap();
        let out = logbook().args(["sessions", seg]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{seg}: {stdout}");
        assert!(stdout.contains("2 session(s)"), "{seg}: {stdout}");
        let out = logbook()
            .args(["replay", seg, &a.to_string(), "--json"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{seg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("alpha"),
            "{seg}"
        );
    }
}

/// One-segment views (`dump SEG --session`, `replay SEG id`, `sessions
/// SEG`) read the tombstones of that segment only and took the segment's
/// first record for the session's beginning: records the log deletes (by
/// a tombstone in a later segment) showed as live, and a session begun in
/// an earlier segment showed as whole. A segment of a log directory now
/// applies the whole log's tombstones, and a session begun before the
/// segment is truncated in its view.
#[test]
fn a_one_segment_view_hides_what_the_log_deletes_and_marks_a_session_begun_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wal = Wal::open(dir, small_options()).unwrap();
    let (s, t) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for id in [s, t] {
        wal.append(
            id,
            &SessionEvent::SessionStarted {
                model: "m".into(),
                cwd: "/w".into(),
                title: None,
            },
        )
        .unwrap();
    }
    let mut kept = 0;
    for i in 0..120 {
        let lsn = wal
            .append(
                s,
                &SessionEvent::UserMessage(format!("turn {i} {}", "z".repeat(40))),
            )
            .unwrap();
        if i == 9 {
            kept = lsn;
        }
        wal.append(t, &SessionEvent::UserMessage(format!("other {i}")))
            .unwrap();
    }
    logbook_replay::delete_after(&wal, s, kept).unwrap();
    wal.close().unwrap();
    let segments = segments(dir);
    assert!(segments.len() >= 3, "{segments:?}");
    let second = segments[1].to_str().unwrap();
    let id = s.to_string();
    let dump = logbook()
        .args(["dump", second, "--session", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        !text.contains("turn "),
        "deleted records shown as live: {text}"
    );
    let out = logbook()
        .args(["replay", second, &id, "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Nothing of the session is live in that segment.
    assert!(
        out.status.code() == Some(1)
            || (v["events"] == 0 && v["transcript"] == Value::Array(vec![])),
        "{v} {stderr}"
    );
    // The other session, begun in the first segment, is cut short there.
    let out = logbook()
        .args(["replay", second, &t.to_string(), "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["truncated"], true, "{v}");
    let listed = logbook().args(["sessions", second]).output().unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("1 session(s)"), "{text}");
    // The first segment holds the beginning and turns 0..9 kept: whole;
    // the last segment's view of the session is cut short.
    let first = segments[0].to_str().unwrap();
    let out = logbook()
        .args(["replay", first, &id, "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["truncated"], false, "{v}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("turn 10 "), "{text}");
}
