"""Publish, both ways: the fast path (engine/api/fastpath.py) and the FastAPI routes must
answer every body the same. Two real servers over TCP share one engine: one as `axons serve`
builds it, one without the fast path, so every publish takes the route. Each posts the same
requests to an Axon of its own, in the same order, so even the sequence numbers match; only
the timestamps may differ.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import Engine
from engine.api.connections import ConnectionLimits
from engine.api.routes import events
from engine.api.server import create_asgi
from engine.api.servers import UvicornListener
from engine.tokens import TokenStore
from tests.http_support import message_body

MAX_PAYLOAD = 4096
SECRETS = {"github": "s3cret"}  # a signed webhook source: a token may not publish as it
WAIT_ROUNDS = 400  # x 50 ms: a generous deadline, reached only when something is broken


@dataclass
class Side:
    """One server, its Axon, and a client holding a publish token."""

    name: str
    http: httpx.AsyncClient
    axon: str

    async def post(
        self, path: str, content: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        response = await self.http.post(
            f"/v1/axons/{self.axon}/{path}",
            content=content,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return response.status_code, _comparable(response.json(), self.axon)


def _comparable(body: Any, axon: str) -> Any:
    """The body with timestamps left out and the Axon's id made neutral."""
    if isinstance(body, dict):
        return {k: _comparable(v, axon) for k, v in body.items() if k != "timestamp_ms"}
    if isinstance(body, list):
        return [_comparable(v, axon) for v in body]
    return body.replace(axon, "<axon>") if isinstance(body, str) else body


@dataclass
class Servers:
    fast: Side
    route: Side
    route_calls: Counter[str]  # publishes the FastAPI route served, per Axon
    tokens: dict[str, str]


@pytest.fixture
async def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Servers]:
    calls: Counter[str] = Counter()
    through_route = events.publish_body

    async def counted(api: Any, caller: Any, ref: str, body: Any, key: str | None) -> Any:
        calls[ref] += 1
        return await through_route(api, caller, ref, body, key)

    monkeypatch.setattr(events, "publish_body", counted)
    async with Engine(tmp_path / "home", max_payload=MAX_PAYLOAD) as engine:
        store = TokenStore(tmp_path / "home" / "catalog.db")
        tokens = {scope: store.create(scope, scope) for scope in ("read", "publish")}
        listeners = [
            UvicornListener(
                create_asgi(
                    engine,
                    store,
                    require_token=True,
                    webhook_secrets=SECRETS,
                    fast_publish=fast,
                ),
                _tcp_socket(),
                ConnectionLimits(),
            )
            for fast in (True, False)
        ]
        tasks = [asyncio.create_task(listener.run()) for listener in listeners]
        try:
            for _ in range(WAIT_ROUNDS):
                if all(listener.started for listener in listeners):
                    break
                await asyncio.sleep(0.05)
            sides = []
            for name, listener in zip(("fast", "route"), listeners, strict=True):
                host, port = listener.address  # type: ignore[misc]
                http = httpx.AsyncClient(
                    base_url=f"http://{host}:{port}",
                    headers={"Authorization": f"Bearer {tokens['publish']}"},
                    timeout=60,
                )
                axon = (await engine.create_axon(f"parity-{name}")).id
                sides.append(Side(name, http, axon))
            yield Servers(sides[0], sides[1], calls, tokens)
        finally:
            for listener in listeners:
                listener.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            for listener in listeners:
                listener.close()
            store.close()


def _tcp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def message(text: str = "hello", **extra: Any) -> bytes:
    return json.dumps(message_body(text, **extra)).encode()


def batch(*items: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(items)}).encode()


GOOD = message_body("good")

# (what it is, route, body, extra headers); posted in this order to both servers
REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("a good message", "publish", message(), {}),
    ("a key in the body", "publish", message("k", idempotency_key="field-1"), {}),
    ("the same key again", "publish", message("k", idempotency_key="field-1"), {}),
    ("header key over field", "publish", message(idempotency_key="f-2"), {"Idempotency-Key": "h"}),
    ("the header key again", "publish", message("other"), {"Idempotency-Key": "h"}),
    ("the field key, unused", "publish", message(idempotency_key="f-2"), {}),
    ("X-Request-Id as key", "publish", message(), {"X-Request-Id": "req-1"}),
    ("X-Request-Id again", "publish", message(), {"X-Request-Id": "req-1"}),
    ("unknown fields", "publish", message(colour="red", nested={"a": [1]}), {}),
    ("a batch", "publish/batch", batch(GOOD, message_body("two"), message_body("three")), {}),
    ("a batch with keys", "publish/batch", batch({**GOOD, "idempotency_key": "b-1"}, GOOD), {}),
    ("a batch ignores header keys", "publish/batch", batch(GOOD), {"Idempotency-Key": "h"}),
    ("an empty batch", "publish/batch", body(events=[]), {}),
    ("a batch of 10001", "publish/batch", batch(*[GOOD] * 10_001), {}),
    ("a batch with a bad event", "publish/batch", batch(GOOD, {**GOOD, "payload": 5}), {}),
    ("a batch that is a list", "publish/batch", json.dumps([GOOD]).encode(), {}),
    ("a single body as batch", "publish/batch", message(), {}),
    ("a batch body as single", "publish", batch(GOOD), {}),
    ("payload as an object", "publish", body(**{**GOOD, "payload": {"text": "x"}}), {}),
    ("event_type a number", "publish", body(**{**GOOD, "event_type": 5}), {}),
    ("origin a number", "publish", body(**{**GOOD, "origin": 7}), {}),
    ("source null", "publish", body(**{**GOOD, "source": None}), {}),
    ("no source", "publish", body(event_type="m", origin="USER_EVENT", payload="{}"), {}),
    ("an empty object", "publish", b"{}", {}),
    ("SYSTEM_EVENT origin", "publish", message(origin="SYSTEM_EVENT"), {}),
    ("an unknown origin", "publish", message(origin="BOT_EVENT"), {}),
    ("empty event_type", "publish", message(event_type=""), {}),
    ("long event_type", "publish", message(event_type="e" * 201), {}),
    ("empty key field", "publish", message(idempotency_key=""), {}),
    ("long key field", "publish", message(idempotency_key="k" * 256), {}),
    ("payload not JSON", "publish", body(**{**GOOD, "payload": "not json"}), {}),
    ("oversize payload", "publish", message("x" * MAX_PAYLOAD), {}),
    ("reserved source", "publish", message(source="github"), {}),
    ("reserved source, other case", "publish", message(source="GitHub"), {}),
    ("webhook key namespace", "publish", message(), {"Idempotency-Key": "webhook:github:1"}),
    ("truncated JSON", "publish", b'{"event_type": ', {}),
    ("an empty body", "publish", b"", {}),
    ("null", "publish", b"null", {}),
    ("a string", "publish", b'"text"', {}),
    ("not UTF-8", "publish", b'{"event_type": "\xff"}', {}),
    ("NaN in an unknown field", "publish", message()[:-1] + b', "x": NaN}', {}),
    ("a huge integer", "publish", message()[:-1] + b', "x": 123456789012345678901234567890}', {}),
    ("a lone surrogate", "publish", body(**{**GOOD, "payload": '"\\ud800"'}), {}),
    ("text/plain", "publish", message(), {"Content-Type": "text/plain"}),
    ("a +json type", "publish", message(), {"Content-Type": "application/vnd.axons+json"}),
    ("a charset", "publish", message(), {"Content-Type": "application/json; charset=utf-8"}),
    ("a read token", "publish", message(), {"Authorization": "<read>"}),
    ("no token", "publish", message(), {"Authorization": ""}),
    ("a bad token", "publish", message(), {"Authorization": "Bearer axt_nope"}),
]


async def test_every_body_gets_the_same_answer_both_ways(servers: Servers) -> None:
    answers: dict[str, list[tuple[int, Any]]] = {"fast": [], "route": []}
    for side in (servers.fast, servers.route):
        for _what, path, content, extra in REQUESTS:
            headers = dict(extra)
            if headers.get("Authorization") == "<read>":
                headers["Authorization"] = f"Bearer {servers.tokens['read']}"
            answers[side.name].append(await side.post(path, content, headers))
    pairs = zip(REQUESTS, answers["fast"], answers["route"], strict=True)
    differ = [(what, fast, route) for (what, *_), fast, route in pairs if fast != route]
    assert not differ, differ
    statuses = Counter(status for status, _ in answers["fast"])
    assert {200, 400, 401, 403, 413, 422} <= set(statuses), statuses  # a real mix


async def test_the_fast_path_serves_good_bodies_and_hands_on_the_rest(servers: Servers) -> None:
    """Parity must not come from the fast path passing everything on to the route."""
    fast = servers.fast
    assert (await fast.post("publish", message()))[0] == 200
    assert (await fast.post("publish/batch", batch(GOOD, GOOD)))[0] == 200
    assert servers.route_calls[fast.axon] == 0
    assert (await fast.post("publish", message(event_type="")))[0] == 422
    assert (await fast.post("publish", message(), {"Content-Type": "text/plain"}))[0] == 422
    assert servers.route_calls[fast.axon] == 0  # refused by validation, before the handler
    route = servers.route
    assert (await route.post("publish", message()))[0] == 200
    assert servers.route_calls[route.axon] == 1
