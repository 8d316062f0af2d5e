//! The erasure proof: sessions each holding a unique phrase, one deleted
//! (and another popped), the log compacted; then no file of the log
//! directory holds the deleted phrases (nor, encrypted, the deleted
//! records' ciphertexts), every other session replays unchanged, and a
//! full checked read of the log passes. On a clear log and an encrypted
//! one. Then the attacks: a record turned into a placeholder by hand, or a
//! placeholder moved to another session, is found.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use logbook_bus::SessionEvent;
use logbook_replay::{SessionState, delete_after, delete_session, list_sessions, session_state};
use logbook_wal::{Key, KeyRing, Reader, Wal, WalError, WalOptions};
use uuid::Uuid;

fn ring() -> Arc<KeyRing> {
    static RING: OnceLock<Arc<KeyRing>> = OnceLock::new();
    RING.get_or_init(|| {
        let ring = Arc::new(KeyRing::new(Key::new([7; 32])));
        logbook_wal::install_default_keys(ring.clone()).unwrap();
        ring
    })
    .clone()
}

fn options(encrypted: bool) -> WalOptions {
    WalOptions {
        segment_size: 8192,
        encryption: encrypted.then(ring),
        ..WalOptions::default()
    }
}

fn phrase(s: usize, i: usize) -> String {
    format!("zebra-{s}-marmalade-{i:03}")
}

/// Every file of `dir` (derived files included) whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

fn view(s: &SessionState) -> (Vec<String>, u64) {
    (
        s.transcript().iter().map(|t| t.text.clone()).collect(),
        s.events(),
    )
}

/// The stored (sealed, for an encrypted log) payload of each record of
/// `session` with an LSN above `after`.
fn stored_payloads(dir: &Path, session: Uuid, after: u64) -> Vec<Vec<u8>> {
    let mut r = Reader::open(dir).unwrap().without_keys().session(session);
    let mut out = Vec::new();
    while let Some(rec) = r.next_ref() {
        let rec = rec.unwrap();
        if rec.lsn > after {
            out.push(rec.payload.to_vec());
        }
    }
    out
}

fn proof(encrypted: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wal = Wal::open(d, options(encrypted)).unwrap();
    let sessions: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut popped_at = 0;
    for i in 0..40 {
        for (s, id) in sessions.iter().enumerate() {
            let lsn = wal
                .append(*id, &SessionEvent::UserMessage(phrase(s, i)))
                .unwrap();
            wal.append(
                *id,
                &SessionEvent::TextComplete(format!("ok {}", phrase(s, i))),
            )
            .unwrap();
            if s == 2 && i == 19 {
                popped_at = lsn + 1;
            }
        }
    }
    // Summaries that hold titles (the first user message) of every session.
    assert_eq!(list_sessions(d).unwrap().sessions.len(), 4);
    let (gone, popped) = (sessions[1], sessions[2]);
    let before: Vec<_> = [0, 3]
        .iter()
        .map(|&s| view(&session_state(d, sessions[s]).unwrap()))
        .collect();
    let sealed_gone = stored_payloads(d, gone, 0);
    let sealed_popped = stored_payloads(d, popped, popped_at);
    assert_eq!(sealed_gone.len(), 80);
    assert!(!sealed_popped.is_empty());

    delete_session(&wal, gone).unwrap();
    delete_after(&wal, popped, popped_at).unwrap();
    let popped_view = view(&session_state(d, popped).unwrap());
    assert_eq!(popped_view.0.len(), 40, "20 turns of two kept");
    // Before compaction the bytes are still there.
    if !encrypted {
        assert!(!files_holding(d, phrase(1, 5).as_bytes()).is_empty());
    }

    let done = wal.compact().unwrap();
    assert_eq!(done.in_active_segment, 0, "{done:?}");
    assert!(done.sealed_tail);
    assert_eq!(done.erased, 80 + sealed_popped.len() as u64);
    assert!(done.reclaimed > 0);

    // grep -r: no deleted phrase, no deleted ciphertext, anywhere.
    for i in 0..40 {
        assert_eq!(
            files_holding(d, phrase(1, i).as_bytes()),
            Vec::<String>::new(),
            "phrase {i}"
        );
    }
    for i in 20..40 {
        assert_eq!(
            files_holding(d, phrase(2, i).as_bytes()),
            Vec::<String>::new(),
            "popped {i}"
        );
    }
    for sealed in sealed_gone.iter().chain(&sealed_popped) {
        if encrypted {
            // Nonce and ciphertext (the tag stays, in the placeholder).
            let body = &sealed[..sealed.len() - 16];
            assert!(files_holding(d, body).is_empty());
        } else {
            assert!(files_holding(d, sealed).is_empty());
        }
    }
    // Kept content is still there (the check above can fail).
    if !encrypted {
        assert!(!files_holding(d, phrase(0, 5).as_bytes()).is_empty());
        assert!(!files_holding(d, phrase(2, 5).as_bytes()).is_empty());
    }
    // Every other session replays unchanged; the popped one as after the pop.
    for (k, &s) in [0, 3].iter().enumerate() {
        assert_eq!(view(&session_state(d, sessions[s]).unwrap()), before[k]);
    }
    assert_eq!(view(&session_state(d, popped).unwrap()), popped_view);
    assert!(matches!(
        session_state(d, gone),
        Err(logbook_replay::ReplayError::DeletedSession { .. })
    ));
    // A full checked read passes, and passes the placeholders over.
    let mut reader = Reader::open(d).unwrap();
    let mut n = 0;
    while let Some(r) = reader.next_ref() {
        r.unwrap();
        n += 1;
    }
    assert_eq!(reader.redacted(), done.erased);
    assert_eq!(n + done.erased, 320 + 2);
    // A second compaction has nothing left to do.
    assert_eq!(wal.compact().unwrap().erased, 0);
    // And the log reopens and goes on.
    wal.close().unwrap();
    let wal = Wal::open(d, options(encrypted)).unwrap();
    wal.append(sessions[0], &SessionEvent::Done).unwrap();
    wal.close().unwrap();
    assert_eq!(list_sessions(d).unwrap().sessions.len(), 3);
}

#[test]
fn erasure_proof_on_a_clear_log() {
    proof(false);
}

#[test]
fn erasure_proof_on_an_encrypted_log() {
    proof(true);
}

/// The first segment file of `dir` and its bytes.
fn first_segment(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = Reader::open(dir).unwrap().segments()[0].clone();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Turn the frame at `at` of `bytes` into a placeholder of `session`.
fn redact_by_hand(bytes: &[u8], at: usize, session: Option<Uuid>, encrypted: bool) -> Vec<u8> {
    let fields = logbook_wal::FrameFields::parse(&bytes[at..]).unwrap();
    let len = fields.payload_len as usize;
    let payload = &bytes[at + 48..at + 48 + len];
    let mut header = fields.header;
    if let Some(s) = session {
        header.session = s;
    }
    let tag = if encrypted {
        payload[len - 16..].to_vec()
    } else {
        vec![0]
    };
    // The layout of docs/format.md, "Redacted placeholders".
    let mut frame = Vec::new();
    frame.extend_from_slice(&((tag.len() as u32) | 1 << 31).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&header.lsn.to_le_bytes());
    frame.extend_from_slice(&header.sync_mark.to_le_bytes());
    frame.extend_from_slice(&header.timestamp_us.to_le_bytes());
    frame.extend_from_slice(header.session.as_bytes());
    frame.extend_from_slice(&tag);
    let mut h = crc32fast::Hasher::new();
    h.update(b"LBREDACT");
    h.update(&frame[8..]);
    let crc = h.finalize();
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&frame);
    out.extend_from_slice(&bytes[at + 48 + len..]);
    out
}

fn read_all(dir: &Path) -> Result<u64, WalError> {
    let mut reader = Reader::open(dir).unwrap();
    let mut n = 0;
    while let Some(r) = reader.next_ref() {
        r?;
        n += 1;
    }
    Ok(n)
}

/// A record turned into a placeholder by someone who can write the
/// directory (with or without the key) is found: no tombstone lists it.
#[test]
fn a_record_redacted_by_hand_is_found() {
    for encrypted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), options(encrypted)).unwrap();
        let s = Uuid::new_v4();
        for i in 0..200 {
            wal.append(s, &SessionEvent::UserMessage(format!("m {i}")))
                .unwrap();
        }
        wal.close().unwrap();
        let (path, bytes) = first_segment(dir.path());
        let start = if encrypted { 124 } else { 40 };
        let second = start
            + 48
            + logbook_wal::FrameFields::parse(&bytes[start..])
                .unwrap()
                .payload_len as usize;
        std::fs::write(&path, redact_by_hand(&bytes, second, None, encrypted)).unwrap();
        let e = read_all(dir.path()).unwrap_err();
        assert!(
            matches!(&e, WalError::Forged { lsn: 2, reason, .. } if reason.contains("no tombstone")),
            "{encrypted}: {e}"
        );
    }
}

/// A placeholder compaction left, moved to another session (its clear
/// header edited), is found: the tombstone that lists its LSN is another
/// session's.
#[test]
fn a_placeholder_moved_to_another_session_is_found() {
    for encrypted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), options(encrypted)).unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for i in 0..200 {
            wal.append(
                if i % 2 == 0 { a } else { b },
                &SessionEvent::UserMessage(format!("m {i}")),
            )
            .unwrap();
        }
        logbook_replay::delete_runs(&wal, a, &[3]).unwrap();
        assert_eq!(wal.compact().unwrap().erased, 1);
        wal.close().unwrap();
        assert!(read_all(dir.path()).is_ok());
        let (path, mut bytes) = first_segment(dir.path());
        // The placeholder of LSN 3: its session field moved to `b` (and
        // its CRC made right again).
        let start = if encrypted { 124 } else { 40 };
        let mut at = start;
        for _ in 0..2 {
            let len = logbook_wal::FrameFields::parse(&bytes[at..])
                .unwrap()
                .payload_len
                & !(1 << 31);
            at += 48 + len as usize;
        }
        let len = (logbook_wal::FrameFields::parse(&bytes[at..])
            .unwrap()
            .payload_len
            & !(1 << 31)) as usize;
        assert_ne!(
            logbook_wal::FrameFields::parse(&bytes[at..])
                .unwrap()
                .payload_len
                & 1 << 31,
            0
        );
        bytes[at + 32..at + 48].copy_from_slice(b.as_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(b"LBREDACT");
        h.update(&bytes[at + 8..at + 48 + len]);
        let crc = h.finalize();
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let e = read_all(dir.path()).unwrap_err();
        assert!(
            matches!(&e, WalError::Forged { lsn: 3, reason, .. } if reason.contains("no tombstone")),
            "{encrypted}: {e}"
        );
    }
}
