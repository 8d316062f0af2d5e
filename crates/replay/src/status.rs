//! [`SessionStatus`] and the one transition rule that both the full fold
//! ([`SessionState`](crate::SessionState)) and the listing
//! ([`SessionSummary`](crate::SessionSummary)) use.

use std::fmt;

use logbook_bus::SessionEvent;

/// Where a session stands.
///
/// The fold over a session's records yields [`Running`](Self::Running),
/// [`Completed`](Self::Completed) or [`Failed`](Self::Failed);
/// [`Interrupted`](Self::Interrupted) is a judgement about the log as a
/// whole — no terminal event *and* no live writer — made by
/// [`SessionState::status_given`](crate::SessionState::status_given).
///
/// # Transitions
///
/// * A session starts `Running` with its first record.
/// * `Done` makes it `Completed`; `Error(msg)` makes it `Failed(msg)`. A
///   later terminal event replaces an earlier one (the last word wins).
/// * Terminal states are **sticky**: events after `Done` or `Error` (late
///   token accounting, metadata, even a user message) are applied to the
///   rest of the state but do not change the status.
/// * Only `SessionResumed` re-opens a terminal session: it is `Running`
///   again until its next terminal event.
/// * Ephemeral events never change the status.
///
/// # Examples
///
/// ```
/// use logbook_replay::SessionStatus;
///
/// assert_eq!(SessionStatus::Failed("boom".into()).to_string(), "failed: boom");
/// assert_eq!(SessionStatus::Interrupted.as_str(), "interrupted");
/// assert!(SessionStatus::Completed.is_terminal());
/// assert!(!SessionStatus::Interrupted.is_terminal());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionStatus {
    /// No terminal event yet, and (as far as anyone can tell) a writer may
    /// still be appending to it.
    Running,
    /// The session ended with `Done`.
    Completed,
    /// The session ended with `Error`; the message is the last error's.
    Failed(String),
    /// No terminal event, and no live writer holds the log: the process
    /// that ran it died. Resume it with [`resume`](crate::resume).
    Interrupted,
}

impl SessionStatus {
    /// A stable, lower-case name (`running`, `completed`, `failed`,
    /// `interrupted`) for tables, JSON and filters.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            SessionStatus::Running => "running",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed(_) => "failed",
            SessionStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the session ended with a terminal event (`Completed` or
    /// `Failed`).
    #[must_use]
    pub const fn is_terminal(&self) -> bool {
        matches!(self, SessionStatus::Completed | SessionStatus::Failed(_))
    }

    /// This status as seen from outside: a non-terminal session with no live
    /// writer is [`Interrupted`](Self::Interrupted).
    #[must_use]
    pub(crate) fn given(&self, writer_live: bool) -> SessionStatus {
        match self {
            SessionStatus::Running if !writer_live => SessionStatus::Interrupted,
            other => other.clone(),
        }
    }

    /// Apply one event to the status (the rule documented on the type).
    pub(crate) fn apply(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Done => *self = SessionStatus::Completed,
            SessionEvent::Error(msg) => *self = SessionStatus::Failed(msg.clone()),
            SessionEvent::SessionResumed { .. } => *self = SessionStatus::Running,
            _ => {}
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionStatus::Failed(msg) => write!(f, "failed: {msg}"),
            other => f.write_str(other.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(events: &[SessionEvent]) -> SessionStatus {
        let mut s = SessionStatus::Running;
        for e in events {
            s.apply(e);
        }
        s
    }

    #[test]
    fn transitions() {
        use SessionEvent as E;
        assert_eq!(fold(&[]), SessionStatus::Running);
        assert_eq!(fold(&[E::UserMessage("x".into())]), SessionStatus::Running);
        assert_eq!(fold(&[E::Done]), SessionStatus::Completed);
        assert_eq!(
            fold(&[E::Error("a".into())]),
            SessionStatus::Failed("a".into())
        );
        // Sticky after a terminal event…
        assert_eq!(
            fold(&[E::Done, E::UserMessage("late".into())]),
            SessionStatus::Completed
        );
        // …except for an explicit resumption, and the last terminal wins.
        assert_eq!(
            fold(&[E::Error("a".into()), E::SessionResumed { from_lsn: 1 }]),
            SessionStatus::Running
        );
        assert_eq!(
            fold(&[E::Error("a".into()), E::Done]),
            SessionStatus::Completed
        );
        assert_eq!(
            fold(&[E::Done, E::Error("b".into())]),
            SessionStatus::Failed("b".into())
        );
    }

    #[test]
    fn interrupted_only_without_a_writer() {
        assert_eq!(
            SessionStatus::Running.given(false),
            SessionStatus::Interrupted
        );
        assert_eq!(SessionStatus::Running.given(true), SessionStatus::Running);
        assert_eq!(
            SessionStatus::Completed.given(false),
            SessionStatus::Completed
        );
        assert_eq!(
            SessionStatus::Failed("x".into()).given(false),
            SessionStatus::Failed("x".into())
        );
    }
}
