//! Baselines for the `append` benchmark: three ways to make a record durable.
//!
//! Each one implements [`DurableLog`]: [`DurableLog::append`] returns only
//! once the record is on stable storage (an `fdatasync` or okaywal's commit
//! covered it).
//!
//! - [`PerRecordFsync`]: the naive floor, one `fdatasync` per record on an
//!   appending file.
//! - [`IdealGroupCommit`]: the textbook leader/follower group commit over a
//!   file preallocated with zeros, with nothing else in the way: the ceiling a
//!   real WAL can hope to approach.
//! - [`OkayWal`]: the [`okaywal`] crate, an existing Rust WAL that batches
//!   concurrent commits.
//!
//! [`run_threads`] and [`run_threads_for`] drive any of them from several OS
//! threads and summarise throughput and latency in [`Stats`].
//!
//! The two hand-written logs frame each record as an 8-byte little-endian
//! header, `u32` payload length then `u32` CRC-32 (`crc32fast`) of the
//! payload, followed by the payload ([`frame`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Barrier, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use okaywal::{Entry, EntryId, LogManager, SegmentReader, WriteAheadLog};

/// Size of the record header of the hand-written logs: `u32` length, `u32` CRC.
pub const HEADER_LEN: usize = 8;

/// A log whose [`append`](DurableLog::append) returns once the record is durable.
pub trait DurableLog: Send + Sync {
    /// Appends `payload` as one record and returns once it is durable.
    ///
    /// The returned number identifies the record; its meaning is the
    /// implementation's (a byte offset, a sequence number, an entry id).
    fn append(&self, payload: &[u8]) -> io::Result<u64>;
}

/// Appends the framed record for `payload` (header, then payload) to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Locks `mutex`, ignoring poisoning (a panicking appender leaves the state
/// consistent: every critical section here is a few field updates).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One `write_all_at` + `sync_data` per record, serialised by a mutex.
///
/// The file grows with every record, so each `fdatasync` also has to persist
/// the new file size. [`DurableLog::append`] returns the record's byte offset.
#[derive(Debug)]
pub struct PerRecordFsync {
    /// The file and the offset of the next record.
    inner: Mutex<(File, u64)>,
}

impl PerRecordFsync {
    /// Creates (or truncates) the log file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        file.sync_all()?;
        Ok(Self {
            inner: Mutex::new((file, 0)),
        })
    }
}

impl DurableLog for PerRecordFsync {
    fn append(&self, payload: &[u8]) -> io::Result<u64> {
        let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
        frame(payload, &mut record)?;
        let mut guard = lock(&self.inner);
        let (file, offset) = &mut *guard;
        let at = *offset;
        file.write_all_at(&record, at)?;
        file.sync_data()?;
        *offset = at + record.len() as u64;
        Ok(at)
    }
}

/// The shared state of [`IdealGroupCommit`], behind its mutex.
#[derive(Debug, Default)]
struct GroupState {
    /// Framed records waiting for the next leader.
    pending: Vec<u8>,
    /// An empty buffer to swap in for `pending` (saves an allocation per batch).
    spare: Vec<u8>,
    /// The sequence number of the last record pushed (the first is 1).
    last_seq: u64,
    /// Every record with a sequence number up to this one is durable.
    durable_seq: u64,
    /// Whether a leader is writing a batch right now.
    leader_active: bool,
    /// Where the next batch goes in the file.
    write_offset: u64,
    /// Set once a batch failed: every later append fails too.
    failed: Option<io::ErrorKind>,
    /// Batches written and synced so far.
    batches: u64,
}

/// The ideal leader/follower group commit over a preallocated file.
///
/// An appender pushes its framed record into a shared buffer. If no leader is
/// active it becomes the leader: it takes the whole buffer, writes it with one
/// `write_all_at` and makes it durable with one `sync_data`, then marks every
/// record in it durable and wakes all waiters. Followers wait until their
/// record is durable, or take over as leader when none is active.
///
/// The file is preallocated by writing zeros, so a batch overwrites allocated
/// blocks and `fdatasync` has no size change to persist. When a batch does not
/// fit before `capacity`, writing wraps around to offset 0 (older records are
/// overwritten: this is a benchmark, not a log one can read back after a wrap).
/// [`DurableLog::append`] returns the record's sequence number (from 1).
#[derive(Debug)]
pub struct IdealGroupCommit {
    file: File,
    capacity: u64,
    state: Mutex<GroupState>,
    durable: Condvar,
}

impl IdealGroupCommit {
    /// Creates the log file at `path`, preallocated by writing `capacity`
    /// bytes of zeros (rounded up to a multiple of 1 MiB) and syncing them.
    ///
    /// `capacity` should comfortably exceed the largest batch (about
    /// `threads × (8 + payload)` bytes).
    pub fn create(path: &Path, capacity: u64) -> io::Result<Self> {
        const CHUNK: usize = 1 << 20;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let zeros = vec![0u8; CHUNK];
        let chunks = capacity.div_ceil(CHUNK as u64).max(1);
        for _ in 0..chunks {
            file.write_all(&zeros)?;
        }
        file.sync_all()?;
        Ok(Self {
            file,
            capacity: chunks * CHUNK as u64,
            state: Mutex::new(GroupState::default()),
            durable: Condvar::new(),
        })
    }

    /// The number of batches written and synced so far (one `fdatasync`
    /// each): records appended divided by this is the mean batch size.
    pub fn batches(&self) -> u64 {
        lock(&self.state).batches
    }

    /// Writes and syncs one batch as leader; `state` is locked on entry and
    /// on return, and unlocked during the I/O.
    fn lead<'a>(
        &'a self,
        mut state: MutexGuard<'a, GroupState>,
    ) -> (MutexGuard<'a, GroupState>, io::Result<()>) {
        state.leader_active = true;
        let spare = std::mem::take(&mut state.spare);
        let mut batch = std::mem::replace(&mut state.pending, spare);
        let batch_last_seq = state.last_seq;
        let len = batch.len() as u64;
        let mut offset = state.write_offset;
        if offset + len > self.capacity {
            offset = 0;
        }
        state.write_offset = offset + len;
        drop(state);

        let result = self
            .file
            .write_all_at(&batch, offset)
            .and_then(|()| self.file.sync_data());

        let mut state = lock(&self.state);
        state.leader_active = false;
        match &result {
            Ok(()) => {
                state.durable_seq = batch_last_seq;
                state.batches += 1;
            }
            Err(e) => state.failed = Some(e.kind()),
        }
        batch.clear();
        state.spare = batch;
        self.durable.notify_all();
        (state, result)
    }
}

impl DurableLog for IdealGroupCommit {
    fn append(&self, payload: &[u8]) -> io::Result<u64> {
        let mut state = lock(&self.state);
        frame(payload, &mut state.pending)?;
        state.last_seq += 1;
        let seq = state.last_seq;
        loop {
            if state.durable_seq >= seq {
                return Ok(seq);
            }
            if let Some(kind) = state.failed {
                return Err(io::Error::new(kind, "a group commit failed"));
            }
            if state.leader_active {
                state = self
                    .durable
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            } else {
                let (relocked, result) = self.lead(state);
                result?;
                state = relocked;
            }
        }
    }
}

/// A [`LogManager`] that recovers nothing and checkpoints nothing.
#[derive(Debug)]
struct NoopCheckpointer;

impl LogManager for NoopCheckpointer {
    fn recover(&mut self, _entry: &mut Entry<'_>) -> io::Result<()> {
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// The [`okaywal`] crate with its default configuration and a no-op
/// checkpointer: each append is `begin_entry`, `write_chunk`, `commit`.
///
/// `commit` returns once the entry is fsynced; okaywal lets the next writer
/// in while a commit syncs, so concurrent commits share `fdatasync`s.
/// [`DurableLog::append`] returns the okaywal entry id.
#[derive(Debug)]
pub struct OkayWal {
    log: WriteAheadLog,
}

impl OkayWal {
    /// Opens (or recovers) an okaywal log in the directory `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            log: WriteAheadLog::recover(dir, NoopCheckpointer)?,
        })
    }
}

impl DurableLog for OkayWal {
    fn append(&self, payload: &[u8]) -> io::Result<u64> {
        let mut entry = self.log.begin_entry()?;
        entry.write_chunk(payload)?;
        Ok(entry.commit()?.0)
    }
}

/// Throughput and latency of one multi-threaded run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Records appended, over all threads.
    pub records: u64,
    /// Wall-clock time from the start barrier until the last thread finished.
    pub elapsed: Duration,
    /// `records / elapsed`.
    pub records_per_sec: f64,
    /// Payload bytes (headers excluded) per second, in 10^6 bytes.
    pub mb_per_sec: f64,
    /// Median latency of one `append`, in microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency of one `append`, in microseconds.
    pub p99_us: f64,
}

/// When a worker thread stops appending.
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// After this many records.
    Records(usize),
    /// At the first append that would start after this long (each thread
    /// appends at least once).
    Time(Duration),
}

/// Runs `threads` OS threads that each append `per_thread` records of
/// `payload_len` bytes to `log`, timing every append.
pub fn run_threads(
    log: &dyn DurableLog,
    threads: usize,
    per_thread: usize,
    payload_len: usize,
) -> io::Result<Stats> {
    run(log, threads, Budget::Records(per_thread), payload_len)
}

/// Like [`run_threads`], but each thread appends until `duration` is over
/// (and at least once).
pub fn run_threads_for(
    log: &dyn DurableLog,
    threads: usize,
    duration: Duration,
    payload_len: usize,
) -> io::Result<Stats> {
    run(log, threads, Budget::Time(duration), payload_len)
}

fn run(
    log: &dyn DurableLog,
    threads: usize,
    budget: Budget,
    payload_len: usize,
) -> io::Result<Stats> {
    let threads = threads.max(1);
    let barrier = Barrier::new(threads + 1);
    let (latencies, elapsed) = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || worker(log, t, budget, payload_len, barrier))
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let latencies = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<io::Result<Vec<Vec<u64>>>>();
        (latencies, start.elapsed())
    });
    let mut nanos: Vec<u64> = latencies?.into_iter().flatten().collect();
    nanos.sort_unstable();
    let records = nanos.len() as u64;
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(Stats {
        records,
        elapsed,
        records_per_sec: records as f64 / secs,
        mb_per_sec: (records * payload_len as u64) as f64 / 1e6 / secs,
        p50_us: percentile(&nanos, 50) as f64 / 1e3,
        p99_us: percentile(&nanos, 99) as f64 / 1e3,
    })
}

/// One appender: returns the latency of each of its appends, in nanoseconds.
fn worker(
    log: &dyn DurableLog,
    thread: usize,
    budget: Budget,
    payload_len: usize,
    barrier: &Barrier,
) -> io::Result<Vec<u64>> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i ^ thread) as u8).collect();
    let mut latencies = Vec::with_capacity(match budget {
        Budget::Records(n) => n,
        Budget::Time(_) => 1024,
    });
    barrier.wait();
    let started = Instant::now();
    loop {
        let before = Instant::now();
        let done = match budget {
            Budget::Records(n) => latencies.len() >= n,
            Budget::Time(d) => !latencies.is_empty() && before.duration_since(started) >= d,
        };
        if done {
            return Ok(latencies);
        }
        log.append(&payload)?;
        let nanos = before.elapsed().as_nanos();
        latencies.push(u64::try_from(nanos).unwrap_or(u64::MAX));
    }
}

/// The `p`-th percentile (nearest rank) of sorted `values`; 0 if empty.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const THREADS: usize = 4;
    const PER_THREAD: usize = 25;
    const PAYLOAD: usize = 100;

    /// Reads framed records from the start of `path` until EOF or a zero
    /// header (preallocated space), checking each CRC; returns the payloads.
    fn read_records(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).expect("read the log back");
        let mut records = Vec::new();
        let mut at = 0;
        while at + HEADER_LEN <= bytes.len() {
            let word = |i: usize| {
                u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().expect("4 bytes"))
            };
            let (len, crc) = (word(0) as usize, word(4));
            if len == 0 && crc == 0 {
                break;
            }
            let payload = &bytes[at + HEADER_LEN..at + HEADER_LEN + len];
            assert_eq!(crc32fast::hash(payload), crc, "CRC of the record at {at}");
            records.push(payload.to_vec());
            at += HEADER_LEN + len;
        }
        records
    }

    fn check(records: &[Vec<u8>]) {
        assert_eq!(records.len(), THREADS * PER_THREAD);
        for payload in records {
            assert_eq!(payload.len(), PAYLOAD);
        }
    }

    fn run_and_count(log: &dyn DurableLog) {
        let stats = run_threads(log, THREADS, PER_THREAD, PAYLOAD).expect("run");
        assert_eq!(stats.records, (THREADS * PER_THREAD) as u64);
        assert!(stats.p50_us <= stats.p99_us);
    }

    #[test]
    fn per_record_fsync_writes_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        run_and_count(&PerRecordFsync::create(&path).expect("create"));
        let records = read_records(&path);
        check(&records);
        let expected_len = records.len() * (HEADER_LEN + PAYLOAD);
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len() as usize,
            expected_len
        );
    }

    #[test]
    fn ideal_group_commit_writes_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let log = IdealGroupCommit::create(&path, 1).expect("create");
        run_and_count(&log);
        let state = lock(&log.state);
        assert_eq!(state.durable_seq, (THREADS * PER_THREAD) as u64);
        assert!(state.pending.is_empty() && !state.leader_active);
        drop(state);
        check(&read_records(&path));
    }

    #[test]
    fn ideal_group_commit_sequence_numbers_are_unique() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = IdealGroupCommit::create(&dir.path().join("log"), 1).expect("create");
        let mut seqs: Vec<u64> = thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        (0..PER_THREAD)
                            .map(|_| log.append(b"x"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("join"))
                .collect::<io::Result<_>>()
                .expect("append")
        });
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=(THREADS * PER_THREAD) as u64).collect::<Vec<_>>()
        );
    }

    /// Counts the complete entries okaywal recovers, checking their CRCs.
    #[derive(Debug)]
    struct CountingRecovery(Arc<AtomicUsize>);

    impl LogManager for CountingRecovery {
        fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
            // `read_all_chunks` fails on a CRC mismatch.
            let chunks = entry.read_all_chunks()?.expect("complete entry");
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].len(), PAYLOAD);
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }

        fn checkpoint_to(
            &mut self,
            _last: EntryId,
            _entries: &mut SegmentReader,
            _wal: &WriteAheadLog,
        ) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn okaywal_recovers_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = OkayWal::open(dir.path()).expect("open");
        run_and_count(&log);
        drop(log);
        let count = Arc::new(AtomicUsize::new(0));
        let reopened = WriteAheadLog::recover(dir.path(), CountingRecovery(Arc::clone(&count)))
            .expect("recover");
        drop(reopened);
        assert_eq!(count.load(Ordering::Relaxed), THREADS * PER_THREAD);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }

    #[test]
    fn run_threads_for_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = IdealGroupCommit::create(&dir.path().join("log"), 1).expect("create");
        let stats = run_threads_for(&log, 2, Duration::from_millis(50), 16).expect("run");
        assert!(stats.records >= 2, "each thread appends at least once");
    }
}
