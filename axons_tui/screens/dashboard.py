"""The start screen: the home's Axons side by side, live.

Panes fill a grid that adapts to the terminal (1 column at 80 columns, 2 from 110, 3 from
160) and as many rows as fit; more Axons than fit are paged (pgup/pgdn, "page 1/3" above).
`/` narrows them by name.
New Axons appear as they come: the screen re-lists when the feed shows an Axon it does not
know, and every few seconds for Axons that have no event yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.css.query import NoMatches
from textual.reactive import var
from textual.screen import Screen
from textual.widget import MountError
from textual.widgets import Footer, Input, Static

from axons_tui.attention import Attention
from axons_tui.failures import BACKEND_ERRORS, describe
from axons_tui.widgets.axon_pane import AxonPane
from axons_tui.widgets.event_log import EventLog
from axons_tui.widgets.permission import ask_permission
from axons_tui.widgets.status_bar import StatusBar
from engine.errors import AxonError
from engine.models import AxonView, Event

if TYPE_CHECKING:
    from axons_tui.app import AxonsApp

RELIST_S = 3.0
PANE_ROWS = 9  # a pane's smallest useful height: border, badges and six events
LIST_PAGE = 1000


def grid_columns(width: int) -> int:
    """1 column at 80 columns, 2 at ~120, 3 from 160."""
    return 1 if width < 110 else 2 if width < 160 else 3


def grid_rows(height: int) -> int:
    """How many pane rows fit under the heading, above the status bar and the footer."""
    return max(1, (height - 3) // PANE_ROWS)


class DashboardScreen(Screen[None]):
    """Every Axon's pane; `enter` opens the focused one, `s`/`r` its state and its replay."""

    TITLE = "Dashboard"
    HELP = """
Every Axon of the home side by side, live: its agents' states as badges and its stream, newest
at the bottom. A pane whose Axon waits for a human (an agent asked a question, or a permission
request is open) has a heavy border and says why; y answers a permission request.

Scrolling up in a pane stops following its tail and counts what arrives; end follows again.
tab moves between panes, enter opens one, pgup/pgdn page when there are more than fit.
"""
    CSS_PATH = "dashboard.tcss"
    AUTO_FOCUS = ""  # the first pane takes focus once it is there (not the hidden filter)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="dashboard.open"),
        Binding("s", "inspect", "State", id="dashboard.inspect"),
        Binding("r", "replay", "Replay", id="dashboard.replay"),
        # shown in a waiting pane's reason, not the footer (it fits 80 columns)
        Binding("y", "permit", "Answer permission", show=False, id="dashboard.permit"),
        Binding("pagedown", "page(1)", "Next page", id="dashboard.next_page"),
        Binding("pageup", "page(-1)", "Previous page", id="dashboard.previous_page"),
        Binding("slash", "filter", "Filter", id="dashboard.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="dashboard.clear_filter"),
        Binding("tab", "app.focus_next", "Next pane", show=False, id="dashboard.next_pane"),
        Binding(
            "shift+tab",
            "app.focus_previous",
            "Previous pane",
            show=False,
            id="dashboard.previous_pane",
        ),
    ]

    page: var[int] = var(0)
    name_filter: var[str] = var("")

    def __init__(self) -> None:
        super().__init__()
        self.axons: list[AxonView] = []
        self.attention = Attention()
        self._primed: set[str] = set()
        self._unwatch: Callable[[], None] | None = None
        self._shown: list[str] = []
        self._layout = asyncio.Lock()

    @property
    def console_app(self) -> AxonsApp:
        return cast("AxonsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(id="heading", markup=False)
        yield Input(placeholder="Filter Axons by name (enter keeps it, escape clears)", id="filter")
        yield Static(
            "No Axons yet. Create one with `axons new NAME` or publish to one; it appears here.",
            id="empty",
            markup=False,
        )
        yield Grid(id="panes")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self._unwatch = self.console_app.feed.watch(self._on_events)
        self.set_interval(RELIST_S, self._list_axons)
        self._list_axons()

    def on_unmount(self) -> None:
        if self._unwatch is not None:
            self._unwatch()

    # -- the Axons

    @work(group="dashboard-list", exclusive=True)
    async def _list_axons(self) -> None:
        backend = self.console_app.session.backend
        axons: list[AxonView] = []
        after: str | None = None
        try:
            while True:
                page = await backend.list_axons(limit=LIST_PAGE, starting_after=after)
                axons.extend(page.axons)
                if not page.has_more or not page.axons:
                    break
                after = page.axons[-1].id
        except BACKEND_ERRORS as e:
            if isinstance(e, AxonError):  # a lost engine is the status bar's to say
                self.notify(f"cannot list the Axons: {describe(e)}", severity="error")
            return
        if [a.id for a in axons] != [a.id for a in self.axons]:
            self.axons = axons
            await self._show_page()

    def _on_events(self, batch: Sequence[Event]) -> None:
        known = {a.id for a in self.axons}
        if any(e.axon_id not in known for e in batch):
            self._list_axons()
        for axon_id in self.attention.feed(batch):
            self._show_waiting(axon_id)

    @property
    def matching(self) -> list[AxonView]:
        """The Axons the filter lets through (all of them without one)."""
        wanted = self.name_filter.casefold()
        if not wanted:
            return self.axons
        return [a for a in self.axons if wanted in (a.name or a.id).casefold()]

    # -- layout and paging

    @property
    def per_page(self) -> int:
        return grid_columns(self.size.width) * grid_rows(self.size.height)

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.matching) // max(1, self.per_page)))

    def on_resize(self) -> None:
        self.call_later(self._show_page)

    def validate_page(self, page: int) -> int:
        return min(max(0, page), self.pages - 1)

    def watch_page(self) -> None:
        self.call_later(self._show_page)

    async def _show_page(self) -> None:
        """Mount the panes of the current page (only those: hidden pages cost nothing).
        One at a time: a resize, a new Axon and a key can all ask at once."""
        async with self._layout:
            try:
                await self._mount_page()
            except (NoMatches, MountError):  # the screen closed while its panes were made
                return

    async def _mount_page(self) -> None:
        self.page = self.validate_page(self.page)
        first = self.page * self.per_page
        visible = self.matching[first : first + self.per_page]
        columns = grid_columns(self.size.width)
        grid = self.query_one("#panes", Grid)
        grid.styles.grid_size_columns = min(columns, max(1, len(visible)))
        grid.styles.grid_size_rows = max(1, -(-len(visible) // columns))
        self.query_one("#empty").display = not self.axons
        self._show_heading()
        if [a.id for a in visible] == self._shown:
            return
        focused = self.focused_pane()
        self._shown = [a.id for a in visible]
        await grid.remove_children()
        panes = [AxonPane(axon) for axon in visible]
        await grid.mount_all(panes)
        for pane in panes:
            pane.show_waiting(self._waiting_reason(pane.axon_id))
        if self.focused is None or focused is not None:  # never take focus from the filter
            again = next((p for p in panes if focused and p.axon_id == focused.axon_id), None)
            target = again or (panes[0] if panes else None)
            if target is not None:
                target.query_one(EventLog).focus()
        self._prime([a.id for a in visible if a.id not in self._primed])

    def _show_heading(self) -> None:
        heading = Text("Axons", style="bold")
        heading.append(f" · {len(self.axons):,}")
        if self.name_filter:
            heading.append(f" · {len(self.matching):,} match {self.name_filter!r}")
        if self.pages > 1:
            heading.append(f" · page {self.page + 1}/{self.pages} (pgup/pgdn)")
        self.query_one("#heading", Static).update(heading)

    def action_page(self, step: int) -> None:
        self.page = self.validate_page(self.page + step)

    # -- the filter

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self._focus_first_pane()

    def on_input_changed(self, message: Input.Changed) -> None:
        self.name_filter = message.value.strip()
        self.page = 0
        self.call_later(self._show_page)

    def on_input_submitted(self, message: Input.Submitted) -> None:
        message.input.display = bool(message.value.strip())
        self._focus_first_pane()

    def _focus_first_pane(self) -> None:
        pane = next(iter(self.query(AxonPane)), None)
        if pane is not None:
            pane.query_one(EventLog).focus()

    # -- waiting for a human

    @work(group="dashboard-prime")
    async def _prime(self, axon_ids: list[str]) -> None:
        if not axon_ids:
            return
        self._primed.update(axon_ids)
        try:
            changed = await self.attention.prime(self.console_app.session.backend, axon_ids)
        except BACKEND_ERRORS:
            return
        for axon_id in changed:
            self._show_waiting(axon_id)

    def _show_waiting(self, axon_id: str) -> None:
        for pane in self.query(AxonPane):
            if pane.axon_id == axon_id:
                pane.show_waiting(self._waiting_reason(axon_id))

    def _waiting_reason(self, axon_id: str) -> str | None:
        """Why the Axon waits, and the key that answers when it is a permission request."""
        reason = self.attention.waiting(axon_id)
        if reason is not None and self.attention.open_requests(axon_id):
            return f"{reason} · y answers"
        return reason

    # -- opening

    def focused_pane(self) -> AxonPane | None:
        node: Any = self.focused
        while node is not None and not isinstance(node, AxonPane):
            node = node.parent
        return node

    def _with_focused(self, open_it: Callable[[str], None]) -> None:
        pane = self.focused_pane()
        if pane is None:
            self.notify("Focus a pane first (tab), then press the key again.")
            return
        open_it(pane.axon_id)

    def action_open(self) -> None:
        self._with_focused(self.console_app.open_axon)

    def action_inspect(self) -> None:
        self._with_focused(self.console_app.open_inspector)

    def action_replay(self) -> None:
        self._with_focused(self.console_app.open_replay)

    def action_permit(self) -> None:
        self._with_focused(self._ask_permission)

    def _ask_permission(self, axon_id: str) -> None:
        """The prompt for the Axon's oldest open request (it waits for the answer)."""
        self.run_worker(ask_permission(self.app, axon_id), group="permit", exclusive=True)

    def on_axon_pane_open_requested(self, message: AxonPane.OpenRequested) -> None:
        self.console_app.open_axon(message.axon_id)

    def get_commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        """The dashboard's own actions, for the command palette."""
        yield ("Open the focused Axon", "Its whole history, composer and agents", self.action_open)
        yield ("State of the focused Axon", "Its tables, as of any event", self.action_inspect)
        yield ("Replay the focused Axon", "Step through its events", self.action_replay)
        yield (
            "Answer a permission request",
            "The focused Axon's oldest request from an ACP agent",
            self.action_permit,
        )
        yield ("Next page of Axons", "When more Axons than fit", lambda: self.action_page(1))
        yield ("Previous page of Axons", "Back one page", lambda: self.action_page(-1))
        yield ("Filter Axons", "Show only Axons whose name holds some text", self.action_filter)
