"""`enter` on a row of the state inspector: every value of the row in full, JSON indented.
A table cell is cut to keep the table fast; this is where the whole value is read."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from axons_tui.widgets.event_detail import pretty_payload


def row_text(row: dict[str, Any], label_style: str = "bold") -> Text:
    """`name` on its own line, then its value (NULL, or the text with JSON indented)."""
    text = Text()
    for name, value in row.items():
        text.append(f"{name}\n", label_style)
        text.append("NULL" if value is None else pretty_payload(str(value)))
        text.append("\n\n")
    text.rstrip()
    return text


class RowDetailScreen(ModalScreen[None]):
    """One row of a table, in full."""

    CSS_PATH = "row_detail.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "dismiss", "Close", id="row_detail.close"),
    ]

    def __init__(self, title: str, row: dict[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.row = row

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="row-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "escape closes"
            yield Static(row_text(self.row), id="row-text", markup=False)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
