"""Connection limits for uvicorn: how many sockets one listener keeps, and how long and how
large a request's head may be.

Uvicorn alone holds a socket that never sends a byte, or sends its headers one byte a
minute, forever; a thousand of them exhaust the engine's file descriptors. Here every
connection must deliver each request head within `head_timeout_s` (counted from the moment
the connection opens or the previous response ends) and in at most `max_head_bytes`. When a
listener holds `max_connections` sockets, a new one evicts the oldest connection that is
waiting for a request head, so idle and unfinished connections can never lock the engine out;
only when every connection is busy with a request is the new one refused, with a 503.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from engine.errors import ErrorCode


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    head_timeout_s: float = 15.0
    max_head_bytes: int = 64 << 10


def capped_by_descriptors(limits: ConnectionLimits, listeners: int) -> ConnectionLimits:
    """Raise the soft file-descriptor limit as far as allowed and keep the listeners' sockets
    to half of it, so the engine's own files (SQLite, Docker) always find a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if wanted > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    per_listener = max(16, soft // 2 // max(1, listeners))
    if limits.max_connections <= per_listener:
        return limits
    return ConnectionLimits(per_listener, limits.head_timeout_s, limits.max_head_bytes)


def raw_error(status: str, code: str, message: str) -> bytes:
    """A whole JSON error response with `connection: close`, for answers given before (or
    instead of) the ASGI app."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


BUSY = raw_error(
    "503 Service Unavailable",
    ErrorCode.TOO_MANY_CONNECTIONS,
    "every connection of this engine is busy with a request; retry in a moment",
)
HEAD_TOO_LARGE = raw_error(
    "431 Request Header Fields Too Large",
    ErrorCode.HEADERS_TOO_LARGE,
    "the request line and headers are too large; send fewer or shorter headers",
)


def limited_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The uvicorn `http` protocol class that enforces `limits`."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ConnectionLimits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0  # loop time when this connection began waiting for a head
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            self.connections.discard(self)
            self._cancel_head_timer()
            transport.write(BUSY)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_head = self._head_timer is not None
        super().data_received(data)
        if in_head and self._head_timer is not None:  # the head goes on after this chunk
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._cancel_head_timer()
                self.transport.write(HEAD_TOO_LARGE)
                self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        idle = self.cycle is None or self.cycle.response_complete  # no pipelined request
        if idle and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._waiting_since = self.loop.time()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    @property
    def waiting_for_head(self) -> bool:
        return self._head_timer is not None

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request head; False when every
        other connection is busy with a request."""
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, LimitedHttpToolsProtocol) and c.waiting_for_head
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._waiting_since)
        oldest._cancel_head_timer()
        oldest.connections.discard(oldest)
        oldest.transport.close()
        return True
