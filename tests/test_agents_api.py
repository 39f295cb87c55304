"""Agents through the public surfaces (contract §4.2 agent lifecycle, §6 `axons agent`): a
real `axons serve` subprocess on a temporary home, the HTTP API over TCP with a token, and
the CLI as a user runs it (it finds the running engine by its socket). Containers are
checked with `docker inspect`; the home's containers are removed afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

# The shared scenario's assertions get pytest's messages too; its fixtures are a plugin.
pytest.register_assert_rewrite("tests.agents_support")
pytest_plugins = ["tests.agents_support"]  # docker_client, agent_home, docker_engine

from tests.agents_support import (  # noqa: E402
    TRIAGE_IMAGE,
    home_id_of,
    inspect,
)
from tests.http_support import (  # noqa: E402
    axons,
    axons_json,
    make_token,
    running_server,
    wait_until,
)


def events_of(http: httpx.Client, axon_id: str) -> list[dict[str, Any]]:
    """Every event of the Axon, oldest first (the API lists newest first)."""
    r = http.get(f"/v1/axons/{axon_id}/events", params={"limit": 5000})
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["events"]))


def system_event(
    http: httpx.Client, axon_id: str, agent: str, event_type: str, after: int = 0
) -> dict[str, Any]:
    """Wait (with a deadline) for a system event of `agent` after sequence `after`."""

    def found() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in events_of(http, axon_id)
                if e["sequence"] > after
                and e["origin"] == "SYSTEM_EVENT"
                and e["source"] == agent
                and e["event_type"] == event_type
            ),
            None,
        )

    return wait_until(found, f"{event_type} of {agent} after #{after}")


def test_agents_over_http_and_the_cli(
    agent_home: Path, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    token = make_token(agent_home, "admin-test", "admin")
    with running_server(agent_home) as server, server.http(token) as http:
        home_id = home_id_of(agent_home)
        assert home_id is not None
        r = http.post("/v1/axons", json={"name": "support"})
        assert r.status_code == 200, r.text
        axon_id = r.json()["id"]

        # POST /v1/axons/{id}/agents with a JSON spec (the Axon comes from the path).
        spec = {
            "name": "triage",
            "image": TRIAGE_IMAGE,
            "idle_pause_s": 600,
            "idle_hibernate_s": 600,
        }
        r = http.post(f"/v1/axons/{axon_id}/agents", json=spec)
        assert r.status_code == 200, r.text
        view = r.json()
        assert (view["axon_id"], view["name"], view["runtime"]) == (axon_id, "triage", "docker")
        assert view["spec"]["axon"] == axon_id and view["spec"]["image"] == TRIAGE_IMAGE
        running = system_event(http, axon_id, "triage", "agent.running")
        assert inspect(docker_client, home_id, axon_id, "triage")["State"]["Running"] is True

        bad = http.post(f"/v1/axons/{axon_id}/agents", json={"name": "nothing-to-run"})
        assert bad.status_code in (400, 422), bad.text
        assert "error" in bad.json()

        r = http.get(f"/v1/axons/{axon_id}/agents")
        assert r.status_code == 200, r.text
        listed = r.json()["agents"]
        assert [(a["name"], a["state"]) for a in listed] == [("triage", "running")]

        r = http.post(f"/v1/axons/{axon_id}/agents/triage/pause")
        assert r.status_code == 200, r.text
        paused = system_event(http, axon_id, "triage", "agent.paused", after=running["sequence"])
        assert json.loads(paused["payload"])["reason"] == "requested"
        assert inspect(docker_client, home_id, axon_id, "triage")["State"]["Paused"] is True
        r = http.get(f"/v1/axons/{axon_id}/agents")
        assert [(a["name"], a["state"]) for a in r.json()["agents"]] == [("triage", "paused")]

        missing = http.post(f"/v1/axons/{axon_id}/agents/ghost/pause")
        assert missing.status_code == 404, missing.text

        # The CLI, on the same home: it talks to the running engine (which holds the lock).
        toml = tmp_path / "agents.toml"
        toml.write_text(
            "[[agents]]\n"
            'name = "helper"\n'
            'axon = "support"\n'
            f'image = "{TRIAGE_IMAGE}"\n'
            "idle_pause_s = 600\n"
            "idle_hibernate_s = 600\n"
        )
        added = axons_json("agent", "add", str(toml), home=agent_home)
        assert [(a["name"], a["axon_id"]) for a in added] == [("helper", axon_id)]
        helper_running = system_event(http, axon_id, "helper", "agent.running")
        assert inspect(docker_client, home_id, axon_id, "helper")["State"]["Running"] is True

        listed = axons_json("agent", "ls", "support", home=agent_home)
        assert sorted((a["name"], a["state"]) for a in listed) == [
            ("helper", "running"),
            ("triage", "paused"),
        ]

        stopped = axons_json("agent", "stop", "support", "helper", home=agent_home)
        assert stopped["name"] == "helper"
        system_event(http, axon_id, "helper", "agent.stopped", after=helper_running["sequence"])
        assert inspect(docker_client, home_id, axon_id, "helper")["State"]["Running"] is False
        listed = axons_json("agent", "ls", "support", home=agent_home)
        assert sorted((a["name"], a["state"]) for a in listed) == [
            ("helper", "stopped"),
            ("triage", "paused"),
        ]

        unknown = axons("agent", "stop", "support", "ghost", home=agent_home)
        assert unknown.returncode == 1 and unknown.stderr.strip(), unknown
