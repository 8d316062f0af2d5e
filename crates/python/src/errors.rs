//! Exception classes, and the mapping of the library's errors onto them
//! (with the path, offset and LSN they name).

use super::*;

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
pub(crate) static PERMISSION_DENIED: pyo3::sync::GILOnceCell<Py<pyo3::types::PyType>> =
    pyo3::sync::GILOnceCell::new();

/// Make `PermissionDeniedError` (once) and return it.
pub(crate) fn permission_denied_type(py: Python<'_>) -> PyResult<&Bound<'_, pyo3::types::PyType>> {
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
pub(crate) fn permission_denied(e: &WalError) -> Option<&std::io::Error> {
    match e {
        WalError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Some(source)
        }
        _ => None,
    }
}

/// `err` (made for `e`) with the `OSError` fields of a refused
/// permission set: `errno`, `strerror`, `filename`.
pub(crate) fn with_os_fields(py: Python<'_>, err: PyErr, e: &WalError) -> PyErr {
    if let Some(io) = permission_denied(e) {
        let value = err.value(py);
        let _ = value.setattr("errno", io.raw_os_error());
        let _ = value.setattr("strerror", "Permission denied");
        let _ = value.setattr("filename", wal_place(e).0);
    }
    err
}

/// Where an error of the log is: (path, offset, lsn).
pub(crate) type Place = (Option<String>, Option<u64>, Option<Lsn>);

pub(crate) fn wal_place(e: &WalError) -> Place {
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

pub(crate) fn wal_class<'py>(py: Python<'py>, e: &WalError) -> Bound<'py, pyo3::types::PyType> {
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
pub(crate) fn raise(
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
pub(crate) fn wal_err(e: WalError) -> PyErr {
    Python::with_gil(|py| {
        let class = wal_class(py, &e);
        let err = raise(py, &class, e.to_string(), wal_place(&e));
        with_os_fields(py, err, &e)
    })
}

/// The Python exception for an error of a replay: the log's own error
/// (with its place) when there is one, the replay's message around it.
pub(crate) fn replay_err(e: ReplayError) -> PyErr {
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
pub(crate) fn full_message(e: &dyn std::error::Error) -> String {
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
