"""What the console shows of ACP agents (issue 11): every `session/update` kind as one
readable line, from a real run of the sample ACP agent and from the SDK's own models for the
kinds it does not send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import acp
import orjson
import pytest
from acp.schema import (
    AgentPlanContentUpdate,
    AvailableCommand,
    AvailableCommandsUpdate,
    ConfigOptionUpdate,
    CurrentModeUpdate,
    PlanUpdateMarkdown,
    SessionConfigOptionSelect,
    SessionConfigSelectOption,
    SessionInfoUpdate,
    UsageUpdate,
)

from engine import Engine

pytest.register_assert_rewrite("tests.agents_support", "tests.acp_support")

from axons_tui.widgets.acp_text import (  # noqa: E402
    message_chunk,
    session_update_text,
    usage_text,
)
from tests.acp_support import acp_spec, permission_request, turn_end  # noqa: E402
from tests.agents_support import body, describe, publish, watching  # noqa: E402


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(tmp_path / "home", agent_runtime="process") as eng:
        yield eng


def wire(update: Any) -> dict[str, Any]:
    """A session/update's params as the SDK puts them on the wire (and the broker records)."""
    dumped: dict[str, Any] = update.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"sessionId": "s1", "update": dumped}


def line(payload: dict[str, Any]) -> str:
    rendered = session_update_text(payload)
    assert rendered is not None, payload
    assert "\n" not in rendered.plain
    return rendered.plain


async def test_every_update_of_a_real_run_reads_as_one_line(engine: Engine, tmp_path: Path) -> None:
    axon_id = (await engine.create_axon("acp")).id
    await engine.agents.add(acp_spec("acp", "process", workdir=str(tmp_path)))
    (tmp_path / "notes.txt").write_text("x")
    async with watching(engine, axon_id) as watch:
        sequence = await publish(engine, axon_id, "TOOL FUTURE RISKY BIG [bold]hi[/]", "web")
        request = await permission_request(watch, "acp", sequence)
        await engine.agents.permit(axon_id, request.sequence, "allow", source="tui")
        end = await turn_end(watch, "acp", sequence)
        assert end.event_type == "turn.completed", describe(watch.events)
    seen = {
        body(e)["update"]["sessionUpdate"]: []
        for e in watch.events
        if e.event_type == "session/update"
    }
    for e in watch.events:
        if e.event_type == "session/update":
            seen[body(e)["update"]["sessionUpdate"]].append(line(body(e)))
    assert set(seen) == {
        "plan",
        "future_kind",
        "tool_call",
        "tool_call_update",
        "agent_message_chunk",
    }, describe(watch.events)
    assert seen["plan"] == ["plan: ✓ Read the message · ▸ Answer it"]
    assert seen["future_kind"] == ['future_kind {"x":1}']  # a kind no SDK models, plainly
    target = tmp_path / "approved.txt"
    assert seen["tool_call"] == [
        "▸ List the work dir (read) pending",
        f"▸ Write {target} (edit) pending",
    ]
    assert seen["tool_call_update"] == [
        "▸ ls-1 in_progress",
        "▸ ls-1 completed",
        "▸ write-1 completed",
    ]
    chunks = seen["agent_message_chunk"]
    assert chunks[0] == "agent message chunk (too big to record: 2.0 MB)"
    # the agent's text is data: the brackets come through as written
    assert "".join(chunks[1:]).endswith("[bold]hi[/]")
    assert usage_text(body(end)["usage"]) == "6 in · 6 out · 12 total"  # six words


def test_the_kinds_the_sample_agent_does_not_send() -> None:
    thought = wire(acp.update_agent_thought_text("I should [i]check[/i]\nthe logs"))
    assert line(thought) == "thinking: I should [i]check[/i] the logs"
    assert message_chunk(thought) == ("agent_thought_chunk", "I should [i]check[/i]\nthe logs")
    assert line(wire(acp.update_user_message_text("hello"))) == "you: hello"

    diff = acp.start_tool_call(
        "e1",
        "Edit a.py",
        kind="edit",
        status="pending",
        content=[acp.tool_diff_content("/w/a.py", "a\nc\nd\n", "a\nb\n")],
    )
    assert line(wire(diff)) == "▸ Edit a.py (edit) pending  ± /w/a.py +2 -1"
    done = acp.update_tool_call(
        "e1", status="failed", content=[acp.tool_content(acp.text_block("no"))]
    )
    assert line(wire(done)) == "▸ e1 failed  no"
    where = acp.start_edit_tool_call("e2", "Edit b.py", "/w/b.py", "x")
    assert line(wire(where)) == "▸ Edit b.py (edit) pending  @ /w/b.py"

    commands = AvailableCommandsUpdate(
        session_update="available_commands_update",
        available_commands=[
            AvailableCommand(name="init", description="set up"),
            AvailableCommand(name="review", description="review"),
        ],
    )
    assert line(wire(commands)) == "commands: /init /review"
    mode = CurrentModeUpdate(session_update="current_mode_update", current_mode_id="plan")
    assert line(wire(mode)) == "mode → plan"
    usage = UsageUpdate(
        session_update="usage_update",
        used=12_345,
        size=200_000,
        cost={"amount": 0.1234, "currency": "USD"},
    )
    assert line(wire(usage)) == "context 12,345 / 200,000 tokens (6%) · 0.12 USD"
    info = SessionInfoUpdate(session_update="session_info_update", title="Fix the export")
    assert line(wire(info)) == "session: Fix the export"
    config = ConfigOptionUpdate(
        session_update="config_option_update",
        config_options=[
            SessionConfigOptionSelect(
                type="select",
                id="model",
                name="Model",
                current_value="sonnet",
                options=[SessionConfigSelectOption(value="sonnet", name="Sonnet")],
            )
        ],
    )
    assert line(wire(config)) == "config: Model=sonnet"
    plan = AgentPlanContentUpdate(
        session_update="plan_update",
        plan=PlanUpdateMarkdown(type="markdown", plan_id="p1", content="# Plan\n- read"),
    )
    assert line(wire(plan)) == "plan: # Plan - read"


def test_what_is_not_an_update_is_left_to_the_caller() -> None:
    assert session_update_text({"sessionId": "s1"}) is None
    assert session_update_text({"update": {"text": "no kind"}}) is None
    assert message_chunk({"update": {"sessionUpdate": "plan", "entries": []}}) is None
    odd = {"update": {"sessionUpdate": "tool_call", "content": "not a list", "status": 3}}
    assert line(odd) == "▸ tool call"
    assert usage_text("nothing") == ""
    assert orjson.dumps(odd)  # the payload is left as it came
