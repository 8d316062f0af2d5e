"""Where a durable aput's time goes: 100 threads x 20 checkpoints with
InMemorySaver, LogbookSaver(sync="always") and LogbookSaver(sync="never"),
printing the rate, the process's CPU time over wall time, the event loop
thread's own CPU time per aput (time.thread_time()) and the log's fsyncs.

    python python/bench/probe_aput.py [--dir DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import shutil
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_checkpointers import bench_aput  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from logbook.langgraph import LogbookSaver  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    makers = [
        ("InMemorySaver", lambda d: InMemorySaver()),
        ("LogbookSaver always", lambda d: LogbookSaver(os.path.join(d, "log"))),
        ("LogbookSaver never", lambda d: LogbookSaver(os.path.join(d, "log"), sync="never")),
    ]
    for _ in range(args.rounds):
        for name, make in makers:
            tmp = tempfile.mkdtemp(dir=args.dir, prefix="logbook-probe-")
            saver = make(tmp)
            await bench_aput(saver, 10, 5)  # warm-up
            before = saver.log.stats() if isinstance(saver, LogbookSaver) else None
            cpu, main, wall = time.process_time(), time.thread_time(), time.perf_counter()
            rate = await bench_aput(saver, 100, 20)
            cpu, main, wall = time.process_time() - cpu, time.thread_time() - main, time.perf_counter() - wall
            line = f"{name:20} {rate:8,.0f}/s  cpu/wall {cpu / wall:.2f}  loop thread {main / 2000 * 1e6:4.0f} us/aput"
            if before is not None:
                after = saver.log.stats()
                fsyncs = after["fsyncs"] - before["fsyncs"]
                micros = after["fsync_micros"] - before["fsync_micros"]
                line += f"  fsyncs {fsyncs} ({2000 / max(fsyncs, 1):.1f} records each, {micros / max(fsyncs, 1):.0f} us each)"
                saver.close()
            shutil.rmtree(tmp, ignore_errors=True)
            print(line)


if __name__ == "__main__":
    asyncio.run(main())
