"""Claude Code (claude-agent-acp) in a hardened Docker container (contract §5.2, decision 4):
the recipe's image, built offline (`axons/claude:latest`: the npm package and the host's
node on the debootstrapped base), with network none, a read-only root, no capabilities,
no-new-privileges and user 65534.

The model is reached through the engine's Agent Gateway (contract §5.3), as the recipe
declares it: the scripted model server listens on the host's loopback (the gateway's
upstream); the container gets only its own unix socket to the gateway, mounted read-only,
and the relay the engine starts before the agent, on the container's 127.0.0.1. The agent
holds an opaque token; the model server sees the engine's key."""

from __future__ import annotations

import asyncio
import io
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
    MODEL_KEY,
    ModelServer,
    RealAgent,
    http_api,
    model_server,
    recipe_spec,
)
from tests.agents_support import body, container_state, describe, inspect, watching  # noqa: E402

CLAUDE_IMAGE = "axons/claude:latest"


@pytest.fixture(scope="module")
def claude_image(docker_client: docker.DockerClient) -> str:
    """Built once, offline, before any test's clock starts (a minute the first time)."""
    return ensure_recipe_image("claude")


@pytest.fixture
def model(tmp_path: Path) -> Iterator[ModelServer]:
    """The scripted model server on the host's loopback: the gateway's upstream."""
    with model_server(tmp_path / "requests.jsonl") as server:
        yield server


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
    model: ModelServer,
) -> None:
    spec = recipe_spec(
        "claude",
        "real",
        model.url,
        Path("/work"),
        runtime="docker",
        image=claude_image,
        command=["claude-agent-acp"],
        idle_hibernate_s=2.0,
    )
    assert spec.network == "none" and spec.mounts == [] and spec.secrets == []
    async with Engine(agent_home, agent_runtime="docker") as engine:
        axon_id = (await engine.create_axon("real")).id
        async with watching(engine, axon_id) as watch, http_api(engine) as api:
            await engine.agents.add(spec)
            await watch.system("agent.running", "claude", seconds=120)
            real = RealAgent(engine, axon_id, "claude", Path("/work"), watch, model, api)
            info = inspect(docker_client, engine.agents.home_id, axon_id, "claude")
            assert_hardened(info)

            # a message, through the gateway
            sequence = await real.say("Hello from the container test")
            end = await real.completed(sequence)
            assert body(end)["stop_reason"] == "end_turn"
            assert real.said(sequence, end.sequence).endswith(HELLO)
            calls = [body(e) for e in watch.of("claude", "gateway.request", after=sequence)]
            main = [c for c in calls if c["path"] == "/v1/messages"]
            assert main and all(c["status"] == 200 and c["usage"] for c in main), calls
            container = info["Name"].lstrip("/")
            await assert_only_the_token_inside(docker_client, container, info, model)

            # a shell tool: the container is really paused while the request waits
            sequence = await real.say("RUN_SHELL: touch /work/allowed-in-docker")
            request = await real.permission(sequence)
            await watch.system("agent.paused", "claude", after=request.sequence)
            assert container_state(docker_client, engine, axon_id, "claude")["Paused"] is True
            await real.decide(request, "allow_once")
            end = await real.completed(sequence)
            assert not container_state(docker_client, engine, axon_id, "claude")["Paused"]
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
            # the woken container holds a new token; the old one is worthless
            woken = inspect(docker_client, engine.agents.home_id, axon_id, "claude")
            assert token_of(woken) != token_of(info)
            old = (token_of(info),)
            await assert_only_the_token_inside(docker_client, container, woken, model, old)
            assert model.asked("Hello again from the container test")[0]["key"] == MODEL_KEY

    # an engine restart stops the agent and the next message starts it afresh (as any ACP
    # agent): with a new token, as the previous engine's died with it
    async with (
        Engine(agent_home, agent_runtime="docker") as engine,
        watching(engine, axon_id) as watch,
    ):
        real = RealAgent(engine, axon_id, "claude", Path("/work"), watch, model, api)  # no decide
        sequence = await real.say("Hello after the engine restarted")
        end = await real.completed(sequence)
        assert real.said(sequence, end.sequence).endswith(HELLO)
        again = inspect(docker_client, engine.agents.home_id, axon_id, "claude")
        assert token_of(again) not in (token_of(info), token_of(woken))
        old = (token_of(info), token_of(woken))
        await assert_only_the_token_inside(docker_client, container, again, model, old)


def token_of(info: dict[str, Any]) -> str:
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    return env["ANTHROPIC_API_KEY"]


async def assert_only_the_token_inside(
    client: docker.DockerClient,
    container: str,
    info: dict[str, Any],
    model: ModelServer,
    revoked: tuple[str, ...] = (),
) -> None:
    """The model server saw the engine's key; the container holds only the opaque token, in
    its environment and in every file the agent wrote; it reaches nothing but its gateway."""
    keys = {r["key"] for r in model.requests() if r.get("key")}
    assert keys == {MODEL_KEY}, keys
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    token = env["ANTHROPIC_API_KEY"]
    assert token != MODEL_KEY and len(token) >= 32
    assert env["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")
    assert MODEL_KEY not in "\n".join(info["Config"]["Env"])
    box = client.containers.get(container)
    found = box.exec_run(["grep", "-rlsF", MODEL_KEY, "/home/agent", "/work", "/tmp"])
    assert found.exit_code == 1 and found.output == b"", found  # 1: no file holds it
    held = box.exec_run(["sh", "-c", "cat /proc/[0-9]*/environ"])  # every process's env
    assert MODEL_KEY.encode() not in held.output
    # no route anywhere else: not the model server on the host, not the internet
    port = model.url.rsplit(":", 1)[1]
    for url in (model.url, f"http://172.17.0.1:{port}", "http://1.1.1.1"):
        probe = box.exec_run(
            ["python3", "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)"]
        )
        assert probe.exit_code != 0, (url, probe.output)
        assert b"Connection refused" in probe.output or b"unreachable" in probe.output, probe
    # through its gateway: only with its own live token (the model server refuses `{}`: 400)
    assert await status_inside(box, token) == 400
    for other in ("sk-guess", *revoked):
        assert await status_inside(box, other) == 401


async def status_inside(box: Any, token: str) -> int:
    """The status of a call from inside the container to its gateway with `token` (in a
    thread: the engine serves the gateway in this test's loop)."""
    ask = (
        "import urllib.request, urllib.error, os\n"
        "request = urllib.request.Request(os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages',"
        f" data=b'{{}}', headers={{'x-api-key': {token!r}}})\n"
        "try:\n    print(urllib.request.urlopen(request, timeout=10).status)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)\n"
    )
    output = (await asyncio.to_thread(box.exec_run, ["python3", "-c", ask])).output
    assert output.strip().isdigit(), output.decode(errors="replace")
    return int(output)


def assert_hardened(info: dict[str, Any]) -> None:
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert info["Config"]["User"] == "65534:65534"
