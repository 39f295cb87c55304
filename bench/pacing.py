"""A fixed publishing schedule: one burst of events per tick, ticks counted from the start,
so a late wake-up catches up instead of shifting (drifting) the schedule. Used by the
in-process fan-out figure and by the SSE figures alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.harness import ms

# send(due, n): publish `n` events whose tick was due at perf_counter() `due`.
Send = Callable[[float, int], Awaitable[object]]


class Pacer:
    """`rate` events per second for `seconds`, in bursts about `tick_s` apart (further apart
    when the rate is below one event per tick, so the rate is always the one asked for)."""

    def __init__(self, rate: int, tick_s: float, seconds: float) -> None:
        self.burst = max(1, round(rate * tick_s))
        self.tick_s = tick_s = self.burst / rate
        self.ticks = round(seconds / tick_s)
        self.worst_lag_ms = 0.0  # the latest any tick started, after it was due

    @property
    def events(self) -> int:
        return self.burst * self.ticks

    async def run(self, send: Send) -> float:
        """Call `send(due, burst)` once per tick, each call its own task (the schedule does
        not wait for acknowledgements); return the seconds until the last one finished."""
        tick_s = self.tick_s
        in_flight: set[asyncio.Task[object]] = set()  # finished ones are dropped, not kept
        start = time.perf_counter()
        issued = 0
        while issued < self.ticks:
            now = time.perf_counter()
            due_ticks = min(self.ticks, int((now - start) / tick_s) + 1)
            if due_ticks > issued:
                self.worst_lag_ms = max(self.worst_lag_ms, ms(now - (start + issued * tick_s)))
            while issued < due_ticks:
                task = asyncio.ensure_future(send(start + issued * tick_s, self.burst))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                issued += 1
            await asyncio.sleep(max(0.0, start + issued * tick_s - time.perf_counter()))
        await asyncio.gather(*in_flight)
        return time.perf_counter() - start
