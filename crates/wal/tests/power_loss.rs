//! Power loss, simulated: `SimFs` keeps written-but-unsynced bytes (and
//! directory entries not yet made durable by a directory fsync) apart and,
//! on a power cut in the middle of any operation, drops, zeroes, reorders or
//! tears them. Over many seeded runs every acknowledged record survives.
//!
//! The same runs go on with encryption at rest on (`*_encrypted`): the
//! sealed payloads survive exactly as the clear ones do, and read back.
//!
//! `LOGBOOK_POWER_SEEDS=N` runs more seeds; `LOGBOOK_POWER_SEED=S` replays one.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{event, read_all_fs, seeds, session};
use logbook_bus::SessionEvent;
use logbook_wal::sim::SimFs;
use logbook_wal::{Key, KeyRing, Lsn, Reader, SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

type Acked = BTreeMap<Lsn, (Uuid, SessionEvent)>;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

thread_local! {
    /// The keys of the run on this thread: `None` in the clear.
    static RING: std::cell::RefCell<Option<Arc<KeyRing>>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with encryption at rest on (on this thread).
fn encrypted(f: impl FnOnce()) {
    RING.with(|r| *r.borrow_mut() = Some(Arc::new(KeyRing::new(Key::new([0x5a; 32])))));
    f();
    RING.with(|r| *r.borrow_mut() = None);
}

fn opts(policy: SyncPolicy) -> WalOptions {
    WalOptions {
        segment_size: 8 * 1024,
        sync: policy,
        encryption: RING.with(|r| r.borrow().clone()),
        ..WalOptions::default()
    }
}

/// Every record, decoded (decrypted when the run is encrypted).
fn read_back(fs: &SimFs) -> Vec<(Lsn, Uuid, SessionEvent)> {
    let Some(ring) = RING.with(|r| r.borrow().clone()) else {
        return read_all_fs(Arc::new(fs.clone()), Path::new("/log"));
    };
    let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), "/log")
        .unwrap()
        .with_keys(ring.clone());
    // Sealed on disk: every segment names the run's key.
    for segment in reader.segments() {
        let bytes = fs.file_bytes(&segment).unwrap();
        let header = logbook_wal::SegmentHeader::decode(&bytes).unwrap();
        assert_eq!(
            header.key_id,
            Some(ring.current().id()),
            "{}",
            segment.display()
        );
    }
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap_or_else(|e| panic!("reading the log: {e}"));
        assert_eq!(r.key_id, None, "decrypted");
        let e = logbook_wal::EventRecord::decode(&r).unwrap();
        out.push((e.lsn, e.session, e.event));
    }
    out
}

/// Reopen and check that every acknowledged record is there, in a gapless log.
fn check(fs: &SimFs, acked: &Acked, seed: u64, round: u32) {
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts(SyncPolicy::Always))
        .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen failed: {e}"));
    if std::env::var("LOGBOOK_DEBUG").is_ok() {
        eprintln!("report: {:?}", wal.recovery());
    }
    drop(wal);
    let records = read_back(fs);
    if std::env::var("LOGBOOK_DEBUG").is_ok() {
        eprintln!("records: {} acked: {}", records.len(), acked.len());
    }
    for (i, (lsn, _, _)) in records.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1, "seed {seed} round {round}: LSN gap");
    }
    let found: BTreeMap<_, _> = records.into_iter().map(|(l, s, e)| (l, (s, e))).collect();
    for (lsn, want) in acked {
        assert_eq!(
            found.get(lsn),
            Some(want),
            "seed {seed} round {round}: acknowledged LSN {lsn} lost or changed"
        );
    }
}

/// One appender; replayable from its seed. Each round picks a policy:
/// `Always` (every `Ok` is acknowledged), `Never` or `Batch` (a record is
/// acknowledged once `sync()` returned past it, or once `durable_lsn()`
/// reported it: the watermark must never run ahead of the disk).
fn run_single(seed: u64) {
    let fs = SimFs::new(seed);
    let mut rng = Rng(seed | 1);
    let mut acked = Acked::new();
    let mut i = 0;
    for round in 0..4 {
        let policy = match rng.below(3) {
            0 => SyncPolicy::Always,
            1 => SyncPolicy::Never,
            _ => SyncPolicy::Batch {
                max_delay: Duration::from_micros(200),
                max_bytes: 2048,
            },
        };
        let wal = match Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts(policy)) {
            Ok(w) => w,
            Err(e) => panic!("seed {seed} round {round}: open failed: {e}"),
        };
        fs.cut_power_after(1 + rng.below(120));
        let mut unsynced: Vec<(Lsn, (Uuid, SessionEvent))> = Vec::new();
        let acknowledge =
            |upto: Lsn, unsynced: &mut Vec<(Lsn, (Uuid, SessionEvent))>, acked: &mut Acked| {
                unsynced.retain(|(lsn, v)| {
                    if *lsn <= upto {
                        acked.insert(*lsn, v.clone());
                        false
                    } else {
                        true
                    }
                });
            };
        while !fs.power_was_cut() {
            i += 1;
            let (s, e) = (session(i % 5), event(i));
            match wal.append(s, &e) {
                Ok(lsn) if policy == SyncPolicy::Always => {
                    acked.insert(lsn, (s, e));
                }
                Ok(lsn) => unsynced.push((lsn, (s, e))),
                Err(_) => break,
            }
            acknowledge(wal.durable_lsn(), &mut unsynced, &mut acked);
            if policy != SyncPolicy::Always && rng.below(8) == 0 {
                match wal.sync() {
                    Ok(durable) => acknowledge(durable, &mut unsynced, &mut acked),
                    Err(_) => break,
                }
            }
            if i > 100_000 {
                break;
            }
        }
        drop(wal);
        check(&fs, &acked, seed, round);
    }
}

/// Four appenders at once; the interleaving is not replayable, the seed
/// still fixes the cut point and the tearing.
fn run_threads(seed: u64) {
    let fs = SimFs::new(seed);
    let mut rng = Rng(seed | 1);
    let acked = Mutex::new(Acked::new());
    for round in 0..3 {
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts(SyncPolicy::Always))
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: open failed: {e}"));
        fs.cut_power_after(1 + rng.below(150));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (wal, acked) = (&wal, &acked);
                s.spawn(move || {
                    for n in 0..10_000u64 {
                        let i = t * 1_000_000 + round * 100_000 + n;
                        let (s, e) = (session(t), event(i));
                        match wal.append(s, &e) {
                            Ok(lsn) => {
                                acked.lock().unwrap().insert(lsn, (s, e));
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        drop(wal);
        check(&fs, &acked.lock().unwrap(), seed, round as u32);
    }
}

#[test]
fn power_cuts_never_lose_acknowledged_records() {
    for seed in seeds(300, "LOGBOOK_POWER") {
        // The seed is in every assertion message; this names it on a panic too.
        let r = std::panic::catch_unwind(|| run_single(seed));
        assert!(
            r.is_ok(),
            "power-loss run failed; replay with LOGBOOK_POWER_SEED={seed}"
        );
    }
}

/// The same, encrypted at rest (fewer seeds: the clear runs cover the
/// log's logic; these, that sealing changes nothing of it).
#[test]
fn power_cuts_never_lose_acknowledged_records_encrypted() {
    encrypted(|| {
        for seed in seeds(60, "LOGBOOK_POWER") {
            let r = std::panic::catch_unwind(|| run_single(seed));
            assert!(r.is_ok(), "encrypted power-loss run failed; seed {seed}");
        }
    });
}

#[test]
fn power_cuts_during_recovery_and_after_reopens_encrypted() {
    encrypted(|| {
        for seed in seeds(3, "LOGBOOK_POWER") {
            recovery_cuts(seed);
        }
    });
}

#[test]
fn power_cuts_with_concurrent_appenders() {
    for seed in seeds(60, "LOGBOOK_POWER") {
        let r = std::panic::catch_unwind(|| run_threads(seed));
        assert!(r.is_ok(), "power-loss run failed; seed {seed}");
    }
}

/// Power cuts *during* recovery and right after a reopen, several
/// generations in a row: cut while appending, reopen with the power failing
/// again at the k-th operation of the recovery itself (removing leftovers,
/// fsyncing the directory, cutting the torn tail, preallocating, fsyncing,
/// publishing the watermark), reopen for real, append, and cut again. For
/// every k, every acknowledged record survives every generation.
#[test]
fn power_cuts_during_recovery_and_after_reopens() {
    for seed in seeds(12, "LOGBOOK_POWER") {
        recovery_cuts(seed);
    }
}

fn recovery_cuts(seed: u64) {
    {
        for k in 1..=12u64 {
            let fs = SimFs::new(seed ^ k);
            let mut rng = Rng((seed ^ k) | 1);
            let mut acked = Acked::new();
            let mut i = 0;
            for generation in 0..4u32 {
                let policy = if generation % 2 == 0 {
                    SyncPolicy::Always
                } else {
                    SyncPolicy::Never
                };
                // The previous generation's cut left a torn tail: this open
                // is cut k operations in.
                if generation > 0 {
                    fs.cut_power_after(k);
                    let first = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts(policy));
                    if fs.power_was_cut() {
                        assert!(
                            first.is_err(),
                            "seed {seed} k {k}: an open cut short reported success"
                        );
                    } else {
                        // Recovery needed fewer than k operations: cancel.
                        fs.cut_power_after(u64::MAX / 2);
                    }
                    drop(first);
                    check(&fs, &acked, seed, generation);
                }
                let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts(policy))
                    .unwrap_or_else(|e| panic!("seed {seed} k {k}: open: {e}"));
                let mut unsynced = Vec::new();
                for _ in 0..(20 + rng.below(60)) {
                    i += 1;
                    let (s, e) = (session(i % 3), event(i));
                    let lsn = wal.append(s, &e).unwrap();
                    if policy == SyncPolicy::Always {
                        acked.insert(lsn, (s, e));
                    } else {
                        unsynced.push((lsn, (s, e)));
                    }
                }
                if policy == SyncPolicy::Never {
                    let d = wal.sync().unwrap();
                    for (lsn, v) in unsynced.drain(..) {
                        assert!(lsn <= d);
                        acked.insert(lsn, v);
                    }
                    // A few more that no sync covers: a torn tail to recover.
                    for _ in 0..5 {
                        i += 1;
                        wal.append(session(9), &event(i)).unwrap();
                    }
                }
                fs.cut_power_after(1 + rng.below(4));
                while !fs.power_was_cut() {
                    i += 1;
                    if wal.append(session(8), &event(i)).is_err() {
                        break;
                    }
                    if policy == SyncPolicy::Never {
                        let _ = wal.sync();
                    }
                }
                drop(wal);
            }
            check(&fs, &acked, seed, 99);
        }
    }
}

/// A log directory that `open` created (several levels of it) survives a
/// power cut: each created level's parent was fsynced before anything was
/// acknowledged in it.
#[test]
fn a_new_log_directory_survives_a_power_cut() {
    let fs = SimFs::new(5);
    let wal =
        Wal::open_with_fs(Arc::new(fs.clone()), "/a/b/log", opts(SyncPolicy::Always)).unwrap();
    let lsn = wal.append(session(1), &event(1)).unwrap();
    drop(wal);
    fs.power_cut();
    let reopen = WalOptions {
        create_if_missing: false,
        ..opts(SyncPolicy::Always)
    };
    let wal = Wal::open_with_fs(Arc::new(fs.clone()), "/a/b/log", reopen)
        .unwrap_or_else(|e| panic!("the log directory vanished: {e}"));
    assert_eq!(wal.last_lsn(), lsn);
}
