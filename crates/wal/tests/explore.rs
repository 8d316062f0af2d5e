//! A seeded model checker for the log's contract: random appends, syncs,
//! reads, injected faults (every operation × `EIO`, `ENOSPC`, `EDQUOT`,
//! short writes), full disks, retention, crashes, power cuts — including
//! cuts that land inside the next reopen's recovery — and reopens, with a
//! random sync policy for every generation, all checked against a model of
//! what each policy promises (`docs/durability.md`):
//!
//! * an append's `Ok(lsn)` under `Always`, a `sync()` returning `Ok(d)` and
//!   `durable_lsn()` acknowledge records; an acknowledged record is in the
//!   log at its LSN, unchanged, after any crash, power cut and reopen;
//! * an LSN never names two records: whatever the log holds at an LSN that
//!   was returned `Ok` is that record (or, once it was lost by a crash
//!   before being acknowledged, a later one);
//! * a full disk never drops a record that returned `Ok` (under `Batch` and
//!   `Never` it stays queued with its LSN) and only fails appends with
//!   `DiskFull`; any other failure poisons, and a poisoned log never says
//!   `Ok` again;
//! * a reader returns only durable records, never reports damage (none is
//!   injected here), and never returns a record that later disappears or
//!   changes, unless a tombstone deleted it and a compaction erased it;
//! * deletions (tombstones) and compactions among all that: a record a
//!   compaction that returned `Ok` erased never comes back, to a reader or
//!   after any restart, and a compaction that fails without a fault (or
//!   whose fsync fails without poisoning the writer) is a failure.
//!
//! `LOGBOOK_EXPLORE_SEEDS=N` runs more seeds (default 150, about 10 s);
//! `LOGBOOK_EXPLORE_SEED=S` replays one.

mod common;

use common::seeds;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logbook_wal::sim::{Op, SimFs};
use logbook_wal::{Lsn, Reader, SyncPolicy, Wal, WalError, WalOptions};
use uuid::Uuid;

const DIR: &str = "/log";

/// Records compactions erased, over every seed run (a check that the
/// exploration reaches them).
static ERASED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A unique, recognisable payload for record number `seq`.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.extend((0..len).map(|i| (seq as u8).wrapping_add(i as u8)));
    p
}

fn options(rng: &mut Rng) -> WalOptions {
    let sync = match rng.below(3) {
        0 => SyncPolicy::Always,
        1 => SyncPolicy::Batch {
            max_delay: Duration::from_micros(1 + rng.below(500)),
            max_bytes: 256 + rng.below(2048) as usize,
        },
        _ => SyncPolicy::Never,
    };
    WalOptions {
        segment_size: 4096 * (1 + rng.below(3)),
        preallocate: rng.below(2) == 0,
        buffer_bytes: 1 + rng.below(1500) as usize,
        sync,
        ..WalOptions::default()
    }
}

/// What the log has promised so far.
#[derive(Default)]
struct Model {
    /// Every record returned `Ok` and not lost since: LSN → payload.
    recs: BTreeMap<Lsn, Vec<u8>>,
    /// The LSNs of `recs` known durable.
    acked: BTreeSet<Lsn>,
    /// Records a reader returned: they must never change or disappear.
    seen: BTreeMap<Lsn, Vec<u8>>,
    /// Payloads whose append failed (they may still turn up).
    failed: BTreeSet<Vec<u8>>,
    /// The LSN the next successful append must get.
    next: Lsn,
    /// The highest `durable_lsn()` seen in this generation.
    durable: Lsn,
    poisoned: bool,
    /// A full disk or a disk-full fault may be in effect.
    disk_trouble: bool,
    /// Records below this LSN may have been removed by retention.
    truncated_below: Lsn,
    /// The session of each record of `recs`.
    sessions: BTreeMap<Lsn, Uuid>,
    /// Tombstones appended: (the tombstone's LSN, the LSN it lists).
    tombstones: Vec<(Lsn, Lsn)>,
    /// LSNs a compaction may have erased: readers may pass them over.
    maybe_erased: BTreeSet<Lsn>,
    /// LSNs a compaction that returned `Ok` erased: never returned again.
    erased: BTreeSet<Lsn>,
    /// A fault was injected since the last reopen (it may fail a
    /// compaction, which does not poison unless an fsync failed).
    armed: bool,
}

impl Model {
    fn ack_through(&mut self, d: Lsn) {
        let lsns: Vec<Lsn> = self.recs.range(..=d).map(|(l, _)| *l).collect();
        self.acked.extend(lsns);
    }

    fn check_err(&mut self, e: &WalError, ctx: &str) {
        if self.poisoned {
            assert!(
                matches!(e, WalError::Poisoned { .. }),
                "{ctx}: after poisoning: {e}"
            );
            return;
        }
        match e {
            WalError::Poisoned { .. } => self.poisoned = true,
            e if e.is_disk_full() => {
                assert!(
                    self.disk_trouble,
                    "{ctx}: disk full without a full disk: {e}"
                );
            }
            e => panic!("{ctx}: unexpected error {e}"),
        }
    }
}

struct Explorer {
    seed: u64,
    rng: Rng,
    fs: SimFs,
    wal: Option<Wal>,
    model: Model,
    seq: u64,
    policy: SyncPolicy,
    generations: u32,
}

impl Explorer {
    fn ctx(&self, what: &str) -> String {
        format!(
            "seed {} generation {} ({:?}): {what}",
            self.seed, self.generations, self.policy
        )
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open")
    }

    fn append(&mut self) {
        self.seq += 1;
        let len = self.rng.pick(&[0usize, 10, 60, 300, 1500]);
        let p = payload(self.seq, len);
        let session = Uuid::from_u64_pair(7, self.seq % 4);
        self.append_payload(session, p);
    }

    /// Append a tombstone of an acknowledged record's session listing it.
    fn delete(&mut self) {
        let listed: BTreeSet<Lsn> = self.model.tombstones.iter().map(|t| t.1).collect();
        let tombs: BTreeSet<Lsn> = self.model.tombstones.iter().map(|t| t.0).collect();
        let candidates: Vec<Lsn> = self
            .model
            .acked
            .iter()
            .copied()
            .filter(|l| *l >= self.model.truncated_below)
            .filter(|l| !listed.contains(l) && !tombs.contains(l))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let target = candidates[self.rng.below(candidates.len() as u64) as usize];
        let Some(session) = self.model.sessions.get(&target).copied() else {
            return;
        };
        let tombstone = logbook_bus::SessionEvent::SessionDeleted {
            after_lsn: None,
            ranges: vec![(target, target)],
            reason: String::new(),
        };
        let p = logbook_bus::codec::encode(&tombstone).expect("encode");
        let next = self.model.next;
        self.append_payload(session, p);
        if self.model.next > next {
            self.model.tombstones.push((next, target));
        }
    }

    /// `Wal::compact`: on `Ok` every listed record is erased for good.
    fn compact(&mut self) {
        let listed: Vec<Lsn> = self
            .model
            .tombstones
            .iter()
            .filter(|(t, _)| self.model.recs.contains_key(t))
            .map(|t| t.1)
            .collect();
        self.model.maybe_erased.extend(listed.iter().copied());
        match self.wal().compact() {
            Ok(done) => {
                let ctx = self.ctx("compact");
                assert!(!self.model.poisoned, "{ctx}: Ok after poisoning");
                // It synced first: everything appended is durable.
                let d = self.model.next - 1;
                self.model.ack_through(d);
                ERASED.fetch_add(done.erased, std::sync::atomic::Ordering::Relaxed);
                if done.in_active_segment == 0 {
                    self.model.erased.extend(listed);
                }
            }
            Err(e) => {
                let ctx = self.ctx("compact");
                if std::env::var("LOGBOOK_DEBUG").is_ok() {
                    eprintln!("{ctx}: {e:?}");
                }
                if self.model.poisoned || matches!(e, WalError::Poisoned { .. }) {
                    self.model.check_err(&e, &ctx);
                    return;
                }
                assert!(
                    self.model.armed || self.model.disk_trouble || self.fs.power_was_cut(),
                    "{ctx}: failed without a fault: {e}"
                );
                if matches!(&e, WalError::Io { op, .. } if op.starts_with("fsync")) {
                    self.model.poisoned = true;
                }
            }
        }
    }

    fn append_payload(&mut self, session: Uuid, p: Vec<u8>) {
        match self.wal().append_raw(session, &p) {
            Ok(lsn) => {
                let ctx = self.ctx("append");
                let m = &mut self.model;
                assert!(!m.poisoned, "{ctx}: Ok after poisoning");
                assert_eq!(lsn, m.next, "{ctx}: LSNs are gapless");
                assert!(
                    m.recs.insert(lsn, p).is_none(),
                    "{ctx}: LSN {lsn} given twice"
                );
                m.sessions.insert(lsn, session);
                m.next += 1;
                if self.policy == SyncPolicy::Always {
                    m.acked.insert(lsn);
                }
            }
            Err(e) => {
                let ctx = self.ctx("append");
                self.model.check_err(&e, &ctx);
                self.model.failed.insert(p);
            }
        }
    }

    fn sync(&mut self) {
        match self.wal().sync() {
            Ok(d) => {
                let ctx = self.ctx("sync");
                let m = &mut self.model;
                assert!(!m.poisoned, "{ctx}: Ok after poisoning");
                assert_eq!(d, m.next - 1, "{ctx}: sync covers every appended record");
                m.ack_through(d);
            }
            Err(e) => {
                let ctx = self.ctx("sync");
                self.model.check_err(&e, &ctx);
            }
        }
    }

    /// The disk was freed: a `sync` now succeeds (the Batch flusher may
    /// still report one attempt that began before), making every record
    /// that returned `Ok` durable.
    fn free_and_sync(&mut self) {
        for attempt in 0..3 {
            match self.wal().sync() {
                Err(e) if e.is_disk_full() && !self.model.poisoned && attempt < 2 => continue,
                Ok(_) => {
                    self.model.disk_trouble = false;
                    // Account for it as a plain sync.
                    self.sync();
                    return;
                }
                Err(e) => {
                    let ctx = self.ctx("sync after freeing the disk");
                    self.model.check_err(&e, &ctx);
                    return;
                }
            }
        }
    }

    fn durable_lsn(&mut self) {
        let d = self.wal().durable_lsn();
        let ctx = self.ctx("durable_lsn");
        let m = &mut self.model;
        assert!(d < m.next, "{ctx}: durable {d} beyond the last record");
        assert!(d >= m.durable, "{ctx}: durable_lsn went back");
        m.durable = d;
        m.ack_through(d);
    }

    /// Read the whole log as a reader beside the writer would.
    fn read(&mut self) {
        let ctx = self.ctx("read");
        let mut reader = Reader::open_with_fs(Arc::new(self.fs.clone()), DIR)
            .unwrap_or_else(|e| panic!("{ctx}: reader: {e}"));
        let mut got = Vec::new();
        while let Some(r) = reader.next_ref() {
            match r {
                Ok(r) => got.push((r.lsn, r.payload.to_vec())),
                // The Batch flusher may run into a scheduled power cut
                // meanwhile: every handle dies. Nothing else may fail.
                Err(e) => {
                    assert!(self.fs.power_was_cut(), "{ctx}: a reader reported {e}");
                    break;
                }
            }
        }
        if self.fs.power_was_cut() {
            // The Batch flusher ran into a scheduled cut while we read: the
            // writer is gone, and what the reader saw after the cut is the
            // log at rest (what its surviving watermark and sync marks
            // vouch for), no longer the live one. The restart checks what
            // survived.
            return;
        }
        // The leader publishes the watermark in `LOCK` just before it
        // updates `durable_lsn()`: give the Batch flusher that instant.
        let top = got.last().map_or(0, |(l, _)| *l);
        let mut durable = self.wal().durable_lsn();
        for _ in 0..1000 {
            if durable >= top {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
            durable = self.wal().durable_lsn();
        }
        let m = &mut self.model;
        for (lsn, p) in got {
            assert!(
                !m.erased.contains(&lsn),
                "{ctx}: a reader returned LSN {lsn}, which a compaction erased"
            );
            assert!(
                lsn <= durable,
                "{ctx}: a reader returned LSN {lsn} above the durable {durable}"
            );
            assert_eq!(
                m.recs.get(&lsn),
                Some(&p),
                "{ctx}: a reader returned a record at LSN {lsn} the log never acknowledged there"
            );
            m.acked.insert(lsn);
            m.seen.insert(lsn, p);
        }
    }

    fn inject(&mut self) {
        let op = self.rng.pick(&[
            Op::Write,
            Op::Write,
            Op::Sync,
            Op::SyncDir,
            Op::Allocate,
            Op::SetLen,
            Op::Rename,
            Op::Create,
            Op::Remove,
            Op::Publish,
        ]);
        let errno = self.rng.pick(&[libc::EIO, libc::ENOSPC, libc::EDQUOT]);
        let after = self.rng.below(6);
        if std::env::var("LOGBOOK_DEBUG").is_ok() {
            eprintln!("inject {op:?} errno {errno} after {after}");
        }
        if op == Op::Write && self.rng.below(3) == 0 {
            let bytes = self.rng.below(200) as usize;
            self.fs.fail_write_partially(after, bytes, errno);
        } else {
            self.fs.fail_after(op, after, errno);
        }
        if errno != libc::EIO {
            self.model.disk_trouble = true;
        }
        self.model.armed = true;
    }

    fn truncate(&mut self) {
        let at = self.rng.below(self.model.next + 1);
        self.model.truncated_below = self.model.truncated_below.max(at);
        if let Err(e) = self.wal().truncate_before(at) {
            // Retention does not poison; only injected faults fail it.
            assert!(
                matches!(e, WalError::Io { .. } | WalError::DiskFull { .. }),
                "{}: {e}",
                self.ctx("truncate")
            );
        }
    }

    /// Drop the writer, let `kill` happen to the machine, and reopen until
    /// it works; then check the recovered log against the model.
    fn restart(&mut self, kill: impl FnOnce(&SimFs), clean: bool) {
        if let Some(wal) = self.wal.take() {
            if clean {
                if let Err(e) = wal.clone().close() {
                    let ctx = self.ctx("close");
                    self.model.check_err(&e, &ctx);
                }
            }
            drop(wal);
        }
        kill(&self.fs);
        self.reopen();
    }

    fn reopen(&mut self) {
        // Sometimes let the power fail again inside the recovery itself.
        if self.rng.below(4) == 0 {
            self.fs.cut_power_after(1 + self.rng.below(6));
        }
        let mut attempts = 0;
        let wal = loop {
            let opts = options(&mut self.rng);
            self.policy = opts.sync;
            match Wal::open_with_fs(Arc::new(self.fs.clone()), DIR, opts) {
                Ok(wal) => break wal,
                Err(e) => {
                    attempts += 1;
                    assert!(
                        attempts < 6,
                        "{}: reopen keeps failing: {e}",
                        self.ctx("reopen")
                    );
                    // Only a power cut or an injected fault may fail it.
                    assert!(
                        self.fs.power_was_cut() || self.model.disk_trouble || !e.is_corruption(),
                        "{}: reopen refused the log: {e}",
                        self.ctx("reopen")
                    );
                    self.fs.clear_faults();
                    self.fs.set_capacity(None);
                    self.model.disk_trouble = false;
                    if !self.fs.power_was_cut() {
                        self.fs.crash();
                    }
                }
            }
        };
        // A cut scheduled but not reached must not fire later by surprise;
        // this also resets `power_was_cut`.
        self.fs.cut_power_after(u64::MAX / 2);
        self.generations += 1;
        self.wal = Some(wal);
        self.check_recovered();
    }

    fn check_recovered(&mut self) {
        let ctx = self.ctx("recovered log");
        let mut reader = Reader::open_with_fs(Arc::new(self.fs.clone()), DIR)
            .unwrap_or_else(|e| panic!("{ctx}: reader: {e}"));
        let mut log = BTreeMap::new();
        let mut sessions = BTreeMap::new();
        while let Some(r) = reader.next_ref() {
            let r = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            log.insert(r.lsn, r.payload.to_vec());
            sessions.insert(r.lsn, r.session);
        }
        assert!(
            reader.tail_damage().is_none(),
            "{ctx}: damage left: {:?}",
            reader.tail_damage()
        );
        if std::env::var("LOGBOOK_DEBUG").is_ok() {
            eprintln!(
                "{ctx}: segments {:?} bound {} lock {:?} records {}",
                reader.segments(),
                reader.durable_bound(),
                self.fs.file_bytes("/log/LOCK"),
                log.len()
            );
        }
        let wal = self.wal();
        let next = wal.last_lsn() + 1;
        // Retention may have left only an empty tail: then nothing is below
        // `next` to check.
        let first = log.keys().next().copied().unwrap_or(next);
        let mut expect = first;
        for lsn in log.keys() {
            while expect < *lsn && self.model.maybe_erased.contains(&expect) {
                expect += 1;
            }
            assert_eq!(*lsn, expect, "{ctx}: LSN gap");
            assert!(
                !self.model.erased.contains(lsn),
                "{ctx}: LSN {lsn}, erased by a compaction, came back"
            );
            expect += 1;
        }
        assert_eq!(
            log.keys().last().map_or(next, |l| l + 1),
            next,
            "{ctx}: the writer continues after the last record"
        );
        assert_eq!(
            wal.durable_lsn(),
            next - 1,
            "{ctx}: a recovered log is durable"
        );
        let m = &mut self.model;
        let kept_from = m.truncated_below.min(next);
        assert!(
            first <= kept_from.max(1)
                || (kept_from.max(1)..first).all(|l| m.maybe_erased.contains(&l)),
            "{ctx}: retention removed records from LSN {first}, past {kept_from}"
        );
        for lsn in m.acked.range(kept_from..) {
            if m.maybe_erased.contains(lsn) {
                continue;
            }
            assert_eq!(
                log.get(lsn),
                m.recs.get(lsn),
                "{ctx}: acknowledged LSN {lsn} lost or changed"
            );
        }
        for (lsn, p) in m.seen.range(kept_from..) {
            if m.maybe_erased.contains(lsn) {
                continue;
            }
            assert_eq!(
                log.get(lsn),
                Some(p),
                "{ctx}: LSN {lsn}, returned by a reader, lost or changed"
            );
        }
        for (lsn, p) in &log {
            match m.recs.get(lsn) {
                Some(want) => assert_eq!(p, want, "{ctx}: LSN {lsn} names two records"),
                None => assert!(
                    m.failed.contains(p),
                    "{ctx}: LSN {lsn} holds a record nobody appended there"
                ),
            }
        }
        // Everything recovered is durable now; what was lost is forgotten
        // (its LSNs may be reused).
        m.recs = log;
        m.sessions = sessions;
        m.tombstones.retain(|(t, _)| m.recs.contains_key(t));
        m.acked = m.recs.keys().copied().collect();
        m.seen.retain(|l, _| *l >= first);
        m.next = next;
        m.durable = next - 1;
        m.poisoned = false;
    }

    fn run(seed: u64, ops: u32) {
        let fs = SimFs::new(seed);
        let mut ex = Explorer {
            seed,
            rng: Rng(seed | 1),
            fs,
            wal: None,
            model: Model {
                next: 1,
                ..Model::default()
            },
            seq: 0,
            policy: SyncPolicy::Always,
            generations: 0,
        };
        ex.reopen();
        for _ in 0..ops {
            if ex.fs.power_was_cut() {
                ex.restart(|_| {}, false);
                continue;
            }
            let pick = ex.rng.below(100);
            if std::env::var("LOGBOOK_DEBUG").is_ok() {
                eprintln!(
                    "op {pick} next {} durable {} poisoned {} sync {} write {} dir {}",
                    ex.model.next,
                    ex.model.durable,
                    ex.model.poisoned,
                    ex.fs.op_count(Op::Sync),
                    ex.fs.op_count(Op::Write),
                    ex.fs.op_count(Op::SyncDir)
                );
            }
            match pick {
                0..=54 => ex.append(),
                55..=62 => ex.sync(),
                63..=66 => ex.durable_lsn(),
                67..=72 => ex.read(),
                73..=76 => ex.inject(),
                77..=78 => {
                    let room = ex.rng.below(6000);
                    ex.fs.set_capacity(Some(ex.fs.used() + room));
                    ex.model.disk_trouble = true;
                }
                79..=81 => ex.fs.set_capacity(None),
                82 => ex.truncate(),
                95..=96 => ex.delete(),
                97 => ex.compact(),
                83..=85 => ex.restart(SimFs::crash, false),
                86..=88 => ex.restart(SimFs::power_cut, false),
                89..=90 => ex.restart(|_| {}, true),
                91..=93 => {
                    let n = 1 + ex.rng.below(30);
                    ex.fs.cut_power_after(n);
                }
                _ => {
                    // Free the disk and sync: under Batch and Never every
                    // record that returned Ok must now become durable.
                    ex.fs.set_capacity(None);
                    ex.fs.clear_faults();
                    ex.model.armed = false;
                    ex.free_and_sync();
                }
            }
        }
        // Finally: a power cut, and every promise must hold.
        ex.fs.clear_faults();
        ex.fs.set_capacity(None);
        ex.model.disk_trouble = false;
        ex.restart(SimFs::power_cut, false);
        drop(ex.wal.take());
    }
}

#[test]
fn explore_faults_crashes_and_power_cuts_against_the_model() {
    for seed in seeds(400, "LOGBOOK_EXPLORE") {
        let r = std::panic::catch_unwind(|| Explorer::run(seed, 150));
        assert!(
            r.is_ok(),
            "exploration failed; replay with LOGBOOK_EXPLORE_SEED={seed}"
        );
    }
    if std::env::var_os("LOGBOOK_EXPLORE_SEED").is_none() {
        assert!(
            ERASED.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "no compaction erased anything"
        );
    }
}

/// Appenders and a reader at once, then a power cut at a random point: the
/// reader never reports damage while the log is live, and every record it
/// returned survives the cut unchanged (as does every acknowledged one).
#[test]
fn concurrent_readers_never_see_a_record_that_later_changes() {
    for seed in seeds(60, "LOGBOOK_EXPLORE") {
        let r = std::panic::catch_unwind(|| concurrent_round(seed));
        assert!(r.is_ok(), "concurrent exploration failed; seed {seed}");
    }
}

fn concurrent_round(seed: u64) {
    let fs = SimFs::new(seed);
    let mut rng = Rng(seed | 1);
    let acked = Mutex::new(BTreeMap::<Lsn, Vec<u8>>::new());
    let seen = Mutex::new(BTreeMap::<Lsn, Vec<u8>>::new());
    for round in 0..3u64 {
        let started = std::time::Instant::now();
        let opts = options(&mut rng);
        let policy = opts.sync;
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts)
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: open: {e}"));
        if rng.below(3) == 0 {
            let room = rng.below(20_000);
            fs.set_capacity(Some(fs.used() + room));
        }
        fs.cut_power_after(50 + rng.below(3000));
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (wal, acked, fs) = (&wal, &acked, &fs);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for n in 0..800u64 {
                        if fs.power_was_cut() {
                            return;
                        }
                        let p = payload(round << 40 | t << 32 | n, (n % 7 * 90) as usize);
                        match wal.append_raw(Uuid::from_u64_pair(t, 0), &p) {
                            Ok(lsn) if policy == SyncPolicy::Always => {
                                acked.lock().unwrap().insert(lsn, p);
                            }
                            Ok(lsn) => mine.push((lsn, p)),
                            Err(e) if e.is_disk_full() => {
                                if n % 50 == 0 {
                                    fs.set_capacity(None);
                                }
                            }
                            Err(_) => return,
                        }
                        if policy != SyncPolicy::Always && n % 16 == 15 {
                            if let Ok(d) = wal.sync() {
                                let mut a = acked.lock().unwrap();
                                for (lsn, p) in mine.drain(..) {
                                    assert!(lsn <= d);
                                    a.insert(lsn, p);
                                }
                            }
                        }
                    }
                });
            }
            let (seen, fs, done) = (&seen, &fs, &done);
            s.spawn(move || {
                let mut reader = Reader::open_with_fs(Arc::new(fs.clone()), DIR).expect("reader");
                let mut next_expected = None;
                while !done.load(std::sync::atomic::Ordering::Relaxed) && !fs.power_was_cut() {
                    match reader.next_ref() {
                        Some(Ok(r)) => {
                            if let Some(want) = next_expected {
                                assert_eq!(
                                    r.lsn, want,
                                    "seed {seed}: the reader skipped or repeated"
                                );
                            }
                            next_expected = Some(r.lsn + 1);
                            seen.lock().unwrap().insert(r.lsn, r.payload.to_vec());
                        }
                        Some(Err(e)) => {
                            // After the cut every handle dies; before it,
                            // nothing may be reported.
                            assert!(
                                fs.power_was_cut(),
                                "seed {seed}: a live reader reported {e}"
                            );
                            return;
                        }
                        None => std::thread::sleep(Duration::from_micros(200)),
                    }
                }
            });
            // Stop the reader once the appenders are done.
            while !fs.power_was_cut() && s_appenders_running(&wal) {
                std::thread::sleep(Duration::from_millis(1));
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let wal_stats = wal.stats();
        drop(wal);
        if std::env::var("LOGBOOK_DEBUG").is_ok() {
            eprintln!(
                "seed {seed} round {round} {policy:?}: {:?} cut {} appends {} seen {}",
                started.elapsed(),
                fs.power_was_cut(),
                wal_stats.appends,
                seen.lock().unwrap().len()
            );
        }
        fs.set_capacity(None);
        fs.cut_power_after(u64::MAX / 2); // cancel a cut not reached
        fs.power_cut();
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, options(&mut rng))
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen: {e}"));
        drop(wal);
        let log: BTreeMap<Lsn, Vec<u8>> = {
            let mut r = Reader::open_with_fs(Arc::new(fs.clone()), DIR).unwrap();
            let mut m = BTreeMap::new();
            while let Some(x) = r.next_ref() {
                let x = x.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                m.insert(x.lsn, x.payload.to_vec());
            }
            m
        };
        for (what, map) in [("acknowledged", &acked), ("seen by a reader", &seen)] {
            for (lsn, p) in map.lock().unwrap().iter() {
                assert_eq!(
                    log.get(lsn),
                    Some(p),
                    "seed {seed} round {round}: LSN {lsn} {what} lost or changed"
                );
            }
        }
        // Later rounds may reuse LSNs above what survived.
        let end = log.keys().last().copied().unwrap_or(0);
        acked.lock().unwrap().retain(|l, _| *l <= end);
        seen.lock().unwrap().retain(|l, _| *l <= end);
    }
}

/// The appender threads stop on their own (a bounded count or the cut);
/// the scope joins them. This only paces the reader's stop signal.
fn s_appenders_running(wal: &Wal) -> bool {
    let before = wal.stats().appends;
    std::thread::sleep(Duration::from_millis(20));
    wal.stats().appends != before
}
