"""An Axon's agents as one line of badges, `● triage paused`, each state its own theme colour.

The states come from `agents.list` once and then from the agents' own system events
(`agent.running`, `agent.paused`, ...), so a badge changes the moment the log says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.widgets import Static

from engine.models import AgentView, Event

STATES = ("starting", "running", "paused", "hibernated", "failed", "stopped")


def state_after(event: Event) -> str | None:
    """The agent state an event says its source is in now (`agent.resumed`: running)."""
    if event.origin != "SYSTEM_EVENT" or not event.event_type.startswith("agent."):
        return None
    state = event.event_type.removeprefix("agent.")
    if state == "resumed":
        return "running"
    return state if state in STATES else None


class AgentBadges(Static):
    """`● name state` for each agent of one Axon; "no agents" when there are none."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"agent-badges--{s}" for s in STATES}
    DEFAULT_CSS = """
    AgentBadges {
        height: 1;
        color: $foreground-muted;
        & > .agent-badges--starting { color: $state-starting; }
        & > .agent-badges--running { color: $state-running; }
        & > .agent-badges--paused { color: $state-paused; }
        & > .agent-badges--hibernated { color: $state-hibernated; }
        & > .agent-badges--failed { color: $state-failed; text-style: bold; }
        & > .agent-badges--stopped { color: $state-stopped; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, markup=False)
        self.states: dict[str, str] = {}

    def show_agents(self, agents: Sequence[AgentView]) -> None:
        """Start from the engine's view of the agents."""
        self.states = {a.name: a.state for a in agents}
        self.refresh_badges()

    def learn(self, events: Iterable[Event]) -> bool:
        """Follow state changes in new events; whether any badge changed."""
        changed = False
        for event in events:
            state = state_after(event)
            if state is not None and self.states.get(event.source) != state:
                self.states[event.source] = state
                changed = True
        if changed:
            self.refresh_badges()
        return changed

    def refresh_badges(self) -> None:
        self.update(self.badges())

    def badges(self) -> Text:
        if not self.states:
            return Text("no agents")
        line = Text(no_wrap=True, overflow="ellipsis")
        for name, state in sorted(self.states.items()):
            style = self.get_component_rich_style(f"agent-badges--{state}", partial=True)
            line.append("● ", style)
            line.append(name, style)
            line.append(f" {state}  ", style)
        line.rstrip()
        return line

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted:
            self.refresh_badges()
