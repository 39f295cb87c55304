"""The publish routes without FastAPI's routing and validation, for throughput.

`POST /v1/axons/{id}/publish` and `/publish/batch` carry most of an engine's requests. A
well-formed body is parsed once with orjson (in a thread when large), turned into drafts and
published directly; the engine's own checks still apply (`check_draft`). The caller is
authenticated from the headers before the body is read. Anything unusual (a body that is not
a JSON object with the expected string fields, an unknown content shape) is handed, byte for
byte, to the FastAPI app, so errors read exactly as they do on every other route and the OpenAPI
description stays the one source of truth.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api.gate import PRINCIPAL, refuse
from engine.errors import AxonError
from engine.models import Draft, PublishResult
from engine.tokens import Principal

PUBLISH = re.compile(r"^/v1/axons/(axn_[A-Za-z0-9]+)/publish(/batch)?$")
FIELDS = ("event_type", "origin", "payload", "source")
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
        headers = dict(scope["headers"])
        axon_id = match.group(1)
        try:  # from the headers, before the body is read
            caller = scope.get(PRINCIPAL) or self.authenticate(_text(headers.get(b"authorization")))
            caller.require("publish", axon_id)
        except AxonError as e:
            await refuse(send, e.status, e.to_dict())
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        batch = match.group(2) is not None
        drafts = await _parse(body, batch=batch, key=_key(headers))
        if drafts is None:
            await self.app(scope, _replay(body, receive), send)
            return
        for d in drafts:
            d.author = caller.name
        try:
            results = await self.publish(axon_id, drafts)
        except AxonError as e:
            await _respond(send, e.status, orjson.dumps(e.to_dict()))
            return
        if batch:
            answer = orjson.dumps({"results": [r.to_dict() for r in results]})
        else:
            answer = orjson.dumps(results[0].to_dict())
        await _respond(send, 200, answer)


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _key(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"idempotency-key") or headers.get(b"x-request-id")
    return raw.decode("latin-1") if raw else None


def _draft(item: Any, key: str | None) -> Draft | None:
    if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in FIELDS):
        return None
    own_key = item.get("idempotency_key")
    if own_key is not None and not isinstance(own_key, str):
        return None
    return Draft(
        item["event_type"], item["payload"], item["source"], item["origin"], key or own_key
    )


async def _parse(body: bytes, *, batch: bool, key: str | None) -> list[Draft] | None:
    """`_drafts`, in a worker thread when the body is large enough to hold up the event loop
    (a batch may be 64 MiB)."""
    if len(body) < PARSE_IN_THREAD_BYTES:
        return _drafts(body, batch=batch, key=key)
    return await asyncio.to_thread(_drafts, body, batch=batch, key=key)


def _drafts(body: bytes, *, batch: bool, key: str | None) -> list[Draft] | None:
    """Drafts from a well-formed body, or None to let the full app explain what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not batch:
        one = _draft(data, key)
        return [one] if one is not None else None
    items = data.get("events") if isinstance(data, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= 10_000:
        return None
    drafts = [_draft(item, None) for item in items]
    return None if any(d is None for d in drafts) else drafts  # type: ignore[return-value]


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
