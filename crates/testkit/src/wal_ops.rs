//! `wal_ops`: appends, syncs, retention, a full disk, crashes, power cuts
//! and reopens against an in-memory model of what was acknowledged.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use logbook_wal::sim::SimFs;
use logbook_wal::{MIN_SEGMENT_SIZE, Reader, SyncPolicy, Wal, WalError, WalOptions};
use uuid::Uuid;

/// The log's directory in the simulated file system.
const DIR: &str = "/log";
/// At most this many operations per input.
pub(crate) const MAX_OPS: usize = 200;
/// At most this many crashes, power cuts and reopens per input (each one
/// re-reads the whole log); later ones are skipped.
pub(crate) const MAX_REOPENS: usize = 24;

/// How the log is run, from the input's first bytes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) struct Config {
    /// Seeds how a power cut tears unsynced bytes.
    pub(crate) seed: u64,
    /// `SyncPolicy::Never` (acknowledged by `sync`, close) instead of
    /// `SyncPolicy::Always` (acknowledged by every `Ok` append).
    pub(crate) never: bool,
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
    /// create, rename or remove, whatever the log is doing then.
    CutPowerAfter { ops: u8 },
    /// `Wal::truncate_before` an LSN `at / 256` of the way through the
    /// records appended so far.
    Truncate { at: u8 },
    /// Leave `room % 8192` free bytes on the file system: later writes fail
    /// with `ENOSPC` once they are used.
    FillDisk { room: u16 },
    /// Lift the space limit.
    FreeDisk,
}

/// Variants of [`Op`], for writing seeds.
pub(crate) const OP_VARIANTS: u32 = 9;

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

fn session(n: u8) -> Uuid {
    Uuid::from_u128(0x5e55_0000 + u128::from(n % 8))
}

/// What must be, and what may be, in the log.
#[derive(Debug, Default)]
struct Model {
    /// Record `i` has LSN `i + 1`. Each is in the log, or was appended
    /// since the last recovery and may be lost by a crash.
    records: Vec<(Uuid, Vec<u8>)>,
    /// The first `acked` records were acknowledged: they must survive.
    acked: usize,
    /// The log's first record may have any LSN from 1 up to this one:
    /// `truncate_before` removed the segments wholly below it.
    floor: u64,
}

struct Driver {
    fs: SimFs,
    opts: WalOptions,
    wal: Option<Wal>,
    model: Model,
    seq: u32,
    reopens: usize,
    /// A power cut scheduled by `CutPowerAfter` has not been seen yet.
    cut_pending: bool,
    /// `FillDisk` limited the space: writes may fail with "disk full".
    disk_limited: bool,
    /// "Disk full" errors seen, and segments `truncate_before` removed.
    disk_full_errors: usize,
    segments_removed: usize,
}

impl Driver {
    fn new(config: Config) -> Driver {
        let opts = WalOptions {
            segment_size: MIN_SEGMENT_SIZE,
            sync: if config.never {
                SyncPolicy::Never
            } else {
                SyncPolicy::Always
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
            wal: Some(wal),
            model: Model {
                floor: 1,
                ..Model::default()
            },
            seq: 0,
            reopens: 0,
            cut_pending: false,
            disk_limited: false,
            disk_full_errors: 0,
            segments_removed: 0,
        }
    }

    fn always(&self) -> bool {
        self.opts.sync == SyncPolicy::Always
    }

    /// Whether the scheduled power cut happened (once per schedule).
    fn cut_now(&mut self) -> bool {
        if self.cut_pending && self.fs.power_was_cut() {
            self.cut_pending = false;
            return true;
        }
        false
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("the log is open between steps")
    }

    /// Whether `e` is a full disk that `FillDisk` allows.
    fn disk_full(&self, e: &WalError) -> bool {
        self.disk_limited && e.is_disk_full()
    }

    /// A full disk discarded what was not written: the records past the
    /// log's last LSN are gone, and their LSNs will be reused.
    fn discarded(&mut self, last_lsn: u64) {
        self.disk_full_errors += 1;
        let last = usize::try_from(last_lsn).unwrap_or(usize::MAX);
        assert!(
            last >= self.model.acked,
            "a full disk lost acknowledged records"
        );
        self.model.records.truncate(last);
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Append { session: s, len } => self.append(session(s), payload_len(len)),
            Op::Sync => match self.wal().sync() {
                Ok(lsn) => {
                    assert_eq!(
                        lsn,
                        self.model.records.len() as u64,
                        "sync returns the last LSN"
                    );
                    self.model.acked = self.model.records.len();
                }
                Err(e) if self.disk_full(&e) => self.discarded(self.wal().last_lsn()),
                Err(e) => {
                    assert!(self.cut_now(), "sync failed without a fault: {e}");
                    self.recover();
                }
            },
            Op::Crash | Op::PowerCut | Op::Reopen if self.reopens >= MAX_REOPENS => {}
            Op::Crash => {
                self.fs.crash();
                self.recover();
            }
            Op::PowerCut => {
                self.fs.power_cut();
                self.recover();
            }
            Op::Reopen => {
                let wal = self.wal.take().expect("open");
                let probe = wal.clone();
                match wal.close() {
                    Ok(()) => self.model.acked = self.model.records.len(),
                    Err(e) if self.disk_full(&e) => self.discarded(probe.last_lsn()),
                    Err(e) => assert!(self.cut_now(), "close failed without a fault: {e}"),
                }
                drop(probe);
                self.recover();
            }
            Op::Truncate { at } => {
                let n = self.model.records.len() as u64;
                let lsn = n * u64::from(at) / 256 + 1;
                match self.wal().truncate_before(lsn) {
                    Ok(removed) => {
                        self.segments_removed += removed;
                        self.model.floor = self.model.floor.max(lsn);
                    }
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
            }
            Op::FreeDisk => {
                self.fs.set_capacity(None);
                self.disk_limited = false;
            }
            Op::CutPowerAfter { ops } => {
                self.fs.cut_power_after(u64::from(ops % 32) + 1);
                self.cut_pending = true;
            }
        }
        if self.cut_now() {
            // The power went out in the middle of the step: what a restart
            // finds is checked like after any power cut.
            self.recover();
        }
    }

    fn append(&mut self, session: Uuid, len: usize) {
        let payload = payload(self.seq, len);
        self.seq = self.seq.wrapping_add(1);
        let max = self.opts.max_payload_len();
        match self.wal().append_raw(session, &payload) {
            Ok(lsn) => {
                assert!((1..=max).contains(&len), "{len}-byte payload accepted");
                self.model.records.push((session, payload));
                assert_eq!(lsn, self.model.records.len() as u64, "LSNs are gapless");
                if self.always() {
                    self.model.acked = self.model.records.len();
                }
            }
            Err(WalError::EmptyRecord) => assert_eq!(len, 0),
            Err(WalError::RecordTooLarge { size, max: m }) => {
                assert_eq!((size, m), (len, max));
                assert!(len > max);
            }
            Err(e) if self.disk_full(&e) => {
                // Not appended (under `Never`, records queued before it may
                // be discarded with it); `last_lsn` says what remains.
                self.discarded(self.wal().last_lsn());
            }
            Err(e) => {
                assert!(self.cut_now(), "append failed without a fault: {e}");
                // It took an LSN and may have reached the disk.
                self.model.records.push((session, payload));
                self.recover();
            }
        }
    }

    /// Drop the log (as a dead process would), reopen it, and check what
    /// recovery kept against the model.
    fn recover(&mut self) {
        self.reopens += 1;
        drop(self.wal.take());
        self.cut_now();
        // The restart happens once space was freed.
        self.fs.set_capacity(None);
        self.disk_limited = false;
        let mut tries = 0;
        let wal = loop {
            tries += 1;
            match Wal::open_with_fs(Arc::new(self.fs.clone()), DIR, self.opts.clone()) {
                Ok(wal) => break wal,
                // The scheduled power cut hit recovery itself: restart again.
                Err(_) if self.cut_now() && tries < 3 => {}
                Err(e) => panic!("reopening after a crash failed: {e}"),
            }
        };
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
        self.model.acked = n;
        self.wal = Some(wal);
    }

    /// Read the whole log: from its first record (LSN 1, or up to the
    /// truncation floor), it must hold every acknowledged record, then
    /// possibly some of the unacknowledged ones, in order, and nothing else.
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
                    (1..=self.model.floor).contains(&r.lsn),
                    "the log starts at LSN {}, past the truncation floor {}",
                    r.lsn,
                    self.model.floor
                );
                usize::try_from(r.lsn - 1).unwrap_or(usize::MAX)
            });
            assert_eq!(r.lsn, *n as u64 + 1, "LSNs are gapless");
            let Some((session, payload)) = self.model.records.get(*n) else {
                panic!(
                    "LSN {} is in the log but was never appended ({} were)",
                    r.lsn,
                    self.model.records.len()
                );
            };
            assert_eq!(
                (&r.session, r.payload),
                (session, payload.as_slice()),
                "record {} differs from what was appended",
                r.lsn
            );
            *n += 1;
        }
        let n = n.unwrap_or_else(|| {
            // No record left: truncation removed them all, or none was kept.
            let last = usize::try_from(next_lsn - 1).unwrap_or(usize::MAX);
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
        never: false,
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
/// `SyncPolicy::Always` or `Never`, keeping a model of every record
/// appended and of which were acknowledged (an `Ok` append under `Always`;
/// an `Ok` sync or close under `Never`). Retention (`truncate_before`) and
/// a full disk (a space limit set and lifted by ops) mix with the rest: a
/// "disk full" error is allowed only while space is limited, must not
/// poison the log, and discards nothing acknowledged.
///
/// After every crash, power cut (scheduled or in the middle of an
/// operation) and reopen, and once more at the end after a power cut:
/// recovery opens the log; a reader finds LSNs 1, 2, … with no gap, no
/// error and no damage; every acknowledged record is there with its
/// session and payload; past them, only records that were appended, in
/// order; and `next_lsn` follows the last one. Appends fail only for an
/// empty or too large payload unless a fault was injected, and an `Ok`
/// append gets the next LSN.
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

    #[test]
    fn seeds_reach_retention_and_a_full_disk() {
        let seeds = crate::seeds::seeds("wal_ops");
        let seed = |name: &str| {
            &seeds
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no seed {name}"))
                .1
        };
        assert!(run(seed("retention_crash_power_cut")).segments_removed > 0);
        assert!(run(seed("disk_full_always")).disk_full_errors > 0);
        assert!(run(seed("disk_full_never")).disk_full_errors > 0);
    }

    #[test]
    fn seed_bytes_mean_what_they_say() {
        let mut b = ArbBytes::default();
        b.u64(7).bool(true).bool(false);
        b.more().variant(0, OP_VARIANTS).u8(3).u16(40);
        b.more().variant(1, OP_VARIANTS);
        b.more().variant(2, OP_VARIANTS);
        b.more().variant(3, OP_VARIANTS);
        b.more().variant(4, OP_VARIANTS);
        b.more().variant(5, OP_VARIANTS).u8(9);
        b.more().variant(6, OP_VARIANTS).u8(128);
        b.more().variant(7, OP_VARIANTS).u16(500);
        b.more().variant(8, OP_VARIANTS);
        b.done();
        let (config, ops) = parse(&b.take());
        assert_eq!(
            (config.seed, config.never, config.no_preallocate),
            (7, true, false)
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
                "FreeDisk"
            ]
        );
    }
}
