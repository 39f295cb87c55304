"""The HTTP servers `axons serve` can run its app on: uvicorn (httptools, uvloop) or granian
(Rust, hyper), both in the engine's own event loop, since the app closes over the Engine.

Each is one `Listener`: started on the unix socket or on TCP, told to stop, awaited. Both
enforce the same limits: uvicorn through engine.api.connections; granian through hyper's
header read timeout and its own cap on requests in flight (it has no cap on idle sockets,
but closes one that sends no complete head within the timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import uvicorn
from starlette.types import ASGIApp

from engine.api.connections import ConnectionLimits, limited_protocol

SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"
GRACEFUL_S = 10


Address = Path | tuple[str, int]  # a unix socket's path, or a TCP host and port


class Listener(Protocol):
    @property
    def address(self) -> Address: ...

    @property
    def started(self) -> bool: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class _UvicornServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve`, which runs two of them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class UvicornListener:
    def __init__(self, app: ASGIApp, sock: socket.socket, limits: ConnectionLimits) -> None:
        config = uvicorn.Config(
            app,
            http=limited_protocol(limits),
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            timeout_graceful_shutdown=GRACEFUL_S,
            timeout_keep_alive=max(1, int(limits.head_timeout_s)),
            server_header=False,
        )
        self._server = _UvicornServer(config)
        self._sock = sock

    @property
    def address(self) -> Address:
        name = self._sock.getsockname()
        return Path(name) if isinstance(name, str) else (str(name[0]), int(name[1]))

    @property
    def started(self) -> bool:
        return self._server.started

    async def run(self) -> None:
        await self._server.serve(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True

    def close(self) -> None:
        self._sock.close()


class GranianListener:
    """Granian's embedded server. It binds its own socket, so the caller hands it the
    address (a unix path, or a host and a port that is free now) rather than a socket."""

    def __init__(self, app: ASGIApp, where: Address, limits: ConnectionLimits) -> None:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.server.embed import Server

        logging.getLogger("_granian").setLevel(logging.WARNING)
        if isinstance(where, Path):
            placement: dict[str, object] = {"uds": where}
            self._address: Address = where
        else:
            self._address = (where[0], where[1] or free_port(where[0]))
            placement = {"address": where[0], "port": self._address[1]}
        self._server = Server(
            app,
            interface=Interfaces.ASGINL,
            http=HTTPModes.http1,
            websockets=False,
            backlog=1024,
            backpressure=limits.max_connections,
            http1_settings=HTTP1Settings(
                header_read_timeout=int(limits.head_timeout_s * 1000),
                max_buffer_size=max(limits.max_head_bytes, 8192 + 4096 * 100),
            ),
            log_enabled=False,
            **placement,  # type: ignore[arg-type]
        )
        self._server.workers_kill_timeout = GRACEFUL_S
        self._uds = where if isinstance(where, Path) else None
        self._started = False
        self._server.on_startup(self._mark_started)

    def _mark_started(self) -> None:
        self._started = True

    @property
    def address(self) -> Address:
        return self._address

    @property
    def started(self) -> bool:
        return self._started

    async def run(self) -> None:
        if self._uds is None:
            await self._server.serve()
            return
        self._server.uds_permissions = 0o600
        old = os.umask(0o177)  # granian binds the socket as the task starts: born 0600
        try:
            task = asyncio.ensure_future(self._server.serve())
            while not self._started and not task.done():
                await asyncio.sleep(0)
        finally:
            os.umask(old)
        await task

    def stop(self) -> None:
        self._server.stop()

    def close(self) -> None:
        """Granian closes its own sockets when it stops."""


def free_port(host: str) -> int:
    """A TCP port free right now on `host` (granian cannot report the one it picked for 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
