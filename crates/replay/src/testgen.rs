//! Generators for the property tests of the folds.

use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_wal::EventRecord;
use proptest::prelude::*;
use uuid::Uuid;

/// The session the generated records belong to.
pub(crate) const SESSION: Uuid = Uuid::from_u128(0x5e55_1011);

/// Any event at all, built by `arbitrary` from proptest-chosen bytes (one
/// derive serves the fuzzer and the property tests; see the bus's codec).
pub(crate) fn arb_event() -> impl Strategy<Value = SessionEvent> {
    proptest::collection::vec(any::<u8>(), 0..256).prop_filter_map("not enough entropy", |raw| {
        let mut u = arbitrary::Unstructured::new(&raw);
        <SessionEvent as arbitrary::Arbitrary>::arbitrary(&mut u).ok()
    })
}

fn source() -> impl Strategy<Value = TokenSource> {
    prop::sample::select(TokenSource::ALL.to_vec())
}

/// Events drawn from small pools of ids, models and numbers, so that tool
/// calls start and complete the same ids and tokens pile up per model.
pub(crate) fn pooled_event() -> impl Strategy<Value = SessionEvent> {
    let id = prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(String::from);
    let model = prop::sample::select(vec!["m1", "m2", "m3"]).prop_map(String::from);
    let small = 0..u64::from(u32::MAX);
    prop_oneof![
        (id.clone(), any::<String>()).prop_map(|(tool_call_id, arguments)| {
            SessionEvent::ToolCallStart {
                tool_call_id,
                name: "tool".into(),
                arguments,
            }
        }),
        (id.clone(), any::<bool>()).prop_map(|(tool_call_id, success)| {
            SessionEvent::ToolCallComplete {
                tool_call_id,
                name: "tool".into(),
                output: "out".into(),
                success,
                duration_ms: 1,
            }
        }),
        id.clone()
            .prop_map(|tool_call_id| SessionEvent::ToolCallMetadata {
                tool_call_id,
                name: "tool".into(),
                metadata_json: "{}".into(),
            }),
        id.clone()
            .prop_map(|tool_call_id| SessionEvent::ApprovalRequest {
                approval_id: "ap".into(),
                tool_call_id,
                tool: "tool".into(),
                action: "act".into(),
                resource: "res".into(),
                reason: "why".into(),
            }),
        (source(), model.clone(), small.clone(), small.clone()).prop_map(
            |(source, model, prompt_tokens, completion_tokens)| {
                SessionEvent::TokenUsage(TokenDelta {
                    source,
                    model,
                    prompt_tokens,
                    completion_tokens,
                    duration_ms: 3,
                })
            }
        ),
        (model, small.clone(), small).prop_map(|(model, prompt_tokens, completion_tokens)| {
            SessionEvent::UsageReport {
                prompt_tokens,
                completion_tokens,
                duration_ms: 5,
                model,
            }
        }),
        Just(SessionEvent::Done),
        any::<String>().prop_map(SessionEvent::Error),
        any::<u64>().prop_map(|from_lsn| SessionEvent::SessionResumed { from_lsn }),
        any::<String>().prop_map(SessionEvent::UserMessage),
        any::<String>().prop_map(SessionEvent::TextComplete),
        any::<String>().prop_map(SessionEvent::ThinkingComplete),
        Just(SessionEvent::Thinking),
        any::<String>().prop_map(SessionEvent::TextChunk),
        id.prop_map(|tool_call_id| SessionEvent::ToolHeartbeat {
            tool_call_id,
            name: "tool".into(),
            elapsed_secs: 1,
        }),
    ]
}

/// A mix of pooled and arbitrary events.
pub(crate) fn event() -> impl Strategy<Value = SessionEvent> {
    prop_oneof![3 => pooled_event(), 1 => arb_event()]
}

/// `events` as the records of [`SESSION`], LSNs from 1, timestamps growing.
pub(crate) fn records(events: Vec<SessionEvent>) -> Vec<EventRecord> {
    (1..)
        .zip(events)
        .map(|(lsn, event)| EventRecord {
            lsn,
            timestamp_us: 1_000 * lsn,
            session: SESSION,
            event,
        })
        .collect()
}

/// A log in `dir` with the smallest segments, so that a few records roll.
pub(crate) fn small_log(dir: &std::path::Path) -> logbook_wal::Wal {
    logbook_wal::Wal::open(
        dir,
        logbook_wal::WalOptions {
            segment_size: logbook_wal::MIN_SEGMENT_SIZE,
            ..logbook_wal::WalOptions::default()
        },
    )
    .unwrap()
}
