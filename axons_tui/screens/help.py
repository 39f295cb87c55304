"""`?`: what the screen below is for, and its keys as they are now (remapped ones included)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

# Keys every scrolling widget has, which say nothing about the screen.
PLUMBING = {
    "scroll_left",
    "scroll_right",
    "page_left",
    "page_right",
    "screen.copy_text",
    "command_palette",
}


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help.close"),
    ]

    def __init__(self, about: Screen[Any]) -> None:
        super().__init__()
        self.about = about

    def compose(self) -> ComposeResult:
        name = getattr(self.about, "TITLE", None) or type(self.about).__name__.removesuffix(
            "Screen"
        )
        with VerticalScroll(id="help-box") as box:
            box.border_title = f"Help · {name}"
            box.border_subtitle = "escape closes"
            text = getattr(self.about, "HELP", "")
            if text:
                yield Static(Text(text.strip()), id="help-text")
            yield Static(self._keys(), id="help-keys")

    def key_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every described binding active on the screen below."""
        rows: dict[str, str] = {}
        for active in self.about.active_bindings.values():
            binding = active.binding
            if binding.system or binding.action in PLUMBING or not binding.description:
                continue
            rows.setdefault(binding.description, self.app.get_key_display(binding))
        rows["Command palette: every action, searchable"] = "ctrl+p"
        return [(keys, what) for what, keys in rows.items()]

    def _keys(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for keys, what in self.key_rows():
            table.add_row(Text(keys), Text(what))
        return table

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
