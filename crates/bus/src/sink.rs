//! The durable side of the bus: the [`DurableSink`] protocol and two small sinks.

use std::io;
use std::sync::{Mutex, PoisonError};

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
}

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
