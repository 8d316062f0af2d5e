//! The `Log` class.

use super::*;

// ---------------------------------------------------------------------------
// Log
// ---------------------------------------------------------------------------

/// A Logbook write-ahead log in one directory, opened for writing.
///
/// One writer per directory: a second `Log` on the same directory, in
/// this process or another, raises `LockedError` at once (it never waits).
/// Sessions are named by UUIDs (`str` or `uuid.UUID`). Events are dicts in
/// the shape of `docs/json.md`: `{"kind": "UserMessage", "value": "hi"}`,
/// `{"kind": "Custom", "name": "app.state", "data": b"..."}` (`data` is
/// bytes; a str there is a `TypeError`).
#[pyclass(module = "logbook._logbook", frozen, weakref)]
pub(crate) struct Log {
    wal: Mutex<Option<Wal>>,
    path: String,
    /// The process that opened the log (`std::process::id`): a child
    /// forked from it shares its file descriptors and lock but not its
    /// threads, so it must not use (or close, or drop) this handle.
    owner: u32,
    /// Under `batch` and `never`, reads first make what was appended
    /// durable: readers see durable records only, and a reader must see
    /// its own writes.
    sync_reads: bool,
    /// The hold on the log's group commit for the running event loop's
    /// turn ([`hold_for_turn`]).
    turn_hold: TurnHold,
    /// Held by each deletion across its plan (a read) and its tombstone:
    /// deletions of one log take turns, so a pop ([`Log::pop_custom`])
    /// reads the latest record and deletes it before another pop reads,
    /// and what a deletion's plan says it deleted, it deleted (no other
    /// deletion of this log claims the same record). Appends do not wait.
    deletes: Arc<Mutex<()>>,
}

impl Log {
    /// An awaitable appending `event` to `session` on the async path.
    fn append_one_async<'py>(
        &self,
        py: Python<'py>,
        session: Uuid,
        event: SessionEvent,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wal = self.wal()?;
        let held = wal.clone();
        appending(
            py,
            approx_len(&event),
            (&held, &self.turn_hold),
            async move {
                wal.append_async(session, &event)
                    .await
                    .map_or_else(Done::Err, Done::Lsn)
            },
        )
    }

    /// `ForkedError` unless this is the process that opened the log.
    fn check_process(&self) -> PyResult<()> {
        check_process(self.owner, &self.path)
    }

    fn wal(&self) -> PyResult<Wal> {
        self.check_process()?;
        self.wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                Python::with_gil(|py| {
                    use pyo3::PyTypeInfo;
                    raise(
                        py,
                        &ClosedError::type_object(py),
                        format!("the log in {} is closed", self.path),
                        (Some(self.path.clone()), None, None),
                    )
                })
            })
    }

    /// Run `f` on the log off the GIL.
    fn blocking<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Wal) -> Result<T, PyErrLater> + Send,
    ) -> PyResult<T> {
        let wal = self.wal()?;
        released(py, || f(&wal)).map_err(PyErrLater::into_py)
    }

    /// Run `f` on the log on the runtime's blocking pool; an awaitable.
    fn spawn<'py>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&Wal) -> Result<Out, PyErrLater> + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wal = self.wal()?;
        spawn_blocking(py, move || f(&wal))
    }

    /// Take the writer out (None if closed) and close it on the runtime's
    /// blocking pool; an awaitable resolving to `out`.
    fn closing<'py>(&self, py: Python<'py>, out: Out) -> PyResult<Bound<'py, PyAny>> {
        self.check_process()?;
        // Outside a running loop: refused before the writer is taken out.
        running_loop(py)?;
        let wal = self
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        spawn_blocking(py, move || {
            if let Some(wal) = wal {
                wal.close()?;
            }
            Ok(out)
        })
    }
}

/// Run `f` on the runtime's blocking pool: an asyncio future of the
/// running loop, which the pool's thread resolves through [`deliver`]
/// (which stops at interpreter exit, see [`shutdown`]), as every async
/// method does.
pub(crate) fn spawn_blocking<'py>(
    py: Python<'py>,
    f: impl FnOnce() -> Result<Out, PyErrLater> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>> {
    let event_loop = running_loop(py)?;
    let future = event_loop.call_method0("create_future")?;
    let (f_, home) = (future.clone().unbind(), home(py, &event_loop));
    // The pool's thread hands the result back itself: one hop there, one
    // back (through the loop's door: without the GIL).
    runtime().spawn_blocking(move || {
        let done = Done::Out(f());
        deliver(&mut vec![Completion {
            future: f_,
            home,
            done,
        }]);
    });
    Ok(future)
}

/// The running asyncio loop (`RuntimeError` outside one).
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let get_loop = GET_RUNNING_LOOP.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    get_loop.call0(py).map(|l| l.into_bound(py))
}

/// `ForkedError` unless this is process `owner`, the one that opened the
/// log in `path`. After a `fork()` the child holds a copy of the parent's
/// writer, file descriptors and lock, without its threads: appends from
/// both would get the same LSNs and overwrite each other's records.
pub(crate) fn check_process(owner: u32, path: &str) -> PyResult<()> {
    let here = std::process::id();
    if here == owner {
        return Ok(());
    }
    Python::with_gil(|py| {
        use pyo3::PyTypeInfo;
        Err(raise(
            py,
            &ForkedError::type_object(py),
            format!(
                "the log in {path} was opened by process {owner}, and this is process {here}, \
                 forked from it: a Log works only in the process that opened it. Open the log \
                 in this process instead (after the fork: in a worker's start-up, or at first \
                 use, not at import), in a directory of its own (one writer per directory)"
            ),
            (Some(path.to_owned()), None, None),
        ))
    })
}

impl Drop for Log {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            // A forked child's copy of the parent's writer: closing it would
            // write to the parent's segment, join threads this process does
            // not have, and unlock the parent's lock. Leak it instead.
            let wal = self
                .wal
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            std::mem::forget(wal);
        }
    }
}

/// An error made off the GIL, turned into a Python exception once it is held.
pub(crate) enum PyErrLater {
    Wal(WalError),
    Replay(ReplayError),
    /// The end of a `Follow` (`StopAsyncIteration`).
    End,
}

impl PyErrLater {
    pub(crate) fn into_py(self) -> PyErr {
        match self {
            PyErrLater::Wal(e) => wal_err(e),
            PyErrLater::Replay(e) => replay_err(e),
            PyErrLater::End => PyStopAsyncIteration::new_err(()),
        }
    }
}

impl From<WalError> for PyErrLater {
    fn from(e: WalError) -> Self {
        PyErrLater::Wal(e)
    }
}

impl From<ReplayError> for PyErrLater {
    fn from(e: ReplayError) -> Self {
        PyErrLater::Replay(e)
    }
}

/// The shortest and the longest `batch_delay_ms` accepted: a microsecond
/// (the flusher's delay must be above zero) and an hour.
pub(crate) const BATCH_DELAY_MS: (f64, f64) = (0.001, 3_600_000.0);

/// `batch_delay_ms` as a delay: a finite number of milliseconds in
/// [`BATCH_DELAY_MS`], else a `ValueError` naming it.
pub(crate) fn batch_delay(ms: Option<f64>) -> PyResult<Duration> {
    let ms = ms.unwrap_or(5.0);
    let (min, max) = BATCH_DELAY_MS;
    if !(min..=max).contains(&ms) {
        return Err(PyValueError::new_err(format!(
            "batch_delay_ms must be a number of milliseconds from {min} to {max} (an hour), not {ms:?}"
        )));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// `segment_size` in bytes: an int from `MIN_SEGMENT_SIZE` to
/// `MAX_SEGMENT_SIZE`, else a `ValueError` naming it.
pub(crate) fn segment_size(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(size) = size else { return Ok(None) };
    let (min, max) = (logbook_wal::MIN_SEGMENT_SIZE, logbook_wal::MAX_SEGMENT_SIZE);
    let refuse = |what: String| {
        PyValueError::new_err(format!(
            "segment_size must be an int from {min} to {max} bytes (the default is 64 MiB), not {what}"
        ))
    };
    if size.is_instance_of::<PyBool>() || !size.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "segment_size must be an int (bytes), not {}",
            size.get_type().name()?
        )));
    }
    match size.extract::<i128>() {
        Ok(n) => u64::try_from(n)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| refuse(n.to_string())),
        Err(_) => Err(refuse(size.str()?.extract::<String>()?)),
    }
}

pub(crate) fn options(
    sync: &str,
    batch_delay_ms: Option<f64>,
    segment_size: Option<u64>,
    ring: Option<Arc<KeyRing>>,
) -> PyResult<WalOptions> {
    // Checked whatever the policy: a bad value is a mistake under any.
    let max_delay = batch_delay(batch_delay_ms)?;
    let sync = match sync {
        "always" => SyncPolicy::Always,
        "batch" => SyncPolicy::Batch {
            max_delay,
            max_bytes: 1 << 20,
        },
        "never" => SyncPolicy::Never,
        other => {
            return Err(PyValueError::new_err(format!(
                "sync must be \"always\", \"batch\" or \"never\", not {other:?}"
            )));
        }
    };
    let mut opts = WalOptions {
        sync,
        encryption: ring,
        ..WalOptions::default()
    };
    if let Some(size) = segment_size {
        opts.segment_size = size;
    }
    Ok(opts)
}

pub(crate) fn key_ring(
    key_file: Option<String>,
    key: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Arc<KeyRing>>> {
    let key_err = |e: logbook_wal::KeyError| {
        Python::with_gil(|py| {
            use pyo3::PyTypeInfo;
            raise(
                py,
                &EncryptionKeyError::type_object(py),
                e.to_string(),
                (key_file.clone(), None, None),
            )
        })
    };
    let key = match (&key_file, key) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err("give key_file or key, not both"));
        }
        (Some(path), None) => Key::from_file(path).map_err(key_err)?,
        (None, Some(k)) => {
            if let Ok(b) = k.downcast::<PyBytes>() {
                let bytes: [u8; 32] = b.as_bytes().try_into().map_err(|_| {
                    PyValueError::new_err("a key is 32 bytes (or 64 hex digits as a str)")
                })?;
                Key::new(bytes)
            } else {
                let hex = k.extract::<String>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "key is bytes (32 of them) or a str of 64 hex digits, not {}",
                        k.get_type()
                            .name()
                            .map_or_else(|_| "that".to_owned(), |n| n.to_string())
                    ))
                })?;
                Key::from_hex(&hex).map_err(key_err)?
            }
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Arc::new(KeyRing::new(key))))
}

#[pymethods]
impl Log {
    /// Open the log in `path` and take its writer lock. `create` (default
    /// True): make a new log there if it holds none, creating the directory
    /// and any missing parent, as `Wal::open` does; with `create=False` a
    /// path that is missing or holds no log is a `NoLogError`.
    ///
    /// `sync`: when an append returns: `"always"` (after the fsync that
    /// makes it durable, shared with concurrent appends: the default),
    /// `"batch"` (once queued; a flusher fsyncs within `batch_delay_ms`) or
    /// `"never"` (tests, bulk loads); `batch_delay_ms` from 0.001 to
    /// 3,600,000 (default 5). `segment_size`: bytes per segment, from 4096
    /// to 1 GiB (default 64 MiB). An option out of range is a `ValueError`
    /// naming it. `key_file` (a file of 32 bytes or 64 hex digits) or
    /// `key` (32 bytes, or 64 hex digits): encrypt new segments, and read
    /// encrypted ones, with this key.
    ///
    /// Raises `LockedError` if another writer holds the directory,
    /// `CorruptError` for damage recovery must not cut,
    /// `EncryptionKeyError` for a missing or wrong key.
    #[new]
    #[pyo3(signature = (path, *, sync = "always", batch_delay_ms = None, segment_size = None, key_file = None, key = None, create = true))]
    #[expect(
        clippy::too_many_arguments,
        reason = "Python's keyword arguments, one per option"
    )]
    fn new(
        py: Python<'_>,
        path: PathOrStr,
        sync: &str,
        batch_delay_ms: Option<f64>,
        segment_size: Option<&Bound<'_, PyAny>>,
        key_file: Option<PathOrStr>,
        key: Option<&Bound<'_, PyAny>>,
        create: bool,
    ) -> PyResult<Log> {
        if path.0.is_empty() {
            return Err(PyValueError::new_err(
                "the path is empty: give the log's directory (Log(\"./logs\"))",
            ));
        }
        let segment_size = self::segment_size(segment_size)?;
        let ring = key_ring(key_file.map(|k| k.0), key)?;
        if let Some(ring) = &ring {
            // Readers of this process (replays, listings) read with it,
            // and with the keys of the process's other logs.
            if let Err(e) = logbook_wal::install_default_keys(ring.clone()) {
                use pyo3::PyTypeInfo;
                return Err(raise(
                    py,
                    &EncryptionKeyError::type_object(py),
                    format!(
                        "{e}: another log of this process holds a different key with this key's id; make a new key (`logbook key new`)"
                    ),
                    (Some(path.0.clone()), None, None),
                ));
            }
        }
        let opts = options(sync, batch_delay_ms, segment_size, ring)?;
        let sync_reads = opts.sync != SyncPolicy::Always;
        let path = path.0;
        if !create {
            let holds_a_log = released(py, || match logbook_wal::Reader::open(&path) {
                Err(WalError::NotFound { .. } | WalError::NoLog { .. }) => false,
                // Anything else is Wal::open's to report.
                _ => true,
            });
            if !holds_a_log {
                use pyo3::PyTypeInfo;
                return Err(raise(
                    py,
                    &NoLogError::type_object(py),
                    format!(
                        "there is no log in {path}: check the path, or pass create=True to make a new log there"
                    ),
                    (Some(path.clone()), None, None),
                ));
            }
        }
        let wal = released(py, || Wal::open(&path, opts)).map_err(wal_err)?;
        Ok(Log {
            wal: Mutex::new(Some(wal)),
            path,
            owner: std::process::id(),
            sync_reads,
            turn_hold: TurnHold::default(),
            deletes: Arc::default(),
        })
    }

    /// The log's directory.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// Whether the log was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// The highest LSN known durable (0 if none).
    #[getter]
    fn durable_lsn(&self) -> PyResult<Lsn> {
        Ok(self.wal()?.durable_lsn())
    }

    /// The LSN of the last record appended (0 if none).
    #[getter]
    fn last_lsn(&self) -> PyResult<Lsn> {
        Ok(self.wal()?.last_lsn())
    }

    /// The writer's counters since open: `appends`, `writes`, `fsyncs`, `records_synced`, `segments_created`, `fsync_micros`.
    fn stats(&self, py: Python<'_>) -> PyResult<PyObject> {
        let s = self.wal()?.stats();
        from_json(
            py,
            &serde_json::json!({
                "appends": s.appends, "writes": s.writes, "fsyncs": s.fsyncs,
                "records_synced": s.records_synced, "segments_created": s.segments_created,
                "fsync_micros": s.fsync_micros,
            }),
        )
    }

    /// Append one event to `session`; returns its LSN once the sync policy
    /// says (under `"always"`: once it is fsynced).
    fn append(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        event: &Bound<'_, PyAny>,
    ) -> PyResult<Lsn> {
        let (session, event) = (session_id(session)?, event_from_py(event)?);
        self.blocking(py, move |wal| Ok(wal.append(session, &event)?))
    }

    /// Append several `(session, event)` pairs as one batch (one group
    /// commit); returns their LSNs, in order.
    fn append_many(&self, py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<Vec<Lsn>> {
        let batch = batch_from_py(items)?;
        self.blocking(py, move |wal| Ok(wal.append_many(&batch)?))
    }

    /// Append one event without blocking the event loop: an awaitable
    /// that resolves to its LSN once the sync policy says. Coroutines
    /// appending at once share one write and one fsync.
    fn append_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        event: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (session, event) = (session_id(session)?, event_from_py(event)?);
        self.append_one_async(py, session, event)
    }

    /// `append(session, {"kind": "Custom", "name": name, "data": data})`.
    fn append_custom(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        name: String,
        data: Data,
    ) -> PyResult<Lsn> {
        let session = session_id(session)?;
        let event = SessionEvent::Custom { name, data: data.0 };
        self.blocking(py, move |wal| Ok(wal.append(session, &event)?))
    }

    /// `append_async(session, {"kind": "Custom", "name": name, "data": data})`.
    fn append_custom_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        name: String,
        data: Data,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = session_id(session)?;
        let event = SessionEvent::Custom { name, data: data.0 };
        self.append_one_async(py, session, event)
    }

    /// Append `Custom` records named `name`, one per item of `data`, to
    /// `session` as one batch (consecutive LSNs, one group commit); returns
    /// their LSNs.
    fn append_custom_many(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        name: String,
        data: Vec<Data>,
    ) -> PyResult<Vec<Lsn>> {
        let session = session_id(session)?;
        let batch: Vec<(Uuid, SessionEvent)> = data
            .into_iter()
            .map(|data| {
                (
                    session,
                    SessionEvent::Custom {
                        name: name.clone(),
                        data: data.0,
                    },
                )
            })
            .collect();
        self.blocking(py, move |wal| Ok(wal.append_many(&batch)?))
    }

    /// `append_custom_many` as an awaitable: the records are queued in
    /// order, on the async path, and share group commits.
    fn append_custom_many_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        name: String,
        data: Vec<Data>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = session_id(session)?;
        let wal = self.wal()?;
        let batch: Vec<(Uuid, SessionEvent)> = data
            .into_iter()
            .map(|data| {
                let name = name.clone();
                (session, SessionEvent::Custom { name, data: data.0 })
            })
            .collect();
        let bytes = batch.iter().map(|(_, e)| approx_len(e)).sum();
        let held = wal.clone();
        // All or nothing, as `append_custom_many`: the log checks every
        // record before it queues any (each encoded once).
        appending(py, bytes, (&held, &self.turn_hold), async move {
            wal.append_many_async(&batch)
                .await
                .map_or_else(Done::Err, Done::Lsns)
        })
    }

    /// Write and fsync everything appended so far; returns the last durable LSN.
    fn sync(&self, py: Python<'_>) -> PyResult<Lsn> {
        self.blocking(py, |wal| Ok(wal.sync()?))
    }

    /// `sync()` as an awaitable.
    fn sync_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.spawn(py, |wal| Ok(Out::Lsn(wal.sync()?)))
    }

    /// The records of `session`, in LSN order, as dicts (`lsn`, `session`,
    /// `ts_us`, `kind`, `event`), read through the log's session index;
    /// deleted records and tombstones left out. Empty for an unknown session.
    fn read(&self, py: Python<'_>, session: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let session = session_id(session)?;
        let sync_reads = self.sync_reads;
        let records = self.blocking(py, move |wal| {
            Ok(logbook_replay::session_events(
                synced(wal, sync_reads)?,
                session,
            )?)
        })?;
        Out::Records(records).into_pyobject(py).map(Bound::unbind)
    }

    /// `read(session)` as an awaitable.
    fn read_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = session_id(session)?;
        let sync_reads = self.sync_reads;
        self.spawn(py, move |wal| {
            Ok(Out::Records(logbook_replay::session_events(
                synced(wal, sync_reads)?,
                session,
            )?))
        })
    }

    /// `(lsn, name, data)` of the `Custom` records of `session` whose name
    /// starts with `prefix` (all when None), in LSN order: `read` for
    /// applications that keep their own records, without the dicts.
    #[pyo3(signature = (session, prefix = None))]
    fn read_custom(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        prefix: Option<String>,
    ) -> PyResult<PyObject> {
        let session = session_id(session)?;
        let sync_reads = self.sync_reads;
        let records = self.blocking(py, move |wal| {
            Ok(logbook_replay::session_events(
                synced(wal, sync_reads)?,
                session,
            )?)
        })?;
        custom_list(py, &records, prefix.as_deref()).map(Bound::unbind)
    }

    /// The last `limit` of `read_custom(session, prefix)`, read from the
    /// end of the session (`logbook_replay::session_tail`): O(limit)
    /// records through the session index, not the whole session (an
    /// encrypted log is read forwards whole). The same answer as
    /// `read_custom(session, prefix)[-limit:]`.
    #[pyo3(signature = (session, limit, prefix = None))]
    fn read_custom_tail(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = arg_limit)] limit: usize,
        prefix: Option<String>,
    ) -> PyResult<PyObject> {
        let session = session_id(session)?;
        let sync_reads = self.sync_reads;
        let wanted = prefix.clone();
        let records = self.blocking(py, move |wal| {
            Ok(custom_tail(
                synced(wal, sync_reads)?,
                session,
                limit,
                wanted.as_deref(),
            )?)
        })?;
        custom_list(py, &records, prefix.as_deref()).map(Bound::unbind)
    }

    /// `read_custom_tail(session, limit, prefix)` as an awaitable.
    #[pyo3(signature = (session, limit, prefix = None))]
    fn read_custom_tail_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = arg_limit)] limit: usize,
        prefix: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = session_id(session)?;
        let sync_reads = self.sync_reads;
        self.spawn(py, move |wal| {
            let records = custom_tail(synced(wal, sync_reads)?, session, limit, prefix.as_deref())?;
            Ok(Out::Custom(records, prefix))
        })
    }

    /// `read_custom(session, prefix)` as an awaitable.
    #[pyo3(signature = (session, prefix = None))]
    fn read_custom_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        prefix: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = session_id(session)?;
        let sync_reads = self.sync_reads;
        self.spawn(py, move |wal| {
            Ok(Out::Custom(
                logbook_replay::session_events(synced(wal, sync_reads)?, session)?,
                prefix,
            ))
        })
    }

    /// Remove and return the latest `Custom` record of `session` whose
    /// name starts with `prefix` (any name when None), as `(lsn, name,
    /// data)`; None if it has none. Atomic in this log: the record is read
    /// and deleted (a durable tombstone) before any other pop or deletion
    /// of the log reads, so concurrent pops, from any thread or event
    /// loop, never return the same record.
    #[pyo3(signature = (session, prefix = None))]
    fn pop_custom(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        prefix: Option<String>,
    ) -> PyResult<PyObject> {
        let session = session_id(session)?;
        let (deletes, sync_reads) = (self.deletes.clone(), self.sync_reads);
        let popped = self.blocking(py, move |wal| {
            pop_custom(wal, &deletes, sync_reads, session, prefix.as_deref())
        })?;
        Out::Popped(popped).into_pyobject(py).map(Bound::unbind)
    }

    /// `pop_custom(session, prefix)` as an awaitable. Once started, the pop
    /// completes even if the awaitable is cancelled (the record is then
    /// deleted and its value lost: shield it, as `LogbookSession` does).
    #[pyo3(signature = (session, prefix = None))]
    fn pop_custom_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        prefix: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = session_id(session)?;
        let (deletes, sync_reads) = (self.deletes.clone(), self.sync_reads);
        self.spawn(py, move |wal| {
            Ok(Out::Popped(pop_custom(
                wal,
                &deletes,
                sync_reads,
                session,
                prefix.as_deref(),
            )?))
        })
    }

    /// The session rebuilt by replay: `status` (`running`, `completed`,
    /// `failed`, `interrupted`), `model`, `cwd`, `title`, `first_lsn`,
    /// `last_lsn`, `events`, `transcript` (a list of `{lsn, role, text}`),
    /// `pending_tool_calls`, `forked_from`, `truncated` (its beginning was
    /// retained away: not the whole session). Raises `UnknownSessionError`.
    fn replay(&self, py: Python<'_>, session: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let session = session_id(session)?;
        let sync_reads = self.sync_reads;
        let (state, live) = self.blocking(py, move |wal| {
            let state = logbook_replay::session_state(synced(wal, sync_reads)?, session)?;
            Ok((state, true))
        })?;
        let status = state.status_given(live);
        let json = serde_json::json!({
            "session": state.session_id().to_string(),
            "status": status.as_str(),
            "error": match &status { logbook_replay::SessionStatus::Failed(m) => Some(m.clone()), _ => None },
            "model": state.model(),
            "cwd": state.cwd(),
            "title": state.title(),
            "first_lsn": state.first_lsn(),
            "last_lsn": state.last_lsn(),
            "events": state.events(),
            "transcript": state.transcript().iter().map(|t| serde_json::json!({
                "lsn": t.lsn, "role": t.role.as_str(), "text": t.text,
            })).collect::<Vec<_>>(),
            "pending_tool_calls": state.pending_tool_calls().iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            "forked_from": state.forked_from().map(|(s, l)| serde_json::json!([s.to_string(), l])),
            "truncated": state.truncated(),
        });
        from_json(py, &json)
    }

    /// Every session of the log, one dict each (`session`, `status`,
    /// `events`, `first_lsn`, `last_lsn`, `first_ts_us`, `last_ts_us`,
    /// `title`, `model`, `tokens`, `forked_from`, `truncated`: its
    /// beginning was retained away), in the order of their first records.
    /// Deleted sessions are left out; truncated ones are listed, marked.
    fn sessions(&self, py: Python<'_>) -> PyResult<PyObject> {
        let sync_reads = self.sync_reads;
        let log = self.blocking(py, move |wal| {
            Ok(logbook_replay::list_sessions(synced(wal, sync_reads)?)?)
        })?;
        let json: Vec<Value> = log
            .sessions
            .iter()
            .map(|s| {
                serde_json::json!({
                    "session": s.session.to_string(),
                    "status": s.status.as_str(),
                    "events": s.events,
                    "first_lsn": s.first_lsn,
                    "last_lsn": s.last_lsn,
                    "first_ts_us": s.first_timestamp_us,
                    "last_ts_us": s.last_timestamp_us,
                    "title": s.title,
                    "model": s.model,
                    "tokens": s.tokens,
                    "forked_from": s.forked_from.map(|(f, l)| serde_json::json!([f.to_string(), l])),
                    "truncated": s.truncated,
                })
            })
            .collect();
        from_json(py, &Value::Array(json))
    }

    /// Fork `session` at `at_lsn` (default: its whole history so far) into
    /// `new_session` (default: a new random id): the fork starts with a
    /// `SessionForked` record and a copy of the events. Returns
    /// `{session, from, at_lsn, forked_lsn, copied, truncated}`. A
    /// `new_session` that is `session` or already has records is a
    /// `ValueError` (the histories would merge).
    #[pyo3(signature = (session, at_lsn = None, new_session = None))]
    fn fork(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = arg_at_lsn)] at_lsn: Option<Lsn>,
        new_session: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let f = fork_fn(session, at_lsn, new_session)?;
        let forked = self.blocking(py, move |wal| f(wal))?;
        forked_to_py(py, &forked)
    }

    /// `fork(...)` as an awaitable.
    #[pyo3(signature = (session, at_lsn = None, new_session = None))]
    fn fork_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = arg_at_lsn)] at_lsn: Option<Lsn>,
        new_session: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = fork_fn(session, at_lsn, new_session)?;
        self.spawn(py, move |wal| Ok(Out::Forked(f(wal)?)))
    }

    /// The log (or one session) as export lines (`docs/json.md`): one JSON
    /// object per line, a `str`. Deleted records are left out.
    #[pyo3(signature = (session = None))]
    fn export(&self, py: Python<'_>, session: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
        let mut filter = ExportFilter::all();
        if let Some(s) = session {
            filter = filter.session(session_id(s)?);
        }
        let bytes = self.blocking(py, move |wal| {
            wal.sync()?;
            let mut out = Vec::new();
            logbook_replay::export(wal.dir(), filter, &mut out)?;
            Ok(out)
        })?;
        String::from_utf8(bytes).map_err(|e| LogbookError::new_err(e.to_string()))
    }

    /// Follow the log (or one session) from `from_lsn`: an async iterator
    /// of record dicts, every durable record once and in order, waiting
    /// for new ones; it ends once the log is closed.
    #[pyo3(signature = (session = None, from_lsn = 0))]
    fn follow(
        &self,
        session: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = arg_from_lsn)] from_lsn: Lsn,
    ) -> PyResult<Follow> {
        let session = session.map(session_id).transpose()?;
        let wal = self.wal()?;
        let inner = logbook_replay::follow(&wal, from_lsn, session).map_err(replay_err)?;
        Ok(Follow {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            owner: self.owner,
            path: self.path.clone(),
        })
    }

    /// Delete the whole session (a durable tombstone; every reader leaves
    /// its records out from now on). Returns `{session, lsns, bytes,
    /// tombstone_lsn}`. Raises `UnknownSessionError`, `DeletedSessionError`.
    fn delete_session(&self, py: Python<'_>, session: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        self.delete(py, session, Selection::Session)
    }

    /// Delete the session's records after `lsn` (pop, undo).
    fn delete_after(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = arg_lsn)] lsn: Lsn,
    ) -> PyResult<PyObject> {
        self.delete(py, session, Selection::After(lsn))
    }

    /// Delete the runs named by the LSNs of the `UserMessage`s that opened them.
    fn delete_runs(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = arg_runs)] runs: Vec<Lsn>,
    ) -> PyResult<PyObject> {
        self.delete(py, session, Selection::Runs(runs))
    }

    /// Delete these records of the session (by LSN).
    fn delete_records(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = arg_lsns)] lsns: Vec<Lsn>,
    ) -> PyResult<PyObject> {
        self.delete(py, session, Selection::Records(lsns))
    }

    /// Keep only the latest `keep` records of event kind `kind` (as in an
    /// event dict, `"UserMessage"`, or its `snake_case` name, `"user_message"`);
    /// delete the older.
    fn prune(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        kind: String,
        #[pyo3(from_py_with = arg_keep)] keep: usize,
    ) -> PyResult<PyObject> {
        // An unknown kind is refused under the name it was given.
        let snake = snake_kind(&kind);
        let kind = if logbook_bus::KINDS.contains(&snake.as_str()) {
            snake
        } else {
            kind
        };
        self.delete(py, session, Selection::KeepLatest { kind, keep })
    }

    /// `delete_session` as an awaitable.
    fn delete_session_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.delete_async(py, session, Selection::Session)
    }

    /// `delete_after` as an awaitable.
    fn delete_after_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = arg_lsn)] lsn: Lsn,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.delete_async(py, session, Selection::After(lsn))
    }

    /// `delete_records` as an awaitable.
    fn delete_records_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = arg_lsns)] lsns: Vec<Lsn>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.delete_async(py, session, Selection::Records(lsns))
    }

    /// Flush, fsync and close the log, releasing its lock. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.check_process()?;
        let wal = self
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match wal {
            Some(wal) => released(py, || wal.close()).map_err(wal_err),
            None => Ok(()),
        }
    }

    /// `close()` as an awaitable (the final fsync off the event loop).
    fn close_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.closing(py, Out::None)
    }

    fn __enter__(slf: Py<Self>) -> PyResult<Py<Self>> {
        // A closed log is refused here, not at the first call inside.
        slf.get().wal()?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.get().wal()?; // closed or forked: refused here
        let py = slf.py();
        let future = running_loop(py)?.call_method0("create_future")?;
        future.call_method1("set_result", (slf,))?;
        Ok(future)
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.closing(py, Out::Bool(false))
    }

    fn __repr__(&self) -> String {
        format!(
            "Log({:?}{})",
            self.path,
            if self.closed() { ", closed" } else { "" }
        )
    }
}

impl Log {
    fn delete(
        &self,
        py: Python<'_>,
        session: &Bound<'_, PyAny>,
        selection: Selection,
    ) -> PyResult<PyObject> {
        let session = session_id(session)?;
        let deletes = self.deletes.clone();
        let plan = self.blocking(py, move |wal| {
            let _turn = deletes.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(logbook_replay::delete(
                wal,
                session,
                &selection,
                reason(&selection),
            )?)
        })?;
        plan_to_py(py, &plan)
    }

    fn delete_async<'py>(
        &self,
        py: Python<'py>,
        session: &Bound<'py, PyAny>,
        selection: Selection,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = session_id(session)?;
        let deletes = self.deletes.clone();
        self.spawn(py, move |wal| {
            let _turn = deletes.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(Out::Plan(logbook_replay::delete(
                wal,
                session,
                &selection,
                reason(&selection),
            )?))
        })
    }
}

/// Take the latest `Custom` record of `session` whose name starts with
/// `prefix` out of it: read it from the end of the session and delete it,
/// in the log's turn for deletions (`deletes`), so two pops never take
/// the same record. None if the session has none.
pub(crate) fn pop_custom(
    wal: &Wal,
    deletes: &Mutex<()>,
    sync_reads: bool,
    session: Uuid,
    prefix: Option<&str>,
) -> Result<Option<EventRecord>, PyErrLater> {
    let _turn = deletes.lock().unwrap_or_else(PoisonError::into_inner);
    let latest = match custom_tail(synced(wal, sync_reads)?, session, 1, prefix) {
        Ok(mut records) => records.pop(),
        Err(ReplayError::UnknownSession(_) | ReplayError::DeletedSession { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(latest) = latest else {
        return Ok(None);
    };
    logbook_replay::delete(wal, session, &Selection::Records(vec![latest.lsn]), "pop")?;
    Ok(Some(latest))
}

/// The log's directory, after a sync when `sync_first`.
pub(crate) fn synced(wal: &Wal, sync_first: bool) -> Result<&std::path::Path, WalError> {
    if sync_first && wal.last_lsn() > wal.durable_lsn() {
        wal.sync()?;
    }
    Ok(wal.dir())
}

pub(crate) fn reason(selection: &Selection) -> &'static str {
    match selection {
        Selection::Session => "session",
        Selection::After(_) => "after",
        Selection::Runs(_) => "runs",
        Selection::KeepLatest { .. } => "prune",
        _ => "records",
    }
}

pub(crate) type ForkFn = Box<dyn FnOnce(&Wal) -> Result<logbook_replay::Forked, PyErrLater> + Send>;

pub(crate) fn fork_fn(
    session: &Bound<'_, PyAny>,
    at_lsn: Option<Lsn>,
    new_session: Option<&Bound<'_, PyAny>>,
) -> PyResult<ForkFn> {
    let session = session_id(session)?;
    let new = new_session
        .map(session_id)
        .transpose()?
        .unwrap_or_else(Uuid::new_v4);
    Ok(Box::new(move |wal: &Wal| {
        let at = match at_lsn {
            Some(at) => at,
            None => wal.sync()?,
        };
        Ok(logbook_replay::fork_as(wal, session, at, new)?)
    }))
}

pub(crate) fn batch_from_py(items: &Bound<'_, PyAny>) -> PyResult<Vec<(Uuid, SessionEvent)>> {
    let mut batch = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        let (session, event): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        batch.push((session_id(&session)?, event_from_py(&event)?));
    }
    Ok(batch)
}
