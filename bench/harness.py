"""What every figure shares: the result record, run sizes, fresh temp homes on a real file
system, the event loop, the event payload and a few statistics.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import tempfile
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from engine import Draft

T = TypeVar("T")

try:  # the lead adds uvloop as a dependency; plain asyncio works the same, slower
    import uvloop

    LOOP = "uvloop"
except ImportError:  # pragma: no cover - depends on the environment
    uvloop = None  # type: ignore[assignment]
    LOOP = "asyncio"

# ~200 bytes of JSON, the size of a short chat message.
PAYLOAD = '{"text": "' + "x" * 180 + '"}'
EVENT_TYPE = "bench"
SOURCE = "bench"

# Filesystems that keep everything in memory: an fsync there costs nothing, so a figure
# measured on one says nothing about durability.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})

THROUGHPUT_NOTE = "ratio = value/ceiling (higher is better; 1.0 = as fast as raw SQLite)"
LATENCY_NOTE = "ratio = ceiling/value (lower latency is better; 1.0 = at the floor)"


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does. `quick()` keeps the shape and shrinks the counts."""

    publishers: int = 100
    publish_events: int = 50_000
    publish_batch: int = 10
    warmup_events: int = 2_000
    subscribers: int = 10
    fanout_rate: int = 10_000  # events per second
    fanout_tick_ms: float = 1.0  # one burst of rate*tick events per tick
    fanout_seconds: float = 3.0
    tt_events: int = 100_000
    tt_events_per_change: int = 10  # publish_batch of this many, then one row update
    tt_rows: int = 1_000
    tt_queries: int = 20
    list_axons: int = 10_000
    list_page: int = 5_000
    list_runs: int = 5
    ceiling_runs: int = 3
    fsync_commits: int = 200
    many_axons: int = 1_000  # publish_many_axons_eps: this many Axons...
    many_publishers: int = 4  # ...each with this many concurrent publishers, 1 event per call
    many_events: int = 40_000
    disk_fsyncs: int = 1_000
    # HTTP figures: the server runs as a separate `axons serve` process.
    http_threads: int = 2  # wrk -t
    http_connections: int = 50  # wrk -c, keep-alive
    http_seconds: float = 5.0
    http_warmup_seconds: float = 1.0
    http_batch: int = 100  # events per /publish/batch request
    sse_subscribers: int = 20
    sse_rate: int = 1_000  # events per second
    sse_tick_ms: float = 1.0  # one publish request per tick: here one event per request
    sse_seconds: float = 5.0
    # (events per second, subscribers) for sse_deliveries_per_s, in increasing load; its
    # ticks are longer, each tick's events one /publish/batch, so fan-out is what is loaded.
    sse_steps: tuple[tuple[int, int], ...] = (
        (500, 20),
        (1_000, 20),
        (2_000, 20),
        (4_000, 20),
        (8_000, 20),
    )
    sse_step_tick_ms: float = 10.0
    sse_step_seconds: float = 2.0
    sse_p99_limit_ms: float = 50.0
    # Agent lifecycle figures: the echo agent in Docker (bench/agents/echo).
    wakes: int = 100  # single-agent wakes from paused, each beside a bare docker unpause
    hibernated_wakes: int = 5  # each beside a bare docker start
    paused_agents: int = 100  # one agent on each of this many Axons
    crowd_wakes: int = 100  # single wakes among them
    # The console (bench/tui.py), headless.
    tui_monitor_axons: int = 1_000
    tui_monitor_events: int = 10  # events in each of them
    tui_panes: int = 8  # visible dashboard panes under load
    tui_rate: int = 10_000  # events per second, in total
    tui_tick_ms: float = 10.0
    tui_seconds: float = 30.0
    tui_warmup_seconds: float = 3.0  # start-up, left out of the lag figure
    tui_log_events: int = 1_000_000  # the long Axon the Axon view opens
    quick: bool = False

    @classmethod
    def quick_sizes(cls) -> Sizes:
        return cls(
            publish_events=10_000,
            warmup_events=1_000,
            fanout_seconds=1.0,
            tt_events=20_000,
            list_axons=2_000,
            many_events=20_000,
            http_seconds=2.0,
            sse_seconds=2.0,
            sse_step_seconds=1.0,
            wakes=30,
            hibernated_wakes=3,
            paused_agents=20,
            crowd_wakes=30,
            tui_seconds=8.0,
            tui_log_events=100_000,
            quick=True,
        )


@dataclass
class Figure:
    """One measured figure and the ceiling it is compared with, both from this run. `value`
    is None when the figure could not be measured here (the note says why)."""

    name: str
    value: float | None
    unit: str
    better: Literal["higher", "lower"]
    ceiling: float | None = None
    ceiling_name: str | None = None
    target: float | None = None
    target_ratio: float | None = None  # a second bar some figures must also clear
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.ceiling or not self.value:
            return None
        if self.better == "higher":
            return self.value / self.ceiling
        return self.ceiling / self.value

    @property
    def meets_target(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        ok = self.value >= self.target if self.better == "higher" else self.value <= self.target
        if self.target_ratio is not None:
            ok = ok and (self.ratio or 0.0) >= self.target_ratio
        return ok

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio
        out: dict[str, Any] = {
            "name": self.name,
            "value": _round(self.value),
            "unit": self.unit,
            "better": self.better,
            "ceiling": _round(self.ceiling),
            "ceiling_name": self.ceiling_name,
            "ratio": None if ratio is None else round(ratio, 4),
            "ratio_formula": "value/ceiling" if self.better == "higher" else "ceiling/value",
            "target": self.target,
            "target_op": ">=" if self.better == "higher" else "<=",
        }
        if self.target_ratio is not None:
            out["target_ratio"] = self.target_ratio
        out["meets_target"] = self.meets_target
        out["note"] = " ".join(
            part
            for part in (THROUGHPUT_NOTE if self.better == "higher" else LATENCY_NOTE, self.note)
            if part
        )
        out["detail"] = {k: _round(v) for k, v in self.detail.items()}
        return out


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if abs(v) < 100 else round(v, 1)
    return v


# -- running ------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one figure's coroutine on a fresh event loop (uvloop when installed)."""
    if uvloop is not None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def filesystem_of(path: Path) -> str:
    """The type of the file system holding `path` (Linux; "unknown" elsewhere)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, kind = "", "unknown"
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


@contextmanager
def fresh_home(base: Path | None, name: str) -> Iterator[Path]:
    """A new, empty directory for one figure, removed afterwards."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"axons-bench-{name}-", dir=base) as d:
        home = Path(d)
        kind = filesystem_of(home)
        if kind in MEMORY_FILESYSTEMS:
            print(
                f"warning: {home} is on {kind}: fsync is free there, so durable figures "
                "are meaningless; pass --dir on a disk",
                file=sys.stderr,
            )
        yield home


def drafts(n: int) -> list[Draft]:
    """Fresh drafts (the engine fills in the author, so they are not shared between calls)."""
    return [Draft(EVENT_TYPE, PAYLOAD, SOURCE) for _ in range(n)]


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` whole numbers that differ by at most one."""
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ms(seconds: float) -> float:
    return seconds * 1000.0


def gateway_overhead(
    name: str,
    direct: Sequence[float],
    through: Sequence[float],
    *,
    ceiling_name: str,
    note: str,
    target: float | None = None,
) -> Figure:
    """What a gateway adds to a call: p50 through it minus p50 direct, measured alternately
    in the same run. The direct p50 stands as the ceiling (its ratio is not a score)."""
    return Figure(
        name=name,
        value=round(median(through) - median(direct), 3),
        unit="ms",
        better="lower",
        ceiling=round(median(direct), 3),
        ceiling_name=ceiling_name,
        target=target,
        note=note + " The ceiling is the direct p50 itself (the ratio is not a score here).",
        detail={
            "calls": len(direct),
            "direct_p50_ms": median(direct),
            "gateway_p50_ms": median(through),
            "direct_p99_ms": percentile(direct, 99),
            "gateway_p99_ms": percentile(through, 99),
        },
    )
