"""The native protocol `axon` (CONTRACT §5.1): JSON-RPC 2.0, one object per line.

The engine sends `initialize` and `axon/event` notifications; the agent calls back with
`axon/publish`, `axon/sql`, `axon/batch` (with `ack`: state and cursor commit together),
`axon/ack`, `axon/history`, `axon/idle` and `turn/done`. Requests are handled in the order
they arrive, so an agent that publishes and then idles sees exactly that order in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import AxonError, ProtocolError
from engine.models import Draft, Event
from engine.runtime.base import AgentIO

PROTOCOL_VERSION = 1
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, ENGINE_ERROR = (
    -32700,
    -32600,
    -32601,
    -32602,
    -32000,
)


@dataclass
class BrokerHooks:
    """What the supervisor hears from the broker."""

    on_idle: Callable[[], None]
    on_turn_done: Callable[[str | None], None]
    on_log: Callable[[str], None]


class NativeBroker:
    """One live connection to one agent."""

    def __init__(self, engine: Any, axon_id: str, agent: str, io: AgentIO, hooks: BrokerHooks):
        self.engine = engine
        self.axon_id = axon_id
        self.agent = agent
        self.io = io
        self.hooks = hooks
        self._next_id = 0
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._write_lock = asyncio.Lock()
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "axon/publish": self._publish,
            "axon/sql": self._sql,
            "axon/batch": self._batch,
            "axon/ack": self._ack,
            "axon/history": self._history,
            "axon/idle": self._idle,
            "turn/done": self._turn_done,
        }

    # -- engine -> agent ----------------------------------------------------------------

    async def initialize(self, cursor: int, timeout_s: float = 30.0) -> Any:
        return await asyncio.wait_for(
            self.call(
                "initialize",
                {
                    "protocol_version": PROTOCOL_VERSION,
                    "axon_id": self.axon_id,
                    "agent": self.agent,
                    "cursor": cursor,
                },
            ),
            timeout_s,
        )

    async def send_event(self, event: Event) -> None:
        await self._send(
            {"jsonrpc": "2.0", "method": "axon/event", "params": {"event": event.to_dict()}}
        )

    async def interrupt(self, sequence: int) -> None:
        await self._send(
            {"jsonrpc": "2.0", "method": "axon/interrupt", "params": {"sequence": sequence}}
        )

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = future
        try:
            await self._send(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            )
            return await future
        finally:
            self._calls.pop(request_id, None)

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._write_lock:
            await self.io.write(orjson.dumps(message) + b"\n")

    # -- agent -> engine ----------------------------------------------------------------

    async def serve(self) -> None:
        """Read the agent's stdout (and stderr) until it closes."""
        logs = asyncio.create_task(self._read_logs())
        ended = False
        try:
            while line := await self.io.stdout.readline():
                if line.strip():
                    await self._handle(line)
            ended = True
        except (ValueError, asyncio.LimitOverrunError):
            self.hooks.on_log("axons: a line on stdout was too long; closing the agent's channel")
        finally:
            for future in self._calls.values():
                if not future.done():
                    future.set_exception(ProtocolError("the agent closed its stdout"))
            # When the agent exits, stderr ends with stdout and its last lines matter (they go
            # into agent.failed): give them a moment. When we are the ones leaving, don't wait.
            if not ended:
                logs.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(logs, 0.5)

    async def _read_logs(self) -> None:
        while line := await self.io.stderr.readline():
            self.hooks.on_log(line.decode(errors="replace").rstrip("\n"))

    async def _handle(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            await self._reply_error(None, PARSE_ERROR, "not JSON: one JSON-RPC object per line")
            return
        if not isinstance(message, dict):
            await self._reply_error(None, INVALID_REQUEST, "a JSON-RPC message is an object")
            return
        if "method" not in message:  # a response to one of our calls
            future = self._calls.get(message.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(ProtocolError(str(message["error"])))
                else:
                    future.set_result(message.get("result"))
            return
        request_id = message.get("id")
        method = self._methods.get(message["method"])
        if method is None:
            await self._reply_error(
                request_id, METHOD_NOT_FOUND, f"unknown method {message['method']!r}"
            )
            return
        params = message.get("params") or {}
        if not isinstance(params, dict):
            await self._reply_error(request_id, INVALID_PARAMS, "params must be an object")
            return
        try:
            result = await method(params)
        except AxonError as e:
            await self._reply_error(request_id, ENGINE_ERROR, e.message, {"code": e.code})
            return
        except (KeyError, TypeError, ValueError) as e:
            await self._reply_error(request_id, INVALID_PARAMS, f"bad params: {e}")
            return
        if request_id is not None:
            await self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def _reply_error(
        self, request_id: Any, code: int, message: str, data: dict[str, Any] | None = None
    ) -> None:
        if request_id is None and code not in (PARSE_ERROR, INVALID_REQUEST):
            return  # a failed notification has nobody to tell
        error: dict[str, Any] = {"code": code, "message": message}
        if data:
            error["data"] = data
        await self._send({"jsonrpc": "2.0", "id": request_id, "error": error})

    async def _publish(self, p: dict[str, Any]) -> dict[str, int]:
        payload = p.get("payload", {})
        text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        draft = Draft(
            p["event_type"],
            text,
            p.get("source") or self.agent,
            "AGENT_EVENT",
            p.get("idempotency_key"),
            self.agent,
        )
        return (await self.engine.publish(self.axon_id, draft)).to_dict()

    async def _sql(self, p: dict[str, Any]) -> Any:
        result = await self.engine.query(self.axon_id, p["sql"], p.get("params"), write=True)
        return result.model_dump()

    async def _batch(self, p: dict[str, Any]) -> Any:
        ack = p.get("ack")
        results = await self.engine.batch(
            self.axon_id, p["statements"], ack=(self.agent, int(ack)) if ack is not None else None
        )
        return {"results": [{"success": r.model_dump()} for r in results]}

    async def _ack(self, p: dict[str, Any]) -> dict[str, int]:
        return {"cursor": await self.engine.ack(self.axon_id, self.agent, int(p["sequence"]))}

    async def _history(self, p: dict[str, Any]) -> dict[str, Any]:
        events = await self.engine.read_events(
            self.axon_id, int(p.get("after") or 0), int(p.get("limit") or 100)
        )
        return {"events": [e.to_dict() for e in events]}

    async def _idle(self, _p: dict[str, Any]) -> dict[str, Any]:
        self.hooks.on_idle()
        return {}

    async def _turn_done(self, p: dict[str, Any]) -> dict[str, Any]:
        error = p.get("error")
        self.hooks.on_turn_done(str(error) if error else None)
        return {}
