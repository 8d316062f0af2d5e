"""The child of test_agents_crash.py: an Agents SDK Runner with a scripted
model (no network) and a LogbookSession. `run` plays turns forever, noting
in ACKS every item add_items acknowledged (the parent SIGKILLs it between
turns); `check` opens the log again, runs one more turn and prints what
the restarted run saw, as JSON."""

import asyncio
import json
import os
import sys
import time

from agents import Agent, Runner
from agents.testing import ScriptedModel
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from logbook.agents import LogbookSession

LOG, ACKS, MODE = sys.argv[1], sys.argv[2], sys.argv[3]


def reply(text):
    return ResponseOutputMessage(
        id="1", type="message", role="assistant", status="completed",
        content=[ResponseOutputText(text=text, type="output_text", annotations=[], logprobs=[])],
    )


class NotingSession(LogbookSession):
    async def add_items(self, items):
        await super().add_items(items)
        # Acknowledged: note it where the parent can read it.
        with open(ACKS, "a") as f:
            for item in items:
                f.write(json.dumps(item, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


async def main():
    session = NotingSession("crash-conversation", LOG)
    model = ScriptedModel()
    agent = Agent(name="counter", model=model)
    if MODE == "run":
        turn = 0
        while True:
            model.enqueue([reply(f"answer {turn}")])
            await Runner.run(agent, f"question {turn}", session=session)
            turn += 1
            time.sleep(0.05)  # between turns
    else:
        seen = await session.get_items()
        model.enqueue([reply("after the crash")])
        result = await Runner.run(agent, "question after the crash", session=session)
        model_input = model.calls[-1].input
        print(json.dumps({
            "seen": [json.loads(json.dumps(i, sort_keys=True)) for i in seen],
            "model_input_len": len(model_input) if isinstance(model_input, list) else 1,
            "final": result.final_output,
            "after": len(await session.get_items()),
        }, default=str))
        session.close()


asyncio.run(main())
