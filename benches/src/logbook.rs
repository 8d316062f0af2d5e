//! Logbook's own WAL behind the same [`DurableLog`] trait as the baselines.

use std::io;
use std::path::Path;

use logbook_bus::{DurableSink, SessionEvent};
use logbook_wal::{SyncPolicy, Wal, WalOptions, WalSink};

use crate::baselines::DurableLog;

fn open(dir: &Path, policy: SyncPolicy) -> io::Result<Wal> {
    Wal::open(
        dir,
        WalOptions {
            sync: policy,
            ..WalOptions::default()
        },
    )
    .map_err(io::Error::from)
}

/// Durable events through [`WalSink`]: each append encodes a
/// `SessionEvent::TextComplete` whose text has one ASCII letter per payload
/// byte (so the record carries as many bytes as the payload plus the event's
/// few bytes of tag and length), exactly the path a `SessionBus` takes.
pub struct LogbookSink {
    sink: WalSink,
}

impl LogbookSink {
    /// Open a log in `dir` with `policy`.
    ///
    /// # Errors
    ///
    /// The `WalError` of opening, as an `io::Error`.
    pub fn open(dir: &Path, policy: SyncPolicy) -> io::Result<LogbookSink> {
        let wal = open(dir, policy)?;
        Ok(LogbookSink {
            sink: wal.sink(uuid::Uuid::new_v4()),
        })
    }

    /// The underlying log.
    #[must_use]
    pub fn wal(&self) -> &Wal {
        self.sink.wal()
    }
}

impl DurableLog for LogbookSink {
    fn append(&self, payload: &[u8]) -> io::Result<u64> {
        // One byte per payload byte: a lossy UTF-8 conversion would turn each
        // byte above 0x7F into a 3-byte U+FFFD and double the record.
        let text: String = payload.iter().map(|&b| char::from(b'a' + b % 26)).collect();
        self.sink.write(&SessionEvent::TextComplete(text))?;
        Ok(0)
    }
}

/// Raw records through [`Wal::append_raw`], without the event codec.
pub struct LogbookRaw {
    wal: Wal,
    session: uuid::Uuid,
}

impl LogbookRaw {
    /// Open a log in `dir` with `policy`.
    ///
    /// # Errors
    ///
    /// The `WalError` of opening, as an `io::Error`.
    pub fn open(dir: &Path, policy: SyncPolicy) -> io::Result<LogbookRaw> {
        let wal = open(dir, policy)?;
        Ok(LogbookRaw {
            wal,
            session: uuid::Uuid::new_v4(),
        })
    }
}

impl DurableLog for LogbookRaw {
    fn append(&self, payload: &[u8]) -> io::Result<u64> {
        self.wal
            .append_raw(self.session, payload)
            .map_err(io::Error::from)
    }
}
