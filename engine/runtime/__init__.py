"""Where agents run: Docker containers, or local processes when no Docker engine answers.
Both behind one small interface (`base.Runtime`)."""

from pathlib import Path

from engine.runtime.base import AgentIO, AgentKey, GatewayMount, Runtime, Status

__all__ = ["AgentIO", "AgentKey", "GatewayMount", "Runtime", "Status", "pick_runtime"]


def pick_runtime(kind: str, home_id: str, pid_dir: Path | None = None) -> Runtime:
    """`docker`, `process`, or `auto`: Docker when its engine answers, else processes.
    `docker` never fails here: while no Docker engine answers, its calls do."""
    from engine.runtime.docker import DockerWhenReachable, docker_available
    from engine.runtime.process import ProcessRuntime

    if kind == "docker" or (kind == "auto" and docker_available()):
        return DockerWhenReachable(home_id)
    return ProcessRuntime(home_id, pid_dir)
