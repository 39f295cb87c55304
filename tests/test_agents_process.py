"""The seed scenario with the process runtime (no container): the same scenario body as the
Docker test (`agents_support.run_seed_scenario`), the agent a local process that the engine
pauses with SIGSTOP and resumes with SIGCONT. "Really paused" is read from /proc."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from engine import Engine

pytest.register_assert_rewrite("tests.agents_support")  # the shared scenario's assertions

from tests.agents_support import run_seed_scenario, slug, triage_spec  # noqa: E402
from tests.http_support import running_server, wait_until  # noqa: E402


@pytest.fixture
async def process_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(tmp_path / "home", agent_runtime="process") as eng:
        yield eng  # closing the engine stops its agent processes


def process_state(pid: int) -> str:
    """The kernel's state letter for a process (T: stopped by a signal)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


async def test_seed_scenario_as_a_local_process(process_engine: Engine) -> None:
    async def paused(engine: Engine, axon_id: str, name: str) -> bool:
        pid_file = engine.home / "agents" / f"{slug(engine.agents.home_id, axon_id, name)}.pid"
        return process_state(int(pid_file.read_text())) == "T"

    await run_seed_scenario(process_engine, "process", paused)
    views = await process_engine.agents.list()
    assert [(v.name, v.runtime) for v in views] == [("triage", "process")]


def test_serve_with_a_process_agent_stops_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM ends `axons serve` while a local agent waits for events: the agent's live
    subscription ends with the bus instead of spinning the event loop (a hang seen here)."""
    with running_server(tmp_path / "home") as server:
        transport = httpx.HTTPTransport(uds=str(server.socket_path))
        with httpx.Client(transport=transport, base_url="http://axons", timeout=60) as local:
            axon_id = local.post("/v1/axons", json={"name": "sigterm"}).json()["id"]
            spec = triage_spec(axon_id, "process").model_dump(mode="json")
            assert local.post(f"/v1/axons/{axon_id}/agents", json=spec).status_code == 200
            wait_until(
                lambda: (
                    local.get(f"/v1/axons/{axon_id}/agents").json()["agents"][0]["state"]
                    == "running"
                ),
                "the agent to run",
            )
        assert server.terminate() == 0, server.stderr()[-2000:]
