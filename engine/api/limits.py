"""Bounds on what one request may cost: its body's size (413 before reading it all) and its
body's pace (408 for a client that trickles it, so an unfinished upload cannot hold a
connection forever). Both answers close the connection, since the rest of the body is unread.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api.gate import refuse
from engine.errors import ErrorCode


@dataclass(frozen=True)
class BodyPace:
    """A body must start within `grace_s` and then keep up `min_bytes_per_s` on average (the
    rule Kestrel uses): a slow network passes, a connection held by a trickle does not."""

    grace_s: float = 10.0
    min_bytes_per_s: int = 64 << 10

    def deadline(self, started: float, received: int) -> float:
        return started + self.grace_s + received / self.min_bytes_per_s


class _Refused(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        self.status = status
        self.error = error


class BodyLimit:
    """ASGI middleware: `default` bytes per request; `larger` maps a path suffix to its own;
    every body arrives at the `pace` given, or the request ends with a 408."""

    def __init__(
        self,
        app: ASGIApp,
        default: int,
        larger: dict[str, int] | None = None,
        pace: BodyPace | None = None,
    ) -> None:
        self.app = app
        self.default = default
        self.larger = larger or {}
        self.pace = pace or BodyPace()

    def limit_for(self, path: str) -> int:
        return next((n for suffix, n in self.larger.items() if path.endswith(suffix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await refuse(send, 413, _too_large(limit))
            return
        started_at = asyncio.get_running_loop().time()
        received = 0
        body_done = False
        response_started = False
        refusal: _Refused | None = None

        async def limited_receive() -> Message:
            nonlocal received, body_done, refusal
            if body_done:  # later reads only wait for the client to hang up (SSE)
                return await receive()
            try:
                async with asyncio.timeout_at(self.pace.deadline(started_at, received)):
                    message = await receive()
            except TimeoutError:
                refusal = _Refused(408, _too_slow(self.pace))
                raise refusal from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body")
                if received > limit:
                    refusal = _Refused(413, _too_large(limit))
                    raise refusal
            else:
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if refusal is not None and not response_started:
                return  # the app's answer to the cut-off body (FastAPI: a 400); ours wins
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_Refused):
            await self.app(scope, limited_receive, tracking_send)
        if refusal is not None and not response_started:
            await refuse(send, refusal.status, refusal.error)


def _too_large(limit: int) -> dict[str, Any]:
    return {
        "error": {
            "code": ErrorCode.PAYLOAD_TOO_LARGE,
            "message": f"the request body is larger than {limit} bytes; send less, or split it",
        }
    }


def _too_slow(pace: BodyPace) -> dict[str, Any]:
    return {
        "error": {
            "code": ErrorCode.REQUEST_TIMEOUT,
            "message": (
                f"the request body arrived too slowly (it must start within {pace.grace_s:g} s "
                f"and then keep up {pace.min_bytes_per_s} bytes/s); send it again"
            ),
        }
    }
