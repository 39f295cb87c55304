"""Publish throughput over HTTP: wrk (a separate C load generator) keeps many keep-alive TCP
connections busy against an `axons serve` process, each request carrying one event
(/publish) or a batch (/publish/batch), every one acknowledged only once durable.

Afterwards the Axon's last sequence must equal the events of all 2xx answers wrk counted:
nothing acknowledged is lost, nothing unacknowledged is counted. The ceiling is the
in-process `publish_durable_eps` of the same run: what the engine does with no HTTP at all.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.harness import Figure, Sizes, fresh_home
from bench.publish import publish_durable_eps
from bench.server import Server, event_json, running_server

SCRIPT = Path(__file__).with_name("publish.lua")
DRAIN_S = 0.5  # wrk's -d outlasts the script's sending by at least this: answers come home
CEILING_NAME = "in-process publish_durable_eps of this run (no HTTP)"


def _wrk(
    server: Server,
    path: str,
    body_file: Path,
    sizes: Sizes,
    seconds: float,
    paths_file: Path | None = None,
) -> dict[str, Any]:
    """Run wrk once; its script's summary, plus the server's CPU seconds while it ran. With
    `paths_file` the requests go to its paths in turn instead of to `path`."""
    command = [
        "wrk",
        f"-t{sizes.http_threads}",
        f"-c{sizes.http_connections}",
        f"-d{math.ceil(seconds + DRAIN_S)}s",
        "-s",
        str(SCRIPT),
        server.url + path,
        "--",
        server.token,
        str(body_file),
        str(seconds),
    ]
    if paths_file is not None:
        command += [str(paths_file), str(sizes.http_threads)]
    cpu = server.cpu_seconds()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {done.stderr or done.stdout}")
    found: dict[str, Any] = orjson.loads(lines[-1][len("BENCH ") :])
    found["server_cpu_s"] = server.cpu_seconds() - cpu
    found["ok"] = sum(n for status, n in found["statuses"].items() if status.startswith("2"))
    if found["sent"] != found["answered"]:
        raise RuntimeError(
            f"wrk ended with {found['sent'] - found['answered']} requests "
            "unanswered; the exact loss check needs them all answered"
        )
    return found


def _shape(sizes: Sizes, requests: str) -> str:
    """How a figure loads the server, for its note."""
    return (
        f"wrk -t{sizes.http_threads} -c{sizes.http_connections} keep-alive over TCP "
        f"loopback, {requests}, ~200-byte payloads, for {sizes.http_seconds:g} s"
    )


def _without_wrk(name: str, shape: str, target: float | None) -> Figure | None:
    """The figure, marked not measured, where wrk is missing; None where it is installed."""
    if shutil.which("wrk") is not None:
        return None
    why = "wrk is not installed (not on PATH), so this figure was not measured; install wrk"
    print(f"warning: {name} skipped: {why}", file=sys.stderr)
    return Figure(
        name=name,
        value=None,
        unit="ev/s",
        better="higher",
        target=target,
        note=f"SKIPPED: {why} to measure it ({shape}).",
        detail={"skipped": why},
    )


def _figure(
    name: str, sizes: Sizes, base: Path | None, events_per_request: int, target: float
) -> Figure:
    route = "/publish" if events_per_request == 1 else "/publish/batch"
    shape = _shape(sizes, f"{events_per_request} event(s) per POST {route}")
    if (skipped := _without_wrk(name, shape, target)) is not None:
        return skipped
    ceiling = publish_durable_eps(sizes, base)
    with fresh_home(base, name) as home:
        body: dict[str, Any] = event_json()
        if events_per_request > 1:
            body = {"events": [body] * events_per_request}
        body_file = home / "body.json"
        body_file.write_bytes(orjson.dumps(body))
        with running_server(home / "server") as server:
            axon_id = server.create_axon(name)
            path = f"/v1/axons/{axon_id}{route}"
            warm = _wrk(server, path, body_file, sizes, sizes.http_warmup_seconds)
            measured = _wrk(server, path, body_file, sizes, sizes.http_seconds)
            last = server.last_sequence(axon_id)
    acknowledged = (warm["ok"] + measured["ok"]) * events_per_request
    if last != acknowledged:
        raise RuntimeError(
            f"wrk counted {acknowledged} acknowledged events (warm-up "
            f"included) but the Axon's log ends at {last}"
        )
    events = measured["ok"] * events_per_request
    seconds = measured["seconds"]
    non_2xx = {s: n for s, n in measured["statuses"].items() if not s.startswith("2")}
    return Figure(
        name=name,
        value=events / seconds,
        unit="ev/s",
        better="higher",
        ceiling=ceiling.value,
        ceiling_name=CEILING_NAME,
        target=target,
        note=f"{shape}; server = `axons serve` in its own process (server_cpu_pct: % of one "
        "core, all its threads). Checked: the Axon's last sequence equals the events of all "
        "2xx answers.",
        detail={
            "events": events,
            "requests_2xx": measured["ok"],
            "non_2xx": sum(non_2xx.values()),
            "non_2xx_by_status": non_2xx,
            "wrk_errors": measured["errors"],
            "seconds": seconds,
            "requests_per_s": measured["answered"] / seconds,
            "request_p50_ms": measured["latency_p50_us"] / 1000,
            "request_p99_ms": measured["latency_p99_us"] / 1000,
            "request_max_ms": measured["latency_max_us"] / 1000,
            "server_cpu_pct": 100 * measured["server_cpu_s"] / seconds,
            "last_sequence": last,
            "warmup_events": warm["ok"] * events_per_request,
            "load_generator": "wrk",
        },
    )


@functools.cache  # measured once per run: the many-Axons figure compares with it
def http_publish_eps(sizes: Sizes, base: Path | None) -> Figure:
    return _figure("http_publish_eps", sizes, base, 1, target=10_000)


def http_publish_batch_eps(sizes: Sizes, base: Path | None) -> Figure:
    return _figure("http_publish_batch_eps", sizes, base, sizes.http_batch, target=50_000)


def http_publish_many_axons_eps(sizes: Sizes, base: Path | None) -> Figure:
    """`http_publish_eps` spread over `many_axons` Axons: each request of every connection
    goes to the next Axon in turn, so every publish commits alone and only group commit
    across Axons can share the flushes."""
    name = "http_publish_many_axons_eps"
    shape = _shape(
        sizes, f"1 event per POST /publish, each request to the next of {sizes.many_axons} Axons"
    )
    if (skipped := _without_wrk(name, shape, None)) is not None:
        return skipped
    ceiling = http_publish_eps(sizes, base)
    with fresh_home(base, name) as home:
        body_file = home / "body.json"
        body_file.write_bytes(orjson.dumps(event_json()))
        with running_server(home / "server") as server:
            axon_ids = [server.create_axon(f"many-{i}") for i in range(sizes.many_axons)]
            paths_file = home / "paths.txt"
            paths_file.write_text("".join(f"/v1/axons/{a}/publish\n" for a in axon_ids))
            for axon_id in axon_ids:  # every file opened (and created) before measuring
                server.publish(axon_id, event_json())
            warm = _wrk(server, "/", body_file, sizes, sizes.http_warmup_seconds, paths_file)
            measured = _wrk(server, "/", body_file, sizes, sizes.http_seconds, paths_file)
            stored = sum(server.last_sequence(a) for a in axon_ids)
    acknowledged = len(axon_ids) + warm["ok"] + measured["ok"]
    if stored != acknowledged:
        raise RuntimeError(
            f"wrk counted {acknowledged} acknowledged events (warm-up included) but the "
            f"{sizes.many_axons} Axons hold {stored}"
        )
    seconds = measured["seconds"]
    return Figure(
        name=name,
        value=measured["ok"] / seconds,
        unit="ev/s",
        better="higher",
        ceiling=ceiling.value,
        ceiling_name="http_publish_eps of this run (the same load on one Axon)",
        note=f"{shape}; server = `axons serve` in its own process. Checked: the Axons' last "
        "sequences add up to the 2xx answers.",
        detail={
            "events": measured["ok"],
            "axons": sizes.many_axons,
            "non_2xx": sum(n for st, n in measured["statuses"].items() if not st.startswith("2")),
            "wrk_errors": measured["errors"],
            "seconds": seconds,
            "request_p50_ms": measured["latency_p50_us"] / 1000,
            "request_p99_ms": measured["latency_p99_us"] / 1000,
            "server_cpu_pct": 100 * measured["server_cpu_s"] / seconds,
        },
    )
