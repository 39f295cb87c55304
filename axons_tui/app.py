"""The Axons console: a Textual app on one `Session` (an embedded or attached engine).

The app owns what every screen shares: the session, the live `Feed`, themes, remapped keys,
the command palette and navigation (`open_axon`, `open_inspector`, `open_replay`,
`open_monitor`). Screens live in `screens/` and compose widgets from `widgets/`; they reach
the engine only through `app.session.backend`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import pkgutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.reactive import reactive
from textual.screen import Screen

from axons_tui.feed import FLUSH_S, LIVE, RETRYING, Feed
from axons_tui.keys import Keymap, binding_ids, load_keymap, user_keys_file
from axons_tui.session import Session, open_session
from axons_tui.themes import (
    CONSOLE_VARIABLES,
    DEFAULT_THEME,
    SHIPPED_THEMES,
    load_themes,
    user_themes_dir,
)
from engine.errors import AxonError


@dataclass(frozen=True)
class ConsoleConfig:
    """How a console starts. Tests fix `clock`, `keys_file` and `themes_dir`."""

    home: Path | None = None
    connect: str | None = None
    theme: str | None = None
    serve_api: bool = True  # an embedded engine serves its API on the home's socket
    replay: tuple[str, int | None] | None = None  # start in the replay viewer (AXON, --at)
    keys_file: Path | None = None  # default: keys.toml in the user config dir
    themes_dir: Path | None = None  # default: themes/ in the user config dir
    clock: Callable[[], int] | None = None  # ms since epoch; default: the wall clock


class AxonsApp(App[int]):
    """`axons` / `axons tui`: live Axons side by side, and a screen for each way to look at one."""

    TITLE = "Axons"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("m", "open_monitor", "Monitor", id="app.monitor"),
        Binding("q", "quit_console", "Quit", id="app.quit"),
        # Textual's own ctrl+q would quit without asking; it asks like q, from any widget.
        Binding("ctrl+q", "quit_console", "Quit from anywhere", show=False, priority=True),
    ]

    connection = reactive(LIVE)  # LIVE or RETRYING; the status bar shows it

    def __init__(self, config: ConsoleConfig | None = None) -> None:
        super().__init__()
        self.config = config or ConsoleConfig()
        self.feed = Feed()
        self._session: Session | None = None
        self._resources = contextlib.AsyncExitStack()
        self.notices: list[str] = []  # what start-up skipped (bad theme or key files)

    # -- what screens use

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the console has no session before it mounts")
        return self._session

    def now_ms(self) -> int:
        return self.config.clock() if self.config.clock else time.time_ns() // 1_000_000

    def open_axon(self, axon_id: str) -> None:
        from axons_tui.screens.axon import AxonScreen

        self.push_screen(AxonScreen(axon_id))

    def open_inspector(self, axon_id: str, at_sequence: int | None = None) -> None:
        from axons_tui.screens.inspector import InspectorScreen

        self.push_screen(InspectorScreen(axon_id, at_sequence=at_sequence))

    def open_replay(self, axon_id: str, at_sequence: int | None = None) -> None:
        from axons_tui.screens.replay import ReplayScreen

        self.push_screen(ReplayScreen(axon_id, at_sequence=at_sequence))

    def open_monitor(self) -> None:
        from axons_tui.screens.monitor import MonitorScreen

        if not isinstance(self.screen, MonitorScreen):
            self.push_screen(MonitorScreen())

    def open_help(self) -> None:
        from axons_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # -- start and stop

    async def on_mount(self) -> None:
        self._load_themes()
        self._load_keys()
        try:
            self._session = await self._resources.enter_async_context(
                open_session(self.config.home, self.config.connect, serve_api=self.config.serve_api)
            )
        except (AxonError, OSError, httpx.HTTPError) as e:
            self.exit(1, message=f"axons: cannot open the console's engine: {e}")
            return
        self._session.on_status = self._connection_changed
        self.set_interval(FLUSH_S, self.feed.flush)
        self._follow()
        # What start-up allocated lives as long as the console: keep it out of every later
        # collection, so a full one does not stall the screen for a tenth of a second.
        gc.freeze()
        for notice in self.notices:
            self.notify(notice, severity="warning", timeout=8)
        from axons_tui.screens.dashboard import DashboardScreen

        await self.push_screen(DashboardScreen())
        if self.config.replay is not None:
            await self._start_in_replay(*self.config.replay)

    async def _start_in_replay(self, ref: str, at_sequence: int | None) -> None:
        """`axons replay AXON [--at N]`: the Axon by id or name, else one line and exit 1."""
        try:
            axon = await self.session.backend.get_axon(ref)
        except AxonError as e:
            self.exit(1, message=f"axons: {e.message}")
            return
        self.open_replay(axon.id, at_sequence)

    async def on_unmount(self) -> None:
        await self._resources.aclose()

    @work(exclusive=True, group="feed")
    async def _follow(self) -> None:
        """Every live event of the session into the feed, for as long as the console runs."""
        try:
            async for batch in self.session.events():
                self.feed.push(batch)
        except (AxonError, OSError, httpx.HTTPError) as e:
            self.connection = RETRYING
            self.notify(f"the live stream ended: {e}", severity="error", timeout=30)

    def _connection_changed(self, connected: bool) -> None:
        self.connection = LIVE if connected else RETRYING
        self.feed.status = self.connection

    # -- themes and keys

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(CONSOLE_VARIABLES)

    def get_css_variables(self) -> dict[str, str]:
        """Textual's variables and ours, with our defaults' `$accent`-style references
        resolved: Textual does not resolve a variable whose value names another, so on a
        Textual theme (before a console theme applies, or the `textual-dark` fallback when
        no theme file loads) `$waiting` would be a stylesheet error."""
        variables = super().get_css_variables()
        resolved = {
            name: variables.get(value[1:], value) if value.startswith("$") else value
            for name, value in variables.items()
        }
        self.theme_variables = resolved
        return resolved

    def _load_themes(self) -> None:
        loaded = load_themes(SHIPPED_THEMES, self.config.themes_dir or user_themes_dir())
        self.notices.extend(loaded.problems)
        for theme in loaded.themes.values():
            self.register_theme(theme)
        wanted = self.config.theme or DEFAULT_THEME
        if wanted not in loaded.themes:
            self.notices.append(f"no theme named {wanted!r}; using {DEFAULT_THEME}")
            wanted = DEFAULT_THEME
        self.theme = wanted if wanted in loaded.themes else "textual-dark"

    def _load_keys(self) -> None:
        keymap: Keymap = load_keymap(self.config.keys_file or user_keys_file(), known_binding_ids())
        self.notices.extend(keymap.problems)
        if keymap.keys:
            self.set_keymap(keymap.keys)

    def console_themes(self) -> list[str]:
        return sorted(name for name in self.available_themes if not name.startswith("textual-"))

    # -- actions

    def action_help(self) -> None:
        self.open_help()

    def action_open_monitor(self) -> None:
        self.open_monitor()

    @work(exclusive=True, group="quit")
    async def action_quit_console(self) -> None:
        """Quit; with an embedded engine whose agents still run, ask first (they stop too)."""
        running = await self._running_agents()
        if running:
            from axons_tui.screens.quit import QuitScreen

            if not await self.push_screen_wait(QuitScreen(running)):
                return
        self.exit(0)

    async def _running_agents(self) -> list[str]:
        if self._session is None or not self._session.embedded:
            return []
        with contextlib.suppress(AxonError):
            agents = await self._session.backend.agents.list()
            return [a.name for a in agents if a.state not in ("stopped", "failed")]
        return []

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every action, in the palette: navigation, themes, the screen's own commands."""
        yield SystemCommand("Help", "Keys and what this screen is for", self.open_help)
        yield SystemCommand("Monitor", "Every Axon of the home in one table", self.open_monitor)
        yield SystemCommand("Quit", "Leave the console", self.action_quit_console)
        for name in self.console_themes():
            yield SystemCommand(
                f"Theme: {name}", f"Switch to the {name} theme", _setter(self, name)
            )
        own = getattr(screen, "get_commands", None)
        if callable(own):
            for title, help_text, callback in own():
                yield SystemCommand(title, help_text, callback)
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Theme"):
                yield command


def _setter(app: AxonsApp, theme: str) -> Callable[[], None]:
    def switch() -> None:
        app.theme = theme

    return switch


def known_binding_ids() -> set[str]:
    """Every binding id of the app, its screens and its widgets, for checking the user's keys."""
    ids = binding_ids(AxonsApp.BINDINGS)
    for package in ("axons_tui.screens", "axons_tui.widgets"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            module = importlib.import_module(f"{package}.{info.name}")
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, DOMNode):
                    ids |= binding_ids(value.BINDINGS)
    return ids


async def run_console(config: ConsoleConfig) -> int:
    """Run the console until it quits; its exit code."""
    app = AxonsApp(config)
    code = await app.run_async()
    return int(code or 0)
