"""One code path for every command: talk to the engine that serves the home when one runs,
else open the home in-process. Both give the same methods (`Engine` and `Client`)."""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from engine.api.client import Client
from engine.backend import Backend
from engine.engine import Engine, default_home
from engine.errors import InvalidInput


def engine_answers(sock_path: Path) -> bool:
    """True when an engine accepts connections on the home's socket."""
    if not sock_path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(sock_path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def load_toml(path: Path, code: str) -> dict[str, Any]:
    """A TOML file the user wrote, or one clear line saying why it cannot be read."""
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"{path}: not valid TOML ({e})", code=code) from None


def resolve_home(home: Path | None) -> Path:
    return home if home is not None else default_home()


@asynccontextmanager
async def open_backend(home: Path | None, connect: str | None = None) -> AsyncIterator[Backend]:
    """`Client` for `connect` (a socket path or URL) or the home's running engine; else an
    in-process `Engine` on the home."""
    token = os.environ.get("AXONS_TOKEN")
    if connect:
        if connect.startswith(("http://", "https://")):
            client = Client(connect.rstrip("/"), token=token)
        else:
            client = Client(socket_path=Path(connect))
        async with client:
            yield client
        return
    root = resolve_home(home)
    sock = root / "engine.sock"
    if engine_answers(sock):
        async with Client(socket_path=sock) as client:
            yield client
        return
    async with Engine(root) as engine:
        yield engine
