"""An OpenAI Agents SDK session on a Logbook log: :class:`LogbookSession`.

>>> from agents import Agent, Runner                      # doctest: +SKIP
>>> from logbook.agents import LogbookSession              # doctest: +SKIP
>>> session = LogbookSession("user-42", "./conversations")  # doctest: +SKIP
>>> await Runner.run(agent, "Hello", session=session)       # doctest: +SKIP

Each conversation is one Logbook session (``logbook.session_id("agents:" +
session_id)``); each item is one ``Custom`` record named ``agents.item``
holding the item's JSON. ``add_items`` appends its items as one batch and
returns once they are durable (under the default ``sync="always"``);
``pop_item`` and ``clear_session`` delete through Logbook's deletion API
(tombstones; ``logbook compact`` erases the bytes later). Several
``LogbookSession`` objects may share one :class:`logbook.Log`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

from logbook import (
    ClosedError,
    DeletedSessionError,
    Log,
    UnknownSessionError,
    _open_writer,
    session_id as _session_id,
)

try:  # The SDK is optional: the class follows its protocol either way.
    from agents.memory.session import SessionABC as _Base
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
except ImportError:  # pragma: no cover - without the SDK
    _Base = object  # type: ignore[assignment,misc]
    SessionSettings = None  # type: ignore[assignment,misc]

    def coerce_session_settings(settings):  # type: ignore[no-redef]
        return settings

    def resolve_session_limit(limit, settings):  # type: ignore[no-redef]
        return limit


__all__ = ["LogbookSession", "SessionClosedError"]


class SessionClosedError(ClosedError, RuntimeError):
    """The :class:`LogbookSession` was closed: a :class:`logbook.ClosedError`,
    and a ``RuntimeError`` as the SDK's own sessions raise."""


_ITEM = "agents.item"


class LogbookSession(_Base):  # type: ignore[misc,valid-type]
    """The Agents SDK ``Session`` protocol on a Logbook log.

    ``log`` is an open :class:`logbook.Log` (shared by any number of
    sessions) or a directory, opened with ``open_options`` and closed by
    :meth:`close`. ``session_settings`` as for the SDK's ``SQLiteSession``
    (its ``limit`` is the default of :meth:`get_items`).

    Concurrency: any number of ``LogbookSession`` objects with one
    ``session_id`` on one ``Log``, and one object used from several
    threads (each with its own event loop), see one conversation, and
    each call takes effect at one instant between its call and its return
    (linearizable):

    * :meth:`pop_item` is atomic per (log, session): two pops never return
      the same item, and pops of an ``n``-item conversation return ``n``
      distinct items, then None.
    * :meth:`clear_session` deletes every item whose :meth:`add_items`
      returned before ``clear_session`` was called, and none whose
      ``add_items`` was called after ``clear_session`` returned. An
      ``add_items`` that overlaps the clear in time may come before it
      (cleared) or after it (kept); either is correct. What is left is
      always the latest items added, in order.
    * Every item a clear hides is also listed by its tombstones (those
      added while it ran too), so ``logbook compact`` erases its bytes.

    (An ``add_items`` overlapping a ``clear_session`` may, for now, be
    cut in two, its first items cleared and the rest kept: its records
    are queued one by one, and the clear's tombstone can land between
    them.)
    """

    def __init__(
        self,
        session_id: str,
        log: "Log | str | Any",
        *,
        session_settings: Any = None,
        **open_options: Any,
    ) -> None:
        self.session_id = session_id
        if session_settings is not None:
            self.session_settings = coerce_session_settings(session_settings)
        else:
            self.session_settings = SessionSettings() if SessionSettings is not None else None
        if isinstance(log, Log):
            self.log = log
            self._owns_log = False
        else:
            self.log = _open_writer(log, open_options, "LogbookSession(session_id, log)")
            self._owns_log = True
        self._session = _session_id("agents:" + str(session_id))
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("LogbookSession is closed")

    async def get_items(self, limit: Optional[int] = None) -> list[Any]:
        """The conversation's items in order; with ``limit``, the latest
        ``limit`` of them (still in order), read from the end of the
        conversation: O(limit), not O(the conversation)."""
        self._check_open()
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is not None and limit == 0:
            return []
        if limit is not None and limit > 0:
            records = await self.log.read_custom_tail_async(self._session, limit, _ITEM)
            out = _decoded(records)
            if out is not None:
                return out
            # An entry that is not JSON among them: it does not count
            # (as in SQLiteSession); read the whole conversation.
        records = await self.log.read_custom_async(self._session, _ITEM)
        if limit is None or limit < 0:
            limit = len(records)
        out = []
        for _lsn, _name, data in reversed(records):
            try:
                out.append(json.loads(data))
            except (ValueError, UnicodeDecodeError):
                continue  # Skip an entry that is not JSON, as SQLiteSession does.
            if len(out) >= limit:
                break
        out.reverse()
        return out

    async def add_items(self, items: list[Any]) -> None:
        """Append ``items``: one batch, durable when this returns. The
        append goes on if the caller is cancelled (it is not half done)."""
        self._check_open()
        if not items:
            return
        data = [json.dumps(item, separators=(",", ":")).encode() for item in items]
        await _shielded(self.log.append_custom_many_async(self._session, _ITEM, data))

    async def pop_item(self) -> Optional[Any]:
        """Remove and return the latest item (None for an empty session).
        Atomic per (log, session): concurrent pops, from any number of
        ``LogbookSession`` objects on one :class:`logbook.Log` and from any
        thread or event loop, never return the same item
        (:meth:`logbook.Log.pop_custom_async` reads and deletes in one turn
        of the log's deletions). An entry on top that is not JSON is
        dropped and the item below it popped, as ``SQLiteSession`` does.
        Once started, the pop completes even if the caller is cancelled."""
        self._check_open()
        return await _shielded(self._pop())

    async def _pop(self) -> Optional[Any]:
        while True:
            popped = await self.log.pop_custom_async(self._session, _ITEM)
            if popped is None:
                return None
            try:
                return json.loads(popped[2])
            except (ValueError, UnicodeDecodeError):
                continue  # Dropped: not JSON (SQLiteSession drops it too).

    async def clear_session(self) -> None:
        """Delete every item of the conversation (a tombstone)."""
        self._check_open()
        await _shielded(self._clear())

    async def _clear(self) -> None:
        try:
            await self.log.delete_session_async(self._session)
        except (UnknownSessionError, DeletedSessionError):
            pass

    def close(self) -> None:
        """Close the session (and the log, if this session opened it)."""
        self._closed = True
        if self._owns_log:
            self.log.close()

    async def aclose(self) -> None:
        """:meth:`close` with the log's final fsync off the event loop."""
        self._closed = True
        if self._owns_log:
            await self.log.close_async()

    def __enter__(self) -> LogbookSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> LogbookSession:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _decoded(records: list) -> Optional[list]:
    """The items of ``(lsn, name, data)`` records, or None if one of them
    is not JSON."""
    out = []
    for _lsn, _name, data in records:
        try:
            out.append(json.loads(data))
        except (ValueError, UnicodeDecodeError):
            return None
    return out


async def _shielded(awaitable: Any) -> Any:
    """Wait for a mutation to finish even if the caller is cancelled, then
    re-raise the cancellation (as the SDK's own sessions do)."""
    task = asyncio.ensure_future(awaitable)
    cancelled: Optional[BaseException] = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as e:
            cancelled = cancelled or e
    result = task.result()
    if cancelled is not None:
        raise cancelled
    return result
