"""`make demo` is the first thing a newcomer runs: it must play the whole seed session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import docker

AXONS = Path(sys.executable).with_name("axons")


def test_demo_plays_the_seed_session_and_leaves_nothing_behind() -> None:
    before = {c.name for c in docker.from_env().containers.list(all=True)}
    run = subprocess.run(
        [str(AXONS), "demo", "--headless"], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for step in (
        "agent.paused",
        "Confirmed: only exports above 100MB",
        "agent.resumed",
        "woken in",
        "tickets as of event",
        "investigating",
        "hash chain intact",
    ):
        assert step in out, f"{step!r} missing from the demo:\n{out}"
    after = {c.name for c in docker.from_env().containers.list(all=True)}
    assert after <= before, f"the demo left containers behind: {after - before}"
