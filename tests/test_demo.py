"""`axons demo --headless`, the scripted demo for scripts and tests, must play the whole seed
session (`make demo` opens the console on it: tests/test_console_demo_tmux.py)."""

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


def test_the_console_demo_refuses_a_home_that_holds_something(tmp_path: Path) -> None:
    """The demo removes its home when it ends: it never starts on one that holds data."""
    (tmp_path / "precious.txt").write_text("keep me")
    run = subprocess.run(
        [str(AXONS), "demo", "--home", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "is not empty: the demo needs a new home" in run.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
