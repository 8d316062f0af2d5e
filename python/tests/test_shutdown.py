"""Interpreter exit right after an async close: no crash, every time."""

import asyncio
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

CLOSE_ASYNC = """
import asyncio, sys, uuid, logbook
async def main():
    log = logbook.Log(sys.argv[1], segment_size=1 << 16)
    s = str(uuid.uuid4())
    await asyncio.gather(*(log.append_async(s, {"kind": "TextComplete", "value": str(i)}) for i in range(50)))
    await log.read_async(s)
    await log.close_async()
asyncio.run(main())
"""

ASYNC_WITH = """
import asyncio, sys, uuid, logbook
async def main():
    async with logbook.Log(sys.argv[1], segment_size=1 << 16) as log:
        s = str(uuid.uuid4())
        await asyncio.gather(*(log.append_async(s, {"kind": "TextComplete", "value": str(i)}) for i in range(50)))
        await log.read_async(s)
    assert log.closed
asyncio.run(main())
"""

FOLLOW = """
import asyncio, sys, uuid, logbook
async def main():
    log = logbook.Log(sys.argv[1], segment_size=1 << 16)
    s = str(uuid.uuid4())
    log.append(s, {"kind": "Done"})
    async def follow():
        async for r in log.follow(s):
            pass
    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    log.close()
    await task
asyncio.run(main())
"""

RUNS = 30

# Daemon threads busy in blocking calls (and one in async ones) while the
# main thread exits: CPython ends a daemon thread that takes the GIL back
# during the exit with `pthread_exit`, whose unwinding through the call's
# Rust frames aborted the process (SIGABRT), for every blocking kind.
BUSY_DAEMONS = """
import asyncio, sys, threading, time, uuid, logbook
log = logbook.Log(sys.argv[1], segment_size=1 << 20)
s = str(uuid.uuid4())
for i in range(50):
    log.append_custom(s, "x", b"seed")
def blocking(call):
    def run():
        while True:
            call()
    return run
def in_a_loop():
    async def go():
        while True:
            await asyncio.gather(*[log.append_custom_async(s, "x", b"1") for _ in range(20)])
    asyncio.run(go())
for target in [
    blocking(lambda: log.append_custom(s, "y", b"2")),
    blocking(lambda: log.read_custom_tail(s, 3)),
    blocking(lambda: log.append_custom(s, "y", b"3")),
    in_a_loop,
]:
    threading.Thread(target=target, daemon=True).start()
time.sleep(float(sys.argv[2]))
"""


def test_exit_with_daemon_threads_in_blocking_calls_never_crashes(tmp_path):
    def run(i: int):
        log = tmp_path / f"log{i}"
        out = subprocess.run(
            [sys.executable, "-c", BUSY_DAEMONS, str(log), str(0.05 + (i % 10) * 0.03)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        shutil.rmtree(log, ignore_errors=True)
        return out.returncode, out.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(run, range(20)))
    failed = [(code, err) for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of 20 runs failed; the first: {failed[0]}"


@pytest.mark.parametrize(
    "script", [CLOSE_ASYNC, ASYNC_WITH, FOLLOW], ids=["close_async", "async_with", "follow"]
)
def test_exit_after_an_async_close_never_crashes(tmp_path, script):
    def run(i: int):
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"log{i}")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode == 0:
            shutil.rmtree(tmp_path / f"log{i}", ignore_errors=True)
        return out.returncode, out.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = list(pool.map(run, range(RUNS)))
    failed = [(code, err) for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of {RUNS} runs failed; the first: {failed[0]}"


async def test_a_cancelled_follow_step_loses_no_record(tmp_path):
    import logbook

    log = logbook.Log(str(tmp_path / "log"))
    s = "6c6f6762-6f6f-4b00-8000-000000000001"
    follow = log.follow(s)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(follow.__anext__(), 0.05)
    log.append(s, {"kind": "UserMessage", "value": "after the timeout"})
    got = await asyncio.wait_for(follow.__anext__(), 5)
    assert got["event"] == {"kind": "UserMessage", "value": "after the timeout"}
    await log.close_async()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(follow.__anext__(), 5)


def test_close_async_outside_a_loop_leaves_the_log_open(tmp_path):
    import logbook

    log = logbook.Log(str(tmp_path / "log"))
    with pytest.raises(RuntimeError):
        log.close_async()
    assert not log.closed
    assert log.append("6c6f6762-6f6f-4b00-8000-000000000002", {"kind": "Done"}) == 1
    log.close()


# An `atexit` handler registered before `logbook` was imported runs after
# logbook's own (handlers run last registered first): its blocking calls,
# on the exiting thread, must complete (that thread never sleeps for ever).
LATE_ATEXIT = """
import atexit, sys

def late():
    log.append_custom(s, "late", b"1")
    assert len(log.read_custom(s, "late")) == 1
    log.close()
    print("late handler done", flush=True)

atexit.register(late)
import uuid, logbook
log = logbook.Log(sys.argv[1], segment_size=1 << 16)
s = str(uuid.uuid4())
log.append_custom(s, "early", b"1")
"""


def test_blocking_calls_of_a_late_atexit_handler_complete(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", LATE_ATEXIT, str(tmp_path / "log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout.strip()) == (0, "late handler done"), out.stderr


# A daemon background writer, flushed and joined by an `atexit` handler
# registered before `logbook` was imported (so it runs after logbook's
# own): the worker's appends during the exit must return (a thread whose
# call ended during the exit once slept until the process ended: the join
# never did).
WORKER_JOINED_AT_EXIT = """
import atexit, queue, sys, threading

q = queue.Queue()

def worker():
    while (item := q.get()) is not None:
        log.append_custom(s, "x", item)

def flush_at_exit():
    for item in (b"last", b"after last"):
        q.put(item)
    q.put(None)
    t.join()
    print("flushed and joined", flush=True)

atexit.register(flush_at_exit)
import time, uuid, logbook
log = logbook.Log(sys.argv[1], segment_size=1 << 16)
s = sys.argv[2]
t = threading.Thread(target=worker, daemon=True)
t.start()
q.put(b"first")
while q.qsize():
    time.sleep(0.01)
"""


def test_a_worker_joined_by_a_late_atexit_handler_flushes_and_the_process_exits(tmp_path):
    import uuid

    import logbook

    s = str(uuid.uuid4())
    out = subprocess.run(
        [sys.executable, "-c", WORKER_JOINED_AT_EXIT, str(tmp_path / "log"), s],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout.strip()) == (0, "flushed and joined"), out.stderr
    with logbook.Log(str(tmp_path / "log")) as log:
        assert [data for _, _, data in log.read_custom(s, "x")] == [b"first", b"last", b"after last"]
