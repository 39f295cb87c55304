"""Publish, defined once. The fast path (`fastpath.py`) and the FastAPI routes
(`routes/events.py`) both validate a body with the same models, turn it into drafts with
`drafts_of` and answer with `answer`, so a body means the same whichever serves it.

The fast path serves only what `well_formed` accepts, which is exactly what the route's own
validation accepts; anything else goes to the route, so every refusal is worded once, by the
app (tests/test_http_publish_parity.py posts the same bodies both ways).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from email.message import Message

import orjson
from pydantic import ValidationError

from engine.api.schemas import PublishBatchRequest, PublishRequest
from engine.models import Draft, PublishResult
from engine.tokens import Principal

PublishBody = PublishRequest | PublishBatchRequest


def request_key(idempotency_key: str | None, x_request_id: str | None) -> str | None:
    """The idempotency key a request's headers give (Runloop's clients send X-Request-Id)."""
    return idempotency_key or x_request_id


def drafts_of(body: PublishBody, caller: Principal, key: str | None) -> list[Draft]:
    """The drafts a publish asks for, authored by the caller. A single event takes the
    headers' key over its own field; a batch's events carry their own keys."""
    if isinstance(body, PublishBatchRequest):
        return [_draft(event, caller, event.idempotency_key) for event in body.events]
    return [_draft(body, caller, key or body.idempotency_key)]


def _draft(event: PublishRequest, caller: Principal, key: str | None) -> Draft:
    return Draft(event.event_type, event.payload, event.source, event.origin, key, caller.name)


def answer(body: PublishBody, results: Sequence[PublishResult]) -> bytes:
    """The response body: a single event's result, or a batch's results in order."""
    if isinstance(body, PublishBatchRequest):
        return orjson.dumps({"results": [r.to_dict() for r in results]})
    return orjson.dumps(results[0].to_dict())


@functools.lru_cache(maxsize=64)
def is_json(content_type: str | None) -> bool:
    """Whether the route reads the body as JSON: no content type, `application/json` or
    `application/*+json` (FastAPI's rule; any other body fails its validation). Cached:
    clients send the same few values, and parsing one with `email.message` costs 3.5 us."""
    if not content_type:
        return True
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def well_formed(raw: bytes, *, batch: bool) -> PublishBody | None:
    """The body as the route would validate it, or None when the route should explain what
    is wrong with it. orjson refuses some JSON Python's parser takes (NaN, huge integers):
    those go to the route too, which parses them its own way."""
    try:
        data = orjson.loads(raw)
        if batch:
            return PublishBatchRequest.model_validate(data)
        return PublishRequest.model_validate(data)
    except (orjson.JSONDecodeError, ValidationError):
        return None
