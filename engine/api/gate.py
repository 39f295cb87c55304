"""Authenticate a TCP request from its headers before a byte of its body is read.

Without this gate the app read (and parsed) a body first and only then found the token
missing: an anonymous 63 MiB upload held the event loop and a gigabyte of memory before its
401. The gate answers 401 at once and closes the connection, so the body is never read. The
principal it found rides along in the scope, for the routes and for SSE streams, which
re-check it while they stay open (a revoked token ends its streams).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.errors import AxonError
from engine.tokens import Principal

PRINCIPAL = "axons.principal"  # scope key: the Principal the gate authenticated
STILL_AUTHORIZED = "axons.still_authorized"  # scope key: () -> bool, False once revoked

# Routes that need no bearer token: liveness, and webhooks, whose senders (GitHub, Slack)
# cannot send one; a webhook source with a secret is authenticated by its signature, which
# covers the body, so the route must read it (under the small default body cap).
OPEN_PATHS = re.compile(r"^/healthz$|^/v1/axons/[^/]+/webhook/[^/]+$")
DOCS_PATHS = re.compile(r"^/(openapi\.json|docs|docs/oauth2-redirect|redoc)$")

Authenticate = Callable[[str | None], Principal]


class TokenGate:
    """ASGI middleware for the TCP listener: every request but the open ones must carry a
    valid bearer token in its headers. `public_docs` also opens /openapi.json and /docs."""

    def __init__(self, app: ASGIApp, authenticate: Authenticate, *, public_docs: bool) -> None:
        self.app = app
        self.authenticate = authenticate
        self.public_docs = public_docs

    def is_open(self, path: str) -> bool:
        return bool(OPEN_PATHS.match(path)) or (self.public_docs and bool(DOCS_PATHS.match(path)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        try:
            principal = self.authenticate(authorization)
        except AxonError as e:
            await refuse(send, e.status, e.to_dict())
            return
        scope[PRINCIPAL] = principal
        scope[STILL_AUTHORIZED] = lambda: self._still_valid(authorization)
        await self.app(scope, receive, send)

    def _still_valid(self, authorization: str | None) -> bool:
        try:
            self.authenticate(authorization)
        except AxonError:
            return False
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A whole JSON answer from plain ASGI: `body` encoded, its length, and `headers` more."""
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def refuse(send: Send, status: int, error: dict[str, Any]) -> None:
    """Answer with a JSON error and close the connection: the request's body, if any, is
    left unread, so the connection cannot carry another request."""
    await send_json(send, status, error, [(b"connection", b"close")])
