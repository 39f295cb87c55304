"""A test agent for on_busy: a message "slow" keeps its turn open until the engine interrupts
it (or $SLOW_S seconds pass); every turn reports its event and whether it was interrupted."""

from __future__ import annotations

import os
import time

from axon_agent import Agent, payload_of


def handle(agent: Agent, event: dict) -> None:
    if payload_of(event).get("text") == "slow":
        agent.publish("started", {"sequence": event["sequence"]})
        deadline = time.monotonic() + float(os.environ.get("SLOW_S", "30"))
        while not agent.interrupted and time.monotonic() < deadline:
            time.sleep(0.01)
    agent.publish("handled", {"sequence": event["sequence"], "interrupted": agent.interrupted})
    agent.ack(event["sequence"])


Agent("slow").run(handle)
