//! Where records come from: a log directory, one segment file of a log, or
//! records read elsewhere (a JetStream stream holding the records of many
//! logs) — one interface, [`Source`], read through one [`SourceReader`].
//!
//! Every record a source hands on is *opened* the same way: a record of
//! an encrypted log is decrypted with the process's keys
//! ([`logbook_wal::default_keys`]) before anyone sees it (the log's
//! [`Reader`] does it for segments, [`ShippedRecord::open`] for records read
//! elsewhere), a record whose key is not given stays sealed (its
//! [`RecordRef::key_id`] says which key it needs) and one whose tag does not
//! check is a located problem ([`WalError::Decrypt`]). After that, every
//! reader of this crate decodes it with [`EventRecord::decode`]: one decode
//! path, whatever the record came from.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook_wal::{EventRecord, Item, KeyRing, Lsn, Reader, RecordRef, TailDamage, WalError};
use uuid::Uuid;

use crate::error::ReplayError;

/// A place records come from: a log directory, one segment file of a log,
/// or records read elsewhere (a stream holding the records of many logs),
/// all read through one [`SourceReader`].
///
/// Every record a source hands on is *opened* the same way: a record of an
/// encrypted log is decrypted with the process's keys
/// ([`logbook_wal::default_keys`]) before anyone sees it (the log's
/// [`Reader`] does it for segments, [`ShippedRecord::open`] for records
/// read elsewhere); one whose key was not given stays sealed (its
/// [`RecordRef::key_id`] says which key it needs), and one whose tag does
/// not check is a located problem ([`WalError::Decrypt`]). Then every
/// reader of this crate decodes it with [`EventRecord::decode`]: one
/// decode path, whatever the record came from.
///
/// # Examples
///
/// ```
/// use std::ops::ControlFlow;
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{Source, SourceItem};
/// use logbook_wal::{EventRecord, Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// wal.append(uuid::Uuid::nil(), &SessionEvent::Done)?;
/// wal.close()?;
///
/// let source = Source::of(dir.path());
/// let mut events = Vec::new();
/// source.reader()?.walk(|item| {
///     if let SourceItem::Record { record, .. } = item {
///         events.push(EventRecord::decode(&record).ok().map(|r| r.event));
///     }
///     ControlFlow::<()>::Continue(())
/// })?;
/// assert_eq!(events, [Some(SessionEvent::Done)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Source {
    /// A log directory.
    Dir(PathBuf),
    /// One segment file of a log: its records and the problems in it.
    Segment(PathBuf),
    /// Records read elsewhere than their log's directory: see [`Shipped`].
    Shipped(Shipped),
}

/// Records read elsewhere than their log's directory (a stream), possibly
/// of several logs: each log's records in LSN order, the logs one after
/// the other, and the words that name where they were read.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// Where they were read, in words: `the stream LOGBOOK at nats://…`.
    pub name: String,
    /// The records.
    pub records: Vec<ShippedRecord>,
}

/// One record read elsewhere than its log's directory, as stored there:
/// its payload still sealed if its log is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedRecord {
    /// The log it was written to (its `LOG_ID`).
    pub log: Uuid,
    /// Its LSN in that log.
    pub lsn: Lsn,
    /// When it was appended, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Its session.
    pub session: Uuid,
    /// The payload's codec id.
    pub codec_id: u16,
    /// The payload, as in the log.
    pub payload: Vec<u8>,
    /// The key its payload is sealed with, if it is.
    pub key_id: Option<u32>,
    /// Its sync mark.
    pub sync_mark: Lsn,
    /// For a sealed record: the chain value it was sealed against (the
    /// tag of the record before it in its log; `docs/security.md`).
    pub prev: Option<logbook_wal::Chain>,
    /// What stands for its segment in messages (say, the stream's URL and
    /// the log id).
    pub place: Arc<Path>,
    /// What stands for its offset (say, its sequence in the stream).
    pub offset: u64,
}

impl ShippedRecord {
    /// The record as the log's readers lend it, opened with `keys` as a
    /// [`Reader`] opens a record of an encrypted segment: decrypted if
    /// `keys` holds its key (the plaintext goes to `buf`), still sealed
    /// ([`RecordRef::key_id`]) if not.
    ///
    /// # Errors
    ///
    /// [`WalError::Decrypt`] (naming its place, offset and LSN) if `keys`
    /// holds its key but the payload does not open: tampered, or sealed
    /// for another record.
    pub fn open<'a>(
        &'a self,
        keys: Option<&KeyRing>,
        buf: &'a mut Vec<u8>,
    ) -> Result<RecordRef<'a>, WalError> {
        let mut record = RecordRef {
            lsn: self.lsn,
            timestamp_us: self.timestamp_us,
            sync_mark: self.sync_mark,
            session: self.session,
            payload: &self.payload,
            codec_id: self.codec_id,
            segment: &self.place,
            offset: self.offset,
            frame_crc: 0,
            key_id: self.key_id,
        };
        let Some(key_id) = self.key_id else {
            return Ok(record);
        };
        let Some(ring) = keys.filter(|r| r.get(key_id).is_some()) else {
            return Ok(record);
        };
        let prev = self.prev.unwrap_or_default();
        let ctx = logbook_wal::RecordContext {
            log: &self.log,
            lsn: self.lsn,
            session: &self.session,
            timestamp_us: self.timestamp_us,
            sync_mark: self.sync_mark,
            prev: &prev,
        };
        match ring.open(key_id, &ctx, &self.payload) {
            Some(plain) => {
                *buf = plain;
                record.payload = buf;
                record.key_id = None;
                Ok(record)
            }
            None => Err(WalError::Decrypt {
                path: self.place.to_path_buf(),
                offset: self.offset,
                lsn: self.lsn,
                key_id,
            }),
        }
    }

    /// Decode its event, opened with the process's keys
    /// ([`logbook_wal::default_keys`]): [`ShippedRecord::open`], then
    /// [`EventRecord::decode`], the decode of every reader.
    ///
    /// # Errors
    ///
    /// As [`ShippedRecord::open`] and [`EventRecord::decode`]
    /// ([`WalError::Encrypted`] if no key with its id was given).
    pub fn decode(&self) -> Result<EventRecord, WalError> {
        let keys = logbook_wal::default_keys();
        let mut buf = Vec::new();
        EventRecord::decode(&self.open(keys.as_deref(), &mut buf)?)
    }
}

/// What a [`SourceReader`] hands on: a record (opened, see [`Source`])
/// with the log it belongs to, or a located problem.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceItem<'a> {
    /// A record.
    Record {
        /// Its log's id: always known for a record read elsewhere; for a
        /// log directory, its `LOG_ID` if it has one.
        log: Option<Uuid>,
        /// The record.
        record: RecordRef<'a>,
    },
    /// Corruption, or a record that does not decrypt: located (see
    /// [`WalError::location`]); the reader goes on past it.
    Problem(WalError),
}

impl Source {
    /// A log directory, or one segment file if `path` is a file.
    #[must_use]
    pub fn of(path: impl AsRef<Path>) -> Source {
        let path = path.as_ref();
        if path.is_file() {
            Source::Segment(path.to_path_buf())
        } else {
            Source::Dir(path.to_path_buf())
        }
    }

    /// The log directory: the directory, or the segment file's.
    #[must_use]
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Source::Dir(dir) => Some(dir),
            Source::Segment(path) => Some(match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            }),
            Source::Shipped(_) => None,
        }
    }

    /// Where it is, in words: `the log in DIR`, `the segment PATH`, or the
    /// name of the place shipped records were read.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Source::Dir(dir) => format!("the log in {}", dir.display()),
            Source::Segment(path) => format!("the segment {}", path.display()),
            Source::Shipped(s) => s.name.clone(),
        }
    }

    /// What errors name as the place: the directory, the segment file, or
    /// the shipped records' name.
    pub(crate) fn path(&self) -> PathBuf {
        match self {
            Source::Dir(p) | Source::Segment(p) => p.clone(),
            Source::Shipped(s) => PathBuf::from(&s.name),
        }
    }

    /// Whether a live writer holds the log: `Some` for a log directory
    /// (or a segment's), `None` where it cannot be known (shipped
    /// records: their hosts may or may not be alive).
    ///
    /// # Errors
    ///
    /// As [`logbook_wal::is_locked`].
    pub fn writer_live(&self) -> Result<Option<bool>, ReplayError> {
        match self.dir() {
            Some(dir) => logbook_wal::is_locked(dir)
                .map(Some)
                .map_err(|e| ReplayError::wal("checking the writer lock of", dir, e)),
            None => Ok(None),
        }
    }

    /// The ids of the logs its records belong to, in order of first
    /// appearance (a log directory's own, if it has a `LOG_ID`).
    #[must_use]
    pub fn logs(&self) -> Vec<Uuid> {
        match self {
            Source::Shipped(s) => {
                let mut logs: Vec<Uuid> = Vec::new();
                for r in &s.records {
                    if logs.last() != Some(&r.log) && !logs.contains(&r.log) {
                        logs.push(r.log);
                    }
                }
                logs
            }
            _ => self
                .dir()
                .and_then(|dir| logbook_wal::log_id(dir).ok())
                .into_iter()
                .collect(),
        }
    }

    /// Keep only the records of the logs whose id starts with `prefix`
    /// (with or without dashes); returns those logs. A log directory is
    /// kept whole if its own id matches, and emptied of nothing: ask
    /// [`Source::logs`] first.
    pub fn keep_logs_with_prefix(&mut self, prefix: &str) -> Vec<Uuid> {
        let matching: Vec<Uuid> = self
            .logs()
            .into_iter()
            .filter(|log| has_prefix(log, prefix))
            .collect();
        if let Source::Shipped(s) = self {
            s.records.retain(|r| matching.contains(&r.log));
        }
        matching
    }

    /// A reader of its records, from the first.
    ///
    /// # Errors
    ///
    /// [`ReplayError::NoLog`]-like errors of opening a log
    /// ([`ReplayError::Wal`] naming the directory or segment).
    pub fn reader(&self) -> Result<SourceReader<'_>, ReplayError> {
        let inner = match self {
            Source::Dir(dir) => Inner::Log {
                reader: Box::new(
                    Reader::open(dir).map_err(|e| ReplayError::wal("opening", dir, e))?,
                ),
                log: logbook_wal::log_id(dir).ok(),
            },
            Source::Segment(path) => Inner::Log {
                reader: Box::new(
                    Reader::open_segment_file(path)
                        .map_err(|e| ReplayError::wal("opening", path, e))?,
                ),
                log: self.dir().and_then(|dir| logbook_wal::log_id(dir).ok()),
            },
            Source::Shipped(s) => Inner::Shipped {
                records: &s.records,
                next: 0,
                from: 0,
                session: None,
                keys: logbook_wal::default_keys(),
                buf: Vec::new(),
            },
        };
        Ok(SourceReader {
            inner,
            path: self.path(),
            until: Lsn::MAX,
        })
    }
}

/// Whether `id` starts with `prefix` (hyphenated or simple, any case).
pub(crate) fn has_prefix(id: &Uuid, prefix: &str) -> bool {
    let prefix = prefix.to_ascii_lowercase();
    id.hyphenated().to_string().starts_with(&prefix) || id.simple().to_string().starts_with(&prefix)
}

impl From<PathBuf> for Source {
    fn from(path: PathBuf) -> Source {
        Source::of(path)
    }
}

impl From<&Path> for Source {
    fn from(path: &Path) -> Source {
        Source::of(path)
    }
}

impl From<Shipped> for Source {
    fn from(shipped: Shipped) -> Source {
        Source::Shipped(shipped)
    }
}

/// Reads a [`Source`]'s records in order: each log's in LSN order, with
/// problems in their places. A walk that reached the end can be walked
/// again later and goes on with what was appended since (a log directory).
#[derive(Debug)]
pub struct SourceReader<'s> {
    inner: Inner<'s>,
    path: PathBuf,
    /// The last LSN read (of each log): a walk stops at a log
    /// directory's first record above it.
    until: Lsn,
}

#[derive(Debug)]
enum Inner<'s> {
    Log {
        reader: Box<Reader>,
        log: Option<Uuid>,
    },
    Shipped {
        records: &'s [ShippedRecord],
        next: usize,
        from: Lsn,
        session: Option<Uuid>,
        keys: Option<Arc<KeyRing>>,
        buf: Vec<u8>,
    },
}

impl<'s> SourceReader<'s> {
    /// A reader over a log's [`Reader`] already placed (the log in `dir`).
    pub(crate) fn of_reader(reader: Reader, dir: &Path) -> SourceReader<'s> {
        SourceReader {
            inner: Inner::Log {
                log: logbook_wal::log_id(dir).ok(),
                reader: Box::new(reader),
            },
            path: dir.to_path_buf(),
            until: Lsn::MAX,
        }
    }

    /// Read no record above LSN `lsn` (of each log): a walk of a log
    /// directory ends at its first record above it, so a reader bounded
    /// to the end a writer had reached never chases a tail growing under
    /// it.
    #[must_use]
    pub(crate) fn until(mut self, lsn: Lsn) -> SourceReader<'s> {
        self.until = lsn;
        self
    }

    /// Start at LSN `lsn` (of each log, for records of several).
    #[must_use]
    pub fn from_lsn(mut self, lsn: Lsn) -> SourceReader<'s> {
        self.inner = match self.inner {
            Inner::Log { reader, log } => Inner::Log {
                reader: Box::new(reader.from_lsn(lsn)),
                log,
            },
            Inner::Shipped {
                records,
                next,
                session,
                keys,
                buf,
                ..
            } => Inner::Shipped {
                records,
                next,
                from: lsn,
                session,
                keys,
                buf,
            },
        };
        self
    }

    /// Only the records of `session` (a log directory's through its
    /// segments' session indexes: O(the session)).
    #[must_use]
    pub fn session(mut self, id: Uuid) -> SourceReader<'s> {
        self.inner = match self.inner {
            Inner::Log { reader, log } => Inner::Log {
                reader: Box::new(reader.session(id)),
                log,
            },
            Inner::Shipped {
                records,
                next,
                from,
                keys,
                buf,
                ..
            } => Inner::Shipped {
                records,
                next,
                from,
                session: Some(id),
                keys,
                buf,
            },
        };
        self
    }

    /// The log's reader, for a log directory or segment (its segments,
    /// say).
    #[must_use]
    pub fn log_reader(&self) -> Option<&Reader> {
        match &self.inner {
            Inner::Log { reader, .. } => Some(reader),
            Inner::Shipped { .. } => None,
        }
    }

    /// Damage at the end of a log's tail segment, where the last walk
    /// stopped (never for shipped records: they hold only whole records).
    #[must_use]
    pub fn tail_damage(&self) -> Option<&TailDamage> {
        match &self.inner {
            Inner::Log { reader, .. } => reader.tail_damage(),
            Inner::Shipped { .. } => None,
        }
    }

    /// Feed every record and every problem, in order, to `f`, until the
    /// end (for now) or until `f` breaks; a later walk goes on from there.
    ///
    /// # Errors
    ///
    /// [`ReplayError::Wal`] for an error that is not a problem of the data
    /// (I/O: an unreadable segment, a directory that cannot be listed).
    pub fn walk<B>(
        &mut self,
        mut f: impl FnMut(SourceItem<'_>) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, ReplayError> {
        match &mut self.inner {
            Inner::Log { reader, log } => {
                let (log, until) = (*log, self.until);
                let walked = reader
                    .walk(|item| match item {
                        Item::Record(record) if record.lsn > until => ControlFlow::Break(None),
                        Item::Record(record) => match f(SourceItem::Record { log, record }) {
                            ControlFlow::Break(b) => ControlFlow::Break(Some(b)),
                            ControlFlow::Continue(()) => ControlFlow::Continue(()),
                        },
                        Item::Problem(e) => match f(SourceItem::Problem(e)) {
                            ControlFlow::Break(b) => ControlFlow::Break(Some(b)),
                            ControlFlow::Continue(()) => ControlFlow::Continue(()),
                        },
                    })
                    .map_err(|e| ReplayError::wal("reading", &self.path, e))?;
                Ok(match walked {
                    ControlFlow::Break(Some(b)) => ControlFlow::Break(b),
                    ControlFlow::Break(None) | ControlFlow::Continue(()) => {
                        ControlFlow::Continue(())
                    }
                })
            }
            Inner::Shipped {
                records,
                next,
                from,
                session,
                keys,
                buf,
            } => {
                // Per log, its first sealed record: with the key, a record
                // of that log in the clear at or after it was not written by
                // the key holder (a log never goes back to the clear).
                let mut sealed_from: std::collections::HashMap<Uuid, Lsn> =
                    std::collections::HashMap::new();
                if keys.is_some() {
                    for r in records.iter().filter(|r| r.key_id.is_some()) {
                        let first = sealed_from.entry(r.log).or_insert(r.lsn);
                        *first = (*first).min(r.lsn);
                    }
                }
                while let Some(r) = records.get(*next) {
                    *next += 1;
                    if r.key_id.is_none() && sealed_from.get(&r.log).is_some_and(|&f| r.lsn >= f) {
                        if r.lsn < *from || session.is_some_and(|s| s != r.session) {
                            continue;
                        }
                        let item = SourceItem::Problem(WalError::Forged {
                            path: r.place.to_path_buf(),
                            offset: r.offset,
                            lsn: r.lsn,
                            reason: format!(
                                "a record in the clear of log {}, which is encrypted from LSN {} or before: not the key holder's",
                                r.log,
                                sealed_from.get(&r.log).copied().unwrap_or(0)
                            ),
                        });
                        if let ControlFlow::Break(b) = f(item) {
                            return Ok(ControlFlow::Break(b));
                        }
                        continue;
                    }
                    if r.lsn < *from
                        || r.lsn > self.until
                        || session.is_some_and(|s| s != r.session)
                    {
                        continue;
                    }
                    // Each sealed record commits to the tag of the one
                    // before it in its log: where the stream holds both, a
                    // record replayed or put in another's place shows.
                    let before = next.checked_sub(2).and_then(|j| records.get(j));
                    let broken = match (keys.as_deref(), r.key_id, r.prev, before) {
                        (Some(ring), Some(key_id), Some(prev), Some(b))
                            if ring.get(key_id).is_some()
                                && b.log == r.log
                                && b.lsn + 1 == r.lsn
                                && b.key_id.is_some() =>
                        {
                            logbook_wal::tag_of(&b.payload) != Some(prev)
                        }
                        _ => false,
                    };
                    let item = if broken {
                        SourceItem::Problem(WalError::Forged {
                            path: r.place.to_path_buf(),
                            offset: r.offset,
                            lsn: r.lsn,
                            reason: format!(
                                "not the record the key holder wrote after LSN {} of log {}: its chain value is not that record's tag (replayed or replaced)",
                                r.lsn - 1,
                                r.log
                            ),
                        })
                    } else {
                        match r.open(keys.as_deref(), buf) {
                            Ok(record) => SourceItem::Record {
                                log: Some(r.log),
                                record,
                            },
                            Err(e) => SourceItem::Problem(e),
                        }
                    };
                    if let ControlFlow::Break(b) = f(item) {
                        return Ok(ControlFlow::Break(b));
                    }
                }
                Ok(ControlFlow::Continue(()))
            }
        }
    }
}
