"""Time travel: an aggregate over the Axon's state as it was right after a past event,
rebuilt from the change history (nothing re-run), against the same query on the state now.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from bench import rawsqlite
from bench.harness import Figure, Sizes, drafts, fresh_home, median, ms, percentile, run
from engine import Engine

SQL = "SELECT count(*), sum(v) FROM t"
SEED = 20240601
WINDOW = 250  # rounds queued at once while building


async def _build(eng: Engine, axon_id: str, sizes: Sizes) -> int:
    """`tt_rows` rows, then rounds of (publish_batch of `tt_events_per_change` events, one
    row update). Rounds are queued a window at a time without awaiting each: the engine
    runs one Axon's writes in call order, so the interleaving is exact (checked later).
    Returns the number of rounds."""
    await eng.query(
        axon_id, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL)", write=True
    )
    await eng.query(
        axon_id,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO t(id, v) SELECT i, 0 FROM n",
        [sizes.tt_rows],
        write=True,
    )
    rounds = sizes.tt_events // sizes.tt_events_per_change
    update = "UPDATE t SET v = v + 1 WHERE id = ?"
    for first in range(0, rounds, WINDOW):
        queued: list[asyncio.Task[object]] = []
        for i in range(first, min(rounds, first + WINDOW)):
            queued.append(
                asyncio.create_task(eng.publish_batch(axon_id, drafts(sizes.tt_events_per_change)))
            )
            queued.append(
                asyncio.create_task(
                    eng.batch(axon_id, [{"sql": update, "params": [i % sizes.tt_rows + 1]}])
                )
            )
        await asyncio.gather(*queued)
    return rounds


async def _measure(home: Path, sizes: Sizes) -> dict[str, object]:
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon("time-travel")).id
        started = time.perf_counter()
        rounds = await _build(eng, axon_id, sizes)
        build_s = time.perf_counter() - started
        last = await eng.last_sequence(axon_id)
        if last != rounds * sizes.tt_events_per_change:
            raise RuntimeError(f"expected {rounds * sizes.tt_events_per_change} events, got {last}")

        rng = random.Random(SEED)
        past, now = [], []
        for sequence in (rng.randint(1, last) for _ in range(sizes.tt_queries)):
            started = time.perf_counter()
            result = await eng.query(axon_id, SQL, at_sequence=sequence)
            past.append(ms(time.perf_counter() - started))
            # update k (1-based) commits right after event k * events_per_change
            expected = [sizes.tt_rows, sequence // sizes.tt_events_per_change]
            if result.rows != [expected]:
                raise RuntimeError(f"state at {sequence} is {result.rows}, expected [{expected}]")
        for _ in range(sizes.tt_queries):
            started = time.perf_counter()
            result = await eng.query(axon_id, SQL)
            now.append(ms(time.perf_counter() - started))
        if result.rows != [[sizes.tt_rows, rounds]]:
            raise RuntimeError(f"current state is {result.rows}")
        path = eng.path_of(axon_id)
    raw_ms, _ = rawsqlite.read_ms(path, SQL, sizes.tt_queries)
    return {
        "median_ms": median(past),
        "p95_ms": percentile(past, 95),
        "max_ms": max(past),
        "current_median_ms": median(now),
        "raw_current_median_ms": raw_ms,
        "events": last,
        "state_changes": rounds,
        "rows": sizes.tt_rows,
        "queries": sizes.tt_queries,
        "build_seconds": build_s,
    }


def time_travel_ms(sizes: Sizes, base: Path | None) -> Figure:
    with fresh_home(base, "time-travel") as home:
        found = run(_measure(home, sizes))
    value = found.pop("median_ms")
    ceiling = found.pop("current_median_ms")
    assert isinstance(value, float) and isinstance(ceiling, float)
    return Figure(
        name="time_travel_ms",
        value=value,
        unit="ms",
        better="lower",
        ceiling=ceiling,
        ceiling_name="the same query on the current state (engine plain read, median)",
        target=200.0,
        note=f"median of {sizes.tt_queries} `{SQL}` queries at random past sequences "
        f"(at_sequence) over {found['events']} events and {found['state_changes']} row "
        "updates; detail has p95 and a raw apsw read of the current state.",
        detail=found,
    )
