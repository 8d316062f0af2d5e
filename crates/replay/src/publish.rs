//! Re-publishing a recorded session into a live bus: [`publish`] and
//! [`Pace`].

use std::path::Path;
use std::time::Duration;

use logbook_bus::{SessionBus, SessionEvent};
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, Sessions, scan};

/// How fast [`publish`] re-emits a recorded session.
///
/// # Examples
///
/// ```
/// use logbook_replay::Pace;
///
/// let pace = Pace::Recorded { speed: 10.0 }; // ten times faster than recorded
/// assert_ne!(pace, Pace::AsFastAsPossible);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Pace {
    /// No waiting between events.
    AsFastAsPossible,
    /// Wait between two events for the time between their records'
    /// timestamps divided by `speed` (`2.0` replays twice as fast, `0.5`
    /// half as fast). A clock that went backwards counts as no time, and
    /// the time a session spent dead before a `SessionResumed` is not
    /// replayed: a resumed session plays as one continuous run.
    Recorded {
        /// The speed factor: finite and above zero.
        speed: f64,
    },
}

/// Re-emit the recorded events of `session` from the log in `dir` into
/// `bus`, in LSN order, paced as `pace` says; returns how many events were
/// published.
///
/// A live UI subscribed to `bus` then shows the replayed session exactly as
/// it would a live one. Every decodable record of the session is emitted
/// with [`SessionBus::emit`], ephemeral events included; records this build
/// cannot decode are skipped. The log is streamed: memory does not grow
/// with the session.
///
/// **Use a bus without a durable sink** (the [`NoopSink`](logbook_bus::NoopSink)
/// of [`SessionBus::new`]): a bus whose sink is a `WalSink` would append
/// every replayed durable event to the log a second time.
///
/// This function **blocks** the calling thread while it waits
/// (`std::thread::sleep`); from async code, run it with
/// `tokio::task::spawn_blocking`. The events still reach async subscribers
/// at once: the bus's broadcast channel does not need a runtime to send.
///
/// # Errors
///
/// [`ReplayError::InvalidSpeed`] for a speed that is not finite and above
/// zero (checked before anything is read); [`ReplayError::UnknownSession`]
/// if the log has no record of `session`; otherwise as
/// [`session_state`](crate::session_state). On an error in the middle of
/// the log, the events before it have been published.
///
/// # Examples
///
/// ```
/// use logbook_bus::{SessionBus, SessionEvent};
/// use logbook_replay::{Pace, publish};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::TextComplete("hello".into()))?;
/// wal.append(id, &SessionEvent::Done)?;
///
/// let bus = SessionBus::new(64); // no durable sink: nothing is re-persisted
/// let mut ui = bus.subscribe();
/// assert_eq!(publish(dir.path(), id, &bus, Pace::AsFastAsPossible)?, 2);
/// assert_eq!(ui.try_recv()?, SessionEvent::TextComplete("hello".into()));
/// assert_eq!(ui.try_recv()?, SessionEvent::Done);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn publish(
    dir: impl AsRef<Path>,
    session: Uuid,
    bus: &SessionBus,
    pace: Pace,
) -> Result<u64, ReplayError> {
    let speed = match pace {
        Pace::AsFastAsPossible => None,
        Pace::Recorded { speed } if speed.is_finite() && speed > 0.0 => Some(speed),
        Pace::Recorded { speed } => return Err(ReplayError::InvalidSpeed(speed)),
    };
    let mut published = 0u64;
    let mut previous_us: Option<u64> = None;
    let report = scan(
        dir.as_ref(),
        Sessions::One(session),
        OnCorruption::Fail,
        |item| {
            let Item::Event(record) = item else { return };
            if let (Some(speed), Some(prev)) = (speed, previous_us) {
                let resumed = matches!(record.event, SessionEvent::SessionResumed { .. });
                if !resumed {
                    std::thread::sleep(scaled(record.timestamp_us.saturating_sub(prev), speed));
                }
            }
            previous_us = Some(record.timestamp_us);
            bus.emit(record.event);
            published += 1;
        },
    )?;
    if report.records == 0 {
        return Err(ReplayError::UnknownSession(session));
    }
    Ok(published)
}

/// `delta_us / speed` as a duration, saturating instead of panicking.
fn scaled(delta_us: u64, speed: f64) -> Duration {
    // Precision lost above 2^52 µs (142 years) does not matter to a sleep.
    let secs = delta_us as f64 / 1e6 / speed;
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_divides_by_speed_and_saturates() {
        assert_eq!(scaled(2_000_000, 2.0), Duration::from_secs(1));
        assert_eq!(scaled(0, 0.001), Duration::ZERO);
        assert_eq!(scaled(u64::MAX, f64::MIN_POSITIVE), Duration::MAX);
    }
}
