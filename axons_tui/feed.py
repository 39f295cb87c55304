"""Live events, fanned out to the widgets that show them.

One stream per console (the session's), however many panes watch it. Events are gathered as
they arrive and handed out in batches on a short timer (k9s flushes every 50 ms), so a flood
of events costs one refresh per pane per tick, not one per event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from engine.models import Event

FLUSH_S = 0.05

Listener = Callable[[Sequence[Event]], None]

LIVE = "live"
RETRYING = "disconnected, retrying"


class Feed:
    """`watch(callback, axon_id)` a stream (one Axon's, or every Axon's with None); the
    callback gets each batch of new events in sequence order per Axon, on the UI's loop."""

    def __init__(self) -> None:
        self._listeners: dict[str | None, list[Listener]] = defaultdict(list)
        self._pending: list[Event] = []
        self.status = LIVE
        self.delivered = 0  # events handed out so far (the monitor's rate)

    def watch(self, listener: Listener, axon_id: str | None = None) -> Callable[[], None]:
        """Start calling `listener`; returns the function that stops it."""
        self._listeners[axon_id].append(listener)

        def unwatch() -> None:
            listeners = self._listeners.get(axon_id, [])
            if listener in listeners:
                listeners.remove(listener)

        return unwatch

    def push(self, events: Sequence[Event]) -> None:
        """New events from the session; they go out on the next `flush`."""
        self._pending.extend(events)

    def flush(self) -> None:
        """Hand out what arrived since the last flush (the app calls this every FLUSH_S)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self.delivered += len(batch)
        by_axon: dict[str, list[Event]] = defaultdict(list)
        for event in batch:
            by_axon[event.axon_id].append(event)
        for listener in list(self._listeners.get(None, ())):
            listener(batch)
        for axon_id, events in by_axon.items():
            for listener in list(self._listeners.get(axon_id, ())):
                listener(events)
