"""Real ACP agents on the process runtime (contract §5.2): Claude Code (claude-agent-acp),
OpenCode and Gemini CLI, installed from npm at the versions their recipes pin, each run from
its own `agent.toml` against the scripted model server on 127.0.0.1 (no network), through
its recipe's Agent Gateway (§5.3): the agent holds a token, the model server sees the key.

They take seconds to start, so one agent process per recipe serves the module: the tests run
in order on it (a message, a tool allowed and one rejected by a second client over HTTP, an
interrupt, a model error, then hibernation and the wake)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from engine import Engine

pytest.register_assert_rewrite(
    "tests.agents_support", "tests.acp_support", "tests.acp_real_support"
)

from tests.acp_real_support import (  # noqa: E402
    HELLO,
    MODEL_KEY,
    RECIPES,
    RealAgent,
    http_api,
    model_server,
    recipe_spec,
)
from tests.agents_support import body, describe, watching  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

# A model that answers with an error makes OpenCode retry without end; the turn timeout
# cancels it, and only then does it report the error. Long enough for its slow first turn.
TURN_TIMEOUT_S = 45.0
HIBERNATE_AFTER_S = 2.0  # after a pause; the agents never pause by themselves here


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=RECIPES)
async def real(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RealAgent]:
    """One recipe's agent, running, on its own engine and Axon, with its own model server."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    workdir, tmpdir = root / "work", root / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    with model_server(root / "requests.jsonl") as model:
        spec = recipe_spec(
            name,
            "real",
            model.url,
            workdir,
            tmpdir=tmpdir,
            on_busy="interrupt",
            turn_timeout_s=TURN_TIMEOUT_S,
            idle_hibernate_s=HIBERNATE_AFTER_S,
        )
        async with Engine(root / "home", agent_runtime="process") as engine:
            axon_id = (await engine.create_axon("real")).id
            async with watching(engine, axon_id) as watch, http_api(engine) as api:
                await engine.agents.add(spec)
                await watch.system("agent.running", name, seconds=120)
                yield RealAgent(engine, axon_id, name, workdir, watch, model, api)


def chunks(real: RealAgent, after: int, before: int) -> list[str]:
    return [
        body(e)["update"]["content"]["text"]
        for e in real.updates(after, before)
        if body(e)["update"]["sessionUpdate"] == "agent_message_chunk"
    ]


async def test_a_message_streams_chunks_in_wire_order_then_end_turn(real: RealAgent) -> None:
    sequence = await real.say("Hello, who is there?")
    end = await real.completed(sequence)
    assert body(end)["stop_reason"] == "end_turn", end.payload
    started = real.watch.of(real.name, "turn.started", after=sequence)[0]
    assert chunks(real, started.sequence, end.sequence) == [
        "Hello ",
        "from the scripted ",
        "model.",
    ], describe(real.watch.events)
    turn = real.updates(started.sequence, end.sequence)
    assert [e.sequence for e in turn] == sorted(e.sequence for e in turn)
    # The model got the prompt with its sender, from the agent's main request (with tools).
    asked = real.model.asked("Hello, who is there?")
    assert asked and "[web] Hello, who is there?" in asked[0]["prompt"], asked
    await assert_through_the_gateway(real, started.sequence, end.sequence, asked[0])


async def assert_through_the_gateway(
    real: RealAgent, after: int, end: int, asked: dict[str, object]
) -> None:
    """The turn's model calls went through the Agent Gateway: the model server saw the
    engine's key, the agent held only its token, and each call is an event with its usage."""
    assert asked["key"] == MODEL_KEY
    spec = (await real.engine.agents.get(real.axon_id, real.name)).spec
    (prefix,) = spec.gateways
    calls = [
        e for e in real.watch.of(real.name, "gateway.request", after=after) if e.sequence < end
    ]
    # the event's path is below the gateway's base; the model server's, below its root
    main = [body(e) for e in calls if str(asked["path"]).endswith(body(e)["path"])]
    assert main, describe(real.watch.events)
    for call in main:
        assert call["provider"] == prefix and call["status"] == 200 and call["method"] == "POST"
        assert call["usage"]["input_tokens"] == 10 and call["usage"]["output_tokens"] >= 1
        assert call["bytes_in"] > 0 and call["bytes_out"] > 0
    logged = b"".join(e.json() for e in real.watch.events)
    assert MODEL_KEY.encode() not in logged


async def test_a_shell_tool_runs_after_a_decision_from_a_second_client(real: RealAgent) -> None:
    target = real.workdir / "allowed-by-web"
    sequence = await real.say(f"RUN_SHELL: touch {target.name}")
    request = await real.permission(sequence)
    assert target.name in orjson.dumps(body(request)["tool_call"]).decode(), request.payload
    paused = await real.watch.system("agent.paused", real.name, after=request.sequence)
    assert not target.exists(), "the tool ran before anyone allowed it"

    decision = await real.decide(request, "allow_once")
    end = await real.completed(sequence)
    assert body(end)["stop_reason"] == "end_turn", end.payload
    assert target.exists(), f"the allowed command left no file\n{describe(real.watch.events)}"
    resumed = await real.watch.system("agent.resumed", real.name, after=paused.sequence)
    assert body(resumed)["trigger_sequence"] == decision
    assert paused.sequence < decision < resumed.sequence < end.sequence
    assert "TOOL_DONE" in real.said(resumed.sequence, end.sequence)


async def test_a_rejected_tool_does_not_run(real: RealAgent) -> None:
    target = real.workdir / "rejected-by-web"
    sequence = await real.say(f"RUN_SHELL: touch {target.name}")
    request = await real.permission(sequence)
    await real.watch.system("agent.paused", real.name, after=request.sequence)
    decision = await real.decide(request, "reject_once")
    end = await real.completed(sequence)
    assert not target.exists(), "a rejected command ran"
    statuses = [
        body(e)["update"].get("status")
        for e in real.updates(decision, end.sequence)
        if body(e)["update"]["sessionUpdate"] == "tool_call_update"
    ]
    assert "completed" not in statuses, describe(real.watch.events)


async def test_interrupt_cancels_a_slow_turn_and_starts_the_next(real: RealAgent) -> None:
    slow = await real.say("SLOW_REPLY please")
    await real.watch.wait(
        lambda e: e.source == real.name and "slow 1 " in e.payload,
        "the first slow chunk",
        after=slow,
    )
    after = await real.say("Hello after the interrupt")
    cancelled = await real.turn(slow)
    assert body(cancelled).get("cancel_requested") is True, cancelled.payload
    assert "slow 40" not in real.said(slow, cancelled.sequence), "the slow turn ran to its end"
    end = await real.completed(after)
    started = real.watch.of(real.name, "turn.started", after=cancelled.sequence)[0]
    assert cancelled.sequence < started.sequence < end.sequence
    assert after in body(started)["sequences"]
    assert real.said(started.sequence, end.sequence).endswith(HELLO)


async def test_a_model_error_fails_the_turn_with_the_agents_error(real: RealAgent) -> None:
    sequence = await real.say("FAIL_HTTP_400 now")
    end = await real.turn(sequence)
    assert end.event_type == "turn.failed", end.payload
    assert "scripted failure 400" in end.payload, end.payload
    assert any(r["status"] == 400 for r in real.model.asked("FAIL_HTTP_400 now"))


async def test_hibernate_then_wake_continues_the_session_where_the_agent_can(
    real: RealAgent,
) -> None:
    """Claude and OpenCode load their session, and the model then gets the whole history.
    Gemini CLI 0.61 mostly fails `session/load` in a new process (it rewrites the chat file
    before reading it; under load it sometimes wins the race): then a new session starts
    and the log says why. Either way the log tells the truth about the history."""
    first = real.model.asked("Hello, who is there?")
    assert first, "the module's first test (a message) did not run before this one"
    before = body(real.watch.of(real.name, "acp.session")[-1])["session_id"]
    mark = real.watch.events[-1].sequence
    await real.engine.agents.command(real.axon_id, real.name, "pause")
    hibernated = await real.watch.system("agent.hibernated", real.name, after=mark)

    sequence = await real.say("Hello again after hibernating")
    end = await real.completed(sequence)
    resumed = await real.watch.system("agent.resumed", real.name, after=hibernated.sequence)
    assert body(resumed)["from"] == "hibernated"
    (session,) = real.watch.of(real.name, "acp.session", after=hibernated.sequence)
    record = body(session)
    assert hibernated.sequence < session.sequence < end.sequence
    assert real.said(session.sequence, end.sequence).endswith(HELLO)
    again = real.model.asked("Hello again after hibernating")[0]
    if real.name != "gemini":
        assert record["how"] == "loaded", record
    if record["how"] == "loaded":
        assert record["session_id"] == before, record
        assert again["messages"] > first[0]["messages"], "the history did not reach the model"
    else:
        assert record["session_id"] != before, record
        assert record["load_failed"]["session_id"] == before, record
        assert again["messages"] == first[0]["messages"], "a new session has no history"
