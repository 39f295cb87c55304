"""Issue 8, agents: what a token over TCP may declare (docs/security.md). Each test does what
an attacker would, with real tokens against a real `axons serve` and a real Docker engine,
and checks that the attempt fails cleanly and leaves nothing behind: no agent, no container,
no process on the host.

The engine that must live without Docker gets a dead DOCKER_HOST (the real dockerd is shared
with other tests and is never stopped)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

pytest.register_assert_rewrite("tests.agents_support")
pytest_plugins = ["tests.agents_support"]  # docker_client, agent_home

from tests.agents_support import TRIAGE_IMAGE, home_id_of, inspect  # noqa: E402
from tests.http_support import (  # noqa: E402
    ServerProcess,
    all_events,
    axons,
    make_token,
    running_server,
    wait_until,
)

DEAD_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
HOST_SECRET = {"AXONS_TEST_HOST_SECRET": "the-engine-users-password"}


def admin_axon(http: httpx.Client, name: str) -> str:
    r = http.post("/v1/axons", json={"name": name})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def refused(r: httpx.Response, status: int, code: str) -> str:
    """A clean JSON refusal; its message."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:400]}"
    error = r.json()["error"]
    assert error["code"] == code, error
    assert len(error["message"]) > 20, error
    return str(error["message"])


def agent_spec(name: str, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "image": TRIAGE_IMAGE, "idle_pause_s": 600, **overrides}


def home_containers(client: docker.DockerClient, home: Path) -> list[str]:
    home_id = home_id_of(home)
    assert home_id is not None
    found = client.api.containers(all=True, filters={"label": f"axons.home={home_id}"})
    return [c["Names"][0] for c in found]


def processes_running(marker: str) -> list[int]:
    """Pids whose command line mentions `marker` (a host process an agent would have been)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry))
    return pids


def socket_client(server: ServerProcess) -> httpx.Client:
    """The operator's own way in: the home's unix socket, no token."""
    transport = httpx.HTTPTransport(uds=str(server.socket_path))
    return httpx.Client(transport=transport, base_url="http://axons", timeout=60.0)


# -- item 2: specs over TCP ---------------------------------------------------------------


def test_tcp_specs_cannot_reach_the_host(
    agent_home: Path, docker_client: docker.DockerClient
) -> None:
    admin = make_token(agent_home, "admin", "admin")
    with running_server(agent_home, env=HOST_SECRET) as server, server.http(admin) as http:
        axon_id = admin_axon(http, "target")
        limited = make_token(agent_home, "limited", "admin", [axon_id])
        url = f"/v1/axons/{axon_id}/agents"
        attacks = [
            ({"mounts": ["/:/host:rw"]}, "mount_not_allowed"),
            ({"mounts": ["/etc:/etc-of-host"]}, "mount_not_allowed"),
            ({"mounts": [f"{agent_home}:/home:ro"]}, "mount_not_allowed"),
            ({"mounts": ["/tmp/../etc:/x"]}, "mount_not_allowed"),
            ({"mounts": ["./relative:/x"]}, "mount_not_allowed"),
            ({"mounts": [f"axons-{home_id_of(agent_home)}-x-work:/w"]}, "mount_not_allowed"),
            ({"secrets": ["AXONS_TEST_HOST_SECRET"]}, "secret_not_allowed"),
            (
                {
                    "gateways": {
                        "A": {
                            "upstream": "https://evil.example",
                            "secret": "AXONS_TEST_HOST_SECRET",
                        }
                    }
                },
                "secret_not_allowed",
            ),
            ({"network": "bridge"}, "network_not_allowed"),
            # MCP gateway upstreams are reached from the host: a command runs there, a URL
            # is fetched from there, and their secrets are the engine's.
            (
                {
                    "protocol": "acp",
                    "mcp_servers": [{"name": "t", "command": "sh", "allowed_tools": ["*"]}],
                },
                "mcp_not_allowed",
            ),
            (
                {
                    "protocol": "acp",
                    "mcp_servers": [
                        {"name": "t", "url": "http://169.254.169.254/", "allowed_tools": ["*"]}
                    ],
                },
                "mcp_not_allowed",
            ),
            (
                {
                    "protocol": "acp",
                    "mcp_servers": [
                        {
                            "name": "t",
                            "url": "http://127.0.0.1:1/mcp",
                            "allowed_tools": ["*"],
                            "secrets": ["AXONS_TEST_HOST_SECRET"],
                            "headers": {"Authorization": "Bearer ${AXONS_TEST_HOST_SECRET}"},
                        }
                    ],
                },
                "secret_not_allowed",
            ),
            ({"memory": "64g"}, "outside_limits"),
            ({"memory": "0"}, "outside_limits"),
            ({"pids": 1_000_000}, "outside_limits"),
            ({"cpus": 64}, "outside_limits"),
            ({"image": "debian:bookworm"}, "image_not_allowed"),
            ({"runtime": "process", "command": ["sh", "-c", "id"]}, "forbidden"),
        ]
        for i, (overrides, code) in enumerate(attacks):
            r = http.post(url, json=agent_spec(f"attack-{i}", **overrides))
            refused(r, 403, code)

        # missing_secret must not say which variables the engine has: a set one and an unset
        # one are refused with the same words.
        set_one = refused(
            http.post(url, json=agent_spec("s1", secrets=["AXONS_TEST_HOST_SECRET"])),
            403,
            "secret_not_allowed",
        )
        unset_one = refused(
            http.post(url, json=agent_spec("s2", secrets=["AXONS_NOT_SET_ANYWHERE"])),
            403,
            "secret_not_allowed",
        )
        assert set_one.replace("AXONS_TEST_HOST_SECRET", "X") == unset_one.replace(
            "AXONS_NOT_SET_ANYWHERE", "X"
        )

        # A token limited to this Axon may not even use a named volume.
        with server.http(limited) as scoped:
            refused(
                scoped.post(url, json=agent_spec("vol", mounts=["some-volume:/data"])),
                403,
                "mount_not_allowed",
            )

        agents = http.get(url).json()["agents"]
        assert agents == []
        assert home_containers(docker_client, agent_home) == []


def test_the_operators_allow_lists_let_a_spec_through(
    agent_home: Path, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """config.toml opens exactly what it lists, and only for tokens that are not limited."""
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    agent_home.mkdir(parents=True)
    (agent_home / "config.toml").write_text(
        "[agents]\n"
        f'mounts = ["{fixtures}"]\n'
        'secrets = ["AXONS_TEST_HOST_SECRET"]\n'
        "bridge_network = true\n"
        'max_memory = "256m"\n'
        "[agents.gateway_keys]\n"
        'AXONS_TEST_HOST_SECRET = ["https://api.example.com/v1"]\n'
    )
    gateway = {"upstream": "https://api.example.com/v1", "secret": "AXONS_TEST_HOST_SECRET"}
    admin = make_token(agent_home, "admin", "admin")
    with running_server(agent_home, env=HOST_SECRET) as server, server.http(admin) as http:
        axon_id = admin_axon(http, "allowed")
        url = f"/v1/axons/{axon_id}/agents"
        refused(http.post(url, json=agent_spec("big", memory="512m")), 403, "outside_limits")
        refused(
            http.post(url, json=agent_spec("other", mounts=[f"{tmp_path}:/data"])),
            403,
            "mount_not_allowed",
        )
        limited = make_token(agent_home, "limited", "admin", [axon_id])
        with server.http(limited) as scoped:
            refused(
                scoped.post(url, json=agent_spec("lim", secrets=["AXONS_TEST_HOST_SECRET"])),
                403,
                "secret_not_allowed",
            )
            refused(
                scoped.post(url, json=agent_spec("net", network="bridge")),
                403,
                "network_not_allowed",
            )
            refused(
                scoped.post(url, json=agent_spec("gw", gateways={"API": gateway})),
                403,
                "secret_not_allowed",
            )
        for elsewhere in ("https://api.example.com.evil.net/v1", "https://api.example.com/"):
            other = {**gateway, "upstream": elsewhere}
            refused(
                http.post(url, json=agent_spec("gw", gateways={"API": other})),
                403,
                "secret_not_allowed",
            )
        spec = agent_spec(
            "allowed",
            memory="128m",
            mounts=[f"{fixtures}:/fixtures"],
            secrets=["AXONS_TEST_HOST_SECRET"],
            network="bridge",
            gateways={"API": {**gateway, "upstream": "https://api.example.com/v1/models"}},
        )
        r = http.post(url, json=spec)
        assert r.status_code == 200, r.text
        assert r.json()["detail"]["declared_over"] == "tcp"
        home_id = home_id_of(agent_home)
        assert home_id is not None
        info = wait_until(
            lambda: _created(docker_client, home_id, axon_id, "allowed"), "the container"
        )
        assert f"{fixtures}:/fixtures:ro" in info["HostConfig"]["Binds"]
        assert "AXONS_TEST_HOST_SECRET=the-engine-users-password" in info["Config"]["Env"]
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        assert env["API_BASE_URL"].startswith("http://127.0.0.1:")
        assert len(env["API_API_KEY"]) >= 32 and env["API_API_KEY"] != env["AXONS_TEST_HOST_SECRET"]
        assert info["HostConfig"]["NetworkMode"] == "bridge"
        assert info["HostConfig"]["Memory"] == 128 << 20


def _created(
    client: docker.DockerClient, home_id: str, axon_id: str, name: str
) -> dict[str, Any] | None:
    try:
        return inspect(client, home_id, axon_id, name)
    except docker.errors.NotFound:
        return None


# -- items 3 and 19: no Docker ------------------------------------------------------------


@pytest.fixture
def dockerless(tmp_path: Path) -> Iterator[ServerProcess]:
    """`axons serve` whose Docker engine does not answer."""
    server = ServerProcess(tmp_path / "home", env=DEAD_DOCKER)
    try:
        yield server
    finally:
        server.kill()


def failed_event(http: httpx.Client, axon_id: str, agent: str, after: int = 0) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in all_events(http, axon_id)
                if e["sequence"] > after
                and e["source"] == agent
                and e["event_type"] == "agent.failed"
            ),
            None,
        )

    return wait_until(found, f"agent.failed of {agent}")


def test_a_tcp_spec_never_becomes_a_host_process(dockerless: ServerProcess) -> None:
    """With no Docker, an image agent declared over TCP is failed with a clear event, never
    run on the host, and stays that way across a restart; the engine starts regardless,
    also with an image-only agent of the operator's (which used to stop `serve`)."""
    home = dockerless.home
    admin = make_token(home, "admin", "admin")
    marker = f"axons-sneaky-{os.getpid()}-{id(home)}"
    command = ["python3", "-c", f"import time; time.sleep(600)  # {marker}"]
    dockerless.start()
    with dockerless.http(admin) as http:
        axon_id = admin_axon(http, "nodocker")
        r = http.post(
            f"/v1/axons/{axon_id}/agents",
            json=agent_spec("sneaky", command=command, runtime="auto"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["detail"]["declared_over"] == "tcp"
        failed = failed_event(http, axon_id, "sneaky")
        assert "Docker" in json.loads(failed["payload"])["error"]
    with socket_client(dockerless) as local:
        r = local.post(f"/v1/axons/{axon_id}/agents", json=agent_spec("operators"))
        assert r.status_code == 200, r.text
        assert r.json()["detail"]["declared_over"] == "socket"
    assert processes_running(marker) == []

    dockerless.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    dockerless.kill()
    dockerless.start()  # the ready line: serve started with two Docker agents and no Docker
    with dockerless.http(admin) as http:
        assert http.get("/healthz").json()["ok"] is True
        last = all_events(http, axon_id)[-1]["sequence"]
        for name in ("sneaky", "operators"):
            failed = failed_event(http, axon_id, name, after=last)
            assert "Docker" in json.loads(failed["payload"])["error"]
        agents = {a["name"]: a for a in http.get(f"/v1/axons/{axon_id}/agents").json()["agents"]}
        assert agents["sneaky"]["runtime"] == "docker"
        assert agents["sneaky"]["state"] in ("failed", "starting")  # retried with backoff
    assert processes_running(marker) == []
    assert not (home / "agents").exists() or list((home / "agents").iterdir()) == []


# -- item 20: what a read token sees of agents ---------------------------------------------


def test_read_tokens_see_no_env_values_and_no_logs(dockerless: ServerProcess) -> None:
    home = dockerless.home
    admin = make_token(home, "admin", "admin")
    reader = make_token(home, "reader", "read")
    publisher = make_token(home, "publisher", "publish")
    dockerless.start()
    with dockerless.http(admin) as http:
        axon_id = admin_axon(http, "agents")
        files = {"name": "files", "command": "files-mcp", "args": [], "env": []}
        files["env"] = [{"name": "FILES_TOKEN", "value": "hunter3"}]
        spec = agent_spec(
            "helper", env={"DATABASE_URL": "postgres://u:hunter2@db/x"}, mcp_servers=[files]
        )
        assert http.post(f"/v1/axons/{axon_id}/agents", json=spec).status_code == 200
        [seen] = http.get(f"/v1/axons/{axon_id}/agents").json()["agents"]
        assert seen["spec"]["env"] == {"DATABASE_URL": "postgres://u:hunter2@db/x"}
        assert seen["spec"]["mcp_servers"] == [files]
    for token in (reader, publisher):
        with dockerless.http(token) as http:
            r = http.get(f"/v1/axons/{axon_id}/agents")
            assert r.status_code == 200, r.text
            [seen] = r.json()["agents"]
            assert seen["spec"]["env"] == {"DATABASE_URL": "<redacted>"}
            [server] = seen["spec"]["mcp_servers"]
            assert server["env"] == [{"name": "FILES_TOKEN", "value": "<redacted>"}]
            assert "hunter2" not in r.text and "hunter3" not in r.text
            refused(http.get(f"/v1/axons/{axon_id}/agents/helper/logs"), 403, "forbidden")


def test_every_agent_at_once_shows_only_the_axons_a_token_reaches(
    dockerless: ServerProcess,
) -> None:
    """`GET /v1/agents` (the monitor's one call) keeps to a token's Axons and scope."""
    home = dockerless.home
    admin = make_token(home, "admin", "admin")
    dockerless.start()
    with dockerless.http(admin) as http:
        mine, theirs = admin_axon(http, "mine"), admin_axon(http, "theirs")
        for axon_id in (mine, theirs):
            spec = agent_spec("helper", env={"DATABASE_URL": "postgres://u:hunter2@db/x"})
            assert http.post(f"/v1/axons/{axon_id}/agents", json=spec).status_code == 200
        every = http.get("/v1/agents").json()["agents"]
        assert sorted(a["axon_id"] for a in every) == sorted([mine, theirs])
        assert "hunter2" in json.dumps(every)  # an admin of every Axon sees the values
    limited = make_token(home, "limited", "read", [mine])
    with dockerless.http(limited) as http:
        r = http.get("/v1/agents")
        assert r.status_code == 200, r.text
        assert [a["axon_id"] for a in r.json()["agents"]] == [mine]
        assert "hunter2" not in r.text and theirs not in r.text


def test_a_broken_config_stops_the_engine_with_a_clear_line(tmp_path: Path) -> None:
    """A policy silently ignored would open what the operator meant to close."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[agents]\nbridge_network = "yes please"\nimages = "*"\n')
    done = axons("serve", home=home, timeout=60)
    assert done.returncode == 1, done
    assert "config.toml" in done.stderr and "images" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
