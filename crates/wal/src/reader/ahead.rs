//! Opening ahead: a keyed reader going through an encrypted segment record
//! after record hands the frames ahead of it to a second thread, which
//! opens them (AES-GCM) while the reader checks, decodes and returns the
//! ones before. Opening is the bulk of reading an encrypted log; with it
//! off the reading thread, a scan runs at the pace of the slower of the
//! two.
//!
//! The reader keeps every check of its own: it validates each frame, works
//! out each record's associated data (its chain value included) and checks
//! the head exactly as when it opens inline. An opened payload is used only
//! for a record whose place, sealed bytes and associated data are, byte
//! for byte, those the second thread opened: so the reader returns exactly
//! what it would have opened itself, and anything else (a frame changed
//! since, a tag that fails, a frame the thread did not reach) is opened
//! inline and reported as it always is.
//!
//! The thread starts once a reader has opened [`WARM_UP`] records of one
//! segment in a row (a short read never pays for it), only where the
//! machine has a second core, and stops when the reader is dropped.
//!
//! Redacted placeholders (`docs/format.md`, "Redacted placeholders") are
//! passed over on both sides: the reader never asks for one (it checks
//! them itself, `reader.rs`), and the second thread never opens one; it
//! takes a placeholder's 16-byte payload as the chain value of the record
//! after it, as the reader does, so a run of records broken by
//! placeholders is still opened ahead. A placeholder is never substituted
//! for a record nor a record for a placeholder: what is opened ahead is
//! keyed by the record's offset, and a placeholder's offset is never due
//! as a record.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender};

use uuid::Uuid;

use crate::crypto::{self, Chain, Key, Opener, RecordContext};
use crate::format::{FrameFields, Lsn, RECORD_HEADER_LEN, REDACTED_FLAG, frame_len};

/// Records a reader opens inline, in a row in one segment, before it
/// starts opening ahead.
pub(super) const WARM_UP: u32 = 64;

/// Bytes of frames handed over at a time (the frames that fit whole):
/// large enough that waking a thread is rare (on a virtual machine it can
/// take tens of microseconds).
const BATCH_BYTES: usize = 256 << 10;

/// What the second thread is asked to open: the frames in `bytes`, a copy
/// of the segment from offset `start`.
struct Job {
    segment: Lsn,
    start: usize,
    bytes: Vec<u8>,
    expected: Lsn,
    /// The chain value before the first frame.
    prev: Chain,
    opener: Opener,
    log: Uuid,
}

/// One record the second thread opened.
struct Opened {
    at: usize,
    lsn: Lsn,
    session: Uuid,
    timestamp_us: u64,
    sync_mark: Lsn,
    prev: Chain,
    /// The sealed payload, in the job's `bytes`.
    sealed: Range<usize>,
    /// Its plaintext, in the batch's `plain`.
    plain: Range<usize>,
}

/// What the second thread opened of one job, in log order; it stops at the
/// first frame it cannot open (the reader will find out why).
struct Batch {
    segment: Lsn,
    bytes: Vec<u8>,
    plain: Vec<u8>,
    opened: VecDeque<Opened>,
    log: Uuid,
}

/// The reader's side of opening ahead: counts the records opened in a
/// row, and starts the second thread once there are enough.
#[derive(Default)]
pub(super) struct OpenAhead {
    /// Records whose opened payload was taken from the second thread.
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
    /// The plaintext of `due` if the second thread opened that very record
    /// (copied into `out`); `false` if the reader must open it itself.
    pub(super) fn take(&mut self, due: &Due<'_>, out: &mut Vec<u8>) -> bool {
        let taken = self.thread.as_mut().is_some_and(|t| t.take(due, out));
        self.taken += u64::from(taken);
        taken
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

    /// After the record `due` was opened (by either thread) with `key`,
    /// its tag `tag`: count it, and hand the frames ahead over when none
    /// are. `bytes` are the segment's bytes held, from file offset `base`.
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

/// Jobs handed over and not yet taken back: one being opened, the next
/// queued behind it, so that the second thread never waits for the reader
/// to wake it.
const IN_FLIGHT: usize = 2;

/// For every this many records the second thread opens, the reader opens
/// one itself (the frames after each job): opening costs more than the
/// reader's other work on a record, so an even share of the frames would
/// leave the reader waiting.
const INLINE_SHARE: u64 = 8;

/// Where the next job starts: segment, offset, LSN and chain value.
type Place = (Lsn, usize, Lsn, Chain);

/// The second thread, and what it was given and gave back.
struct Ahead {
    jobs: Sender<Job>,
    done: Receiver<Batch>,
    /// The jobs in flight, in order: segment and first offset.
    in_flight: VecDeque<(Lsn, usize)>,
    ready: Option<Batch>,
    /// Where the job after the last one handed over starts.
    next: Option<Place>,
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
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, done) = mpsc::channel::<Batch>();
        std::thread::Builder::new()
            .name("logbook-open-ahead".into())
            .spawn(move || {
                for job in inbox {
                    if outbox.send(open_job(job)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Ahead {
            jobs,
            done,
            in_flight: VecDeque::with_capacity(IN_FLIGHT),
            ready: None,
            next: None,
        })
    }

    /// [`OpenAhead::take`]. Waits for the job starting at `due`, if that
    /// one is in flight; drops those the reader went past or away from.
    fn take(&mut self, due: &Due<'_>, out: &mut Vec<u8>) -> bool {
        while self.ready.as_ref().is_none_or(|b| b.opened.is_empty()) {
            match self.in_flight.front() {
                Some(&(segment, start)) if segment == due.segment && start > due.at => {
                    return false;
                }
                Some(_) => {
                    self.in_flight.pop_front();
                    self.ready = self.done.recv().ok();
                    if self.ready.is_none() {
                        return false;
                    }
                }
                None => return false,
            }
        }
        let Some(batch) = self.ready.as_mut() else {
            return false;
        };
        let Some(first) = batch.opened.front() else {
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
            && batch.bytes.get(first.sealed.clone()) == Some(due.sealed);
        if !same {
            self.ready = None;
            return false;
        }
        out.clear();
        out.extend_from_slice(batch.plain.get(first.plain.clone()).unwrap_or_default());
        batch.opened.pop_front();
        true
    }

    /// Hand over the frames after `due` (or after those handed over
    /// already), up to [`IN_FLIGHT`] jobs.
    fn hand_over(&mut self, due: &Due<'_>, key: &Key, tag: Chain, bytes: &[u8], base: usize) {
        let next = match self.next {
            Some(place) if place.0 == due.segment && place.1 > due.at => place,
            _ if self.in_flight.is_empty() => (due.segment, due.at + due.len, due.ctx.lsn + 1, tag),
            // Jobs of another place are in flight: let `take` drain them.
            _ => return,
        };
        self.next = Some(next);
        while self.in_flight.len() < IN_FLIGHT {
            let Some((segment, start, expected, prev)) = self.next else {
                return;
            };
            let Some(rest) = start.checked_sub(base).and_then(|from| bytes.get(from..)) else {
                return;
            };
            // The whole frames within the batch's bytes, by their lengths
            // (the second thread checks them), then a share of frames
            // after them that the reader opens itself (see
            // [`INLINE_SHARE`]).
            let limit = rest.len().min(BATCH_BYTES);
            let (end, count) = whole_frames(rest, 0, limit, u64::MAX);
            if count == 0 {
                return;
            }
            let (skip_end, skipped) = whole_frames(rest, end, rest.len(), count / INLINE_SHARE);
            let mut copy = self.spare_buffer();
            copy.extend_from_slice(rest.get(..end).unwrap_or_default());
            let mut last = prev;
            if let Some(t) = skip_end
                .checked_sub(crypto::CHAIN_LEN)
                .and_then(|at| rest.get(at..skip_end))
            {
                last.copy_from_slice(t);
            }
            let job = Job {
                segment,
                start,
                bytes: copy,
                expected,
                prev,
                opener: Opener::new(key.clone()),
                log: *due.ctx.log,
            };
            if self.jobs.send(job).is_err() {
                return;
            }
            self.in_flight.push_back((segment, start));
            self.next = Some((segment, start + skip_end, expected + count + skipped, last));
        }
    }

    /// A buffer to copy a job's bytes into: the one of the batch used up,
    /// if it is.
    fn spare_buffer(&mut self) -> Vec<u8> {
        match self.ready.take() {
            Some(b) if b.opened.is_empty() => {
                let mut bytes = b.bytes;
                bytes.clear();
                bytes
            }
            other => {
                self.ready = other;
                Vec::with_capacity(BATCH_BYTES)
            }
        }
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

/// The second thread's work: open the whole frames of `job` in order, up
/// to the first it cannot. A redacted placeholder is not opened: its
/// payload, the tag of the record it replaced, is the chain value of the
/// next record (a placeholder of another size stops the job, as the
/// reader refuses it).
fn open_job(job: Job) -> Batch {
    let Job {
        segment,
        start,
        bytes,
        expected,
        mut prev,
        mut opener,
        log,
    } = job;
    let mut plain = Vec::with_capacity(bytes.len());
    let mut opened = VecDeque::new();
    let mut scratch = Vec::new();
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
        let ctx = RecordContext {
            log: &log,
            lsn,
            session: &header.session,
            timestamp_us: header.timestamp_us,
            sync_mark: header.sync_mark,
            prev: &prev,
        };
        if !opener.open_into(&ctx, payload, &mut scratch) {
            break;
        }
        let at = plain.len();
        plain.extend_from_slice(&scratch);
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
        segment,
        bytes,
        plain,
        opened,
        log,
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
        let mut sealer = Sealer::new(key.clone());
        let (mut bytes, mut out, mut prev) = (Vec::new(), Vec::new(), [0u8; 16]);
        for lsn in 1..=n {
            let header = FrameHeader {
                lsn,
                sync_mark: lsn - 1,
                timestamp_us: 1000 + lsn,
                session: Uuid::from_u64_pair(7, lsn % 3),
            };
            let plain = format!("record {lsn}").into_bytes();
            let ctx = RecordContext {
                log,
                lsn,
                session: &header.session,
                timestamp_us: header.timestamp_us,
                sync_mark: header.sync_mark,
                prev: &prev,
            };
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
        let ctx0 = RecordContext {
            log: &log,
            lsn: h0.lsn,
            session: &h0.session,
            timestamp_us: h0.timestamp_us,
            sync_mark: h0.sync_mark,
            prev: &zero,
        };
        let due0 = Due {
            segment: 1,
            at: recs[0].0,
            len: recs[0].1,
            ctx: &ctx0,
            sealed: sealed(0),
        };
        ahead.hand_over(&due0, &key, tag(0), &bytes, 0);
        assert_eq!(ahead.in_flight.len(), 1, "one job: the frames fit in one");
        let mut out = Vec::new();
        // Records 1 and 2, as they are: taken.
        for i in 1..=2 {
            let h = recs[i].2;
            let prev = tag(i - 1);
            let ctx = RecordContext {
                log: &log,
                lsn: h.lsn,
                session: &h.session,
                timestamp_us: h.timestamp_us,
                sync_mark: h.sync_mark,
                prev: &prev,
            };
            let due = Due {
                segment: 1,
                at: recs[i].0,
                len: recs[i].1,
                ctx: &ctx,
                sealed: sealed(i),
            };
            assert!(ahead.take(&due, &mut out), "record {i}");
            assert_eq!(out, recs[i].3);
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
        let base = RecordContext {
            log: &log,
            lsn: h.lsn,
            session: &h.session,
            timestamp_us: h.timestamp_us,
            sync_mark: h.sync_mark,
            prev: &prev,
        };
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
                let ctx = RecordContext {
                    log: &log,
                    lsn: h.lsn,
                    session: &h.session,
                    timestamp_us: h.timestamp_us,
                    sync_mark: h.sync_mark,
                    prev: &prev,
                };
                let due = Due {
                    segment: 1,
                    at: recs[i].0,
                    len: recs[i].1,
                    ctx: &ctx,
                    sealed: sealed(i),
                };
                assert!(fresh.take(&due, &mut out));
            }
            let due = Due {
                segment,
                at,
                len: recs[3].1,
                ctx: &ctx,
                sealed: bytes_due,
            };
            assert!(
                !fresh.take(&due, &mut out),
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
        assert!(ahead.take(&due, &mut out));
        assert_eq!(out, recs[3].3);
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
            segment: 1,
            start: recs[1].0,
            bytes: bytes[recs[1].0..].to_vec(),
            expected: 2,
            prev: crypto::tag_of(&bytes[recs[0].0 + RECORD_HEADER_LEN..recs[0].0 + recs[0].1])
                .unwrap(),
            opener: Opener::new(key),
            log,
        };
        let batch = open_job(job);
        let lsns: Vec<Lsn> = batch.opened.iter().map(|o| o.lsn).collect();
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
            segment: 1,
            start: 0,
            bytes,
            expected: 1,
            prev: [0; 16],
            opener: Opener::new(key.clone()),
            log,
        };
        // Records 4 and 8 (LSNs 5 and 9) erased: their tags stay.
        let erased = redact(&redact(&bytes, &recs, 8, &tag(8)), &recs, 4, &tag(4));
        let (end, count) = whole_frames(&erased, 0, erased.len(), u64::MAX);
        assert_eq!((end, count), (erased.len(), 12), "placeholders are frames");
        let batch = open_job(job(erased));
        let lsns: Vec<Lsn> = batch.opened.iter().map(|o| o.lsn).collect();
        assert_eq!(lsns, [1, 2, 3, 4, 6, 7, 8, 10, 11, 12]);
        let after = batch.opened.iter().find(|o| o.lsn == 6).unwrap();
        assert_eq!(after.prev, tag(4), "the chain goes on from the tag");
        assert_eq!(
            &batch.plain[after.plain.clone()],
            &recs[5].3[..],
            "record 6 as it is"
        );
        // A placeholder of another size (a clear one's zero byte): the
        // thread stops there, as the reader refuses it.
        let bad = redact(&bytes, &recs, 4, &crate::format::REDACTED_CLEAR_PAYLOAD);
        let lsns: Vec<Lsn> = open_job(job(bad)).opened.iter().map(|o| o.lsn).collect();
        assert_eq!(lsns, [1, 2, 3, 4]);
    }
}
