"""A one-line bar over an Axon's whole history: where the replay stands, where the agents'
turns ran and where they woke. Clicking it says which event the click points at.

Each cell stands for a run of sequences (or one sequence takes several cells, when the
history is shorter than the bar), so the bar costs the same for ten events or a million.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

TURN_STARTED = "turn.started"
TURN_ENDED = frozenset({"turn.completed", "turn.failed"})
WAKE = "agent.resumed"
MARKED_TYPES = (TURN_STARTED, *sorted(TURN_ENDED), WAKE)

GLYPHS = {
    "timeline--played": "━",
    "timeline--ahead": "─",
    "timeline--turn": "▬",
    "timeline--wake": "▲",
    "timeline--position": "●",
}


@dataclass(frozen=True)
class Marks:
    """What the bar marks: the spans of agent turns and the sequences of wakes."""

    turns: tuple[tuple[int, int], ...] = ()
    wakes: tuple[int, ...] = ()

    @classmethod
    def from_events(cls, typed: Iterable[tuple[int, str]], last: int) -> Marks:
        """From (sequence, event_type) pairs in sequence order; a turn still running at the
        end of the history runs to `last`."""
        turns: list[tuple[int, int]] = []
        wakes: list[int] = []
        started: int | None = None
        for sequence, event_type in typed:
            if event_type == WAKE:
                wakes.append(sequence)
            elif event_type == TURN_STARTED and started is None:
                started = sequence
            elif event_type in TURN_ENDED and started is not None:
                turns.append((started, sequence))
                started = None
        if started is not None:
            turns.append((started, last))
        return cls(tuple(turns), tuple(wakes))


def cell_of(sequence: int, total: int, width: int) -> int:
    """The cell a sequence (1..total) falls in."""
    return min(width - 1, (sequence - 1) * width // total)


def sequence_at(x: int, total: int, width: int) -> int:
    """The sequence a cell stands for (the first of its run)."""
    return max(1, min(total, x * total // width + 1))


def bar_roles(position: int, total: int, width: int, marks: Marks) -> list[str]:
    """The component class of each cell of the bar."""
    if width <= 0:
        return []
    if total <= 0:
        return ["timeline--ahead"] * width
    here = cell_of(position, total, width) if position >= 1 else -1
    roles = ["timeline--played" if x < here else "timeline--ahead" for x in range(width)]
    for start, end in marks.turns:
        for x in range(cell_of(start, total, width), cell_of(end, total, width) + 1):
            roles[x] = "timeline--turn"
    for wake in marks.wakes:
        roles[cell_of(wake, total, width)] = "timeline--wake"
    if here >= 0:
        roles[here] = "timeline--position"
    return roles


class Timeline(Widget):
    """The bar. Set `total`, `position` and `marks`; a click posts `Timeline.Picked`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = set(GLYPHS)

    DEFAULT_CSS = """
    Timeline {
        height: 1;
        & > .timeline--played { color: $primary; }
        & > .timeline--ahead { color: $foreground-muted; }
        & > .timeline--turn { color: $origin-agent; }
        & > .timeline--wake { color: $waiting; text-style: bold; }
        & > .timeline--position { color: $accent; text-style: bold; }
    }
    """

    total: reactive[int] = reactive(0)
    position: reactive[int] = reactive(0)
    marks: reactive[Marks] = reactive(Marks)

    class Picked(Message):
        """The user clicked the bar at the cell of `sequence`."""

        def __init__(self, sequence: int) -> None:
            super().__init__()
            self.sequence = sequence

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.tooltip = "Click to jump there. ▬ agent turns, ▲ wakes, ● where you are"

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y != 0:
            return Strip.blank(width, self.rich_style)
        text = Text(no_wrap=True, end="")
        for role in bar_roles(self.position, self.total, width, self.marks):
            text.append(GLYPHS[role], self.get_component_rich_style(role))
        return Strip(text.render(self.app.console)).simplify()

    def on_click(self, event: events.Click) -> None:
        if self.total > 0 and self.size.width > 0:
            event.stop()
            self.post_message(self.Picked(sequence_at(event.x, self.total, self.size.width)))
