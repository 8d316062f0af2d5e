"""What the SDK's SQLiteSession tests import, pointed at LogbookSession.

`SQLiteSession(session_id, db_path=":memory:", ..., session_settings=None)`
becomes a LogbookSession on a log directory named after `db_path`
(`<db_path>.logbook`; a fresh temporary directory for ":memory:"). Sessions
with the same db_path share one open Log, as SQLiteSession objects share
one database file (Logbook allows one writer per directory).
"""

from __future__ import annotations

import tempfile


from openai.types.responses import ResponseOutputMessage, ResponseOutputText

import logbook
from logbook.agents import LogbookSession

_logs: "dict[str, logbook.Log]" = {}


def _log_for(db_path) -> logbook.Log:
    if str(db_path) == ":memory:":
        return logbook.Log(tempfile.mkdtemp(prefix="logbook-memory-"))
    path = str(db_path) + ".logbook"
    log = _logs.get(path)
    if log is None or log.closed:
        log = logbook.Log(path)
        _logs[path] = log
    return log


class SQLiteSession(LogbookSession):
    def __init__(self, session_id, db_path=":memory:", sessions_table="agent_sessions",
                 messages_table="agent_messages", session_settings=None):
        log = _log_for(db_path)
        super().__init__(session_id, log, session_settings=session_settings)
        self._keep_log = log  # the session keeps its log open (a shared one is not closed)


def get_text_message(content: str):
    return ResponseOutputMessage(
        id="1",
        type="message",
        role="assistant",
        content=[ResponseOutputText(text=content, type="output_text", annotations=[], logprobs=[])],
        status="completed",
    )
