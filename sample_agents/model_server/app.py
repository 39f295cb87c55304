"""The scripted model server's HTTP side: one Starlette app that routes by path suffix (so any
base-URL prefix works), answers through `script.decide`, and logs every request as a JSON
line (what the agent sent and what it got), which the tests read to assert on the wire."""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import apis
from .script import Reply, Turn, decide

PROMPT_EXCERPT = 4000
ANSWERS = "/v1/messages, /v1/chat/completions, /v1beta/models/M:streamGenerateContent"


class RequestLog:
    """JSON lines, one per request, flushed at once so a reader sees them during a test."""

    def __init__(self, sink: IO[str]) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def write(self, **entry: Any) -> None:
        with self._lock:
            line = orjson.dumps({"n": next(self._numbers), **entry}).decode()
            self._sink.write(line + "\n")
            self._sink.flush()


def create_app(log: RequestLog) -> Starlette:
    async def answer(request: Request) -> Response:
        path = request.url.path
        entry: dict[str, Any] = {"method": request.method, "path": path, "key": _key(request)}
        if request.method != "POST":
            log.write(**entry, status=404)
            return _not_found(path)
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError as e:
            log.write(**entry, status=400, error=str(e))
            return JSONResponse({"error": {"message": f"invalid JSON body: {e}"}}, 400)
        if path.endswith("/messages/count_tokens"):
            log.write(**entry, api="anthropic", status=200)
            return JSONResponse({"input_tokens": 42})
        if path.endswith(":countTokens"):
            log.write(**entry, api="gemini", status=200)
            return JSONResponse({"totalTokens": 42})
        handler = _handler_for(path)
        if handler is None:
            log.write(**entry, status=404)
            return _not_found(path)
        return handler(body, entry, log)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "HEAD", "POST"])])


Handler = Callable[[dict[str, Any], dict[str, Any], RequestLog], Response]


def _handler_for(path: str) -> Handler | None:
    if path.endswith("/messages"):
        return _anthropic
    if path.endswith("/chat/completions"):
        return _openai
    if path.endswith((":streamGenerateContent", ":generateContent")):
        return _gemini
    return None


def _key(request: Request) -> str | None:
    """The credential the request carried, however its API sends it (logged so the tests can
    tell whether an agent, or a gateway in front of it, sent the real key)."""
    for header in ("x-api-key", "x-goog-api-key"):
        if value := request.headers.get(header):
            return value
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value
    return request.query_params.get("key")


def _not_found(path: str) -> JSONResponse:
    message = f"the scripted model server has nothing at {path}; it answers {ANSWERS}"
    return JSONResponse({"error": {"message": message}}, 404)


def _decided(api: str, turn: Turn, model: str, entry: dict[str, Any], log: RequestLog) -> Reply:
    reply = decide(turn)
    log.write(
        **entry,
        api=api,
        model=model,
        tools=sorted(turn.tools),
        messages=turn.messages,
        prompt=turn.user_text[-PROMPT_EXCERPT:],
        tool_result=turn.tool_result,
        reply=reply.describe(),
        status=reply.status,
    )
    return reply


def _sse(chunks: AsyncIterator[bytes]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache"}
    return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)


def _anthropic(body: dict[str, Any], entry: dict[str, Any], log: RequestLog) -> Response:
    model = str(body.get("model", "scripted"))
    reply = _decided("anthropic", apis.anthropic_turn(body), model, entry, log)
    return _streamed(body, reply, apis.anthropic_error, lambda: apis.anthropic_stream(reply, model))


def _openai(body: dict[str, Any], entry: dict[str, Any], log: RequestLog) -> Response:
    model = str(body.get("model", "scripted"))
    reply = _decided("openai", apis.openai_turn(body), model, entry, log)
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return _streamed(
        body, reply, apis.openai_error, lambda: apis.openai_stream(reply, model, with_usage)
    )


def _gemini(body: dict[str, Any], entry: dict[str, Any], log: RequestLog) -> Response:
    path = entry["path"]
    model = path.rsplit("/", 1)[-1].split(":", 1)[0]
    reply = _decided("gemini", apis.gemini_turn(body), model, entry, log)
    if reply.kind == "error":
        return JSONResponse(apis.gemini_error(reply), reply.status)
    if path.endswith(":generateContent"):
        return JSONResponse(apis.gemini_whole(reply, model, apis.gemini_json_schema(body)))
    return _sse(apis.gemini_stream(reply, model))


def _streamed(
    body: dict[str, Any],
    reply: Reply,
    error: Callable[[Reply], dict[str, Any]],
    stream: Callable[[], AsyncIterator[bytes]],
) -> Response:
    """The reply as server-sent events; an error reply (or a request that does not ask for a
    stream: the scripted server only streams) in the API's error format."""
    if reply.kind != "error" and not body.get("stream"):
        reply = Reply("error", status=400, message="the scripted model server only streams")
    if reply.kind == "error":
        return JSONResponse(error(reply), reply.status)
    return _sse(stream())
