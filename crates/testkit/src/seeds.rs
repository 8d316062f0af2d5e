//! The seed corpus: a handful of meaningful inputs per target, written to
//! `fuzz/corpus/<target>/` by `tests/corpus.rs` (see `fuzz/README.md`).

use std::sync::Arc;

use logbook_bus::{SessionEvent, TokenDelta, TokenEstimate, TokenSource, codec};
use logbook_wal::format::{FrameHeader, SEGMENT_HEADER_LEN, encode_frame, segment_file_name};
use logbook_wal::sim::SimFs;
use logbook_wal::{MIN_SEGMENT_SIZE, Wal, WalOptions};
use uuid::Uuid;

use crate::encode::ArbBytes;
use crate::open_segment::{BASES, WITH_HEADER, WITH_SEALED, header, push_record};
use crate::replay_reduce::STEP_VARIANTS;
use crate::wal_ops::{OP_VARIANTS, payload_len};

/// The seed inputs of `target`, as (file name, bytes); empty for an
/// unknown target. Deterministic except for the timestamps inside the
/// segment that a real [`Wal`] writes.
#[must_use]
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let seeds = match target {
        "decode_record" => decode_record(),
        "open_segment" => open_segment(),
        "event_roundtrip" => event_roundtrip(),
        "replay_reduce" => replay_reduce(),
        "wal_ops" => wal_ops(),
        _ => Vec::new(),
    };
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}

fn events() -> Vec<SessionEvent> {
    vec![
        SessionEvent::SessionStarted {
            model: "big-model".into(),
            cwd: "/work".into(),
            title: Some("fix the build".into()),
        },
        SessionEvent::UserMessage("list the files".into()),
        SessionEvent::ToolCallStart {
            tool_call_id: "t1".into(),
            name: "bash".into(),
            arguments: "{\"cmd\":\"ls\"}".into(),
        },
        SessionEvent::ToolCallComplete {
            tool_call_id: "t1".into(),
            name: "bash".into(),
            output: "Cargo.toml\nsrc\n".into(),
            success: true,
            duration_ms: 12,
        },
        SessionEvent::TokenUsage(TokenDelta {
            source: TokenSource::Root,
            model: "big-model".into(),
            prompt_tokens: 1200,
            completion_tokens: 300,
            duration_ms: 900,
        }),
        SessionEvent::TokenEstimate(TokenEstimate {
            model: "big-model".into(),
            request_tokens: 70_000,
            budget: 128_000,
        }),
        SessionEvent::ContextTruncated {
            trace_id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
            dropped_tokens: 4000,
            kept_messages: 12,
            archive_ref: Some("archive/1".into()),
        },
        SessionEvent::TextComplete("two files".into()),
        SessionEvent::Done,
    ]
}

fn frame(lsn: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let header = FrameHeader {
        lsn,
        sync_mark: lsn,
        timestamp_us: 1_700_000_000_000_000,
        session: Uuid::from_u128(7),
    };
    encode_frame(&mut buf, &header, payload);
    buf
}

fn decode_record() -> Vec<(&'static str, Vec<u8>)> {
    let done = frame(1, &[0x0f]);
    let message = frame(
        2,
        &codec::encode(&SessionEvent::UserMessage("hello".into())).unwrap_or_default(),
    );
    let large = frame(3, &[0xa5; 2000]);
    let mut garbage = message.clone();
    garbage.extend_from_slice(b"\x01\x02\x03 trailing bytes after the frame");
    let mut bad_crc = message.clone();
    bad_crc[30] ^= 0x40;
    let mut huge = done.clone();
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut segment_start = header(1).to_vec();
    segment_start.extend_from_slice(&done);
    vec![
        ("frame_done", done),
        ("frame_user_message", message.clone()),
        ("frame_2000_bytes", large),
        ("frame_then_garbage", garbage),
        ("frame_bad_crc", bad_crc),
        ("frame_truncated", message[..message.len() - 3].to_vec()),
        ("frame_huge_length", huge),
        ("zeros", vec![0; 64]),
        ("segment_header_then_frame", segment_start),
    ]
}

/// Frames `lsns` (with their sync marks) carrying real events.
fn frames(lsns: &[(u64, u64)]) -> (Vec<u8>, Vec<usize>) {
    let events = events();
    let mut buf = Vec::new();
    let mut offsets = Vec::new();
    for (i, &(lsn, sync_mark)) in lsns.iter().enumerate() {
        offsets.push(buf.len());
        push_record(&mut buf, lsn, sync_mark, &events[i % events.len()]);
    }
    (buf, offsets)
}

fn with_mode(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(body);
    v
}

/// A segment as a real `Wal` writes it: 4 KiB, preallocated, with a few
/// records and zeros after them.
fn real_segment() -> Vec<u8> {
    let fs = SimFs::new(1);
    let opts = WalOptions {
        segment_size: MIN_SEGMENT_SIZE,
        ..WalOptions::default()
    };
    let Ok(wal) = Wal::open_with_fs(Arc::new(fs.clone()), "/log", opts) else {
        return Vec::new();
    };
    for (i, event) in (0u128..).zip(events()) {
        let _ = wal.append(Uuid::from_u128(i % 2 + 1), &event);
    }
    drop(wal);
    fs.file_bytes(format!("/log/{}", segment_file_name(1)))
        .unwrap_or_default()
}

fn open_segment() -> Vec<(&'static str, Vec<u8>)> {
    let real = real_segment();
    // The last record cut short, as a crash in the middle of its write
    // leaves it: a torn tail.
    let mut torn = real.clone();
    let end = torn.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
    torn[end - 20..end].fill(0);
    torn[end - 30] ^= 0xff;

    let (clean, _) = frames(&[(1, 1), (2, 2), (3, 3), (4, 3)]);
    // 2 and 3 were one batch (sync mark 2): damage to 2 is a torn tail.
    let (mut torn_batch, offs) = frames(&[(1, 1), (2, 2), (3, 2)]);
    torn_batch[offs[1] + 50] ^= 0x10;
    // 3 was written after 2 was durable (sync mark 3): mid-log corruption.
    let (mut mid_log, offs) = frames(&[(1, 1), (2, 2), (3, 3)]);
    mid_log[offs[1] + 50] ^= 0x10;
    // Zeros, then stale bytes: a cut of garbage past the clean end.
    let (mut stale, _) = frames(&[(1, 1)]);
    stale.extend_from_slice(&[0; 100]);
    stale.extend_from_slice(b"stale bytes");

    let (sealed_tail, _) = frames(&[(4, 4), (5, 5)]);
    let high = BASES[2];
    let (high_frames, _) = frames(&[(high, high), (high + 1, high)]);
    let last = BASES[3];
    let (last_frame, _) = frames(&[(last, last)]);
    let base_bits = |i: u8| i << 2;
    vec![
        ("wal_segment", with_mode(0, &real)),
        ("wal_segment_torn_tail", with_mode(0, &torn)),
        ("frames", with_mode(WITH_HEADER, &clean)),
        ("torn_batch", with_mode(WITH_HEADER, &torn_batch)),
        ("mid_log_corruption", with_mode(WITH_HEADER, &mid_log)),
        ("stale_bytes_after_zeros", with_mode(WITH_HEADER, &stale)),
        ("header_only", with_mode(WITH_HEADER, &[])),
        (
            "after_sealed_segment",
            with_mode(WITH_HEADER | WITH_SEALED, &sealed_tail),
        ),
        (
            "after_sealed_segment_bad_header",
            with_mode(WITH_SEALED, &[0x89; SEGMENT_HEADER_LEN]),
        ),
        (
            "high_base_lsn",
            with_mode(WITH_HEADER | base_bits(2), &high_frames),
        ),
        (
            "last_lsn",
            with_mode(WITH_HEADER | base_bits(3), &last_frame),
        ),
    ]
}

fn event_roundtrip() -> Vec<(&'static str, Vec<u8>)> {
    let names = [
        "session_started",
        "user_message",
        "tool_call_start",
        "tool_call_complete",
        "token_usage",
        "token_estimate",
        "context_truncated",
        "text_complete",
        "done",
    ];
    let mut out: Vec<(&'static str, Vec<u8>)> = names
        .into_iter()
        .zip(events())
        .map(|(name, e)| (name, codec::encode(&e).unwrap_or_default()))
        .collect();
    // A tag this build does not know, and a claimed length far too large.
    out.push(("unknown_tag", vec![200, 1, 2, 3]));
    let mut huge = vec![12, 0xfd];
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    out.push(("huge_string_length", huge));
    out
}

/// Steps of `replay_reduce` (see `replay_reduce::Step`).
struct Steps(ArbBytes);

impl Steps {
    fn step(&mut self, variant: u32) -> &mut ArbBytes {
        self.0.more().variant(variant, STEP_VARIANTS)
    }
    fn start(&mut self, id: u8) -> &mut Self {
        self.step(1).u8(id);
        self
    }
    fn complete(&mut self, id: u8) -> &mut Self {
        self.step(2).u8(id).bool(true);
        self
    }
    fn usage(&mut self, model: u8, source: u32, prompt: u64, completion: u64) -> &mut Self {
        self.step(3)
            .u8(model)
            .variant(source, 4)
            .u64(prompt)
            .u64(completion)
            .u64(prompt / 10);
        self
    }
    fn legacy(&mut self, prompt: u64, completion: u64) -> &mut Self {
        self.step(4).u64(prompt).u64(completion).u64(5);
        self
    }
    fn simple(&mut self, variant: u32) -> &mut Self {
        self.step(variant);
        self
    }
    /// `Any` (0) or `Foreign` (8) with a fieldless event or `SessionResumed`.
    fn event(&mut self, step: u32, tag: u32) -> &mut Self {
        let b = self.step(step).variant(tag, 26);
        if tag == 25 {
            b.u64(3);
        }
        self
    }
    fn finish(&mut self) -> Vec<u8> {
        self.0.done().take()
    }
}

fn replay_reduce() -> Vec<(&'static str, Vec<u8>)> {
    let (done, fail, resume) = (5, 6, 7);
    let (any, foreign) = (0, 8);
    let tools = Steps(ArbBytes::default())
        .start(0)
        .start(1)
        .usage(0, 0, 1200, 300)
        .complete(0)
        .start(2)
        .start(0)
        .complete(3)
        .usage(1, 2, 50, 7)
        .legacy(1200, 300)
        .simple(done)
        .finish();
    let saturating = Steps(ArbBytes::default())
        .usage(0, 0, u64::MAX, 1)
        .usage(0, 1, u64::MAX - 1, u64::MAX)
        .usage(2, 3, 1, 1)
        .legacy(u64::MAX, u64::MAX)
        .legacy(1, 0)
        .finish();
    let statuses = Steps(ArbBytes::default())
        .simple(fail)
        .start(1)
        .simple(resume)
        .event(any, 0)
        .simple(done)
        .event(any, 25)
        .complete(1)
        .simple(fail)
        .finish();
    let foreign_mix = Steps(ArbBytes::default())
        .event(foreign, 15)
        .start(0)
        .event(foreign, 25)
        .event(any, 15)
        .event(foreign, 0)
        .usage(1, 1, 10, 10)
        .finish();
    // Bytes left to `arbitrary`: events of every kind with odd contents.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..2048)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    vec![
        ("tool_calls_and_tokens", tools),
        ("saturating_tokens", saturating),
        ("status_transitions", statuses),
        ("other_session_mixed_in", foreign_mix),
        ("arbitrary_events", noise),
    ]
}

/// Ops of `wal_ops` (see `wal_ops::Op`).
struct Ops(ArbBytes);

impl Ops {
    fn new(never: bool) -> Ops {
        let mut b = ArbBytes::default();
        b.u64(0x5eed).bool(never).bool(false);
        Ops(b)
    }
    /// An append whose payload is exactly `len` bytes.
    fn append(&mut self, session: u8, len: usize) -> &mut Self {
        let code = (0..=u16::MAX).find(|&c| payload_len(c) == len).unwrap_or(1);
        self.0.more().variant(0, OP_VARIANTS).u8(session).u16(code);
        self
    }
    fn op(&mut self, variant: u32) -> &mut Self {
        self.0.more().variant(variant, OP_VARIANTS);
        self
    }
    fn cut_after(&mut self, ops: u8) -> &mut Self {
        self.0.more().variant(5, OP_VARIANTS).u8(ops);
        self
    }
    fn truncate(&mut self, at: u8) -> &mut Self {
        self.0.more().variant(6, OP_VARIANTS).u8(at);
        self
    }
    fn fill_disk(&mut self, room: u16) -> &mut Self {
        self.0.more().variant(7, OP_VARIANTS).u16(room);
        self
    }
    fn finish(&mut self) -> Vec<u8> {
        self.0.done().take()
    }
}

fn wal_ops() -> Vec<(&'static str, Vec<u8>)> {
    let (sync, crash, power_cut, reopen, free_disk) = (1, 2, 3, 4, 8);
    let mut crashes = Ops::new(false);
    for i in 0..6 {
        crashes.append(i, 10 + 50 * usize::from(i));
    }
    crashes
        .op(crash)
        .append(1, 300)
        .append(2, 3000)
        .op(power_cut)
        .append(3, 1)
        .op(reopen)
        .append(4, 0)
        .append(4, 4099);
    let mut never = Ops::new(true);
    for i in 0..5 {
        never.append(i, 200);
    }
    never.op(sync);
    for i in 0..8 {
        never.append(i, 300);
    }
    never.op(power_cut).append(1, 40).append(2, 50).op(crash);
    never.append(3, 60).op(reopen);
    let mut cut = Ops::new(false);
    cut.append(0, 100).cut_after(2);
    for i in 0..4 {
        cut.append(i, 700);
    }
    cut.cut_after(5).op(reopen).append(1, 20);
    let mut rolls = Ops::new(false);
    for i in 0..12 {
        rolls.append(i, 1500 + usize::from(i) * 100);
    }
    rolls.op(power_cut);
    let mut never_cut = Ops::new(true);
    never_cut.cut_after(1);
    for i in 0..10 {
        never_cut.append(i, 250);
    }
    never_cut.op(sync);
    // A long mixed workload, so that the fuzzer's input length limit starts
    // large enough for [`MAX_OPS`](crate::wal_ops::MAX_OPS)-long runs.
    let mut long = Ops::new(false);
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..150u8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 100 {
            0..70 => long.append(i, usize::try_from(x >> 40).unwrap_or(0) % 700),
            70..78 => long.op(sync),
            78..83 => long.op(crash),
            83..88 => long.op(power_cut),
            88..93 => long.op(reopen),
            _ => long.cut_after(i),
        };
    }
    // Retention across rolls, then a crash and more appends.
    let mut retention = Ops::new(false);
    for i in 0..16 {
        retention.append(i, 900);
    }
    retention
        .truncate(128)
        .op(crash)
        .append(1, 50)
        .truncate(255)
        .op(power_cut)
        .append(2, 60);
    // A full disk under both policies, then space again.
    let mut full = Ops::new(false);
    full.append(0, 100).fill_disk(700);
    for i in 0..16 {
        full.append(i, 300);
    }
    full.op(sync).op(free_disk).append(1, 300).op(power_cut);
    let mut full_never = Ops::new(true);
    full_never.fill_disk(2000);
    for i in 0..30 {
        full_never.append(i, 250);
    }
    full_never.op(sync).op(reopen).append(2, 100).op(sync);
    vec![
        ("retention_crash_power_cut", retention.finish()),
        ("disk_full_always", full.finish()),
        ("disk_full_never", full_never.finish()),
        ("long_mixed_workload", long.finish()),
        ("appends_crash_power_cut_reopen", crashes.finish()),
        ("never_sync_then_power_cut", never.finish()),
        ("power_cut_in_the_middle", cut.finish()),
        ("segment_rolls", rolls.finish()),
        ("never_cut_during_flush", never_cut.finish()),
    ]
}
