//! Waiting for the log's durable watermark to move, from async code:
//! [`DurableWatch`], what a live follower of the log sleeps on instead of
//! polling.

use tokio::sync::watch;

use crate::commit::Progress;
use crate::format::Lsn;

/// A handle that wakes when more of the log becomes durable, or when the
/// writer closes or fails ([`Wal::watch_durable`](crate::Wal::watch_durable)).
///
/// The writer publishes its durable watermark in `LOCK` before it moves
/// this one, so a [`Reader`](crate::Reader) opened on the same directory
/// returns every record up to [`DurableWatch::durable_lsn`] once woken.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), logbook_wal::WalError> {
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let mut watch = wal.watch_durable();
/// assert_eq!(watch.durable_lsn(), 0);
/// wal.append_raw(uuid::Uuid::nil(), b"x")?;
/// assert_eq!(watch.changed().await, Some(1));
/// wal.close()?;
/// assert_eq!(watch.changed().await, None); // closed: nothing more to wait for
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DurableWatch {
    rx: watch::Receiver<Progress>,
    /// The durable end this handle last reported (or saw when made).
    last: Lsn,
}

impl DurableWatch {
    pub(crate) fn new(rx: watch::Receiver<Progress>) -> DurableWatch {
        let last = rx.borrow().durable_end;
        DurableWatch { rx, last }
    }

    /// The highest LSN known durable now (0 if none), as
    /// [`Wal::durable_lsn`](crate::Wal::durable_lsn).
    #[must_use]
    pub fn durable_lsn(&self) -> Lsn {
        self.rx.borrow().durable_end.saturating_sub(1)
    }

    /// Wait until the durable LSN is past the one this handle last
    /// returned (or saw when it was made), and return it; at once if it
    /// already is. `None` once the writer is closed or poisoned and nothing
    /// more became durable since.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing (the next call
    /// compares with the last LSN returned, not with a wake-up).
    pub async fn changed(&mut self) -> Option<Lsn> {
        loop {
            let now = *self.rx.borrow_and_update();
            if now.durable_end > self.last {
                self.last = now.durable_end;
                return Some(now.durable_end.saturating_sub(1));
            }
            if now.closed || now.poisoned {
                return None;
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }
}
