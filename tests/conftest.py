"""Shared fixtures: a real Engine on a temporary data home (real SQLite files), closed after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine import Engine

# The shared helpers hold assertions of their own: rewrite them wherever they are imported from.
pytest.register_assert_rewrite(
    "tests.agents_support",
    "tests.acp_support",
    "tests.acp_real_support",
    "tests.http_support",
    "tests.console_support",
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(tmp_path / "home") as eng:
        yield eng


@pytest.fixture
async def axon_id(engine: Engine) -> str:
    return (await engine.create_axon("test")).id


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Fixed commit times and Axon ids (tests/console_support.py), for screenshots."""
    from tests.console_support import freeze

    return freeze(monkeypatch)
