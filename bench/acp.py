"""ACP agents (contract §5.2), with the deterministic sample agent (sample_agents/acp_agent):

- `acp_first_update_overhead_ms`: a message published to an Axon -> the first
  `session/update` event of its turn seen on a live subscription, with the agent a local
  process; minus, as the ceiling, the same agent spawned and prompted directly by an SDK
  client in the same run (prompt sent -> first update received). What remains is the
  broker's cost: the publish commit, the hand-over to the agent's driver, the turn.started
  commit, the prompt's write and the update's own commit.
- `acp_permission_wake_ms`: a `permission.decision` published -> the next update of the
  agent that waited for it, paused (docker pause) in its container meanwhile. Ceiling: the
  bare Docker SDK unpause call alone on another paused container of the same image, one
  sample just before each wake.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import acp
import orjson
from acp.connection import StreamDirection, StreamEvent

from bench import rawdocker
from bench.docker_agents import (
    CYCLE_TIMEOUT_S,
    NEVER_S,
    Watch,
    docker_engine,
    docker_missing,
    not_measured,
    summary,
    swept,
)
from bench.harness import Figure, Sizes, fresh_home, median, run
from engine import Draft, Engine
from engine.images import SAMPLE_AGENTS, ensure_image
from engine.models import AgentSpec, Event

AGENT_SCRIPT = SAMPLE_AGENTS / "acp_agent" / "agent.py"
AGENT_IMAGE = "axons/acp_agent:latest"
WARMUP = 3
OVERHEAD_TARGET_MS = 5.0
WAKE_MARGIN_MS = 10.0


def _spec(axon_id: str, **fields: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        {
            "name": "acp",
            "axon": axon_id,
            "protocol": "acp",
            "idle_pause_s": NEVER_S,
            "idle_hibernate_s": NEVER_S,
            "turn_timeout_s": 60,
            **fields,
        }
    )


async def _until(
    watch: Watch, axon_id: str, found: Callable[[Event], bool], what: str
) -> tuple[Event, int]:
    deadline = time.monotonic() + CYCLE_TIMEOUT_S
    while True:
        try:
            e, seen = await watch.next(axon_id, deadline)
        except TimeoutError:
            raise RuntimeError(f"no {what} within {CYCLE_TIMEOUT_S:g} s") from None
        if e.event_type in ("agent.failed", "turn.failed"):
            raise RuntimeError(f"the ACP agent failed while waiting for {what}: {e.payload[:300]}")
        if found(e):
            return e, seen


def _turn_of(sequence: int) -> Callable[[Event], bool]:
    def ended(e: Event) -> bool:
        return e.event_type == "turn.completed" and sequence in orjson.loads(e.payload)["sequences"]

    return ended


def _is_update(e: Event) -> bool:
    return e.event_type == "session/update"


# -- first update -------------------------------------------------------------------------


async def _through_engine(home: Path, count: int) -> list[float]:
    """Publish -> first session/update seen, `count` times (after WARMUP unmeasured)."""
    found: list[float] = []
    async with Engine(home, agent_runtime="process") as engine:
        axon = await engine.create_axon("acp")
        async with Watch(engine, [axon.id]) as watch:
            spec = _spec(axon.id, command=[sys.executable, "-u", str(AGENT_SCRIPT)])
            await engine.agents.add(spec)
            await _until(watch, axon.id, lambda e: e.event_type == "agent.running", "start")
            for i in range(WARMUP + count):
                t0 = time.time_ns()
                sequence = (await engine.publish(axon.id, Draft.message(f"ping {i}"))).sequence
                _e, seen = await _until(watch, axon.id, _is_update, "the first update")
                if i >= WARMUP:
                    found.append((seen - t0) / 1e6)
                await _until(watch, axon.id, _turn_of(sequence), "turn.completed")
    return found


class _Stamps:
    """A bare SDK client that stamps the first update of each prompt (an observer: it sees
    the update as it arrives, before any handler)."""

    def __init__(self) -> None:
        self.first: int | None = None

    def observe(self, event: StreamEvent) -> None:
        if (
            self.first is None
            and event.direction is StreamDirection.INCOMING
            and event.message.get("method") == "session/update"
        ):
            self.first = time.time_ns()

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        """Stamped by the observer."""

    async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
        raise acp.RequestError.method_not_found("session/request_permission")


async def _direct(workdir: Path, count: int) -> list[float]:
    """The same agent and prompts, driven by the SDK alone: prompt sent -> first update."""
    stamps = _Stamps()
    found: list[float] = []
    async with acp.spawn_agent_process(
        stamps,  # type: ignore[arg-type]
        sys.executable,
        "-u",
        str(AGENT_SCRIPT),
        env={"HOME": str(workdir)},
        cwd=str(workdir),
        transport_kwargs={"stderr": asyncio.subprocess.DEVNULL},
        observers=[stamps.observe],
    ) as (conn, _proc):
        await conn.initialize(protocol_version=acp.PROTOCOL_VERSION)
        session = await conn.new_session(cwd=str(workdir), mcp_servers=[])
        for i in range(WARMUP + count):
            stamps.first = None
            t0 = time.time_ns()
            await conn.prompt(
                session_id=session.session_id, prompt=[acp.text_block(f"[cli] ping {i}")]
            )
            assert stamps.first is not None
            if i >= WARMUP:
                found.append((stamps.first - t0) / 1e6)
    return found


def acp_first_update_overhead_ms(sizes: Sizes, base: Path | None) -> Figure:
    count = sizes.wakes
    with fresh_home(base, "acp-first") as home:
        (home / "direct").mkdir()
        direct = run(_direct(home / "direct", count))
        engine = run(_through_engine(home / "engine", count))
    overhead = median(engine) - median(direct)
    return Figure(
        name="acp_first_update_overhead_ms",
        value=round(overhead, 3),
        unit="ms",
        better="lower",
        target=OVERHEAD_TARGET_MS,
        note=(
            "p50(publish -> first session/update event seen, agent as a local process) minus "
            "p50(the same agent driven by a bare SDK client: prompt -> first update), "
            f"{count} prompts each after {WARMUP} unmeasured. The engine path holds three "
            "durable commits (the message, turn.started, the update)."
        ),
        detail={
            "prompts": count,
            **summary(engine, "through_engine"),
            **summary(direct, "direct_sdk"),
        },
    )


# -- permission wake ----------------------------------------------------------------------


async def _permission_wakes(
    home: Path, sweep: Any, count: int, unpause_ms: Callable[[], float]
) -> tuple[list[float], list[float]]:
    wakes: list[float] = []
    ceiling: list[float] = []
    async with docker_engine(home, sweep) as engine:
        axon = await engine.create_axon("acp")
        async with Watch(engine, [axon.id]) as watch:
            await engine.agents.add(_spec(axon.id, image=AGENT_IMAGE, runtime="docker"))
            await _until(watch, axon.id, lambda e: e.event_type == "agent.running", "start")
            for i in range(WARMUP + count):
                sequence = (await engine.publish(axon.id, Draft.message("RISKY"))).sequence
                request, _ = await _until(
                    watch, axon.id, lambda e: e.event_type == "permission.requested", "a request"
                )
                await _until(
                    watch, axon.id, lambda e: e.event_type == "agent.paused", "agent.paused"
                )
                bare = await asyncio.to_thread(unpause_ms)
                body = {"request_sequence": request.sequence, "option_id": "allow"}
                t0 = time.time_ns()
                await engine.publish(
                    axon.id, Draft("permission.decision", orjson.dumps(body).decode(), "bench")
                )
                _e, seen = await _until(watch, axon.id, _is_update, "the next update")
                if i >= WARMUP:
                    wakes.append((seen - t0) / 1e6)
                    ceiling.append(bare)
                await _until(watch, axon.id, _turn_of(sequence), "turn.completed")
    return wakes, ceiling


def acp_permission_wake_ms(sizes: Sizes, base: Path | None) -> Figure:
    name = "acp_permission_wake_ms"
    if why := docker_missing():
        return not_measured(name, "ms", why)
    count = sizes.wakes
    with fresh_home(base, "acp-permission") as home, swept() as sweep:
        image = ensure_image(AGENT_IMAGE)
        bare = rawdocker.PausedContainer(sweep.client, image, sweep.labels)
        try:
            wakes, ceiling = run(_permission_wakes(home, sweep, count, bare.unpause_ms))
        finally:
            bare.close()
    bare_p50 = median(ceiling)
    return Figure(
        name=name,
        value=median(wakes),
        unit="ms",
        better="lower",
        ceiling=bare_p50,
        ceiling_name="bare Docker SDK unpause call on another paused container (p50)",
        target=round(bare_p50 + WAKE_MARGIN_MS, 2),
        note=(
            f"target = the bare unpause p50 + {WAKE_MARGIN_MS:g} ms. permission.decision "
            "published -> the next session/update of the sample ACP agent, paused in its "
            f"container while the request waited; {count} requests after {WARMUP} "
            "unmeasured, one bare unpause sample just before each decision."
        ),
        detail={
            "wakes": count,
            **summary(wakes, "wake"),
            **summary(ceiling, "bare_unpause"),
            "p50_minus_bare_unpause_p50_ms": median(wakes) - bare_p50,
        },
    )
