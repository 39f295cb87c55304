"""The console demo's home (axons_tui/demo_home.py, demo_feeds.py) and the sample agents it
runs: three Axons whose agents really pause and wake, in Docker and as local processes; a
human's reply wakes the waiting ones; nothing of the home is left afterwards. And each
sample agent's TOML, added with the CLI to an Axon of a running engine, starts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import docker
import pytest

from axons_tui.demo_feeds import (
    ASSISTANT_ASKS,
    GitHubWebhooks,
    feed_assistant,
    feed_ci,
    feed_deploy,
    feed_support,
)
from axons_tui.demo_home import (
    DEMO_AXONS,
    DemoAxon,
    RuntimeKind,
    add_demo_agents,
    create_demo_axons,
    prepare_runtime,
    remove_demo_home,
)
from engine import Engine, Event

pytest_plugins = ["tests.agents_support"]  # docker_client, agent_home

from tests.agents_support import Watch, body, home_id_of, publish, rows, watching  # noqa: E402
from tests.http_support import axons, axons_json, running_server, wait_until  # noqa: E402


async def said(watch: Watch, agent: str, words: str, after: int = 0) -> Event:
    """The agent's first message (after `after`) containing `words`."""
    return await watch.wait(
        lambda e: e.source == agent and e.event_type == "message" and words in e.payload,
        f"{agent} saying {words!r}",
        after=after,
    )


@contextlib.asynccontextmanager
async def feeding(*feeds: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """The feeds run as tasks while the block runs."""
    tasks = [asyncio.create_task(f) for f in feeds]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def asks_then_wakes(
    engine: Engine, watch: Watch, agent: str, question: str, answer: str, outcome: str
) -> None:
    """The agent asks `question` and sleeps; `answer`, typed in the console, wakes it (the
    answer is what woke it) and it says `outcome`."""
    asked = await said(watch, agent, question)
    await watch.system("agent.paused", agent, after=asked.sequence)
    reply = await publish(engine, watch.axon_id, answer, "tui")
    woke = await watch.system("agent.resumed", agent, after=reply)
    assert body(woke)["trigger_sequence"] == reply
    await said(watch, agent, outcome, after=reply)


async def play_the_demo(engine: Engine, runtime: RuntimeKind) -> None:
    """The four Axons come alive; the support and deploy agents wait for a human, whose
    reply in the console (source tui) wakes each; the ci agent counts failures; the ACP
    assistant streams, then waits for a permission a human gives."""
    ids = await create_demo_axons(engine)
    names = [a.name for a in DEMO_AXONS]
    assert list(ids) == names == ["support", "ci", "deploy", "assistant"]
    await add_demo_agents(engine, ids, runtime, engine.home)
    views = await engine.agents.list()
    assert {(v.name, v.runtime) for v in views} == {
        ("triage", runtime),
        ("ci", runtime),
        ("deploy", runtime),
        ("acp", runtime),
    }
    asks = [(0.0, who, text) for _at, who, text in ASSISTANT_ASKS]
    async with (
        watching(engine, ids["support"]) as support,
        watching(engine, ids["ci"]) as ci,
        watching(engine, ids["deploy"]) as deploy,
        watching(engine, ids["assistant"]) as assistant,
        feeding(
            feed_support(engine, ids["support"]),
            feed_ci(engine, ids["ci"], every_s=0.3),
            feed_deploy(engine, ids["deploy"]),
            feed_assistant(engine, ids["assistant"], asks),
        ),
    ):
        # assistant: a tool call and a streamed answer; then a permission asked, the agent
        # paused until a human allows it from the console, and the write done
        await assistant.wait(
            lambda e: e.event_type == "session/update" and '"ls-1"' in e.payload
            and '"completed"' in e.payload, "the tool call done",
        )  # fmt: skip
        request = await assistant.wait(
            lambda e: e.event_type == "permission.requested", "the permission request"
        )
        await assistant.system("agent.paused", "acp", after=request.sequence)
        await engine.agents.permit(ids["assistant"], request.sequence, "allow", source="tui")
        await assistant.system("agent.resumed", "acp", after=request.sequence)
        await assistant.wait(
            lambda e: e.event_type == "session/update" and '"write-1"' in e.payload
            and '"completed"' in e.payload, "the write done", after=request.sequence,
        )  # fmt: skip

        # support: the customer's report, the agent's question, then it sleeps until a reply
        await asks_then_wakes(
            engine, support, "triage", "Can someone confirm", "Only above 100MB.",
            "Resumed with the new constraint",
        )  # fmt: skip
        # deploy: the release asks, the agent sleeps, a yes wakes it and is recorded
        await asks_then_wakes(
            engine, deploy, "deploy", "Deploy v1.4.2 to production (yes or no)?", "yes",
            "Approved by",
        )  # fmt: skip
        decided = await rows(engine, ids["deploy"], "SELECT version, status FROM deployments")
        assert decided == [["v1.4.2", "approved"]]

        # ci: webhooks wake it again and again; failures land in its table
        failed = await said(ci, "ci", "failed")
        resumed = await ci.system("agent.resumed", "ci", after=failed.sequence)
        assert body(resumed)["from"] == "paused"
        table = await rows(
            engine, ids["ci"], "SELECT repo, workflow, branch, count, last_url FROM failures"
        )
        assert table and all(
            count >= 1 and url.startswith("https://github.com/") for *_, count, url in table
        )


def test_the_github_feed_tells_the_same_story_every_time() -> None:
    story = list(itertools.islice(GitHubWebhooks(), 60))
    assert story == list(itertools.islice(GitHubWebhooks(), 60))  # a fixed seed
    assert {kind for kind, _ in story} == {"workflow_run", "check_run"}
    for (kind, started), (same_kind, finished) in zip(story[::2], story[1::2], strict=True):
        assert kind == same_kind
        assert (started["action"], finished["action"]) in (
            ("requested", "completed"),
            ("created", "completed"),
        )
        assert started[kind]["id"] == finished[kind]["id"]
    finished_runs = [p[kind] for kind, p in story if p["action"] == "completed"]
    assert {run["conclusion"] for run in finished_runs} == {"success", "failure"}
    assert all(run["html_url"].startswith("https://github.com/acme/") for run in finished_runs)


async def test_the_demo_with_local_processes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Engine(home) as engine:
        await play_the_demo(engine, "process")
    await remove_demo_home(home)
    assert not home.exists()


async def test_the_demo_in_docker_leaves_nothing_behind(
    agent_home: Path, docker_client: docker.DockerClient
) -> None:
    choice = await asyncio.to_thread(prepare_runtime, lambda line: None)
    assert choice.kind == "docker", choice.reason
    async with Engine(agent_home) as engine:
        await play_the_demo(engine, "docker")
        home_id = engine.agents.home_id
        labelled = {"label": f"axons.home={home_id}"}
        assert len(docker_client.api.containers(all=True, filters=labelled)) == len(DEMO_AXONS)
    await remove_demo_home(agent_home)
    assert docker_client.api.containers(all=True, filters=labelled) == []
    volumes = docker_client.api.volumes().get("Volumes") or []
    assert not [v["Name"] for v in volumes if v["Name"].startswith(f"axons-{home_id[:8]}-")]
    assert not agent_home.exists()


@pytest.mark.parametrize("axon", DEMO_AXONS, ids=lambda a: a.agent)
def test_each_sample_toml_starts_with_the_cli(
    axon: DemoAxon, agent_home: Path, docker_client: docker.DockerClient
) -> None:
    """As the README says: `axons new NAME`, `axons agent add sample_agents/X/agent.toml`
    (its own Axon), and with `--axon` on any other Axon."""
    toml = axon.toml
    with running_server(agent_home):
        axons_json("new", axon.name, home=agent_home)
        axons_json("new", "mine", home=agent_home)
        own = axons_json("agent", "add", str(toml), home=agent_home)
        other = axons_json("agent", "add", str(toml), "--axon", "mine", home=agent_home)
        assert (
            own[0]["spec"]["image"]
            == other[0]["spec"]["image"]
            == f"axons/{toml.parent.name}:latest"
        )
        for where in (axon.name, "mine"):

            def running(where: str = where) -> bool:
                done = axons("tail", where, "--json", home=agent_home)
                events = [json.loads(line) for line in done.stdout.splitlines()]
                return any(e["event_type"] == "agent.running" for e in events)

            wait_until(running, f"the agent of {toml} running on {where}")
    assert home_id_of(agent_home)
