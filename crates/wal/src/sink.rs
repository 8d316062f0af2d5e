//! [`WalSink`]: a session's [`DurableSink`] over a [`Wal`], sync and async.

use std::io;
use std::sync::Arc;

use logbook_bus::{DurableSink, SessionEvent, WriteFuture};
use uuid::Uuid;

use crate::wal::Wal;

/// A [`DurableSink`] that appends one session's durable events to a [`Wal`].
///
/// `write` returns when the [`Wal`]'s [`SyncPolicy`](crate::SyncPolicy)
/// says the record is acknowledged: under the default
/// [`SyncPolicy::Always`](crate::SyncPolicy::Always), once it is fsynced.
/// Its errors are [`WalError`](crate::WalError)s converted to `io::Error` (get the original
/// back with `err.get_ref()` and `downcast_ref::<WalError>()`).
#[derive(Debug, Clone)]
pub struct WalSink {
    wal: Wal,
    session: Uuid,
}

impl Wal {
    /// A [`DurableSink`] writing `session`'s events to this log.
    #[must_use]
    pub fn sink(&self, session: Uuid) -> WalSink {
        WalSink {
            wal: self.clone(),
            session,
        }
    }
}

impl WalSink {
    /// The session this sink writes for.
    #[must_use]
    pub fn session(&self) -> Uuid {
        self.session
    }

    /// The log this sink writes to.
    #[must_use]
    pub fn wal(&self) -> &Wal {
        &self.wal
    }
}

impl DurableSink for WalSink {
    fn write(&self, event: &SessionEvent) -> io::Result<()> {
        self.wal
            .append(self.session, event)
            .map(drop)
            .map_err(io::Error::from)
    }

    /// Natively async: the event is queued into the group commit without
    /// blocking and the future resolves when its batch is durable (see
    /// [`Wal::append_async`], which also says what a dropped future leaves
    /// behind).
    fn write_async(self: Arc<Self>, event: SessionEvent) -> WriteFuture {
        Box::pin(async move {
            self.wal
                .append_async(self.session, &event)
                .await
                .map(drop)
                .map_err(io::Error::from)
        })
    }
}
