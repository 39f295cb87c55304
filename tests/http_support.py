"""A real engine for the HTTP tests: `axons serve` in a subprocess on a temporary home, on its
unix socket and on TCP (port 0), so a test can SIGKILL it, SIGTERM it or start it again on
the same home. Also: tokens, the CLI as a subprocess, and waiting with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from engine.tokens import TokenStore

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
AXONS = str(BIN / "axons") if (BIN / "axons").exists() else "axons"
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable

# Generous deadlines: reached only when something is broken, never part of a pass condition.
READY_S = 60.0
WAIT_S = 60.0

# Runs `serve()` with options the CLI does not expose (a short SSE keep-alive, small limits).
_SERVE_SCRIPT = """
import asyncio, json, sys
from engine.api.connections import ConnectionLimits
from engine.api.limits import BodyPace
from engine.api.serve import HttpLimits, serve
from engine.api.sse import StreamLimits

def ready(where):
    print(json.dumps({"socket": str(where.socket_path), "tcp": list(where.tcp)}), flush=True)

given = json.loads(sys.argv[4])
limits = HttpLimits(
    ConnectionLimits(**given.get("connections", {})),
    BodyPace(**given.get("body_pace", {})),
    StreamLimits(**given.get("streams", {})),
)
asyncio.run(
    serve(sys.argv[1], sys.argv[2], on_ready=ready, keepalive_s=float(sys.argv[3]), limits=limits)
)
"""


def make_token(home: Path, name: str, scope: str = "admin", axons: list[str] | None = None) -> str:
    """A token stored in the home's catalog, as `axons token create` makes one."""
    home.mkdir(parents=True, exist_ok=True)
    store = TokenStore(home / "catalog.db")
    try:
        return store.create(name, scope, axons)
    finally:
        store.close()


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without anything that would point the CLI elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AXONS_HOME", "AXONS_TOKEN") and not k.startswith("AXONS_WEBHOOK_SECRET_")
    }
    env.update(extra or {})
    return env


def read_line(proc: subprocess.Popen[bytes], seconds: float, what: str) -> bytes:
    """One line of the process's stdout, or a clear failure after `seconds`."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + seconds
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{what}: no line within {seconds:g} s (got {buf!r:.200})")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(
                f"{what}: the process ended (exit {proc.wait()}) before a line; got {buf!r:.200}"
            )
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    assert not rest.strip(), f"{what}: unexpected extra output {rest!r:.200}"
    return line


class ServerProcess:
    """`axons serve --home HOME --listen 127.0.0.1:0 --json` as a child process."""

    def __init__(
        self,
        home: Path,
        *,
        env: dict[str, str] | None = None,
        keepalive_s: float | None = None,
        limits: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """`limits`: the fields of `HttpLimits`' parts, e.g. {"connections": {...}}."""
        self.home = home
        self.env = clean_env(env)
        self.keepalive_s = keepalive_s
        self.limits = limits
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.socket_path = home / "engine.sock"
        self.starts = 0
        self._stderr_path = home.parent / f"{home.name}-serve.stderr"

    def start(self) -> ServerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.home.mkdir(parents=True, exist_ok=True)
        if self.keepalive_s is None and self.limits is None:
            cmd = [AXONS, "serve", "--home", str(self.home), "--listen", "127.0.0.1:0", "--json"]
        else:
            cmd = [
                PYTHON,
                "-c",
                _SERVE_SCRIPT,
                str(self.home),
                "127.0.0.1:0",
                str(self.keepalive_s or 15.0),
                json.dumps(self.limits or {}),
            ]
        self.starts += 1
        with self._stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=err,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        try:
            line = read_line(self.proc, READY_S, f"axons serve on {self.home}")
        except AssertionError as e:
            self.kill()
            raise AssertionError(f"{e}\nstderr:\n{self.stderr()[-2000:]}") from None
        ready = json.loads(line)
        self.socket_path = Path(ready["socket"])
        self.port = int(ready["tcp"][1])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(READY_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def terminate(self, seconds: float = WAIT_S) -> int:
        """SIGTERM, then wait for the graceful exit; its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(seconds)
        finally:
            self.kill()
        return code

    def stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace") if self._stderr_path.exists() else ""

    def http(self, token: str | None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs.setdefault("timeout", httpx.Timeout(WAIT_S, connect=10.0))
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def async_http(self, token: str | None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs.setdefault("timeout", httpx.Timeout(WAIT_S, connect=10.0))
        return httpx.AsyncClient(base_url=self.url, headers=headers, **kwargs)


@contextlib.contextmanager
def running_server(home: Path, **options: Any) -> Iterator[ServerProcess]:
    """A started server, always killed afterwards."""
    server = ServerProcess(home, **options)
    try:
        yield server.start()
    finally:
        server.kill()


def axons(
    *args: str,
    home: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run the `axons` CLI as a user does; text output, never raises on a non-zero exit."""
    cmd = [AXONS, *args]
    if home is not None:
        cmd += ["--home", str(home)]
    return subprocess.run(
        cmd,
        capture_output=True,
        env=clean_env(env),
        cwd=ROOT,
        timeout=timeout,
        input=input.decode() if input is not None else None,
        text=True,
    )


def axons_json(*args: str, home: Path | None = None, **kwargs: Any) -> Any:
    """Run a CLI command with --json that must succeed; its parsed output."""
    done = axons(*args, "--json", home=home, **kwargs)
    assert done.returncode == 0, f"axons {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


def wait_until(
    predicate: Callable[[], T], what: str, seconds: float = WAIT_S, interval: float = 0.02
) -> T:
    """Poll a condition until it holds; fail clearly after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(interval)


def all_events(http: httpx.Client, axon_id: str) -> list[dict[str, Any]]:
    """Every event of an Axon, oldest first, through the API."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        r = http.get(f"/v1/axons/{axon_id}/events", params={"after_sequence": after, "limit": 5000})
        assert r.status_code == 200, r.text
        page = r.json()["events"]
        events += page
        if not page:
            return events
        after = page[-1]["sequence"]


def message_body(text: str, source: str = "test", **extra: Any) -> dict[str, Any]:
    return {
        "event_type": "message",
        "origin": "USER_EVENT",
        "source": source,
        "payload": json.dumps({"text": text}),
        **extra,
    }
