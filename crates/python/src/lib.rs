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
//!
//! One file, one idea: `log` is the `Log` class; `follow` the `Follow`
//! iterator; `asyncio` the async path (the event loop's door, the
//! resolution of durable appends, the process's runtime and a fork, the
//! hold on group commits for a loop's turn); `convert` every conversion
//! between Python values and the library's; `errors` the exception
//! classes and the mapping of the library's errors onto them.

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

mod asyncio;
mod convert;
mod errors;
mod follow;
mod log;

use asyncio::*;
use convert::*;
use errors::*;
use follow::*;
use log::*;

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
