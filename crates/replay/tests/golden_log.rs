//! Schema evolution: a log written by an earlier build stays readable by
//! every later one. `tests/golden/2026-11-29/` is a small log written by
//! the codec of 2026-11-29 (every event kind it knew, tags 0 to 26, one
//! record each, in three sessions, in one segment); it is checked
//! in and never rewritten. This test reads it back exactly, rebuilds its
//! sessions, and shows what a reader does with a kind newer than itself
//! (`docs/format.md`, "Changing `SessionEvent`").
//!
//! To add a golden log for a newer codec (after appending a variant), run
//! `LOGBOOK_WRITE_GOLDEN=tests/golden/<date> cargo test -p logbook-replay
//! --test golden_log -- --ignored` and add a test for it beside this one;
//! never change an existing one.

use std::path::{Path, PathBuf};

use logbook_bus::{RlmOutcome, SessionEvent, TokenDelta, TokenEstimate, TokenSource, ToolStream};
use logbook_replay::{OnCorruption, SessionStatus, list_sessions_with, session_state};
use logbook_wal::{EventRecord, Reader, Uuid, Wal, WalOptions};

/// Every event the golden log holds, in LSN order (one of each kind the
/// codec of 2026-11-29 knew, in tag order).
fn golden_events() -> Vec<SessionEvent> {
    let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let s = |x: &str| x.to_owned();
    vec![
        SessionEvent::Thinking,
        SessionEvent::TextChunk(s("chunk")),
        SessionEvent::ToolHeartbeat {
            tool_call_id: s("t1"),
            name: s("bash"),
            elapsed_secs: 3,
        },
        SessionEvent::ToolOutputChunk {
            tool_call_id: s("t1"),
            name: s("bash"),
            stream: ToolStream::Stderr,
            chunk: s("oops"),
        },
        SessionEvent::StreamRetry {
            attempt: 1,
            max_restarts: 3,
            reason: s("reset"),
        },
        SessionEvent::TokenEstimate(TokenEstimate {
            model: s("m"),
            request_tokens: 9,
            budget: 10,
        }),
        SessionEvent::RlmProgress {
            trace_id: id,
            iteration: 2,
            max_iterations: 8,
            status: s("ok"),
        },
        SessionEvent::TokenUsage(TokenDelta {
            source: TokenSource::RlmSubcall,
            model: s("m"),
            prompt_tokens: 10,
            completion_tokens: 5,
            duration_ms: 7,
        }),
        SessionEvent::ToolCallStart {
            tool_call_id: s("t1"),
            name: s("bash"),
            arguments: s("{}"),
        },
        SessionEvent::ToolCallComplete {
            tool_call_id: s("t1"),
            name: s("bash"),
            output: s("done"),
            success: true,
            duration_ms: 12,
        },
        SessionEvent::ToolCallMetadata {
            tool_call_id: s("t1"),
            name: s("bash"),
            metadata_json: s("{\"a\":1}"),
        },
        SessionEvent::ApprovalRequest {
            approval_id: s("a1"),
            tool_call_id: s("t1"),
            tool: s("bash"),
            action: s("rm"),
            resource: s("/tmp/x"),
            reason: s("destructive"),
        },
        SessionEvent::TextComplete(s("hello")),
        SessionEvent::ThinkingComplete(s("hmm")),
        SessionEvent::UsageReport {
            prompt_tokens: 1,
            completion_tokens: 2,
            duration_ms: 3,
            model: s("m"),
        },
        SessionEvent::Done,
        SessionEvent::Error(s("boom")),
        SessionEvent::RlmComplete {
            trace_id: id,
            outcome: RlmOutcome::Converged,
            iterations: 3,
            subcalls: 4,
            input_tokens: 100,
            output_tokens: 50,
            elapsed_ms: 999,
            reason: None,
            root_model: s("big"),
            subcall_model_used: Some(s("small")),
        },
        SessionEvent::CompactionStarted {
            trace_id: id,
            reason: s("full"),
            before_tokens: 900,
            budget: 500,
        },
        SessionEvent::CompactionCompleted {
            trace_id: id,
            strategy: s("summarize"),
            before_tokens: 900,
            after_tokens: 400,
            kept_messages: 6,
        },
        SessionEvent::CompactionFailed {
            trace_id: id,
            fell_back_to: Some(s("truncate")),
            reason: s("model error"),
            after_tokens: 480,
            budget: 500,
        },
        SessionEvent::ContextTruncated {
            trace_id: id,
            dropped_tokens: 420,
            kept_messages: 4,
            archive_ref: None,
        },
        SessionEvent::RlmSubcallFallback {
            requested_model: s("a"),
            fallback_model: s("b"),
            reason: s("quota"),
        },
        SessionEvent::SessionStarted {
            model: s("m"),
            cwd: s("/w"),
            title: Some(s("t")),
        },
        SessionEvent::UserMessage(s("please")),
        SessionEvent::SessionResumed { from_lsn: 42 },
        SessionEvent::SessionForked {
            from: id,
            at_lsn: 7,
        },
    ]
}

/// The golden log's session of each record: three sessions in turn.
fn session_of(i: usize) -> Uuid {
    Uuid::from_u128(0x901d_0000 + (i % 3) as u128)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/2026-11-29")
}

/// A copy of the golden log to read (readers store derived files beside
/// a log; the checked-in one is never touched).
fn copy_of_golden() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    tmp
}

#[test]
fn the_golden_log_reads_back_exactly() {
    let tmp = copy_of_golden();
    let expected = golden_events();
    assert_eq!(expected.len(), 27, "tags 0 to 26");
    let mut reader = Reader::open(tmp.path()).unwrap();
    assert_eq!(reader.segments().len(), 1);
    let mut got = Vec::new();
    while let Some(record) = reader.next_ref() {
        let record = EventRecord::decode(&record.unwrap()).unwrap();
        got.push(record);
    }
    assert_eq!(got.len(), expected.len());
    for (i, (record, event)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(record.lsn, i as u64 + 1);
        assert_eq!(record.session, session_of(i));
        assert_eq!(&record.event, event, "LSN {}", record.lsn);
        assert_eq!(record.event.tag(), i, "in tag order");
    }
    assert!(
        got.windows(2)
            .all(|w| w[0].timestamp_us <= w[1].timestamp_us)
    );
}

#[test]
fn the_golden_log_replays() {
    let tmp = copy_of_golden();
    let listed = list_sessions_with(tmp.path(), OnCorruption::Fail).unwrap();
    assert_eq!(listed.sessions.len(), 3);
    assert_eq!(listed.records, 27);
    assert_eq!(listed.unknown.count, 0);
    for s in 0..3 {
        let state = session_state(tmp.path(), session_of(s)).unwrap();
        assert_eq!(state.events(), 9);
        assert_eq!(state.skipped_records(), 0);
    }
    // Session 0 holds Done (tag 15) then later records; session 1 holds
    // Error (16) and the SessionResumed (25) that re-opens it.
    let one = session_state(tmp.path(), session_of(1)).unwrap();
    assert_eq!(one.resumptions().len(), 1);
    assert_eq!(one.status(), &SessionStatus::Running);
    let two = session_state(tmp.path(), session_of(2)).unwrap();
    assert_eq!(two.forked_from().map(|(_, at)| at), Some(7));
}

/// A record of a kind newer than this build (a tag past the last it
/// knows) after the golden records: `list_sessions` and `session_state`
/// count it and skip it; the session is still rebuilt from the rest.
#[test]
fn a_kind_newer_than_the_reader_is_skipped_and_counted() {
    let tmp = copy_of_golden();
    // The golden log was written before log ids: a writer needs it to be
    // given one on purpose (it never mints one for a log with segments).
    logbook_wal::assign_log_id(tmp.path()).unwrap();
    let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let future_tag = logbook_bus::KINDS.len() as u8 + 3;
    wal.append_raw(session_of(0), &[future_tag, 1, 2, 3])
        .unwrap();
    wal.append(session_of(0), &SessionEvent::UserMessage("after it".into()))
        .unwrap();
    wal.close().unwrap();
    let state = session_state(tmp.path(), session_of(0)).unwrap();
    assert_eq!(state.skipped_records(), 1);
    assert_eq!(state.events(), 10);
    assert_eq!(
        state.transcript().last().map(|e| e.text.as_str()),
        Some("after it")
    );
    let listed = list_sessions_with(tmp.path(), OnCorruption::Fail).unwrap();
    assert_eq!(listed.unknown.count, 1);
    assert_eq!(listed.unknown.lsns, [28]);
}

/// Writes the golden log (run by hand, see the module doc).
#[test]
#[ignore = "writes a new golden log; run by hand"]
fn write_golden_log() {
    let Ok(dir) = std::env::var("LOGBOOK_WRITE_GOLDEN") else {
        panic!("set LOGBOOK_WRITE_GOLDEN to the directory to write");
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    assert!(
        !dir.exists(),
        "{} exists: never rewrite a golden log",
        dir.display()
    );
    let options = WalOptions {
        segment_size: logbook_wal::MIN_SEGMENT_SIZE,
        preallocate: false,
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, options).unwrap();
    for (i, event) in golden_events().iter().enumerate() {
        wal.append(session_of(i), event).unwrap();
    }
    wal.close().unwrap();
    // Derived files are not part of it.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// `docs/json.md` shows the JSON of each golden event exactly as
/// `event_to_json` writes it (the doc and the code agree).
#[test]
fn docs_json_shows_every_kind_as_written() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json.md"))
            .unwrap();
    let mut missing = Vec::new();
    let custom = SessionEvent::Custom {
        name: "app.state".into(),
        data: vec![0, 1, 2, 255],
    };
    let mark = SessionEvent::SessionTruncated {
        reason: "retained".into(),
    };
    for event in golden_events().into_iter().chain([custom, mark]) {
        let json = logbook_replay::event_to_json(&event);
        assert_eq!(logbook_replay::event_from_json(&json).as_ref(), Ok(&event));
        // The table's row for the kind: `| `kind` | `{...}` |`, compared as
        // JSON (key order aside).
        let start = format!("| `{}` | `", event.kind());
        let shown = doc.lines().find_map(|l| {
            let rest = l.strip_prefix(&start)?.strip_suffix("` |")?;
            serde_json::from_str::<serde_json::Value>(rest).ok()
        });
        if shown.as_ref() != Some(&json) {
            missing.push(format!("{start}{json}` |"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/json.md lacks:\n{}",
        missing.join("\n")
    );
}

/// The golden log of the codec of 2026-12-03, which appended
/// `session_deleted` (tag 27): a tombstone that deletes one record of
/// session A and one that deletes the whole of session B.
fn golden_2026_12_03() -> Vec<(Uuid, SessionEvent)> {
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    vec![
        (a, SessionEvent::UserMessage("keep".into())),
        (a, SessionEvent::UserMessage("gone".into())),
        (b, SessionEvent::UserMessage("all of b".into())),
        (
            a,
            SessionEvent::SessionDeleted {
                after_lsn: None,
                ranges: vec![(2, 2)],
                reason: "pop".into(),
            },
        ),
        (
            b,
            SessionEvent::SessionDeleted {
                after_lsn: Some(0),
                ranges: vec![],
                reason: "session".into(),
            },
        ),
    ]
}

#[test]
fn the_golden_log_of_2026_12_03_reads_back_and_honours_its_tombstones() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/2026-12-03");
    for entry in std::fs::read_dir(golden).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    let mut reader = Reader::open(tmp.path()).unwrap();
    let mut got = Vec::new();
    while let Some(record) = reader.next_ref() {
        let r = EventRecord::decode(&record.unwrap()).unwrap();
        got.push((r.session, r.event));
    }
    assert_eq!(got, golden_2026_12_03());
    let a = session_state(tmp.path(), Uuid::from_u128(0xa)).unwrap();
    let texts: Vec<&str> = a.transcript().iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["keep"]);
    assert!(matches!(
        session_state(tmp.path(), Uuid::from_u128(0xb)),
        Err(logbook_replay::ReplayError::DeletedSession {
            tombstone_lsn: 5,
            ..
        })
    ));
    let listed = list_sessions_with(tmp.path(), OnCorruption::Fail).unwrap();
    assert_eq!(listed.sessions.len(), 1);
    assert_eq!(listed.deleted.len(), 1);
}

/// Writes the golden log of 2026-12-03 (run by hand:
/// `LOGBOOK_WRITE_GOLDEN=tests/golden/2026-12-03 cargo test -p
/// logbook-replay --test golden_log -- --ignored write_golden_2026_12_03`).
#[test]
#[ignore = "writes a new golden log; run by hand"]
fn write_golden_2026_12_03() {
    let Ok(dir) = std::env::var("LOGBOOK_WRITE_GOLDEN") else {
        panic!("set LOGBOOK_WRITE_GOLDEN to the directory to write");
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    assert!(!dir.exists(), "never rewrite a golden log");
    let options = WalOptions {
        segment_size: logbook_wal::MIN_SEGMENT_SIZE,
        preallocate: false,
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, options).unwrap();
    for (session, event) in golden_2026_12_03() {
        wal.append(session, &event).unwrap();
    }
    wal.close().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".wal") || name == "LOCK" || name == "LOG_ID") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// The golden log of the codec of 2026-12-04, which appended `custom`
/// (tag 28): an application's opaque records (a LangGraph checkpoint, an
/// Agents SDK item), one with empty bytes.
fn golden_2026_12_04() -> Vec<(Uuid, SessionEvent)> {
    let c = Uuid::from_u128(0xc);
    vec![
        (c, SessionEvent::UserMessage("before".into())),
        (
            c,
            SessionEvent::Custom {
                name: "langgraph.checkpoint".into(),
                data: vec![0, 1, 2, 255],
            },
        ),
        (
            c,
            SessionEvent::Custom {
                name: "agents.item".into(),
                data: Vec::new(),
            },
        ),
    ]
}

#[test]
fn the_golden_log_of_2026_12_04_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/2026-12-04");
    for entry in std::fs::read_dir(golden).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    let mut reader = Reader::open(tmp.path()).unwrap();
    let mut got = Vec::new();
    while let Some(record) = reader.next_ref() {
        let r = EventRecord::decode(&record.unwrap()).unwrap();
        got.push((r.session, r.event));
    }
    assert_eq!(got, golden_2026_12_04());
    let events: Vec<SessionEvent> =
        logbook_replay::session_events(tmp.path(), Uuid::from_u128(0xc))
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
    let want: Vec<SessionEvent> = golden_2026_12_04().into_iter().map(|(_, e)| e).collect();
    assert_eq!(events, want);
    let state = session_state(tmp.path(), Uuid::from_u128(0xc)).unwrap();
    assert_eq!(state.events(), 3);
    assert_eq!(state.events_of_kind("custom"), 2);
    // In JSON, the bytes are base64 (docs/json.md).
    let json = logbook_replay::event_to_json(&want[1]);
    assert_eq!(
        json,
        serde_json::json!({"kind": "Custom", "name": "langgraph.checkpoint", "data": "AAEC/w=="})
    );
    assert_eq!(logbook_replay::event_from_json(&json), Ok(want[1].clone()));
}

/// Writes the golden log of 2026-12-04 (run by hand:
/// `LOGBOOK_WRITE_GOLDEN=tests/golden/2026-12-04 cargo test -p
/// logbook-replay --test golden_log -- --ignored write_golden_2026_12_04`).
#[test]
#[ignore = "writes a new golden log; run by hand"]
fn write_golden_2026_12_04() {
    let Ok(dir) = std::env::var("LOGBOOK_WRITE_GOLDEN") else {
        panic!("set LOGBOOK_WRITE_GOLDEN to the directory to write");
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    assert!(!dir.exists(), "never rewrite a golden log");
    let options = WalOptions {
        segment_size: logbook_wal::MIN_SEGMENT_SIZE,
        preallocate: false,
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, options).unwrap();
    for (session, event) in golden_2026_12_04() {
        wal.append(session, &event).unwrap();
    }
    wal.close().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".wal") || name == "LOCK" || name == "LOG_ID") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// The golden log of the codec of 2026-12-04 that appended
/// `session_truncated` (tag 29): session T begins with a truncation mark
/// (it was imported from a log its beginning was retained away from), U
/// with a `SessionStarted`.
fn golden_2026_12_04b() -> Vec<(Uuid, SessionEvent)> {
    let (t, u) = (Uuid::from_u128(0x7), Uuid::from_u128(0x8));
    vec![
        (
            t,
            SessionEvent::SessionTruncated {
                reason: "its beginning was retained away".into(),
            },
        ),
        (
            u,
            SessionEvent::SessionStarted {
                model: "m".into(),
                cwd: "/".into(),
                title: None,
            },
        ),
        (t, SessionEvent::UserMessage("after the cut".into())),
        (u, SessionEvent::UserMessage("whole".into())),
    ]
}

/// The log starts at LSN 1, yet T is truncated (its first record is the
/// mark) in the listing and in its replay; U is not.
#[test]
fn the_golden_log_of_2026_12_04b_reads_back_and_marks_its_truncated_session() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/2026-12-04b");
    for entry in std::fs::read_dir(golden).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    let mut reader = Reader::open(tmp.path()).unwrap();
    let mut got = Vec::new();
    while let Some(record) = reader.next_ref() {
        let r = EventRecord::decode(&record.unwrap()).unwrap();
        got.push((r.session, r.event));
    }
    assert_eq!(got, golden_2026_12_04b());
    let (t, u) = (Uuid::from_u128(0x7), Uuid::from_u128(0x8));
    let listed = list_sessions_with(tmp.path(), OnCorruption::Fail).unwrap();
    assert!(listed.session(t).unwrap().truncated);
    assert!(!listed.session(u).unwrap().truncated);
    let state = session_state(tmp.path(), t).unwrap();
    assert!(state.truncated());
    assert_eq!(state.transcript()[0].text, "after the cut");
    assert!(!session_state(tmp.path(), u).unwrap().truncated());
    let json = logbook_replay::event_to_json(&got[0].1);
    assert_eq!(
        json,
        serde_json::json!({"kind": "SessionTruncated", "reason": "its beginning was retained away"})
    );
}

/// Writes the golden log of 2026-12-04b (run by hand:
/// `LOGBOOK_WRITE_GOLDEN=tests/golden/2026-12-04b cargo test -p
/// logbook-replay --test golden_log -- --ignored write_golden_2026_12_04b`).
#[test]
#[ignore = "writes a new golden log; run by hand"]
fn write_golden_2026_12_04b() {
    let Ok(dir) = std::env::var("LOGBOOK_WRITE_GOLDEN") else {
        panic!("set LOGBOOK_WRITE_GOLDEN to the directory to write");
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    assert!(!dir.exists(), "never rewrite a golden log");
    let options = WalOptions {
        segment_size: logbook_wal::MIN_SEGMENT_SIZE,
        preallocate: false,
        ..WalOptions::default()
    };
    let wal = Wal::open(&dir, options).unwrap();
    for (session, event) in golden_2026_12_04b() {
        wal.append(session, &event).unwrap();
    }
    wal.close().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".wal") || name == "LOCK" || name == "LOG_ID") {
            std::fs::remove_file(path).unwrap();
        }
    }
}
