"""Agent lifecycle (contract §5, architecture decisions 4-5): running -> paused after `idle_pause_s`
-> hibernated after `idle_hibernate_s`; the next event the agent wakes on resumes it, and
`agent.resumed` commits before the agent receives that event. Crashes restart with backoff.

`Supervisor` holds every agent of a home: it declares them (under the operator's policy for
specs from TCP), picks their runtime, brings them back when the engine starts, and carries
commands and permission decisions to them. Each agent's own state machine, one driver task
that owns every transition, is `engine.worker.AgentWorker`.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from pydantic import ValidationError

from engine.broker.permissions import DECISION, REQUESTED
from engine.errors import AxonError, Conflict, ErrorCode, InvalidInput, NotFound
from engine.gateway import Admission, GatewayServer
from engine.gateway.mcp import MOUNT, McpGateways, uses_mcp_gateway
from engine.models import AgentSpec, AgentView, Draft, PublishResult
from engine.policy import check_remote_spec
from engine.runtime import AgentKey, Runtime, pick_runtime
from engine.runtime.process import ProcessRuntime
from engine.worker import AgentWorker

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.tokens import Principal


class Supervisor:
    """Every agent of a home. Runtimes are made on first need, so an engine with no agents
    never talks to Docker."""

    def __init__(self, engine: Engine, *, runtime: str = "auto") -> None:
        self.engine = engine
        self.runtime_kind = runtime
        self.home_id = ""
        self.notices: list[str] = []
        self._runtimes: dict[str, Runtime] = {}
        self._workers: dict[tuple[str, str], AgentWorker] = {}
        # the Agent Gateway: its listeners open on the first agent that needs them
        self.gateway = GatewayServer(
            engine.paths.gateway,
            lambda axon_id, draft: engine.publish(axon_id, draft, system=True),
            self._spent,
        )
        # the MCP gateway: each agent's MCP endpoint at <gateway>/mcp/ (engine/gateway/mcp.py)
        self.mcp = McpGateways(self.gateway, self._log_for)
        self.gateway.mount(MOUNT, self.mcp)

    async def _spent(self, key: AgentKey, prefix: str) -> int:
        """The tokens the Axon's log records for an agent's gateway: every `gateway.request`
        it made there (the token budget counts them all, across restarts)."""
        result = await self.engine.query(
            key.axon_id,
            "SELECT coalesce(sum(json_extract(payload, '$.usage.total_tokens')), 0) "
            "FROM axon_events WHERE event_type = 'gateway.request' AND origin = 'SYSTEM_EVENT' "
            "AND source = ? AND json_extract(payload, '$.provider') = ?",
            [key.name, prefix],
        )
        return int(result.rows[0][0])

    async def start(self) -> None:
        """Bring back every declared agent. Nothing here needs Docker: while it does not
        answer, Docker agents are marked failed (and retried), and the engine serves."""
        self.home_id = await asyncio.to_thread(self.engine.catalog.home_id)
        for axon_id, name, raw, desired, declared_over in await asyncio.to_thread(
            self.engine.catalog.agents
        ):
            try:
                spec = AgentSpec.model_validate(raw)
            except ValidationError as e:  # stored by an older version: say so, serve the rest
                self.notices.append(f"agent {name} of {axon_id} is not started: {e}")
                continue
            await self._spawn(axon_id, spec, desired, remote=declared_over != "socket")
        await self._remove_orphans()

    async def close(self) -> None:
        await asyncio.gather(*(worker.detach() for worker in self._workers.values()))
        for kind in ("docker", "process"):  # "auto" is one of them
            if (runtime := self._runtimes.get(kind)) is not None:
                await runtime.close()
        await self.mcp.close_all()
        await self.gateway.close()

    def runtime_for(self, spec: AgentSpec, *, remote: bool = False) -> Runtime:
        """Where the agent runs. A spec declared over TCP (`remote`) runs in Docker and
        nowhere else: without Docker it fails rather than run on the host."""
        if remote or spec.runtime == "docker":
            return self._runtime("docker")
        if spec.runtime == "process" or spec.image is None:
            return self._runtime("process")
        chosen = self._runtime(self.runtime_kind)
        if chosen.kind == "process" and not spec.command:
            return self._runtime("docker")  # only an image: failed until Docker answers
        return chosen

    def _runtime(self, kind: str) -> Runtime:
        """The runtime of `kind` (one of each at most), made on first need; `auto` decides
        once whether that is Docker or processes."""
        if kind not in self._runtimes:
            made = pick_runtime(kind, self.home_id, pid_dir=self.engine.paths.agents)
            if made.kind not in self._runtimes:
                if isinstance(made, ProcessRuntime):
                    made.stop_leftovers()
                self._runtimes[made.kind] = made
            if kind == "auto" and made.kind == "process":
                self.notices.append("no Docker engine answers: agents run as local processes")
            self._runtimes[kind] = self._runtimes[made.kind]
        return self._runtimes[kind]

    async def _spawn(
        self, axon_id: str, spec: AgentSpec, desired: str, *, remote: bool
    ) -> AgentWorker:
        runtime = self.runtime_for(spec, remote=remote)
        worker = AgentWorker(self, axon_id, spec, runtime, desired, remote=remote)
        self._workers[(axon_id, spec.name)] = worker
        worker.start()
        return worker

    async def _remove_orphans(self) -> None:
        docker_runtime = self._runtimes.get("docker")
        if docker_runtime is None:
            return
        known = {(w.axon_id, w.spec.name) for w in self._workers.values()}
        try:
            managed = await docker_runtime.managed()
        except AxonError:
            return  # Docker does not answer: nothing of ours runs there to remove
        for key, _status in managed:
            if (key.axon_id, key.name) not in known:
                await docker_runtime.remove(key)

    def environment(self, spec: AgentSpec, *, remote: bool = False) -> dict[str, str]:
        """What the agent's sandbox gets: its `env` and its secrets. A spec declared over TCP
        is held to the operator's policy as it stands now, so a tightened config.toml takes
        effect at the agent's next start."""
        if remote:
            check_remote_spec(spec, self.engine.config.agents, limited=False)
        missing = [s for s in spec.all_secrets() if s not in os.environ]
        if missing:
            raise InvalidInput(
                f"secrets not set in the engine's environment: {', '.join(missing)}",
                code=ErrorCode.MISSING_SECRET,
            )
        keys = [
            f"{p} ({g.secret})" for p, g in spec.gateways.items() if not os.environ.get(g.secret)
        ]
        if keys:
            raise InvalidInput(
                f"gateway keys not set in the engine's environment: {', '.join(keys)}; the "
                "engine holds each gateway's `secret` (export it before `axons serve`)",
                code=ErrorCode.MISSING_SECRET,
            )
        return {**spec.env, **{s: os.environ[s] for s in spec.secrets}}

    async def admit(self, key: AgentKey, spec: AgentSpec, runtime: Runtime) -> Admission | None:
        """A fresh gateway token for an agent about to start (None: it uses no gateway)."""
        if not spec.gateways and not uses_mcp_gateway(spec):
            return None
        return await self.gateway.admit(key, spec, docker=runtime.kind == "docker")

    async def revoke(self, key: AgentKey) -> None:
        """The agent stops, hibernates or failed: its token goes, and so do its MCP gateway's
        upstream sessions."""
        self.gateway.revoke(key)
        await self.mcp.close(key)

    async def forget(self, key: AgentKey) -> None:
        """The agent is removed or replaced: its token, meters, socket and MCP sessions go."""
        await self.mcp.close(key)
        await self.gateway.forget(key)

    def _log_for(self, key: AgentKey) -> Callable[[str], None]:
        """Where the MCP gateway writes an agent's lines (its `agent.log` events)."""
        worker = self._workers.get((key.axon_id, key.name))
        return worker.log if worker is not None else lambda line: None

    # -- API ----------------------------------------------------------------------------

    async def add(self, spec: AgentSpec) -> AgentView:
        """Declare an agent (or replace its spec) and start it, as the operator (the socket,
        in-process): any spec the runtimes can run."""
        return await self._declare(spec, remote=False)

    async def add_remote(self, spec: AgentSpec, caller: Principal) -> AgentView:
        """Declare an agent for a token over TCP: the spec must keep to the operator's policy
        (engine.policy), and the agent runs in Docker and nowhere else, ever."""
        check_remote_spec(spec, self.engine.config.agents, limited=caller.axons is not None)
        return await self._declare(spec, remote=True)

    async def _declare(self, spec: AgentSpec, *, remote: bool) -> AgentView:
        if spec.protocol not in ("axon", "acp"):
            raise InvalidInput(
                f"protocol {spec.protocol!r} is not supported yet; this engine speaks the native "
                "protocol 'axon' (see sample_agents/axon_agent.py) and 'acp'",
                code=ErrorCode.UNSUPPORTED_PROTOCOL,
            )
        axon = await self.engine.get_axon(spec.axon)
        if axon.deleted_at_ms is not None:
            raise Conflict(f"Axon {axon.id} is deleted", code=ErrorCode.AXON_DELETED)
        self.environment(spec)  # refuse missing secrets now, not at the first wake
        old = self._workers.pop((axon.id, spec.name), None)
        if old is not None:
            await old.detach()
            await old.runtime.remove(old.key)
            await self.forget(old.key)
        await asyncio.to_thread(
            self.engine.catalog.put_agent,
            axon.id,
            spec.name,
            spec.model_dump(mode="json"),
            "running",
            "tcp" if remote else "socket",
        )
        worker = await self._spawn(axon.id, spec, "running", remote=remote)
        return worker.view(await self.engine.agent_cursor(axon.id, spec.name))

    def _worker(self, axon_id: str, name: str) -> AgentWorker:
        worker = self._workers.get((axon_id, name))
        if worker is None:
            raise NotFound(f"no agent {name!r} on Axon {axon_id}", code=ErrorCode.AGENT_NOT_FOUND)
        return worker

    async def list(self, axon_id: str | None = None) -> builtins.list[AgentView]:
        views = []
        for (a, _n), w in sorted(self._workers.items()):
            if axon_id is None or a == axon_id:
                views.append(w.view(await self.engine.agent_cursor(a, w.spec.name)))
        return views

    async def get(self, axon_id: str, name: str) -> AgentView:
        worker = self._worker(axon_id, name)
        return worker.view(await self.engine.agent_cursor(axon_id, name))

    async def command(self, axon_id: str, name: str, action: str) -> AgentView:
        """start, pause, resume or stop; the driver applies it in order."""
        if action not in ("start", "pause", "resume", "stop"):
            raise InvalidInput(
                f"unknown action {action!r}: start, pause, resume or stop",
                code=ErrorCode.INVALID_ACTION,
            )
        worker = self._worker(axon_id, name)
        desired = "stopped" if action == "stop" else "running"
        await asyncio.to_thread(self.engine.catalog.set_agent_desired, axon_id, name, desired)
        worker.desired = desired
        worker.command(action)
        worker.start()
        return worker.view(await self.engine.agent_cursor(axon_id, name))

    async def remove(self, axon_id: str, name: str) -> None:
        """Stop the agent, remove its sandbox and forget it (its cursor stays in the Axon)."""
        worker = self._worker(axon_id, name)
        worker.command("stop")
        await worker.detach()
        await worker.runtime.remove(worker.key)
        await self.forget(worker.key)
        del self._workers[(axon_id, name)]
        await asyncio.to_thread(self.engine.catalog.delete_agent, axon_id, name)

    async def permit(
        self, axon_id: str, request_sequence: int, option_id: str | None, *, source: str = "cli"
    ) -> PublishResult:
        """Answer an ACP agent's permission request: `option_id`, or None for cancelled."""
        return await self.answer(axon_id, request_sequence, option_id, source=source, author=None)

    async def answer(
        self,
        axon_id: str,
        request_sequence: int,
        option_id: str | None,
        *,
        source: str,
        author: str | None,
    ) -> PublishResult:
        """`permit` for an authenticated caller (the event's author). The answer is an
        ordinary `permission.decision` event (any client may publish one); this checks it
        first, so a decision nobody waits for is a 409, not a lost event."""
        for worker in self._workers.values():
            broker = worker.acp
            if (
                worker.axon_id == axon_id
                and broker is not None
                and request_sequence in broker.pending
            ):
                broker.check_decision(request_sequence, option_id, claim=True)
                answer = {"cancelled": True} if option_id is None else {"option_id": option_id}
                body = {"request_sequence": request_sequence, **answer}
                return await self.engine.publish(
                    axon_id,
                    Draft(DECISION, orjson.dumps(body).decode(), source, author=author),
                )
        events = await self.engine.read_events(axon_id, max(0, request_sequence - 1), 1)
        if (
            not events
            or events[0].sequence != request_sequence
            or events[0].event_type != REQUESTED
        ):
            raise Conflict(
                f"event #{request_sequence} is not a permission request "
                "(`axons tail` shows the permission.requested events)",
                code=ErrorCode.NOT_A_PERMISSION_REQUEST,
            )
        raise Conflict(
            f"permission request #{request_sequence} was already answered "
            "(or its agent stopped or restarted, which answers it cancelled)",
            code=ErrorCode.PERMISSION_NOT_PENDING,
        )

    async def logs(self, axon_id: str, name: str, tail: int = 100) -> builtins.list[str]:
        worker = self._worker(axon_id, name)
        lines = await worker.runtime.logs(worker.key, tail)
        return lines or list(worker._stderr)
