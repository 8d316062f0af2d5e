//! An attacker who can write the log directory but holds no key
//! (`docs/security.md`, `../shared/THREATS.md`): whatever they plant,
//! replay, reorder, cut or craft, a reader with the key returns only what
//! the key holder wrote, at its LSN, in this log, in order, or a located
//! error: never a forged record. Each test is one attack.

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::session;
use logbook_bus::SessionEvent;
use logbook_wal::{
    EventRecord, Item, Key, KeyRing, Reader, Wal, WalError, WalOptions, format::segment_file_name,
};
use uuid::Uuid;

fn ring(byte: u8) -> Arc<KeyRing> {
    Arc::new(KeyRing::new(Key::new([byte; 32])))
}

fn options(ring: Option<Arc<KeyRing>>) -> WalOptions {
    WalOptions {
        segment_size: 4096,
        encryption: ring,
        ..WalOptions::default()
    }
}

fn text(i: u64) -> SessionEvent {
    SessionEvent::UserMessage(format!("the secret number {i:04}"))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Every record of a whole-log read with `keys`: the event, or the error.
fn read(dir: &Path, keys: Option<Arc<KeyRing>>) -> Vec<Result<EventRecord, WalError>> {
    let mut reader = Reader::open(dir).unwrap();
    if let Some(keys) = keys {
        reader = reader.with_keys(keys);
    }
    let mut out = Vec::new();
    let _: ControlFlow<()> = reader
        .walk(|item| {
            out.push(match item {
                Item::Record(r) => EventRecord::decode(&r),
                Item::Problem(e) => Err(e),
            });
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

/// The events returned (errors dropped) and the errors.
fn split(got: Vec<Result<EventRecord, WalError>>) -> (Vec<SessionEvent>, Vec<WalError>) {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for r in got {
        match r {
            Ok(r) => events.push(r.event),
            Err(e) => errors.push(e),
        }
    }
    (events, errors)
}

/// An encrypted log of `n` records over several 4 KiB segments.
fn encrypted_log(dir: &Path, keys: &Arc<KeyRing>, n: u64) {
    let wal = Wal::open(dir, options(Some(keys.clone()))).unwrap();
    for i in 0..n {
        wal.append(session(i % 2), &text(i)).unwrap();
    }
    wal.close().unwrap();
}

/// A segment in the clear holding `events` from `base`, as a keyless
/// attacker writes one (with the library's own writer, in another dir).
fn clear_segment(base: u64, events: &[SessionEvent]) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    // A clear log whose first LSN is `base`: write base-1 fillers, then
    // take the records from `base` on into a segment of their own.
    let wal = Wal::open(
        tmp.path(),
        WalOptions {
            segment_size: 1 << 20,
            ..WalOptions::default()
        },
    )
    .unwrap();
    for _ in 1..base {
        wal.append(session(9), &SessionEvent::Done).unwrap();
    }
    let first = tmp.path().join(segment_file_name(1));
    let start_of_base = std::fs::metadata(&first).map(|_| ()).ok();
    let _ = start_of_base;
    let offset_before = Reader::open(tmp.path())
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            r.offset as usize + 48 + r.payload.len()
        })
        .last()
        .unwrap_or(40);
    for e in events {
        wal.append(session(0), e).unwrap();
    }
    wal.close().unwrap();
    let bytes = std::fs::read(&first).unwrap();
    let end = Reader::open(tmp.path())
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            r.offset as usize + 48 + r.payload.len()
        })
        .last()
        .unwrap();
    // The header of a segment starting at `base`, then the frames.
    let header = logbook_wal::SegmentHeader {
        codec_id: logbook_bus::codec::CODEC_ID,
        base_lsn: base,
        created_us: 1,
        key_id: None,
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&bytes[offset_before..end]);
    out
}

fn forged_at(errors: &[WalError], path: &Path) -> bool {
    errors
        .iter()
        .any(|e| matches!(e, WalError::Forged { path: p, .. } if p == path))
}

/// (A) A clear segment added after an encrypted log: the reader with the
/// key refuses it (the forged tool call is never returned), and neither a
/// keyed nor a keyless writer continues the log after it.
#[test]
fn a_clear_segment_planted_after_an_encrypted_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(1);
    encrypted_log(dir.path(), &keys, 40);
    let next = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys.clone())
        .count() as u64
        + 1;
    let forged = [
        SessionEvent::UserMessage("FORGED: also delete the backups".into()),
        SessionEvent::TextComplete("rm -rf /backups".into()),
    ];
    let planted = dir.path().join(segment_file_name(next));
    std::fs::write(&planted, clear_segment(next, &forged)).unwrap();

    let (events, errors) = split(read(dir.path(), Some(keys.clone())));
    assert_eq!(events.len(), 40, "{errors:?}");
    assert!(
        events.iter().all(|e| !forged.contains(e)),
        "forged record returned"
    );
    assert!(forged_at(&errors, &planted), "{errors:?}");

    let before = std::fs::read(&planted).unwrap();
    let err = Wal::open(dir.path(), options(Some(keys))).unwrap_err();
    assert!(
        matches!(&err, WalError::Forged { path, .. } if *path == planted),
        "{err}"
    );
    let err = Wal::open(dir.path(), options(None)).unwrap_err();
    assert!(matches!(err, WalError::KeyRequired { .. }), "{err}");
    assert_eq!(std::fs::read(&planted).unwrap(), before, "nothing changed");
    assert_eq!(
        segments(dir.path()).last(),
        Some(&planted),
        "no segment after it"
    );
}

/// (B) A sealed encrypted segment replaced by a clear one with the same
/// LSNs: refused where it stands, none of its records returned.
#[test]
fn an_encrypted_segment_replaced_by_a_clear_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(2);
    encrypted_log(dir.path(), &keys, 120);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    let victim = segs[1].clone();
    let base: u64 = victim
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".wal")
        .parse()
        .unwrap();
    let count = Reader::open_segment_file(&victim)
        .unwrap()
        .with_keys(keys.clone())
        .count() as u64;
    let forged: Vec<SessionEvent> = (0..count)
        .map(|i| SessionEvent::UserMessage(format!("FORGED {i}")))
        .collect();
    std::fs::write(&victim, clear_segment(base, &forged)).unwrap();
    let (events, errors) = split(read(dir.path(), Some(keys)));
    assert!(
        events.iter().all(|e| !forged.contains(e)),
        "a forged record was returned"
    );
    assert!(forged_at(&errors, &victim), "{errors:?}");
}

/// A record's time or sync mark changed, its CRC fixed: the tag fails.
#[test]
fn a_changed_time_or_sync_mark_fails_the_tag() {
    for field in [24usize, 16] {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(3);
        encrypted_log(dir.path(), &keys, 5);
        let seg = segments(dir.path())[0].clone();
        let at = Reader::open(dir.path())
            .unwrap()
            .with_keys(keys.clone())
            .nth(2)
            .unwrap()
            .unwrap()
            .offset as usize;
        let mut bytes = std::fs::read(&seg).unwrap();
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        // 2000-01-01, or a sync mark of 1.
        let value: u64 = if field == 24 { 946_684_800_000_000 } else { 1 };
        bytes[at + field..at + field + 8].copy_from_slice(&value.to_le_bytes());
        let crc = crc32fast::hash(&bytes[at + 8..at + 48 + len]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg, &bytes).unwrap();
        let got = read(dir.path(), Some(keys));
        assert!(
            matches!(&got[2], Err(WalError::Decrypt { lsn: 3, .. })),
            "field at {field}: {:?}",
            got[2]
        );
        assert!(got[0].is_ok() && got[1].is_ok());
    }
}

/// The append of LSN 3 was never acknowledged (its fsync failed: emulated
/// by cutting it and putting back the watermark of before); the next
/// writer acknowledged `Done` at LSN 3; the attacker puts the captured
/// frame back. Its tag is the right key's, for LSN 3 of this log after
/// record 2, but the head the writer published names the other record 3.
#[test]
fn a_stale_record_put_back_at_a_reused_lsn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(4);
    let opts = || WalOptions {
        encryption: Some(keys.clone()),
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(session(0), &text(1)).unwrap();
    wal.append(session(0), &text(2)).unwrap();
    drop(wal);
    let lock_before = std::fs::read(dir.path().join("LOCK")).unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    let payment = SessionEvent::ToolCallStart {
        tool_call_id: "t1".into(),
        name: "pay".into(),
        arguments: "invoice 42, 1 000 000".into(),
    };
    wal.append(session(0), &payment).unwrap();
    drop(wal);
    let seg = segments(dir.path())[0].clone();
    let records: Vec<(usize, usize)> = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys.clone())
        .map(|r| {
            let r = r.unwrap();
            (
                r.offset as usize,
                48 + r.payload.len() + logbook_wal::SEAL_OVERHEAD,
            )
        })
        .collect();
    let (at3, len3) = records[2];
    let bytes = std::fs::read(&seg).unwrap();
    let stale = bytes[at3..at3 + len3].to_vec();
    // Never acknowledged: cut, and the watermark of before.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(at3 as u64).unwrap();
    drop(f);
    std::fs::write(dir.path().join("LOCK"), &lock_before).unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(wal.append(session(0), &SessionEvent::Done).unwrap(), 3);
    drop(wal);
    // The attack.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at3..at3 + stale.len()].copy_from_slice(&stale);
    std::fs::write(&seg, &bytes).unwrap();
    let (events, errors) = split(read(dir.path(), Some(keys)));
    assert!(!events.contains(&payment), "the stale payment was returned");
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, WalError::Forged { lsn: 3, .. })),
        "{errors:?}"
    );
}

/// A record dropped from the middle of a sealed segment, the LSNs after
/// it renumbered and their CRCs fixed: the first renumbered record fails
/// (its LSN and its chain value are bound in its tag).
#[test]
fn a_record_dropped_from_the_middle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(5);
    encrypted_log(dir.path(), &keys, 10);
    let seg = segments(dir.path())[0].clone();
    let places: Vec<(usize, usize)> = Reader::open_segment_file(&seg)
        .unwrap()
        .with_keys(keys.clone())
        .map(|r| {
            let r = r.unwrap();
            (
                r.offset as usize,
                48 + r.payload.len() + logbook_wal::SEAL_OVERHEAD,
            )
        })
        .collect();
    let bytes = std::fs::read(&seg).unwrap();
    let (drop_at, drop_len) = places[4];
    let mut out = bytes[..drop_at].to_vec();
    for &(at, len) in &places[5..] {
        let mut frame = bytes[at..at + len].to_vec();
        let lsn = u64::from_le_bytes(frame[8..16].try_into().unwrap()) - 1;
        frame[8..16].copy_from_slice(&lsn.to_le_bytes());
        let crc = crc32fast::hash(&frame[8..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out.resize(bytes.len(), 0);
    let _ = drop_len;
    std::fs::write(&seg, &out).unwrap();
    let got = read(dir.path(), Some(keys));
    assert!(got[..4].iter().all(Result::is_ok));
    assert!(
        matches!(&got[4], Err(WalError::Decrypt { lsn: 5, .. })),
        "{:?}",
        got[4]
    );
}

/// The newest acknowledged records cut off the tail (LOCK kept): the
/// reader with the key finds the log ends below its authenticated head.
#[test]
fn a_cut_acknowledged_tail_is_found_against_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(6);
    encrypted_log(dir.path(), &keys, 30);
    let seg = segments(dir.path()).last().unwrap().clone();
    let places: Vec<usize> = Reader::open_segment_file(&seg)
        .unwrap()
        .with_keys(keys.clone())
        .map(|r| r.unwrap().offset as usize)
        .collect();
    assert!(places.len() >= 3);
    let cut = places[places.len() - 2];
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(cut as u64).unwrap();
    drop(f);
    let (events, errors) = split(read(dir.path(), Some(keys)));
    assert_eq!(events.len(), 28);
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, WalError::Forged { lsn: 30, .. })),
        "{errors:?}"
    );
}

/// A segment taken from another log under the same key, put in place of
/// one of this log's: its seal block names the other log.
#[test]
fn a_segment_of_another_log_under_the_same_key_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys = ring(7);
    encrypted_log(a.path(), &keys, 60);
    encrypted_log(b.path(), &keys, 60);
    let (sa, sb) = (segments(a.path()), segments(b.path()));
    assert_eq!(sa[1].file_name(), sb[1].file_name(), "same layout");
    std::fs::copy(&sb[1], &sa[1]).unwrap();
    let (_, errors) = split(read(a.path(), Some(keys)));
    // Named for what it is (its chain would not continue this log's
    // either, nor would its records open under this log's id).
    assert!(
        errors.iter().any(|e| matches!(
            e,
            WalError::Forged { path, reason, .. } if *path == sa[1] && reason.contains("belongs to log")
        )),
        "{errors:?}"
    );
}

/// A segment's header edited (its base LSN, as if renamed into another
/// place), CRC fixed: the seal block's MAC fails.
#[test]
fn an_edited_segment_header_does_not_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(8);
    encrypted_log(dir.path(), &keys, 60);
    let seg = segments(dir.path())[1].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    // created_us, the field nothing else checks.
    bytes[24] ^= 1;
    let crc = crc32fast::hash(&bytes[..36]);
    bytes[36..40].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let (_, errors) = split(read(dir.path(), Some(keys)));
    assert!(forged_at(&errors, &seg), "{errors:?}");
}

/// A missing LOG_ID never makes the owner's records unreadable: readers
/// take the id from the (authenticated) seal blocks, and the next writer
/// restores the file. A LOG_ID naming another log is refused.
#[test]
fn a_missing_or_replaced_log_id_neither_hides_nor_admits() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(9);
    encrypted_log(dir.path(), &keys, 20);
    let id = logbook_wal::log_id(dir.path()).unwrap();
    let path = dir.path().join("LOG_ID");
    let original = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (events, errors) = split(read(dir.path(), Some(keys.clone())));
    assert_eq!((events.len(), errors.len()), (20, 0), "{errors:?}");
    let wal = Wal::open(dir.path(), options(Some(keys.clone()))).unwrap();
    assert_eq!(wal.log_id(), id, "restored, not minted");
    drop(wal);
    assert_eq!(logbook_wal::log_id(dir.path()).unwrap(), id);

    // Another log's LOG_ID in its place.
    let other = tempfile::tempdir().unwrap();
    drop(Wal::open(other.path(), WalOptions::default()).unwrap());
    std::fs::copy(other.path().join("LOG_ID"), &path).unwrap();
    let (events, errors) = split(read(dir.path(), Some(keys.clone())));
    assert!(events.is_empty() && !errors.is_empty(), "{errors:?}");
    let err = Wal::open(dir.path(), options(Some(keys))).unwrap_err();
    assert!(matches!(err, WalError::LogIdMismatch { .. }), "{err}");
    std::fs::write(&path, original).unwrap();
}

/// A crafted session index of an encrypted segment (one session's places
/// cut to its first record, every CRC fixed) does not hide that session's
/// records from a reader with the key: it reads what a full scan reads.
#[test]
fn a_crafted_index_does_not_hide_records() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(10);
    encrypted_log(dir.path(), &keys, 60);
    let seg = segments(dir.path())[0].clone();
    let idx = PathBuf::from(format!("{}.idx", seg.display()));
    let mut ix = std::fs::read(&idx).expect("a sealed segment's index");
    let n = u32::from_le_bytes(ix[12..16].try_into().unwrap()) as usize;
    assert!(n >= 1);
    let entry = 64;
    let places_at = u64::from_le_bytes(ix[entry + 16..entry + 24].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(ix[entry + 24..entry + 28].try_into().unwrap());
    assert!(count > 1);
    ix[entry + 24..entry + 28].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&ix[places_at..places_at + 12]);
    ix[entry + 28..entry + 32].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&ix[entry..entry + 32]);
    ix[entry + 32..entry + 36].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&idx, &ix).unwrap();
    let victim = Uuid::from_slice(&ix[entry..entry + 16]).unwrap();

    let through_index: Vec<u64> = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys.clone())
        .session(victim)
        .map(|r| r.unwrap().lsn)
        .collect();
    let scanned: Vec<u64> = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys)
        .map(|r| r.unwrap())
        .filter(|r| r.session == victim)
        .map(|r| r.lsn)
        .collect();
    assert_eq!(through_index, scanned);
}

/// The head in LOCK altered (its tag, the CRC fixed): one located problem
/// at LOCK, and every record is still read (a bad head must not hide the
/// log, nor be reported once per segment).
#[test]
fn a_forged_head_in_lock_is_one_problem_and_hides_no_record() {
    use logbook_wal::format::{HEAD_LEN, LOCK_FILE, WATERMARK_LEN};
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(11);
    encrypted_log(dir.path(), &keys, 60);
    assert!(segments(dir.path()).len() >= 2);
    let lock = dir.path().join(LOCK_FILE);
    let mut bytes = std::fs::read(&lock).unwrap();
    let mut head =
        logbook_wal::Head::decode(&bytes[WATERMARK_LEN..WATERMARK_LEN + HEAD_LEN]).unwrap();
    head.tag[0] ^= 1;
    bytes[WATERMARK_LEN..WATERMARK_LEN + HEAD_LEN].copy_from_slice(&head.encode());
    std::fs::write(&lock, &bytes).unwrap();
    let (events, errors) = split(read(dir.path(), Some(keys)));
    assert_eq!(events.len(), 60, "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], WalError::Forged { path, lsn: 60, .. } if *path == lock),
        "{errors:?}"
    );
}

/// The newest acknowledged record cut off, and the (unauthenticated)
/// watermark in `LOCK` rewritten to match, its CRC fixed: the
/// authenticated head still names the cut record. Readers with the key
/// find the log ends before it, and a writer with the key refuses to go
/// on (it would reuse the record's LSN for another).
#[test]
fn a_cut_tail_with_an_edited_watermark_is_still_found_and_never_extended() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(11);
    encrypted_log(dir.path(), &keys, 30);
    let seg = segments(dir.path()).last().unwrap().clone();
    let last = Reader::open_segment_file(&seg)
        .unwrap()
        .with_keys(keys.clone())
        .last()
        .unwrap()
        .unwrap();
    assert_eq!(last.lsn, 30);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = last.offset as usize;
    bytes[at..].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let lock = dir.path().join("LOCK");
    let mut wm = std::fs::read(&lock).unwrap();
    wm[8..16].copy_from_slice(&30u64.to_le_bytes()); // durable through 29
    let crc = crc32fast::hash(&wm[..32]);
    wm[32..36].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&lock, &wm).unwrap();

    let (events, errors) = split(read(dir.path(), Some(keys.clone())));
    assert_eq!(events.len(), 29);
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, WalError::Forged { lsn: 30, .. })),
        "{errors:?}"
    );
    let before = std::fs::read(&seg).unwrap();
    let err = Wal::open(dir.path(), options(Some(keys))).unwrap_err();
    assert!(matches!(err, WalError::Forged { lsn: 30, .. }), "{err}");
    assert_eq!(std::fs::read(&seg).unwrap(), before, "nothing appended");
}

/// The stale record of a reused LSN put back where the record after it
/// belongs to another session: a one-session read (what `dump --session`,
/// `export --session` and `fork` use) opens the records of other sessions
/// it passes too, so the next record's chain value gives it away; and a
/// one-session read of a cut tail is found against the head as a whole
/// read is.
#[test]
fn one_session_reads_check_the_chain_through_other_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(13);
    let opts = || WalOptions {
        encryption: Some(keys.clone()),
        ..WalOptions::default()
    };
    let pay = |amount: &str| SessionEvent::ToolCallStart {
        tool_call_id: "t1".into(),
        name: "pay".into(),
        arguments: format!("invoice 42, {amount}"),
    };
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(session(0), &text(1)).unwrap();
    wal.append(session(0), &text(2)).unwrap();
    drop(wal);
    let lock_before = std::fs::read(dir.path().join("LOCK")).unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(session(0), &pay("1 000 000")).unwrap();
    drop(wal);
    let seg = segments(dir.path())[0].clone();
    let third = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys.clone())
        .nth(2)
        .unwrap()
        .unwrap();
    let (at3, len3) = (
        third.offset as usize,
        48 + third.payload.len() + logbook_wal::SEAL_OVERHEAD,
    );
    let stale = std::fs::read(&seg).unwrap()[at3..at3 + len3].to_vec();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(at3 as u64).unwrap();
    drop(f);
    std::fs::write(dir.path().join("LOCK"), &lock_before).unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(wal.append(session(0), &pay("0 000 001")).unwrap(), 3);
    assert_eq!(wal.append(session(1), &SessionEvent::Done).unwrap(), 4);
    drop(wal);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at3..at3 + stale.len()].copy_from_slice(&stale);
    std::fs::write(&seg, &bytes).unwrap();

    let mut reader = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys.clone())
        .session(session(0));
    let mut got = Vec::new();
    while let Some(r) = reader.next_ref() {
        got.push(r.map(|r| r.lsn));
    }
    assert!(
        got.iter()
            .any(|r| matches!(r, Err(WalError::Decrypt { lsn: 4, .. }))),
        "{got:?}"
    );

    // A cut tail, read for one session.
    let dir = tempfile::tempdir().unwrap();
    encrypted_log(dir.path(), &keys, 30);
    let seg = segments(dir.path()).last().unwrap().clone();
    let last = Reader::open_segment_file(&seg)
        .unwrap()
        .with_keys(keys.clone())
        .last()
        .unwrap()
        .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(last.offset).unwrap();
    drop(f);
    let errors: Vec<WalError> = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys)
        .session(session(0))
        .filter_map(Result::err)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, WalError::Forged { lsn: 30, .. })),
        "{errors:?}"
    );
}

/// `LOG_ID` deleted and another log's newest segment (same key) planted
/// after this log's: the next writer with the key neither takes that log's
/// id nor continues its chain.
#[test]
fn a_planted_foreign_segment_does_not_lend_its_id_to_the_next_writer() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys = ring(14);
    encrypted_log(a.path(), &keys, 40);
    encrypted_log(b.path(), &keys, 120);
    let id = logbook_wal::log_id(a.path()).unwrap();
    let theirs = segments(b.path()).last().unwrap().clone();
    let planted = a.path().join(theirs.file_name().unwrap());
    std::fs::copy(&theirs, &planted).unwrap();
    std::fs::remove_file(a.path().join("LOG_ID")).unwrap();
    let err = Wal::open(a.path(), options(Some(keys))).unwrap_err();
    assert!(
        matches!(&err, WalError::Forged { path, .. } if *path == planted),
        "{err}"
    );
    assert!(!a.path().join("LOG_ID").exists(), "no id taken");
    let _ = id;
}

/// A frame appended to an encrypted tail by someone without the key (a
/// valid CRC, random "sealed" bytes): the next writer with the key refuses
/// to go on from it, instead of chaining the log's future to a forgery.
#[test]
fn a_writer_does_not_extend_a_forged_tail_record() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(15);
    encrypted_log(dir.path(), &keys, 10);
    let seg = segments(dir.path()).last().unwrap().clone();
    let last = Reader::open_segment_file(&seg)
        .unwrap()
        .with_keys(keys.clone())
        .last()
        .unwrap()
        .unwrap();
    let end = last.offset as usize + 48 + last.payload.len() + logbook_wal::SEAL_OVERHEAD;
    let mut frame = Vec::new();
    logbook_wal::format::encode_frame(
        &mut frame,
        &logbook_wal::format::FrameHeader {
            lsn: 11,
            sync_mark: 11,
            timestamp_us: 1,
            session: session(0),
        },
        &[0x5a; 80],
    );
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[end..end + frame.len()].copy_from_slice(&frame);
    std::fs::write(&seg, &bytes).unwrap();
    let err = Wal::open(dir.path(), options(Some(keys))).unwrap_err();
    assert!(matches!(err, WalError::Forged { lsn: 11, .. }), "{err}");
}

/// Another log's `LOG_ID` put in an encrypted log's place: readers with
/// the key name the mismatch at the segments (never "records were cut" from
/// a head they cannot tie to this log).
#[test]
fn a_foreign_log_id_is_named_not_taken_for_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(16);
    encrypted_log(dir.path(), &keys, 20);
    let other = tempfile::tempdir().unwrap();
    drop(Wal::open(other.path(), WalOptions::default()).unwrap());
    std::fs::copy(other.path().join("LOG_ID"), dir.path().join("LOG_ID")).unwrap();
    let (events, errors) = split(read(dir.path(), Some(keys)));
    assert!(events.is_empty());
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(
            matches!(e, WalError::Forged { reason, .. } if reason.contains("LOG_ID was replaced")),
            "{e}"
        );
    }
}

/// An encrypted log long enough that a reader opens most of it on its
/// second thread: `n` records over 256 KiB segments, three sessions,
/// written as buffered appends (sealed on the committer thread).
fn long_log(dir: &Path, keys: &Arc<KeyRing>, n: u64) {
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_size: 256 << 10,
            sync: logbook_wal::SyncPolicy::Never,
            buffer_bytes: 16 << 10,
            encryption: Some(keys.clone()),
            ..WalOptions::default()
        },
    )
    .unwrap();
    for i in 0..n {
        wal.append(session(i % 3), &text(i)).unwrap();
    }
    wal.close().unwrap();
}

/// Whether this machine lets a reader open ahead (a second core).
fn opens_ahead() -> bool {
    std::thread::available_parallelism().map_or(1, usize::from) >= 2
}

#[test]
fn a_long_log_opened_ahead_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(3);
    long_log(dir.path(), &keys, 6000);
    assert!(segments(dir.path()).len() > 1, "several segments");
    let mut reader = Reader::open(dir.path()).unwrap().with_keys(keys);
    let mut lsn = 0;
    while let Some(r) = reader.next_ref() {
        let r = EventRecord::decode(&r.unwrap()).unwrap();
        lsn += 1;
        assert_eq!(
            (r.lsn, r.session, r.event),
            (lsn, session((lsn - 1) % 3), text(lsn - 1))
        );
    }
    assert_eq!(lsn, 6000);
    if opens_ahead() {
        assert!(
            reader.opened_ahead() > 4000,
            "opened ahead: {}",
            reader.opened_ahead()
        );
    } else {
        assert_eq!(reader.opened_ahead(), 0);
    }
}

/// A record deep in a long log changed (its CRC fixed): the records
/// before it come back, then the located error, whether it was met by the
/// reader or by its second thread.
#[test]
fn a_record_changed_deep_in_a_long_log_is_found_opened_ahead() {
    for target in [2000u64, 2001, 2002, 2003, 2500] {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(3);
        long_log(dir.path(), &keys, 3000);
        let found = Reader::open(dir.path())
            .unwrap()
            .with_keys(keys.clone())
            .nth(usize::try_from(target - 1).unwrap())
            .unwrap()
            .unwrap();
        let (seg, at) = (found.segment.clone(), found.offset as usize);
        let mut bytes = std::fs::read(&seg).unwrap();
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        bytes[at + 48 + 30] ^= 1;
        let crc = crc32fast::hash(&bytes[at + 8..at + 48 + len]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg, &bytes).unwrap();
        let mut reader = Reader::open(dir.path()).unwrap().with_keys(keys);
        let mut lsn = 0;
        let error = loop {
            match reader.next_ref().unwrap() {
                Ok(r) => {
                    let r = EventRecord::decode(&r).unwrap();
                    lsn += 1;
                    assert_eq!((r.lsn, r.event), (lsn, text(lsn - 1)));
                }
                Err(e) => break e,
            }
        };
        assert_eq!(lsn, target - 1, "every record before LSN {target}");
        match error {
            WalError::Decrypt {
                lsn, path, offset, ..
            } => {
                assert_eq!((lsn, path, offset), (target, seg, at as u64));
            }
            other => panic!("LSN {target}: {other}"),
        }
        if opens_ahead() {
            assert!(
                reader.opened_ahead() > 1000,
                "opened ahead: {}",
                reader.opened_ahead()
            );
        }
    }
}

/// A long encrypted log (three sessions, 256 KiB segments, buffered
/// appends sealed on the committer thread) whose session 1 is deleted by
/// a tombstone listing each of its records, then compacted: every third
/// record of every sealed segment is a placeholder. The LSNs erased.
fn compacted_long_log(dir: &Path, keys: &Arc<KeyRing>, n: u64) -> Vec<u64> {
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_size: 256 << 10,
            sync: logbook_wal::SyncPolicy::Never,
            buffer_bytes: 16 << 10,
            encryption: Some(keys.clone()),
            ..WalOptions::default()
        },
    )
    .unwrap();
    let mut deleted = Vec::new();
    for i in 0..n {
        let lsn = wal.append(session(i % 3), &text(i)).unwrap();
        if i % 3 == 1 {
            deleted.push(lsn);
        }
    }
    wal.append(
        session(1),
        &SessionEvent::SessionDeleted {
            after_lsn: None,
            ranges: logbook_bus::lsn_ranges(deleted.iter().copied()),
            reason: "test".into(),
        },
    )
    .unwrap();
    let compaction = wal.compact().unwrap();
    assert_eq!(compaction.erased, deleted.len() as u64);
    assert_eq!(compaction.in_active_segment, 0);
    assert!(compaction.segments.len() > 1, "several segments rewritten");
    wal.close().unwrap();
    deleted
}

/// What a whole-log read with `keys` returns, record by record (LSN,
/// session, event) or problem (as text), opening ahead or not; the count
/// of records opened ahead and of placeholders passed.
fn read_through(dir: &Path, keys: &Arc<KeyRing>, ahead: bool) -> (Vec<String>, u64, u64) {
    read_through_only(dir, keys, ahead, None)
}

/// [`read_through`], of session `only` if given (`Reader::session`).
fn read_through_only(
    dir: &Path,
    keys: &Arc<KeyRing>,
    ahead: bool,
    only: Option<Uuid>,
) -> (Vec<String>, u64, u64) {
    let mut reader = Reader::open(dir).unwrap().with_keys(keys.clone());
    if let Some(only) = only {
        reader = reader.session(only);
    }
    if !ahead {
        reader = reader.without_open_ahead();
    }
    let mut out = Vec::new();
    let _: ControlFlow<()> = reader
        .walk(|item| {
            out.push(match item {
                Item::Record(r) => match EventRecord::decode(&r) {
                    Ok(r) => format!("{} {} {:?}", r.lsn, r.session, r.event),
                    Err(e) => format!("undecodable {}: {e}", r.lsn),
                },
                Item::Problem(e) => format!("problem: {e}"),
            });
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, reader.opened_ahead(), reader.redacted())
}

/// A compacted encrypted log read with the key through long segments
/// gives the same answer opening ahead as not: placeholders are passed
/// over on both threads (never a record taken for a placeholder, nor a
/// placeholder for a record), and opening ahead goes on past them.
#[test]
fn a_compacted_log_opened_ahead_reads_the_same_as_opened_inline() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(3);
    let n = 6000;
    let deleted = compacted_long_log(dir.path(), &keys, n);
    let (inline, none_ahead, redacted) = read_through(dir.path(), &keys, false);
    assert_eq!(none_ahead, 0);
    assert_eq!(redacted, deleted.len() as u64);
    // Sessions 0 and 2, and the tombstone; no problem.
    assert_eq!(inline.len() as u64, n - deleted.len() as u64 + 1);
    assert!(
        inline.iter().all(|l| !l.starts_with("problem")),
        "{inline:?}"
    );
    for (i, line) in inline.iter().take(4).enumerate() {
        let lsn = [1u64, 3, 4, 6][i];
        let want = format!("{lsn} {} {:?}", session((lsn - 1) % 3), text(lsn - 1));
        assert_eq!(line, &want);
    }
    let (ahead, taken, redacted) = read_through(dir.path(), &keys, true);
    assert_eq!(ahead, inline);
    assert_eq!(redacted, deleted.len() as u64);
    if opens_ahead() {
        // As many as through a log without placeholders (two thirds of
        // the records and more): opening ahead goes on past them.
        assert!(
            taken > 2 * inline.len() as u64 / 3,
            "opened ahead: {taken} of {}",
            inline.len()
        );
    } else {
        assert_eq!(taken, 0);
    }
}

/// One session of a compacted encrypted log read through long segments
/// gives the same answer opening ahead as not: the records of other
/// sessions it passes over (the deleted session's tombstone among them,
/// which explains the placeholders) are read from what was opened ahead
/// as the records it returns are.
#[test]
fn one_session_of_a_compacted_log_opened_ahead_reads_the_same_as_opened_inline() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(3);
    let n = 6000;
    compacted_long_log(dir.path(), &keys, n);
    for s in [0, 2] {
        let only = Some(session(s));
        let (inline, none_ahead, _) = read_through_only(dir.path(), &keys, false, only);
        assert_eq!(none_ahead, 0);
        assert_eq!(inline.len() as u64, n / 3, "session {s}");
        assert!(
            inline.iter().all(|l| !l.starts_with("problem")),
            "session {s}: {inline:?}"
        );
        let (ahead, taken, _) = read_through_only(dir.path(), &keys, true, only);
        assert_eq!(ahead, inline, "session {s}");
        if opens_ahead() {
            assert!(taken > n / 3, "session {s}: opened ahead {taken}");
        }
    }
}

/// Deep in a compacted long log, a placeholder's tag changed, or a record
/// replaced by a placeholder no tombstone lists (CRCs made right): a
/// reader opening ahead reports exactly what one opening inline does.
#[test]
fn a_placeholder_tampered_deep_in_a_long_log_reads_the_same_opened_ahead() {
    let keys = ring(3);
    for (what, target) in [("changed tag", 3002u64), ("record redacted", 3001)] {
        let dir = tempfile::tempdir().unwrap();
        let deleted = compacted_long_log(dir.path(), &keys, 4500);
        assert_eq!(deleted.contains(&target), what == "changed tag");
        // Where LSN `target` is: the record before it, then one frame on.
        let before = Reader::open(dir.path())
            .unwrap()
            .with_keys(keys.clone())
            .find(|r| r.as_ref().unwrap().lsn >= target - 1)
            .unwrap()
            .unwrap();
        assert_eq!(before.lsn, target - 1);
        let seg = before.segment.clone();
        let mut bytes = std::fs::read(&seg).unwrap();
        let field = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let prev_at = before.offset as usize;
        let at = prev_at + 48 + (field(&bytes, prev_at) & 0x7fff_ffff) as usize;
        assert_eq!(
            u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()),
            target
        );
        let len = (field(&bytes, at) & 0x7fff_ffff) as usize;
        let redacted_crc = |frame: &[u8]| {
            let mut h = crc32fast::Hasher::new();
            h.update(b"LBREDACT");
            h.update(&frame[8..]);
            h.finalize()
        };
        if what == "changed tag" {
            assert_eq!((field(&bytes, at), len), (16 | 0x8000_0000, 16));
            bytes[at + 48 + 3] ^= 1;
            let crc = redacted_crc(&bytes[at..at + 48 + len]);
            bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        } else {
            assert_eq!(field(&bytes, at) & 0x8000_0000, 0, "a record");
            let mut frame = bytes[at..at + 48].to_vec();
            frame.extend_from_slice(&bytes[at + 48 + len - 16..at + 48 + len]);
            frame[..4].copy_from_slice(&(16u32 | 0x8000_0000).to_le_bytes());
            let crc = redacted_crc(&frame);
            frame[4..8].copy_from_slice(&crc.to_le_bytes());
            bytes.splice(at..at + 48 + len, frame);
        }
        std::fs::write(&seg, &bytes).unwrap();
        let (inline, _, _) = read_through(dir.path(), &keys, false);
        let (ahead, taken, _) = read_through(dir.path(), &keys, true);
        assert_eq!(ahead, inline, "{what}");
        assert!(
            inline.iter().any(|l| l.starts_with("problem")),
            "{what}: found {inline:?}"
        );
        if opens_ahead() {
            assert!(taken > 1000, "{what}: opened ahead: {taken}");
        }
    }
}
