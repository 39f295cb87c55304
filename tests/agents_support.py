"""Shared pieces of the agent tests (contract §3, §5; architecture decisions 4-5).

- `docker_client` (session): a Docker engine that answers, else the test FAILS with a clear
  message (a machine meant to run these tests without Docker is a broken machine, not a
  reason to skip). It also makes sure the triage image exists before any timing starts.
- `agent_home`: a temporary data home whose containers and volumes (label
  `axons.home=<home id>`, volume `axons-<home id[:8]>-...-work`) are removed at teardown,
  pass or fail, whichever engine (in-process, child process, `axons serve`) made them.
- `Watch`: follows an Axon's log from sequence 1 and waits, with a deadline, for the event
  that proves a thing (never sleep-and-hope).
- `run_seed_scenario`: the seed scenario (a `web` report, the agent's check and question,
  idle, a `slack` reply wakes it, the ticket holds the constraint), shared by the Docker and
  the process runtime tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import orjson
import pytest

from engine import Draft, Engine, Event
from engine.models import AgentSpec, AgentView
from engine.runtime import AgentKey

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AGENTS = ROOT / "sample_agents"
TRIAGE_IMAGE = "axons/triage:latest"
TRIAGE_SCRIPT = SAMPLE_AGENTS / "triage" / "agent.py"

# Generous deadlines: reached only when something is broken, never part of a pass condition.
WAIT_S = 60.0

REPORT = "Billing export fails for large CSV downloads."
CONSTRAINT = "Confirmed: only exports above 100MB."
WAKING_ORIGINS = ("USER_EVENT", "EXTERNAL_EVENT")


# -- Docker -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The local Docker engine. Missing Docker is a failure of these tests, not a skip."""
    problem = None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as e:
        problem = str(e)
    if problem is not None:
        pytest.fail(
            f"the agent tests need a running Docker engine and none answers ({problem}); "
            "start dockerd (as .ci/run does) and run them again",
            pytrace=False,
        )
    from engine.images import ensure_image

    try:
        ensure_image(TRIAGE_IMAGE)  # built offline on first need; not part of any test's time
    except Exception as e:
        problem = f"could not build or find {TRIAGE_IMAGE}: {e}"
    if problem is not None:
        client.close()
        pytest.fail(problem, pytrace=False)
    try:
        yield client
    finally:
        client.close()


def home_id_of(home: Path) -> str | None:
    """The home's id (the `axons.home` label of its containers), read from its catalog."""
    catalog = home / "catalog.db"
    if not catalog.exists():
        return None
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT value FROM meta WHERE key = 'home_id'").fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return str(rows[0][0]) if rows else None


def remove_home_containers(client: docker.DockerClient, home_id: str) -> list[str]:
    """Every container and work volume of one home; the names removed."""
    removed = []
    for c in client.api.containers(all=True, filters={"label": f"axons.home={home_id}"}):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(c["Id"], force=True)
            removed.append(c["Names"][0] if c.get("Names") else c["Id"])
    prefix = f"axons-{home_id[:8]}-"
    for v in client.api.volumes().get("Volumes") or []:
        if v["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                client.api.remove_volume(v["Name"], force=True)
    return removed


@pytest.fixture
def agent_home(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Path]:
    """A data home; its containers and volumes are removed afterwards, also on failure."""
    home = tmp_path / "home"
    try:
        yield home
    finally:
        home_id = home_id_of(home)
        if home_id is not None:
            remove_home_containers(docker_client, home_id)


@pytest.fixture
async def docker_engine(agent_home: Path) -> AsyncIterator[Engine]:
    """An in-process engine that runs agents in Docker (closed before its home is cleaned)."""
    async with Engine(agent_home, agent_runtime="docker") as eng:
        yield eng


def slug(home_id: str, axon_id: str, name: str) -> str:
    return AgentKey(home_id, axon_id, name).slug


def inspect(client: docker.DockerClient, home_id: str, axon_id: str, name: str) -> dict[str, Any]:
    """`docker inspect` of an agent's container."""
    info: dict[str, Any] = client.api.inspect_container(slug(home_id, axon_id, name))
    return info


def container_state(
    client: docker.DockerClient, engine: Engine, axon_id: str, name: str
) -> dict[str, Any]:
    state: dict[str, Any] = inspect(client, engine.agents.home_id, axon_id, name)["State"]
    return state


# -- specs --------------------------------------------------------------------------------


def sample_spec(
    axon: str, runtime: str, *, name: str, image: str, command: list[str], **overrides: Any
) -> AgentSpec:
    """A sample agent in a container (`image`) or as a local process (`command`), idle long
    enough that no test sees it paused unless it asks."""
    base: dict[str, Any] = {
        "name": name,
        "axon": axon,
        "runtime": runtime,
        "idle_pause_s": 600.0,
        "idle_hibernate_s": 600.0,
    }
    if runtime == "docker":
        base["image"] = image
    else:
        base["command"] = command
    return AgentSpec.model_validate({**base, **overrides})


def triage_spec(axon: str, runtime: str, name: str = "triage", **overrides: Any) -> AgentSpec:
    """The deterministic triage agent, in a container or as a local process."""
    local = {} if runtime == "docker" else {"env": {"PYTHONPATH": str(SAMPLE_AGENTS)}}
    return sample_spec(
        axon,
        runtime,
        name=name,
        image=TRIAGE_IMAGE,
        command=[sys.executable, "-u", str(TRIAGE_SCRIPT)],
        **{**local, **overrides},
    )


# -- events -------------------------------------------------------------------------------


def body(e: Event) -> Any:
    return orjson.loads(e.payload)


def describe(events: list[Event], last: int = 40) -> str:
    return "\n".join(
        f"  #{e.sequence} {e.origin} {e.source} {e.event_type} {e.payload[:160]}"
        for e in events[-last:]
    )


class Watch:
    """Every event of one Axon, from sequence 1, as it commits."""

    def __init__(self, engine: Engine, axon_id: str) -> None:
        self.engine = engine
        self.axon_id = axon_id
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for e in self.engine.subscribe(self.axon_id, 0):
            self.events.append(e)
            self._changed.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def wait(
        self,
        predicate: Callable[[Event], bool],
        what: str,
        *,
        after: int = 0,
        seconds: float = WAIT_S,
    ) -> Event:
        """The first event after sequence `after` that satisfies `predicate`."""
        deadline = time.monotonic() + seconds
        seen = 0
        while True:
            for e in self.events[seen:]:
                if e.sequence > after and predicate(e):
                    return e
            seen = len(self.events)
            if self._task.done():
                raise AssertionError(f"the subscription ended while waiting for {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {seconds:g} s waiting for {what}; "
                    f"the log ends with:\n{describe(self.events)}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def system(
        self,
        event_type: str,
        agent: str,
        *,
        after: int = 0,
        where: Callable[[dict[str, Any]], bool] | None = None,
        seconds: float = WAIT_S,
    ) -> Event:
        """The first system event of `agent` of this type after `after`."""
        return await self.wait(
            lambda e: (
                e.origin == "SYSTEM_EVENT"
                and e.source == agent
                and e.event_type == event_type
                and (where is None or where(body(e)))
            ),
            f"{event_type} of {agent} after #{after}",
            after=after,
            seconds=seconds,
        )

    async def turn_completed(self, agent: str, sequence: int, after: int = 0) -> Event:
        """turn.completed for a turn that handled `sequence` (a failed turn fails here)."""
        e = await self.wait(
            lambda e: (
                e.origin == "SYSTEM_EVENT"
                and e.source == agent
                and e.event_type in ("turn.completed", "turn.failed")
                and sequence in body(e)["sequences"]
            ),
            f"the end of {agent}'s turn on #{sequence}",
            after=after,
        )
        assert e.event_type == "turn.completed", (
            f"turn failed: {e.payload}\n{describe(self.events)}"
        )
        return e

    async def quiet(self, agent: str, after: int, seconds: float) -> None:
        """A negative check: nothing from `agent` after `after` during an observation window."""
        try:
            e = await self.wait(
                lambda e: e.source == agent, f"anything from {agent}", after=after, seconds=seconds
            )
        except AssertionError:
            return
        raise AssertionError(
            f"{agent} did something it must not: #{e.sequence} "
            f"{e.event_type} {e.payload}\n{describe(self.events)}"
        )

    def of(
        self, agent: str, event_type: str, origin: str = "SYSTEM_EVENT", after: int = 0
    ) -> list[Event]:
        return [
            e
            for e in self.events
            if e.source == agent
            and e.event_type == event_type
            and e.origin == origin
            and e.sequence > after
        ]

    def turn_sequences(self, agent: str, after: int = 0) -> list[int]:
        """Every sequence handed to `agent` in a turn (after `after`), once per turn.started."""
        turns = self.of(agent, "turn.started", after=after)
        return [s for e in turns for s in body(e)["sequences"]]


@contextlib.asynccontextmanager
async def watching(engine: Engine, axon_id: str) -> AsyncIterator[Watch]:
    watch = Watch(engine, axon_id)
    try:
        yield watch
    finally:
        await watch.close()


async def publish(engine: Engine, axon_id: str, text: str, source: str) -> int:
    """A human message; its sequence."""
    return (await engine.publish(axon_id, Draft.message(text, source=source))).sequence


async def rows(engine: Engine, axon_id: str, sql: str, *params: Any) -> list[list[Any]]:
    return (await engine.query(axon_id, sql, list(params))).rows


async def wait_view(
    engine: Engine,
    axon_id: str,
    name: str,
    predicate: Callable[[AgentView], bool],
    what: str,
    seconds: float = WAIT_S,
) -> AgentView:
    """Poll the agent's view until `predicate` holds (for transitions with no event of
    their own, such as reconciling with Docker at start)."""
    deadline = time.monotonic() + seconds
    while not predicate(view := await engine.agents.get(axon_id, name)):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"agent {name} is {view.state!r} after {seconds:g} s, "
                f"waiting for {what} ({view.detail})"
            )
        await asyncio.sleep(0.02)
    return view


# -- the seed scenario --------------------------------------------------------------------


async def run_seed_scenario(
    engine: Engine, runtime: str, is_paused: Callable[[Engine, str, str], Awaitable[bool]]
) -> None:
    """A `web` report: the agent opens the ticket, publishes what it checked and a question,
    idles and is really paused (`is_paused` asks the runtime's own view: docker inspect, or
    the process state). A `slack` reply wakes it: `agent.resumed` (trigger = the reply, from
    paused) commits before the agent sees the reply and before its answer, and the ticket
    holds the constraint."""
    axon_id = (await engine.create_axon("support")).id
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(triage_spec("support", runtime, idle_pause_s=1.0))
        running = await watch.system("agent.running", "triage")
        assert not await is_paused(engine, axon_id, "triage"), "running, yet the runtime paused it"

        web = await publish(engine, axon_id, REPORT, "web")
        assert web > running.sequence
        done = await watch.turn_completed("triage", web, after=web)
        said = [
            e
            for e in watch.of("triage", "message", "AGENT_EVENT", after=web)
            if e.sequence < done.sequence
        ]
        assert len(said) == 2, describe(watch.events)
        checked, question = (body(e) for e in said)
        ticket = f"TCK-{web}"
        assert checked["ticket"] == ticket and checked["text"].startswith("Checked the report")
        assert "priority high" in checked["text"]
        assert question["ticket"] == ticket and question["text"].startswith("Can someone confirm")
        assert await rows(
            engine, axon_id, "SELECT status, priority FROM tickets WHERE id = ?", ticket
        ) == [["awaiting_human", "high"]]

        paused = await watch.system("agent.paused", "triage", after=done.sequence)
        assert body(paused)["reason"] == "agent asked (axon/idle)"
        assert await is_paused(engine, axon_id, "triage"), "agent.paused, but the runtime runs it"
        assert (await engine.agents.get(axon_id, "triage")).state == "paused"
        assert await engine.agent_cursor(axon_id, "triage") == web

        slack = await publish(engine, axon_id, CONSTRAINT, "slack")
        assert slack > paused.sequence
        done = await watch.turn_completed("triage", slack, after=slack)
        resumed = await watch.system("agent.resumed", "triage", after=paused.sequence)
        wake = body(resumed)
        assert wake["trigger_sequence"] == slack
        assert wake["from"] == "paused"
        assert isinstance(wake["wake_ms"], (int, float)) and wake["wake_ms"] >= 0
        started = await watch.system(
            "turn.started", "triage", after=slack, where=lambda b: slack in b["sequences"]
        )
        reply = await watch.wait(
            lambda e: (
                e.origin == "AGENT_EVENT" and e.source == "triage" and e.event_type == "message"
            ),
            "the agent's reply",
            after=slack,
        )
        # The agent receives the waking event only after agent.resumed is committed.
        assert slack < resumed.sequence < started.sequence < reply.sequence < done.sequence
        answer = body(reply)
        assert answer["ticket"] == ticket
        assert answer["text"] == (
            "Resumed with the new constraint. Next step: inspect the export worker timeouts."
        )

        assert await rows(engine, axon_id, "SELECT status, summary FROM tickets") == [
            ["investigating", f"{REPORT} — constraint: {CONSTRAINT}"]
        ]
        assert await rows(
            engine,
            axon_id,
            "SELECT ticket_id, note_type, content FROM workflow_notes "
            "WHERE note_type = 'human_reply'",
        ) == [[ticket, "human_reply", CONSTRAINT]]
        assert await engine.agent_cursor(axon_id, "triage") == slack
        # Each message reached the agent in exactly one turn.
        assert sorted(watch.turn_sequences("triage")) == [web, slack]
        await watch.system("agent.paused", "triage", after=done.sequence)
        assert await is_paused(engine, axon_id, "triage")
