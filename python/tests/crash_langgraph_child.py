"""The child of test_langgraph_crash.py: a StateGraph with several nodes and
a tool node, checkpointed by LogbookSaver. `run` starts a thread (and is
SIGKILLed by the parent mid-run); `resume` opens the log again and resumes
with invoke(None, config), printing the final state as JSON."""

import json
import operator
import os
import sys
import time
from typing import Annotated, TypedDict

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode

from logbook.langgraph import LogbookSaver

LOG, MARKS, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
ROUNDS = 4
PAUSE = float(os.environ.get("CRASH_PAUSE", "0.15"))
DURABILITY = os.environ.get("CRASH_DURABILITY", "async")


def mark(what: str) -> None:
    """Note that a node started (the parent watches this file)."""
    with open(MARKS, "a") as f:
        f.write(what + "\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(PAUSE)


class State(TypedDict):
    messages: Annotated[list, add_messages]
    trace: Annotated[list, operator.add]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    mark(f"tool{a}")
    return a + b


def plan(state: State) -> dict:
    mark("plan")
    return {"trace": ["plan"]}


def agent(state: State) -> dict:
    done = sum(isinstance(m, ToolMessage) for m in state["messages"])
    mark(f"agent{done}")
    if done < ROUNDS:
        call = {"name": "add", "args": {"a": done, "b": 1}, "id": f"call{done}"}
        message = AIMessage(content="", tool_calls=[call])
    else:
        message = AIMessage(content="done")
    return {"messages": [message], "trace": [f"agent{done}"]}


def route(state: State) -> str:
    return "tools" if state["messages"][-1].tool_calls else "finish"


def finish(state: State) -> dict:
    mark("finish")
    return {"trace": ["finish"]}


builder = StateGraph(State)
builder.add_node("plan", plan)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode([add]))
builder.add_node("finish", finish)
builder.add_edge(START, "plan")
builder.add_edge("plan", "agent")
builder.add_conditional_edges("agent", route, {"tools": "tools", "finish": "finish"})
builder.add_edge("tools", "agent")
builder.add_edge("finish", END)

saver = LogbookSaver(LOG)
graph = builder.compile(checkpointer=saver)
config = {"configurable": {"thread_id": "crash-thread"}}

if MODE == "run":
    graph.invoke({"messages": [HumanMessage(content="count to four")], "trace": []}, config, durability=DURABILITY)
    print("FINISHED WITHOUT BEING KILLED")
else:
    before = graph.get_state(config)
    # The node runs the log holds (checkpointed): the state's own, and the
    # writes of finished tasks stored with put_writes. get_state applies
    # the pending writes of the checkpoint's next tasks to the values it
    # returns, so a finished task's run can be in both: counted once.
    def runs(values):
        return list(values.get("trace", [])) + [
            f"tool{m.tool_call_id[4:]}" for m in values.get("messages", []) if isinstance(m, ToolMessage)
        ]
    saved_values = runs(before.values)
    saved = list(saved_values)
    for task in before.tasks:
        if task.result:
            saved.extend(m for m in runs(task.result) if m not in saved)
    result = graph.invoke(None, config, durability=DURABILITY)
    history = [
        {"step": t.metadata.get("step"), "id": t.config["configurable"]["checkpoint_id"]}
        for t in saver.list(config)
    ]
    print(json.dumps({
        "next_before": list(before.next),
        "tasks_before": [t.name for t in before.tasks],
        "saved_before": saved,
        "saved_values": saved_values,
        "trace": result["trace"],
        "messages": [
            {"type": m.type, "tool_calls": [c["id"] for c in getattr(m, "tool_calls", []) or []],
             "tool_call_id": getattr(m, "tool_call_id", None), "content": m.content}
            for m in result["messages"]
        ],
        "history": history,
    }))
saver.close()
