//! Fault injection through the I/O seam: a failed write or fsync poisons
//! the log (that append and every later one fail naming the first cause,
//! the fsync is never retried), and after a power cut and a reopen no
//! acknowledged record is missing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{event, is_poisoned, read_all_fs, session};
use logbook_wal::sim::{Op, SimFs};
use logbook_wal::{Wal, WalError, WalOptions};

const DIR: &str = "/log";

fn open(fs: &SimFs) -> Wal {
    Wal::open_with_fs(
        Arc::new(fs.clone()),
        DIR,
        WalOptions {
            segment_size: 16 * 1024,
            ..WalOptions::default()
        },
    )
    .unwrap()
}

/// Cut the power, reopen, and check `acked` survived.
fn survives(fs: &SimFs, acked: &BTreeMap<u64, (uuid::Uuid, logbook_bus::SessionEvent)>) {
    fs.power_cut();
    drop(open(fs));
    let records = read_all_fs(Arc::new(fs.clone()), Path::new(DIR));
    let found: BTreeMap<_, _> = records.into_iter().map(|(l, s, e)| (l, (s, e))).collect();
    for (lsn, want) in acked {
        assert_eq!(found.get(lsn), Some(want), "acknowledged LSN {lsn} lost");
    }
}

fn poisons_on(op: Op, partial: bool) {
    for after in [0u64, 1, 5, 17] {
        let fs = SimFs::new(after);
        let wal = open(&fs);
        let mut acked = BTreeMap::new();
        for i in 1..=10 {
            acked.insert(
                wal.append(session(1), &event(i)).unwrap(),
                (session(1), event(i)),
            );
        }
        if partial {
            fs.fail_write_partially(after, 7, libc::EIO);
        } else {
            fs.fail_after(op, after, libc::EIO);
        }
        // Append until the fault hits.
        let mut i = 10;
        let first = loop {
            i += 1;
            match wal.append(session(1), &event(i)) {
                Ok(lsn) => {
                    acked.insert(lsn, (session(1), event(i)));
                }
                Err(e) => break e,
            }
            assert!(i < 1000, "the fault never hit");
        };
        let what = if op == Op::Sync { "fsync" } else { "write" };
        // The append that hit the fault already reports the poisoning and its cause.
        let WalError::Poisoned { cause } = &first else {
            panic!("{first}")
        };
        assert!(
            matches!(&**cause, WalError::Io { op, .. } if *op == what),
            "{first}"
        );
        assert!(
            first.to_string().contains("/log/0000"),
            "the error names the segment: {first}"
        );
        // Every later call fails, naming the first cause; nothing is retried.
        let syncs = fs.op_count(Op::Sync);
        let writes = fs.op_count(Op::Write);
        for _ in 0..3 {
            let e = wal.append(session(2), &event(1)).unwrap_err();
            assert!(is_poisoned(&e), "{e}");
            assert!(
                e.to_string().contains(&first.to_string()),
                "{e} names {first}"
            );
            assert!(is_poisoned(&wal.sync().unwrap_err()));
        }
        assert_eq!(
            fs.op_count(Op::Sync),
            syncs,
            "a failed fsync is never retried"
        );
        assert_eq!(
            fs.op_count(Op::Write),
            writes,
            "a poisoned log writes nothing"
        );
        // The sink says the same through `io::Error`.
        let err = logbook_bus::DurableSink::write(
            &wal.sink(session(3)),
            &logbook_bus::SessionEvent::Done,
        )
        .unwrap_err();
        assert!(
            err.get_ref()
                .and_then(|e| e.downcast_ref::<WalError>())
                .is_some_and(is_poisoned)
        );
        drop(wal);
        survives(&fs, &acked);
        // Reopening recovers: appends work again.
        let wal = open(&fs);
        wal.append(session(1), &event(99)).unwrap();
    }
}

#[test]
fn failed_fsync_poisons() {
    poisons_on(Op::Sync, false);
}

#[test]
fn failed_write_poisons() {
    poisons_on(Op::Write, false);
}

#[test]
fn partial_write_poisons() {
    poisons_on(Op::Write, true);
}

#[test]
fn failure_during_a_segment_roll_poisons() {
    for op in [
        Op::Create,
        Op::Allocate,
        Op::Rename,
        Op::SyncDir,
        Op::SetLen,
    ] {
        let fs = SimFs::new(3);
        let wal = open(&fs);
        fs.fail_after(op, 0, libc::EIO);
        let mut acked = BTreeMap::new();
        let mut err = None;
        for i in 1..2000 {
            match wal.append(session(1), &event(i)) {
                Ok(lsn) => {
                    acked.insert(lsn, (session(1), event(i)));
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.unwrap_or_else(|| panic!("{op:?} fault never hit"));
        assert!(
            matches!(&err, WalError::Poisoned { cause } if matches!(**cause, WalError::Io { .. })),
            "{op:?}: {err}"
        );
        assert!(is_poisoned(&wal.append(session(1), &event(1)).unwrap_err()));
        drop(wal);
        survives(&fs, &acked);
    }
}

#[test]
fn concurrent_appenders_all_fail_together_and_lose_nothing_acknowledged() {
    for seed in 0..20u64 {
        let fs = SimFs::new(seed);
        let wal = open(&fs);
        fs.fail_after(
            if seed % 2 == 0 { Op::Sync } else { Op::Write },
            3 + seed * 7,
            libc::EIO,
        );
        let acked = Mutex::new(BTreeMap::new());
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (wal, acked) = (&wal, &acked);
                s.spawn(move || {
                    let mut failed = false;
                    for n in 0..500 {
                        let i = t * 1000 + n;
                        match wal.append(session(t), &event(i)) {
                            Ok(lsn) => {
                                assert!(!failed, "an append succeeded after the log failed");
                                acked.lock().unwrap().insert(lsn, (session(t), event(i)));
                            }
                            Err(_) => failed = true,
                        }
                    }
                    assert!(failed, "thread {t} never saw the failure");
                });
            }
        });
        drop(wal);
        survives(&fs, &acked.lock().unwrap());
    }
}

/// After a failed fsync, Linux marks the dirty pages clean: reads return the
/// new bytes, no later fsync writes them. A reopen in the same boot must not
/// keep (and vouch for) what only the page cache holds. Two mechanisms see
/// to it, and either is enough: the poisoned writer cuts the unsynced tail
/// off the file, and its poisoned watermark makes recovery cut every frame
/// after its last good fsync. Each is checked with the other one failing;
/// in every case records acknowledged after the reopen survive a power cut.
#[test]
fn reopen_after_a_failed_fsync_does_not_trust_the_page_cache() {
    for (errno, also) in [
        (libc::EIO, None),
        (libc::ENOSPC, None),
        (libc::EDQUOT, Some(Op::Publish)),
        (libc::EIO, Some(Op::SetLen)),
    ] {
        let what = format!("fsync errno {errno}, {also:?} failing too");
        let fs = SimFs::new(11);
        let wal = open(&fs);
        let mut acked = BTreeMap::new();
        for i in 1..=5 {
            acked.insert(
                wal.append(session(1), &event(i)).unwrap(),
                (session(1), event(i)),
            );
        }
        fs.fail_after(Op::Sync, 0, errno);
        if let Some(op) = also {
            fs.fail_after(op, 0, libc::EIO);
        }
        let e = wal.append(session(1), &event(6)).unwrap_err();
        assert!(is_poisoned(&e), "{what}: {e}");
        drop(wal); // the process goes on; the page cache may keep record 6

        let wal = open(&fs);
        assert_eq!(
            wal.last_lsn(),
            5,
            "{what}: the record whose fsync failed is gone"
        );
        if also == Some(Op::SetLen) {
            let cut = wal.recovery().cut.clone();
            assert_eq!(cut.map(|c| c.lsn), Some(6), "{what}: recovery cut it");
        }
        for i in 7..=9 {
            acked.insert(
                wal.append(session(2), &event(i)).unwrap(),
                (session(2), event(i)),
            );
        }
        assert_eq!(acked.keys().last(), Some(&8), "{what}");
        drop(wal);
        survives(&fs, &acked);
    }
}

/// A failed fsync *during recovery*. In the boot the previous writer ran
/// in, what `open` read past what that writer vouched for may exist only in
/// the page cache: the failing `open` cuts it off and marks the watermark
/// poisoned, so the next `open` does not adopt it, and what it acknowledges
/// survives a power cut. After a power cut (another boot) everything read
/// came from the disk: a failed recovery fsync cuts nothing, and every
/// acknowledged record is kept. (Found by the `wal_ops` fuzz target.)
#[test]
fn a_failed_fsync_during_recovery_neither_trusts_the_cache_nor_cuts_acknowledged_records() {
    let never = WalOptions {
        segment_size: 16 * 1024,
        buffer_bytes: 1, // every append is written, none fsynced
        sync: logbook_wal::SyncPolicy::Never,
        ..WalOptions::default()
    };
    let reopen = |fs: &SimFs| Wal::open_with_fs(Arc::new(fs.clone()), DIR, never.clone());
    for power_cut_first in [false, true] {
        let what = if power_cut_first {
            "after a power cut"
        } else {
            "same boot"
        };
        let fs = SimFs::new(21);
        let wal = reopen(&fs).unwrap();
        let mut acked = BTreeMap::new();
        for i in 1..=3 {
            let lsn = wal.append(session(1), &event(i)).unwrap();
            acked.insert(lsn, (session(1), event(i)));
        }
        assert_eq!(wal.sync().unwrap(), 3, "{what}");
        // Written, never fsynced, never acknowledged.
        for i in 4..=8 {
            wal.append(session(2), &event(i)).unwrap();
        }
        std::mem::forget(wal); // the process dies: nothing is closed or flushed
        if power_cut_first {
            fs.power_cut();
        } else {
            fs.crash();
        }
        fs.fail_after(Op::Sync, 0, libc::EIO);
        let e = reopen(&fs).unwrap_err();
        assert!(e.to_string().contains("fsync"), "{what}: {e}");
        let wal = reopen(&fs).unwrap_or_else(|e| panic!("{what}: {e}"));
        if !power_cut_first {
            assert_eq!(wal.last_lsn(), 3, "{what}: the unvouched tail is gone");
        }
        let lsn = wal.append(session(3), &event(9)).unwrap();
        assert_eq!(wal.sync().unwrap(), lsn);
        acked.insert(lsn, (session(3), event(9)));
        drop(wal);
        survives(&fs, &acked);
    }
}
