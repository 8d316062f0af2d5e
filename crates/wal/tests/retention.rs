//! Retention policies (`WalOptions::retention`, applied at every segment
//! roll, and `Wal::retain`): what they remove, and that a power cut at any
//! operation of a retention pass, with a reader running beside it, leaves
//! a gapless log holding every acknowledged record the policy kept.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{session, small};
use logbook_wal::sim::SimFs;
use logbook_wal::{Reader, Retention, Wal, WalOptions};

const DIR: &str = "/log";

fn payload(i: u64) -> Vec<u8> {
    format!("record {i:06} {}", "x".repeat(100)).into_bytes()
}

fn with(retention: Retention) -> WalOptions {
    WalOptions {
        retention,
        ..small(4096)
    }
}

/// (LSN, payload) of every record a reader returns; panics on an error.
fn records(fs: &SimFs) -> Vec<(u64, Vec<u8>)> {
    Reader::open_with_fs(Arc::new(fs.clone()), DIR)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.lsn, r.payload.clone())
        })
        .collect()
}

fn segment_bytes(fs: &SimFs) -> u64 {
    let names = logbook_wal::fs::Fs::read_dir(fs, Path::new(DIR)).unwrap();
    names
        .iter()
        .filter(|n| n.ends_with(".wal"))
        .map(|n| {
            fs.file_bytes(Path::new(DIR).join(n))
                .map_or(0, |b| b.len() as u64)
        })
        .sum()
}

#[test]
fn a_size_limit_applied_at_each_roll_bounds_the_log_and_keeps_its_newest_records() {
    let fs = SimFs::new(1);
    let policy = Retention {
        max_bytes: Some(3 * 4096),
        ..Retention::default()
    };
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, with(policy)).unwrap();
    for i in 0..400 {
        wal.append_raw(session(i % 3), &payload(i)).unwrap();
        // Sealed segments plus the active one: at most the limit plus a segment.
        assert!(segment_bytes(&fs) <= 4 * 4096, "after {i}");
    }
    let got = records(&fs);
    let first = got.first().unwrap().0;
    assert!(first > 1, "old segments went");
    assert_eq!(got.last().unwrap().0, 400);
    for (lsn, p) in &got {
        assert_eq!(p, &payload(lsn - 1), "LSN {lsn}");
    }
    assert_eq!(got.len() as u64, 400 - first + 1, "gapless");
}

#[test]
fn an_lsn_limit_and_an_age_of_zero_remove_what_they_name() {
    let fs = SimFs::new(2);
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(4096)).unwrap();
    for i in 0..300 {
        wal.append_raw(session(i % 3), &payload(i)).unwrap();
    }
    let plan = wal
        .retain(&Retention {
            before_lsn: Some(100),
            ..Retention::default()
        })
        .unwrap();
    assert!(!plan.is_empty());
    assert!(plan.keep_from <= 100);
    assert!(plan.segments.iter().all(|s| s.end_lsn <= 100));
    assert_eq!(records(&fs).first().unwrap().0, plan.keep_from);
    // Every sealed segment is older than "now minus zero" (bar one sealed
    // in the same microsecond as its successor was created).
    wal.retain(&Retention {
        max_age: Some(Duration::ZERO),
        ..Retention::default()
    })
    .unwrap();
    let names = logbook_wal::fs::Fs::read_dir(&fs, Path::new(DIR)).unwrap();
    assert!(
        names.iter().filter(|n| n.ends_with(".wal")).count() <= 2,
        "{names:?}"
    );
    assert_eq!(records(&fs).last().unwrap().0, 300);
}

/// A power cut at every operation of a retention pass at a roll (and of
/// the appends around it), with a reader opened before the pass reading
/// after it: the reader returns only right records, in order, without a
/// gap; and the log that recovery leaves is gapless from its first record
/// to the last acknowledged one, each record intact.
#[test]
fn a_power_cut_at_any_operation_of_retention_at_a_roll_loses_no_kept_record() {
    let mut removed_some = false;
    for n in 1..60u64 {
        let fs = SimFs::new(n);
        let policy = Retention {
            before_lsn: Some(150),
            ..Retention::default()
        };
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(4096)).unwrap();
        for i in 0..140 {
            wal.append_raw(session(i % 3), &payload(i)).unwrap();
        }
        drop(wal);
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, with(policy)).unwrap();
        let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), DIR).unwrap();
        let first = reader.next().unwrap().unwrap().lsn;
        assert_eq!(first, 1);
        fs.cut_power_after(n);
        let mut acked = 140;
        for i in 140..240 {
            if wal.append_raw(session(i % 3), &payload(i)).is_err() {
                break;
            }
            acked = i + 1;
        }
        // The reader beside it: whatever it returns is right and in order.
        let mut last = first;
        for r in reader.by_ref() {
            let Ok(r) = r else { break };
            assert_eq!(r.lsn, last + 1, "cut at {n}: the reader skipped");
            assert_eq!(r.payload, payload(r.lsn - 1), "cut at {n}");
            last = r.lsn;
        }
        let cut = fs.power_was_cut();
        fs.cut_power_after(u64::MAX / 2);
        if !cut {
            fs.power_cut();
        }
        drop(wal);
        drop(reader);
        drop(Wal::open_with_fs(Arc::new(fs.clone()), DIR, small(4096)).unwrap());
        let got = records(&fs);
        let (lo, hi) = (got.first().unwrap().0, got.last().unwrap().0);
        assert!(
            hi >= acked,
            "cut at {n}: acknowledged LSN {acked} lost (log ends at {hi})"
        );
        assert!(
            lo <= 150,
            "cut at {n}: retention removed past its limit (log starts at {lo})"
        );
        assert_eq!(got.len() as u64, hi - lo + 1, "cut at {n}: a gap");
        removed_some |= lo > 1;
        for (lsn, p) in &got {
            assert_eq!(p, &payload(lsn - 1), "cut at {n}: LSN {lsn}");
        }
    }
    assert!(removed_some, "retention ran in some of the runs");
}
