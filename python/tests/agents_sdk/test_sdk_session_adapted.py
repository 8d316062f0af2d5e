"""Tests of the SDK's SQLiteSession suite that reach into SQLite, rewritten
for LogbookSession (same claim, Logbook's means)."""

import asyncio

import pytest

import logbook
from logbook.agents import LogbookSession


@pytest.mark.asyncio
@pytest.mark.parametrize("operation", ["add", "pop", "clear"])
async def test_post_commit_cancellation_propagates_after_known_outcome(tmp_path, operation):
    """A mutation cancelled by its caller still completes (it is shielded),
    and the cancellation propagates: the outcome is known, never half done."""
    session = LogbookSession(f"post_commit_{operation}", str(tmp_path / "log"))
    item = {"role": "user", "content": "once"}
    if operation != "add":
        await session.add_items([item])
    if operation == "add":
        mutation = asyncio.create_task(session.add_items([item]))
    elif operation == "pop":
        mutation = asyncio.create_task(session.pop_item())
    else:
        mutation = asyncio.create_task(session.clear_session())
    await asyncio.sleep(0)
    mutation.cancel()
    await asyncio.sleep(0)
    mutation.cancel()
    with pytest.raises(asyncio.CancelledError):
        await mutation
    if operation == "add":
        assert await session.get_items() == [item]
    else:
        assert await session.get_items() == []
    assert mutation.cancelled()
    session.close()


@pytest.mark.asyncio
async def test_sessions_share_one_log_and_stay_apart(tmp_path):
    """(SQLiteSession: several sessions in one database file.) Several
    sessions on one Log; a second writer on the directory is refused."""
    log = logbook.Log(str(tmp_path / "log"))
    a, b = LogbookSession("a", log), LogbookSession("b", log)
    await asyncio.gather(a.add_items([{"role": "user", "content": "to a"}]), b.add_items([{"role": "user", "content": "to b"}]))
    assert [i["content"] for i in await a.get_items()] == ["to a"]
    assert [i["content"] for i in await b.get_items()] == ["to b"]
    with pytest.raises(logbook.LockedError):
        LogbookSession("c", str(tmp_path / "log"))
    await a.clear_session()
    assert await a.get_items() == [] and len(await b.get_items()) == 1
    log.close()


@pytest.mark.asyncio
async def test_items_survive_reopening(tmp_path):
    """(SQLiteSession: a file database persists.) Items added are there
    after the log is closed and opened again; pops and clears too."""
    path = str(tmp_path / "log")
    s = LogbookSession("p", path)
    await s.add_items([{"role": "user", "content": str(i)} for i in range(5)])
    assert (await s.pop_item())["content"] == "4"
    s.close()
    s = LogbookSession("p", path)
    assert [i["content"] for i in await s.get_items()] == ["0", "1", "2", "3"]
    assert [i["content"] for i in await s.get_items(limit=2)] == ["2", "3"]
    s.close()
