//! Async appends: the event loop's door, the resolution of appends a
//! group commit made durable, the process's own runtime (and a fork),
//! and the hold on group commits for an event loop's turn.

use super::*;

// ---------------------------------------------------------------------------
// Async appends: queued on the caller's thread, completed in batches
// ---------------------------------------------------------------------------

/// How an async append ended.
pub(crate) enum Done {
    Lsn(Lsn),
    Lsns(Vec<Lsn>),
    Err(WalError),
    /// What a task on the blocking pool returned ([`Log::spawn`]).
    Out(Result<Out, PyErrLater>),
}

/// An append to resolve: its asyncio future, where it is resolved, and how
/// it ended.
pub(crate) struct Completion {
    pub(crate) future: Py<PyAny>,
    pub(crate) home: Home,
    pub(crate) done: Done,
}

/// Where a future is resolved: through its loop's [`Door`] (no GIL needed
/// to hand it over), or with `call_soon_threadsafe` on its loop (a loop
/// that cannot watch a socket: `add_reader` unsupported).
pub(crate) enum Home {
    Door(Arc<Door>),
    Loop(Py<PyAny>),
}

/// A way into one asyncio event loop that needs no GIL: results are queued
/// here, and one byte written to a socket the loop watches
/// (`loop.add_reader`) wakes it; the loop's reader callback ([`Door::open`])
/// then resolves every queued future, with the GIL it already holds. A
/// thread that finishes work for Python so never takes the GIL, and the
/// event loop's thread is never made to give it up.
pub(crate) struct Door {
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
pub(crate) type Handed = (Py<PyAny>, Done);

/// The event loops seen, each with its door (registered with it), or
/// none if it cannot watch a socket. A loop is kept alive while it is
/// listed (so no other object takes its address); closed loops are
/// dropped from the list when a new loop is seen.
pub(crate) static DOORS: PerFork<Vec<LoopDoor>> = PerFork::new(Vec::new);

/// An event loop and its door, if it has one.
pub(crate) type LoopDoor = (Py<PyAny>, Option<Arc<Door>>);

/// Where futures of `event_loop` are resolved: its door, made (and
/// registered with `add_reader`) on first use; `Home::Loop` if the loop
/// cannot watch a socket. Called on the loop's own thread; no lock is held
/// across a call into Python (which may let another thread run).
pub(crate) fn home(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> Home {
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
    let mut gone = Vec::new();
    doors.retain(|(l, d)| {
        let open = !closed.iter().any(|c| c.is(l));
        if !open {
            gone.extend(d.clone());
        }
        open
    });
    doors.push((event_loop.clone().unbind(), door.clone()));
    drop(doors);
    forget_waiting_of(&gone);
    match door {
        Some(door) => Home::Door(door),
        None => Home::Loop(event_loop.clone().unbind()),
    }
}

/// Drop the waiting appends of the closed loops whose doors are `gone`:
/// nothing would ever poll them (only a loop's own reader callback polls
/// its appends), and each would keep its door, and so the door's two
/// sockets, open for ever. Their records are queued all the same; only
/// the waiting stops, as for a cancelled append.
fn forget_waiting_of(gone: &[Arc<Door>]) {
    if gone.is_empty() {
        return;
    }
    let forgotten: Vec<Waiting> = {
        let mut waiting = WAITING.lock().unwrap_or_else(PoisonError::into_inner);
        let ids: Vec<u64> = waiting
            .iter()
            .filter(
                |(_, w)| matches!(&w.home, Home::Door(d) if gone.iter().any(|g| Arc::ptr_eq(g, d))),
            )
            .map(|(id, _)| *id)
            .collect();
        ids.iter().filter_map(|id| waiting.remove(id)).collect()
    };
    // Dropped with no lock of ours held: a future's finalizer is Python.
    drop(forgotten);
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
pub(crate) fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, done: Done) -> PyResult<()> {
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
pub(crate) fn outcome(py: Python<'_>, done: Done) -> PyResult<(bool, PyObject)> {
    Ok(match done {
        Done::Lsn(l) => (true, l.into_pyobject(py)?.into_any().unbind()),
        Done::Lsns(l) => (true, l.into_pyobject(py)?.into_any().unbind()),
        Done::Err(e) => (false, wal_err(e).into_value(py).into_any()),
        Done::Out(Ok(out)) => (true, out.into_pyobject(py)?.unbind()),
        Done::Out(Err(e)) => (false, e.into_py().into_value(py).into_any()),
    })
}

pub(crate) static GET_RUNNING_LOOP: pyo3::sync::GILOnceCell<Py<PyAny>> =
    pyo3::sync::GILOnceCell::new();

/// Resolve the futures of `batch` (emptied): one GIL acquisition, one
/// `call_soon_threadsafe` per event loop.
pub(crate) fn deliver(batch: &mut Vec<Completion>) {
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
pub(crate) fn approx_len(event: &SessionEvent) -> usize {
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
pub(crate) const RELEASE_GIL_FROM: usize = 16 << 10;

pub(crate) static SHUTDOWN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
pub(crate) static IN_FLIGHT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// `py.allow_threads(f)`, except that a thread other than the exiting one
/// whose `f` ends once the interpreter is exiting ([`shutdown`] ran) waits
/// [`EXIT_GRACE`] before it takes the GIL back. At exit, CPython ends a
/// daemon thread that takes the GIL with `pthread_exit`, whose forced
/// unwinding through this call's Rust frames aborts the process (a daemon
/// thread in a blocking `Log` call made `python` exit with SIGABRT): the
/// wait lets the process end first, the thread never taking the GIL. If
/// the process is still there after it, the exit is waiting on something
/// (an `atexit` handler joining this thread, say): the thread goes on, and
/// so does every thread after it ([`EXIT_STALLED`]), once per process.
/// The thread that ran `atexit` (the main thread, as a rule) never waits:
/// it is the one exiting. A thread between the end of `f` and the GIL
/// counts in [`IN_FLIGHT`], which [`shutdown`] waits for.
pub(crate) fn released<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    use std::sync::atomic::Ordering::SeqCst;
    let out = py.allow_threads(|| {
        let out = f();
        IN_FLIGHT.fetch_add(1, SeqCst);
        if SHUTDOWN.load(SeqCst) && !exiting_thread() && !EXIT_STALLED.load(SeqCst) {
            IN_FLIGHT.fetch_sub(1, SeqCst);
            std::thread::sleep(EXIT_GRACE);
            EXIT_STALLED.store(true, SeqCst);
            IN_FLIGHT.fetch_add(1, SeqCst);
        }
        out
    });
    IN_FLIGHT.fetch_sub(1, SeqCst);
    out
}

/// How long a blocking call that ends during the interpreter's exit waits
/// for the process to end before it takes the GIL back ([`released`]): a
/// process's exit after its `atexit` handlers takes milliseconds, even a
/// large one's rarely a second.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A thread waited [`EXIT_GRACE`] at exit and the process was still there:
/// its exit waits on one of its threads, which no longer wait.
static EXIT_STALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The id of the thread that ran [`shutdown`] (`atexit`): the one that
/// runs the interpreter's exit (0 before).
static EXITING_THREAD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Whether this is the thread that runs the interpreter's exit.
fn exiting_thread() -> bool {
    this_thread() == EXITING_THREAD.load(std::sync::atomic::Ordering::SeqCst)
}

/// This thread's id (`gettid`).
fn this_thread() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Registered with `atexit`: stop delivering results to Python, and wait
/// (without the GIL, at most a second) for the deliveries under way and
/// for the blocking calls on their way back to Python ([`released`]).
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>) {
    EXITING_THREAD.store(this_thread(), std::sync::atomic::Ordering::SeqCst);
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

pub(crate) fn deliver_now(batch: &mut Vec<Completion>) {
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
pub(crate) fn resolve_batch(batch: &Bound<'_, PyList>) -> PyResult<()> {
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
pub(crate) struct Waiting {
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
pub(crate) static WAITING: PerFork<std::collections::HashMap<u64, Waiting>> =
    PerFork::new(std::collections::HashMap::new);

pub(crate) static NEXT_WAITING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The ids of the waiting appends woken since the resolver last ran.
pub(crate) static WOKEN: PerFork<Vec<u64>> = PerFork::new(Vec::new);

/// The waker of the waiting append with this id: it tells the append's
/// event loop ([`Door::woke`]), which polls it itself; or, for a loop
/// without a door, the resolver task.
pub(crate) struct WakeAppend {
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
pub(crate) fn poll_woken(ids: Vec<u64>) -> Vec<(Waiting, Done)> {
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
pub(crate) fn resolver() -> Arc<tokio::sync::Notify> {
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
/// one generation of `fork()` ([`PerFork`], moved on by the child's fork
/// hook [`after_fork_in_child`]) and to one process id: a child makes its
/// own on first use ([`with_process`]; a fork that runs no Python hook,
/// `fork()` called from C, gets its own runtime all the same). The
/// parent's copies are leaked, never dropped: dropping them would join
/// threads the child does not have, or close the parent's writer (see
/// `Drop for Log`).
pub(crate) struct Process {
    pid: u32,
    runtime: &'static tokio::runtime::Runtime,
    resolver: Option<Arc<tokio::sync::Notify>>,
}

pub(crate) static PROCESS: PerFork<Option<Process>> = PerFork::new(no_process);

fn no_process() -> Option<Process> {
    None
}

/// `f` of this process's [`Process`] (made now if there is none, or if
/// the one there is its parent's, from before a fork), under its lock.
pub(crate) fn with_process<R>(f: impl FnOnce(&mut Process) -> R) -> R {
    let mut slot = PROCESS.lock().unwrap_or_else(PoisonError::into_inner);
    f(fresh_process(&mut slot))
}

/// The [`Process`] in `slot`, made anew unless it is this process's.
pub(crate) fn fresh_process(slot: &mut Option<Process>) -> &mut Process {
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
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    with_process(|p| p.runtime)
}

/// `os.register_at_fork(after_in_child=...)`: the child's own async
/// state, at once. It moves the process to the next generation of
/// [`PerFork`] state: the parent's event-loop doors, waiting appends and
/// runtime stay with the parent's generation (leaked in the child: they
/// belong to the parent's loops, writers and threads, see [`Process`]), and
/// so do their locks, whichever of them another thread of the parent held
/// at the fork (held for ever in the child, whose copy of that thread does
/// not exist: its first async append hung on one).
#[pyfunction]
pub(crate) fn after_fork_in_child() {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    IN_FLIGHT.store(0, std::sync::atomic::Ordering::SeqCst);
}

/// How many generations of `fork()` (a child, its child, …) get state of
/// their own ([`PerFork`]); deeper ones share the last generation's, as a
/// child whose fork ran no Python hook (one made from C) shares its
/// parent's, with the hazard of any `fork()` of a process with threads.
const FORK_GENERATIONS: usize = 16;

/// This process's generation of [`PerFork`] state: 0 in the process that
/// imported the module, one more in each forked child.
static GENERATION: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Process-wide state behind a lock, one value per generation of `fork()`
/// ([`after_fork_in_child`]): a forked child never shares its parent's,
/// nor the parent's lock of it.
pub(crate) struct PerFork<T: 'static> {
    slots: [std::sync::OnceLock<Mutex<T>>; FORK_GENERATIONS],
    init: fn() -> T,
}

impl<T> PerFork<T> {
    pub(crate) const fn new(init: fn() -> T) -> PerFork<T> {
        PerFork {
            slots: [const { std::sync::OnceLock::new() }; FORK_GENERATIONS],
            init,
        }
    }

    /// The lock of this generation's value (made on first use).
    pub(crate) fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, T>> {
        let generation = GENERATION
            .load(std::sync::atomic::Ordering::SeqCst)
            .min(FORK_GENERATIONS - 1);
        self.slots[generation]
            .get_or_init(|| Mutex::new((self.init)()))
            .lock()
    }
}

/// Poll the appends of door-less loops woken; hand over those that
/// finished, in one batch.
pub(crate) fn resolve(done: &mut Vec<Completion>) {
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
pub(crate) type TurnHold = Arc<Mutex<Option<logbook_wal::CommitHold>>>;

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
pub(crate) fn hold_for_turn(
    event_loop: &Bound<'_, PyAny>,
    wal: &Wal,
    slot: &TurnHold,
) -> PyResult<()> {
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
pub(crate) fn appending<'py>(
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
        released(py, poll)
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
