//! A scripted agent: emits what a real runtime would, ephemeral progress
//! and durable facts, on a `SessionBus` whose durable sink is the log.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use logbook_bus::{DurableSink, SessionBus, SessionEvent, TokenDelta, TokenSource, ToolStream};
use uuid::Uuid;

/// The working directory every demo session names: how `logbook demo`
/// recognises a log it wrote (and may therefore remove).
pub(crate) const DEMO_CWD: &str = "/srv/logbook-demo/";

/// One simulated agent session.
pub(crate) struct Agent {
    pub(crate) id: Uuid,
    bus: SessionBus,
    pace: Duration,
    seq: u32,
}

impl Agent {
    pub(crate) fn new(id: Uuid, sink: Arc<dyn DurableSink>, pace: Duration) -> Agent {
        Agent {
            id,
            bus: SessionBus::new(64).with_durable_sink(sink),
            pace,
            seq: 0,
        }
    }

    /// Emit one event; a durable one returns once the log has it (fsynced).
    pub(crate) fn emit(&self, event: SessionEvent) -> anyhow::Result<()> {
        let kind = event.kind();
        self.bus
            .try_emit(event)
            .with_context(|| format!("session {}: writing a {kind} event", self.id))
    }

    pub(crate) fn pause(&self) {
        std::thread::sleep(self.pace);
    }

    pub(crate) fn start(&self, model: &str, repo: &str, title: &str) -> anyhow::Result<()> {
        self.emit(SessionEvent::SessionStarted {
            model: model.to_owned(),
            cwd: format!("{DEMO_CWD}{repo}"),
            title: Some(title.to_owned()),
        })
    }

    pub(crate) fn user(&self, text: &str) -> anyhow::Result<()> {
        self.emit(SessionEvent::UserMessage(text.to_owned()))?;
        self.pause();
        Ok(())
    }

    pub(crate) fn think(&self, text: &str) -> anyhow::Result<()> {
        self.emit(SessionEvent::Thinking)?;
        self.pause();
        self.emit(SessionEvent::ThinkingComplete(text.to_owned()))
    }

    pub(crate) fn usage(
        &self,
        source: TokenSource,
        model: &str,
        prompt: u64,
        completion: u64,
    ) -> anyhow::Result<()> {
        self.emit(SessionEvent::TokenUsage(TokenDelta {
            source,
            model: model.to_owned(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            duration_ms: 300 + completion * 3,
        }))
    }

    /// A new tool call id.
    pub(crate) fn next_call(&mut self, name: &str) -> String {
        self.seq += 1;
        format!(
            "call_{}_{}_{}",
            &self.id.simple().to_string()[..6],
            name,
            self.seq
        )
    }

    pub(crate) fn tool_start(&self, id: &str, name: &str, arguments: &str) -> anyhow::Result<()> {
        self.emit(SessionEvent::ToolCallStart {
            tool_call_id: id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        })
    }

    pub(crate) fn tool_end(
        &self,
        id: &str,
        name: &str,
        output: &str,
        success: bool,
    ) -> anyhow::Result<()> {
        for line in output.lines().take(3) {
            self.emit(SessionEvent::ToolOutputChunk {
                tool_call_id: id.to_owned(),
                name: name.to_owned(),
                stream: if success {
                    ToolStream::Stdout
                } else {
                    ToolStream::Stderr
                },
                chunk: format!("{line}\n"),
            })?;
        }
        self.emit(SessionEvent::ToolCallComplete {
            tool_call_id: id.to_owned(),
            name: name.to_owned(),
            output: output.to_owned(),
            success,
            duration_ms: 40 + output.len() as u64,
        })
    }

    /// A whole tool call: start, a pause, output, completion.
    pub(crate) fn tool(
        &mut self,
        name: &str,
        arguments: &str,
        output: &str,
        success: bool,
    ) -> anyhow::Result<()> {
        let id = self.next_call(name);
        self.tool_start(&id, name, arguments)?;
        self.pause();
        self.tool_end(&id, name, output, success)?;
        self.pause();
        Ok(())
    }

    /// Stream an answer in chunks, then the whole message.
    pub(crate) fn say(&self, text: &str) -> anyhow::Result<()> {
        for word in text.split_inclusive(' ') {
            self.emit(SessionEvent::TextChunk(word.to_owned()))?;
        }
        self.emit(SessionEvent::TextComplete(text.to_owned()))?;
        self.pause();
        Ok(())
    }

    pub(crate) fn done(&self) -> anyhow::Result<()> {
        self.emit(SessionEvent::Done)
    }
}
