"""Live streams over HTTP: several subscribers and `axons tail --follow` agree, keep-alives are
lone comment lines, a stalled subscriber never holds publishers back, a subscriber resumes
across a SIGKILL with Last-Event-ID, and a SIGTERM loses nothing acknowledged (contract §3,
§4.1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from runloop_api_client import AsyncRunloop

from tests.http_support import (
    AXONS,
    WAIT_S,
    ServerProcess,
    all_events,
    clean_env,
    make_token,
    message_body,
    running_server,
)


@dataclass
class Live:
    server: ServerProcess
    token: str


def start_live(tmp_path: Path, **options: Any) -> Iterator[Live]:
    home = tmp_path / "home"
    token = make_token(home, "admin", "admin")
    with running_server(home, **options) as server:
        yield Live(server, token)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    yield from start_live(tmp_path)


@pytest.fixture
def live_pinging(tmp_path: Path) -> Iterator[Live]:
    """A server whose SSE streams get a keep-alive after 0.1 s of silence."""
    yield from start_live(tmp_path, keepalive_s=0.1)


def create_axon(live: Live, name: str) -> str:
    with live.server.http(live.token) as http:
        r = http.post("/v1/axons", json={"name": name})
        r.raise_for_status()
        return str(r.json()["id"])


async def publish_all(http: httpx.AsyncClient, axon_id: str, texts: list[str]) -> list[int]:
    out = []
    for text in texts:
        r = await http.post(f"/v1/axons/{axon_id}/publish", json=message_body(text))
        assert r.status_code == 200, r.text
        out.append(r.json()["sequence"])
    return out


def identity(e: dict[str, Any]) -> tuple[int, str, str]:
    return e["sequence"], e["hash"], e["payload"]


# -- several readers, one log -----------------------------------------------------------


async def test_two_sse_subscribers_and_tail_follow_see_identical_sequences(live: Live) -> None:
    axon_id = create_axon(live, "fanout")
    early, total = 5, 300
    async with live.server.async_http(live.token) as http:
        await publish_all(http, axon_id, [f"early-{i}" for i in range(early)])

        replayed = {"httpx": asyncio.Event(), "sdk": asyncio.Event()}

        async def with_httpx_sse() -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            async with aconnect_sse(
                http, "GET", f"/v1/axons/{axon_id}/subscribe/sse", timeout=httpx.Timeout(WAIT_S)
            ) as source:
                assert source.response.status_code == 200
                async for sse in source.aiter_sse():
                    assert sse.event == "message" and sse.id == str(len(seen) + 1)
                    seen.append(json.loads(sse.data))
                    if len(seen) == early:
                        replayed["httpx"].set()
                    if len(seen) == total:
                        return seen
            raise AssertionError(f"the stream ended after {len(seen)} events")

        async def with_sdk() -> list[dict[str, Any]]:
            client = AsyncRunloop(
                base_url=live.server.url,
                bearer_token=live.token,
                max_retries=0,
                shared_http_pool=False,
                timeout=httpx.Timeout(WAIT_S),
            )
            seen: list[dict[str, Any]] = []
            try:
                stream = await client.axons.subscribe_sse(axon_id)
                async for event in stream:
                    seen.append(event.model_dump())
                    if len(seen) == early:
                        replayed["sdk"].set()
                    if len(seen) == total:
                        await stream.close()
                        return seen
            finally:
                await client.close()
            raise AssertionError(f"the SDK stream ended after {len(seen)} events")

        tail = await asyncio.create_subprocess_exec(
            AXONS,
            "tail",
            axon_id,
            "--follow",
            "--json",
            "--home",
            str(live.server.home),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(),
            limit=1 << 20,
        )
        assert tail.stdout is not None
        tail_seen: list[dict[str, Any]] = []

        async def read_tail(until: int) -> None:
            while len(tail_seen) < until:
                line = await tail.stdout.readline()  # type: ignore[union-attr]
                assert line, f"axons tail --follow ended: {(await tail.stderr.read()).decode()}"  # type: ignore[union-attr]
                tail_seen.append(json.loads(line))

        try:
            readers = [asyncio.create_task(with_httpx_sse()), asyncio.create_task(with_sdk())]
            # Everyone has replayed the history and now waits for live events.
            await asyncio.wait_for(
                asyncio.gather(*(e.wait() for e in replayed.values()), read_tail(early)), WAIT_S
            )

            async def publisher(n: int) -> None:
                texts = [f"live-{n}-{i}" for i in range((total - early) // 5)]
                await publish_all(http, axon_id, texts)

            await asyncio.wait_for(asyncio.gather(*(publisher(n) for n in range(5))), WAIT_S)
            via_httpx, via_sdk = await asyncio.wait_for(asyncio.gather(*readers), WAIT_S)
            await asyncio.wait_for(read_tail(total), WAIT_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                tail.kill()
            await tail.wait()

        logged = [identity(e) for e in all_events(live.server.http(live.token), axon_id)]
    assert [s for s, _, _ in logged] == list(range(1, total + 1))
    assert [identity(e) for e in via_httpx] == logged
    assert [identity(e) for e in via_sdk] == logged
    assert [identity(e) for e in tail_seen] == logged
    assert via_httpx == tail_seen  # every field, not just the identity


# -- keep-alives ------------------------------------------------------------------------


async def test_keepalives_are_lone_comment_lines(live_pinging: Live) -> None:
    live = live_pinging
    axon_id = create_axon(live, "pings")
    async with live.server.async_http(live.token) as http:
        await publish_all(http, axon_id, ["first"])
        lines: list[str] = []
        async with http.stream(
            "GET", f"/v1/axons/{axon_id}/subscribe/sse", timeout=httpx.Timeout(WAIT_S)
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            it = response.aiter_lines()

            async def read_until(pred: Any) -> None:
                async for line in it:
                    lines.append(line)
                    if pred():
                        return
                raise AssertionError(f"the stream ended; lines: {lines}")

            await asyncio.wait_for(read_until(lambda: lines.count(": ping") >= 3), WAIT_S)
            await publish_all(http, axon_id, ["second"])
            await asyncio.wait_for(
                read_until(
                    lambda: lines[-2:] == ["id: 2", lines[-1]] and lines[-1].startswith("data: ")
                ),
                WAIT_S,
            )
            await asyncio.wait_for(read_until(lambda: lines.count(": ping") >= 5), WAIT_S)

    for i, line in enumerate(lines):
        if line == ": ping":
            # Never followed by a blank line: that would be an empty event to the SDK.
            assert i + 1 == len(lines) or lines[i + 1] in (": ping", "id: 1", "id: 2"), lines
        else:
            assert line == "" or line.startswith(("id: ", "data: ")), line
    # Outside the pings, the framing is exactly `id`, `data`, blank, per event.
    frames = [line for line in lines if line != ": ping"]
    assert frames[0] == "id: 1" and frames[2] == "" and frames[3] == "id: 2", frames
    assert [json.loads(frames[i][len("data: ") :])["sequence"] for i in (1, 4)] == [1, 2]


async def test_the_sdk_reads_a_stream_with_keepalives(live_pinging: Live) -> None:
    live = live_pinging
    axon_id = create_axon(live, "sdk-pings")
    client = AsyncRunloop(
        base_url=live.server.url,
        bearer_token=live.token,
        max_retries=0,
        shared_http_pool=False,
        timeout=httpx.Timeout(WAIT_S),
    )
    async with live.server.async_http(live.token) as http:
        await publish_all(http, axon_id, ["before pings"])
        try:
            stream = await client.axons.subscribe_sse(axon_id)
            events = stream.__aiter__()
            first = await asyncio.wait_for(events.__anext__(), WAIT_S)
            assert first.sequence == 1
            # A second stream on the same server, idle as long as the SDK's: once it has seen
            # pings, the SDK's stream has had its own.
            pings = 0
            async with http.stream(
                "GET",
                f"/v1/axons/{axon_id}/subscribe/sse",
                params={"after_sequence": 1},
                timeout=httpx.Timeout(WAIT_S),
            ) as raw:
                async for line in raw.aiter_lines():
                    pings += line == ": ping"
                    if pings == 5:
                        break
            await publish_all(http, axon_id, ["after pings"])
            second = await asyncio.wait_for(events.__anext__(), WAIT_S)
            assert second.sequence == 2
            assert json.loads(second.payload) == {"text": "after pings"}
            await stream.close()
        finally:
            await client.close()


# -- a stalled subscriber ---------------------------------------------------------------


def stalled_subscriber(server: ServerProcess, token: str, axon_id: str) -> socket.socket:
    """Opens the SSE stream, reads the response head, and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills fast
    sock.settimeout(WAIT_S)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        (
            f"GET /v1/axons/{axon_id}/subscribe/sse HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, f"closed before the response head: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


async def test_a_stalled_subscriber_does_not_stop_publishing(live: Live) -> None:
    axon_id = create_axon(live, "stalled")
    stalled = stalled_subscriber(live.server, live.token, axon_id)
    try:
        payload = json.dumps({"text": "x" * 900})
        total, per_batch = 20_000, 1_000
        async with live.server.async_http(live.token) as http:
            sequences: list[int] = []
            for b in range(total // per_batch):
                body = {
                    "events": [
                        {**message_body(""), "payload": payload, "idempotency_key": f"b{b}-{i}"}
                        for i in range(per_batch)
                    ]
                }
                r = await http.post(f"/v1/axons/{axon_id}/publish/batch", json=body)
                assert r.status_code == 200, r.text[:300]
                sequences += [x["sequence"] for x in r.json()["results"]]
            assert sequences == list(range(1, total + 1))

            page = (
                await http.get(
                    f"/v1/axons/{axon_id}/events", params={"limit": 1, "include_total_count": True}
                )
            ).json()
            assert page["total_count"] == total
            assert page["events"][0]["sequence"] == total

            # A subscriber that does read is served while the other one still stalls.
            async with aconnect_sse(
                http,
                "GET",
                f"/v1/axons/{axon_id}/subscribe/sse",
                params={"after_sequence": total - 3},
                timeout=httpx.Timeout(WAIT_S),
            ) as source:
                got = []
                async for sse in source.aiter_sse():
                    got.append(int(sse.id))
                    if len(got) == 3:
                        break
            assert got == [total - 2, total - 1, total]
            verify = (await http.get(f"/v1/axons/{axon_id}/verify")).json()
            assert verify == {
                "ok": True,
                "checked": total,
                "first_bad_sequence": None,
                "reason": None,
            }
    finally:
        stalled.close()


# -- crashes and shutdowns --------------------------------------------------------------


async def test_resume_with_last_event_id_across_a_sigkill(live: Live) -> None:
    server = live.server
    axon_id = create_axon(live, "crash")
    acked: dict[int, str] = {}
    seen: list[dict[str, Any]] = []
    enough = asyncio.Event()

    async def publisher(http: httpx.AsyncClient) -> None:
        i = 0
        while True:
            text = f"p{i}"
            try:
                r = await http.post(f"/v1/axons/{axon_id}/publish", json=message_body(text))
            except httpx.TransportError:
                return  # the server is gone
            assert r.status_code == 200, r.text
            acked[r.json()["sequence"]] = json.dumps({"text": text})
            i += 1

    async def subscriber(http: httpx.AsyncClient) -> None:
        with contextlib.suppress(httpx.TransportError):
            async with aconnect_sse(
                http, "GET", f"/v1/axons/{axon_id}/subscribe/sse", timeout=httpx.Timeout(WAIT_S)
            ) as source:
                async for sse in source.aiter_sse():
                    seen.append(json.loads(sse.data))
                    if len(seen) >= 100:
                        enough.set()

    async with server.async_http(live.token) as pub_http, server.async_http(live.token) as sub_http:
        tasks = [
            asyncio.create_task(publisher(pub_http)),
            asyncio.create_task(subscriber(sub_http)),
        ]
        await asyncio.wait_for(enough.wait(), WAIT_S)
        server.kill()  # SIGKILL mid-stream, mid-publish
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)

    assert [e["sequence"] for e in seen] == list(range(1, len(seen) + 1))
    last = seen[-1]["sequence"]

    server.start()  # the same home, a new process
    async with server.async_http(live.token) as http:
        after_restart = await publish_all(http, axon_id, [f"after-{i}" for i in range(20)])
        logged = all_events(server.http(live.token), axon_id)
        by_sequence = {e["sequence"]: e for e in logged}
        # Everything acknowledged, and everything a subscriber saw, survived the crash.
        assert all(by_sequence[s]["payload"] == payload for s, payload in acked.items())
        assert all(by_sequence[e["sequence"]] == e for e in seen)
        end = after_restart[-1]
        assert end == len(logged)

        resumed: list[int] = []
        async with aconnect_sse(
            http,
            "GET",
            f"/v1/axons/{axon_id}/subscribe/sse",
            headers={"Last-Event-ID": str(last)},
            timeout=httpx.Timeout(WAIT_S),
        ) as source:
            events = source.aiter_sse()
            while not resumed or resumed[-1] < end:
                resumed.append(int((await asyncio.wait_for(events.__anext__(), WAIT_S)).id))
            await publish_all(http, axon_id, ["sentinel"])
            sentinel = await asyncio.wait_for(events.__anext__(), WAIT_S)
    assert resumed == list(range(last + 1, end + 1))  # no gap, no duplicate
    assert int(sentinel.id) == end + 1


@dataclass
class Outcomes:
    acked: dict[int, str] = field(default_factory=dict)  # sequence -> payload
    refused: int = 0  # 503
    dropped: int = 0  # connection errors
    other: list[str] = field(default_factory=list)


async def test_sigterm_while_20_clients_publish_loses_nothing_acknowledged(live: Live) -> None:
    server = live.server
    axon_id = create_axon(live, "shutdown")
    outcomes = Outcomes()
    warmed_up = asyncio.Event()

    async def client(n: int) -> None:
        async with server.async_http(live.token) as http:
            i = 0
            while True:
                payload = json.dumps({"text": f"c{n}-{i}"})
                body = {**message_body(""), "payload": payload}
                try:
                    r = await http.post(f"/v1/axons/{axon_id}/publish", json=body)
                except httpx.TransportError:
                    outcomes.dropped += 1
                    return
                if r.status_code == 200:
                    seq = r.json()["sequence"]
                    assert seq not in outcomes.acked
                    outcomes.acked[seq] = payload
                    if len(outcomes.acked) >= 300:
                        warmed_up.set()
                elif r.status_code == 503:
                    assert r.json()["error"]["code"]
                    outcomes.refused += 1
                else:
                    outcomes.other.append(f"{r.status_code}: {r.text[:200]}")
                i += 1

    clients = [asyncio.create_task(client(n)) for n in range(20)]
    await asyncio.wait_for(warmed_up.wait(), WAIT_S)
    code = await asyncio.to_thread(server.terminate)
    await asyncio.wait_for(asyncio.gather(*clients), WAIT_S)

    assert code == 0, server.stderr()[-2000:]
    assert outcomes.other == []
    assert outcomes.dropped + outcomes.refused >= 20  # every client was turned away at the end

    server.start()
    with server.http(live.token) as http:
        logged = all_events(http, axon_id)
        assert http.get(f"/v1/axons/{axon_id}/verify").json()["ok"] is True
    by_sequence = {e["sequence"]: e["payload"] for e in logged}
    assert [e["sequence"] for e in logged] == list(range(1, len(logged) + 1))
    lost = {s: p for s, p in outcomes.acked.items() if by_sequence.get(s) != p}
    assert lost == {}, f"{len(lost)} acknowledged publishes are missing"
    # Nothing appears twice either: each payload was sent once.
    payloads = [e["payload"] for e in logged]
    assert len(payloads) == len(set(payloads))
