"""`axons_tui.attention`: which Axons wait for a human, learnt from real events of real agents
on the process runtime (the sample ACP agent asking permission, the triage agent asking a
question and pausing), live and from history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine import Draft, Engine, Event
from engine.broker.permissions import DECISION
from engine.models import PublishResult

pytest.register_assert_rewrite("tests.agents_support", "tests.acp_support")

from axons_tui.attention import Attention, PermissionOption, asks  # noqa: E402
from tests.acp_support import acp_spec, permission_request, turn_end  # noqa: E402
from tests.agents_support import (  # noqa: E402
    REPORT,
    Watch,
    describe,
    publish,
    triage_spec,
    watching,
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(tmp_path / "home", agent_runtime="process") as eng:
        yield eng


async def acp_axon(engine: Engine, workdir: Path, name: str = "acp", **overrides: Any) -> str:
    """A new Axon with the sample ACP agent running on it."""
    axon_id = (await engine.create_axon(name)).id
    workdir.mkdir(parents=True, exist_ok=True)
    await engine.agents.add(acp_spec(name, "process", name=name, workdir=str(workdir), **overrides))
    return axon_id


def learnt(watch: Watch, upto: int | None = None) -> Attention:
    """An Attention fed the Axon's events so far (up to a sequence)."""
    attention = Attention()
    attention.feed(e for e in watch.events if upto is None or e.sequence <= upto)
    return attention


async def test_an_open_permission_request_waits_until_a_client_answers(
    engine: Engine, tmp_path: Path
) -> None:
    axon_id = await acp_axon(engine, tmp_path)
    async with watching(engine, axon_id) as watch:
        await watch.system("agent.running", "acp")
        sequence = await publish(engine, axon_id, "please do RISKY", "web")
        request = await permission_request(watch, "acp", sequence)
        await watch.system("agent.paused", "acp", after=request.sequence)

        attention = Attention()
        assert attention.feed(watch.events) == {axon_id}
        target = tmp_path / "approved.txt"
        assert attention.waiting(axon_id) == f"permission: Write {target}"
        [open_request] = attention.open_requests(axon_id)
        assert (open_request.sequence, open_request.agent) == (request.sequence, "acp")
        # the kind and raw input come from the agent's earlier tool_call update
        assert (open_request.tool_call_id, open_request.kind) == ("write-1", "edit")
        assert open_request.raw_input == {"path": str(target)}
        assert open_request.options == (
            PermissionOption("allow", "Allow once", "allow_once"),
            PermissionOption("reject", "Reject", "reject_once"),
        )
        assert attention.waiting_axons() == {axon_id: f"permission: Write {target}"}

        decided = await engine.agents.permit(axon_id, request.sequence, "allow", source="tui")
        end = await turn_end(watch, "acp", sequence)
        assert end.event_type == "turn.completed", describe(watch.events)
        assert attention.feed(e for e in watch.events if e.sequence <= decided.sequence) == {
            axon_id
        }
        assert attention.waiting(axon_id) is None
        assert attention.open_requests(axon_id) == []
        assert attention.feed(watch.events) == set()  # the rest changes nothing
        assert attention.waiting_axons() == {}
        # in any order (history read after live events): the answer still closes it
        backwards = Attention()
        backwards.feed(reversed(watch.events))
        assert backwards.waiting(axon_id) is None and backwards.open_requests(axon_id) == []


async def test_a_client_decision_with_an_option_not_offered_leaves_it_open(
    engine: Engine, tmp_path: Path
) -> None:
    axon_id = await acp_axon(engine, tmp_path)
    async with watching(engine, axon_id) as watch:
        sequence = await publish(engine, axon_id, "RISKY", "web")
        request = await permission_request(watch, "acp", sequence)
        # published as any client could (the broker ignores it, and so does Attention)
        await decide(engine, axon_id, request.sequence, {"option_id": "maybe"})
        bogus = await watch.wait(lambda e: e.event_type == DECISION, "the bogus decision")
        assert learnt(watch).waiting(axon_id) is not None, describe(watch.events)
        await engine.agents.permit(axon_id, request.sequence, None, source="tui")
        await watch.wait(lambda e: e.event_type == DECISION, "the answer", after=bogus.sequence)
        assert learnt(watch).waiting(axon_id) is None


async def test_a_stopped_agent_leaves_nothing_waiting(engine: Engine, tmp_path: Path) -> None:
    axon_id = await acp_axon(engine, tmp_path)
    async with watching(engine, axon_id) as watch:
        sequence = await publish(engine, axon_id, "RISKY", "web")
        request = await permission_request(watch, "acp", sequence)
        await watch.system("agent.paused", "acp", after=request.sequence)
        assert learnt(watch).waiting(axon_id) is not None
        await engine.agents.command(axon_id, "acp", "stop")
        await watch.system("agent.stopped", "acp", after=request.sequence)
        assert learnt(watch).waiting(axon_id) is None


async def test_a_question_then_a_pause_waits_until_a_human_replies(engine: Engine) -> None:
    axon_id = (await engine.create_axon("support")).id
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(triage_spec("support", "process", idle_pause_s=0.2))
        report = await publish(engine, axon_id, REPORT, "web")
        asked = await watch.wait(
            lambda e: e.origin == "AGENT_EVENT" and "Can someone confirm" in e.payload,
            "the triage agent's question",
            after=report,
        )
        attention = learnt(watch, upto=asked.sequence)
        assert attention.waiting(axon_id) is None  # asked, but still at work
        await watch.system("agent.paused", "triage", after=asked.sequence)
        attention.feed(watch.events)
        why = attention.waiting(axon_id)
        assert why is not None and why.startswith(f"asked: Can someone confirm TCK-{report}")
        assert attention.open_requests(axon_id) == []

        reply = await publish(engine, axon_id, "Confirmed: only exports above 100MB.", "slack")
        assert attention.feed(e for e in watch.events if e.sequence < reply) == set()
        await watch.wait(lambda e: e.sequence == reply, "the reply")
        assert attention.feed(watch.events) == {axon_id}
        assert attention.waiting(axon_id) is None
        # its next message states a next step, not a question: nothing waits after it pauses
        await watch.system("agent.paused", "triage", after=reply)
        assert learnt(watch).waiting(axon_id) is None


async def test_an_agent_is_known_by_its_source_whoever_published(engine: Engine) -> None:
    """An agent's message published through the API carries the publisher as its author;
    the engine's events name the agent by source, and so does Attention."""
    axon_id = (await engine.create_axon("relay")).id
    said = await engine.publish(
        axon_id, Draft.message("Deploy now?", source="bot", origin="AGENT_EVENT")
    )
    paused = Draft("agent.paused", '{"reason": "idle"}', "bot", "SYSTEM_EVENT", author="axons")
    await engine.publish(axon_id, paused, system=True)
    [message, _] = await engine.read_events(axon_id)
    assert message.sequence == said.sequence and message.author != "bot"
    attention = Attention()
    assert await attention.prime(engine, [axon_id]) == {axon_id}
    assert attention.waiting(axon_id) == "asked: Deploy now?"


async def test_an_acp_answer_streamed_in_chunks_can_ask(engine: Engine, tmp_path: Path) -> None:
    axon_id = await acp_axon(engine, tmp_path, idle_pause_s=0.2)
    async with watching(engine, axon_id) as watch:
        sequence = await publish(engine, axon_id, "which colour do you prefer?", "web")
        end = await turn_end(watch, "acp", sequence)
        await watch.system("agent.paused", "acp", after=end.sequence)
        # "You said: [web] which colour do you prefer?", streamed three words a chunk
        assert learnt(watch).waiting(axon_id) == (
            "asked: You said: [web] which colour do you prefer?"
        )


async def test_prime_learns_from_history_even_beyond_the_window(
    engine: Engine, tmp_path: Path
) -> None:
    axon_id = await acp_axon(engine, tmp_path)
    quiet_id = (await engine.create_axon("quiet")).id
    async with watching(engine, axon_id) as watch:
        sequence = await publish(engine, axon_id, "RISKY", "web")
        request = await permission_request(watch, "acp", sequence)
        await watch.system("agent.paused", "acp", after=request.sequence)
        for i in range(30):  # a chatty Axon: the request is now far back
            await engine.publish(axon_id, Draft("ci.run", orjson.dumps({"i": i}).decode(), "ci"))
        expected = f"permission: Write {tmp_path / 'approved.txt'}"

        attention = Attention()
        assert await attention.prime(engine, [axon_id, quiet_id], last=10) == {axon_id}
        assert attention.waiting(axon_id) == expected
        assert attention.waiting(quiet_id) is None
        # live events that overlap what was primed change nothing
        assert attention.feed(watch.events) == set()
        assert attention.waiting(axon_id) == expected
        # and history read after live events agrees with them
        later = Attention()
        later.feed(watch.events[-5:])
        await later.prime(engine, [axon_id])
        assert later.open_requests(axon_id) == attention.open_requests(axon_id)


class Reads:
    """A real backend, passed through, that remembers which Axons' events were read."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.axons: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    async def read_events(self, axon_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        self.axons.add(axon_id)
        return await self.engine.read_events(axon_id, after, limit)


async def test_prime_of_a_whole_home_reads_only_axons_whose_agents_rest(
    engine: Engine, tmp_path: Path
) -> None:
    waiting = await acp_axon(engine, tmp_path / "a")
    busy = await acp_axon(engine, tmp_path / "b", name="other")
    empty = (await engine.create_axon("empty")).id
    await publish(engine, empty, "nobody listens", "web")
    async with watching(engine, waiting) as watch, watching(engine, busy) as other:
        await other.system("agent.running", "other")
        sequence = await publish(engine, waiting, "RISKY", "web")
        request = await permission_request(watch, "acp", sequence)
        await watch.system("agent.paused", "acp", after=request.sequence)

    reads = Reads(engine)
    attention = Attention()
    assert await attention.prime(reads, last=50) == {waiting}  # type: ignore[arg-type]
    assert reads.axons == {waiting}
    assert attention.waiting_axons() == {
        waiting: f"permission: Write {tmp_path / 'a' / 'approved.txt'}"
    }


async def decide(
    engine: Engine, axon_id: str, request: int, answer: dict[str, object]
) -> PublishResult:
    body = orjson.dumps({"request_sequence": request, **answer}).decode()
    return await engine.publish(axon_id, Draft(DECISION, body, "slack"))


def test_a_question_is_a_message_that_ends_asking() -> None:
    assert asks("Does it reproduce, and under which conditions?")
    assert asks("Can you confirm (TCK-1?)")
    assert asks('Which one: "a" or "b?"  \n')
    assert not asks("Is it down? I will check the logs.")
    assert not asks("")


def test_events_it_cannot_read_are_ignored() -> None:
    attention = Attention()
    broken = [
        Event("a", 1, 0, "AGENT_EVENT", "acp", "permission.requested", "not json", "acp", None, ""),
        Event(
            "a", 2, 0, "USER_EVENT", "cli", DECISION, '{"request_sequence": "x"}', None, None, ""
        ),
        Event("a", 3, 0, "AGENT_EVENT", "acp", "session/update", "[1, 2]", "acp", None, ""),
        Event("a", 4, 0, "AGENT_EVENT", "bot", "message", '{"text": 5}', "bot", None, ""),
    ]
    assert attention.feed(broken) == set()
    assert attention.waiting("a") is None and attention.open_requests("a") == []
