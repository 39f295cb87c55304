"""ACP agents on the process runtime (contract §5.2), with the deterministic sample agent
(`sample_agents/acp_agent`, on the real `agent-client-protocol` SDK) as a local process:
updates in wire order, turns framed, permissions answered by any client while the agent is
really stopped (SIGSTOP, read from /proc), cancel, crash, timeout, hibernation with
session/load, and the errors a client can make."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine import Draft, Engine
from engine.errors import Conflict, InvalidInput
from engine.models import AgentSpec

pytest.register_assert_rewrite("tests.agents_support", "tests.acp_support")

from tests.acp_support import (  # noqa: E402
    acp_spec,
    kinds,
    permission_request,
    said,
    turn_end,
    updates,
)
from tests.agents_support import Watch, body, describe, publish, slug, watching  # noqa: E402


@pytest.fixture
async def process_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(tmp_path / "home", agent_runtime="process") as eng:
        yield eng


def process_state(engine: Engine, axon_id: str, name: str) -> str:
    """The kernel's state letter for the agent's process (T: stopped by a signal)."""
    pid_file = engine.home / "agents" / f"{slug(engine.agents.home_id, axon_id, name)}.pid"
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def agent_home(engine: Engine, axon_id: str, name: str) -> Path:
    return engine.home / "agents" / f"{slug(engine.agents.home_id, axon_id, name)}.home"


@contextlib.asynccontextmanager
async def running_agent(
    engine: Engine, workdir: Path, **overrides: Any
) -> AsyncIterator[tuple[str, Watch, str]]:
    """A new Axon with the sample agent running on it: (axon id, its watch, session id)."""
    axon_id = (await engine.create_axon("acp")).id
    async with watching(engine, axon_id) as watch:
        spec = acp_spec("acp", "process", workdir=str(workdir), **overrides)
        yield axon_id, watch, await started(engine, watch, spec)


async def started(engine: Engine, watch: Watch, spec: AgentSpec) -> str:
    """Add the agent; its session id once it runs."""
    await engine.agents.add(spec)
    running = await watch.system("agent.running", spec.name)
    session = watch.of(spec.name, "acp.session")
    assert session and session[-1].sequence < running.sequence, describe(watch.events)
    return str(body(session[-1])["session_id"])


async def test_a_message_streams_as_updates_in_wire_order(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    axon_id = (await engine.create_axon("acp")).id
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("x")
    spec = acp_spec(
        "acp",
        "process",
        workdir=str(work),
        env={"GREETING": "hi"},
        mcp_servers=[{"name": "files", "command": "/bin/true", "args": [], "env": []}],
    )
    async with watching(engine, axon_id) as watch:
        session = await started(engine, watch, spec)
        sequence = await publish(engine, axon_id, "SLOW TOOL FUTURE MCP ENV GREETING", "web")
        end = await turn_end(watch, "acp", sequence)
        assert end.event_type == "turn.completed", describe(watch.events)
        turn = updates(watch, "acp", sequence)
        assert turn and all(e.sequence < end.sequence for e in turn), describe(watch.events)
        assert all(body(e)["sessionId"] == session for e in turn)
        # the plan, the tool call's three states, a kind no SDK models, then the answer
        assert kinds(turn)[:5] == [
            "plan",
            "future_kind",
            "tool_call",
            "tool_call_update",
            "tool_call_update",
        ]
        assert body(turn[4])["update"]["rawOutput"] == ["notes.txt"]
        text = said(turn)
        counted = " ".join(str(i) for i in range(40)) + " "
        assert text.startswith(counted), text  # 40 chunks, in the order they were sent
        assert "MCP servers: files" in text
        assert "GREETING=hi" in text  # the spec's env reaches the agent
        assert text.endswith("You said: [web] SLOW TOOL FUTURE MCP ENV GREETING")
        result = body(end)
        assert result["stop_reason"] == "end_turn"
        assert result["usage"] == {"inputTokens": 7, "outputTokens": 7, "totalTokens": 14}
        started_turn = watch.of("acp", "turn.started", after=sequence)[0]
        assert sequence < started_turn.sequence < turn[0].sequence
        assert await engine.agent_cursor(axon_id, "acp") == sequence
        # the agent's stderr became agent.log events; its HOME is its own
        log = await watch.system("agent.log", "acp", where=lambda b: "prompt in" in str(b))
        assert log.sequence > 0
        assert (agent_home(engine, axon_id, "acp") / "sessions" / f"{session}.json").exists()


async def test_secrets_oversized_updates_and_an_engine_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACP_TEST_SECRET", "s3cret")
    home = tmp_path / "home"
    spec = acp_spec("acp", "process", workdir=str(tmp_path), secrets=["ACP_TEST_SECRET"])
    async with Engine(home, agent_runtime="process") as engine:
        axon_id = (await engine.create_axon("acp")).id
        async with watching(engine, axon_id) as watch:
            session = await started(engine, watch, spec)
            sequence = await publish(engine, axon_id, "BIG ENV ACP_TEST_SECRET", "web")
            end = await turn_end(watch, "acp", sequence)
            assert end.event_type == "turn.completed", describe(watch.events)
            turn = updates(watch, "acp", sequence, end.sequence)
            big = [e for e in turn if "truncated" in body(e)]
            assert [body(e)["update"] for e in big] == [{"sessionUpdate": "agent_message_chunk"}]
            assert body(big[0])["truncated"]["bytes"] > 2 << 20
            assert "ACP_TEST_SECRET=s3cret" in said([e for e in turn if e not in big])
    # a new engine on the same home: the agent starts again and continues its session
    async with (
        Engine(home, agent_runtime="process") as engine,
        watching(engine, axon_id) as watch,
    ):
        later = await publish(engine, axon_id, "after the restart", "cli")
        await watch.turn_completed("acp", later)
        sessions = [body(e) for e in watch.of("acp", "acp.session")]
        assert [s["how"] for s in sessions] == ["new", "loaded"]
        assert sessions[-1]["session_id"] == session


async def test_the_client_offers_no_fs_or_terminal_and_refuses_their_calls(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path) as (axon_id, watch, _session):
        sequence = await publish(engine, axon_id, "CLIENT", "web")
        end = await turn_end(watch, "acp", sequence)
        assert end.event_type == "turn.completed", describe(watch.events)
        assert said(updates(watch, "acp", sequence, end.sequence)).startswith(
            "readTextFile=False writeTextFile=False terminal=False "
            "fs/read_text_file=-32601 fs/write_text_file=-32601 terminal/create=-32601 "
            "_x/probe=-32601"
        )


async def test_permission_pauses_the_agent_until_a_client_decides(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path) as (axon_id, watch, _session):
        sequence = await publish(engine, axon_id, "please do RISKY", "web")
        request = await permission_request(watch, "acp", sequence)
        asked = body(request)
        assert asked["tool_call"]["toolCallId"] == "write-1"
        assert [o["optionId"] for o in asked["options"]] == ["allow", "reject"]
        paused = await watch.system("agent.paused", "acp", after=request.sequence)
        assert f"permission #{request.sequence}" in body(paused)["reason"]
        assert process_state(engine, axon_id, "acp") == "T"
        view = await engine.agents.get(axon_id, "acp")
        assert (
            view.state == "paused"
            and view.detail["waiting_for"] == f"permission #{request.sequence}"
        )
        assert not (tmp_path / "approved.txt").exists()

        # a bad option is refused with the choices; nothing is published
        with pytest.raises(InvalidInput, match="allow, reject"):
            await engine.agents.permit(axon_id, request.sequence, "maybe")
        # any client's permission.decision answers it: here a plain publish
        decision = await engine.publish(
            axon_id,
            Draft(
                "permission.decision",
                orjson.dumps({"request_sequence": request.sequence, "option_id": "allow"}).decode(),
                "slack",
            ),
        )
        resumed = await watch.system("agent.resumed", "acp", after=decision.sequence)
        assert body(resumed)["trigger_sequence"] == decision.sequence
        end = await turn_end(watch, "acp", sequence)
        assert end.event_type == "turn.completed", describe(watch.events)
        after = updates(watch, "acp", resumed.sequence, end.sequence)
        assert after and after[0].sequence > resumed.sequence  # the wake commits first
        assert body(after[0])["update"] == {
            "toolCallId": "write-1",
            "status": "completed",
            "sessionUpdate": "tool_call_update",
        }
        assert (tmp_path / "approved.txt").read_text() == "approved\n"
        assert process_state(engine, axon_id, "acp") != "T"
        # answered: a second decision is a conflict, as is one for an event that asks nothing
        with pytest.raises(Conflict, match="already answered") as again:
            await engine.agents.permit(axon_id, request.sequence, "allow")
        assert again.value.status == 409
        with pytest.raises(Conflict, match="not a permission request"):
            await engine.agents.permit(axon_id, sequence, "allow")
        with pytest.raises(Conflict, match="not a permission request"):
            await engine.agents.permit(axon_id, 10_000, "allow")


async def test_a_rejected_or_cancelled_request_does_nothing(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path) as (axon_id, watch, _session):
        for answer in ("reject", None):
            sequence = await publish(engine, axon_id, "RISKY again", "web")
            request = await permission_request(watch, "acp", sequence)
            await watch.system("agent.paused", "acp", after=request.sequence)
            decided = await engine.agents.permit(axon_id, request.sequence, answer, source="tui")
            end = await turn_end(watch, "acp", sequence)
            assert end.event_type == "turn.completed", describe(watch.events)
            decision = next(e for e in watch.events if e.sequence == decided.sequence)
            assert (decision.source, decision.event_type) == ("tui", "permission.decision")
            expected = {"cancelled": True} if answer is None else {"option_id": answer}
            assert body(decision) == {"request_sequence": request.sequence, **expected}
            turn = updates(watch, "acp", decided.sequence, end.sequence)
            assert body(turn[0])["update"]["status"] == "failed"
            assert "Not done: permission refused." in said(turn)
        assert not (tmp_path / "approved.txt").exists()


async def test_mode_yolo_never_asks(process_engine: Engine, tmp_path: Path) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path, mode="yolo") as (axon_id, watch, _session):
        assert body(watch.of("acp", "acp.session")[-1])["mode"] == "yolo"
        sequence = await publish(engine, axon_id, "RISKY", "web")
        end = await turn_end(watch, "acp", sequence)
        assert end.event_type == "turn.completed"
        assert not [e for e in watch.events if e.event_type == "permission.requested"]
        assert (tmp_path / "approved.txt").exists()


async def test_interrupt_cancels_the_turn_and_its_pending_request(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path, on_busy="interrupt") as (axon_id, watch, _session):
        slow = await publish(engine, axon_id, "SLOW", "web")
        await watch.wait(
            lambda e: e.event_type == "session/update" and "agent_message_chunk" in e.payload,
            "the first chunk",
            after=slow,
        )
        later = await publish(engine, axon_id, "hello", "web")
        end = await turn_end(watch, "acp", slow)
        assert end.event_type == "turn.completed", describe(watch.events)
        assert body(end)["stop_reason"] == "cancelled" and body(end)["cancel_requested"]
        assert len(said(updates(watch, "acp", slow, end.sequence)).split()) < 40
        nxt = await turn_end(watch, "acp", later)
        assert nxt.event_type == "turn.completed"
        assert said(updates(watch, "acp", end.sequence, nxt.sequence)) == "You said: [web] hello"

        # a request waiting for a human is answered cancelled by the interrupt
        risky = await publish(engine, axon_id, "RISKY", "web")
        request = await permission_request(watch, "acp", risky)
        await watch.system("agent.paused", "acp", after=request.sequence)
        third = await publish(engine, axon_id, "and now this", "web")
        end = await turn_end(watch, "acp", risky)
        assert body(end)["stop_reason"] == "cancelled", describe(watch.events)
        cancelled = [
            body(e)
            for e in watch.of("acp", "permission.decision", after=request.sequence)
            if body(e)["request_sequence"] == request.sequence
        ]
        assert cancelled and cancelled[0]["cancelled"] is True
        assert cancelled[0]["reason"] == f"interrupted by #{third}"
        await watch.system("agent.resumed", "acp", after=request.sequence)
        assert (await turn_end(watch, "acp", third)).event_type == "turn.completed"
        with pytest.raises(Conflict):
            await engine.agents.permit(axon_id, request.sequence, "allow")


async def test_merge_puts_every_waiting_message_in_one_prompt(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path, on_busy="merge") as (axon_id, watch, _session):
        slow = await publish(engine, axon_id, "SLOW", "web")
        await watch.system("turn.started", "acp", after=slow)
        first = await publish(engine, axon_id, "one", "web")
        second = await publish(engine, axon_id, "two", "slack")
        await watch.turn_completed("acp", slow)
        merged = await watch.turn_completed("acp", first)
        started = watch.of("acp", "turn.started", after=second)
        assert [body(e)["sequences"] for e in started] == [[first, second]]
        assert said(updates(watch, "acp", started[0].sequence, merged.sequence)) == (
            "You said: [web] one\n\n[slack] two"
        )


async def test_agent_errors_and_turn_timeouts_fail_the_turn(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path, turn_timeout_s=1.0) as (axon_id, watch, _session):
        failing = await publish(engine, axon_id, "FAIL please", "web")
        end = await turn_end(watch, "acp", failing)
        assert end.event_type == "turn.failed"
        assert body(end)["error"] == {
            "code": -32000,
            "message": "the model failed",
            "data": {"http_status": 400},
        }
        assert "the model failed" in body(end)["reason"]
        assert await engine.agent_cursor(axon_id, "acp") == failing  # answered: not again

        hanging = await publish(engine, axon_id, "HANG", "web")
        end = await turn_end(watch, "acp", hanging)
        assert end.event_type == "turn.failed", describe(watch.events)
        assert body(end)["reason"] == "timeout"
        assert body(end)["stop_reason"] == "cancelled"  # it was cancelled, and it ended
        after = await publish(engine, axon_id, "still there?", "web")
        assert (await turn_end(watch, "acp", after)).event_type == "turn.completed"


async def test_a_crash_mid_turn_fails_the_turn_and_the_message_comes_again(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path) as (axon_id, watch, session):
        crash = await publish(engine, axon_id, "CRASH now", "web")
        failed = await turn_end(watch, "acp", crash)
        assert failed.event_type == "turn.failed" and body(failed)["reason"] == "exit"
        assert said(updates(watch, "acp", crash, failed.sequence)) == "About to "
        agent_failed = await watch.system("agent.failed", "acp", after=crash)
        assert any("crashing mid-turn" in line for line in body(agent_failed)["stderr"])
        restarted = await watch.system("agent.running", "acp", after=agent_failed.sequence)
        # the restarted agent continues its session, and gets the message again
        loaded = watch.of("acp", "acp.session", after=agent_failed.sequence)
        assert body(loaded[0])["how"] == "loaded" and body(loaded[0])["session_id"] == session
        again = await watch.wait(
            lambda e: e.event_type == "turn.completed" and crash in body(e)["sequences"],
            "the re-delivered turn",
            after=restarted.sequence,
        )
        assert said(updates(watch, "acp", restarted.sequence, again.sequence)) == (
            "You said: [web] CRASH now"
        )


async def test_hibernation_then_session_load_or_a_new_session(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    axon_id = (await engine.create_axon("acp")).id
    async with watching(engine, axon_id) as watch:
        spec = acp_spec(
            "acp", "process", workdir=str(tmp_path), idle_pause_s=0.2, idle_hibernate_s=0.2
        )
        session = await started(engine, watch, spec)
        first = await publish(engine, axon_id, "remember me", "web")
        await watch.turn_completed("acp", first)
        slept = await watch.system("agent.hibernated", "acp", after=first)
        second = await publish(engine, axon_id, "who am I?", "slack")
        await watch.turn_completed("acp", second)
        loaded = body(watch.of("acp", "acp.session", after=slept.sequence)[0])
        # the replayed history (2 messages) is counted, not recorded twice
        assert loaded == {"session_id": session, "how": "loaded", "replayed": 2}
        recorded = [e for e in watch.events if e.origin != "SYSTEM_EVENT"]
        assert len([e for e in recorded if "remember me" in e.payload]) == 2  # msg + echo

        # the agent lost its session (its HOME emptied): a new session, and the log says so
        slept = await watch.system("agent.hibernated", "acp", after=second)
        shutil.rmtree(agent_home(engine, axon_id, "acp") / "sessions")
        third = await publish(engine, axon_id, "again", "web")
        await watch.turn_completed("acp", third)
        fresh = body(watch.of("acp", "acp.session", after=slept.sequence)[0])
        assert fresh["how"] == "new" and fresh["session_id"] != session
        assert fresh["load_failed"]["session_id"] == session
        assert fresh["load_failed"]["error"]["code"] == -32602


async def test_stop_answers_a_pending_request_cancelled(
    process_engine: Engine, tmp_path: Path
) -> None:
    engine = process_engine
    async with running_agent(engine, tmp_path) as (axon_id, watch, _session):
        sequence = await publish(engine, axon_id, "RISKY", "web")
        request = await permission_request(watch, "acp", sequence)
        await watch.system("agent.paused", "acp", after=request.sequence)
        await engine.agents.command(axon_id, "acp", "stop")
        stopped = await watch.system("agent.stopped", "acp", after=request.sequence)
        answer = [
            e for e in watch.of("acp", "permission.decision") if e.sequence < stopped.sequence
        ]
        assert [body(e) for e in answer] == [
            {
                "request_sequence": request.sequence,
                "cancelled": True,
                "reason": "the agent was stopped",
            }
        ]
        with pytest.raises(Conflict, match="already answered"):
            await engine.agents.permit(axon_id, request.sequence, "allow")


def test_bad_acp_specs_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"mcp_servers\[0\] is not an MCP server"):
        acp_spec("acp", "process", mcp_servers=[{"name": "x"}])
    with pytest.raises(ValueError, match="mode"):
        acp_spec("acp", "process", mode="")
