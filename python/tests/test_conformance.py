"""LangGraph's own conformance suite (langgraph-checkpoint-conformance)
against LogbookSaver: every base and extended capability must pass."""

import tempfile

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate  # noqa: E402
from langgraph.checkpoint.conformance.capabilities import (  # noqa: E402
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
)
from langgraph.checkpoint.conformance.report import ProgressCallbacks  # noqa: E402

from logbook.langgraph import LogbookSaver  # noqa: E402


@checkpointer_test(name="LogbookSaver")
async def logbook_checkpointer():
    with tempfile.TemporaryDirectory() as d:
        saver = LogbookSaver(d)
        try:
            yield saver
        finally:
            saver.close()


async def test_conformance_full(capsys):
    with capsys.disabled():  # CI prints the report
        report = await validate(logbook_checkpointer, progress=ProgressCallbacks.verbose())
        report.print_report()
    results = report.results
    failures = {
        cap: r.failures for cap, r in results.items() if r.passed is not True
    }
    for cap in BASE_CAPABILITIES | EXTENDED_CAPABILITIES:
        r = results[cap.value]
        assert r.detected, f"{cap.value} not detected"
    assert not failures, failures
    assert report.passed_all_base()
    assert report.passed_all()
    total = sum(r.tests_passed for r in results.values())
    assert total == 81, total


class _SyncPathSaver(LogbookSaver):
    """The same suite through the sync methods: each async method here
    calls its sync counterpart."""

    async def aput(self, config, checkpoint, metadata, new_versions):
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        return self.put_writes(config, writes, task_id, task_path)

    async def aget_tuple(self, config):
        return self.get_tuple(config)

    async def alist(self, config, *, filter=None, before=None, limit=None):
        for t in self.list(config, filter=filter, before=before, limit=limit):
            yield t

    async def adelete_thread(self, thread_id):
        return self.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids):
        return self.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id, target_thread_id):
        return self.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids, *, strategy="keep_latest"):
        return self.prune(thread_ids, strategy=strategy)


@checkpointer_test(name="LogbookSaver (sync methods)")
async def logbook_sync_checkpointer():
    with tempfile.TemporaryDirectory() as d:
        saver = _SyncPathSaver(d)
        try:
            yield saver
        finally:
            saver.close()


async def test_conformance_sync_methods(capsys):
    report = await validate(logbook_sync_checkpointer)
    with capsys.disabled():
        report.print_report()
    assert report.passed_all(), {c: r.failures for c, r in report.results.items()}
    assert sum(r.tests_passed for r in report.results.values()) == 81
