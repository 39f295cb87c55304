"""Many paused agents: one engine, `paused_agents` Axons with one echo agent each (one Axon
per agent, because an event wakes every agent of its Axon). All are started, woken once
and paused; then the memory they hold while paused, and single wakes among them (one at
a time, round robin over the agents), compared with the single-agent wake p99 of
wake_paused_p99_ms in this run.

Memory per paused agent: each container's cgroup as `docker stats` one-shot reports it,
memory_stats.usage minus stats.cache (cgroup v1; "file" on v2), averaged. Outside the
cgroups, per agent: the PSS of its containerd-shim process (read from /proc when the Docker
engine runs on this host) and the growth of this process's RSS (the engine side).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from bench.docker_agents import (
    Sweep,
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
from bench.harness import Figure, Sizes, fresh_home, percentile, run
from bench.wake import paused_wakes

# `docker stats` answers in ~1 s for a paused container (~10 ms for a running one), so many
# at once; the client gets a connection per thread.
STATS_THREADS = 32
MIB = 1 << 20


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cgroup_memory(api: docker.APIClient, container: str) -> dict[str, int]:
    stats = api.stats(container, stream=False, one_shot=True)["memory_stats"]
    inner = stats.get("stats") or {}
    cache = inner.get("cache", inner.get("file", 0))
    return {
        "usage": stats["usage"] - cache,
        "rss": inner.get("total_rss", inner.get("anon", 0)),
        "raw_usage": stats["usage"],
    }


def _shim_pss(container_ids: set[str]) -> list[int]:
    """PSS of the containerd-shim of each of these containers found in /proc (bytes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" not in args[0] or b"-id" not in args:
                continue
            if args[args.index(b"-id") + 1].decode() not in container_ids:
                continue
            rollup = (proc / "smaps_rollup").read_text().splitlines()
        except (OSError, IndexError):
            continue
        found += [int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:")]
    return found


def _memory(sweep: Sweep, home_id: str) -> dict[str, Any]:
    api = sweep.client.api
    containers = api.containers(filters={"label": f"axons.home={home_id}"})
    states = {c["State"] for c in containers}
    if states != {"paused"}:
        raise RuntimeError(f"expected every agent paused, found {sorted(states)}")
    client = docker.from_env(timeout=60, max_pool_size=STATS_THREADS)
    try:
        with ThreadPoolExecutor(STATS_THREADS) as pool:
            found = list(pool.map(lambda c: _cgroup_memory(client.api, c["Id"]), containers))
    finally:
        client.close()
    n = len(found)
    shims = _shim_pss({c["Id"] for c in containers})
    return {
        "containers": n,
        "usage_minus_cache_mib_per_agent": sum(m["usage"] for m in found) / n / MIB,
        "usage_minus_cache_mib_max": max(m["usage"] for m in found) / MIB,
        "rss_mib_per_agent": sum(m["rss"] for m in found) / n / MIB,
        "raw_usage_mib_per_agent": sum(m["raw_usage"] for m in found) / n / MIB,
        "shim_pss_mib_per_agent": sum(shims) / len(shims) / MIB if shims else None,
    }


async def _crowd(home: Path, sweep: Sweep, image: str, sizes: Sizes) -> dict[str, Any]:
    async with docker_engine(home, sweep) as engine:
        ids = [(await engine.create_axon(f"crowd-{i}")).id for i in range(sizes.paused_agents)]
        async with Watch(engine, ids) as watch:
            rss_before = _rss_bytes()
            started = time.perf_counter()
            for axon_id in ids:
                await engine.agents.add(echo_spec(axon_id, image))
            # Each agent starts, has its first event and pauses: all of them at once.
            await asyncio.gather(*(cycle(engine, watch, a) for a in ids))
            build_s = time.perf_counter() - started
            rss_per_agent = (_rss_bytes() - rss_before) / len(ids)
            measuring = time.perf_counter()
            memory = await asyncio.to_thread(_memory, sweep, engine.agents.home_id)
            memory["memory_stats_s"] = time.perf_counter() - measuring
            wakes = [
                await cycle(engine, watch, ids[i % len(ids)]) for i in range(sizes.crowd_wakes)
            ]
        closing = time.perf_counter()
    check_woke(wakes, "paused")
    return {
        "wakes": wakes,
        "build_s": build_s,
        "close_s": time.perf_counter() - closing,
        "memory": memory,
        "engine_rss_mib_per_agent": rss_per_agent / MIB,
    }


def paused_agents_100(sizes: Sizes, base: Path | None) -> Figure:
    name = "paused_agents_100"
    if why := docker_missing():
        return not_measured(name, "ms", why)
    single = paused_wakes(sizes, base)  # measured once per run, shared with wake_paused_*
    single_p99 = percentile([w.total for w in single.wakes], 99)
    started = time.perf_counter()
    with fresh_home(base, "paused-agents") as home, swept() as sweep:
        image = echo_image(sweep.client)
        found = run(_crowd(home, sweep, image, sizes))
    figure_s = time.perf_counter() - started  # with removing every container
    memory = found["memory"]
    totals = [w.total for w in found["wakes"]]
    return Figure(
        name=name,
        value=percentile(totals, 99),
        unit="ms",
        better="lower",
        ceiling=single_p99,
        ceiling_name="wake p99 of a single paused agent alone (wake_paused_p99_ms, this run)",
        note=f"{sizes.paused_agents} paused echo agents in one engine, one per Axon "
        f"({sizes.paused_agents} Axons: an event wakes every agent of its Axon). value = p99 "
        f"of {sizes.crowd_wakes} single wakes among them (round robin, each once the previous "
        "agent was paused again), publish call start -> the agent has the event; "
        "ratio = single-agent p99 / this. Memory per paused agent (detail "
        "memory_per_paused_agent_mib): docker stats one-shot memory_stats.usage minus "
        "stats.cache of each container's cgroup, averaged; shim PSS and the engine "
        "process's RSS growth are outside the cgroups and listed apart.",
        detail={
            "agents": sizes.paused_agents,
            "memory_per_paused_agent_mib": memory.pop("usage_minus_cache_mib_per_agent"),
            **memory,
            "engine_rss_mib_per_agent": found["engine_rss_mib_per_agent"],
            **summary(totals, "wake"),
            "single_agent_wake_p99_ms": single_p99,
            **pieces(found["wakes"]),
            **pieces(found["wakes"], lambda v: percentile(v, 99), "p99"),
            "start_all_and_pause_s": found["build_s"],
            "engine_close_s": found["close_s"],  # the agents stay; the engine lets go of them
            "containers_removed": sweep.removed,
            "remove_s": sweep.remove_s,
            "figure_s": figure_s,
        },
    )
