//! Every I/O operation the writer makes × every errno that matters (`EIO`,
//! `ENOSPC`, `EDQUOT`, and short writes ending in each) × every sync policy,
//! each fault landing at several points of a workload with segment rolls.
//! For each cell the contract of `docs/durability.md` is checked:
//!
//! * a failed fsync (file or directory) and a failed cut (`ftruncate`)
//!   poison, whatever the errno; so does a failed write, create, rename or
//!   preallocation with `EIO`. Poisoned: the call fails with
//!   `WalError::Poisoned` whose cause is `WalError::Io` (never `DiskFull`),
//!   every later call fails the same way, and no fsync is attempted again;
//! * a write, create, rename or preallocation failing with `ENOSPC` or
//!   `EDQUOT` is a full disk: `DiskFull`, not poisoned, appends succeed
//!   again once it passes, and under `Batch`/`Never` no record that returned
//!   `Ok` is dropped or loses its LSN;
//! * a failed publication of the durable watermark changes nothing visible;
//! * then a power cut and a reopen: every acknowledged record is there, and
//!   every LSN holds the record it was returned for (or nothing, if that
//!   record was never acknowledged).
//!
//! The same matrix runs with encryption at rest on (`*_encrypted`): there,
//! under `Never`, a full buffer is sealed and written by the committer
//! thread while appends go on (`Writer::seal_aside`), so every fault of a
//! write or fsync lands on that thread.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::read_all_fs;
use logbook_bus::SessionEvent;
use logbook_wal::sim::{Op, SimFs};
use logbook_wal::{EventRecord, Key, KeyRing, Lsn, Reader, SyncPolicy, Wal, WalError, WalOptions};
use uuid::Uuid;

const DIR: &str = "/log";

const POLICIES: [SyncPolicy; 3] = [
    SyncPolicy::Always,
    SyncPolicy::Batch {
        max_delay: Duration::from_millis(1),
        max_bytes: 1024,
    },
    SyncPolicy::Never,
];

thread_local! {
    /// The keys of the matrix running on this thread: `None` in the clear.
    static RING: std::cell::RefCell<Option<Arc<KeyRing>>> = const { std::cell::RefCell::new(None) };
}

fn opts(sync: SyncPolicy) -> WalOptions {
    WalOptions {
        segment_size: 4096,
        buffer_bytes: 512,
        sync,
        encryption: RING.with(|r| r.borrow().clone()),
        ..WalOptions::default()
    }
}

/// Every record of the log, decoded (opened, when encrypted).
fn read_back(fs: &SimFs) -> BTreeMap<Lsn, SessionEvent> {
    let Some(ring) = RING.with(|r| r.borrow().clone()) else {
        return read_all_fs(Arc::new(fs.clone()), Path::new(DIR))
            .into_iter()
            .map(|(l, _, e)| (l, e))
            .collect();
    };
    let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), DIR)
        .unwrap()
        .with_keys(ring);
    let mut out = BTreeMap::new();
    while let Some(r) = reader.next_ref() {
        let r = EventRecord::decode(&r.unwrap()).unwrap();
        out.insert(r.lsn, r.event);
    }
    out
}

fn event(i: u64) -> SessionEvent {
    SessionEvent::TextComplete(format!("record {i} {}", "y".repeat((i % 13 * 17) as usize)))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Poison,
    DiskFull,
    Nothing,
}

fn expect(op: Op, errno: i32) -> Expect {
    match op {
        // Every fsync, and the cut-backs whose failure leaves the file's
        // state unknown, poison whatever the errno.
        Op::Sync | Op::SyncDir | Op::SetLen => Expect::Poison,
        Op::Publish => Expect::Nothing,
        _ if errno == libc::EIO => Expect::Poison,
        _ => Expect::DiskFull,
    }
}

struct Run {
    wal: Wal,
    policy: SyncPolicy,
    /// LSN → event for every `Ok`.
    ok: BTreeMap<Lsn, SessionEvent>,
    /// The LSNs known durable.
    acked: Lsn,
    errors: Vec<WalError>,
    i: u64,
}

impl Run {
    fn step(&mut self) {
        self.i += 1;
        let e = event(self.i);
        match self.wal.append(Uuid::nil(), &e) {
            Ok(lsn) => {
                assert!(self.ok.insert(lsn, e).is_none(), "LSN {lsn} returned twice");
                if self.policy == SyncPolicy::Always {
                    self.acked = self.acked.max(lsn);
                }
            }
            Err(e) => self.errors.push(e),
        }
        if self.policy != SyncPolicy::Always && self.i % 4 == 0 {
            match self.wal.sync() {
                Ok(d) => self.acked = self.acked.max(d),
                Err(e) => self.errors.push(e),
            }
        }
    }
}

fn cell(policy: SyncPolicy, op: Op, errno: i32, partial: Option<usize>, after: u64) {
    let what = format!("{policy:?} {op:?} errno {errno} partial {partial:?} after {after}");
    let fs = SimFs::new(after ^ u64::from(errno.unsigned_abs()));
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts(policy)).unwrap();
    let mut run = Run {
        wal,
        policy,
        ok: BTreeMap::new(),
        acked: 0,
        errors: Vec::new(),
        i: 0,
    };
    for _ in 0..20 {
        run.step();
    }
    assert!(run.errors.is_empty(), "{what}: {:?}", run.errors);
    let base = fs.op_count(op);
    match partial {
        Some(bytes) => fs.fail_write_partially(after, bytes, errno),
        None => fs.fail_after(op, after, errno),
    }
    // Drive until the fault fires (at most 400 steps: rolls every ~40).
    let mut steps = 0;
    while fs.op_count(op) <= base + after {
        run.step();
        steps += 1;
        assert!(steps < 400, "{what}: the fault never fired");
    }
    let syncs_at_fault = fs.op_count(Op::Sync);
    // A few more steps: the outcome must surface and settle.
    for _ in 0..8 {
        run.step();
    }
    let expected = expect(op, errno);
    let poisoned = run
        .errors
        .iter()
        .any(|e| matches!(e, WalError::Poisoned { .. }));
    match expected {
        Expect::Poison => {
            let first = run
                .errors
                .iter()
                .position(|e| matches!(e, WalError::Poisoned { .. }))
                .unwrap_or_else(|| panic!("{what}: not poisoned: {:?}", run.errors));
            let WalError::Poisoned { cause } = &run.errors[first] else {
                unreachable!()
            };
            assert!(
                matches!(**cause, WalError::Io { .. }),
                "{what}: the cause is an I/O error, never a recoverable disk full: {cause}"
            );
            assert!(
                run.errors[first..]
                    .iter()
                    .all(|e| matches!(e, WalError::Poisoned { .. })),
                "{what}: after poisoning everything fails as poisoned: {:?}",
                run.errors
            );
            let last_ok = run.ok.keys().last().copied().unwrap_or(0);
            let after_poison = run.wal.append(Uuid::nil(), &event(0));
            assert!(
                matches!(after_poison, Err(WalError::Poisoned { .. })),
                "{what}"
            );
            assert!(run.wal.durable_lsn() <= last_ok, "{what}");
            assert!(
                fs.op_count(Op::Sync) <= syncs_at_fault + u64::from(op == Op::Sync),
                "{what}: a failed fsync is never retried, a poisoned log never fsyncs"
            );
        }
        Expect::DiskFull => {
            assert!(
                !poisoned,
                "{what}: a full disk does not poison: {:?}",
                run.errors
            );
            assert!(
                run.errors.iter().all(WalError::is_disk_full),
                "{what}: {:?}",
                run.errors
            );
            // The fault was one-shot: the log works again.
            for _ in 0..10 {
                run.step();
            }
            let d = run
                .wal
                .sync()
                .unwrap_or_else(|e| panic!("{what}: sync after the full disk: {e}"));
            assert_eq!(
                d,
                *run.ok.keys().last().unwrap(),
                "{what}: sync covers every Ok record"
            );
            run.acked = d;
        }
        Expect::Nothing => {
            assert!(run.errors.is_empty(), "{what}: {:?}", run.errors);
            let d = run.wal.sync().unwrap();
            run.acked = d;
        }
    }
    // Power cut, reopen: every acknowledged record, and every LSN names the
    // record it was returned for.
    let Run { wal, ok, acked, .. } = run;
    drop(wal);
    fs.clear_faults();
    fs.power_cut();
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts(policy))
        .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    drop(wal);
    let log = read_back(&fs);
    for (lsn, e) in ok.range(..=acked) {
        assert_eq!(log.get(lsn), Some(e), "{what}: acknowledged LSN {lsn} lost");
    }
    for (lsn, e) in &log {
        if let Some(want) = ok.get(lsn) {
            assert_eq!(e, want, "{what}: LSN {lsn} names two records");
        }
    }
}

fn matrix(ops: &[Op]) {
    for policy in POLICIES {
        for &op in ops {
            for errno in [libc::EIO, libc::ENOSPC, libc::EDQUOT] {
                for after in [0, 1, 3] {
                    cell(policy, op, errno, None, after);
                    if op == Op::Write {
                        cell(policy, op, errno, Some(13), after);
                    }
                }
            }
        }
    }
}

#[test]
fn writes_and_short_writes() {
    matrix(&[Op::Write]);
}

#[test]
fn fsyncs_of_files_and_directories() {
    matrix(&[Op::Sync, Op::SyncDir]);
}

#[test]
fn segment_rolls() {
    matrix(&[Op::SetLen, Op::Create, Op::Allocate, Op::Rename]);
}

#[test]
fn watermark_publication() {
    matrix(&[Op::Publish]);
}

/// [`matrix`] with encryption at rest on.
fn matrix_encrypted(ops: &[Op]) {
    RING.with(|r| *r.borrow_mut() = Some(Arc::new(KeyRing::new(Key::new([0x4d; 32])))));
    matrix(ops);
    RING.with(|r| *r.borrow_mut() = None);
}

#[test]
fn writes_and_short_writes_encrypted() {
    matrix_encrypted(&[Op::Write]);
}

#[test]
fn fsyncs_of_files_and_directories_encrypted() {
    matrix_encrypted(&[Op::Sync, Op::SyncDir]);
}

#[test]
fn segment_rolls_encrypted() {
    matrix_encrypted(&[Op::SetLen, Op::Create, Op::Allocate, Op::Rename]);
}
