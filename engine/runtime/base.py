"""The runtime interface: create, start, pause, resume, stop, remove, status, attach, logs.

An agent's stdio reaches the broker as an `AgentIO`: two stream readers (stdout lines are
protocol, stderr lines are logs) and a writer for stdin.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.models import AgentSpec

State = Literal["running", "paused", "exited", "missing"]


@dataclass(frozen=True)
class AgentKey:
    """Which agent: unique per home, Axon and name."""

    home_id: str
    axon_id: str
    name: str

    @property
    def slug(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", self.name)
        return f"axons-{self.home_id[:8]}-{self.axon_id}-{safe}"

    def labels(self) -> dict[str, str]:
        return {"axons.home": self.home_id, "axons.axon": self.axon_id, "axons.agent": self.name}


@dataclass(frozen=True)
class GatewayMount:
    """How a sandbox with no network reaches the engine's gateway (engine/gateway): the host
    folder holding the agent's socket and the relay, mounted read-only at `container_dir`;
    the relay listens on the container's 127.0.0.1:`relay_port` before the agent starts."""

    host_dir: Path
    container_dir: str
    socket_name: str
    relay_name: str
    relay_port: int
    grant: str  # which token the container is made for (a digest): a new one, a new container

    def wrap(self, command: list[str]) -> tuple[list[str], list[str]]:
        """The entrypoint (the relay) and the command it execs (the agent's own)."""
        relay = [
            "python3",
            f"{self.container_dir}/{self.relay_name}",
            str(self.relay_port),
            f"{self.container_dir}/{self.socket_name}",
            "--",
        ]
        return relay, command


@dataclass(frozen=True)
class Status:
    state: State
    exit_code: int | None = None


class AgentIO:
    """The agent's stdio as seen by the broker."""

    def __init__(self) -> None:
        self.stdout = asyncio.StreamReader(limit=16 << 20)
        self.stderr = asyncio.StreamReader(limit=1 << 20)

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop carrying the streams (the agent itself is not stopped)."""


class Runtime(ABC):
    """One way of running agents."""

    kind: str

    @abstractmethod
    async def create(
        self,
        key: AgentKey,
        spec: AgentSpec,
        env: dict[str, str],
        gateway: GatewayMount | None = None,
    ) -> None:
        """Make the sandbox (idempotent; replaces one made from an older spec, env or
        gateway). `gateway`: the sandbox reaches the engine's gateway through it (a runtime
        whose agents share the host's loopback ignores it: `env` holds a loopback URL)."""

    @abstractmethod
    async def start(self, key: AgentKey) -> AgentIO:
        """Start it and attach to its stdio."""

    @abstractmethod
    async def attach(self, key: AgentKey) -> AgentIO:
        """Attach to a running agent (after an engine restart)."""

    @abstractmethod
    def workdir(self, spec: AgentSpec) -> str:
        """The agent's working directory, absolute, as the agent sees it."""

    @abstractmethod
    async def pause(self, key: AgentKey) -> None: ...

    @abstractmethod
    async def resume(self, key: AgentKey) -> None: ...

    @abstractmethod
    async def stop(self, key: AgentKey, timeout_s: float = 5.0) -> None:
        """Stop it, freeing its memory; `start` brings it back."""

    @abstractmethod
    async def remove(self, key: AgentKey) -> None: ...

    @abstractmethod
    async def status(self, key: AgentKey) -> Status: ...

    @abstractmethod
    async def logs(self, key: AgentKey, tail: int = 100) -> list[str]: ...

    @abstractmethod
    async def managed(self) -> list[tuple[AgentKey, Status]]:
        """Every agent of this home the runtime knows about (for reconciling)."""

    async def close(self) -> None:  # noqa: B027 - most runtimes hold nothing to release
        """Release the runtime's own resources; agents keep running."""
