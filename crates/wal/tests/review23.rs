//! Review 23: an outside attack on deletion, retention and erasure by
//! compaction (issue 23). Each test is one reproduction of a defect: it
//! fails on the code it was written against.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook_bus::SessionEvent;
use logbook_wal::format::{Frame, FrameHeader, decode_frame, encode_placeholder};
use logbook_wal::{EventRecord, Key, KeyRing, Lsn, Reader, Wal, WalOptions};
use uuid::Uuid;

const KEY: [u8; 32] = [7; 32];

fn ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::new(Key::new(KEY)))
}

fn encrypted(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        encryption: Some(ring()),
        ..WalOptions::default()
    }
}

/// Where the record at `lsn` is: its segment and offset.
fn place_of(dir: &Path, lsn: Lsn) -> (PathBuf, usize) {
    let mut reader = Reader::open(dir).unwrap().with_keys(ring());
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        if r.lsn == lsn {
            return (r.segment.to_path_buf(), usize::try_from(r.offset).unwrap());
        }
    }
    panic!("no LSN {lsn}");
}

/// What an attacker with write access and no key can do: replace the
/// (sealed) record at `lsn` by a redacted placeholder, the way compaction
/// writes one (its 16-byte tag kept, so the chain still checks), with the
/// clear header's session id set to `session`.
fn plant_placeholder(dir: &Path, lsn: Lsn, session: Uuid) {
    let (path, at) = place_of(dir, lsn);
    let bytes = std::fs::read(&path).unwrap();
    let Frame::Valid {
        header,
        payload,
        len,
    } = decode_frame(&bytes[at..])
    else {
        panic!("no frame at {at}");
    };
    assert_eq!(header.lsn, lsn);
    let tag = &payload[payload.len() - 16..];
    let mut out = bytes[..at].to_vec();
    encode_placeholder(
        &mut out,
        &FrameHeader {
            session,
            ..header
        },
        tag,
    );
    out.extend_from_slice(&bytes[at + len..]);
    std::fs::write(&path, out).unwrap();
}

fn text(r: &EventRecord) -> Option<String> {
    match &r.event {
        SessionEvent::UserMessage(t) => Some(t.clone()),
        _ => None,
    }
}

/// An attacker without the key hides a record of session A from every
/// one-session read (`Reader::session`, which `replay SESSION`,
/// `session_state`, `export --session`, `follow`, `dump --session` and
/// the fleet's pull use) by putting a redacted placeholder in its place
/// whose clear header names another session. The whole-log read reports
/// the placeholder as forged; the one-session read takes it silently.
///
/// `reader.rs` `next_checked`: a placeholder is held to a tombstone only
/// `if checkable && self.only.is_none_or(|s| s == header.session)`, and
/// the placeholder's session is the clear, unauthenticated header field
/// (the chain only commits to the tag the attacker kept).
#[test]
fn a_placeholder_naming_another_session_hides_a_record_from_a_session_read() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let wal = Wal::open(dir, encrypted(64 * 1024)).unwrap();
    let mut victim = 0;
    for i in 0..400u64 {
        let lsn = wal
            .append(a, &SessionEvent::UserMessage(format!("a-{i:04}")))
            .unwrap();
        if i == 5 {
            victim = lsn;
        }
        wal.append(b, &SessionEvent::UserMessage(format!("b-{i:04}")))
            .unwrap();
    }
    wal.close().unwrap();
    // The victim lies in a sealed segment.
    assert!(std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "wal"))
        .count()
        >= 2);
    plant_placeholder(dir, victim, b);

    // The whole-log read catches it (the placeholder names b, and no
    // tombstone of b lists it).
    let mut whole = Reader::open(dir).unwrap().with_keys(ring());
    let mut forged = false;
    while let Some(r) = whole.next_ref() {
        if r.is_err() {
            forged = true;
        }
    }
    assert!(forged, "the whole-log read reports the planted placeholder");

    // The read of session a, with the key: the record "a-0005" must be
    // there, or the read must fail. It is neither.
    let mut one = Reader::open(dir).unwrap().with_keys(ring()).session(a);
    let mut seen = Vec::new();
    let mut error = None;
    while let Some(r) = one.next_ref() {
        match r {
            Ok(r) => seen.push(text(&EventRecord::decode(&r).unwrap()).unwrap()),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    assert!(
        error.is_some() || seen.contains(&"a-0005".to_owned()),
        "session a read back {} record(s) without a-0005 and without an error: a record hidden by a key-less attacker",
        seen.len()
    );
}
