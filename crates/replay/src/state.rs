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
    status: SessionStatus,
    ended_at: Option<Lsn>,
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
            status: SessionStatus::Running,
            ended_at: None,
        }
    }

    /// Fold one record into the state. Records of other sessions are
    /// ignored. Never panics, whatever the records say.
    pub fn apply(&mut self, record: &EventRecord) {
        if record.session != self.session {
            return;
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

    /// Events applied, ephemeral ones included.
    #[must_use]
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Durable events applied.
    #[must_use]
    pub fn durable_events(&self) -> u64 {
        self.durable_events
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
