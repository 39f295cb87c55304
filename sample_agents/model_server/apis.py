"""The three wire formats: each reads a request body into a `Turn` and writes a `Reply` as the
API's server-sent events (or one JSON body), the way the official servers frame them.

- Anthropic Messages (`POST /v1/messages`, Claude Code): `event:` + `data:` pairs,
  message_start ... message_stop; tool calls as `tool_use` blocks with `input_json_delta`.
- OpenAI chat completions (`POST /v1/chat/completions`, OpenCode): `data:` chunks with
  `delta`s, a usage chunk when asked for, then `data: [DONE]`.
- Gemini (`POST /v1beta/models/M:streamGenerateContent?alt=sse`, Gemini CLI): `data:`
  chunks of `candidates`, the last with `finishReason`; `generateContent` answers once, in
  JSON mode with an object built from the requested schema.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import orjson

from .script import Reply, Turn, value_for

INPUT_TOKENS = 10
_ids = itertools.count(1)


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


async def _paced(reply: Reply) -> AsyncIterator[str]:
    """The reply's text deltas, `delay_s` apart (the slow stream a cancel interrupts)."""
    for i, delta in enumerate(reply.deltas):
        if i and reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        yield delta


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of blocks/parts with `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(c.get("text", c.get("content", ""))) for c in content)
    return ""


# ---- Anthropic Messages -------------------------------------------------------------------
def anthropic_turn(body: dict[str, Any]) -> Turn:
    """The prompt is the last text block of the last user message: Claude Code ends
    `messages` with a system message, starts user messages with `<system-reminder>` blocks,
    and merges a prompt that follows a failed turn into the failed turn's message; OpenCode
    puts a new prompt after the previous turn's tool result in one message."""
    tools = {t["name"]: t.get("input_schema") or {} for t in body.get("tools") or []}
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    results = [i for i, b in enumerate(blocks) if b.get("type") == "tool_result"]
    prompts = [
        (i, b.get("text", ""))
        for i, b in enumerate(blocks)
        if b.get("type") == "text"
        and not b.get("text", "").lstrip().startswith("<system-reminder>")
    ]
    # a prompt after the last tool result is a new turn (OpenCode sends both in one message)
    result = None
    if results and not (prompts and prompts[-1][0] > results[-1]):
        result = _text_of(blocks[results[-1]].get("content", ""))
    prompt = prompts[-1][1] if prompts else ""
    return Turn(prompt, result, tools, len(body.get("messages") or []))


def _event(kind: str, **fields: Any) -> bytes:
    """One Anthropic stream event: its type is both the SSE event name and `type`."""
    return _sse({"type": kind, **fields}, kind)


async def anthropic_stream(reply: Reply, model: str) -> AsyncIterator[bytes]:
    message = {
        "id": f"msg_scripted_{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
    }
    yield _event("message_start", message=message)
    if reply.kind == "tool":
        block = {"type": "tool_use", "id": f"toolu_scripted_{next(_ids)}", "name": reply.tool}
        yield _event("content_block_start", index=0, content_block={**block, "input": {}})
        arguments = orjson.dumps(reply.arguments).decode()
        delta = {"type": "input_json_delta", "partial_json": arguments}
        yield _event("content_block_delta", index=0, delta=delta)
    else:
        yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        yield _event("ping")
        async for text in _paced(reply):
            yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": text})
    yield _event("content_block_stop", index=0)
    reason = "tool_use" if reply.kind == "tool" else "end_turn"
    stop = {"stop_reason": reason, "stop_sequence": None}
    yield _event("message_delta", delta=stop, usage={"output_tokens": max(1, len(reply.deltas))})
    yield _event("message_stop")


def anthropic_error(reply: Reply) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "invalid_request_error", "message": reply.message}}


# ---- OpenAI chat completions ----------------------------------------------------------------
def openai_turn(body: dict[str, Any]) -> Turn:
    tools = {
        t["function"]["name"]: t["function"].get("parameters") or {}
        for t in body.get("tools") or []
        if t.get("type") == "function"
    }
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        return Turn("", _text_of(messages[-1].get("content", "")), tools, len(messages))
    users = [m for m in messages if m.get("role") == "user"]
    text = _text_of(users[-1].get("content", "")) if users else ""
    return Turn(text, None, tools, len(messages))


async def openai_stream(reply: Reply, model: str, with_usage: bool) -> AsyncIterator[bytes]:
    ident = f"chatcmpl-scripted-{next(_ids)}"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(_chunk(ident, model, choices=[choice]))

    yield chunk({"role": "assistant", "content": ""})
    if reply.kind == "tool":
        call = {"index": 0, "id": f"call_scripted_{next(_ids)}", "type": "function"}
        yield chunk({"tool_calls": [{**call, "function": {"name": reply.tool, "arguments": ""}}]})
        arguments = orjson.dumps(reply.arguments).decode()
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})
    else:
        async for text in _paced(reply):
            yield chunk({"content": text})
    yield chunk({}, "tool_calls" if reply.kind == "tool" else "stop")
    if with_usage:
        output = max(1, len(reply.deltas))
        usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": output}
        usage["total_tokens"] = INPUT_TOKENS + output
        yield _sse(_chunk(ident, model, choices=[], usage=usage))
    yield b"data: [DONE]\n\n"


def _chunk(ident: str, model: str, **fields: Any) -> dict[str, Any]:
    return {"id": ident, "object": "chat.completion.chunk", "created": 0, "model": model, **fields}


def openai_error(reply: Reply) -> dict[str, Any]:
    return {"error": {"message": reply.message, "type": "invalid_request_error", "code": None}}


# ---- Gemini ---------------------------------------------------------------------------------
def gemini_turn(body: dict[str, Any]) -> Turn:
    tools = {
        f["name"]: f.get("parametersJsonSchema") or f.get("parameters") or {}
        for t in body.get("tools") or []
        for f in t.get("functionDeclarations") or []
    }
    contents = body.get("contents") or []
    last_parts = contents[-1].get("parts") or [] if contents else []
    responses = [p["functionResponse"] for p in last_parts if "functionResponse" in p]
    if responses:
        response = responses[-1].get("response") or {}
        output = response.get("output", response) if isinstance(response, dict) else response
        text = output if isinstance(output, str) else orjson.dumps(output).decode()
        return Turn("", text, tools, len(contents))
    users = [c for c in contents if c.get("role") == "user"]
    texts = [p["text"] for p in users[-1].get("parts") or [] if "text" in p] if users else []
    return Turn(texts[-1] if texts else "", None, tools, len(contents))


def gemini_json_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    return schema if isinstance(schema, dict) else None


def _gemini_chunk(parts: list[dict[str, Any]], model: str, last: bool, output: int) -> bytes:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if last:
        candidate["finishReason"] = "STOP"
    usage = {"promptTokenCount": INPUT_TOKENS, "candidatesTokenCount": output}
    usage["totalTokenCount"] = INPUT_TOKENS + output
    return _sse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model})


async def gemini_stream(reply: Reply, model: str) -> AsyncIterator[bytes]:
    if reply.kind == "tool":
        call = {"functionCall": {"name": reply.tool, "args": reply.arguments}}
        yield _gemini_chunk([call], model, last=True, output=1)
        return
    count = len(reply.deltas)
    i = 0
    async for text in _paced(reply):
        i += 1
        yield _gemini_chunk([{"text": text}], model, last=i == count, output=i)


def gemini_whole(reply: Reply, model: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """A `generateContent` answer: the reply's text, or in JSON mode an object of the schema."""
    text = orjson.dumps(value_for(schema)).decode() if schema else reply.text
    parts: list[dict[str, Any]] = [{"text": text}]
    if reply.kind == "tool" and not schema:
        parts = [{"functionCall": {"name": reply.tool, "args": reply.arguments}}]
    usage = {"promptTokenCount": INPUT_TOKENS, "candidatesTokenCount": 1, "totalTokenCount": 11}
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}


def gemini_error(reply: Reply) -> dict[str, Any]:
    status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
    word = status.get(reply.status, "INTERNAL")
    return {"error": {"code": reply.status, "message": reply.message, "status": word}}
