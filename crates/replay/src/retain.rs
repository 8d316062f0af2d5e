//! What a retention pass does to sessions: [`retention_preview`] (the dry
//! run of `logbook retain`).

use std::path::Path;

use logbook_wal::{Retention, RetentionPlan};
use uuid::Uuid;

use crate::error::ReplayError;

/// What a retention policy would remove from a log, and which sessions it
/// touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPreview {
    /// The segments it removes.
    pub plan: RetentionPlan,
    /// Sessions with records on both sides of the cut: they would be cut
    /// short (and listed as truncated).
    pub cut_short: Vec<Uuid>,
    /// Sessions all of whose records it removes.
    pub removed: Vec<Uuid>,
}

/// What `policy` would remove from the log in `dir` now, and which
/// sessions that cuts short or removes whole: nothing is written (but a
/// listing may store summaries, derived files).
///
/// # Errors
///
/// [`ReplayError::Wal`] if the log cannot be read.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_wal::{Retention, Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions { segment_size: 4096, ..WalOptions::default() })?;
/// let id = uuid::Uuid::new_v4();
/// for i in 0..300 {
///     wal.append(id, &SessionEvent::UserMessage(format!("message {i}")))?;
/// }
/// let preview = logbook_replay::retention_preview(dir.path(), &Retention { before_lsn: Some(150), ..Retention::default() })?;
/// assert!(!preview.plan.is_empty());
/// assert_eq!(preview.cut_short, [id]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn retention_preview(
    dir: impl AsRef<Path>,
    policy: &Retention,
) -> Result<RetentionPreview, ReplayError> {
    let dir = dir.as_ref();
    let plan = logbook_wal::retention_plan(dir, policy)
        .map_err(|e| ReplayError::wal("planning retention in", dir, e))?;
    let mut out = RetentionPreview {
        plan,
        ..RetentionPreview::default()
    };
    if out.plan.is_empty() {
        return Ok(out);
    }
    let keep_from = out.plan.keep_from;
    let log = crate::list::list_sessions(dir)?;
    for s in log.sessions.iter().chain(&log.deleted) {
        if s.first_lsn < keep_from && s.last_lsn >= keep_from {
            out.cut_short.push(s.session);
        } else if s.last_lsn < keep_from {
            out.removed.push(s.session);
        }
    }
    Ok(out)
}
