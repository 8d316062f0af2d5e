//! # logbook-python: the `logbook._logbook` extension module
//!
//! A thin layer over `logbook-wal` and `logbook-replay` for Python: the
//! `Log` class (open, append sync and async, read, replay, list, fork,
//! export, follow, delete, close), the exception classes, and the
//! conversion of events to and from dicts in the shape of `docs/json.md`
//! (through `logbook_replay::event_to_json` / `event_from_json`). Every
//! read and decode is the library's; this crate only converts.
//!
//! Blocking calls release the GIL (`allow_threads`) for their I/O and
//! encoding; `*_async` methods return asyncio awaitables driven by one
//! shared tokio runtime (one per process, a forked child's its own), on the library's async
//! path (`Wal::append_async`): concurrent coroutines share group commits;
//! no thread or task is started per append (the writer's wake-ups reach
//! the event loop through a socket it watches, and the loop resolves the
//! appends a group commit made durable in one batch: see `Door`).
//!
//! The pure-Python package (`python/logbook`) re-exports this module and
//! adds the LangGraph and Agents SDK adapters.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use logbook_bus::SessionEvent;
use logbook_replay::{DeletePlan, ExportFilter, ReplayError, Selection};
use logbook_wal::{EventRecord, Key, KeyRing, Lsn, SyncPolicy, Uuid, Wal, WalError, WalOptions};
use pyo3::exceptions::{PyException, PyStopAsyncIteration, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

pyo3::create_exception!(
    logbook,
    LogbookError,
    PyException,
    "Base class of every error of the log. Carries `path`, `offset` and `lsn` (None when the error names none)."
);
pyo3::create_exception!(
    logbook,
    LockedError,
    LogbookError,
    "Another writer (most likely another process) holds the log directory's lock: one writer per directory."
);
pyo3::create_exception!(
    logbook,
    CorruptError,
    LogbookError,
    "Damage on disk (a bad frame, header or sequence, or a record that does not authenticate): `path`, `offset` and `lsn` say where."
);
pyo3::create_exception!(
    logbook,
    NoLogError,
    LogbookError,
    "The path is not a directory, or (opened with `create=False`) does not exist or holds no log."
);
pyo3::create_exception!(
    logbook,
    EncryptionKeyError,
    LogbookError,
    "A key is missing, malformed, or matches none of the log's encrypted segments."
);
pyo3::create_exception!(
    logbook,
    DiskFullError,
    LogbookError,
    "The disk is full; appends succeed again once space is freed."
);
pyo3::create_exception!(
    logbook,
    PoisonedError,
    LogbookError,
    "An earlier write or fsync failed: the log accepts nothing more until it is reopened."
);
pyo3::create_exception!(logbook, ClosedError, LogbookError, "The log was closed.");
pyo3::create_exception!(
    logbook,
    ForkedError,
    LockedError,
    "The log was opened by another process, this one's parent before a fork: a `Log` works only in the process that opened it (open it in this one)."
);
pyo3::create_exception!(
    logbook,
    UnknownSessionError,
    LogbookError,
    "The session has no record in the log."
);
pyo3::create_exception!(
    logbook,
    DeletedSessionError,
    LogbookError,
    "Nothing of the session is left but tombstones: it was deleted."
);

/// `PermissionDeniedError`: made at import (`type(...)`, in
/// [`_logbook`]), since a class of two bases (`LogbookError` and the
/// built-in `PermissionError`) is beyond `create_exception!`.
static PERMISSION_DENIED: pyo3::sync::GILOnceCell<Py<pyo3::types::PyType>> =
    pyo3::sync::GILOnceCell::new();

/// Make `PermissionDeniedError` (once) and return it.
fn permission_denied_type(py: Python<'_>) -> PyResult<&Bound<'_, pyo3::types::PyType>> {
    PERMISSION_DENIED
        .get_or_try_init(py, || {
            let builtins = py.import("builtins")?;
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<LogbookError>().into_any(),
                    builtins.getattr("PermissionError")?,
                ],
            )?;
            let dict = PyDict::new(py);
            dict.set_item("__module__", "logbook")?;
            dict.set_item(
                "__doc__",
                "The operating system refused access to a file or directory of the log \
                 (EACCES, EPERM): a `LogbookError` and a `PermissionError` (an `OSError`), \
                 with `path` (and `filename`) the path refused and `errno` set. Its message \
                 is the log's, as every `LogbookError`'s.",
            )?;
            // The log's message, as every LogbookError (OSError's own
            // would print errno and filename instead).
            dict.set_item(
                "__str__",
                builtins.getattr("BaseException")?.getattr("__str__")?,
            )?;
            let class = builtins
                .getattr("type")?
                .call1(("PermissionDeniedError", bases, dict))?
                .downcast_into::<pyo3::types::PyType>()?;
            Ok::<_, PyErr>(class.unbind())
        })
        .map(|class| class.bind(py))
}

/// The OS error behind `e` when it is a refused permission.
fn permission_denied(e: &WalError) -> Option<&std::io::Error> {
    match e {
        WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Some(source)
        }
        _ => None,
    }
}

/// `err` (made for `e`) with the `OSError` fields of a refused
/// permission set: `errno`, `strerror`, `filename`.
fn with_os_fields(py: Python<'_>, err: PyErr, e: &WalError) -> PyErr {
    if let Some(io) = permission_denied(e) {
        let value = err.value(py);
        let _ = value.setattr("errno", io.raw_os_error());
        let _ = value.setattr("strerror", "Permission denied");
        let _ = value.setattr("filename", wal_place(e).0);
    }
    err
}

/// Where an error of the log is: (path, offset, lsn).
type Place = (Option<String>, Option<u64>, Option<Lsn>);

fn wal_place(e: &WalError) -> Place {
    let (path, offset) = match e.location() {
        Some((p, o)) => (Some(p.display().to_string()), Some(o)),
        None => (None, None),
    };
    let lsn = match e {
        WalError::Corrupt { lsn, .. }
        | WalError::MidLogCorruption { lsn, .. }
        | WalError::DurableDamaged { lsn, .. }
        | WalError::Decrypt { lsn, .. }
        | WalError::Forged { lsn, .. }
        | WalError::Encrypted { lsn, .. }
        | WalError::ForeignCodec { lsn, .. } => Some(*lsn),
        WalError::Sequence { expected, .. } => Some(*expected),
        WalError::Codec { lsn, .. } if *lsn > 0 => Some(*lsn),
        _ => None,
    };
    let path = path.or_else(|| match e {
        WalError::Io { path, .. }
        | WalError::DiskFull { path, .. }
        | WalError::NotFound { path }
        | WalError::NotADirectory { path } => Some(path.display().to_string()),
        WalError::Locked { dir, .. } | WalError::NoLog { dir } => Some(dir.display().to_string()),
        WalError::Encrypted { segment, .. }
        | WalError::KeyRequired { segment, .. }
        | WalError::UnrelatedKeys { segment, .. } => Some(segment.display().to_string()),
        _ => None,
    });
    (path, offset, lsn)
}

fn wal_class<'py>(py: Python<'py>, e: &WalError) -> Bound<'py, pyo3::types::PyType> {
    use pyo3::PyTypeInfo;
    match e {
        WalError::Locked { .. } => LockedError::type_object(py),
        WalError::NotFound { .. } | WalError::NotADirectory { .. } | WalError::NoLog { .. } => {
            NoLogError::type_object(py)
        }
        // A path under a regular file (`file/sub`): no log there either.
        WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotADirectory => {
            NoLogError::type_object(py)
        }
        WalError::Encrypted { .. }
        | WalError::KeyRequired { .. }
        | WalError::UnrelatedKeys { .. } => EncryptionKeyError::type_object(py),
        WalError::DiskFull { .. } => DiskFullError::type_object(py),
        WalError::Poisoned { .. } => PoisonedError::type_object(py),
        WalError::Closed => ClosedError::type_object(py),
        e if permission_denied(e).is_some() => match permission_denied_type(py) {
            Ok(class) => class.clone(),
            Err(_) => LogbookError::type_object(py),
        },
        e if e.is_corruption() => CorruptError::type_object(py),
        _ => LogbookError::type_object(py),
    }
}

/// Raise `class(message)` with `path`, `offset` and `lsn` set.
fn raise(
    _py: Python<'_>,
    class: &Bound<'_, pyo3::types::PyType>,
    message: String,
    (path, offset, lsn): Place,
) -> PyErr {
    let made = class.call1((message,)).and_then(|value| {
        value.setattr("path", path)?;
        value.setattr("offset", offset)?;
        value.setattr("lsn", lsn)?;
        Ok(PyErr::from_value(value))
    });
    made.unwrap_or_else(|e| e)
}

/// The Python exception for an error of the log.
fn wal_err(e: WalError) -> PyErr {
    Python::with_gil(|py| {
        let class = wal_class(py, &e);
        let err = raise(py, &class, e.to_string(), wal_place(&e));
        with_os_fields(py, err, &e)
    })
}

/// The Python exception for an error of a replay: the log's own error
/// (with its place) when there is one, the replay's message around it.
fn replay_err(e: ReplayError) -> PyErr {
    use pyo3::PyTypeInfo;
    Python::with_gil(|py| {
        let message = full_message(&e);
        match &e {
            ReplayError::Wal { source, .. } | ReplayError::Undecodable { source, .. } => {
                let class = wal_class(py, source);
                let mut place = wal_place(source);
                if let ReplayError::Undecodable { lsn, .. } = &e {
                    place.2 = Some(*lsn);
                }
                with_os_fields(py, raise(py, &class, message, place), source)
            }
            ReplayError::UnknownSession(_) => raise(
                py,
                &UnknownSessionError::type_object(py),
                message,
                (None, None, None),
            ),
            ReplayError::DeletedSession { tombstone_lsn, .. } => raise(
                py,
                &DeletedSessionError::type_object(py),
                message,
                (None, None, Some(*tombstone_lsn)),
            ),
            // A mistake of the caller's, not of the log.
            ReplayError::ForkTargetExists { .. } => PyValueError::new_err(message),
            ReplayError::PastEnd { lsn, .. } => raise(
                py,
                &LogbookError::type_object(py),
                message,
                (None, None, Some(*lsn)),
            ),
            _ => raise(
                py,
                &LogbookError::type_object(py),
                message,
                (None, None, None),
            ),
        }
    })
}

/// An error's message followed by its sources' (`a: b: c`).
fn full_message(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

// ---------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------

/// A session id from a `str` or a `uuid.UUID`.
fn session_id(obj: &Bound<'_, PyAny>) -> PyResult<Uuid> {
    let text = if obj.is_instance_of::<PyString>() {
        obj.extract::<String>()?
    } else {
        obj.str()?.extract::<String>()?
    };
    Uuid::parse_str(text.trim())
        .map_err(|e| PyValueError::new_err(format!("not a session id (a UUID): {text:?}: {e}")))
}

/// A Python value as JSON (dicts, lists, tuples, str, int, float, bool,
/// None).
fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return match obj.extract::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            Err(_) => Err(PyValueError::new_err(format!(
                "the integer {} does not fit in an event (from -2**63 to 2**64 - 1)",
                obj.str()?
            ))),
        };
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err(format!("{f} is not a JSON number")));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(Value::String(s.extract::<String>()?));
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in d.iter() {
            let key: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("event keys must be strings"))?;
            map.insert(key, to_json(&v)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(l) = obj.downcast::<PyList>() {
        return l
            .iter()
            .map(|v| to_json(&v))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(t) = obj.downcast::<PyTuple>() {
        return t
            .iter()
            .map(|v| to_json(&v))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    Err(PyTypeError::new_err(format!(
        "cannot put a {} in an event",
        obj.get_type().name()?
    )))
}

/// JSON as a Python value.
fn from_json(py: Python<'_>, value: &Value) -> PyResult<PyObject> {
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(from_json(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, from_json(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// An event from its dict (`docs/json.md`). A `Custom` event's `data` is
/// `bytes` (or `bytearray`), taken as it is; a `str` there is refused with a
/// `TypeError` saying what to pass (it is not decoded as base64, the JSON
/// shape of `data`: text that happens to be valid base64 would be stored
/// as other bytes without a word).
fn event_from_py(obj: &Bound<'_, PyAny>) -> PyResult<SessionEvent> {
    use pyo3::types::PyByteArray;
    let dict = obj
        .downcast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("an event is a dict with a \"kind\""))?;
    let custom = match dict.get_item("kind")? {
        Some(kind) => kind.extract::<String>().ok().as_deref() == Some("Custom"),
        None => false,
    };
    if let (true, Some(data)) = (custom, dict.get_item("data")?) {
        let bytes = if let Ok(b) = data.downcast::<PyBytes>() {
            b.as_bytes().to_vec()
        } else if let Ok(b) = data.downcast::<PyByteArray>() {
            b.to_vec()
        } else if data.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "a Custom event's \"data\" is bytes, not str: pass text.encode() for text, \
                 or base64.b64decode(text) for base64 (the JSON shape of docs/json.md)",
            ));
        } else {
            return Err(PyTypeError::new_err(format!(
                "a Custom event's \"data\" is bytes, not {}",
                data.get_type().name()?
            )));
        };
        let name: String = dict
            .get_item("name")?
            .ok_or_else(|| PyValueError::new_err("a Custom event needs a \"name\""))?
            .extract()
            .map_err(|_| PyTypeError::new_err("a Custom event's \"name\" is a str"))?;
        if dict.len() != 3 {
            return Err(PyValueError::new_err(
                "a Custom event has exactly \"kind\", \"name\" and \"data\"",
            ));
        }
        return Ok(SessionEvent::Custom { name, data: bytes });
    }
    // A reserved kind is refused by its name, before its fields are read.
    if let Some(kind) = dict.get_item("kind")? {
        if let Ok(kind) = kind.extract::<String>() {
            refuse_reserved(&kind)?;
        }
    }
    let json = to_json(obj)?;
    let event = logbook_replay::event_from_json(&json).map_err(PyValueError::new_err)?;
    refuse_internal(&event)?;
    Ok(event)
}

/// A `ValueError` for the kinds only the log's own operations write, each
/// pointing to the call that writes it: appended by hand, a tombstone
/// would delete records behind the deletion API's back, and a fork or
/// truncation mark would give a session a history it does not have.
fn refuse_internal(event: &SessionEvent) -> PyResult<()> {
    match event {
        SessionEvent::SessionDeleted { .. } => refuse_reserved("SessionDeleted"),
        SessionEvent::SessionForked { .. } => refuse_reserved("SessionForked"),
        SessionEvent::SessionTruncated { .. } => refuse_reserved("SessionTruncated"),
        _ => Ok(()),
    }
}

/// [`refuse_internal`] by the kind's name (`docs/json.md`), before the
/// event's fields are read.
fn refuse_reserved(kind: &str) -> PyResult<()> {
    let instead = match kind {
        "SessionDeleted" => {
            "delete through Log.delete_session, delete_after, delete_runs, delete_records or prune"
        }
        "SessionForked" => "fork a session with Log.fork (or fork_async)",
        "SessionTruncated" => {
            "the log writes it itself, at the start of a fork of a truncated session"
        }
        _ => return Ok(()),
    };
    Err(PyValueError::new_err(format!(
        "a {kind} event cannot be appended: {instead}"
    )))
}

/// An event kind as `prune` takes it: the dicts' `"kind"` (`UserMessage`)
/// as its `snake_case` name (`user_message`, `docs/json.md`); a name
/// already in `snake_case` is kept.
fn snake_kind(kind: &str) -> String {
    let mut out = String::with_capacity(kind.len() + 4);
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An event as its dict (`docs/json.md`); a `Custom` event's `data` as `bytes`.
fn event_to_py(py: Python<'_>, event: &SessionEvent) -> PyResult<PyObject> {
    if let SessionEvent::Custom { name, data } = event {
        let dict = PyDict::new(py);
        dict.set_item("kind", "Custom")?;
        dict.set_item("name", name)?;
        dict.set_item("data", PyBytes::new(py, data))?;
        return Ok(dict.into_any().unbind());
    }
    from_json(py, &logbook_replay::event_to_json(event))
}

/// A record as a dict: `lsn`, `session`, `ts_us`, `kind` (snake_case) and `event`.
fn record_to_py(py: Python<'_>, record: &EventRecord) -> PyResult<PyObject> {
    let dict = PyDict::new(py);
    dict.set_item("lsn", record.lsn)?;
    dict.set_item("session", record.session.to_string())?;
    dict.set_item("ts_us", record.timestamp_us)?;
    dict.set_item("kind", record.event.kind())?;
    dict.set_item("event", event_to_py(py, &record.event)?)?;
    Ok(dict.into_any().unbind())
}

fn plan_to_py(py: Python<'_>, plan: &DeletePlan) -> PyResult<PyObject> {
    let dict = PyDict::new(py);
    dict.set_item("session", plan.session.to_string())?;
    dict.set_item("lsns", plan.lsns.clone())?;
    dict.set_item("bytes", plan.bytes)?;
    dict.set_item("tombstone_lsn", plan.tombstone_lsn)?;
    Ok(dict.into_any().unbind())
}

/// What an async call hands back, converted once the GIL is held again.
enum Out {
    Lsn(Lsn),
    Record(EventRecord),
    Records(Vec<EventRecord>),
    Custom(Vec<EventRecord>, Option<String>),
    /// A `Custom` record taken out of its session ([`Log::pop_custom`]).
    Popped(Option<EventRecord>),
    Plan(DeletePlan),
    Forked(logbook_replay::Forked),
    None,
    Bool(bool),
}

impl<'py> IntoPyObject<'py> for Out {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Out::Lsn(l) => Ok(l.into_pyobject(py)?.into_any()),
            Out::Record(r) => Ok(record_to_py(py, &r)?.into_bound(py)),
            Out::Records(records) => {
                let list = PyList::empty(py);
                for r in &records {
                    list.append(record_to_py(py, r)?)?;
                }
                Ok(list.into_any())
            }
            Out::Custom(records, prefix) => custom_list(py, &records, prefix.as_deref()),
            Out::Popped(None) => Ok(py.None().into_bound(py)),
            Out::Popped(Some(record)) => custom_list(py, &[record], None)?.get_item(0),
            Out::Plan(plan) => Ok(plan_to_py(py, &plan)?.into_bound(py)),
            Out::Forked(f) => Ok(forked_to_py(py, &f)?.into_bound(py)),
            Out::None => Ok(py.None().into_bound(py)),
            Out::Bool(b) => Ok(PyBool::new(py, b).to_owned().into_any()),
        }
    }
}

/// The last `limit` `Custom` records of `session` whose name starts with
/// `prefix`, read from the end.
fn custom_tail(
    dir: &std::path::Path,
    session: Uuid,
    limit: usize,
    prefix: Option<&str>,
) -> Result<Vec<EventRecord>, ReplayError> {
    logbook_replay::session_tail(
        dir,
        session,
        limit,
        |r| matches!(&r.event, SessionEvent::Custom { name, .. } if prefix.is_none_or(|p| name.starts_with(p))),
    )
}

/// `(lsn, name, data)` of each `Custom` record whose name starts with `prefix`.
fn custom_list<'py>(
    py: Python<'py>,
    records: &[EventRecord],
    prefix: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let list = PyList::empty(py);
    for r in records {
        if let SessionEvent::Custom { name, data } = &r.event {
            if prefix.is_none_or(|p| name.starts_with(p)) {
                list.append((r.lsn, name.as_str(), PyBytes::new(py, data)))?;
            }
        }
    }
    Ok(list.into_any())
}

fn forked_to_py(py: Python<'_>, f: &logbook_replay::Forked) -> PyResult<PyObject> {
    let dict = PyDict::new(py);
    dict.set_item("session", f.session.to_string())?;
    dict.set_item("from", f.from.to_string())?;
    dict.set_item("at_lsn", f.at_lsn)?;
    dict.set_item("forked_lsn", f.forked_lsn)?;
    dict.set_item("copied", f.copied)?;
    dict.set_item("truncated", f.truncated)?;
    Ok(dict.into_any().unbind())
}

// ---------------------------------------------------------------------------
// Async appends: queued on the caller's thread, completed in batches
// ---------------------------------------------------------------------------

/// How an async append ended.
enum Done {
    Lsn(Lsn),
    Lsns(Vec<Lsn>),
    Err(WalError),
    /// What a task on the blocking pool returned ([`Log::spawn`]).
    Out(Result<Out, PyErrLater>),
}

/// An append to resolve: its asyncio future, where it is resolved, and how
/// it ended.
struct Completion {
    future: Py<PyAny>,
    home: Home,
    done: Done,
}

/// Where a future is resolved: through its loop's [`Door`] (no GIL needed
/// to hand it over), or with `call_soon_threadsafe` on its loop (a loop
/// that cannot watch a socket: `add_reader` unsupported).
enum Home {
    Door(Arc<Door>),
    Loop(Py<PyAny>),
}

/// A way into one asyncio event loop that needs no GIL: results are queued
/// here, and one byte written to a socket the loop watches
/// (`loop.add_reader`) wakes it; the loop's reader callback ([`Door::open`])
/// then resolves every queued future, with the GIL it already holds. A
/// thread that finishes work for Python so never takes the GIL, and the
/// event loop's thread is never made to give it up.
struct Door {
    tx: std::os::unix::net::UnixStream,
    rx: std::os::unix::net::UnixStream,
    /// A byte is on its way (or unread): no other is written.
    rung: std::sync::atomic::AtomicBool,
    queued: Mutex<Vec<Handed>>,
    /// Waiting appends of this loop that the writer woke (ids in
    /// [`WAITING`]): polled by the loop's callback itself.
    woken: Mutex<Vec<u64>>,
}

/// A future and how it ended, on its way to its loop.
type Handed = (Py<PyAny>, Done);

/// The event loops seen, each with its door (registered with it), or
/// none if it cannot watch a socket. A loop is kept alive while it is
/// listed (so no other object takes its address); closed loops are
/// dropped from the list when a new loop is seen.
static DOORS: Mutex<Vec<LoopDoor>> = Mutex::new(Vec::new());

/// An event loop and its door, if it has one.
type LoopDoor = (Py<PyAny>, Option<Arc<Door>>);

/// Where futures of `event_loop` are resolved: its door, made (and
/// registered with `add_reader`) on first use; `Home::Loop` if the loop
/// cannot watch a socket. Called on the loop's own thread; no lock is held
/// across a call into Python (which may let another thread run).
fn home(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> Home {
    let known: Vec<LoopDoor> = {
        let doors = DOORS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, door)) = doors.iter().find(|(l, _)| l.is(event_loop)) {
            return match door {
                Some(door) => Home::Door(door.clone()),
                None => Home::Loop(event_loop.clone().unbind()),
            };
        }
        doors
            .iter()
            .map(|(l, d)| (l.clone_ref(py), d.clone()))
            .collect()
    };
    let closed: Vec<Py<PyAny>> = known
        .into_iter()
        .filter(|(l, _)| {
            l.call_method0(py, "is_closed")
                .and_then(|c| c.is_truthy(py))
                .unwrap_or(true)
        })
        .map(|(l, _)| l)
        .collect();
    let door = Door::make(py, event_loop);
    let mut doors = DOORS.lock().unwrap_or_else(PoisonError::into_inner);
    doors.retain(|(l, _)| !closed.iter().any(|c| c.is(l)));
    doors.push((event_loop.clone().unbind(), door.clone()));
    drop(doors);
    match door {
        Some(door) => Home::Door(door),
        None => Home::Loop(event_loop.clone().unbind()),
    }
}

impl Door {
    fn make(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> Option<Arc<Door>> {
        use std::os::fd::AsRawFd;
        let (tx, rx) = std::os::unix::net::UnixStream::pair().ok()?;
        tx.set_nonblocking(true).ok()?;
        rx.set_nonblocking(true).ok()?;
        let door = Arc::new(Door {
            tx,
            rx,
            rung: std::sync::atomic::AtomicBool::new(false),
            queued: Mutex::new(Vec::new()),
            woken: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&door);
        let callback = pyo3::types::PyCFunction::new_closure(
            py,
            None,
            None,
            move |args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| {
                if let Some(door) = weak.upgrade() {
                    door.open(args.py());
                }
            },
        )
        .ok()?;
        event_loop
            .call_method1("add_reader", (door.rx.as_raw_fd(), callback))
            .ok()?;
        Some(door)
    }

    /// Queue results for the loop, and wake it (no GIL needed).
    fn hand_over(&self, items: impl IntoIterator<Item = Handed>) {
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(items);
        self.ring();
    }

    /// Note that the waiting append `id` was woken, and wake the loop.
    fn woke(&self, id: u64) {
        self.woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
        self.ring();
    }

    /// Wake the loop, unless a byte is already on its way.
    fn ring(&self) {
        use std::io::Write;
        if !self.rung.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // A full socket buffer already holds a byte: nothing lost.
            let _ = (&self.tx).write(&[1]);
        }
    }

    /// On the loop's thread (its reader callback): resolve what is queued.
    fn open(&self, py: Python<'_>) {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        // Results queued from here on ring again.
        self.rung.store(false, std::sync::atomic::Ordering::SeqCst);
        let queued =
            std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner));
        for (future, done) in queued {
            let _ = settle(py, future.bind(py), done);
        }
        let woken = std::mem::take(&mut *self.woken.lock().unwrap_or_else(PoisonError::into_inner));
        for (w, done) in poll_woken(woken) {
            let _ = settle(py, w.future.bind(py), done);
        }
    }
}

/// Resolve `future` with `done`, unless it is done already (cancelled: its
/// record is queued all the same).
fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, done: Done) -> PyResult<()> {
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    let (ok, value) = outcome(py, done)?;
    if ok {
        future.call_method1(intern!(py, "set_result"), (value,))?;
    } else {
        future.call_method1(intern!(py, "set_exception"), (value,))?;
    }
    Ok(())
}

/// Whether `done` is a result (else an exception), and its Python value.
fn outcome(py: Python<'_>, done: Done) -> PyResult<(bool, PyObject)> {
    Ok(match done {
        Done::Lsn(l) => (true, l.into_pyobject(py)?.into_any().unbind()),
        Done::Lsns(l) => (true, l.into_pyobject(py)?.into_any().unbind()),
        Done::Err(e) => (false, wal_err(e).into_value(py).into_any()),
        Done::Out(Ok(out)) => (true, out.into_pyobject(py)?.unbind()),
        Done::Out(Err(e)) => (false, e.into_py().into_value(py).into_any()),
    })
}

static GET_RUNNING_LOOP: pyo3::sync::GILOnceCell<Py<PyAny>> = pyo3::sync::GILOnceCell::new();

/// Resolve the futures of `batch` (emptied): one GIL acquisition, one
/// `call_soon_threadsafe` per event loop.
fn deliver(batch: &mut Vec<Completion>) {
    // Through doors first: no GIL.
    let mut by_door: Vec<(Arc<Door>, Vec<Handed>)> = Vec::new();
    let mut rest = Vec::new();
    for c in batch.drain(..) {
        match c.home {
            Home::Door(door) => match by_door.iter_mut().find(|(d, _)| Arc::ptr_eq(d, &door)) {
                Some((_, items)) => items.push((c.future, c.done)),
                None => by_door.push((door, vec![(c.future, c.done)])),
            },
            home => rest.push(Completion {
                future: c.future,
                home,
                done: c.done,
            }),
        }
    }
    for (door, items) in by_door {
        door.hand_over(items);
    }
    *batch = rest;
    if batch.is_empty() {
        return;
    }
    // At interpreter exit, a thread that takes the GIL (or gives it up in
    // `call_soon_threadsafe`'s write and takes it back) is ended by Python
    // in the middle of Rust frames, which aborts the process: deliveries
    // stop at exit (see [`shutdown`]), and exit waits for those under way.
    IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if SHUTDOWN.load(std::sync::atomic::Ordering::SeqCst) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        // Dropped without the GIL: pyo3 defers the decrefs (never run).
        batch.clear();
        return;
    }
    deliver_now(batch);
    IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
}

/// About how many bytes `event` encodes to (its big fields).
fn approx_len(event: &SessionEvent) -> usize {
    match event {
        SessionEvent::Custom { data, .. } => data.len(),
        SessionEvent::TextComplete(t)
        | SessionEvent::TextChunk(t)
        | SessionEvent::ThinkingComplete(t)
        | SessionEvent::UserMessage(t)
        | SessionEvent::Error(t) => t.len(),
        SessionEvent::ToolCallComplete { output, .. } => output.len(),
        SessionEvent::ToolCallStart { arguments, .. } => arguments.len(),
        _ => 0,
    }
}

/// Payload bytes from which an async append is encoded with the GIL released.
const RELEASE_GIL_FROM: usize = 16 << 10;

static SHUTDOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Registered with `atexit`: stop delivering results to Python, and wait
/// (without the GIL, at most a second) for the deliveries under way.
#[pyfunction]
fn shutdown(py: Python<'_>) {
    SHUTDOWN.store(true, std::sync::atomic::Ordering::SeqCst);
    py.allow_threads(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    });
}

fn deliver_now(batch: &mut Vec<Completion>) {
    let _: PyResult<()> = Python::with_gil(|py| {
        let mut by_loop: Vec<(Py<PyAny>, Vec<PyObject>)> = Vec::new();
        for c in batch.drain(..) {
            let Home::Loop(event_loop) = c.home else {
                continue; // (handed over above)
            };
            let Ok((ok, value)) = outcome(py, c.done) else {
                continue;
            };
            let item = (c.future, ok, value)
                .into_pyobject(py)
                .map(|t| t.into_any().unbind());
            let Ok(item) = item else { continue };
            match by_loop.iter_mut().find(|(l, _)| l.is(&event_loop)) {
                Some((_, items)) => items.push(item),
                None => by_loop.push((event_loop, vec![item])),
            }
        }
        let resolve = wrap_pyfunction!(resolve_batch, py)?;
        for (event_loop, items) in by_loop {
            let list = PyList::new(py, items)?;
            // A closed loop refuses: its futures are gone with it.
            let _ = event_loop.call_method1(py, "call_soon_threadsafe", (&resolve, list));
        }
        Ok(())
    });
}

/// Resolve `(future, ok, value)` items on their loop (a future cancelled
/// meanwhile is left alone: its record is queued all the same).
#[pyfunction]
fn resolve_batch(batch: &Bound<'_, PyList>) -> PyResult<()> {
    for item in batch.iter() {
        let (future, ok, value): (Bound<'_, PyAny>, bool, Bound<'_, PyAny>) = item.extract()?;
        if future.call_method0("done")?.is_truthy()? {
            continue;
        }
        if ok {
            future.call_method1("set_result", (value,))?;
        } else {
            future.call_method1("set_exception", (value,))?;
        }
    }
    Ok(())
}

/// An append waiting for durability: its future (polled once already),
/// and the asyncio future to resolve and where.
struct Waiting {
    append: std::pin::Pin<Box<dyn Future<Output = Done> + Send>>,
    /// The append's waker ([`WakeAppend`]), made once.
    waker: std::task::Waker,
    future: Py<PyAny>,
    home: Home,
}

/// The appends waiting for durability, by id. Each is polled with a waker
/// of its own ([`WakeAppend`]), which the writer wakes once its record is
/// durable (or the log failed): the wake notes the id with the append's
/// event loop ([`Door::woke`]) and wakes the loop, whose reader callback
/// polls the appends woken and resolves the finished ones, all in one go,
/// on the loop's own thread and with the GIL it holds. No task, thread or
/// channel message per append, and no other thread takes the GIL; a group
/// commit wakes each event loop about once. (A loop without a door is
/// served by one resolver task instead: [`resolver`].)
static WAITING: std::sync::LazyLock<Mutex<std::collections::HashMap<u64, Waiting>>> =
    std::sync::LazyLock::new(|| Mutex::new(std::collections::HashMap::new()));

static NEXT_WAITING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The ids of the waiting appends woken since the resolver last ran.
static WOKEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// The waker of the waiting append with this id: it tells the append's
/// event loop ([`Door::woke`]), which polls it itself; or, for a loop
/// without a door, the resolver task.
struct WakeAppend {
    id: u64,
    door: Option<Arc<Door>>,
}

impl WakeAppend {
    fn waker(id: u64, home: &Home) -> std::task::Waker {
        let door = match home {
            Home::Door(door) => Some(door.clone()),
            Home::Loop(_) => None,
        };
        std::task::Waker::from(Arc::new(WakeAppend { id, door }))
    }
}

impl std::task::Wake for WakeAppend {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match &self.door {
            Some(door) => door.woke(self.id),
            None => {
                WOKEN
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(self.id);
                resolver().notify_one();
            }
        }
    }
}

/// Poll the waiting appends `ids` (those woken); the finished ones, taken
/// out of [`WAITING`]. Its lock is held while an append is polled (a
/// waiting append joins it under that lock after its first poll, so a wake
/// that comes in between finds it); a wake during a poll only notes its id.
fn poll_woken(ids: Vec<u64>) -> Vec<(Waiting, Done)> {
    use std::task::Poll;
    let mut finished = Vec::new();
    if ids.is_empty() {
        return finished;
    }
    let mut waiting = WAITING.lock().unwrap_or_else(PoisonError::into_inner);
    for id in ids {
        let Some(mut w) = waiting.remove(&id) else {
            continue; // Woken twice, finished the first time.
        };
        let waker = w.waker.clone();
        match w
            .append
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
        {
            Poll::Ready(d) => finished.push((w, d)),
            Poll::Pending => {
                waiting.insert(id, w);
            }
        }
    }
    finished
}

/// The bell of the resolver task, which polls the woken appends of event
/// loops without a [`Door`] (the task is started on first use, on this
/// process's runtime: see [`Process`]).
fn resolver() -> Arc<tokio::sync::Notify> {
    with_process(|process| {
        if let Some(bell) = &process.resolver {
            return bell.clone();
        }
        let notify = Arc::new(tokio::sync::Notify::new());
        let bell = notify.clone();
        process.runtime.spawn(async move {
            let mut done = Vec::new();
            loop {
                bell.notified().await;
                resolve(&mut done);
            }
        });
        process.resolver = Some(notify.clone());
        notify
    })
}

// ---------------------------------------------------------------------------
// The process's own runtime, and a fork
// ---------------------------------------------------------------------------

/// What async calls share in one process: the tokio runtime whose blocking
/// pool runs reads, deletes and syncs ([`spawn_blocking`]) and whose
/// workers run `Follow` and the resolver task, and that task's bell.
///
/// A child made by `fork()` inherits a copy of all of it without the
/// threads: a task handed to the copied runtime waited for ever (its pool
/// counted idle threads the child does not have). So the state belongs to
/// one process id: a child makes its own on first use ([`with_process`]),
/// and its fork hook ([`after_fork_in_child`]) also drops the parent's
/// event-loop doors and waiting appends (a fork that runs no Python hook,
/// `fork()` called from C, gets its own runtime all the same). The parent's copies are leaked,
/// never dropped: dropping them would join threads the child does not
/// have, or close the parent's writer (see `Drop for Log`).
struct Process {
    pid: u32,
    runtime: &'static tokio::runtime::Runtime,
    resolver: Option<Arc<tokio::sync::Notify>>,
}

static PROCESS: Mutex<Option<Process>> = Mutex::new(None);

/// `f` of this process's [`Process`] (made now if there is none, or if
/// the one there is its parent's, from before a fork), under its lock.
fn with_process<R>(f: impl FnOnce(&mut Process) -> R) -> R {
    let mut slot = PROCESS.lock().unwrap_or_else(PoisonError::into_inner);
    f(fresh_process(&mut slot))
}

/// The [`Process`] in `slot`, made anew unless it is this process's.
fn fresh_process(slot: &mut Option<Process>) -> &mut Process {
    let pid = std::process::id();
    if slot.as_ref().is_some_and(|p| p.pid != pid) {
        // The parent's (after a fork): leaked, its threads are not here.
        std::mem::forget(slot.take());
    }
    slot.get_or_insert_with(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("logbook-python")
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}"));
        Process {
            pid,
            runtime: Box::leak(Box::new(runtime)),
            resolver: None,
        }
    })
}

/// This process's tokio runtime.
fn runtime() -> &'static tokio::runtime::Runtime {
    with_process(|p| p.runtime)
}

/// The lock of `mutex` if it is free now (poisoned or not).
fn try_locked<T>(mutex: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// `os.register_at_fork(after_in_child=...)`: the child's own async
/// state, at once. The parent's event-loop doors and waiting appends are
/// leaked (they belong to the parent's loops and writers, see [`Process`]);
/// so is its runtime, and the child makes its own on first use.
///
/// Each lock is tried, never waited for: one held at the fork by another
/// thread of the parent (for the moment it takes to queue or poll an
/// append) is held for ever in the child, whose copy of that thread does
/// not exist; what it guards is then left as it is (the hazard of any
/// `fork()` of a process with threads).
#[pyfunction]
fn after_fork_in_child() {
    if let Some(mut doors) = try_locked(&DOORS) {
        std::mem::forget(std::mem::take(&mut *doors));
    }
    if let Some(mut waiting) = try_locked(&WAITING) {
        std::mem::forget(std::mem::take(&mut *waiting));
    }
    if let Some(mut woken) = try_locked(&WOKEN) {
        woken.clear();
    }
    if let Some(mut process) = try_locked(&PROCESS) {
        // The child's is made on first use (a child may never need one).
        std::mem::forget(process.take());
    }
    IN_FLIGHT.store(0, std::sync::atomic::Ordering::SeqCst);
}

/// Poll the appends of door-less loops woken; hand over those that
/// finished, in one batch.
fn resolve(done: &mut Vec<Completion>) {
    let woken = std::mem::take(&mut *WOKEN.lock().unwrap_or_else(PoisonError::into_inner));
    // The appends' futures are dropped here, with no lock of ours held.
    for (w, d) in poll_woken(woken) {
        done.push(Completion {
            future: w.future,
            home: w.home,
            done: d,
        });
    }
    if !done.is_empty() {
        deliver(done);
    }
}

/// The hold a log's async appends take on its group commit for the rest
/// of their event loop's turn (`Wal::hold_commit`), if one is taken.
type TurnHold = Arc<Mutex<Option<logbook_wal::CommitHold>>>;

/// Hold `wal`'s group commit for the rest of the event loop's turn, unless
/// held already: the tasks that a turn runs append one after another, and
/// their records then share one fsync, instead of the log's committer
/// fsyncing the first few on their own while the loop queues the rest
/// (an fsync, with its CPU and wake-ups, per few records). The hold ends
/// in a callback the loop runs after the tasks of this turn (`call_soon`):
/// it delays when the records become durable by the rest of the turn,
/// which their tasks could not use anyway (the loop is busy running it).
/// The log bounds a hold that outlives its turn (a stuck loop) to a
/// millisecond.
fn hold_for_turn(event_loop: &Bound<'_, PyAny>, wal: &Wal, slot: &TurnHold) -> PyResult<()> {
    let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if held.is_some() {
        return Ok(());
    }
    *held = Some(wal.hold_commit());
    drop(held);
    let ends = slot.clone();
    let end = pyo3::types::PyCFunction::new_closure(
        event_loop.py(),
        None,
        None,
        move |_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| {
            let hold = ends.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(hold);
        },
    );
    let call_soon = intern!(event_loop.py(), "call_soon");
    let scheduled = end.and_then(|end| event_loop.call_method1(call_soon, (end,)));
    if let Err(e) = scheduled {
        // Never held past this append's own failure.
        slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        return Err(e);
    }
    Ok(())
}

/// An asyncio future for an append: `append` is polled once here, on the
/// caller's thread (it encodes and queues the record, so records are queued
/// in the order of the calls; outside tokio that poll does no I/O); if it
/// must wait for durability it joins [`WAITING`], and is resolved once its
/// record is durable.
fn appending<'py>(
    py: Python<'py>,
    bytes: usize,
    hold: (&Wal, &TurnHold),
    append: impl Future<Output = Done> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>> {
    use std::task::{Context, Poll};
    let event_loop = running_loop(py)?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    hold_for_turn(&event_loop, hold.0, hold.1)?;
    let mut append: std::pin::Pin<Box<dyn Future<Output = Done> + Send>> = Box::pin(append);
    let home = home(py, &event_loop);
    let id = NEXT_WAITING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let waker = WakeAppend::waker(id, &home);
    let mut handles = Some((future.clone().unbind(), home));
    // The first poll encodes and queues the record, registering the
    // append's waker; a waiting append joins the map before its lock is let
    // go, so a wake-up in between finds it there.
    let mut poll = || {
        let mut waiting = WAITING.lock().unwrap_or_else(PoisonError::into_inner);
        let first = match append.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(done) => Some(done),
            Poll::Pending => {
                if let Some((future, home)) = handles.take() {
                    waiting.insert(
                        id,
                        Waiting {
                            append: std::mem::replace(
                                &mut append,
                                Box::pin(std::future::pending()),
                            ),
                            waker: waker.clone(),
                            future,
                            home,
                        },
                    );
                }
                None
            }
        };
        drop(waiting);
        first
    };
    // The poll encodes and queues: microseconds for a small record, less
    // than giving the GIL up and taking it back (which, with the threads
    // that resolve finished appends wanting it, costs a switch). Large
    // records are encoded without it.
    let first = if bytes >= RELEASE_GIL_FROM {
        py.allow_threads(poll)
    } else {
        poll()
    };
    match first {
        Some(Done::Err(e)) => {
            future.call_method1("set_exception", (wal_err(e).into_value(py),))?;
        }
        Some(Done::Lsn(l)) => {
            future.call_method1(intern!(py, "set_result"), (l,))?;
        }
        Some(Done::Lsns(l)) => {
            future.call_method1("set_result", (l,))?;
        }
        Some(Done::Out(Ok(out))) => {
            future.call_method1("set_result", (out,))?;
        }
        Some(Done::Out(Err(e))) => {
            future.call_method1("set_exception", (e.into_py().into_value(py),))?;
        }
        None => {}
    }
    Ok(future)
}

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
struct Log {
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
        py.allow_threads(|| f(&wal)).map_err(PyErrLater::into_py)
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
fn spawn_blocking<'py>(
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
fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let get_loop = GET_RUNNING_LOOP.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    get_loop.call0(py).map(|l| l.into_bound(py))
}

/// `ForkedError` unless this is process `owner`, the one that opened the
/// log in `path`. After a `fork()` the child holds a copy of the parent's
/// writer, file descriptors and lock, without its threads: appends from
/// both would get the same LSNs and overwrite each other's records.
fn check_process(owner: u32, path: &str) -> PyResult<()> {
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
enum PyErrLater {
    Wal(WalError),
    Replay(ReplayError),
    /// The end of a `Follow` (`StopAsyncIteration`).
    End,
}

impl PyErrLater {
    fn into_py(self) -> PyErr {
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
const BATCH_DELAY_MS: (f64, f64) = (0.001, 3_600_000.0);

/// `batch_delay_ms` as a delay: a finite number of milliseconds in
/// [`BATCH_DELAY_MS`], else a `ValueError` naming it.
fn batch_delay(ms: Option<f64>) -> PyResult<Duration> {
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
fn segment_size(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
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

fn options(
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

fn key_ring(
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
            // Readers of this process (replays, listings) read with it.
            let _ = logbook_wal::install_default_keys(ring.clone());
        }
        let opts = options(sync, batch_delay_ms, segment_size, ring)?;
        let sync_reads = opts.sync != SyncPolicy::Always;
        let path = path.0;
        if !create {
            let holds_a_log = py.allow_threads(|| match logbook_wal::Reader::open(&path) {
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
        let wal = py
            .allow_threads(|| Wal::open(&path, opts))
            .map_err(wal_err)?;
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
        let wal = self.wal()?;
        let event = SessionEvent::Custom { name, data: data.0 };
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
            Some(wal) => py.allow_threads(|| wal.close()).map_err(wal_err),
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
fn pop_custom(
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
fn synced(wal: &Wal, sync_first: bool) -> Result<&std::path::Path, WalError> {
    if sync_first && wal.last_lsn() > wal.durable_lsn() {
        wal.sync()?;
    }
    Ok(wal.dir())
}

fn reason(selection: &Selection) -> &'static str {
    match selection {
        Selection::Session => "session",
        Selection::After(_) => "after",
        Selection::Runs(_) => "runs",
        Selection::KeepLatest { .. } => "prune",
        _ => "records",
    }
}

type ForkFn = Box<dyn FnOnce(&Wal) -> Result<logbook_replay::Forked, PyErrLater> + Send>;

fn fork_fn(
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

fn batch_from_py(items: &Bound<'_, PyAny>) -> PyResult<Vec<(Uuid, SessionEvent)>> {
    let mut batch = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        let (session, event): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        batch.push((session_id(&session)?, event_from_py(&event)?));
    }
    Ok(batch)
}

// ---------------------------------------------------------------------------
// Int arguments that cannot be negative
// ---------------------------------------------------------------------------

/// An int argument that cannot be negative (an LSN, a count), named
/// `name` in its errors: a `ValueError` below 0 or above 2**64 - 1 (not
/// the `OverflowError` naming nothing that a bare `u64` gives), a
/// `TypeError` for what is not an int.
fn non_negative(obj: &Bound<'_, PyAny>, name: &str, what: &str) -> PyResult<u64> {
    use pyo3::exceptions::PyOverflowError;
    let out_of_range = || -> PyErr {
        let text = obj
            .str()
            .map_or_else(|_| "that".to_owned(), |s| s.to_string());
        PyValueError::new_err(format!(
            "{name} must be {what} from 0 to 2**64 - 1, not {text}"
        ))
    };
    match obj.extract::<i128>() {
        Ok(n) => u64::try_from(n).map_err(|_| out_of_range()),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(out_of_range()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be {what}, not {}",
            obj.get_type().name()?
        ))),
    }
}

/// A list of LSNs, named `name` in its errors (as [`non_negative`]).
fn lsn_list(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<Lsn>> {
    let not_a_list = || -> PyResult<PyErr> {
        Ok(PyTypeError::new_err(format!(
            "{name} must be a list of LSNs (ints), not {}",
            obj.get_type().name()?
        )))
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(not_a_list()?);
    }
    let Ok(items) = obj.try_iter() else {
        return Err(not_a_list()?);
    };
    items
        .map(|item| non_negative(&item?, name, "a list of LSNs (ints)"))
        .collect()
}

fn arg_from_lsn(obj: &Bound<'_, PyAny>) -> PyResult<Lsn> {
    non_negative(obj, "from_lsn", "an LSN (an int)")
}

fn arg_lsn(obj: &Bound<'_, PyAny>) -> PyResult<Lsn> {
    non_negative(obj, "lsn", "an LSN (an int)")
}

fn arg_at_lsn(obj: &Bound<'_, PyAny>) -> PyResult<Option<Lsn>> {
    if obj.is_none() {
        return Ok(None);
    }
    non_negative(obj, "at_lsn", "an LSN (an int)").map(Some)
}

fn arg_limit(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let n = non_negative(obj, "limit", "a count (an int)")?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn arg_keep(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let n = non_negative(obj, "keep", "a count (an int)")?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn arg_lsns(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Lsn>> {
    lsn_list(obj, "lsns")
}

fn arg_runs(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Lsn>> {
    lsn_list(obj, "runs")
}

/// Record data: `bytes` (copied once, straight from the object), or any
/// other sequence of ints (`bytearray`, a list).
struct Data(Vec<u8>);

impl<'py> FromPyObject<'py> for Data {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.downcast::<PyBytes>() {
            return Ok(Data(b.as_bytes().to_vec()));
        }
        if obj.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "data is bytes, not str: pass text.encode() for text, or base64.b64decode(text) for base64",
            ));
        }
        Ok(Data(obj.extract()?))
    }
}

/// A path given as `str` or `os.PathLike`.
struct PathOrStr(String);

impl<'py> FromPyObject<'py> for PathOrStr {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(s) = obj.extract::<String>() {
            return Ok(PathOrStr(s));
        }
        let not_a_path = || -> PyResult<PyErr> {
            Ok(PyTypeError::new_err(format!(
                "a path is a str or an os.PathLike (pathlib.Path), not {}",
                obj.get_type().name()?
            )))
        };
        if !obj.hasattr("__fspath__")? {
            return Err(not_a_path()?);
        }
        match obj.call_method0("__fspath__")?.extract::<String>() {
            Ok(s) => Ok(PathOrStr(s)),
            Err(_) => Err(not_a_path()?),
        }
    }
}

/// An async iterator over a log's records as they become durable
/// (`Log.follow`).
#[pyclass(module = "logbook._logbook", frozen, weakref)]
struct Follow {
    inner: Arc<tokio::sync::Mutex<logbook_replay::Follow>>,
    /// The process that opened the log, and its path ([`check_process`]).
    owner: u32,
    path: String,
}

impl Drop for Follow {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            // In a forked child: never the last owner of the parent's
            // writer (see `Drop for Log`).
            std::mem::forget(self.inner.clone());
        }
    }
}

#[pymethods]
impl Follow {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next record: an asyncio future resolved through [`deliver`],
    /// as the other async methods are (so never after interpreter exit
    /// has begun). Cancelling it drops the wait.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        check_process(self.owner, &self.path)?;
        let inner = self.inner.clone();
        let event_loop = running_loop(py)?;
        let future = event_loop.call_method0("create_future")?;
        let (f_, home) = (future.clone().unbind(), home(py, &event_loop));
        let task = runtime().spawn(async move {
            let next = inner.lock().await.next().await;
            let done = Done::Out(match next {
                None => Err(PyErrLater::End),
                Some(Err(e)) => Err(PyErrLater::Replay(e)),
                Some(Ok(record)) => Ok(Out::Record(record)),
            });
            deliver(&mut vec![Completion {
                future: f_,
                home,
                done,
            }]);
        });
        let abort = task.abort_handle();
        let on_done = pyo3::types::PyCFunction::new_closure(
            py,
            None,
            None,
            move |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                if args.get_item(0)?.call_method0("cancelled")?.is_truthy()? {
                    abort.abort();
                }
                Ok(())
            },
        )?;
        future.call_method1("add_done_callback", (on_done,))?;
        Ok(future)
    }
}

/// The module.
#[pymodule]
fn _logbook(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Log>()?;
    m.add_class::<Follow>()?;
    m.add("LogbookError", py.get_type::<LogbookError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("NoLogError", py.get_type::<NoLogError>())?;
    m.add("EncryptionKeyError", py.get_type::<EncryptionKeyError>())?;
    m.add("DiskFullError", py.get_type::<DiskFullError>())?;
    m.add("PoisonedError", py.get_type::<PoisonedError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("ForkedError", py.get_type::<ForkedError>())?;
    m.add("UnknownSessionError", py.get_type::<UnknownSessionError>())?;
    m.add("DeletedSessionError", py.get_type::<DeletedSessionError>())?;
    m.add("PermissionDeniedError", permission_denied_type(py)?)?;
    // Defaults on the base class: every instance answers path/offset/lsn.
    let base = py.get_type::<LogbookError>();
    base.setattr("path", py.None())?;
    base.setattr("offset", py.None())?;
    base.setattr("lsn", py.None())?;
    m.add("KINDS", logbook_bus::KINDS.to_vec())?;
    py.import("atexit")?
        .call_method1("register", (wrap_pyfunction!(shutdown, m)?,))?;
    // A forked child makes its own runtime and event-loop doors.
    let hooks = PyDict::new(py);
    hooks.set_item("after_in_child", wrap_pyfunction!(after_fork_in_child, m)?)?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&hooks))?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
