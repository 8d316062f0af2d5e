//! The three `SyncPolicy`s measured against `docs/durability.md`, on
//! `SimFs` (no real fsync latency, every fdatasync counted, power cuts and
//! a full disk on demand):
//!
//! * `Batch`: a queued record is made durable by the background flusher
//!   within about `max_delay`, or as soon as `max_bytes` are pending, and
//!   not before it is due;
//! * `Never`: records are handed to the file system `buffer_bytes` at a
//!   time, never fsynced before `sync()`, and everything before a `sync()`
//!   survives a power cut;
//! * a full disk under each policy: under `Batch` and `Never` no record
//!   that returned `Ok(lsn)` is lost or renumbered; under `Always` the log
//!   holds exactly the acknowledged records.
//!
//! Time is measured, never asserted tightly: the bounds below only catch a
//! flush that does not happen at all (10 s give-up, 1 s margin).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Acked, assert_gapless, event, fill_until_full, holds_a_prefix, holds_exactly, policies,
    read_all_fs, session,
};
use logbook_bus::{SessionEvent, codec};
use logbook_wal::format::{SEGMENT_HEADER_LEN, frame_len, segment_file_name};
use logbook_wal::sim::{Op, SimFs};
use logbook_wal::{Lsn, SyncPolicy, Wal, WalOptions};
use uuid::Uuid;

/// How long a poll waits before declaring the flush missing.
const GIVE_UP: Duration = Duration::from_secs(10);

/// Slack above `max_delay` for a loaded machine: only a *missing* flush
/// (or one a whole order of magnitude late) exceeds it.
const MARGIN: Duration = Duration::from_secs(1);

fn log_dir() -> &'static Path {
    Path::new("/log")
}

fn open(fs: &SimFs, opts: WalOptions) -> Wal {
    Wal::open_with_fs(Arc::new(fs.clone()), log_dir(), opts).unwrap()
}

/// Open the log after a power cut (recovery), then close it. Small
/// segments without preallocation: the simulator copies and tears whole
/// files byte by byte, and 64 MiB ones only make the test slow.
fn recover(fs: &SimFs) -> Option<logbook_wal::Cut> {
    let opts = WalOptions {
        segment_size: 1 << 20,
        preallocate: false,
        ..WalOptions::default()
    };
    open(fs, opts).recovery().cut.clone()
}

fn read(fs: &SimFs) -> Vec<(Lsn, Uuid, SessionEvent)> {
    read_all_fs(Arc::new(fs.clone()), log_dir())
}

/// Poll `done` every 200 µs; the time since `start` when it first held, or
/// a failure naming `what` after [`GIVE_UP`].
fn time_until(start: Instant, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    loop {
        if done() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < GIVE_UP,
            "{what}: still not done after {GIVE_UP:?} (a flush that never happens)"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The bytes `event` takes in a segment: frame header plus the payload the
/// log encodes with `logbook_bus::codec`.
fn frame_of(event: &SessionEvent) -> usize {
    frame_len(codec::encode(event).unwrap().len())
}

/// `Batch` options, with 1 MiB segments: `SimFs` copies a whole file on
/// every fdatasync, and a preallocated 64 MiB segment would add tens of
/// milliseconds of the simulator's own memcpy to every measured flush.
fn batch(max_delay: Duration, max_bytes: usize) -> WalOptions {
    WalOptions {
        sync: SyncPolicy::Batch {
            max_delay,
            max_bytes,
        },
        segment_size: 1 << 20,
        ..WalOptions::default()
    }
}

/// `docs/durability.md`, `SyncPolicy::Batch`: "the background flusher
/// writes and fsyncs it within about `max_delay` (plus one fsync)". One
/// record appended to an idle log (five times over) becomes durable, with
/// no `sync()` call, within `max_delay` + [`MARGIN`]; the delays are
/// printed.
#[test]
fn batch_makes_a_lone_record_durable_within_max_delay() {
    let max_delay = Duration::from_millis(20);
    let fs = SimFs::new(1);
    let wal = open(&fs, batch(max_delay, 1 << 20));
    let mut delays = Vec::new();
    for i in 1..=5 {
        assert_eq!(wal.durable_lsn(), wal.last_lsn(), "the log is idle");
        let syncs = fs.op_count(Op::Sync);
        let start = Instant::now();
        let lsn = wal.append(session(1), &event(i)).unwrap();
        assert_eq!(lsn, i);
        let delay = time_until(start, "a lone record under Batch", || {
            wal.durable_lsn() >= lsn
        });
        assert!(
            delay <= max_delay + MARGIN,
            "record {lsn} became durable after {delay:?}, max_delay is {max_delay:?}"
        );
        assert!(
            fs.op_count(Op::Sync) > syncs,
            "durable_lsn() moved without an fdatasync"
        );
        delays.push(delay);
    }
    delays.sort();
    println!(
        "Batch max_delay={max_delay:?}: lone record durable after min {:?}, median {:?}, max {:?}",
        delays[0],
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    let stats = wal.stats();
    assert_eq!(stats.records_synced, 5);
    wal.close().unwrap();
    assert_eq!(read(&fs).len(), 5);
}

/// `docs/durability.md`, `SyncPolicy::Batch`: "or as soon as `max_bytes`
/// are pending". With `max_delay` one hour and `max_bytes` 4 KiB, records
/// totalling at least 4 KiB become durable without `sync()` and without
/// waiting for `max_delay` (given up on after 10 s).
#[test]
fn batch_flushes_at_max_bytes_without_waiting_for_max_delay() {
    let max_bytes = 4096;
    let fs = SimFs::new(2);
    let wal = open(&fs, batch(Duration::from_secs(3600), max_bytes));
    let first = Instant::now();
    let mut crossed = first;
    // Stop at the record that brings the pending bytes to `max_bytes`: its
    // append wakes the flusher. (A record appended after the flusher took
    // the batch would wait for the next trigger, an hour away.)
    let (mut pending, mut last, mut i) = (0, 0, 0);
    while pending < max_bytes {
        i += 1;
        let e = event(i);
        pending += frame_of(&e);
        if pending >= max_bytes {
            crossed = Instant::now();
        }
        last = wal.append(session(1), &e).unwrap();
    }
    let delay = time_until(crossed, "Batch flush at max_bytes", || {
        wal.durable_lsn() >= last
    });
    println!(
        "Batch max_bytes={max_bytes}: {last} records ({pending} bytes) durable {delay:?} after the append that reached max_bytes, {:?} after the first (max_delay 1 h)",
        first.elapsed()
    );
    assert!(delay < MARGIN, "max_bytes flush took {delay:?}");
    let stats = wal.stats();
    assert!(stats.fsyncs >= 1);
    assert_eq!(stats.records_synced, last);
    wal.close().unwrap();
    assert_eq!(read(&fs).len() as u64, last);
}

/// `docs/durability.md`, `SyncPolicy::Batch` ("the record is queued in
/// memory") and `Wal::sync()` ("every record up to `lsn` is durable"):
/// before `max_delay` or `max_bytes` is reached, nothing is written or
/// fsynced and `durable_lsn()` stays 0 (watched for 100 ms); `sync()` then
/// makes every record durable with one fdatasync, and they survive a power
/// cut.
#[test]
fn batch_fsyncs_nothing_before_it_is_due() {
    let fs = SimFs::new(3);
    let wal = open(&fs, batch(Duration::from_secs(3600), 1 << 20));
    let (syncs, writes) = (fs.op_count(Op::Sync), fs.op_count(Op::Write));
    for i in 1..=5 {
        wal.append(session(1), &event(i)).unwrap();
    }
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(100) {
        assert_eq!(wal.durable_lsn(), 0, "a record was made durable early");
        assert_eq!(fs.op_count(Op::Sync), syncs, "an fdatasync before due");
        assert_eq!(fs.op_count(Op::Write), writes, "a write before due");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(wal.stats().fsyncs, 0);

    assert_eq!(wal.sync().unwrap(), 5);
    assert_eq!(wal.durable_lsn(), 5);
    assert_eq!(
        fs.op_count(Op::Sync),
        syncs + 1,
        "one fdatasync for the batch"
    );
    assert_eq!(wal.stats().records_synced, 5);

    fs.power_cut();
    drop(wal);
    recover(&fs);
    let records = read(&fs);
    assert_gapless(&records);
    assert_eq!(records.len(), 5, "synced records survive a power cut");
}

/// Append events under `Never` (4 KiB buffer, 1 MiB segments so that no
/// roll happens, no preallocation so that the segment's length is exactly
/// what was written) until at least ten buffers' worth went in and some
/// bytes are still buffered. After each append, checks what reached the
/// file system against the rule in `commit.rs` (an append that brings the
/// buffer to `buffer_bytes` or more writes the whole buffer with one
/// write). Returns the log and the records appended.
fn fill_never_buffer(fs: &SimFs) -> (Wal, Vec<(Lsn, Uuid, SessionEvent)>) {
    const BUFFER: usize = 4096;
    let opts = WalOptions {
        sync: SyncPolicy::Never,
        buffer_bytes: BUFFER,
        segment_size: 1 << 20,
        preallocate: false,
        ..WalOptions::default()
    };
    let wal = open(fs, opts);
    let segment: PathBuf = log_dir().join(segment_file_name(1));
    let written = || fs.file_bytes(&segment).unwrap().len() - SEGMENT_HEADER_LEN;
    assert_eq!(written(), 0);
    let (syncs, writes) = (fs.op_count(Op::Sync), fs.op_count(Op::Write));

    let mut appended = Vec::new();
    let (mut total, mut buffered, mut model_writes, mut max_frame) = (0, 0, 0u64, 0);
    let mut i = 0;
    while total < 10 * BUFFER || buffered == 0 {
        i += 1;
        let (s, e) = (session(i % 3), event(i));
        let frame = frame_of(&e);
        max_frame = max_frame.max(frame);
        let lsn = wal.append(s, &e).unwrap();
        appended.push((lsn, s, e));
        total += frame;
        buffered += frame;
        if buffered >= BUFFER {
            model_writes += 1;
            buffered = 0;
        }
        let in_memory = total - written();
        assert_eq!(
            in_memory, buffered,
            "after LSN {lsn}: bytes still buffered differ from the rule"
        );
        assert!(
            in_memory <= BUFFER + frame,
            "after LSN {lsn}: {in_memory} bytes in memory, more than buffer_bytes + one record"
        );
    }

    let stats = wal.stats();
    let segment_writes = fs.op_count(Op::Write) - writes;
    assert_eq!(fs.op_count(Op::Sync), syncs, "no fdatasync before sync()");
    assert_eq!(stats.fsyncs, 0);
    assert_eq!(wal.durable_lsn(), 0, "nothing is durable before sync()");
    assert_eq!(segment_writes, stats.writes, "one write per batch");
    assert_eq!(segment_writes, model_writes);
    // The same bound in closed form. Each write carries between `BUFFER`
    // and `BUFFER + max_frame - 1` bytes (the append that crosses the
    // threshold writes its own record too) and fewer than `BUFFER` bytes
    // remain buffered, so
    //   ceil((total - BUFFER + 1) / (BUFFER + max_frame - 1)) <= writes <= floor(total / BUFFER):
    // with frames of at most a few hundred bytes, total / BUFFER rounded
    // down, or one less. Never more writes than buffers: no write per append.
    let ratio = total as f64 / BUFFER as f64;
    let fewest = (total - BUFFER + 1).div_ceil(BUFFER + max_frame - 1) as u64;
    let most = (total / BUFFER) as u64;
    assert!(
        (fewest..=most).contains(&segment_writes),
        "{segment_writes} writes for {total} bytes with a {BUFFER}-byte buffer, expected {fewest}..={most}"
    );
    println!(
        "Never buffer_bytes={BUFFER}: {} appends, {total} bytes, {segment_writes} writes ({ratio:.2} buffers), 0 fsyncs, {buffered} bytes still buffered",
        appended.len()
    );
    (wal, appended)
}

/// `docs/durability.md`, `SyncPolicy::Never`: "Records are buffered (up to
/// `buffer_bytes`) and handed to the kernel when the buffer fills […]; the
/// log calls `fdatasync` only on `sync()`, on a segment roll and on close",
/// and "After `sync()` returns, everything before it survives a power
/// loss". Checks, exactly, the bytes written after every append and the
/// number of writes; that no fsync happens and nothing is durable before
/// `sync()`; that after a power cut without `sync()` the log still opens
/// and holds only a prefix of what was appended, intact (how much survives
/// is not claimed); and that after `sync()` every record survives a power
/// cut.
#[test]
fn never_buffers_writes_and_fsyncs_only_on_sync() {
    // No sync: whatever survives is an intact, gapless prefix.
    for seed in 0..8 {
        let fs = SimFs::new(seed);
        let (wal, appended) = fill_never_buffer(&fs);
        fs.power_cut();
        drop(wal);
        let cut = recover(&fs);
        let records = read(&fs);
        assert!(records.len() <= appended.len());
        assert_eq!(
            records[..],
            appended[..records.len()],
            "seed {seed}: what survives is a prefix of what was appended"
        );
        println!(
            "Never, power cut without sync (seed {seed}): {} of {} records survived; cut: {cut:?}",
            records.len(),
            appended.len()
        );
    }

    // sync() first: every record survives.
    for seed in 0..8 {
        let fs = SimFs::new(seed);
        let (wal, appended) = fill_never_buffer(&fs);
        let syncs = fs.op_count(Op::Sync);
        let last = appended.last().unwrap().0;
        assert_eq!(wal.sync().unwrap(), last);
        assert_eq!(wal.durable_lsn(), last);
        assert_eq!(fs.op_count(Op::Sync), syncs + 1, "sync() is one fdatasync");
        fs.power_cut();
        drop(wal);
        recover(&fs);
        assert_eq!(
            read(&fs),
            appended,
            "seed {seed}: a synced record was lost by a power cut"
        );
    }
}

/// `docs/durability.md`, "A full disk is not fatal", with the module docs
/// of `commit.rs` for `Batch` and `Never`, on `SimFs::set_capacity`, for
/// each policy, with and without preallocation, one and three appenders:
///
/// * every appender eventually fails with `DiskFull` (never poisoned); no
///   LSN is returned twice;
/// * while still full, appends fail with `DiskFull`, and so does `sync()`
///   under `Batch`/`Never` (under `Always` nothing is pending: it returns
///   the last acknowledged LSN); what a reader sees is a gapless prefix of
///   the `Ok` records (under `Always`: exactly them);
/// * once space is free, under `Batch`/`Never` `sync()` returns the last
///   `Ok` LSN and the log holds every `Ok` record at its LSN; the next
///   append takes the next LSN under every policy;
/// * after `close()`, a power cut and a reopen, the log holds exactly every
///   `Ok` record, gapless;
/// * and, on a second run, a power cut while the disk is still full keeps
///   every record up to the `durable_lsn()` of the moment.
#[test]
fn full_disk_under_each_policy_loses_no_ok_record() {
    for (name, policy, buffer_bytes) in policies() {
        for preallocate in [true, false] {
            for threads in [1, 3] {
                for cut_while_full in [false, true] {
                    let run = format!(
                        "{name} preallocate={preallocate} threads={threads} cut_while_full={cut_while_full}"
                    );
                    let fs = SimFs::new(threads);
                    let opts = WalOptions {
                        segment_size: 16 * 1024,
                        sync: policy,
                        buffer_bytes,
                        preallocate,
                        ..WalOptions::default()
                    };
                    let wal = open(&fs, opts.clone());
                    fs.set_capacity(Some(fs.used() + 40 * 1024));
                    let acked = Mutex::new(Acked::new());
                    let first = fill_until_full(&wal, &acked, threads);
                    let mut acked = acked.into_inner().unwrap();
                    let last = acked.keys().last().copied().unwrap_or(0);
                    assert_eq!(
                        acked.keys().copied().collect::<Vec<_>>(),
                        (1..=last).collect::<Vec<_>>(),
                        "{run}: the Ok LSNs are gapless"
                    );

                    // Still full. (Cutting a failed write back freed its
                    // partial bytes: take that space too.)
                    fs.set_capacity(Some(fs.used()));
                    let e = wal.append(session(7), &event(7)).unwrap_err();
                    assert!(e.is_disk_full(), "{run}: {e}");
                    if policy == SyncPolicy::Always {
                        assert_eq!(wal.sync().unwrap(), last, "{run}");
                        holds_exactly(read(&fs), &acked, &run);
                    } else {
                        let e = wal.sync().unwrap_err();
                        assert!(e.is_disk_full(), "{run}: sync while full: {e}");
                        holds_a_prefix(read(&fs), &acked, &run);
                    }
                    let durable = wal.durable_lsn();
                    println!(
                        "{run}: {last} Ok records, {durable} durable while full; first error: {first}"
                    );

                    if cut_while_full {
                        fs.power_cut();
                        drop(wal);
                        fs.set_capacity(None);
                        drop(open(&fs, opts));
                        let records = read(&fs);
                        assert!(
                            records.len() as u64 >= durable,
                            "{run}: {} records after the cut, {durable} were durable",
                            records.len()
                        );
                        holds_a_prefix(records, &acked, &run);
                        continue;
                    }

                    // Space freed: every Ok record lands at its LSN.
                    fs.set_capacity(None);
                    if policy != SyncPolicy::Always {
                        // Under Batch the first `sync` may report the
                        // flusher's write that began before the space was
                        // freed (documented); the next one must succeed.
                        let synced = match wal.sync() {
                            Err(e) if e.is_disk_full() && policy != SyncPolicy::Never => wal.sync(),
                            other => other,
                        };
                        assert_eq!(synced.unwrap(), last, "{run}: sync after space freed");
                        assert_eq!(wal.durable_lsn(), last, "{run}");
                        holds_exactly(read(&fs), &acked, &run);
                    }
                    let lsn = wal.append(session(7), &event(7)).unwrap();
                    assert_eq!(lsn, last + 1, "{run}: the next append takes the next LSN");
                    acked.insert(lsn, (session(7), event(7)));
                    for i in 0..200 {
                        let lsn = wal.append(session(8), &event(i)).unwrap();
                        assert!(acked.insert(lsn, (session(8), event(i))).is_none());
                    }
                    wal.close().unwrap();
                    holds_exactly(read(&fs), &acked, &run);

                    fs.power_cut();
                    drop(open(&fs, opts));
                    holds_exactly(read(&fs), &acked, &format!("{run}, after a power cut"));
                }
            }
        }
    }
}
