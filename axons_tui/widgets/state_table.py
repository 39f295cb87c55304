"""A query result as a table, with the rows an event changed standing out.

Cells are `Text` built from the values, so database text is never read as markup; long values
are cut to keep a 1 MiB payload from costing a frame. The highlight colour comes from the
theme (`$changed`) through a component class, so it follows a theme switch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

from engine.models import QueryResult

CELL_CHARS = 80  # how much of a value a cell shows; the rest is behind the cut


def shown_value(value: Any, limit: int = CELL_CHARS) -> str:
    """A value on one line: NULL says so, line breaks show as ⏎, long values are cut."""
    if value is None:
        return "NULL"
    text = str(value).replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell_text(value: Any, null_style: Style | str = "") -> Text:
    """One value as a cell (plain text, never markup); NULL in its own style."""
    return Text(shown_value(value), style=null_style if value is None else "")


class StateTable(DataTable[Text]):
    """Rows of one result. `changed` holds the rowids to highlight, matched against the
    result's `rowid` column (the state browsers put it first)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *DataTable.COMPONENT_CLASSES,
        "state-table--changed",
        "state-table--null",
    }

    DEFAULT_CSS = """
    StateTable > .state-table--changed { background: $changed; }
    StateTable > .state-table--null { color: $foreground-muted; text-style: italic; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._changed_rows: set[int] = set()
        self.result: QueryResult | None = None  # the values in full, behind the cut cells

    def show(
        self, result: QueryResult, changed: Iterable[int] = (), *, keep_place: bool = False
    ) -> None:
        """Replace what the table shows with `result`, highlighting the rows whose rowid is
        in `changed` (none when the result has no `rowid` column: an arbitrary query cannot
        be matched to rows). `keep_place` keeps the cursor and the scroll where they were
        (the same rows, read again)."""
        row, scroll = self.cursor_row, self.scroll_offset
        self.result = result
        wanted = set(changed)
        names = [column.name for column in result.columns]
        key = names.index("rowid") if "rowid" in names else None
        self._changed_rows = (
            set() if key is None else {i for i, row in enumerate(result.rows) if row[key] in wanted}
        )
        self.clear(columns=True)  # also drops the rendered rows, so the highlight redraws
        null_style = self.get_component_rich_style("state-table--null", partial=True)
        rows = [[cell_text(v, null_style) for v in values] for values in result.rows]
        for i, name in enumerate(names):  # sized now, not at the table's next idle (which
            # can come after a frame is drawn: a column at its header's width, cells cut)
            self.add_column(name, width=max([len(name)] + [row[i].cell_len for row in rows]))
        self.add_rows(rows)
        if keep_place and result.rows:
            self.move_cursor(row=min(row, len(result.rows) - 1), scroll=False)
            self.scroll_to(scroll.x, scroll.y, animate=False, immediate=True)

    def full_row(self, index: int) -> dict[str, Any]:
        """Row `index` as column name to value, nothing cut (a repeated name gets a #)."""
        if self.result is None:
            return {}
        row: dict[str, Any] = {}
        for column, value in zip(self.result.columns, self.result.rows[index], strict=True):
            name = column.name
            while name in row:
                name += "#"
            row[name] = value
        return row

    @property
    def changed_rows(self) -> set[int]:
        """The row indexes highlighted as changed."""
        return set(self._changed_rows)

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        # DataTable's hook for a row's style (textual is pinned, so this hook stays put).
        style = super()._get_row_style(row_index, base_style)
        if row_index in self._changed_rows:
            return style + self.get_component_rich_style("state-table--changed", partial=True)
        return style
