"""The MCP gateway (contract §5.4), in front of an MCP server built with the `mcp` SDK (the
tests' tickets server, tests/agents/tickets_mcp.py, over streamable HTTP in its own process):

- `mcp_call_overhead_ms`: the time of one `tools/call` (`read_ticket`) through the agent's
  MCP endpoint on the engine's gateway server, minus the same call made directly to the
  upstream, in the same run; p50 of each. The gateway's path holds the token check, a
  stateless MCP server turn of its own, the allow-list, the upstream call over the engine's
  open `ClientSession`, and the `mcp.tool_call` commit (the answer waits for it).

Both clients are the SDK's own (`ClientSession` over `streamable_http_client`), initialised
once, in a thread with its own event loop so they do not share the engine's; the two paths
alternate call by call, so both see the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from bench.harness import Figure, Sizes, fresh_home, gateway_overhead, run
from engine import Engine
from engine.models import AgentSpec
from engine.runtime import AgentKey

WARMUP = 20
TOKEN = "bench-tickets-token"
SECRET_VAR = "AXONS_BENCH_TICKETS_TOKEN"


@contextlib.contextmanager
def tickets_server() -> Iterator[str]:
    """The tickets MCP server over HTTP in its own process; yields its /mcp URL."""
    from tests.agents import tickets_mcp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TICKETS_EXPECT": TOKEN, "TICKETS_CALLS": ""}
    proc = subprocess.Popen(
        [sys.executable, tickets_mcp.__file__, "--http", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the tickets server did not start (exit {proc.poll()})")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.asynccontextmanager
async def session(url: str, token: str) -> AsyncIterator[Any]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


async def _calls(
    direct_url: str, gateway_url: str, token: str, count: int
) -> tuple[list[float], list[float]]:
    """In the client's own loop: `count` calls on each path, alternating."""

    async def timed(client: Any, tool: str) -> float:
        began = time.perf_counter()
        result = await client.call_tool(tool, {"ticket_id": "T-1"})
        took = (time.perf_counter() - began) * 1000
        if result.isError:
            raise RuntimeError(f"{tool}: {result.content}")
        return took

    direct_ms: list[float] = []
    gateway_ms: list[float] = []
    async with session(direct_url, TOKEN) as direct, session(gateway_url, token) as through:
        for i in range(WARMUP + count):
            d = await timed(direct, "read_ticket")
            g = await timed(through, "tickets__read_ticket")
            if i >= WARMUP:
                direct_ms.append(d)
                gateway_ms.append(g)
    return direct_ms, gateway_ms


async def _measure(home: Path, upstream: str, count: int) -> tuple[list[float], list[float]]:
    os.environ[SECRET_VAR] = TOKEN
    async with Engine(home, agent_runtime="process") as engine:
        axon_id = (await engine.create_axon("mcp")).id
        entry = {
            "name": "tickets",
            "url": upstream,
            "headers": {"Authorization": f"Bearer ${{{SECRET_VAR}}}"},
            "secrets": [SECRET_VAR],
            "allowed_tools": ["read_*"],
        }
        spec = AgentSpec(
            name="bench", axon=axon_id, command=["true"], protocol="acp", mcp_servers=[entry]
        )
        key = AgentKey(engine.agents.home_id, axon_id, "bench")
        await engine.agents.gateway.admit(key, spec, docker=False)
        served = engine.agents.mcp.entry(key, spec)
        assert served is not None
        token = served["headers"][0]["value"].removeprefix("Bearer ")
        return await asyncio.to_thread(asyncio.run, _calls(upstream, served["url"], token, count))


def mcp_call_overhead_ms(sizes: Sizes, base: Path | None) -> Figure:
    count = max(50, sizes.wakes * 2)
    with fresh_home(base, "mcp") as home, tickets_server() as upstream:
        direct, through = run(_measure(home / "home", upstream, count))
    return gateway_overhead(
        "mcp_call_overhead_ms",
        direct,
        through,
        ceiling_name="p50 of the same tools/call direct to the upstream MCP server",
        note=(
            "p50(one tools/call of read_ticket through the engine's MCP gateway, the "
            "mcp.tool_call commit included) minus p50(the same call direct to the upstream, "
            f"an mcp SDK server over streamable HTTP), {count} calls each, alternating, after "
            f"{WARMUP} unmeasured; both clients are the mcp SDK's."
        ),
    )
