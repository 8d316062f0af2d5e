//! The `Follow` class: an async iterator over durable records.

use super::*;

/// An async iterator over a log's records as they become durable
/// (`Log.follow`).
#[pyclass(module = "logbook._logbook", frozen, weakref)]
pub(crate) struct Follow {
    pub(crate) inner: Arc<tokio::sync::Mutex<logbook_replay::Follow>>,
    /// The process that opened the log, and its path ([`check_process`]).
    pub(crate) owner: u32,
    pub(crate) path: String,
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
