//! Review 23: an outside attack on deletion, retention and erasure by
//! compaction (issue 23), through the replay crate. Each test is one
//! reproduction of a defect: it fails on the code it was written against.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use logbook_bus::SessionEvent;
use logbook_replay::{delete_session, list_sessions};
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

fn options() -> WalOptions {
    WalOptions {
        segment_size: 8192,
        ..WalOptions::default()
    }
}

/// Every file of `dir` whose bytes contain `needle` (`grep -rl`).
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            hits.push(path.display().to_string());
        }
    }
    hits.sort();
    hits
}

/// The derived files (`.sum`, `.run`, `.idx`) of `dir` and their bytes.
fn derived(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".sum") || n.ends_with(".run") || n.ends_with(".idx")
        })
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// `Wal::compact` swaps a segment in (rename, directory fsync) and only
/// then removes its derived files (`index::remove`: `.idx`, `.sum`,
/// `.run`; the run beside the first segment at the very end). A process
/// killed between the two leaves the old summaries, which hold the
/// deleted session's title (its first user message) in the clear. The
/// next `compact --apply` finds nothing left to rewrite (the segment
/// already holds placeholders), returns `Ok` with nothing in the active
/// segment, and leaves them: `grep -r` still finds the deleted phrase,
/// against the bound `Wal::compact` documents ("once this returns `Ok`
/// with `in_active_segment` 0, no byte of a listed record's payload is
/// left in the log directory").
///
/// The crash is reproduced by putting back the `.run` file as it was
/// before the compaction (what a kill after the last rename, before its
/// removal, leaves).
#[test]
fn summaries_left_by_a_compaction_killed_after_its_rename_keep_the_deleted_phrase() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let wal = Wal::open(dir, options()).unwrap();
    let (gone, kept) = (Uuid::from_u128(0x90e), Uuid::from_u128(0x4e9));
    wal.append(
        gone,
        &SessionEvent::UserMessage("secret-aardvark-phrase".into()),
    )
    .unwrap();
    for i in 0..200 {
        wal.append(kept, &SessionEvent::UserMessage(format!("kept {i}")))
            .unwrap();
        wal.append(gone, &SessionEvent::TextComplete(format!("reply {i}")))
            .unwrap();
    }
    wal.close().unwrap();
    // A listing stores summaries (with titles) beside the sealed segments.
    assert_eq!(list_sessions(dir).unwrap().sessions.len(), 2);
    let before = derived(dir);
    assert!(
        !files_holding(dir, b"secret-aardvark-phrase")
            .iter()
            .all(|f| f.ends_with(".wal")),
        "the summaries hold the title: {:?}",
        files_holding(dir, b"secret-aardvark-phrase")
    );

    let wal = Wal::open(dir, options()).unwrap();
    delete_session(&wal, gone).unwrap();
    let done = wal.compact().unwrap();
    assert!(done.erased > 0 && done.in_active_segment == 0, "{done:?}");
    wal.close().unwrap();
    assert_eq!(
        files_holding(dir, b"secret-aardvark-phrase"),
        Vec::<String>::new()
    );

    // The state a kill after the last rename, before the run beside the
    // first segment is removed (`wal.rs`, the end of `compact`), leaves:
    // that `.run` file as it was. (A power cut before the final directory
    // fsync can bring back the `.sum` files too: their unlinks are not
    // fsynced on their own.)
    let mut restored = 0;
    for (path, bytes) in &before {
        if path.to_string_lossy().ends_with(".run") {
            std::fs::write(path, bytes).unwrap();
            restored += 1;
        }
    }
    assert_eq!(restored, 1);
    // Run again after the restart, as an operator would: Ok, nothing left
    // in the active segment ...
    let wal = Wal::open(dir, options()).unwrap();
    let again = wal.compact().unwrap();
    assert_eq!(again.in_active_segment, 0, "{again:?}");
    wal.close().unwrap();
    // ... so no byte of the deleted session may be left.
    assert_eq!(
        files_holding(dir, b"secret-aardvark-phrase"),
        Vec::<String>::new(),
        "a compaction returned Ok and the deleted phrase is still on disk ({again:?})"
    );
}

/// `logbook_replay::delete` plans by scanning the session, then appends
/// the tombstone: an append to the session by another thread in between
/// lands below the tombstone, so `after_lsn = Some(0)` deletes it (every
/// reader hides it), but the tombstone's ranges do not list it, and
/// compaction erases only listed records (`compact.rs`, `Listed::erases`).
/// The record is deleted and never erased: after `Wal::compact` returns
/// `Ok` with nothing in the active segment, its phrase is still on disk.
/// `docs/format.md` says "`logbook_replay::delete` lists every record it
/// deletes".
#[test]
fn a_record_appended_while_a_delete_plans_is_deleted_but_never_erased() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // Group commit by time (a documented policy): appends return once
    // queued, so the plan's scan (durable records only) does not see the
    // ones racing it. With `Always` the window is narrower, not closed.
    let wal = Wal::open(
        dir,
        WalOptions {
            sync: logbook_wal::SyncPolicy::Batch {
                max_delay: std::time::Duration::from_millis(500),
                max_bytes: 64 << 20,
            },
            ..options()
        },
    )
    .unwrap();
    let (gone, kept) = (Uuid::from_u128(0x90e), Uuid::from_u128(0x4e9));
    for i in 0..500 {
        wal.append(gone, &SessionEvent::UserMessage(format!("early-{i:05}")))
            .unwrap();
        wal.append(kept, &SessionEvent::UserMessage(format!("kept {i}")))
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (wal, stop) = (wal.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                std::thread::sleep(std::time::Duration::from_micros(100));
                let text = format!("racing-okapi-{i:06}");
                let lsn = wal
                    .append(gone, &SessionEvent::UserMessage(text.clone()))
                    .unwrap();
                out.push((lsn, text));
                i += 1;
            }
            out
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    let plan = delete_session(&wal, gone).unwrap();
    stop.store(true, Ordering::Relaxed);
    let appended = appender.join().unwrap();
    let tombstone = plan.tombstone_lsn.unwrap();
    let below: Vec<&(u64, String)> = appended.iter().filter(|(l, _)| *l < tombstone).collect();
    // The race: appends landed between the plan's scan and its tombstone
    // (the delete lists them with a further tombstone of ranges only).
    let raced = plan.tombstones.iter().any(|t| {
        matches!(
            t,
            SessionEvent::SessionDeleted {
                after_lsn: None,
                ..
            }
        )
    });
    assert!(
        raced,
        "no append landed between plan and tombstone; run again"
    );
    // Every record the tombstones delete is listed ...
    let unlisted: Vec<&&(u64, String)> = below
        .iter()
        .filter(|(l, _)| !plan.lsns.contains(l))
        .collect();
    assert!(
        unlisted.is_empty(),
        "{} record(s) below tombstone LSN {tombstone} deleted and not listed, e.g. {:?}",
        unlisted.len(),
        &unlisted[..unlisted.len().min(3)]
    );
    let unlisted = below;
    // Readers hide them: the tombstone deletes the session below it (the
    // records appended after it go on as the session).
    let shown: Vec<String> = match logbook_replay::session_state(dir, gone) {
        Ok(state) => state.transcript().iter().map(|t| t.text.clone()).collect(),
        Err(logbook_replay::ReplayError::DeletedSession { .. }) => Vec::new(),
        Err(e) => panic!("{e}"),
    };
    for (_, text) in &unlisted {
        assert!(!shown.contains(text), "{text} is deleted");
    }
    let done = wal.compact().unwrap();
    assert_eq!(done.in_active_segment, 0, "{done:?}");
    wal.close().unwrap();
    let left: Vec<String> = unlisted
        .iter()
        .filter(|(_, text)| !files_holding(dir, text.as_bytes()).is_empty())
        .map(|(lsn, text)| format!("LSN {lsn} {text}"))
        .collect();
    assert!(
        left.is_empty(),
        "{} deleted record(s) (below tombstone LSN {tombstone}, hidden by every reader) still on disk after compaction, e.g. {:?}",
        left.len(),
        &left[..left.len().min(3)]
    );
}

/// The key-less attacker of `docs/security.md` (write access to an
/// encrypted log's directory, no key) hides a record from `replay`
/// (`session_state`, which reads one session through `Reader::session`):
/// the record's frame is replaced by a redacted placeholder as compaction
/// writes one (its 16-byte tag kept, so the next record's chain still
/// checks) whose clear header names another session. A whole-log read
/// reports it as forged; the replay of the victim's session, with the key,
/// shows the session without the record and no error.
#[test]
fn a_placeholder_naming_another_session_hides_a_record_from_replay() {
    use logbook_wal::{Key, KeyRing, Reader};
    use std::sync::{Arc, OnceLock};
    static RING: OnceLock<Arc<KeyRing>> = OnceLock::new();
    let ring = RING
        .get_or_init(|| {
            let ring = Arc::new(KeyRing::new(Key::new([9; 32])));
            logbook_wal::install_default_keys(ring.clone()).unwrap();
            ring
        })
        .clone();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_size: 8192,
            encryption: Some(ring.clone()),
            ..WalOptions::default()
        },
    )
    .unwrap();
    let mut victim = 0;
    for i in 0..100 {
        let lsn = wal
            .append(a, &SessionEvent::UserMessage(format!("a says {i:03}")))
            .unwrap();
        if i == 3 {
            victim = lsn;
        }
        wal.append(b, &SessionEvent::UserMessage(format!("b says {i:03}")))
            .unwrap();
    }
    wal.close().unwrap();
    let before = logbook_replay::session_state(dir, a)
        .unwrap()
        .transcript()
        .len();
    assert_eq!(before, 100);
    // Find the victim's frame; replace it (no key needed).
    let (path, at) = {
        let mut r = Reader::open(dir).unwrap().without_keys();
        loop {
            let rec = r.next_ref().unwrap().unwrap();
            if rec.lsn == victim {
                break (rec.segment.to_path_buf(), rec.offset as usize);
            }
        }
    };
    let bytes = std::fs::read(&path).unwrap();
    let fields = logbook_wal::FrameFields::parse(&bytes[at..]).unwrap();
    let len = fields.payload_len as usize;
    let tag = bytes[at + 48 + len - 16..at + 48 + len].to_vec();
    let h = fields.header;
    let mut frame = Vec::new();
    frame.extend_from_slice(&(16u32 | 1 << 31).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&h.lsn.to_le_bytes());
    frame.extend_from_slice(&h.sync_mark.to_le_bytes());
    frame.extend_from_slice(&h.timestamp_us.to_le_bytes());
    frame.extend_from_slice(b.as_bytes());
    frame.extend_from_slice(&tag);
    let mut crc = crc32fast::Hasher::new();
    crc.update(b"LBREDACT");
    crc.update(&frame[8..]);
    let crc = crc.finalize();
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&frame);
    out.extend_from_slice(&bytes[at + 48 + len..]);
    std::fs::write(&path, out).unwrap();

    match logbook_replay::session_state(dir, a) {
        Err(e) => eprintln!("refused: {e}"),
        Ok(state) => {
            let texts: Vec<String> = state.transcript().iter().map(|t| t.text.clone()).collect();
            assert!(
                texts.contains(&"a says 003".to_owned()),
                "replay of session a, with the key, shows {} message(s) without `a says 003` and no error",
                texts.len()
            );
        }
    }
}

/// Issue 23: "A session whose beginning was retained away is marked as
/// truncated in listings and replay, never passed off as complete." A
/// fork of such a session copies what is left of it after a
/// `SessionForked` record, which counts as a beginning: the fork is
/// listed and replayed as whole, though its history lacks the original's
/// beginning (`fork.rs` never looks at truncation; `list.rs`
/// `finish_in`: `truncated = log_start > 1 && !began`).
#[test]
fn a_fork_of_a_session_cut_short_by_retention_is_passed_off_as_whole() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let wal = Wal::open(dir, options()).unwrap();
    let s = Uuid::from_u128(0x5e55);
    wal.append(
        s,
        &SessionEvent::SessionStarted {
            model: "m".into(),
            cwd: "/w".into(),
            title: Some("the beginning".into()),
        },
    )
    .unwrap();
    let mut last = 0;
    for i in 0..300 {
        last = wal
            .append(
                s,
                &SessionEvent::UserMessage(format!("turn {i} {}", "y".repeat(60))),
            )
            .unwrap();
    }
    let removed = wal
        .retain(&logbook_wal::Retention {
            before_lsn: Some(150),
            ..logbook_wal::Retention::default()
        })
        .unwrap();
    assert!(!removed.segments.is_empty());
    let state = logbook_replay::session_state(dir, s).unwrap();
    assert!(state.truncated(), "the original is marked");
    let forked = logbook_replay::fork(&wal, s, last).unwrap();
    wal.close().unwrap();
    let fork_state = logbook_replay::session_state(dir, forked.session).unwrap();
    let listed = list_sessions(dir).unwrap();
    let in_listing = listed
        .sessions
        .iter()
        .find(|x| x.session == forked.session)
        .map(|x| x.truncated);
    assert!(
        fork_state.truncated() && in_listing != Some(false),
        "a fork of a truncated session ({} of its turns left) is replayed as whole (truncated: {}) and listed as whole ({in_listing:?})",
        fork_state.transcript().len(),
        fork_state.truncated()
    );
    // Still a fork of the original, with what was left of its history.
    assert_eq!(fork_state.forked_from(), Some((s, last)));
    assert!(forked.truncated);
    assert_eq!(
        fork_state.transcript().len(),
        state.transcript().len(),
        "the fork holds what is left of the original"
    );
}

/// A delete reads the session up to the end the log had reached when it
/// started: another thread appending to the same session as fast as it
/// can never keeps it chasing the tail (the review saw `delete_session`
/// not return within 30 s). Group commit by time, default segments: with
/// tiny segments the writer's own backlog of rolls, not the plan, delays
/// the tombstone's append.
#[test]
fn a_delete_returns_while_the_session_grows_unthrottled() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        d.path(),
        WalOptions {
            sync: logbook_wal::SyncPolicy::Batch {
                max_delay: std::time::Duration::from_millis(5),
                max_bytes: 1 << 20,
            },
            ..WalOptions::default()
        },
    )
    .unwrap();
    let s = Uuid::from_u128(0x9a11);
    for i in 0..200 {
        wal.append(s, &SessionEvent::UserMessage(format!("before {i}")))
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (wal, stop) = (wal.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 2_000_000 {
                wal.append(s, &SessionEvent::UserMessage(format!("racing {i}")))
                    .unwrap();
                i += 1;
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let wal = wal.clone();
        std::thread::spawn(move || {
            let _ = tx.send(delete_session(&wal, s).map(|p| p.lsns.len()));
        });
    }
    // Bounded, it returns within a second or two here; chasing, it took
    // some 25 s.
    let done = rx.recv_timeout(std::time::Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    let deleted = done
        .expect("delete_session did not return within 15 s")
        .unwrap();
    assert!(deleted >= 200, "{deleted}");
    wal.close().unwrap();
}

/// A log of one session whose beginning retention removed (the log starts
/// after LSN 1), left by a process that died: the session is interrupted.
fn cut_short_by_retention(dir: &Path, s: Uuid) {
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_size: 4096,
            preallocate: false,
            ..WalOptions::default()
        },
    )
    .unwrap();
    wal.append(
        s,
        &SessionEvent::SessionStarted {
            model: "m".into(),
            cwd: "/w".into(),
            title: None,
        },
    )
    .unwrap();
    for i in 0..200 {
        wal.append(
            s,
            &SessionEvent::UserMessage(format!("message {i} {}", "x".repeat(40))),
        )
        .unwrap();
    }
    let removed = wal
        .retain(&logbook_wal::Retention {
            before_lsn: Some(100),
            ..logbook_wal::Retention::default()
        })
        .unwrap();
    assert!(!removed.segments.is_empty());
    // No `close`: the process dies, the session stays interrupted.
}

/// `replay DIR <id prefix>` rebuilt the session through
/// `session_state_by_prefix_in`, which never looked at where the log
/// starts: a session cut short by retention replayed as whole by prefix,
/// truncated by full id.
#[test]
fn a_session_cut_short_by_retention_is_truncated_when_replayed_by_prefix() {
    let d = tempfile::tempdir().unwrap();
    let s = Uuid::parse_str("7e57ab1e-0000-4000-8000-000000000001").unwrap();
    cut_short_by_retention(d.path(), s);
    assert!(
        logbook_replay::session_state(d.path(), s)
            .unwrap()
            .truncated()
    );
    let (by_prefix, _) = logbook_replay::session_state_by_prefix(
        d.path(),
        "7e57ab",
        logbook_replay::OnCorruption::Fail,
    )
    .unwrap();
    assert_eq!(by_prefix.session_id(), s);
    assert!(by_prefix.truncated(), "replayed by prefix as whole");
}

/// `resume_many` (and so `resume`) never looked at where the log starts,
/// and `interrupted_at_open` finished its tallies as if the log began at
/// LSN 1: a session cut short by retention was offered for resumption and
/// resumed as whole, while a later replay of it says truncated.
#[test]
fn resume_and_interrupted_at_open_mark_a_session_cut_short_by_retention() {
    let d = tempfile::tempdir().unwrap();
    let s = Uuid::from_u128(0x2e50e);
    cut_short_by_retention(d.path(), s);
    let wal = Wal::open(d.path(), WalOptions::default()).unwrap();
    let cut_off = logbook_replay::interrupted_at_open(&wal).unwrap();
    assert_eq!(cut_off.len(), 1);
    assert!(cut_off[0].truncated, "interrupted_at_open: whole");
    let resumed = logbook_replay::resume(&wal, s).unwrap();
    assert!(resumed.state.truncated(), "resume: whole");
    wal.close().unwrap();
    let later = logbook_replay::session_state(d.path(), s).unwrap();
    assert_eq!(resumed.state.truncated(), later.truncated());
    assert_eq!(resumed.state, later, "Resumed.state is what a replay shows");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Tiny segments: a tombstone lists few ranges, a delete of a session
/// interleaved with another appends several in one batch.
fn tiny() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        preallocate: false,
        ..WalOptions::default()
    }
}

/// A log of `s` (300 records holding "SECRET-") interleaved with another
/// session, and the tombstones a whole delete of `s` appends to it, in
/// their order (seen on a copy).
fn with_a_delete_batch(dir: &Path, s: Uuid) -> Vec<SessionEvent> {
    let other = Uuid::from_u128(0x0f4e);
    let wal = Wal::open(dir, tiny()).unwrap();
    for i in 0..300 {
        wal.append(s, &SessionEvent::UserMessage(format!("SECRET-{i:03}")))
            .unwrap();
        wal.append(other, &SessionEvent::UserMessage(format!("kept {i}")))
            .unwrap();
    }
    wal.close().unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    let wal = Wal::open(copy.path(), tiny()).unwrap();
    let plan = delete_session(&wal, s).unwrap();
    wal.close().unwrap();
    assert!(plan.tombstones.len() > 1, "{}", plan.tombstones.len());
    plan.tombstones
}

/// The records of `s` a tombstone of `tombstones` lists.
fn listed(tombstones: &[SessionEvent]) -> u64 {
    tombstones
        .iter()
        .map(|t| match t {
            SessionEvent::SessionDeleted { ranges, .. } => {
                ranges.iter().map(|(a, b)| b - a + 1).sum::<u64>()
            }
            _ => 0,
        })
        .sum()
}

/// Delete `s` (whatever is left of it to delete), compact, and say how
/// many "SECRET-" phrases are left in the directory.
fn delete_compact_and_count(dir: &Path, s: Uuid) -> usize {
    let wal = Wal::open(dir, tiny()).unwrap();
    let _ = delete_session(&wal, s);
    // Reopened: the tombstones' segment is sealed, the active one new.
    wal.close().unwrap();
    let wal = Wal::open(dir, tiny()).unwrap();
    wal.compact().unwrap();
    wal.close().unwrap();
    let mut left = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        left += bytes.windows(7).filter(|w| w == b"SECRET-").count();
    }
    left
}

/// A delete appends its tombstones in one batch, and every one carried
/// the deletion's `after_lsn`: a crash keeping a prefix of the batch (or
/// a kill across a segment roll) left a tombstone hiding records no
/// tombstone listed. Compaction erases listed records only, and a new
/// delete was refused ("was deleted"): the phrases stayed on disk for
/// good. Now only the batch's last tombstone hides, so any durable prefix
/// deletes exactly what it lists.
#[test]
fn a_delete_cut_short_after_its_first_tombstone_deletes_only_what_it_lists() {
    let d = tempfile::tempdir().unwrap();
    let s = Uuid::from_u128(0x5ec);
    let tombstones = with_a_delete_batch(d.path(), s);
    // What a crash keeping only the batch's first tombstone leaves.
    let wal = Wal::open(d.path(), tiny()).unwrap();
    wal.append(s, &tombstones[0]).unwrap();
    wal.close().unwrap();
    let visible = match logbook_replay::session_state(d.path(), s) {
        Ok(state) => state.transcript().len() as u64,
        Err(_) => 0,
    };
    assert_eq!(
        visible + listed(&tombstones[..1]),
        300,
        "records of the session neither visible nor listed (deleted, never erased)"
    );
    assert_eq!(delete_compact_and_count(d.path(), s), 0);
}

/// A log a delete cut short left hiding records it does not list (the
/// order the delete used to append in, or a crash between its batch and
/// the tombstones listing records appended while it planned): a delete
/// run again lists them, and compaction then erases them.
#[test]
fn a_delete_run_again_lists_what_a_delete_cut_short_hides_unlisted() {
    let d = tempfile::tempdir().unwrap();
    let s = Uuid::from_u128(0x5ed);
    let tombstones = with_a_delete_batch(d.path(), s);
    let SessionEvent::SessionDeleted { ranges, reason, .. } = &tombstones[0] else {
        panic!("not a tombstone");
    };
    // A tombstone that hides the whole session and lists a part of it.
    let wal = Wal::open(d.path(), tiny()).unwrap();
    wal.append(
        s,
        &SessionEvent::SessionDeleted {
            after_lsn: Some(0),
            ranges: ranges.clone(),
            reason: reason.clone(),
        },
    )
    .unwrap();
    let again = delete_session(&wal, s).unwrap();
    assert_eq!(
        again.lsns.len() as u64 + listed(&tombstones[..1]),
        300,
        "a delete run again lists what is hidden unlisted"
    );
    wal.close().unwrap();
    assert_eq!(delete_compact_and_count(d.path(), s), 0);
}

/// One record with a bad CRC in a sealed segment made `compact` fail
/// whole (the pass gathering tombstones stopped at the damage), though
/// durability.md says a segment that does not read cleanly is left and
/// reported (`Compaction::skipped`) and the rest erased. The gathering now
/// passes over damage (a damaged tombstone deletes nothing for readers
/// either), and the damaged segment is skipped.
#[test]
fn one_damaged_record_leaves_its_segment_and_compaction_erases_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (s, other) = (Uuid::from_u128(0xda3), Uuid::from_u128(0x07e));
    let wal = Wal::open(dir, tiny()).unwrap();
    for i in 0..150 {
        wal.append(s, &SessionEvent::UserMessage(format!("SECRET-{i:03}")))
            .unwrap();
        wal.append(other, &SessionEvent::UserMessage(format!("kept {i}")))
            .unwrap();
    }
    delete_session(&wal, s).unwrap();
    wal.close().unwrap();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 4, "{segments:?}");
    // The last byte of the second segment's last record: its CRC fails.
    let damaged = segments[1].clone();
    let mut bytes = std::fs::read(&damaged).unwrap();
    *bytes.last_mut().unwrap() ^= 0x55;
    std::fs::write(&damaged, bytes).unwrap();
    let wal = Wal::open(dir, tiny()).unwrap();
    let done = wal.compact().unwrap();
    wal.close().unwrap();
    assert_eq!(done.skipped.len(), 1, "{:?}", done.skipped);
    assert_eq!(done.skipped[0].0, damaged, "{:?}", done.skipped);
    assert!(done.erased > 0);
    let left: Vec<String> = files_holding(dir, b"SECRET-")
        .into_iter()
        .filter(|f| f.ends_with(".wal") && *f != damaged.display().to_string())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
