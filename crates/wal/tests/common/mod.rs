//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;
use std::sync::Arc;

use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_wal::{EventRecord, Lsn, Reader, WalError, WalOptions, fs::Fs};
use uuid::Uuid;

/// A deterministic event of varying kind and size.
pub(crate) fn event(i: u64) -> SessionEvent {
    match i % 4 {
        0 => SessionEvent::UserMessage(format!("message {i} {}", "x".repeat((i % 97) as usize))),
        1 => SessionEvent::TokenUsage(TokenDelta {
            source: TokenSource::Root,
            model: "model".into(),
            prompt_tokens: i,
            completion_tokens: i * 2,
            duration_ms: 1,
        }),
        2 => SessionEvent::ToolCallStart {
            tool_call_id: format!("call-{i}"),
            name: "bash".into(),
            arguments: format!("{{\"i\":{i}}}"),
        },
        _ => SessionEvent::TextComplete(format!("answer {i}")),
    }
}

pub(crate) fn session(n: u64) -> Uuid {
    Uuid::from_u64_pair(0x1060_b00c, n)
}

/// Options for tests: small segments so that rolls happen.
pub(crate) fn small(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        ..WalOptions::default()
    }
}

/// Every record of the log, decoded; panics on any error.
pub(crate) fn read_all(dir: &Path) -> Vec<(Lsn, Uuid, SessionEvent)> {
    read_all_with(Reader::open(dir).unwrap())
}

pub(crate) fn read_all_fs(fs: Arc<dyn Fs>, dir: &Path) -> Vec<(Lsn, Uuid, SessionEvent)> {
    read_all_with(Reader::open_with_fs(fs, dir).unwrap())
}

fn read_all_with(mut reader: Reader) -> Vec<(Lsn, Uuid, SessionEvent)> {
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap_or_else(|e| panic!("reading the log: {e}"));
        let e = EventRecord::decode(&r).unwrap();
        out.push((e.lsn, e.session, e.event));
    }
    assert!(
        reader.tail_damage().is_none(),
        "tail damage: {:?}",
        reader.tail_damage()
    );
    out
}

/// LSNs must run 1, 2, 3, … with no gap.
pub(crate) fn assert_gapless(records: &[(Lsn, Uuid, SessionEvent)]) {
    for (i, (lsn, _, _)) in records.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1, "LSNs must be gapless");
    }
}

pub(crate) fn is_poisoned(e: &WalError) -> bool {
    matches!(e, WalError::Poisoned { .. })
}
