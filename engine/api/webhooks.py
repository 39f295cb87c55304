"""Webhooks (CONTRACT §4.2): what makes one trustworthy, apart from the route that takes it.

A source with a secret (`AXONS_WEBHOOK_SECRET_<SOURCE>`) is authenticated by its HMAC alone,
since GitHub and its kind cannot send a bearer token. Its events carry the author
`webhook:<source>`, which nothing else can claim: token names may not start with `webhook:`,
and over TCP `/publish` may neither use a source reserved for a signed webhook nor an
idempotency key in the webhooks' namespace. A signed body seen again under a new delivery id
within the replay window is refused: capturing one request is not a way to repeat it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

from engine.errors import Conflict, ErrorCode, Forbidden, InvalidInput, Unauthorized
from engine.models import Draft
from engine.tokens import RESERVED_NAME_PREFIX

WEBHOOK_PREFIX = RESERVED_NAME_PREFIX  # verified authors and delivery keys live under it
MAX_REMEMBERED = 100_000


def normalise_source(source: str) -> str:
    """Sources are case-insensitive, so `/webhook/GitHub` is `github` and meets its secret."""
    return source.lower()


def normalise_secrets(secrets: dict[str, str] | None) -> dict[str, str]:
    return {normalise_source(source): secret for source, secret in (secrets or {}).items()}


def verified_author(source: str) -> str:
    return f"{WEBHOOK_PREFIX}{source}"


def delivery_key(source: str, delivery: str | None) -> str | None:
    """Delivery ids in their own idempotency namespace: a client's key cannot take one."""
    return f"{WEBHOOK_PREFIX}{source}:{delivery}" if delivery else None


def check_signature(secret: str, body: bytes, signature: str | None, source: str) -> None:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized(
            f"the X-Hub-Signature-256 of this {source} webhook does not match its configured "
            "secret (sign the exact body with HMAC-SHA256)"
        )


def parse_body(raw: bytes) -> tuple[str, Any]:
    """The payload (the sender's own bytes: what its signature covers, nothing lost to
    re-encoding) and the parsed body; a body that is not UTF-8 JSON is a clear 400."""
    if not raw.strip():
        return "null", None
    try:
        return raw.decode("utf-8"), orjson.loads(raw)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        raise InvalidInput(
            "a webhook body must be JSON text in UTF-8; check the sender's content type "
            "(application/json) and encoding",
            code=ErrorCode.MALFORMED_JSON,
        ) from None


def check_client_drafts(drafts: Iterable[Draft], reserved_sources: Iterable[str]) -> None:
    """What a token's `/publish` may not do: speak as a signed webhook's source, or take an
    idempotency key from the webhooks' namespace."""
    reserved = set(reserved_sources)
    for d in drafts:
        if normalise_source(d.source) in reserved:
            raise Forbidden(
                f"source {d.source!r:.80} is reserved for the signed webhook "
                f"/webhook/{normalise_source(d.source)}; publish under another source",
                code=ErrorCode.RESERVED_SOURCE,
            )
        if d.idempotency_key is not None and d.idempotency_key.startswith(WEBHOOK_PREFIX):
            raise InvalidInput(
                f"idempotency keys starting with {WEBHOOK_PREFIX!r} belong to webhook "
                "deliveries; use another key",
                code=ErrorCode.RESERVED_IDEMPOTENCY_KEY,
            )


class ReplayGuard:
    """Remembers the signed bodies of the last `window_s` seconds, per Axon and source."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: OrderedDict[tuple[str, str, str], tuple[float, str | None]] = OrderedDict()

    def admit(self, axon_id: str, source: str, body: bytes, delivery: str | None) -> None:
        """Refuse (409) a body already accepted under another (or no) delivery id; the same
        delivery id again is a retry, which the idempotency key answers."""
        now = time.monotonic()
        self._forget_before(now - self.window_s)
        key = (axon_id, source, hashlib.sha256(body).hexdigest())
        seen = self._seen.get(key)
        if seen is not None and (delivery is None or seen[1] != delivery):
            raise Conflict(
                f"this signed {source} body was already delivered "
                f"{now - seen[0]:.0f} s ago under another delivery id; a replay is refused",
                code=ErrorCode.WEBHOOK_REPLAYED,
            )
        self._seen[key] = (now, delivery)
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)

    def forget(self, axon_id: str, source: str, body: bytes) -> None:
        """The delivery was not recorded after all (the publish failed): it may come again."""
        self._seen.pop((axon_id, source, hashlib.sha256(body).hexdigest()), None)

    def _forget_before(self, cutoff: float) -> None:
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest[0] >= cutoff:
                return
            self._seen.popitem(last=False)
