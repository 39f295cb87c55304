"""What one event changed in the Axon's tables: each row before and after, column by column.

A line-API widget: one batch can touch thousands of rows, and only the visible lines are
drawn. Lines are kept as (text, role) pieces and styled when drawn, so a theme switch
recolours them; values are plain text, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from axons_tui.widgets.state_table import shown_value
from engine.models import RowChange

MAX_CHANGES = 500  # rows listed per event; a count says how many more there were
VALUE_CHARS = 60

Piece = tuple[str, str]  # (text, component class; "" for the widget's own style)
Line = list[Piece]

OP_ROLE = {
    "insert": "changes-view--insert",
    "update": "changes-view--update",
    "delete": "changes-view--delete",
}


def change_lines(change: RowChange) -> list[Line]:
    """A heading (`table #rowid  op`) and a line per column: `name  before → after` where
    the value changed, `name  value` where it did not."""
    lines: list[Line] = [
        [
            (f"{change.table} ", "changes-view--table"),
            (f"#{change.rowid} ", "changes-view--muted"),
            (change.op, OP_ROLE[change.op]),
        ]
    ]
    before, after = change.before or {}, change.after or {}
    columns = list(dict.fromkeys([*before, *after]))
    width = max((len(c) for c in columns), default=0)
    for column in columns:
        name: Piece = (f"  {column:<{width}}  ", "changes-view--muted")
        old = shown_value(before.get(column), VALUE_CHARS)
        new = shown_value(after.get(column), VALUE_CHARS)
        if change.op == "update" and before.get(column) != after.get(column):
            lines.append(
                [
                    name,
                    (old, "changes-view--before"),
                    (" → ", "changes-view--muted"),
                    (new, "changes-view--changed"),
                ]
            )
        elif change.op == "delete":
            lines.append([name, (old, "changes-view--before")])
        else:
            lines.append([name, (new, "changes-view--changed" if change.op == "insert" else "")])
    return lines


def describe(sequence: int, changes: Sequence[RowChange]) -> list[Line]:
    """Every line the view shows for event `sequence`."""
    if sequence < 1:
        return [[("the state before the first event", "changes-view--muted")]]
    if not changes:
        return [[(f"event #{sequence} changed no rows", "changes-view--muted")]]
    tables = sorted({c.table for c in changes})
    lines: list[Line] = [
        [
            (
                f"event #{sequence} changed {len(changes):,} row"
                f"{'s' if len(changes) != 1 else ''} in {', '.join(tables)}",
                "changes-view--title",
            )
        ]
    ]
    for change in changes[:MAX_CHANGES]:
        lines.extend(change_lines(change))
    if len(changes) > MAX_CHANGES:
        more = len(changes) - MAX_CHANGES
        lines.append([(f"… and {more:,} more", "changes-view--muted")])
    return lines


class ChangesView(ScrollView, can_focus=True):
    """The rows an event changed, before and after."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "changes-view--title",
        "changes-view--table",
        "changes-view--muted",
        "changes-view--insert",
        "changes-view--update",
        "changes-view--delete",
        "changes-view--before",
        "changes-view--changed",
    }

    DEFAULT_CSS = """
    ChangesView {
        & > .changes-view--title { text-style: bold; }
        & > .changes-view--table { color: $primary; text-style: bold; }
        & > .changes-view--muted { color: $foreground-muted; }
        & > .changes-view--insert { color: $success; }
        & > .changes-view--update { color: $warning; }
        & > .changes-view--delete { color: $error; }
        & > .changes-view--before { color: $foreground-muted; text-style: strike; }
        & > .changes-view--changed { background: $changed; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._lines: list[Line] = []
        self.sequence: int | None = None
        self.changes: list[RowChange] = []

    def show(self, sequence: int, changes: Sequence[RowChange]) -> None:
        """Show what event `sequence` changed."""
        self.sequence = sequence
        self.changes = list(changes)
        self._lines = describe(sequence, changes)
        width = max((sum(cell_len(text) for text, _ in line) for line in self._lines), default=0)
        self.virtual_size = Size(width, len(self._lines))
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    @property
    def text(self) -> str:
        """Everything the view holds, as plain text (what a reader sees, for tests)."""
        return "\n".join("".join(text for text, _ in line) for line in self._lines)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        base = self.rich_style
        width = self.size.width
        if index >= len(self._lines):
            return Strip.blank(width, base)
        text = Text(no_wrap=True, end="")
        for piece, role in self._lines[index]:
            text.append(piece, self.get_component_rich_style(role) if role else None)
        text.stylize_before(base)
        strip = Strip(text.render(self.app.console))
        return strip.crop_extend(scroll_x, scroll_x + width, base).apply_offsets(scroll_x, index)
