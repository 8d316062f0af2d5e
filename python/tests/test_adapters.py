"""The adapters' lifecycle: context managers, closed sessions, a second
writer on one directory."""

import pytest

import logbook
from logbook.agents import LogbookSession
from logbook.langgraph import LogbookSaver

ITEM = {"role": "user", "content": "hi"}


def test_a_session_is_a_context_manager(tmp_path):
    path = str(tmp_path / "log")
    with LogbookSession("u1", path) as session:
        assert not session.log.closed
    assert session.log.closed
    # A shared Log is left open.
    log = logbook.Log(str(tmp_path / "shared"))
    with LogbookSession("u1", log):
        pass
    assert not log.closed
    log.close()


async def test_a_session_is_an_async_context_manager(tmp_path):
    path = str(tmp_path / "log")
    async with LogbookSession("u1", path) as session:
        await session.add_items([ITEM])
    assert session.log.closed
    async with LogbookSession("u1", path) as again:
        assert await again.get_items() == [ITEM]


async def test_a_closed_session_raises_closed_error(tmp_path):
    session = LogbookSession("u1", str(tmp_path / "log"))
    session.close()
    for call in [session.get_items, session.pop_item, session.clear_session, lambda: session.add_items([ITEM])]:
        with pytest.raises(logbook.ClosedError, match="is closed") as e:
            await call()
        # The SDK's own sessions raise a RuntimeError: so does this one.
        assert isinstance(e.value, RuntimeError)


def test_two_sessions_on_one_directory_are_told_to_share_one_log(tmp_path):
    path = str(tmp_path / "log")
    with LogbookSession("u1", path):
        with pytest.raises(logbook.LockedError, match=r"LogbookSession\(session_id, log\)") as e:
            LogbookSession("u2", path)
        assert e.value.path == path
        assert "logbook.Log(path)" in str(e.value)


def test_two_savers_on_one_directory_are_told_to_share_one_log(tmp_path):
    path = str(tmp_path / "log")
    with LogbookSaver(path):
        with pytest.raises(logbook.LockedError, match=r"LogbookSaver\(log\)") as e:
            LogbookSaver(path)
        assert e.value.path == path
