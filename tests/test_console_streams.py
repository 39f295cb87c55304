"""The live streams of the console: the dashboard's panes, the Axon view's full log, the
composer and the agent panel, on a real temporary home with a real embedded engine.

Snapshots use fixed ids and commit times (`frozen`) and a home path relative to the test's
own folder, so the pictures are the same on every run.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.style import Style
from rich.text import Text
from textual.pilot import Pilot

from axons_tui.app import AxonsApp
from axons_tui.screens.axon import AxonScreen
from axons_tui.screens.dashboard import DashboardScreen, grid_columns
from axons_tui.widgets.agent_panel import AgentCard, AgentPanel
from axons_tui.widgets.axon_pane import AxonPane
from axons_tui.widgets.composer import Composer
from axons_tui.widgets.event_detail import EventDetail
from axons_tui.widgets.event_log import PAGES_KEPT, EventLog
from axons_tui.widgets.event_text import EventStyles, event_line
from engine import Draft, Engine
from engine.models import AgentSpec, Event
from tests.agents_support import triage_spec
from tests.console_support import FrozenClock, console_app, until

WAIT_S = 30.0  # a bound for a broken run on a busy machine, never part of a pass condition


async def eventually(
    condition: Callable[[], bool], what: str = "", timeout: float = WAIT_S
) -> None:
    await until(condition, timeout=timeout, what=what)


# -- data ---------------------------------------------------------------------------------


def system(event_type: str, agent: str, **body: Any) -> Draft:
    return Draft(event_type, orjson.dumps(body).decode(), agent, "SYSTEM_EVENT", author="axons")


def agent_says(text: str, agent: str = "triage") -> Draft:
    return Draft.message(text, source=agent, origin="AGENT_EVENT")


async def seed_home(home: Path) -> dict[str, str]:
    """Three Axons with a little of everything: a question that waits for a human, a wake,
    a webhook, a failure. Their ids by name."""
    async with Engine(home) as eng:
        support = (await eng.create_axon("support")).id
        ci = (await eng.create_axon("ci")).id
        deploy = (await eng.create_axon("deploy")).id
        await eng.publish_batch(
            support,
            [
                system("agent.starting", "triage", reason="added", runtime="process"),
                system("agent.running", "triage"),
                Draft.message("Billing export fails for [bold]large[/bold] CSVs.", source="web"),
                system("turn.started", "triage", sequences=[3]),
                agent_says("Checked the report: ticket TCK-3, priority high."),
                agent_says("Can someone confirm which exports fail?"),
                system("turn.completed", "triage", sequences=[3], duration_ms=41.5),
                system("agent.paused", "triage", reason="agent asked (axon/idle)", idle_s=0.1),
            ],
            system=True,
        )
        await eng.publish_batch(
            ci,
            [
                Draft("push", '{"ref": "main", "commits": 3}', "github", "EXTERNAL_EVENT"),
                system(
                    "agent.resumed",
                    "summariser",
                    trigger_sequence=1,
                    wake_ms=18.4,
                    **{"from": "paused"},
                ),
                Draft("check_run", '{"conclusion": "failure"}', "github", "EXTERNAL_EVENT"),
                system("turn.failed", "summariser", sequences=[3], reason="model timeout"),
                system("agent.log", "summariser", lines=["retrying in 2 s"]),
            ],
            system=True,
        )
        await eng.publish(deploy, Draft.message("Ship v1.4 to production?", source="cli"))
        return {"support": support, "ci": ci, "deploy": deploy}


async def publish_many(home: Path, name: str, count: int) -> str:
    """An Axon with `count` numbered messages; its id."""
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon(name)).id
        batch = 5000
        for start in range(0, count, batch):
            drafts = [
                Draft.message(f"event number {n}", source="bench")
                for n in range(start + 1, min(count, start + batch) + 1)
            ]
            await eng.publish_batch(axon_id, drafts)
        return axon_id


async def open_axon_view(app: AxonsApp, pilot: Pilot[Any], axon_id: str) -> EventLog:
    await eventually(lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
    app.open_axon(axon_id)
    return await axon_view_log(app)


async def axon_view_log(app: AxonsApp) -> EventLog:
    """The Axon view's log, once the view is composed and the log knows its length."""
    await eventually(
        lambda: isinstance(app.screen, AxonScreen) and bool(app.screen.query(EventLog)),
        what="the Axon view",
    )
    log = app.screen.query_one(EventLog)
    await eventually(lambda: log.total > 0, what="the log's length")
    return log


def row_text(log: EventLog, y: int) -> str:
    return log.render_line(y).text


def last_row_text(log: EventLog) -> str:
    return row_text(log, log.scrollable_content_region.height - 1)


# -- event lines --------------------------------------------------------------------------


def event(event_type: str, payload: str, origin: str = "USER_EVENT", source: str = "web") -> Event:
    return Event("axn_x", 7, 1_780_000_000_000, origin, source, event_type, payload, None, None, "")


def test_event_lines_read_at_a_glance_and_never_as_markup() -> None:
    said = event_line(event("message", '{"text": "hi [bold]there[/bold]\\nand more"}'))
    assert said.plain.endswith("web hi [bold]there[/bold] and more")
    woke = event_line(
        event("agent.resumed", '{"wake_ms": 18.4, "from": "paused"}', "SYSTEM_EVENT", "triage")
    )
    assert woke.plain.endswith("triage woke in 18.4 ms (paused)")
    turn = event_line(
        event("turn.completed", '{"sequences": [3], "duration_ms": 41.5}', "SYSTEM_EVENT", "t")
    )
    assert turn.plain.endswith("t turn done #3 in 41.5 ms")
    raw = event_line(event("push", "not json [red]", "EXTERNAL_EVENT", "github"), compact=True)
    assert raw.plain.endswith("github push not json [red]")
    assert not raw.plain.startswith("      7")  # compact: no sequence column


def test_gateway_calls_read_as_calls_and_a_refusal_stands_out() -> None:
    """The gateways' audit events (contract §5.3, §5.4) as the console shows them."""
    styles = EventStyles(system=Style(dim=True), problem=Style(color="red"))

    def shown(event_type: str, body: dict[str, Any]) -> Text:
        payload = orjson.dumps(body).decode()
        return event_line(event(event_type, payload, "SYSTEM_EVENT", "claude"), styles=styles)

    usage = {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42}
    call = {"provider": "ANTHROPIC", "method": "POST", "path": "/v1/messages", "status": 200,
            "duration_ms": 84.2, "bytes_in": 900, "bytes_out": 2000, "usage": usage}  # fmt: skip
    line = shown("gateway.request", call)
    assert line.plain.endswith("claude ANTHROPIC POST /v1/messages 200 · 84.2 ms · 12 in · 30 out")
    assert not any(span.style == styles.problem for span in line.spans)
    cut = shown("gateway.request", {**call, "status": 502, "error": "upstream unreachable"})
    assert cut.plain.endswith("502 · 84.2 ms · 12 in · 30 out · upstream unreachable")
    assert any(span.style == styles.problem for span in cut.spans)
    limited = {"provider": "OPENAI", "limit": "token_budget", "allowed": 1000, "used": 1200}
    assert shown("gateway.limited", limited).plain.endswith(
        "OPENAI limited: token_budget (1,200 of 1,000)"
    )
    tool = {"server": "tickets", "tool": "read_ticket", "status": "ok", "duration_ms": 12.5}
    assert shown("mcp.tool_call", tool).plain.endswith("tool tickets__read_ticket ok · 12.5 ms")
    refused = {"server": "tickets", "tool": "delete_ticket", "status": "refused",
               "duration_ms": 0.0, "error": "not allowed"}  # fmt: skip
    line = shown("mcp.tool_call", refused)
    assert line.plain.endswith("tool tickets__delete_ticket refused · 0.0 ms · not allowed")
    assert any(span.style == styles.problem for span in line.spans)


# -- the composer -------------------------------------------------------------------------


async def test_a_message_typed_in_the_composer_reaches_the_axon_with_source_tui(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon("support")).id
        await eng.publish(axon_id, Draft.message("Is anyone there?", source="web"))
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await eventually(lambda: len(app.screen.query(AxonPane)) == 1, what="the pane")
        await pilot.press("enter")
        log = await axon_view_log(app)
        await pilot.press("i")
        composer = app.screen.query_one(Composer)
        await eventually(lambda: composer.has_focus, what="i focuses the composer")
        await pilot.press(*"Yes [b]here[/b]", "enter")
        await eventually(lambda: log.total == 2, what="the message in the live log")
        await eventually(lambda: composer.value == "", what="the composer emptied")
        await pilot.press("enter")  # nothing typed: refused in place, nothing sent
        await eventually(lambda: composer.has_class("-error"), what="the empty message refused")
        await pilot.press("escape")
        await eventually(lambda: log.has_focus, what="escape leaves the composer")
        await pilot.press("escape")
        await eventually(lambda: isinstance(app.screen, DashboardScreen), what="escape goes back")
    async with Engine(home) as fresh:
        events = await fresh.read_events(axon_id)
    sent = events[-1]
    assert len(events) == 2
    assert (sent.origin, sent.source, sent.event_type) == ("USER_EVENT", "tui", "message")
    assert orjson.loads(sent.payload) == {"text": "Yes [b]here[/b]"}


# -- follow-tail --------------------------------------------------------------------------


async def test_follow_tail_pauses_on_scroll_up_counts_new_events_and_resumes(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    axon_id = await publish_many(home, "busy", 300)
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_axon_view(app, pilot, axon_id)
        await eventually(lambda: log.total == 300 and log.scroll_y == log.max_scroll_y > 0)
        assert log.following and "following" in str(log.border_subtitle)
        await eventually(lambda: "event number 300" in last_row_text(log), what="the tail")

        await pilot.press("up", "pageup", "pageup")
        await eventually(lambda: not log.following, what="scrolling up pauses follow-tail")
        paused_at = log.scroll_y
        for n in range(3):
            await app.session.backend.publish(axon_id, Draft.message(f"late {n}", source="web"))
        await eventually(lambda: log.total == 303, what="the new events")
        await eventually(lambda: "paused · 3 new · end to follow" in str(log.border_subtitle))
        assert log.scroll_y == paused_at, "a paused log must not move"

        await pilot.press("end")
        await eventually(lambda: log.following and log.scroll_y == log.max_scroll_y)
        await eventually(lambda: "late 2" in last_row_text(log), what="the newest event")
        await app.session.backend.publish(axon_id, Draft.message("after", source="web"))
        await eventually(lambda: log.total == 304 and log.scroll_y == log.max_scroll_y)
        assert "following" in str(log.border_subtitle)


# -- a long Axon --------------------------------------------------------------------------


async def test_a_hundred_thousand_events_open_at_the_end_and_jump_to_the_top(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    axon_id = await publish_many(home, "long", 100_000)
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_axon_view(app, pilot, axon_id)
        await eventually(lambda: log.total == 100_000, what="the length")
        await eventually(lambda: "event number 100000" in last_row_text(log), what="the tail")

        await pilot.press("home")
        await eventually(lambda: log.scroll_y == 0 and log.cursor == 1, what="the jump")
        await eventually(lambda: "event number 1" in row_text(log, 0), what="the first event")
        assert "event number 2" in row_text(log, 1)
        await eventually(lambda: "#1\n" in _detail_text(app), what="the first event in detail")

        await pilot.press("end")
        await eventually(lambda: "event number 100000" in last_row_text(log), what="back down")
        assert len(log._pages) <= PAGES_KEPT, "the page cache stays bounded"


def chunk_draft(text: str, agent: str = "claude") -> Draft:
    update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    payload = orjson.dumps({"sessionId": "s1", "update": update}).decode()
    return Draft("session/update", payload, agent, "AGENT_EVENT")


async def test_streamed_answers_fold_in_history_and_what_is_on_screen_stays_put(
    tmp_path: Path,
) -> None:
    """Five pages, each with 150 messages and an answer of 50 chunks (the last two pages' answer
    crosses their boundary). Jumping into the middle reads pages as they come into view; as
    their answers fold to one item each, the event at the top of the screen stays there."""
    home = tmp_path / "home"
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon("answers")).id
        drafts: list[Draft] = []
        for page in range(5):
            drafts += [Draft.message(f"question {page}.{n}", source="web") for n in range(150)]
            drafts += [chunk_draft(f"a{page}.{n} ") for n in range(50)]
        drafts[800:810] = [chunk_draft(f"x{n} ") for n in range(10)]  # page 3's answer goes on
        drafts[960:] = [Draft.message(f"tail {n}", source="web") for n in range(40)]
        await eng.publish_batch(axon_id, drafts)
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_axon_view(app, pilot, axon_id)
        await eventually(lambda: "tail 39" in last_row_text(log), what="the tail")
        await pilot.press("home")
        await eventually(lambda: log.scroll_y == 0 and log.cursor == 1, what="the top")
        log.cursor = 420  # page 2's 20th question: the screen's top is in page 1's answer
        await eventually(lambda: 2 in log._layouts and 1 in log._layouts, what="pages read")
        await pilot.pause()
        top = log._locate(int(log.scroll_y))[0]
        await eventually(lambda: "question 2.19" in _all_rows(log), what="the cursor's event")
        # page 1's answer, above, is one item now: its chunks take one row
        assert log.item_at(351).first == 351 and log.item_at(351).last == 400
        assert log.row_of(401) == log.row_of(351) + log.item_at(351).rows
        await pilot.press("up", "up")
        await pilot.pause()
        assert log.cursor == 418
        assert log._locate(int(log.scroll_y))[0] == top, "the screen did not jump"
        # page 3's answer goes on into page 4, and folds across the boundary
        log.cursor = 805
        await eventually(lambda: 3 in log._layouts and 4 in log._layouts, what="the last pages")
        crossing = log.item_at(751)
        assert (crossing.first, crossing.last) == (751, 810)
        assert crossing.text.startswith("a3.0 a3.1") and crossing.text.endswith("x9 ")
        assert log.item_at(log.cursor).first == 751  # the cursor is on the whole answer
        await pilot.press("end")
        assert log.row_of(811) == log.row_of(751) + crossing.rows
        await eventually(lambda: "tail 39" in last_row_text(log), what="the tail again")


async def test_an_answer_longer_than_a_page_is_one_item(tmp_path: Path) -> None:
    """215 chunks from #191 to #405: page 1 holds nothing but them. Opened in the middle of
    the answer, the log shows it as one item once the pages around are read."""
    home = tmp_path / "home"
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon("long answer")).id
        drafts = [Draft.message(f"question {n}", source="web") for n in range(1, 191)]
        drafts += [chunk_draft(f"w{n} ") for n in range(191, 406)]
        drafts += [Draft.message(f"question {n}", source="web") for n in range(406, 601)]
        await eng.publish_batch(axon_id, drafts)
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        log = await open_axon_view(app, pilot, axon_id)
        await eventually(lambda: "question 600" in last_row_text(log), what="the tail")
        log.cursor = 300
        await eventually(
            lambda: all(page in log._layouts for page in (0, 1, 2)), what="the pages around"
        )
        await pilot.pause()
        answer = log.item_at(300)
        assert (answer.first, answer.last) == (191, 405)
        assert log.item_at(405) is answer and log.item_at(406).first == 406
        assert log.row_of(406) == log.row_of(191) + answer.rows
        await eventually(lambda: "w191 w192" in _all_rows(log), what="the answer on screen")
        await pilot.press("down")
        assert log.cursor == 406


async def test_a_click_selects_an_event_and_a_double_click_opens_a_pane(tmp_path: Path) -> None:
    home = tmp_path / "home"
    axon_id = await publish_many(home, "clicked", 5)
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await eventually(lambda: any(p.region.height for p in app.screen.query(AxonPane)))
        await pilot.double_click(AxonPane, offset=(10, 3))
        log = await axon_view_log(app)
        assert app.screen.axon_id == axon_id  # type: ignore[attr-defined]
        await eventually(lambda: "event number 5" in row_text(log, 4), what="the rows")
        await pilot.click(EventLog, offset=(3, 2))  # inside the border: the row of event 2
        await eventually(lambda: log.cursor == 2, what="the click selects")
        await eventually(lambda: "event number 2" in _detail_text(app), what="its detail")


# -- the agent panel ----------------------------------------------------------------------


async def test_the_agent_panel_pauses_resumes_and_stops_a_process_agent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await eventually(lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        backend = app.session.backend
        axon_id = (await backend.create_axon("support")).id
        await backend.agents.add(triage_spec(axon_id, "process"))
        app.open_axon(axon_id)
        await eventually(
            lambda: isinstance(app.screen, AxonScreen) and bool(app.screen.query(AgentPanel)),
            what="the Axon view",
        )
        await pilot.press("a")
        panel = app.screen.query_one(AgentPanel)

        def state() -> str | None:
            cards = list(panel.query(AgentCard))
            return cards[0].view.state if cards else None

        await eventually(lambda: state() == "running", timeout=60, what="the agent running")
        await pilot.press("p")
        await eventually(lambda: state() == "paused", timeout=60, what="p pauses it")
        assert (await backend.agents.get(axon_id, "triage")).state == "paused"

        await pilot.press("u")
        await eventually(lambda: state() == "running", timeout=60, what="u resumes it")
        await eventually(lambda: "woke" in _card_text(panel, ".agent-wakes"), what="the wake shown")

        await pilot.click("#agent-stop")
        await eventually(lambda: state() == "stopped", timeout=60, what="the stop button")
        assert (await backend.agents.get(axon_id, "triage")).state == "stopped"
        await pilot.click("#agent-start")
        await eventually(lambda: state() == "running", timeout=60, what="the start button")


async def test_the_agent_panel_shows_a_failing_agents_log_lines(tmp_path: Path) -> None:
    home = tmp_path / "home"
    crash = "import sys; print('cannot find the model', file=sys.stderr); sys.exit(3)"
    app = console_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await eventually(lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        backend = app.session.backend
        axon_id = (await backend.create_axon("crashy")).id
        spec = AgentSpec(
            name="noisy", axon=axon_id, runtime="process", command=[sys.executable, "-c", crash]
        )
        await backend.agents.add(spec)
        app.open_axon(axon_id)
        log = await axon_view_log(app)
        await pilot.press("a")
        panel = app.screen.query_one(AgentPanel)
        await eventually(
            lambda: "cannot find the model" in _card_text(panel, ".agent-logs"), what="the log"
        )
        # (its state: starting and failed take turns as it is restarted with a backoff)
        await eventually(lambda: "noisy log: cannot" in _all_rows(log), what="the row")
        await pilot.click("#agent-stop")
        await eventually(
            lambda: "stopped" in _card_text(panel, ".agent-state"), timeout=30, what="stop"
        )


def _all_rows(log: EventLog) -> str:
    return "\n".join(row_text(log, y) for y in range(log.scrollable_content_region.height))


def _card_text(panel: AgentPanel, selector: str) -> str:
    return str(panel.query_one(AgentCard).query_one(selector).render())


# -- the dashboard ------------------------------------------------------------------------


def test_the_grid_adapts_to_the_width() -> None:
    assert [grid_columns(w) for w in (80, 100, 120, 159, 160, 220)] == [1, 1, 2, 2, 3, 3]


async def test_new_axons_appear_live_and_panes_page(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Engine(home) as eng:
        for n in range(4):
            await eng.create_axon(f"axon-{n}")
    app = console_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await eventually(lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        dashboard = app.screen
        assert isinstance(dashboard, DashboardScreen)
        await eventually(lambda: len(dashboard.axons) == 4, what="the Axons listed")
        assert dashboard.pages == 2 and len(dashboard.query(AxonPane)) == 2
        heading = dashboard.query_one("#heading").render()
        assert "page 1/2" in str(heading)

        created = await app.session.backend.create_axon("newcomer")
        await app.session.backend.publish(created.id, Draft.message("hello", source="web"))
        await eventually(lambda: len(dashboard.axons) == 5, what="the new Axon listed")
        assert dashboard.pages == 3
        await pilot.press("pagedown", "pagedown")
        await eventually(lambda: dashboard.page == 2 and len(dashboard.query(AxonPane)) == 1)
        await pilot.press("tab")
        pane = dashboard.query_one(AxonPane)
        assert dashboard.focused_pane() is pane
        await pilot.press("enter")
        await eventually(lambda: isinstance(app.screen, AxonScreen), what="enter opens it")
        assert app.screen.axon_id == pane.axon_id  # type: ignore[attr-defined]


async def test_slash_filters_the_axons_by_name_and_escape_clears_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Engine(home) as eng:
        for name in ("support", "ci", "deploy"):
            await eng.create_axon(name)
    app = console_app(home)
    async with app.run_test(size=(160, 40)) as pilot:
        await eventually(lambda: len(app.screen.query(AxonPane)) == 3, what="three panes")
        dashboard = app.screen
        await pilot.press("slash", *"DEP")
        await eventually(lambda: "1 match 'DEP'" in str(dashboard.query_one("#heading").render()))
        assert [p.title for p in dashboard.query(AxonPane)] == ["deploy"]
        await pilot.press("escape")
        await eventually(lambda: len(dashboard.query(AxonPane)) == 3, what="the filter cleared")


# -- snapshots ----------------------------------------------------------------------------


@pytest.fixture
def seeded(
    tmp_path: Path, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], tuple[AxonsApp, dict[str, str]]]:
    """A console on the seeded home, with a home path and a clock the same on every run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        "axons_tui.session.docker_available", lambda: False
    )  # same on every machine
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    ids = asyncio.run(seed_home(Path("home")))

    def make(theme: str = "dark") -> tuple[AxonsApp, dict[str, str]]:
        config = tmp_path / "config"
        return console_app(Path("home"), frozen, tmp_config=config, theme=theme), ids

    return make


def settled(ready: Callable[[AxonsApp], bool]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, AxonsApp)
        await eventually(lambda: ready(app), what="the screen settled")
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return run_before


def dashboard_ready(app: AxonsApp) -> bool:
    """Every pane that fits is filled, and the support Axon (if shown) waits for a human."""
    dashboard = app.screen
    if not isinstance(dashboard, DashboardScreen):
        return False
    panes = list(dashboard.query(AxonPane))
    return (
        len(panes) == min(3, dashboard.per_page)
        and all(p.total > 0 and f"{p.total} event" in str(p.border_title) for p in panes)
        and all(p.has_class("-waiting") == (p.title == "support") for p in panes)
    )


@pytest.mark.parametrize("theme", ["dark", "light", "high-contrast"])
@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_dashboard_snapshot(
    snap_compare: Any, seeded: Any, size: tuple[int, int], theme: str
) -> None:
    app, _ = seeded(theme)
    assert snap_compare(app, terminal_size=size, run_before=settled(dashboard_ready))


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_axon_view_snapshot(snap_compare: Any, seeded: Any, size: tuple[int, int]) -> None:
    app, ids = seeded()

    async def open_support(pilot: Pilot[Any]) -> None:
        await eventually(lambda: dashboard_ready(app), what="the dashboard")
        app.open_axon(ids["support"])
        log = await axon_view_log(app)
        await eventually(lambda: log.total == 8, what="the log")
        await pilot.press("up", "up", "up")
        await settled(lambda a: "#6\n" in _detail_text(a) and _says_it_waits(a))(pilot)

    assert snap_compare(app, terminal_size=size, run_before=open_support)


def _says_it_waits(app: AxonsApp) -> bool:
    return "asked: Can someone confirm" in str(app.screen.query_one("#waiting").render())


def _detail_text(app: AxonsApp) -> str:
    return str(app.screen.query_one(EventDetail).query_one("Static").render())
