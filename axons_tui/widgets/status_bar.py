"""One line at the bottom of every screen: which engine, where agents run, and whether the
live stream is up ("disconnected, retrying" stands out until it is back)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.widgets import Static

from axons_tui.feed import LIVE

if TYPE_CHECKING:
    from axons_tui.app import AxonsApp


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {  /* in the flow at the end of a screen, above its docked footer */
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $foreground-muted;
    }
    StatusBar.-retrying {
        background: $error;
        color: $text;
        text-style: bold;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._show, init=True)

    def _show(self, connection: str) -> None:
        app = cast("AxonsApp", self.app)
        self.set_class(connection != LIVE, "-retrying")
        line = Text("● " if connection == LIVE else "○ ")
        line.append(connection)
        if app._session is not None:
            session = app.session
            line.append(f" · {session.label}")
            runtime = {"docker": "Docker", "process": "local processes"}.get(session.runtime)
            line.append(f" · agents in {runtime}" if runtime else " · agents run on the engine")
        self.update(line)
