"""What the crash tests share: the publishing child (tests/crash_child.py) with a thread
collecting every acknowledgement it printed, and the check that every acknowledged event is
in its Axon exactly once, each log gapless and its hash chain intact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from engine import Engine

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120.0


class Child:
    """The publishing child; `acks[i]` are the sequences acknowledged on `axon_ids[i]`."""

    def __init__(
        self,
        home: Path,
        axon_ids: list[str],
        publishers: int,
        stderr_path: Path,
        *,
        min_acks: int,
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.stderr_path = stderr_path
        command = [sys.executable, "-m", "tests.crash_child", str(home), str(publishers)]
        with stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [*command, *axon_ids],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self.acks: dict[int, list[int]] = defaultdict(list)
        self.total = 0
        self._min_acks = min_acks
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
            index, sequence = line.split()
            self.acks[int(index)].append(int(sequence))
            self.total += 1
            if self.total >= self._min_acks:
                self.enough.set()
        self.enough.set()

    def wait_until_going(self) -> str | None:
        """None once the child has acknowledged enough and still runs, else what went wrong."""
        self.enough.wait(STARTUP_TIMEOUT_S)
        if self.total < self._min_acks or self.proc.poll() is not None:
            return f"the child did not get going\n{self.stderr_text()}"
        return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-2000:]


def kill_at_a_random_moment(child: Child, rng: random.Random, run: str) -> None:
    """Once the child is publishing, let it go on for a random moment, then SIGKILL it."""
    try:
        if (problem := child.wait_until_going()) is not None:
            pytest.fail(f"{run}: {problem}")
        time.sleep(rng.uniform(0.2, 1.5))  # publishing goes on meanwhile
        assert child.proc.poll() is None, child.stderr_text()
    finally:
        child.kill()


class Ledger:
    """Every (Axon, sequence) acknowledged over all the runs on one home."""

    def __init__(self, axon_ids: list[str]) -> None:
        self.axon_ids = axon_ids
        self.acknowledged: dict[str, list[int]] = {a: [] for a in axon_ids}
        self.last: dict[str, int] = dict.fromkeys(axon_ids, 0)

    def record(self, child: Child) -> None:
        """Add a killed child's acknowledgements: each beyond what the last check found."""
        assert child.total, "no acknowledgements collected"
        for index, sequences in child.acks.items():
            axon_id = self.axon_ids[index]
            assert min(sequences) > self.last[axon_id], (
                f"Axon {axon_id}: a new run re-used a sequence an earlier run acknowledged"
            )
            self.acknowledged[axon_id].extend(sequences)

    async def check(self, home: Path) -> int:
        """Open the home as a restarted engine would; check every Axon. Returns the events."""
        async with Engine(home) as engine:
            for axon_id in self.axon_ids:
                self.last[axon_id] = await check_axon(engine, axon_id, self.acknowledged[axon_id])
        return sum(self.last.values())


async def check_axon(engine: Engine, axon_id: str, acknowledged: list[int]) -> int:
    """Every acknowledged sequence is in the log once, the log is gapless, the chain verifies."""
    last = await engine.last_sequence(axon_id)
    sequences: list[int] = []
    while page := await engine.read_events(axon_id, after=len(sequences), limit=5000):
        sequences.extend(e.sequence for e in page)
    report = await engine.verify(axon_id)
    assert sequences == list(range(1, last + 1)), f"Axon {axon_id}: a gap or a repeat"
    assert len(acknowledged) == len(set(acknowledged)), (
        f"Axon {axon_id}: a sequence was acknowledged twice"
    )
    lost = sorted(set(acknowledged) - set(sequences))
    assert lost == [], f"Axon {axon_id}: acknowledged but lost: {lost[:10]}"
    assert report.ok, report
    assert report.checked == last
    return last


async def create_axons(home: Path, count: int) -> list[str]:
    async with Engine(home) as engine:
        return [(await engine.create_axon(f"crash-{i}")).id for i in range(count)]
