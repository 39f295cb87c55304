"""What the console shows of ACP agents (issue 11): every `session/update` kind as one
readable line (from a real run of the sample ACP agent, and from the SDK's own models for the
kinds it does not send), and the permission prompt answering a real agent's request through
the engine, with the Axon waiting for a human until it is answered."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

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
    ToolCallLocation,
    UsageUpdate,
)
from rich.style import Style
from textual import work
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button, Static

from axons_tui.app import AxonsApp
from axons_tui.attention import Attention, PermissionOption, PermissionRequest
from axons_tui.feed import FLUSH_S, Feed
from axons_tui.screens.axon import AxonScreen
from axons_tui.screens.dashboard import DashboardScreen
from axons_tui.session import Session
from axons_tui.themes import CONSOLE_VARIABLES, DEFAULT_THEME, SHIPPED_THEMES, load_themes
from axons_tui.widgets.permission import (
    Answered,
    PermissionPrompt,
    ask_permission,
    open_requests,
)
from engine import Engine, Event
from engine.backend import Backend

pytest.register_assert_rewrite("tests.agents_support", "tests.acp_support")

from axons_tui.widgets.acp_detail import session_update_detail  # noqa: E402
from axons_tui.widgets.acp_text import (  # noqa: E402
    message_chunk,
    session_update_text,
    usage_text,
)
from axons_tui.widgets.axon_pane import AxonPane  # noqa: E402
from axons_tui.widgets.event_detail import EventDetail  # noqa: E402
from axons_tui.widgets.event_log import EventLog  # noqa: E402
from axons_tui.widgets.event_text import EventStyles, event_line  # noqa: E402
from axons_tui.widgets.log_layout import chunk_of  # noqa: E402
from tests.acp_support import acp_spec, permission_request, turn_end  # noqa: E402
from tests.agents_support import Watch, body, describe, publish, watching  # noqa: E402
from tests.console_support import FROZEN_MS, console_app, until  # noqa: E402


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


def test_in_the_stream_an_update_takes_the_event_colours() -> None:
    """The console's event lines colour ACP updates with the theme-resolved event styles."""
    styles = EventStyles(
        agent=Style(color="green"), wake=Style(color="cyan"), problem=Style(color="red")
    )
    failed = wire(acp.update_tool_call("w1", title="Write x", status="failed"))
    done = wire(acp.update_tool_call("w1", status="completed"))
    for payload, word, colour in ((failed, "failed", "red"), (done, "completed", "cyan")):
        e = Event("a", 9, FROZEN_MS, "AGENT_EVENT", "acp", "session/update", "", "acp", None, "")
        e.payload = orjson.dumps(payload).decode()
        line = event_line(e, FROZEN_MS, styles=styles)
        start = line.plain.index(word)
        [span] = [s for s in line.spans if s.start <= start < s.end and s.end - s.start > 1]
        assert Style.parse(str(span.style)).color.name == colour  # type: ignore[union-attr]
        assert "▸" in line.plain


def test_what_is_not_an_update_is_left_to_the_caller() -> None:
    assert session_update_text({"sessionId": "s1"}) is None
    assert session_update_text({"update": {"text": "no kind"}}) is None
    assert message_chunk({"update": {"sessionUpdate": "plan", "entries": []}}) is None
    odd = {"update": {"sessionUpdate": "tool_call", "content": "not a list", "status": 3}}
    assert line(odd) == "▸ tool call"
    assert usage_text("nothing") == ""
    assert orjson.dumps(odd)  # the payload is left as it came


def test_the_detail_shows_an_update_in_full() -> None:
    edit = acp.start_tool_call(
        "e1",
        "Edit a.py",
        kind="edit",
        status="completed",
        content=[acp.tool_diff_content("/w/a.py", "a\nc [red]\nd\n", "a\nb\n")],
        locations=[ToolCallLocation(path="/w/a.py", line=2)],
        raw_input={"path": "/w/a.py", "why": "[b]fix[/b]"},
    )
    assert detail(wire(edit)).splitlines() == [
        "▸ Edit a.py (edit) completed  ± /w/a.py +2 -1",
        "at /w/a.py:2",
        "--- /w/a.py (before)",
        "+++ /w/a.py",
        "@@ -1,2 +1,3 @@",
        " a",
        "-b",
        "+c [red]",
        "+d",
        "input:",
        "{",
        '  "path": "/w/a.py",',
        '  "why": "[b]fix[/b]"',
        "}",
    ]
    plan = acp.update_plan(
        [
            acp.plan_entry("Read the message", status="completed"),
            acp.plan_entry("Answer it", priority="high", status="in_progress"),
        ]
    )
    assert detail(wire(plan)).splitlines() == [
        "✓ Read the message (medium)",
        "▸ Answer it (high)",
    ]
    said = wire(acp.update_agent_message_text("Line one\nline [two]"))
    assert detail(said) == "Line one\nline [two]"
    assert detail(wire(acp.update_tool_call("e1", status="failed"))) == "▸ e1 failed"
    assert session_update_detail({"sessionId": "s1"}) is None


def detail(payload: dict[str, Any]) -> str:
    rendered = session_update_detail(payload)
    assert rendered is not None, payload
    return rendered.plain


# -- the permission prompt ------------------------------------------------------------------


class Console(App[None]):
    """What the prompt takes from the console: its themes (the shipped dark one, with the
    console's variables) and its clock, here fixed."""

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(CONSOLE_VARIABLES)

    def now_ms(self) -> int:
        return FROZEN_MS

    def on_mount(self) -> None:
        for theme in load_themes(SHIPPED_THEMES).themes.values():
            self.register_theme(theme)
        self.theme = DEFAULT_THEME


class Host(Console):
    """The smallest console around the prompt: a session on a real engine and its live feed,
    as `AxonsApp` wires them."""

    def __init__(self, backend: Backend, *, live: bool = True) -> None:
        super().__init__()
        self.session = Session(backend, embedded=True, where="test", runtime="process")
        self.feed = Feed()
        self.live = live
        self.answers: list[Answered | None] = []

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(FLUSH_S, self.feed.flush)
        if self.live:
            self._follow()

    @work(group="feed")
    async def _follow(self) -> None:
        async for batch in self.session.events():
            self.feed.push(batch)

    @work(group="ask")
    async def ask(self, axon_id: str) -> None:
        self.answers.append(await ask_permission(self, axon_id))


class Waiting(NamedTuple):
    axon_id: str
    watch: Watch
    message: int  # the sequence of the message whose turn asks
    request: Event


@contextlib.asynccontextmanager
async def waiting_agent(engine: Engine, workdir: Path) -> AsyncIterator[Waiting]:
    """An Axon whose sample ACP agent waits, paused, for a decision on a request."""
    axon_id = (await engine.create_axon("acp")).id
    await engine.agents.add(acp_spec("acp", "process", workdir=str(workdir)))
    async with watching(engine, axon_id) as watch:
        asked = await publish(engine, axon_id, "please do RISKY", "web")
        request = await permission_request(watch, "acp", asked)
        await watch.system("agent.paused", "acp", after=request.sequence)
        yield Waiting(axon_id, watch, asked, request)


@contextlib.asynccontextmanager
async def prompting(
    backend: Backend, axon_id: str, *, live: bool = True
) -> AsyncIterator[tuple[Host, Pilot[None], PermissionPrompt]]:
    """A console at 80x24 asking for the Axon's open request: (app, pilot, the prompt)."""
    app = Host(backend, live=live)
    async with app.run_test(size=(80, 24)) as pilot:
        app.ask(axon_id)
        yield app, pilot, await prompt_of(app)


async def closed(app: Host) -> Answered | None:
    """What the prompt ended with, once it has."""
    await until(lambda: bool(app.answers), what="the prompt to close")
    return app.answers[-1]


async def prompt_of(app: App[Any]) -> PermissionPrompt:
    """The prompt, once it is on screen and has its focus (ready for keys and clicks)."""
    await until(
        lambda: isinstance(app.screen, PermissionPrompt) and app.screen.focused is not None,
        what="the prompt",
    )
    assert isinstance(app.screen, PermissionPrompt)
    return app.screen


def status_of(prompt: PermissionPrompt) -> str:
    return str(prompt.query_one("#permission-status", Static).render())


async def test_the_prompt_answers_a_real_request_and_the_turn_completes(
    engine: Engine, tmp_path: Path
) -> None:
    async with waiting_agent(engine, tmp_path) as (axon_id, watch, asked, request):
        attention = Attention()
        attention.feed(watch.events)
        assert attention.waiting(axon_id) == f"permission: Write {tmp_path / 'approved.txt'}"

        async with prompting(engine, axon_id) as (app, pilot, prompt):
            assert prompt.request.sequence == request.sequence
            assert [str(b.label) for b in prompt.query(Button)] == [
                "1  Allow once",
                "2  Reject",
                "c  Cancel the request",
            ]
            await pilot.press("1")
            answer = await closed(app)
        assert answer is not None and answer.option_id == "allow"

        end = await turn_end(watch, "acp", asked)
        assert end.event_type == "turn.completed", describe(watch.events)
        decision = next(e for e in watch.events if e.sequence == answer.decision_sequence)
        assert (decision.source, decision.event_type) == ("tui", "permission.decision")
        assert body(decision) == {"request_sequence": request.sequence, "option_id": "allow"}
        assert (tmp_path / "approved.txt").read_text() == "approved\n"
        attention.feed(watch.events)
        assert attention.waiting(axon_id) is None


async def test_cancel_from_the_prompt_refuses_the_request(engine: Engine, tmp_path: Path) -> None:
    async with waiting_agent(engine, tmp_path) as (axon_id, watch, asked, request):
        async with prompting(engine, axon_id) as (app, pilot, _prompt):
            await pilot.click("#permission-cancel")
            answer = await closed(app)
        assert answer is not None and answer.option_id is None
        end = await turn_end(watch, "acp", asked)
        assert end.event_type == "turn.completed", describe(watch.events)
        decision = next(e for e in watch.events if e.sequence == answer.decision_sequence)
        assert body(decision) == {"request_sequence": request.sequence, "cancelled": True}
        assert not (tmp_path / "approved.txt").exists()


async def test_escape_leaves_the_request_waiting(engine: Engine, tmp_path: Path) -> None:
    async with waiting_agent(engine, tmp_path) as (axon_id, _watch, _asked, request):
        async with prompting(engine, axon_id) as (app, pilot, _prompt):
            await pilot.press("escape")
            assert await closed(app) is None
        [still] = await open_requests(engine, axon_id)
        assert still.sequence == request.sequence


async def test_an_answer_from_another_client_shows_in_place(engine: Engine, tmp_path: Path) -> None:
    async with (
        waiting_agent(engine, tmp_path) as (axon_id, _watch, _asked, request),
        prompting(engine, axon_id) as (app, pilot, prompt),
    ):
        decided = await engine.agents.permit(axon_id, request.sequence, "reject", source="cli")
        await until(lambda: "answered by cli" in status_of(prompt), what="the notice")
        assert status_of(prompt) == f"answered by cli (#{decided.sequence}): reject · escape closes"
        await pilot.press("1")  # the options are closed: nothing is sent
        assert prompt.query_one("#permission-options").disabled
        await pilot.press("escape")
        assert await closed(app) is None


async def test_a_409_is_shown_in_place(engine: Engine, tmp_path: Path) -> None:
    async with waiting_agent(engine, tmp_path) as (axon_id, watch, asked, request):
        # no live feed: the engine's 409 is what tells
        async with prompting(engine, axon_id, live=False) as (app, pilot, prompt):
            await engine.agents.permit(axon_id, request.sequence, "allow", source="cli")
            await pilot.press("2")
            await until(lambda: "already answered" in status_of(prompt), what="the 409")
            assert f"#{request.sequence}" in status_of(prompt)
            assert isinstance(app.screen, PermissionPrompt)
        end = await turn_end(watch, "acp", asked)
        assert end.event_type == "turn.completed"
        assert (tmp_path / "approved.txt").exists()  # the first answer stands


async def test_nothing_to_answer_or_an_error_is_a_notice(engine: Engine) -> None:
    axon_id = (await engine.create_axon("calm")).id
    app = Host(engine)
    async with app.run_test(size=(80, 24)):
        app.ask(axon_id)
        assert await closed(app) is None
        app.ask("axn_gone")
        await until(lambda: len(app.answers) == 2, what="the second ask")
        notices = [n.message for n in app._notifications]
        assert notices[0] == "No permission request waits for an answer on this Axon."
        assert notices[1].startswith("Cannot read the Axon's requests:"), notices


async def with_the_sample_agent(app: AxonsApp, workdir: Path) -> tuple[Backend, str]:
    """Once the console shows its dashboard: an Axon `acp` with the sample ACP agent."""
    await until(lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
    backend = app.session.backend
    axon_id = (await backend.create_axon("acp")).id
    await backend.agents.add(acp_spec("acp", "process", workdir=str(workdir)))
    return backend, axon_id


async def test_the_console_shows_the_axon_waiting_and_y_answers_it(tmp_path: Path) -> None:
    """The real console: the dashboard pane and the Axon view say the Axon waits, `y` opens
    the prompt from either, `1` answers, the turn completes and the waiting line goes."""
    app = console_app(tmp_path / "home")
    async with app.run_test(size=(100, 30)) as pilot:
        backend, axon_id = await with_the_sample_agent(app, tmp_path)
        asked = await publish(backend, axon_id, "please do RISKY", "web")  # type: ignore[arg-type]
        reason = f"permission: Write {tmp_path / 'approved.txt'}"

        def pane() -> AxonPane | None:
            return next(iter(app.screen.query(AxonPane)), None)

        await until(lambda: (p := pane()) is not None and p.has_class("-waiting"), what="pane")
        said = pane().query_one(".waiting-reason", Static).render()  # type: ignore[union-attr]
        assert str(said) == f"⚑ waiting: {reason} · y answers"
        await pilot.press("y")  # the focused pane's request
        await prompt_of(app)
        await pilot.press("escape")  # left waiting
        await until(lambda: isinstance(app.screen, DashboardScreen), what="back")

        app.open_axon(axon_id)
        await until(
            lambda: isinstance(app.screen, AxonScreen) and bool(app.screen.query("#waiting")),
            what="the Axon view",
        )
        waiting = app.screen.query_one("#waiting", Static)
        await until(lambda: waiting.has_class("-shown"), what="the waiting line")
        assert str(waiting.render()) == f"⚑ waiting: {reason} · y answers"
        await pilot.press("y")
        await prompt_of(app)
        await pilot.press("1")
        await until(lambda: isinstance(app.screen, AxonScreen), what="the prompt to close")
        await until(lambda: not waiting.has_class("-shown"), what="the line to go")
        events = await backend.read_events(axon_id)
        ends = [e for e in events if e.event_type == "turn.completed"]
        assert ends and asked in body(ends[-1])["sequences"], describe(events)
        assert (tmp_path / "approved.txt").read_text() == "approved\n"


# -- the picture ----------------------------------------------------------------------------

FIXED_REQUEST = PermissionRequest(
    sequence=42,
    agent="claude",
    tool_call_id="toolu_01",
    title="Run `rm -rf build/ [dist]`",
    kind="execute",
    raw_input={"command": "rm -rf build/ [dist]", "cwd": "/work", "timeout_ms": 120000},
    options=(
        PermissionOption("allow_always", "Always allow", "allow_always"),
        PermissionOption("allow", "Allow once", "allow_once"),
        PermissionOption("reject", "Reject", "reject_once"),
    ),
    timestamp_ms=FROZEN_MS - 12_000,
)


class Picture(Console):
    """The prompt over an empty screen, with fixed data."""

    def on_mount(self) -> None:
        super().on_mount()
        prompt = PermissionPrompt(NoBackend(), "axn_frozen0001", FIXED_REQUEST, more=1)
        self.call_after_refresh(self.push_screen, prompt)  # once the theme is applied


class NoBackend:
    """The picture never answers; anything it asks of a backend is a bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the picture used the backend ({name})")


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_the_prompt_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(Picture(), terminal_size=size)


# -- a streamed message is one item --------------------------------------------------------


async def test_a_streamed_answer_grows_as_one_item_in_the_axon_view(tmp_path: Path) -> None:
    """The real sample agent streams a slow answer a chunk at a time: the Axon view shows it
    as one growing item (not a row per chunk), and selecting it shows the whole text."""
    app = console_app(tmp_path / "home")
    async with app.run_test(size=(100, 30)) as pilot:
        backend, axon_id = await with_the_sample_agent(app, tmp_path)
        app.open_axon(axon_id)
        await until(
            lambda: isinstance(app.screen, AxonScreen) and bool(app.screen.query(EventLog)),
            what="the Axon view",
        )
        log = app.screen.query_one(EventLog)
        asked = await publish(backend, axon_id, "go SLOW please", "web")  # type: ignore[arg-type]

        def streamed() -> list[Event]:
            return [e for e in log._pages.get(0) or [] if chunk_of(e) is not None]

        def rows() -> list[str]:
            height = log.scrollable_content_region.height
            return [log.render_line(y).text.rstrip() for y in range(height)]

        grown: list[tuple[int, int, str]] = []
        for count in (4, 8):  # the same item, longer each time
            await until(lambda n=count: len(streamed()) >= n, timeout=30, what=f"{count} chunks")
            item = log.item_at(streamed()[-1].sequence)
            assert item.joined and item.last > item.first
            pieces = [chunk_of(e) for e in streamed() if item.first <= e.sequence <= item.last]
            text = " ".join("".join(str(p[2]) for p in pieces if p).split())
            await until(lambda t=text: any(row.endswith(t) for row in rows()), what=text)
            grown.append((item.first, item.last, text))
        assert grown[1][0] == grown[0][0] and grown[1][1] > grown[0][1]
        # fewer rows than events: the chunks take one row between them
        assert log.virtual_size.height < log.total

        await pilot.press("up")  # the cursor from the bottom, up to the answer
        await until(lambda: log.cursor is not None, what="a cursor")
        while log.cursor is not None and chunk_of(log.selected or _NOT_A_CHUNK) is None:
            before = log.cursor
            await pilot.press("up")
            await until(lambda b=before: log.cursor != b or b == 1, what="the cursor to move")
            if log.cursor == 1:
                break
        detail = app.screen.query_one(EventDetail)
        await until(lambda: "chunks, #" in str(detail.query_one(Static).render()), what="detail")
        shown = str(detail.query_one(Static).render())
        assert f"chunks, #{grown[0][0]} to #" in shown and f"\n{grown[1][2]}" in shown, shown
        assert asked < log.cursor == grown[0][0]  # type: ignore[operator]


_NOT_A_CHUNK = Event("a", 0, 0, "USER_EVENT", "x", "message", "{}", None, None, "")
