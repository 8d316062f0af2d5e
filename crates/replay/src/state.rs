//! [`SessionState`]: the pure fold of one session's records.

use logbook_bus::{KINDS, SessionEvent};
use logbook_wal::{EventRecord, Lsn};
use uuid::Uuid;

use crate::status::SessionStatus;
use crate::tokens::TokenAccounts;
use crate::tools::{ApprovalRequest, ToolCall, ToolCalls, ToolCompletion, ToolMetadata, ToolStart};

/// Who said a line of the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A `UserMessage`.
    User,
    /// An assistant's `TextComplete`.
    Assistant,
    /// An assistant's `ThinkingComplete`.
    Thinking,
}

impl Role {
    /// A stable, lower-case name (`user`, `assistant`, `thinking`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Thinking => "thinking",
        }
    }
}

/// One line of a session's conversation, as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TranscriptEntry {
    /// The LSN of the event it came from.
    pub lsn: Lsn,
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub text: String,
}

/// A `SessionResumed` record: where a later run picked the session up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resumption {
    /// The LSN of the `SessionResumed` record.
    pub lsn: Lsn,
    /// When it was appended, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// The session's last LSN before it was resumed, as the event says.
    pub from_lsn: Lsn,
}

/// The LSNs and times of a session's first and last records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) first_lsn: Lsn,
    pub(crate) last_lsn: Lsn,
    pub(crate) first_timestamp_us: u64,
    pub(crate) last_timestamp_us: u64,
}

impl Span {
    pub(crate) fn new(lsn: Lsn, timestamp_us: u64) -> Span {
        Span {
            first_lsn: lsn,
            last_lsn: lsn,
            first_timestamp_us: timestamp_us,
            last_timestamp_us: timestamp_us,
        }
    }

    pub(crate) fn extend(&mut self, lsn: Lsn, timestamp_us: u64) {
        self.last_lsn = lsn;
        self.last_timestamp_us = timestamp_us;
    }

    pub(crate) fn note(span: &mut Option<Span>, lsn: Lsn, timestamp_us: u64) {
        match span {
            Some(s) => s.extend(lsn, timestamp_us),
            None => *span = Some(Span::new(lsn, timestamp_us)),
        }
    }
}

/// Everything the log knows about one session: a pure fold over its
/// records, with no I/O, so one reducer serves live observers, replay and
/// tests.
///
/// Feed it the session's records in LSN order with [`apply`](Self::apply);
/// records of other sessions are ignored.
///
/// # What it holds
///
/// * **Identity and timing:** the model, working directory and title of
///   the latest `SessionStarted`; the LSNs and timestamps of the first and
///   last records; how many events of each kind.
/// * **Conversation:** user messages, assistant texts and thinking blocks,
///   in order ([`transcript`](Self::transcript)).
/// * **Tool calls** by `tool_call_id`, and which are still pending
///   ([`ToolCall`]).
/// * **Tokens** per model and per source, with legacy `UsageReport`s apart
///   ([`TokenAccounts`]).
/// * **Compaction and RLM history**, and the session's **resumptions**.
/// * **Status**: see [`SessionStatus`] for the transition rules (terminal
///   states are sticky; only `SessionResumed` re-opens a session).
///
/// # Ephemeral events
///
/// Anything can be appended to a log, ephemeral events included. They are
/// counted (in [`events`](Self::events), the per-kind counts and the
/// first/last LSN and time) but change nothing else.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{SessionState, SessionStatus};
/// use logbook_wal::EventRecord;
///
/// let id = uuid::Uuid::new_v4();
/// let mut state = SessionState::new(id);
/// let events = [
///     SessionEvent::UserMessage("hi".into()),
///     SessionEvent::ToolCallStart {
///         tool_call_id: "t1".into(),
///         name: "ls".into(),
///         arguments: "{}".into(),
///     },
/// ];
/// for (lsn, event) in (1..).zip(events) {
///     state.apply(&EventRecord { lsn, timestamp_us: lsn * 1000, session: id, event });
/// }
/// assert_eq!(state.status(), &SessionStatus::Running);
/// assert_eq!(state.pending_tool_calls()[0].id, "t1");
/// // Nobody is writing the log any more: the session was interrupted.
/// assert_eq!(state.status_given(false), SessionStatus::Interrupted);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SessionState {
    session: Uuid,
    model: Option<String>,
    cwd: Option<String>,
    title: Option<String>,
    span: Option<Span>,
    events: u64,
    durable_events: u64,
    skipped: u64,
    by_kind: [u64; KINDS.len()],
    transcript: Vec<TranscriptEntry>,
    tools: ToolCalls,
    tokens: TokenAccounts,
    compaction: Vec<EventRecord>,
    rlm: Vec<EventRecord>,
    resumptions: Vec<Resumption>,
    forked_from: Option<(Uuid, Lsn)>,
    status: SessionStatus,
    ended_at: Option<Lsn>,
    deleted: u64,
    last_tombstone: Option<Lsn>,
    /// Its first record is a beginning (`SessionStarted`, `SessionForked`).
    began: bool,
    /// Its first record is a truncation mark (`SessionTruncated`).
    marked: bool,
    truncated: bool,
}

/// Whether a session whose first record (the first no tombstone deletes)
/// is at `first_lsn`, and is a beginning (`SessionStarted`,
/// `SessionForked`) if `began`, may have lost its beginning to retention
/// in a log that starts at `log_start`: the log starts after LSN 1, and
/// the record is not a beginning or is the log's very first one. A
/// beginning can follow other records of its session (a fork's
/// `SessionForked` after its truncation mark, the `SessionForked` a fork of
/// a fork copied, a `SessionStarted` a fork copied), and a fork's records,
/// one batch, can straddle segments: a cut right before such a record
/// leaves it first, at the log's first LSN. The one rule, shared by
/// [`SessionState::truncated`], the listing, `fork` and `export`; a
/// truncation mark first is the other.
pub(crate) fn cut_short(log_start: Lsn, first_lsn: Lsn, began: bool) -> bool {
    log_start > 1 && (!began || first_lsn <= log_start)
}

impl SessionState {
    /// The state of a session with no record yet.
    #[must_use]
    pub fn new(session: Uuid) -> SessionState {
        SessionState {
            session,
            model: None,
            cwd: None,
            title: None,
            span: None,
            events: 0,
            durable_events: 0,
            skipped: 0,
            by_kind: [0; KINDS.len()],
            transcript: Vec::new(),
            tools: ToolCalls::default(),
            tokens: TokenAccounts::default(),
            compaction: Vec::new(),
            rlm: Vec::new(),
            resumptions: Vec::new(),
            forked_from: None,
            status: SessionStatus::Running,
            ended_at: None,
            deleted: 0,
            last_tombstone: None,
            began: false,
            marked: false,
            truncated: false,
        }
    }

    /// Fold one record into the state. Records of other sessions are
    /// ignored. Never panics, whatever the records say.
    pub fn apply(&mut self, record: &EventRecord) {
        if record.session != self.session {
            return;
        }
        if self.span.is_none() {
            self.began = record.event.is_beginning();
            self.marked = record.event.is_truncation_mark();
        }
        Span::note(&mut self.span, record.lsn, record.timestamp_us);
        self.events = self.events.saturating_add(1);
        let event = &record.event;
        if let Some(n) = self.by_kind.get_mut(event.tag()) {
            *n = n.saturating_add(1);
        }
        if !event.is_durable() {
            return;
        }
        self.durable_events = self.durable_events.saturating_add(1);
        self.status.apply(event);
        let lsn = record.lsn;
        match event {
            SessionEvent::SessionStarted { model, cwd, title } => {
                self.model = Some(model.clone());
                self.cwd = Some(cwd.clone());
                self.title.clone_from(title);
            }
            SessionEvent::UserMessage(text) => self.say(lsn, Role::User, text),
            SessionEvent::TextComplete(text) => self.say(lsn, Role::Assistant, text),
            SessionEvent::ThinkingComplete(text) => self.say(lsn, Role::Thinking, text),
            SessionEvent::ToolCallStart {
                tool_call_id,
                name,
                arguments,
            } => self.tools.start(
                tool_call_id,
                name,
                ToolStart {
                    lsn,
                    arguments: arguments.clone(),
                },
            ),
            SessionEvent::ToolCallComplete {
                tool_call_id,
                name,
                output,
                success,
                duration_ms,
            } => self.tools.complete(
                tool_call_id,
                name,
                ToolCompletion {
                    lsn,
                    output: output.clone(),
                    success: *success,
                    duration_ms: *duration_ms,
                },
            ),
            SessionEvent::ToolCallMetadata {
                tool_call_id,
                name,
                metadata_json,
            } => self.tools.metadata(
                tool_call_id,
                name,
                ToolMetadata {
                    lsn,
                    json: metadata_json.clone(),
                },
            ),
            SessionEvent::ApprovalRequest {
                approval_id,
                tool_call_id,
                tool,
                action,
                resource,
                reason,
            } => self.tools.approval(
                tool_call_id,
                ApprovalRequest {
                    lsn,
                    approval_id: approval_id.clone(),
                    tool: tool.clone(),
                    action: action.clone(),
                    resource: resource.clone(),
                    reason: reason.clone(),
                },
            ),
            SessionEvent::TokenUsage(delta) => self.tokens.add_usage(delta),
            SessionEvent::UsageReport {
                prompt_tokens,
                completion_tokens,
                duration_ms,
                ..
            } => self
                .tokens
                .add_legacy(*prompt_tokens, *completion_tokens, *duration_ms),
            SessionEvent::CompactionStarted { .. }
            | SessionEvent::CompactionCompleted { .. }
            | SessionEvent::CompactionFailed { .. }
            | SessionEvent::ContextTruncated { .. } => self.compaction.push(record.clone()),
            SessionEvent::RlmComplete { .. } | SessionEvent::RlmSubcallFallback { .. } => {
                self.rlm.push(record.clone());
            }
            SessionEvent::SessionResumed { from_lsn } => {
                self.ended_at = None;
                self.resumptions.push(Resumption {
                    lsn,
                    timestamp_us: record.timestamp_us,
                    from_lsn: *from_lsn,
                });
            }
            SessionEvent::Done | SessionEvent::Error(_) => self.ended_at = Some(lsn),
            SessionEvent::SessionForked { from, at_lsn } if self.forked_from.is_none() => {
                self.forked_from = Some((*from, *at_lsn));
            }
            SessionEvent::SessionDeleted { .. } => self.last_tombstone = Some(lsn),
            // Durable events this version keeps no state for: counted above.
            _ => {}
        }
    }

    /// Count a record of this session that could not be decoded (an event
    /// kind written by a newer build). It extends the session's LSN and
    /// time span like any record, and changes nothing else.
    pub(crate) fn note_skipped(&mut self, lsn: Lsn, timestamp_us: u64) {
        Span::note(&mut self.span, lsn, timestamp_us);
        self.skipped = self.skipped.saturating_add(1);
    }

    /// Count records of this session that a tombstone deleted and the
    /// read left out.
    pub(crate) fn note_deleted(&mut self, count: u64) {
        self.deleted = self.deleted.saturating_add(count);
    }

    /// How many records of the session were left out because a tombstone
    /// (`SessionDeleted`) deletes them. The tombstones themselves are
    /// folded (in the span and the per-kind counts) but are not the
    /// session's events ([`events`](Self::events)) and hold no content.
    #[must_use]
    pub fn deleted_records(&self) -> u64 {
        self.deleted
    }

    /// Mark the session truncated if the log it was read from starts at
    /// `log_start` > 1 (older segments were retained away) and its first
    /// record is not a beginning, or is the log's first record
    /// ([`cut_short`]).
    pub(crate) fn note_log_start(&mut self, log_start: Lsn) {
        let first_lsn = self.span.map_or(Lsn::MAX, |s| s.first_lsn);
        self.truncated = cut_short(log_start, first_lsn, self.began);
    }

    /// Whether the session's beginning may have been retained away: its
    /// first record is a truncation mark (`SessionTruncated`: it was
    /// imported, pulled or forked from a truncated session), or the log's
    /// records start after LSN 1 (retention removed older segments) and
    /// its first record is not a beginning (`SessionStarted`,
    /// `SessionForked`) or is the log's first record (retention may have
    /// cut right before it: a fork's records can straddle segments). A
    /// truncated session is not complete; one that never wrote a beginning
    /// shows as truncated once the log's front was retained (the safe
    /// side).
    #[must_use]
    pub fn truncated(&self) -> bool {
        self.marked || self.truncated
    }

    /// The LSN of the session's latest tombstone, if it has one.
    #[must_use]
    pub fn last_tombstone(&self) -> Option<Lsn> {
        self.last_tombstone
    }

    /// Whether nothing of the session is left but tombstones: it was
    /// deleted, and nothing was appended to it since.
    #[must_use]
    pub fn is_deleted(&self) -> bool {
        self.last_tombstone.is_some()
            && self.skipped == 0
            && self.events == self.events_of_kind("session_deleted")
    }

    fn say(&mut self, lsn: Lsn, role: Role, text: &str) {
        self.transcript.push(TranscriptEntry {
            lsn,
            role,
            text: text.to_owned(),
        });
    }

    /// The session's id.
    #[must_use]
    pub fn session_id(&self) -> Uuid {
        self.session
    }

    /// The model named by the latest `SessionStarted`.
    #[must_use]
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The working directory named by the latest `SessionStarted`.
    #[must_use]
    pub fn cwd(&self) -> Option<&str> {
        self.cwd.as_deref()
    }

    /// The title given by the latest `SessionStarted`, if it gave one.
    #[must_use]
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The LSN of the session's first record (`None` before any).
    #[must_use]
    pub fn first_lsn(&self) -> Option<Lsn> {
        self.span.map(|s| s.first_lsn)
    }

    /// The LSN of the session's last record (`None` before any).
    #[must_use]
    pub fn last_lsn(&self) -> Option<Lsn> {
        self.span.map(|s| s.last_lsn)
    }

    /// When the first record was appended, µs since the Unix epoch.
    #[must_use]
    pub fn first_timestamp_us(&self) -> Option<u64> {
        self.span.map(|s| s.first_timestamp_us)
    }

    /// When the last record was appended, µs since the Unix epoch.
    #[must_use]
    pub fn last_timestamp_us(&self) -> Option<u64> {
        self.span.map(|s| s.last_timestamp_us)
    }

    /// The session's events: those applied, ephemeral ones included, and
    /// tombstones (`SessionDeleted`) not (what a read of the session
    /// returns; [`events_of_kind`](Self::events_of_kind) counts those).
    #[must_use]
    pub fn events(&self) -> u64 {
        self.events.saturating_sub(self.tombstones())
    }

    /// The session's durable events: [`events`](Self::events) less the
    /// ephemeral ones.
    #[must_use]
    pub fn durable_events(&self) -> u64 {
        self.durable_events.saturating_sub(self.tombstones())
    }

    fn tombstones(&self) -> u64 {
        self.events_of_kind("session_deleted")
    }

    /// Records of this session a replay skipped because this build cannot
    /// decode them (event kinds written by a newer build).
    #[must_use]
    pub fn skipped_records(&self) -> u64 {
        self.skipped
    }

    /// Events applied of one kind (a name from [`logbook_bus::KINDS`]; 0
    /// for any other string).
    #[must_use]
    pub fn events_of_kind(&self, kind: &str) -> u64 {
        KINDS
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.by_kind.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// `(kind, count)` for every kind seen at least once, in tag order.
    pub fn kind_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS
            .iter()
            .zip(self.by_kind.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
    }

    /// User messages, assistant texts and thinking blocks, in log order.
    #[must_use]
    pub fn transcript(&self) -> &[TranscriptEntry] {
        &self.transcript
    }

    /// Every tool call, in the order its id first appeared.
    pub fn tool_calls(&self) -> impl ExactSizeIterator<Item = &ToolCall> {
        self.tools.iter()
    }

    /// The tool call with this id.
    #[must_use]
    pub fn tool_call(&self, tool_call_id: &str) -> Option<&ToolCall> {
        self.tools.get(tool_call_id)
    }

    /// Tool calls started and never completed, ordered by the LSN of their
    /// start: what was running when the log stops.
    #[must_use]
    pub fn pending_tool_calls(&self) -> Vec<&ToolCall> {
        self.tools.pending()
    }

    /// Token accounting.
    #[must_use]
    pub fn tokens(&self) -> &TokenAccounts {
        &self.tokens
    }

    /// `CompactionStarted`, `CompactionCompleted`, `CompactionFailed` and
    /// `ContextTruncated` records, in log order.
    #[must_use]
    pub fn compaction(&self) -> &[EventRecord] {
        &self.compaction
    }

    /// `RlmComplete` and `RlmSubcallFallback` records, in log order.
    #[must_use]
    pub fn rlm(&self) -> &[EventRecord] {
        &self.rlm
    }

    /// Every `SessionResumed` record, in log order.
    #[must_use]
    pub fn resumptions(&self) -> &[Resumption] {
        &self.resumptions
    }

    /// The session this one was forked from, and the last LSN of that
    /// session its history includes (its first `SessionForked` record), if
    /// it is a fork ([`fork`](crate::fork)).
    #[must_use]
    pub fn forked_from(&self) -> Option<(Uuid, Lsn)> {
        self.forked_from
    }

    /// The status the records alone give: `Running`, `Completed` or
    /// `Failed`, never `Interrupted` (see [`status_given`](Self::status_given)).
    #[must_use]
    pub fn status(&self) -> &SessionStatus {
        &self.status
    }

    /// The status once the log's writer is taken into account: a session
    /// without a terminal event is [`SessionStatus::Interrupted`] when no
    /// live writer holds the log (`writer_live` is false; see
    /// [`logbook_wal::is_locked`]), and `Running` while one does.
    ///
    /// A live writer that has not (yet) resumed the session cannot be told
    /// apart from one still running it: the session is then `Running`.
    #[must_use]
    pub fn status_given(&self, writer_live: bool) -> SessionStatus {
        self.status.given(writer_live)
    }

    /// The LSN of the terminal event that gave the current status, while
    /// the status is terminal.
    #[must_use]
    pub fn ended_at(&self) -> Option<Lsn> {
        self.ended_at
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use logbook_bus::{TokenDelta, TokenSource};
    use proptest::prelude::*;

    use super::*;
    use crate::testgen::{SESSION, arb_event, event, records};

    fn fold(events: Vec<SessionEvent>) -> SessionState {
        let mut state = SessionState::new(SESSION);
        for r in records(events) {
            state.apply(&r);
        }
        state
    }

    fn start(id: &str) -> SessionEvent {
        SessionEvent::ToolCallStart {
            tool_call_id: id.into(),
            name: "bash".into(),
            arguments: "{\"cmd\":\"ls\"}".into(),
        }
    }

    fn complete(id: &str) -> SessionEvent {
        SessionEvent::ToolCallComplete {
            tool_call_id: id.into(),
            name: "bash".into(),
            output: "a b".into(),
            success: true,
            duration_ms: 4,
        }
    }

    fn started() -> SessionEvent {
        SessionEvent::SessionStarted {
            model: "big".into(),
            cwd: "/w".into(),
            title: Some("t".into()),
        }
    }

    // ---- One example per status --------------------------------------

    #[test]
    fn running_while_a_writer_is_live_interrupted_without_one() {
        let s = fold(vec![
            started(),
            SessionEvent::UserMessage("go".into()),
            start("t1"),
        ]);
        assert_eq!(s.status(), &SessionStatus::Running);
        assert_eq!(s.status_given(true), SessionStatus::Running);
        assert_eq!(s.status_given(false), SessionStatus::Interrupted);
        assert_eq!(s.ended_at(), None);
        let pending: Vec<_> = s.pending_tool_calls().iter().map(|c| &c.id).collect();
        assert_eq!(pending, ["t1"]);
    }

    #[test]
    fn completed() {
        let s = fold(vec![
            started(),
            start("t1"),
            complete("t1"),
            SessionEvent::Done,
        ]);
        assert_eq!(s.status(), &SessionStatus::Completed);
        assert_eq!(s.status_given(false), SessionStatus::Completed);
        assert_eq!(s.ended_at(), Some(4));
        assert!(s.pending_tool_calls().is_empty());
        let call = s.tool_call("t1").unwrap();
        assert_eq!(call.completion.as_ref().unwrap().output, "a b");
        assert_eq!(call.start.as_ref().unwrap().arguments, "{\"cmd\":\"ls\"}");
    }

    #[test]
    fn failed() {
        let s = fold(vec![started(), SessionEvent::Error("model gone".into())]);
        assert_eq!(s.status(), &SessionStatus::Failed("model gone".into()));
        assert_eq!(
            s.status_given(false),
            SessionStatus::Failed("model gone".into())
        );
        assert_eq!(s.ended_at(), Some(2));
    }

    #[test]
    fn resumed_after_an_interruption_then_completed() {
        let mut s = fold(vec![started(), start("t1")]);
        assert_eq!(s.status_given(false), SessionStatus::Interrupted);
        for r in [
            (3, SessionEvent::SessionResumed { from_lsn: 2 }),
            (4, complete("t1")),
        ] {
            s.apply(&EventRecord {
                lsn: r.0,
                timestamp_us: 9_000,
                session: SESSION,
                event: r.1,
            });
        }
        // Re-opened: interrupted again if its new writer dies now.
        assert_eq!(s.status_given(false), SessionStatus::Interrupted);
        assert_eq!(s.resumptions().len(), 1);
        assert_eq!(s.resumptions()[0].lsn, 3);
        assert_eq!(s.resumptions()[0].from_lsn, 2);
        assert!(s.pending_tool_calls().is_empty());
        s.apply(&EventRecord {
            lsn: 5,
            timestamp_us: 9_500,
            session: SESSION,
            event: SessionEvent::Done,
        });
        assert_eq!(s.status_given(false), SessionStatus::Completed);
        assert_eq!(s.first_lsn(), Some(1));
        assert_eq!(s.last_lsn(), Some(5));
        assert_eq!(s.last_timestamp_us(), Some(9_500));
    }

    #[test]
    fn resumed_after_a_failure_runs_again() {
        let s = fold(vec![
            SessionEvent::Error("x".into()),
            SessionEvent::SessionResumed { from_lsn: 1 },
        ]);
        assert_eq!(s.status(), &SessionStatus::Running);
        assert_eq!(s.ended_at(), None);
    }

    #[test]
    fn late_events_after_done_keep_it_completed() {
        let s = fold(vec![
            SessionEvent::Done,
            SessionEvent::TokenUsage(TokenDelta {
                source: TokenSource::Root,
                model: "m".into(),
                prompt_tokens: 1,
                completion_tokens: 2,
                duration_ms: 0,
            }),
            SessionEvent::UserMessage("anyone?".into()),
        ]);
        assert_eq!(s.status_given(false), SessionStatus::Completed);
        // …but what they say is still recorded.
        assert_eq!(s.tokens().total().total, 3);
        assert_eq!(s.transcript().len(), 1);
    }

    #[test]
    fn identity_transcript_and_histories() {
        let id = Uuid::from_u128(7);
        let s = fold(vec![
            started(),
            SessionEvent::UserMessage("q".into()),
            SessionEvent::ThinkingComplete("hmm".into()),
            SessionEvent::TextComplete("a".into()),
            SessionEvent::CompactionStarted {
                trace_id: id,
                reason: "full".into(),
                before_tokens: 9,
                budget: 5,
            },
            SessionEvent::ContextTruncated {
                trace_id: id,
                dropped_tokens: 4,
                kept_messages: 2,
                archive_ref: None,
            },
            SessionEvent::RlmSubcallFallback {
                requested_model: "a".into(),
                fallback_model: "b".into(),
                reason: "quota".into(),
            },
        ]);
        assert_eq!(s.session_id(), SESSION);
        assert_eq!(
            (s.model(), s.cwd(), s.title()),
            (Some("big"), Some("/w"), Some("t"))
        );
        let lines: Vec<_> = s
            .transcript()
            .iter()
            .map(|e| (e.lsn, e.role, e.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (2, Role::User, "q"),
                (3, Role::Thinking, "hmm"),
                (4, Role::Assistant, "a")
            ]
        );
        let kinds: Vec<_> = s.compaction().iter().map(|r| r.event.kind()).collect();
        assert_eq!(kinds, ["compaction_started", "context_truncated"]);
        assert_eq!(s.rlm()[0].lsn, 7);
        assert_eq!(s.events_of_kind("user_message"), 1);
        assert_eq!(s.events_of_kind("no such kind"), 0);
        assert_eq!(s.kind_counts().count(), 7);
    }

    #[test]
    fn records_of_other_sessions_are_ignored() {
        let mut s = SessionState::new(SESSION);
        s.apply(&EventRecord {
            lsn: 1,
            timestamp_us: 1,
            session: Uuid::from_u128(99),
            event: SessionEvent::Done,
        });
        assert_eq!(s, SessionState::new(SESSION));
    }

    // ---- Properties -----------------------------------------------------

    /// The parts of the state that only durable events may change.
    fn durable_view(s: &SessionState) -> impl PartialEq + std::fmt::Debug + '_ {
        (
            (s.model(), s.cwd(), s.title()),
            s.transcript(),
            s.tool_calls().collect::<Vec<_>>(),
            s.tokens(),
            (s.compaction(), s.rlm()),
            (s.status(), s.ended_at(), s.durable_events()),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Never panics, whatever the records, their LSNs, times and sessions.
        #[test]
        fn never_panics(
            records in proptest::collection::vec(
                (any::<u64>(), any::<u64>(), any::<bool>(), arb_event()), 0..64)
        ) {
            let mut s = SessionState::new(SESSION);
            for (lsn, timestamp_us, ours, event) in records {
                let session = if ours { SESSION } else { Uuid::from_u128(1) };
                s.apply(&EventRecord { lsn, timestamp_us, session, event });
                let _ = s.pending_tool_calls();
                let _ = s.status_given(false);
            }
        }

        /// Token totals are the sums of the inputs, per model and per
        /// source; `UsageReport`s are summed apart and never mixed in.
        #[test]
        fn token_totals_are_sums_of_inputs(events in proptest::collection::vec(event(), 0..96)) {
            let mut by_model: BTreeMap<String, (u128, u128, u64)> = BTreeMap::new();
            let mut by_source: BTreeMap<TokenSource, (u128, u128, u64)> = BTreeMap::new();
            let (mut legacy_p, mut legacy_c, mut legacy_n) = (0u128, 0u128, 0u64);
            for e in &events {
                match e {
                    SessionEvent::TokenUsage(d) => {
                        for t in [
                            by_model.entry(d.model.clone()).or_default(),
                            by_source.entry(d.source).or_default(),
                        ] {
                            t.0 += u128::from(d.prompt_tokens);
                            t.1 += u128::from(d.completion_tokens);
                            t.2 += 1;
                        }
                    }
                    SessionEvent::UsageReport { prompt_tokens, completion_tokens, .. } => {
                        legacy_p += u128::from(*prompt_tokens);
                        legacy_c += u128::from(*completion_tokens);
                        legacy_n += 1;
                    }
                    _ => {}
                }
            }
            let s = fold(events);
            let sat = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
            let check = |t: crate::TokenTotals, (p, c, n): (u128, u128, u64)| {
                t.prompt == sat(p) && t.completion == sat(c) && t.requests == n
                    && (p + c > u128::from(u64::MAX) || t.total == sat(p + c))
            };
            let models: Vec<_> = s.tokens().by_model().map(|(m, _)| m.to_owned()).collect();
            prop_assert_eq!(models, by_model.keys().cloned().collect::<Vec<_>>());
            for (m, want) in &by_model {
                prop_assert!(check(s.tokens().model(m), *want), "model {}", m);
            }
            let sources: Vec<_> = s.tokens().by_source().map(|(src, _)| src).collect();
            prop_assert_eq!(sources, by_source.keys().copied().collect::<Vec<_>>());
            for (src, want) in &by_source {
                prop_assert!(check(s.tokens().source(*src), *want), "source {}", src);
            }
            let all = by_model.values().fold((0, 0, 0), |a, t| (a.0 + t.0, a.1 + t.1, a.2 + t.2));
            prop_assert!(check(s.tokens().total(), all));
            prop_assert!(check(s.tokens().legacy(), (legacy_p, legacy_c, legacy_n)));
        }

        /// Pending = started − completed, by id: a call is pending iff the
        /// last start-or-complete event naming it is a start; pending calls
        /// come ordered by that start's LSN.
        #[test]
        fn pending_is_started_minus_completed(events in proptest::collection::vec(event(), 0..96)) {
            let mut last: HashMap<String, Option<u64>> = HashMap::new();
            for (lsn, e) in (1u64..).zip(&events) {
                match e {
                    SessionEvent::ToolCallStart { tool_call_id, .. } => {
                        last.insert(tool_call_id.clone(), Some(lsn));
                    }
                    SessionEvent::ToolCallComplete { tool_call_id, .. } => {
                        last.insert(tool_call_id.clone(), None);
                    }
                    _ => {}
                }
            }
            let mut want: Vec<(u64, String)> =
                last.into_iter().filter_map(|(id, at)| at.map(|lsn| (lsn, id))).collect();
            want.sort();
            let s = fold(events);
            let got: Vec<(u64, String)> = s
                .pending_tool_calls()
                .iter()
                .map(|c| (c.start.as_ref().unwrap().lsn, c.id.clone()))
                .collect();
            prop_assert_eq!(got, want);
        }

        /// The status follows the documented rule, the transcript holds
        /// the conversation in order, and every record is counted.
        #[test]
        fn status_transcript_and_counts(events in proptest::collection::vec(event(), 0..96)) {
            let mut status = SessionStatus::Running;
            let mut transcript = Vec::new();
            for e in &events {
                match e {
                    SessionEvent::Done => status = SessionStatus::Completed,
                    SessionEvent::Error(m) => status = SessionStatus::Failed(m.clone()),
                    SessionEvent::SessionResumed { .. } => status = SessionStatus::Running,
                    SessionEvent::UserMessage(t) => transcript.push((Role::User, t.clone())),
                    SessionEvent::TextComplete(t) => transcript.push((Role::Assistant, t.clone())),
                    SessionEvent::ThinkingComplete(t) => transcript.push((Role::Thinking, t.clone())),
                    _ => {}
                }
            }
            let n = events.len() as u64;
            // Tombstones are folded, not counted as the session's events.
            let tombstones = events.iter().filter(|e| e.is_tombstone()).count() as u64;
            let durable = events.iter().filter(|e| e.is_durable()).count() as u64;
            let s = fold(events);
            prop_assert_eq!(s.status(), &status);
            let got: Vec<_> = s.transcript().iter().map(|t| (t.role, t.text.clone())).collect();
            prop_assert_eq!(got, transcript);
            prop_assert_eq!(s.events(), n - tombstones);
            prop_assert_eq!(s.durable_events(), durable - tombstones);
            prop_assert_eq!(s.kind_counts().map(|(_, c)| c).sum::<u64>(), n);
            prop_assert_eq!(s.last_lsn(), (n > 0).then_some(n));
        }

        /// Ephemeral events, wherever they fall, change nothing but the
        /// counts and the LSN span.
        #[test]
        fn ephemeral_events_change_no_state(
            events in proptest::collection::vec(event(), 0..64),
            noise in proptest::collection::vec((any::<prop::sample::Index>(), arb_event()), 0..32),
        ) {
            // Durable events keep their LSNs; the noise goes in between.
            let at = |i: usize| 100 * (i as u64 + 1);
            let record = |lsn, event| EventRecord { lsn, timestamp_us: lsn, session: SESSION, event };
            let quiet_records: Vec<_> =
                events.into_iter().enumerate().map(|(i, e)| record(at(i), e)).collect();
            let mut noisy_records = quiet_records.clone();
            for (i, e) in noise.into_iter().filter(|(_, e)| !e.is_durable()) {
                noisy_records.push(record(at(i.index(quiet_records.len() + 1)) - 50, e));
            }
            noisy_records.sort_by_key(|r| r.lsn);
            let (mut quiet, mut noisy) = (SessionState::new(SESSION), SessionState::new(SESSION));
            quiet_records.iter().for_each(|r| quiet.apply(r));
            noisy_records.iter().for_each(|r| noisy.apply(r));
            prop_assert_eq!(durable_view(&quiet), durable_view(&noisy));
        }
    }
}
