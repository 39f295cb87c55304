"""What happens to events that arrive while an agent is mid-turn (contract §5 `on_busy`):
queued for their own turns, merged into one turn, or announced with `axon/interrupt`.
Local processes, so no Docker engine is needed and each turn is cheap."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine import Draft, Engine
from engine.errors import InvalidInput
from engine.models import AgentSpec
from tests.agents_support import body, watching

ROOT = Path(__file__).resolve().parent.parent


def slow_agent(on_busy: str) -> AgentSpec:
    return AgentSpec(
        name="slow",
        axon="busy",
        runtime="process",
        on_busy=on_busy,  # type: ignore[arg-type]
        idle_pause_s=60,
        command=[sys.executable, "-u", str(ROOT / "tests" / "agents" / "slow_agent.py")],
        # long enough that only an interrupt ends it early; short where nothing will
        env={
            "PYTHONPATH": str(ROOT / "sample_agents"),
            "SLOW_S": "30" if on_busy == "interrupt" else "1",
        },
    )


async def publish(engine: Engine, axon_id: str, text: str) -> int:
    return (await engine.publish(axon_id, Draft.message(text, source="web"))).sequence


@pytest.mark.parametrize("on_busy", ["queue", "merge", "interrupt"])
async def test_events_arriving_mid_turn(tmp_path: Path, on_busy: str) -> None:
    async with Engine(tmp_path / "home", agent_runtime="process") as engine:
        axon_id = (await engine.create_axon("busy")).id
        async with watching(engine, axon_id) as watch:
            await engine.agents.add(slow_agent(on_busy))
            await watch.system("agent.running", "slow")
            slow = await publish(engine, axon_id, "slow")
            await watch.wait(lambda e: e.event_type == "started", "the slow turn to start")
            later = [await publish(engine, axon_id, f"later {i}") for i in range(3)]
            if on_busy != "interrupt":
                await publish(engine, axon_id, "stop")  # not special: just more waiting work
            handled = [
                await watch.wait(
                    lambda e, s=s: e.event_type == "handled" and body(e)["sequence"] == s,
                    f"#{s} handled",
                )
                for s in [slow, *later]
            ]
            turns = [body(e)["sequences"] for e in watch.of("slow", "turn.started")]

            assert turns[0] == [slow]
            first = body(handled[0])
            if on_busy == "interrupt":
                # the first later event interrupted the slow turn, then each had its own turn
                assert first["interrupted"] is True
                assert turns[1:4] == [[s] for s in later]
            else:
                assert first["interrupted"] is False
                if on_busy == "queue":
                    assert turns[1:4] == [[s] for s in later]
                else:  # merge: whatever waited during the slow turn comes as one turn
                    assert turns[1][: len(later)] == later
            # every event was handed over exactly once, in order
            delivered = [s for t in turns for s in t]
            assert delivered == sorted(set(delivered))


async def test_a_protocol_not_spoken_yet_is_refused_clearly(tmp_path: Path) -> None:
    async with Engine(tmp_path / "home", agent_runtime="process") as engine:
        await engine.create_axon("busy")
        spec = slow_agent("queue").model_copy(update={"protocol": "claude_json"})
        with pytest.raises(InvalidInput, match="not supported yet") as refused:
            await engine.agents.add(spec)
        assert refused.value.code == "unsupported_protocol"
        assert await engine.agents.list() == []
