"""What the agent-lifecycle figures share: the echo agent (bench/agents/echo, built FROM
axons/base:bookworm), an engine whose agents run in Docker, a watcher that timestamps the
Axon events this process sees, one wake cycle measured piece by piece, and the sweep that
removes every container and volume a figure made, by label, also after an error or SIGTERM.

Clock: the agent stamps `time.time_ns()` inside its container, which reads the host's
clock, so agent and benchmark times compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import docker
import docker.errors
import orjson

from bench.harness import EVENT_TYPE, PAYLOAD, SOURCE, Figure, median, percentile
from engine import Draft, Engine
from engine.models import AgentSpec, Event

ECHO_CONTEXT = Path(__file__).resolve().parent / "agents" / "echo"
ECHO_NAME = "bench-echo"  # the image is axons/bench-echo:latest
SWEEP_LABEL = "axons.bench"
NEVER_S = 86_400.0  # an idle timer that does not fire during a run
CYCLE_TIMEOUT_S = 120.0  # one wake, or an agent's first start among many
REMOVE_THREADS = 8


def docker_missing() -> str | None:
    """Why these figures cannot be measured here, or None when a Docker engine answers."""
    from engine.runtime.docker import docker_available

    if docker_available():
        return None
    return (
        "not measured: no Docker engine answers here (docker.from_env().ping() failed); "
        "the agent figures need one"
    )


def not_measured(name: str, unit: str, why: str, target: float | None = None) -> Figure:
    return Figure(
        name=name,
        value=None,
        unit=unit,
        better="lower",
        target=target,
        note=why,
        detail={"not_measured": why},
    )


def echo_image(client: docker.DockerClient) -> str:
    """axons/bench-echo:latest, built on first use (and whenever its context changes)."""
    from engine.images import ensure_agent_image

    return ensure_agent_image(ECHO_NAME, ECHO_CONTEXT, client=client)


def echo_spec(axon_id: str, image: str, *, hibernate_s: float = NEVER_S) -> AgentSpec:
    """The echo agent on one Axon. It pauses only when it asks to (after each event), and
    hibernates after `hibernate_s` paused."""
    return AgentSpec.model_validate(
        {
            "name": "echo",
            "axon": axon_id,
            "image": image,
            "runtime": "docker",
            "idle_pause_s": NEVER_S,
            "idle_hibernate_s": hibernate_s,
            "turn_timeout_s": 60,
        }
    )


# -- cleanup ------------------------------------------------------------------------------


class Sweep:
    """Every container (and its volumes) a figure made: the engine's carry `axons.home=<id>`
    of the homes registered here, the bare ceilings' carry `axons.bench=<token>`."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.labels = {SWEEP_LABEL: uuid.uuid4().hex}
        self.homes: set[str] = set()
        self.removed = 0  # containers removed so far
        self.remove_s = 0.0  # and the time that took

    def _containers(self) -> list[dict[str, Any]]:
        api = self.client.api
        filters = [
            f"{SWEEP_LABEL}={self.labels[SWEEP_LABEL]}",
            *(f"axons.home={h}" for h in sorted(self.homes)),
        ]
        found: dict[str, dict[str, Any]] = {}
        for label in filters:
            for c in api.containers(all=True, filters={"label": label}):
                found[c["Id"]] = c
        return list(found.values())

    def _remove(self, container: dict[str, Any]) -> None:
        api = self.client.api
        volumes = [m["Name"] for m in container.get("Mounts") or () if m.get("Type") == "volume"]
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container["Id"], force=True, v=True)
        for volume in volumes:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_volume(volume, force=True)

    def remove_all(self) -> int:
        """Remove them all (a few threads: there may be a hundred); returns how many."""
        started = time.perf_counter()
        containers = self._containers()
        with ThreadPoolExecutor(REMOVE_THREADS) as pool:
            list(pool.map(self._remove, containers))
        api = self.client.api
        for home in self.homes:  # volumes whose container was already gone
            found = api.volumes(filters={"name": f"axons-{home[:8]}-"}).get("Volumes") or ()
            for volume in found:
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_volume(volume["Name"], force=True)
        self.removed += len(containers)
        self.remove_s += time.perf_counter() - started
        return len(containers)


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def swept() -> Iterator[Sweep]:
    """A Sweep whose containers and volumes are removed on the way out, however it is left.
    SIGTERM (what `timeout` sends) becomes KeyboardInterrupt meanwhile, so it is too."""
    client = docker.from_env(timeout=120)
    sweep = Sweep(client)
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        yield sweep
    finally:
        try:
            sweep.remove_all()
        finally:
            signal.signal(signal.SIGTERM, previous)
            client.close()


@contextlib.asynccontextmanager
async def docker_engine(home: Path, sweep: Sweep) -> AsyncIterator[Engine]:
    """An engine on `home` whose agents run in Docker; its containers join the sweep."""
    async with Engine(home, agent_runtime="docker") as engine:
        sweep.homes.add(engine.agents.home_id)
        yield engine


# -- watching -----------------------------------------------------------------------------


class Watch:
    """Every event of some Axons as this process sees it live, each with the
    `time.time_ns()` it arrived at. Enter it before anything happens on those Axons."""

    def __init__(self, engine: Engine, axon_ids: Sequence[str]) -> None:
        self.engine = engine
        self.queues: dict[str, asyncio.Queue[tuple[Event, int]]] = {
            a: asyncio.Queue() for a in axon_ids
        }
        self._task: asyncio.Task[None] | None = None

    async def _pump(self) -> None:
        async for e in self.engine.subscribe_all(list(self.queues)):
            self.queues[e.axon_id].put_nowait((e, time.time_ns()))

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._pump())
        await asyncio.sleep(0)  # the subscription is attached from here on
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def next(self, axon_id: str, deadline: float) -> tuple[Event, int]:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise TimeoutError
        return await asyncio.wait_for(self.queues[axon_id].get(), timeout)


# -- one wake -----------------------------------------------------------------------------


@dataclass
class Wake:
    """One event published to a suspended agent, in milliseconds from the publish call's
    start; `total` ends when the agent has the event (its own receive stamp). The pieces,
    in order, add up to it (the stamps between them are when this process saw each event
    on its live subscription):

    - publish: the event committed (the publish call returned);
    - runtime_resume: the engine's own wake_ms for the runtime call(s): docker unpause, or
      for a hibernated agent create-check + attach + start + initialize;
    - resumed_commit: the rest until agent.resumed was seen: handing the event to the
      agent's driver, and the agent.resumed commit;
    - turn_started_commit: then until turn.started was seen (its commit);
    - delivery: then until the agent had it: the stdin write, Docker's attach relay, the
      agent's read."""

    woke_from: str | None  # "paused", "hibernated", or None when it was running
    total: float
    publish: float
    runtime_resume: float | None
    resumed_commit: float | None
    turn_started_commit: float
    delivery: float
    settled_after: float  # from the publish call's start until it was suspended again

    PIECES = ("publish", "runtime_resume", "resumed_commit", "turn_started_commit", "delivery")


def _body(e: Event) -> dict[str, Any]:
    body = orjson.loads(e.payload)
    return body if isinstance(body, dict) else {}


async def cycle(engine: Engine, watch: Watch, axon_id: str, settle: str = "agent.paused") -> Wake:
    """Publish one event to the agent of `axon_id`, then follow its events until it has
    echoed this one and reached `settle` (agent.paused or agent.hibernated) again."""
    deadline = time.monotonic() + CYCLE_TIMEOUT_S
    t0 = time.time_ns()
    sequence = (await engine.publish(axon_id, Draft(EVENT_TYPE, PAYLOAD, SOURCE))).sequence
    published = time.time_ns()
    resumed: tuple[float, int] | None = None  # (the engine's wake_ms, when it was seen)
    woke_from: str | None = None
    turn_seen: int | None = None
    received: int | None = None
    while True:
        try:
            e, seen = await watch.next(axon_id, deadline)
        except TimeoutError:
            raise RuntimeError(
                f"no {settle} after the echo of sequence {sequence} within "
                f"{CYCLE_TIMEOUT_S:g} s (received: {received is not None}, "
                f"resumed: {resumed is not None})"
            ) from None
        if e.event_type == "agent.failed":
            raise RuntimeError(f"the echo agent failed: {e.payload[:500]}")
        body = _body(e)
        if e.event_type == "agent.resumed" and body.get("trigger_sequence") == sequence:
            resumed, woke_from = (float(body["wake_ms"]), seen), body.get("from")
        elif e.event_type == "turn.started" and sequence in body.get("sequences", ()):
            turn_seen = seen
        elif e.event_type == "echo" and body.get("trigger") == sequence:
            received = int(body["received_ns"])
        elif e.event_type == settle and received is not None:
            break
    if turn_seen is None or received is None:
        raise RuntimeError(f"sequence {sequence}: no turn.started seen before {settle}")

    def span(a: int, b: int) -> float:
        return (b - a) / 1e6

    return Wake(
        woke_from=woke_from,
        total=span(t0, received),
        publish=span(t0, published),
        runtime_resume=resumed[0] if resumed else None,
        resumed_commit=span(published, resumed[1]) - resumed[0] if resumed else None,
        turn_started_commit=span(resumed[1] if resumed else published, turn_seen),
        delivery=span(turn_seen, received),
        settled_after=span(t0, seen),
    )


def check_woke(wakes: Sequence[Wake], expected: str) -> None:
    wrong = [w.woke_from for w in wakes if w.woke_from != expected]
    if wrong:
        raise RuntimeError(
            f"{len(wrong)} of {len(wakes)} wakes were not from {expected} (first: {wrong[0]})"
        )


def summary(values: Sequence[float], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": median(values),
        f"{prefix}_p99_ms": percentile(values, 99),
        f"{prefix}_max_ms": max(values),
    }


def pieces(
    wakes: Sequence[Wake], stat: Callable[[Sequence[float]], float] = median, label: str = "p50"
) -> dict[str, float]:
    """Each piece of the wake path, `stat` over the wakes (one value per piece)."""
    out = {}
    for name in Wake.PIECES:
        values = [v for w in wakes if (v := getattr(w, name)) is not None]
        if values:
            out[f"{name}_{label}_ms"] = stat(values)
    return out
