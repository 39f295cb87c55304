"""The monitor (`m`): every Axon of a real home in one table, filtered, sorted and kept live
from the engine's stream; and the console benchmarks, run small (figures, not timings).

Snapshots use fixed ids and commit times (`frozen`) and a home path relative to the test's
own folder, so the pictures are the same on every run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from textual.pilot import Pilot
from textual.widgets.data_table import CellDoesNotExist

from axons_tui.app import AxonsApp
from axons_tui.screens.monitor import MonitorScreen
from axons_tui.widgets.home_totals import HomeTotals
from axons_tui.widgets.monitor_table import MonitorTable
from bench import tui
from bench.harness import Sizes
from engine import Draft, Engine
from tests.console_support import FrozenClock, console_app, until
from tests.http_support import ServerProcess

FIVE_MINUTES = 5 * 60_000

# -- data ---------------------------------------------------------------------------------


def agent_state(event_type: str, agent: str, **body: Any) -> Draft:
    """A lifecycle event as the engine writes it (origin SYSTEM_EVENT, source the agent)."""
    return Draft(event_type, orjson.dumps(body).decode(), agent, "SYSTEM_EVENT", author="axons")


def push_event() -> Draft:
    return Draft("push", '{"ref": "main"}', "github", "EXTERNAL_EVENT")


async def seed_home(home: Path, clock: FrozenClock) -> dict[str, str]:
    """Four Axons over the last hour: a CI feed busy all hour, a support Axon whose agent
    asked a question and paused (it waits for a human), a deploy whose agent woke (18 ms),
    and a quiet one. Their ids by name."""
    async with Engine(home) as eng:
        names = {"ci": "ci", "support": "support", "deploy": "deploy [prod]", "quiet": "quiet"}
        ids = {key: (await eng.create_axon(name)).id for key, name in names.items()}
        for push in range(12):
            clock.advance(FIVE_MINUTES)
            await eng.publish_batch(
                ids["ci"],
                [push_event() for _ in range(1 + push % 3)],
            )
            if push == 6:
                await eng.publish_batch(
                    ids["support"],
                    [
                        agent_state("agent.starting", "triage"),
                        agent_state("agent.running", "triage"),
                        Draft.message("Billing export fails for big CSVs", source="web"),
                        Draft.message("Which exports fail?", source="triage", origin="AGENT_EVENT"),
                        agent_state("agent.paused", "triage"),
                    ],
                    system=True,
                )
            if push == 10:
                await eng.publish_batch(
                    ids["deploy"],
                    [
                        Draft.message("Ship v1.4?", source="cli"),
                        agent_state("agent.resumed", "approver", trigger_sequence=1, wake_ms=18.4),
                    ],
                    system=True,
                )
    return ids


@pytest.fixture
def seeded(tmp_path: Path, frozen: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A console on the seeded home, with a home path and a clock the same on every run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("axons_tui.session.docker_available", lambda: False)
    ids = asyncio.run(seed_home(Path("home"), frozen))

    def make() -> tuple[AxonsApp, dict[str, str]]:
        return console_app(Path("home"), frozen, tmp_config=tmp_path / "config"), ids

    return make


async def open_monitor(app: AxonsApp, pilot: Pilot[Any]) -> MonitorScreen:
    """`m`, then wait until every Axon's row shows its history."""
    await until(lambda: type(app.screen).__name__ == "DashboardScreen", what="the dashboard")
    await pilot.press("m")
    await until(lambda: isinstance(app.screen, MonitorScreen), what="the monitor")
    monitor = app.screen
    assert isinstance(monitor, MonitorScreen)
    await until(lambda: filled(monitor), what="every row's history")
    return monitor


def filled(monitor: MonitorScreen) -> bool:
    table = monitor.table
    return (
        table.row_count == len(monitor.activities) > 0
        and all(a.seeded for a in monitor.activities.values())
        and all(cell(table, key, "rate") != "…" for key in monitor.activities)
    )


def cell(table: MonitorTable, axon_id: str, column: str) -> str | None:
    """The cell's text; None while the Axon has no row yet."""
    try:
        return table.get_cell(axon_id, column).plain.strip()
    except CellDoesNotExist:
        return None


def names_in_order(table: MonitorTable) -> list[str]:
    return [str(cell(table, str(row.key.value), "name")) for row in table.ordered_rows]


# -- behaviour ----------------------------------------------------------------------------


async def test_every_axon_shows_its_agents_rate_hour_age_and_wake(seeded: Any) -> None:
    app, ids = seeded()
    async with app.run_test(size=(100, 30)) as pilot:
        monitor = await open_monitor(app, pilot)
        table = monitor.table
        assert names_in_order(table) == ["ci", "deploy [prod]", "quiet", "support"]  # not markup
        assert cell(table, ids["ci"], "hour") == "▃▅█▃▅█▃▅█▃▅█"  # 1, 2, 3 pushes a bar
        assert table.get_cell(ids["deploy"], "hour").plain == " " * 10 + "█ "  # 10 min ago
        assert cell(table, ids["ci"], "age") == "0s"
        assert cell(table, ids["ci"], "rate") == "3"  # the last push, just now
        assert cell(table, ids["support"], "age") == "25m"
        assert cell(table, ids["support"], "agents") == "triage paused"
        assert cell(table, ids["deploy"], "agents") == "approver running"
        assert cell(table, ids["deploy"], "wake") == "18ms"
        assert cell(table, ids["quiet"], "age") == "·"
        assert [cell(table, ids[k], "waiting") for k in ids] == ["", "⚑", "", ""]
        totals = str(monitor.query_one(HomeTotals).query_one("#totals-text").render())
        assert "4 Axons" in totals and "2 agents" in totals and "1 running" in totals


async def test_slash_filters_the_table_by_name_or_id_and_escape_clears_it(seeded: Any) -> None:
    app, ids = seeded()
    async with app.run_test(size=(80, 24)) as pilot:
        monitor = await open_monitor(app, pilot)
        await pilot.press("slash", "d", "e")
        await until(lambda: monitor.table.row_count == 1, what="the filter")
        assert names_in_order(monitor.table) == ["deploy [prod]"]
        await pilot.press("backspace", "backspace", *ids["quiet"][-6:])
        await until(lambda: names_in_order(monitor.table) == ["quiet"], what="by id")
        await pilot.press("enter")  # keeps the filter, back to the table
        assert monitor.table.has_focus and monitor.table.row_count == 1
        await pilot.press("escape")
        await until(lambda: monitor.table.row_count == 4, what="the filter cleared")
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, MonitorScreen), what="back")


async def test_a_header_click_sorts_again_flips_and_o_cycles_the_column(seeded: Any) -> None:
    app, _ = seeded()
    async with app.run_test(size=(100, 30)) as pilot:
        monitor = await open_monitor(app, pilot)
        table = monitor.table
        last_hour_header = (18 + 2) + (16 + 2) + (6 + 2) + 2  # inside "last hour"
        await pilot.click(MonitorTable, offset=(last_hour_header, 0))
        await until(lambda: table.sort_column == "hour", what="the click")
        assert names_in_order(table)[:3] == ["ci", "support", "deploy [prod]"]  # busiest first
        assert names_in_order(table)[3] == "quiet"
        await pilot.click(MonitorTable, offset=(last_hour_header, 0))
        await until(lambda: not table.sort_reverse, what="the flip")
        assert names_in_order(table)[0] == "quiet"
        await pilot.press("o")
        assert table.sort_column == "age" and table.sort_reverse  # newest first
        assert names_in_order(table) == ["ci", "deploy [prod]", "support", "quiet"]


async def test_live_events_new_axons_and_agent_states_arrive(seeded: Any) -> None:
    app, ids = seeded()
    async with app.run_test(size=(100, 30)) as pilot:
        monitor = await open_monitor(app, pilot)
        table = monitor.table
        backend = app.session.backend
        hellos = [Draft.message(f"hello {n}", source="cli") for n in range(3)]
        await backend.publish_batch(ids["quiet"], hellos)
        await until(lambda: cell(table, ids["quiet"], "rate") == "3", what="the live rate")
        assert cell(table, ids["quiet"], "age") == "0s"
        await backend.publish(ids["quiet"], agent_state("agent.failed", "helper"), system=True)
        await until(lambda: cell(table, ids["quiet"], "agents") == "helper failed", what="state")
        late = await backend.create_axon("late")
        await backend.publish(late.id, Draft.message("first", source="cli"))
        await until(lambda: late.id in monitor.activities, what="the new Axon")
        await until(lambda: cell(table, late.id, "name") == "late", what="its name")
        await until(lambda: cell(table, late.id, "rate") == "1", what="its event, once")
        totals = monitor.query_one(HomeTotals).query_one("#totals-text")
        await until(lambda: "5 Axons" in str(totals.render()), what="the totals")
        await backend.publish(ids["support"], Draft.message("CSV over 1 GB", source="tui"))
        await until(lambda: cell(table, ids["support"], "waiting") == "", what="answered")


async def test_enter_opens_the_highlighted_axon(seeded: Any) -> None:
    app, ids = seeded()
    opened: list[str] = []
    app.open_axon = opened.append  # type: ignore[method-assign]  # the Axon view is not ours
    async with app.run_test(size=(100, 30)) as pilot:
        monitor = await open_monitor(app, pilot)
        await pilot.press("down", "enter")
        await until(lambda: opened == [ids["deploy"]], what="the Axon opened")
        assert any(title == "Monitor: sort by ev/min" for title, _, _ in monitor.get_commands())


async def test_an_attached_console_monitors_the_same_rows_live(
    seeded: Any, frozen: FrozenClock, tmp_path: Path
) -> None:
    """Over the API (`axons serve` in its own process), the monitor reads the same history
    and follows the same live stream as with an embedded engine."""
    _, ids = seeded()
    server = ServerProcess(Path("home").resolve()).start()
    try:
        app = console_app(
            Path("home"), frozen, tmp_config=tmp_path / "config", connect="home/engine.sock"
        )
        async with app.run_test(size=(100, 30)) as pilot:
            monitor = await open_monitor(app, pilot)
            assert not app.session.embedded
            table = monitor.table
            assert cell(table, ids["ci"], "hour") == "▃▅█▃▅█▃▅█▃▅█"
            assert cell(table, ids["support"], "waiting") == "⚑"
            assert cell(table, ids["deploy"], "agents") == "approver running"
            await app.session.backend.publish(ids["quiet"], Draft.message("hi", source="tui"))
            await until(lambda: cell(table, ids["quiet"], "age") != "·", what="the live event")
    finally:
        server.kill()


# -- snapshots ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_monitor_snapshot(snap_compare: Any, seeded: Any, size: tuple[int, int]) -> None:
    app, _ = seeded()

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_monitor(app, pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


# -- benchmarks, small --------------------------------------------------------------------


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A short relative base: the console's socket path must fit a unix socket's limit."""
    monkeypatch.chdir(tmp_path)
    return Path(".")


TINY = Sizes(
    tui_monitor_axons=30,
    tui_monitor_events=2,
    tui_panes=2,
    tui_rate=400,
    tui_seconds=1.0,
    tui_warmup_seconds=0.2,
    tui_log_events=3_000,
)


def test_the_monitor_figure_runs_small(bench_dir: Path) -> None:
    figure = tui.tui_monitor_1k_ms(TINY, bench_dir)
    assert figure.value is not None and figure.value > 0 and figure.ceiling
    assert figure.detail["axons"] == 30 and len(figure.detail["opens_ms"]) == tui.MONITOR_OPENS


def test_the_load_figures_run_small(bench_dir: Path) -> None:
    lag = tui.tui_loop_lag_p99_ms(TINY, bench_dir)
    rss = tui.tui_rss_mb(TINY, bench_dir)
    assert lag.value is not None and lag.ceiling is not None
    assert rss.value is not None and rss.value > 10
    # Every event landed, and the console received each of them.
    assert lag.detail["published"] == lag.detail["delivered"] == TINY.tui_rate * TINY.tui_seconds


def test_the_long_axon_figures_run_small(bench_dir: Path) -> None:
    opened = tui.tui_open_1m_ms(TINY, bench_dir)
    top = tui.tui_scroll_top_ms(TINY, bench_dir)
    assert opened.value is not None and top.value is not None and opened.ceiling
    _, _, build_s = tui.long_axon_home(bench_dir, TINY.tui_log_events)
    assert build_s == 0.0  # built once, then taken from the cache


async def test_the_live_stream_survives_a_burst_bigger_than_its_buffer(seeded: Any) -> None:
    """The engine cuts a live subscriber loose when it falls 10,000 events behind; the
    embedded console then catches up from the file and stays live (it used to stop)."""
    app, ids = seeded()
    async with app.run_test(size=(100, 30)) as pilot:
        monitor = await open_monitor(app, pilot)
        backend = app.session.backend
        quiet = monitor.activities[ids["quiet"]]
        await backend.publish(ids["quiet"], Draft.message("before", source="cli"))
        await until(lambda: quiet.last_sequence == 1, what="the console follows quiet")
        burst = [Draft.message(f"burst {n}", source="cli") for n in range(12_000)]
        await backend.publish_batch(ids["quiet"], burst)
        await until(lambda: quiet.last_sequence == 12_001, timeout=30, what="the burst")
        await backend.publish(ids["quiet"], Draft.message("after", source="cli"))
        await until(lambda: quiet.last_sequence == 12_002, what="the stream still live")
        assert quiet.per_minute(app.now_ms()) == 12_002  # each once
