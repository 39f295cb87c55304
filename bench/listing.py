"""Listing a home with many Axons: every page of `list_axons`, following `starting_after`
until `has_more` is false, against one raw SELECT over the catalog.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench import rawsqlite
from bench.harness import Figure, Sizes, fresh_home, median, ms, run
from engine import Engine
from engine.home import Home

CREATE_WINDOW = 500  # create_axon calls in flight at once while building


async def _list_all(eng: Engine, page: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        result = await eng.list_axons(limit=page, starting_after=cursor)
        ids.extend(a.id for a in result.axons)
        if not result.has_more:
            return ids
        cursor = ids[-1]


async def _measure(home: Path, sizes: Sizes) -> dict[str, object]:
    async with Engine(home) as eng:
        started = time.perf_counter()
        for first in range(0, sizes.list_axons, CREATE_WINDOW):
            count = min(CREATE_WINDOW, sizes.list_axons - first)
            await asyncio.gather(*(eng.create_axon(f"axon-{first + i}") for i in range(count)))
        build_s = time.perf_counter() - started
        times = []
        for _ in range(sizes.list_runs):
            started = time.perf_counter()
            ids = await _list_all(eng, sizes.list_page)
            times.append(ms(time.perf_counter() - started))
            if len(ids) != sizes.list_axons or len(set(ids)) != len(ids):
                raise RuntimeError(
                    f"listed {len(ids)} ids ({len(set(ids))} distinct), expected {sizes.list_axons}"
                )
        raw_ms, rows = rawsqlite.read_ms(Home(home).catalog, "SELECT * FROM axons", sizes.list_runs)
    if len(rows) != sizes.list_axons:
        raise RuntimeError(f"catalog holds {len(rows)} Axons, expected {sizes.list_axons}")
    return {
        "median_ms": median(times),
        "raw_ms": raw_ms,
        "runs_ms": [round(t, 2) for t in times],
        "axons": sizes.list_axons,
        "page": sizes.list_page,
        "build_seconds": build_s,
    }


def list_10k_axons_ms(sizes: Sizes, base: Path | None) -> Figure:
    with fresh_home(base, "list") as home:
        found = run(_measure(home, sizes))
    value, ceiling = found.pop("median_ms"), found.pop("raw_ms")
    assert isinstance(value, float) and isinstance(ceiling, float)
    return Figure(
        name="list_10k_axons_ms",
        value=value,
        unit="ms",
        better="lower",
        ceiling=ceiling,
        ceiling_name="raw apsw SELECT * FROM axons on catalog.db (median)",
        target=300.0,
        note=f"median of {sizes.list_runs} full listings of {sizes.list_axons} Axons in pages "
        f"of {sizes.list_page} (starting_after until has_more is false).",
        detail=found,
    )
