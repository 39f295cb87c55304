"""Claude Code (claude-agent-acp) calls an MCP tool through the engine's MCP gateway, as a
local process and in its hardened Docker container (network none: the gateway through the
relay and the agent's own socket): it gets the gateway in session/new, its model (the
scripted model server) sees only the allowed tool, the call reaches the tickets server on
the host with the credential the engine injected, and the Axon holds an `mcp.tool_call`
event. The credential is never in the agent's environment or files."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from engine import Engine
from engine.gateway.mcp import TOOL_CALL
from engine.models import AgentSpec
from engine.recipes import ensure_recipe_image
from tests.acp_real_support import RealAgent, http_api, model_server, recipe_spec
from tests.agents_support import body, describe, inspect, slug, watching
from tests.mcp_support import SECRET, calls, stdio_entry

pytest_plugins = ["tests.agents_support"]  # docker_client, agent_home

ASK = 'MCP_CALL: read_ticket {"ticket_id": "T-1"}'
CLAUDE_TOOL = "mcp__axons__tickets__read_ticket"  # Claude names MCP tools mcp__<server>__<tool>


def without_tool_search(spec: AgentSpec) -> AgentSpec:
    """Claude defers MCP tools behind its ToolSearch tool, which the scripted model does not
    drive: with tool search off they are offered to the model with the others."""
    return spec.model_copy(update={"env": {**spec.env, "ENABLE_TOOL_SEARCH": "false"}})


async def read_a_ticket(real: RealAgent, calls_file: Path) -> None:
    """Claude calls tickets' read_ticket through the gateway (allowed by a second client, as
    mode "default" asks first), and the model gets the result."""
    watch, model = real.watch, real.model
    session = body(watch.of("claude", "acp.session")[-1])
    assert session["mcp_gateway"]["name"] == "axons", session
    sequence = await real.say(ASK)
    first = await watch.wait(
        lambda e: (
            e.source == "claude"
            and e.event_type in ("permission.requested", "turn.completed", "turn.failed")
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
    assert (event["server"], event["tool"], event["status"]) == ("tickets", "read_ticket", "ok")
    assert calls(calls_file) == [{"tool": "read_ticket", "ticket_id": "T-1", "credential": True}]
    assert SECRET not in str([e.payload for e in watch.events])


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
        async with Engine(tmp_path / "home", agent_runtime="process") as engine:
            axon_id = (await engine.create_axon("mcp")).id
            async with watching(engine, axon_id) as watch, http_api(engine) as api:
                await engine.agents.add(without_tool_search(spec))
                await watch.system("agent.running", "claude", seconds=120)
                real = RealAgent(engine, axon_id, "claude", workdir, watch, model, api)
                await read_a_ticket(real, calls_file)
                name = slug(engine.agents.home_id, axon_id, "claude")
                pid = int((engine.home / "agents" / f"{name}.pid").read_text())
                assert SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()


async def test_claude_in_docker_reaches_the_gateway_through_its_relay(
    agent_home: Path,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", SECRET)
    image = ensure_recipe_image("claude")
    calls_file = tmp_path / "calls.jsonl"
    with model_server(tmp_path / "requests.jsonl") as model:
        spec = recipe_spec(
            "claude",
            "mcp",
            model.url,
            Path("/work"),
            runtime="docker",
            image=image,
            command=["claude-agent-acp"],
            mcp_servers=[stdio_entry(calls_file)],
        )
        assert spec.network == "none"
        async with Engine(agent_home, agent_runtime="docker") as engine:
            axon_id = (await engine.create_axon("mcp")).id
            async with watching(engine, axon_id) as watch, http_api(engine) as api:
                await engine.agents.add(without_tool_search(spec))
                await watch.system("agent.running", "claude", seconds=120)
                session = body(watch.of("claude", "acp.session")[-1])
                assert session["mcp_gateway"]["url"].startswith("http://127.0.0.1:")  # the relay
                real = RealAgent(engine, axon_id, "claude", Path("/work"), watch, model, api)
                await read_a_ticket(real, calls_file)
                info = inspect(docker_client, engine.agents.home_id, axon_id, "claude")
                assert info["HostConfig"]["NetworkMode"] == "none"
                assert SECRET not in "\n".join(info["Config"]["Env"])
                box = docker_client.containers.get(info["Name"].lstrip("/"))
                found = box.exec_run(["grep", "-rlsF", SECRET, "/home/agent", "/work", "/tmp"])
                assert found.exit_code == 1 and found.output == b"", found  # 1: no file holds it
