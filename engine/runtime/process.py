"""Agents as local processes, for machines without a Docker engine.

Pause is SIGSTOP to the process group, resume SIGCONT; stop is SIGTERM then SIGKILL. A
process cannot outlive the engine's pipes in a useful way, so `managed()` reports the pid
files of a previous engine and reconciling stops those leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import AxonError, ErrorCode
from engine.models import AgentSpec
from engine.runtime.base import AgentIO, AgentKey, GatewayMount, Runtime, Status


class ProcessIO(AgentIO):
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        super().__init__()
        self._proc = proc
        self._pumps = [
            asyncio.create_task(_copy(proc.stdout, self.stdout)),
            asyncio.create_task(_copy(proc.stderr, self.stderr)),
        ]

    async def write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()


async def _copy(source: asyncio.StreamReader | None, sink: asyncio.StreamReader) -> None:
    try:
        while source is not None and (chunk := await source.read(65536)):
            sink.feed_data(chunk)
    finally:
        sink.feed_eof()


async def _until_stopped(pid: int, timeout_s: float = 1.0) -> None:
    """SIGSTOP is delivered asynchronously: wait until the kernel shows the process stopped,
    so "paused" is true when we say it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return  # gone (or no /proc): nothing to wait for
        if stat.rsplit(")", 1)[1].split()[0] in ("T", "t"):
            return
        await asyncio.sleep(0.001)


@dataclass
class _Proc:
    spec: AgentSpec
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    paused: bool = False
    stderr_tail: list[str] = field(default_factory=list)


class ProcessRuntime(Runtime):
    kind = "process"

    def __init__(self, home_id: str, pid_dir: Path | None = None) -> None:
        self.home_id = home_id
        self._procs: dict[AgentKey, _Proc] = {}
        self._pid_dir = pid_dir

    async def create(
        self,
        key: AgentKey,
        spec: AgentSpec,
        env: dict[str, str],
        gateway: GatewayMount | None = None,
    ) -> None:
        """`gateway` is not needed: a process shares the host's loopback (its URL is in env)."""
        if not spec.command:
            raise AxonError(
                f"agent {spec.name} has no command to run as a local process "
                "(it names only an image, and no Docker engine answers)",
                code=ErrorCode.NO_COMMAND,
            )
        current = self._procs.get(key)
        if (
            current is not None
            and current.process is not None
            and current.process.returncode is None
        ):
            current.spec, current.env = spec, env  # applies at the next start
            return
        self._procs[key] = _Proc(spec, env)

    def _entry(self, key: AgentKey) -> _Proc:
        entry = self._procs.get(key)
        if entry is None:
            raise AxonError(
                f"agent {key.name} was not created", code=ErrorCode.AGENT_MISSING, status=404
            )
        return entry

    async def start(self, key: AgentKey) -> AgentIO:
        entry = self._entry(key)
        assert entry.spec.command
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "HOME": str(self._home(key)),
            **entry.env,
            "AXONS_AGENT": key.slug,
        }
        entry.process = await asyncio.create_subprocess_exec(
            *entry.spec.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: pause/resume reach its children
            env=env,
            cwd=self.workdir(entry.spec),
            limit=16 << 20,
        )
        entry.paused = False
        self._write_pid(key, entry.process.pid)
        return ProcessIO(entry.process)

    def workdir(self, spec: AgentSpec) -> str:
        return str(Path(spec.workdir).resolve()) if spec.workdir else os.getcwd()

    def _home(self, key: AgentKey) -> Path:
        """The agent's own HOME: it outlives restarts and hibernation (ACP agents keep their
        sessions there), and goes with `remove`."""
        base = self._pid_dir or Path(tempfile.gettempdir()) / f"axons-{self.home_id[:8]}"
        base.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data home is private
        home = base / f"{key.slug}.home"
        home.mkdir(mode=0o700, exist_ok=True)
        return home

    async def attach(self, key: AgentKey) -> AgentIO:
        raise AxonError(
            "a local process cannot be re-attached; start it again",
            code=ErrorCode.CANNOT_ATTACH,
            status=409,
        )

    def _signal(self, key: AgentKey, sig: signal.Signals) -> None:
        entry = self._entry(key)
        if entry.process is None or entry.process.returncode is not None:
            raise AxonError(
                f"agent {key.name} is not running", code=ErrorCode.NOT_RUNNING, status=409
            )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(entry.process.pid, sig)

    async def pause(self, key: AgentKey) -> None:
        self._signal(key, signal.SIGSTOP)
        entry = self._entry(key)
        entry.paused = True
        assert entry.process is not None
        await _until_stopped(entry.process.pid)

    async def resume(self, key: AgentKey) -> None:
        self._signal(key, signal.SIGCONT)
        self._entry(key).paused = False

    async def stop(self, key: AgentKey, timeout_s: float = 5.0) -> None:
        entry = self._procs.get(key)
        if entry is None or entry.process is None or entry.process.returncode is not None:
            return
        process = entry.process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        entry.paused = False
        self._clear_pid(key)

    async def remove(self, key: AgentKey) -> None:
        await self.stop(key)
        self._procs.pop(key, None)
        shutil.rmtree(self._home(key), ignore_errors=True)

    async def status(self, key: AgentKey) -> Status:
        entry = self._procs.get(key)
        if entry is None or entry.process is None:
            return Status("missing")
        if entry.process.returncode is not None:
            return Status("exited", entry.process.returncode)
        return Status("paused" if entry.paused else "running")

    async def logs(self, key: AgentKey, tail: int = 100) -> list[str]:
        return []  # a process's stderr reaches the Axon as agent.log events

    async def managed(self) -> list[tuple[AgentKey, Status]]:
        return [(key, await self.status(key)) for key in self._procs]

    async def close(self) -> None:
        for key in list(self._procs):
            await self.stop(key, timeout_s=2.0)

    # -- leftovers of an engine that died -----------------------------------------------

    def _pid_file(self, key: AgentKey) -> Path | None:
        return self._pid_dir / f"{key.slug}.pid" if self._pid_dir else None

    def _write_pid(self, key: AgentKey, pid: int) -> None:
        path = self._pid_file(key)
        if path is not None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the home is private
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(str(pid))

    def _clear_pid(self, key: AgentKey) -> None:
        path = self._pid_file(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def stop_leftovers(self) -> int:
        """Kill the process groups a previous engine left behind (their pipes are gone)."""
        if self._pid_dir is None or not self._pid_dir.exists():
            return 0
        killed = 0
        for path in self._pid_dir.glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(path.read_text())
                marker = f"AXONS_AGENT={path.stem}".encode()
                if marker in Path(f"/proc/{pid}/environ").read_bytes():
                    os.killpg(pid, signal.SIGCONT)
                    os.killpg(pid, signal.SIGKILL)
                    killed += 1
            path.unlink(missing_ok=True)
        return killed
