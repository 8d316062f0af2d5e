//! Tool calls as the log knows them: [`ToolCall`] and its parts, keyed by
//! the provider's `tool_call_id`.

use std::collections::HashMap;

use logbook_wal::Lsn;

/// One tool call, gathered from every event that names its
/// `tool_call_id`.
///
/// A call is **pending** when it was started and has not completed: the
/// tool was running when the log stops (or when the process died). A
/// `ToolCallStart` for an id that already completed starts it again (a
/// resumed runtime re-running the tool): the new start replaces the old
/// one and the earlier completion is forgotten, so the call is pending
/// until its next `ToolCallComplete`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolCall {
    /// The provider's id of the call.
    pub id: String,
    /// The tool's name, as the most recent event about the call gave it.
    pub name: String,
    /// The (latest) start; `None` if the log holds only later events of
    /// the call.
    pub start: Option<ToolStart>,
    /// The completion of the latest start, if it completed.
    pub completion: Option<ToolCompletion>,
    /// How many `ToolCallStart` events named this id.
    pub starts: u32,
    /// Metadata recorded about the call, in log order.
    pub metadata: Vec<ToolMetadata>,
    /// Approvals requested for the call, in log order.
    pub approvals: Vec<ApprovalRequest>,
}

impl ToolCall {
    fn new(id: &str, name: &str) -> ToolCall {
        ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            start: None,
            completion: None,
            starts: 0,
            metadata: Vec::new(),
            approvals: Vec::new(),
        }
    }

    /// Started and not completed.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.start.is_some() && self.completion.is_none()
    }
}

/// A `ToolCallStart`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolStart {
    /// Its LSN.
    pub lsn: Lsn,
    /// The arguments, as JSON text.
    pub arguments: String,
}

/// A `ToolCallComplete`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolCompletion {
    /// Its LSN.
    pub lsn: Lsn,
    /// The output given back to the model.
    pub output: String,
    /// Whether the tool succeeded.
    pub success: bool,
    /// Wall-clock duration of the call.
    pub duration_ms: u64,
}

/// A `ToolCallMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolMetadata {
    /// Its LSN.
    pub lsn: Lsn,
    /// The metadata, as JSON text.
    pub json: String,
}

/// An `ApprovalRequest` gating a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// Its LSN.
    pub lsn: Lsn,
    /// The approval's own id.
    pub approval_id: String,
    /// The tool, as the request names it.
    pub tool: String,
    /// What the tool wants to do.
    pub action: String,
    /// What it wants to do it to.
    pub resource: String,
    /// Why approval is needed.
    pub reason: String,
}

/// Tool calls in the order their ids first appeared, with an index by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ToolCalls {
    calls: Vec<ToolCall>,
    index: HashMap<String, usize>,
}

impl ToolCalls {
    /// The call with this id, created (with `name`) if it is new.
    fn entry(&mut self, id: &str, name: &str) -> &mut ToolCall {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                let i = self.calls.len();
                self.calls.push(ToolCall::new(id, name));
                self.index.insert(id.to_owned(), i);
                i
            }
        };
        // `i` came from the index, whose entries all point into `calls`.
        let call = &mut self.calls[i];
        if call.name != name {
            name.clone_into(&mut call.name);
        }
        call
    }

    pub(crate) fn start(&mut self, id: &str, name: &str, start: ToolStart) {
        let call = self.entry(id, name);
        call.start = Some(start);
        call.completion = None;
        call.starts = call.starts.saturating_add(1);
    }

    pub(crate) fn complete(&mut self, id: &str, name: &str, completion: ToolCompletion) {
        self.entry(id, name).completion = Some(completion);
    }

    pub(crate) fn metadata(&mut self, id: &str, name: &str, metadata: ToolMetadata) {
        self.entry(id, name).metadata.push(metadata);
    }

    pub(crate) fn approval(&mut self, id: &str, request: ApprovalRequest) {
        // An approval names the tool, not always the name the call uses:
        // keep the call's name unless the call is new.
        let name = self
            .get(id)
            .map_or_else(|| request.tool.clone(), |c| c.name.clone());
        self.entry(id, &name).approvals.push(request);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&ToolCall> {
        self.index.get(id).and_then(|&i| self.calls.get(i))
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, ToolCall> {
        self.calls.iter()
    }

    /// Pending calls, ordered by the LSN of their start.
    pub(crate) fn pending(&self) -> Vec<&ToolCall> {
        let mut pending: Vec<&ToolCall> = self.calls.iter().filter(|c| c.is_pending()).collect();
        pending.sort_by_key(|c| c.start.as_ref().map_or(0, |s| s.lsn));
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(lsn: Lsn) -> ToolStart {
        ToolStart {
            lsn,
            arguments: "{}".into(),
        }
    }

    fn done(lsn: Lsn) -> ToolCompletion {
        ToolCompletion {
            lsn,
            output: "ok".into(),
            success: true,
            duration_ms: 9,
        }
    }

    #[test]
    fn start_complete_restart() {
        let mut t = ToolCalls::default();
        t.start("b", "ls", start(5));
        t.start("a", "cat", start(3));
        assert_eq!(
            t.pending()
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"],
            "pending calls are ordered by start LSN, not by first appearance"
        );
        t.complete("a", "cat", done(7));
        assert_eq!(t.pending().len(), 1);
        t.start("a", "cat", start(8));
        let a = t.get("a").unwrap();
        assert!(a.is_pending());
        assert_eq!(a.starts, 2);
        assert_eq!(a.start.as_ref().unwrap().lsn, 8);
    }

    #[test]
    fn completion_without_start_is_not_pending() {
        let mut t = ToolCalls::default();
        t.complete("x", "ls", done(1));
        t.metadata(
            "y",
            "ls",
            ToolMetadata {
                lsn: 2,
                json: "{}".into(),
            },
        );
        assert!(t.pending().is_empty());
        assert_eq!(t.iter().count(), 2);
        assert!(t.get("x").unwrap().start.is_none());
    }
}
