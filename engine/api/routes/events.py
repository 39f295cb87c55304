"""Events (contract §4.2): publish one or a batch, list them, and follow them live over SSE,
one Axon's or several at once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BeforeValidator

from engine.api import publishing
from engine.api import schemas as s
from engine.api.routes.deps import ApiContext, AxonId, Caller, Context, json_response, new_router
from engine.api.sse import EventStream
from engine.errors import ErrorCode, InvalidInput
from engine.models import Event
from engine.tokens import Principal

SEQUENCE = re.compile(r"[0-9]{1,100}")

router = new_router()


def plain_digits(value: Any) -> Any:
    """A sequence sent as text must be plain digits: int() and lax validation would also take
    "1_0" (as 10), "+5" or " 7", and resume a stream somewhere the client never was."""
    if isinstance(value, str) and not SEQUENCE.fullmatch(value):
        raise ValueError(f"a sequence number is plain digits (an `id:` line's), got {value!r:.40}")
    return int(value) if isinstance(value, str) else value


SequenceNumber = Annotated[int, BeforeValidator(plain_digits)]


@router.post("/v1/axons/{id}/publish", response_model=s.PublishResultView, tags=["events"])
async def publish(
    api: Context,
    caller: Caller,
    ref: AxonId,
    body: s.PublishRequest,
    idempotency_key: Annotated[str | None, Header()] = None,
    x_request_id: Annotated[str | None, Header()] = None,
) -> Response:
    key = publishing.request_key(idempotency_key, x_request_id)
    return await publish_body(api, caller, ref, body, key)


@router.post("/v1/axons/{id}/publish/batch", response_model=s.PublishBatchResult, tags=["events"])
async def publish_batch(
    api: Context, caller: Caller, ref: AxonId, body: s.PublishBatchRequest
) -> Response:
    return await publish_body(api, caller, ref, body, None)


async def publish_body(
    api: ApiContext, caller: Principal, ref: str, body: publishing.PublishBody, key: str | None
) -> Response:
    """What the fast path does for a well-formed body (engine/api/fastpath.py), by the same
    functions."""
    axon_id = await api.axon_for(caller, ref, "publish")
    results = await api.publish_drafts(axon_id, publishing.drafts_of(body, caller, key))
    return Response(publishing.answer(body, results), media_type="application/json")


@router.get("/v1/axons/{id}/events", response_model=s.EventsPage, tags=["events"])
async def list_events(
    api: Context,
    caller: Caller,
    ref: AxonId,
    limit: Annotated[int, Query(ge=1, le=5000)] = 20,
    starting_after: Annotated[SequenceNumber | None, Query(ge=0)] = None,
    include_total_count: bool = False,
    after_sequence: Annotated[
        SequenceNumber | None,
        Query(ge=0, description="extension: oldest first, the events after this sequence"),
    ] = None,
) -> Response:
    """Newest first (Runloop's paging), or oldest first with `after_sequence`."""
    axon_id = await api.axon_for(caller, ref, "read")
    engine = api.engine
    if after_sequence is not None:
        events = await engine.read_events(axon_id, after_sequence, limit)
        last = await engine.last_sequence(axon_id)  # gapless: more iff the page ends before it
        return json_response(
            {
                "events": [e.to_dict() for e in events],
                "has_more": bool(events) and events[-1].sequence < last,
                "total_count": last if include_total_count else None,
            }
        )
    page = await engine.list_events(
        axon_id, limit=limit, starting_after=starting_after, include_total_count=include_total_count
    )
    return json_response(page.model_dump())


def start_after(after_sequence: int | None, last_event_id: str | None) -> int:
    if after_sequence is not None:
        return after_sequence
    if last_event_id:
        try:
            return plain_digits(last_event_id)
        except ValueError as e:
            raise InvalidInput(f"Last-Event-ID: {e}", code=ErrorCode.INVALID_SEQUENCE) from None
    return 0


@router.get(
    "/v1/axons/{id}/subscribe/sse",
    tags=["events"],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`id: <sequence>` and `data: <event JSON>` per event",
        }
    },
)
async def subscribe(
    api: Context,
    caller: Caller,
    ref: AxonId,
    after_sequence: Annotated[SequenceNumber | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Any:
    axon_id = await api.axon_for(caller, ref, "read")
    await api.engine.get_axon(axon_id)  # a missing Axon is a 404, not an empty stream
    after = start_after(after_sequence, last_event_id)
    return EventStream(api.engine.subscribe(axon_id, after), api.stream_limits)


@router.get(
    "/v1/subscribe/sse",
    tags=["events"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def subscribe_many(api: Context, caller: Caller, axons: str | None = None) -> Any:
    """Live events of several Axons (comma-separated ids), or of all of them."""
    caller.require("read")
    wanted = [a for a in (axons or "").split(",") if a] or None
    if caller.axons is not None:
        wanted = [a for a in (wanted or caller.axons) if a in caller.axons] or ["-"]
    stream: AsyncIterator[Event] = api.engine.subscribe_all(wanted)
    return EventStream(stream, api.stream_limits)
