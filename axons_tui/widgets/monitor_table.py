"""The monitor's table: one row per Axon, rendered from `AxonActivity`, sortable by any
column (click its header, or cycle with a key), updated in place cell by cell.

Cells are rich `Text` built from pieces, never parsed as markup: Axon and agent names are
data. Colours come from component classes whose TCSS uses theme variables.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from axons_tui.activity import AGENT_STATES, WINDOW_MS, AxonActivity

SPARK_BARS = 12  # the hour in 5-minute bars
BAR_MS = WINDOW_MS // SPARK_BARS
SPARK_GLYPHS = " ▁▂▃▄▅▆▇█"
WAITING_GLYPH = "⚑"
NOTHING = "·"
PENDING = "…"  # a stat not read yet
FIRST_ROWS = 100  # rows in the first frame (more than a screen holds); the rest follow


class Cell(Text):
    """A cell's text and the value it sorts by (so sorting never parses what it shows)."""

    def __init__(self, text: str = "", style: Style | str = "") -> None:
        super().__init__(text, style=style, no_wrap=True, overflow="ellipsis", end="")
        self.sort_key: Any = 0


@dataclass(frozen=True)
class ColumnSpec:
    key: str
    label: str
    width: int
    descending: bool  # the natural first order: biggest or newest first
    # What the cell shows, cheap to compute: the cell is rendered again only when it changes,
    # so a once-a-second pass over a thousand rows costs little.
    shows: Callable[[AxonActivity, int], Hashable]
    order: Callable[[AxonActivity, int], Any]  # the sort key
    cell: Callable[[MonitorTable, AxonActivity, int], Cell]


def age_text(ms: int) -> str:
    """A short age: 4s, 12m, 3h, 2d."""
    seconds = max(0, ms) // 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def spark(counts: list[int]) -> str:
    """Block glyphs scaled to the row's own busiest bar; a quiet bar stays blank."""
    top = max(counts, default=0)
    if top == 0:
        return " " * len(counts)
    steps = len(SPARK_GLYPHS) - 1
    return "".join(SPARK_GLYPHS[0 if n == 0 else max(1, round(n * steps / top))] for n in counts)


class MonitorTable(DataTable[Cell]):
    """Every Axon of the home as a row keyed by its id."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *DataTable.COMPONENT_CLASSES,
        "monitor-table--spark",
        "monitor-table--waiting",
        "monitor-table--muted",
        "monitor-table--sorted",
        *(f"monitor-table--state-{state}" for state in AGENT_STATES),
    }

    def __init__(self, now_ms: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._now_ms = now_ms
        self.sort_column = "name"
        self.sort_reverse = False
        self._shown: dict[str, tuple[Hashable, ...]] = {}  # row key -> what its cells show
        self._rows: dict[str, AxonActivity] = {}
        self._styles: dict[str, Style] = {}
        self._generation = 0  # which show() the rows being added belong to

    def on_mount(self) -> None:
        for spec in COLUMNS:
            self.add_column(spec.label, key=spec.key, width=spec.width)

    # -- rows ------------------------------------------------------------------------

    def show(self, activities: Iterable[AxonActivity]) -> None:
        """Replace the rows with these Axons, in the current sort order. The first screenful
        goes in at once and the rest right after it is painted, so a thousand rows cost the
        first frame no more than fifty."""
        keep = self.highlighted_key
        self.clear()
        self._shown.clear()
        self._rows = {a.axon_id: a for a in activities}
        ordered = self.in_order(self._rows.values())
        self._generation += 1
        self._mark_sort_column()
        self._add(ordered[:FIRST_ROWS])
        if len(ordered) > FIRST_ROWS:
            self.call_after_refresh(self._add_rest, self._generation, ordered[FIRST_ROWS:], keep)
        elif keep is not None and keep in self._shown:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def in_order(self, activities: Iterable[AxonActivity]) -> list[AxonActivity]:
        """The Axons in the table's current sort order."""
        now_ms = self._now_ms()
        order = SPECS[self.sort_column].order
        return sorted(activities, key=lambda a: order(a, now_ms), reverse=self.sort_reverse)

    def _add(self, activities: Iterable[AxonActivity]) -> None:
        now_ms = self._now_ms()
        for a in activities:
            self._shown[a.axon_id] = tuple(spec.shows(a, now_ms) for spec in COLUMNS)
            self.add_row(*(self._cell(spec, a, now_ms) for spec in COLUMNS), key=a.axon_id)

    def _add_rest(self, generation: int, rest: list[AxonActivity], keep: str | None) -> None:
        if generation != self._generation:
            return  # shown again meanwhile (a new filter): these rows are stale
        self._add(rest)
        self._sort_keeping(keep)

    def _cell(self, spec: ColumnSpec, activity: AxonActivity, now_ms: int) -> Cell:
        cell = spec.cell(self, activity, now_ms)
        cell.sort_key = spec.order(activity, now_ms)
        return cell

    def update(self) -> None:
        """Render again the cells whose content changed (live events, time passing);
        re-sort when the sort column is among them."""
        now_ms = self._now_ms()
        resort = False
        for axon_id, before in self._shown.items():
            activity = self._rows[axon_id]
            after = tuple(spec.shows(activity, now_ms) for spec in COLUMNS)
            if after == before:
                continue
            self._shown[axon_id] = after
            for spec, old, new in zip(COLUMNS, before, after, strict=True):
                if old != new:
                    self.update_cell(axon_id, spec.key, self._cell(spec, activity, now_ms))
                    resort = resort or spec.key == self.sort_column
        if resort:
            self._sort_keeping(self.highlighted_key)

    def notify_style_update(self) -> None:
        """A theme switch: styles are read again and every row is rendered with them."""
        super().notify_style_update()
        self._styles.clear()
        if self._rows:
            self.show(list(self._rows.values()))

    @property
    def highlighted_key(self) -> str | None:
        """The Axon id under the cursor (None when the table is empty)."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    # -- sorting ---------------------------------------------------------------------

    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again flips the order."""
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column = column
            self.sort_reverse = SPECS[column].descending
        self._sort_keeping(self.highlighted_key)

    def cycle_sort(self) -> None:
        """The next column's natural order."""
        keys = list(SPECS)
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.sort_reverse = SPECS[self.sort_column].descending
        self._sort_keeping(self.highlighted_key)

    def _sort_keeping(self, row_key: str | None) -> None:
        """Sort, and keep the cursor on the same Axon (rows move; the Axon should not)."""
        self.sort(self.sort_column, key=lambda cell: cell.sort_key, reverse=self.sort_reverse)
        self._mark_sort_column()
        if row_key is not None and row_key in self._shown:
            self.move_cursor(row=self.get_row_index(row_key), animate=False)

    def _mark_sort_column(self) -> None:
        """The sort column's header stands out, with ▲ or ▼ where its width allows."""
        for spec in COLUMNS:
            label = Text(spec.label)
            if spec.key == self.sort_column:
                label.stylize(self._style("sorted"))
                if len(spec.label) + 2 <= spec.width:
                    label.append(" ▼" if self.sort_reverse else " ▲")
            self.columns[ColumnKey(spec.key)].label = label
        self.refresh()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value is not None:
            self.sort_by(event.column_key.value)

    # -- cell renderers --------------------------------------------------------------

    def _style(self, name: str) -> Style:
        """A component class's style, read once per theme (the lookup is not cheap)."""
        style = self._styles.get(name)
        if style is None:
            style = self.get_component_rich_style(f"monitor-table--{name}", partial=True)
            self._styles[name] = style
        return style

    def name_cell(self, a: AxonActivity, now_ms: int) -> Cell:
        style = self._style("waiting") if a.waiting else ""
        return Cell(a.label, style)

    def agents_cell(self, a: AxonActivity, now_ms: int) -> Cell:
        if not a.agents:
            return Cell(NOTHING, self._style("muted"))
        cell = Cell()
        for i, (name, state) in enumerate(sorted(a.agents.items())):
            if i:
                cell.append(" ")
            cell.append(name, self._style(f"state-{state}"))
            cell.append(f" {state}", self._style("muted"))
        return cell

    def rate_cell(self, a: AxonActivity, now_ms: int) -> Cell:
        if not a.seeded:
            return Cell(PENDING.rjust(6), self._style("muted"))
        n = a.per_minute(now_ms)
        return Cell(f"{n:>6,}" if n < 1_000_000 else f"{n / 1e6:>5.1f}M")

    def hour_cell(self, a: AxonActivity, now_ms: int) -> Cell:
        if not a.seeded:
            return Cell(PENDING, self._style("muted"))
        counts = a.hour(now_ms, SPARK_BARS)
        return Cell(spark(counts), self._style("spark"))

    def age_cell(self, a: AxonActivity, now_ms: int) -> Cell:
        if a.last_event_ms is None:
            text = NOTHING if a.seeded else PENDING
            return Cell(text, self._style("muted"))
        return Cell(age_text(now_ms - a.last_event_ms))

    def wake_cell(self, a: AxonActivity, now_ms: int) -> Cell:
        if a.last_wake_ms is None:
            return Cell(NOTHING, self._style("muted"))
        return Cell(f"{a.last_wake_ms:,.0f}ms")

    def waiting_cell(self, a: AxonActivity, now_ms: int) -> Cell:
        if a.waiting:
            return Cell(WAITING_GLYPH, self._style("waiting"))
        return Cell("")


def _age_shown(a: AxonActivity, now_ms: int) -> Hashable:
    return a.seeded if a.last_event_ms is None else age_text(now_ms - a.last_event_ms)


def _agents_order(a: AxonActivity, _: int) -> tuple[int, int]:
    """Axons with running agents first, then those with more agents."""
    return sum(state == "running" for state in a.agents.values()), len(a.agents)


UNKNOWN = -(1 << 62)  # sorts below every real value: rows not read yet go last (descending)

# Widths fit 80 columns (with DataTable's one-cell padding each side and a scrollbar).
COLUMNS = (
    ColumnSpec(
        "name",
        "Axon",
        18,
        False,
        shows=lambda a, _: (a.label, a.waiting),
        order=lambda a, _: a.label.lower(),
        cell=MonitorTable.name_cell,
    ),
    ColumnSpec(
        "agents",
        "Agents",
        16,
        True,
        shows=lambda a, _: tuple(sorted(a.agents.items())),
        order=_agents_order,
        cell=MonitorTable.agents_cell,
    ),
    ColumnSpec(
        "rate",
        "ev/min",
        6,
        True,
        shows=lambda a, now: (a.seeded, a.per_minute(now)),
        order=lambda a, now: a.per_minute(now) if a.seeded else UNKNOWN,
        cell=MonitorTable.rate_cell,
    ),
    ColumnSpec(
        "hour",
        "last hour",
        SPARK_BARS,
        True,
        shows=lambda a, now: a.seeded and (a.last_sequence, now // BAR_MS),
        order=lambda a, now: a.in_window(now) if a.seeded else UNKNOWN,
        cell=MonitorTable.hour_cell,
    ),
    ColumnSpec(
        "age",
        "last",
        4,
        True,
        shows=_age_shown,
        order=lambda a, _: UNKNOWN if a.last_event_ms is None else a.last_event_ms,
        cell=MonitorTable.age_cell,
    ),
    ColumnSpec(
        "wake",
        "wake",
        6,
        True,
        shows=lambda a, _: a.last_wake_ms,
        order=lambda a, _: UNKNOWN if a.last_wake_ms is None else a.last_wake_ms,
        cell=MonitorTable.wake_cell,
    ),
    ColumnSpec(
        "waiting",
        WAITING_GLYPH,
        1,
        True,
        shows=lambda a, _: a.waiting,
        order=lambda a, _: a.waiting,
        cell=MonitorTable.waiting_cell,
    ),
)
SPECS = {spec.key: spec for spec in COLUMNS}
