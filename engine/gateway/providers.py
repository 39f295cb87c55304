"""The provider proxy: `/gw/<PREFIX>/<path>` of an admitted agent goes to the upstream of its
gateway PREFIX, with the agent's opaque token swapped for the real key.

- The token is checked first (401 in the provider's error format otherwise); the request
  goes only under the upstream's base path (no `.`/`..` segments, no encoded slashes or
  dots, no other host: 400 otherwise).
- Limits per agent and gateway: `requests_per_minute` (a sliding minute) and `token_budget`
  (tokens the answers reported, as the Axon's log records them); over either, 429 in the provider's
  format and a `gateway.limited` event.
- The answer streams back as it arrives (SSE token by token); hop-by-hop headers are dropped
  both ways. The upstream is asked for an unencoded answer, so the token usage can be read as
  it passes (Anthropic `usage`, OpenAI `usage`, Gemini `usageMetadata`, in SSE or JSON).
- Each call is a `gateway.request` system event from the agent: provider, method, path (no
  query), status, duration, bytes both ways, usage when reported. Never a key, never a body.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import orjson
import yarl
from starlette.types import Receive, Scope, Send

from engine.api.gate import send_json
from engine.gateway.server import Grant, Meter, token_of
from engine.models import GatewayApi
from engine.runtime.base import AgentKey

if TYPE_CHECKING:
    from engine.gateway.server import GatewayServer

HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    )
)
# never forwarded upstream: the token's headers, the host, and what the gateway sets itself
DROPPED_UP = HOP_BY_HOP | {
    b"host",
    b"authorization",
    b"x-api-key",
    b"x-goog-api-key",
    b"accept-encoding",
    b"expect",
}
# what aiohttp would add on its own; the agent's own headers go through as they are
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Content-Type")
WHOLE_BODY_MAX = 8 << 20  # a request body up to this size goes upstream in one write
JSON_USAGE_MAX = 8 << 20  # a non-streamed answer is read for usage up to this size
SSE_LINE_MAX = 1 << 20  # a longer SSE line is passed on but not read


class ProviderProxy:
    def __init__(self, server: GatewayServer) -> None:
        self.server = server

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        prefix: str,
        tail: str,
        only: AgentKey | None,
    ) -> None:
        began = time.monotonic()
        grant = self.server.grant_for(token_of(scope), only)
        if grant is None:
            await _error(
                send,
                _api_of_request(scope),
                401,
                "the gateway token is missing, wrong or revoked (it is the agent's "
                f"{prefix}_API_KEY, renewed at each start of the agent)",
            )
            return
        gateway = grant.gateway(prefix)
        if gateway is None:
            declared = ", ".join(grant.spec.gateways) or "none"
            await _error(
                send,
                _api_of_request(scope),
                404,
                f"agent {grant.key.name} has no gateway {prefix[:60]!r} (declared: {declared})",
            )
            return
        api: GatewayApi = gateway.api or "openai"
        raw_tail = _raw_tail(scope, prefix)
        target = _target(gateway.upstream, raw_tail, scope.get("query_string", b""))
        if target is None:
            await _error(
                send,
                api,
                400,
                f"path {tail[:200]!r} is outside the upstream {gateway.upstream}: the gateway "
                "forwards only paths below it (no . or .. segments, no encoded / . or \\)",
            )
            return
        meter = grant.meters[prefix]
        if await self._over_limit(grant, prefix, meter, api, send):
            return
        real_key = os.environ.get(gateway.secret)
        if not real_key:
            await _error(
                send,
                api,
                502,
                f"the engine's environment no longer holds {gateway.secret}; set it and restart "
                "the engine",
            )
            await self._record(grant, prefix, scope, tail, 502, began, 0, 0, None, "no key")
            return
        meter.window.append(time.monotonic())
        await self._forward(scope, receive, send, grant, prefix, tail, target, real_key, began)

    async def _over_limit(
        self, grant: Grant, prefix: str, meter: Meter, api: GatewayApi, send: Send
    ) -> bool:
        gateway = grant.spec.gateways[prefix]
        now = time.monotonic()
        why: dict[str, Any] | None = None
        retry_after: int | None = None
        if gateway.token_budget is not None and meter.tokens >= gateway.token_budget:
            why = {"limit": "token_budget", "allowed": gateway.token_budget, "used": meter.tokens}
            message = (
                f"agent {grant.key.name} spent its token budget for {prefix} "
                f"({meter.tokens} of {gateway.token_budget}); raise token_budget in its spec"
            )
        elif gateway.requests_per_minute is not None:
            used = meter.requests_last_minute(now)
            if used >= gateway.requests_per_minute:
                retry_after = max(1, int(meter.window[0] + 60.0 - now + 0.999))
                why = {
                    "limit": "requests_per_minute",
                    "allowed": gateway.requests_per_minute,
                    "used": used,
                    "retry_after_s": retry_after,
                }
                message = (
                    f"agent {grant.key.name} made {used} requests to {prefix} in the last "
                    f"minute (allowed {gateway.requests_per_minute}); retry in {retry_after}s"
                )
        if why is None:
            return False
        await _error(send, api, 429, message, retry_after=retry_after, budget=why["limit"])
        await self.server.event(grant, "gateway.limited", {"provider": prefix, **why})
        return True

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        grant: Grant,
        prefix: str,
        tail: str,
        target: str,
        real_key: str,
        began: float,
    ) -> None:
        gateway = grant.spec.gateways[prefix]
        api: GatewayApi = gateway.api or "openai"
        headers = [(k, v) for k, v in scope["headers"] if k not in DROPPED_UP]
        connection = _connection_tokens(scope["headers"])
        if connection:
            headers = [(k, v) for k, v in headers if k not in connection]
        value = f"Bearer {real_key}" if gateway.header == "authorization" else real_key
        headers.append((gateway.header.encode(), value.encode()))
        headers.append((b"accept-encoding", b"identity"))  # so usage can be read in passing
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        chunked = any(k == b"transfer-encoding" for k, _ in scope["headers"])
        sent_in = 0

        async def streamed() -> Any:
            nonlocal sent_in
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionResetError("the agent went away mid-request")
                chunk = message.get("body", b"")
                sent_in += len(chunk)
                if chunk:
                    yield chunk
                if not message.get("more_body"):
                    return

        body: Any = None
        if length is not None and length.isdigit() and int(length) <= WHOLE_BODY_MAX:
            body = b"".join([chunk async for chunk in streamed()])  # one write upstream
        elif length is not None or chunked:
            body = streamed()
        session = self.server.http()
        status, sent_out, usage, error = 502, 0, None, None
        try:
            response = await session.request(
                scope["method"],
                yarl.URL(target, encoded=True),  # the path exactly as checked
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=body,
                allow_redirects=False,
                skip_auto_headers=SKIP_AUTO_HEADERS,
            )
        except (aiohttp.ClientError, TimeoutError, ConnectionError, OSError) as e:
            error = f"upstream unreachable: {type(e).__name__}"
            await _error(send, api, 502, f"the gateway could not reach {gateway.upstream}: {e}")
            await self._record(grant, prefix, scope, tail, 502, began, sent_in, 0, None, error)
            return
        status = response.status
        meter = UsageMeter(response.headers.get("content-type", ""))
        gone = asyncio.create_task(_disconnected(receive))
        try:
            named = _connection_tokens(response.raw_headers)
            out = [
                (k, v)
                for k, v in response.raw_headers
                if k.lower() not in HOP_BY_HOP and k.lower() not in named
            ]
            await send({"type": "http.response.start", "status": status, "headers": out})
            async for chunk in response.content.iter_any():
                if gone.done():
                    error = "the agent closed the connection"
                    break
                sent_out += len(chunk)
                meter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, TimeoutError, ConnectionError, OSError) as e:
            error = f"stream cut: {type(e).__name__}"
        finally:
            gone.cancel()
            if error is None:
                response.release()  # the connection goes back to the pool
            else:
                response.close()
        usage = meter.usage()
        if usage:
            grant.meters[prefix].tokens += usage.get("total_tokens", 0)
        await self._record(
            grant, prefix, scope, tail, status, began, sent_in, sent_out, usage, error
        )

    async def _record(
        self,
        grant: Grant,
        prefix: str,
        scope: Scope,
        tail: str,
        status: int,
        began: float,
        bytes_in: int,
        bytes_out: int,
        usage: dict[str, int] | None,
        error: str | None,
    ) -> None:
        body: dict[str, Any] = {
            "provider": prefix,
            "method": scope["method"],
            "path": tail[:500],
            "status": status,
            "duration_ms": round((time.monotonic() - began) * 1000, 2),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
        }
        if usage:
            body["usage"] = usage
        if error:
            body["error"] = error
        await self.server.event(grant, "gateway.request", body)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _connection_tokens(headers: Any) -> frozenset[bytes]:
    """Headers named in `Connection:` are hop-by-hop too."""
    named: set[bytes] = set()
    for k, v in headers:
        if k.lower() == b"connection":
            named.update(t.strip().lower() for t in v.split(b",") if t.strip())
    return frozenset(named)


def _raw_tail(scope: Scope, prefix: str) -> str:
    """The request's path after /gw/PREFIX, as the agent encoded it."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    head = f"/gw/{prefix}".encode()
    tail = raw[len(head) :] if raw.startswith(head) else raw
    return tail.decode("latin-1") or "/"


def _target(upstream: str, raw_tail: str, query: bytes) -> str | None:
    """The upstream URL of a request, or None when the path would leave the upstream."""
    lowered = raw_tail.lower()
    if (
        not raw_tail.startswith("/")
        or "\\" in raw_tail
        or "//" in raw_tail
        or any(bad in lowered for bad in ("%2e", "%2f", "%5c", "%00"))
        or any(segment in (".", "..") for segment in raw_tail.split("/"))
        or any(c in raw_tail for c in "?#")
    ):
        return None
    base = upstream.rstrip("/")
    kept = [
        (k, v) for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k != "key"
    ]
    url = base + raw_tail + (f"?{urlencode(kept)}" if kept else "")
    want, got = urlsplit(upstream), urlsplit(url)
    if (got.scheme, got.netloc) != (want.scheme, want.netloc) or not got.path.startswith(
        want.path.rstrip("/") + "/"
    ):
        return None
    return url


def _api_of_request(scope: Scope) -> GatewayApi:
    """The error format to answer in before the gateway is known: by how the key was sent."""
    names = {k for k, _ in scope["headers"]}
    if b"x-api-key" in names:
        return "anthropic"
    if b"x-goog-api-key" in names or b"key=" in scope.get("query_string", b""):
        return "gemini"
    return "openai"


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_OPENAI_TYPES = {
    400: ("invalid_request_error", "invalid_path"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_gateway"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
}


def error_body(
    api: GatewayApi, status: int, message: str, budget: str | None = None
) -> dict[str, Any]:
    """An error as the provider's own API writes it, so the agent's SDK reports it well."""
    if api == "anthropic":
        return {
            "type": "error",
            "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message},
        }
    if api == "gemini":
        return {
            "error": {
                "code": status,
                "message": message,
                "status": _GEMINI_STATUS.get(status, "UNAVAILABLE"),
            }
        }
    # OpenAI's own codes, not Axons' ErrorCode: the agent's SDK reads them
    kind, openai_code = _OPENAI_TYPES.get(status, ("api_error", "gateway_error"))
    if budget == "token_budget":
        openai_code = "insufficient_quota"
    return {"error": {"message": message, "type": kind, "param": None, "code": openai_code}}


async def _error(
    send: Send,
    api: GatewayApi,
    status: int,
    message: str,
    *,
    retry_after: int | None = None,
    budget: str | None = None,
) -> None:
    headers = [] if retry_after is None else [(b"retry-after", str(retry_after).encode())]
    await send_json(send, status, error_body(api, status, message, budget), headers)


class UsageMeter:
    """Token usage read from an answer as it passes: SSE line by line (only `data:` lines
    that mention usage are parsed), a JSON answer once it is whole. Nothing is held back."""

    def __init__(self, content_type: str) -> None:
        self.sse = content_type.startswith("text/event-stream")
        self.json = not self.sse and "json" in content_type
        self._partial = b""
        self._whole: list[bytes] = []
        self._size = 0
        self._found: dict[str, int] = {}

    def feed(self, chunk: bytes) -> None:
        if self.sse:
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > SSE_LINE_MAX:
                self._partial = b""
            for line in lines:
                if line.startswith(b"data:") and b"sage" in line:  # usage, usageMetadata
                    self._read(line[5:])
        elif self.json and self._size + len(chunk) <= JSON_USAGE_MAX:
            self._whole.append(chunk)
            self._size += len(chunk)
        else:
            self.json = False

    def usage(self) -> dict[str, int] | None:
        if self.sse and self._partial.startswith(b"data:"):
            self._read(self._partial[5:])
        if self.json and self._whole:
            self._read(b"".join(self._whole))
        if not self._found:
            return None
        found = dict(self._found)
        if "total_tokens" not in found:
            found["total_tokens"] = sum(
                found.get(k, 0)
                for k in (
                    "input_tokens",
                    "output_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                )
            )
        return found

    def _read(self, data: bytes) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict):
            self._found.update(usage_of(obj))


def usage_of(obj: dict[str, Any]) -> dict[str, int]:
    """The usage one JSON answer (or one SSE event) reports, in one vocabulary:
    input_tokens, output_tokens, total_tokens (and Anthropic's cache counts)."""
    gemini = obj.get("usageMetadata")
    if isinstance(gemini, dict):
        return _ints(
            {
                "input_tokens": gemini.get("promptTokenCount"),
                "output_tokens": (gemini.get("candidatesTokenCount") or 0)
                + (gemini.get("thoughtsTokenCount") or 0),
                "total_tokens": gemini.get("totalTokenCount"),
            }
        )
    usage = obj.get("usage")
    if usage is None and isinstance(obj.get("message"), dict):  # Anthropic's message_start
        usage = obj["message"].get("usage")
    if not isinstance(usage, dict):
        return {}
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # OpenAI
        return _ints(
            {
                "input_tokens": usage.get("prompt_tokens"),
                "output_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
            }
        )
    return _ints(  # Anthropic: message_delta's counts are cumulative, so later ones win
        {
            k: usage.get(k)
            for k in (
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
            )
        }
    )


def _ints(values: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}
