"""The HTTP server under attack (issue 8, items 6, 7, 12, 13, 17, 22): each test does what an
attacker would, over real sockets against `axons serve` in its own process, and checks that
the attack fails cleanly while the engine keeps answering everyone else.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http_support import (
    ServerProcess,
    axons,
    make_token,
    message_body,
    running_server,
    wait_until,
)

MiB = 1 << 20


def rss_bytes(server: ServerProcess) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) * 1024


def open_descriptors(server: ServerProcess) -> int:
    assert server.proc is not None
    return len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))


def raw_connection(server: ServerProcess, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a content-length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response head: {data!r:.200}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside the response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed this connection (EOF or reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@contextlib.contextmanager
def sockets(count: int, server: ServerProcess) -> Iterator[list[socket.socket]]:
    opened = [raw_connection(server) for _ in range(count)]
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


# -- item 6: authenticate from the headers, before the body ------------------------------------


def test_an_anonymous_63_mib_body_gets_its_401_without_being_read(home: Path) -> None:
    admin = make_token(home, "admin")
    with running_server(home) as server, server.http(admin) as http:
        axon_id = http.post("/v1/axons", json={"name": "target"}).json()["id"]
        before = rss_bytes(server)
        attack = raw_connection(server)
        size = 63 * MiB
        attack.sendall(
            f"POST /v1/axons/{axon_id}/publish/batch HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
            + b'{"events": ['
        )
        status, headers, body = read_response(attack)
        assert status == 401
        assert json.loads(body)["error"]["code"] == "unauthorized"
        assert headers.get("connection") == "close"
        # The server does not take the rest: it closed the connection, so sending fails
        # long before 63 MiB are through.
        sent = 0
        with pytest.raises(OSError):
            while sent < size:
                sent += attack.send(b" " * MiB)
        attack.close()
        assert sent < size
        assert http.get("/healthz").json()["ok"] is True
        grew = rss_bytes(server) - before
        assert grew < 32 * MiB, f"the refused body still cost the server {grew / MiB:.0f} MiB"


def test_a_large_authenticated_batch_is_parsed_while_the_engine_keeps_answering(
    home: Path,
) -> None:
    admin = make_token(home, "admin")
    with running_server(home) as server, server.http(admin) as http:
        axon_id = http.post("/v1/axons", json={"name": "batch"}).json()["id"]
        events = [message_body(f"event {i}" + "x" * 2000) for i in range(10_000)]
        big = json.dumps({"events": events}).encode()
        assert len(big) > 20 * MiB

        with server.http(admin) as other:
            done: list[httpx.Response] = []
            sender = threading.Thread(
                target=lambda: done.append(
                    other.post(
                        f"/v1/axons/{axon_id}/publish/batch",
                        content=big,
                        headers={"content-type": "application/json"},
                    )
                )
            )
            sender.start()
            answered = 0
            while sender.is_alive():
                assert http.get("/healthz").status_code == 200
                answered += 1
            sender.join()
        assert done[0].status_code == 200, done[0].text
        assert len(done[0].json()["results"]) == 10_000
        assert answered >= 1


# -- item 7: revoking a token ends its streams -------------------------------------------------


def test_revoking_a_token_ends_its_open_sse_streams(home: Path) -> None:
    admin = make_token(home, "admin")
    reader = make_token(home, "watcher", "read")
    with running_server(home) as server, server.http(admin) as http:
        axon_id = http.post("/v1/axons", json={"name": "watched"}).json()["id"]
        http.post(f"/v1/axons/{axon_id}/publish", json=message_body("one")).raise_for_status()
        with (
            server.http(reader) as watcher,
            watcher.stream("GET", f"/v1/axons/{axon_id}/subscribe/sse") as stream,
        ):
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("id:")) == "id: 1"
            done = axons("token", "revoke", "watcher", home=home)
            assert done.returncode == 0, done.stderr
            rest = list(lines)  # ends only when the server closes the stream
        error_at = rest.index("event: error")
        error = json.loads(rest[error_at + 1].removeprefix("data:"))
        assert error["code"] == "token_revoked"
        with server.http(reader) as watcher:
            assert watcher.get(f"/v1/axons/{axon_id}").status_code == 401


# -- item 12: SSE buffers bounded in bytes -----------------------------------------------------


def stall_subscribers(
    server: ServerProcess, http: httpx.Client, token: str, axon_id: str, after: int
) -> int:
    """Four subscribers (from `after`) that read nothing while 32 MiB of events are
    published; how much the server's memory grew. Then each reads what it was sent: an
    unbroken run of events, then the `slow_consumer` error, then the end of the stream."""
    before = rss_bytes(server)
    stalled = []
    for _ in range(4):
        sock = raw_connection(server, rcvbuf=4096)  # a tiny receive window
        sock.sendall(
            f"GET /v1/axons/{axon_id}/subscribe/sse?after_sequence={after} HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode()
        )
        stalled.append(sock)
    payload = json.dumps({"text": "y" * (512 << 10)})
    for _ in range(64):  # 32 MiB, which each stalled client would otherwise hold
        body = {**message_body(""), "payload": payload}
        http.post(f"/v1/axons/{axon_id}/publish", json=body).raise_for_status()
    grew = rss_bytes(server) - before
    for sock in stalled:
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(1 << 20):
                received += chunk
        sock.close()
        ids = [int(line[4:]) for line in received.split(b"\n") if line.startswith(b"id: ")]
        assert ids == list(range(after + 1, after + 1 + len(ids)))
        assert len(ids) < 64
        assert b"event: error" in received and b"slow_consumer" in received
    return grew


def test_clients_that_stop_reading_cost_a_bounded_number_of_bytes(home: Path) -> None:
    admin = make_token(home, "admin")
    limits = {"streams": {"bytes": 1 * MiB}}
    with running_server(home, limits=limits) as server, server.http(admin) as http:
        axon_id = http.post("/v1/axons", json={"name": "big"}).json()["id"]
        http.post(f"/v1/axons/{axon_id}/publish", json=message_body("warm")).raise_for_status()
        grew = stall_subscribers(server, http, admin, axon_id, after=1)
        assert grew < 64 * MiB, f"4 stalled clients cost {grew / MiB:.0f} MiB"
        # What the cut clients held was given back: the same attack again costs no more.
        settled = rss_bytes(server)
        stall_subscribers(server, http, admin, axon_id, after=65)
        again = rss_bytes(server) - settled
        assert again < 32 * MiB, f"a second round kept {again / MiB:.0f} MiB more"
        assert http.get("/healthz").json()["ok"] is True


# -- item 13: connection limits and read timeouts ----------------------------------------------


def test_idle_sockets_and_unfinished_requests_are_cut_and_never_lock_clients_out(
    home: Path,
) -> None:
    admin = make_token(home, "admin")
    limits = {
        "connections": {"max_connections": 50, "head_timeout_s": 2.0},
        "body_pace": {"grace_s": 2.0},
    }
    with running_server(home, limits=limits) as server, server.http(admin) as http:
        axon_id = http.post("/v1/axons", json={"name": "busy"}).json()["id"]
        descriptors = open_descriptors(server)
        with sockets(300, server) as idle, sockets(50, server) as slow_heads:
            for sock in slow_heads:  # a request head that never ends
                with contextlib.suppress(OSError):  # (already cut if opening them was slow)
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            # Far past the limit, a new client is still served: the idle ones make room.
            with server.http(admin) as fresh:
                assert fresh.get("/healthz").json()["ok"] is True
                ok = fresh.post(f"/v1/axons/{axon_id}/publish", json=message_body("still here"))
                assert ok.status_code == 200
            assert open_descriptors(server) < descriptors + 60
            wait_until(
                lambda: all(closed_by_server(s) for s in idle + slow_heads),
                "the server to close every idle and unfinished connection",
            )
        with raw_connection(server) as trickle:  # a body that stops arriving
            trickle.sendall(
                f"POST /v1/axons/{axon_id}/publish HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {admin}\r\nContent-Type: application/json\r\n"
                f"Content-Length: 1000\r\n\r\n{{".encode()
            )
            status, headers, body = read_response(trickle)
            assert status == 408
            assert json.loads(body)["error"]["code"] == "request_timeout"
            assert headers.get("connection") == "close"
        with raw_connection(server) as bloated:  # a head that never stops growing
            bloated.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError):
                for _ in range(100):
                    bloated.sendall(b"X-Filler: " + b"z" * 4000 + b"\r\n")
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := bloated.recv(65536):
                    answer += chunk
            # uvicorn answers 431; granian (hyper) closes the connection without a word.
            if answer:
                assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
                assert b"headers_too_large" in answer
        assert http.get("/healthz").json()["ok"] is True


# -- item 17: a 404 quotes what was sent ---------------------------------------------------------


def test_a_404_for_a_name_never_reveals_another_axons_id(home: Path) -> None:
    admin = make_token(home, "admin")
    with running_server(home) as server, server.http(admin) as http:
        mine = http.post("/v1/axons", json={"name": "mine"}).json()["id"]
        theirs = http.post("/v1/axons", json={"name": "theirs"}).json()["id"]
        limited = make_token(home, "limited", "read", [mine])
        with server.http(limited) as probe:
            for path in ("/v1/axons/theirs", "/v1/axons/theirs/events"):
                r = probe.get(path)
                assert r.status_code == 404
                assert "'theirs'" in r.json()["error"]["message"]
                assert theirs not in r.text
            assert probe.get("/v1/axons/mine").json()["id"] == mine


# -- item 22: strict Last-Event-ID; the API description behind a token -------------------------


def test_last_event_id_is_plain_digits(home: Path) -> None:
    admin = make_token(home, "admin")
    with running_server(home) as server, server.http(admin) as http:
        axon_id = http.post("/v1/axons", json={"name": "ids"}).json()["id"]
        path = f"/v1/axons/{axon_id}/subscribe/sse"
        for bad in ("1_0", "+5", "0x10", "1e3"):
            r = http.get(path, headers={"Last-Event-ID": bad})
            assert r.status_code == 400, bad
            assert r.json()["error"]["code"] == "invalid_sequence"
        assert http.get(path, params={"after_sequence": "1_0"}).status_code == 422
        assert http.get(f"/v1/axons/{axon_id}/events", params={"after_sequence": "1_0"}).is_error


@pytest.mark.parametrize("public", [False, True])
def test_the_api_description_needs_a_token_over_tcp_unless_made_public(
    home: Path, public: bool
) -> None:
    admin = make_token(home, "admin")
    env = {"AXONS_PUBLIC_DOCS": "1"} if public else None
    with running_server(home, env=env) as server:
        with server.http(None) as anonymous:
            for path in ("/openapi.json", "/docs"):
                assert anonymous.get(path).status_code == (200 if public else 401), path
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/v1/axons").status_code == 401
        with server.http(admin) as http:
            assert "/v1/axons" in http.get("/openapi.json").json()["paths"]
        transport = httpx.HTTPTransport(uds=str(server.socket_path))
        with httpx.Client(transport=transport, base_url="http://axons") as local:
            assert local.get("/openapi.json").status_code == 200
