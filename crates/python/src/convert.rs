//! Conversions between Python values and the library's: session ids,
//! events as dicts (`docs/json.md`), records, plans, and int arguments
//! that cannot be negative.

use super::*;

// ---------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------

/// A session id from a `str` or a `uuid.UUID`.
pub(crate) fn session_id(obj: &Bound<'_, PyAny>) -> PyResult<Uuid> {
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
pub(crate) fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
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
pub(crate) fn from_json(py: Python<'_>, value: &Value) -> PyResult<PyObject> {
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
pub(crate) fn event_from_py(obj: &Bound<'_, PyAny>) -> PyResult<SessionEvent> {
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
pub(crate) fn refuse_internal(event: &SessionEvent) -> PyResult<()> {
    match event {
        SessionEvent::SessionDeleted { .. } => refuse_reserved("SessionDeleted"),
        SessionEvent::SessionForked { .. } => refuse_reserved("SessionForked"),
        SessionEvent::SessionTruncated { .. } => refuse_reserved("SessionTruncated"),
        _ => Ok(()),
    }
}

/// [`refuse_internal`] by the kind's name (`docs/json.md`), before the
/// event's fields are read.
pub(crate) fn refuse_reserved(kind: &str) -> PyResult<()> {
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
pub(crate) fn snake_kind(kind: &str) -> String {
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
pub(crate) fn event_to_py(py: Python<'_>, event: &SessionEvent) -> PyResult<PyObject> {
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
pub(crate) fn record_to_py(py: Python<'_>, record: &EventRecord) -> PyResult<PyObject> {
    let dict = PyDict::new(py);
    dict.set_item("lsn", record.lsn)?;
    dict.set_item("session", record.session.to_string())?;
    dict.set_item("ts_us", record.timestamp_us)?;
    dict.set_item("kind", record.event.kind())?;
    dict.set_item("event", event_to_py(py, &record.event)?)?;
    Ok(dict.into_any().unbind())
}

pub(crate) fn plan_to_py(py: Python<'_>, plan: &DeletePlan) -> PyResult<PyObject> {
    let dict = PyDict::new(py);
    dict.set_item("session", plan.session.to_string())?;
    dict.set_item("lsns", plan.lsns.clone())?;
    dict.set_item("bytes", plan.bytes)?;
    dict.set_item("tombstone_lsn", plan.tombstone_lsn)?;
    Ok(dict.into_any().unbind())
}

/// What an async call hands back, converted once the GIL is held again.
pub(crate) enum Out {
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
pub(crate) fn custom_tail(
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
pub(crate) fn custom_list<'py>(
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

pub(crate) fn forked_to_py(py: Python<'_>, f: &logbook_replay::Forked) -> PyResult<PyObject> {
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
// Int arguments that cannot be negative
// ---------------------------------------------------------------------------

/// An int argument that cannot be negative (an LSN, a count), named
/// `name` in its errors: a `ValueError` below 0 or above 2**64 - 1 (not
/// the `OverflowError` naming nothing that a bare `u64` gives), a
/// `TypeError` for what is not an int.
pub(crate) fn non_negative(obj: &Bound<'_, PyAny>, name: &str, what: &str) -> PyResult<u64> {
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
pub(crate) fn lsn_list(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<Lsn>> {
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

pub(crate) fn arg_from_lsn(obj: &Bound<'_, PyAny>) -> PyResult<Lsn> {
    non_negative(obj, "from_lsn", "an LSN (an int)")
}

pub(crate) fn arg_lsn(obj: &Bound<'_, PyAny>) -> PyResult<Lsn> {
    non_negative(obj, "lsn", "an LSN (an int)")
}

pub(crate) fn arg_at_lsn(obj: &Bound<'_, PyAny>) -> PyResult<Option<Lsn>> {
    if obj.is_none() {
        return Ok(None);
    }
    non_negative(obj, "at_lsn", "an LSN (an int)").map(Some)
}

pub(crate) fn arg_limit(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let n = non_negative(obj, "limit", "a count (an int)")?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub(crate) fn arg_keep(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let n = non_negative(obj, "keep", "a count (an int)")?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub(crate) fn arg_lsns(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Lsn>> {
    lsn_list(obj, "lsns")
}

pub(crate) fn arg_runs(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Lsn>> {
    lsn_list(obj, "runs")
}

/// Record data: `bytes` (copied once, straight from the object), or any
/// other sequence of ints (`bytearray`, a list).
pub(crate) struct Data(pub(crate) Vec<u8>);

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
pub(crate) struct PathOrStr(pub(crate) String);

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
