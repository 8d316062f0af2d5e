"""An Agents SDK Runner with a scripted model and a LogbookSession is
SIGKILLed between turns; the restarted run sees every item that add_items
acknowledged."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("agents")

CHILD = os.path.join(os.path.dirname(__file__), "crash_agents_child.py")


def acked(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("kill_after_items", [3, 10])
def test_sigkill_between_turns_loses_no_acknowledged_item(tmp_path, kill_after_items):
    log, acks = str(tmp_path / "log"), str(tmp_path / "acks")
    child = subprocess.Popen([sys.executable, CHILD, log, acks, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(acked(acks)) < kill_after_items:
        assert child.poll() is None, child.communicate()
        assert time.time() < deadline
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before = acked(acks)

    out = subprocess.run([sys.executable, CHILD, log, acks, "check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    seen = state["seen"]
    # Every acknowledged item, in order (an item made durable just before
    # the kill, before its acknowledgement was noted, may follow them).
    assert seen[: len(before)] == before
    assert len(seen) - len(before) <= 2
    # The restarted run saw them all, plus its own question.
    assert state["model_input_len"] == len(seen) + 1
    assert state["final"] == "after the crash"
    assert state["after"] == len(seen) + 2
