"""The MCP gateway (contract §5.4): one MCP endpoint per ACP agent, in front of the upstream
MCP servers its spec names with `allowed_tools`.

`McpGateways` is the ASGI app mounted at `/mcp` on the engine's gateway server
(engine/gateway/server.py), which checks the agent's opaque token first (401 otherwise): it
hands each request to that agent's endpoint (`AgentMcp`, engine/gateway/mcp_endpoint.py, on
the official `mcp` SDK), made on the agent's first request and closed with its token.

The SDK is imported there, on the first request, not here: an engine that serves no MCP
gateway (and every CLI command) never pays for loading it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.api.gate import send_json
from engine.models import AgentSpec, mcp_upstreams
from engine.runtime.base import AgentKey

if TYPE_CHECKING:
    from engine.gateway.mcp_endpoint import AgentMcp
    from engine.gateway.server import GatewayServer, Grant

TOOL_CALL = "mcp.tool_call"
SEPARATOR = "__"
MOUNT = "mcp"  # where it is mounted on the engine's gateway server: <base_url>/mcp/
SERVER_NAME = "axons"  # the gateway's name in session/new: Claude calls its tools mcp__axons__…

Log = Callable[[str], None]


def uses_mcp_gateway(spec: AgentSpec) -> bool:
    """Whether the agent gets an MCP endpoint: an ACP agent with gateway entries."""
    return spec.protocol == "acp" and bool(spec.mcp_servers and mcp_upstreams(spec.mcp_servers))


class McpGateways:
    """Every agent's MCP endpoint: the ASGI app mounted at `/mcp` on the engine's gateway
    server, which has checked the agent's token (401 otherwise) and names the agent in
    `scope["axons.grant"]`. An agent's `AgentMcp` is made on its first request, from the spec
    it was admitted with, and closed (`close`) when the agent stops, hibernates, fails or is
    replaced, as its token is revoked."""

    def __init__(self, server: GatewayServer, log_for: Callable[[AgentKey], Log]) -> None:
        self.server = server
        self._log_for = log_for
        self._agents: dict[AgentKey, tuple[Grant, AgentMcp]] = {}

    def entry(self, key: AgentKey, spec: AgentSpec) -> dict[str, Any] | None:
        """The agent's MCP server for session/new (ACP's http shape), or None when it has no
        upstreams or holds no token now."""
        admission = self.server.admission(key)
        if admission is None or not uses_mcp_gateway(spec):
            return None
        return {
            "type": "http",
            "name": SERVER_NAME,
            "url": f"{admission.base_url}/{MOUNT}/",
            "headers": [{"name": "Authorization", "value": f"Bearer {admission.token}"}],
        }

    def _gateway(self, grant: Grant) -> AgentMcp | None:
        held = self._agents.get(grant.key)
        if held is not None and held[0] is grant:
            return held[1]
        upstreams = mcp_upstreams(grant.spec.mcp_servers)
        if not upstreams:
            return None
        if held is not None:  # a new token (a restart): the old gateway goes in the background
            self._closing(held[1])
        values = {name: os.environ.get(name, "") for u in upstreams for name in u.secrets}

        async def publish(body: dict[str, Any]) -> None:
            await self.server.event(grant, TOOL_CALL, body)

        from engine.gateway.mcp_endpoint import AgentMcp  # the SDK, on the first request

        log = self._log_for(grant.key)
        gateway = AgentMcp(grant.key.name, upstreams, values, publish=publish, on_log=log)
        self._agents[grant.key] = (grant, gateway)
        return gateway

    def _closing(self, gateway: AgentMcp) -> None:
        task = asyncio.create_task(gateway.close())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def close(self, key: AgentKey) -> None:
        """The agent's token is revoked: end its endpoint and its upstream sessions."""
        held = self._agents.pop(key, None)
        if held is not None:
            await held[1].close()

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(key) for key in list(self._agents)))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        grant: Grant = scope["axons.grant"]
        gateway = self._gateway(grant)
        if gateway is None:
            await _not_found(send, grant.key.name)
            return
        await gateway.handle(scope, receive, send)


_background: set[asyncio.Task[None]] = set()


async def _not_found(send: Any, agent: str) -> None:
    message = (
        f"agent {agent} has no MCP servers through the gateway: give an mcp_servers entry "
        "allowed_tools to reach it here"
    )
    await send_json(send, 404, {"error": {"message": message}})
