//! The durable side of the bus: the [`DurableSink`] protocol and two small sinks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use crate::SessionEvent;

/// Where [`SessionBus`](crate::SessionBus) persists durable events.
///
/// # Protocol
///
/// * **Who calls it:** [`SessionBus::emit`](crate::SessionBus::emit) and
///   [`SessionBus::try_emit`](crate::SessionBus::try_emit), on the emitting
///   thread, for every event whose [`SessionEvent::is_durable`] is true and
///   for no other. Calls may come from many threads at once (buses are
///   cloned across tasks), so implementations are `Send + Sync`.
/// * **When:** synchronously, *before* the event is broadcast to
///   subscribers, so no observer ever sees a durable event that the sink
///   has not been asked to keep.
/// * **What `Ok(())` promises:** the event is as durable as the sink
///   advertises. For `logbook_wal`'s sink under its default policy that
///   means the record has been written and `fdatasync`ed: it survives a
///   process crash and a power cut. A sink that batches must say so.
/// * **What `Err` means:** the event may or may not be persisted; the caller
///   must not assume either. [`SessionBus::emit`](crate::SessionBus::emit)
///   logs the error at `warn` and still broadcasts; callers that must know
///   use [`SessionBus::try_emit`](crate::SessionBus::try_emit). After an
///   error a sink may keep failing (a poisoned log does); retrying the same
///   event is allowed but may duplicate it if the first write did land.
///
/// # The async path
///
/// [`SessionBus::emit_async`](crate::SessionBus::emit_async) calls
/// [`DurableSink::write_async`] instead, from a task. Its future resolves
/// with exactly what `write` would have returned; until then the task
/// yields, and the thread runs other tasks. A sink that only implements
/// `write` gets a provided `write_async` that runs `write` on tokio's
/// blocking pool (`spawn_blocking`): it never stalls a runtime worker, but
/// costs a hand-off to a pool thread and back per event, and a pool thread
/// blocked for each event in flight. A sink that can queue an event and be
/// told when it is durable (as `logbook_wal`'s does) overrides it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use logbook_bus::{DurableSink, MemorySink, SessionBus, SessionEvent};
///
/// let sink = Arc::new(MemorySink::default());
/// let bus = SessionBus::new(8).with_durable_sink(sink.clone());
/// bus.emit(SessionEvent::Thinking); // ephemeral: not written
/// bus.emit(SessionEvent::Done);     // durable: written first
/// assert_eq!(sink.events(), vec![SessionEvent::Done]);
/// ```
pub trait DurableSink: Send + Sync + 'static {
    /// Persist one durable event.
    ///
    /// # Errors
    ///
    /// Any I/O error of the underlying store; see the trait docs for what
    /// the caller may assume afterwards.
    fn write(&self, event: &SessionEvent) -> io::Result<()>;

    /// Persist one durable event without blocking the calling thread; the
    /// future resolves with what [`DurableSink::write`] would have returned.
    ///
    /// The provided implementation runs `write` on tokio's blocking pool
    /// when called inside a tokio runtime (so no worker thread waits for
    /// the disk), and inline otherwise (no runtime: nothing to stall).
    ///
    /// # Errors
    ///
    /// As [`DurableSink::write`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not cancel the write: with the provided
    /// implementation the blocking call runs to its end; an overriding sink
    /// documents what a dropped future leaves behind (for `logbook_wal`'s:
    /// the record stays queued and becomes durable with its batch).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use std::sync::Arc;
    /// use logbook_bus::{DurableSink, MemorySink, SessionEvent};
    ///
    /// let sink = Arc::new(MemorySink::default());
    /// sink.clone().write_async(SessionEvent::Done).await?; // `write`, off the worker
    /// assert_eq!(sink.events(), vec![SessionEvent::Done]);
    /// # Ok(())
    /// # }
    /// ```
    fn write_async(self: Arc<Self>, event: SessionEvent) -> WriteFuture {
        Box::pin(async move {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime
                    .spawn_blocking(move || self.write(&event))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e))),
                Err(_) => self.write(&event),
            }
        })
    }
}

/// The future of [`DurableSink::write_async`].
pub type WriteFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'static>>;

/// A sink that drops everything: the default of a new bus.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopSink;

impl DurableSink for NoopSink {
    fn write(&self, _event: &SessionEvent) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that keeps events in memory, for tests and examples.
///
/// `Ok` promises only that the event is in this process's memory.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<SessionEvent>>,
}

impl MemorySink {
    /// A snapshot of every event written so far, in write order.
    #[must_use]
    pub fn events(&self) -> Vec<SessionEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl DurableSink for MemorySink {
    fn write(&self, event: &SessionEvent) -> io::Result<()> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone());
        Ok(())
    }
}
