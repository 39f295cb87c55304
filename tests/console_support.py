"""What console tests share: an app on a temporary home, and fixed ids and times so that
screenshots of real data are the same on every run.

    def test_x(tmp_path, frozen):            # `frozen` is the fixture in conftest.py
        app = console_app(tmp_path, frozen)  # an embedded engine on tmp_path
        async with app.run_test(size=(100, 30)) as pilot: ...
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import engine.catalog
import engine.log
from axons_tui.app import AxonsApp, ConsoleConfig

FROZEN_MS = 1_780_000_000_000  # 2026-05-28 20:26:40 UTC: every frozen clock starts here


class FrozenClock:
    """The engine's and the console's clock, moved only by the test: `advance(ms)`."""

    def __init__(self, start_ms: int = FROZEN_MS) -> None:
        self.ms = start_ms

    def advance(self, ms: int) -> None:
        self.ms += ms

    def __call__(self) -> int:
        return self.ms

    def time_ns(self) -> int:
        return self.ms * 1_000_000

    def time(self) -> float:
        return self.ms / 1000

    def __getattr__(self, name: str) -> Any:  # monotonic(), sleep(), ... stay real
        return getattr(time, name)


def freeze(monkeypatch: pytest.MonkeyPatch, clock: FrozenClock | None = None) -> FrozenClock:
    """Fixed commit times (the clock) and Axon ids (`axn_frozen0001`, ...) from here on."""
    clock = clock or FrozenClock()
    counter = itertools.count(1)
    monkeypatch.setattr(engine.log, "time", clock)
    monkeypatch.setattr(engine.catalog, "time", clock)
    monkeypatch.setattr(engine.catalog, "new_axon_id", lambda: f"axn_frozen{next(counter):04d}")
    return clock


def console_app(
    home: Path,
    clock: Callable[[], int] | None = None,
    *,
    tmp_config: Path | None = None,
    **config: Any,
) -> AxonsApp:
    """A console on `home` (embedded engine, its API on the home's socket), with the user's
    config dir (keys, themes) replaced by an empty folder unless the test gives its own."""
    isolated = tmp_config or home.parent / f"{home.name}-config"
    config.setdefault("keys_file", isolated / "keys.toml")
    config.setdefault("themes_dir", isolated / "themes")
    return AxonsApp(ConsoleConfig(home=home, clock=clock, **config))


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = ""
) -> None:
    """Wait for `condition` to hold (polling), or fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)
