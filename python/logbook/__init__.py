"""Logbook: a crash-safe write-ahead log for AI-agent sessions.

Open a log with :class:`Log` (one writer per directory), append events
(dicts in the shape of ``docs/json.md``) with :meth:`Log.append` or, from
asyncio, :meth:`Log.append_async` (coroutines appending at once share one
fsync), read a session back with :meth:`Log.read`, rebuild it with
:meth:`Log.replay`, list, fork, export, follow and delete.

>>> import logbook, tempfile, uuid
>>> with tempfile.TemporaryDirectory() as path, logbook.Log(path, segment_size=1 << 20) as log:
...     session = str(uuid.uuid4())
...     log.append(session, {"kind": "UserMessage", "value": "hi"})
...     [r["event"] for r in log.read(session)]
1
[{'kind': 'UserMessage', 'value': 'hi'}]

Framework adapters: :mod:`logbook.langgraph` (``LogbookSaver``, a LangGraph
checkpointer; ``pip install logbook[langgraph]``) and :mod:`logbook.agents`
(``LogbookSession``, an OpenAI Agents SDK session; ``pip install
logbook[agents]``).
"""

from __future__ import annotations

import uuid as _uuid

from logbook._logbook import (
    KINDS,
    ClosedError,
    CorruptError,
    DeletedSessionError,
    DiskFullError,
    EncryptionKeyError,
    Follow,
    ForkedError,
    LockedError,
    Log,
    LogbookError,
    NoLogError,
    PermissionDeniedError,
    PoisonedError,
    UnknownSessionError,
    __version__,
)

__all__ = [
    "KINDS",
    "ClosedError",
    "CorruptError",
    "DeletedSessionError",
    "DiskFullError",
    "EncryptionKeyError",
    "Follow",
    "ForkedError",
    "LockedError",
    "Log",
    "LogbookError",
    "NoLogError",
    "PermissionDeniedError",
    "PoisonedError",
    "UnknownSessionError",
    "__version__",
    "open",
    "session_id",
]

#: The namespace of :func:`session_id`'s name-based ids.
NAMESPACE = _uuid.UUID("6c6f6762-6f6f-4b00-8000-6c6f67626f6f")


def open(path, **options) -> Log:  # noqa: A001 - mirrors io.open
    """Open (creating if needed) the log in ``path``: ``Log(path, **options)``."""
    return Log(path, **options)


def session_id(name: str) -> str:
    """A session id (a UUID string) named by ``name``: the same name gives
    the same id in every process (UUID v5), so an application can name its
    sessions by its own keys (a thread id, a conversation id)."""
    return str(_uuid.uuid5(NAMESPACE, name))


def _open_writer(path, options: dict, owner: str) -> Log:
    """``Log(path, **options)`` for an adapter that opens its own log: a
    ``LockedError`` there says to share one Log between the adapters."""
    try:
        return Log(path, **options)
    except LockedError as e:
        shared = LockedError(
            f"{e} (a log directory has one writer: in one process, open it once, "
            f"log = logbook.Log(path), and pass that Log to every {owner} on it)"
        )
        shared.path, shared.offset, shared.lsn = e.path, e.offset, e.lsn
        raise shared from e
