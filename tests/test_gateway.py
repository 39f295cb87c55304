"""The Agent Gateway over real HTTP (contract §5.3): the engine's gateway server in front of
the scripted model server (a subprocess on 127.0.0.1), called the way the providers' SDKs
call it. Agents are admitted directly (`GatewayServer.admit`), so each test needs no agent
process; tests/test_gateway_agents.py runs real agents through it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from engine import Engine
from engine.errors import InvalidInput
from engine.models import AgentSpec
from engine.runtime import AgentKey

pytest.register_assert_rewrite(
    "tests.agents_support", "tests.acp_support", "tests.acp_real_support"
)
from tests.acp_real_support import ModelServer, model_server  # noqa: E402
from tests.agents_support import WAIT_S  # noqa: E402

REAL_KEY = "sk-real-key-for-the-gateway-tests"
TOOLS = [{"name": "Bash", "input_schema": {"type": "object", "properties": {}}}]
CHAT = {  # an OpenAI chat completion, streamed, with its usage at the end
    "model": "gpt-test",
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "Hi"}],
}
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}  # a Gemini request


@pytest.fixture
def model(tmp_path: Path) -> Iterator[ModelServer]:
    with model_server(tmp_path / "requests.jsonl") as server:
        yield server


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Engine]:
    monkeypatch.setenv("GATEWAY_TEST_KEY", REAL_KEY)
    async with Engine(tmp_path / "home", agent_runtime="process") as engine:
        yield engine


def spec_of(upstream: str, axon: str, **gateways: dict[str, Any]) -> AgentSpec:
    """An agent whose gateways go to `upstream` (unless an entry says otherwise)."""
    return AgentSpec.model_validate(
        {
            "name": "coder",
            "axon": axon,
            "command": ["true"],
            "gateways": {
                prefix: {"upstream": upstream, "secret": "GATEWAY_TEST_KEY", **options}
                for prefix, options in gateways.items()
            },
        }
    )


async def admitted(
    engine: Engine, upstream: str, name: str = "coder", *, docker: bool = False, **gw: Any
) -> tuple[str, AgentKey, Any]:
    """An agent admitted to the gateway (no process runs), on an Axon of its own."""
    axon_id = (await engine.create_axon(f"gw-{name}")).id
    spec = spec_of(upstream, axon_id, **gw).model_copy(update={"name": name})
    key = AgentKey(engine.agents.home_id, axon_id, name)
    return axon_id, key, await engine.agents.gateway.admit(key, spec, docker=docker)


def anthropic_body(text: str = "Hello") -> dict[str, Any]:
    return {
        "model": "claude-test",
        "max_tokens": 64,
        "stream": True,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": text}],
    }


async def events_of(
    engine: Engine, axon_id: str, event_type: str, count: int = 1
) -> list[dict[str, Any]]:
    """The `event_type` events of the Axon, once there are `count` of them: the gateway
    records a call as its answer ends, so the event may trail the client by a moment."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [
            {**orjson.loads(e.payload), "_source": e.source, "_origin": e.origin}
            for e in await engine.read_events(axon_id, 0, 1000)
            if e.event_type == event_type
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.01)


async def test_a_streamed_call_gets_the_real_key_and_is_an_event(
    engine: Engine, model: ModelServer
) -> None:
    axon_id, _key, admission = await admitted(engine, model.url, ANTHROPIC={"header": "x-api-key"})
    assert set(admission.env) == {"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"}
    assert admission.env["ANTHROPIC_API_KEY"] == admission.token != REAL_KEY
    base = admission.env["ANTHROPIC_BASE_URL"]
    assert base.startswith("http://127.0.0.1:") and base.endswith("/gw/ANTHROPIC")
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{base}/v1/messages",
            json=anthropic_body(),
            headers={"x-api-key": admission.token, "anthropic-version": "2023-06-01"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "Hello from the scripted model." in "".join(
        orjson.loads(line[5:]).get("delta", {}).get("text", "")
        for line in answer.text.splitlines()
        if line.startswith("data:")
    )
    (seen,) = model.requests()
    assert seen["key"] == REAL_KEY and seen["path"] == "/v1/messages"
    (event,) = await events_of(engine, axon_id, "gateway.request")
    assert event["_source"] == "coder" and event["_origin"] == "SYSTEM_EVENT"
    assert event["provider"] == "ANTHROPIC" and event["method"] == "POST"
    assert event["path"] == "/v1/messages" and event["status"] == 200
    assert event["usage"] == {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
    assert event["bytes_in"] == len(orjson.dumps(anthropic_body()))
    assert event["bytes_out"] == len(answer.content)
    assert event["duration_ms"] > 0
    logged = b"".join(e.json() for e in await engine.read_events(axon_id, 0, 1000))
    assert REAL_KEY.encode() not in logged and admission.token.encode() not in logged


async def test_wrong_and_revoked_tokens_get_401_in_the_providers_format(
    engine: Engine, model: ModelServer
) -> None:
    _axon, key, admission = await admitted(engine, model.url, ANTHROPIC={"header": "x-api-key"})
    url = admission.env["ANTHROPIC_BASE_URL"] + "/v1/messages"
    async with httpx.AsyncClient() as client:
        wrong = await client.post(url, json=anthropic_body(), headers={"x-api-key": "sk-guess"})
        missing = await client.post(url, json=anthropic_body())
        engine.agents.gateway.revoke(key)
        revoked = await client.post(
            url, json=anthropic_body(), headers={"x-api-key": admission.token}
        )
    assert wrong.status_code == 401
    assert wrong.json()["type"] == "error"
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert missing.status_code == 401 and revoked.status_code == 401
    assert "revoked" in revoked.json()["error"]["message"]
    assert model.requests() == []


async def test_every_way_an_sdk_sends_the_key_is_accepted(
    engine: Engine, model: ModelServer
) -> None:
    axon_id, _key, admission = await admitted(
        engine,
        model.url,
        OPENAI={"header": "authorization"},
        GEMINI={
            "header": "x-goog-api-key",
            "base_url_env": "GOOGLE_GEMINI_BASE_URL",
            "key_env": "GEMINI_API_KEY",
        },
    )
    openai = admission.env["OPENAI_BASE_URL"]
    gemini = admission.env["GOOGLE_GEMINI_BASE_URL"]
    assert admission.env["GEMINI_API_KEY"] == admission.env["OPENAI_API_KEY"] == admission.token
    async with httpx.AsyncClient() as client:
        bearer = await client.post(
            f"{openai}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {admission.token}"},
        )
        goog = await client.post(
            f"{gemini}/v1beta/models/gemini-test:streamGenerateContent",
            params={"alt": "sse"},
            json=CONTENTS,
            headers={"x-goog-api-key": admission.token},
        )
        query = await client.post(
            f"{gemini}/v1beta/models/gemini-test:generateContent",
            params={"key": admission.token},
            json=CONTENTS,
        )
    assert [bearer.status_code, goog.status_code, query.status_code] == [200, 200, 200]
    seen = model.requests()
    assert [r["key"] for r in seen] == [REAL_KEY] * 3
    assert seen[1]["path"] == "/v1beta/models/gemini-test:streamGenerateContent"
    events = await events_of(engine, axon_id, "gateway.request", 3)
    assert [e["provider"] for e in events] == ["OPENAI", "GEMINI", "GEMINI"]
    assert events[0]["usage"] == {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
    assert events[1]["usage"] == {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
    assert events[2]["usage"] == {"input_tokens": 10, "output_tokens": 1, "total_tokens": 11}
    assert all("key" not in e["path"] and "?" not in e["path"] for e in events)


async def raw_request(url: str, request_line: str, token: str) -> tuple[int, bytes]:
    """One request written by hand (no client library normalises its path)."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"{request_line}\r\nhost: {host}\r\nx-api-key: {token}\r\ncontent-length: 2\r\n"
        "connection: close\r\n\r\n{}".encode()
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


async def test_a_path_outside_the_upstream_is_refused(engine: Engine, model: ModelServer) -> None:
    _axon, _key, admission = await admitted(
        engine, f"{model.url}/api/v1", ANTHROPIC={"header": "x-api-key"}
    )
    base = admission.base_url
    refused = [
        "POST /gw/ANTHROPIC/../../v1/messages HTTP/1.1",
        "POST /gw/ANTHROPIC/%2e%2e/messages HTTP/1.1",
        "POST /gw/ANTHROPIC/..%2fmessages HTTP/1.1",
        "POST /gw/ANTHROPIC//evil.example/v1/messages HTTP/1.1",
        "POST /gw/ANTHROPIC/x\\..\\..\\messages HTTP/1.1",
        "POST http://evil.example/gw/ANTHROPIC/../v1/messages HTTP/1.1",
    ]
    for line in refused:
        status, answer = await raw_request(base, line, admission.token)
        assert status == 400, (line, answer)
        assert orjson.loads(answer)["error"]["type"] == "invalid_request_error"
        assert "outside the upstream" in orjson.loads(answer)["error"]["message"]
    # an absolute URL naming another host still goes to the upstream, never elsewhere
    status, _ = await raw_request(
        base, "POST http://evil.example/gw/ANTHROPIC/messages HTTP/1.1", admission.token
    )
    assert status == 400  # the scripted server's answer to `{}`: it was the upstream
    assert [r["path"] for r in model.requests()] == ["/api/v1/messages"]


async def test_the_rate_limit_answers_429_and_says_why(engine: Engine, model: ModelServer) -> None:
    axon_id, _key, admission = await admitted(
        engine, model.url, ANTHROPIC={"header": "x-api-key", "requests_per_minute": 2}
    )
    url = admission.env["ANTHROPIC_BASE_URL"] + "/v1/messages"
    headers = {"x-api-key": admission.token}
    async with httpx.AsyncClient() as client:
        answers = [await client.post(url, json=anthropic_body(), headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[2]
    assert limited.json()["type"] == "error"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert len(model.requests()) == 2
    (event,) = await events_of(engine, axon_id, "gateway.limited")
    assert event["provider"] == "ANTHROPIC" and event["limit"] == "requests_per_minute"
    assert event["allowed"] == 2 and event["used"] == 2 and event["_source"] == "coder"


async def test_the_token_budget_answers_429_in_each_providers_format(
    engine: Engine, model: ModelServer
) -> None:
    axon_id, key, admission = await admitted(
        engine,
        model.url,
        OPENAI={"header": "authorization", "token_budget": 5},
        GEMINI={"header": "x-goog-api-key", "token_budget": 5},
    )
    openai = admission.env["OPENAI_BASE_URL"] + "/v1/chat/completions"
    gemini = admission.env["GEMINI_BASE_URL"] + "/v1beta/models/g:streamGenerateContent"
    bearer = {"Authorization": f"Bearer {admission.token}"}
    goog = {"x-goog-api-key": admission.token}
    async with httpx.AsyncClient() as client:
        first = await client.post(openai, json=CHAT, headers=bearer)
        over = await client.post(openai, json=CHAT, headers=bearer)
        g_first = await client.post(gemini, json=CONTENTS, headers=goog)
        g_over = await client.post(gemini, json=CONTENTS, headers=goog)
        # a new start (a new token), even after the engine forgot the agent, keeps what was
        # spent: the budget counts what the Axon's log records
        await engine.agents.gateway.forget(key)
        again = await engine.agents.gateway.admit(
            key,
            spec_of(model.url, axon_id, OPENAI={"header": "authorization", "token_budget": 5}),
            docker=False,
        )
        still = await client.post(
            openai, json=CHAT, headers={"Authorization": f"Bearer {again.token}"}
        )
    assert [first.status_code, over.status_code, g_first.status_code, g_over.status_code] == [
        200,
        429,
        200,
        429,
    ]
    assert over.json()["error"]["type"] == "rate_limit_exceeded"
    assert over.json()["error"]["code"] == "insufficient_quota"
    assert g_over.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert g_over.json()["error"]["code"] == 429
    assert still.status_code == 429
    events = await events_of(engine, axon_id, "gateway.limited", 3)
    assert [(e["provider"], e["limit"], e["used"]) for e in events] == [
        ("OPENAI", "token_budget", 13),
        ("GEMINI", "token_budget", 13),
        ("OPENAI", "token_budget", 13),
    ]
    assert len(model.requests()) == 2


async def test_an_sse_answer_streams_through_unbuffered(engine: Engine, model: ModelServer) -> None:
    """The scripted SLOW_REPLY sends a delta every half second for 20 s: the first one
    arrives through the gateway while the model server is still far from done."""
    axon_id, _key, admission = await admitted(engine, model.url, ANTHROPIC={"header": "x-api-key"})
    url = admission.env["ANTHROPIC_BASE_URL"] + "/v1/messages"
    received = b""
    async with (
        httpx.AsyncClient() as client,
        client.stream(
            "POST", url, json=anthropic_body("SLOW_REPLY"), headers={"x-api-key": admission.token}
        ) as answer,
    ):
        assert answer.status_code == 200
        async for chunk in answer.aiter_raw():
            received += chunk
            if b"slow 1 " in received:
                break
    assert b"slow 2 " not in received and b"message_stop" not in received
    # the agent hung up early: the call is still an event, with what passed
    (event,) = await events_of(engine, axon_id, "gateway.request")
    assert event["status"] == 200 and event["bytes_out"] >= len(received) > 0
    assert event["usage"]["input_tokens"] == 10


async def test_a_docker_agents_socket_takes_only_its_own_token(
    engine: Engine, model: ModelServer
) -> None:
    _a, _ka, mine = await admitted(
        engine, model.url, "boxed", docker=True, ANTHROPIC={"header": "x-api-key"}
    )
    _b, _kb, other = await admitted(engine, model.url, "other", ANTHROPIC={"header": "x-api-key"})
    assert mine.mount is not None
    assert mine.env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:18181/gw/ANTHROPIC"
    folder = mine.mount.host_dir
    assert (folder / "relay.py").is_file()
    sock = folder / "gw.sock"
    assert oct(sock.stat().st_mode & 0o777) == "0o666"
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # the tmp path may be too long to bind
    transport = httpx.AsyncHTTPTransport(uds=f"/proc/self/fd/{fd}/gw.sock")
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        own = await client.post(
            "/gw/ANTHROPIC/v1/messages", json=anthropic_body(), headers={"x-api-key": mine.token}
        )
        foreign = await client.post(
            "/gw/ANTHROPIC/v1/messages", json=anthropic_body(), headers={"x-api-key": other.token}
        )
    os.close(fd)
    assert own.status_code == 200 and foreign.status_code == 401
    # and a Docker agent's token is no key to the loopback listener
    async with httpx.AsyncClient() as client:
        outside = await client.post(
            other.env["ANTHROPIC_BASE_URL"] + "/v1/messages",
            json=anthropic_body(),
            headers={"x-api-key": mine.token},
        )
    assert outside.status_code == 401


async def test_an_unknown_gateway_or_mount_is_404(engine: Engine, model: ModelServer) -> None:
    _axon, _key, admission = await admitted(engine, model.url, OPENAI={})
    async with httpx.AsyncClient(base_url=admission.base_url) as client:
        bearer = {"Authorization": f"Bearer {admission.token}"}
        unknown = await client.post("/gw/ANTHROPIC/v1/messages", json={}, headers=bearer)
        nothing = await client.get("/nothing/here", headers=bearer)
    assert unknown.status_code == 404
    assert "no gateway 'ANTHROPIC'" in unknown.json()["error"]["message"]
    assert nothing.status_code == 404


async def test_a_mounted_app_sees_the_calling_agent(engine: Engine, model: ModelServer) -> None:
    """The seam the MCP gateway plugs into: an ASGI app at /<name>/, behind the token."""
    seen: list[tuple[str, str, str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        grant = scope["axons.grant"]
        seen.append((grant.key.name, scope["path"], scope["root_path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    engine.agents.gateway.mount("tools", app)
    _axon, _key, admission = await admitted(engine, model.url, OPENAI={})
    async with httpx.AsyncClient(base_url=admission.base_url) as client:
        ok = await client.post(
            "/tools/rpc/x", headers={"Authorization": f"Bearer {admission.token}"}
        )
        refused = await client.post("/tools/rpc/x", headers={"Authorization": "Bearer nope"})
    assert ok.status_code == 204 and refused.status_code == 401
    assert seen == [("coder", "/rpc/x", "/tools")]


async def test_a_gateway_key_missing_from_the_engine_is_refused_at_add(
    engine: Engine, model: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_TEST_KEY")
    axon_id = (await engine.create_axon("gw")).id
    with pytest.raises(InvalidInput) as refused:
        await engine.agents.add(spec_of(model.url, axon_id, ANTHROPIC={}))
    assert refused.value.code == "missing_secret"
    assert "ANTHROPIC (GATEWAY_TEST_KEY)" in refused.value.message


@pytest.mark.parametrize(
    ("gateways", "says"),
    [
        ({"anthropic": {"upstream": "https://a.example", "secret": "K"}}, "upper-case letters"),
        ({"A": {"upstream": "file:///etc/passwd", "secret": "K"}}, "http(s) URL with a host"),
        ({"A": {"upstream": "https://a.example?x=1", "secret": "K"}}, "no user, password, query"),
        ({"A": {"upstream": "https://u:p@a.example", "secret": "K"}}, "no user, password, query"),
        ({"A": {"upstream": "https://a.example:99999", "secret": "K"}}, "is not a URL"),
        ({"A": {"upstream": "https://a.example", "secret": "K", "header": "bad header"}}, "header"),
        (
            {"A": {"upstream": "https://a.example", "secret": "K", "requests_per_minute": 0}},
            "requests_per_minute",
        ),
        (
            {
                "A": {"upstream": "https://a.example", "secret": "K", "key_env": "HOME"},
                "B": {"upstream": "https://b.example", "secret": "K", "key_env": "HOME"},
            },
            "also set by",
        ),
    ],
)
def test_a_bad_gateway_says_what_to_fix(gateways: dict[str, Any], says: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as refused:
        AgentSpec.model_validate(
            {"name": "a", "axon": "x", "command": ["true"], "gateways": gateways}
        )
    assert says in str(refused.value)


@contextlib.asynccontextmanager
async def echo_upstream() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An upstream on 127.0.0.1 that records each request's headers and answers with
    hop-by-hop headers of its own (uvicorn, real HTTP)."""
    seen: list[dict[str, str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        headers = [
            (b"content-type", b"application/json"),
            (b"connection", b"keep-alive, x-upstream-hop"),
            (b"x-upstream-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"x-request-id", b"req-1"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/base", seen
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_hop_by_hop_headers_stay_on_their_hop(engine: Engine) -> None:
    async with echo_upstream() as (upstream, seen):
        axon_id, _key, admission = await admitted(engine, upstream, OPENAI={})
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                admission.env["OPENAI_BASE_URL"] + "/models",
                params={"limit": "2"},
                headers={
                    "Authorization": f"Bearer {admission.token}",
                    "Connection": "keep-alive, x-agent-hop",
                    "X-Agent-Hop": "1",
                    "Proxy-Authorization": "Basic c2VjcmV0",
                    "TE": "trailers",
                    "X-Agent-Header": "kept",
                },
            )
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert answer.headers["x-request-id"] == "req-1"
    assert "x-upstream-hop" not in answer.headers and "keep-alive" not in answer.headers
    (headers,) = seen
    assert headers["authorization"] == f"Bearer {REAL_KEY}"
    assert headers["x-agent-header"] == "kept" and headers["accept-encoding"] == "identity"
    for hop in ("x-agent-hop", "proxy-authorization", "te"):
        assert hop not in headers, headers
    assert admission.token not in str(headers)
    (event,) = await events_of(engine, axon_id, "gateway.request")
    assert event["path"] == "/models" and event["method"] == "GET" and "usage" not in event


async def test_an_unreachable_upstream_is_a_502_and_an_event(engine: Engine) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    axon_id, _key, admission = await admitted(
        engine, f"http://127.0.0.1:{port}", GEMINI={"header": "x-goog-api-key"}
    )
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            admission.env["GEMINI_BASE_URL"] + "/v1beta/models/g:generateContent",
            json=CONTENTS,
            headers={"x-goog-api-key": admission.token},
        )
    assert answer.status_code == 502
    assert answer.json()["error"]["status"] == "UNAVAILABLE"
    assert "could not reach" in answer.json()["error"]["message"]
    (event,) = await events_of(engine, axon_id, "gateway.request")
    assert event["status"] == 502 and event["error"].startswith("upstream unreachable")
