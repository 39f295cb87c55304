"""The console's own theme variables ($waiting, $origin-user, ...) are colours from the first
frame: before a console theme applies, their defaults name Textual's colours ($accent), and
Textual does not resolve a variable that names another. `axons demo` opens on Axons that
exist already, so its panes mount in those first frames; it crashed there now and then."""

from __future__ import annotations

from pathlib import Path

from textual import events, on
from textual.app import ComposeResult
from textual.color import Color
from textual.widgets import Static

import axons_tui.app
from axons_tui.app import AxonsApp
from axons_tui.themes import CONSOLE_VARIABLES


class Waiting(Static):
    DEFAULT_CSS = "Waiting { color: $waiting; border: round $origin-agent; }"


class Bare(AxonsApp):
    """The console's variables on Textual's own theme, with no session or console theme."""

    CSS_PATH = str(Path(axons_tui.app.__file__).with_name("app.tcss"))

    @on(events.Mount)
    def _stay_bare(self, event: events.Mount) -> None:
        event.prevent_default()  # no session, no console theme: Textual's own

    def compose(self) -> ComposeResult:
        yield Waiting("a human is needed")


def test_our_variables_are_colours_on_textuals_own_theme() -> None:
    variables = AxonsApp().get_css_variables()
    for name in CONSOLE_VARIABLES:
        Color.parse(variables[name])  # raises on "$accent"


async def test_a_widget_using_them_mounts_before_any_console_theme() -> None:
    app = Bare()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.query_one(Waiting).styles.color == Color.parse(
            app.get_css_variables()["waiting"]
        )
