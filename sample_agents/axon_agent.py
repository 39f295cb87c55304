"""axon_agent: write an Axons agent with nothing but the Python 3.11 standard library.

The engine speaks the native protocol `axon` with the agent over stdin/stdout: JSON-RPC 2.0,
one JSON object per line. stderr is for logs (the engine turns it into `agent.log` events).

    from axon_agent import Agent, payload_of

    def handle(agent: Agent, event: dict) -> None:
        text = payload_of(event).get("text", "")
        agent.publish("message", {"text": f"you said: {text}"})
        agent.ack(event["sequence"])

    Agent("echo").run(handle)

- The engine sends the request `initialize` {protocol_version, axon_id, agent, cursor}; the
  helper answers it by itself and keeps `agent.axon_id`, `agent.cursor`.
- Each notification `axon/event` {event} is one turn: `run` calls handler(agent, event), then
  sends `turn/done` unless the handler already called `done()` or `idle()`.
- Calls (publish, sql, batch, ack, history, idle, done) are blocking requests: they return the
  engine's result or raise `AxonError`. A background thread reads stdin, so messages that
  arrive meanwhile are queued, never lost, and `axon/interrupt` {sequence} sets
  `agent.interrupted` at once (check it in long turns).
- `batch(statements, ack=seq)` commits the state writes and the cursor move together: an
  event's effects happen exactly once even when the engine re-delivers it after a crash.
- `idle()` ends the turn (`turn/done`) and then asks to be suspended (`axon/idle`).
- If the handler raises, the traceback goes to stderr and the turn ends with
  `turn/done {"error": "..."}` without an ack: the event is re-delivered after a restart.
"""

from __future__ import annotations

import itertools
import json
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

PROTOCOL_VERSION = 1
Event = dict[str, Any]
Handler = Callable[["Agent", Event], None]


class AxonError(Exception):
    """The engine answered a request with a JSON-RPC error (or the connection closed)."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method} failed ({code}): {message}")
        self.method, self.code, self.message, self.data = method, code, message, data


def payload_of(event: Event) -> Any:
    """The event's payload (JSON text on the wire) as Python data; {} when it is not JSON."""
    raw = event.get("payload", "{}")
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def committed_at(event: Event) -> str:
    """The event's commit time as ISO 8601 (UTC, ms): rows stamped with it, rather than with
    the clock, come out the same when the log is replayed."""
    ms = int(event.get("timestamp_ms") or 0)
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def log(*parts: object) -> None:
    """A line on stderr: the engine records it as an `agent.log` event."""
    print(*parts, file=sys.stderr, flush=True)


class Agent:
    """One agent process speaking the native protocol on stdin/stdout."""

    def __init__(
        self, name: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
    ) -> None:
        self.name = name
        self.axon_id: str | None = None
        self.cursor: int | None = None
        self.interrupted = False  # set by `axon/interrupt` during a turn
        self.interrupt_sequence: int | None = None
        self._in = stdin if stdin is not None else sys.stdin.buffer
        self._out = stdout if stdout is not None else sys.stdout.buffer
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._pending_lock = threading.Lock()
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._turn_open = False
        self._closed: str | None = None  # why no reply can come any more

    # ---- wire ---------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        line = json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":")) + "\n"
        with self._write_lock:
            self._out.write(line.encode())
            self._out.flush()

    def start(self) -> None:
        """Start the stdin reader (run() and the first call do it for you)."""
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_loop, name="axon-stdin", daemon=True)
            self._reader.start()

    def _read_loop(self) -> None:
        for raw in self._in:
            if not raw.strip():
                continue
            try:
                msg = json.loads(raw)
            except ValueError:
                log(f"axon_agent: ignoring a line that is not JSON: {raw[:200]!r}")
                continue
            method = msg.get("method")
            if method is None:  # a response to one of our requests
                with self._pending_lock:
                    waiter = self._pending.pop(msg.get("id"), None)
                if waiter is not None:
                    waiter.put(msg)
            elif method == "initialize":
                self._initialize(msg)
            elif method == "axon/interrupt":
                self.interrupted = True
                self.interrupt_sequence = (msg.get("params") or {}).get("sequence")
            else:
                self._inbox.put(msg)
        self._fail_pending("the engine closed stdin", closed=True)
        self._inbox.put(None)

    def _initialize(self, msg: dict[str, Any]) -> None:
        params = msg.get("params") or {}
        if self.axon_id is not None:  # a new engine attached: our in-flight calls are lost
            self._fail_pending("the engine re-initialised the connection")
        self.axon_id, self.cursor = params.get("axon_id"), params.get("cursor")
        self._send(
            {
                "id": msg.get("id"),
                "result": {"protocol_version": PROTOCOL_VERSION, "agent": self.name},
            }
        )

    def _fail_pending(self, why: str, closed: bool = False) -> None:
        with self._pending_lock:
            waiters, self._pending = self._pending, {}
            if closed:
                self._closed = why
        for waiter in waiters.values():
            waiter.put({"error": {"code": -32000, "message": why}})

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a request and block until its response; raise AxonError on an error."""
        self.start()
        request_id = next(self._ids)
        waiter: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
        with self._pending_lock:
            if self._closed:
                raise AxonError(method, -32000, self._closed)
            self._pending[request_id] = waiter
        self._send({"id": request_id, "method": method, "params": params or {}})
        reply = waiter.get()
        if "error" in reply:
            err = reply["error"] or {}
            raise AxonError(
                method, err.get("code", -32000), err.get("message", "error"), err.get("data")
            )
        return reply.get("result")

    # ---- the protocol's requests ----------------------------------------------------------
    def publish(
        self, event_type: str, payload: dict[str, Any], source: str | None = None
    ) -> dict[str, Any]:
        """Publish an AGENT_EVENT; returns {sequence, timestamp_ms} once it is durable."""
        params: dict[str, Any] = {"event_type": event_type, "payload": json.dumps(payload)}
        if source is not None:
            params["source"] = source
        result: dict[str, Any] = self.call("axon/publish", params)
        return result

    def sql(self, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
        """One statement; returns {columns: [{name, type}], rows: [[...]], meta}."""
        result: dict[str, Any] = self.call("axon/sql", {"sql": sql, "params": params or []})
        return result

    def batch(
        self, statements: list[tuple[str, list[Any]] | dict[str, Any]], ack: int | None = None
    ) -> dict[str, Any]:
        """All-or-nothing statements ((sql, params) or {sql, params}); with `ack`, the cursor
        moves to that sequence in the same commit. Raises AxonError if a statement failed."""
        stmts = [
            s if isinstance(s, dict) else {"sql": s[0], "params": list(s[1])} for s in statements
        ]
        params: dict[str, Any] = {"statements": stmts}
        if ack is not None:
            params["ack"] = ack
        result: dict[str, Any] = self.call("axon/batch", params)
        for i, item in enumerate(result.get("results", [])):
            if "error" in item:
                raise AxonError(
                    "axon/batch", -32000, f"statement {i} failed: {item['error'].get('message')}"
                )
        return result

    def ack(self, sequence: int) -> None:
        """Move the durable cursor: events up to `sequence` will not be re-delivered."""
        self.call("axon/ack", {"sequence": sequence})

    def history(self, after: int | None = None, limit: int | None = None) -> Any:
        """Earlier events of the Axon (after `after`, at most `limit`)."""
        params = {k: v for k, v in (("after", after), ("limit", limit)) if v is not None}
        return self.call("axon/history", params)

    def done(self, error: str | None = None) -> None:
        """End the current turn (`turn/done`); a no-op outside a turn."""
        if self._turn_open:
            self._turn_open = False
            self.call("turn/done", {"error": error} if error else {})

    def idle(self) -> None:
        """End the turn, then ask the engine to suspend this agent now (`axon/idle`)."""
        self.done()
        self.call("axon/idle", {})

    # ---- the turn loop ----------------------------------------------------------------------
    def run(self, handler: Handler) -> None:
        """Handle `axon/event` notifications one turn at a time until stdin closes."""
        self.start()
        while (msg := self._inbox.get()) is not None:
            method = msg.get("method")
            if method == "axon/event":
                self._turn(handler, (msg.get("params") or {}).get("event") or {})
            elif "id" in msg:  # a request we do not know: say so rather than hang the engine
                self._send(
                    {
                        "id": msg["id"],
                        "error": {"code": -32601, "message": f"unknown method {method}"},
                    }
                )
            else:
                log(f"axon_agent: ignoring notification {method}")

    def _turn(self, handler: Handler, event: Event) -> None:
        self._turn_open, self.interrupted, self.interrupt_sequence = True, False, None
        error = None
        try:
            handler(self, event)
        except Exception as exc:
            log(traceback.format_exc().rstrip())
            error = f"{type(exc).__name__}: {exc}"
        try:
            self.done(error)
        except AxonError as exc:
            log(f"axon_agent: {exc}")
