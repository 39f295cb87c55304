"""What each Axon has been doing, for the monitor: events per 10-second bucket over the last
hour, the last event, its agents' states and the last wake. Seeded once per Axon by one
read-only SQL query through the `Backend`, then kept current from the live feed.

No Textual here: the model is plain data, so the screen only renders it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from engine.backend import Backend
from engine.models import AgentView, Event

BUCKET_MS = 10_000
WINDOW_MS = 3_600_000  # the sparkline's hour
SEED_EVENTS = 100_000  # the seed counts at most this many recent events per Axon
LOOK_BACK_EVENTS = 100_000  # and looks this far back for the last wake and agent states

# The system event that says an agent entered a state (contract §3).
STATE_OF_EVENT = {
    "agent.starting": "starting",
    "agent.running": "running",
    "agent.resumed": "running",
    "agent.paused": "paused",
    "agent.hibernated": "hibernated",
    "agent.stopped": "stopped",
    "agent.failed": "failed",
}
_STATE_EVENTS = ", ".join(f"'{t}'" for t in STATE_OF_EVENT)

# One statement per Axon, four kinds of rows: ("bucket", index, count) for each 10-second
# bucket of the last hour, ("last", sequence, timestamp_ms), ("wake", sequence, wake_ms),
# and ("agent", name, event type) for each agent's last state event.
# Parameters: ?1 bucket ms, ?2 how many recent events, ?3 the hour's start, ?4 look-back.
# Every scan walks the primary key backwards from the tip, so a long log costs no more than
# its recent part.
SEED_SQL = f"""
SELECT 'bucket', timestamp_ms / ?1, count(*) FROM (
    SELECT timestamp_ms FROM axon_events ORDER BY sequence DESC LIMIT ?2
) WHERE timestamp_ms >= ?3 GROUP BY 2
UNION ALL
SELECT 'last', sequence, timestamp_ms FROM (
    SELECT sequence, timestamp_ms FROM axon_events ORDER BY sequence DESC LIMIT 1
)
UNION ALL
SELECT 'wake', sequence, json_extract(payload, '$.wake_ms') FROM (
    SELECT sequence, payload FROM axon_events
    WHERE event_type = 'agent.resumed'
      AND sequence > (SELECT coalesce(max(sequence), 0) FROM axon_events) - ?4
    ORDER BY sequence DESC LIMIT 1
)
UNION ALL
SELECT 'agent', source, event_type FROM axon_events WHERE sequence IN (
    SELECT max(sequence) FROM axon_events
    WHERE origin = 'SYSTEM_EVENT' AND event_type IN ({_STATE_EVENTS})
      AND sequence > (SELECT coalesce(max(sequence), 0) FROM axon_events) - ?4
    GROUP BY source
)
"""
AGENT_STATES = ("starting", "running", "paused", "hibernated", "failed", "stopped")


@dataclass
class AxonActivity:
    """One Axon as the monitor shows it. `seeded` is False until its history was read."""

    axon_id: str
    name: str
    agents: dict[str, str] = field(default_factory=dict)  # agent name -> state
    buckets: Counter[int] = field(default_factory=Counter)  # timestamp_ms // BUCKET_MS -> count
    last_sequence: int = 0
    last_event_ms: int | None = None
    last_wake_ms: float | None = None
    waiting: bool = False
    seeded: bool = False
    _early: list[tuple[int, int]] = field(default_factory=list)  # live before the seed

    @property
    def label(self) -> str:
        return self.name or self.axon_id

    def record(self, event: Event) -> None:
        """Count a live event (one the seed did not already see)."""
        if event.sequence <= self.last_sequence:
            return
        self.last_sequence = event.sequence
        self.last_event_ms = event.timestamp_ms
        if self.seeded:
            self.buckets[event.timestamp_ms // BUCKET_MS] += 1
        else:  # the seed may count it too: settled in `seed`
            self._early.append((event.sequence, event.timestamp_ms))
        if event.origin == "SYSTEM_EVENT" and event.event_type in STATE_OF_EVENT:
            self.agents[event.source] = STATE_OF_EVENT[event.event_type]
            if event.event_type == "agent.resumed":
                self.last_wake_ms = _wake_ms(event.payload)

    def per_minute(self, now_ms: int) -> int:
        """Events in the trailing minute (to the bucket)."""
        newest = now_ms // BUCKET_MS
        return sum(self.buckets.get(b, 0) for b in range(newest - 5, newest + 1))

    def in_window(self, now_ms: int) -> int:
        """Events in the last hour."""
        first = (now_ms - WINDOW_MS) // BUCKET_MS
        return sum(n for bucket, n in self.buckets.items() if bucket > first)

    def hour(self, now_ms: int, bars: int) -> list[int]:
        """The last hour's events in `bars` equal slices, oldest first."""
        newest = now_ms // BUCKET_MS
        per_bar = WINDOW_MS // BUCKET_MS // bars
        first = newest - per_bar * bars + 1
        self.prune(first)
        counts = [0] * bars
        for bucket, n in self.buckets.items():
            if bucket >= first:
                counts[min((bucket - first) // per_bar, bars - 1)] += n
        return counts

    def prune(self, first_bucket: int) -> None:
        """Forget buckets older than the window, so a long run keeps constant memory."""
        for bucket in [b for b in self.buckets if b < first_bucket]:
            del self.buckets[bucket]

    def seed(self, rows: Iterable[Sequence[object]]) -> None:
        """Merge the seed query's rows (see SEED_SQL) with what the feed already counted:
        live events are those after the seed's last sequence, so nothing counts twice."""
        seen = 0
        history: Counter[int] = Counter()
        wake: float | None = None
        for kind, key, value in rows:
            if kind == "bucket":
                history[int(key)] += int(value)  # type: ignore[call-overload]
            elif kind == "last":
                seen = int(key)  # type: ignore[call-overload]
                if self.last_event_ms is None:
                    self.last_event_ms = int(value)  # type: ignore[call-overload]
            elif kind == "wake" and isinstance(value, int | float):
                wake = float(value)
            elif kind == "agent":  # the agent list and live events know better
                self.agents.setdefault(str(key), STATE_OF_EVENT[str(value)])
        if self.last_wake_ms is None:
            self.last_wake_ms = wake
        for sequence, timestamp_ms in self._early:
            if sequence > seen:
                history[timestamp_ms // BUCKET_MS] += 1
        self._early.clear()
        self.buckets.update(history)
        self.last_sequence = max(self.last_sequence, seen)
        self.seeded = True


def _wake_ms(payload: str) -> float | None:
    try:
        value = orjson.loads(payload).get("wake_ms")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


async def seed_rows(backend: Backend, axon_id: str, now_ms: int) -> list[list[object]]:
    """The seed query's rows for one Axon (read-only, through the public API)."""
    result = await backend.query(
        axon_id,
        SEED_SQL,
        [BUCKET_MS, SEED_EVENTS, now_ms - WINDOW_MS, LOOK_BACK_EVENTS],
    )
    return result.rows


def agents_by_axon(agents: Iterable[AgentView]) -> dict[str, dict[str, str]]:
    """`agents.list()` grouped by Axon: {axon_id: {agent name: state}}."""
    grouped: dict[str, dict[str, str]] = {}
    for agent in agents:
        grouped.setdefault(agent.axon_id, {})[agent.name] = agent.state
    return grouped
