"""Live fan-out of committed events to subscribers, with bounded buffers.

A subscriber that falls more than `limit` events behind is cut loose: it drains what it
holds, then goes back to reading the file. Publishers never wait for a subscriber.
"""

from __future__ import annotations

import asyncio
from collections import deque

from engine.models import Event

DEFAULT_BUFFER = 10_000


class Subscriber:
    """One live queue. `get()` returns the next batch, or None once it has overflowed."""

    __slots__ = ("_batches", "_buffered", "_limit", "_waiter", "axon_id", "closed", "overflowed")

    def __init__(self, axon_id: str | None, limit: int) -> None:
        self.axon_id = axon_id
        self._limit = limit
        self._batches: deque[list[Event]] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.closed = False

    def push(self, events: list[Event]) -> bool:
        """Queue a batch; False when the subscriber has fallen too far behind."""
        if self._buffered + len(events) > self._limit:
            self.overflowed = True
        else:
            self._batches.append(events)
            self._buffered += len(events)
        self._wake()
        return not self.overflowed

    def close(self) -> None:
        """The engine is stopping: `get()` returns None from now on."""
        self.closed = True
        self._batches.clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> list[Event] | None:
        """The next batch; None once overflowed (and drained) or closed."""
        while not self._batches:
            if self.overflowed or self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch = self._batches.popleft()
        self._buffered -= len(batch)
        return batch


class Bus:
    """Routes each committed batch to the subscribers of its Axon and to those of all Axons."""

    def __init__(self, buffer_limit: int = DEFAULT_BUFFER) -> None:
        self.buffer_limit = buffer_limit
        self._by_axon: dict[str, set[Subscriber]] = {}
        self._everything: set[Subscriber] = set()
        self._closed = False

    def attach(self, axon_id: str | None, limit: int | None = None) -> Subscriber:
        """Subscribe to one Axon, or to every Axon when `axon_id` is None."""
        sub = Subscriber(axon_id, limit or self.buffer_limit)
        if self._closed:
            sub.close()
        elif axon_id is None:
            self._everything.add(sub)
        else:
            self._by_axon.setdefault(axon_id, set()).add(sub)
        return sub

    def detach(self, sub: Subscriber) -> None:
        if sub.axon_id is None:
            self._everything.discard(sub)
            return
        subs = self._by_axon.get(sub.axon_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_axon[sub.axon_id]

    def deliver(self, axon_id: str, events: list[Event]) -> None:
        if subs := self._by_axon.get(axon_id):
            self._push(subs, events)
        if self._everything:
            self._push(self._everything, events)

    def _push(self, group: set[Subscriber], events: list[Event]) -> None:
        for sub in [s for s in group if not s.push(events)]:
            self.detach(sub)

    def close(self) -> None:
        """End every subscription, and those that attach from now on."""
        self._closed = True
        for sub in [*self._everything, *(s for subs in self._by_axon.values() for s in subs)]:
            sub.close()
        self._everything.clear()
        self._by_axon.clear()

    def subscriber_count(self, axon_id: str) -> int:
        return len(self._by_axon.get(axon_id, ()))
