"""Child process for test_agents_docker.py: opens an Engine on HOME (agents in Docker),
creates the Axon `support`, adds the triage agent, publishes a customer report and waits
until the agent has handled it and is paused. Then it prints one line
`READY {"axon_id", "home_id", "report": <seq>, "paused": <seq>}` and sleeps until the parent
SIGKILLs it: no shutdown code of the engine ever runs.

Usage: python -m tests.agents_engine_child HOME
"""

from __future__ import annotations

import asyncio
import json
import sys

import orjson

from engine import Draft, Engine
from tests.agents_support import REPORT, triage_spec


async def main(home: str) -> None:
    async with Engine(home, agent_runtime="docker") as engine:
        axon_id = (await engine.create_axon("support")).id
        await engine.agents.add(triage_spec("support", "docker"))
        report = paused = None
        async for e in engine.subscribe(axon_id, 0):
            if e.source != "triage" or e.origin != "SYSTEM_EVENT":
                continue
            if e.event_type == "agent.running" and report is None:
                draft = Draft.message(REPORT, source="web")
                report = (await engine.publish(axon_id, draft)).sequence
            elif e.event_type == "agent.paused" and report is not None:
                paused = e.sequence
                break
            elif e.event_type in ("agent.failed", "turn.failed"):
                sys.stderr.write(f"child: {e.event_type} {orjson.loads(e.payload)}\n")
                sys.exit(1)
        line = {
            "axon_id": axon_id,
            "home_id": engine.agents.home_id,
            "report": report,
            "paused": paused,
        }
        sys.stdout.write(f"READY {json.dumps(line)}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
