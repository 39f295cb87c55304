"""Axons session engine: durable per-Axon logs, live subscriptions, SQL state and time travel.

Use :class:`engine.Engine` from any asyncio program; nothing here imports a terminal UI.
"""

from engine.engine import Engine
from engine.errors import AxonError
from engine.models import AxonView, Draft, Event, PublishResult

__all__ = ["AxonError", "AxonView", "Draft", "Engine", "Event", "PublishResult"]
