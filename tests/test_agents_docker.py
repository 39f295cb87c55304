"""Agents in real Docker containers (contract §3 system events, §5; architecture decisions 4-5):
the seed scenario, hibernation, a killed container, a SIGKILLed engine, the hardened
sandbox and secrets, and manual commands. Every claim about a container is checked with
`docker inspect` through the Docker SDK, right after the event that says it happened.

No Docker engine is a failure here, not a skip (see `agents_support.docker_client`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import docker
import docker.errors
import pytest

from engine import Engine

# The shared scenario's assertions get pytest's messages too; its fixtures are a plugin.
pytest.register_assert_rewrite("tests.agents_support")
pytest_plugins = ["tests.agents_support"]  # docker_client, agent_home, docker_engine

from tests.agents_support import (  # noqa: E402
    CONSTRAINT,
    REPORT,
    ROOT,
    body,
    container_state,
    describe,
    home_id_of,
    inspect,
    publish,
    rows,
    run_seed_scenario,
    slug,
    triage_spec,
    wait_view,
    watching,
)
from tests.http_support import read_line  # noqa: E402

READY_S = 120.0


# -- 1. the seed scenario ---------------------------------------------------------------


async def test_seed_scenario_in_a_container(
    docker_engine: Engine, docker_client: docker.DockerClient
) -> None:
    async def paused(engine: Engine, axon_id: str, name: str) -> bool:
        state = container_state(docker_client, engine, axon_id, name)
        return bool(state["Paused"]) and bool(state["Running"])

    await run_seed_scenario(docker_engine, "docker", paused)


# -- 2. hibernate, then wake ------------------------------------------------------------


async def test_hibernate_then_wake_redelivers_after_the_cursor_exactly_once(
    docker_engine: Engine, docker_client: docker.DockerClient
) -> None:
    engine = docker_engine
    axon_id = (await engine.create_axon("support")).id
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(triage_spec("support", "docker", idle_hibernate_s=0.5))
        running = await watch.system("agent.running", "triage")
        first = await publish(engine, axon_id, REPORT, "web")
        done = await watch.turn_completed("triage", first, after=first)
        container_id = inspect(docker_client, engine.agents.home_id, axon_id, "triage")["Id"]

        hibernated = await watch.system("agent.hibernated", "triage", after=done.sequence)
        state = container_state(docker_client, engine, axon_id, "triage")
        assert state["Running"] is False and state["Paused"] is False, state
        assert (await engine.agents.get(axon_id, "triage")).state == "hibernated"
        assert await engine.agent_cursor(axon_id, "triage") == first

        # Two messages while it sleeps: the human's answer, then a second customer.
        reply = await publish(engine, axon_id, CONSTRAINT, "slack")
        second = await publish(engine, axon_id, "Another customer: login is down", "web")
        await watch.turn_completed("triage", reply, after=hibernated.sequence)
        last = await watch.turn_completed("triage", second, after=hibernated.sequence)
        settled = await watch.system("agent.paused", "triage", after=last.sequence)

        woke = [body(e) for e in watch.of("triage", "agent.resumed", after=hibernated.sequence)]
        assert woke[0]["from"] == "hibernated", describe(watch.events)
        assert woke[0]["trigger_sequence"] == reply
        # The same container, started again (memory was freed, the container kept).
        again = inspect(docker_client, engine.agents.home_id, axon_id, "triage")
        assert again["Id"] == container_id
        assert container_state(docker_client, engine, axon_id, "triage")["Paused"] is True

        # Every waking event reached the agent in exactly one turn: none lost, none repeated.
        delivered = [
            e.sequence for e in watch.events if e.origin in ("USER_EVENT", "EXTERNAL_EVENT")
        ]
        assert delivered == [first, reply, second]
        assert Counter(watch.turn_sequences("triage")) == Counter(delivered), describe(watch.events)
        assert not watch.of("triage", "turn.failed") and not watch.of("triage", "agent.failed")
        assert await engine.agent_cursor(axon_id, "triage") == second

        # Its state survived: the ticket made before hibernating got the constraint once,
        # and the second report counted it as another open ticket.
        tickets = "SELECT id, status, summary FROM tickets ORDER BY rowid"
        assert await rows(engine, axon_id, tickets) == [
            [f"TCK-{first}", "investigating", f"{REPORT} — constraint: {CONSTRAINT}"],
            [f"TCK-{second}", "awaiting_human", "Another customer: login is down"],
        ]
        notes = (
            "SELECT ticket_id, note_type, count(*) FROM workflow_notes "
            "GROUP BY 1, 2 ORDER BY min(id), 2"
        )
        assert await rows(engine, axon_id, notes) == [
            [f"TCK-{first}", "agent_check", 1],
            [f"TCK-{first}", "human_reply", 1],
            [f"TCK-{second}", "agent_check", 1],
        ]
        checked = [
            body(e)["text"]
            for e in watch.of("triage", "message", "AGENT_EVENT", after=second)
            if body(e)["ticket"] == f"TCK-{second}"
        ]
        assert "1 other open ticket(s)" in checked[0], checked
        assert running.sequence < settled.sequence


# -- 3. a killed container --------------------------------------------------------------


async def test_killed_container_fails_restarts_and_loses_nothing(
    docker_engine: Engine, docker_client: docker.DockerClient
) -> None:
    engine = docker_engine
    axon_id = (await engine.create_axon("support")).id
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(triage_spec("support", "docker"))
        await watch.system("agent.running", "triage")
        # A reply with no ticket waiting: the agent logs a line on stderr and stays running.
        stray = await publish(engine, axon_id, "anyone there?", "slack")
        await watch.turn_completed("triage", stray, after=stray)
        logged = f"triage: a reply at {stray} but no ticket awaits a human; ignored"
        await watch.system("agent.log", "triage", where=lambda b: logged in b["lines"])
        assert container_state(docker_client, engine, axon_id, "triage")["Running"] is True

        before_kill = watch.events[-1].sequence
        docker_client.api.kill(slug(engine.agents.home_id, axon_id, "triage"))
        report = await publish(engine, axon_id, REPORT, "web")  # right after the kill

        failed = await watch.system("agent.failed", "triage", after=before_kill)
        why = body(failed)
        assert why["exit_code"] == 137, why  # SIGKILL
        assert logged in why["stderr"], why
        assert why["restart_in_s"] > 0
        starting = await watch.system("agent.starting", "triage", after=failed.sequence)
        assert body(starting)["reason"] == "restart after failure"
        restarted = await watch.system("agent.running", "triage", after=starting.sequence)
        done = await watch.turn_completed("triage", report, after=restarted.sequence)
        assert done.sequence > restarted.sequence

        # Nothing lost: the report published while the agent was dead was handled, its
        # effects once (they commit with the cursor); the earlier message was not repeated.
        assert await rows(engine, axon_id, "SELECT id, status FROM tickets") == [
            [f"TCK-{report}", "awaiting_human"]
        ]
        assert await rows(engine, axon_id, "SELECT count(*) FROM workflow_notes") == [[1]]
        assert watch.turn_sequences("triage").count(stray) == 1
        assert await engine.agent_cursor(axon_id, "triage") == report
        assert container_state(docker_client, engine, axon_id, "triage")["Running"] is True

        # Killed again, this time while paused: noticed at once (not at the next event), and
        # as it worked in between, it restarts at the first backoff, not a longer one.
        settled = await watch.system("agent.paused", "triage", after=done.sequence)
        docker_client.api.kill(slug(engine.agents.home_id, axon_id, "triage"))
        again = await watch.system("agent.failed", "triage", after=settled.sequence)
        assert body(again)["restart_in_s"] == why["restart_in_s"], body(again)
        await watch.system("agent.running", "triage", after=again.sequence)


# -- 4. a SIGKILLed engine, reconciled by the next one -----------------------------------


async def test_engine_sigkill_reconciles_paused_agent_and_removes_orphans(
    agent_home: Path, docker_client: docker.DockerClient
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    stderr_path = agent_home.parent / "child.stderr"
    with stderr_path.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.agents_engine_child", str(agent_home)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        try:
            line = read_line(child, READY_S, "the child engine")
        except AssertionError as e:
            told = stderr_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{e}\n{told}") from None
        assert line.startswith(b"READY "), line
        ready = json.loads(line[len(b"READY ") :])
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
        if child.stdout is not None:
            child.stdout.close()

    axon_id, home_id, report = ready["axon_id"], ready["home_id"], ready["report"]
    assert home_id_of(agent_home) == home_id
    left = inspect(docker_client, home_id, axon_id, "triage")
    assert left["State"]["Paused"] is True, "the engine died; the agent must stay paused"

    # A container of this home that no agent spec accounts for: removed at start.
    orphan = f"axons-{home_id[:8]}-axn_orphan-ghost"
    docker_client.api.create_container(
        "axons/base:bookworm",
        ["sleep", "3600"],
        name=orphan,
        labels={"axons.home": home_id, "axons.axon": "axn_orphan", "axons.agent": "ghost"},
    )

    async with Engine(agent_home, agent_runtime="docker") as engine:
        with pytest.raises(docker.errors.NotFound):
            docker_client.api.inspect_container(orphan)
        # The worker begins as "stopped" until its driver has looked at the container.
        view = await wait_view(
            engine, axon_id, "triage", lambda v: v.state != "stopped", "the agent to be reconciled"
        )
        assert view.state == "paused", view
        now = inspect(docker_client, home_id, axon_id, "triage")
        assert now["Id"] == left["Id"] and now["State"]["Paused"] is True

        async with watching(engine, axon_id) as watch:
            reply = await publish(engine, axon_id, CONSTRAINT, "slack")
            done = await watch.turn_completed("triage", reply, after=reply)
            resumed = await watch.system("agent.resumed", "triage", after=reply)
            assert body(resumed)["trigger_sequence"] == reply
            assert body(resumed)["from"] == "paused"
            answer = await watch.wait(
                lambda e: e.origin == "AGENT_EVENT" and e.source == "triage",
                "the agent's reply",
                after=reply,
            )
            assert resumed.sequence < answer.sequence < done.sequence
            assert body(answer)["ticket"] == f"TCK-{report}"
            assert await rows(engine, axon_id, "SELECT status, summary FROM tickets") == [
                ["investigating", f"{REPORT} — constraint: {CONSTRAINT}"]
            ]
            # The report handled by the first engine is not handled again.
            assert watch.turn_sequences("triage") == [report, reply]
            assert watch.turn_sequences("triage", after=reply) == [reply]
            assert inspect(docker_client, home_id, axon_id, "triage")["Id"] == left["Id"]
            # Reconciled, not restarted: the new engine never started the agent again.
            assert not watch.of("triage", "agent.starting", after=ready["paused"])
            assert not watch.of("triage", "agent.running", after=ready["paused"])


# -- 6. the hardened sandbox and secrets --------------------------------------------------


async def test_container_is_hardened_and_secrets_stay_out_of_the_log(
    docker_engine: Engine, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = docker_engine
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AXONS_TEST_SECRET", secret)
    axon_id = (await engine.create_axon("support")).id
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(
            triage_spec(
                "support",
                "docker",
                memory="256m",
                cpus=0.5,
                pids=64,
                secrets=["AXONS_TEST_SECRET"],
                env={"LOG_LEVEL": "info"},
            )
        )
        await watch.system("agent.running", "triage")

        info = inspect(docker_client, engine.agents.home_id, axon_id, "triage")
        host, config = info["HostConfig"], info["Config"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"] or []), host
        assert config["User"] == "65534:65534"
        assert host["Memory"] == 256 * 1024 * 1024
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] == 64
        assert config["OpenStdin"] is True and config["StdinOnce"] is False

        # The secret reaches the agent process's own environment (read inside the box).
        probe = (
            "import pathlib\n"
            "for p in pathlib.Path('/proc').glob('[0-9]*'):\n"
            "    try:\n"
            "        if b'agent.py' in (p / 'cmdline').read_bytes():\n"
            "            print((p / 'environ').read_bytes().decode())\n"
            "    except OSError:\n"
            "        pass\n"
        )
        result = docker_client.containers.get(info["Id"]).exec_run(["python3", "-c", probe])
        assert result.exit_code == 0, result.output
        agent_env = result.output.decode(errors="replace").split("\0")
        assert f"AXONS_TEST_SECRET={secret}" in agent_env, "the secret did not reach the agent"
        assert "LOG_LEVEL=info" in agent_env

        # Exercise the agent: a stderr line (agent.log), a turn with publishes, a pause.
        stray = await publish(engine, axon_id, "anyone there?", "slack")
        await watch.turn_completed("triage", stray, after=stray)
        await watch.system("agent.log", "triage")
        report = await publish(engine, axon_id, REPORT, "web")
        done = await watch.turn_completed("triage", report, after=report)
        await watch.system("agent.paused", "triage", after=done.sequence)

        for e in await engine.read_events(axon_id, 0, 5000):
            assert secret not in str(e.to_dict()), f"the secret leaked into #{e.sequence}"
        assert watch.events, "no events"
        logs = await engine.agents.logs(axon_id, "triage")
        assert any("no ticket awaits a human" in line for line in logs), logs
        assert not any(secret in line for line in logs)
        views = [await engine.agents.get(axon_id, "triage"), *await engine.agents.list(axon_id)]
        for view in views:
            dumped = view.model_dump_json()
            assert "AXONS_TEST_SECRET" in dumped  # the name is declared ...
            assert secret not in dumped  # ... the value never shown


# -- 7. manual commands -------------------------------------------------------------------


async def test_manual_pause_resume_stop_start(
    docker_engine: Engine, docker_client: docker.DockerClient
) -> None:
    engine = docker_engine
    axon_id = (await engine.create_axon("support")).id

    def state() -> dict[str, bool]:
        s = container_state(docker_client, engine, axon_id, "triage")
        return {"running": s["Running"], "paused": s["Paused"]}

    async with watching(engine, axon_id) as watch:
        await engine.agents.add(triage_spec("support", "docker"))
        mark = (await watch.system("agent.running", "triage")).sequence

        await engine.agents.command(axon_id, "triage", "pause")
        e = await watch.system("agent.paused", "triage", after=mark)
        assert body(e)["reason"] == "requested"
        assert state() == {"running": True, "paused": True}

        await engine.agents.command(axon_id, "triage", "resume")
        e = await watch.system("agent.resumed", "triage", after=e.sequence)
        assert body(e)["from"] == "paused" and body(e)["trigger_sequence"] is None
        assert state() == {"running": True, "paused": False}
        assert (await engine.agents.get(axon_id, "triage")).state == "running"

        await engine.agents.command(axon_id, "triage", "stop")
        stopped = await watch.system("agent.stopped", "triage", after=e.sequence)
        assert state() == {"running": False, "paused": False}
        assert (await engine.agents.get(axon_id, "triage")).state == "stopped"

        # A stopped agent is not woken by new events ...
        report = await publish(engine, axon_id, REPORT, "web")
        await watch.quiet("triage", after=stopped.sequence, seconds=2.0)
        assert state() == {"running": False, "paused": False}
        assert (await engine.agents.get(axon_id, "triage")).state == "stopped"
        assert await engine.agent_cursor(axon_id, "triage") == 0

        # ... until it is started; then it handles what came meanwhile.
        await engine.agents.command(axon_id, "triage", "start")
        starting = await watch.system("agent.starting", "triage", after=report)
        assert body(starting)["reason"] == "start"
        running = await watch.system("agent.running", "triage", after=starting.sequence)
        done = await watch.turn_completed("triage", report, after=running.sequence)
        assert await rows(engine, axon_id, "SELECT id FROM tickets") == [[f"TCK-{report}"]]

        # The agent idled itself; stop works on a paused container too.
        paused = await watch.system("agent.paused", "triage", after=done.sequence)
        assert state() == {"running": True, "paused": True}
        await engine.agents.command(axon_id, "triage", "stop")
        await watch.system("agent.stopped", "triage", after=paused.sequence)
        assert state() == {"running": False, "paused": False}
        assert watch.turn_sequences("triage") == [report]


# -- mounts -------------------------------------------------------------------------------


async def test_mounts_preload_files_read_only_and_work_survives_hibernation(
    docker_engine: Engine, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """A host folder is mounted read-only (the agent can read, not write it); the agent's
    /work volume keeps what it wrote across a hibernation (container stopped, started)."""
    engine = docker_engine
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    (fixtures / "runbook.txt").write_text("restart the export worker")
    fixtures.chmod(0o755)
    (fixtures / "runbook.txt").chmod(0o644)
    axon_id = (await engine.create_axon("support")).id
    async with watching(engine, axon_id) as watch:
        await engine.agents.add(
            triage_spec("support", "docker", mounts=[f"{fixtures}:/data"], idle_hibernate_s=0.5)
        )
        await watch.system("agent.running", "triage")
        info = inspect(docker_client, engine.agents.home_id, axon_id, "triage")
        binds = info["HostConfig"]["Binds"]
        assert f"{fixtures}:/data:ro" in binds, binds
        assert any(b.endswith(":/work:rw") for b in binds), binds
        box = docker_client.containers.get(info["Id"])
        read = box.exec_run(["cat", "/data/runbook.txt"])
        assert read.exit_code == 0 and read.output == b"restart the export worker"
        refused = box.exec_run(["sh", "-c", "echo x > /data/new.txt"])
        assert refused.exit_code != 0, "a read-only mount was writable"
        kept = box.exec_run(["sh", "-c", "echo notes > /work/notes.txt"])
        assert kept.exit_code == 0, kept.output

        report = await publish(engine, axon_id, REPORT, "web")
        done = await watch.turn_completed("triage", report, after=report)
        hibernated = await watch.system("agent.hibernated", "triage", after=done.sequence)
        again = await publish(engine, axon_id, "anyone there?", "slack")
        await watch.system(
            "agent.resumed",
            "triage",
            after=hibernated.sequence,
            where=lambda b: b["from"] == "hibernated",
        )
        await watch.turn_completed("triage", again, after=again)
        # (the agent is paused again by now: read its volume from a throwaway container)
        volume = next(m["Name"] for m in info["Mounts"] if m["Destination"] == "/work")
        out = docker_client.containers.run(
            "axons/base:bookworm",
            ["cat", "/work/notes.txt"],
            remove=True,
            volumes={volume: {"bind": "/work", "mode": "ro"}},
            network_mode="none",
        )
        assert out == b"notes\n"
