"""Helpers the tests share: drafts, waiting with a deadline (never sleep-and-hope), and file
digests for 'nothing changed on disk'."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from engine import Draft

T = TypeVar("T")


# Generous: only reached when something is broken, never part of a pass condition.
WAIT_S = 30.0


def message(
    text: str, source: str = "cli", *, key: str | None = None, origin: str = "USER_EVENT"
) -> Draft:
    """A human message draft, optionally with an idempotency key."""
    draft = Draft.message(text, source=source, origin=origin)
    draft.idempotency_key = key
    return draft


async def within(awaitable: Awaitable[T], seconds: float = WAIT_S) -> T:
    """Await something that must happen; fail clearly instead of hanging when it does not."""
    return await asyncio.wait_for(awaitable, seconds)


def file_digest(path: Path) -> dict[str, str | None]:
    """SHA-256 of an Axon's .db and -wal files (None when absent): what 'unchanged' means."""
    out: dict[str, str | None] = {}
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
    return out
