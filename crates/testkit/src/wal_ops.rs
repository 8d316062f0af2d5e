//! `wal_ops`: appends, syncs, reads, retention, deletions (tombstones) and
//! compactions, a full disk, failed fsyncs,
//! crashes, power cuts and reopens against an in-memory model of what was
//! acknowledged, under each `SyncPolicy`.

use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use logbook_wal::sim::{Op as SimOp, SimFs};
use logbook_wal::{MIN_SEGMENT_SIZE, Reader, SyncPolicy, Wal, WalError, WalOptions};
use uuid::Uuid;

/// The log's directory in the simulated file system.
const DIR: &str = "/log";
/// At most this many operations per input.
pub(crate) const MAX_OPS: usize = 200;
/// At most this many crashes, power cuts and reopens per input (each one
/// re-reads the whole log); later ones are skipped.
pub(crate) const MAX_REOPENS: usize = 24;
/// `SyncPolicy::Batch` as the target runs it: a short delay, and a byte
/// bound that a few records reach.
const BATCH: SyncPolicy = SyncPolicy::Batch {
    max_delay: Duration::from_millis(1),
    max_bytes: 1024,
};
/// `errno` values injected into fsyncs (Linux's; `EIO` is 5 everywhere).
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// Which [`SyncPolicy`] the log runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub(crate) enum Policy {
    /// `SyncPolicy::Always`: an `Ok` append is acknowledged (durable).
    Always,
    /// [`BATCH`]: an `Ok` append is only queued; a background flusher makes
    /// it durable.
    Batch,
    /// `SyncPolicy::Never`: an `Ok` append is only queued; `sync`, a
    /// segment roll and close make it durable.
    Never,
}

/// Variants of [`Policy`], for writing seeds.
pub(crate) const POLICY_VARIANTS: u32 = 3;

/// How the log is run, from the input's first bytes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) struct Config {
    /// Seeds how a power cut tears unsynced bytes.
    pub(crate) seed: u64,
    /// The sync policy.
    pub(crate) policy: Policy,
    /// Leave segments unpreallocated.
    pub(crate) no_preallocate: bool,
}

/// One step of the workload.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) enum Op {
    /// Append a record of session `session % 8` whose payload length is
    /// drawn from `len` (see [`payload_len`]): mostly small, sometimes
    /// empty or too large for the segment.
    Append { session: u8, len: u16 },
    /// `Wal::sync`.
    Sync,
    /// A process crash: handles die, written bytes stay; then reopen.
    Crash,
    /// A power cut: unsynced bytes are lost or torn; then reopen.
    PowerCut,
    /// Close cleanly and reopen.
    Reopen,
    /// Cut the power at the `ops % 32 + 1`-th next write, fsync, truncate,
    /// create, rename or remove, whatever the log is doing then (an append,
    /// the `Batch` flusher, the next reopen's recovery).
    CutPowerAfter { ops: u8 },
    /// `Wal::truncate_before` an LSN `at / 256` of the way through the
    /// records appended so far.
    Truncate { at: u8 },
    /// Leave `room % 8192` free bytes on the file system: later writes fail
    /// with `ENOSPC` once they are used.
    FillDisk { room: u16 },
    /// Lift the space limit.
    FreeDisk,
    /// Read the whole log with a `Reader` while the `Wal` is open.
    Read,
    /// Make the `after % 4 + 1`-th next fsync fail (with `ENOSPC` when
    /// `enospc`, else `EIO`): the writer is poisoned.
    FailSync { after: u8, enospc: bool },
    /// Append a tombstone (`session_deleted`) of the session of the
    /// acknowledged record `pick % acknowledged`, listing its LSN.
    Delete { pick: u16 },
    /// `Wal::compact`: the records listed by tombstones are erased.
    Compact,
}

/// Variants of [`Op`], for writing seeds.
pub(crate) const OP_VARIANTS: u32 = 13;

/// The payload length an `Append { len }` asks for: half of them below 64
/// bytes, a quarter below 600, a quarter up to 4099 (above the largest
/// record a 4 KiB segment holds).
#[must_use]
pub(crate) fn payload_len(len: u16) -> usize {
    let len = usize::from(len);
    match len >> 14 {
        0 | 1 => len % 64,
        2 => len % 600,
        _ => len % 4100,
    }
}

fn payload(seq: u32, len: usize) -> Vec<u8> {
    let tag = seq.to_le_bytes();
    (0..len)
        .map(|i| tag[i % 4] ^ u8::try_from((i / 4) % 256).unwrap_or(0))
        .collect()
}

/// The session of append number `seq`: one of 8, with `seq` in the high
/// bits, so that every record appended is told apart from every other one
/// (even with a payload of one byte).
fn session(n: u8, seq: u32) -> Uuid {
    Uuid::from_u128((u128::from(seq) << 64) | (0x5e55_0000 + u128::from(n % 8)))
}

/// The append number a record's session carries (see [`session`]).
fn seq_of(session: &Uuid) -> u64 {
    u64::try_from(session.as_u128() >> 64).unwrap_or(u64::MAX)
}

fn lsn_index(lsn: u64) -> usize {
    usize::try_from(lsn.saturating_sub(1)).unwrap_or(usize::MAX)
}

/// What must be, and what may be, in the log.
#[derive(Debug, Default)]
struct Model {
    /// Record `i` has LSN `i + 1`: the one recovery found there, or the one
    /// that was returned `Ok` with that LSN since (or whose failed append
    /// took it). An LSN never names two records: whatever a reader finds at
    /// an LSN must be this record, until a crash or power cut drops the
    /// unacknowledged ones and recovery says what is left.
    records: Vec<(Uuid, Vec<u8>)>,
    /// The first `acked` records were acknowledged: they must survive.
    acked: usize,
    /// The log's first record may have any LSN from 1 up to this one:
    /// `truncate_before` removed the segments wholly below it.
    floor: u64,
    /// The highest LSN a reader returned: it, and everything before it
    /// down to the truncation floor, must stay in the log, unchanged.
    read: u64,
    /// Tombstones appended: (the tombstone's LSN, the LSN it lists).
    /// One counts while its own record is in `records`.
    tombstones: Vec<(u64, u64)>,
    /// LSNs a compaction may have erased: a reader may pass them over.
    maybe_erased: std::collections::BTreeSet<u64>,
    /// LSNs a compaction that returned `Ok` erased: no reader may ever
    /// return them again.
    erased: std::collections::BTreeSet<u64>,
}

impl Model {
    /// Whether a reader may pass LSN `lsn` over (compaction erased it).
    fn skippable(&self, lsn: u64) -> bool {
        self.maybe_erased.contains(&lsn)
    }

    /// The LSNs listed by tombstones still in the log.
    fn listed(&self) -> Vec<u64> {
        self.tombstones
            .iter()
            .filter(|(t, _)| lsn_index(*t) < self.records.len())
            .map(|(_, l)| *l)
            .collect()
    }
}

struct Driver {
    fs: SimFs,
    opts: WalOptions,
    policy: Policy,
    wal: Option<Wal>,
    model: Model,
    seq: u32,
    reopens: usize,
    /// A power cut scheduled by `CutPowerAfter` has not been seen yet.
    cut_pending: bool,
    /// A fsync failure scheduled by `FailSync` is due at this count of
    /// fsyncs and has not been seen yet.
    fault_at: Option<u64>,
    /// That fsync failure happened since the last reopen: the `Wal` may be
    /// poisoned.
    faulted: bool,
    /// `fault_at` is exact (no fsync raced with arming it).
    fault_exact: bool,
    /// The `Wal` reported `Poisoned`: every append and sync must fail so
    /// until it is reopened.
    poisoned: bool,
    /// `FillDisk` limited the space: writes may fail with "disk full".
    disk_limited: bool,
    /// `FillDisk` limited the space since the last reopen.
    was_limited: bool,
    /// Under `Batch`/`Never`: a full disk was reported while the first
    /// this-many records were queued and not all acknowledged.
    stalled: Option<usize>,
    /// "Disk full" errors seen, and segments `truncate_before` removed.
    disk_full_errors: usize,
    segments_removed: usize,
    /// Records readers returned while the log was open.
    records_read: usize,
    /// Records a reader returned a moment before `durable_lsn` covered
    /// them (see [`Driver::read`]).
    reader_ahead: usize,
    /// "Disk full" errors of a flusher's write that began before the space
    /// was freed (see [`Driver::stale_disk_full`]).
    stale_disk_full: usize,
    /// Times records queued across a full disk were then made durable.
    kept_through_full_disk: usize,
    /// Times `open` failed (a power cut or failed fsync in recovery) and
    /// was retried.
    open_retries: usize,
    /// Calls that failed with `Poisoned` after an injected fsync failure.
    poisoned_calls: usize,
    /// Records compactions erased (placeholders written).
    pub(crate) erased: u64,
}

impl Driver {
    fn new(config: Config) -> Driver {
        let opts = WalOptions {
            segment_size: MIN_SEGMENT_SIZE,
            sync: match config.policy {
                Policy::Always => SyncPolicy::Always,
                Policy::Batch => BATCH,
                Policy::Never => SyncPolicy::Never,
            },
            preallocate: !config.no_preallocate,
            buffer_bytes: 1024,
            ..WalOptions::default()
        };
        let fs = SimFs::new(config.seed);
        let wal = Wal::open_with_fs(Arc::new(fs.clone()), DIR, opts.clone())
            .expect("creating a log on an empty file system");
        assert!(wal.recovery().created);
        Driver {
            fs,
            opts,
            policy: config.policy,
            wal: Some(wal),
            model: Model {
                floor: 1,
                ..Model::default()
            },
            seq: 0,
            reopens: 0,
            cut_pending: false,
            fault_at: None,
            faulted: false,
            fault_exact: false,
            poisoned: false,
            disk_limited: false,
            was_limited: false,
            stalled: None,
            disk_full_errors: 0,
            segments_removed: 0,
            records_read: 0,
            reader_ahead: 0,
            stale_disk_full: 0,
            kept_through_full_disk: 0,
            open_retries: 0,
            poisoned_calls: 0,
            erased: 0,
        }
    }

    /// Whether the scheduled power cut happened (once per schedule).
    fn cut_now(&mut self) -> bool {
        if self.cut_pending && self.fs.power_was_cut() {
            self.cut_pending = false;
            // A cut on an fsync fails it before a scheduled fault counts
            // it: the fault may come one fsync later than `fault_at`.
            self.fault_exact = false;
            return true;
        }
        false
    }

    /// Whether the scheduled fsync failure is due (once per schedule); it
    /// then counts as [`Driver::faulted`]. A fault that a power cut on the
    /// same fsync delayed is dropped.
    fn fault_now(&mut self) -> bool {
        match self.fault_at {
            Some(at) if self.fs.op_count(SimOp::Sync) >= at => {
                self.fault_at = None;
                self.fs.clear_faults();
                self.faulted = true;
                true
            }
            _ => false,
        }
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("the log is open between steps")
    }

    fn len(&self) -> u64 {
        self.model.records.len() as u64
    }

    /// `e`, from an append or sync, is neither a bad argument nor a full
    /// disk: only an injected fault explains it, and it must be `Poisoned`.
    /// Returns whether the power was cut (the caller then recovers).
    fn failed(&mut self, what: &str, e: &WalError) -> bool {
        let cut = self.cut_now();
        let fault = self.fault_now() || self.faulted;
        assert!(
            cut || fault || self.poisoned,
            "{what} failed without a fault: {e}"
        );
        assert!(
            matches!(e, WalError::Poisoned { .. }),
            "{what} failed after a fault with {e}, not Poisoned"
        );
        if self.poisoned && !cut {
            self.poisoned_calls += 1;
        }
        self.poisoned = true;
        cut
    }

    /// Whether `e` is the "disk full" of a `Batch` flusher's write that
    /// began before `FreeDisk`, reported to a `sync` or append called after
    /// it (it joins or finds the flusher's turn instead of writing itself).
    /// Tolerated (a `sync` is then retried once and must succeed); counted
    /// in [`Driver::stale_disk_full`].
    fn stale_disk_full(&mut self, e: Option<&WalError>) -> bool {
        let stale = e.is_some_and(WalError::is_disk_full)
            && self.policy == Policy::Batch
            && !self.disk_limited
            && self.was_limited
            && !self.poisoned;
        if stale {
            self.stale_disk_full += 1;
        }
        stale
    }

    /// Acknowledge what `durable_lsn` reports (rule: a record is
    /// acknowledged once `durable_lsn() >= lsn` is observed).
    fn observe(&mut self) {
        let Some(wal) = &self.wal else { return };
        let durable = wal.durable_lsn();
        assert!(
            durable <= self.len(),
            "durable_lsn {durable} is past the last LSN returned, {}",
            self.len()
        );
        assert!(
            durable >= self.model.acked as u64,
            "durable_lsn {durable} is below what was acknowledged, {}",
            self.model.acked
        );
        self.acknowledge(durable);
    }

    /// The records up to `lsn` are acknowledged.
    fn acknowledge(&mut self, lsn: u64) {
        let lsn = usize::try_from(lsn).unwrap_or(usize::MAX);
        self.model.acked = self.model.acked.max(lsn);
        if self.stalled.is_some_and(|s| self.model.acked >= s) {
            self.stalled = None;
            self.kept_through_full_disk += 1;
        }
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Append { session: s, len } => self.append(s, payload_len(len)),
            Op::Sync => self.sync(),
            Op::Crash | Op::PowerCut | Op::Reopen if self.reopens >= MAX_REOPENS => {}
            Op::Crash => {
                self.fs.crash();
                self.recover();
            }
            Op::PowerCut => {
                self.fs.power_cut();
                self.recover();
            }
            Op::Reopen => self.reopen(),
            Op::Truncate { at } => {
                let lsn = self.len() * u64::from(at) / 256 + 1;
                // Whatever it removes is below `lsn`, even if it fails
                // (a power cut) after removing some of it.
                self.model.floor = self.model.floor.max(lsn);
                match self.wal().truncate_before(lsn) {
                    Ok(removed) => self.segments_removed += removed,
                    Err(e) => {
                        assert!(
                            self.cut_now(),
                            "truncate_before failed without a fault: {e}"
                        );
                        self.recover();
                    }
                }
            }
            Op::FillDisk { room } => {
                self.fs
                    .set_capacity(Some(self.fs.used() + u64::from(room % 8192)));
                self.disk_limited = true;
                self.was_limited = true;
            }
            Op::FreeDisk => {
                self.fs.set_capacity(None);
                self.disk_limited = false;
            }
            Op::CutPowerAfter { ops } => {
                self.fs.cut_power_after(u64::from(ops % 32) + 1);
                self.cut_pending = true;
            }
            Op::Read => self.read(),
            Op::Delete { pick } => self.delete(pick),
            Op::Compact => self.compact(),
            Op::FailSync { after, enospc } => {
                let after = u64::from(after % 4);
                let errno = if enospc { ENOSPC } else { EIO };
                // One at a time: a fault that already fired counts first.
                self.fault_now();
                if self.fault_at.is_none() {
                    // Counted before it is armed: if the `Batch` flusher
                    // fsyncs in between, the fault is taken as due one
                    // fsync early (and then dropped), never late.
                    let at = self.fs.op_count(SimOp::Sync) + after + 1;
                    self.fs.fail_after(SimOp::Sync, after, errno);
                    self.fault_exact = self.fs.op_count(SimOp::Sync) + after + 1 == at;
                    self.fault_at = Some(at);
                }
            }
        }
        if self.cut_now() {
            // The power went out in the middle of the step (or of the
            // `Batch` flusher's work): what a restart finds is checked like
            // after any power cut.
            self.recover();
            return;
        }
        if self.fault_now() && self.fault_exact && self.policy != Policy::Batch {
            // The fsync failed in the live writer during this step without
            // the step reporting it: the log must be poisoned all the same.
            // (Under `Batch` the flusher may still be on its way to
            // publishing the failure: only what calls report counts.)
            self.poisoned = true;
        }
        self.observe();
    }

    fn append(&mut self, s: u8, len: usize) {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.append_payload(session(s, seq), payload(seq, len));
    }

    /// Append a tombstone of the session of an acknowledged record (not a
    /// tombstone, not listed yet), listing its LSN.
    fn delete(&mut self, pick: u16) {
        let listed = self.model.listed();
        let candidates: Vec<u64> = (1..=self.model.acked as u64)
            .filter(|l| *l >= self.model.floor)
            .filter(|l| !listed.contains(l) && !self.model.tombstones.iter().any(|(t, _)| t == l))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let target = candidates[usize::from(pick) % candidates.len()];
        let Some((session, _)) = self.model.records.get(lsn_index(target)).cloned() else {
            return;
        };
        let tombstone = logbook_bus::SessionEvent::SessionDeleted {
            after_lsn: None,
            ranges: vec![(target, target)],
            reason: String::new(),
        };
        let Ok(payload) = logbook_bus::codec::encode(&tombstone) else {
            return;
        };
        let before = self.model.records.len();
        self.append_payload(session, payload);
        if self.model.records.len() > before {
            self.model.tombstones.push((before as u64 + 1, target));
        }
    }

    /// `Wal::compact`: it syncs first, so on `Ok` every record is
    /// acknowledged and every listed record is erased.
    fn compact(&mut self) {
        let listed = self.model.listed();
        self.model.maybe_erased.extend(listed.iter().copied());
        match self.wal().compact() {
            Ok(done) => {
                assert!(!self.poisoned, "compact returned Ok on a poisoned log");
                self.acknowledge(self.len());
                self.erased += done.erased;
                if done.in_active_segment == 0 {
                    self.model.erased.extend(listed);
                }
            }
            Err(e) => {
                let cut = self.cut_now();
                let fault = self.fault_now() || self.faulted;
                assert!(
                    cut || fault || self.poisoned || self.disk_limited || self.was_limited,
                    "compact failed without a fault: {e}"
                );
                let fsync = matches!(&e, WalError::Io { op, .. } if op.starts_with("fsync"));
                if fsync || matches!(e, WalError::Poisoned { .. }) {
                    self.poisoned = true;
                }
                if cut {
                    self.recover();
                }
            }
        }
    }

    fn append_payload(&mut self, session: Uuid, payload: Vec<u8>) {
        let seq = seq_of(&session);
        let len = payload.len();
        let max = self.opts.max_payload_len();
        let n = self.len();
        match self.wal().append_raw(session, &payload) {
            Ok(lsn) => {
                assert!(
                    !self.poisoned,
                    "append {seq} returned LSN {lsn} on a poisoned log"
                );
                assert!((1..=max).contains(&len), "{len}-byte payload accepted");
                assert_eq!(
                    lsn,
                    n + 1,
                    "append {seq}: LSNs are gapless, and never returned twice in one generation"
                );
                self.model.records.push((session, payload));
                if self.policy == Policy::Always {
                    self.acknowledge(lsn);
                }
            }
            Err(WalError::EmptyRecord) => assert_eq!(len, 0),
            Err(WalError::RecordTooLarge { size, max: m }) => {
                assert_eq!((size, m), (len, max));
                assert!(len > max);
            }
            Err(e) if self.stale_disk_full(Some(&e)) => {
                assert_eq!(
                    self.wal().last_lsn(),
                    n,
                    "a full disk changed the LSNs handed out"
                );
            }
            Err(e) if e.is_disk_full() => {
                assert!(!self.poisoned, "append on a poisoned log failed with {e}");
                assert!(self.disk_limited, "disk full while space is unlimited: {e}");
                self.disk_full_errors += 1;
                // Under `Always` the record was not acknowledged and its LSN
                // is free again; under `Batch`/`Never` every queued record
                // keeps its LSN. Either way nothing before it was dropped.
                assert_eq!(
                    self.wal().last_lsn(),
                    n,
                    "a full disk changed the LSNs handed out"
                );
                if self.policy != Policy::Always && self.len() > self.model.acked as u64 {
                    self.stalled = Some(self.model.records.len());
                }
            }
            Err(e) => {
                let was_poisoned = self.poisoned;
                // Whether the record took an LSN (it may then be on disk).
                let last = self.wal().last_lsn();
                let cut = self.failed("append", &e);
                if last == n + 1 && !was_poisoned {
                    assert_ne!(
                        self.policy,
                        Policy::Batch,
                        "a failed `Batch` append took LSN {last}"
                    );
                    self.model.records.push((session, payload));
                } else {
                    assert_eq!(last, n, "a failed append changed the LSNs handed out");
                }
                if cut {
                    self.recover();
                }
            }
        }
    }

    fn sync(&mut self) {
        let n = self.len();
        let mut result = self.wal().sync();
        if self.stale_disk_full(result.as_ref().err()) {
            result = self.wal().sync();
        }
        match result {
            Ok(lsn) => {
                assert!(!self.poisoned, "sync succeeded on a poisoned log");
                assert_eq!(lsn, n, "sync returns the last LSN");
                self.acknowledge(lsn);
            }
            Err(e) if e.is_disk_full() => {
                assert!(!self.poisoned, "sync on a poisoned log failed with {e}");
                assert!(self.disk_limited, "disk full while space is unlimited: {e}");
                self.disk_full_errors += 1;
                assert_eq!(
                    self.wal().last_lsn(),
                    n,
                    "a full disk changed the LSNs handed out"
                );
                if self.policy != Policy::Always && n > self.model.acked as u64 {
                    self.stalled = Some(self.model.records.len());
                }
            }
            Err(e) => {
                if self.failed("sync", &e) {
                    self.recover();
                }
            }
        }
    }

    /// Close cleanly and reopen. A close that fails for a full disk keeps
    /// what is queued: with space again, a `sync` writes all of it.
    fn reopen(&mut self) {
        let wal = self.wal.take().expect("open");
        let probe = wal.clone();
        let n = self.len();
        match wal.close() {
            Ok(()) => {
                assert!(!self.poisoned, "a poisoned log closed cleanly");
                assert_eq!(probe.durable_lsn(), n, "close makes everything durable");
                self.acknowledge(n);
            }
            Err(e) if e.is_disk_full() => {
                assert!(!self.poisoned, "close of a poisoned log failed with {e}");
                // A `Batch` flusher's write that began before `FreeDisk` may
                // report its "disk full" to the close's flush, as to a sync.
                assert!(
                    self.disk_limited || self.stale_disk_full(Some(&e)),
                    "disk full while space is unlimited: {e}"
                );
                assert_ne!(self.policy, Policy::Always, "close under Always: {e}");
                self.disk_full_errors += 1;
                assert_eq!(
                    probe.last_lsn(),
                    n,
                    "a full disk changed the LSNs handed out"
                );
                if n > self.model.acked as u64 {
                    self.stalled = Some(self.model.records.len());
                }
                self.fs.set_capacity(None);
                self.disk_limited = false;
                let mut result = probe.sync();
                if self.stale_disk_full(result.as_ref().err()) {
                    result = probe.sync();
                }
                match result {
                    Ok(lsn) => {
                        assert_eq!(lsn, n, "sync after a full disk returns the last LSN");
                        self.acknowledge(lsn);
                    }
                    Err(e) => {
                        let cut = self.cut_now();
                        let fault = self.fault_now() || self.faulted;
                        assert!(cut || fault, "sync with space again failed: {e}");
                    }
                }
            }
            Err(e) => {
                let cut = self.cut_now();
                let fault = self.fault_now() || self.faulted;
                assert!(
                    cut || fault || self.poisoned,
                    "close failed without a fault: {e}"
                );
            }
        }
        drop(probe);
        self.recover();
    }

    /// Read the whole log with a reader while the `Wal` is open: every
    /// record it returns is durable (at or below `durable_lsn` right
    /// after), is the model's record at its LSN, LSNs run gapless from the
    /// log's first one, the reader never fails, and it returns at least
    /// every record that was durable when it was opened.
    fn read(&mut self) {
        let durable_before = self.wal().durable_lsn();
        let mut reader = match Reader::open_with_fs(Arc::new(self.fs.clone()), DIR) {
            Ok(reader) => reader,
            Err(e) => {
                assert!(
                    self.cut_now(),
                    "opening a reader failed without a fault: {e}"
                );
                self.recover();
                return;
            }
        };
        // (LSN, session, payload, durable_lsn right after it was returned).
        let mut seen = Vec::new();
        let mut error = None;
        while let Some(r) = reader.next_ref() {
            match r {
                Ok(r) => {
                    let durable = self.wal().durable_lsn();
                    seen.push((r.lsn, r.session, r.payload.to_vec(), durable));
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        drop(reader);
        if self.cut_now() {
            // The power went out while it read (the `Batch` flusher hit the
            // scheduled cut): its handles died, and the log at rest it then
            // saw is no longer the live one. Recovery checks the rest.
            self.recover();
            return;
        }
        if let Some(e) = error {
            panic!("a reader of the live log failed: {e}");
        }
        let mut next = None;
        for (lsn, session, payload, durable) in &seen {
            let lsn = *lsn;
            if lsn > *durable {
                // The reader trusts the watermark the writer publishes in
                // `LOCK` right after its fsync (or a segment sealed by it),
                // a moment before `durable_lsn()` moves: the record is
                // durable, and `durable_lsn()` must cover it right after.
                let t = std::time::Instant::now();
                let mut later = self.wal().durable_lsn();
                while later < lsn && t.elapsed() < Duration::from_secs(2) {
                    std::thread::yield_now();
                    later = self.wal().durable_lsn();
                }
                assert!(
                    later >= lsn,
                    "a reader returned LSN {lsn} (append {}) while durable_lsn was {durable}, \
                     and still {later} after {:?}",
                    seq_of(session),
                    t.elapsed()
                );
                self.reader_ahead += 1;
            }
            assert!(
                !self.model.erased.contains(&lsn),
                "a reader returned LSN {lsn}, which a compaction erased"
            );
            match next {
                None => assert!(
                    (1..=self.model.floor).contains(&lsn)
                        || (self.model.floor..lsn).all(|l| self.model.skippable(l)),
                    "a reader started at LSN {lsn}, past the truncation floor {}",
                    self.model.floor
                ),
                Some(next) => assert!(
                    (next..lsn).all(|l| self.model.skippable(l)),
                    "a reader skipped LSNs {next}..{lsn}"
                ),
            }
            next = Some(lsn + 1);
            let Some((s, p)) = self.model.records.get(lsn_index(lsn)) else {
                panic!(
                    "a reader returned LSN {lsn}, but only {} were appended",
                    self.len()
                );
            };
            assert!(
                (s, p.as_slice()) == (session, payload.as_slice()),
                "a reader returned append {} at LSN {lsn}, which holds append {}",
                seq_of(session),
                seq_of(s)
            );
        }
        match seen.last() {
            Some(&(last, ..)) => {
                assert!(
                    last >= durable_before,
                    "a reader stopped at LSN {last}, but {durable_before} were durable"
                );
                self.records_read += seen.len();
                self.model.read = self.model.read.max(last);
                self.acknowledge(last);
            }
            None => assert!(
                durable_before < self.model.floor,
                "a reader returned nothing, but {durable_before} records were durable \
                 (truncation floor {})",
                self.model.floor
            ),
        }
    }

    /// Drop the log (as a dead process would), reopen it, and check what
    /// recovery kept against the model.
    fn recover(&mut self) {
        self.reopens += 1;
        drop(self.wal.take());
        self.cut_now();
        self.fault_now();
        // The restart happens once space was freed.
        self.fs.set_capacity(None);
        self.disk_limited = false;
        self.was_limited = false;
        self.poisoned = false;
        self.stalled = None;
        let wal = loop {
            match Wal::open_with_fs(Arc::new(self.fs.clone()), DIR, self.opts.clone()) {
                Ok(wal) => break wal,
                // The scheduled power cut (or fsync failure) hit recovery
                // itself: restart again. Each schedule fires once.
                Err(e) => {
                    let cut = self.cut_now();
                    let fault = self.fault_now();
                    assert!(cut || fault, "reopening after a crash failed: {e}");
                    self.open_retries += 1;
                }
            }
        };
        self.faulted = false;
        assert!(!wal.recovery().created, "recovery created a new log");
        let n = self.check_log(wal.recovery().next_lsn);
        assert_eq!(wal.recovery().next_lsn, n as u64 + 1);
        assert_eq!(wal.last_lsn(), n as u64);
        assert_eq!(
            wal.durable_lsn(),
            n as u64,
            "recovery leaves all it kept durable"
        );
        // What recovery kept is durable now: the new baseline.
        self.model.records.truncate(n);
        // Tombstones recovery cut are gone (their LSNs go to new records).
        self.model.tombstones.retain(|(t, _)| lsn_index(*t) < n);
        self.model.acked = n;
        self.wal = Some(wal);
    }

    /// Read the whole log: from its first record (LSN 1, or up to the
    /// truncation floor), it must hold every acknowledged record and every
    /// record a reader returned, then possibly some of the unacknowledged
    /// ones, in order, each at the LSN it was given, and nothing else.
    /// Returns the last LSN; `next_lsn` (recovery's) stands in for an empty
    /// log, whose records were all truncated.
    fn check_log(&self, next_lsn: u64) -> usize {
        let mut reader =
            Reader::open_with_fs(Arc::new(self.fs.clone()), DIR).expect("reader after recovery");
        let mut n: Option<usize> = None;
        while let Some(r) = reader.next_ref() {
            let r = r.unwrap_or_else(|e| panic!("reading a recovered log: {e}"));
            let n = n.get_or_insert_with(|| {
                assert!(
                    (1..=self.model.floor).contains(&r.lsn)
                        || (self.model.floor..r.lsn).all(|l| self.model.skippable(l)),
                    "the log starts at LSN {}, past the truncation floor {}",
                    r.lsn,
                    self.model.floor
                );
                lsn_index(r.lsn)
            });
            assert!(
                !self.model.erased.contains(&r.lsn),
                "LSN {} is in the log, but a compaction erased it",
                r.lsn
            );
            // Gapless but for what compaction erased.
            while (*n as u64 + 1) < r.lsn && self.model.skippable(*n as u64 + 1) {
                *n += 1;
            }
            assert_eq!(r.lsn, *n as u64 + 1, "LSNs are gapless");
            let Some((session, payload)) = self.model.records.get(*n) else {
                panic!(
                    "LSN {} (append {}) is in the log but no append got it ({} did)",
                    r.lsn,
                    seq_of(&r.session),
                    self.model.records.len()
                );
            };
            assert!(
                (&r.session, r.payload) == (session, payload.as_slice()),
                "LSN {} holds append {} ({} bytes), but it was given to append {} ({} bytes)",
                r.lsn,
                seq_of(&r.session),
                r.payload.len(),
                seq_of(session),
                payload.len()
            );
            *n += 1;
        }
        let n = n.unwrap_or_else(|| {
            // No record left: truncation removed them all, or none was kept.
            let last = lsn_index(next_lsn);
            assert!(
                last <= self.model.records.len(),
                "an empty log continues at LSN {next_lsn}, but {} were appended",
                self.model.records.len()
            );
            assert!(
                next_lsn == 1 || next_lsn <= self.model.floor,
                "an empty log continues at LSN {next_lsn}, past the truncation floor {}",
                self.model.floor
            );
            last
        });
        assert!(
            reader.tail_damage().is_none(),
            "damage after recovery: {:?}",
            reader.tail_damage()
        );
        assert!(
            n as u64 >= self.model.read,
            "records a reader returned are gone: it returned LSN {}, {n} in the log",
            self.model.read
        );
        assert!(
            n >= self.model.acked,
            "acknowledged records lost: {} acknowledged, {n} in the log",
            self.model.acked
        );
        n
    }
}

/// The ops `data` stands for: a [`Config`], then up to [`MAX_OPS`] ops.
pub(crate) fn parse(data: &[u8]) -> (Config, Vec<Op>) {
    let mut u = Unstructured::new(data);
    let config = Config::arbitrary(&mut u).unwrap_or(Config {
        seed: 0,
        policy: Policy::Always,
        no_preallocate: false,
    });
    let ops = match u.arbitrary_iter::<Op>() {
        Ok(iter) => iter.take(MAX_OPS).map_while(Result::ok).collect(),
        Err(_) => Vec::new(),
    };
    (config, ops)
}

/// Run the ops `data` stands for against a [`Wal`] on a [`SimFs`] with
/// 4 KiB segments (so records roll across many segments), under
/// `SyncPolicy::Always`, `Batch` (1 ms, 1 KiB) or `Never`, keeping a model
/// of the record each LSN was given and of which were acknowledged: an `Ok`
/// append under `Always`; under `Batch` and `Never` (where `Ok` only means
/// "queued with this LSN") an `Ok` sync or close covering it, or
/// `durable_lsn()` (checked after every step) or a reader reaching it.
///
/// * An LSN never names two records: an `Ok` append gets the next LSN,
///   never one returned before in the same generation; whatever a reader
///   finds at an LSN, after any number of reopens, is the record it was
///   given, unless that record was lost unacknowledged to a crash or power
///   cut and recovery handed the LSN out again.
/// * A full disk (`FillDisk`, `FreeDisk`): "disk full" only while space is
///   limited, never poisoning. Under `Always` the failed append is not in
///   the log and its LSN is free again; under `Batch` and `Never` no record
///   that returned `Ok` is dropped or renumbered: sync and appends fail
///   while the disk is full, and once space is free a `sync` (also after a
///   close that failed for the full disk) makes every one of them durable
///   (under `Batch`, one retry is allowed when the first `sync` joined a
///   flusher write that began before the space was freed).
/// * A failed fsync (`FailSync`, `EIO` or `ENOSPC`) poisons: that call and
///   every later append and sync fail with `Poisoned` until the log is
///   reopened.
/// * `Read`: a reader of the live log never fails and returns gapless LSNs,
///   only durable records (at or below `durable_lsn` right after each one;
///   under `Batch`, or reached by it a moment later, since the flusher
///   publishes the watermark readers trust just before `durable_lsn`
///   moves), each the model's record at its LSN, and at least every record
///   durable when it started; what it returned must survive every later
///   crash and power cut.
/// * After every crash, power cut (scheduled or in the middle of an
///   operation, the `Batch` flusher's or the next recovery's), reopen, and
///   once more at the end after a power cut: recovery opens the log
///   (retried when the scheduled cut or fsync failure hit it); a reader
///   finds gapless LSNs from 1 (or from no later than the last
///   `truncate_before` point) with no error or damage; every acknowledged
///   record, and every record a reader returned, is there with its session
///   and payload; past them only records given those LSNs; and `next_lsn`
///   follows the last one, all of it durable.
///
/// Under `Batch` the flusher thread makes the run timing-dependent; the
/// checks hold whatever the timing. Two leeways are part of the contract: a
/// reader may return a record (durable: fsynced) an instant before
/// `durable_lsn` reports it, which it must do right after (counted in
/// `Driver::reader_ahead`); and a `sync` right after the disk was freed may
/// report the flusher's write that began (and failed) before, and a second
/// `sync` must succeed (counted in `Driver::stale_disk_full`).
///
/// # Panics
///
/// When an invariant breaks.
pub fn wal_ops(data: &[u8]) {
    run(data);
}

/// [`wal_ops`], returning the driver for its counters.
fn run(data: &[u8]) -> Driver {
    let (config, ops) = parse(data);
    let mut driver = Driver::new(config);
    for op in ops {
        driver.run(op);
    }
    driver.fs.power_cut();
    driver.recover();
    driver
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::ArbBytes;

    fn seed(name: &str) -> Vec<u8> {
        crate::seeds::seeds("wal_ops")
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no seed {name}"))
            .1
    }

    #[test]
    fn seeds_reach_retention_and_a_full_disk() {
        assert!(run(&seed("retention_crash_power_cut")).segments_removed > 0);
        assert!(run(&seed("disk_full_always")).disk_full_errors > 0);
        for name in [
            "disk_full_never",
            "disk_full_never_kept",
            "disk_full_batch_kept",
        ] {
            let d = run(&seed(name));
            assert!(d.disk_full_errors > 0, "{name}: no full disk");
            assert!(
                d.kept_through_full_disk > 0,
                "{name}: no record queued across the full disk was synced"
            );
            assert_ne!(d.policy, Policy::Always, "{name}");
        }
    }

    /// Seeded random workloads of appends, deletions, compactions,
    /// crashes, power cuts, reads and retention under each policy:
    /// `LOGBOOK_WAL_OPS_RANDOM=N` runs more.
    #[test]
    fn random_deletion_workloads_hold_the_model() {
        let n: u64 = std::env::var("LOGBOOK_WAL_OPS_RANDOM")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let mut erased = 0;
        for i in 0..n {
            let policy = [Policy::Always, Policy::Batch, Policy::Never][(i % 3) as usize];
            let x = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1) | 1;
            let data = crate::seeds::delete_workload(policy, x);
            let d = std::panic::catch_unwind(|| run(&data))
                .unwrap_or_else(|_| panic!("workload {i} ({policy:?}, seed {x:#x}) failed"));
            erased += d.erased;
        }
        assert!(erased > 0);
    }

    #[test]
    fn seeds_reach_deletion_and_compaction() {
        for name in [
            "delete_compact_power_cut",
            "long_delete_compact_always",
            "long_delete_compact_batch",
            "long_delete_compact_never",
        ] {
            assert!(run(&seed(name)).erased > 0, "{name}");
        }
    }

    #[test]
    fn seeds_reach_batch_reads_cut_recoveries_and_poisoning() {
        for name in ["batch_reads_power_cut", "long_mixed_batch"] {
            let d = run(&seed(name));
            assert_eq!(d.policy, Policy::Batch, "{name}");
            assert!(d.records_read > 0, "{name}: no reader returned a record");
        }
        assert!(run(&seed("disk_full_never_kept")).records_read > 0);
        assert!(run(&seed("cut_during_recovery")).open_retries >= 3);
        assert!(run(&seed("batch_cut_during_recovery")).open_retries >= 2);
        for name in ["failed_fsync_poisons", "failed_fsync_enospc_never"] {
            assert!(
                run(&seed(name)).poisoned_calls > 0,
                "{name}: no call failed on a poisoned log"
            );
        }
    }

    /// A library bug this target found (fixed: recovery now cuts back to what
    /// was vouched for, and publishes a poisoned watermark, when its own
    /// fsync fails). `Never`: three appends of 500
    /// bytes; the first two are written (the 1 KiB buffer filled), not
    /// fsynced; the process crashes; the fsync of the next `open`'s recovery
    /// fails (`EIO`), so that `open` fails; the next `open` adopts the two
    /// records from the page cache (nothing marks them suspect: the failed
    /// `open` published no poisoned watermark), its fsync "succeeds" (the
    /// failed writeback left the pages clean: `SimFs`, like Linux, keeps the
    /// old bytes on the medium), and it reports them durable (`durable_lsn`
    /// 2) and publishes that watermark; a power cut then loses them, and the
    /// next `open` refuses with `DurableDamaged` ("LSN 1 is missing ... the
    /// log's writer had made every LSN below 3 durable"). Acknowledged
    /// records were lost and the log did not open. The input is
    /// `seeds::wal_ops_violations` (`failed_fsync_in_recovery_then_power_cut`).
    #[test]
    fn violation_failed_fsync_in_recovery_then_power_cut() {
        for (_, data) in crate::seeds::wal_ops_violations() {
            run(&data);
        }
    }

    #[test]
    fn seed_bytes_mean_what_they_say() {
        let mut b = ArbBytes::default();
        b.u64(7).variant(1, POLICY_VARIANTS).bool(true);
        b.more().variant(0, OP_VARIANTS).u8(3).u16(40);
        b.more().variant(1, OP_VARIANTS);
        b.more().variant(2, OP_VARIANTS);
        b.more().variant(3, OP_VARIANTS);
        b.more().variant(4, OP_VARIANTS);
        b.more().variant(5, OP_VARIANTS).u8(9);
        b.more().variant(6, OP_VARIANTS).u8(128);
        b.more().variant(7, OP_VARIANTS).u16(500);
        b.more().variant(8, OP_VARIANTS);
        b.more().variant(9, OP_VARIANTS);
        b.more().variant(10, OP_VARIANTS).u8(2).bool(true);
        b.done();
        let (config, ops) = parse(&b.take());
        assert_eq!(
            (config.seed, config.policy, config.no_preallocate),
            (7, Policy::Batch, true)
        );
        let names: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
        assert_eq!(
            names,
            [
                "Append { session: 3, len: 40 }",
                "Sync",
                "Crash",
                "PowerCut",
                "Reopen",
                "CutPowerAfter { ops: 9 }",
                "Truncate { at: 128 }",
                "FillDisk { room: 500 }",
                "FreeDisk",
                "Read",
                "FailSync { after: 2, enospc: true }"
            ]
        );
        for (i, policy) in [Policy::Always, Policy::Batch, Policy::Never]
            .into_iter()
            .enumerate()
        {
            let mut b = ArbBytes::default();
            b.u64(0)
                .variant(u32::try_from(i).unwrap_or(0), POLICY_VARIANTS)
                .bool(false)
                .done();
            assert_eq!(parse(&b.take()).0.policy, policy);
        }
    }
}
