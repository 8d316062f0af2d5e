//! Summaries never stand in for an encrypted log's records
//! (`docs/security.md`): an attacker without the key replaces the first
//! encrypted segment with a clear one of their own and lets a keyless
//! listing summarise it; a listing with the key must read that segment
//! (and refuse it), not fold the planted summaries.
//!
//! One test in its own binary: it installs the process's keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook_bus::SessionEvent;
use logbook_wal::{Key, KeyRing, Reader, SegmentHeader, Wal, WalOptions};
use uuid::Uuid;

fn segment_file_name(base: u64) -> String {
    format!("{base:020}.wal")
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

/// A clear segment starting at `base` with `n` forged records.
fn forged_segment(base: u64, n: u64, forger: Uuid) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        tmp.path(),
        WalOptions {
            segment_size: 1 << 20,
            ..WalOptions::default()
        },
    )
    .unwrap();
    for _ in 1..base {
        wal.append(Uuid::nil(), &SessionEvent::Done).unwrap();
    }
    for i in 0..n {
        wal.append(forger, &SessionEvent::UserMessage(format!("FORGED {i}")))
            .unwrap();
    }
    wal.close().unwrap();
    let ends: Vec<(u64, usize, usize)> = Reader::open(tmp.path())
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (
                r.lsn,
                r.offset as usize,
                r.offset as usize + 48 + r.payload.len(),
            )
        })
        .collect();
    let from = ends.iter().find(|e| e.0 == base).unwrap().1;
    let to = ends.last().unwrap().2;
    let bytes = std::fs::read(tmp.path().join(segment_file_name(1))).unwrap();
    let mut out = SegmentHeader {
        codec_id: logbook_bus::codec::CODEC_ID,
        base_lsn: base,
        created_us: 1,
        key_id: None,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(&bytes[from..to]);
    out
}

#[test]
fn a_keyed_listing_reads_what_summaries_would_stand_in_for() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |ring: Option<Arc<KeyRing>>| WalOptions {
        segment_size: 4096,
        encryption: ring,
        ..WalOptions::default()
    };
    let honest = Uuid::from_u128(1);
    let wal = Wal::open(dir.path(), opts(None)).unwrap();
    for i in 0..60 {
        wal.append(honest, &SessionEvent::UserMessage(format!("clear {i}")))
            .unwrap();
    }
    wal.close().unwrap();
    let ring = Arc::new(KeyRing::new(Key::new([42; 32])));
    let wal = Wal::open(dir.path(), opts(Some(ring.clone()))).unwrap();
    let enc_start = wal.recovery().next_lsn;
    for i in 0..120 {
        wal.append(honest, &SessionEvent::UserMessage(format!("secret {i}")))
            .unwrap();
    }
    wal.close().unwrap();

    // The attack: the first encrypted segment replaced by a clear one.
    let victim = dir.path().join(segment_file_name(enc_start));
    let count = Reader::open_segment_file(&victim)
        .unwrap()
        .with_keys(ring.clone())
        .count() as u64;
    let forger = Uuid::from_u128(666);
    std::fs::write(&victim, forged_segment(enc_start, count, forger)).unwrap();
    // Its summaries, made by a listing of a copy of the clear front and
    // the planted segment (sealed there by one more segment after it),
    // then planted beside it.
    let work = tempfile::tempdir().unwrap();
    for seg in segments(dir.path()) {
        if seg.file_name() <= victim.file_name() {
            std::fs::copy(&seg, work.path().join(seg.file_name().unwrap())).unwrap();
        }
    }
    let after = enc_start + count;
    std::fs::write(
        work.path().join(segment_file_name(after)),
        forged_segment(after, 1, forger),
    )
    .unwrap();
    let crafted = logbook_replay::list_sessions(work.path()).unwrap();
    assert!(crafted.sessions.iter().any(|s| s.session == forger));
    for seg in segments(work.path()) {
        let sum = PathBuf::from(format!("{}.sum", seg.display()));
        if sum.exists() && seg.file_name() <= victim.file_name() {
            std::fs::copy(&sum, dir.path().join(sum.file_name().unwrap())).unwrap();
        }
    }
    let sum = PathBuf::from(format!("{}.sum", victim.display()));
    assert!(sum.exists(), "the planted segment got summaries");
    assert!(segments(dir.path()).len() >= 3);

    logbook_wal::install_default_keys(ring).unwrap();
    match logbook_replay::list_sessions(dir.path()) {
        Err(e) => assert!(
            format!("{e:?}").contains("Forged") && format!("{e:?}").contains("in the clear"),
            "{e:?}"
        ),
        Ok(listing) => panic!(
            "a forged segment was listed through its summaries: {:?}",
            listing
                .sessions
                .iter()
                .map(|s| s.session)
                .collect::<Vec<_>>()
        ),
    }
}
