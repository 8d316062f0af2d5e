//! `session_tail` (the last `n` records of a session, read from the end
//! through the session indexes) answers exactly what the forward read
//! answers: the last `n` of `session_events`, filtered. The indexes only
//! make the answer cheaper. Checked over random appends (two sessions,
//! two record names, tiny segments), deletions of every kind (records,
//! "after", the whole session, then more appends), restarts (a tail index
//! stored at close, then grown past), compaction (placeholders) and lost
//! index files.

use logbook_bus::SessionEvent;
use logbook_replay::{delete_after, delete_records, delete_session, session_events, session_tail};
use logbook_wal::{EventRecord, Lsn, Wal, WalOptions};
use proptest::prelude::*;
use uuid::Uuid;

const A: Uuid = Uuid::from_u128(0xa);
const B: Uuid = Uuid::from_u128(0xb);

fn options() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Append to A (`true`) or B a custom record named "item" (`true`) or "other".
    Append { a: bool, item: bool, size: usize },
    /// Delete the `pick`th (modulo) of A's live records.
    DeleteOne { pick: usize },
    /// Delete A's records after its `pick`th live record.
    DeleteAfter { pick: usize },
    /// Delete all of A (later appends start it again).
    DeleteSession,
    /// Close and reopen the writer (stores the tail's index).
    Reopen,
    /// Compact: deleted records become placeholders.
    Compact,
    /// Remove every index file (reads scan, and build them again).
    DropIndexes,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (any::<bool>(), any::<bool>(), 1usize..300)
            .prop_map(|(a, item, size)| Op::Append { a, item, size }),
        3 => any::<usize>().prop_map(|pick| Op::DeleteOne { pick }),
        1 => any::<usize>().prop_map(|pick| Op::DeleteAfter { pick }),
        1 => Just(Op::DeleteSession),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        1 => Just(Op::DropIndexes),
    ]
}

fn is_item(r: &EventRecord) -> bool {
    matches!(&r.event, SessionEvent::Custom { name, .. } if name == "item")
}

fn live(dir: &std::path::Path) -> Vec<Lsn> {
    session_events(dir, A)
        .unwrap()
        .iter()
        .map(|r| r.lsn)
        .collect()
}

fn drop_indexes(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// Every `n`, both filters: the tail read equals the last `n` of the full read.
fn check(dir: &std::path::Path) -> Result<(), TestCaseError> {
    let all = session_events(dir, A).unwrap();
    let items: Vec<EventRecord> = all.iter().filter(|r| is_item(r)).cloned().collect();
    for n in [0, 1, 2, 3, 5, 8, 13, 40, 1000] {
        let tail = session_tail(dir, A, n, |_| true).unwrap();
        let want = &all[all.len().saturating_sub(n)..];
        prop_assert_eq!(&tail[..], want, "every record, n = {}", n);
        let tail = session_tail(dir, A, n, is_item).unwrap();
        let want = &items[items.len().saturating_sub(n)..];
        prop_assert_eq!(&tail[..], want, "items only, n = {}", n);
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Some(Wal::open(dir.path(), options()).unwrap());
    let mut counter = 0u32;
    for op in ops {
        let w = wal.as_ref().unwrap();
        match op {
            Op::Append { a, item, size } => {
                counter += 1;
                let mut data = counter.to_le_bytes().to_vec();
                data.resize(*size, 7);
                let name = if *item { "item" } else { "other" };
                let event = SessionEvent::Custom {
                    name: name.into(),
                    data,
                };
                w.append(if *a { A } else { B }, &event).unwrap();
            }
            Op::DeleteOne { pick } => {
                let lsns = live(dir.path());
                if !lsns.is_empty() {
                    delete_records(w, A, &[lsns[pick % lsns.len()]]).unwrap();
                }
            }
            Op::DeleteAfter { pick } => {
                let lsns = live(dir.path());
                if lsns.len() > 1 {
                    // Only when something is after it (else there is nothing to delete).
                    let at = lsns[pick % (lsns.len() - 1)];
                    delete_after(w, A, at).unwrap();
                }
            }
            Op::DeleteSession => {
                if !live(dir.path()).is_empty() {
                    delete_session(w, A).unwrap();
                }
            }
            Op::Reopen => {
                wal.take().unwrap().close().unwrap();
                wal = Some(Wal::open(dir.path(), options()).unwrap());
            }
            Op::Compact => {
                w.compact().unwrap();
            }
            Op::DropIndexes => drop_indexes(dir.path()),
        }
        check(dir.path())?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_tail_read_is_the_end_of_the_full_read(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}

/// A long session, most of its end deleted: the tail read goes back as far
/// as it must (several rounds), and still answers the full read's end.
#[test]
fn a_deleted_end_sends_the_read_further_back() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options()).unwrap();
    let mut lsns = Vec::new();
    for i in 0..300u32 {
        let event = SessionEvent::Custom {
            name: "item".into(),
            data: i.to_le_bytes().to_vec(),
        };
        lsns.push(wal.append(A, &event).unwrap());
        wal.append(B, &event).unwrap();
    }
    delete_records(&wal, A, &lsns[20..290]).unwrap();
    let all = session_events(dir.path(), A).unwrap();
    assert_eq!(all.len(), 30);
    for n in [1, 10, 11, 25, 30, 31] {
        let tail = session_tail(dir.path(), A, n, is_item).unwrap();
        assert_eq!(tail[..], all[all.len().saturating_sub(n)..], "n = {n}");
    }
    wal.close().unwrap();
    let tail = session_tail(dir.path(), A, 15, is_item).unwrap();
    assert_eq!(tail[..], all[15..]);
    // An unknown session has no records.
    assert!(
        session_tail(dir.path(), Uuid::from_u128(9), 5, |_| true)
            .unwrap()
            .is_empty()
    );
}

/// An encrypted log is read forwards (its index is not trusted by a reader
/// with keys): the same answer.
#[test]
fn an_encrypted_log_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let ring = std::sync::Arc::new(logbook_wal::KeyRing::new(logbook_wal::Key::new([7; 32])));
    let _ = logbook_wal::install_default_keys(ring.clone());
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            encryption: Some(ring),
            ..options()
        },
    )
    .unwrap();
    let mut lsns = Vec::new();
    for i in 0..50u32 {
        let event = SessionEvent::Custom {
            name: "item".into(),
            data: i.to_le_bytes().to_vec(),
        };
        lsns.push(wal.append(A, &event).unwrap());
    }
    delete_records(&wal, A, &lsns[45..48]).unwrap();
    let all = session_events(dir.path(), A).unwrap();
    let tail = session_tail(dir.path(), A, 4, is_item).unwrap();
    assert_eq!(tail[..], all[all.len() - 4..]);
}
