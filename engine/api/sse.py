"""Server-sent event streams in the exact framing Runloop's SDK decodes: per event an
`id: <sequence>` line and one `data:` line of event JSON; keep-alives are lone comment lines
(never followed by a blank line, which the SDK would read as an empty event); failures are
`event: error` frames.

What one stream may hold is bounded in events and in bytes. A client that stops reading is
cut off once that buffer fills, or when a write stalls for too long; what it held is dropped
at once, and it resumes with `Last-Event-ID`. Publishers never wait for it. A stream opened
with a token ends (`token_revoked`) soon after that token is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from engine.api.gate import STILL_AUTHORIZED
from engine.errors import AxonError, ErrorCode
from engine.models import Event

KEEPALIVE = b": ping\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
WRITE_BYTES = 256 << 10  # a burst is coalesced into writes of about this size


@dataclass(frozen=True)
class StreamLimits:
    """`events` and `bytes`: what one client's buffer may hold before it is cut off;
    `stall_s`: how long one write may wait for the client; `keepalive_s`: idle time before a
    `: ping`; `recheck_s`: how often a token-bearing stream checks its token is still valid."""

    events: int = 10_000
    bytes: int = 4 << 20
    stall_s: float = 30.0
    keepalive_s: float = 15.0
    recheck_s: float = 1.0


def event_frame(e: Event) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (e.sequence, e.json())


def error_frame(code: str, message: str) -> bytes:
    return b"event: error\ndata: %s\n\n" % orjson.dumps({"code": code, "message": message})


SLOW_CONSUMER = error_frame(
    ErrorCode.SLOW_CONSUMER, "this client fell too far behind; reconnect with Last-Event-ID"
)
TOKEN_REVOKED = error_frame(
    ErrorCode.TOKEN_REVOKED, "the token of this stream was revoked; reconnect with a valid token"
)


class EventStream(Response):
    """A response that relays an async iterator of events to one client."""

    def __init__(self, events: AsyncIterator[Event], limits: StreamLimits | None = None) -> None:
        super().__init__(media_type="text/event-stream")
        self._events = events
        self._limits = limits or StreamLimits()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._cut = asyncio.Event()  # set when the stream must end early: `_closing` says why
        self._closing: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        tasks = [
            asyncio.create_task(self._pump()),
            relay := asyncio.create_task(self._relay(send)),
            watcher := asyncio.create_task(_wait_for_disconnect(receive)),
            cut := asyncio.create_task(self._cut.wait()),
        ]
        still_authorized = scope.get(STILL_AUTHORIZED)
        if still_authorized is not None:
            tasks.append(asyncio.create_task(self._watch_token(still_authorized)))
        client_gone = True
        try:
            await asyncio.wait({relay, watcher, cut}, return_when=asyncio.FIRST_COMPLETED)
            client_gone = watcher.done()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._drop_buffer()
            with contextlib.suppress(Exception):
                await self._events.aclose()  # type: ignore[attr-defined]
        if not client_gone:
            await self._finish(send)

    def _cut_off(self, closing: bytes) -> None:
        self._closing = closing
        self._drop_buffer()  # the memory goes back now, not when the client finally reads
        self._cut.set()

    def _drop_buffer(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queued_bytes = 0

    async def _pump(self) -> None:
        queue, limits = self._queue, self._limits
        try:
            async for e in self._events:
                frame = event_frame(e)
                if not queue.empty() and (
                    queue.qsize() >= limits.events or self._queued_bytes + len(frame) > limits.bytes
                ):
                    self._cut_off(SLOW_CONSUMER)
                    return
                self._queued_bytes += len(frame)
                queue.put_nowait(frame)
        except AxonError as e:
            self._closing = error_frame(e.code, e.message)
        finally:
            queue.put_nowait(None)  # the end marker, however the events ended

    async def _watch_token(self, still_authorized: Callable[[], bool]) -> None:
        while True:
            await asyncio.sleep(self._limits.recheck_s)
            if not still_authorized():
                self._cut_off(TOKEN_REVOKED)
                return

    async def _relay(self, send: Send) -> None:
        queue = self._queue
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self._limits.keepalive_s)
            except TimeoutError:
                await self._send(send, KEEPALIVE)
                continue
            if item is None:
                return
            chunk, size = [item], len(item)
            while not queue.empty() and size < WRITE_BYTES:  # coalesce a burst
                nxt = queue.get_nowait()
                if nxt is None:
                    queue.put_nowait(None)
                    break
                chunk.append(nxt)
                size += len(nxt)
            self._queued_bytes -= size
            await self._send(send, b"".join(chunk))

    async def _finish(self, send: Send) -> None:
        """The closing error frame, if any, then the end of the response; a client that does
        not take them within the stall time just loses its connection."""
        with contextlib.suppress(Exception):
            if self._closing is not None:
                await self._send(send, self._closing)
            await asyncio.wait_for(
                send({"type": "http.response.body", "body": b"", "more_body": False}),
                self._limits.stall_s,
            )

    async def _send(self, send: Send, body: bytes) -> None:
        message: dict[str, Any] = {"type": "http.response.body", "body": body, "more_body": True}
        await asyncio.wait_for(send(message), self._limits.stall_s)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
