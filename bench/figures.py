"""The figures, in the order they run. Each takes the run's sizes and a base directory for
its fresh temp home, and returns one `Figure` measured together with its ceiling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.acp import acp_first_update_overhead_ms, acp_permission_wake_ms
from bench.fanout import fanout_p99_ms
from bench.gateway import gateway_overhead_ms
from bench.harness import Figure, Sizes
from bench.http_publish import (
    http_publish_batch_eps,
    http_publish_eps,
    http_publish_eps_on,
    http_publish_many_axons_eps,
)
from bench.listing import list_10k_axons_ms
from bench.many_axons import publish_many_axons_eps
from bench.mcp_gateway import mcp_call_overhead_ms
from bench.paused_agents import paused_agents_100
from bench.publish import publish_batch_eps, publish_durable_eps
from bench.sse import sse_deliveries_per_s, sse_fanout_p99_ms
from bench.time_travel import time_travel_ms
from bench.tui import (
    tui_loop_lag_p99_ms,
    tui_monitor_1k_ms,
    tui_open_1m_ms,
    tui_rss_mb,
    tui_scroll_top_ms,
)
from bench.wake import wake_hibernated_ms, wake_paused_p50_ms, wake_paused_p99_ms

Measure = Callable[[Sizes, Path | None], Figure]

FIGURES: dict[str, Measure] = {
    "publish_durable_eps": publish_durable_eps,
    "publish_batch_eps": publish_batch_eps,
    "publish_many_axons_eps": publish_many_axons_eps,
    "fanout_p99_ms": fanout_p99_ms,
    "time_travel_ms": time_travel_ms,
    "list_10k_axons_ms": list_10k_axons_ms,
    # Over HTTP, against `axons serve` in its own process.
    "http_publish_eps": http_publish_eps,
    "http_publish_eps_uvicorn": http_publish_eps_on("uvicorn"),
    "http_publish_eps_granian": http_publish_eps_on("granian"),
    "http_publish_batch_eps": http_publish_batch_eps,
    "http_publish_many_axons_eps": http_publish_many_axons_eps,
    "sse_fanout_p99_ms": sse_fanout_p99_ms,
    "sse_deliveries_per_s": sse_deliveries_per_s,
    # Agent lifecycle: the echo agent in Docker (bench/agents/echo).
    "wake_paused_p50_ms": wake_paused_p50_ms,
    "wake_paused_p99_ms": wake_paused_p99_ms,
    "wake_hibernated_ms": wake_hibernated_ms,
    "paused_agents_100": paused_agents_100,
    # ACP: the deterministic sample agent (sample_agents/acp_agent).
    "acp_first_update_overhead_ms": acp_first_update_overhead_ms,
    "acp_permission_wake_ms": acp_permission_wake_ms,
    # Agent Gateway: the scripted model server, direct and through the engine's gateway.
    "gateway_overhead_ms": gateway_overhead_ms,
    # MCP gateway: an mcp SDK server, direct and through the agent's MCP endpoint.
    "mcp_call_overhead_ms": mcp_call_overhead_ms,
    # The console, headless (Textual's run_test), on an embedded engine.
    "tui_loop_lag_p99_ms": tui_loop_lag_p99_ms,
    "tui_rss_mb": tui_rss_mb,
    "tui_open_1m_ms": tui_open_1m_ms,
    "tui_scroll_top_ms": tui_scroll_top_ms,
    "tui_monitor_1k_ms": tui_monitor_1k_ms,
}
