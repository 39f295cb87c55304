"""The Agent Client Protocol broker (`protocol = "acp"`, contract §5.2).

The engine is the ACP client, on the `agent-client-protocol` SDK: `initialize` →
`session/new` (or `session/load` of the agent's previous session when it advertises
`loadSession`) → `session/set_mode` when the spec names a mode → one `session/prompt` per
turn, `session/cancel` to interrupt it.

What the SDK does not do for us, and why this module does it:
- Wire order. The SDK runs every notification handler in a task of its own, so handlers can
  record updates out of order, and it drops `session/update` kinds its models do not know.
  A synchronous stream observer sees every raw message in wire order, so that is where each
  `session/update` (and each `session/request_permission`) is queued for publishing; one
  publisher task commits the queue in order, in batches.
- Permissions wait for a human. A request becomes a `permission.requested` event; any client
  answers it with a `permission.decision` event `{request_sequence, option_id}` or
  `{request_sequence, cancelled: true}`, which the broker sees on its own subscription to the
  Axon. While a request waits, the supervisor pauses the agent (`on_human_wait`).
- The SDK's `$/cancel_request` does not reach our handlers: a cancel, a stop or a lost agent
  answers every pending request `cancelled` here.
- Only the methods we offer exist: fs and terminal are not advertised, and every such call
  gets method-not-found (a duck-typed client object, not `acp.Client`, whose stubs would
  answer `null`).

The agent's stdio is the runtime's `AgentIO` (a process's pipes or a Docker attach socket),
framed as one JSON object per line by `_StdioTransport`; the JSON-RPC is the SDK's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from acp import PROTOCOL_VERSION, RequestError, connect_to_agent, text_block
from acp.connection import StreamDirection, StreamEvent
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    FileSystemCapabilities,
    Implementation,
    RequestPermissionResponse,
)

from engine.broker.native import BrokerHooks, end_logs, read_logs
from engine.broker.permissions import DECISION, REQUESTED
from engine.errors import AxonError, Conflict, ErrorCode, InvalidInput, ProtocolError
from engine.models import AgentSpec, Draft, Event, mcp_servers

SESSION_EVENT = "acp.session"  # which session the agent works in, and how it got it
INIT_TIMEOUT_S = 60.0
PUBLISH_BATCH = 256
# agent.resumed after a decision waits this long for the agent's first update to share its
# commit: one fsync instead of two on the path a human waits on.
LINGER_S = 0.05


def prompt_text(events: list[Event]) -> str:
    """The prompt for a turn: each waking event's text, with who sent it."""
    parts = []
    for e in events:
        try:
            body = orjson.loads(e.payload)
        except orjson.JSONDecodeError:
            body = e.payload
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            text = e.payload if e.event_type == "message" else f"{e.event_type}: {e.payload}"
        parts.append(f"[{e.source}] {text}")
    return "\n\n".join(parts)


@dataclass
class PendingPermission:
    """A `session/request_permission` the agent is waiting on."""

    sequence: int
    options: list[str]
    claimed: bool = False  # a checked decision is on its way (through `permit`)
    answer: asyncio.Future[tuple[str | None, int | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Queued:
    """An event to publish in wire order; `sequence` learns where it landed."""

    draft: Draft | None  # None: a reserved place, filled through `slot`
    tool_call_id: str | None = None
    sequence: asyncio.Future[int] | None = None
    linger: bool = False  # wait a moment for the next event to share this one's commit
    slot: asyncio.Future[Draft | None] | None = None


class _StdioTransport:
    """Newline-delimited JSON over an `AgentIO` (the SDK's `Transport` seam)."""

    def __init__(self, io: Any, on_log: Callable[[str], None]) -> None:
        self.io = io
        self.on_log = on_log
        self.closed = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        await self.io.write(orjson.dumps(message) + b"\n")

    async def receive(self) -> dict[str, Any] | None:
        while True:
            try:
                line = await self.io.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                self.on_log("axons: a line on stdout was too long; closing the agent's channel")
                line = b""
            if not line:
                self.closed.set()
                return None
            if not line.strip():
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.on_log(f"axons: not JSON-RPC on stdout: {line[:200].decode(errors='replace')}")
                continue
            if isinstance(message, dict):
                return message

    async def close(self) -> None:
        self.closed.set()


class AcpBroker:
    """One live ACP connection to one agent (the counterpart of `NativeBroker`)."""

    def __init__(
        self,
        engine: Any,
        axon_id: str,
        spec: AgentSpec,
        io: Any,
        hooks: BrokerHooks,
        *,
        cwd: str,
        on_human_wait: Callable[[], None],
        mcp_gateway: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.axon_id = axon_id
        self.spec = spec
        self.agent = spec.name
        self.io = io
        self.hooks = hooks
        self.cwd = cwd
        self.on_human_wait = on_human_wait
        self.mcp_gateway = mcp_gateway  # the engine's MCP endpoint for it (engine/gateway/mcp.py)
        self.session_id: str | None = None
        self.pending: dict[int, PendingPermission] = {}
        self.last_decision: int | None = None  # the sequence of the decision that woke it
        self._released = asyncio.Event()  # clear while the supervisor holds the agent paused
        self._released.set()
        self._transport = _StdioTransport(io, hooks.on_log)
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._requests: deque[_Queued] = deque()  # permission requests, in wire order
        self._replaying = False
        self._replayed = 0
        self._turn: asyncio.Task[None] | None = None
        self._cancelled = False
        self._tasks: list[asyncio.Task[Any]] = []
        client: Any = _Client(self)  # duck-typed on purpose (see _Client)
        self.conn = connect_to_agent(client, self._transport, observers=[self._observe])

    @property
    def awaiting_human(self) -> bool:
        return bool(self.pending)

    # -- engine -> agent ----------------------------------------------------------------

    async def initialize(self, cursor: int, timeout_s: float = INIT_TIMEOUT_S) -> Any:
        """initialize, then the agent's previous session (loaded) or a new one, then its mode."""
        try:
            return await asyncio.wait_for(self._start_session(), timeout_s)
        except RequestError as e:
            raise ProtocolError(f"{e} {e.data or ''}".strip()) from None
        except ConnectionError as e:
            raise ProtocolError(f"the agent closed its stdout ({e})") from None

    async def _start_session(self) -> dict[str, Any]:
        init = await self.conn.initialize(
            protocol_version=PROTOCOL_VERSION,
            client_capabilities=ClientCapabilities(
                fs=FileSystemCapabilities(read_text_file=False, write_text_file=False),
                terminal=False,
            ),
            client_info=Implementation(name="axons", title="Axons", version="0.1.0"),
        )
        servers = mcp_servers(self.spec.mcp_servers)
        record: dict[str, Any] = {}
        if self.mcp_gateway is not None and (gateway := self._gateway_server(init, record)):
            servers.append(gateway)
        previous = await self._previous_session()
        can_load = bool(init.agent_capabilities and init.agent_capabilities.load_session)
        if previous and can_load:
            self._replaying, self._replayed = True, 0
            try:
                await self.conn.load_session(cwd=self.cwd, session_id=previous, mcp_servers=servers)
                self.session_id = previous
                record.update(session_id=previous, how="loaded", replayed=self._replayed)
            except RequestError as e:
                record["load_failed"] = {"session_id": previous, "error": _error_body(e)}
            finally:
                self._replaying = False
        elif previous:
            record["load_failed"] = {"session_id": previous, "error": "loadSession not offered"}
        if self.session_id is None:
            session = await self.conn.new_session(cwd=self.cwd, mcp_servers=servers)
            self.session_id = session.session_id
            record = {"session_id": session.session_id, "how": "new", **record}
        if self.spec.mode:
            await self.conn.set_session_mode(session_id=self.session_id, mode_id=self.spec.mode)
            record["mode"] = self.spec.mode
        await self._publish_now(self._system(SESSION_EVENT, record))
        self._tasks.append(asyncio.create_task(self._follow_decisions()))
        return init.model_dump(mode="json", by_alias=True, exclude_none=True)

    def _gateway_server(self, init: Any, record: dict[str, Any]) -> Any | None:
        """The engine's MCP endpoint as the agent's MCP server; `record` says where it is
        (never the token). ACP lets a client pass an HTTP server only to an agent that
        advertises `mcpCapabilities.http`: one that does not gets none, and its log says so."""
        from acp.schema import HttpMcpServer

        assert self.mcp_gateway is not None
        server = HttpMcpServer.model_validate(self.mcp_gateway)
        mcp = init.agent_capabilities.mcp_capabilities if init.agent_capabilities else None
        if not (mcp and mcp.http):
            reason = "the agent does not advertise mcpCapabilities.http"
            record["mcp_gateway"] = {"skipped": reason}
            self.hooks.on_log(f"axons: no MCP gateway for this agent: {reason}")
            return None
        record["mcp_gateway"] = {"name": server.name, "url": server.url}
        return server

    async def _previous_session(self) -> str | None:
        result = await self.engine.query(
            self.axon_id,
            "SELECT payload FROM axon_events WHERE event_type = ? AND source = ? "
            "AND origin = 'SYSTEM_EVENT' ORDER BY sequence DESC LIMIT 1",
            [SESSION_EVENT, self.agent],
        )
        if not result.rows:
            return None
        session = orjson.loads(result.rows[0][0]).get("session_id")
        return session if isinstance(session, str) else None

    async def deliver(self, events: list[Event]) -> None:
        """One `session/prompt` for the turn's events; it ends through `hooks.on_turn_done`."""
        self._cancelled = False
        self._turn = asyncio.create_task(self._prompt(events))

    async def _prompt(self, events: list[Event]) -> None:
        assert self.session_id is not None
        try:
            response = await self.conn.prompt(
                session_id=self.session_id, prompt=[text_block(prompt_text(events))]
            )
        except RequestError as e:
            await self._end_turn(events, _error_body(e), {"error": _error_body(e)})
            return
        except ConnectionError:
            return  # the agent went away: serve() ends and the supervisor restarts it
        details: dict[str, Any] = response.model_dump(
            mode="json", by_alias=True, exclude_none=True, include={"usage", "field_meta"}
        )
        details["stop_reason"] = response.stop_reason
        await self._end_turn(events, None, details)

    async def _end_turn(self, events: list[Event], error: Any, details: dict[str, Any]) -> None:
        """After the turn's last update is committed: the cursor moves past what the agent
        handled (it answered, so a restart must not prompt it again), then the turn ends."""
        await self._queue.join()
        with contextlib.suppress(AxonError):
            await self.engine.ack(self.axon_id, self.agent, max(e.sequence for e in events))
        if self._cancelled:
            details["cancel_requested"] = True
        message = None if error is None else orjson.dumps(error).decode()
        self.hooks.on_turn_done(message, details)

    async def interrupt(self, sequence: int) -> None:
        """on_busy = "interrupt": a newer event waits, so cancel the running turn."""
        await self.cancel_turn(f"interrupted by #{sequence}")

    async def cancel_turn(self, reason: str) -> None:
        """`session/cancel`; pending permission requests are answered `cancelled` first."""
        self._cancelled = True
        await self.cancel_pending(reason)
        if self.session_id is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await self.conn.cancel(session_id=self.session_id)

    async def cancel_pending(self, reason: str) -> None:
        """Answer every waiting permission request `cancelled`, and say so in the log."""
        for sequence in list(self.pending):
            await self._publish_now(
                self._system(
                    DECISION, {"request_sequence": sequence, "cancelled": True, "reason": reason}
                )
            )
            self._answer(sequence, None, None)

    # -- permissions --------------------------------------------------------------------

    async def request_permission(
        self, tool_call: Any, options: list[Any]
    ) -> RequestPermissionResponse:
        """Wait for a human's decision (published by any client) on this request."""
        tool_call_id = getattr(tool_call, "tool_call_id", None)
        queued = next((q for q in self._requests if q.tool_call_id == tool_call_id), None)
        if queued is None or queued.sequence is None:
            return _cancelled()
        self._requests.remove(queued)
        try:
            sequence = await queued.sequence
        except ProtocolError:
            return _cancelled()  # never recorded, so nobody could answer it
        if self._cancelled:
            return _cancelled()
        pending = PendingPermission(sequence, [o.option_id for o in options])
        self.pending[sequence] = pending
        self.on_human_wait()
        try:
            option_id, _decision = await pending.answer
        finally:
            self.pending.pop(sequence, None)
            self.on_human_wait()
        # The answer goes out once the supervisor has reserved agent.resumed's place in the
        # log, so the log shows the wake before anything the decision causes.
        await self._released.wait()
        if option_id is None:
            return _cancelled()
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=option_id)
        )

    def record(self, draft: Draft) -> None:
        """Commit a system event in wire order with the agent's own (turn.started: before
        the turn's updates, sharing the first one's commit rather than delaying it)."""
        self._queue.put_nowait(_Queued(draft, linger=True))

    def reserve(self) -> asyncio.Future[Draft | None]:
        """A place in the log, before anything the agent sends next, for an event that is
        known only later (agent.resumed, once the runtime call returns): set its result to
        the event, or to None to give the place up."""
        slot: asyncio.Future[Draft | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Queued(None, linger=True, slot=slot))
        return slot

    def hold(self) -> None:
        """The supervisor pauses the agent for a human: answers wait for `release`."""
        self._released.clear()

    def release(self) -> None:
        """Let the answers to decided requests go out."""
        self._released.set()

    def check_decision(
        self, request_sequence: int, option_id: str | None, *, claim: bool = False
    ) -> None:
        """Raise Conflict/InvalidInput unless this decision answers a waiting request. With
        `claim`, the request takes no other checked decision (two clients racing: one 409)."""
        pending = self.pending.get(request_sequence)
        if pending is None or pending.answer.done() or (claim and pending.claimed):
            raise Conflict(
                f"permission request #{request_sequence} is not waiting for an answer",
                code=ErrorCode.PERMISSION_NOT_PENDING,
            )
        if option_id is not None and option_id not in pending.options:
            raise InvalidInput(
                f"option {option_id!r} is not offered by request #{request_sequence}; "
                f"choose one of {', '.join(pending.options)} (or cancelled)",
                code=ErrorCode.UNKNOWN_OPTION,
            )
        pending.claimed = pending.claimed or claim

    def _answer(self, sequence: int, option_id: str | None, decision: int | None) -> None:
        pending = self.pending.get(sequence)
        if pending is not None and not pending.answer.done():
            self.last_decision = decision
            pending.answer.set_result((option_id, decision))

    async def _follow_decisions(self) -> None:
        """Every `permission.decision` on the Axon, from any client, answers its request."""
        after = await self.engine.last_sequence(self.axon_id)
        async for e in self.engine.subscribe(self.axon_id, after):
            if e.event_type != DECISION or e.origin == "SYSTEM_EVENT":
                continue
            try:
                body = orjson.loads(e.payload)
                sequence = int(body["request_sequence"])
                option_id = None if body.get("cancelled") else str(body["option_id"])
                self.check_decision(sequence, option_id)
            except Conflict:
                continue  # answered already, or another agent's request
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AxonError) as err:
                self.hooks.on_log(f"axons: ignored {DECISION} #{e.sequence}: {err}")
                continue
            self._answer(sequence, option_id, e.sequence)

    # -- agent -> engine ----------------------------------------------------------------

    def _observe(self, event: StreamEvent) -> None:
        """Called inline by the SDK's receive loop, in wire order, for every message."""
        if event.direction is not StreamDirection.INCOMING:
            return
        message = event.message
        method = message.get("method")
        params = message.get("params") or {}
        if method == "session/update":
            if self._replaying:
                self._replayed += 1  # our log already holds the session's history
                return
            self._queue.put_nowait(_Queued(self._agent_event("session/update", params)))
        elif method == "session/request_permission" and "id" in message:
            tool_call = params.get("toolCall") or {}
            queued = _Queued(
                self._agent_event(
                    REQUESTED,
                    {
                        "tool_call": tool_call,
                        "options": params.get("options") or [],
                        "session_id": params.get("sessionId"),
                    },
                ),
                tool_call.get("toolCallId"),
                asyncio.get_running_loop().create_future(),
            )
            self._requests.append(queued)
            self._queue.put_nowait(queued)

    async def _publish_loop(self) -> None:
        """Commit the queued events in order, as many per commit as are waiting."""
        while True:
            batch = [await self._queue.get()]
            if batch[0].linger and self._queue.empty():
                with contextlib.suppress(TimeoutError):
                    batch.append(await asyncio.wait_for(self._queue.get(), LINGER_S))
            while not self._queue.empty() and len(batch) < PUBLISH_BATCH:
                batch.append(self._queue.get_nowait())
            for queued in batch:
                if queued.slot is not None:
                    queued.draft = await queued.slot
            await self._commit([q for q in batch if q.draft is not None])
            for _ in batch:
                self._queue.task_done()

    async def _commit(self, batch: list[_Queued]) -> None:
        """One commit; each permission request learns its sequence (or that it has none)."""
        results = []
        if batch:
            try:
                drafts = [q.draft for q in batch if q.draft is not None]
                results = await self.engine.publish_batch(self.axon_id, drafts, system=True)
            except AxonError as e:
                self.hooks.on_log(f"axons: could not record the agent's updates: {e.message}")
        for i, queued in enumerate(batch):
            if queued.sequence is not None and not queued.sequence.done():
                if i < len(results):
                    queued.sequence.set_result(results[i].sequence)
                else:
                    queued.sequence.set_exception(ProtocolError("not recorded"))

    async def _publish_now(self, draft: Draft) -> None:
        """A system event, after everything queued before it."""
        await self._queue.join()
        with contextlib.suppress(AxonError):
            await self.engine.publish(self.axon_id, draft, system=True)

    def _agent_event(self, event_type: str, body: dict[str, Any]) -> Draft:
        payload = orjson.dumps(body).decode()
        if len(payload) > self.engine.max_payload:  # say what was too big, rather than lose it
            raw = body.get("update")
            update: dict[str, Any] = raw if isinstance(raw, dict) else {}
            payload = orjson.dumps(
                {
                    "sessionId": body.get("sessionId"),
                    "update": {
                        key: update[key]
                        for key in ("sessionUpdate", "toolCallId", "status", "title")
                        if key in update
                    },
                    "truncated": {"bytes": len(payload), "limit": self.engine.max_payload},
                }
            ).decode()
        return Draft(event_type, payload, self.agent, "AGENT_EVENT", author=self.agent)

    def _system(self, event_type: str, body: dict[str, Any]) -> Draft:
        return Draft(
            event_type, orjson.dumps(body).decode(), self.agent, "SYSTEM_EVENT", author="axons"
        )

    async def serve(self) -> None:
        """Until the agent closes its stdout: publish its updates, drain its stderr."""
        publisher = asyncio.create_task(self._publish_loop())
        logs = asyncio.create_task(read_logs(self.io, self.hooks.on_log))
        ended = False
        try:
            await self._transport.closed.wait()
            ended = True
        finally:
            for sequence in list(self.pending):
                self._answer(sequence, None, None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.join(), 2.0)
            for task in [*self._tasks, publisher]:
                task.cancel()
            if self._turn is not None and not self._turn.done():
                self._turn.cancel()
            with contextlib.suppress(Exception):
                await self.conn.close()
            await end_logs(logs, ended)


def _cancelled() -> RequestPermissionResponse:
    return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))


def _error_body(e: RequestError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": e.code, "message": str(e)}
    if e.data is not None:
        body["data"] = e.data
    return body


class _Client:
    """What the agent may call on us. Deliberately not `acp.Client` (a Protocol whose
    un-overridden stubs answer `null`): every method exists and the ones we do not offer
    answer method-not-found."""

    def __init__(self, broker: AcpBroker) -> None:
        self._broker = broker

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        """Recorded by the broker's observer, in wire order, before this runs."""

    async def request_permission(
        self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any
    ) -> RequestPermissionResponse:
        return await self._broker.request_permission(tool_call, options)

    async def read_text_file(self, session_id: str, path: str, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("fs/read_text_file")

    async def write_text_file(self, session_id: str, path: str, content: str, **kw: Any) -> Any:
        raise RequestError.method_not_found("fs/write_text_file")

    async def create_terminal(self, session_id: str, command: str, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("terminal/create")

    async def terminal_output(self, session_id: str, terminal_id: str, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("terminal/output")

    async def release_terminal(self, session_id: str, terminal_id: str, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("terminal/release")

    async def wait_for_terminal_exit(self, session_id: str, terminal_id: str, **kw: Any) -> Any:
        raise RequestError.method_not_found("terminal/wait_for_exit")

    async def kill_terminal(self, session_id: str, terminal_id: str, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("terminal/kill")

    async def create_elicitation(self, message: str, mode: Any, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("elicitation/create")

    async def complete_elicitation(self, elicitation_id: str, **kwargs: Any) -> None:
        """A notification: nothing to answer."""

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(f"_{method}")

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        """Extensions we do not know are ignored, as the protocol asks."""
