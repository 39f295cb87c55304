"""Durability under SIGKILL: a publish that returned is on disk. A child process publishes
from 50 concurrent publishers and prints each acknowledged sequence; it is killed at random
moments, ten times on the same home, and after each kill every acknowledged event is there
exactly once, the log is gapless and its hash chain verifies."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import Engine

ROOT = Path(__file__).resolve().parent.parent
KILLS = 10
MIN_ACKS_BEFORE_KILL = 20
STARTUP_TIMEOUT_S = 60.0


class Child:
    """The publishing child, with a thread collecting the complete lines it printed."""

    def __init__(self, home: Path, axon_id: str, stderr_path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.stderr_path = stderr_path
        with stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.crash_child", str(home), axon_id],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self.acks: list[int] = []
        self.enough = threading.Event()  # enough acknowledgements, or the child ended
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):
                break  # cut short by the kill: not an acknowledgement that was printed whole
            line = raw.strip()
            if line == b"ready":
                continue
            self.acks.append(int(line))
            if len(self.acks) >= MIN_ACKS_BEFORE_KILL:
                self.enough.set()
        self.enough.set()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-2000:]


async def check_home(home: Path, axon_id: str, acknowledged: list[int]) -> int:
    async with Engine(home) as engine:
        last = await engine.last_sequence(axon_id)
        sequences: list[int] = []
        while page := await engine.read_events(axon_id, after=len(sequences), limit=5000):
            sequences.extend(e.sequence for e in page)
        report = await engine.verify(axon_id)
    assert sequences == list(range(1, last + 1)), "the log has a gap or a repeat"
    assert len(acknowledged) == len(set(acknowledged)), "a sequence was acknowledged twice"
    lost = sorted(set(acknowledged) - set(sequences))
    assert lost == [], f"acknowledged but lost: {lost[:10]}"
    assert report.ok, report
    assert report.checked == last
    return last


async def create_axon(home: Path) -> str:
    async with Engine(home) as engine:
        return (await engine.create_axon("crash")).id


@pytest.mark.slow
def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    home = tmp_path / "home"
    axon_id = asyncio.run(create_axon(home))
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"kill moments seeded with {seed}")  # shown when the test fails
    rng = random.Random(seed)
    acknowledged: list[int] = []
    last = 0
    for round_number in range(KILLS):
        child = Child(home, axon_id, tmp_path / f"child-{round_number}.stderr")
        try:
            child.enough.wait(STARTUP_TIMEOUT_S)
            if len(child.acks) < MIN_ACKS_BEFORE_KILL or child.proc.poll() is not None:
                pytest.fail(
                    f"round {round_number}: the child did not get going\n{child.stderr_text()}"
                )
            # The random moment of the kill: publishing goes on meanwhile.
            time.sleep(rng.uniform(0.2, 1.5))
            assert child.proc.poll() is None, child.stderr_text()
        finally:
            child.kill()
        assert child.acks, "no acknowledgements collected"
        assert min(child.acks) > last, "a new run re-used a sequence an earlier run acknowledged"
        acknowledged.extend(child.acks)
        last = asyncio.run(check_home(home, axon_id, acknowledged))
    assert last >= KILLS * MIN_ACKS_BEFORE_KILL
