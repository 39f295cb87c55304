"""An Axon's agents, each with its state, its recent wakes (from `agent.resumed`: how long
the wake took and from which tier), its recent `agent.log` lines, and buttons to start,
pause, resume and stop it. A refused command is shown on the agent's card, never raised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import MountError
from textual.widgets import Button, Static

from axons_tui.failures import BACKEND_ERRORS, describe
from axons_tui.widgets.event_text import clock, payload_of
from engine.models import AgentView, Event

if TYPE_CHECKING:
    from axons_tui.app import AxonsApp

ACTIONS = ("start", "pause", "resume", "stop")
WAKES_SHOWN = 3
LOG_LINES_SHOWN = 4
HISTORY = 500  # recent events read at start for the wakes


def wake_text(event: Event, now_ms: int | None) -> str:
    """`12:00:01 18.2 ms from paused (#41)`; a resume by hand has no trigger."""
    body = payload_of(event)
    body = body if isinstance(body, dict) else {}
    trigger = body.get("trigger_sequence")
    return (
        f"{clock(event.timestamp_ms, now_ms)} {body.get('wake_ms', '?')} ms "
        f"from {body.get('from', '?')}" + (f" (#{trigger})" if trigger is not None else "")
    )


class AgentCard(Vertical):
    """One agent: `● name state`, its buttons, wakes, log lines and the last refusal."""

    DEFAULT_CSS = """
    AgentCard {
        height: auto;
        padding: 0 0 1 0;
        & > .agent-state { text-style: bold; }
        & > Horizontal { height: 1; }
        & Button { width: auto; min-width: 0; margin-right: 1; }
        & > .agent-wakes { color: $success; }
        & > .agent-logs { color: $foreground-muted; }
        & > .agent-error { color: $error; display: none; }
        & > .agent-error.-shown { display: block; }
        &.-starting > .agent-state { color: $state-starting; }
        &.-running > .agent-state { color: $state-running; }
        &.-paused > .agent-state { color: $state-paused; }
        &.-hibernated > .agent-state { color: $state-hibernated; }
        &.-failed > .agent-state { color: $state-failed; }
        &.-stopped > .agent-state { color: $state-stopped; }
    }
    """

    def __init__(self, view: AgentView) -> None:
        super().__init__()
        self.view = view
        self.wakes: list[str] = []
        self.logs: list[str] = []
        self._state = Static(classes="agent-state", markup=False)
        self._wakes = Static(classes="agent-wakes", markup=False)
        self._logs = Static(classes="agent-logs", markup=False)
        self._error = Static(classes="agent-error", markup=False)

    @property
    def agent(self) -> str:
        return self.view.name

    def compose(self) -> ComposeResult:
        yield self._state
        with Horizontal():
            for action in ACTIONS:
                yield Button(action, id=f"agent-{action}", compact=True)
        yield self._wakes
        yield self._logs
        yield self._error

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        view = self.view
        wakes = self.wakes[-WAKES_SHOWN:]
        self.set_classes(f"-{view.state}")
        self._state.update(Text(f"● {view.name} {view.state} · {view.runtime}"))
        self._wakes.update(Text("\n".join(f"woke {w}" for w in reversed(wakes)) or "no wakes yet"))
        self._logs.update(Text("\n".join(self.logs[-LOG_LINES_SHOWN:]) or "no log lines"))

    def show_error(self, error: str | None) -> None:
        self._error.set_class(error is not None, "-shown")
        self._error.update(Text(error or ""))


class AgentPanel(VerticalScroll):
    """The agents of `axon_id`, kept current from the Axon's own events."""

    DEFAULT_CSS = """
    AgentPanel { & > .agents-none { color: $foreground-muted; } }
    """
    ACTIONS: ClassVar[tuple[str, ...]] = ACTIONS

    def __init__(self, axon_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.axon_id = axon_id
        self._wakes: dict[str, list[str]] = {}

    @property
    def console_app(self) -> AxonsApp:
        return cast("AxonsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static("No agents on this Axon (`axons agent add FILE.toml`).", classes="agents-none")

    def on_mount(self) -> None:
        self._load(history=True)

    def learn(self, batch: Sequence[Event]) -> None:
        """New events of the Axon: wakes are noted, agent changes and logs reload the cards."""
        changed = False
        for event in batch:
            if event.origin != "SYSTEM_EVENT" or not event.event_type.startswith("agent."):
                continue
            changed = True
            if event.event_type == "agent.resumed":
                self._note_wake(event)
        if changed:
            self._load(history=False)

    def _note_wake(self, event: Event) -> None:
        wakes = self._wakes.setdefault(event.source, [])
        wakes.append(wake_text(event, self.console_app.now_ms()))
        del wakes[:-WAKES_SHOWN]

    @work(group="agent-panel", exclusive=True)
    async def _load(self, history: bool) -> None:
        backend = self.console_app.session.backend
        try:
            agents = await backend.agents.list(self.axon_id)
            if history:
                total = await backend.last_sequence(self.axon_id)
                recent = await backend.read_events(
                    self.axon_id, after=max(0, total - HISTORY), limit=HISTORY
                )
                for event in recent:
                    if event.origin == "SYSTEM_EVENT" and event.event_type == "agent.resumed":
                        self._note_wake(event)
            logs = {
                a.name: await backend.agents.logs(self.axon_id, a.name, LOG_LINES_SHOWN)
                for a in agents
            }
        except BACKEND_ERRORS as e:
            self.notify(f"cannot read the agents: {describe(e)}", severity="error")
            return
        await self._show(agents, logs)

    async def _show(self, agents: list[AgentView], logs: dict[str, list[str]]) -> None:
        cards = {card.agent: card for card in self.query(AgentCard)}
        for hint in self.query(".agents-none"):
            hint.display = not agents
        for view in agents:
            card = cards.pop(view.name, None)
            if card is None:
                card = AgentCard(view)
                try:
                    await self.mount(card)
                except MountError:
                    return  # the view closed while the agents were read
            card.view = view
            card.wakes = self._wakes.get(view.name, [])
            card.logs = logs.get(view.name, [])
            card.show()
        for gone in cards.values():
            await gone.remove()

    # -- commands

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        card = next((a for a in event.button.ancestors if isinstance(a, AgentCard)), None)
        if card is not None and event.button.id:
            event.stop()
            self.command(card.agent, event.button.id.removeprefix("agent-"))

    def target(self) -> str | None:
        """The agent a key acts on: the one whose card holds focus, else the first."""
        focused = self.screen.focused
        if focused is not None:
            for node in focused.ancestors_with_self:
                if isinstance(node, AgentCard):
                    return node.agent
        first = next(iter(self.query(AgentCard)), None)
        return first.agent if first else None

    @work(group="agent-command")
    async def command(self, agent: str, action: str) -> None:
        """start, pause, resume or stop `agent`; a refusal shows on its card."""
        card = next((c for c in self.query(AgentCard) if c.agent == agent), None)
        try:
            view = await self.console_app.session.backend.agents.command(
                self.axon_id, agent, action
            )
        except BACKEND_ERRORS as e:
            if card is not None:
                card.show_error(f"{action} refused: {describe(e)}")
            return
        if card is not None:
            card.show_error(None)
            card.view = view
            card.show()
