"""The console under load, headless (`App.run_test`), each figure beside a ceiling from the
same run:

- `tui_monitor_1k_ms`: the monitor's first frame with 1,000 Axons, against a bare Textual
  `DataTable` showing as many ready-made rows.
- `tui_loop_lag_p99_ms` and `tui_rss_mb`: 8 visible dashboard panes while 10,000 events/s
  are published through the embedded engine (ingest included); the event loop's lag p99 after
  start-up, against the same events written straight into bare Textual `Log` widgets.
- `tui_open_1m_ms` and `tui_scroll_top_ms`: the Axon view of an Axon with 1,000,000 events,
  its first frame and the jump to the first event, against reading that screenful with apsw
  into a bare Textual `Log` on a new screen.

A frame is counted when Textual's compositor hands it to the (headless) driver: the probe
wraps `App._display`, so "first frame" means painted, not merely mounted.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import apsw

from bench.harness import (
    Figure,
    Sizes,
    drafts,
    fresh_home,
    median,
    ms,
    percentile,
    run,
    split,
)
from engine import Engine

if TYPE_CHECKING:
    from textual.app import App

    from axons_tui.app import AxonsApp

T = TypeVar("T")

MONITOR_SIZE = (100, 30)
DASHBOARD_SIZE = (160, 40)  # 3 columns of panes, 4 rows: 8 Axons all visible
AXON_VIEW_SIZE = (100, 30)
LAG_INTERVAL_S = 0.005  # the probe's sleep; lag is how late it wakes
FRAME_TIMEOUT_S = 60.0
MONITOR_OPENS = 3
FIXTURE_BATCH = 10_000  # events per publish_batch while building the 1M-event Axon
DELIVERY_WAIT_S = 15.0  # after the load, for the console to take in what was published


# -- probes -------------------------------------------------------------------------------


class LoopLag:
    """How late the event loop wakes a task that sleeps `LAG_INTERVAL_S` over and over: the
    time a keypress or a frame would wait behind whatever else runs on the loop."""

    def __init__(self) -> None:
        self.samples: list[float] = []  # (monotonic time, lag ms)
        self.times: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LAG_INTERVAL_S)
            now = time.perf_counter()
            self.times.append(now)
            self.samples.append(ms(now - started - LAG_INTERVAL_S))

    def start(self) -> None:
        self._task = asyncio.create_task(self._probe())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    def after(self, since: float) -> list[float]:
        """Lags sampled after `since` (perf_counter): start-up excluded."""
        return [lag for t, lag in zip(self.times, self.samples, strict=True) if t >= since]


class FrameProbe:
    """The time of the first frame painted while `ready()` holds (App._display wrapped)."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.ready: Callable[[], bool] = lambda: False
        self.painted_at: float | None = None
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is not None and self.painted_at is None and self.ready():
                self.painted_at = time.perf_counter()

        app._display = display  # type: ignore[method-assign]

    def arm(self, ready: Callable[[], bool]) -> float:
        """Wait for the next frame that satisfies `ready`; returns when armed (perf_counter)."""
        self.ready, self.painted_at = ready, None
        return time.perf_counter()

    async def painted(self, what: str) -> float:
        deadline = time.monotonic() + FRAME_TIMEOUT_S
        while self.painted_at is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no frame showed {what} within {FRAME_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.001)
        return self.painted_at


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def console(home: Path, config_dir: Path) -> AxonsApp:
    """The real console on `home` (embedded engine serving its API), with an empty user
    config (default keys and themes)."""
    from axons_tui.app import AxonsApp, ConsoleConfig

    return AxonsApp(
        ConsoleConfig(
            home=home, keys_file=config_dir / "keys.toml", themes_dir=config_dir / "themes"
        )
    )


async def _dashboard_up(app: AxonsApp) -> None:
    from axons_tui.screens.dashboard import DashboardScreen

    def up() -> bool:
        if app.return_code is not None:  # e.g. a socket path too long for the home's API
            raise RuntimeError(f"the console exited with code {app.return_code} at start")
        return isinstance(app.screen, DashboardScreen)

    await until(up, "the dashboard")


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` in a fresh process, so its memory figure is its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


# -- tui_monitor_1k_ms --------------------------------------------------------------------


async def _many_axons(home: Path, axons: int, events_each: int) -> None:
    async with Engine(home) as eng:
        for first in range(0, axons, 250):
            created = await asyncio.gather(
                *(eng.create_axon(f"axon-{i:04d}") for i in range(first, min(axons, first + 250)))
            )
            await asyncio.gather(*(eng.publish_batch(a.id, drafts(events_each)) for a in created))


async def _monitor_frames(home: Path, config_dir: Path, axons: int) -> list[tuple[float, float]]:
    """Open the monitor `MONITOR_OPENS` times: ms from `m` to the first frame showing rows
    (the top of the table, sorted over every Axon, totals counting them all), and to the
    first frame with every Axon's row in the table (the rest follow the first frame)."""
    from axons_tui.screens.monitor import MonitorScreen

    def rows(at_least: int) -> Callable[[], bool]:
        def shown() -> bool:
            screen = app.screen
            return isinstance(screen, MonitorScreen) and screen.table.row_count >= at_least

        return shown

    app = console(home, config_dir)
    times = []
    async with app.run_test(size=MONITOR_SIZE) as pilot:
        await _dashboard_up(app)
        probe = FrameProbe(app)
        for _ in range(MONITOR_OPENS):
            started = probe.arm(rows(1))
            await pilot.press("m")
            first = ms(await probe.painted("the monitor's rows") - started)
            probe.arm(rows(axons))
            every = ms(await probe.painted("every Axon's row") - started)
            times.append((first, every))
            await pilot.press("escape")
            await until(lambda: not isinstance(app.screen, MonitorScreen), "back")
    return times


async def _datatable_frame(axons: int) -> float:
    """The ceiling: a bare DataTable screen with as many rows, built from memory."""
    from textual.app import App, ComposeResult
    from textual.screen import Screen
    from textual.widgets import DataTable

    rows = [(f"axon-{i:04d}", "·", "0", "", "1m", "·", "") for i in range(axons)]

    class Rows(Screen[None]):
        def compose(self) -> ComposeResult:
            yield DataTable()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns("Axon", "Agents", "ev/min", "last hour", "last", "wake", "!")
            table.add_rows(rows)

    app: App[None] = App()
    async with app.run_test(size=MONITOR_SIZE):
        probe = FrameProbe(app)
        started = probe.arm(
            lambda: isinstance(app.screen, Rows) and app.screen.query_one(DataTable).row_count > 0
        )
        await app.push_screen(Rows())
        return ms(await probe.painted("the bare table") - started)


def tui_monitor_1k_ms(sizes: Sizes, base: Path | None) -> Figure:
    with fresh_home(base, "tui_monitor") as root:
        started = time.perf_counter()
        run(_many_axons(root / "home", sizes.tui_monitor_axons, sizes.tui_monitor_events))
        build_s = time.perf_counter() - started
        opens = run(_monitor_frames(root / "home", root / "config", sizes.tui_monitor_axons))
        ceiling = run(_datatable_frame(sizes.tui_monitor_axons))
    firsts = [first for first, _ in opens]
    return Figure(
        name="tui_monitor_1k_ms",
        value=firsts[0],
        unit="ms",
        better="lower",
        ceiling=ceiling,
        ceiling_name="a bare Textual DataTable screen with as many rows, from memory",
        target=500.0,
        note=f"{sizes.tui_monitor_axons} Axons with {sizes.tui_monitor_events} events each; "
        "from pressing m to the first painted frame of the table (its top rows, sorted over "
        "every Axon; the first, cold open). The other rows join right after that frame "
        "(all_rows_ms); each Axon's history fills in afterwards.",
        detail={
            "axons": sizes.tui_monitor_axons,
            "opens_ms": [round(t, 1) for t in firsts],
            "warm_median_ms": median(firsts[1:]) if len(firsts) > 1 else firsts[0],
            "all_rows_ms": [round(every, 1) for _, every in opens],
            "build_seconds": build_s,
        },
    )


# -- tui_loop_lag_p99_ms, tui_rss_mb ------------------------------------------------------


class Schedule:
    """`rate` events per second in ticks of `tick_s`, split over `lanes`; a late tick sends
    what it owes, so the total holds when the loop falls behind."""

    def __init__(self, rate: int, tick_s: float, lanes: int) -> None:
        self.rate, self.tick_s, self.lanes = rate, tick_s, lanes
        self.sent = 0

    async def run(self, seconds: float, send: Callable[[list[int]], None]) -> float:
        """Call `send(counts per lane)` each tick for `seconds`; the seconds it took."""
        started = time.perf_counter()
        total = int(self.rate * seconds)
        tick = 0
        while self.sent < total:
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * self.tick_s - time.perf_counter()))
            owed = min(total, int(self.rate * (time.perf_counter() - started))) - self.sent
            if owed > 0:
                send(split(owed, self.lanes))
                self.sent += owed
        return time.perf_counter() - started


async def _console_under_load(root: Path, sizes: Sizes) -> dict[str, float]:
    """8 dashboard panes live while the embedded engine ingests the load."""
    app = console(root / "home", root / "config")
    lag = LoopLag()
    async with app.run_test(size=DASHBOARD_SIZE) as pilot:
        await _dashboard_up(app)
        backend = app.session.backend
        axon_ids = [(await backend.create_axon(f"pane-{i}")).id for i in range(sizes.tui_panes)]
        await until(lambda: len(app.screen.query("AxonPane")) == sizes.tui_panes, "the panes")
        await pilot.pause()
        in_flight: set[asyncio.Future[Any]] = set()

        def publish(counts: list[int]) -> None:
            for axon_id, n in zip(axon_ids, counts, strict=True):
                if n:
                    task = asyncio.ensure_future(backend.publish_batch(axon_id, drafts(n)))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)

        lag.start()
        measured_from = time.perf_counter() + sizes.tui_warmup_seconds
        schedule = Schedule(sizes.tui_rate, sizes.tui_tick_ms / 1000, sizes.tui_panes)
        peak = rss_mb()

        async def sample_rss() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_mb())
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample_rss())
        seconds = await schedule.run(sizes.tui_seconds, publish)
        await asyncio.gather(*in_flight)
        published = sum([await backend.last_sequence(a) for a in axon_ids])
        with suppress(RuntimeError):  # a console that lost its stream: reported, not raised
            await until(lambda: app.feed.delivered >= published, "every event", DELIVERY_WAIT_S)
        sampler.cancel()
        await lag.stop()
        delivered = app.feed.delivered
    lags = lag.after(measured_from)
    return {
        "p99_ms": percentile(lags, 99),
        "p50_ms": percentile(lags, 50),
        "max_ms": max(lags),
        "rss_mb": max(peak, rss_mb()),
        "events_per_s": published / seconds,
        "published": float(published),
        "delivered": float(delivered),
    }


async def _logs_under_load(sizes: Sizes) -> dict[str, float]:
    """The ceiling: the same schedule written straight into 8 bare `Log` widgets."""
    from textual.app import App, ComposeResult
    from textual.containers import Grid
    from textual.widgets import Log

    class Logs(App[None]):
        CSS = "Grid { grid-size: 3; } Log { height: 1fr; border: solid $primary; }"

        def compose(self) -> ComposeResult:
            with Grid():
                for _ in range(sizes.tui_panes):
                    yield Log()

    app = Logs()
    lag = LoopLag()
    async with app.run_test(size=DASHBOARD_SIZE):
        logs = list(app.query(Log))
        sequences = [0] * len(logs)
        payload = drafts(1)[0].payload

        def write(counts: list[int]) -> None:
            for i, (log, n) in enumerate(zip(logs, counts, strict=True)):
                first = sequences[i]
                sequences[i] += n
                log.write_lines(
                    f"{seq:>7} USER_EVENT bench bench {payload}"
                    for seq in range(first + 1, first + n + 1)
                )

        lag.start()
        measured_from = time.perf_counter() + sizes.tui_warmup_seconds
        schedule = Schedule(sizes.tui_rate, sizes.tui_tick_ms / 1000, sizes.tui_panes)
        await schedule.run(sizes.tui_seconds, write)
        await lag.stop()
    lags = lag.after(measured_from)
    return {"p99_ms": percentile(lags, 99), "rss_mb": rss_mb()}


def _load_in_child(base: Path | None, sizes: Sizes) -> dict[str, float]:
    with fresh_home(base, "tui_load") as root:
        return run(_console_under_load(root, sizes))


def _logs_in_child(sizes: Sizes) -> dict[str, float]:
    return run(_logs_under_load(sizes))


def _under_load(sizes: Sizes, base: Path | None) -> tuple[dict[str, float], dict[str, float]]:
    """Each side in its own process: memory and loop are theirs alone."""
    return in_child(_load_in_child, base, sizes), in_child(_logs_in_child, sizes)


def _load_note(sizes: Sizes) -> str:
    return (
        f"{sizes.tui_panes} visible dashboard panes, {sizes.tui_rate:,} events/s in total for "
        f"{sizes.tui_seconds:g} s published through the embedded engine (ingest included), "
        f"the first {sizes.tui_warmup_seconds:g} s excluded."
    )


@functools.cache
def _cached_load(sizes: Sizes, base: Path | None) -> tuple[dict[str, float], dict[str, float]]:
    """Both load figures come from one run (the second asks for the first's result)."""
    return _under_load(sizes, base)


def _lost(found: dict[str, float]) -> str:
    """Why the figure is not the target scenario's, when the console did not take in every
    event (its live stream ended, or it fell behind for good)."""
    if found["delivered"] >= found["published"]:
        return ""
    return (
        f"NOT MEASURED: the console received {found['delivered']:,.0f} of "
        f"{found['published']:,.0f} events (its live stream ended or fell behind), so the "
        "lag below is of a console that stopped showing events; see detail."
    )


def tui_loop_lag_p99_ms(sizes: Sizes, base: Path | None) -> Figure:
    found, ceiling = _cached_load(sizes, base)
    lost = _lost(found)
    return Figure(
        name="tui_loop_lag_p99_ms",
        value=None if lost else found["p99_ms"],
        unit="ms",
        better="lower",
        ceiling=ceiling["p99_ms"],
        ceiling_name=f"the same events written into {sizes.tui_panes} bare Textual Log widgets, "
        "no engine",
        target=50.0,
        note=f"{lost}{_load_note(sizes)} Lag: how late a {ms(LAG_INTERVAL_S):g} ms sleep wakes.",
        detail={k: v for k, v in found.items() if k != "rss_mb"},
    )


def tui_rss_mb(sizes: Sizes, base: Path | None) -> Figure:
    found, ceiling = _cached_load(sizes, base)
    lost = _lost(found)
    return Figure(
        name="tui_rss_mb",
        value=None if lost else found["rss_mb"],
        unit="MB",
        better="lower",
        ceiling=ceiling["rss_mb"],
        ceiling_name=f"{sizes.tui_panes} bare Textual Log widgets after the same events",
        target=300.0,
        note=f"{lost}peak resident memory of the console's process: {_load_note(sizes)}",
        detail={k: found[k] for k in ("rss_mb", "events_per_s", "published", "delivered")},
    )


# -- tui_open_1m_ms, tui_scroll_top_ms ----------------------------------------------------


async def _build_long_axon(home: Path, events: int) -> str:
    async with Engine(home) as eng:
        axon_id = (await eng.create_axon("long")).id
        for n in split(events, max(1, events // FIXTURE_BATCH)):
            await eng.publish_batch(axon_id, drafts(n))
        return axon_id


def long_axon_home(base: Path | None, events: int) -> tuple[Path, str, float]:
    """A home holding one Axon of `events` events, built once and kept in the bench's cache
    (under `--dir` or the temp dir): (home, Axon id, seconds spent building now)."""
    cache = (base or Path(tempfile.gettempdir())) / "axons-bench-cache" / f"long-axon-{events}"
    ready = cache / "axon-id"
    if ready.exists():
        return cache / "home", ready.read_text().strip(), 0.0
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    started = time.perf_counter()
    axon_id = run(_build_long_axon(cache / "home", events))
    ready.write_text(axon_id)
    return cache / "home", axon_id, time.perf_counter() - started


async def _axon_view_frames(home: Path, config_dir: Path, axon_id: str, last: int) -> dict:
    """ms from opening the Axon view to a frame showing its newest events, and from `home`
    (first event) to a frame showing event 1."""
    from axons_tui.screens.axon import AxonScreen
    from axons_tui.widgets.event_log import EventLog

    app = console(home, config_dir)
    async with app.run_test(size=AXON_VIEW_SIZE) as pilot:
        await _dashboard_up(app)
        probe = FrameProbe(app)

        def log() -> EventLog | None:
            screen = app.screen
            return screen.query_one(EventLog) if isinstance(screen, AxonScreen) else None

        def showing(sequence: int) -> Callable[[], bool]:
            """The event is within the view and its page has arrived."""

            def check() -> bool:
                found = log()
                if found is None:
                    return False
                first = int(found.scroll_y) + 1
                if not first <= sequence < first + found.scrollable_content_region.height:
                    return False
                return found.event_at(sequence) is not None

            return check

        started = probe.arm(showing(last))
        app.open_axon(axon_id)
        opened = ms(await probe.painted("the newest event") - started)
        found = log()
        assert found is not None
        found.focus()
        started = probe.arm(showing(1))
        await pilot.press("home")
        top = ms(await probe.painted("event 1") - started)
    return {"open_ms": opened, "top_ms": top}


async def _bare_page_frame_ms(path: Path, sql: str) -> float:
    """A ceiling: read a screenful of events with apsw, show them in a bare Textual `Log` on
    a new screen; ms from the read's start to that screen's first frame."""
    from textual.app import App, ComposeResult
    from textual.screen import Screen
    from textual.widgets import Log

    class Page(Screen[None]):
        def __init__(self, lines: list[str]) -> None:
            super().__init__()
            self.lines = lines

        def compose(self) -> ComposeResult:
            yield Log()

        def on_mount(self) -> None:
            self.query_one(Log).write_lines(self.lines)

    app: App[None] = App()
    async with app.run_test(size=AXON_VIEW_SIZE):
        probe = FrameProbe(app)
        started = probe.arm(
            lambda: isinstance(app.screen, Page) and app.screen.query_one(Log).line_count > 0
        )
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            rows = conn.execute(sql).fetchall()
        finally:
            conn.close()
        await app.push_screen(Page([" ".join(str(v) for v in row[:6]) for row in rows]))
        return ms(await probe.painted("the bare page") - started)


def _bare_pages_ms(home: Path, axon_id: str) -> tuple[float, float]:
    """The ceilings of the Axon view figures: its newest and its oldest screenful."""
    path = next((home / "axons").glob(f"{axon_id}*.db"))
    rows = AXON_VIEW_SIZE[1]
    newest = f"SELECT * FROM axon_events ORDER BY sequence DESC LIMIT {rows}"
    oldest = f"SELECT * FROM axon_events ORDER BY sequence LIMIT {rows}"
    return run(_bare_page_frame_ms(path, newest)), run(_bare_page_frame_ms(path, oldest))


@functools.cache
def _axon_view(sizes: Sizes, base: Path | None) -> dict[str, Any]:
    """Both Axon view figures come from one run."""
    home, axon_id, build_s = long_axon_home(base, sizes.tui_log_events)
    with tempfile.TemporaryDirectory(prefix="axons-bench-config-") as config:
        found = run(_axon_view_frames(home, Path(config), axon_id, sizes.tui_log_events))
    newest, oldest = _bare_pages_ms(home, axon_id)
    return {**found, "newest_page_ms": newest, "oldest_page_ms": oldest, "build_seconds": build_s}


def tui_open_1m_ms(sizes: Sizes, base: Path | None) -> Figure:
    found = _axon_view(sizes, base)
    return Figure(
        name="tui_open_1m_ms",
        value=found["open_ms"],
        unit="ms",
        better="lower",
        ceiling=found["newest_page_ms"],
        ceiling_name="the newest screenful read with apsw into a bare Textual Log screen",
        target=500.0,
        note=f"an Axon of {sizes.tui_log_events:,} events: from opening the Axon view to the "
        "first frame showing its newest event.",
        detail={"build_seconds": found["build_seconds"]},
    )


def tui_scroll_top_ms(sizes: Sizes, base: Path | None) -> Figure:
    found = _axon_view(sizes, base)
    return Figure(
        name="tui_scroll_top_ms",
        value=found["top_ms"],
        unit="ms",
        better="lower",
        ceiling=found["oldest_page_ms"],
        ceiling_name="the oldest screenful read with apsw into a bare Textual Log screen",
        target=500.0,
        note=f"an Axon of {sizes.tui_log_events:,} events: from pressing home in its Axon "
        "view to the first frame showing event 1.",
    )


__all__ = [
    "tui_loop_lag_p99_ms",
    "tui_monitor_1k_ms",
    "tui_open_1m_ms",
    "tui_rss_mb",
    "tui_scroll_top_ms",
]
