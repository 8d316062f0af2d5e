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
    encode_placeholder(&mut out, &FrameHeader { session, ..header }, tag);
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
    assert!(
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal"))
            .count()
            >= 2
    );
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

/// The summaries (`.sum`, `.run`) and session index (`.idx`) of a segment
/// retention removes are removed after it (`retain.rs` `remove`: "their
/// indexes and summaries last"), never fsynced, and nothing ever removes a
/// derived file whose segment is gone (`segment::list` passes them over).
/// A power cut after the segment's removal is durable leaves them for
/// good: the next `retain` has nothing to remove, and the summaries,
/// which hold the sessions' titles (first user messages) in the clear,
/// stay in the directory. On the simulated file system, at every
/// operation of a retention pass; the derived files stand for those a
/// listing (`logbook sessions`) stores beside each sealed segment.
#[test]
fn a_power_cut_during_retention_leaves_the_removed_segments_summaries_for_good() {
    use logbook_wal::Retention;
    use logbook_wal::fs::Fs;
    use logbook_wal::sim::SimFs;
    const DIR: &str = "/log";
    let names = |fs: &SimFs| {
        let mut n = fs.read_dir(Path::new(DIR)).unwrap();
        n.sort();
        n
    };
    let mut orphans_seen = Vec::new();
    let mut completed = false;
    for n in 1..200u64 {
        if completed {
            break;
        }
        let fs = SimFs::new(n);
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, common::small(4096)).unwrap();
        for i in 0..200u64 {
            wal.append(
                common::session(i % 3),
                &SessionEvent::UserMessage(format!("title-phrase-{i:04} {}", "x".repeat(40))),
            )
            .unwrap();
        }
        wal.close().unwrap();
        // A listing's derived files beside each sealed segment.
        let segments: Vec<String> = names(&fs)
            .into_iter()
            .filter(|f| f.ends_with(".wal"))
            .collect();
        assert!(segments.len() >= 4);
        for seg in &segments[..segments.len() - 1] {
            fs.set_file_bytes(
                Path::new(DIR).join(format!("{seg}.sum")),
                b"summary: title-phrase-0000".to_vec(),
            );
        }
        let policy = Retention {
            before_lsn: Some(120),
            ..Retention::default()
        };
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, common::small(4096)).unwrap();
        fs.cut_power_after(n);
        let result = wal.retain(&policy);
        completed |= result.is_ok() && !fs.power_was_cut();
        let cut = fs.power_was_cut();
        fs.cut_power_after(u64::MAX / 2);
        if !cut {
            fs.power_cut();
        }
        drop(wal);
        // Restart, and retain again (as the writer does at every roll).
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, common::small(4096)).unwrap();
        wal.retain(&policy).unwrap();
        wal.close().unwrap();
        let all = names(&fs);
        let orphans: Vec<String> = all
            .iter()
            .filter(|f| f.ends_with(".sum"))
            .filter(|f| !all.contains(&f.trim_end_matches(".sum").to_owned()))
            .cloned()
            .collect();
        if !orphans.is_empty() {
            orphans_seen.push((n, orphans));
        }
    }
    assert!(completed);
    assert!(
        orphans_seen.is_empty(),
        "summaries of removed segments left for good after a power cut at operation(s) {:?}",
        orphans_seen
    );
}
