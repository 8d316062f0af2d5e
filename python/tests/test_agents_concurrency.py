"""LogbookSession under concurrency: pop_item is atomic per (log,
session); clear_session against add_items; get_items' limits as the SDK's
SQLiteSession."""

import asyncio
import threading
import uuid

import pytest

import logbook
from logbook.agents import LogbookSession


def item(i):
    return {"role": "user", "content": f"item {i}"}


async def test_two_session_objects_popping_at_once_get_distinct_items(tmp_path):
    with logbook.Log(tmp_path / "log") as log:
        for round_ in range(10):
            a = LogbookSession(f"shared {round_}", log)
            b = LogbookSession(f"shared {round_}", log)
            await a.add_items([item(1), item(2)])
            got = await asyncio.gather(a.pop_item(), b.pop_item())
            assert sorted(g["content"] for g in got) == ["item 1", "item 2"], got
            assert await a.pop_item() is None
            assert await b.get_items() == []


def test_one_session_popped_from_several_threads_gives_each_item_once(tmp_path):
    """Each thread runs its own event loop (as Runner.run_sync does)."""
    with logbook.Log(tmp_path / "log") as log:
        for round_ in range(10):
            session = LogbookSession(f"threads {round_}", log)
            asyncio.run(session.add_items([item(i) for i in range(4)]))
            barrier = threading.Barrier(6)
            got = []

            def pop():
                barrier.wait()
                got.append(asyncio.run(session.pop_item()))

            threads = [threading.Thread(target=pop) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            popped = sorted(g["content"] for g in got if g is not None)
            assert popped == [f"item {i}" for i in range(4)], got
            assert got.count(None) == 2
            assert asyncio.run(session.get_items()) == []


async def test_pop_skips_and_drops_entries_that_are_not_json(tmp_path):
    """As SQLiteSession.pop_item: a corrupt entry on top is dropped, and
    the item below it is popped."""
    with logbook.Log(tmp_path / "log") as log:
        session = LogbookSession("corrupt", log)
        await session.add_items([item(1), item(2)])
        sid = logbook.session_id("agents:corrupt")
        log.append_custom(sid, "agents.item", b"not json {")
        assert await session.pop_item() == item(2)
        assert await session.get_items() == [item(1)]
        assert [data for _, _, data in log.read_custom(sid)] == [b'{"role":"user","content":"item 1"}']


def test_log_pop_custom_removes_and_returns_the_latest_record(tmp_path):
    with logbook.Log(tmp_path / "log") as log:
        s = str(uuid.uuid4())
        assert log.pop_custom(s) is None
        log.append_custom(s, "a.x", b"1")
        log.append_custom(s, "a.y", b"2")
        log.append(s, {"kind": "Done"})
        log.append_custom(s, "b.z", b"3")
        assert log.pop_custom(s, "a.") == (2, "a.y", b"2")
        assert log.pop_custom(s) == (4, "b.z", b"3")
        assert log.pop_custom(s, "a.") == (1, "a.x", b"1")
        assert log.pop_custom(s, "a.") is None
        assert [r["kind"] for r in log.read(s)] == ["done"]


async def test_log_pop_custom_async_from_many_coroutines(tmp_path):
    with logbook.Log(tmp_path / "log") as log:
        s = str(uuid.uuid4())
        log.append_custom_many(s, "n", [b"%d" % i for i in range(20)])
        got = await asyncio.gather(*(log.pop_custom_async(s, "n") for _ in range(25)))
        popped = sorted(int(g[2]) for g in got if g is not None)
        assert popped == list(range(20))
        assert got.count(None) == 5
        assert log.read_custom(s) == []


# -- clear_session against add_items ----------------------------------------


async def test_items_added_before_clear_are_cleared_and_after_it_survive(tmp_path):
    for sync in ["always", "batch", "never"]:
        with logbook.Log(tmp_path / sync, sync=sync) as log:
            session = LogbookSession("c", log)
            await session.add_items([item(1), item(2)])
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.pop_item() is None
            await session.add_items([item(3)])
            assert await session.get_items() == [item(3)]
            await session.clear_session()
            await session.clear_session()  # nothing left: not an error
            await session.add_items([item(4)])
            assert await session.get_items() == [item(4)]


async def _clear_while_adding(log, name):
    """Clear `name` while a coroutine adds batches of two items to it;
    (item contents left, the batches whose add returned before the clear
    was called, the batches added in order, the index of the first batch
    whose add was called after the clear returned)."""
    session = LogbookSession(name, log)
    await session.add_items([item(f"{name}.before")])
    stop = asyncio.Event()
    added = []

    async def adder():
        i = 0
        while not stop.is_set():
            await session.add_items([item(f"{name}.{i}.a"), item(f"{name}.{i}.b")])
            added.append(i)
            i += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(adder())
    await asyncio.sleep(0.01)
    returned_before = list(added)
    await session.clear_session()
    called_after = len(added) + 1  # the add under way may overlap the clear
    await asyncio.sleep(0.01)
    stop.set()
    await task
    left = [x["content"] for x in await session.get_items()]
    return left, returned_before, added, called_after


async def test_clear_while_items_are_added_is_linearizable(tmp_path):
    """Adds that returned before the clear was called are gone; adds called
    after it returned survive; an add overlapping it may go either way,
    and what is left is the items added after the clear took effect: a
    suffix of the items in the order they were added."""
    with logbook.Log(tmp_path / "log") as log:
        for round_ in range(5):
            name = f"race {round_}"
            left, returned_before, added, called_after = await _clear_while_adding(log, name)
            assert f"item {name}.before" not in left
            for i in returned_before:
                assert f"item {name}.{i}.a" not in left and f"item {name}.{i}.b" not in left
            for i in added[called_after:]:
                assert f"item {name}.{i}.a" in left and f"item {name}.{i}.b" in left
            order = [f"item {name}.{i}.{x}" for i in added for x in "ab"]
            assert left == order[len(order) - len(left):]


async def test_an_add_overlapping_a_clear_is_cleared_or_kept_whole(tmp_path):
    with logbook.Log(tmp_path / "log") as log:
        for round_ in range(20):
            left, _, added, _ = await _clear_while_adding(log, f"whole {round_}")
            kept = sorted({int(c.split(".")[1]) for c in left})
            assert len(left) == 2 * len(kept), left


def test_a_delete_lists_every_record_it_hides_even_those_appended_while_it_planned(tmp_path):
    """delete_session plans from a read, then writes its tombstone; records
    of the session appended in between are hidden by the tombstone, and
    listed too (a further tombstone), so a compaction erases them: every
    record of the session below the tombstone is in the plan's `lsns`."""
    with logbook.Log(tmp_path / "log", sync="batch", batch_delay_ms=200) as log:
        s = str(uuid.uuid4())
        for i in range(500):
            log.append(s, {"kind": "UserMessage", "value": f"early {i}"})
        stop = threading.Event()
        appended = []

        def appender():
            while not stop.is_set():
                appended.append(log.append(s, {"kind": "UserMessage", "value": "racing"}))

        t = threading.Thread(target=appender)
        t.start()
        try:
            plan = log.delete_session(s)
        finally:
            stop.set()
            t.join(30)
        tombstone = plan["tombstone_lsn"]
        below = set(range(1, 501)) | {lsn for lsn in appended if lsn < tombstone}
        assert below <= set(plan["lsns"]), sorted(below - set(plan["lsns"]))[:5]
        assert all(r["lsn"] > tombstone for r in log.read(s))
        assert {r["lsn"] for r in log.read(s)} == {lsn for lsn in appended if lsn > tombstone}


# -- get_items' limit, as SQLiteSession's -----------------------------------


@pytest.mark.parametrize("limit", [None, -1, -5, 0, 1, 2, 3, 10])
@pytest.mark.parametrize("settings_limit", [None, -2, 0, 2])
async def test_get_items_limit_as_sqlite_session(tmp_path, limit, settings_limit):
    from agents.memory.session_settings import SessionSettings
    from agents.memory.sqlite_session import SQLiteSession

    settings = SessionSettings(limit=settings_limit)
    ours = LogbookSession("lim", str(tmp_path / "log"), session_settings=settings)
    theirs = SQLiteSession("lim", session_settings=settings)
    try:
        items = [item(i) for i in range(3)]
        await ours.add_items(items)
        await theirs.add_items(items)
        assert await ours.get_items(limit) == await theirs.get_items(limit)
        # With an entry that is not JSON on top (skipped by both).
        ours.log.append_custom(logbook.session_id("agents:lim"), "agents.item", b"{bad")
        with theirs._locked_connection() as conn:
            conn.execute(
                f"INSERT INTO {theirs.messages_table} (session_id, message_data) VALUES (?, ?)",
                ("lim", "{bad"),
            )
            conn.commit()
        assert await ours.get_items(limit) == await theirs.get_items(limit)
    finally:
        ours.close()
        theirs.close()
