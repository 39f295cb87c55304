"""Which Axons wait for a human, and why (issue 11's "the Axon stands out as waiting").

An Axon waits for a human while an ACP agent's `permission.requested` has no decision, or
when an agent's last message asks a question and the agent has since paused or hibernated
with no newer human message. `Attention` learns this from the events themselves (the live
feed, and the recent history of each Axon to start from), so it works the same embedded or
attached. No Textual here: the dashboard, the monitor and the Axon view all ask it.

Every fact is kept with the sequence that established it and the newer one wins, so feeding
the same event twice, or a page of history after some live events, gives the same answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.backend import Backend
from engine.broker.permissions import DECISION, REQUESTED
from engine.models import AgentView, Event

RESTING = frozenset({"paused", "hibernated"})
# System events that say where an agent stands; the state is the part after "agent."
STATE_EVENTS = frozenset(
    {"agent.starting", "agent.running", "agent.paused", "agent.hibernated", "agent.resumed"}
    | {"agent.stopped", "agent.failed"}
)
# After these the agent's old process is gone, and with it every request it was waiting on.
FRESH_START_EVENTS = frozenset({"agent.starting", "agent.stopped", "agent.failed"})
QUESTION_LIMIT = 160  # characters of a question shown as the reason
CHUNKS_KEPT = 64  # the end of a streamed message is enough to see whether it asks
TOOL_CALLS_KEPT = 32


@dataclass(frozen=True, slots=True)
class PermissionOption:
    """One answer an agent offers (`option_id` is what `permit` sends)."""

    option_id: str
    name: str
    kind: str | None


@dataclass(frozen=True, slots=True)
class PermissionRequest:
    """An open `permission.requested`: what the agent wants to do and the answers offered.
    The tool call merges what the agent reported about it in its `session/update`s (kind,
    raw input) with what the request itself carries."""

    sequence: int
    agent: str
    tool_call_id: str | None
    title: str
    kind: str | None
    raw_input: Any
    options: tuple[PermissionOption, ...]
    timestamp_ms: int = 0


@dataclass(slots=True)
class _Decision:
    option_id: str | None  # None: cancelled
    binding: bool  # the engine's own (SYSTEM_EVENT) answers always count


@dataclass(slots=True)
class _Agent:
    """What one agent last said and where it stands, each with its sequence."""

    state: str = ""
    state_sequence: int = 0
    fresh_start: int = 0  # the last sequence at which the agent started afresh
    message: str = ""
    message_sequence: int = 0
    turn_started: int = 0
    chunks: dict[int, str] = field(default_factory=dict)
    tool_calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def said(self) -> tuple[int, str]:
        """The agent's last message and its sequence: a whole message, or the chunks
        streamed since its current turn started, whichever is newer."""
        streamed = sorted(s for s in self.chunks if s > self.turn_started)
        if streamed and streamed[-1] > self.message_sequence:
            return streamed[-1], "".join(self.chunks[s] for s in streamed)
        return self.message_sequence, self.message


@dataclass(slots=True)
class _Axon:
    agents: dict[str, _Agent] = field(default_factory=dict)
    requests: dict[int, PermissionRequest] = field(default_factory=dict)  # still open
    decisions: dict[int, list[_Decision]] = field(default_factory=dict)  # for those not seen
    answered: set[int] = field(default_factory=set)  # requests settled: only their sequences
    last_human: int = 0

    def agent(self, name: str) -> _Agent:
        found = self.agents.get(name)
        if found is None:
            found = self.agents[name] = _Agent()
        return found

    def settle(self, sequence: int) -> None:
        """Forget a request once a decision answers it (a decision may come first, when
        history is read after live events), keeping only that it was answered."""
        request = self.requests.get(sequence)
        if request is not None and _answered(request, self.decisions.get(sequence, ())):
            del self.requests[sequence]
            self.decisions.pop(sequence, None)
            self.answered.add(sequence)


class Attention:
    """Fed every event (any order, repeats allowed), answers which Axons wait for a human."""

    def __init__(self) -> None:
        self._axons: dict[str, _Axon] = {}

    # -- answers ------------------------------------------------------------------------

    def waiting(self, axon_id: str) -> str | None:
        """Why the Axon waits for a human ("permission: <tool title>" or "asked:
        <question>"), or None when it does not."""
        axon = self._axons.get(axon_id)
        if axon is None:
            return None
        requests = self._open(axon)
        if requests:
            return f"permission: {requests[0].title}"
        question = self._question(axon)
        return None if question is None else f"asked: {question}"

    def open_requests(self, axon_id: str) -> list[PermissionRequest]:
        """The Axon's unanswered permission requests, oldest first."""
        axon = self._axons.get(axon_id)
        return [] if axon is None else self._open(axon)

    def waiting_axons(self) -> dict[str, str]:
        """Every Axon that waits for a human, with the reason."""
        found = {axon_id: self.waiting(axon_id) for axon_id in self._axons}
        return {axon_id: why for axon_id, why in found.items() if why is not None}

    # -- learning -----------------------------------------------------------------------

    def feed(self, events: Iterable[Event]) -> set[str]:
        """Learn from events; the ids of the Axons whose `waiting` answer changed."""
        touched: dict[str, str | None] = {}
        for e in events:
            if not _matters(e):
                continue
            if e.axon_id not in touched:
                touched[e.axon_id] = self.waiting(e.axon_id)
            self._learn(self._axons.setdefault(e.axon_id, _Axon()), e)
        return {axon_id for axon_id, was in touched.items() if self.waiting(axon_id) != was}

    async def prime(
        self, backend: Backend, axon_ids: Sequence[str] | None = None, last: int = 500
    ) -> set[str]:
        """Learn from the recent history of these Axons, or (None) of every Axon with a
        paused or hibernated agent: only those can wait for a human, so a home of a
        thousand Axons is cheap to start from. For each: its last `last` events, and any
        request an agent still waits on from further back. Returns the ids of the Axons
        whose answer changed."""
        if axon_ids is None:
            axon_ids = sorted(
                {v.axon_id for v in await backend.agents.list() if v.state in RESTING}
            )
        changed: set[str] = set()
        for axon_id in axon_ids:
            views = await backend.agents.list(axon_id)
            changed |= self.feed(await _recent(backend, axon_id, last, views))
        return changed

    def forget(self, axon_id: str) -> None:
        """Drop an Axon (deleted, or no longer shown)."""
        self._axons.pop(axon_id, None)

    def _learn(self, axon: _Axon, e: Event) -> None:
        kind = e.event_type
        if e.origin == "SYSTEM_EVENT" and kind in STATE_EVENTS:
            _learn_state(axon.agent(e.source), e)
        elif kind == REQUESTED and e.origin == "AGENT_EVENT":
            body = _body(e)
            if body is not None and e.sequence not in axon.answered:
                agent = axon.agent(e.source)
                axon.requests[e.sequence] = _request(e, body, agent.tool_calls)
                axon.settle(e.sequence)
        elif kind == DECISION:
            _learn_decision(axon, e)
        elif kind == "session/update" and e.origin == "AGENT_EVENT":
            _learn_update(axon.agent(e.source), e)
        elif kind == "turn.started" and e.origin == "SYSTEM_EVENT":
            agent = axon.agent(e.source)
            agent.turn_started = max(agent.turn_started, e.sequence)
        elif kind == "message" and e.origin == "USER_EVENT":
            axon.last_human = max(axon.last_human, e.sequence)
        elif kind == "message" and e.origin == "AGENT_EVENT":
            agent = axon.agent(e.source)  # an agent publishes as itself (its name)
            if e.sequence > agent.message_sequence:
                agent.message, agent.message_sequence = _text_of(e), e.sequence

    # -- reading ------------------------------------------------------------------------

    def _open(self, axon: _Axon) -> list[PermissionRequest]:
        return [
            request
            for sequence, request in sorted(axon.requests.items())
            if sequence > axon.agent(request.agent).fresh_start
        ]

    def _question(self, axon: _Axon) -> str | None:
        """The newest question an agent asked and then rested on, unanswered by a human."""
        asked: list[tuple[int, str]] = []
        for agent in axon.agents.values():
            sequence, text = agent.said()
            if (
                sequence > axon.last_human
                and agent.state in RESTING
                and agent.state_sequence > sequence
                and asks(text)
            ):
                asked.append((sequence, text))
        return _one_line(max(asked)[1]) if asked else None


def asks(text: str) -> bool:
    """True when a message ends by asking something (its last sentence is a question)."""
    return text.rstrip().rstrip("\"')]*_`").endswith("?")


def _matters(e: Event) -> bool:
    return e.event_type in _KINDS


_KINDS = STATE_EVENTS | {REQUESTED, DECISION, "session/update", "turn.started", "message"}


def _learn_state(agent: _Agent, e: Event) -> None:
    if e.sequence > agent.state_sequence:
        agent.state = e.event_type.removeprefix("agent.").replace("resumed", "running")
        agent.state_sequence = e.sequence
    if e.event_type in FRESH_START_EVENTS:
        agent.fresh_start = max(agent.fresh_start, e.sequence)


def _learn_decision(axon: _Axon, e: Event) -> None:
    body = _body(e)
    if body is None:
        return
    try:
        request = int(body["request_sequence"])
    except (KeyError, TypeError, ValueError):
        return
    option = None if body.get("cancelled") else body.get("option_id")
    decision = _Decision(None if option is None else str(option), e.origin == "SYSTEM_EVENT")
    if request not in axon.answered:
        axon.decisions.setdefault(request, []).append(decision)
        axon.settle(request)


def _answered(request: PermissionRequest, decisions: Iterable[_Decision]) -> bool:
    """As the broker judges it: the engine's answers count, a client's only when it cancels
    or picks an offered option."""
    offered = {o.option_id for o in request.options}
    return any(d.binding or d.option_id is None or d.option_id in offered for d in decisions)


def _learn_update(agent: _Agent, e: Event) -> None:
    """Message chunks (to join) and tool calls (to describe a later permission request);
    other updates are not needed to know whether the Axon waits."""
    if '"agent_message_chunk"' not in e.payload and '"tool_call' not in e.payload:
        return  # cheap: most updates are neither, and parsing is the cost under load
    body = _body(e)
    update = body.get("update") if body is not None else None
    if not isinstance(update, dict):
        return
    kind = update.get("sessionUpdate")
    if kind == "agent_message_chunk":
        content = update.get("content")
        text = content.get("text") if isinstance(content, dict) else None
        if isinstance(text, str):
            agent.chunks[e.sequence] = text
            while len(agent.chunks) > CHUNKS_KEPT:
                del agent.chunks[min(agent.chunks)]
    elif kind in ("tool_call", "tool_call_update") and isinstance(update.get("toolCallId"), str):
        known = agent.tool_calls.setdefault(update["toolCallId"], {})
        known.update({k: v for k, v in update.items() if v is not None})
        while len(agent.tool_calls) > TOOL_CALLS_KEPT:  # dicts keep insertion order
            del agent.tool_calls[next(iter(agent.tool_calls))]


def _request(
    e: Event, body: dict[str, Any], tool_calls: dict[str, dict[str, Any]]
) -> PermissionRequest:
    asked = _dict(body.get("tool_call"))
    tool_call_id = asked.get("toolCallId")
    known = tool_calls.get(tool_call_id, {}) if isinstance(tool_call_id, str) else {}
    tool = {**known, **{k: v for k, v in asked.items() if v is not None}}
    offered = body.get("options")
    options = offered if isinstance(offered, list) else []
    return PermissionRequest(
        sequence=e.sequence,
        agent=e.source,
        tool_call_id=tool_call_id if isinstance(tool_call_id, str) else None,
        title=str(tool.get("title") or tool_call_id or "a tool call"),
        kind=tool.get("kind") if isinstance(tool.get("kind"), str) else None,
        raw_input=tool.get("rawInput"),
        options=tuple(_option(o) for o in options if isinstance(o, dict)),
        timestamp_ms=e.timestamp_ms,
    )


def _option(o: dict[str, Any]) -> PermissionOption:
    option_id = str(o.get("optionId", ""))
    kind = o.get("kind")
    return PermissionOption(
        option_id, str(o.get("name") or option_id), kind if isinstance(kind, str) else None
    )


async def _recent(
    backend: Backend, axon_id: str, last: int, views: Sequence[AgentView]
) -> list[Event]:
    """The Axon's last `last` events, preceded by any permission request an agent still
    waits on from further back (its `waiting_for: "permission #N"`)."""
    end = await backend.last_sequence(axon_id)
    start = max(0, end - last)
    events: list[Event] = []
    for view in views:
        waited = _waited_request(view.detail.get("waiting_for"))
        if waited is not None and waited <= start:
            events += await backend.read_events(axon_id, after=waited - 1, limit=1)
    while start < end:
        page = await backend.read_events(axon_id, after=start, limit=min(1000, end - start))
        if not page:
            break
        events += page
        start = page[-1].sequence
    return events


def _waited_request(waiting_for: Any) -> int | None:
    match = (
        re.fullmatch(r"permission #(\d+)", waiting_for) if isinstance(waiting_for, str) else None
    )
    return int(match.group(1)) if match else None


def _body(e: Event) -> dict[str, Any] | None:
    try:
        body = orjson.loads(e.payload)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text_of(e: Event) -> str:
    body = _body(e)
    text = body.get("text") if body is not None else None
    return text if isinstance(text, str) else ""


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= QUESTION_LIMIT else flat[: QUESTION_LIMIT - 1] + "…"
