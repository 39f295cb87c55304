"""Durable publish spread over many Axons: 1,000 Axons, each with 4 concurrent in-process
publishers awaiting one event per call. Every Axon commits a handful of events at a time, so
what this measures is group commit across Axons: whether the flush to disk is shared.

Beside it, from the same run: raw SQLite writing the same rows into as many files, one
transaction per file (WAL + synchronous=FULL, serially: the issue's ceiling); raw SQLite at
this load's own transaction size (a transaction of `many_publishers` rows in every file per
round, synchronous=NORMAL, then one flush of them all: the honest ceiling for 4 events per
commit); and the disk's own rate of `write` + `fsync` of one file in a loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from pathlib import Path

from bench import rawsqlite
from bench.harness import Figure, Sizes, drafts, fresh_home, run, split
from bench.publish import publish_durable_eps
from engine import Engine

CEILING_NAME = "raw apsw, one transaction per file (WAL+FULL), same rows, same number of files"


async def _publish_spread(
    eng: Engine, axon_ids: list[str], publishers: int, per_publisher: list[int]
) -> float:
    """Seconds for `publishers` loops on every Axon to publish their share, 1 event a call."""

    async def publisher(axon_id: str, n: int) -> None:
        for _ in range(n):
            await eng.publish(axon_id, drafts(1)[0])

    shares = iter(per_publisher)
    started = time.perf_counter()
    await asyncio.gather(
        *(publisher(axon_id, next(shares)) for axon_id in axon_ids for _ in range(publishers))
    )
    return time.perf_counter() - started


async def _engine_eps(home: Path, sizes: Sizes) -> tuple[float, float, list[str]]:
    calls = sizes.many_axons * sizes.many_publishers
    async with Engine(home) as eng:
        axon_ids = [(await eng.create_axon(f"many-{i}")).id for i in range(sizes.many_axons)]
        await _publish_spread(eng, axon_ids, sizes.many_publishers, [1] * calls)  # warm-up
        shares = split(sizes.many_events, calls)
        seconds = await _publish_spread(eng, axon_ids, sizes.many_publishers, shares)
        lasts = [await eng.last_sequence(a) for a in axon_ids]
    expected = sizes.many_events + calls
    if sum(lasts) != expected:
        raise RuntimeError(f"published {expected} events but the logs hold {sum(lasts)}")
    return sizes.many_events / seconds, seconds, axon_ids


def disk_fsyncs_per_s(directory: Path, count: int) -> float:
    """`write` + `fsync` of one small file in a loop: the disk's flush rate, one at a time."""
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        started = time.perf_counter()
        for _ in range(count):
            os.pwrite(fd, b"x" * 512, 0)
            os.fsync(fd)
        return count / (time.perf_counter() - started)
    finally:
        os.close(fd)


@functools.cache
def publish_many_axons_eps(sizes: Sizes, base: Path | None) -> Figure:
    one_hot = publish_durable_eps(sizes, base)
    with fresh_home(base, "publish_many_axons_eps") as home:
        eps, seconds, _ = run(_engine_eps(home / "engine", sizes))
        ceiling = rawsqlite.insert_files_eps(home, split(sizes.many_events, sizes.many_axons))
        per_txn = sizes.many_publishers
        rounds = sizes.many_events // (sizes.many_axons * per_txn)
        at_txn_size = rawsqlite.insert_rounds_eps(home, sizes.many_axons, per_txn, rounds)
        fsyncs = disk_fsyncs_per_s(home, sizes.disk_fsyncs)
    fig = Figure(
        name="publish_many_axons_eps",
        value=eps,
        unit="ev/s",
        better="higher",
        ceiling=ceiling,
        ceiling_name=CEILING_NAME,
        target=25_000,
        note=f"{sizes.many_axons} Axons x {sizes.many_publishers} concurrent publishers, each "
        "awaiting publish (1 event) at a time; target also >= 0.5 x publish_durable_eps of this "
        "run (see vs_publish_durable).",
        detail={
            "events": sizes.many_events,
            "axons": sizes.many_axons,
            "publishers_per_axon": sizes.many_publishers,
            "seconds": seconds,
            "publish_durable_eps": one_hot.value or 0.0,
            "vs_publish_durable": eps / one_hot.value if one_hot.value else 0.0,
            f"raw_{per_txn}_rows_per_txn_eps": at_txn_size,
            f"vs_raw_{per_txn}_rows_per_txn": eps / at_txn_size,
            "disk_fsyncs_per_s": fsyncs,
        },
    )
    return fig
