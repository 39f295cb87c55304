"""The seed scenario with the process runtime (no container): the same scenario body as the
Docker test (`agents_support.run_seed_scenario`), the agent a local process that the engine
pauses with SIGSTOP and resumes with SIGCONT. "Really paused" is read from /proc."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine import Engine

pytest.register_assert_rewrite("tests.agents_support")  # the shared scenario's assertions

from tests.agents_support import run_seed_scenario, slug  # noqa: E402


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
