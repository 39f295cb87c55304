"""Agents (contract §4.2): declare them on an Axon, list them, start, pause, resume or stop
them, read their logs and cursors, and answer their permission requests."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from engine.api import schemas as s
from engine.api.routes.deps import AxonId, Caller, Context, new_router
from engine.models import AgentSpec, AgentView

router = new_router()


@router.get("/v1/axons/{id}/agents", response_model=s.AgentList, tags=["agents"])
async def list_agents(api: Context, caller: Caller, ref: AxonId) -> s.AgentList:
    axon_id = await api.axon_for(caller, ref, "read")
    views = await api.engine.agents.list(axon_id)
    if not caller.allows("admin"):
        views = [without_env_values(v) for v in views]
    return s.AgentList(agents=views)


@router.get("/v1/agents", response_model=s.AgentList, tags=["agents"])
async def list_all_agents(api: Context, caller: Caller) -> s.AgentList:
    """Every agent of every Axon the caller can read (the monitor's one call)."""
    caller.require("read")
    views = [
        v
        for v in await api.engine.agents.list()
        if caller.axons is None or v.axon_id in caller.axons
    ]
    if not caller.allows("admin"):
        views = [without_env_values(v) for v in views]
    return s.AgentList(agents=views)


REDACTED = "<redacted>"


def without_env_values(view: AgentView) -> AgentView:
    """An agent as a token below admin sees it: the names of its `env`, not the values; nor
    the values of its MCP servers' env and headers (a plain entry may hold a credential)."""
    env = {name: REDACTED for name in view.spec.env}
    servers = [_without_values(entry) for entry in view.spec.mcp_servers]
    spec = view.spec.model_copy(update={"env": env, "mcp_servers": servers})
    return view.model_copy(update={"spec": spec})


def _without_values(entry: dict[str, Any]) -> dict[str, Any]:
    """An `mcp_servers` entry with its env and header values redacted, in either shape (a
    table, or ACP's [{name, value}])."""
    redacted = dict(entry)
    for key in ("env", "headers"):
        pairs = entry.get(key)
        if isinstance(pairs, dict):
            redacted[key] = dict.fromkeys(pairs, REDACTED)
        elif isinstance(pairs, list):
            redacted[key] = [{**p, "value": REDACTED} if isinstance(p, dict) else p for p in pairs]
    return redacted


@router.post("/v1/axons/{id}/agents", response_model=s.AgentView, tags=["agents"])
async def add_agent(
    api: Context, caller: Caller, ref: AxonId, body: s.AgentSpecBody
) -> s.AgentView:
    """Declare an agent on this Axon (replacing one of the same name) and start it."""
    axon_id = await api.axon_for(caller, ref, "admin")
    spec = AgentSpec.model_validate({**body.model_dump(), "axon": axon_id})
    if api.require_token:  # a token's spec keeps to the operator's policy (engine/policy.py)
        return await api.engine.agents.add_remote(spec, caller)
    return await api.engine.agents.add(spec)


@router.get("/v1/axons/{id}/agents/{name}/logs", response_model=s.AgentLogs, tags=["agents"])
async def agent_logs(
    api: Context,
    caller: Caller,
    ref: AxonId,
    name: str,
    tail: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> s.AgentLogs:
    """Admins only: an agent's stderr may say more than its events do."""
    axon_id = await api.axon_for(caller, ref, "admin")
    return s.AgentLogs(lines=await api.engine.agents.logs(axon_id, name, tail))


@router.get("/v1/axons/{id}/agents/{name}/cursor", response_model=s.Cursor, tags=["agents"])
async def agent_cursor(api: Context, caller: Caller, ref: AxonId, name: str) -> s.Cursor:
    """The last sequence the agent acknowledged (0: none)."""
    axon_id = await api.axon_for(caller, ref, "read")
    return s.Cursor(sequence=await api.engine.agent_cursor(axon_id, name))


@router.post("/v1/axons/{id}/agents/{name}/ack", response_model=s.Cursor, tags=["agents"])
async def agent_ack(
    api: Context, caller: Caller, ref: AxonId, name: str, body: s.Cursor
) -> s.Cursor:
    """Move the agent's durable cursor forward (never back)."""
    axon_id = await api.axon_for(caller, ref, "admin")
    return s.Cursor(sequence=await api.engine.ack(axon_id, name, body.sequence))


@router.post("/v1/axons/{id}/agents/{name}/{action}", response_model=s.AgentView, tags=["agents"])
async def agent_action(
    api: Context,
    caller: Caller,
    ref: AxonId,
    name: str,
    action: Annotated[str, Path(pattern="^(start|pause|resume|stop)$")],
) -> s.AgentView:
    axon_id = await api.axon_for(caller, ref, "admin")
    return await api.engine.agents.command(axon_id, name, action)


@router.post(
    "/v1/axons/{id}/permissions/{sequence}",
    response_model=s.PublishResultView,
    tags=["agents"],
)
async def permit(
    api: Context,
    caller: Caller,
    ref: AxonId,
    sequence: Annotated[int, Path(ge=1)],
    body: s.PermissionDecision,
) -> s.PublishResultView:
    """Answer an ACP agent's `permission.requested` event #sequence: publishes the
    `permission.decision` event. 409 when nothing waits for that answer."""
    axon_id = await api.axon_for(caller, ref, "publish")
    result = await api.engine.agents.answer(
        axon_id, sequence, body.option_id, source=body.source, author=caller.name
    )
    return s.PublishResultView(**result.to_dict())
