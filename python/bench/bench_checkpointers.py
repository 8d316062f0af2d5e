"""LogbookSaver against InMemorySaver and AsyncSqliteSaver (WAL journal,
synchronous=FULL: an fsync per commit), and LogbookSession against the
Agents SDK's SQLiteSession, side by side in one run.

    python python/bench/bench_checkpointers.py [--dir DIR] [--threads 100] [--per-thread 20]

DIR (default: a temporary directory) should be on the disk to measure.
Prints one table; figures are medians of --repeat rounds (default 3), after
a warm-up round; the order of the checkpointers rotates from round to round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver

from logbook.langgraph import LogbookSaver


def checkpoint(i: int) -> dict:
    cp = empty_checkpoint()
    cp["id"] = str(uuid6(clock_seq=i))
    cp["channel_values"] = {"messages": [f"message {j}" for j in range(3)], "step": i}
    cp["channel_versions"] = {"messages": i + 1, "step": i + 1}
    return cp


async def put_chain(saver, thread: str, n: int) -> RunnableConfigT:
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    for i in range(n):
        config = await saver.aput(config, checkpoint(i), {"source": "loop", "step": i}, {"messages": i + 1, "step": i + 1})
    return config


RunnableConfigT = dict


async def bench_aput(saver, threads: int, per_thread: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(put_chain(saver, f"t{uuid.uuid4()}", per_thread) for _ in range(threads)))
    return threads * per_thread / (time.perf_counter() - start)


async def bench_get_tuple(saver, n: int = 300) -> float:
    config = await put_chain(saver, f"g{uuid.uuid4()}", 20)
    latest = {"configurable": {"thread_id": config["configurable"]["thread_id"], "checkpoint_ns": ""}}
    times = []
    for _ in range(n):
        t = time.perf_counter()
        assert await saver.aget_tuple(latest) is not None
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


async def bench_alist(saver, n: int = 1000) -> float:
    config = await put_chain(saver, f"l{uuid.uuid4()}", n)
    t = time.perf_counter()
    got = [x async for x in saver.alist({"configurable": {"thread_id": config["configurable"]["thread_id"]}})]
    assert len(got) == n
    return (time.perf_counter() - t) * 1e3


async def sqlite_saver(path):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    cm = AsyncSqliteSaver.from_conn_string(path)
    saver = await cm.__aenter__()
    await saver.setup()
    await saver.conn.execute("PRAGMA journal_mode=WAL")
    await saver.conn.execute("PRAGMA synchronous=FULL")
    return saver, cm


async def savers(base: str):
    """(name, saver, closer) of each checkpointer, fresh."""
    d = tempfile.mkdtemp(dir=base)
    out = [("InMemorySaver", InMemorySaver(), None)]
    s, cm = await sqlite_saver(os.path.join(d, "cp.sqlite"))
    out.append(("AsyncSqliteSaver (WAL, synchronous=FULL)", s, cm))
    lb = LogbookSaver(os.path.join(d, "log"))
    out.append(("LogbookSaver (sync=always)", lb, lb))
    return d, out


async def close(closer):
    if closer is None:
        return
    if isinstance(closer, LogbookSaver):
        closer.close()
    else:
        await closer.__aexit__(None, None, None)


async def bench_sessions(base: str, turns: int = 200, concurrent: int = 100):
    from agents import SQLiteSession

    from logbook.agents import LogbookSession

    d = tempfile.mkdtemp(dir=base)
    results = {}
    for name, make in [
        ("SQLiteSession (file)", lambda sid: SQLiteSession(sid, os.path.join(d, "s.sqlite"))),
        ("LogbookSession", None),
    ]:
        log = None
        if make is None:
            import logbook

            log = logbook.Log(os.path.join(d, "log"))
            make = lambda sid, log=log: LogbookSession(sid, log)  # noqa: E731
        one = make("one")
        item = [{"role": "user", "content": "hello " * 10}, {"role": "assistant", "content": "hi " * 10}]
        t = time.perf_counter()
        for _ in range(turns):
            await one.add_items(item)
        sequential = turns * 2 / (time.perf_counter() - t)
        many = [make(f"c{i}") for i in range(concurrent)]
        t = time.perf_counter()
        await asyncio.gather(*(s.add_items(item) for s in many for _ in range(1)))
        parallel = concurrent * 2 / (time.perf_counter() - t)
        times = []
        for _ in range(100):
            t = time.perf_counter()
            got = await one.get_items(limit=10)
            times.append(time.perf_counter() - t)
        assert len(got) == 10
        results[name] = (sequential, parallel, statistics.median(times) * 1e6)
        if log is not None:
            log.close()
    shutil.rmtree(d, ignore_errors=True)
    return results


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None)
    ap.add_argument("--threads", type=int, default=100)
    ap.add_argument("--per-thread", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = tempfile.mkdtemp(dir=args.dir, prefix="logbook-pybench-")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; dir {base}")
    rows: dict[str, dict[str, list[float]]] = {}
    # A warm-up round, not counted (imports, allocator, page cache).
    d, made = await savers(base)
    for name, saver, closer in made:
        await bench_aput(saver, args.threads, args.per_thread)
        await close(closer)
    shutil.rmtree(d, ignore_errors=True)
    for round_ in range(args.repeat):
        d, made = await savers(base)
        # Each round in another order: no checkpointer always goes first.
        made = made[round_ % len(made):] + made[: round_ % len(made)]
        for name, saver, closer in made:
            r = rows.setdefault(name, {"aput": [], "get": [], "list": []})
            r["aput"].append(await bench_aput(saver, args.threads, args.per_thread))
            r["get"].append(await bench_get_tuple(saver))
            r["list"].append(await bench_alist(saver))
            await close(closer)
        shutil.rmtree(d, ignore_errors=True)
    print()
    print(f"| checkpointer | durable aput/s ({args.threads} threads x {args.per_thread}) | aget_tuple p50 (us) | alist 1000 checkpoints (ms) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {statistics.median(r['aput']):,.0f} | {statistics.median(r['get']):,.0f} | {statistics.median(r['list']):,.1f} |")
    lb = statistics.median(rows["LogbookSaver (sync=always)"]["aput"])
    sq = statistics.median(rows["AsyncSqliteSaver (WAL, synchronous=FULL)"]["aput"])
    mem = statistics.median(rows["InMemorySaver"]["aput"])
    print(f"\nLogbookSaver aput: {lb / sq:.1f}x AsyncSqliteSaver, {lb / mem:.2f}x InMemorySaver")
    sessions = await bench_sessions(base)
    print()
    print("| session | add_items, one session, sequential (items/s) | add_items, 100 sessions at once (items/s) | get_items(limit=10) p50 (us) |")
    print("|---|---|---|---|")
    for name, (seq, par, get) in sessions.items():
        print(f"| {name} | {seq:,.0f} | {par:,.0f} | {get:,.0f} |")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
