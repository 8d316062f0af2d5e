//! `replay_reduce`: arbitrary event sequences through the replay reducer.

use std::collections::{BTreeMap, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use logbook_bus::{SessionEvent, TokenDelta, TokenSource};
use logbook_replay::{Role, SessionState, SessionStatus, TokenTotals};
use logbook_wal::{EventRecord, Lsn};
use uuid::Uuid;

/// The session under test.
const SESSION: Uuid = Uuid::from_u128(0x5e55_1011);
/// Another session sharing the log.
const OTHER: Uuid = Uuid::from_u128(0x0007_4e12);
/// At most this many records per input.
pub(crate) const MAX_STEPS: usize = 256;
/// Distinct tool-call ids and models used by the targeted steps, few so
/// that starts, completions and models meet.
const IDS: u8 = 4;
const MODELS: u8 = 3;

/// One record of the log. `Any` covers every event with `arbitrary`
/// contents; the other steps draw their ids and models from small sets so
/// that the invariants about repeated ids and per-model sums get exercised.
#[derive(Debug, Clone, Arbitrary)]
pub(crate) enum Step {
    /// Any event of the session.
    Any(SessionEvent),
    /// `ToolCallStart` of id `t{id % IDS}`.
    Start { id: u8 },
    /// `ToolCallComplete` of id `t{id % IDS}`.
    Complete { id: u8, success: bool },
    /// `TokenUsage` of model `m{model % MODELS}`.
    Usage {
        model: u8,
        source: TokenSource,
        prompt: u64,
        completion: u64,
        duration: u64,
    },
    /// A legacy `UsageReport`.
    Legacy {
        prompt: u64,
        completion: u64,
        duration: u64,
    },
    /// `Done`.
    Done,
    /// `Error`.
    Fail,
    /// `SessionResumed`.
    Resume,
    /// Any event of another session (which must change nothing).
    Foreign(SessionEvent),
}

/// Variant indices of [`Step`], for writing seeds.
pub(crate) const STEP_VARIANTS: u32 = 9;

impl Step {
    fn record(self, lsn: Lsn) -> EventRecord {
        let id = |id: u8| format!("t{}", id % IDS);
        let (session, event) = match self {
            Step::Any(event) => (SESSION, event),
            Step::Foreign(event) => (OTHER, event),
            Step::Start { id: i } => (
                SESSION,
                SessionEvent::ToolCallStart {
                    tool_call_id: id(i),
                    name: "bash".into(),
                    arguments: format!("{{\"lsn\":{lsn}}}"),
                },
            ),
            Step::Complete { id: i, success } => (
                SESSION,
                SessionEvent::ToolCallComplete {
                    tool_call_id: id(i),
                    name: "bash".into(),
                    output: format!("out {lsn}"),
                    success,
                    duration_ms: lsn,
                },
            ),
            Step::Usage {
                model,
                source,
                prompt,
                completion,
                duration,
            } => (
                SESSION,
                SessionEvent::TokenUsage(TokenDelta {
                    source,
                    model: format!("m{}", model % MODELS),
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    duration_ms: duration,
                }),
            ),
            Step::Legacy {
                prompt,
                completion,
                duration,
            } => (
                SESSION,
                SessionEvent::UsageReport {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    duration_ms: duration,
                    model: "legacy".into(),
                },
            ),
            Step::Done => (SESSION, SessionEvent::Done),
            Step::Fail => (SESSION, SessionEvent::Error(format!("failed at {lsn}"))),
            Step::Resume => (
                SESSION,
                SessionEvent::SessionResumed {
                    from_lsn: lsn.saturating_sub(1),
                },
            ),
        };
        EventRecord {
            lsn,
            timestamp_us: lsn.saturating_mul(1000),
            session,
            event,
        }
    }
}

/// Exact sums, saturated only when compared.
#[derive(Debug, Default, Clone, Copy)]
struct Sum {
    prompt: u128,
    completion: u128,
    requests: u64,
    duration: u128,
}

impl Sum {
    fn add(&mut self, prompt: u64, completion: u64, duration: u64) {
        self.prompt += u128::from(prompt);
        self.completion += u128::from(completion);
        self.requests += 1;
        self.duration += u128::from(duration);
    }

    fn check(&self, got: TokenTotals, what: &str) {
        let sat = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
        assert_eq!(got.prompt, sat(self.prompt), "{what}: prompt");
        assert_eq!(got.completion, sat(self.completion), "{what}: completion");
        assert_eq!(
            got.total,
            sat(self.prompt + self.completion),
            "{what}: total"
        );
        assert_eq!(got.requests, self.requests, "{what}: requests");
        assert_eq!(got.duration_ms, sat(self.duration), "{what}: duration");
    }
}

/// The records `data` stands for: up to [`MAX_STEPS`] steps, LSNs 1, 2, …
pub(crate) fn records(data: &[u8]) -> Vec<EventRecord> {
    let mut u = Unstructured::new(data);
    let Ok(steps) = u.arbitrary_iter::<Step>() else {
        return Vec::new();
    };
    steps
        .take(MAX_STEPS)
        .map_while(Result::ok)
        .zip(1..)
        .map(|(step, lsn)| step.record(lsn))
        .collect()
}

/// Fold the records `data` stands for (one session, with another session's
/// records mixed in, LSNs 1, 2, …) through [`SessionState::apply`] and
/// check the reducer against a direct model of what `logbook-replay`
/// documents:
///
/// * token totals, overall, per model, per source and for legacy
///   `UsageReport`s apart, are the sums of the inputs (saturating);
/// * pending tool calls = started − completed: a call is pending iff the
///   last start-or-complete naming its id is a start, ordered by that
///   start's LSN, and each call counts its starts;
/// * the status follows the transition rule (the last `Done`, `Error` or
///   `SessionResumed` decides), and so does `ended_at`;
/// * the transcript and the record counts match;
/// * records of another session change nothing;
/// * nothing panics.
///
/// # Panics
///
/// When an invariant breaks.
pub fn replay_reduce(data: &[u8]) {
    let records = records(data);
    let mut state = SessionState::new(SESSION);
    let mut alone = SessionState::new(SESSION);
    for r in &records {
        state.apply(r);
        if r.session == SESSION {
            alone.apply(r);
        }
    }
    assert_eq!(state, alone, "records of another session changed the state");

    let own: Vec<&EventRecord> = records.iter().filter(|r| r.session == SESSION).collect();

    // Tokens.
    let (mut all, mut legacy) = (Sum::default(), Sum::default());
    let mut by_model: BTreeMap<&str, Sum> = BTreeMap::new();
    let mut by_source: BTreeMap<TokenSource, Sum> = BTreeMap::new();
    for r in &own {
        match &r.event {
            SessionEvent::TokenUsage(d) => {
                let (p, c, t) = (d.prompt_tokens, d.completion_tokens, d.duration_ms);
                all.add(p, c, t);
                by_model.entry(d.model.as_str()).or_default().add(p, c, t);
                by_source.entry(d.source).or_default().add(p, c, t);
            }
            SessionEvent::UsageReport {
                prompt_tokens,
                completion_tokens,
                duration_ms,
                ..
            } => legacy.add(*prompt_tokens, *completion_tokens, *duration_ms),
            _ => {}
        }
    }
    let tokens = state.tokens();
    all.check(tokens.total(), "all");
    legacy.check(tokens.legacy(), "legacy");
    let models: Vec<&str> = tokens.by_model().map(|(m, _)| m).collect();
    assert_eq!(models, by_model.keys().copied().collect::<Vec<_>>());
    for (model, sum) in &by_model {
        sum.check(tokens.model(model), model);
    }
    let sources: Vec<TokenSource> = tokens.by_source().map(|(s, _)| s).collect();
    assert_eq!(sources, by_source.keys().copied().collect::<Vec<_>>());
    for (source, sum) in &by_source {
        sum.check(tokens.source(*source), source.as_str());
    }

    // Tool calls.
    let mut last: HashMap<&str, Option<Lsn>> = HashMap::new();
    let mut starts: HashMap<&str, u32> = HashMap::new();
    for r in &own {
        match &r.event {
            SessionEvent::ToolCallStart { tool_call_id, .. } => {
                last.insert(tool_call_id, Some(r.lsn));
                *starts.entry(tool_call_id).or_default() += 1;
            }
            SessionEvent::ToolCallComplete { tool_call_id, .. } => {
                last.insert(tool_call_id, None);
            }
            _ => {}
        }
    }
    let mut want: Vec<(Lsn, &str)> = last
        .iter()
        .filter_map(|(id, at)| at.map(|lsn| (lsn, *id)))
        .collect();
    want.sort_unstable();
    let got: Vec<(Lsn, &str)> = state
        .pending_tool_calls()
        .iter()
        .map(|c| {
            assert!(c.is_pending());
            let start = c.start.as_ref().expect("a pending call has a start");
            (start.lsn, c.id.as_str())
        })
        .collect();
    assert_eq!(got, want, "pending = started - completed");
    for call in state.tool_calls() {
        let n = starts.get(call.id.as_str()).copied().unwrap_or(0);
        assert_eq!(call.starts, n, "starts of {:?}", call.id);
        assert_eq!(call.start.is_some(), n > 0);
    }

    // Status, transcript, counts.
    let mut status = SessionStatus::Running;
    let mut ended_at = None;
    let mut transcript = Vec::new();
    for r in &own {
        match &r.event {
            SessionEvent::Done => (status, ended_at) = (SessionStatus::Completed, Some(r.lsn)),
            SessionEvent::Error(m) => {
                (status, ended_at) = (SessionStatus::Failed(m.clone()), Some(r.lsn))
            }
            SessionEvent::SessionResumed { .. } => {
                (status, ended_at) = (SessionStatus::Running, None)
            }
            SessionEvent::UserMessage(t) => transcript.push((r.lsn, Role::User, t.as_str())),
            SessionEvent::TextComplete(t) => transcript.push((r.lsn, Role::Assistant, t.as_str())),
            SessionEvent::ThinkingComplete(t) => {
                transcript.push((r.lsn, Role::Thinking, t.as_str()));
            }
            _ => {}
        }
    }
    assert_eq!(state.status(), &status);
    assert_eq!(state.ended_at(), ended_at);
    let interrupted = status == SessionStatus::Running;
    assert_eq!(
        state.status_given(false) == SessionStatus::Interrupted,
        interrupted
    );
    assert_eq!(state.status_given(true), status);
    let got: Vec<_> = state
        .transcript()
        .iter()
        .map(|t| (t.lsn, t.role, t.text.as_str()))
        .collect();
    assert_eq!(got, transcript);
    let n = own.len() as u64;
    // Tombstones are folded (in the kind counts) but are not its events.
    let tombstones = own.iter().filter(|r| r.event.is_tombstone()).count() as u64;
    assert_eq!(state.events(), n - tombstones);
    let durable = own.iter().filter(|r| r.event.is_durable()).count() as u64;
    assert_eq!(state.durable_events(), durable - tombstones);
    assert_eq!(state.kind_counts().map(|(_, c)| c).sum::<u64>(), n);
    assert_eq!(state.first_lsn(), own.first().map(|r| r.lsn));
    assert_eq!(state.last_lsn(), own.last().map(|r| r.lsn));
    assert_eq!(state.session_id(), SESSION);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::ArbBytes;

    #[test]
    fn seed_bytes_mean_what_they_say() {
        let mut b = ArbBytes::default();
        b.more().variant(1, STEP_VARIANTS).u8(2); // Start t2
        b.more()
            .variant(3, STEP_VARIANTS)
            .u8(4)
            .variant(0, 4)
            .u64(10)
            .u64(5)
            .u64(7); // Usage
        b.more().variant(2, STEP_VARIANTS).u8(2).bool(true); // Complete t2
        b.more().variant(5, STEP_VARIANTS); // Done
        b.more().variant(7, STEP_VARIANTS); // Resume
        b.done();
        let records = records(&b.take());
        let kinds: Vec<_> = records.iter().map(|r| r.event.kind()).collect();
        assert_eq!(
            kinds,
            [
                "tool_call_start",
                "token_usage",
                "tool_call_complete",
                "done",
                "session_resumed"
            ]
        );
        assert!(
            matches!(&records[1].event, SessionEvent::TokenUsage(d) if d.model == "m1" && d.prompt_tokens == 10 && d.source == TokenSource::Root)
        );
    }
}
