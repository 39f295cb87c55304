"""One event, compact: its console line, who wrote it and its hash, then the payload as
indented JSON. The replay viewer's "where you are". Everything is data, never markup."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.widgets import Static

from axons_tui.widgets.event_detail import pretty_payload
from axons_tui.widgets.event_text import (
    EVENT_COMPONENT_CLASSES,
    event_css,
    event_line,
    event_styles,
)
from engine.models import Event

HASH_CHARS = 16


class EventCard(Static):
    """Shows one event (`show`), or a line saying there is none."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {*EVENT_COMPONENT_CLASSES, "event-card--label"}
    DEFAULT_CSS = (
        event_css("EventCard")
        + """
    EventCard > .event-card--label { color: $foreground-muted; }
    """
    )

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, markup=False)
        self.event: Event | None = None

    def show(self, event: Event | None, now_ms: int, empty: str = "no event") -> None:
        self.event = event
        self.update(self.describe(event, now_ms) if event else Text(empty))

    def describe(self, event: Event, now_ms: int) -> Text:
        label = self.get_component_rich_style("event-card--label", partial=True)
        styles = event_styles(lambda name: self.get_component_rich_style(name, partial=True))
        text = event_line(event, now_ms, styles=styles)
        text.no_wrap = False
        text.append("\n")
        text.append("by ", label)
        text.append(event.author or "—")
        text.append(" · hash ", label)
        text.append(event.hash[:HASH_CHARS] + "…")
        if event.idempotency_key:
            text.append(" · key ", label)
            text.append(event.idempotency_key)
        text.append("\n")
        text.append(pretty_payload(event.payload))
        return text
