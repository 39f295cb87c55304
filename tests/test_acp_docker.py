"""ACP agents in Docker (contract §5.2) on a real Docker engine, with the deterministic sample
agent's image (`axons/acp_agent`, built offline with the SDK copied from this venv):
- over HTTP with `axons serve`: a message streams as updates; a permission request pauses
  the container (`docker inspect` State.Paused) until a second client's decision, published
  over HTTP, wakes it; the CLI's `axons permit` rejects; decisions nobody waits for are 409;
- in-process: a crash mid-turn fails the turn and restarts the container, and hibernation
  (the container stopped) resumes the same session with session/load from the agent's HOME
  volume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from engine import Engine
from engine.errors import Conflict

pytest.register_assert_rewrite("tests.agents_support", "tests.acp_support")
pytest_plugins = ["tests.agents_support"]  # docker_client, agent_home, docker_engine

from tests.acp_support import (  # noqa: E402
    ACP_IMAGE,
    acp_spec,
    said,
    turn_end,
    updates,
)
from tests.agents_support import (  # noqa: E402
    body,
    container_state,
    describe,
    home_id_of,
    inspect,
    publish,
    watching,
)
from tests.http_support import (  # noqa: E402
    all_events,
    axons,
    make_token,
    message_body,
    running_server,
    wait_until,
)


@pytest.fixture(scope="module", autouse=True)
def acp_image(docker_client: docker.DockerClient) -> str:
    """Built before any test's clock starts (offline: FROM the debootstrap base)."""
    from engine.images import ensure_image

    return ensure_image(ACP_IMAGE)


def payload(e: dict[str, Any]) -> Any:
    return json.loads(e["payload"])


def event_after(
    http: httpx.Client, axon_id: str, after: int, event_type: str, **where: Any
) -> dict[str, Any]:
    """Wait for the first event of this type after `after` whose payload has `where`."""

    def found() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in all_events(http, axon_id)
                if e["sequence"] > after
                and e["event_type"] == event_type
                and all(payload(e).get(k) == v for k, v in where.items())
            ),
            None,
        )

    return wait_until(found, f"{event_type} {where} after #{after}")


def turn_done(http: httpx.Client, axon_id: str, sequence: int) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in all_events(http, axon_id)
                if e["event_type"] in ("turn.completed", "turn.failed")
                and sequence in payload(e)["sequences"]
            ),
            None,
        )

    return wait_until(found, f"the end of the turn on #{sequence}")


def chunks(events: list[dict[str, Any]], after: int, before: int) -> str:
    return "".join(
        payload(e)["update"]["content"]["text"]
        for e in events
        if after < e["sequence"] < before
        and e["event_type"] == "session/update"
        and payload(e)["update"]["sessionUpdate"] == "agent_message_chunk"
    )


def send(http: httpx.Client, axon_id: str, text: str, source: str = "web") -> int:
    r = http.post(f"/v1/axons/{axon_id}/publish", json=message_body(text, source))
    assert r.status_code == 200, r.text
    return int(r.json()["sequence"])


def test_permission_over_http_with_the_container_paused(
    agent_home: Path, docker_client: docker.DockerClient
) -> None:
    admin = make_token(agent_home, "admin-test", "admin")
    with running_server(agent_home) as server, server.http(admin) as http:
        axon_id = http.post("/v1/axons", json={"name": "support"}).json()["id"]
        # a second client: another person, with a token that may only publish to this Axon
        reviewer = make_token(agent_home, "reviewer", "publish", [axon_id])
        spec = {
            "name": "acp",
            "image": ACP_IMAGE,
            "protocol": "acp",
            "idle_pause_s": 600,
            "idle_hibernate_s": 600,
        }
        r = http.post(f"/v1/axons/{axon_id}/agents", json=spec)
        assert r.status_code == 200, r.text
        running = event_after(http, axon_id, 0, "agent.running")
        home_id = home_id_of(agent_home)
        assert home_id is not None
        info = inspect(docker_client, home_id, axon_id, "acp")
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/home/agent"]["Type"] == "volume"  # its HOME outlives the container
        assert "HOME=/home/agent" in info["Config"]["Env"]

        # a message: the answer streams in chunks, turn.completed after the last update
        hello = send(http, axon_id, "hello from the web")
        done = turn_done(http, axon_id, hello)
        assert done["event_type"] == "turn.completed", done
        events = all_events(http, axon_id)
        assert chunks(events, hello, done["sequence"]) == "You said: [web] hello from the web"
        assert not [
            e
            for e in events
            if e["sequence"] > done["sequence"] and e["event_type"] == "session/update"
        ]
        assert payload(done)["stop_reason"] == "end_turn"

        # a risky step: the request is an event, the container is really paused
        risky = send(http, axon_id, "now do RISKY")
        request = event_after(http, axon_id, risky, "permission.requested")
        event_after(http, axon_id, request["sequence"], "agent.paused")
        assert inspect(docker_client, home_id, axon_id, "acp")["State"]["Paused"] is True

        with server.http(reviewer) as second:
            decision = {
                "event_type": "permission.decision",
                "origin": "USER_EVENT",
                "source": "slack",
                "payload": json.dumps(
                    {"request_sequence": request["sequence"], "option_id": "allow"}
                ),
            }
            r = second.post(f"/v1/axons/{axon_id}/publish", json=decision)
            assert r.status_code == 200, r.text
            decided = r.json()["sequence"]
            resumed = event_after(http, axon_id, decided, "agent.resumed", trigger_sequence=decided)
            done = turn_done(http, axon_id, risky)
            assert done["event_type"] == "turn.completed", done
            assert inspect(docker_client, home_id, axon_id, "acp")["State"]["Paused"] is False
            events = all_events(http, axon_id)
            first_after = next(
                e for e in events if e["sequence"] > resumed["sequence"] and e["source"] == "acp"
            )
            assert payload(first_after)["update"]["status"] == "completed"  # the write ran

            # answered already, or never asked: 409 with a message, through the small route
            r = second.post(
                f"/v1/axons/{axon_id}/permissions/{request['sequence']}",
                json={"option_id": "allow"},
            )
            assert r.status_code == 409, r.text
            assert "already answered" in r.json()["error"]["message"]
            r = second.post(f"/v1/axons/{axon_id}/permissions/{hello}", json={"cancelled": True})
            assert r.status_code == 409 and "not a permission request" in r.text
            r = second.post(f"/v1/axons/{axon_id}/permissions/{hello}", json={})
            assert r.status_code in (400, 422), r.text

        # the file the agent wrote is in its work volume: the next turn's tool lists it
        listing = send(http, axon_id, "TOOL")
        done = turn_done(http, axon_id, listing)
        tool = [
            payload(e)["update"]
            for e in all_events(http, axon_id)
            if listing < e["sequence"] < done["sequence"] and e["event_type"] == "session/update"
        ]
        assert "approved.txt" in next(
            u["rawOutput"] for u in tool if u.get("rawOutput") is not None
        )

        # the CLI answers too: a rejection
        again = send(http, axon_id, "RISKY once more")
        request = event_after(http, axon_id, again, "permission.requested")
        event_after(http, axon_id, request["sequence"], "agent.paused")
        bad = axons("permit", "support", str(request["sequence"]), "maybe", home=agent_home)
        assert bad.returncode == 1 and "allow, reject" in bad.stderr, bad
        ok = axons("permit", "support", str(request["sequence"]), "reject", home=agent_home)
        assert ok.returncode == 0, ok.stderr
        done = turn_done(http, axon_id, again)
        assert done["event_type"] == "turn.completed"
        assert chunks(all_events(http, axon_id), request["sequence"], done["sequence"]).startswith(
            "Not done: permission refused."
        )
        late = axons("permit", "support", str(request["sequence"]), "allow", home=agent_home)
        assert late.returncode == 1 and "already answered" in late.stderr, late
        assert running["sequence"] < hello


async def test_crash_restart_and_hibernation_keep_the_session(
    docker_engine: Engine, docker_client: docker.DockerClient
) -> None:
    engine = docker_engine
    axon_id = (await engine.create_axon("acp")).id
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(acp_spec("acp", "docker", idle_pause_s=0.5, idle_hibernate_s=0.5))
        running = await watch.system("agent.running", "acp")
        session = body(watch.of("acp", "acp.session")[-1])["session_id"]

        crash = await publish(engine, axon_id, "CRASH now", "web")
        failed = await turn_end(watch, "acp", crash)
        assert failed.event_type == "turn.failed" and body(failed)["reason"] == "exit"
        agent_failed = await watch.system("agent.failed", "acp", after=crash)
        assert body(agent_failed)["exit_code"] == 3
        restarted = await watch.system("agent.running", "acp", after=agent_failed.sequence)
        loaded = body(watch.of("acp", "acp.session", after=agent_failed.sequence)[0])
        assert loaded["how"] == "loaded" and loaded["session_id"] == session, describe(watch.events)
        again = await watch.turn_completed("acp", crash, after=restarted.sequence)
        assert said(updates(watch, "acp", restarted.sequence, again.sequence)) == (
            "You said: [web] CRASH now"
        )

        slept = await watch.system("agent.hibernated", "acp", after=again.sequence)
        assert container_state(docker_client, engine, axon_id, "acp")["Running"] is False
        wake = await publish(engine, axon_id, "still me?", "slack")
        done = await watch.turn_completed("acp", wake)
        resumed = body(watch.of("acp", "acp.session", after=slept.sequence)[0])
        assert resumed["how"] == "loaded" and resumed["session_id"] == session
        # the re-delivered exchange (the crashed one was never saved), replayed, not recorded
        assert resumed["replayed"] == 2
        assert said(updates(watch, "acp", wake, done.sequence)) == "You said: [slack] still me?"
        assert running.sequence < crash


async def test_an_engine_restart_starts_the_agent_afresh_in_its_session(
    agent_home: Path, docker_client: docker.DockerClient
) -> None:
    """The previous engine's ACP connection (and any request pending on it) is gone, so the
    container is restarted rather than re-attached; session/load continues the session."""
    async with Engine(agent_home, agent_runtime="docker") as engine:
        axon_id = (await engine.create_axon("acp")).id
        async with watching(engine, axon_id) as watch:
            await engine.agents.add(acp_spec("acp", "docker"))
            await watch.system("agent.running", "acp")
            session = body(watch.of("acp", "acp.session")[-1])["session_id"]
            first = await publish(engine, axon_id, "RISKY", "web")
            request = await watch.wait(
                lambda e: e.event_type == "permission.requested", "a request", after=first
            )
            await watch.system("agent.paused", "acp", after=request.sequence)
    assert container_state(docker_client, engine, axon_id, "acp")["Paused"] is True
    async with (
        Engine(agent_home, agent_runtime="docker") as engine,
        watching(engine, axon_id) as watch,
    ):
        # the message the old connection never finished comes again, in the same session,
        # and its request is asked again (the old one died with the old connection)
        asked = await watch.wait(
            lambda e: e.event_type == "permission.requested",
            "the request, asked again",
            after=request.sequence,
        )
        sessions = [body(e) for e in watch.of("acp", "acp.session", after=request.sequence)]
        assert sessions == [{"session_id": session, "how": "loaded", "replayed": 0}]
        with pytest.raises(Conflict):
            await engine.agents.permit(axon_id, request.sequence, "allow")
        await watch.system("agent.paused", "acp", after=asked.sequence)
        await engine.agents.permit(axon_id, asked.sequence, "allow")
        await watch.turn_completed("acp", first, after=asked.sequence)
