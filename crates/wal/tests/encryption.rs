//! Encryption at rest (`docs/format.md`, "Encrypted segments"): records
//! read back with the key, stay sealed on disk and without it, and a
//! tampered, moved or foreign record is caught by its tag, not returned.

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::session;
use logbook_bus::SessionEvent;
use logbook_wal::{
    EventRecord, FrameFields, Item, Key, KeyRing, Reader, SegmentHeader, Wal, WalError, WalOptions,
};

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

/// Every record: (LSN, session, event) with the keys, or the error.
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

#[test]
fn records_read_back_with_the_key_and_are_sealed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(1);
    let wal = Wal::open(dir.path(), options(Some(keys.clone()))).unwrap();
    for i in 0..200 {
        wal.append(session(i % 3), &text(i)).unwrap();
    }
    wal.close().unwrap();
    let got: Vec<EventRecord> = read(dir.path(), Some(keys.clone()))
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), 200);
    for (i, r) in got.iter().enumerate() {
        assert_eq!((r.lsn, r.session), (i as u64 + 1, session(i as u64 % 3)));
        assert_eq!(r.event, text(i as u64));
    }
    let files = segments(dir.path());
    assert!(files.len() > 2);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(
            SegmentHeader::decode(&bytes).unwrap().key_id,
            Some(keys.current().id())
        );
        assert!(
            !bytes.windows(17).any(|w| w == b"the secret number"),
            "plaintext on disk in {}",
            f.display()
        );
    }
}

/// Without the key (no ring, or a ring without that key id), every frame
/// is still read and checked, and decoding says which segment and key.
#[test]
fn without_the_key_frames_are_checked_and_decoding_names_segment_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(2);
    let wal = Wal::open(dir.path(), options(Some(keys.clone()))).unwrap();
    for i in 0..50 {
        wal.append(session(1), &text(i)).unwrap();
    }
    wal.close().unwrap();
    for other in [None, Some(ring(3))] {
        let got = read(dir.path(), other);
        assert_eq!(got.len(), 50, "every frame read");
        for r in got {
            match r {
                Err(WalError::Encrypted {
                    segment, key_id, ..
                }) => {
                    assert_eq!(key_id, keys.current().id());
                    assert!(segment.to_string_lossy().ends_with(".wal"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

/// Rewrite the record at `offset` of `file` with `f`, then recompute its
/// frame CRC (as an attacker who knows the format would).
fn tamper(file: &Path, offset: usize, f: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(file).unwrap();
    let len = FrameFields::parse(&bytes[offset..]).unwrap().payload_len as usize + 48;
    f(&mut bytes[offset..offset + len]);
    let crc = crc32fast::hash(&bytes[offset + 8..offset + len]);
    bytes[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(file, bytes).unwrap();
}

/// The offset of each record of the first segment.
fn offsets(dir: &Path) -> Vec<usize> {
    let mut reader = Reader::open(dir).unwrap();
    let first = segments(dir)[0].clone();
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        if r.segment == first {
            out.push(r.offset as usize);
        }
    }
    out
}

/// A changed ciphertext byte (CRC recomputed), a record moved to another
/// session, and two records swapped (LSNs kept in order, CRCs recomputed)
/// are each caught by the tag, at their place, and so is the record after
/// the swapped pair (its chain value is the tag before it); the others
/// read back.
#[test]
fn tampered_moved_and_swapped_records_fail_their_tag() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(4);
    let wal = Wal::open(dir.path(), options(Some(keys.clone()))).unwrap();
    for i in 0..20 {
        wal.append(session(1), &text(i)).unwrap();
    }
    wal.close().unwrap();
    let file = segments(dir.path())[0].clone();
    let at = offsets(dir.path());
    // Record 3: one ciphertext byte.
    tamper(&file, at[2], |frame| frame[48 + 30] ^= 1);
    // Record 6: moved to another session.
    tamper(&file, at[5], |frame| frame[32] ^= 0xff);
    // Records 9 and 10 (same size): payloads swapped, LSNs kept.
    let bytes = std::fs::read(&file).unwrap();
    let (p9, p10) = (
        bytes[at[8] + 48..at[9]].to_vec(),
        bytes[at[9] + 48..at[10]].to_vec(),
    );
    assert_eq!(p9.len(), p10.len());
    tamper(&file, at[8], |frame| frame[48..].copy_from_slice(&p10));
    tamper(&file, at[9], |frame| frame[48..].copy_from_slice(&p9));
    let got = read(dir.path(), Some(keys));
    assert_eq!(got.len(), 20);
    for (i, r) in got.iter().enumerate() {
        let lsn = i as u64 + 1;
        // 11 too: it is chained to the tag of the record before it, which
        // is now 9's.
        if [3, 6, 9, 10, 11].contains(&lsn) {
            match r {
                Err(WalError::Decrypt {
                    lsn: at_lsn,
                    offset,
                    ..
                }) => {
                    assert_eq!(*at_lsn, lsn);
                    assert_eq!(*offset as usize, at[i]);
                }
                other => panic!("LSN {lsn}: {other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().unwrap().event, text(i as u64), "LSN {lsn}");
        }
    }
}

/// Clear, then key A, then key B (A kept in the ring): each writer
/// starts a segment of its own, every segment names its key, and a reader
/// with both keys reads the whole log in order. A writer without a key is
/// then refused (the log does not go back to the clear by accident).
#[test]
fn mixed_clear_and_rotated_segments_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Key::new([10; 32]), Key::new([11; 32]));
    let phases: [Option<Arc<KeyRing>>; 4] = [
        None,
        Some(Arc::new(KeyRing::new(a.clone()))),
        Some(Arc::new(
            KeyRing::from_keys([b.clone(), a.clone()]).unwrap(),
        )),
        // B again: its tail is B's, no new segment.
        Some(Arc::new(KeyRing::new(b.clone()))),
    ];
    let mut n = 0;
    let mut keys_seen = Vec::new();
    for phase in &phases {
        let wal = Wal::open(dir.path(), options(phase.clone())).unwrap();
        for _ in 0..5 {
            n += 1;
            wal.append(session(n % 2), &text(n)).unwrap();
        }
        wal.close().unwrap();
        let last = segments(dir.path()).pop().unwrap();
        keys_seen.push(
            SegmentHeader::decode(&std::fs::read(&last).unwrap())
                .unwrap()
                .key_id,
        );
    }
    assert_eq!(keys_seen, [None, Some(a.id()), Some(b.id()), Some(b.id())]);
    let before = segments(dir.path());
    match Wal::open(dir.path(), options(None)) {
        Err(WalError::KeyRequired { key_id, .. }) => assert_eq!(key_id, b.id()),
        other => panic!("{other:?}"),
    }
    assert_eq!(segments(dir.path()), before, "nothing written");
    let both = Arc::new(KeyRing::from_keys([b, a.clone()]).unwrap());
    let got: Vec<EventRecord> = read(dir.path(), Some(both))
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), 20);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.event, text(i as u64 + 1));
    }
    // With only A: the clear records and A's; B's say which key they need.
    let only_a = read(dir.path(), Some(Arc::new(KeyRing::new(a))));
    let missing = only_a
        .iter()
        .filter(|r| matches!(r, Err(WalError::Encrypted { .. })))
        .count();
    assert_eq!(missing, 10);
}

/// The bus's sink, sync and async, writes sealed records too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_sink_seals_sync_and_async_emits() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(5);
    let wal = Wal::open(dir.path(), options(Some(keys.clone()))).unwrap();
    let id = session(7);
    let bus = logbook_bus::SessionBus::new(16).with_durable_sink(Arc::new(wal.sink(id)));
    bus.emit(text(1));
    bus.emit_async(text(2)).await.unwrap();
    drop(bus);
    wal.close_async().await.unwrap();
    let got: Vec<SessionEvent> = read(dir.path(), Some(keys))
        .into_iter()
        .map(|r| r.unwrap().event)
        .collect();
    assert_eq!(got, [text(1), text(2)]);
    assert!(read(dir.path(), None).iter().all(|r| r.is_err()));
}

/// One session's records through the segments' session indexes (sealed
/// segment, tail indexed at close) read back decrypted, as a filtered
/// full scan does.
#[test]
fn one_session_through_the_indexes_of_an_encrypted_log() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ring(6);
    let wal = Wal::open(dir.path(), options(Some(keys.clone()))).unwrap();
    for i in 0..120 {
        wal.append(session(i % 4), &text(i)).unwrap();
    }
    wal.close().unwrap();
    let indexes = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "idx")
        })
        .count();
    assert!(indexes >= 2, "indexed: {indexes}");
    let through_index: Vec<SessionEvent> = Reader::open(dir.path())
        .unwrap()
        .with_keys(keys.clone())
        .session(session(2))
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(r.session, session(2));
            logbook_bus::codec::decode(&r.payload).unwrap()
        })
        .collect();
    let expected: Vec<SessionEvent> = (0..120).filter(|i| i % 4 == 2).map(text).collect();
    assert_eq!(through_index, expected);
}

/// The largest payload the options allow fits in an empty encrypted
/// segment (after its seal block), and one byte more is refused up front.
#[test]
fn the_largest_payload_fits_an_encrypted_segment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(Some(ring(12)));
    let max = opts.max_payload_len();
    let wal = Wal::open(dir.path(), opts).unwrap();
    wal.append_raw(session(1), &vec![7u8; max]).unwrap();
    wal.append_raw(session(1), &vec![8u8; max]).unwrap();
    assert!(matches!(
        wal.append_raw(session(1), &vec![9u8; max + 1]),
        Err(WalError::RecordTooLarge { .. })
    ));
    wal.close().unwrap();
    let got: Vec<usize> = Reader::open(dir.path())
        .unwrap()
        .with_keys(ring(12))
        .map(|r| r.unwrap().payload.len())
        .collect();
    assert_eq!(got, [max, max]);
}

/// Under `SyncPolicy::Never` the committer thread seals and writes a full
/// buffer, without an fsync; a `sync` that then finds nothing queued must
/// still make those records durable (an empty batch has nothing to seal,
/// but its fsync is due). This hung once.
#[test]
fn a_sync_after_the_committer_wrote_makes_its_records_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            sync: logbook_wal::SyncPolicy::Never,
            buffer_bytes: 512,
            segment_size: 1 << 20,
            ..options(Some(ring(4)))
        },
    )
    .unwrap();
    // Each record fills the buffer: each append hands it to the committer.
    let big = |i: u64| SessionEvent::UserMessage(format!("{i:04} {}", "s".repeat(600)));
    let mut last = 0;
    for i in 0..20 {
        last = wal.append(session(0), &big(i)).unwrap();
    }
    // Let the committer write everything queued, none of it fsynced: wait
    // until its count of writes has stood still for a while (a count of
    // looks, not a clock; were it to miss, the test would only not reach
    // the empty batch).
    let mut still = 0;
    let mut writes = wal.stats().writes;
    while still < 20_000 {
        std::thread::yield_now();
        let now = wal.stats().writes;
        still = if now == writes && now > 0 {
            still + 1
        } else {
            0
        };
        writes = now;
    }
    assert_eq!(wal.stats().fsyncs, 0, "nothing fsynced yet");
    let (tx, rx) = std::sync::mpsc::channel();
    let syncer = wal.clone();
    std::thread::spawn(move || tx.send(syncer.sync()).unwrap());
    let synced = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("sync returned (it used to lead empty batches forever)");
    assert_eq!(synced.unwrap(), last);
    assert_eq!(wal.durable_lsn(), last);
    wal.close().unwrap();
    let got = read(dir.path(), Some(ring(4)));
    assert_eq!(got.len(), 20);
}
