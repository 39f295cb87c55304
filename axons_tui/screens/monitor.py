"""The monitor (`m`): every Axon of the home in one table, with totals for the home above it.

Fast with a thousand Axons: the first frame shows the catalog (names and agents: two calls),
and each Axon's history (events per minute, the last hour, the last event and wake) is read
afterwards by a background worker, a batch of Axons at a time, one read-only query each. From
then on the live feed keeps every row current; a one-second tick re-renders what changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from axons_tui.activity import AxonActivity, agents_by_axon, seed_rows
from axons_tui.attention import Attention
from axons_tui.session import CONNECTION_LOST
from axons_tui.widgets.home_totals import HomeTotals
from axons_tui.widgets.monitor_table import COLUMNS, MonitorTable
from axons_tui.widgets.status_bar import StatusBar
from engine.errors import AxonError
from engine.models import AxonView, Event

if TYPE_CHECKING:
    from axons_tui.app import AxonsApp

CATALOG_PAGE = 5000  # the API's largest page
SEED_BATCH = 50  # Axons whose history is read at once
TICK_S = 1.0


class MonitorScreen(Screen[None]):
    TITLE = "Monitor"
    HELP = """
Every Axon of the home, one row each: its agents and their states, events in the last
minute, the last hour as a sparkline (5-minute bars), how long ago its last event was, how
long its last wake took, and a flag when it waits for a human. Above: totals for the home
and events per second over the last minute.

Click a column header (or press o) to sort by it; the same header again flips the order.
/ filters the rows by name or id; enter opens the highlighted Axon.
"""
    CSS_PATH = "monitor.tcss"
    AUTO_FOCUS = "#monitor-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="monitor.open"),
        Binding("slash", "filter", "Filter", id="monitor.filter"),
        Binding("o", "cycle_sort", "Sort", id="monitor.sort"),
        Binding("escape", "back", "Back", id="monitor.back"),
    ]

    class CatalogLoaded(Message):
        """The home's Axons and agents, as listed when the monitor opened."""

        def __init__(self, axons: list[AxonView], agents: dict[str, dict[str, str]]) -> None:
            super().__init__()
            self.axons = axons
            self.agents = agents

    class HistoryRead(Message):
        """Seed rows (activity.SEED_SQL) for a batch of Axons: {axon_id: rows}."""

        def __init__(self, rows: dict[str, list[list[object]]]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(self) -> None:
        super().__init__()
        self.activities: dict[str, AxonActivity] = {}
        self.filter_text = ""
        self._unwatch: Callable[[], None] = lambda: None
        self._events_since_tick = 0
        self._tick_started = time.monotonic()
        self._rows_changed = False
        self._catalog_read = False
        self.attention = Attention()  # which Axons wait for a human
        self.table = MonitorTable(lambda: self.axons_app.now_ms(), id="monitor-table")

    @property
    def axons_app(self) -> AxonsApp:
        return cast("AxonsApp", self.app)

    def compose(self) -> ComposeResult:
        yield HomeTotals(id="monitor-totals")
        yield Input(placeholder="filter by name or id", id="monitor-filter")
        yield self.table
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self._unwatch = self.axons_app.feed.watch(self._on_events)
        self.set_interval(TICK_S, self._tick)
        self._read_catalog()

    def on_unmount(self) -> None:
        self._unwatch()

    def matching(self) -> list[AxonActivity]:
        """The Axons the filter lets through (all of them without one)."""
        needle = self.filter_text.strip().lower()
        if not needle:
            return list(self.activities.values())
        return [
            a
            for a in self.activities.values()
            if needle in a.axon_id.lower() or needle in a.name.lower()
        ]

    # -- loading ---------------------------------------------------------------------

    @work(exclusive=True, group="monitor-catalog")
    async def _read_catalog(self) -> None:
        try:
            axons = await self._list_axons()
        except (AxonError, *CONNECTION_LOST) as e:
            message = f"monitor: cannot list the Axons ({e}); escape, then m, tries again"
            self.notify(message, severity="error")
            return
        self.post_message(self.CatalogLoaded(axons, await self._all_agents()))

    async def _all_agents(self) -> dict[str, dict[str, str]]:
        """Every agent's state, in one call (`GET /v1/agents` when attached). When that
        fails, each row's states come from its Axon's history (activity.SEED_SQL), which
        also names agents seen in the log that no longer run here."""
        try:
            return agents_by_axon(await self.axons_app.session.backend.agents.list())
        except (AxonError, *CONNECTION_LOST):
            return {}

    async def _list_axons(self) -> list[AxonView]:
        """Every Axon of the home, a page at a time."""
        backend = self.axons_app.session.backend
        axons: list[AxonView] = []
        after = None
        while True:
            page = await backend.list_axons(limit=CATALOG_PAGE, starting_after=after)
            axons.extend(page.axons)
            if not page.has_more or not page.axons:
                return axons
            after = page.axons[-1].id

    def on_monitor_screen_catalog_loaded(self, message: CatalogLoaded) -> None:
        for axon in message.axons:
            activity = self.activities.get(axon.id)
            if activity is None:
                activity = self.activities[axon.id] = AxonActivity(axon.id, axon.name or "")
            activity.name = axon.name or ""
            activity.agents = {**message.agents.get(axon.id, {}), **activity.agents}
        self._catalog_read = True
        listed = {axon.id for axon in message.axons}
        for axon_id in self.activities.keys() - listed:
            self._discover(axon_id)  # created while the catalog was being read
        self.table.show(self.matching())
        self._refresh_totals(0.0)
        unseeded = [a.axon_id for a in self.table.in_order(self.matching()) if not a.seeded]
        unseeded += [a.axon_id for a in self.activities.values() if not a.seeded]
        # The first frame goes first; then the rows in view, the filtered-out ones last.
        self.call_after_refresh(self._read_history, list(dict.fromkeys(unseeded)))

    @work(group="monitor-history")
    async def _read_history(self, axon_ids: Sequence[str]) -> None:
        """Each Axon's recent history, a batch of Axons at a time (the table fills as it goes)."""
        backend = self.axons_app.session.backend
        for first in range(0, len(axon_ids), SEED_BATCH):
            batch = axon_ids[first : first + SEED_BATCH]
            now_ms = self.axons_app.now_ms()
            found = await asyncio.gather(
                *(seed_rows(backend, axon_id, now_ms) for axon_id in batch),
                return_exceptions=True,
            )
            rows = {
                axon_id: result
                for axon_id, result in zip(batch, found, strict=True)
                if not isinstance(result, BaseException)
            }
            self._report_failures(batch, found)
            # Who waits for a human, from each Axon's recent events (a failure: no one).
            primes = (self.attention.prime(backend, [axon_id]) for axon_id in rows)
            await asyncio.gather(*primes, return_exceptions=True)
            self.post_message(self.HistoryRead(rows))

    def _report_failures(self, batch: Sequence[str], found: Sequence[object]) -> None:
        """An Axon deleted meanwhile just has no history; anything else is worth one notice
        a batch (a lost engine fails every Axon of it)."""
        failed = [
            (axon_id, result)
            for axon_id, result in zip(batch, found, strict=True)
            if isinstance(result, BaseException)
            and not (isinstance(result, AxonError) and result.status == 404)
        ]
        if failed:
            axon_id, first = failed[0]
            self.notify(
                f"monitor: cannot read the history of {len(failed)} Axons ({axon_id}: {first})",
                severity="warning",
            )

    def on_monitor_screen_history_read(self, message: HistoryRead) -> None:
        """Into the model only: the next tick shows it (one table pass a second, however
        many batches arrive)."""
        for axon_id, rows in message.rows.items():
            activity = self.activities.get(axon_id)
            if activity is not None:
                activity.seed(rows)
        self._note_waiting(message.rows)

    def _note_waiting(self, axon_ids: Iterable[str]) -> None:
        """Whether each of these Axons waits for a human (an open permission request, or an
        agent that asked and paused), as `attention` now knows it."""
        for axon_id in axon_ids:
            activity = self.activities.get(axon_id)
            if activity is not None:
                activity.waiting = self.attention.waiting(axon_id) is not None

    @work(group="monitor-discover")
    async def _discover(self, axon_id: str) -> None:
        """An Axon created after the monitor opened: its name and history."""
        try:
            axon = await self.axons_app.session.backend.get_axon(axon_id)
        except (AxonError, *CONNECTION_LOST):
            return  # deleted already, or the engine is away: the row keeps its id
        self.activities[axon_id].name = axon.name or ""
        self._rows_changed = True
        self._read_history([axon_id])

    # -- live ------------------------------------------------------------------------

    def _on_events(self, events: Sequence[Event]) -> None:
        self._events_since_tick += len(events)
        for event in events:
            activity = self.activities.get(event.axon_id)
            if activity is None:
                activity = self.activities[event.axon_id] = AxonActivity(event.axon_id, "")
                if self._catalog_read:  # else the catalog brings it (or notices it missing)
                    self._discover(event.axon_id)
            activity.record(event)
        self._note_waiting(self.attention.feed(events))

    def _tick(self) -> None:
        """Once a second: the totals, the chart, and the cells whose text changed (ages move
        even without events, so every shown row is checked; unchanged cells cost nothing)."""
        now = time.monotonic()
        rate = self._events_since_tick / max(now - self._tick_started, 1e-3)
        self._events_since_tick, self._tick_started = 0, now
        self._refresh_totals(rate)
        if self._rows_changed:
            self._rows_changed = False
            self.table.show(self.matching())
        else:
            self.table.update()

    def _refresh_totals(self, events_per_s: float) -> None:
        states = (state for a in self.activities.values() for state in a.agents.values())
        self.query_one(HomeTotals).show(len(self.activities), states, events_per_s)

    # -- filter, sort, open ----------------------------------------------------------

    @on(Input.Changed, "#monitor-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.table.show(self.matching())

    @on(Input.Submitted, "#monitor-filter")
    def _filter_done(self) -> None:
        self.table.focus()

    def action_filter(self) -> None:
        box = self.query_one("#monitor-filter", Input)
        box.display = True
        box.focus()

    def action_cycle_sort(self) -> None:
        self.table.cycle_sort()

    def action_open(self) -> None:
        axon_id = self.table.highlighted_key
        if axon_id is not None:
            self.axons_app.open_axon(axon_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.axons_app.open_axon(event.row_key.value)

    def action_back(self) -> None:
        """Escape leaves the filter first (clearing it), then the monitor."""
        box = self.query_one("#monitor-filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.table.focus()
            return
        self.app.pop_screen()

    def get_commands(self) -> Iterable[tuple[str, str, Callable[[], object]]]:
        yield ("Monitor: filter", "Narrow the table by name or id", self.action_filter)
        yield ("Monitor: open", "Open the highlighted Axon", self.action_open)
        for spec in COLUMNS:
            yield (
                f"Monitor: sort by {spec.label}",
                "The same column again flips the order",
                _sorter(self.table, spec.key),
            )


def _sorter(table: MonitorTable, column: str) -> Callable[[], None]:
    def sort() -> None:
        table.sort_by(column)

    return sort
