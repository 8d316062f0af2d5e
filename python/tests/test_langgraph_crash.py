"""A LangGraph run checkpointed by LogbookSaver is SIGKILLed mid-run, then
resumed in a new process with invoke(None, config): it completes, and no
checkpointed step is lost or repeated."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("langgraph.prebuilt")

CHILD = os.path.join(os.path.dirname(__file__), "crash_langgraph_child.py")
EXPECTED_TRACE = ["plan", "agent0", "agent1", "agent2", "agent3", "agent4", "finish"]


def marks(path):
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("durability", ["async", "sync"])
@pytest.mark.parametrize("kill_after", [2, 5, 8])
def test_sigkill_mid_run_then_resume(tmp_path, kill_after, durability):
    log, mark_file = str(tmp_path / "log"), str(tmp_path / "marks")
    env = dict(os.environ, CRASH_DURABILITY=durability)
    child = subprocess.Popen([sys.executable, CHILD, log, mark_file, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while len(marks(mark_file)) < kill_after:
        assert child.poll() is None, child.communicate()
        assert time.time() < deadline, "the child made no progress"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    before = marks(mark_file)

    out = subprocess.run([sys.executable, CHILD, log, mark_file, "resume"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["tasks_before"], "the run was cut off mid-way: a step was left to run or to apply"

    # It completes, every step exactly once.
    assert state["trace"] == EXPECTED_TRACE
    calls = [c for m in state["messages"] for c in m["tool_calls"]]
    results = [m["tool_call_id"] for m in state["messages"] if m["type"] == "tool"]
    assert calls == results == [f"call{i}" for i in range(4)]
    assert state["messages"][-1]["content"] == "done"

    # The checkpoints: one per step, none twice, none missing.
    steps = sorted(h["step"] for h in state["history"])
    assert steps == list(range(-1, len(steps) - 1)), steps
    assert len({h["id"] for h in state["history"]}) == len(state["history"])

    # Nothing the log held (checkpointed) ran again; what ran again had not
    # been checkpointed when the child died (LangGraph's default durability
    # saves a step's checkpoint while the next step runs).
    after = marks(mark_file)[len(before):]
    saved = state["saved_before"]
    assert not [m for m in after if m in saved], (saved, before, after)
    assert all(m in before for m in saved), (saved, before)
    everything = ["plan", "agent0", "tool0", "agent1", "tool1", "agent2", "tool2", "agent3", "tool3", "agent4", "finish"]
    # None twice: the state the log held ran no node twice (a task's
    # pending writes, which get_state applies to the values, count once).
    assert len(state["saved_values"]) == len(set(state["saved_values"])), state["saved_values"]
    saved = sorted(saved, key=everything.index)
    assert saved == everything[: len(saved)], saved  # a prefix of the run: none lost
    assert saved + after == everything, (saved, after)
    if durability == "sync":
        # Each step is saved before the next starts: only the node running
        # at the kill (or the one whose checkpoint was being written) runs again.
        assert len(before) - len(saved) <= 1, (before, saved)
