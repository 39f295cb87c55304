"""Waking a suspended agent: publish one event to an Axon whose echo agent (in Docker) is
paused, or hibernated (its container stopped), until the agent has the event (its own
receive stamp). Each wake waits for the agent to be suspended again before the next.
Ceilings, through the bare Docker SDK, one sample just before each wake (same conditions):
the `unpause` call alone on another paused container, and a created container's `start`
until its first line of output.

Both paused figures come from one measurement (the first of them to run makes it).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import rawdocker
from bench.docker_agents import (
    NEVER_S,
    Sweep,
    Wake,
    Watch,
    check_woke,
    cycle,
    docker_engine,
    docker_missing,
    echo_image,
    echo_spec,
    not_measured,
    pieces,
    summary,
    swept,
)
from bench.harness import Figure, Sizes, fresh_home, median, percentile, run

WARMUP_WAKES = 3  # the agent's first start and a few wakes, not measured
HIBERNATE_AFTER_S = 0.2  # paused this long, the hibernated figure's agent is stopped
P50_MARGIN_MS = 10.0  # target: p50 within this of the bare unpause p50
P99_TARGET_MS = 60.0
HIBERNATED_TARGET_MS = 1000.0


@dataclass
class Measured:
    wakes: list[Wake]
    ceiling: list[float]  # one bare Docker sample (ms) taken just before each wake


async def _wakes(
    home: Path,
    sweep: Sweep,
    image: str,
    count: int,
    settle: str,
    ceiling: Callable[[], float],
    hibernate_s: float = NEVER_S,
) -> Measured:
    """`count` wakes of one echo agent, each once it reached `settle` again, each just
    after one `ceiling()` sample (run in a thread)."""
    found = Measured([], [])
    async with docker_engine(home, sweep) as engine:
        axon = await engine.create_axon("wake")
        async with Watch(engine, [axon.id]) as watch:
            await engine.agents.add(echo_spec(axon.id, image, hibernate_s=hibernate_s))
            for _ in range(WARMUP_WAKES):
                await cycle(engine, watch, axon.id, settle)
            for _ in range(count):
                found.ceiling.append(await asyncio.to_thread(ceiling))
                found.wakes.append(await cycle(engine, watch, axon.id, settle))
    return found


@functools.cache
def paused_wakes(sizes: Sizes, base: Path | None) -> Measured:
    """`sizes.wakes` wakes of one paused agent, each beside a bare unpause."""
    with fresh_home(base, "wake-paused") as home, swept() as sweep:
        image = echo_image(sweep.client)
        bare = rawdocker.PausedContainer(sweep.client, image, sweep.labels)
        try:
            found = run(_wakes(home, sweep, image, sizes.wakes, "agent.paused", bare.unpause_ms))
        finally:
            bare.close()
    check_woke(found.wakes, "paused")
    return found


def _paused_detail(found: Measured, p: int) -> dict[str, Any]:
    """The wakes and the ceiling summarised, then the wake path's pieces at percentile p."""

    def stat(values: Sequence[float]) -> float:
        return median(values) if p == 50 else percentile(values, p)

    totals = [w.total for w in found.wakes]
    return {
        "wakes": len(found.wakes),
        **summary(totals, "wake"),
        **summary(found.ceiling, "bare_unpause"),
        f"p{p}_minus_bare_unpause_p{p}_ms": stat(totals) - stat(found.ceiling),
        **pieces(found.wakes, stat, f"p{p}"),
        "cycle_p50_ms": median([w.settled_after for w in found.wakes]),
    }


PAUSED_NOTE = (
    "publish call start -> the echo agent has the event (its time.time_ns() on receipt, "
    "same host clock), its container paused (docker pause) before each wake; {n} wakes "
    "after {w} unmeasured, each once the agent was paused again (agent.paused). Ceiling: "
    "the bare Docker SDK unpause call alone on another paused container of the same "
    "image, one sample just before each wake. detail: the wake path piece by piece at this "
    "figure's percentile (bench/docker_agents.py Wake): publish, runtime_resume (the "
    "engine's own wake_ms for its docker unpause call), resumed_commit (dispatch + the "
    "agent.resumed commit), turn_started_commit, delivery (stdin write, docker attach, "
    "the agent's read)."
)


def _paused_note(sizes: Sizes) -> str:
    return PAUSED_NOTE.format(n=sizes.wakes, w=WARMUP_WAKES)


def wake_paused_p50_ms(sizes: Sizes, base: Path | None) -> Figure:
    name = "wake_paused_p50_ms"
    if why := docker_missing():
        return not_measured(name, "ms", why)  # its target is relative to a ceiling
    found = paused_wakes(sizes, base)
    ceiling = median(found.ceiling)
    return Figure(
        name=name,
        value=median([w.total for w in found.wakes]),
        unit="ms",
        better="lower",
        ceiling=ceiling,
        ceiling_name="bare Docker SDK unpause call on another paused container (p50)",
        target=round(ceiling + P50_MARGIN_MS, 2),
        note=f"target = the bare unpause p50 + {P50_MARGIN_MS:g} ms. " + _paused_note(sizes),
        detail=_paused_detail(found, 50),
    )


def wake_paused_p99_ms(sizes: Sizes, base: Path | None) -> Figure:
    name = "wake_paused_p99_ms"
    if why := docker_missing():
        return not_measured(name, "ms", why, P99_TARGET_MS)
    found = paused_wakes(sizes, base)
    return Figure(
        name=name,
        value=percentile([w.total for w in found.wakes], 99),
        unit="ms",
        better="lower",
        ceiling=percentile(found.ceiling, 99),
        ceiling_name="bare Docker SDK unpause call on another paused container (p99)",
        target=P99_TARGET_MS,
        note=_paused_note(sizes),
        detail=_paused_detail(found, 99),
    )


def wake_hibernated_ms(sizes: Sizes, base: Path | None) -> Figure:
    name = "wake_hibernated_ms"
    if why := docker_missing():
        return not_measured(name, "ms", why, HIBERNATED_TARGET_MS)
    with fresh_home(base, "wake-hibernated") as home, swept() as sweep:
        image = echo_image(sweep.client)

        def bare_start() -> float:
            return rawdocker.start_ms(sweep.client, image, sweep.labels)

        count, settle = sizes.hibernated_wakes, "agent.hibernated"
        found = run(_wakes(home, sweep, image, count, settle, bare_start, HIBERNATE_AFTER_S))
    check_woke(found.wakes, "hibernated")
    totals = [w.total for w in found.wakes]
    return Figure(
        name=name,
        value=median(totals),
        unit="ms",
        better="lower",
        ceiling=median(found.ceiling),
        ceiling_name="bare Docker SDK start of a created container (same image and "
        "hardening, no volume) until its first output line (median)",
        target=HIBERNATED_TARGET_MS,
        note=f"median of {count} wakes of a hibernated echo agent (its container stopped "
        f"{HIBERNATE_AFTER_S:g} s after pausing; agent.hibernated before each wake): publish "
        "call start -> the agent has the event; one bare start just before each wake for "
        "the ceiling. Pieces in detail as in wake_paused_*, runtime_resume being here the "
        "engine's wake_ms for its create-check + attach + start + initialize.",
        detail={
            "wakes": len(totals),
            **summary(totals, "wake"),
            "wakes_ms": [round(t, 1) for t in totals],
            **summary(found.ceiling, "bare_start"),
            "bare_starts_ms": [round(t, 1) for t in found.ceiling],
            **pieces(found.wakes),
        },
    )
