"""`axons demo`: the console on a fresh demo home, with three Axons coming alive in it.

Before the console takes the terminal, the agents' images are made ready (built offline on
the first run, with progress on the terminal) and the demo's Axons are created, so the
dashboard opens on them. Once the console's engine runs, the agents are added through its
session and the feeds (`demo_feeds`) play until the console ends. However it ends (`q`,
Ctrl-C as a key or as SIGINT, SIGTERM, SIGHUP, an exception), the home goes away with every
container and volume of it, unless `--keep` asks to keep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from rich.console import Console
from textual.binding import Binding, BindingType

from axons_tui.app import AxonsApp, ConsoleConfig
from axons_tui.demo_feeds import run_feeds
from axons_tui.demo_home import (
    RuntimeChoice,
    add_demo_agents,
    create_demo_axons,
    prepare_runtime,
    remove_demo_home,
)
from engine import Engine
from engine.errors import AxonError, ErrorCode, InvalidInput

console = Console(stderr=True, highlight=False)
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
INTERRUPTED = 130  # the exit code of a demo ended by Ctrl-C


class DemoConsole(AxonsApp):
    """The console, where Ctrl-C ends the demo at once (the home is thrown away anyway)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "end_demo", "End the demo", id="demo.end", show=False, priority=True),
    ]

    def action_end_demo(self) -> None:
        self.exit(INTERRUPTED)


def fresh_home(home: Path | None) -> Path:
    """`home` when it is new or empty (the demo fills it and removes it), else a new
    temporary directory."""
    if home is None:
        return Path(tempfile.mkdtemp(prefix="axons-demo-"))
    if home.exists() and any(home.iterdir()):
        raise InvalidInput(
            f"{home} is not empty: the demo needs a new home (it removes it afterwards); "
            "give a new path or none",
            code=ErrorCode.USAGE,
        )
    home.mkdir(parents=True, exist_ok=True)
    return home


def _progress(line: str) -> None:
    console.print(f"  {line}", style="dim", markup=False)


async def _ready_runtime() -> RuntimeChoice:
    console.print("preparing the demo's agents (the first run builds their images: a minute)")
    choice = await asyncio.to_thread(prepare_runtime, _progress)
    console.print(choice.reason, style="green" if choice.kind == "docker" else "yellow")
    return choice


async def _session_of(app: AxonsApp) -> None:
    """Returns once the console's engine is up."""
    while True:
        with contextlib.suppress(RuntimeError):
            app.session  # noqa: B018 (raises until the console has mounted its session)
            return
        await asyncio.sleep(0.05)


async def _bring_to_life(app: AxonsApp, axon_ids: dict[str, str], choice: RuntimeChoice) -> None:
    """The agents start and the feeds play, through the console's own session."""
    await _session_of(app)
    session = app.session
    if session.embedded:
        session.runtime = choice.kind  # the status bar says where the demo's agents run
    try:
        await add_demo_agents(session.backend, axon_ids, choice.kind)
        await run_feeds(session.backend, axon_ids)
    except AxonError as e:
        app.notify(f"the demo stopped: {e.message}", severity="error", timeout=30)


@contextlib.contextmanager
def _ending_on_signals(app: AxonsApp) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the console like `q` does, so the cleanup runs."""
    loop = asyncio.get_running_loop()
    for sig in ENDING_SIGNALS:
        loop.add_signal_handler(sig, app.exit, INTERRUPTED)
    try:
        yield
    finally:
        for sig in ENDING_SIGNALS:
            loop.remove_signal_handler(sig)


async def run_demo_console(
    home: Path | None = None, *, keep: bool = False, theme: str | None = None
) -> int:
    """The demo from start to end; the console's exit code."""
    root = fresh_home(home)
    try:
        choice = await _ready_runtime()
        async with Engine(root) as engine:  # before the console, so it opens on them
            axon_ids = await create_demo_axons(engine)
        app = DemoConsole(ConsoleConfig(home=root, theme=theme))
        with _ending_on_signals(app):
            demo = asyncio.create_task(_bring_to_life(app, axon_ids, choice))
            try:
                code = await app.run_async()
            finally:
                demo.cancel()
                await asyncio.gather(demo, return_exceptions=True)
        return int(code or 0)
    finally:
        if keep:
            console.print(f"demo home kept at {root}")
        else:
            await remove_demo_home(root)
