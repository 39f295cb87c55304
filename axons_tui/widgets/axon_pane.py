"""One Axon on the dashboard: its name and event count in the border, its agents' states as
badges, and its live stream (a compact `EventLog`). A pane whose Axon waits for a human
stands out (`-waiting`) and says why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from axons_tui.failures import BACKEND_ERRORS
from axons_tui.widgets.agent_badges import AgentBadges
from axons_tui.widgets.event_log import EventLog
from engine.models import AxonView, Event

TITLE_EVERY_S = 0.25

if TYPE_CHECKING:
    from collections.abc import Callable

    from axons_tui.app import AxonsApp


class AxonPane(Vertical):
    """A dashboard pane for `axon`. Focus sits in its stream; a double click opens the Axon."""

    DEFAULT_CSS = """
    AxonPane {
        border: round $panel-lighten-2;
        border-title-color: $foreground;
        border-subtitle-color: $foreground-muted;
        height: 1fr;
        &:focus-within { border: round $primary; border-title-style: bold; }
        & > EventLog { background: $surface; height: 1fr; }
        & > .waiting-reason { display: none; color: $waiting; text-style: bold; height: 1; }
        &.-waiting { border: heavy $waiting; border-title-color: $waiting; }
        &.-waiting > .waiting-reason { display: block; }
    }
    """

    class OpenRequested(Message):
        """The user asked to open this pane's Axon (a double click)."""

        def __init__(self, axon_id: str) -> None:
            super().__init__()
            self.axon_id = axon_id

    def __init__(self, axon: AxonView, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.axon = axon
        self.total = 0
        self.reason: str | None = None  # why the Axon waits for a human, if it does
        self._badges = AgentBadges()
        self._status = ""  # the stream's follow state, as the border shows it
        self._title_due = False
        self._unwatch: Callable[[], None] | None = None

    @property
    def axon_id(self) -> str:
        return self.axon.id

    @property
    def title(self) -> str:
        return self.axon.name or self.axon.id

    def compose(self) -> ComposeResult:
        yield self._badges
        yield Static(self._reason_text(), classes="waiting-reason", markup=False)
        yield EventLog(self.axon_id, compact=True)

    def on_mount(self) -> None:
        self._show_title()
        app = cast("AxonsApp", self.app)
        self._unwatch = app.feed.watch(self._on_events, axon_id=self.axon_id)
        self._load_agents()

    def on_unmount(self) -> None:
        if self._unwatch is not None:
            self._unwatch()

    @work(group="pane-agents", exclusive=True)
    async def _load_agents(self) -> None:
        app = cast("AxonsApp", self.app)
        try:
            agents = await app.session.backend.agents.list(self.axon_id)
        except BACKEND_ERRORS:
            return  # the badges say "no agents"; the stream still shows what happens
        self._badges.show_agents(agents)

    def _on_events(self, batch: Sequence[Event]) -> None:
        self._badges.learn(batch)

    def on_event_log_status_changed(self, message: EventLog.StatusChanged) -> None:
        """The count goes into the title a few times a second at most: under a flood of
        events, redrawing the whole pane for each batch would cost more than the stream."""
        message.stop()
        self.total = message.total
        if message.text != self._status:
            self._status = message.text
            self.border_subtitle = Text(message.text)
        if not self._title_due:
            self._title_due = True
            self.set_timer(TITLE_EVERY_S, self._show_title)

    def _show_title(self) -> None:
        self._title_due = False
        title = Text(self.title, no_wrap=True)
        title.append(f" · {self.total:,} event{'' if self.total == 1 else 's'}", "dim")
        self.border_title = title

    def show_waiting(self, reason: str | None) -> None:
        """Stand out while the Axon waits for a human (`reason`), and stop when it doesn't
        (also before the pane is composed, or while it is being removed)."""
        self.reason = reason
        self.set_class(reason is not None, "-waiting")
        for line in self.query(".waiting-reason").results(Static):
            line.update(self._reason_text())

    def _reason_text(self) -> Text:
        return Text(f"⚑ waiting: {self.reason or ''}")

    def on_click(self, event: events.Click) -> None:
        if event.chain >= 2:
            self.post_message(self.OpenRequested(self.axon_id))
