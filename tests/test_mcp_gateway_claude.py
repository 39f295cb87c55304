"""Claude Code (claude-agent-acp from npm, the process runtime) calls an MCP tool through the
engine's MCP gateway: it gets the gateway in session/new, its model (the scripted model
server) sees only the allowed tool, the call reaches the tickets server with the credential
the engine injected, and the Axon holds an `mcp.tool_call` event. The credential is never in
the agent's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Engine
from engine.gateway.mcp import TOOL_CALL
from tests.acp_real_support import RealAgent, http_api, model_server, recipe_spec
from tests.agents_support import body, describe, slug, watching
from tests.mcp_support import SECRET, calls, stdio_entry

ASK = 'MCP_CALL: read_ticket {"ticket_id": "T-1"}'
CLAUDE_TOOL = "mcp__axons__tickets__read_ticket"  # Claude names MCP tools mcp__<server>__<tool>


async def test_claude_calls_an_allowed_tool_through_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", SECRET)
    workdir, tmpdir, calls_file = tmp_path / "work", tmp_path / "tmp", tmp_path / "calls.jsonl"
    workdir.mkdir()
    tmpdir.mkdir()
    with model_server(tmp_path / "requests.jsonl") as model:
        spec = recipe_spec(
            "claude",
            "mcp",
            model.url,
            workdir,
            tmpdir=tmpdir,
            mcp_servers=[stdio_entry(calls_file)],
        )
        # Claude defers MCP tools behind its ToolSearch tool, which the scripted model does
        # not drive: with tool search off they are offered to the model with the others.
        spec = spec.model_copy(update={"env": {**spec.env, "ENABLE_TOOL_SEARCH": "false"}})
        async with Engine(tmp_path / "home", agent_runtime="process") as engine:
            axon_id = (await engine.create_axon("mcp")).id
            async with watching(engine, axon_id) as watch, http_api(engine) as api:
                await engine.agents.add(spec)
                await watch.system("agent.running", "claude", seconds=120)
                real = RealAgent(engine, axon_id, "claude", workdir, watch, model, api)
                session = body(watch.of("claude", "acp.session")[-1])
                assert session["mcp_gateway"]["name"] == "axons", session

                sequence = await real.say(ASK)
                # In mode "default" Claude asks before it runs an MCP tool: a client allows it.
                first = await watch.wait(
                    lambda e: (
                        e.source == "claude"
                        and e.event_type
                        in ("permission.requested", "turn.completed", "turn.failed")
                    ),
                    "a permission request or the turn's end",
                    after=sequence,
                )
                if first.event_type == "permission.requested":
                    assert CLAUDE_TOOL in first.payload, first.payload
                    await real.decide(first, "allow_once")
                end = await real.completed(sequence)

                asked = model.asked(ASK)
                assert asked, describe(watch.events)
                offered = asked[0]["tools"]
                assert CLAUDE_TOOL in offered, offered
                assert not any("delete_ticket" in tool for tool in offered), offered
                said = real.said(sequence, end.sequence)
                # the tool's result came back to the model (FastMCP sends it structured)
                assert said.startswith("TOOL_DONE: "), describe(watch.events)
                assert "T-1: the printer is on fire" in said, describe(watch.events)

                (event,) = [body(e) for e in watch.of("claude", TOOL_CALL)]
                assert (event["server"], event["tool"], event["status"]) == (
                    "tickets",
                    "read_ticket",
                    "ok",
                )
                assert calls(calls_file) == [
                    {"tool": "read_ticket", "ticket_id": "T-1", "credential": True}
                ]
                pid_file = (
                    engine.home / "agents" / f"{slug(engine.agents.home_id, axon_id, 'claude')}.pid"
                )
                environ = Path(f"/proc/{int(pid_file.read_text())}/environ").read_bytes()
                assert SECRET.encode() not in environ
                assert SECRET not in str([e.payload for e in watch.events])
