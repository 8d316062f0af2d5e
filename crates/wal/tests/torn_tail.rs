//! Torn tails: cut the log at every byte offset inside its last records;
//! recovery keeps exactly the whole records before the cut, and appending
//! continues after it.

mod common;

use std::fs;
use std::path::Path;

use common::{event, read_all, session};
use logbook_wal::{Wal, WalOptions};

const RECORDS: u64 = 12;
const TORN: u64 = 4; // the last records, cut at every byte

/// Write the log once; return its segment's bytes and each record's end offset.
fn write_log(dir: &Path) -> (Vec<u8>, Vec<usize>) {
    let wal = Wal::open(
        dir,
        WalOptions {
            preallocate: false,
            ..WalOptions::default()
        },
    )
    .unwrap();
    for i in 1..=RECORDS {
        wal.append(session(i % 3), &event(i)).unwrap();
    }
    wal.close().unwrap();
    let seg = dir.join("00000000000000000001.wal");
    let bytes = fs::read(&seg).unwrap();
    let mut ends = Vec::new();
    let mut reader = logbook_wal::Reader::open(dir).unwrap();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap();
        ends.push(r.offset as usize + 48 + r.payload.len());
    }
    assert_eq!(ends.len() as u64, RECORDS);
    (bytes, ends)
}

fn check_cut(bytes: &[u8], ends: &[usize], cut: usize, zero_fill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut image = bytes[..cut].to_vec();
    if zero_fill {
        // A preallocated segment: the cut-off bytes read as zeros.
        image.resize(bytes.len() + 4096, 0);
    }
    fs::write(dir.path().join("00000000000000000001.wal"), &image).unwrap();
    // A bare segment image: a log that never had an id.
    logbook_wal::assign_log_id(dir.path()).unwrap();
    let whole = ends.iter().filter(|&&e| e <= cut).count() as u64;

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let report = wal.recovery().clone();
    assert_eq!(
        report.next_lsn,
        whole + 1,
        "cut at {cut} (zero fill {zero_fill})"
    );
    let clean = cut == ends[whole as usize - 1] || (whole == 0 && cut == 40);
    assert_eq!(report.cut.is_some(), !clean, "cut at {cut}: {report:?}");
    if let Some(c) = &report.cut {
        assert_eq!(
            c.offset as usize,
            ends[whole as usize - 1],
            "the cut starts after the last whole record"
        );
        assert_eq!(c.lsn, whole + 1);
    }
    // Appending continues right after the last whole record.
    let lsn = wal.append(session(9), &event(1000)).unwrap();
    assert_eq!(lsn, whole + 1);
    wal.close().unwrap();

    let records = read_all(dir.path());
    assert_eq!(records.len() as u64, whole + 1);
    for (i, (lsn, s, e)) in records.iter().enumerate() {
        let i = i as u64 + 1;
        assert_eq!(*lsn, i);
        if i <= whole {
            assert_eq!(
                (*s, e),
                (session(i % 3), &event(i)),
                "record {i} survives intact"
            );
        } else {
            assert_eq!((*s, e), (session(9), &event(1000)));
        }
    }
}

#[test]
fn every_cut_in_the_last_records_recovers_exactly_the_whole_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, ends) = write_log(dir.path());
    let from = ends[(RECORDS - TORN - 1) as usize];
    for cut in from..=bytes.len() {
        check_cut(&bytes, &ends, cut, false);
        check_cut(&bytes, &ends, cut, true);
    }
}
