"""The state inspector (`s`): an Axon's tables, now or as of any event, a page at a time;
read-only SQL with its errors shown in place; the rows the selected event changed stand out.

Every read goes through `session.backend` in an exclusive worker, so a slow query never
freezes the screen and a newer request replaces an older one. The selected event is the
"as of" sequence (the latest event when that is empty): its `changes(N)` rows are marked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from axons_tui.screens.axon_state import AxonStateScreen
from axons_tui.screens.row_detail import RowDetailScreen
from axons_tui.state_reader import Page, TableRef, changed_rowids
from axons_tui.widgets.state_table import StateTable
from axons_tui.widgets.status_bar import StatusBar
from engine.models import Event, QueryResult, RowChange

SQL_MAX_ROWS = 1000  # a query's answer is cut here; the status line says so
FOLLOW_S = 1.0  # how often "now" catches up with new events


def parse_as_of(text: str, last: int) -> int | None:
    """The "as of" field: empty means now; else a sequence (a leading # is fine) between 0
    (before the first event) and the latest. ValueError says what to type instead."""
    text = text.strip().removeprefix("#")
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"as of: type an event number from 0 to {last}, or leave it empty")
    sequence = int(text)
    if sequence > last:
        raise ValueError(f"as of #{sequence}: the latest event is #{last}")
    return sequence


def changes_summary(sequence: int, changes: list[RowChange]) -> str:
    if sequence < 1:
        return "before the first event"
    tables = sorted({c.table for c in changes})
    if not changes:
        return f"#{sequence} changed no rows"
    rows = f"{len(changes):,} row{'s' * (len(changes) != 1)}"
    return f"#{sequence} changed {rows} in {', '.join(tables)}"


class InspectorScreen(AxonStateScreen):
    """One Axon's state, browsable and queryable, now or as of an event."""

    TITLE = "State inspector"
    HELP = (
        "The Axon's own tables and its event log (axon_events), now or as of an event.\n\n"
        "Pick a table on the left; n / p show the next / previous rows, g / G the first / "
        "last (paged by rowid: as fast deep in a table as at its top).\n\n"
        "e: type SQL and press enter; it runs read-only, as of the chosen event (an empty "
        "query goes back to the table). a: as of an event number (empty: now); [ and ] step "
        "it one event earlier or later. The rows "
        "that event changed are highlighted. enter shows the row under the cursor in full."
    )
    ERROR_BOX = "#inspector-error"
    CSS_PATH = "inspector.tcss"
    AUTO_FOCUS = "#rows"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="inspector.back"),
        Binding("n", "next_page", "Next rows", id="inspector.next_page"),
        Binding("p", "previous_page", "Prev rows", id="inspector.previous_page"),
        Binding("g", "first_page", "First rows", id="inspector.first_page", show=False),
        Binding("G", "last_page", "Last rows", id="inspector.last_page", show=False),
        Binding("e", "focus_sql", "SQL", id="inspector.sql"),
        Binding("a", "focus_as_of", "As of", id="inspector.as_of"),
        Binding(
            "left_square_bracket", "as_of_step(-1)", "Earlier", id="inspector.earlier", show=False
        ),
        Binding("right_square_bracket", "as_of_step(1)", "Later", id="inspector.later", show=False),
    ]

    def __init__(self, axon_id: str, at_sequence: int | None = None) -> None:
        super().__init__(axon_id)
        self.at_sequence = at_sequence
        self.latest = 0  # the Axon's last sequence when the screen last looked
        self.table: TableRef | None = None
        self.page: Page | None = None
        self.sql: str | None = None  # the query shown, when not browsing a table
        self.changes: list[RowChange] = []
        self.tables: dict[str, TableRef] = {}
        self._stale = False  # events arrived since the view was read
        self._unwatch: Callable[[], None] = lambda: None

    @property
    def selected_sequence(self) -> int:
        """The event whose changes are marked: the "as of" one, else the latest."""
        return self.latest if self.at_sequence is None else self.at_sequence

    # -- layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="inspector-top"):
            yield Label(Text(f"State · {self.axon_id}"), id="inspector-title")
            yield Label("as of ", id="as-of-label")
            yield Input(
                "" if self.at_sequence is None else str(self.at_sequence),
                placeholder="now",
                restrict=r"#?\d*",
                compact=True,
                id="as-of",
                tooltip="An event number: the state right after it. Empty: now.",
            )
        with Horizontal(id="inspector-body"):
            yield OptionList(markup=False, id="tables")
            with Vertical(id="inspector-main"):
                yield Input(
                    placeholder="SELECT …  (enter runs it, read-only)",
                    compact=True,
                    id="sql",
                )
                yield Static(id="inspector-error", markup=False)
                yield Static(id="inspector-status", markup=False)
                yield StateTable(id="rows")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#tables", OptionList).border_title = "Tables"
        self._show_error(None)
        self._unwatch = self.console_app.feed.watch(self._arrived, self.axon_id)
        self.set_interval(FOLLOW_S, self._follow_now)
        self.reload()

    def on_unmount(self) -> None:
        self._unwatch()

    def _arrived(self, events: Sequence[Event]) -> None:
        self._stale = True

    def _follow_now(self) -> None:
        """Keep "now" current: after new events, the page shown is read again (at most once
        a FOLLOW_S, however many arrive). A query's answer stays as it was until re-run."""
        if self._stale and self.at_sequence is None and self.sql is None:
            self._stale = False
            self.reload(keep_place=True)

    # -- what the user does

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one(StateTable).focus()
            return
        self.dismiss()

    def action_focus_sql(self) -> None:
        self.query_one("#sql", Input).focus()

    def action_focus_as_of(self) -> None:
        self.query_one("#as-of", Input).focus()

    def action_next_page(self) -> None:
        if self.page is not None and self.sql is None:
            self._load(self.reader.next_page(self.page))

    def action_previous_page(self) -> None:
        if self.page is not None and self.sql is None:
            self._load(self.reader.previous_page(self.page))

    def action_first_page(self) -> None:
        if self.table is not None:
            self._load(self.reader.first_page(self.table, self.at_sequence))

    def action_last_page(self) -> None:
        if self.table is not None:
            self._load(self.reader.last_page(self.table, self.at_sequence))

    def action_as_of_step(self, delta: int) -> None:
        """One event earlier or later than the state shown; later than the latest is now."""
        at = self.selected_sequence + delta
        self.at_sequence = None if at >= self.latest else max(0, at)
        self.query_one("#as-of", Input).value = "" if self.at_sequence is None else str(at)
        self._show_error(None)
        self.reload()

    @on(Input.Submitted, "#as-of")
    def _as_of_chosen(self, event: Input.Submitted) -> None:
        try:
            self.at_sequence = parse_as_of(event.value, self.latest)
        except ValueError as e:
            self._show_error(str(e))
            return
        self._show_error(None)
        self.query_one(StateTable).focus()
        self.reload()

    @on(Input.Submitted, "#sql")
    def _sql_submitted(self, event: Input.Submitted) -> None:
        """Run the query; an empty one goes back to browsing the table."""
        if event.value.strip():
            self.sql = event.value
            self._run_sql(event.value)
        elif self.sql is not None:
            self.sql = None
            self.action_first_page()

    @on(StateTable.RowSelected, "#rows")
    def _row_opened(self, event: StateTable.RowSelected) -> None:
        """`enter` (or a click on the selected row): the row in full, nothing cut."""
        index = event.cursor_row
        if self.sql is None and self.page is not None:
            title = f"{self.page.table.name} · row {self.page.first + index:,}"
        else:
            title = f"query · row {index + 1:,}"
        row = self.query_one(StateTable).full_row(index)
        self.app.push_screen(RowDetailScreen(title, row))

    @on(OptionList.OptionHighlighted, "#tables")
    @on(OptionList.OptionSelected, "#tables")
    def _table_chosen(
        self, event: OptionList.OptionHighlighted | OptionList.OptionSelected
    ) -> None:
        """Browse the table under the cursor (moving through the list shows each one)."""
        chosen = self.tables.get(event.option.id or "")
        if chosen is not None and (chosen != self.table or self.sql is not None):
            self.sql = None
            self.table = chosen
            self.action_first_page()

    def get_commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        yield "Inspector: next rows", "The next page of the table", self.action_next_page
        yield "Inspector: previous rows", "The previous page", self.action_previous_page
        yield "Inspector: first rows", "The table's first page", self.action_first_page
        yield "Inspector: last rows", "The table's last page", self.action_last_page
        yield "Inspector: SQL", "Type a read-only query", self.action_focus_sql
        yield "Inspector: as of", "Look at the state as of an event", self.action_focus_as_of
        yield "Inspector: earlier", "The state one event earlier", self._earlier
        yield "Inspector: later", "The state one event later", self._later

    def _earlier(self) -> None:
        self.action_as_of_step(-1)

    def _later(self) -> None:
        self.action_as_of_step(1)

    # -- reading (workers; the newest request wins)

    @work(exclusive=True, group="inspector")
    async def reload(self, keep_place: bool = False) -> None:
        """After a new "as of" (or new events): the tables that existed then, the event's
        changes, and the same view again: the query re-run, or the table's first page (the
        page shown, with `keep_place`)."""
        found = await self._attempt(self._look(self.at_sequence))
        if found is None:
            return
        name, tables, self.changes = found
        self.query_one("#inspector-title", Label).update(Text(f"State · {name}"))
        self._list_tables(tables)
        if self.sql is not None:
            await self._show_sql(self.sql)
        elif self.table is not None:
            page = self.page
            if keep_place and page is not None and page.table == self.table:
                await self._show_page(self.reader.reread(page), keep_place=True)
            else:
                await self._show_page(self.reader.first_page(self.table, self.at_sequence))

    async def _look(self, at_sequence: int | None) -> tuple[str, list[TableRef], list[RowChange]]:
        """The Axon's name, its tables as of the sequence, and the selected event's changes."""
        axon = await self.backend.get_axon(self.axon_id)
        self.latest = await self.backend.last_sequence(self.axon_id)
        tables = await self.reader.tables(at_sequence)
        changes = await self.reader.changes(self.selected_sequence)
        return axon.name or axon.id, tables, changes

    @work(exclusive=True, group="inspector")
    async def _load(self, page: Awaitable[Page]) -> None:
        await self._show_page(page)

    @work(exclusive=True, group="inspector")
    async def _run_sql(self, sql: str) -> None:
        await self._show_sql(sql)

    async def _show_page(self, pending: Awaitable[Page], keep_place: bool = False) -> None:
        page = await self._attempt(pending)
        if page is None:
            return
        self.page = page
        self._show_error(None)
        marked = changed_rowids(self.changes, page.table, self.selected_sequence)
        self.query_one(StateTable).show(page.result, marked, keep_place=keep_place)
        self._status(page.describe())

    async def _show_sql(self, sql: str) -> None:
        result = await self._attempt(
            self.backend.query(
                self.axon_id, sql, at_sequence=self.at_sequence, max_rows=SQL_MAX_ROWS
            )
        )
        if result is None:
            return
        self._show_error(None)
        self.query_one(StateTable).show(result)  # which table its rows are from is unknown
        self._status(_result_summary(result))

    # -- showing

    def _list_tables(self, tables: list[TableRef]) -> None:
        """The list on the left (rebuilt only when the tables changed), the table kept."""
        found = {t.name: t for t in tables}
        keep = self.table.name if self.table and self.table.name in found else None
        self.table = found[keep or tables[0].name]
        if found == self.tables:
            return
        self.tables = found
        options = self.query_one("#tables", OptionList)
        options.clear_options()
        options.add_options(Option(Text(t.name), id=t.name) for t in tables)
        with options.prevent(OptionList.OptionHighlighted):
            options.highlighted = [t.name for t in tables].index(self.table.name)

    def _status(self, what: str) -> None:
        summary = changes_summary(self.selected_sequence, self.changes)
        self.query_one("#inspector-status", Static).update(Text(f"{what} · {summary}"))


def _result_summary(result: QueryResult) -> str:
    count = len(result.rows)
    if result.meta.rows_read_limit_reached:
        return f"query: the first {count:,} rows (there are more)"
    return f"query: {count:,} row{'s' * (count != 1)}"
