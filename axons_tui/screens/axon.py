"""One Axon in full: its whole history (an `EventLog` that pages from the file), the
selected event's detail, the agents with their wakes, logs and commands, and a composer.

`i` writes, `escape` goes back (or leaves the composer first), `s`/`r` open the state
inspector and the replay viewer at the selected event, `tab` moves between the panes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from axons_tui.attention import Attention
from axons_tui.failures import BACKEND_ERRORS, describe
from axons_tui.widgets.agent_panel import AgentPanel
from axons_tui.widgets.composer import Composer
from axons_tui.widgets.event_detail import EventDetail
from axons_tui.widgets.event_log import EventLog
from axons_tui.widgets.permission import ask_permission
from axons_tui.widgets.status_bar import StatusBar
from engine.models import Event

if TYPE_CHECKING:
    from axons_tui.app import AxonsApp


class AxonScreen(Screen[None]):
    """The Axon view of `axon_id`."""

    TITLE = "Axon"
    HELP = """
One Axon's whole history, read from its file a page at a time. up/down select an event and
the Event tab shows it in full (payload, author, hash); the Agents tab shows each agent's
state, its recent wakes and log lines, with start (t), pause (p), resume (u) and stop (x).

i writes to the Axon: enter publishes your text as a message from tui (a human), which
wakes the agents that wait for one; escape leaves the composer.
"""
    CSS_PATH = "axon.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="axon.back"),
        Binding("i", "compose", "Write", id="axon.compose"),
        Binding("s", "inspect", "State", id="axon.inspect"),
        Binding("r", "replay", "Replay", id="axon.replay"),
        Binding("y", "permit", "Answer permission", show=False, id="axon.permit"),
        Binding("d", "side('detail')", "Detail", id="axon.detail"),
        Binding("a", "side('agents')", "Agents", id="axon.agents"),
        Binding("t", "agent('start')", "Start agent", show=False, id="axon.agent_start"),
        Binding("p", "agent('pause')", "Pause agent", show=False, id="axon.agent_pause"),
        Binding("u", "agent('resume')", "Resume agent", show=False, id="axon.agent_resume"),
        Binding("x", "agent('stop')", "Stop agent", show=False, id="axon.agent_stop"),
        Binding("tab", "app.focus_next", "Next pane", show=False, id="axon.next_pane"),
        Binding(
            "shift+tab", "app.focus_previous", "Previous pane", show=False, id="axon.previous_pane"
        ),
    ]

    def __init__(self, axon_id: str) -> None:
        super().__init__()
        self.axon_id = axon_id
        self._unwatch: Callable[[], None] | None = None
        self.attention = Attention()  # whether this Axon waits for a human, and why

    @property
    def console_app(self) -> AxonsApp:
        return cast("AxonsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(Text(self.axon_id), id="heading")
        yield Static(id="waiting", markup=False)
        with Horizontal(id="body"):
            yield EventLog(self.axon_id, id="events")
            with TabbedContent(id="side", initial="detail"):
                with TabPane("Event", id="detail"):
                    yield EventDetail()
                with TabPane("Agents", id="agents"):
                    yield AgentPanel(self.axon_id)
        yield Composer(self.axon_id, id="composer")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self._unwatch = self.console_app.feed.watch(self._on_events, axon_id=self.axon_id)
        self._load_heading()
        self._prime_waiting()
        self.query_one(EventLog).focus()

    def on_unmount(self) -> None:
        if self._unwatch is not None:
            self._unwatch()

    @work(group="axon-heading", exclusive=True)
    async def _load_heading(self) -> None:
        try:
            axon = await self.console_app.session.backend.get_axon(self.axon_id)
        except BACKEND_ERRORS as e:
            self._show_heading(Text(f"{self.axon_id}: {describe(e)}"))
            return
        heading = Text(axon.name or axon.id, style="bold")
        heading.append(f"  {axon.id}", style="dim")
        self._show_heading(heading)

    def _show_heading(self, heading: Text) -> None:
        for line in self.query("#heading").results(Static):  # none once the view closes
            line.update(heading)

    def _on_events(self, batch: Sequence[Event]) -> None:
        for panel in self.query(AgentPanel).results(AgentPanel):  # none once the view closes
            panel.learn(batch)
        if self.attention.feed(batch):
            self._show_waiting()

    @work(group="axon-waiting", exclusive=True)
    async def _prime_waiting(self) -> None:
        try:
            await self.attention.prime(self.console_app.session.backend, [self.axon_id])
        except BACKEND_ERRORS:
            return  # the live feed still tells, and the status bar says the engine is away
        self._show_waiting()

    def _show_waiting(self) -> None:
        """A line under the heading while the Axon waits for a human, saying why."""
        reason = self.attention.waiting(self.axon_id)
        for line in self.query("#waiting").results(Static):  # none once the view closes
            line.set_class(reason is not None, "-shown")
            if reason is not None:
                answer = " · y answers" if self.attention.open_requests(self.axon_id) else ""
                line.update(Text(f"⚑ waiting: {reason}{answer}"))

    # -- the panes talking to each other

    def on_event_log_event_selected(self, message: EventLog.EventSelected) -> None:
        self.query_one(EventDetail).show(message.event, message.joined)

    def on_composer_left(self) -> None:
        self.query_one(EventLog).focus()

    def on_composer_sent(self) -> None:
        self.query_one(EventLog).action_follow()

    # -- actions

    def action_back(self) -> None:
        self.dismiss()

    def action_compose(self) -> None:
        self.query_one(Composer).focus()

    def action_side(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane

    def action_agent(self, action: str) -> None:
        self.action_side("agents")
        panel = self.query_one(AgentPanel)
        agent = panel.target()
        if agent is None:
            self.notify("This Axon has no agents to command.", severity="warning")
            return
        panel.command(agent, action)

    def _selected_sequence(self) -> int | None:
        return self.query_one(EventLog).cursor

    def action_inspect(self) -> None:
        self.console_app.open_inspector(self.axon_id, at_sequence=self._selected_sequence())

    def action_replay(self) -> None:
        self.console_app.open_replay(self.axon_id, at_sequence=self._selected_sequence())

    def action_permit(self) -> None:
        """The prompt for this Axon's oldest open permission request."""
        self.run_worker(ask_permission(self.app, self.axon_id), group="permit", exclusive=True)

    def get_commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        """The Axon view's own actions, for the command palette."""
        yield ("Write to this Axon", "Focus the composer", self.action_compose)
        yield ("State inspector", "This Axon's tables at the selected event", self.action_inspect)
        yield ("Replay viewer", "Step through it from the selected event", self.action_replay)
        yield ("Follow the newest events", "Jump to the end and follow", self._follow)
        yield ("Answer a permission request", "This Axon's oldest", self.action_permit)
        for action in AgentPanel.ACTIONS:
            yield (f"Agent: {action}", f"{action.title()} the selected agent", _bind(self, action))

    def _follow(self) -> None:
        self.query_one(EventLog).action_follow()


def _bind(screen: AxonScreen, action: str) -> Callable[[], None]:
    def run() -> None:
        screen.action_agent(action)

    return run
