//! [`SessionEvent`]: the agent runtime's event vocabulary, stable on disk.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::payload::{RlmOutcome, TokenDelta, TokenEstimate, ToolStream};

/// One thing that happened in an agent session.
///
/// Events are either **ephemeral** (progress signals a live UI may drop) or
/// **durable** (facts a replay needs); [`SessionEvent::is_durable`] decides,
/// and [`SessionBus::emit`](crate::SessionBus::emit) hands durable events to
/// the [`DurableSink`](crate::DurableSink) before broadcasting them.
///
/// # Stability on disk
///
/// Events are encoded by [`codec`](crate::codec) with the variant's
/// **index** as its tag. Therefore:
///
/// * new variants are only ever appended **at the end** of this enum;
/// * existing variants are never reordered, removed or given new fields.
///
/// A golden-bytes test in `codec.rs` fails if this is broken.
///
/// JSON carried by events (tool arguments, metadata) is kept as a `String`:
/// the binary codec cannot decode self-describing values.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
///
/// assert!(SessionEvent::Done.is_durable());
/// assert!(!SessionEvent::Thinking.is_durable());
/// assert_eq!(SessionEvent::TextChunk("hi".into()).kind(), "text_chunk");
/// ```
// ---------------------------------------------------------------------------
// ON-DISK FORMAT: append new variants at the END of this enum, never in the
// middle; never reorder, remove or change the fields of an existing variant.
// Then add it to `is_durable`, `kind` and `KINDS`, and extend the golden test.
// ---------------------------------------------------------------------------
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum SessionEvent {
    // 0
    /// The model started thinking (ephemeral).
    Thinking,
    /// A streamed piece of assistant text (ephemeral; see `TextComplete`).
    TextChunk(String),
    /// A long-running tool is still alive (ephemeral).
    ToolHeartbeat {
        /// The provider's id of the tool call.
        tool_call_id: String,
        /// Tool name.
        name: String,
        /// Seconds since the call started.
        elapsed_secs: u64,
    },
    /// A piece of a running tool's output (ephemeral; see `ToolCallComplete`).
    ToolOutputChunk {
        /// The provider's id of the tool call.
        tool_call_id: String,
        /// Tool name.
        name: String,
        /// Which stream the chunk came from.
        stream: ToolStream,
        /// The chunk.
        chunk: String,
    },
    /// The model stream failed and is being retried (ephemeral).
    StreamRetry {
        /// This attempt's number, from 1.
        attempt: u32,
        /// How many restarts are allowed.
        max_restarts: u32,
        /// Why the stream failed.
        reason: String,
    },
    // 5
    /// A pre-flight context-size estimate (ephemeral).
    TokenEstimate(TokenEstimate),
    /// One iteration of an RLM loop finished (ephemeral).
    RlmProgress {
        /// The RLM run.
        trace_id: Uuid,
        /// The iteration just finished, from 1.
        iteration: u32,
        /// The iteration limit.
        max_iterations: u32,
        /// A short status line.
        status: String,
    },
    /// Tokens spent by one model request (durable).
    TokenUsage(TokenDelta),
    /// The model asked for a tool call (durable).
    ToolCallStart {
        /// The provider's id of the tool call.
        tool_call_id: String,
        /// Tool name.
        name: String,
        /// The arguments, as JSON text.
        arguments: String,
    },
    /// A tool call finished (durable).
    ToolCallComplete {
        /// The provider's id of the tool call.
        tool_call_id: String,
        /// Tool name.
        name: String,
        /// The tool's output as given back to the model.
        output: String,
        /// Whether the tool succeeded.
        success: bool,
        /// Wall-clock duration of the call.
        duration_ms: u64,
    },
    // 10
    /// Extra structured facts about a tool call (durable).
    ToolCallMetadata {
        /// The provider's id of the tool call.
        tool_call_id: String,
        /// Tool name.
        name: String,
        /// The metadata, as JSON text.
        metadata_json: String,
    },
    /// A tool call waits for a human's approval (durable).
    ApprovalRequest {
        /// The approval's own id.
        approval_id: String,
        /// The tool call it gates.
        tool_call_id: String,
        /// Tool name.
        tool: String,
        /// What the tool wants to do.
        action: String,
        /// What it wants to do it to.
        resource: String,
        /// Why approval is needed.
        reason: String,
    },
    /// A whole assistant message (durable).
    TextComplete(String),
    /// A whole thinking block (durable).
    ThinkingComplete(String),
    /// Legacy per-request usage report, kept apart from `TokenUsage` (durable).
    UsageReport {
        /// Input tokens.
        prompt_tokens: u64,
        /// Output tokens.
        completion_tokens: u64,
        /// Wall-clock time of the request.
        duration_ms: u64,
        /// The model that served it.
        model: String,
    },
    // 15
    /// The session finished normally (durable, terminal).
    Done,
    /// The session failed (durable, terminal).
    Error(String),
    /// An RLM loop finished (durable).
    RlmComplete {
        /// The RLM run.
        trace_id: Uuid,
        /// How it ended.
        outcome: RlmOutcome,
        /// Iterations run.
        iterations: u32,
        /// Sub-calls made.
        subcalls: u32,
        /// Input tokens over the whole run.
        input_tokens: u64,
        /// Output tokens over the whole run.
        output_tokens: u64,
        /// Wall-clock time of the run.
        elapsed_ms: u64,
        /// Why it ended, when not converged.
        reason: Option<String>,
        /// The model of the root loop.
        root_model: String,
        /// The model sub-calls actually used, if any.
        subcall_model_used: Option<String>,
    },
    /// Context compaction began (durable).
    CompactionStarted {
        /// The compaction run.
        trace_id: Uuid,
        /// Why it was started.
        reason: String,
        /// Context size before.
        before_tokens: u64,
        /// The budget to get under.
        budget: u64,
    },
    /// Context compaction succeeded (durable).
    CompactionCompleted {
        /// The compaction run.
        trace_id: Uuid,
        /// The strategy used.
        strategy: String,
        /// Context size before.
        before_tokens: u64,
        /// Context size after.
        after_tokens: u64,
        /// Messages kept verbatim.
        kept_messages: u32,
    },
    // 20
    /// Context compaction failed (durable).
    CompactionFailed {
        /// The compaction run.
        trace_id: Uuid,
        /// The fallback strategy used instead, if any.
        fell_back_to: Option<String>,
        /// Why it failed.
        reason: String,
        /// Context size after the fallback.
        after_tokens: u64,
        /// The budget it tried to get under.
        budget: u64,
    },
    /// Old context was dropped to fit the budget (durable).
    ContextTruncated {
        /// The truncation run.
        trace_id: Uuid,
        /// Tokens dropped.
        dropped_tokens: u64,
        /// Messages kept.
        kept_messages: u32,
        /// Where the dropped context was archived, if anywhere.
        archive_ref: Option<String>,
    },
    /// An RLM sub-call fell back to another model (durable).
    RlmSubcallFallback {
        /// The model asked for.
        requested_model: String,
        /// The model used instead.
        fallback_model: String,
        /// Why.
        reason: String,
    },
    /// A session began (durable; Logbook addition for replay).
    SessionStarted {
        /// The session's model.
        model: String,
        /// The working directory of the agent.
        cwd: String,
        /// A human title, if known.
        title: Option<String>,
    },
    /// A user's message to the agent (durable; Logbook addition for replay).
    UserMessage(String),
    // 25
    /// The session was resumed after an interruption (durable; Logbook addition).
    SessionResumed {
        /// The last LSN of the session before it was resumed.
        from_lsn: u64,
    },
    // 26
    /// The session was forked from another one at a point of its history
    /// (durable; Logbook addition): the first record of a fork, followed by
    /// copies of the original's durable events up to and including
    /// `at_lsn`. When the original's beginning was retained away, the fork
    /// begins with a truncation mark ([`SessionEvent::SessionTruncated`])
    /// before this record, and is marked truncated as the original is (a
    /// fork written by an earlier build has the copies first and this
    /// record after them: its first record is not a beginning either).
    SessionForked {
        /// The session it was forked from.
        from: Uuid,
        /// The last LSN of `from` that the fork's history includes.
        at_lsn: u64,
    },
    // 27
    /// A **tombstone** (durable; Logbook addition): records of this
    /// session (the record's own session) that come before this one in
    /// the log are deleted. Every reader that answers with session content
    /// leaves them out from the moment this record is durable (see
    /// [`Deletions`](crate::Deletions) for the exact rule). A tombstone
    /// covers only LSNs below its own, never another tombstone, and never
    /// records appended after it (a session can go on after it).
    SessionDeleted {
        /// Every record of the session with an LSN above this one is
        /// deleted; `Some(0)`: the whole session; `None`: none by position.
        after_lsn: Option<u64>,
        /// And every record of the session in these inclusive LSN ranges
        /// (`(first, last)`), in any order.
        ranges: Vec<(u64, u64)>,
        /// Why, for people (`pop`, `runs`, `prune`, an erasure request's
        /// reference); may be empty. Never holds deleted content.
        reason: String,
    },
    // 28
    /// An application's own record (durable; Logbook addition): opaque
    /// bytes under a name saying what they are (`langgraph.checkpoint`,
    /// `agents.item`, …). Logbook stores, indexes, deletes and ships it
    /// like any other record and never looks inside: integrations that
    /// keep state of their own (a LangGraph checkpointer, an Agents SDK
    /// session) write it. In JSON, `data` is base64 (standard alphabet,
    /// padded); on disk, a length-prefixed byte string.
    Custom {
        /// What the bytes are: a short name the application chooses.
        name: String,
        /// The bytes.
        #[serde(with = "crate::payload::bytes")]
        data: Vec<u8>,
    },
    // 29
    /// A **truncation mark** (durable; Logbook addition): as a session's
    /// first record, it says that the records after it are not the
    /// session's beginning (it was retained away in the log they came
    /// from), so that readers mark the session truncated wherever its
    /// records go: an export writes one before a truncated session's first
    /// line (an import appends it), and a fork of a truncated session
    /// begins with one. Anywhere but first it means nothing. It holds no
    /// content of the session.
    SessionTruncated {
        /// Why, for people (where the records came from); may be empty.
        reason: String,
    },
    // Append new variants here, and only here.
}

/// The stable names of every event kind, in on-disk tag order.
///
/// These names appear in the CLI (`--kind`), in JSON output and in stats.
pub const KINDS: &[&str] = &[
    "thinking",
    "text_chunk",
    "tool_heartbeat",
    "tool_output_chunk",
    "stream_retry",
    "token_estimate",
    "rlm_progress",
    "token_usage",
    "tool_call_start",
    "tool_call_complete",
    "tool_call_metadata",
    "approval_request",
    "text_complete",
    "thinking_complete",
    "usage_report",
    "done",
    "error",
    "rlm_complete",
    "compaction_started",
    "compaction_completed",
    "compaction_failed",
    "context_truncated",
    "rlm_subcall_fallback",
    "session_started",
    "user_message",
    "session_resumed",
    "session_forked",
    "session_deleted",
    "custom",
    "session_truncated",
];

/// The tag of the first durable kind (`token_usage`): the seed's enum lists
/// the ephemeral kinds first, and appended kinds are durable.
const FIRST_DURABLE_TAG: usize = 7;

impl SessionEvent {
    /// Whether this event must reach the durable sink.
    ///
    /// Durable events are the facts a replay rebuilds a session from; the
    /// others are progress signals that a later event supersedes.
    #[must_use]
    pub const fn is_durable(&self) -> bool {
        // One arm per variant and no wildcard: a new variant does not compile
        // until its class is decided here.
        match self {
            SessionEvent::Thinking
            | SessionEvent::TextChunk(_)
            | SessionEvent::ToolHeartbeat { .. }
            | SessionEvent::ToolOutputChunk { .. }
            | SessionEvent::StreamRetry { .. }
            | SessionEvent::TokenEstimate(_)
            | SessionEvent::RlmProgress { .. } => false,
            SessionEvent::TokenUsage(_)
            | SessionEvent::ToolCallStart { .. }
            | SessionEvent::ToolCallComplete { .. }
            | SessionEvent::ToolCallMetadata { .. }
            | SessionEvent::ApprovalRequest { .. }
            | SessionEvent::TextComplete(_)
            | SessionEvent::ThinkingComplete(_)
            | SessionEvent::UsageReport { .. }
            | SessionEvent::Done
            | SessionEvent::Error(_)
            | SessionEvent::RlmComplete { .. }
            | SessionEvent::CompactionStarted { .. }
            | SessionEvent::CompactionCompleted { .. }
            | SessionEvent::CompactionFailed { .. }
            | SessionEvent::ContextTruncated { .. }
            | SessionEvent::RlmSubcallFallback { .. }
            | SessionEvent::SessionStarted { .. }
            | SessionEvent::UserMessage(_)
            | SessionEvent::SessionResumed { .. }
            | SessionEvent::SessionForked { .. }
            | SessionEvent::SessionDeleted { .. }
            | SessionEvent::Custom { .. }
            | SessionEvent::SessionTruncated { .. } => true,
        }
    }

    /// Whether events with this on-disk tag (see [`SessionEvent::tag`])
    /// are durable, without decoding one; `None` for a tag this build does
    /// not know. Agrees with [`SessionEvent::is_durable`] (a unit test
    /// checks every kind).
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::SessionEvent;
    ///
    /// assert_eq!(SessionEvent::tag_is_durable(SessionEvent::Done.tag()), Some(true));
    /// assert_eq!(SessionEvent::tag_is_durable(SessionEvent::Thinking.tag()), Some(false));
    /// assert_eq!(SessionEvent::tag_is_durable(1000), None);
    /// ```
    #[must_use]
    pub const fn tag_is_durable(tag: usize) -> Option<bool> {
        // The ephemeral kinds come first in tag order (0..=6, `thinking` to
        // `rlm_progress`); every kind from `token_usage` (7) on is durable.
        if tag < FIRST_DURABLE_TAG {
            Some(false)
        } else if tag < KINDS.len() {
            Some(true)
        } else {
            None
        }
    }

    /// Whether this event is a tombstone (`SessionDeleted`).
    #[must_use]
    pub const fn is_tombstone(&self) -> bool {
        matches!(self, SessionEvent::SessionDeleted { .. })
    }

    /// Whether this event begins a session (`SessionStarted` or
    /// `SessionForked`): a session whose first record is one is whole
    /// from its beginning.
    #[must_use]
    pub const fn is_beginning(&self) -> bool {
        matches!(
            self,
            SessionEvent::SessionStarted { .. } | SessionEvent::SessionForked { .. }
        )
    }

    /// Whether this event is a truncation mark (`SessionTruncated`).
    #[must_use]
    pub const fn is_truncation_mark(&self) -> bool {
        matches!(self, SessionEvent::SessionTruncated { .. })
    }

    /// Whether this event ends a session (`Done` or `Error`).
    #[must_use]
    pub const fn is_terminal(&self) -> bool {
        matches!(self, SessionEvent::Done | SessionEvent::Error(_))
    }

    /// The on-disk tag of this variant: its index in [`KINDS`].
    #[must_use]
    pub const fn tag(&self) -> usize {
        match self {
            SessionEvent::Thinking => 0,
            SessionEvent::TextChunk(_) => 1,
            SessionEvent::ToolHeartbeat { .. } => 2,
            SessionEvent::ToolOutputChunk { .. } => 3,
            SessionEvent::StreamRetry { .. } => 4,
            SessionEvent::TokenEstimate(_) => 5,
            SessionEvent::RlmProgress { .. } => 6,
            SessionEvent::TokenUsage(_) => 7,
            SessionEvent::ToolCallStart { .. } => 8,
            SessionEvent::ToolCallComplete { .. } => 9,
            SessionEvent::ToolCallMetadata { .. } => 10,
            SessionEvent::ApprovalRequest { .. } => 11,
            SessionEvent::TextComplete(_) => 12,
            SessionEvent::ThinkingComplete(_) => 13,
            SessionEvent::UsageReport { .. } => 14,
            SessionEvent::Done => 15,
            SessionEvent::Error(_) => 16,
            SessionEvent::RlmComplete { .. } => 17,
            SessionEvent::CompactionStarted { .. } => 18,
            SessionEvent::CompactionCompleted { .. } => 19,
            SessionEvent::CompactionFailed { .. } => 20,
            SessionEvent::ContextTruncated { .. } => 21,
            SessionEvent::RlmSubcallFallback { .. } => 22,
            SessionEvent::SessionStarted { .. } => 23,
            SessionEvent::UserMessage(_) => 24,
            SessionEvent::SessionResumed { .. } => 25,
            SessionEvent::SessionForked { .. } => 26,
            SessionEvent::SessionDeleted { .. } => 27,
            SessionEvent::Custom { .. } => 28,
            SessionEvent::SessionTruncated { .. } => 29,
        }
    }

    /// A stable `snake_case` name for this event's kind (see [`KINDS`]).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        KINDS.get(self.tag()).copied().unwrap_or("unknown")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::payload::TokenSource;

    /// One value of every variant, in tag order.
    pub(crate) fn one_of_each() -> Vec<SessionEvent> {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let s = |x: &str| x.to_owned();
        vec![
            SessionEvent::Thinking,
            SessionEvent::TextChunk(s("chunk")),
            SessionEvent::ToolHeartbeat {
                tool_call_id: s("t1"),
                name: s("bash"),
                elapsed_secs: 3,
            },
            SessionEvent::ToolOutputChunk {
                tool_call_id: s("t1"),
                name: s("bash"),
                stream: ToolStream::Stderr,
                chunk: s("oops"),
            },
            SessionEvent::StreamRetry {
                attempt: 1,
                max_restarts: 3,
                reason: s("reset"),
            },
            SessionEvent::TokenEstimate(TokenEstimate {
                model: s("m"),
                request_tokens: 9,
                budget: 10,
            }),
            SessionEvent::RlmProgress {
                trace_id: id,
                iteration: 2,
                max_iterations: 8,
                status: s("ok"),
            },
            SessionEvent::TokenUsage(TokenDelta {
                source: TokenSource::RlmSubcall,
                model: s("m"),
                prompt_tokens: 10,
                completion_tokens: 5,
                duration_ms: 7,
            }),
            SessionEvent::ToolCallStart {
                tool_call_id: s("t1"),
                name: s("bash"),
                arguments: s("{}"),
            },
            SessionEvent::ToolCallComplete {
                tool_call_id: s("t1"),
                name: s("bash"),
                output: s("done"),
                success: true,
                duration_ms: 12,
            },
            SessionEvent::ToolCallMetadata {
                tool_call_id: s("t1"),
                name: s("bash"),
                metadata_json: s("{\"a\":1}"),
            },
            SessionEvent::ApprovalRequest {
                approval_id: s("a1"),
                tool_call_id: s("t1"),
                tool: s("bash"),
                action: s("rm"),
                resource: s("/tmp/x"),
                reason: s("destructive"),
            },
            SessionEvent::TextComplete(s("hello")),
            SessionEvent::ThinkingComplete(s("hmm")),
            SessionEvent::UsageReport {
                prompt_tokens: 1,
                completion_tokens: 2,
                duration_ms: 3,
                model: s("m"),
            },
            SessionEvent::Done,
            SessionEvent::Error(s("boom")),
            SessionEvent::RlmComplete {
                trace_id: id,
                outcome: RlmOutcome::Converged,
                iterations: 3,
                subcalls: 4,
                input_tokens: 100,
                output_tokens: 50,
                elapsed_ms: 999,
                reason: None,
                root_model: s("big"),
                subcall_model_used: Some(s("small")),
            },
            SessionEvent::CompactionStarted {
                trace_id: id,
                reason: s("full"),
                before_tokens: 900,
                budget: 500,
            },
            SessionEvent::CompactionCompleted {
                trace_id: id,
                strategy: s("summarize"),
                before_tokens: 900,
                after_tokens: 400,
                kept_messages: 6,
            },
            SessionEvent::CompactionFailed {
                trace_id: id,
                fell_back_to: Some(s("truncate")),
                reason: s("model error"),
                after_tokens: 480,
                budget: 500,
            },
            SessionEvent::ContextTruncated {
                trace_id: id,
                dropped_tokens: 420,
                kept_messages: 4,
                archive_ref: None,
            },
            SessionEvent::RlmSubcallFallback {
                requested_model: s("a"),
                fallback_model: s("b"),
                reason: s("quota"),
            },
            SessionEvent::SessionStarted {
                model: s("m"),
                cwd: s("/w"),
                title: Some(s("t")),
            },
            SessionEvent::UserMessage(s("please")),
            SessionEvent::SessionResumed { from_lsn: 42 },
            SessionEvent::SessionForked {
                from: id,
                at_lsn: 7,
            },
            SessionEvent::SessionDeleted {
                after_lsn: Some(3),
                ranges: vec![(1, 1)],
                reason: s("pop"),
            },
            SessionEvent::Custom {
                name: s("app.state"),
                data: vec![0, 1, 2, 255],
            },
            SessionEvent::SessionTruncated {
                reason: s("retained"),
            },
        ]
    }

    #[test]
    fn tag_is_durable_agrees_with_is_durable_for_every_kind() {
        for event in one_of_each() {
            assert_eq!(
                SessionEvent::tag_is_durable(event.tag()),
                Some(event.is_durable()),
                "{}",
                event.kind()
            );
        }
        assert_eq!(SessionEvent::tag_is_durable(KINDS.len()), None);
    }

    #[test]
    fn one_of_each_covers_every_kind_in_tag_order() {
        let all = one_of_each();
        assert_eq!(all.len(), KINDS.len());
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.tag(), i, "{e:?}");
            assert_eq!(e.kind(), KINDS[i]);
        }
    }

    #[test]
    fn durability_table() {
        // The table a reviewer checks: every kind and its class, written out.
        let expected: &[(&str, bool)] = &[
            ("thinking", false),
            ("text_chunk", false),
            ("tool_heartbeat", false),
            ("tool_output_chunk", false),
            ("stream_retry", false),
            ("token_estimate", false),
            ("rlm_progress", false),
            ("token_usage", true),
            ("tool_call_start", true),
            ("tool_call_complete", true),
            ("tool_call_metadata", true),
            ("approval_request", true),
            ("text_complete", true),
            ("thinking_complete", true),
            ("usage_report", true),
            ("done", true),
            ("error", true),
            ("rlm_complete", true),
            ("compaction_started", true),
            ("compaction_completed", true),
            ("compaction_failed", true),
            ("context_truncated", true),
            ("rlm_subcall_fallback", true),
            ("session_started", true),
            ("user_message", true),
            ("session_resumed", true),
            ("session_forked", true),
            ("session_deleted", true),
            ("custom", true),
            ("session_truncated", true),
        ];
        let all = one_of_each();
        assert_eq!(expected.len(), all.len());
        for (e, (kind, durable)) in all.iter().zip(expected) {
            assert_eq!(e.kind(), *kind);
            assert_eq!(e.is_durable(), *durable, "{kind}");
        }
    }

    #[test]
    fn only_done_and_error_are_terminal() {
        let terminal: Vec<_> = one_of_each()
            .into_iter()
            .filter(SessionEvent::is_terminal)
            .map(|e| e.kind())
            .collect();
        assert_eq!(terminal, ["done", "error"]);
    }
}
