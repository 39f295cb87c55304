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


async def _session_ready(app: AxonsApp) -> None:
    """Returns once the console has opened its engine."""
    while True:
        with contextlib.suppress(RuntimeError):
            app.session  # noqa: B018 (raises until the console has mounted its session)
            return
        await asyncio.sleep(0.05)


async def _bring_to_life(
    app: AxonsApp, root: Path, axon_ids: dict[str, str], choice: RuntimeChoice
) -> None:
    """The agents start and the feeds play, through the console's own session."""
    await _session_ready(app)
    session = app.session
    if session.embedded:
        session.runtime = choice.kind  # the status bar says where the demo's agents run
    try:
        await add_demo_agents(session.backend, axon_ids, choice.kind, root)
        await run_feeds(session.backend, axon_ids)
    except* AxonError as refused:  # a feed's, or an agent the engine would not take
        first = refused.exceptions[0]
        message = first.message if isinstance(first, AxonError) else str(first)
        app.notify(f"the demo stopped: {message}", severity="error", timeout=30)


class Ending:
    """What SIGINT, SIGTERM and SIGHUP do as the demo goes: before the console opens they
    stop the demo; in the console they end it as `q` does; during the cleanup they wait,
    since a half-done cleanup would leave containers behind."""

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.app: AxonsApp | None = None
        self.cleaning = False

    def __call__(self) -> None:
        if self.cleaning:
            return
        if self.app is not None:
            self.app.exit(INTERRUPTED)
        elif self.task is not None:
            self.task.cancel()

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[Ending]:
        loop = asyncio.get_running_loop()
        for sig in ENDING_SIGNALS:
            loop.add_signal_handler(sig, self)
        try:
            yield self
        finally:
            for sig in ENDING_SIGNALS:
                loop.remove_signal_handler(sig)


async def _run_console(ending: Ending, root: Path, theme: str | None, choice: RuntimeChoice) -> int:
    async with Engine(root) as engine:  # before the console, so it opens on them
        axon_ids = await create_demo_axons(engine)
    app = ending.app = DemoConsole(ConsoleConfig(home=root, theme=theme))
    demo = asyncio.create_task(_bring_to_life(app, root, axon_ids, choice))
    try:
        result = await app.run_async()
        return app.return_code or int(result or 0)  # 1 when the console itself failed
    finally:
        demo.cancel()
        await asyncio.gather(demo, return_exceptions=True)


async def _clean_up(root: Path, keep: bool) -> None:
    if keep:
        console.print(f"demo home kept at {root}")
        return
    left = await remove_demo_home(root)
    for what in left:
        console.print(f"the demo could not remove everything; run: {what}", style="yellow")


async def run_demo_console(
    home: Path | None = None, *, keep: bool = False, theme: str | None = None
) -> int:
    """The demo from start to end; the console's exit code (130 when a signal or Ctrl-C
    ended it)."""
    root = fresh_home(home)
    with Ending().on_signals() as ending:
        try:
            choice = await _ready_runtime()
            return await _run_console(ending, root, theme, choice)
        except asyncio.CancelledError:
            return INTERRUPTED  # stopped before the console opened
        finally:
            ending.cleaning = True
            await _clean_up(root, keep)
