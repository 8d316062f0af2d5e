"""A LangGraph checkpointer on a Logbook log: :class:`LogbookSaver`.

>>> from logbook.langgraph import LogbookSaver          # doctest: +SKIP
>>> saver = LogbookSaver("./checkpoints")                # doctest: +SKIP
>>> graph = builder.compile(checkpointer=saver)          # doctest: +SKIP

How threads are stored: each thread is one Logbook session (its id is
``logbook.session_id("langgraph:" + thread_id)``), holding every namespace
of the thread. Each ``put`` appends one ``Custom`` record (the checkpoint,
its metadata and the channel values of ``new_versions``, serialized with the
saver's ``serde``), each ``put_writes`` one more; ``get_tuple`` and ``list``
read the thread's session through the log's session index (the other
threads' records are not read). ``copy_thread`` forks the session;
``delete_thread``, ``delete_for_runs`` and ``prune`` append tombstones
through Logbook's deletion API (``logbook compact`` later erases the bytes).

Durability: under the default ``sync="always"`` a ``put`` returns once its
record is fsynced; concurrent ``aput`` calls share one fsync.

One writer per directory: open the saver in one process (see
``docs/python.md`` for multi-worker servers).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Optional

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

import logbook
from logbook import DeletedSessionError, Log, UnknownSessionError, _open_writer

__all__ = ["LogbookSaver"]

_SEP = "\x1f"
_CHECKPOINT = "lg.c"
_WRITES = "lg.w"
_BLOBS = "lg.b"
_THREAD = "lg.t"
_PREFIX = "lg."


@functools.lru_cache(maxsize=1 << 16)
def thread_session(thread_id: str) -> str:
    """The Logbook session that holds a LangGraph thread."""
    return logbook.session_id("langgraph:" + str(thread_id))


class _Thread:
    """A thread's records, as one per-session read returned them, decoded
    lazily (only the envelopes a call needs)."""

    def __init__(self, saver: LogbookSaver, thread_id: str, records: list) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.named_thread: Optional[str] = None
        # (ns, id) -> [lsn, parent id, payload, decoded envelope or None]
        self.checkpoints: dict[tuple[str, str], list] = {}
        # (ns, id) -> [(lsn, payload)]
        self.writes: dict[tuple[str, str], list] = {}
        # ns -> [(lsn, "c" | "b", key or None, payload)] newest first, blob sources
        self.sources: dict[str, list] = {}
        for lsn, name, data in records:
            parts = name.split(_SEP)
            kind = parts[0]
            if kind == _CHECKPOINT and len(parts) == 4:
                ns, cid, parent = parts[1], parts[2], parts[3] or None
                self.checkpoints[(ns, cid)] = [lsn, parent, data, None]
                self.sources.setdefault(ns, []).append((lsn, "c", (ns, cid), data))
            elif kind == _WRITES and len(parts) == 3:
                self.writes.setdefault((parts[1], parts[2]), []).append((lsn, data))
            elif kind == _BLOBS and len(parts) == 2:
                self.sources.setdefault(parts[1], []).append((lsn, "b", None, data))
            elif kind == _THREAD:
                self.named_thread = data.decode()
        for sources in self.sources.values():
            sources.sort(key=lambda s: s[0], reverse=True)
        self._blobs: dict[str, dict] = {}
        self._scanned: dict[str, int] = {}
        if self.named_thread is not None:
            self.thread_id = self.named_thread

    def envelope(self, key: tuple[str, str]) -> dict:
        entry = self.checkpoints[key]
        if entry[3] is None:
            entry[3] = self.saver._decode(entry[2])
        return entry[3]

    def blob(self, ns: str, channel: str, version: Any) -> Optional[tuple]:
        """(type, bytes) of a channel's value at a version: from the newest
        record of the namespace that stored it."""
        found = self._blobs.setdefault(ns, {})
        key = (channel, version)
        sources = self.sources.get(ns, [])
        while key not in found and self._scanned.get(ns, 0) < len(sources):
            i = self._scanned.get(ns, 0)
            self._scanned[ns] = i + 1
            lsn, what, ckey, data = sources[i]
            env = self.envelope(ckey) if what == "c" else self.saver._decode(data)
            for ch, (v, t, b) in env["b"].items():
                found.setdefault((ch, _hashable(v)), (t, b, lsn))
        return found.get(key)

    def latest(self, ns: str) -> Optional[str]:
        ids = [cid for (n, cid) in self.checkpoints if n == ns]
        return max(ids) if ids else None

    def pending_writes(self, ns: str, cid: str) -> list:
        kept: dict[tuple[str, int], tuple] = {}
        for _lsn, data in self.writes.get((ns, cid), []):
            env = self.saver._decode(data)
            for idx, channel, t, b in env["w"]:
                key = (env["task"], idx)
                if idx >= 0 and key in kept:
                    continue
                kept[key] = (env["path"], env["task"], idx, channel, t, b)
        ordered = sorted(kept.values(), key=lambda w: (w[0], w[1], w[2]))
        loads = self.saver.serde.loads_typed
        return [(task, channel, loads((t, b))) for _p, task, _i, channel, t, b in ordered]

    def writes_lsns(self, ns: str, cid: str) -> list[int]:
        return [lsn for lsn, _ in self.writes.get((ns, cid), [])]

    def tuple(self, ns: str, cid: str) -> CheckpointTuple:
        _lsn, parent, _data, _env = self.checkpoints[(ns, cid)]
        env = self.envelope((ns, cid))
        checkpoint = dict(env["cp"])
        values = {}
        loads = self.saver.serde.loads_typed
        for channel, version in checkpoint.get("channel_versions", {}).items():
            b = self.blob(ns, channel, _hashable(version))
            if b is not None and b[0] != "empty":
                values[channel] = loads((b[0], b[1]))
        checkpoint["channel_values"] = values
        config = {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}
        parent_config = (
            {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
            if parent
            else None
        )
        return CheckpointTuple(
            config=config,
            checkpoint=checkpoint,
            metadata=env["md"],
            parent_config=parent_config,
            pending_writes=self.pending_writes(ns, cid),
        )

    def select(
        self,
        config: Optional[RunnableConfig],
        filter: Optional[dict[str, Any]],
        before: Optional[RunnableConfig],
        limit: Optional[int],
    ) -> list[CheckpointTuple]:
        configurable = (config or {}).get("configurable", {})
        keys = list(self.checkpoints)
        if "checkpoint_ns" in configurable:
            keys = [k for k in keys if k[0] == configurable["checkpoint_ns"]]
        wanted = configurable.get("checkpoint_id")
        if wanted:
            keys = [k for k in keys if k[1] == wanted]
        before_id = get_checkpoint_id(before) if before else None
        if before_id:
            keys = [k for k in keys if k[1] < before_id]
        keys.sort(key=lambda k: k[1], reverse=True)
        out = []
        for key in keys:
            if filter:
                md = self.envelope(key)["md"]
                if not all(md.get(k) == v for k, v in filter.items()):
                    continue
            out.append(self.tuple(*key))
            if limit is not None and len(out) >= limit:
                break
        return out


def _copy_refused(source: str, target: str, error: ValueError) -> ValueError:
    """The error of a copy_thread into a thread that has checkpoints (or
    into itself): a copy is a fork, which goes to a new session."""
    return ValueError(
        f"cannot copy thread {source!r} to thread {target!r}: the target has checkpoints "
        f"already (or is the source), and a copy goes to a new thread; delete it first ({error})"
    )


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


class LogbookSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer that stores threads in a Logbook log.

    ``log`` is an open :class:`logbook.Log` or a directory (opened with
    ``open_options``, e.g. ``sync="always"``, ``key_file=...``, and closed by
    :meth:`close`). Sync and async methods are both native: the sync ones
    block the calling thread (with the GIL released during I/O), the async
    ones are awaitables on Logbook's async append path.
    """

    log: Log

    def __init__(
        self,
        log: "Log | str | Any",
        *,
        serde: Optional[SerializerProtocol] = None,
        **open_options: Any,
    ) -> None:
        super().__init__(serde=serde)
        if isinstance(log, Log):
            self.log = log
            self._owns_log = False
        else:
            self.log = _open_writer(log, open_options, "LogbookSaver(log)")
            self._owns_log = True

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the log if this saver opened it."""
        if self._owns_log:
            self.log.close()

    def __enter__(self) -> LogbookSaver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> LogbookSaver:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._owns_log:
            await self.log.close_async()

    # -- encoding ----------------------------------------------------------

    def _encode(self, obj: Any) -> bytes:
        t, data = self.serde.dumps_typed(obj)
        return t.encode() + b"\0" + data

    def _decode(self, payload: bytes) -> Any:
        t, _, data = payload.partition(b"\0")
        return self.serde.loads_typed((t.decode(), data))

    def _checkpoint_record(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[str, str, bytes, RunnableConfig]:
        c = config["configurable"]
        thread_id = str(c["thread_id"])
        ns = c.get("checkpoint_ns", "") or ""
        parent = c.get("checkpoint_id") or ""
        cp = dict(checkpoint)
        values = cp.pop("channel_values", {}) or {}
        blobs = {}
        for channel, version in new_versions.items():
            if channel in values:
                t, b = self.serde.dumps_typed(values[channel])
            else:
                t, b = "empty", b""
            blobs[channel] = (version, t, b)
        envelope = {
            "t": thread_id,
            "cp": cp,
            "md": get_serializable_checkpoint_metadata(config, metadata),
            "b": blobs,
        }
        name = _SEP.join((_CHECKPOINT, ns, checkpoint["id"], parent))
        next_config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}
        return thread_session(thread_id), name, self._encode(envelope), next_config

    def _writes_record(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> tuple[str, str, bytes]:
        c = config["configurable"]
        ns = c.get("checkpoint_ns", "") or ""
        items = []
        for idx, (channel, value) in enumerate(writes):
            t, b = self.serde.dumps_typed(value)
            items.append((WRITES_IDX_MAP.get(channel, idx), channel, t, b))
        envelope = {"task": task_id, "path": task_path, "w": items}
        name = _SEP.join((_WRITES, ns, c["checkpoint_id"]))
        return thread_session(str(c["thread_id"])), name, self._encode(envelope)

    # -- reads -------------------------------------------------------------

    def _thread(self, thread_id: str) -> _Thread:
        return _Thread(self, thread_id, self.log.read_custom(thread_session(thread_id), _PREFIX))

    async def _athread(self, thread_id: str) -> _Thread:
        records = await self.log.read_custom_async(thread_session(thread_id), _PREFIX)
        return _Thread(self, thread_id, records)

    @staticmethod
    def _get(thread: _Thread, config: RunnableConfig) -> Optional[CheckpointTuple]:
        ns = config["configurable"].get("checkpoint_ns", "") or ""
        cid = get_checkpoint_id(config) or thread.latest(ns)
        if cid is None or (ns, cid) not in thread.checkpoints:
            return None
        return thread.tuple(ns, cid)

    def get_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        """The checkpoint ``config`` names (its ``checkpoint_id``, else the
        thread's latest in its namespace), or None."""
        thread = self._thread(str(config["configurable"]["thread_id"]))
        return self._get(thread, config)

    async def aget_tuple(self, config: RunnableConfig) -> Optional[CheckpointTuple]:
        """Async :meth:`get_tuple`."""
        thread = await self._athread(str(config["configurable"]["thread_id"]))
        return self._get(thread, config)

    def _all_threads(self) -> list[str]:
        """Sessions of the log that hold LangGraph records (a listing of
        the whole log: only for ``list(None)`` and ``delete_for_runs``)."""
        return [s["session"] for s in self.log.sessions()]

    def list(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints, newest first (by checkpoint id): of ``config``'s
        thread (and namespace, when it names one), matching ``filter`` (a
        subset of the metadata), older than ``before``, at most ``limit``.
        ``config=None`` lists every thread of the log (a full scan)."""
        if config is not None:
            thread = self._thread(str(config["configurable"]["thread_id"]))
            yield from thread.select(config, filter, before, limit)
            return
        remaining = limit
        for thread in self._every_thread():
            for t in thread.select(None, filter, before, remaining):
                yield t
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return

    def _every_thread(self) -> Iterator[_Thread]:
        """Every thread of the log that holds a checkpoint, read whole (its
        name included: a copy's is its ``lg.t`` record, since the
        checkpoints it was forked with name the source thread)."""
        for session in self._all_threads():
            records = self.log.read_custom(session, _PREFIX)
            if not records:
                continue
            thread = _Thread(self, "", records)
            if not thread.checkpoints:
                continue
            if not thread.thread_id:
                thread.thread_id = self._thread_name(thread)
            yield thread

    def _thread_name(self, thread: _Thread) -> str:
        for key in thread.checkpoints:
            return str(thread.envelope(key)["t"])
        return ""

    async def alist(
        self,
        config: Optional[RunnableConfig],
        *,
        filter: Optional[dict[str, Any]] = None,
        before: Optional[RunnableConfig] = None,
        limit: Optional[int] = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list`."""
        if config is not None:
            thread = await self._athread(str(config["configurable"]["thread_id"]))
            for t in thread.select(config, filter, before, limit):
                yield t
            return
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, lambda: list(self.list(None, filter=filter, before=before, limit=limit)))
        for t in found:
            yield t

    # -- writes ------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint (one record); returns its config once durable."""
        session, name, data, next_config = self._checkpoint_record(config, checkpoint, metadata, new_versions)
        self.log.append_custom(session, name, data)
        return next_config

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async :meth:`put`: concurrent calls share one fsync."""
        session, name, data, next_config = self._checkpoint_record(config, checkpoint, metadata, new_versions)
        await self.log.append_custom_async(session, name, data)
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's intermediate writes for a checkpoint (one record)."""
        session, name, data = self._writes_record(config, writes, task_id, task_path)
        self.log.append_custom(session, name, data)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async :meth:`put_writes`."""
        session, name, data = self._writes_record(config, writes, task_id, task_path)
        await self.log.append_custom_async(session, name, data)

    # -- deletion, copy ----------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of the thread (a tombstone for its session)."""
        try:
            self.log.delete_session(thread_session(thread_id))
        except (UnknownSessionError, DeletedSessionError):
            pass

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread`."""
        try:
            await self.log.delete_session_async(thread_session(thread_id))
        except (UnknownSessionError, DeletedSessionError):
            pass

    def _doomed(self, thread: _Thread, doomed: set) -> tuple[list[int], Optional[list]]:
        """LSNs to delete for the checkpoints ``doomed`` (and their writes),
        and the blobs that surviving checkpoints still read from those
        records (re-stored first, one record per namespace)."""
        lsns = []
        for key in doomed:
            lsns.append(thread.checkpoints[key][0])
            lsns.extend(thread.writes_lsns(*key))
        dropped = set(lsns)
        keep: dict[str, dict] = {}
        for key in thread.checkpoints:
            if key in doomed:
                continue
            ns = key[0]
            for channel, version in thread.envelope(key)["cp"].get("channel_versions", {}).items():
                b = thread.blob(ns, channel, _hashable(version))
                if b is not None and b[2] in dropped:
                    keep.setdefault(ns, {})[channel] = (version, b[0], b[1])
        restore = [(_SEP.join((_BLOBS, ns)), self._encode({"b": blobs})) for ns, blobs in keep.items()]
        return sorted(lsns), restore

    def _delete_checkpoints(self, thread_id: str, choose) -> None:
        thread = self._thread(thread_id)
        doomed = choose(thread)
        if not doomed:
            return
        lsns, restore = self._doomed(thread, doomed)
        session = thread_session(thread_id)
        for name, data in restore:
            self.log.append_custom(session, name, data)
        self.log.delete_records(session, lsns)

    async def _adelete_checkpoints(self, thread_id: str, choose) -> None:
        thread = await self._athread(thread_id)
        doomed = choose(thread)
        if not doomed:
            return
        lsns, restore = self._doomed(thread, doomed)
        session = thread_session(thread_id)
        for name, data in restore:
            await self.log.append_custom_async(session, name, data)
        await self.log.delete_records_async(session, lsns)

    @staticmethod
    def _of_runs(run_ids: set):
        def choose(thread: _Thread) -> set:
            return {k for k in thread.checkpoints if thread.envelope(k)["md"].get("run_id") in run_ids}

        return choose

    def _run_threads(self) -> list[str]:
        return [thread.thread_id for thread in self._every_thread()]

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata's
        ``run_id`` is one of ``run_ids``, in every thread (this lists the
        log's sessions: a full scan)."""
        runs = {str(r) for r in run_ids}
        if not runs:
            return
        for thread_id in self._run_threads():
            self._delete_checkpoints(thread_id, self._of_runs(runs))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async :meth:`delete_for_runs`."""
        runs = {str(r) for r in run_ids}
        if not runs:
            return
        loop = asyncio.get_running_loop()
        threads = await loop.run_in_executor(None, self._run_threads)
        for thread_id in threads:
            await self._adelete_checkpoints(thread_id, self._of_runs(runs))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of a thread to another: a fork of
        its session into the target's."""
        try:
            self.log.fork(thread_session(source_thread_id), new_session=thread_session(target_thread_id))
        except UnknownSessionError:
            return
        except ValueError as e:
            raise _copy_refused(source_thread_id, target_thread_id, e) from e
        self.log.append_custom(thread_session(target_thread_id), _THREAD, str(target_thread_id).encode())

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async :meth:`copy_thread`."""
        try:
            await self.log.fork_async(thread_session(source_thread_id), new_session=thread_session(target_thread_id))
        except UnknownSessionError:
            return
        except ValueError as e:
            raise _copy_refused(source_thread_id, target_thread_id, e) from e
        await self.log.append_custom_async(
            thread_session(target_thread_id), _THREAD, str(target_thread_id).encode()
        )

    @staticmethod
    def _all_but_latest(thread: _Thread) -> set:
        latest = {}
        for ns, cid in thread.checkpoints:
            if ns not in latest or cid > latest[ns]:
                latest[ns] = cid
        return {k for k in thread.checkpoints if latest[k[0]] != k[1]}

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's latest checkpoint (with
        its writes) and delete the others; ``"delete"``: delete the threads."""
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
            elif strategy == "keep_latest":
                self._delete_checkpoints(thread_id, self._all_but_latest)
            else:
                raise ValueError(f"unknown prune strategy {strategy!r}: keep_latest or delete")

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async :meth:`prune`."""
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
            elif strategy == "keep_latest":
                await self._adelete_checkpoints(thread_id, self._all_but_latest)
            else:
                raise ValueError(f"unknown prune strategy {strategy!r}: keep_latest or delete")
