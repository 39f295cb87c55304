"""Which Axons wait for a human, answered plainly, for as long as `axons_tui/attention.py`
(the console-acp branch, which also knows ACP sessions) is not there: an open
`permission.requested`, or an agent that asked a question and paused. Same interface."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from engine.backend import Backend
from engine.models import Event


class PlainAttention:
    def __init__(self) -> None:
        self._open: dict[str, dict[int, str]] = {}  # axon -> request sequence -> title
        self._asked: dict[str, dict[str, str]] = {}  # axon -> agent -> its last question
        self._paused: dict[str, set[str]] = {}  # axon -> agents paused since they asked

    def waiting(self, axon_id: str) -> str | None:
        requests = self._open.get(axon_id)
        if requests:
            return f"permission: {next(iter(requests.values()))}"
        asked = self._asked.get(axon_id, {})
        for agent in self._paused.get(axon_id, ()):
            if agent in asked:
                return f"asked: {asked[agent]}"
        return None

    def feed(self, events: Iterable[Event]) -> set[str]:
        changed = set()
        for e in events:
            before = self.waiting(e.axon_id)
            self._learn(e)
            if self.waiting(e.axon_id) != before:
                changed.add(e.axon_id)
        return changed

    async def prime(self, backend: Backend, axon_ids: Sequence[str], last: int = 500) -> set[str]:
        changed = set()
        for axon_id in axon_ids:
            total = await backend.last_sequence(axon_id)
            events = await backend.read_events(axon_id, after=max(0, total - last), limit=last)
            changed |= self.feed(events)
        return changed

    def _learn(self, e: Event) -> None:
        try:
            body = orjson.loads(e.payload)
        except orjson.JSONDecodeError:
            body = None
        body = body if isinstance(body, dict) else {}
        requests = self._open.setdefault(e.axon_id, {})
        paused = self._paused.setdefault(e.axon_id, set())
        asked = self._asked.setdefault(e.axon_id, {})
        if e.event_type == "permission.requested":
            requests[e.sequence] = str((body.get("tool_call") or {}).get("title") or "a tool")
        elif e.event_type == "permission.decision":
            requests.pop(body.get("request_sequence", -1), None)
        elif e.origin == "USER_EVENT":
            asked.clear()
        elif e.origin == "AGENT_EVENT" and e.event_type == "message":
            text = str(body.get("text", ""))
            if text.rstrip().endswith("?"):
                asked[e.source] = text
            else:
                asked.pop(e.source, None)
        elif e.origin == "SYSTEM_EVENT" and e.event_type in ("agent.paused", "agent.hibernated"):
            paused.add(e.source)
        elif e.origin == "SYSTEM_EVENT" and e.event_type.startswith("agent."):
            paused.discard(e.source)
