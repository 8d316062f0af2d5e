//! [`SessionBus`]: one emission point, two transports.

use std::io;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::{DurableSink, NoopSink, SessionEvent};

/// Unified event bus for a single session.
///
/// See the [crate docs](crate) for the ephemeral-vs-durable model.
///
/// `SessionBus` is cheap to clone; every clone shares the same broadcast
/// channel, durable sink, and optional legacy mpsc forwarder.
///
/// # Examples
///
/// Fan out a single event to a broadcast subscriber and a durable sink:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::{Arc, Mutex};
/// use logbook_bus::{
///     DurableSink, SessionBus, SessionEvent, TokenDelta, TokenSource,
/// };
///
/// struct Mem(Arc<Mutex<usize>>);
/// impl DurableSink for Mem {
///     fn write(&self, _e: &SessionEvent) -> std::io::Result<()> {
///         *self.0.lock().unwrap() += 1;
///         Ok(())
///     }
/// }
///
/// let counter = Arc::new(Mutex::new(0));
/// let sink = Arc::new(Mem(counter.clone()));
/// let bus = SessionBus::new(64).with_durable_sink(sink);
/// let mut rx = bus.subscribe();
///
/// bus.emit(SessionEvent::TokenUsage(TokenDelta {
///     source: TokenSource::Root,
///     model: "m".into(),
///     prompt_tokens: 10, completion_tokens: 5, duration_ms: 0,
/// }));
///
/// let ev = rx.recv().await.unwrap();
/// assert!(ev.is_durable());
/// assert_eq!(*counter.lock().unwrap(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct SessionBus {
    tx: broadcast::Sender<SessionEvent>,
    /// The ephemeral events only ([`SessionBus::subscribe_ephemeral`]).
    ephemeral: broadcast::Sender<SessionEvent>,
    sink: Arc<dyn DurableSink>,
    legacy: Option<mpsc::Sender<SessionEvent>>,
}

impl std::fmt::Debug for SessionBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBus")
            .field("subscribers", &self.tx.receiver_count())
            .field("legacy", &self.legacy.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionBus {
    /// Construct a new bus with the given broadcast channel capacity.
    ///
    /// `capacity` controls how many pending events the broadcast channel
    /// retains per subscriber before emitting `RecvError::Lagged`. 64–256 is
    /// typical for interactive TUIs.
    ///
    /// Starts with [`NoopSink`] and no legacy forwarder. Use
    /// [`Self::with_durable_sink`] and [`Self::with_legacy_mpsc`] to attach
    /// either.
    ///
    /// # Panics
    ///
    /// Panics if `capacity == 0` (same contract as `broadcast::channel`).
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::SessionBus;
    ///
    /// let bus = SessionBus::new(16);
    /// assert_eq!(bus.subscriber_count(), 0);
    /// ```
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        let (ephemeral, _) = broadcast::channel(capacity);
        Self {
            tx,
            ephemeral,
            sink: Arc::new(NoopSink),
            legacy: None,
        }
    }

    /// Attach a durable write-ahead sink for `is_durable()` events.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use logbook_bus::{NoopSink, SessionBus};
    ///
    /// let bus = SessionBus::new(8).with_durable_sink(Arc::new(NoopSink));
    /// assert_eq!(bus.subscriber_count(), 0);
    /// ```
    #[must_use]
    pub fn with_durable_sink(mut self, sink: Arc<dyn DurableSink>) -> Self {
        self.sink = sink;
        self
    }

    /// Forward every emission to an existing legacy `mpsc::Sender` for
    /// backward compatibility with code paths that have not migrated.
    ///
    /// Emission is non-blocking: uses `try_send` and logs (does not
    /// propagate) failures. This preserves the lossy semantics the legacy
    /// channel already had.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use logbook_bus::{SessionBus, SessionEvent};
    ///
    /// let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    /// let bus = SessionBus::new(8).with_legacy_mpsc(tx);
    /// bus.emit(SessionEvent::Thinking);
    /// let ev = rx.recv().await.unwrap();
    /// assert!(matches!(ev, SessionEvent::Thinking));
    /// # }
    /// ```
    #[must_use]
    pub fn with_legacy_mpsc(mut self, tx: mpsc::Sender<SessionEvent>) -> Self {
        self.legacy = Some(tx);
        self
    }

    /// Subscribe to the ephemeral broadcast stream.
    ///
    /// All events — ephemeral and durable — are republished here for live
    /// UIs. Slow consumers will see `RecvError::Lagged(n)`; the durable sink
    /// is unaffected.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::{SessionBus, SessionEvent};
    ///
    /// let bus = SessionBus::new(1);
    /// let mut rx = bus.subscribe();
    /// bus.emit(SessionEvent::Thinking);
    /// bus.emit(SessionEvent::Done);
    /// // Capacity 1: the subscriber lagged past the first event.
    /// assert!(matches!(rx.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Lagged(1))));
    /// assert_eq!(rx.try_recv().unwrap(), SessionEvent::Done);
    /// ```
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.tx.subscribe()
    }

    /// Subscribe to the ephemeral events only (progress signals the durable
    /// sink never sees), on a channel of their own with the bus's
    /// capacity: durable events take no room in it, and a
    /// `RecvError::Lagged(n)` counts `n` ephemeral events exactly. For a
    /// subscriber that takes durable events from the log instead
    /// (`logbook_replay::LosslessSubscriber`).
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::{SessionBus, SessionEvent};
    ///
    /// let bus = SessionBus::new(1);
    /// let mut rx = bus.subscribe_ephemeral();
    /// bus.emit(SessionEvent::Thinking);
    /// bus.emit(SessionEvent::Done); // durable: not on this channel
    /// bus.emit(SessionEvent::TextChunk("a".into()));
    /// // Capacity 1: one ephemeral event lost, the durable one never sent.
    /// assert!(matches!(rx.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Lagged(1))));
    /// assert_eq!(rx.try_recv().unwrap(), SessionEvent::TextChunk("a".into()));
    /// ```
    #[must_use]
    pub fn subscribe_ephemeral(&self) -> broadcast::Receiver<SessionEvent> {
        self.ephemeral.subscribe()
    }

    /// Current number of active broadcast subscribers.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::SessionBus;
    ///
    /// let bus = SessionBus::new(4);
    /// let _rx = bus.subscribe();
    /// assert_eq!(bus.subscriber_count(), 1);
    /// ```
    #[must_use]
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Publish one event.
    ///
    /// For durable events the sink is written first (synchronously); then
    /// the event is broadcast. A sink failure is logged at `warn` and does
    /// not prevent the broadcast — observers still see the event even if
    /// durable persistence fell over. Use [`Self::try_emit`] to learn of it.
    ///
    /// Sending on an empty broadcast channel is not an error; it simply
    /// means no live subscribers.
    ///
    /// # Examples
    ///
    /// ```
    /// use logbook_bus::{SessionBus, SessionEvent};
    ///
    /// let bus = SessionBus::new(4);
    /// bus.emit(SessionEvent::Done); // no subscribers → still ok
    /// ```
    pub fn emit(&self, event: SessionEvent) {
        if let Err(error) = self.try_emit(event) {
            tracing::warn!(%error, "durable sink failed; event broadcast anyway");
        }
    }

    /// Publish one event like [`Self::emit`], but return the sink's error.
    ///
    /// The event is broadcast and forwarded whatever the sink said, exactly
    /// as with `emit`; the difference is only that a caller who must know
    /// whether a durable event was persisted learns it here.
    ///
    /// # Errors
    ///
    /// The [`DurableSink::write`] error, for a durable event the sink failed
    /// to persist. Ephemeral events never fail.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use logbook_bus::{DurableSink, SessionBus, SessionEvent};
    ///
    /// struct Broken;
    /// impl DurableSink for Broken {
    ///     fn write(&self, _: &SessionEvent) -> std::io::Result<()> {
    ///         Err(std::io::Error::other("disk on fire"))
    ///     }
    /// }
    ///
    /// let bus = SessionBus::new(4).with_durable_sink(Arc::new(Broken));
    /// assert!(bus.try_emit(SessionEvent::Thinking).is_ok()); // ephemeral
    /// assert!(bus.try_emit(SessionEvent::Done).is_err());
    /// ```
    pub fn try_emit(&self, event: SessionEvent) -> io::Result<()> {
        let persisted = if event.is_durable() {
            self.sink.write(&event)
        } else {
            Ok(())
        };
        self.fan_out(event);
        persisted
    }

    /// Publish one event like [`Self::try_emit`], from a task: the wait for
    /// the durable sink yields the task instead of blocking its thread.
    ///
    /// A durable event is handed to [`DurableSink::write_async`] and
    /// broadcast (and forwarded to the legacy mpsc) only once that resolved,
    /// whatever it returned, exactly as `try_emit` does; an ephemeral event
    /// is broadcast at once. Events one task emits in sequence are persisted
    /// and broadcast in that order; events emitted concurrently (by several
    /// tasks sharing a bus, or by futures polled together) are persisted in
    /// the order the sink queued them and may be broadcast in another.
    ///
    /// # Errors
    ///
    /// The sink's error, for a durable event it failed to persist.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe for durable events: dropping the future while it
    /// waits for the sink means the event is **not broadcast** (nor
    /// forwarded), while the sink may still persist it (a `logbook_wal`
    /// sink keeps it queued and makes it durable with its batch). Ephemeral
    /// events are broadcast on the first poll.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use std::sync::Arc;
    /// use logbook_bus::{MemorySink, SessionBus, SessionEvent};
    ///
    /// let sink = Arc::new(MemorySink::default());
    /// let bus = SessionBus::new(8).with_durable_sink(sink.clone());
    /// let mut rx = bus.subscribe();
    /// bus.emit_async(SessionEvent::Done).await?; // persisted, then broadcast
    /// assert_eq!(sink.events(), vec![SessionEvent::Done]);
    /// assert_eq!(rx.recv().await.unwrap(), SessionEvent::Done);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn emit_async(&self, event: SessionEvent) -> io::Result<()> {
        let persisted = if event.is_durable() {
            self.sink.clone().write_async(event.clone()).await
        } else {
            Ok(())
        };
        self.fan_out(event);
        persisted
    }

    /// Forward to the legacy mpsc, then broadcast.
    fn fan_out(&self, event: SessionEvent) {
        if let Some(legacy) = &self.legacy {
            if let Err(error) = legacy.try_send(event.clone()) {
                tracing::warn!(%error, "legacy mpsc forwarder dropped an event");
            }
        }
        if !event.is_durable() && self.ephemeral.receiver_count() > 0 {
            // `send` fails only when there are no receivers: not an error.
            let _ = self.ephemeral.send(event.clone());
        }
        // `send` fails only when there are no receivers: not an error here.
        let _ = self.tx.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySink;
    use std::sync::Mutex;

    /// Records the order in which the sink and the subscriber saw events.
    struct OrderSink {
        log: Arc<Mutex<Vec<String>>>,
        rx: Mutex<broadcast::Receiver<SessionEvent>>,
    }

    impl DurableSink for OrderSink {
        fn write(&self, event: &SessionEvent) -> io::Result<()> {
            // At write time the event must not have been broadcast yet.
            let seen = self.rx.lock().unwrap().try_recv().ok();
            self.log.lock().unwrap().push(format!(
                "sink:{} broadcast-before:{}",
                event.kind(),
                seen.is_some()
            ));
            Ok(())
        }
    }

    #[test]
    fn durable_events_reach_the_sink_before_subscribers() {
        let bus = SessionBus::new(8);
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = OrderSink {
            log: log.clone(),
            rx: Mutex::new(bus.subscribe()),
        };
        let bus = bus.with_durable_sink(Arc::new(sink));
        bus.emit(SessionEvent::Done);
        assert_eq!(*log.lock().unwrap(), ["sink:done broadcast-before:false"]);
    }

    #[test]
    fn ephemeral_events_skip_the_sink() {
        let sink = Arc::new(MemorySink::default());
        let bus = SessionBus::new(8).with_durable_sink(sink.clone());
        let mut rx = bus.subscribe();
        bus.emit(SessionEvent::Thinking);
        bus.emit(SessionEvent::TextChunk("x".into()));
        assert!(sink.events().is_empty());
        assert_eq!(rx.try_recv().unwrap(), SessionEvent::Thinking);
        assert_eq!(rx.try_recv().unwrap(), SessionEvent::TextChunk("x".into()));
    }

    struct Failing;
    impl DurableSink for Failing {
        fn write(&self, _: &SessionEvent) -> io::Result<()> {
            Err(io::Error::other("nope"))
        }
    }

    #[test]
    fn sink_failure_still_broadcasts_and_forwards() {
        let (tx, mut legacy) = mpsc::channel(4);
        let bus = SessionBus::new(8)
            .with_durable_sink(Arc::new(Failing))
            .with_legacy_mpsc(tx);
        let mut rx = bus.subscribe();
        bus.emit(SessionEvent::Done);
        let err = bus.try_emit(SessionEvent::Error("x".into())).unwrap_err();
        assert_eq!(err.to_string(), "nope");
        assert_eq!(rx.try_recv().unwrap(), SessionEvent::Done);
        assert_eq!(rx.try_recv().unwrap(), SessionEvent::Error("x".into()));
        assert_eq!(legacy.try_recv().unwrap(), SessionEvent::Done);
        assert_eq!(legacy.try_recv().unwrap(), SessionEvent::Error("x".into()));
    }

    #[test]
    fn full_legacy_channel_is_not_an_error() {
        let (tx, mut legacy) = mpsc::channel(1);
        let bus = SessionBus::new(8).with_legacy_mpsc(tx);
        bus.try_emit(SessionEvent::Thinking).unwrap();
        bus.try_emit(SessionEvent::Done).unwrap(); // dropped by the full channel, logged
        assert_eq!(legacy.try_recv().unwrap(), SessionEvent::Thinking);
        assert!(legacy.try_recv().is_err());
    }

    #[test]
    fn clones_share_channel_and_sink() {
        let sink = Arc::new(MemorySink::default());
        let bus = SessionBus::new(8).with_durable_sink(sink.clone());
        let other = bus.clone();
        let mut rx = bus.subscribe();
        assert_eq!(other.subscriber_count(), 1);
        other.emit(SessionEvent::UserMessage("hi".into()));
        assert_eq!(
            rx.try_recv().unwrap(),
            SessionEvent::UserMessage("hi".into())
        );
        assert_eq!(sink.events(), vec![SessionEvent::UserMessage("hi".into())]);
    }

    #[test]
    #[should_panic(expected = "capacity")]
    fn zero_capacity_panics() {
        let _ = SessionBus::new(0);
    }
}
