"""Live fan-out latency: a publisher paced at a fixed rate, several subscribers on the same
Axon; each event's latency runs from just before its publish call to the moment a
subscriber's iterator yields it. The floor is one fsync: nothing is delivered before it is
durable.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from bench import rawsqlite
from bench.harness import Figure, Sizes, drafts, fresh_home, ms, percentile, run
from bench.pacing import Pacer
from engine import Engine

WARMUP_EVENTS = 100
DRAIN_TIMEOUT_S = 60.0


class _Receiver:
    """One subscriber: records (sequence, arrival time) for every event it is given."""

    def __init__(self, eng: Engine, axon_id: str) -> None:
        # Flat arrays, not lists of tuples: nothing for the garbage collector to walk
        # while the figure is being measured.
        self.sequences = array("q")
        self.arrived = array("d")
        self.last = 0
        self.task = asyncio.create_task(self._consume(eng, axon_id))

    async def _consume(self, eng: Engine, axon_id: str) -> None:
        clock = time.perf_counter
        sequences, arrived = self.sequences, self.arrived
        async for event in eng.subscribe(axon_id, 0):
            arrived.append(clock())
            sequences.append(event.sequence)
            self.last = event.sequence


class _PacedPublisher:
    """Publishes on a `Pacer`'s schedule, each event of a burst its own concurrent call, and
    remembers when each event was sent and when its tick was due."""

    def __init__(self, eng: Engine, axon_id: str) -> None:
        self.eng = eng
        self.axon_id = axon_id
        self.sent: dict[int, float] = {}  # sequence -> perf_counter() just before publish
        self.scheduled: dict[int, float] = {}  # sequence -> when its tick was due
        self.worst_lag_ms = 0.0

    async def _one(self, due: float) -> None:
        started = time.perf_counter()
        result = await self.eng.publish(self.axon_id, drafts(1)[0])
        self.sent[result.sequence] = started
        self.scheduled[result.sequence] = due

    async def _burst(self, due: float, n: int) -> None:
        await asyncio.gather(*(self._one(due) for _ in range(n)))

    async def run(self, rate: int, tick_s: float, seconds: float) -> float:
        pacer = Pacer(rate, tick_s, seconds)
        took = await pacer.run(self._burst)
        self.worst_lag_ms = pacer.worst_lag_ms
        return took


async def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + DRAIN_TIMEOUT_S
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def _measure(home: Path, sizes: Sizes) -> dict[str, float]:
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon("fanout")).id
        await eng.last_sequence(axon_id)  # open the file before anyone is timed
        receivers = [_Receiver(eng, axon_id) for _ in range(sizes.subscribers)]
        try:
            await _wait_until(
                lambda: eng.bus.subscriber_count(axon_id) == sizes.subscribers,
                "subscribers to attach",
            )
            await asyncio.gather(*(eng.publish(axon_id, d) for d in drafts(WARMUP_EVENTS)))
            warm = await eng.last_sequence(axon_id)
            await _wait_until(lambda: all(r.last >= warm for r in receivers), "the warm-up")

            publisher = _PacedPublisher(eng, axon_id)
            seconds = await publisher.run(
                sizes.fanout_rate, sizes.fanout_tick_ms / 1000, sizes.fanout_seconds
            )
            last = await eng.last_sequence(axon_id)
            await _wait_until(lambda: all(r.last >= last for r in receivers), "subscribers")
        finally:
            for r in receivers:
                r.task.cancel()
            await asyncio.gather(*(r.task for r in receivers), return_exceptions=True)

    sent, scheduled = publisher.sent, publisher.scheduled
    latencies, from_schedule = [], []
    for r in receivers:
        if list(r.sequences) != list(range(1, last + 1)):
            raise RuntimeError("a subscriber saw a gap, a duplicate or a reordering")
        for seq, arrived in zip(r.sequences, r.arrived, strict=True):
            if seq in sent:
                latencies.append(ms(arrived - sent[seq]))
                from_schedule.append(ms(arrived - scheduled[seq]))
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "p99_from_schedule_ms": percentile(from_schedule, 99),
        "events": len(sent),
        "deliveries": len(latencies),
        "achieved_eps": len(sent) / seconds,
        "worst_pacing_lag_ms": publisher.worst_lag_ms,
    }


def fanout_p99_ms(sizes: Sizes, base: Path | None) -> Figure:
    with fresh_home(base, "fanout") as home:
        fsync_p50, fsync_p99 = rawsqlite.commit_ms(home, sizes.fsync_commits)
        found = run(_measure(home / "engine", sizes))
    return Figure(
        name="fanout_p99_ms",
        value=found.pop("p99_ms"),
        unit="ms",
        better="lower",
        ceiling=fsync_p50,
        ceiling_name="raw apsw commit of one small row, WAL+FULL (p50)",
        target=2.0,
        note=f"{sizes.subscribers} subscribers, publisher paced at {sizes.fanout_rate} ev/s "
        f"in bursts every {sizes.fanout_tick_ms:g} ms for {sizes.fanout_seconds:g} s; "
        "latency from just before publish() to the subscriber's iterator yielding the event.",
        detail={**found, "fsync_p50_ms": fsync_p50, "fsync_p99_ms": fsync_p99},
    )
