"""The publish routes without FastAPI's routing, for throughput.

`POST /v1/axons/{id}/publish` and `/publish/batch` carry most of an engine's requests. The
caller is authenticated from the headers before the body is read; a body is parsed once with
orjson (in a thread when large) and validated by the route's own models, then published as
the route would (`engine.api.publishing` is that one definition). Anything the route would
refuse (not JSON, a wrong field, an unexpected content type) is handed, byte for byte, to the
FastAPI app, so errors read exactly as they do on every other route and the OpenAPI
description stays the one source of truth.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api import publishing
from engine.api.gate import PRINCIPAL, refuse
from engine.errors import AxonError
from engine.models import Draft, PublishResult
from engine.tokens import Principal

PUBLISH = re.compile(r"^/v1/axons/(axn_[A-Za-z0-9]+)/publish(/batch)?$")
JSON = [(b"content-type", b"application/json")]
PARSE_IN_THREAD_BYTES = 256 << 10

Authenticate = Callable[[str | None], Principal]
Publish = Callable[[str, list[Draft]], Awaitable[list[PublishResult]]]


class FastPublish:
    """ASGI middleware: serves well-formed publishes itself, passes everything else on."""

    def __init__(self, app: ASGIApp, authenticate: Authenticate, publish: Publish) -> None:
        self.app = app
        self.authenticate = authenticate
        self.publish = publish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PUBLISH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)  # the first of a repeated header, as the routes see it
        axon_id = match.group(1)
        try:  # from the headers, before the body is read
            caller = scope.get(PRINCIPAL) or self.authenticate(headers.get("authorization"))
            caller.require("publish", axon_id)
        except AxonError as e:
            await refuse(send, e.status, e.to_dict())
            return
        if not publishing.is_json(headers.get("content-type")):
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        if raw is None:  # the client went away
            return
        body = await _parse(raw, batch=match.group(2) is not None)
        if body is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        key = publishing.request_key(headers.get("idempotency-key"), headers.get("x-request-id"))
        try:
            results = await self.publish(axon_id, publishing.drafts_of(body, caller, key))
        except AxonError as e:
            await _respond(send, e.status, orjson.dumps(e.to_dict()))
            return
        await _respond(send, 200, publishing.answer(body, results))


async def _parse(raw: bytes, *, batch: bool) -> publishing.PublishBody | None:
    """`publishing.well_formed`, in a worker thread when the body is large enough to hold up
    the event loop (a batch may be 64 MiB)."""
    if len(raw) < PARSE_IN_THREAD_BYTES:
        return publishing.well_formed(raw, batch=batch)
    return await asyncio.to_thread(publishing.well_formed, raw, batch=batch)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body again, then whatever the client does next (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
