"""The figures, in the order they run. Each takes the run's sizes and a base directory for
its fresh temp home, and returns one `Figure` measured together with its ceiling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.fanout import fanout_p99_ms
from bench.harness import Figure, Sizes
from bench.listing import list_10k_axons_ms
from bench.publish import publish_batch_eps, publish_durable_eps
from bench.time_travel import time_travel_ms

Measure = Callable[[Sizes, Path | None], Figure]

FIGURES: dict[str, Measure] = {
    "publish_durable_eps": publish_durable_eps,
    "publish_batch_eps": publish_batch_eps,
    "fanout_p99_ms": fanout_p99_ms,
    "time_travel_ms": time_travel_ms,
    "list_10k_axons_ms": list_10k_axons_ms,
}
