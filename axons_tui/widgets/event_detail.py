"""The selected event in full: where it came from, who wrote it, its hash and idempotency
key, and its payload as indented JSON. Everything is data, never markup."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import orjson
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from axons_tui.widgets.acp_detail import session_update_detail
from axons_tui.widgets.log_layout import Item
from engine.models import Event


def pretty_payload(payload: str) -> str:
    """Indented JSON; the text as it is when it is not JSON."""
    try:
        return orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return payload


class EventDetail(VerticalScroll):
    """Shows one event (`show`), or a hint until one is selected."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"event-detail--label"}
    DEFAULT_CSS = """
    EventDetail {
        & > Static { width: 1fr; }
        & > .event-detail--label { color: $foreground-muted; }
    }
    """

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("Select an event (up/down, or click) to see it in full.", markup=False)

    def show(self, event: Event, joined: Item | None = None) -> None:
        """The event; for a joined message (`joined`), its whole text first, then its first
        chunk's event."""
        self.query_one(Static).update(self.describe(event, joined))
        self.scroll_home(animate=False)

    def describe(self, event: Event, joined: Item | None = None) -> Text:
        label = self.get_component_rich_style("event-detail--label", partial=True)
        when = dt.datetime.fromtimestamp(event.timestamp_ms / 1000).isoformat(
            sep=" ", timespec="milliseconds"
        )
        text = Text()
        if joined is not None:
            chunks = joined.last - joined.first + 1
            text.append(f"{'message':<12}", label)
            text.append(f"{chunks} chunks, #{joined.first} to #{joined.last}\n")
            text.append(f"{joined.text.strip()}\n\n")
            text.append("first chunk\n", label)
        for name, value in (
            ("sequence", f"#{event.sequence}"),
            ("time", when),
            ("origin", event.origin),
            ("source", event.source),
            ("type", event.event_type),
            ("author", event.author or "—"),
            ("idempotency", event.idempotency_key or "—"),
            ("hash", event.hash),
        ):
            text.append(f"{name:<12}", label)
            text.append(f"{value}\n")
        readable = acp_update(event)
        if readable is not None:
            text.append("update\n", label)
            text.append_text(readable)
            text.append("\n")
        text.append("payload\n", label)
        text.append(pretty_payload(event.payload))
        return text


def acp_update(event: Event) -> Text | None:
    """An ACP `session/update` in full (diffs, plans, tool input), above its raw payload."""
    if event.event_type != "session/update":
        return None
    try:
        body = orjson.loads(event.payload)
    except orjson.JSONDecodeError:
        return None
    return session_update_detail(body) if isinstance(body, dict) else None
