//! Regression tests, one per reported defect. Each states, in its doc
//! comment, the defect's number and the contract the fixed code keeps; each
//! failed on the code it was written against.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{assert_gapless, bounded, event, is_poisoned, panic_message, read_all_fs, session};
use logbook_bus::SessionEvent;
use logbook_wal::format::{SegmentHeader, segment_file_name};
use logbook_wal::fs::{Contents, Fs, FsFile, LockGuard, OpenMode, PathKind, StdFs};
use logbook_wal::sim::{Op, SimFs};
use logbook_wal::{EventRecord, Lsn, Reader, SyncPolicy, Wal, WalError, WalOptions};
use uuid::Uuid;

const DIR: &str = "/log";

/// Records that were returned `Ok(lsn)`, by LSN.
type Acked = BTreeMap<Lsn, (Uuid, SessionEvent)>;

fn sim(fs: &SimFs) -> Arc<dyn Fs> {
    Arc::new(fs.clone())
}

fn open_sim(fs: &SimFs, opts: WalOptions) -> Wal {
    Wal::open_with_fs(sim(fs), DIR, opts)
        .unwrap_or_else(|e| panic!("opening the simulated log {DIR}: {e}"))
}

fn errno_name(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

/// The log `records` is gapless and holds, at each LSN of `acked`, exactly
/// the record that LSN was returned for.
fn holds_acked(records: Vec<(Lsn, Uuid, SessionEvent)>, acked: &Acked, context: &str) {
    assert_gapless(&records);
    let found: Acked = records.into_iter().map(|(l, s, e)| (l, (s, e))).collect();
    for (lsn, want) in acked {
        match found.get(lsn) {
            Some(got) => assert_eq!(
                got, want,
                "{context}: LSN {lsn} was returned Ok for {want:?}, but the log holds {got:?} there"
            ),
            None => panic!(
                "{context}: LSN {lsn} was returned Ok for {want:?}, but the log does not hold it \
                 (its last LSN is {:?})",
                found.keys().next_back()
            ),
        }
    }
}

/// Defect 1: a failed fdatasync with `ENOSPC` or `EDQUOT` must poison the
/// log (cause `WalError::Io { op: "fsync" }`); it is never retried nor
/// acknowledged.
#[test]
fn d1_fsync_failing_with_enospc_or_edquot_poisons_and_is_never_retried() {
    for errno in [libc::ENOSPC, libc::EDQUOT] {
        for k in [0u64, 2, 5] {
            let ctx = format!("fsync #{} failing with {}", k + 1, errno_name(errno));
            let fs = SimFs::new(k);
            let wal = open_sim(
                &fs,
                WalOptions {
                    segment_size: 1 << 20,
                    sync: SyncPolicy::Always,
                    ..WalOptions::default()
                },
            );
            fs.fail_after(Op::Sync, k, errno);
            let mut last_ok = 0;
            let mut failure = None;
            for i in 1..=50u64 {
                match wal.append(session(1), &event(i)) {
                    Ok(lsn) => last_ok = lsn,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let Some(first) = failure else {
                panic!(
                    "{ctx}: all 50 appends returned Ok (last LSN {last_ok}, durable LSN {}, \
                     {} fsyncs attempted): the failed fsync was retried and its batch acknowledged",
                    wal.durable_lsn(),
                    fs.op_count(Op::Sync)
                );
            };
            let failed_lsn = last_ok + 1;
            match &first {
                WalError::Poisoned { cause } => assert!(
                    matches!(&**cause, WalError::Io { op: "fsync", .. }),
                    "{ctx}: the cause must be WalError::Io {{ op: \"fsync\", .. }}, not {cause:?}"
                ),
                other => panic!(
                    "{ctx}: the append whose fsync failed must return WalError::Poisoned, \
                     got {other:?} ({other})"
                ),
            }
            assert!(
                wal.durable_lsn() < failed_lsn,
                "{ctx}: durable_lsn() is {} although the fsync of LSN {failed_lsn} failed",
                wal.durable_lsn()
            );
            let syncs = fs.op_count(Op::Sync);
            for i in 0..3 {
                match wal.append(session(2), &event(i)) {
                    Err(e) if is_poisoned(&e) => {}
                    other => panic!(
                        "{ctx}: an append after the failed fsync must fail with Poisoned, got {other:?}"
                    ),
                }
                match wal.sync() {
                    Err(e) if is_poisoned(&e) => {}
                    other => panic!(
                        "{ctx}: sync() after the failed fsync must fail with Poisoned, got {other:?}"
                    ),
                }
            }
            assert_eq!(
                fs.op_count(Op::Sync),
                syncs,
                "{ctx}: a failed fsync must never be retried"
            );
            assert!(
                wal.durable_lsn() < failed_lsn,
                "{ctx}: durable_lsn() rose to {} past the failed LSN {failed_lsn}",
                wal.durable_lsn()
            );
        }
    }
}

/// One run of defect 2's scenario under `sync` and `buffer_bytes`.
fn full_disk_keeps_queued_records(name: &str, sync: SyncPolicy, buffer_bytes: usize) {
    let fs = SimFs::new(11);
    let wal = open_sim(
        &fs,
        WalOptions {
            sync,
            buffer_bytes,
            // Records grow the file, so a capacity limit bites every write.
            preallocate: false,
            ..WalOptions::default()
        },
    );
    let mut acked = Acked::new();
    for i in 0..5 {
        let lsn = wal
            .append(session(1), &event(i))
            .unwrap_or_else(|e| panic!("{name}: appending before the disk is full: {e}"));
        acked.insert(lsn, (session(1), event(i)));
    }
    wal.sync()
        .unwrap_or_else(|e| panic!("{name}: sync() before the disk is full: {e}"));

    // Less room than any record needs.
    fs.set_capacity(Some(fs.used() + 16));
    let x = (session(2), SessionEvent::UserMessage("record X".into()));
    let n = wal.append(x.0, &x.1).unwrap_or_else(|e| {
        panic!("{name}: appending X must queue it and return Ok (it is not durable yet), got {e}")
    });
    acked.insert(n, x);
    match wal.sync() {
        Ok(d) => panic!(
            "{name}: sync() returned Ok({d}) while the disk is full and X (LSN {n}) was never written: \
             X was dropped"
        ),
        Err(e) => assert!(
            e.is_disk_full(),
            "{name}: sync() on a full disk must fail with a disk-full error, got {e}"
        ),
    }
    assert!(
        wal.durable_lsn() < n,
        "{name}: durable_lsn() is {} though X (LSN {n}) is on no disk",
        wal.durable_lsn()
    );
    let y = (session(3), SessionEvent::UserMessage("record Y".into()));
    match wal.append(y.0, &y.1) {
        Ok(m) => {
            assert_ne!(
                m, n,
                "{name}: Y was given LSN {n}, which had already been returned for X"
            );
            if let Some(earlier) = acked.insert(m, y) {
                panic!(
                    "{name}: Y was given LSN {m}, which had already been returned for {earlier:?}"
                );
            }
        }
        Err(e) => assert!(
            e.is_disk_full(),
            "{name}: appending Y on a full disk must fail with a disk-full error or return Ok, got {e}"
        ),
    }
    assert!(
        wal.durable_lsn() < n,
        "{name}: durable_lsn() is {} while the disk is still full and X (LSN {n}) unwritten",
        wal.durable_lsn()
    );

    fs.set_capacity(None);
    let d = wal
        .sync()
        .unwrap_or_else(|e| panic!("{name}: sync() once space is free: {e}"));
    assert!(
        d >= n,
        "{name}: sync() once space is free returned {d}, below X's LSN {n}"
    );
    wal.close()
        .unwrap_or_else(|e| panic!("{name}: close() once space is free: {e}"));
    holds_acked(
        read_all_fs(sim(&fs), Path::new(DIR)),
        &acked,
        &format!("{name}, after the disk was freed and the log closed"),
    );
}

/// Defect 2: under `SyncPolicy::Batch` and `SyncPolicy::Never`, a full disk
/// must never drop a record that returned `Ok(lsn)`, nor give its LSN to
/// another record.
#[test]
fn d2_full_disk_never_drops_a_queued_record_nor_reuses_its_lsn() {
    let variants: [(&str, SyncPolicy, usize); 3] = [
        (
            "Batch (max_delay 1 ms)",
            SyncPolicy::Batch {
                max_delay: Duration::from_millis(1),
                max_bytes: 1 << 20,
            },
            1 << 20,
        ),
        (
            "Never (buffer_bytes 1: every append writes)",
            SyncPolicy::Never,
            1,
        ),
        (
            "Never (buffer_bytes 1 MiB: sync writes)",
            SyncPolicy::Never,
            1 << 20,
        ),
    ];
    let mut failures = Vec::new();
    for (name, sync, buffer_bytes) in variants {
        let run = catch_unwind(AssertUnwindSafe(|| {
            full_disk_keeps_queued_records(name, sync, buffer_bytes);
        }));
        if let Err(payload) = run {
            failures.push(panic_message(&*payload));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 3 policies lose or relabel a record on a full disk:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Defect 3: a reopen must make the directory durable before it
/// acknowledges anything (a segment whose name was never made durable must
/// not lose records acknowledged into it after the reopen).
#[test]
fn d3_reopen_makes_the_directory_durable_before_acknowledging() {
    let opts = || WalOptions {
        segment_size: 16 * 1024,
        sync: SyncPolicy::Always,
        ..WalOptions::default()
    };
    let fs = SimFs::new(3);
    let wal = open_sim(&fs, opts());
    let dir_syncs = fs.op_count(Op::SyncDir);
    // The next directory fsync, that of the first roll (after the rename
    // of the new segment), fails: its name is not durable.
    fs.fail_after(Op::SyncDir, 0, libc::EIO);
    let mut acked = Acked::new();
    let mut failure = None;
    for i in 1..5000 {
        match wal.append(session(1), &event(i)) {
            Ok(lsn) => {
                acked.insert(lsn, (session(1), event(i)));
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.unwrap_or_else(|| {
        panic!("no append failed in 5000: the injected directory-fsync failure never hit")
    });
    assert!(
        fs.op_count(Op::SyncDir) > dir_syncs,
        "the append failed ({failure}) before any directory fsync was attempted: the scenario is not the one intended"
    );
    drop(wal);
    fs.crash();

    let wal = Wal::open_with_fs(sim(&fs), DIR, opts())
        .unwrap_or_else(|e| panic!("reopening after the crash: {e}"));
    let first_after_reopen = wal.last_lsn() + 1;
    for i in 0..5 {
        let lsn = wal
            .append(session(2), &event(i))
            .unwrap_or_else(|e| panic!("appending after the reopen: {e}"));
        acked.insert(lsn, (session(2), event(i)));
    }
    drop(wal);
    fs.power_cut();

    let wal = Wal::open_with_fs(sim(&fs), DIR, opts())
        .unwrap_or_else(|e| panic!("reopening after the power cut: {e}"));
    drop(wal);
    holds_acked(
        read_all_fs(sim(&fs), Path::new(DIR)),
        &acked,
        &format!(
            "after a failed roll ({failure}), a crash, a reopen that acknowledged LSNs from \
             {first_after_reopen} and a power cut"
        ),
    );
}

/// An event of 1 byte to about 4 KiB, so that frames straddle pages and the
/// reader's read boundaries.
fn sized_event(t: u64, i: u64) -> SessionEvent {
    if i % 5 == 0 {
        return event(i);
    }
    let len = (i.wrapping_mul(2_654_435_761) ^ t.wrapping_mul(40_503)) % 4096;
    SessionEvent::UserMessage(format!("t{t} #{i} {}", "y".repeat(len as usize)))
}

/// The real file system, taking one liberty that Linux takes too, but
/// often: a `pread` is not atomic against a concurrent `pwrite` (it copies
/// low to high, and the writer may overtake it; on ext4 this shows rarely).
/// A read of a segment (`*.wal`, opened read-only) that reaches the end of
/// the written records (its first run of 64 zero bytes) is taken in two
/// pieces, split at the next 64-byte boundary, with a 500 µs pause between
/// them in which the live writer may append: the reader gets old bytes
/// before the split and newer ones after it. Everything else is `StdFs`.
#[derive(Debug)]
struct OvertakenReads;

#[derive(Debug)]
struct OvertakenFile(Box<dyn FsFile>);

impl Fs for OvertakenReads {
    fn kind(&self, path: &Path) -> io::Result<PathKind> {
        StdFs.kind(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFs.read_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>> {
        let file = StdFs.open(path, mode)?;
        let segment = path.extension().is_some_and(|e| e == "wal");
        Ok(if segment && mode == OpenMode::Read {
            Box::new(OvertakenFile(file))
        } else {
            file
        })
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFs.sync_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        StdFs.try_lock(path)
    }

    fn lock_is_held(&self, path: &Path) -> io::Result<bool> {
        StdFs.lock_is_held(path)
    }
}

impl FsFile for OvertakenFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.0.read_at(buf, offset)?;
        // Where the written records end, as this read saw it.
        let Some(zeros) = buf
            .get(..n)
            .and_then(|b| b.windows(64).position(|w| w.iter().all(|&b| b == 0)))
        else {
            return Ok(n);
        };
        let frontier = offset + zeros as u64;
        let split = usize::try_from((frontier / 64 + 1) * 64 - offset).unwrap_or(usize::MAX);
        if split >= n {
            return Ok(n);
        }
        // The writer overtakes the copy here; the rest is read afresh.
        std::thread::sleep(Duration::from_micros(500));
        let rest = self.0.read_at(&mut buf[split..n], offset + split as u64)?;
        Ok(split + rest)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.0.allocate(len)
    }
    fn contents(&self) -> io::Result<Contents> {
        self.0.contents()
    }
}

/// A record as read: LSN, session, payload.
type Raw = (Lsn, Uuid, Vec<u8>);

/// Follow the live log in `dir` until `done`: what it yielded, and every
/// problem (an error, or an LSN that is not the previous one plus 1).
fn follow(fs: Arc<dyn Fs>, dir: &Path, done: &AtomicBool) -> (Vec<Raw>, Vec<String>) {
    let mut yielded: Vec<Raw> = Vec::new();
    let mut problems = Vec::new();
    let mut reader = match Reader::open_with_fs(fs, dir) {
        Ok(r) => r,
        Err(e) => return (yielded, vec![format!("Reader::open: {e}")]),
    };
    loop {
        match reader.next_ref() {
            Some(Ok(r)) => {
                if let Some(&(last, _, _)) = yielded.last() {
                    if r.lsn != last + 1 {
                        problems.push(format!("LSN {} yielded right after LSN {last}", r.lsn));
                    }
                }
                yielded.push((r.lsn, r.session, r.payload.to_vec()));
            }
            Some(Err(e)) => {
                let after = yielded.last().map(|r| r.0);
                problems.push(format!("error after LSN {after:?}: {e}"));
                if problems.len() >= 1000 || done.load(Ordering::Acquire) {
                    break;
                }
            }
            None => {
                if done.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    (yielded, problems)
}

/// One round of defect 4's scenario: three appenders for `time`, one live
/// reader through `fs`: how many records the reader followed, and the
/// problems found.
fn live_reader_round(
    name: &str,
    fs: Arc<dyn Fs>,
    segment_size: u64,
    time: Duration,
) -> (usize, Vec<String>) {
    const MAX_APPENDS: u64 = 50_000;
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size,
            sync: SyncPolicy::Always,
            ..WalOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}: opening the log: {e}"));
    let done = AtomicBool::new(false);
    let (appended, followed) = std::thread::scope(|s| {
        let (done, wal, path) = (&done, &wal, dir.path());
        let reader = s.spawn(move || follow(fs, path, done));
        let appenders: Vec<_> = (0..3u64)
            .map(|t| {
                s.spawn(move || {
                    let deadline = Instant::now() + time;
                    let mut n = 0;
                    while n < MAX_APPENDS && Instant::now() < deadline {
                        wal.append(session(t), &sized_event(t, n))
                            .unwrap_or_else(|e| panic!("{name}: appender {t}: {e}"));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let appended: Vec<_> = appenders.into_iter().map(|a| a.join()).collect();
        // Whatever happened, let the reader stop.
        done.store(true, Ordering::Release);
        (appended, reader.join())
    });
    let appended: u64 = appended
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|p| panic!("{name}: an appender panicked: {}", panic_message(&*p)))
        })
        .sum();
    let (yielded, mut problems) = followed
        .unwrap_or_else(|p| panic!("{name}: the live reader panicked: {}", panic_message(&*p)));
    wal.close()
        .unwrap_or_else(|e| panic!("{name}: closing the log: {e}"));

    let mut fresh = BTreeMap::new();
    let mut reader =
        Reader::open(dir.path()).unwrap_or_else(|e| panic!("{name}: opening a fresh reader: {e}"));
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap_or_else(|e| panic!("{name}: the fresh reader: {e}"));
        fresh.insert(r.lsn, (r.session, r.payload.to_vec()));
    }
    for (lsn, s, payload) in &yielded {
        match fresh.get(lsn) {
            Some((fresh_session, fresh_payload))
                if fresh_session == s && fresh_payload == payload => {}
            Some(_) => problems.push(format!(
                "LSN {lsn} as yielded live differs from the record the log holds there"
            )),
            None => problems.push(format!("LSN {lsn} was yielded live but is not in the log")),
        }
    }
    println!(
        "{name}: {appended} appended, {} followed live, {} problems",
        yielded.len(),
        problems.len()
    );
    let problems = problems.into_iter().map(|p| format!("{name}: {p}"));
    (yielded.len(), problems.collect())
}

/// Defect 4: a live reader must never report damage that is not there:
/// following three appenders on a real directory it yields no error, LSNs
/// rising by exactly 1, and only records equal to what a fresh reader reads
/// once the writers are done. Half the rounds read through the real file
/// system as is (default segments); the other half through
/// [`OvertakenReads`], which makes the writer overtake the reader's `pread`
/// (which Linux allows but rarely shows) at every poll (1 MiB segments, so
/// that rolls happen too).
#[test]
fn d4_live_reader_never_reports_damage_that_is_not_there() {
    let mut problems: Vec<String> = Vec::new();
    let mut followed = 0;
    for round in 0..4 {
        let (yielded, found) = if round % 2 == 0 {
            live_reader_round(
                &format!("round {round} (plain reads)"),
                Arc::new(StdFs),
                WalOptions::default().segment_size,
                Duration::from_millis(700),
            )
        } else {
            live_reader_round(
                &format!("round {round} (overtaken reads)"),
                Arc::new(OvertakenReads),
                1 << 20,
                Duration::from_millis(500),
            )
        };
        followed += yielded;
        problems.extend(found);
    }
    assert!(followed > 0, "the live reader followed no record at all");
    assert!(
        problems.is_empty(),
        "the live reader reported {} problems on an undamaged log; the first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every record a reader of the simulated log returns, decoded; an error
/// (the log is undamaged) fails the test.
fn read_sim(fs: &SimFs, context: &str) -> Vec<(Lsn, Uuid, SessionEvent)> {
    let mut reader = Reader::open_with_fs(sim(fs), DIR)
        .unwrap_or_else(|e| panic!("{context}: opening a reader: {e}"));
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let Some(r) = reader.next_ref() else {
            return out;
        };
        let r = r.unwrap_or_else(|e| panic!("{context}: the reader reported {e}"));
        let e = EventRecord::decode(&r)
            .unwrap_or_else(|e| panic!("{context}: decoding LSN {}: {e}", r.lsn));
        out.push((e.lsn, e.session, e.event));
    }
    panic!("{context}: the reader never reached the end of the log")
}

/// Options under which every append is written to the file, never fsynced.
fn unsynced() -> WalOptions {
    WalOptions {
        segment_size: 16 * 1024,
        sync: SyncPolicy::Never,
        buffer_bytes: 1,
        ..WalOptions::default()
    }
}

/// Defect 5, first part: written but not fsynced, a record is not returned;
/// after `sync()`, all are.
fn unsynced_records_are_not_returned() {
    let fs = SimFs::new(1);
    let wal = open_sim(&fs, unsynced());
    let mut appended = Vec::new();
    for i in 1..=4 {
        let lsn = wal
            .append(session(1), &event(i))
            .unwrap_or_else(|e| panic!("appending under SyncPolicy::Never: {e}"));
        appended.push((lsn, session(1), event(i)));
    }
    let durable = wal.durable_lsn();
    let early: Vec<Lsn> = read_sim(&fs, "before sync()")
        .into_iter()
        .map(|r| r.0)
        .filter(|&lsn| lsn > durable)
        .collect();
    assert!(
        early.is_empty(),
        "a reader returned LSNs {early:?}, written but not fsynced (durable_lsn() is {durable})"
    );
    wal.sync()
        .unwrap_or_else(|e| panic!("sync() under SyncPolicy::Never: {e}"));
    assert_eq!(
        read_sim(&fs, "after sync()"),
        appended,
        "after sync() a reader returns every record"
    );
}

/// Defect 5, second part, why: a record returned before it was durable is
/// lost to a power cut, and its LSN goes to another record.
fn returned_records_keep_their_lsn_through_a_power_cut() {
    let mut lsn_reused = 0;
    for seed in 0..12 {
        let fs = SimFs::new(seed);
        let wal = open_sim(&fs, unsynced());
        for i in 1..=3 {
            wal.append(session(1), &event(i))
                .unwrap_or_else(|e| panic!("seed {seed}: appending: {e}"));
        }
        wal.sync()
            .unwrap_or_else(|e| panic!("seed {seed}: sync(): {e}"));
        let n = wal.last_lsn() + 1;
        for i in 0..3 {
            wal.append(session(10), &SessionEvent::UserMessage(format!("A{i}")))
                .unwrap_or_else(|e| panic!("seed {seed}: appending A{i}: {e}"));
        }
        let returned = read_sim(&fs, &format!("seed {seed}, records A unsynced"));
        fs.power_cut();
        drop(wal);
        let wal = open_sim(
            &fs,
            WalOptions {
                segment_size: 16 * 1024,
                ..WalOptions::default()
            },
        );
        for i in 0..3 {
            let lsn = wal
                .append(session(20), &SessionEvent::UserMessage(format!("B{i}")))
                .unwrap_or_else(|e| panic!("seed {seed}: appending B{i} after the power cut: {e}"));
            if i == 0 && lsn == n {
                lsn_reused += 1;
            }
        }
        drop(wal);
        let finally: Acked = read_all_fs(sim(&fs), Path::new(DIR))
            .into_iter()
            .map(|(l, s, e)| (l, (s, e)))
            .collect();
        for (lsn, s, e) in returned {
            assert_eq!(
                finally.get(&lsn),
                Some(&(s, e.clone())),
                "seed {seed}: a reader returned {e:?} (session {s}) at LSN {lsn} before it was \
                 durable; after a power cut the log holds the record on the left there"
            );
        }
    }
    assert!(
        lsn_reused > 0,
        "no power cut lost the records A: the scenario never gave their LSNs to the records B"
    );
}

/// Defect 5: a reader must never return a record that is not yet durable
/// (written but not fsynced): a power cut may replace it, and its LSN then
/// names another record.
#[test]
fn d5_reader_never_returns_a_record_that_is_not_yet_durable() {
    let parts: [(&str, fn()); 2] = [
        ("unsynced records", unsynced_records_are_not_returned),
        (
            "power cut",
            returned_records_keep_their_lsn_through_a_power_cut,
        ),
    ];
    let mut failures = Vec::new();
    for (name, part) in parts {
        if let Err(payload) = catch_unwind(part) {
            failures.push(format!("{name}: {}", panic_message(&*payload)));
        }
    }
    assert!(
        failures.is_empty(),
        "a reader returns records that are not durable:\n{}",
        failures.join("\n")
    );
}

/// Defect 6: a segment named for base LSN 0 must be refused with an error
/// naming the file (by `Wal::open` and by a `Reader`), never a panic or a
/// hang.
#[test]
fn d6_a_segment_for_base_lsn_0_is_refused_naming_the_file() {
    let zero = segment_file_name(0);
    assert_eq!(zero, "00000000000000000000.wal");
    let header = SegmentHeader {
        codec_id: logbook_bus::codec::CODEC_ID,
        base_lsn: 0,
        created_us: 0,
        key_id: None,
    }
    .encode();

    let beside = tempfile::tempdir().expect("creating a temp dir");
    let wal = Wal::open(beside.path(), WalOptions::default())
        .unwrap_or_else(|e| panic!("opening a new log: {e}"));
    wal.append(session(1), &event(1))
        .unwrap_or_else(|e| panic!("appending: {e}"));
    wal.close().unwrap_or_else(|e| panic!("closing: {e}"));
    std::fs::write(beside.path().join(&zero), header).expect("writing the base-0 segment");
    let alone = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(alone.path().join(&zero), header).expect("writing the base-0 segment");

    let mut failures = Vec::new();
    for (case, dir) in [
        ("beside a valid segment", beside.path()),
        ("alone in the directory", alone.path()),
    ] {
        let d: PathBuf = dir.to_path_buf();
        let reader = catch_unwind(AssertUnwindSafe(|| {
            let errors = bounded("a Reader", Duration::from_secs(10), move || {
                let mut reader = match Reader::open(&d) {
                    Ok(r) => r,
                    Err(e) => return vec![e.to_string()],
                };
                let mut errors = Vec::new();
                for _ in 0..10_000 {
                    match reader.next_ref() {
                        None => break,
                        Some(Err(e)) => errors.push(e.to_string()),
                        Some(Ok(_)) => {}
                    }
                }
                errors
            });
            assert!(
                errors.iter().any(|e| e.contains(&zero)),
                "{case}: a Reader must report an error naming {zero}; it reported {errors:?}"
            );
        }));
        let d: PathBuf = dir.to_path_buf();
        let open = catch_unwind(AssertUnwindSafe(|| {
            let opened = bounded("Wal::open", Duration::from_secs(10), move || {
                match Wal::open(&d, WalOptions::default()) {
                    Err(e) => Ok(e.to_string()),
                    Ok(wal) => {
                        // Nothing here may panic while `wal` is alive:
                        // dropping it closes it, which is what underflows
                        // (a panic in a destructor during unwinding aborts).
                        let next = wal.recovery().next_lsn;
                        std::mem::forget(wal);
                        Err(format!("Wal::open returned Ok (next LSN {next})"))
                    }
                }
            });
            match opened {
                Ok(msg) => assert!(
                    msg.contains(&zero),
                    "{case}: Wal::open's error must name {zero}: {msg}"
                ),
                Err(accepted) => panic!("{case}: {accepted}: the base-0 segment was accepted"),
            }
        }));
        for run in [reader, open] {
            if let Err(payload) = run {
                failures.push(panic_message(&*payload));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "a base-0 segment is not refused:\n{}",
        failures.join("\n")
    );
}
