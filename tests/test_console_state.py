"""The state inspector and the replay viewer, on a real home: an Axon whose events write rows
(event N inserts item N and bumps item N-1's quantity, so `changes(N)` has an insert and an
update), browsed, queried and replayed through the console's own keys."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from axons_tui import state_reader
from axons_tui.app import AxonsApp
from axons_tui.jump import parse_jump
from axons_tui.screens.inspector import InspectorScreen, parse_as_of
from axons_tui.screens.replay import ReplayScreen
from axons_tui.screens.row_detail import RowDetailScreen
from axons_tui.state_reader import PAGE_ROWS, StateReader
from axons_tui.widgets.changes_view import ChangesView
from axons_tui.widgets.event_card import EventCard
from axons_tui.widgets.state_table import CELL_CHARS, StateTable
from axons_tui.widgets.timeline import MARKED_TYPES, Marks, Timeline, bar_roles, sequence_at
from engine import Engine
from engine.backend import Backend
from engine.models import Draft
from tests.console_support import FROZEN_MS, FrozenClock, console_app
from tests.console_support import until as until_within
from tests.helpers import WAIT_S

ORDERS = 5
STEP_MS = 1000  # between two orders, on the frozen clock


async def until(condition: Callable[[], bool], what: str = "") -> None:
    """Wait for the condition with the tests' generous deadline: only a broken console
    reaches it, a busy machine (the whole suite, other runs beside it) does not."""
    await until_within(condition, timeout=WAIT_S, what=what)


async def seed_shop(backend: Backend, clock: FrozenClock | None = None) -> str:
    """`shop`: a table written before any event, then ORDERS events, each followed by the
    writes it causes (attributed to it: they commit while it is the latest event)."""
    axon = await backend.create_axon("shop")
    await backend.query(
        axon.id, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INT)", write=True
    )
    for n in range(1, ORDERS + 1):
        if clock is not None and n > 1:
            clock.advance(STEP_MS)
        await backend.publish(axon.id, Draft.message(f"order {n} [bold]now[/]", source="web"))
        await backend.batch(
            axon.id,
            [
                {"sql": "INSERT INTO items(name, qty) VALUES (?, ?)", "params": [f"[i]item{n}", n]},
                {"sql": "UPDATE items SET qty = qty + 10 WHERE id = ?", "params": [n - 1]},
            ],
        )
    return axon.id


async def seeded_home(home: Path, clock: FrozenClock | None = None) -> str:
    """A home holding `shop`, written before the console opens it; the Axon's id."""
    async with Engine(home) as engine:
        return await seed_shop(engine, clock)


@asynccontextmanager
async def shop_console(
    tmp_path: Path, screen: type, clock: FrozenClock | None = None, **kw: Any
) -> AsyncIterator[tuple[AxonsApp, Pilot[Any], Any]]:
    """A console on a home holding `shop`, with `screen` open on it and loaded."""
    home = tmp_path / "home"
    axon = await seeded_home(home, clock)
    app = console_app(home, clock)
    async with app.run_test(size=(100, 30)) as pilot:
        yield app, pilot, await opened(app, pilot, screen, axon, **kw)


async def opened(app: AxonsApp, pilot: Pilot[Any], screen: type, axon: str, **kw: Any) -> Any:
    """Wait for the console's engine, open `screen` on `axon` and wait until it has loaded."""
    await until(lambda: app._session is not None, what="the engine")
    if screen is ReplayScreen:
        app.open_replay(axon, **kw)
        await until(lambda: _replay_loaded(app), what="the replay's first event")
    else:
        app.open_inspector(axon, **kw)
        await until(lambda: _inspector_loaded(app), what="the inspector's first page")
    await pilot.pause()
    return app.screen


def _replay_loaded(app: AxonsApp) -> bool:
    screen = app.screen
    if not isinstance(screen, ReplayScreen) or not screen.is_mounted:
        return False
    if screen.error:
        raise AssertionError(screen.error)  # no need to wait: say why
    return (
        screen.shown == screen.position
        and screen.query_one(ChangesView).sequence == screen.position
    )


def _inspector_loaded(app: AxonsApp) -> bool:
    screen = app.screen
    if isinstance(screen, InspectorScreen) and screen.error:
        raise AssertionError(screen.error)  # no need to wait: say why
    return isinstance(screen, InspectorScreen) and screen.page is not None


def rows_of(table: StateTable) -> list[list[str]]:
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def qty_by_name(table: StateTable) -> dict[str, str]:
    return {row[2]: row[3] for row in rows_of(table)}


# -- the replay viewer


async def test_stepping_the_replay_updates_the_state_and_the_changed_rows(tmp_path: Path) -> None:
    async with shop_console(tmp_path, ReplayScreen, at_sequence=2) as (_app, pilot, screen):
        changes = screen.query_one(ChangesView)
        state = screen.query_one(StateTable)
        assert [(c.op, c.rowid) for c in changes.changes] == [("insert", 2), ("update", 1)]
        assert qty_by_name(state) == {"[i]item1": "11", "[i]item2": "2"}

        await pilot.press("right")
        await until(lambda: changes.sequence == 3, what="event #3's changes")
        await until(lambda: "[i]item3" in qty_by_name(state), what="the state as of #3")
        assert screen.position == 3
        assert [(c.op, c.rowid) for c in changes.changes] == [("insert", 3), ("update", 2)]
        update = changes.changes[1]
        assert (update.before or {})["qty"] == 2 and (update.after or {})["qty"] == 12
        assert "qty   2 → 12" in changes.text
        assert qty_by_name(state) == {"[i]item2": "12", "[i]item3": "3"}  # the page of the change
        assert {rows_of(state)[i][0] for i in state.changed_rows} == {"2", "3"}
        assert screen.query_one(EventCard).event.sequence == 3  # type: ignore[union-attr]

        await pilot.press("left", "left")
        await until(lambda: changes.sequence == 1, what="back to event #1")
        assert [(c.op, c.rowid) for c in changes.changes] == [("insert", 1)]
        assert qty_by_name(state) == {"[i]item1": "1"}


async def test_jumps_by_sequence_and_by_time_and_a_bad_jump_says_what_to_type(
    tmp_path: Path, frozen: FrozenClock, utc: None
) -> None:
    async with shop_console(tmp_path, ReplayScreen, clock=frozen) as (app, pilot, screen):
        assert screen.position == 1
        await pilot.press("j", *"#4", "enter")
        await until(lambda: screen.query_one(ChangesView).sequence == 4, what="the jump to #4")

        third = time.strftime("%H:%M:%S", time.localtime((FROZEN_MS + 2 * STEP_MS) / 1000))
        await pilot.press("j", *third, "enter")
        await until(lambda: screen.position == 3, what=f"the jump to {third}")

        await pilot.press("j", *"soon", "enter")
        await until(lambda: screen.error is not None, what="the error")
        assert "#123" in (screen.error or "") and screen.position == 3
        await pilot.press("escape", "j", *"#99", "enter")  # escape leaves the field
        await until(lambda: "#1 to #5" in (screen.error or ""), what="the range")
        assert isinstance(app.screen, ReplayScreen)


async def test_play_runs_to_the_end_at_the_chosen_speed_then_pauses(
    tmp_path: Path, frozen: FrozenClock
) -> None:
    async with shop_console(tmp_path, ReplayScreen, clock=frozen) as (_app, pilot, screen):
        await pilot.press("plus", "plus", "plus", "minus")
        assert screen.speed == 5
        await pilot.press("space")
        assert screen.playing
        await until(lambda: screen.position == ORDERS and not screen.playing, what="the end")
        await until(lambda: screen.query_one(ChangesView).sequence == ORDERS, what="its state")


async def test_clicking_the_timeline_jumps_there(tmp_path: Path) -> None:
    async with shop_console(tmp_path, ReplayScreen) as (_app, pilot, screen):
        timeline = screen.query_one(Timeline)
        x = timeline.size.width - 1
        await pilot.click(Timeline, offset=(x, 0))
        await until(lambda: screen.position == ORDERS, what="the jump to the end")
        assert timeline.position == ORDERS


async def test_fork_from_here_opens_a_new_axon_holding_the_prefix(tmp_path: Path) -> None:
    async with shop_console(tmp_path, ReplayScreen, at_sequence=3) as (app, pilot, screen):
        axon = screen.axon_id
        await pilot.press("f")
        await until(
            lambda: getattr(app.screen, "axon_id", axon) != axon, what="the fork's Axon view"
        )
        fork = app.screen.axon_id  # type: ignore[attr-defined]
        backend = app.session.backend
        original = await backend.read_events(axon)
        forked = await backend.read_events(fork)
        assert [(e.sequence, e.payload) for e in forked] == [
            (e.sequence, e.payload) for e in original[:3]
        ]
        rows = await backend.query(fork, "SELECT name, qty FROM items ORDER BY id")
        assert rows.rows == [["[i]item1", 11], ["[i]item2", 12], ["[i]item3", 3]]
        assert screen.position == 3


async def test_the_timeline_marks_the_agents_turns_and_wakes_from_history(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    async with Engine(home) as engine:
        axon = (await engine.create_axon("agentic")).id

        async def system(event_type: str, payload: str = "{}") -> None:
            draft = Draft(event_type, payload, "triage", origin="SYSTEM_EVENT")
            await engine.publish(axon, draft, system=True)

        await engine.publish(axon, Draft.message("hello", source="web"))  # 1
        await system("agent.resumed", '{"trigger_sequence": 1, "wake_ms": 12, "from": "paused"}')
        await system("turn.started")  # 3
        await engine.publish(axon, Draft.message("hi", source="triage", origin="AGENT_EVENT"))
        await system("turn.completed")  # 5
        await engine.publish(axon, Draft.message("thanks", source="web"))  # 6
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await opened(app, pilot, ReplayScreen, axon, at_sequence=2)
        timeline = screen.query_one(Timeline)
        expected = Marks(turns=((3, 5),), wakes=(2,))
        await until(lambda: timeline.marks == expected, what="the marks")
        assert "woke in 12 ms" in str(screen.query_one(EventCard).render())
        roles = bar_roles(screen.position, timeline.total, timeline.size.width, timeline.marks)
        assert "timeline--turn" in roles and roles.count("timeline--position") == 1


async def test_the_state_pane_follows_tables_that_come_and_go(tmp_path: Path) -> None:
    """Stepping back before a table existed shows one that did; t shows the next table."""
    home = tmp_path / "home"
    async with Engine(home) as engine:
        axon = (await engine.create_axon("tables")).id
        await engine.query(axon, "CREATE TABLE notes(body TEXT)", write=True)
        await engine.publish(axon, Draft.message("one"))
        await engine.query(axon, "INSERT INTO notes VALUES ('first note')", write=True)
        await engine.publish(axon, Draft.message("two"))
        await engine.batch(
            axon,
            [
                {"sql": "CREATE TABLE later(n INTEGER)"},
                {"sql": "INSERT INTO later VALUES (42)"},
            ],
        )
    app = console_app(home)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await opened(app, pilot, ReplayScreen, axon, at_sequence=2)
        state = screen.query_one(StateTable)
        assert screen.table.name == "later" and rows_of(state) == [["1", "42"]]
        await pilot.press("t")
        await until(lambda: screen.table.name == "notes", what="the next table")
        await pilot.press("t")
        await until(lambda: screen.table.name == "later", what="round to the first again")

        await pilot.press("left")
        await until(lambda: screen.shown == 1, what="event #1's state")
        assert screen.table.name == "notes" and rows_of(state) == [["1", "first note"]]
        assert screen.error is None


# -- the state inspector


async def test_an_sql_error_is_shown_in_place_not_raised(tmp_path: Path) -> None:
    async with shop_console(tmp_path, InspectorScreen) as (app, pilot, screen):
        axon = screen.axon_id
        await pilot.press("e", *"SELEC * FROM items", "enter")
        await until(lambda: screen.error is not None, what="the syntax error")
        assert "syntax error" in (screen.error or "")
        assert screen.query_one("#inspector-error").display

        sql = screen.query_one("#sql", Input)
        sql.value = "DELETE FROM items"
        await pilot.press("enter")
        await until(lambda: "read-only" in (screen.error or ""), what="the read-only refusal")
        count = await app.session.backend.query(axon, "SELECT count(*) FROM items")
        assert count.rows == [[ORDERS]]

        sql.value = "SELECT name FROM items WHERE qty > 11 ORDER BY id"
        await pilot.press("enter")
        await until(lambda: screen.error is None, what="the error to clear")
        table = screen.query_one(StateTable)
        await until(lambda: table.row_count == 3, what="the answer")
        assert rows_of(table) == [["[i]item2"], ["[i]item3"], ["[i]item4"]]
        assert isinstance(app.screen, InspectorScreen)


async def test_the_as_of_selector_returns_the_old_state(tmp_path: Path) -> None:
    async with shop_console(tmp_path, InspectorScreen) as (_app, pilot, screen):
        table = screen.query_one(StateTable)
        now = qty_by_name(table)
        assert len(now) == ORDERS and now["[i]item1"] == "11"
        # Now: the rows the latest event wrote stand out.
        assert {rows_of(table)[i][0] for i in table.changed_rows} == {"4", "5"}

        await pilot.press("a", *"2", "enter")
        await until(lambda: qty_by_name(table) == {"[i]item1": "11", "[i]item2": "2"}, what="#2")
        assert screen.at_sequence == 2
        assert {rows_of(table)[i][0] for i in table.changed_rows} == {"1", "2"}
        await pilot.press("left_square_bracket")  # one event earlier
        await until(lambda: qty_by_name(table) == {"[i]item1": "1"}, what="#1")
        await pilot.press("right_square_bracket", "right_square_bracket")
        await until(lambda: screen.at_sequence == 3 and len(qty_by_name(table)) == 3, what="#3")

        await pilot.press("a", "backspace", "enter")  # empty: now
        await until(lambda: qty_by_name(table) == now, what="now again")
        assert screen.at_sequence is None

        await pilot.press("a", "9", "enter")
        await until(lambda: screen.error is not None, what="the refusal")
        assert "the latest event is #5" in (screen.error or "")


async def test_the_event_log_is_a_table_too_cut_at_the_chosen_event(tmp_path: Path) -> None:
    async with shop_console(tmp_path, InspectorScreen, at_sequence=2) as (_app, pilot, screen):
        table = screen.query_one(StateTable)
        await pilot.click("#tables", offset=(3, 2))  # the second entry: axon_events
        await until(lambda: screen.table is not None and screen.table.is_log, what="the log")
        await until(lambda: table.row_count == 2, what="events up to #2")
        names = [str(c.label) for c in table.columns.values()]
        assert names[:3] == ["rowid", "sequence", "timestamp_ms"]
        assert [rows_of(table)[i][1] for i in table.changed_rows] == ["2"]  # the chosen event

        await pilot.press("e", *"SELECT count(*) AS n FROM items", "enter")
        await until(lambda: rows_of(table) == [["2"]], what="the query as of #2")
        screen.query_one("#sql", Input).clear()
        await pilot.press("enter")  # an empty query: browse the table again
        await until(lambda: screen.sql is None and table.row_count == 2, what="the log again")


async def test_now_follows_new_events_in_the_inspector_and_the_replay(tmp_path: Path) -> None:
    async with shop_console(tmp_path, InspectorScreen) as (app, pilot, screen):
        table = screen.query_one(StateTable)
        backend = app.session.backend
        axon = screen.axon_id
        await pilot.press("down", "down")  # the cursor stays on its row as rows arrive
        await backend.publish(axon, Draft.message("order 6", source="cli"))
        await backend.query(axon, "INSERT INTO items(name, qty) VALUES ('late', 6)", write=True)
        await until(lambda: "late" in qty_by_name(table), what="the new row, now")
        assert table.cursor_row == 2
        await until(lambda: screen.latest == ORDERS + 1, what="the new latest event")
        await until(lambda: {rows_of(table)[i][2] for i in table.changed_rows} == {"late"})

        await pilot.press("escape")
        replay = await opened(app, pilot, ReplayScreen, axon)
        await backend.publish(axon, Draft.message("order 7", source="cli"))
        await until(lambda: replay.last == ORDERS + 2, what="the replay's history to grow")
        assert replay.query_one(Timeline).total == ORDERS + 2
        await pilot.press("end")
        await until(lambda: replay.query_one(ChangesView).sequence == ORDERS + 2)


async def test_a_large_table_is_browsed_a_page_at_a_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    app = console_app(home)
    total = 2 * PAGE_ROWS + 50
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: app._session is not None, what="the engine")
        backend = app.session.backend
        axon = (await backend.create_axon("big")).id
        await backend.batch(
            axon,
            [
                {"sql": "CREATE TABLE t(n INTEGER)"},
                {
                    "sql": "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
                    "WHERE n < ?) INSERT INTO t SELECT n FROM c",
                    "params": [total],
                },
            ],
        )
        screen = await opened(app, pilot, InspectorScreen, axon)
        status = screen.query_one("#inspector-status")

        def says(text: str) -> bool:
            return text in str(status.render())

        assert says(f"t: rows 1-200 of {total}")
        for key, expected in (("n", "201-400"), ("n", "401-450"), ("p", "201-400")):
            await pilot.press(key)
            await until(partial(says, f"rows {expected} of"), what=expected)
        await pilot.press("G")
        await until(lambda: says(f"rows 251-450 of {total}"), what="the last page")
        assert rows_of(screen.query_one(StateTable))[-1] == [str(total), str(total)]
        await pilot.press("g")
        await until(lambda: says("rows 1-200"), what="the first page")


async def test_database_text_is_never_read_as_markup(tmp_path: Path) -> None:
    async with shop_console(tmp_path, InspectorScreen) as (app, pilot, screen):
        axon = screen.axon_id
        assert rows_of(screen.query_one(StateTable))[0][2] == "[i]item1"
        await pilot.press("escape")
        replay = await opened(app, pilot, ReplayScreen, axon)
        card = replay.query_one(EventCard)
        assert "order 1 [bold]now[/]" in str(card.render())


async def test_a_long_value_is_cut_in_its_cell_and_whole_behind_enter(tmp_path: Path) -> None:
    async with shop_console(tmp_path, InspectorScreen) as (app, pilot, screen):
        long = "[b]" + "x" * 500 + '{"not": "json'
        await app.session.backend.query(
            screen.axon_id, "UPDATE items SET name = ? WHERE id = 1", [long], write=True
        )
        await pilot.press("a", "enter")  # as of now, read again
        table = screen.query_one(StateTable)
        await until(lambda: rows_of(table)[0][2].startswith("[b]xxx"), what="the long value")
        assert len(rows_of(table)[0][2]) == CELL_CHARS and rows_of(table)[0][2].endswith("…")
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, RowDetailScreen), what="the row in full")
        assert long in str(app.screen.query_one("#row-text", Static).render())
        assert "items · row 1" in str(app.screen.query_one("#row-box").border_title)
        await pilot.press("escape")
        await until(lambda: app.screen is screen, what="back to the inspector")


async def test_axons_replay_with_at_starts_in_the_viewer_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    await seeded_home(home)
    app = console_app(home, replay=("shop", 4))  # what `axons replay shop --at 4` asks for
    async with app.run_test(size=(80, 24)):
        await until(lambda: _replay_loaded(app), what="the replay viewer")
        assert app.screen.position == 4  # type: ignore[attr-defined]


async def test_the_changed_rows_take_the_themes_colour_in_every_shipped_theme(
    tmp_path: Path,
) -> None:
    from textual.color import Color

    async with shop_console(tmp_path, ReplayScreen, at_sequence=3) as (app, pilot, screen):
        table = screen.query_one(StateTable)
        for theme in ("dark", "light", "high-contrast"):
            app.theme = theme
            await pilot.pause()
            expected = Color.parse(app.current_theme.variables["changed"]).rich_color
            changed = table.get_component_rich_style("state-table--changed")
            assert changed.bgcolor == expected, theme
            assert screen.query_one(ChangesView).text  # it still draws


async def test_both_screens_work_the_same_attached_over_the_socket(tmp_path: Path) -> None:
    """A second console attached to the first one's engine: every read goes over HTTP."""
    home = tmp_path / "home"
    axon = await seeded_home(home)
    embedded = console_app(home)
    async with embedded.run_test(size=(100, 30)):
        await until(lambda: embedded._session is not None, what="the embedded engine")
        attached = console_app(home, tmp_config=tmp_path / "config2")
        async with attached.run_test(size=(100, 30)) as pilot:
            replay = await opened(attached, pilot, ReplayScreen, axon, at_sequence=2)
            assert not attached.session.embedded
            await pilot.press("right")
            await until(lambda: replay.shown == 3, what="event #3 over the socket")
            assert [(c.op, c.rowid) for c in replay.changes] == [("insert", 3), ("update", 2)]
            await pilot.press("escape")
            inspector = await opened(attached, pilot, InspectorScreen, axon, at_sequence=2)
            table = inspector.query_one(StateTable)
            assert qty_by_name(table) == {"[i]item1": "11", "[i]item2": "2"}
            await pilot.press("e", *"SELEC 1", "enter")
            await until(lambda: "syntax error" in (inspector.error or ""), what="the error")


# -- the parts, without a screen


async def test_the_state_reader_lists_own_tables_and_reads_the_log_as_of_a_sequence(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    axon = await seed_shop(engine)
    await engine.query(
        axon, "CREATE VIEW big_orders AS SELECT * FROM items WHERE qty > 3", write=True
    )
    reader = StateReader(engine, axon)
    assert [t.name for t in await reader.tables()] == ["big_orders", "items", "axon_events"]
    log = next(t for t in await reader.tables(2) if t.is_log)
    page = await reader.first_page(log, 2)
    assert [row[0] for row in page.rows] == [1, 2] and page.total == 2
    view = next(t for t in await reader.tables() if t.name == "big_orders")
    assert not view.has_rowid
    assert (await reader.first_page(view, None)).total == ORDERS
    monkeypatch.setattr(state_reader, "MAX_ROWS", 2)  # the marks come in several answers
    await engine.publish_batch(
        axon, [Draft(t, "{}", "bot", origin="SYSTEM_EVENT") for t in MARKED_TYPES], system=True
    )
    assert await reader.typed_events(MARKED_TYPES) == [
        (ORDERS + 1 + i, t) for i, t in enumerate(MARKED_TYPES)
    ]
    items = next(t for t in await reader.tables(3) if t.name == "items")
    at_change = await reader.page_from(items, 3, 2)
    assert (at_change.first, at_change.total) == (2, 3)


def test_the_timeline_bar_marks_turns_wakes_and_where_you_are() -> None:
    typed = [(3, "agent.resumed"), (4, "turn.started"), (6, "turn.completed"), (9, "turn.started")]
    marks = Marks.from_events(typed, last=10)
    assert marks == Marks(turns=((4, 6), (9, 10)), wakes=(3,))
    roles = bar_roles(position=2, total=10, width=10, marks=marks)
    assert roles[:3] == ["timeline--played", "timeline--position", "timeline--wake"]
    assert roles[3:6] == ["timeline--turn"] * 3 and roles[8:] == ["timeline--turn"] * 2
    assert roles[6] == "timeline--ahead"
    assert [sequence_at(x, total=1_000_000, width=100) for x in (0, 50, 99)] == [
        1,
        500_001,
        990_001,
    ]
    assert sequence_at(7, total=3, width=10) == 3


def test_the_jump_field_and_the_as_of_field_read_what_people_type(utc: None) -> None:
    assert parse_jump("#12", FROZEN_MS).sequence == 12
    assert parse_jump(" 7 ", FROZEN_MS).sequence == 7
    assert parse_jump("20:30:00", FROZEN_MS).at_ms == FROZEN_MS + 200_000  # 20:26:40 + 200 s
    assert parse_jump("2026-05-28 20:26:41", 0).at_ms == FROZEN_MS + 1000
    with pytest.raises(ValueError, match="#123"):
        parse_jump("yesterday", FROZEN_MS)
    assert parse_as_of("", 9) is None
    assert parse_as_of("#0", 9) == 0
    with pytest.raises(ValueError, match="latest event is #9"):
        parse_as_of("10", 9)


# -- screenshots (fixed data, ids, times and user)


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC while the test runs, so times on screen are the same everywhere."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def snapshot_home(
    tmp_path: Path, frozen: FrozenClock, utc: None, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str]:
    """The shop, written by a fixed user at fixed times; the home is relative (the status
    bar shows its socket path) and agents run in Docker (the status bar says where)."""
    import axons_tui.session

    monkeypatch.setattr(axons_tui.session, "docker_available", lambda: True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER", "ada")
    monkeypatch.setenv("LOGNAME", "ada")
    home = Path("home")
    return home, asyncio.run(seeded_home(home, frozen))


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_replay_screenshot(snap_compare: Any, snapshot_home: tuple[Path, str], size: Any) -> None:
    home, axon = snapshot_home
    app = console_app(home, FrozenClock(FROZEN_MS + ORDERS * STEP_MS))

    async def open_replay(pilot: Pilot[Any]) -> None:
        await opened(app, pilot, ReplayScreen, axon, at_sequence=3)

    assert snap_compare(app, terminal_size=size, run_before=open_replay)


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_inspector_screenshot(
    snap_compare: Any, snapshot_home: tuple[Path, str], size: Any
) -> None:
    home, axon = snapshot_home
    app = console_app(home, FrozenClock(FROZEN_MS + ORDERS * STEP_MS))

    async def open_inspector(pilot: Pilot[Any]) -> None:
        await opened(app, pilot, InspectorScreen, axon, at_sequence=3)

    assert snap_compare(app, terminal_size=size, run_before=open_inspector)
