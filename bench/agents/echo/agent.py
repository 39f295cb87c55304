"""echo: the lifecycle benchmarks' agent (native protocol, stdlib only).

On each event it notes when it received it (`time.time_ns()`: the container reads the host's
clock), publishes an AGENT_EVENT "echo" {"trigger": sequence, "received_ns": ...}, acks the
event and calls idle(), so the engine pauses it again at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

try:
    from axon_agent import Agent, Event
except ImportError:  # run from a checkout: the helper is in sample_agents/
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sample_agents"))
    from axon_agent import Agent, Event


def handle(agent: Agent, event: Event) -> None:
    received_ns = time.time_ns()
    sequence = int(event["sequence"])
    agent.publish("echo", {"trigger": sequence, "received_ns": received_ns})
    agent.ack(sequence)
    agent.idle()


if __name__ == "__main__":
    Agent("echo").run(handle)
