"""A Log belongs to the process that opened it: a forked child is refused."""

import asyncio
import gc
import os
import uuid

import pytest

import logbook


def sid():
    return str(uuid.uuid4())


def _in_child(fn) -> int:
    """Run ``fn`` in a forked child; its exit code (0: fn returned True)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if fn() else 1
        except BaseException:  # noqa: BLE001 - any surprise is a failure
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"the child died: status {status}"
    return os.WEXITSTATUS(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_a_log_used_after_fork_raises_in_the_child_and_loses_nothing(log_dir):
    s = sid()
    log = logbook.Log(log_dir)
    log.append(s, {"kind": "UserMessage", "value": "before the fork"})

    def child() -> bool:
        refused = []

        def refuses(call) -> None:
            try:
                call()
            except logbook.ForkedError as e:
                refused.append(
                    isinstance(e, logbook.LockedError)
                    and e.path == log_dir
                    and str(os.getpid()) in str(e)
                    and "opened by process" in str(e)
                )
            else:
                refused.append(False)

        refuses(lambda: log.append(s, {"kind": "UserMessage", "value": "from the child"}))
        refuses(lambda: log.append_many([(s, {"kind": "Done"})]))
        refuses(lambda: log.read(s))
        refuses(lambda: log.sync())
        refuses(lambda: log.last_lsn)

        async def later():
            refuses(lambda: log.append_async(s, {"kind": "Done"}))
            refuses(lambda: log.read_async(s))
            refuses(lambda: log.close_async())

        asyncio.run(later())
        refuses(lambda: log.close())

        from logbook.agents import LogbookSession

        session = LogbookSession("c", log)
        refuses(lambda: asyncio.run(session.add_items([{"role": "user", "content": "x"}])))
        # Dropping the child's copy must not close the parent's writer
        # (nor release its lock).
        del session
        return all(refused) and len(refused) == 10

    assert _in_child(child) == 0
    # The child's exit, with its copy dropped, left the parent's log alone.
    assert _in_child(lambda: (gc.collect(), True)[1]) == 0
    with pytest.raises(logbook.LockedError):
        logbook.Log(log_dir)
    assert log.append(s, {"kind": "UserMessage", "value": "after the fork"}) == 2
    log.close()
    with logbook.Log(log_dir) as again:
        assert [r["event"]["value"] for r in again.read(s)] == ["before the fork", "after the fork"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_a_log_dropped_in_a_forked_child_keeps_the_parents_lock(log_dir):
    s = sid()
    holder = {"log": logbook.Log(log_dir)}
    holder["log"].append(s, {"kind": "UserMessage", "value": "one"})

    def child() -> bool:
        del holder["log"]
        gc.collect()
        return True

    assert _in_child(child) == 0
    with pytest.raises(logbook.LockedError):
        logbook.Log(log_dir)
    log = holder["log"]
    assert log.append(s, {"kind": "UserMessage", "value": "two"}) == 2
    log.close()
    with logbook.Log(log_dir) as again:
        assert len(again.read(s)) == 2


_POOL_LOG = None


def _pool_append(value: str) -> int:
    return _POOL_LOG.append(_POOL_SESSION, {"kind": "UserMessage", "value": value})


_POOL_SESSION = sid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_a_fork_pool_worker_gets_forked_error_back_in_the_parent(log_dir):
    """multiprocessing with the fork start method (a Log opened at import):
    the workers' appends are refused, and the error pickles back."""
    import multiprocessing

    global _POOL_LOG
    _POOL_LOG = logbook.Log(log_dir)
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            with pytest.raises(logbook.ForkedError) as e:
                pool.map(_pool_append, ["a", "b"])
        assert e.value.path == log_dir
        assert type(e.value).__module__ == "logbook"
        assert _pool_append("parent") == 1
    finally:
        _POOL_LOG.close()
        _POOL_LOG = None
