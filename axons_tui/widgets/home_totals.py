"""The monitor's header: totals for the whole home (Axons, agents by state, events per
second) and a live chart of the last minute's events per second."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from axons_tui.activity import AGENT_STATES

CHART_SECONDS = 60


class HomeTotals(Widget):
    """Counts on the left, events per second over the last minute on the right."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "home-totals--label",
        *(f"home-totals--state-{state}" for state in AGENT_STATES),
    }

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._rates: deque[float] = deque([0.0] * CHART_SECONDS, maxlen=CHART_SECONDS)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(id="totals-text", markup=False)
            yield Sparkline(list(self._rates), id="totals-chart")

    def show(self, axons: int, states: Iterable[str], events_per_s: float) -> None:
        """New totals, and one more second on the chart."""
        self._rates.append(events_per_s)
        self.query_one("#totals-chart", Sparkline).data = list(self._rates)
        self.query_one("#totals-text", Static).update(self._text(axons, states, events_per_s))

    def _text(self, axons: int, states: Iterable[str], events_per_s: float) -> Text:
        label = self.get_component_rich_style("home-totals--label", partial=True)
        counts = Counter(states)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(f"{axons:,}", "bold")
        text.append(" Axons  ", label)
        text.append(f"{events_per_s:,.0f}", "bold")
        text.append(" ev/s  ", label)
        agents = sum(counts.values())
        text.append(f"{agents:,}", "bold")
        text.append(" agents" if agents != 1 else " agent", label)
        for state in AGENT_STATES:
            if counts[state]:
                text.append("  ")
                style = self.get_component_rich_style(f"home-totals--state-{state}", partial=True)
                text.append(f"{counts[state]} {state}", style)
        return text
