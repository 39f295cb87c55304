"""Claude Code (claude-agent-acp) in a hardened Docker container (contract §5.2, decision 4):
the recipe's image, built offline (`axons/claude:latest`: the npm package and the host's
node on the debootstrapped base), with network none, a read-only root, no capabilities,
no-new-privileges and user 65534.

With no network the container cannot reach a model on the host's loopback. Until the
engine's model gateway exists, the test mounts one directory read-only: the scripted model
server listens on a unix socket there, and `tests/agents/loopback.py` (run by the
container's python3 beside the agent) carries the agent's 127.0.0.1:18080 to that socket.
Nothing else of the host is reachable."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from engine import Engine
from engine.recipes import ensure_recipe_image

pytest.register_assert_rewrite(
    "tests.agents_support", "tests.acp_support", "tests.acp_real_support"
)
pytest_plugins = ["tests.agents_support"]  # docker_client, agent_home

from tests.acp_real_support import (  # noqa: E402
    HELLO,
    ModelServer,
    RealAgent,
    http_api,
    model_server,
    recipe_spec,
)
from tests.agents_support import ROOT, body, container_state, describe, inspect, watching  # noqa: E402

CLAUDE_IMAGE = "axons/claude:latest"
LOOPBACK = ROOT / "tests" / "agents" / "loopback.py"
MODEL_PORT = 18080


@pytest.fixture(scope="module")
def claude_image(docker_client: docker.DockerClient) -> str:
    """Built once, offline, before any test's clock starts (a minute the first time)."""
    return ensure_recipe_image("claude")


@pytest.fixture
def model_socket_dir(tmp_path: Path) -> Iterator[tuple[Path, ModelServer]]:
    """A directory the container may read: the model server's socket and the forwarder."""
    shared = tmp_path / "model"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)  # the agent runs as user 65534
    shutil.copy(LOOPBACK, shared / "loopback.py")
    with model_server(tmp_path / "requests.jsonl", uds=shared / "model.sock") as server:
        yield shared, server


def file_in_container(client: docker.DockerClient, container: str, path: str) -> bytes | None:
    """A file's bytes from the container's filesystem (its /work volume), or None."""
    try:
        stream, _ = client.api.get_archive(container, path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        return member.read() if member else b""


async def test_claude_in_a_hardened_container(
    agent_home: Path,
    docker_client: docker.DockerClient,
    claude_image: str,
    model_socket_dir: tuple[Path, ModelServer],
) -> None:
    shared, model = model_socket_dir
    start = f"python3 /model/loopback.py {MODEL_PORT} /model/model.sock & exec claude-agent-acp"
    spec = recipe_spec(
        "claude",
        "real",
        f"http://127.0.0.1:{MODEL_PORT}",
        Path("/work"),
        runtime="docker",
        image=claude_image,
        command=["sh", "-c", start],
        network="none",
        mounts=[f"{shared}:/model:ro"],
        idle_hibernate_s=2.0,
    )
    async with Engine(agent_home, agent_runtime="docker") as engine:
        axon_id = (await engine.create_axon("real")).id
        async with watching(engine, axon_id) as watch, http_api(engine) as api:
            await engine.agents.add(spec)
            await watch.system("agent.running", "claude", seconds=120)
            real = RealAgent(engine, axon_id, "claude", Path("/work"), watch, model, api)
            info = inspect(docker_client, engine.agents.home_id, axon_id, "claude")
            assert_hardened(info)

            # a message
            sequence = await real.say("Hello from the container test")
            end = await real.completed(sequence)
            assert body(end)["stop_reason"] == "end_turn"
            assert real.said(sequence, end.sequence).endswith(HELLO)

            # a shell tool: the container is really paused while the request waits
            sequence = await real.say("RUN_SHELL: touch /work/allowed-in-docker")
            request = await real.permission(sequence)
            await watch.system("agent.paused", "claude", after=request.sequence)
            assert container_state(docker_client, engine, axon_id, "claude")["Paused"] is True
            await real.decide(request, "allow_once")
            end = await real.completed(sequence)
            assert not container_state(docker_client, engine, axon_id, "claude")["Paused"]
            container = info["Name"].lstrip("/")
            made = file_in_container(docker_client, container, "/work/allowed-in-docker")
            assert made is not None, describe(watch.events)

            # hibernate (container stopped), wake: the session is loaded from the home volume
            before = body(watch.of("claude", "acp.session")[-1])["session_id"]
            mark = watch.events[-1].sequence
            await engine.agents.command(axon_id, "claude", "pause")
            hibernated = await watch.system("agent.hibernated", "claude", after=mark)
            assert container_state(docker_client, engine, axon_id, "claude")["Running"] is False
            sequence = await real.say("Hello again from the container test")
            end = await real.completed(sequence)
            (session,) = watch.of("claude", "acp.session", after=hibernated.sequence)
            assert body(session)["how"] == "loaded" and body(session)["session_id"] == before
            assert real.said(session.sequence, end.sequence).endswith(HELLO)


def assert_hardened(info: dict[str, Any]) -> None:
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert info["Config"]["User"] == "65534:65534"
