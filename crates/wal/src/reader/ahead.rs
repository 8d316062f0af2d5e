//! Opening ahead: a keyed reader going through an encrypted segment record
//! after record hands the frames ahead of it over in pieces, which a
//! second thread opens (AES-GCM) while the reader checks, decodes and
//! returns the records before. Opening is the bulk of reading an encrypted
//! log; shared between two threads, a scan runs at the pace of their
//! combined work rather than the sum of it.
//!
//! The pieces are shared work, not the second thread's alone: when the
//! piece the reader needs next is still being opened, the reader opens the
//! next piece nobody has taken yet instead of waiting, and when the piece
//! it needs has not been taken at all, it opens that one itself. Neither
//! thread waits while there is a piece to open, whichever of the two is
//! faster on this machine, and a piece is small enough (tens of records)
//! that a wait for one is short.
//!
//! The reader keeps every check of its own: it validates each frame, works
//! out each record's associated data (its chain value included) and checks
//! the head exactly as when it opens inline. An opened payload is used only
//! for a record whose place, sealed bytes and associated data are, byte
//! for byte, those its piece was opened with: so the reader returns
//! exactly what it would have opened itself, and anything else (a frame
//! changed since, a tag that fails, a frame no piece reached) is opened
//! inline and reported as it always is. Which thread opened a piece makes
//! no difference: both run [`open_job`] on a copy of the frames.
//!
//! Opening ahead starts once a reader has opened [`WARM_UP`] records of one
//! segment in a row (a short read never pays for it), only where the
//! machine has a second core, and stops when the reader is dropped.
//!
//! Redacted placeholders (`docs/format.md`, "Redacted placeholders") are
//! passed over on both sides: the reader never asks for one (it checks
//! them itself, `reader.rs`), and [`open_job`] never opens one; it takes a
//! placeholder's 16-byte payload as the chain value of the record after
//! it, as the reader does, so a run of records broken by placeholders is
//! still opened ahead. A placeholder is never substituted for a record nor
//! a record for a placeholder: what is opened ahead is keyed by the
//! record's offset, and a placeholder's offset is never due as a record.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use uuid::Uuid;

use crate::crypto::{self, Chain, Key, Opener, RecordContext};
use crate::format::{FrameFields, Lsn, RECORD_HEADER_LEN, REDACTED_FLAG, frame_len};

/// Records a reader opens inline, in a row in one segment, before it
/// starts opening ahead.
pub(super) const WARM_UP: u32 = 64;

/// Bytes of frames in a piece (the frames that fit whole; at least one):
/// tens of records, so that waiting for a piece being opened is short, and
/// a lock taken by each thread per piece is nothing beside the opening.
const PIECE_BYTES: usize = 16 << 10;

/// Bytes of frames handed over and not yet taken back, at most: enough
/// pieces that the second thread never runs out while the reader works
/// through the ones before.
const AHEAD_BYTES: usize = 512 << 10;

/// How long the reader waits for a piece being opened before it looks
/// whether the second thread is still there (it only stops when the
/// reader is dropped, or if it panicked).
const WAIT_CHECK: Duration = Duration::from_millis(100);

/// Used buffers kept for the next pieces, at most.
const SPARE_KEPT: usize = (AHEAD_BYTES / PIECE_BYTES) + 4;

/// Buffers grown past this (by a piece of one large record) are not kept:
/// a reader would otherwise hold up to [`SPARE_KEPT`] record-sized pairs
/// of them for as long as it lives.
const KEPT_CAPACITY: usize = 2 * PIECE_BYTES;

/// A piece to open: the frames in `bytes`, a copy of the segment from
/// offset `start`.
struct Job {
    /// Its place in the order of the pieces handed over.
    seq: u64,
    segment: Lsn,
    start: usize,
    expected: Lsn,
    /// The chain value before the first frame.
    prev: Chain,
    opener: Opener,
    log: Uuid,
    buffers: Buffers,
}

/// The buffers a piece is copied and opened into, used again for later
/// pieces once the reader is done with it.
#[derive(Default)]
struct Buffers {
    /// The piece's frames.
    bytes: Vec<u8>,
    /// Their plaintexts, one after the other.
    plain: Vec<u8>,
    opened: VecDeque<Opened>,
}

/// One record of a piece, opened.
struct Opened {
    at: usize,
    lsn: Lsn,
    session: Uuid,
    timestamp_us: u64,
    sync_mark: Lsn,
    prev: Chain,
    /// The sealed payload, in the piece's `bytes`.
    sealed: Range<usize>,
    /// Its plaintext, in the piece's `plain`.
    plain: Range<usize>,
}

/// What was opened of one piece, in log order; it stops at the first
/// frame that cannot be opened (the reader will find out why).
struct Batch {
    seq: u64,
    segment: Lsn,
    log: Uuid,
    buffers: Buffers,
}

impl Batch {
    /// Drop what the piece holds before `due` in its segment: the reader
    /// passed it (a placeholder the piece starts with, or records it
    /// opened itself).
    fn pass(&mut self, due: &Due<'_>) {
        if self.segment == due.segment {
            let opened = &mut self.buffers.opened;
            while opened.front().is_some_and(|o| o.at < due.at) {
                opened.pop_front();
            }
        }
    }
}

/// The reader's side of opening ahead: counts the records opened in a
/// row, and starts the second thread once there are enough.
#[derive(Default)]
pub(super) struct OpenAhead {
    /// Records whose opened payload was taken from a piece.
    pub(super) taken: u64,
    /// Records opened in a row, the LSN and offset due next.
    streak: (u32, Lsn, usize),
    thread: Option<Ahead>,
    /// No second thread can be had (one core, or it failed to start).
    alone: bool,
}

impl std::fmt::Debug for OpenAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAhead")
            .field("streak", &self.streak.0)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl OpenAhead {
    /// Whether a piece opened that very record `due`: then its plaintext
    /// is [`OpenAhead::plain`] until the next call; `false` if the reader
    /// must open it itself.
    pub(super) fn take(&mut self, due: &Due<'_>) -> bool {
        let taken = self.thread.as_mut().is_some_and(|t| t.take(due));
        self.taken += u64::from(taken);
        taken
    }

    /// The plaintext of the record [`OpenAhead::take`] last took (empty if
    /// none).
    pub(super) fn plain(&self) -> &[u8] {
        self.thread.as_ref().map_or(&[], Ahead::plain)
    }

    /// Never open ahead (for tests: `Reader::without_open_ahead`).
    #[cfg(feature = "testing")]
    pub(super) fn switch_off(&mut self) {
        self.thread = None;
        self.alone = true;
    }

    /// The reader passed the redacted placeholder of LSN `lsn` at offset
    /// `at`, `len` bytes long, in an encrypted segment: a run of records
    /// opened in a row goes on past it (without counting it).
    pub(super) fn passed(&mut self, lsn: Lsn, at: usize, len: usize) {
        let (count, due, due_at) = self.streak;
        self.streak = if due == lsn && due_at == at {
            (count, lsn + 1, at + len)
        } else {
            (0, lsn + 1, at + len)
        };
    }

    /// After the record `due` was opened (from a piece or inline) with
    /// `key`, its tag `tag`: count it, and hand over the frames ahead
    /// while fewer than [`AHEAD_BYTES`] are. `bytes` are the segment's
    /// bytes held, from file offset `base`.
    pub(super) fn after(
        &mut self,
        due: &Due<'_>,
        key: &Key,
        tag: Chain,
        bytes: &[u8],
        base: usize,
    ) {
        let (count, lsn, at) = self.streak;
        let count = if lsn == due.ctx.lsn && at == due.at {
            count.saturating_add(1)
        } else {
            1
        };
        self.streak = (count, due.ctx.lsn + 1, due.at + due.len);
        if count < WARM_UP || self.alone {
            return;
        }
        if self.thread.is_none() {
            self.thread = Ahead::start();
            self.alone = self.thread.is_none();
        }
        if let Some(thread) = self.thread.as_mut() {
            thread.hand_over(due, key, tag, bytes, base);
        }
    }
}

/// Where the next piece starts: segment, offset, LSN and chain value.
type Place = (Lsn, usize, Lsn, Chain);

/// What the reader and the second thread share.
struct Shared {
    state: Mutex<State>,
    /// A piece was opened (the reader may be waiting for it).
    opened: Condvar,
    /// A piece was handed over, or the reader is gone.
    handed: Condvar,
}

#[derive(Default)]
struct State {
    /// Pieces handed over that neither thread has taken, in order.
    queue: VecDeque<Job>,
    /// Pieces opened, by `seq`, not yet collected by the reader.
    done: BTreeMap<u64, Batch>,
    /// The reader waits on `opened`.
    reader_waits: bool,
    /// The second thread waits on `handed`.
    thread_waits: bool,
    /// The piece the second thread is opening.
    opening: Option<u64>,
    /// The reader is gone: the second thread ends.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Forget the pieces before `seq` (the reader dropped them): those
    /// nobody has taken are never opened; those opened are returned.
    fn drop_before(&mut self, seq: u64) -> BTreeMap<u64, Batch> {
        while self.queue.front().is_some_and(|j| j.seq < seq) {
            self.queue.pop_front();
        }
        let later = self.done.split_off(&seq);
        std::mem::replace(&mut self.done, later)
    }
}

/// The second thread's work: open the pieces handed over, in order, until
/// the reader is gone.
fn open_pieces(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.closed {
            return;
        }
        let Some(job) = state.queue.pop_front() else {
            state.thread_waits = true;
            state = shared
                .handed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.thread_waits = false;
            continue;
        };
        state.opening = Some(job.seq);
        drop(state);
        let batch = open_job(job);
        state = shared.lock();
        state.opening = None;
        state.done.insert(batch.seq, batch);
        if state.reader_waits {
            shared.opened.notify_one();
        }
    }
}

/// The second thread, and the pieces handed over.
struct Ahead {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
    /// The pieces handed over and not collected, in order: `seq`,
    /// segment, first offset and length.
    in_flight: VecDeque<(u64, Lsn, usize, usize)>,
    /// Their lengths, summed.
    in_flight_bytes: usize,
    /// The piece being taken from.
    ready: Option<Batch>,
    /// The plaintext of the record taken last, in `ready`.
    last: Range<usize>,
    /// Where the piece after the last one handed over starts.
    next: Option<Place>,
    next_seq: u64,
    spare: Vec<Buffers>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.handed.notify_one();
    }
}

impl Ahead {
    /// A second thread to open with, if the machine has a second core and
    /// one can be started.
    fn start() -> Option<Ahead> {
        if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
            return None;
        }
        Ahead::spawn()
    }

    /// The second thread, started whatever the number of cores.
    fn spawn() -> Option<Ahead> {
        Ahead::with_thread(|shared| open_pieces(&shared))
    }

    /// A second thread running `body` (for tests, another body than
    /// [`open_pieces`]).
    fn with_thread(body: impl FnOnce(Arc<Shared>) + Send + 'static) -> Option<Ahead> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            opened: Condvar::new(),
            handed: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("logbook-open-ahead".into())
            .spawn(move || body(theirs))
            .ok()?;
        Some(Ahead {
            shared,
            thread,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            ready: None,
            last: 0..0,
            next: None,
            next_seq: 0,
            spare: Vec::new(),
        })
    }

    /// [`OpenAhead::take`]. Collects the piece starting at `due`, if that
    /// one was handed over; drops those the reader went past or away from.
    fn take(&mut self, due: &Due<'_>) -> bool {
        self.last = 0..0;
        loop {
            if let Some(batch) = self.ready.as_mut() {
                batch.pass(due);
                if !batch.buffers.opened.is_empty() {
                    break;
                }
            }
            if let Some(used) = self.ready.take() {
                self.keep(used.buffers);
            }
            let Some(&(seq, segment, start, len)) = self.in_flight.front() else {
                return false;
            };
            if segment == due.segment && start > due.at {
                return false;
            }
            self.in_flight.pop_front();
            self.in_flight_bytes -= len;
            // `due` within the piece: at its start, or past a placeholder
            // it starts with (never asked for). Any other piece is one the
            // reader went past or away from: dropped when a later one is
            // collected.
            if segment == due.segment && due.at < start + len {
                self.ready = self.collect(seq);
                if self.ready.is_none() {
                    return false;
                }
            }
        }
        let Some(batch) = self.ready.as_mut() else {
            return false;
        };
        let Some(first) = batch.buffers.opened.front() else {
            return false;
        };
        let same = batch.segment == due.segment
            && first.at == due.at
            && first.lsn == due.ctx.lsn
            && first.session == *due.ctx.session
            && first.timestamp_us == due.ctx.timestamp_us
            && first.sync_mark == due.ctx.sync_mark
            && first.prev == *due.ctx.prev
            && batch.log == *due.ctx.log
            && batch.buffers.bytes.get(first.sealed.clone()) == Some(due.sealed);
        if !same {
            if let Some(used) = self.ready.take() {
                self.keep(used.buffers);
            }
            return false;
        }
        self.last = first.plain.clone();
        batch.buffers.opened.pop_front();
        true
    }

    /// [`OpenAhead::plain`].
    fn plain(&self) -> &[u8] {
        self.ready
            .as_ref()
            .and_then(|b| b.buffers.plain.get(self.last.clone()))
            .unwrap_or_default()
    }

    /// The piece `seq`, opened: by the second thread, or here if neither
    /// thread has taken it yet. While the second thread is opening it, the
    /// reader opens the next pieces nobody has taken rather than wait.
    /// `None` if the second thread is gone.
    fn collect(&mut self, seq: u64) -> Option<Batch> {
        let dropped = self.shared.lock().drop_before(seq);
        self.keep_all(dropped);
        let mut state = self.shared.lock();
        loop {
            if let Some(batch) = state.done.remove(&seq) {
                return Some(batch);
            }
            match state.queue.pop_front() {
                Some(job) if job.seq == seq => {
                    drop(state);
                    return Some(open_job(job));
                }
                Some(job) => {
                    drop(state);
                    let batch = open_job(job);
                    state = self.shared.lock();
                    state.done.insert(batch.seq, batch);
                }
                None => {
                    // Nobody is opening it (never the case while the second
                    // thread runs `open_pieces`): the reader opens inline.
                    if state.opening != Some(seq) || self.thread.is_finished() {
                        return None;
                    }
                    state.reader_waits = true;
                    state = self
                        .shared
                        .opened
                        .wait_timeout(state, WAIT_CHECK)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    state.reader_waits = false;
                }
            }
        }
    }

    /// Keep the buffers of a piece used up, for a later one (unless a
    /// large record grew them).
    fn keep(&mut self, buffers: Buffers) {
        let small =
            buffers.bytes.capacity() <= KEPT_CAPACITY && buffers.plain.capacity() <= KEPT_CAPACITY;
        if small && self.spare.len() < SPARE_KEPT {
            self.spare.push(buffers);
        }
    }

    fn keep_all(&mut self, batches: BTreeMap<u64, Batch>) {
        for batch in batches.into_values() {
            self.keep(batch.buffers);
        }
    }

    /// Hand over the frames after `due` (or after those handed over
    /// already), in pieces, while fewer than [`AHEAD_BYTES`] are in
    /// flight.
    fn hand_over(&mut self, due: &Due<'_>, key: &Key, tag: Chain, bytes: &[u8], base: usize) {
        let next = match self.next {
            Some(place) if place.0 == due.segment && place.1 > due.at => place,
            _ if self.in_flight.is_empty() => (due.segment, due.at + due.len, due.ctx.lsn + 1, tag),
            // Pieces of another place are in flight: let `take` drop them.
            _ => return,
        };
        self.next = Some(next);
        let mut handed = Vec::new();
        // Two pieces at least, whatever their size: with one, a record
        // larger than `AHEAD_BYTES` would be opened by one thread while
        // the other waits for it.
        while self.in_flight_bytes < AHEAD_BYTES || self.in_flight.len() < 2 {
            let Some((segment, start, expected, prev)) = self.next else {
                break;
            };
            let Some(rest) = start.checked_sub(base).and_then(|from| bytes.get(from..)) else {
                break;
            };
            // The whole frames within a piece's bytes (at least one), by
            // their lengths (`open_job` checks them).
            let (end, count) = match whole_frames(rest, 0, rest.len().min(PIECE_BYTES), u64::MAX) {
                (_, 0) => whole_frames(rest, 0, rest.len(), 1),
                some => some,
            };
            if count == 0 {
                break;
            }
            // The chain value after the piece: its last frame's last 16
            // bytes (a record's tag, or a placeholder's payload).
            let mut last = prev;
            if let Some(t) = end
                .checked_sub(crypto::CHAIN_LEN)
                .and_then(|at| rest.get(at..end))
            {
                last.copy_from_slice(t);
            }
            let mut buffers = self.spare.pop().unwrap_or_default();
            buffers.bytes.clear();
            buffers
                .bytes
                .extend_from_slice(rest.get(..end).unwrap_or_default());
            let seq = self.next_seq;
            self.next_seq += 1;
            handed.push(Job {
                seq,
                segment,
                start,
                expected,
                prev,
                opener: Opener::new(key.clone()),
                log: *due.ctx.log,
                buffers,
            });
            self.in_flight.push_back((seq, segment, start, end));
            self.in_flight_bytes += end;
            self.next = Some((segment, start + end, expected + count, last));
        }
        if handed.is_empty() {
            return;
        }
        let live = self.in_flight.front().map_or(0, |p| p.0);
        let mut state = self.shared.lock();
        let dropped = state.drop_before(live);
        state.queue.extend(handed);
        if state.thread_waits {
            self.shared.handed.notify_one();
        }
        drop(state);
        self.keep_all(dropped);
    }
}

/// From offset `from` of `bytes`, the end of the whole frames that fit
/// below `limit`, at most `most` of them, and how many: found by their
/// length fields alone (a redacted placeholder's without its flag: it is
/// a frame, and holds an LSN, like any other).
fn whole_frames(bytes: &[u8], from: usize, limit: usize, most: u64) -> (usize, Lsn) {
    let (mut end, mut count) = (from, 0);
    while count < most {
        let Some(len) = bytes.get(end..end + 4).map(|b| {
            frame_len((u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & !REDACTED_FLAG) as usize)
        }) else {
            break;
        };
        if len <= RECORD_HEADER_LEN || end + len > limit {
            break;
        }
        end += len;
        count += 1;
    }
    (end, count)
}

/// The record the reader is about to open, as it sees it.
pub(super) struct Due<'a> {
    pub(super) segment: Lsn,
    pub(super) at: usize,
    pub(super) len: usize,
    pub(super) ctx: &'a RecordContext<'a>,
    pub(super) sealed: &'a [u8],
}

/// Open the whole frames of piece `job` in order, up to the first that
/// cannot be (on either thread). A redacted placeholder is not opened:
/// its payload, the tag of the record it replaced, is the chain value of
/// the next record (a placeholder of another size stops the piece, as the
/// reader refuses it).
fn open_job(job: Job) -> Batch {
    let Job {
        seq,
        segment,
        start,
        expected,
        mut prev,
        mut opener,
        log,
        mut buffers,
    } = job;
    let Buffers {
        bytes,
        plain,
        opened,
    } = &mut buffers;
    plain.clear();
    opened.clear();
    let (mut off, mut lsn) = (0, expected);
    // Frames are taken as they are (the reader checks each one's CRC
    // before it uses what was opened here).
    while let Some((header, payload, len, redacted)) =
        FrameFields::parse(bytes.get(off..).unwrap_or_default()).and_then(|f| {
            let redacted = f.payload_len & REDACTED_FLAG != 0;
            let len = frame_len((f.payload_len & !REDACTED_FLAG) as usize);
            let payload = bytes.get(off + RECORD_HEADER_LEN..off + len)?;
            (f.header.lsn == lsn && !payload.is_empty())
                .then_some((f.header, payload, len, redacted))
        })
    {
        if redacted {
            let Ok(tag) = <Chain>::try_from(payload) else {
                break;
            };
            prev = tag;
            off += len;
            lsn += 1;
            continue;
        }
        let ctx = RecordContext::of(&log, &header, &prev);
        let at = plain.len();
        if !opener.open_onto(&ctx, payload, plain) {
            break;
        }
        let sealed_at = off + RECORD_HEADER_LEN;
        opened.push_back(Opened {
            at: start + off,
            lsn,
            session: header.session,
            timestamp_us: header.timestamp_us,
            sync_mark: header.sync_mark,
            prev,
            sealed: sealed_at..sealed_at + payload.len(),
            plain: at..plain.len(),
        });
        prev = crypto::tag_of(payload).unwrap_or_default();
        off += len;
        lsn += 1;
    }
    Batch {
        seq,
        segment,
        log,
        buffers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Sealer;
    use crate::format::{FrameHeader, encode_frame_with};

    /// `n` chained sealed frames of LSNs 1..=n, as a segment's bytes from
    /// offset 0, with each one's offset, length, header and plaintext.
    #[allow(clippy::type_complexity)]
    fn frames(
        key: &Key,
        log: &Uuid,
        n: u64,
    ) -> (Vec<u8>, Vec<(usize, usize, FrameHeader, Vec<u8>)>) {
        frames_padded(key, log, n, 0)
    }

    /// [`frames`], each plaintext `pad` bytes longer.
    #[allow(clippy::type_complexity)]
    fn frames_padded(
        key: &Key,
        log: &Uuid,
        n: u64,
        pad: usize,
    ) -> (Vec<u8>, Vec<(usize, usize, FrameHeader, Vec<u8>)>) {
        let mut sealer = Sealer::new(key.clone());
        let (mut bytes, mut out, mut prev) = (Vec::new(), Vec::new(), [0u8; 16]);
        for lsn in 1..=n {
            let header = FrameHeader {
                lsn,
                sync_mark: lsn - 1,
                timestamp_us: 1000 + lsn,
                session: Uuid::from_u64_pair(7, lsn % 3),
            };
            let plain = format!("record {lsn}{}", "x".repeat(pad)).into_bytes();
            let ctx = RecordContext::of(log, &header, &prev);
            let at = bytes.len();
            let mut tag = prev;
            encode_frame_with(
                &mut bytes,
                &header,
                plain.len() + crypto::SEAL_OVERHEAD,
                |dst| {
                    tag = sealer.seal_to(&ctx, &plain, dst);
                },
            );
            prev = tag;
            out.push((at, bytes.len() - at, header, plain));
        }
        (bytes, out)
    }

    /// Goes through `recs` in order as the reader does: takes each record
    /// from a piece if it can (the plaintext must be the record's own),
    /// then hands over; calls `handed` after the first hand-over. How many
    /// records came from pieces.
    fn read_in_order(
        ahead: &mut Ahead,
        key: &Key,
        log: &Uuid,
        bytes: &[u8],
        recs: &[(usize, usize, FrameHeader, Vec<u8>)],
        mut handed: impl FnMut(),
    ) -> usize {
        let (mut taken, mut prev) = (0, [0u8; 16]);
        for (i, (at, len, h, plain)) in recs.iter().enumerate() {
            let sealed = &bytes[at + RECORD_HEADER_LEN..at + len];
            let ctx = RecordContext::of(log, h, &prev);
            let due = Due {
                segment: 1,
                at: *at,
                len: *len,
                ctx: &ctx,
                sealed,
            };
            if ahead.take(&due) {
                assert_eq!(ahead.plain(), plain, "record {}", h.lsn);
                taken += 1;
            }
            let tag = crypto::tag_of(sealed).unwrap();
            ahead.hand_over(&due, key, tag, bytes, 0);
            if i == 0 {
                handed();
            }
            prev = tag;
        }
        taken
    }

    #[test]
    fn pieces_no_thread_takes_are_opened_by_the_reader() {
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (bytes, recs) = frames(&key, &log, 2000);
        // A second thread that ends at once, taking nothing.
        let mut ahead = Ahead::with_thread(|_| {}).unwrap();
        let taken = read_in_order(&mut ahead, &key, &log, &bytes, &recs, || {});
        assert!(ahead.next_seq > 4, "several pieces: {}", ahead.next_seq);
        assert_eq!(taken, recs.len() - 1, "all but the first, from pieces");
    }

    #[test]
    fn records_larger_than_the_bytes_ahead_are_handed_over_two_at_a_time() {
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (bytes, recs) = frames_padded(&key, &log, 6, AHEAD_BYTES + 1);
        let mut ahead = Ahead::with_thread(|_| {}).unwrap();
        let taken = read_in_order(&mut ahead, &key, &log, &bytes, &recs, || {});
        assert_eq!(ahead.next_seq, 5, "a piece for each record after the first");
        assert_eq!(taken, recs.len() - 1);
        // After the first record: two pieces, one record each.
        let mut ahead = Ahead::with_thread(|_| {}).unwrap();
        let (at, len, h, _) = &recs[0];
        let sealed = &bytes[at + RECORD_HEADER_LEN..at + len];
        let zero = [0u8; 16];
        let ctx = RecordContext::of(&log, h, &zero);
        let due = Due {
            segment: 1,
            at: *at,
            len: *len,
            ctx: &ctx,
            sealed,
        };
        ahead.hand_over(&due, &key, crypto::tag_of(sealed).unwrap(), &bytes, 0);
        let lens: Vec<usize> = ahead.in_flight.iter().map(|p| p.3).collect();
        assert_eq!(lens, [recs[1].1, recs[2].1]);
    }

    #[test]
    fn a_piece_first_taken_from_mid_way_gives_the_record_due() {
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (bytes, recs) = frames(&key, &log, 20);
        let sealed = |i: usize| {
            let (at, len, _, _) = recs[i];
            &bytes[at + RECORD_HEADER_LEN..at + len]
        };
        let tag = |i: usize| crypto::tag_of(sealed(i)).unwrap();
        let mut ahead = Ahead::with_thread(|_| {}).unwrap();
        let zero = [0u8; 16];
        let ctx0 = RecordContext::of(&log, &recs[0].2, &zero);
        let due0 = Due {
            segment: 1,
            at: recs[0].0,
            len: recs[0].1,
            ctx: &ctx0,
            sealed: sealed(0),
        };
        ahead.hand_over(&due0, &key, tag(0), &bytes, 0);
        assert_eq!(ahead.in_flight.len(), 1, "records 1 to 19: one piece");
        // Records 1 to 4 opened by the reader itself; record 5 is the
        // first asked of the piece.
        let prev = tag(4);
        let ctx = RecordContext::of(&log, &recs[5].2, &prev);
        let due = Due {
            segment: 1,
            at: recs[5].0,
            len: recs[5].1,
            ctx: &ctx,
            sealed: sealed(5),
        };
        assert!(ahead.take(&due));
        assert_eq!(ahead.plain(), recs[5].3);
    }

    #[test]
    fn buffers_a_large_record_grew_are_not_kept() {
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (bytes, recs) = frames_padded(&key, &log, 6, 3 * PIECE_BYTES);
        let mut ahead = Ahead::with_thread(|_| {}).unwrap();
        let taken = read_in_order(&mut ahead, &key, &log, &bytes, &recs, || {});
        assert_eq!(taken, recs.len() - 1);
        let held: Vec<(usize, usize)> = ahead
            .spare
            .iter()
            .map(|b| (b.bytes.capacity(), b.plain.capacity()))
            .collect();
        assert!(
            held.iter()
                .all(|&(b, p)| b <= KEPT_CAPACITY && p <= KEPT_CAPACITY),
            "kept: {held:?}"
        );
        // Small records' buffers are kept, for the pieces after.
        let (bytes, recs) = frames(&key, &log, 2000);
        let mut ahead = Ahead::with_thread(|_| {}).unwrap();
        read_in_order(&mut ahead, &key, &log, &bytes, &recs, || {});
        assert!(!ahead.spare.is_empty());
    }

    #[test]
    fn the_reader_opens_later_pieces_rather_than_wait_for_the_one_being_opened() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (bytes, recs) = frames(&key, &log, 2000);
        let claimed = Arc::new(AtomicU64::new(u64::MAX));
        let drained = Arc::new(AtomicBool::new(false));
        let (c, d) = (claimed.clone(), drained.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // A second thread that takes the first piece, then holds it until
        // the reader has opened every other piece itself (or 20 s pass),
        // and only then opens it.
        let mut ahead = Ahead::with_thread(move |shared| {
            let job = loop {
                let mut state = shared.lock();
                if let Some(job) = state.queue.pop_front() {
                    state.opening = Some(job.seq);
                    break job;
                }
                drop(state);
                std::thread::sleep(Duration::from_millis(1));
            };
            c.store(job.seq, Ordering::SeqCst);
            while std::time::Instant::now() < deadline {
                let state = shared.lock();
                if state.queue.is_empty() && state.done.len() > 3 {
                    d.store(true, Ordering::SeqCst);
                    break;
                }
                drop(state);
                std::thread::sleep(Duration::from_millis(1));
            }
            let batch = open_job(job);
            let mut state = shared.lock();
            state.opening = None;
            state.done.insert(batch.seq, batch);
            shared.opened.notify_one();
            drop(state);
            open_pieces(&shared);
        })
        .unwrap();
        let taken = read_in_order(&mut ahead, &key, &log, &bytes, &recs, || {
            while claimed.load(Ordering::SeqCst) == u64::MAX {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert_eq!(claimed.load(Ordering::SeqCst), 0, "the first piece");
        assert!(
            drained.load(Ordering::SeqCst),
            "the reader opened the later pieces while the first was held"
        );
        assert_eq!(taken, recs.len() - 1, "all but the first, from pieces");
    }

    #[test]
    #[allow(clippy::needless_range_loop, reason = "records by position")]
    fn a_record_opened_ahead_is_used_only_if_it_is_the_very_record_due() {
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (bytes, recs) = frames(&key, &log, 20);
        let sealed = |i: usize| {
            let (at, len, _, _) = recs[i];
            &bytes[at + RECORD_HEADER_LEN..at + len]
        };
        let tag = |i: usize| crypto::tag_of(sealed(i)).unwrap();
        let mut ahead = Ahead::spawn().unwrap();
        // The reader opened record 0 itself: hand over what follows.
        let h0 = recs[0].2;
        let zero = [0u8; 16];
        let ctx0 = RecordContext::of(&log, &h0, &zero);
        let due0 = Due {
            segment: 1,
            at: recs[0].0,
            len: recs[0].1,
            ctx: &ctx0,
            sealed: sealed(0),
        };
        ahead.hand_over(&due0, &key, tag(0), &bytes, 0);
        assert_eq!(ahead.in_flight.len(), 1, "one piece: the frames fit in one");
        // Records 1 and 2, as they are: taken.
        for i in 1..=2 {
            let h = recs[i].2;
            let prev = tag(i - 1);
            let ctx = RecordContext::of(&log, &h, &prev);
            let due = Due {
                segment: 1,
                at: recs[i].0,
                len: recs[i].1,
                ctx: &ctx,
                sealed: sealed(i),
            };
            assert!(ahead.take(&due), "record {i}");
            assert_eq!(ahead.plain(), recs[i].3);
        }
        // Record 3 with any one thing different from what was opened: not
        // taken (and what was opened ahead is dropped).
        let h = recs[3].2;
        let prev = tag(2);
        let other_prev = [9u8; 16];
        let other_log = Uuid::from_u64_pair(1, 3);
        let other_session = Uuid::from_u64_pair(8, 8);
        let mut changed = sealed(3).to_vec();
        changed[30] ^= 1;
        let base = RecordContext::of(&log, &h, &prev);
        let variants: Vec<(&str, RecordContext<'_>, usize, Lsn, &[u8])> = vec![
            (
                "prev",
                RecordContext {
                    prev: &other_prev,
                    ..base
                },
                recs[3].0,
                1,
                sealed(3),
            ),
            (
                "log",
                RecordContext {
                    log: &other_log,
                    ..base
                },
                recs[3].0,
                1,
                sealed(3),
            ),
            (
                "session",
                RecordContext {
                    session: &other_session,
                    ..base
                },
                recs[3].0,
                1,
                sealed(3),
            ),
            (
                "time",
                RecordContext {
                    timestamp_us: 5,
                    ..base
                },
                recs[3].0,
                1,
                sealed(3),
            ),
            (
                "sync mark",
                RecordContext {
                    sync_mark: 0,
                    ..base
                },
                recs[3].0,
                1,
                sealed(3),
            ),
            (
                "lsn",
                RecordContext { lsn: 99, ..base },
                recs[3].0,
                1,
                sealed(3),
            ),
            ("offset", base, recs[3].0 + 1, 1, sealed(3)),
            ("segment", base, recs[3].0, 2, sealed(3)),
            ("sealed bytes", base, recs[3].0, 1, &changed),
        ];
        for (what, ctx, at, segment, bytes_due) in variants {
            let mut fresh = Ahead::spawn().unwrap();
            fresh.hand_over(&due0, &key, tag(0), &bytes, 0);
            // Go through records 1 and 2 as above.
            for i in 1..=2 {
                let h = recs[i].2;
                let prev = tag(i - 1);
                let ctx = RecordContext::of(&log, &h, &prev);
                let due = Due {
                    segment: 1,
                    at: recs[i].0,
                    len: recs[i].1,
                    ctx: &ctx,
                    sealed: sealed(i),
                };
                assert!(fresh.take(&due));
            }
            let due = Due {
                segment,
                at,
                len: recs[3].1,
                ctx: &ctx,
                sealed: bytes_due,
            };
            assert!(
                !fresh.take(&due),
                "{what} differs: must be opened by the reader"
            );
        }
        // The unchanged record 3 is taken.
        let due = Due {
            segment: 1,
            at: recs[3].0,
            len: recs[3].1,
            ctx: &base,
            sealed: sealed(3),
        };
        assert!(ahead.take(&due));
        assert_eq!(ahead.plain(), recs[3].3);
    }

    #[test]
    fn the_second_thread_stops_at_a_record_it_cannot_open() {
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (mut bytes, recs) = frames(&key, &log, 12);
        // Record 6's ciphertext changed (its CRC left wrong: the thread
        // does not look at CRCs, the tag fails all the same).
        let (at6, _, _, _) = recs[6];
        bytes[at6 + RECORD_HEADER_LEN + 30] ^= 1;
        let job = Job {
            seq: 0,
            segment: 1,
            start: recs[1].0,
            expected: 2,
            prev: crypto::tag_of(&bytes[recs[0].0 + RECORD_HEADER_LEN..recs[0].0 + recs[0].1])
                .unwrap(),
            opener: Opener::new(key),
            log,
            buffers: Buffers {
                bytes: bytes[recs[1].0..].to_vec(),
                ..Buffers::default()
            },
        };
        let batch = open_job(job);
        let lsns: Vec<Lsn> = batch.buffers.opened.iter().map(|o| o.lsn).collect();
        assert_eq!(
            lsns,
            [2, 3, 4, 5, 6],
            "LSN 7 (index 6) fails: nothing from it on"
        );
    }

    /// `bytes` with the frame of record `i` replaced by a placeholder
    /// holding `payload`.
    fn redact(
        bytes: &[u8],
        recs: &[(usize, usize, FrameHeader, Vec<u8>)],
        i: usize,
        payload: &[u8],
    ) -> Vec<u8> {
        let (at, len, header, _) = &recs[i];
        let mut out = bytes[..*at].to_vec();
        crate::format::encode_placeholder(&mut out, header, payload);
        out.extend_from_slice(&bytes[at + len..]);
        out
    }

    #[test]
    fn the_second_thread_passes_placeholders_and_stops_at_a_malformed_one() {
        let (key, log) = (Key::new([3; 32]), Uuid::from_u64_pair(1, 2));
        let (bytes, recs) = frames(&key, &log, 12);
        let tag = |i: usize| {
            let (at, len, _, _) = recs[i];
            crypto::tag_of(&bytes[at + RECORD_HEADER_LEN..at + len]).unwrap()
        };
        let job = |bytes: Vec<u8>| Job {
            seq: 0,
            segment: 1,
            start: 0,
            expected: 1,
            prev: [0; 16],
            opener: Opener::new(key.clone()),
            log,
            buffers: Buffers {
                bytes,
                ..Buffers::default()
            },
        };
        // Records 4 and 8 (LSNs 5 and 9) erased: their tags stay.
        let erased = redact(&redact(&bytes, &recs, 8, &tag(8)), &recs, 4, &tag(4));
        let (end, count) = whole_frames(&erased, 0, erased.len(), u64::MAX);
        assert_eq!((end, count), (erased.len(), 12), "placeholders are frames");
        let batch = open_job(job(erased));
        let lsns: Vec<Lsn> = batch.buffers.opened.iter().map(|o| o.lsn).collect();
        assert_eq!(lsns, [1, 2, 3, 4, 6, 7, 8, 10, 11, 12]);
        let after = batch.buffers.opened.iter().find(|o| o.lsn == 6).unwrap();
        assert_eq!(after.prev, tag(4), "the chain goes on from the tag");
        assert_eq!(
            &batch.buffers.plain[after.plain.clone()],
            &recs[5].3[..],
            "record 6 as it is"
        );
        // A placeholder of another size (a clear one's zero byte): the
        // thread stops there, as the reader refuses it.
        let bad = redact(&bytes, &recs, 4, &crate::format::REDACTED_CLEAR_PAYLOAD);
        let lsns: Vec<Lsn> = open_job(job(bad))
            .buffers
            .opened
            .iter()
            .map(|o| o.lsn)
            .collect();
        assert_eq!(lsns, [1, 2, 3, 4]);
    }
}
