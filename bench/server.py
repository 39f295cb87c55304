"""The HTTP server under test, as its own process: `axons serve --listen 127.0.0.1:0` on a
temp home, so the load generator and the server never share a GIL (or a CPU budget they
can hide from each other). Every HTTP figure runs against one of these.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import EVENT_TYPE, PAYLOAD, SOURCE
from engine.home import Home
from engine.tokens import TokenStore

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_TICKS = os.sysconf("SC_CLK_TCK")


def event_json(payload: str = PAYLOAD) -> dict[str, str]:
    """One event as the publish routes take it (the same event the in-process figures use)."""
    return {"event_type": EVENT_TYPE, "origin": "USER_EVENT", "payload": payload, "source": SOURCE}


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    home: Path
    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        response = httpx.request(method, self.url + path, headers=self.auth, timeout=30, **kw)
        response.raise_for_status()
        return response.json()

    def create_axon(self, name: str) -> str:
        return str(self._call("POST", "/v1/axons", json={"name": name})["id"])

    def publish(self, axon_id: str, event: dict[str, str]) -> int:
        """Publish one event; its sequence."""
        return int(self._call("POST", f"/v1/axons/{axon_id}/publish", json=event)["sequence"])

    def last_sequence(self, axon_id: str) -> int:
        """The Axon's newest sequence, read back over HTTP (0 when empty)."""
        page = self._call("GET", f"/v1/axons/{axon_id}/events", params={"limit": 1})
        return int(page["events"][0]["sequence"]) if page["events"] else 0

    def cpu_seconds(self) -> float:
        """User + system CPU the server process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS


def _axons_command() -> list[str]:
    script = Path(sys.executable).with_name("axons")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from axons_tui.cli import main; sys.exit(main())"]


def _read_ready_line(process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.1)
        if readable:
            line = process.stdout.readline()
            if line:
                return dict(orjson.loads(line))
        if process.poll() is not None:
            break
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"`axons serve` did not start (exit {process.poll()}): {tail}")


@contextlib.contextmanager
def running_server(home: Path) -> Iterator[Server]:
    """`axons serve` on `home` (created), TCP on a free loopback port, with an admin token;
    stopped with SIGTERM (a graceful shutdown) on exit."""
    home.mkdir(parents=True, exist_ok=True)
    store = TokenStore(Home(home).catalog)
    try:
        token = store.create("bench", "admin")
    finally:
        store.close()
    log = home / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*_axons_command(), "serve", "--home", str(home), "--listen", "127.0.0.1:0", "--json"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        ready = _read_ready_line(process, log)
        yield Server(process, home, str(ready["tcp"][0]), int(ready["tcp"][1]), token)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
