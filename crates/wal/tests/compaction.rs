//! Compaction (`Wal::compact`) on the simulated file system: a power cut
//! at every operation of a compaction, with a reader opened before it and
//! reading after it, loses no record that was acknowledged and not
//! deleted, never brings a deleted record back to a reader, leaves no
//! half-written segment in use, and a compaction run again after the
//! restart leaves no byte of a deleted record in the directory.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::small;
use logbook_bus::SessionEvent;
use logbook_wal::fs::Fs;
use logbook_wal::sim::SimFs;
use logbook_wal::{EventRecord, Reader, Wal};
use uuid::Uuid;

const DIR: &str = "/log";

fn secret(i: u64) -> String {
    format!("okapi-secret-{i:04}")
}

fn kept(i: u64) -> String {
    format!("kept-{i:04}")
}

/// Sessions `a` (to delete) and `b` (kept), interleaved over segments,
/// and a tombstone of `a` listing each of its records.
fn write_log(fs: &SimFs) -> (Uuid, Uuid) {
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(4096)).unwrap();
    let mut listed = Vec::new();
    for i in 0..120 {
        listed.push(
            wal.append(a, &SessionEvent::UserMessage(secret(i)))
                .unwrap(),
        );
        wal.append(b, &SessionEvent::UserMessage(kept(i))).unwrap();
    }
    wal.append(
        a,
        &SessionEvent::SessionDeleted {
            after_lsn: Some(0),
            ranges: logbook_bus::lsn_ranges(listed),
            reason: "test".into(),
        },
    )
    .unwrap();
    wal.close().unwrap();
    (a, b)
}

fn names(fs: &SimFs) -> Vec<String> {
    let mut n = fs.read_dir(Path::new(DIR)).unwrap();
    n.sort();
    n
}

fn any_file_holds(fs: &SimFs, needle: &[u8]) -> Option<String> {
    names(fs).into_iter().find(|n| {
        fs.file_bytes(Path::new(DIR).join(n))
            .is_some_and(|b| b.windows(needle.len()).any(|w| w == needle))
    })
}

/// Check one record a reader returned: right content for its session.
fn check(r: &EventRecord, a: Uuid, b: Uuid, n: u64) {
    let SessionEvent::UserMessage(text) = &r.event else {
        assert!(r.event.is_tombstone(), "cut at {n}: {r:?}");
        return;
    };
    if r.session == a {
        assert!(text.starts_with("okapi-secret-"), "cut at {n}: {text}");
    } else {
        assert_eq!(r.session, b, "cut at {n}");
        assert!(text.starts_with("kept-"), "cut at {n}: {text}");
    }
}

#[test]
fn a_power_cut_at_every_operation_of_a_compaction_loses_nothing_kept_and_restores_nothing_deleted()
{
    // Cut after operation n, for every n until a compaction runs whole.
    let mut completed = false;
    for n in 1..2000u64 {
        if completed {
            break;
        }
        let fs = SimFs::new(n);
        let (a, b) = write_log(&fs);
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(4096)).unwrap();
        // A reader beside the compaction: opened (and a record read)
        // before it, the rest read after.
        let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), DIR).unwrap();
        let first = reader.next_ref().unwrap().unwrap();
        assert_eq!(first.lsn, 1);
        fs.cut_power_after(n);
        let result = wal.compact();
        completed |= result.is_ok() && !fs.power_was_cut();
        while let Some(r) = reader.next_ref() {
            // Whatever it returns is a whole, right record: from the old
            // segment or the new one, never a mix.
            let Ok(r) = r else { break };
            check(&EventRecord::decode(&r).unwrap(), a, b, n);
        }
        let cut = fs.power_was_cut();
        fs.cut_power_after(u64::MAX / 2);
        if !cut {
            fs.power_cut();
        }
        drop(wal);
        drop(reader);
        // Restart: nothing half-done left, every kept record there, no
        // deleted one returned by a reader that honours tombstones.
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(4096)).unwrap();
        assert!(
            !names(&fs).iter().any(|f| f.ends_with(".compact")),
            "cut at {n}: {:?}",
            names(&fs)
        );
        let mut kept_seen = 0;
        let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), DIR).unwrap();
        while let Some(r) = reader.next_ref() {
            let r = EventRecord::decode(&r.unwrap_or_else(|e| panic!("cut at {n}: {e}"))).unwrap();
            check(&r, a, b, n);
            if r.session == b {
                assert_eq!(
                    r.event,
                    SessionEvent::UserMessage(kept(kept_seen)),
                    "cut at {n}"
                );
                kept_seen += 1;
            }
        }
        assert_eq!(kept_seen, 120, "cut at {n}: kept records lost");
        // What a compaction that returned Ok erased stays erased.
        if result.is_ok() {
            for i in 0..120 {
                assert_eq!(
                    any_file_holds(&fs, secret(i).as_bytes()),
                    None,
                    "cut at {n}, after Ok: {}",
                    secret(i)
                );
            }
        }
        // A compaction run again finishes the job.
        wal.compact().unwrap_or_else(|e| panic!("cut at {n}: {e}"));
        for i in 0..120 {
            assert_eq!(
                any_file_holds(&fs, secret(i).as_bytes()),
                None,
                "cut at {n}: {}",
                secret(i)
            );
        }
        assert!(any_file_holds(&fs, kept(7).as_bytes()).is_some());
        wal.close().unwrap();
    }
    assert!(
        completed,
        "a compaction ran whole within the operations tried"
    );
}

/// A keyed read of one session passes the placeholders compaction left
/// for another session's deleted records: each held to that session's
/// tombstone (which the one-session read opens too), none reported, and
/// none returned.
#[test]
fn a_keyed_one_session_read_lets_other_sessions_tombstones_explain_their_placeholders() {
    use logbook_wal::{Key, KeyRing, WalOptions};
    let ring = Arc::new(KeyRing::new(Key::new([9; 32])));
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let wal = Wal::open(
        dir,
        WalOptions {
            segment_size: 64 * 1024,
            encryption: Some(ring.clone()),
            ..WalOptions::default()
        },
    )
    .unwrap();
    let mut of_b = Vec::new();
    for i in 0..400u64 {
        wal.append(a, &SessionEvent::UserMessage(format!("a-{i:04}")))
            .unwrap();
        of_b.push(
            wal.append(b, &SessionEvent::UserMessage(format!("b-{i:04}")))
                .unwrap(),
        );
    }
    wal.append(
        b,
        &SessionEvent::SessionDeleted {
            after_lsn: None,
            ranges: of_b.iter().map(|&l| (l, l)).collect(),
            reason: String::new(),
        },
    )
    .unwrap();
    let done = wal.compact().unwrap();
    assert!(done.erased > 0, "{done:?}");
    wal.close().unwrap();
    let mut one = Reader::open(dir).unwrap().with_keys(ring).session(a);
    let mut seen = 0;
    while let Some(r) = one.next_ref() {
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.session, a);
        EventRecord::decode(&r).unwrap();
        seen += 1;
    }
    assert_eq!(seen, 400);
    assert!(one.redacted() > 0);
}
