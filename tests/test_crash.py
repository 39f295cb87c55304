"""Durability under SIGKILL: a publish that returned is on disk. A child process publishes
(one Axon with 50 concurrent publishers; 200 Axons with 4 each) and prints each acknowledged
sequence; it is killed at random moments, ten times on the same home, and after each kill
every acknowledged event is there exactly once, every log is gapless and its hash chain
verifies."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from tests.crash_support import Child, Ledger, create_axons, kill_at_a_random_moment

KILLS = 10


def kill_repeatedly(
    tmp_path: Path, axons: int, publishers: int, min_acks: int
) -> tuple[Ledger, int]:
    """Ten runs on one home, each SIGKILLed at a random moment and then checked."""
    home = tmp_path / "home"
    ledger = Ledger(asyncio.run(create_axons(home, axons)))
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"kill moments seeded with {seed}")  # shown when the test fails
    rng = random.Random(seed)
    events = 0
    for round_number in range(KILLS):
        child = Child(
            home,
            ledger.axon_ids,
            publishers,
            tmp_path / f"child-{round_number}.stderr",
            min_acks=min_acks,
        )
        kill_at_a_random_moment(child, rng, f"round {round_number}")
        ledger.record(child)
        events = asyncio.run(ledger.check(home))
    return ledger, events


@pytest.mark.slow
def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    _, events = kill_repeatedly(tmp_path, axons=1, publishers=50, min_acks=20)
    assert events >= KILLS * 20


@pytest.mark.slow
def test_acknowledged_events_on_200_axons_survive_sigkill(tmp_path: Path) -> None:
    ledger, events = kill_repeatedly(tmp_path, axons=200, publishers=4, min_acks=800)
    assert events >= KILLS * 800
    written = sum(1 for last in ledger.last.values() if last > 0)
    assert written == 200, f"only {written} of 200 Axons got events"
