//! A scripted agent: emits what a real runtime would, ephemeral progress
//! and durable facts, on a `SessionBus` whose durable sink is the log.
//!
//! It is async, as the demo's sessions are tokio tasks: every event goes
//! out with `SessionBus::emit_async` (a durable one resolves once the log
//! has fsynced it, without blocking the task's thread) and every pause is a
//! `tokio::time::sleep`.

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

    /// Emit one event; a durable one resolves once the log has it (fsynced).
    pub(crate) async fn emit(&self, event: SessionEvent) -> anyhow::Result<()> {
        let kind = event.kind();
        self.bus
            .emit_async(event)
            .await
            .with_context(|| format!("session {}: writing a {kind} event", self.id))
    }

    pub(crate) async fn pause(&self) {
        tokio::time::sleep(self.pace).await;
    }

    pub(crate) async fn start(&self, model: &str, repo: &str, title: &str) -> anyhow::Result<()> {
        self.emit(SessionEvent::SessionStarted {
            model: model.to_owned(),
            cwd: format!("{DEMO_CWD}{repo}"),
            title: Some(title.to_owned()),
        })
        .await
    }

    pub(crate) async fn user(&self, text: &str) -> anyhow::Result<()> {
        self.emit(SessionEvent::UserMessage(text.to_owned()))
            .await?;
        self.pause().await;
        Ok(())
    }

    pub(crate) async fn think(&self, text: &str) -> anyhow::Result<()> {
        self.emit(SessionEvent::Thinking).await?;
        self.pause().await;
        self.emit(SessionEvent::ThinkingComplete(text.to_owned()))
            .await
    }

    pub(crate) async fn usage(
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
        .await
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

    pub(crate) async fn tool_start(
        &self,
        id: &str,
        name: &str,
        arguments: &str,
    ) -> anyhow::Result<()> {
        self.emit(SessionEvent::ToolCallStart {
            tool_call_id: id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        })
        .await
    }

    pub(crate) async fn tool_end(
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
            })
            .await?;
        }
        self.emit(SessionEvent::ToolCallComplete {
            tool_call_id: id.to_owned(),
            name: name.to_owned(),
            output: output.to_owned(),
            success,
            duration_ms: 40 + output.len() as u64,
        })
        .await
    }

    /// A whole tool call: start, a pause, output, completion.
    pub(crate) async fn tool(
        &mut self,
        name: &str,
        arguments: &str,
        output: &str,
        success: bool,
    ) -> anyhow::Result<()> {
        let id = self.next_call(name);
        self.tool_start(&id, name, arguments).await?;
        self.pause().await;
        self.tool_end(&id, name, output, success).await?;
        self.pause().await;
        Ok(())
    }

    /// Stream an answer in chunks, then the whole message.
    pub(crate) async fn say(&self, text: &str) -> anyhow::Result<()> {
        for word in text.split_inclusive(' ') {
            self.emit(SessionEvent::TextChunk(word.to_owned())).await?;
        }
        self.emit(SessionEvent::TextComplete(text.to_owned()))
            .await?;
        self.pause().await;
        Ok(())
    }

    pub(crate) async fn done(&self) -> anyhow::Result<()> {
        self.emit(SessionEvent::Done).await
    }
}
