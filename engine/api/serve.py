"""Run the HTTP API: on the home's unix socket (mode 0600, no token needed) and, when asked,
on TCP (every request needs a bearer token). One Engine behind both.

Shutdown is graceful: listeners close, live streams end, requests in flight finish and are
acknowledged; publishes that arrive after that are refused with 503.

Every listener is bounded (`HttpLimits`): connections and the time a request head may take
(engine.api.connections), a body's size and pace (engine.api.limits), each SSE client's
buffer (engine.api.sse).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from starlette.types import ASGIApp

from engine.api.connections import ConnectionLimits, capped_by_descriptors
from engine.api.limits import BodyPace
from engine.api.server import create_asgi
from engine.api.servers import (
    DEFAULT_SERVER,
    SERVERS,
    Address,
    GranianListener,
    Listener,
    UvicornListener,
)
from engine.api.sse import StreamLimits
from engine.engine import Engine
from engine.errors import ErrorCode, InvalidInput
from engine.home import Home, default_home
from engine.tokens import TokenStore


@dataclass(frozen=True)
class HttpLimits:
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    body_pace: BodyPace = field(default_factory=BodyPace)
    streams: StreamLimits = field(default_factory=StreamLimits)


def public_docs_from_env(environ: dict[str, str] | None = None) -> bool:
    """`AXONS_PUBLIC_DOCS=1` serves /openapi.json and /docs over TCP without a token."""
    env = os.environ if environ is None else environ
    return env.get("AXONS_PUBLIC_DOCS", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Listening:
    socket_path: Path
    tcp: tuple[str, int] | None


def webhook_secrets_from_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`AXONS_WEBHOOK_SECRET_GITHUB=...` configures the secret of source `github`."""
    env = os.environ if environ is None else environ
    prefix = "AXONS_WEBHOOK_SECRET_"
    return {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix) and v}


def parse_listen(listen: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[?([^\]]*)\]?:(\d{1,5})", listen)
    if not match or int(match.group(2)) > 65535:
        raise InvalidInput(
            f"--listen takes HOST:PORT (for example 127.0.0.1:8700), got {listen!r}",
            code=ErrorCode.INVALID_LISTEN,
        )
    return match.group(1) or "127.0.0.1", int(match.group(2))


def _unix_listener(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # stale: the engine lock is ours, so no engine serves it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # born 0600: no moment where others may connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock


def _tcp_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def serve(
    home: Path | str | None = None,
    listen: str | None = None,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Listening], None] | None = None,
    webhook_secrets: dict[str, str] | None = None,
    engine_options: dict[str, object] | None = None,
    keepalive_s: float | None = None,
    limits: HttpLimits | None = None,
    public_docs: bool | None = None,
    server: str | None = None,
    engine: Engine | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM or until `stop` is set, on `server` (uvicorn or granian;
    else `$AXONS_HTTP_SERVER`, else the default). `keepalive_s`: the idle time after which an
    SSE stream gets a `: ping` comment line (else `limits.streams.keepalive_s`).

    With `engine` (the console's embedded one), its API is served on the home's socket until
    `stop`, which also ends the engine's live streams; the process's signals stay its owner's."""
    server = server or os.environ.get("AXONS_HTTP_SERVER") or DEFAULT_SERVER
    if server not in SERVERS:
        raise InvalidInput(
            f"--server takes {' or '.join(SERVERS)}, got {server!r}", code=ErrorCode.INVALID_SERVER
        )
    home = Path(home) if home is not None else default_home()
    stop = stop or asyncio.Event()
    secrets = webhook_secrets if webhook_secrets is not None else webhook_secrets_from_env()
    limits = limits or HttpLimits()
    if keepalive_s is not None:
        limits = replace(limits, streams=replace(limits.streams, keepalive_s=keepalive_s))
    public = public_docs if public_docs is not None else public_docs_from_env()
    connection_limits = capped_by_descriptors(limits.connections, 2 if listen else 1)
    tcp: Address | None = parse_listen(listen) if listen else None
    own_engine = engine is None
    async with contextlib.AsyncExitStack() as stack:
        if engine is None:
            opened = Engine(home, **(engine_options or {}))  # type: ignore[arg-type]
            engine = await stack.enter_async_context(opened)
        tokens = TokenStore(Home(home).catalog)
        sock_path = Home(home).socket
        listeners: list[Listener] = []
        try:
            for where in [sock_path, tcp] if tcp else [sock_path]:
                app = create_asgi(
                    engine,
                    tokens,
                    require_token=where is not sock_path,
                    webhook_secrets=secrets,
                    stream_limits=limits.streams,
                    body_pace=limits.body_pace,
                    public_docs=public,
                )
                listeners.append(_listener(server, app, where, connection_limits))
            if own_engine:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            tasks = [asyncio.create_task(listener.run()) for listener in listeners]
            while not all(listener.started for listener in listeners):
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.01)
            if on_ready is not None:
                address = listeners[-1].address if tcp else None
                on_ready(Listening(sock_path, address if isinstance(address, tuple) else None))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for listener in listeners:
                listener.stop()
            engine.bus.close()  # live streams end; their clients resume elsewhere
            await asyncio.gather(*tasks, return_exceptions=True)
            stopper.cancel()
        finally:
            if own_engine:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        asyncio.get_running_loop().remove_signal_handler(sig)
            for listener in listeners:
                listener.close()
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            tokens.close()


def _listener(server: str, app: ASGIApp, where: Address, limits: ConnectionLimits) -> Listener:
    if server == "granian":
        if isinstance(where, Path):
            with contextlib.suppress(FileNotFoundError):
                where.unlink()  # stale: the engine lock is ours, so no engine serves it
        return GranianListener(app, where, limits)
    sock = _unix_listener(where) if isinstance(where, Path) else _tcp_listener(*where)
    return UvicornListener(app, sock, limits)
