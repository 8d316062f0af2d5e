//! Logs for the tests, written with `logbook_wal` directly, and ways to
//! damage them.
#![allow(dead_code, reason = "each test binary uses a part of these helpers")]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_wal::{Reader, SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

/// The `logbook` binary.
pub(crate) fn logbook() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("logbook").unwrap()
}

/// Small segments, not preallocated: a few dozen records span several
/// segments, and each file ends at its last record.
pub(crate) fn small_options() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        preallocate: false,
        ..WalOptions::default()
    }
}

/// The `i`-th event of a session of `n`: a realistic mix, ending in `Done`
/// when `finish`.
pub(crate) fn event(i: usize, n: usize, finish: bool) -> SessionEvent {
    if i == 0 {
        return SessionEvent::SessionStarted {
            model: "model-a".into(),
            cwd: "/work/test".into(),
            title: Some(format!("test session of {n} events")),
        };
    }
    if i + 1 == n && finish {
        return SessionEvent::Done;
    }
    match i % 5 {
        1 => SessionEvent::UserMessage(format!("message {i}: please do the thing")),
        2 => SessionEvent::TokenUsage(TokenDelta {
            source: if i % 2 == 0 {
                TokenSource::Root
            } else {
                TokenSource::RlmSubcall
            },
            model: if i % 3 == 0 { "model-a" } else { "model-b" }.into(),
            prompt_tokens: 100 + i as u64,
            completion_tokens: 10,
            duration_ms: 5,
        }),
        3 => SessionEvent::ToolCallStart {
            tool_call_id: format!("t{i}"),
            name: "bash".into(),
            arguments: format!("{{\"command\":\"echo {i}\"}}"),
        },
        4 => SessionEvent::ToolCallComplete {
            tool_call_id: format!("t{}", i - 1),
            name: "bash".into(),
            output: format!("{}\n", i - 1),
            success: true,
            duration_ms: 3,
        },
        _ => SessionEvent::TextComplete(format!("answer number {i}, with some words in it")),
    }
}

/// What a test log holds.
pub(crate) struct Written {
    /// Every record, in LSN order: session and event.
    pub(crate) records: Vec<(Uuid, SessionEvent)>,
    /// The sessions, in order of their first record.
    pub(crate) sessions: Vec<Uuid>,
}

/// Write `sessions` sessions of `per_session` events each, interleaved;
/// every session but the last finishes with `Done`. The writer is closed.
pub(crate) fn write_log(dir: &Path, sessions: usize, per_session: usize) -> Written {
    let wal = Wal::open(dir, small_options()).unwrap();
    let ids: Vec<Uuid> = (0..sessions).map(|_| Uuid::new_v4()).collect();
    let mut records = Vec::new();
    for i in 0..per_session {
        for (s, id) in ids.iter().enumerate() {
            let e = event(i, per_session, s + 1 < sessions);
            wal.append(*id, &e).unwrap();
            records.push((*id, e));
        }
    }
    wal.close().unwrap();
    Written {
        records,
        sessions: ids,
    }
}

/// Write many records fast (no fsync), for pipes.
pub(crate) fn write_big_log(dir: &Path, records: usize) {
    let wal = Wal::open(
        dir,
        WalOptions {
            sync: SyncPolicy::Never,
            ..small_options()
        },
    )
    .unwrap();
    let id = Uuid::new_v4();
    for i in 0..records {
        wal.append(id, &event(i % 50 + 1, 1000, false)).unwrap();
    }
    wal.close().unwrap();
}

/// The segment files, in order.
pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Where each record is: LSN, segment, offset, frame length, timestamp.
pub(crate) struct Placed {
    pub(crate) lsn: u64,
    pub(crate) segment: PathBuf,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) timestamp_us: u64,
}

pub(crate) fn placement(dir: &Path) -> Vec<Placed> {
    let mut reader = Reader::open(dir).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        out.push(Placed {
            lsn: r.lsn,
            segment: r.segment.to_path_buf(),
            offset: r.offset,
            len: 48 + r.payload.len() as u64,
            timestamp_us: r.timestamp_us,
        });
    }
    out
}

/// Cut the tail segment in the middle of its last record; returns the
/// segment, the cut record's offset and the bytes from it to the new end.
pub(crate) fn cut_tail(dir: &Path) -> (PathBuf, u64, Vec<u8>) {
    let last = placement(dir).pop().unwrap();
    let keep = last.offset + last.len / 2;
    let bytes = std::fs::read(&last.segment).unwrap();
    let cut = bytes[last.offset as usize..keep as usize].to_vec();
    let f = OpenOptions::new().write(true).open(&last.segment).unwrap();
    f.set_len(keep).unwrap();
    // What a writer killed before that record's fsync would have left in
    // LOCK: every LSN below it durable, and nothing more.
    crashed_before(dir, last.lsn);
    (last.segment, last.offset, cut)
}

/// Rewrite the durable watermark in `dir/LOCK` as a writer that crashed
/// before making `lsn` durable would have left it.
pub(crate) fn crashed_before(dir: &Path, lsn: u64) {
    let w = logbook_wal::format::Watermark {
        durable_end: lsn,
        poisoned: false,
        boot_id: logbook_wal::format::BootId::default(),
    };
    std::fs::write(dir.join(logbook_wal::format::LOCK_FILE), w.encode()).unwrap();
}

/// Overwrite 8 bytes inside the payload of the record with LSN `lsn`.
/// Returns its segment and offset.
pub(crate) fn smash(dir: &Path, lsn: u64) -> (PathBuf, u64) {
    smash_placed(&placement(dir), lsn)
}

/// [`smash`], given where the records are.
pub(crate) fn smash_placed(placed: &[Placed], lsn: u64) -> (PathBuf, u64) {
    let p = placed.iter().find(|p| p.lsn == lsn).unwrap();
    let f = OpenOptions::new().write(true).open(&p.segment).unwrap();
    f.write_all_at(&[0xAA; 8], p.offset + 50).unwrap();
    (p.segment.clone(), p.offset)
}

/// The LSN of a record in the middle of the first segment, and of one in
/// the middle of the tail segment.
pub(crate) fn middle_lsns(dir: &Path) -> (u64, u64) {
    let placed = placement(dir);
    let segs = segments(dir);
    assert!(segs.len() >= 2, "the test log needs two segments");
    let in_seg = |s: &PathBuf| -> Vec<u64> {
        placed
            .iter()
            .filter(|p| &p.segment == s)
            .map(|p| p.lsn)
            .collect()
    };
    let first = in_seg(&segs[0]);
    let tail = in_seg(segs.last().unwrap());
    assert!(tail.len() >= 3, "the tail segment needs three records");
    (first[first.len() / 2], tail[tail.len() / 2])
}

/// stdout and stderr of a finished command as text.
pub(crate) fn texts(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// JSON-lines output, one value per line; panics on a line that is not JSON.
pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// What `logbook ARGS | head -1` sees: the first line of stdout, read
/// before stdout is closed; then the exit code and all of stderr.
pub(crate) struct HeadOne {
    pub(crate) first: String,
    pub(crate) code: Option<i32>,
    pub(crate) stderr: String,
}

/// Run `logbook` with `args`, read one line of its stdout and close it
/// (like `head -1` exiting), then wait for it.
pub(crate) fn head_one(args: &[&std::ffi::OsStr]) -> HeadOne {
    use std::io::{BufRead, Read};
    use std::process::{Command, Stdio};
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("logbook"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    HeadOne {
        first,
        code: status.code(),
        stderr: stderr.join().unwrap(),
    }
}
