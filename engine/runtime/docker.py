"""Agents in hardened Docker containers, through the Docker SDK.

Hardening: no network unless the spec asks, read-only root (a writable /work volume and a
/tmp tmpfs), every capability dropped, no-new-privileges, user 65534, memory, cpu and pids
limits. Stdin stays open across attaches (`StdinOnce` false, set on the low-level config
because the SDK forces it true), so an engine restart re-attaches instead of killing the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors
import orjson

from engine.errors import AxonError, ErrorCode, Unavailable
from engine.images import ensure_image
from engine.models import AgentSpec
from engine.runtime.base import AgentIO, AgentKey, GatewayMount, Runtime, Status

STDOUT, STDERR = 1, 2
AGENT_HOME = "/home/agent"  # a named volume: agents keep their sessions there (ACP agents do)
logger = logging.getLogger("axons.docker")


def docker_available() -> bool:
    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
            return True
        finally:
            client.close()
    except Exception:
        return False


def spec_hash(spec: AgentSpec, env: dict[str, str], gateway: GatewayMount | None = None) -> str:
    """What the container was made from; a change means a new container. With a gateway the
    grant (renewed at each start) is part of it: a container holding a revoked token is made
    afresh (its /work and home volumes stay)."""
    material = orjson.dumps(
        [spec.model_dump(mode="json"), sorted(env), str(gateway) if gateway else None],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(material).hexdigest()[:16]


class DockerIO(AgentIO):
    """Demultiplexes a Docker attach socket (8-byte frame headers, no TTY)."""

    def __init__(self, raw: socket.socket) -> None:
        super().__init__()
        self._raw = raw
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> DockerIO:
        self._raw.setblocking(False)
        self._reader, self._writer = await asyncio.open_connection(sock=self._raw, limit=16 << 20)
        self._pump = asyncio.create_task(self._demux())
        return self

    async def _demux(self) -> None:
        assert self._reader is not None
        try:
            while True:
                header = await self._reader.readexactly(8)
                stream, size = header[0], struct.unpack(">I", header[4:])[0]
                data = await self._reader.readexactly(size)
                (self.stderr if stream == STDERR else self.stdout).feed_data(data)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.stdout.feed_eof()
            self.stderr.feed_eof()

    async def write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()


class DockerRuntime(Runtime):
    kind = "docker"

    def __init__(self, home_id: str) -> None:
        self.home_id = home_id
        self._client = docker.from_env(timeout=30)
        self._api = self._client.api
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="axons-docker")
        self.progress: Callable[[str], None] = _log_progress

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        except docker.errors.NotFound as e:
            raise AxonError(
                f"container not found: {e.explanation}", code=ErrorCode.AGENT_MISSING, status=404
            ) from None
        except docker.errors.APIError as e:
            raise Unavailable(
                f"docker: {e.explanation or e}", code=ErrorCode.DOCKER_ERROR
            ) from None
        except Exception as e:
            if "Connection" in type(e).__name__ or isinstance(e, OSError):
                raise Unavailable(
                    f"the Docker engine does not answer ({e})", code=ErrorCode.DOCKER_UNAVAILABLE
                ) from None
            raise

    # -- lifecycle ----------------------------------------------------------------------

    async def create(
        self,
        key: AgentKey,
        spec: AgentSpec,
        env: dict[str, str],
        gateway: GatewayMount | None = None,
    ) -> None:
        assert spec.image is not None
        digest = spec_hash(spec, env, gateway)
        try:
            info = await self._call(self._api.inspect_container, key.slug)
            if info["Config"]["Labels"].get("axons.spec") == digest:
                return
            await self._call(self._api.remove_container, key.slug, force=True)
        except AxonError as e:
            if e.code != "agent_missing":
                raise
        await self._call(ensure_image, spec.image, self.progress)
        binds, volumes = _mounts(key, spec)
        entrypoint, command = None, spec.command
        if gateway is not None:  # the relay starts first, then execs the agent's command
            binds.append(f"{gateway.host_dir}:{gateway.container_dir}:ro")
            volumes.append(gateway.container_dir)
            image = (await self._call(self._api.inspect_image, spec.image)).get("Config") or {}
            inner = [*(image.get("Entrypoint") or []), *(spec.command or image.get("Cmd") or [])]
            entrypoint, command = gateway.wrap(inner)
        host_config = self._api.create_host_config(
            network_mode=spec.network,
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=spec.memory,
            memswap_limit=spec.memory,
            nano_cpus=int(spec.cpus * 1e9),
            pids_limit=spec.pids,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            binds=binds,
            init=True,  # PID 1 ignores SIGTERM it has no handler for; an init forwards it
        )
        config = self._api.create_container_config(
            spec.image,
            command,
            entrypoint=entrypoint,
            user="65534:65534",
            stdin_open=True,
            environment={"HOME": AGENT_HOME, **env},
            labels={**key.labels(), "axons.spec": digest},
            working_dir=self.workdir(spec),
            volumes=volumes,
            host_config=host_config,
        )
        config["StdinOnce"] = False  # keep stdin open when our attach goes away
        await self._call(self._api.create_container_from_config, config, key.slug)

    async def start(self, key: AgentKey) -> AgentIO:
        io = await self.attach(key)  # attach first: output written before it is not replayed
        await self._call(self._api.start, key.slug)
        return io

    async def attach(self, key: AgentKey) -> AgentIO:
        sock = await self._call(
            self._api.attach_socket,
            key.slug,
            params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1},
        )
        raw = getattr(sock, "_sock", sock)
        return await DockerIO(raw).open()

    def workdir(self, spec: AgentSpec) -> str:
        return container_workdir(spec)

    async def pause(self, key: AgentKey) -> None:
        await self._call(self._api.pause, key.slug)

    async def resume(self, key: AgentKey) -> None:
        await self._call(self._api.unpause, key.slug)

    async def stop(self, key: AgentKey, timeout_s: float = 5.0) -> None:
        if (await self.status(key)).state == "paused":
            await self.resume(key)  # a frozen process cannot handle SIGTERM
        await self._call(self._api.stop, key.slug, timeout=int(timeout_s))

    async def remove(self, key: AgentKey) -> None:
        """The container and its volumes (hibernation keeps them; removal does not)."""
        with contextlib.suppress(AxonError):
            await self._call(self._api.remove_container, key.slug, force=True)
        for volume in ("work", "home"):
            with contextlib.suppress(AxonError):
                await self._call(self._api.remove_volume, f"{key.slug}-{volume}", force=True)

    async def status(self, key: AgentKey) -> Status:
        try:
            info = await self._call(self._api.inspect_container, key.slug)
        except AxonError as e:
            if e.code == "agent_missing":
                return Status("missing")
            raise
        return _status(info["State"])

    async def logs(self, key: AgentKey, tail: int = 100) -> list[str]:
        data = await self._call(self._api.logs, key.slug, stdout=False, stderr=True, tail=tail)
        return data.decode(errors="replace").splitlines()

    async def inspect(self, key: AgentKey) -> dict[str, Any]:
        info: dict[str, Any] = await self._call(self._api.inspect_container, key.slug)
        return info

    async def managed(self) -> list[tuple[AgentKey, Status]]:
        found = await self._call(
            self._api.containers, all=True, filters={"label": f"axons.home={self.home_id}"}
        )
        result = []
        for c in found:
            labels = c.get("Labels") or {}
            key = AgentKey(
                self.home_id, labels.get("axons.axon", ""), labels.get("axons.agent", "")
            )
            state = c.get("State", "")
            result.append(
                (
                    key,
                    Status(
                        "paused"
                        if state == "paused"
                        else "running"
                        if state == "running"
                        else "exited"
                    ),
                )
            )
        return result

    async def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()


class DockerWhenReachable(Runtime):
    """Docker, connected on first need and again after each failure to connect. While no
    Docker engine answers every call fails with `docker_unavailable`: the engine starts
    anyway, its Docker agents are marked failed (and retried with backoff), and an agent
    that must stay sandboxed never falls back to running on the host."""

    kind = "docker"

    def __init__(self, home_id: str) -> None:
        self.home_id = home_id
        self._docker: DockerRuntime | None = None
        self._connecting = asyncio.Lock()  # agents starting together share one connection

    async def connected(self) -> DockerRuntime:
        async with self._connecting:
            if self._docker is None:
                try:
                    self._docker = await asyncio.to_thread(DockerRuntime, self.home_id)
                except docker.errors.DockerException as e:
                    raise Unavailable(
                        "no Docker engine answers, and this agent runs only in Docker; it is "
                        f"retried with backoff until Docker is back ({e})",
                        code=ErrorCode.DOCKER_UNAVAILABLE,
                    ) from None
            return self._docker

    def workdir(self, spec: AgentSpec) -> str:
        return container_workdir(spec)

    async def create(
        self,
        key: AgentKey,
        spec: AgentSpec,
        env: dict[str, str],
        gateway: GatewayMount | None = None,
    ) -> None:
        await (await self.connected()).create(key, spec, env, gateway)

    async def start(self, key: AgentKey) -> AgentIO:
        return await (await self.connected()).start(key)

    async def attach(self, key: AgentKey) -> AgentIO:
        return await (await self.connected()).attach(key)

    async def pause(self, key: AgentKey) -> None:
        await (await self.connected()).pause(key)

    async def resume(self, key: AgentKey) -> None:
        await (await self.connected()).resume(key)

    async def stop(self, key: AgentKey, timeout_s: float = 5.0) -> None:
        await (await self.connected()).stop(key, timeout_s)

    async def remove(self, key: AgentKey) -> None:
        await (await self.connected()).remove(key)

    async def status(self, key: AgentKey) -> Status:
        return await (await self.connected()).status(key)

    async def logs(self, key: AgentKey, tail: int = 100) -> list[str]:
        return await (await self.connected()).logs(key, tail)

    async def managed(self) -> list[tuple[AgentKey, Status]]:
        return await (await self.connected()).managed()

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()


def container_workdir(spec: AgentSpec) -> str:
    """Where an agent works inside its container: its spec's `workdir`, else the /work volume."""
    return spec.workdir or "/work"


def _log_progress(line: str) -> None:
    logger.info("%s", line)


def _status(state: dict[str, Any]) -> Status:
    if state.get("Paused"):
        return Status("paused")
    if state.get("Running"):
        return Status("running")
    return Status("exited", state.get("ExitCode"))


def _mounts(key: AgentKey, spec: AgentSpec) -> tuple[list[str], list[str]]:
    """Binds and volume paths: the agent's own /work and home volumes, then the spec's mounts
    (`/host/path:/in/box[:ro]` read-only by default, or `volume-name:/in/box`). An image
    whose agent writes its home makes AGENT_HOME owned by the agent's user (Docker seeds a
    new volume with that owner)."""
    binds = [f"{key.slug}-work:/work:rw", f"{key.slug}-home:{AGENT_HOME}:rw"]
    for mount in spec.mounts:
        parts = mount.split(":")
        if len(parts) not in (2, 3) or not parts[1].startswith("/"):
            raise AxonError(
                f"mount {mount!r}: use SOURCE:/path/in/box[:ro|rw]", code=ErrorCode.INVALID_MOUNT
            )
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else ("ro" if source.startswith(("/", ".")) else "rw")
        if source.startswith(("/", ".")):
            source = str(Path(source).resolve())
        binds.append(f"{source}:{target}:{mode}")
    return binds, [b.split(":")[1] for b in binds]
