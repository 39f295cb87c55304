"""The scripted model server (sample_agents/model_server) over real HTTP: the three streaming
APIs as their official servers frame them, the script chosen by words in the prompt, the
errors, and the request log the real-agent tests assert on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import connect_sse

pytest.register_assert_rewrite("tests.acp_real_support")

from tests.acp_real_support import HELLO, ModelServer, model_server  # noqa: E402

BASH = {"name": "Bash", "input_schema": {"properties": {"command": {}, "description": {}}}}
WRITE = {"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    with model_server(tmp_path_factory.mktemp("model") / "requests.jsonl") as running:
        yield running


@pytest.fixture
def http(server: ModelServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def sse(http: httpx.Client, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(event name, data) of every server-sent event of a streamed answer."""
    with connect_sse(http, "POST", path, json=body) as source:
        assert source.response.status_code == 200
        return [
            (e.event, e.data if e.data == "[DONE]" else orjson.loads(e.data))
            for e in source.iter_sse()
        ]


def anthropic(text: str, tools: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    # Claude Code's shape: reminders first in the user message, a system message last.
    user = [{"type": "text", "text": "<system-reminder>be brief</system-reminder>"}]
    messages = [{"role": "user", "content": [*user, {"type": "text", "text": text}]}]
    return {"model": "m", "stream": True, "tools": tools, **extra, "messages": messages}


def test_it_listens_on_loopback_only(server: ModelServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")


def test_anthropic_streams_text_as_the_messages_api_frames_it(http: httpx.Client) -> None:
    events = sse(http, "/v1/messages", anthropic("hello", [BASH]))
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == HELLO
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_anthropic_shell_tool_call_and_its_result(http: httpx.Client) -> None:
    events = sse(http, "/v1/messages", anthropic("RUN_SHELL: touch made", [BASH, WRITE]))
    (start,) = [d for n, d in events if n == "content_block_start"]
    assert start["content_block"]["type"] == "tool_use"
    assert start["content_block"]["name"] == "Bash"
    arguments = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert orjson.loads(arguments)["command"] == "touch made"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

    result = {"type": "tool_result", "tool_use_id": "t1", "content": "first line\nsecond"}
    body = anthropic("", [BASH])
    body["messages"] = [{"role": "user", "content": [result]}]
    events = sse(http, "/v1/messages", body)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "TOOL_DONE: first line"


def test_an_mcp_tool_is_called_by_the_end_of_its_name(http: httpx.Client) -> None:
    """`MCP_CALL: read_ticket {...}` calls the offered tool whose name ends in _read_ticket,
    however the agent prefixed it (Claude: mcp__<server>__<tool>)."""
    read = {"name": "mcp__axons__tickets__read_ticket", "input_schema": {}}
    asked = anthropic('MCP_CALL: read_ticket {"ticket_id": "T-1"}', [BASH, read])
    events = sse(http, "/v1/messages", asked)
    (start,) = [d for n, d in events if n == "content_block_start"]
    assert start["content_block"]["name"] == "mcp__axons__tickets__read_ticket"
    arguments = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert orjson.loads(arguments) == {"ticket_id": "T-1"}
    # not offered (the gateway did not list it): plain text
    events = sse(http, "/v1/messages", anthropic("MCP_CALL: delete_ticket", [BASH, read]))
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == HELLO


def test_markers_act_only_when_tools_are_offered(http: httpx.Client) -> None:
    """An agent's side requests (titles, classifiers) offer no tools: they get plain text."""
    events = sse(http, "/v1/messages", anthropic("FAIL_HTTP_400 RUN_SHELL: ls", []))
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == HELLO


def test_openai_tool_call_with_the_arguments_its_schema_names(http: httpx.Client) -> None:
    tool = {
        "type": "function",
        "function": {"name": "write", "parameters": {"properties": {"filePath": {}}}},
    }
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [tool],
        "messages": [{"role": "user", "content": "WRITE_FILE /tmp/x.txt"}],
    }
    events = [data for _, data in sse(http, "/v1/chat/completions", body)]
    assert events[-1] == "[DONE]"
    deltas = [c["delta"] for e in events[:-1] for c in e["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "write"
    arguments = orjson.loads("".join(c["function"].get("arguments", "") for c in calls))
    assert arguments == {"filePath": "/tmp/x.txt", "content": "written by the scripted model\n"}
    assert events[-2]["usage"]["total_tokens"] == 11  # the usage chunk, as asked


def test_gemini_stream_and_json_mode(http: httpx.Client) -> None:
    contents = [{"role": "user", "parts": [{"text": "hello"}]}]
    tools = [{"functionDeclarations": [{"name": "run_shell_command"}]}]
    path = "/v1beta/models/g:streamGenerateContent"
    events = [data for _, data in sse(http, f"{path}?alt=sse", {"contents": contents})]
    text = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
    assert text == HELLO and events[-1]["candidates"][0]["finishReason"] == "STOP"

    schema = {
        "type": "object",
        "properties": {"next_speaker": {"type": "string", "enum": ["model", "user"]}},
    }
    body = {"contents": contents, "generationConfig": {"responseJsonSchema": schema}}
    answer = http.post("/v1beta/models/g:generateContent", json=body).json()
    reply = answer["candidates"][0]["content"]["parts"][0]["text"]
    assert orjson.loads(reply) == {"next_speaker": "user"}

    failing = [{"role": "user", "parts": [{"text": "FAIL_HTTP_400"}]}]
    response = http.post(f"{path}?alt=sse", json={"contents": failing, "tools": tools})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": 400,
        "message": "scripted failure 400",
        "status": "INVALID_ARGUMENT",
    }


def test_bad_requests_get_a_clear_error(http: httpx.Client) -> None:
    response = http.post("/v1/messages", content=b"{not json")
    assert response.status_code == 400 and "invalid JSON" in response.text
    response = http.post("/v1/nothing", json={})
    assert response.status_code == 404 and "/v1/chat/completions" in response.text
    response = http.post("/v1/messages", json={**anthropic("hi", [BASH]), "stream": False})
    assert response.status_code == 400 and "only streams" in response.text


def test_every_request_is_logged(http: httpx.Client, server: ModelServer) -> None:
    sse(http, "/v1/messages", anthropic("RUN_SHELL: echo logged", [BASH]))
    entry = server.asked("RUN_SHELL: echo logged")[-1]
    assert entry["api"] == "anthropic" and entry["path"] == "/v1/messages"
    assert entry["tools"] == ["Bash"] and entry["reply"] == "tool Bash"
    assert entry["status"] == 200 and entry["messages"] == 1
    numbers = [r["n"] for r in server.requests()]
    assert numbers == list(range(1, len(numbers) + 1))
