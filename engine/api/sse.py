"""Server-sent event streams in the exact framing Runloop's SDK decodes: per event an
`id: <sequence>` line and one `data:` line of event JSON; keep-alives are lone comment lines
(never followed by a blank line, which the SDK would read as an empty event); failures are
`event: error` frames.

A client that stops reading is cut off once its bounded buffer fills, or when a write stalls
for too long; it resumes with `Last-Event-ID`. Publishers never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from engine.errors import AxonError
from engine.models import Event

KEEPALIVE = b": ping\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def event_frame(e: Event) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (e.sequence, e.json())


def error_frame(code: str, message: str) -> bytes:
    return b"event: error\ndata: %s\n\n" % orjson.dumps({"code": code, "message": message})


class EventStream(Response):
    """A response that relays an async iterator of events to one client."""

    def __init__(
        self,
        events: AsyncIterator[Event],
        *,
        buffer: int = 10_000,
        keepalive_s: float = 15.0,
        stall_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self._events = events
        self._buffer = buffer
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._keepalive_s = keepalive_s
        self._stall_timeout_s = stall_timeout_s
        self._overflowed = False
        self._failure: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        pump = asyncio.create_task(self._pump())
        relay = asyncio.create_task(self._relay(send))
        watcher = asyncio.create_task(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({relay, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, relay, watcher):
                task.cancel()
            for task in (pump, relay, watcher):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await self._events.aclose()  # type: ignore[attr-defined]

    async def _pump(self) -> None:
        queue = self._queue
        try:
            async for e in self._events:
                if queue.qsize() >= self._buffer:
                    self._overflowed = True
                    break
                queue.put_nowait(event_frame(e))
        except AxonError as e:
            self._failure = error_frame(e.code, e.message)
        finally:
            queue.put_nowait(None)  # the end marker

    async def _relay(self, send: Send) -> None:
        queue = self._queue
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self._keepalive_s)
            except TimeoutError:
                await self._send(send, KEEPALIVE)
                continue
            if item is None:
                break
            chunk = [item]
            while not queue.empty() and len(chunk) < 256:  # coalesce a burst into one write
                nxt = queue.get_nowait()
                if nxt is None:
                    queue.put_nowait(None)
                    break
                chunk.append(nxt)
            await self._send(send, b"".join(chunk))
        if self._overflowed:
            await self._send(
                send,
                error_frame(
                    "slow_consumer", "this client fell too far behind; reconnect with Last-Event-ID"
                ),
            )
        elif self._failure is not None:
            await self._send(send, self._failure)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, body: bytes) -> None:
        message: dict[str, Any] = {"type": "http.response.body", "body": body, "more_body": True}
        await asyncio.wait_for(send(message), self._stall_timeout_s)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
