"""Live fan-out over HTTP: a paced publisher POSTs to an `axons serve` process while SSE
subscribers, in a third process (bench/sse_subscribers.py), stream the same Axon. Each
event's latency runs from just before its publish request (the `time.time_ns()` put in its
payload) to a subscriber reading its frame: HTTP, durability (one fsync) and fan-out. Three
processes, so publisher, server and subscribers do not share a GIL.

The publisher sends one request per tick of a no-drift schedule (bench/pacing.py): one event
to /publish when the rate allows one per tick, else that tick's events as one /publish/batch.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import orjson

from bench import rawsqlite
from bench.harness import Figure, Sizes, fresh_home, percentile, run
from bench.pacing import Pacer
from bench.rawhttp import Pool
from bench.server import Server, event_json, running_server

WARMUP_EVENTS = 100
FINISH_TIMEOUT_S = 60.0
TEXT = "x" * 160  # with the send time, a ~200-byte payload like the other figures'


class _Publisher:
    """Sends each tick's events in one request, stamped with the time just before it."""

    def __init__(self, pool: Pool, axon_id: str, last: int) -> None:
        self.pool = pool
        self.one = f"/v1/axons/{axon_id}/publish"
        self.batch = f"/v1/axons/{axon_id}/publish/batch"
        self.last = last  # the highest sequence acknowledged so far
        self.acks_ms = array("d")  # per request, from just before sending to its answer

    async def send(self, due: float, n: int, sent_ns: int | None = None) -> None:
        t = time.time_ns() if sent_ns is None else sent_ns
        event = event_json(f'{{"t":{t},"text":"{TEXT}"}}')
        if n == 1:
            status, answer = await self.pool.post(self.one, orjson.dumps(event))
        else:
            status, answer = await self.pool.post(self.batch, orjson.dumps({"events": [event] * n}))
        if sent_ns is None:
            self.acks_ms.append((time.time_ns() - t) / 1e6)
        if status != 200:
            raise RuntimeError(f"publish answered {status}: {answer[:300]!r}")
        found = orjson.loads(answer)
        sequence = found["sequence"] if n == 1 else found["results"][-1]["sequence"]
        self.last = max(self.last, sequence)


async def _subscribers(
    server: Server, axon_id: str, after: int, count: int, out: Path
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sse_subscribers",
        server.host,
        str(server.port),
        axon_id,
        str(after),
        str(count),
        str(out),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "AXONS_BENCH_TOKEN": server.token},
    )
    assert proc.stdout is not None
    ready = await asyncio.wait_for(proc.stdout.readline(), FINISH_TIMEOUT_S)
    if ready != b"ready\n":
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"the SSE subscribers did not start: {ready[:300]!r}")
    return proc


async def _step(
    server: Server,
    pool: Pool,
    axon_id: str,
    last: int,
    rate: int,
    subscribers: int,
    seconds: float,
    tick_s: float,
) -> dict[str, Any]:
    """One measurement: `subscribers` streams, `rate` ev/s for `seconds`. Has "error" when
    a stream failed (a server cuts off a subscriber that falls too far behind)."""
    publisher = _Publisher(pool, axon_id, last)
    out = server.home / "latencies.bin"
    proc = await _subscribers(server, axon_id, last, subscribers, out)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for _ in range(WARMUP_EVENTS // 10):  # unmeasured: every stream is live after these
            await publisher.send(0.0, 10, sent_ns=0)
        await asyncio.sleep(0.2)
        pacer = Pacer(rate, tick_s, seconds)
        server_cpu, own_cpu = server.cpu_seconds(), time.process_time()
        took = await pacer.run(publisher.send)
        server_cpu, own_cpu = server.cpu_seconds() - server_cpu, time.process_time() - own_cpu
        proc.stdin.write(b"%d\n" % publisher.last)
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), FINISH_TIMEOUT_S + 10)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if not line:
        raise RuntimeError(f"the SSE subscriber process exited ({proc.returncode}) with no result")
    found = orjson.loads(line)
    latencies = array("q", out.read_bytes())
    step: dict[str, Any] = {
        "last": publisher.last,
        "rate": rate,
        "subscribers": subscribers,
        "events_per_request": pacer.burst,
        "events": pacer.events,
        "achieved_eps": pacer.events / took,
        "publish_ack_p50_ms": percentile(publisher.acks_ms, 50),
        "publish_ack_p99_ms": percentile(publisher.acks_ms, 99),
        "worst_pacing_lag_ms": pacer.worst_lag_ms,
        "server_cpu_pct": 100 * server_cpu / took,
        "publisher_cpu_pct": 100 * own_cpu / took,
        "subscribers_cpu_pct": 100 * found["cpu_s"] / took,
    }
    expected = pacer.events * subscribers
    if found["failed_streams"]:
        step["error"] = (
            f"{found['failed_streams']} of {subscribers} streams failed, "
            f"first: {found['errors'][0][-160:]}"
        )
    elif len(latencies) != expected:
        step["error"] = f"{len(latencies)} timed deliveries, expected {expected}"
    else:
        in_ms = [ns / 1e6 for ns in latencies]
        step.update(
            p50_ms=percentile(in_ms, 50),
            p99_ms=percentile(in_ms, 99),
            max_ms=max(in_ms),
            deliveries=len(in_ms),
            deliveries_per_s=len(in_ms) / took,
        )
    return step


async def _steps(
    server: Server,
    steps: list[tuple[int, int]],
    seconds: float,
    tick_ms: float,
    p99_limit_ms: float | None,
) -> list[dict[str, Any]]:
    """Run `steps` of (rate, subscribers) in order on one Axon. With a limit, a step whose
    p99 is over it runs once more (a shared machine has passing hiccups), and the ladder
    stops after a step that is over it twice, or that failed."""
    axon_id = await asyncio.to_thread(server.create_axon, "sse")
    pool = Pool(server.host, server.port, server.token)
    done: list[dict[str, Any]] = []
    try:
        last = 0
        for rate, subscribers in steps:
            for attempt in (1, 2):
                found = await _step(
                    server, pool, axon_id, last, rate, subscribers, seconds, tick_ms / 1000
                )
                last = found.pop("last")
                found["attempt"] = attempt
                done.append(found)
                if p99_limit_ms is None or not _over(found, p99_limit_ms):
                    break
            if "error" in found or (p99_limit_ms is not None and _over(found, p99_limit_ms)):
                break
    finally:
        await pool.close()
    return done


def _over(step: dict[str, Any], limit: float) -> bool:
    """Over the limit; a failed step (no p99) is not retried."""
    return "error" not in step and step["p99_ms"] >= limit


def _shape(tick_ms: float) -> str:
    return (
        f"publisher paced (no drift): one request every {tick_ms:g} ms over TCP keep-alive "
        "(POST /publish for one event, /publish/batch for more); subscribers in a process "
        "of their own; server = `axons serve` in its own process; latency from just "
        "before the publish request (time.time_ns() in the payload) to a subscriber "
        "reading the SSE frame."
    )


def sse_fanout_p99_ms(sizes: Sizes, base: Path | None) -> Figure:
    with fresh_home(base, "sse-fanout") as home:
        fsync_p50, fsync_p99 = rawsqlite.commit_ms(home, sizes.fsync_commits)
        with running_server(home / "server") as server:
            [found] = run(
                _steps(
                    server,
                    [(sizes.sse_rate, sizes.sse_subscribers)],
                    sizes.sse_seconds,
                    sizes.sse_tick_ms,
                    None,
                )
            )
    if "error" in found:
        raise RuntimeError(found["error"])
    del found["attempt"]
    return Figure(
        name="sse_fanout_p99_ms",
        value=found.pop("p99_ms"),
        unit="ms",
        better="lower",
        ceiling=fsync_p50,
        ceiling_name="raw apsw commit of one small row, WAL+FULL (p50)",
        target=10.0,
        note=f"{sizes.sse_subscribers} SSE subscribers, {sizes.sse_rate} ev/s for "
        f"{sizes.sse_seconds:g} s; " + _shape(sizes.sse_tick_ms),
        detail={**found, "fsync_p50_ms": fsync_p50, "fsync_p99_ms": fsync_p99},
    )


def _passed(step: dict[str, Any], limit: float) -> bool:
    return "error" not in step and step["p99_ms"] < limit


def _step_line(step: dict[str, Any], limit: float) -> str:
    shape = (
        f"{step['rate']} ev/s x {step['subscribers']} subs ({step['events_per_request']} ev/req)"
    )
    if step["attempt"] > 1:
        shape += ", run again"
    cpu = (
        f"cpu: server {step['server_cpu_pct']:.0f}%, subscribers "
        f"{step['subscribers_cpu_pct']:.0f}%, publisher {step['publisher_cpu_pct']:.0f}%"
    )
    if "error" in step:
        return f"{shape}: FAILED {step['error']}; {cpu}"
    return (
        f"{shape}: {step['deliveries_per_s']:.0f} deliveries/s, "
        f"achieved {step['achieved_eps']:.0f} ev/s, p50 {step['p50_ms']:.2f} ms, "
        f"p99 {step['p99_ms']:.2f} ms (publish ack p99 {step['publish_ack_p99_ms']:.2f} ms); "
        f"{cpu} [{'ok' if _passed(step, limit) else 'over'}]"
    )


def sse_deliveries_per_s(sizes: Sizes, base: Path | None) -> Figure:
    limit = sizes.sse_p99_limit_ms
    with fresh_home(base, "sse-deliveries") as home, running_server(home / "server") as server:
        steps = run(
            _steps(
                server, list(sizes.sse_steps), sizes.sse_step_seconds, sizes.sse_step_tick_ms, limit
            )
        )
    passed = [s for s in steps if _passed(s, limit)]
    best = max(passed, key=lambda s: s["deliveries_per_s"], default=None)
    return Figure(
        name="sse_deliveries_per_s",
        value=best["deliveries_per_s"] if best else 0.0,
        unit="deliveries/s",
        better="higher",
        note=f"events x subscribers delivered per second at the best of the steps "
        f"(rate x subscribers, {sizes.sse_step_seconds:g} s each; a step over the limit runs "
        f"once more, and the ladder stops at a step over it twice) whose p99 stayed under "
        f"{limit:g} ms; " + _shape(sizes.sse_step_tick_ms),
        detail={
            "best_step": _step_line(best, limit) if best else None,
            "steps": [_step_line(s, limit) for s in steps],
            "p99_limit_ms": limit,
        },
    )
