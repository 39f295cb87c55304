"""Durable publish throughput: many in-process publishers on one Axon, each awaiting its own
acknowledgement (fsynced) before sending the next. Group commit is what makes this fast.
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

from bench import rawsqlite
from bench.harness import Figure, Sizes, drafts, fresh_home, run, split
from engine import Engine

CEILING_NAME = "raw apsw executemany, one transaction, WAL+FULL"


async def _publish_all(
    eng: Engine, axon_id: str, publishers: int, events: int, batch: int
) -> float:
    """Seconds for `publishers` concurrent loops to publish `events` in calls of `batch`."""

    async def publisher(n: int) -> None:
        while n > 0:
            k = min(batch, n)
            if k == 1:
                await eng.publish(axon_id, drafts(1)[0])
            else:
                await eng.publish_batch(axon_id, drafts(k))
            n -= k

    started = time.perf_counter()
    await asyncio.gather(*(publisher(n) for n in split(events, publishers)))
    return time.perf_counter() - started


async def _engine_eps(home: Path, sizes: Sizes, batch: int) -> tuple[float, float]:
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon("publish")).id
        await _publish_all(eng, axon_id, sizes.publishers, sizes.warmup_events, batch)
        seconds = await _publish_all(eng, axon_id, sizes.publishers, sizes.publish_events, batch)
        last = await eng.last_sequence(axon_id)
    expected = sizes.warmup_events + sizes.publish_events
    if last != expected:
        raise RuntimeError(f"published {expected} events but the log ends at {last}")
    return sizes.publish_events / seconds, seconds


def _figure(name: str, sizes: Sizes, base: Path | None, batch: int) -> Figure:
    with fresh_home(base, name) as home:
        ceiling, ceiling_runs = rawsqlite.insert_eps(
            home, rawsqlite.event_rows(sizes.publish_events), sizes.ceiling_runs
        )
        eps, seconds = run(_engine_eps(home / "engine", sizes, batch))
    call = "publish (1 event)" if batch == 1 else f"publish_batch ({batch} events)"
    return Figure(
        name=name,
        value=eps,
        unit="ev/s",
        better="higher",
        ceiling=ceiling,
        ceiling_name=CEILING_NAME,
        note=f"{sizes.publishers} concurrent publishers each awaiting {call} at a time; "
        "ceiling = median of fresh files.",
        detail={
            "events": sizes.publish_events,
            "publishers": sizes.publishers,
            "events_per_call": batch,
            "seconds": seconds,
            "ceiling_runs_eps": [round(r) for r in ceiling_runs],
        },
    )


@functools.cache  # measured once per run: the HTTP publish figures compare with it too
def publish_durable_eps(sizes: Sizes, base: Path | None) -> Figure:
    fig = _figure("publish_durable_eps", sizes, base, batch=1)
    fig.target, fig.target_ratio = 100_000, 0.33
    return fig


def publish_batch_eps(sizes: Sizes, base: Path | None) -> Figure:
    return _figure("publish_batch_eps", sizes, base, batch=sizes.publish_batch)
