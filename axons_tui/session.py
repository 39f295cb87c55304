"""The console's one view of the engine, embedded or attached (architecture decision 8).

Embedded: no engine answers on the home's socket, so the console opens the home in-process
and serves the engine's API on `engine.sock` while it runs, so other consoles, the CLI and
scripts can join. Attached: a `Client` over a socket or URL (`--connect`, or the engine that
already serves the home). Screens see only `Session.backend` (the `Backend` protocol) and the
live stream below; they never learn which of the two it is, except to say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from axons_tui.backend import engine_answers, resolve_home
from engine.api.client import Client
from engine.backend import Backend
from engine.engine import Engine
from engine.errors import AxonError
from engine.home import Home
from engine.models import Event
from engine.runtime.docker import docker_available

RETRY_S = 1.0  # how often a lost engine is tried again
RESUME_S = 0.05  # before an embedded engine's overflowed stream is resumed
CATCH_UP_PAGE = 1000

# What breaks when an attached engine goes away (or is not back yet).
CONNECTION_LOST = (httpx.TransportError, ConnectionError, OSError)


@dataclass
class Session:
    """A backend, what it is for the status bar, and a live stream of every Axon's events."""

    backend: Backend
    embedded: bool
    where: str  # the socket path or URL the engine's API answers on
    runtime: str  # where agents run: "docker" or "process" ("engine's" when attached)
    connected: bool = True
    on_status: Callable[[bool], None] = field(default=lambda connected: None)
    _seen: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """`embedded engine on …` or `attached to …`, for the status bar."""
        return f"{'embedded engine' if self.embedded else 'attached'} · {self.where}"

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.on_status(connected)

    async def events(self) -> AsyncIterator[list[Event]]:
        """Every new event of every Axon, in batches, each Axon's in sequence order. When an
        attached engine goes away, this says so (`on_status`), retries, and resumes where it
        stopped: what was committed meanwhile comes first, nothing twice, nothing skipped."""
        resuming = False
        while True:
            try:
                async for batch in self._stream(resuming):
                    self._set_connected(True)
                    if batch:
                        yield batch
            except CONNECTION_LOST:
                if self.embedded:
                    raise
            except AxonError as e:
                if self.embedded or e.status < 500:
                    raise
            else:
                if self.embedded:
                    # The engine ends a live stream that fell too far behind (engine.bus), as
                    # well as on closing: resume from the file. Closing cancels this worker.
                    resuming = True
                    await asyncio.sleep(RESUME_S)
                    continue
            self._set_connected(False)
            resuming = True
            await asyncio.sleep(RETRY_S)

    async def _stream(self, resuming: bool) -> AsyncIterator[list[Event]]:
        """One connection's worth: the live stream, preceded (after a reconnect) by what each
        known Axon committed while we were away. The stream opens before the catch-up, and a
        second sweep a moment later covers what committed while it was still connecting.
        Events are read by a task of their own and handed on in batches of whatever arrived
        meanwhile, so a flood costs one step per batch, not one per event."""
        arrived: asyncio.Queue[Event | None] = asyncio.Queue()  # None: the stream ended
        reader = asyncio.create_task(self._read(self.backend.subscribe_all(), arrived))
        loop = asyncio.get_running_loop()
        sweep_at = loop.time() + RETRY_S if resuming else None
        try:
            if resuming:
                yield await self._catch_up_all()
            while True:
                timeout = None if sweep_at is None else max(0.0, sweep_at - loop.time())
                try:
                    first = await asyncio.wait_for(arrived.get(), timeout)
                except TimeoutError:
                    sweep_at = None
                    yield await self._catch_up_all()
                    continue
                batch = [first]
                while not arrived.empty():
                    batch.append(arrived.get_nowait())
                accepted: list[Event] = []
                for event in batch:
                    if event is not None:
                        accepted.extend(await self._accept(event))
                if accepted:
                    yield accepted
                if batch[-1] is None:
                    await reader  # raises the reader's error, if it ended on one
                    return
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    @staticmethod
    async def _read(live: AsyncIterator[Event], into: asyncio.Queue[Event | None]) -> None:
        try:
            async for event in live:
                into.put_nowait(event)
        finally:
            into.put_nowait(None)
            aclose = getattr(live, "aclose", None)  # both backends give async generators
            if aclose is not None:
                with contextlib.suppress(BaseException):
                    await aclose()

    async def _accept(self, event: Event) -> list[Event]:
        """The event, after whatever of its Axon went missing before it; [] for a repeat."""
        seen = self._seen.get(event.axon_id)
        if seen is not None and event.sequence <= seen:
            return []
        if seen is not None and event.sequence > seen + 1:
            missed = await self._catch_up(event.axon_id)
            return [e for e in missed if e.sequence < event.sequence] + [event]
        self._seen[event.axon_id] = event.sequence
        return [event]

    async def _catch_up(self, axon_id: str) -> list[Event]:
        out: list[Event] = []
        while True:
            after = self._seen[axon_id]
            page = await self.backend.read_events(axon_id, after=after, limit=CATCH_UP_PAGE)
            if not page:
                return out
            out.extend(page)
            self._seen[axon_id] = page[-1].sequence
            if len(page) < CATCH_UP_PAGE:
                return out

    async def _catch_up_all(self) -> list[Event]:
        out: list[Event] = []
        for axon_id in list(self._seen):
            out.extend(await self._catch_up(axon_id))
        return out


@asynccontextmanager
async def open_session(
    home: Path | None, connect: str | None = None, *, serve_api: bool = True
) -> AsyncIterator[Session]:
    """Attach to `connect` or to the engine serving the home; else embed one on the home and
    (with `serve_api`) serve its API on the home's socket until the session ends."""
    if connect or engine_answers(Home(resolve_home(home)).socket):
        async with _attached(home, connect) as session:
            yield session
        return
    root = resolve_home(home)
    root.mkdir(parents=True, exist_ok=True)
    async with Engine(root) as engine:
        runtime = "docker" if await asyncio.to_thread(docker_available) else "process"
        session = Session(engine, embedded=True, where=str(engine.paths.socket), runtime=runtime)
        if not serve_api:
            yield session
            return
        async with _serving(engine, root):
            yield session


@asynccontextmanager
async def _attached(home: Path | None, connect: str | None) -> AsyncIterator[Session]:
    if connect and connect.startswith(("http://", "https://")):
        client = Client(connect.rstrip("/"), token=os.environ.get("AXONS_TOKEN"))
        where = connect
    else:
        sock = Path(connect) if connect else Home(resolve_home(home)).socket
        client = Client(socket_path=sock)
        where = str(sock)
    async with client:
        await client.list_axons(limit=1)  # a wrong address fails here, with its reason
        yield Session(client, embedded=False, where=where, runtime="the engine's")


@asynccontextmanager
async def _serving(engine: Engine, root: Path) -> AsyncIterator[None]:
    """The engine's API on the home's socket for as long as the block runs."""
    from engine.api.serve import serve  # the HTTP stack loads only for an embedded engine

    stop = asyncio.Event()
    ready = asyncio.Event()
    server = asyncio.create_task(
        serve(root, engine=engine, stop=stop, on_ready=lambda where: ready.set())
    )
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([server, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if server.done():
        server.result()  # it could not start: say why
    try:
        yield
    finally:
        stop.set()
        await server
