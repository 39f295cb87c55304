"""The gateway HTTP server: one per engine, started on the first agent that needs it.

Where agents reach it:
- process agents: `http://127.0.0.1:<ephemeral port>` (one loopback listener for all);
- Docker agents (network none): one unix socket per agent, `<home>/gateway/<slug>/gateway.sock`,
  in a directory mounted read-only at `/axons-gateway` with the relay (engine/gateway/relay.py)
  beside it; the relay listens on the container's own `127.0.0.1:RELAY_PORT`, so the agent
  gets `http://127.0.0.1:RELAY_PORT` and the container has no other route.

Who is calling: an opaque per-agent token (`secrets.token_urlsafe`), minted by `admit` at every
start of the agent and kept only as its SHA-256; `revoke` (the agent stops, hibernates, is
removed or replaced) makes it worthless. A Docker agent's socket accepts only that agent's
token. The token arrives however an SDK sends its key: `Authorization: Bearer`, `x-api-key`,
`x-goog-api-key` or `?key=`.

Routes:
- `/gw/<PREFIX>/<path>`: the provider proxy of gateway PREFIX (engine/gateway/providers.py).
- `/<name>/<path>`: an app mounted with `mount` (the seam for the MCP gateway, below).

The seam for other gateways (the MCP gateway uses it):

    server = engine.agents.gateway          # the engine's GatewayServer
    server.mount("mcp", app)                # any ASGI app, once per engine

A request to `/mcp/<rest>` carrying a valid agent token reaches `app` with
`scope["path"] = "/<rest>"`, `scope["root_path"] = "/mcp"`, and `scope["axons.grant"]` the
caller's `Grant` (its `key.axon_id`, `key.name` and `spec`); a missing or revoked token is a 401
before the app sees anything. The token headers are left on the request (the app must not
forward them). `Admission.base_url` is the server's root as that agent sees it, so the agent's
MCP URL is `f"{admission.base_url}/mcp/..."` with the header `Authorization: Bearer <token>`;
`GatewayServer.admission(key)` returns the current one of a running agent. Agents are
admitted at each start by `Supervisor.admit` (engine/supervisor.py), today only when their
spec declares `gateways`: a gateway for other agents widens that test there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.api.connections import ConnectionLimits
from engine.api.gate import send_json
from engine.api.servers import UvicornListener
from engine.models import AgentSpec, Draft, GatewaySpec, gateway_env_names
from engine.runtime.base import AgentKey, GatewayMount

if TYPE_CHECKING:
    from engine.gateway.providers import ProviderProxy

PROVIDERS = "gw"  # /gw/<PREFIX>/...: the provider proxies
RELAY_PORT = 18181  # where the relay listens inside a Docker agent's container
CONTAINER_DIR = "/axons-gateway"  # where a Docker agent sees its socket and the relay
SOCKET_NAME = "gw.sock"
RELAY_NAME = "relay.py"
RELAY_SOURCE = Path(__file__).with_name(RELAY_NAME)
LIMITS = ConnectionLimits(max_connections=512, head_timeout_s=30.0)
TOKEN_HEADERS = (b"authorization", b"x-api-key", b"x-goog-api-key")

Publish = Callable[[str, Draft], Awaitable[Any]]
Spent = Callable[[AgentKey, str], Awaitable[int]]  # tokens the log records for a gateway


@dataclass
class Meter:
    """One agent's use of one gateway: requests in the last minute and tokens spent (loaded
    from the Axon's log when the engine first admits the agent, then counted as calls end)."""

    window: deque[float] = field(default_factory=deque)
    tokens: int = 0

    def requests_last_minute(self, now: float) -> int:
        while self.window and self.window[0] <= now - 60.0:
            self.window.popleft()
        return len(self.window)


@dataclass
class Grant:
    """A running agent the gateway answers: who it is, its spec, where it connects from."""

    key: AgentKey
    spec: AgentSpec
    digest: bytes  # SHA-256 of its token
    docker: bool
    meters: dict[str, Meter]

    def gateway(self, prefix: str) -> GatewaySpec | None:
        return self.spec.gateways.get(prefix)


@dataclass(frozen=True)
class Admission:
    """What an admitted agent gets: its token, the gateway's root URL as it sees it, the env
    variables of its gateways, and (Docker) the host directory to mount at CONTAINER_DIR."""

    token: str
    base_url: str
    env: dict[str, str]
    mount: GatewayMount | None = None  # Docker: for the runtime


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def token_of(scope: Scope) -> str | None:
    """The agent's token, however its SDK sends the key."""
    for name, value in scope["headers"]:
        if name in TOKEN_HEADERS:
            text = value.decode("latin-1").strip()
            if name == b"authorization":
                scheme, _, rest = text.partition(" ")
                if scheme.lower() != "bearer":
                    continue
                text = rest.strip()
            if text:
                return text
    query = scope.get("query_string", b"")
    if b"key=" in query:
        from urllib.parse import parse_qsl

        for k, v in parse_qsl(query.decode("latin-1")):
            if k == "key" and v:
                return v
    return None


class GatewayServer:
    """The engine's gateway: listeners, admitted agents, mounted apps, the provider proxy."""

    def __init__(self, runtime_dir: Path, publish: Publish, spent: Spent | None = None) -> None:
        self.runtime_dir = runtime_dir  # <home>/gateway: one folder per Docker agent
        self.publish = publish  # (axon_id, draft) -> commit a system event
        self.spent = spent  # (agent, prefix) -> the tokens its gateway.request events report
        self._grants: dict[bytes, Grant] = {}
        self._by_key: dict[AgentKey, tuple[Grant, Admission]] = {}
        self._meters: dict[AgentKey, dict[str, Meter]] = {}
        self._mounts: dict[str, ASGIApp] = {}
        self._tcp: UvicornListener | None = None
        self._tcp_task: asyncio.Task[None] | None = None
        self._unix: dict[AgentKey, tuple[UvicornListener, asyncio.Task[None]]] = {}
        self._starting = asyncio.Lock()
        self._proxy: ProviderProxy | None = None
        self.client: aiohttp.ClientSession | None = None

    # -- the seam ----------------------------------------------------------------------

    def mount(self, name: str, app: ASGIApp) -> None:
        """Serve `app` at /<name>/ for admitted agents (see the module docstring)."""
        if not name or "/" in name or name == PROVIDERS:
            raise ValueError(f"cannot mount at {name!r}: give one path segment other than gw")
        self._mounts[name] = app

    def admission(self, key: AgentKey) -> Admission | None:
        """The current admission of a running agent, or None."""
        held = self._by_key.get(key)
        return held[1] if held else None

    # -- agents ------------------------------------------------------------------------

    async def admit(self, key: AgentKey, spec: AgentSpec, *, docker: bool) -> Admission:
        """A fresh token for the agent (its previous one is revoked) and what to give it."""
        self.revoke(key)
        token = secrets.token_urlsafe(32)
        meters = self._meters.setdefault(key, {})
        for prefix, gateway in spec.gateways.items():
            if prefix not in meters:
                meters[prefix] = Meter()
                if gateway.token_budget is not None and self.spent is not None:
                    meters[prefix].tokens = await self.spent(key, prefix)
        grant = Grant(key, spec, _digest(token), docker, meters)
        mount = None
        if docker:
            folder = await self._agent_socket(key)
            base_url = f"http://127.0.0.1:{RELAY_PORT}"
            mount = GatewayMount(
                folder, CONTAINER_DIR, SOCKET_NAME, RELAY_NAME, RELAY_PORT, grant.digest.hex()[:16]
            )
        else:
            host, port = await self._loopback()
            base_url = f"http://{host}:{port}"
        env: dict[str, str] = {}
        for prefix, gateway in spec.gateways.items():
            url_var, key_var = gateway_env_names(prefix, gateway)
            env[url_var] = f"{base_url}/{PROVIDERS}/{prefix}"
            env[key_var] = token
        admission = Admission(token, base_url, env, mount)
        self._grants[grant.digest] = grant
        self._by_key[key] = (grant, admission)
        return admission

    def revoke(self, key: AgentKey) -> None:
        """The agent's token stops working at once (its socket stays until `forget`)."""
        held = self._by_key.pop(key, None)
        if held is not None:
            self._grants.pop(held[0].digest, None)

    async def forget(self, key: AgentKey) -> None:
        """The agent is removed (or re-declared): its token, its socket and its meters go (the
        log still holds what it spent)."""
        self.revoke(key)
        self._meters.pop(key, None)
        listener = self._unix.pop(key, None)
        if listener is not None:
            await _stop(*listener)
        shutil.rmtree(self.folder(key), ignore_errors=True)

    def folder(self, key: AgentKey) -> Path:
        """A Docker agent's folder: short, as a socket's path must be (108 bytes)."""
        return self.runtime_dir / hashlib.sha256(key.slug.encode()).hexdigest()[:12]

    def grant_for(self, token: str | None, key: AgentKey | None = None) -> Grant | None:
        """The running agent holding `token`: on a Docker agent's socket (`key`) only that
        agent, on the loopback listener only process agents."""
        if not token:
            return None
        grant = self._grants.get(_digest(token))
        if grant is None or grant.docker != (key is not None):
            return None
        if key is not None and grant.key != key:
            return None
        return grant

    # -- listeners ---------------------------------------------------------------------

    async def _loopback(self) -> tuple[str, int]:
        async with self._starting:
            if self._tcp is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", 0))
                self._tcp, self._tcp_task = await self._serve(sock, None)
            address = self._tcp.address
            assert isinstance(address, tuple)
            return address

    async def _agent_socket(self, key: AgentKey) -> Path:
        """The agent's folder (its socket listening, the relay beside it), made once."""
        folder = self.folder(key)
        async with self._starting:
            if key in self._unix and (folder / SOCKET_NAME).exists():
                return folder
            if key in self._unix:
                await _stop(*self._unix.pop(key))
            self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(exist_ok=True)
            folder.chmod(0o755)  # the agent's user (65534) reads it through the mount
            relay = folder / RELAY_NAME
            shutil.copyfile(RELAY_SOURCE, relay)
            relay.chmod(0o644)
            path = folder / SOCKET_NAME
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            sock = bind_unix(path)
            # only this container mounts the folder; the home above it is 0700
            os.chmod(path, 0o666)
            self._unix[key] = await self._serve(sock, key)
            return folder

    async def _serve(
        self, sock: socket.socket, only: AgentKey | None
    ) -> tuple[UvicornListener, asyncio.Task[None]]:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self._handle(scope, receive, send, only)

        listener = UvicornListener(app, sock, LIMITS)
        task = asyncio.create_task(listener.run())
        while not listener.started:
            if task.done():
                task.result()  # it failed: say why
            await asyncio.sleep(0.005)
        return listener, task

    async def close(self) -> None:
        self._grants.clear()
        self._by_key.clear()
        listeners = list(self._unix.values())
        self._unix.clear()
        if self._tcp is not None and self._tcp_task is not None:
            listeners.append((self._tcp, self._tcp_task))
            self._tcp = self._tcp_task = None
        await asyncio.gather(*(_stop(*pair) for pair in listeners))
        if self.client is not None:
            await self.client.close()
            self.client = None

    # -- requests ----------------------------------------------------------------------

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, only: AgentKey | None
    ) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        first, _, rest = path.lstrip("/").partition("/")
        if first == PROVIDERS:
            prefix, _, tail = rest.partition("/")
            await self.proxy(scope, receive, send, prefix, "/" + tail, only)
            return
        app = self._mounts.get(first)
        if app is None:
            await send_json(send, 404, {"error": {"message": f"nothing at {path[:200]}"}})
            return
        grant = self.grant_for(token_of(scope), only)
        if grant is None:
            await send_json(send, 401, {"error": {"message": "missing, wrong or revoked token"}})
            return
        inner = {**scope, "path": "/" + rest, "root_path": scope.get("root_path", "") + "/" + first}
        inner["raw_path"] = inner["path"].encode()
        inner["axons.grant"] = grant
        await app(inner, receive, send)

    async def proxy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        prefix: str,
        tail: str,
        only: AgentKey | None,
    ) -> None:
        if self._proxy is None:
            from engine.gateway.providers import ProviderProxy

            self._proxy = ProviderProxy(self)
        await self._proxy(scope, receive, send, prefix, tail, only)

    def http(self) -> aiohttp.ClientSession:
        """The one client every upstream call goes through (pooled connections; no cookie
        jar, so nothing one agent's answers set reaches another's requests)."""
        if self.client is None:
            self.client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, connect=15.0, sock_read=600.0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # the answer goes back as the upstream sent it
                trust_env=False,  # the upstream only: no proxy from the environment
            )
        return self.client

    async def event(self, grant: Grant, event_type: str, body: dict[str, Any]) -> None:
        draft = Draft(
            event_type, orjson.dumps(body).decode(), grant.key.name, "SYSTEM_EVENT", author="axons"
        )
        with contextlib.suppress(Exception):  # a deleted Axon or a closing engine
            await self.publish(grant.key.axon_id, draft)

    @staticmethod
    def now() -> float:
        return time.monotonic()


def bind_unix(path: Path) -> socket.socket:
    """A unix socket bound at `path`, however long the home's path is: past the kernel's
    108 bytes it is bound through the folder's descriptor (/proc/self/fd/N/name)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if len(os.fsencode(path)) < 100:
        sock.bind(str(path))
        return sock
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)
    return sock


async def _stop(listener: UvicornListener, task: asyncio.Task[None]) -> None:
    listener.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 15)
    listener.close()
