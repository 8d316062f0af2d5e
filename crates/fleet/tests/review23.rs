//! Review 23: an outside attack on deletion and erasure in the stream
//! (issue 23), against a real `nats-server`. Each test is one
//! reproduction of a defect: it fails on the code it was written against.

mod common;

use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_fleet::{Select, ShipOptions, Shipper, Target, read, resume_from_stream, to_source};
use logbook_replay::{OnCorruption, session_state, session_state_in};
use logbook_wal::{Wal, WalOptions};
use uuid::Uuid;

fn phrase(i: usize) -> String {
    format!("pangolin-{i:03}")
}

/// `docs/fleet.md`: "Every reader of the stream honours [a tombstone] ...
/// the records it deletes are left out from the moment it is in the
/// stream", and "a pull ... brings the session back only as it is in the
/// stream (without the deleted records)"; `docs/format.md`: "an import
/// refuses [tombstones]". `resume nats://` (`resume_from_stream`) is such
/// a reader: popped on host A (`delete_after`), shipped with its tombstone,
/// not yet erased in the stream, the session resumed on host B comes back
/// with the deleted records as live ones (`pull.rs` `plan` keeps every
/// record of the session, the tombstone included, whose ranges then name
/// host A's LSNs in host B's log).
#[test]
fn resume_from_the_stream_brings_back_records_a_shipped_tombstone_deletes() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let (host_a, host_b) = (root.path().join("a"), root.path().join("b"));
    let (s, other) = (Uuid::new_v4(), Uuid::new_v4());
    {
        let wal = Wal::open(&host_a, WalOptions::default()).unwrap();
        wal.append(
            s,
            &SessionEvent::SessionStarted {
                model: "m".into(),
                cwd: "/a".into(),
                title: None,
            },
        )
        .unwrap();
        let mut after = 0;
        for i in 0..30 {
            let lsn = wal
                .append(s, &SessionEvent::UserMessage(phrase(i)))
                .unwrap();
            wal.append(other, &SessionEvent::UserMessage(format!("other {i}")))
                .unwrap();
            if i == 14 {
                after = lsn;
            }
        }
        // Undo the last 15 messages.
        logbook_replay::delete_after(&wal, s, after).unwrap();
        wal.close().unwrap();
    }
    let on_a: Vec<String> = session_state(&host_a, s)
        .unwrap()
        .transcript()
        .iter()
        .map(|t| t.text.clone())
        .collect();
    assert_eq!(on_a.len(), 15);
    common::run(Duration::from_secs(120), async {
        let target = Target::parse(&server.url()).unwrap();
        Shipper::new(&host_a, target.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap();
        // The stream's readers honour the tombstone.
        let source = to_source(&target, read(&target, Select::All).await.unwrap());
        let (in_stream, _) = session_state_in(&source, s, OnCorruption::Fail, None).unwrap();
        assert_eq!(in_stream.transcript().len(), 15);
        // Host B resumes the session from the stream.
        let wal = Wal::open(&host_b, WalOptions::default()).unwrap();
        let pulled = resume_from_stream(&target, &wal, s).await.unwrap();
        drop(pulled);
        wal.close().unwrap();
    });
    let on_b: Vec<String> = session_state(&host_b, s)
        .unwrap()
        .transcript()
        .iter()
        .map(|t| t.text.clone())
        .collect();
    let back: Vec<&String> = on_b.iter().filter(|t| !on_a.contains(t)).collect();
    assert!(
        back.is_empty(),
        "host B replays {} message(s), {} of them deleted on host A: {:?}",
        on_b.len(),
        back.len(),
        back
    );
}

/// The key-less attacker of an encrypted log (`THREATS.md`) makes a
/// record vanish from the stream without a trace: the shipper reads
/// without keys (`ship.rs`: `Reader::open(dir).map(Reader::without_keys)`
/// ... `noting_redacted()`), so a redacted placeholder planted in a sealed
/// segment is taken unchecked (`reader.rs`: "without the key ... its
/// placeholders are taken as its sealed records are, unchecked") and its
/// LSN counted as erased: never shipped, never missing. No tombstone lists
/// it, yet the stream's readers, with the key, replay the session without
/// the record and without an error; the local log, read with the key,
/// reports the placeholder as forged.
#[test]
fn a_planted_placeholder_keeps_a_record_out_of_the_stream_without_a_trace() {
    use logbook_wal::{Key, KeyRing, Reader};
    use std::sync::Arc;
    let Some(bin) = common::nats_server() else {
        return;
    };
    let ring = Arc::new(KeyRing::new(Key::new([3; 32])));
    logbook_wal::install_default_keys(ring.clone()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut victim = 0;
    {
        let wal = Wal::open(
            &dir,
            WalOptions {
                segment_size: 8192,
                encryption: Some(ring.clone()),
                ..WalOptions::default()
            },
        )
        .unwrap();
        for i in 0..100 {
            let lsn = wal
                .append(a, &SessionEvent::UserMessage(phrase(i)))
                .unwrap();
            if i == 3 {
                victim = lsn;
            }
            wal.append(b, &SessionEvent::UserMessage(format!("b {i}")))
                .unwrap();
        }
        wal.close().unwrap();
    }
    // The attacker: no key, write access.
    let (path, at) = {
        let mut r = Reader::open(&dir).unwrap().without_keys();
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
    let h = fields.header;
    let mut frame = Vec::new();
    frame.extend_from_slice(&(16u32 | 1 << 31).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&h.lsn.to_le_bytes());
    frame.extend_from_slice(&h.sync_mark.to_le_bytes());
    frame.extend_from_slice(&h.timestamp_us.to_le_bytes());
    frame.extend_from_slice(h.session.as_bytes());
    frame.extend_from_slice(&bytes[at + 48 + len - 16..at + 48 + len]);
    let mut crc = crc32fast::Hasher::new();
    crc.update(b"LBREDACT");
    crc.update(&frame[8..]);
    let crc = crc.finalize();
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&frame);
    out.extend_from_slice(&bytes[at + 48 + len..]);
    std::fs::write(&path, out).unwrap();
    // The local log, read with the key, tells.
    let mut local = Reader::open(&dir).unwrap().with_keys(ring.clone());
    let mut forged = false;
    while let Some(r) = local.next_ref() {
        forged |= r.is_err();
    }
    assert!(forged);
    common::run(Duration::from_secs(120), async {
        let target = Target::parse(&server.url()).unwrap();
        let report = Shipper::new(&dir, target.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await;
        let source = to_source(&target, read(&target, Select::All).await.unwrap());
        let state = session_state_in(&source, a, OnCorruption::Fail, None);
        let texts: Option<Vec<String>> = state
            .as_ref()
            .ok()
            .map(|(s, _)| s.transcript().iter().map(|t| t.text.clone()).collect());
        assert!(
            report.is_err()
                || state.is_err()
                || texts.as_ref().is_some_and(|t| t.contains(&phrase(3))),
            "shipped ({report:?}) and replayed from the stream with the key: {} message(s), without {} and without an error",
            texts.as_ref().map_or(0, Vec::len),
            phrase(3)
        );
    });
}

/// A pulling host deletes pulled records and compacts: their `IMPORTS`
/// entries then point at redacted placeholders, which the pull's check of
/// what landed never saw (it compared payload CRCs of the records the
/// reader returns), so they counted as missing and the next pull brought
/// the erased records back. A placeholder at an entry's LSN, of its
/// session, now counts as landed.
#[test]
fn a_pull_after_compaction_does_not_bring_erased_records_back() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let server = common::Server::single(&bin, root.path());
    let (host_a, host_b) = (root.path().join("a"), root.path().join("b"));
    let s = Uuid::new_v4();
    {
        let wal = Wal::open(&host_a, WalOptions::default()).unwrap();
        for i in 0..60 {
            wal.append(s, &SessionEvent::UserMessage(phrase(i)))
                .unwrap();
        }
        wal.close().unwrap();
    }
    let tiny = || WalOptions {
        segment_size: 4096,
        preallocate: false,
        ..WalOptions::default()
    };
    common::run(Duration::from_secs(120), async {
        let target = Target::parse(&server.url()).unwrap();
        Shipper::new(&host_a, target.clone(), ShipOptions::default())
            .unwrap()
            .ship()
            .await
            .unwrap();
        let wal = Wal::open(&host_b, tiny()).unwrap();
        let pulled = resume_from_stream(&target, &wal, s).await.unwrap();
        assert_eq!(pulled.imported, 60);
        drop(pulled);
        // Host B pops all but the first ten, then erases them.
        let kept = session_state(&host_b, s).unwrap().transcript()[9].lsn;
        logbook_replay::delete_after(&wal, s, kept).unwrap();
        wal.close().unwrap();
        let wal = Wal::open(&host_b, tiny()).unwrap();
        let done = wal.compact().unwrap();
        assert!(done.erased >= 40, "{done:?}");
        // Pulled again: nothing is missing.
        let again = resume_from_stream(&target, &wal, s).await.unwrap();
        assert_eq!(again.imported, 0, "erased records pulled back");
        drop(again);
        wal.close().unwrap();
    });
    let said = session_state(&host_b, s).unwrap().transcript().len();
    assert_eq!(said, 10);
}
