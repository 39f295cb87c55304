"""Shared pieces of the ACP tests (contract §5.2): the deterministic sample agent's spec on
either runtime, and readers for what the broker records (updates, turns, permissions)."""

from __future__ import annotations

import sys
from typing import Any

from engine import Event
from engine.models import AgentSpec
from tests.agents_support import SAMPLE_AGENTS, Watch, body, sample_spec

ACP_IMAGE = "axons/acp_agent:latest"
ACP_SCRIPT = SAMPLE_AGENTS / "acp_agent" / "agent.py"


def acp_spec(axon: str, runtime: str, name: str = "acp", **overrides: Any) -> AgentSpec:
    """The sample ACP agent, in a container or as a local process (this venv has the SDK)."""
    return sample_spec(
        axon,
        runtime,
        name=name,
        image=ACP_IMAGE,
        command=[sys.executable, "-u", str(ACP_SCRIPT)],
        **{"protocol": "acp", **overrides},
    )


def updates(watch: Watch, agent: str, after: int, before: int | None = None) -> list[Event]:
    """The agent's session/update events between two sequences."""
    return [
        e
        for e in watch.of(agent, "session/update", "AGENT_EVENT", after=after)
        if before is None or e.sequence < before
    ]


def kinds(events: list[Event]) -> list[str]:
    return [body(e)["update"]["sessionUpdate"] for e in events]


def said(events: list[Event]) -> str:
    """The agent's message chunks, joined as they streamed."""
    return "".join(
        body(e)["update"]["content"]["text"]
        for e in events
        if body(e)["update"]["sessionUpdate"] == "agent_message_chunk"
    )


async def turn_end(watch: Watch, agent: str, sequence: int) -> Event:
    """turn.completed or turn.failed for the turn that handled `sequence`."""
    return await watch.wait(
        lambda e: (
            e.origin == "SYSTEM_EVENT"
            and e.source == agent
            and e.event_type in ("turn.completed", "turn.failed")
            and sequence in body(e)["sequences"]
        ),
        f"the end of {agent}'s turn on #{sequence}",
        after=sequence,
    )


async def permission_request(watch: Watch, agent: str, after: int) -> Event:
    return await watch.wait(
        lambda e: e.source == agent and e.event_type == "permission.requested",
        f"a permission request of {agent}",
        after=after,
    )
