"""The MCP gateway (engine/gateway/mcp.py) with real parts: an upstream MCP server built with
the `mcp` SDK (tests/agents/tickets_mcp.py) over stdio and over HTTP, the gateway's endpoint
served over real HTTP, a real `mcp` SDK client in front, events in a real Axon.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from engine import Engine
from engine.errors import Forbidden
from engine.gateway import GatewayServer
from engine.gateway.mcp import MOUNT, TOOL_CALL, McpGateways
from engine.models import AgentSpec, McpUpstream, split_mcp_servers
from engine.policy import AgentPolicy, check_remote_spec
from engine.runtime.base import AgentKey
from tests.acp_real_support import served
from tests.acp_support import acp_spec, said, turn_end, updates
from tests.agents import tickets_mcp
from tests.agents_support import body, describe, publish, watching
from tests.mcp_support import SECRET, calls, gone, stdio_entry


@contextlib.asynccontextmanager
async def client(url: str, token: str) -> AsyncIterator[ClientSession]:
    """A real `mcp` SDK client of the gateway, as an agent holds one."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def tool_calls(engine: Engine, axon_id: str) -> list[dict[str, Any]]:
    result = await engine.query(
        axon_id,
        "SELECT payload, origin, source FROM axon_events WHERE event_type = ? ORDER BY sequence",
        [TOOL_CALL],
    )
    return [{**orjson.loads(p), "_origin": o, "_source": s} for p, o, s in result.rows]


@pytest.fixture(autouse=True)
def tickets_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The upstream's credential, in the engine's environment only."""
    monkeypatch.setenv("TICKETS_TOKEN", SECRET)


@contextlib.asynccontextmanager
async def mounted(
    engine: Engine, logs: list[str] | None = None
) -> AsyncIterator[tuple[GatewayServer, McpGateways]]:
    """The engine's gateway server with the MCP gateway mounted, as the supervisor has them."""
    server = GatewayServer(
        engine.home / "gateway", lambda axon, draft: engine.publish(axon, draft, system=True)
    )
    mcp = McpGateways(server, lambda key: (logs if logs is not None else []).append)
    server.mount(MOUNT, mcp)
    try:
        yield server, mcp
    finally:
        await mcp.close_all()
        await server.close()


async def admitted(
    server: GatewayServer, mcp: McpGateways, axon_id: str, entries: list[dict[str, Any]]
) -> tuple[AgentKey, AgentSpec, str, str]:
    """The ACP agent `triage` admitted as a process agent: its key, spec, MCP URL and token."""
    spec = AgentSpec(
        name="triage", axon=axon_id, command=["true"], protocol="acp", mcp_servers=entries
    )
    key = AgentKey("home", axon_id, "triage")
    await server.admit(key, spec, docker=False)
    entry = mcp.entry(key, spec)
    assert entry is not None
    assert entry["name"] == "axons" and entry["type"] == "http"
    return key, spec, entry["url"], entry["headers"][0]["value"].removeprefix("Bearer ")


@contextlib.asynccontextmanager
async def gateway(
    engine: Engine, axon_id: str, entries: list[dict[str, Any]], logs: list[str]
) -> AsyncIterator[tuple[str, str]]:
    """The agent `triage`'s MCP endpoint: yields its URL and its token."""
    async with mounted(engine, logs) as (server, mcp):
        _key, _spec, url, token = await admitted(server, mcp, axon_id, entries)
        yield url, token


async def test_stdio_upstream_lists_only_allowed_tools_and_refuses_the_rest(
    engine: Engine, axon_id: str, tmp_path: Path
) -> None:
    calls_file = tmp_path / "calls.jsonl"
    logs: list[str] = []
    entries = [stdio_entry(calls_file)]
    async with (
        gateway(engine, axon_id, entries, logs) as (url, token),
        client(url, token) as session,
    ):
        listed = await session.list_tools()
        assert [t.name for t in listed.tools] == ["tickets__read_ticket"]
        assert listed.tools[0].inputSchema["properties"]["ticket_id"]["type"] == "string"

        result = await session.call_tool("tickets__read_ticket", {"ticket_id": "T-1"})
        assert not result.isError, result
        assert result.content[0].text == "T-1: the printer is on fire"  # type: ignore[union-attr]

        with pytest.raises(McpError, match="'tickets__delete_ticket' is not allowed") as e:
            await session.call_tool("tickets__delete_ticket", {"ticket_id": "T-1"})
        assert e.value.error.code == -32602  # invalid params: MCP's "unknown tool"
        with pytest.raises(McpError, match="not allowed"):
            await session.call_tool("elsewhere__read_ticket", {"ticket_id": "T-1"})

    # The upstream saw the read, with the credential the engine injected, and no delete.
    assert calls(calls_file) == [{"tool": "read_ticket", "ticket_id": "T-1", "credential": True}]
    events = await tool_calls(engine, axon_id)
    assert [(e["server"], e["tool"], e["status"]) for e in events] == [
        ("tickets", "read_ticket", "ok"),
        ("tickets", "delete_ticket", "refused"),
        (None, "read_ticket", "refused"),
    ]
    assert all(e["_origin"] == "SYSTEM_EVENT" and e["_source"] == "triage" for e in events)
    assert events[0]["duration_ms"] > 0
    assert "arguments" not in events[0]  # log_arguments is false by default
    assert "not allowed" in events[1]["error"]
    assert SECRET not in str(events)
    assert "mcp tickets: tickets: read_ticket T-1" in logs  # its stderr, in the agent's log


async def test_http_upstream_gets_its_credential_in_a_header(
    engine: Engine, axon_id: str, tmp_path: Path
) -> None:
    calls_file = tmp_path / "calls.jsonl"
    logs: list[str] = []
    async with served(tickets_mcp.app(SECRET, str(calls_file))) as upstream:
        entry = {
            "name": "tickets",
            "url": f"{upstream}/mcp",
            "headers": {"Authorization": "Bearer ${TICKETS_TOKEN}"},
            "secrets": ["TICKETS_TOKEN"],
            "allowed_tools": ["read_*"],
            "log_arguments": True,
        }
        async with (
            gateway(engine, axon_id, [entry], logs) as (url, token),
            client(url, token) as session,
        ):
            listed = await session.list_tools()
            assert [t.name for t in listed.tools] == ["tickets__read_ticket"]
            result = await session.call_tool("tickets__read_ticket", {"ticket_id": "T-2"})
            assert not result.isError, result
            assert "coffee machine" in result.content[0].text  # type: ignore[union-attr]
            with pytest.raises(McpError, match="not allowed"):
                await session.call_tool("tickets__delete_ticket", {"ticket_id": "T-2"})

    assert calls(calls_file) == [{"tool": "read_ticket", "ticket_id": "T-2", "credential": True}]
    events = await tool_calls(engine, axon_id)
    assert [(e["tool"], e["status"]) for e in events] == [
        ("read_ticket", "ok"),
        ("delete_ticket", "refused"),
    ]
    assert events[0]["arguments"] == {"ticket_id": "T-2"}  # log_arguments = true


async def test_an_upstream_error_is_an_error_event(
    engine: Engine, axon_id: str, tmp_path: Path
) -> None:
    """The upstream refuses a wrong credential: the agent gets the tool's error, the event
    says error; an upstream that cannot start hides its tools and says why in the log."""
    calls_file = tmp_path / "calls.jsonl"
    env = {"TICKETS_EXPECT": "another", "TICKETS_CALLS": str(calls_file)}
    wrong = stdio_entry(calls_file, env=env)
    broken = {"name": "broken", "command": str(tmp_path / "missing"), "allowed_tools": ["*"]}
    logs: list[str] = []
    async with (
        gateway(engine, axon_id, [wrong, broken], logs) as (url, token),
        client(url, token) as session,
    ):
        listed = await session.list_tools()
        assert [t.name for t in listed.tools] == ["tickets__read_ticket"]
        result = await session.call_tool("tickets__read_ticket", {"ticket_id": "T-1"})
        assert result.isError
        assert "unauthorized" in result.content[0].text  # type: ignore[union-attr]
        result = await session.call_tool("broken__anything", {})
        assert result.isError
        assert "MCP server broken" in result.content[0].text  # type: ignore[union-attr]
    events = await tool_calls(engine, axon_id)
    assert [(e["server"], e["status"]) for e in events] == [
        ("tickets", "error"),
        ("broken", "error"),
    ]
    assert "unauthorized" in events[0]["error"]
    assert any("MCP server broken: tools not listed" in line for line in logs)


async def test_a_wrong_or_missing_token_gets_401(
    engine: Engine, axon_id: str, tmp_path: Path
) -> None:
    logs: list[str] = []
    entries = [stdio_entry(tmp_path / "calls.jsonl")]
    async with gateway(engine, axon_id, entries, logs) as (url, token):
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        accept = {"Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient() as http:
            for headers in (
                {},
                {"Authorization": "Bearer axmcp_wrong"},
                {"Authorization": f"Basic {token}"},
                {"Authorization": f"Bearer {token}x"},
            ):
                answer = await http.post(url, json=body, headers={**accept, **headers})
                assert answer.status_code == 401, headers
                assert "token" in answer.json()["error"]["message"]
        with pytest.raises(Exception):  # noqa: B017 - the SDK client fails on the 401
            async with client(url, "axmcp_wrong") as session:
                await session.list_tools()
    assert await tool_calls(engine, axon_id) == []


def test_spec_entries_through_the_gateway() -> None:
    plain = {"name": "files", "command": "/bin/true", "args": [], "env": []}
    through = {"name": "tickets", "url": "https://t.example/mcp", "allowed_tools": ["read_*"]}
    acp_plain, upstreams = split_mcp_servers([plain, through])
    assert [s.name for s in acp_plain] == ["files"]
    assert [(u.name, u.type) for u in upstreams] == [("tickets", "http")]
    spec = AgentSpec(
        name="a", axon="x", command=["true"], protocol="acp", mcp_servers=[stdio_entry(Path("c"))]
    )
    assert spec.all_secrets() == ["TICKETS_TOKEN"]
    upstream = McpUpstream.model_validate(stdio_entry(Path("c")))
    resolved = {p.name: p.value for p in upstream.resolve({"TICKETS_TOKEN": "s"})}
    assert resolved["TICKETS_TOKEN"] == "s"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "t", "command": "x", "secrets": ["A"]}, "has secrets but no allowed_tools"),
        ({"name": "t", "allowed_tools": ["*"]}, "give either command .* or url"),
        (
            {"name": "t", "url": "http://x", "allowed_tools": ["*"], "secrets": ["A"]},
            r"secret A is not used: .*Bearer \$\{A\}",
        ),
        (
            {"name": "t", "command": "x", "allowed_tools": ["*"], "env": {"K": "${B}"}},
            r"\$\{B\} is used but not listed in secrets",
        ),
        ({"name": "t", "command": "x", "allowed_tools": []}, "allowed_tools: List should have"),
        ({"name": "a__b", "command": "x", "allowed_tools": ["*"]}, "name: String should match"),
        (
            {"name": "t", "type": "sse", "url": "http://x", "allowed_tools": ["*"]},
            "type: Input should be 'stdio' or 'http'",
        ),
        ({"name": "t", "url": "ftp://x", "allowed_tools": ["*"]}, "url: String should match"),
        (
            {"name": "t", "url": "http://x", "allowed_tools": ["*"], "env": {"A": "b"}},
            "args and env are for stdio servers",
        ),
    ],
)
def test_bad_gateway_entries_say_what_to_do(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"mcp_servers\[0\] .*" + message):
        split_mcp_servers([entry])


def test_gateway_entries_are_for_acp_agents() -> None:
    entry = {"name": "t", "command": "x", "allowed_tools": ["*"]}
    with pytest.raises(ValueError, match=r'mcp_servers t: .*give protocol = "acp"'):
        AgentSpec(name="a", axon="x", command=["true"], mcp_servers=[entry])


def test_two_gateway_entries_with_one_name_are_refused() -> None:
    entry = {"name": "t", "command": "x", "allowed_tools": ["*"]}
    with pytest.raises(ValueError, match="two gateway entries are named 't'"):
        split_mcp_servers([entry, entry])


async def test_a_revoked_token_gets_401_and_the_upstream_ends(
    engine: Engine, axon_id: str, tmp_path: Path
) -> None:
    """What the supervisor does when the agent stops: revoke its token, close its MCP
    gateway; the stdio upstream's process ends and the old token is refused."""
    calls_file = tmp_path / "calls.jsonl"
    async with mounted(engine) as (server, mcp):
        key, spec, url, token = await admitted(server, mcp, axon_id, [stdio_entry(calls_file)])
        async with client(url, token) as session:
            await session.list_tools()
        pid = int(calls_file.with_suffix(".pid").read_text())
        assert not gone(pid)
        server.revoke(key)
        await mcp.close(key)
        assert gone(pid)
        assert mcp.entry(key, spec) is None  # no token: nothing to hand an agent
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 401


async def test_an_agent_with_no_upstreams_gets_404(engine: Engine, axon_id: str) -> None:
    async with mounted(engine) as (server, mcp):
        spec = AgentSpec(name="plain", axon=axon_id, command=["true"], protocol="acp")
        key = AgentKey("home", axon_id, "plain")
        admission = await server.admit(key, spec, docker=False)
        assert mcp.entry(key, spec) is None
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{admission.base_url}/{MOUNT}/",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {admission.token}"},
            )
        assert answer.status_code == 404
        assert "allowed_tools" in answer.json()["error"]["message"]


# -- through the engine: an ACP agent gets the endpoint in session/new -----------------------


@pytest.fixture
async def process_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(tmp_path / "home", agent_runtime="process") as eng:
        yield eng


async def test_an_acp_agent_calls_allowed_tools_through_the_engine(
    process_engine: Engine, tmp_path: Path
) -> None:
    """The sample ACP agent (a process, on the ACP SDK) gets the engine's MCP endpoint in
    session/new instead of the upstream, lists and calls tools there with the `mcp` SDK;
    its environment never holds the upstream's credential; stopping it ends the upstream."""
    engine = process_engine
    axon_id = (await engine.create_axon("mcp")).id
    calls_file = tmp_path / "calls.jsonl"
    plain = {"name": "files", "command": "/bin/true", "args": [], "env": []}
    spec = acp_spec("mcp", "process", mcp_servers=[plain, stdio_entry(calls_file)])
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(spec)
        await watch.system("agent.running", "acp")
        session = body(watch.of("acp", "acp.session")[-1])
        gateway = session["mcp_gateway"]
        assert gateway["name"] == "axons"
        assert gateway["url"].startswith("http://127.0.0.1:")
        assert gateway["url"].endswith("/mcp/")
        assert SECRET not in str(watch.events)

        asked = 'MCP_CALL tickets__read_ticket {"ticket_id": "T-1"} ENV TICKETS_TOKEN'
        sequence = await publish(engine, axon_id, asked, "web")
        end = await turn_end(watch, "acp", sequence)
        assert end.event_type == "turn.completed", describe(watch.events)
        text = said(updates(watch, "acp", sequence))
        assert "MCP servers: files,axons" in text  # the plain entry as it was, and the gateway
        assert (
            "MCP tools: tickets__read_ticket. tickets__read_ticket ok: T-1: the printer is on fire"
        ) in text
        assert "TICKETS_TOKEN=<unset>" in text  # the credential stayed with the engine

        asked = 'MCP_CALL tickets__delete_ticket {"ticket_id": "T-1"}'
        sequence = await publish(engine, axon_id, asked, "web")
        end = await turn_end(watch, "acp", sequence)
        text = said(updates(watch, "acp", sequence))
        assert (
            "tickets__delete_ticket refused: tool 'tickets__delete_ticket' is not allowed" in text
        )

        events = [body(e) for e in watch.of("acp", TOOL_CALL)]
        assert [(e["server"], e["tool"], e["status"]) for e in events] == [
            ("tickets", "read_ticket", "ok"),
            ("tickets", "delete_ticket", "refused"),
        ]
        assert calls(calls_file) == [
            {"tool": "read_ticket", "ticket_id": "T-1", "credential": True}
        ]

        pid = int(calls_file.with_suffix(".pid").read_text())
        await engine.agents.command(axon_id, "acp", "stop")
        await watch.system("agent.stopped", "acp")
        assert gone(pid)


def test_over_tcp_only_http_upstreams_the_operator_lists() -> None:
    """engine/policy.py: a spec from TCP may name an HTTP upstream under [agents] mcp_urls
    (its secrets under [agents] secrets); never a stdio one, never with a limited token.
    (tests/test_security_agents.py sends the refused ones over real HTTP.)"""
    policy = AgentPolicy(mcp_urls=["https://tickets.internal/"], secrets=["TICKETS_TOKEN"])
    entry = {
        "name": "tickets",
        "url": "https://tickets.internal/mcp",
        "headers": {"Authorization": "Bearer ${TICKETS_TOKEN}"},
        "secrets": ["TICKETS_TOKEN"],
        "allowed_tools": ["read_*"],
    }

    def spec(*entries: dict[str, Any]) -> AgentSpec:
        return AgentSpec(
            name="a", axon="x", image="axons/acp_agent", protocol="acp", mcp_servers=list(entries)
        )

    check_remote_spec(spec(entry), policy, limited=False)
    refusals = [
        (spec(entry), True, "a token limited to some Axons cannot declare secrets"),
        (spec({**entry, "secrets": [], "headers": {}}), True, "limited to some Axons cannot"),
        (spec({**entry, "url": "https://elsewhere/mcp"}), False, "mcp_urls of config.toml"),
        (spec(stdio_entry(Path("c"))), False, "engine's own socket"),
    ]
    for refused_spec, limited, message in refusals:
        with pytest.raises(Forbidden, match=re.escape(message)):
            check_remote_spec(refused_spec, policy, limited=limited)
