"""The console demo's home (`axons demo`): three live Axons whose sample agents pause and wake
while people watch, set up through the public `Backend` like any other client.

- support: the seed's support triage. A customer writes from the web; the triage agent opens
  a ticket, asks the support team and sleeps until someone answers (in the console's
  composer, source `tui`, or from Slack).
- ci: GitHub webhooks every few seconds (`demo_feeds`); the ci agent keeps `failures`.
- deploy: a `deployment` webhook; the deploy agent asks for a yes or a no and sleeps.
- assistant: the deterministic ACP sample agent, asked from Slack: it streams its answers,
  reports a tool call, and asks permission before it writes a file (`y` answers).

Each agent runs with the TOML it ships (`sample_agents/<name>/agent.toml`): in Docker when an
engine answers and its image builds (offline), else as a local process; `prepare_runtime`
says which and why. `remove_demo_home` takes away the home with its containers and volumes.
No Textual here.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from axons_tui.commands import load_agent_specs
from engine.backend import Backend
from engine.catalog import Catalog
from engine.errors import AxonError
from engine.home import Home
from engine.images import ensure_image
from engine.models import AgentSpec
from engine.runtime import AgentKey
from engine.runtime.docker import DockerRuntime, docker_available
from engine.runtime.process import ProcessRuntime

SAMPLE_AGENTS = Path(__file__).resolve().parent.parent / "sample_agents"
RuntimeKind = Literal["docker", "process"]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoAxon:
    """One Axon of the demo and the sample agent that lives in it."""

    name: str
    agent: str
    about: str

    @property
    def toml(self) -> Path:
        return SAMPLE_AGENTS / self.agent / "agent.toml"

    @property
    def script(self) -> Path:
        return SAMPLE_AGENTS / self.agent / "agent.py"


DEMO_AXONS = (
    DemoAxon("support", "triage", "a customer's report; the agent asks the team, then waits"),
    DemoAxon("ci", "ci", "GitHub webhooks every few seconds; failures summed up in a table"),
    DemoAxon("deploy", "deploy", "a release waits for a human's yes or no"),
    DemoAxon("assistant", "acp_agent", "an ACP agent streams its answers and asks before acting"),
)


@dataclass(frozen=True)
class RuntimeChoice:
    """Where the demo's agents run, and why (shown before the console opens)."""

    kind: RuntimeKind
    reason: str


def prepare_runtime(progress: Progress, axons: Sequence[DemoAxon] = DEMO_AXONS) -> RuntimeChoice:
    """Docker when an engine answers and the images of `axons`' agents are there or build
    offline (the first run takes about a minute); else local processes. Blocking: run it in
    a thread."""
    if not docker_available():
        return RuntimeChoice("process", "no Docker engine answers: agents run as local processes")
    try:
        for axon in axons:
            ensure_image(demo_spec(axon, "docker").image or "", progress)
    except AxonError as e:
        return RuntimeChoice(
            "process", f"the agent images cannot be built here ({e.message}): local processes"
        )
    return RuntimeChoice("docker", "agents run in Docker containers")


def demo_spec(axon: DemoAxon, runtime: RuntimeKind, workdir: Path | None = None) -> AgentSpec:
    """The agent as its TOML declares it; as a local process (this Python, the helper on
    its path, working in `workdir`, not wherever the demo was started) when the demo runs
    without Docker."""
    (spec,) = load_agent_specs(axon.toml)
    if runtime == "docker":
        return spec.model_copy(update={"runtime": "docker"})
    return AgentSpec.model_validate(
        {
            **spec.model_dump(),
            "image": None,
            "runtime": "process",
            "command": [sys.executable, "-u", str(axon.script)],
            "env": {**spec.env, "PYTHONPATH": str(SAMPLE_AGENTS)},
            "workdir": str(workdir) if workdir is not None else spec.workdir,
        }
    )


async def create_demo_axons(backend: Backend) -> dict[str, str]:
    """The demo's Axons (name -> id), each with a line saying what it shows."""
    ids = {}
    for axon in DEMO_AXONS:
        view = await backend.create_axon(axon.name, {"demo": axon.about})
        ids[axon.name] = view.id
    return ids


async def add_demo_agents(
    backend: Backend, axon_ids: dict[str, str], runtime: RuntimeKind, home: Path
) -> None:
    """One sample agent per Axon; the engine starts each at once. Local processes work in a
    folder of their own in the demo `home`, which goes with it."""
    for axon in DEMO_AXONS:
        workdir = home / "work" / axon.name
        workdir.mkdir(parents=True, exist_ok=True)
        spec = demo_spec(axon, runtime, workdir).model_copy(update={"axon": axon_ids[axon.name]})
        await backend.agents.add(spec)


def _declared_agents(home: Path) -> tuple[str, list[AgentKey]] | None:
    """The home's id and every agent it declared (None when the home never had an engine)."""
    if not Home(home).catalog.exists():
        return None
    catalog = Catalog(Home(home).catalog)
    try:
        home_id = catalog.home_id()
        return home_id, [AgentKey(home_id, axon, name) for axon, name, *_ in catalog.agents()]
    finally:
        catalog.close()


async def remove_demo_home(home: Path) -> list[str]:
    """The home and all its agents leave no trace: the containers and volumes of every agent
    it declared or that carries its label, process agents a crashed engine left behind, then
    the files. Call it once the console's engine has stopped. Returns what could not be
    removed (each with the command that removes it), so the caller can say so."""
    declared = await asyncio.to_thread(_declared_agents, home)
    left: list[str] = []
    if declared is not None:
        home_id, agents = declared
        await asyncio.to_thread(ProcessRuntime(home_id, Home(home).agents).stop_leftovers)
        if await asyncio.to_thread(docker_available):
            left = await _remove_containers(home_id, agents)
    await asyncio.to_thread(shutil.rmtree, home, True)
    return left


async def _remove_containers(home_id: str, agents: list[AgentKey]) -> list[str]:
    """Every container and volume of the home's agents; a second sweep catches a container
    that was still being made during the first."""
    docker = DockerRuntime(home_id)
    try:
        for _sweep in range(2):
            keys = {key for key, _status in await docker.managed()} | set(agents)
            for key in keys:
                await docker.remove(key)  # a container or volume that is not there is fine
            agents = []
        return [f"docker rm -f {key.slug}" for key, _status in await docker.managed()]
    except AxonError as e:
        return [f"docker: {e.message}"]
    finally:
        await docker.close()
