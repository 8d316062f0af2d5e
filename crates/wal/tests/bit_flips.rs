//! Bit flips: damage each byte of a small segment in turn. Every flip is
//! detected and reported with its offset, and no flip yields a wrong event.

mod common;

use std::fs;

use common::{event, session};
use logbook_wal::{EventRecord, Reader, Wal, WalError, WalOptions};

const RECORDS: u64 = 5;

#[test]
fn every_flipped_byte_is_detected_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        preallocate: false,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts.clone()).unwrap();
    for i in 1..=RECORDS {
        wal.append(session(i), &event(i)).unwrap();
    }
    wal.close().unwrap();
    let name = "00000000000000000001.wal";
    let original = fs::read(dir.path().join(name)).unwrap();
    // Where each record starts.
    let mut starts = vec![];
    for r in Reader::open(dir.path()).unwrap() {
        starts.push(r.unwrap().offset as usize);
    }
    let record_at = |offset: usize| starts.iter().rposition(|&s| s <= offset);

    for i in 0..original.len() {
        let copy = tempfile::tempdir().unwrap();
        let mut bytes = original.clone();
        bytes[i] ^= 0xff;
        fs::write(copy.path().join(name), &bytes).unwrap();
        fs::copy(dir.path().join("LOG_ID"), copy.path().join("LOG_ID")).unwrap();

        // 1. A reader reports the damage at the damaged frame's offset and
        //    returns only records equal to the originals.
        let mut reader = Reader::open(copy.path()).unwrap();
        let mut detected_at = None;
        while let Some(r) = reader.next_ref() {
            match r {
                Ok(r) => {
                    let e = EventRecord::decode(&r).unwrap();
                    assert_eq!(
                        (e.session, e.event),
                        (session(e.lsn), event(e.lsn)),
                        "flip at {i}: wrong event"
                    );
                }
                Err(WalError::BadHeader { path, .. }) => {
                    assert!(path.ends_with(name));
                    detected_at.get_or_insert(0);
                }
                Err(
                    WalError::Corrupt { offset, .. } | WalError::MidLogCorruption { offset, .. },
                ) => {
                    detected_at.get_or_insert(offset as usize);
                }
                Err(e) => panic!("flip at {i}: unexpected {e}"),
            }
        }
        if let Some(d) = reader.tail_damage() {
            detected_at.get_or_insert(d.offset as usize);
        }
        let expected = if i < 40 {
            0
        } else {
            starts[record_at(i).unwrap()]
        };
        assert_eq!(
            detected_at,
            Some(expected),
            "flip at byte {i} must be reported at its frame"
        );

        // 2. Opening the log either refuses, naming the place, or (for the
        //    last record, which nothing written later vouches for) cuts it
        //    as a torn tail.
        match Wal::open(copy.path(), opts.clone()) {
            Ok(wal) => {
                let cut = wal
                    .recovery()
                    .cut
                    .clone()
                    .unwrap_or_else(|| panic!("flip at {i} went unnoticed"));
                assert_eq!(cut.offset as usize, expected);
                assert_eq!(cut.lsn, RECORDS, "only the last record may be cut");
            }
            Err(WalError::BadHeader { .. }) => assert!(i < 40),
            Err(WalError::MidLogCorruption { offset, lsn, .. }) => {
                assert_eq!(offset as usize, expected);
                assert!(lsn < RECORDS);
            }
            Err(e) => panic!("flip at {i}: unexpected {e}"),
        }
    }
}
