"""The Agent Gateway (contract §5.3), in front of the scripted model server:

- `gateway_overhead_ms`: time to the first byte of a streamed answer's body (the first SSE
  event of an Anthropic `/v1/messages` call) through the engine's gateway, minus the same
  call made directly to the scripted model server, in the same run; p50 of each. The
  gateway's path holds the token check, the limits, the key swap and one more hop over
  loopback; its `gateway.request` commit happens as the answer ends, outside the figure.

The model server runs in its own process; the client is a blocking `http.client` on one
keep-alive connection per path, in a thread, so it does not share the engine's loop. The
two paths alternate call by call, so both see the same machine.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import time
from pathlib import Path

import orjson

from bench.harness import Figure, Sizes, fresh_home, gateway_overhead, run
from engine import Engine
from engine.models import AgentSpec
from engine.runtime import AgentKey

TARGET_MS = 2.0
WARMUP = 20
KEY_VAR = "AXONS_BENCH_GATEWAY_KEY"
BODY = orjson.dumps(
    {
        "model": "bench",
        "max_tokens": 64,
        "stream": True,
        "tools": [{"name": "Bash", "input_schema": {"type": "object", "properties": {}}}],
        "messages": [{"role": "user", "content": "Hello"}],
    }
)


class Caller:
    """One keep-alive connection; `first_byte_ms` times one call to its first body byte."""

    def __init__(self, url: str, key: str) -> None:
        host, _, port = url.removeprefix("http://").partition("/")[0].partition(":")
        self.path = "/" + url.removeprefix("http://").partition("/")[2]
        self.path = self.path.rstrip("/") + "/v1/messages"
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {
            "content-type": "application/json",
            "x-api-key": key,
            "anthropic-version": "2023-06-01",
        }

    def first_byte_ms(self) -> float:
        began = time.perf_counter()
        self.connection.request("POST", self.path, body=BODY, headers=self.headers)
        response = self.connection.getresponse()
        first = response.read1(1)
        took = (time.perf_counter() - began) * 1000
        rest = response.read()
        if response.status != 200 or not first or b"message_stop" not in rest:
            raise RuntimeError(f"{self.path}: {response.status} {first + rest[:300]!r}")
        return took


async def _measure(home: Path, model_url: str, count: int) -> tuple[list[float], list[float]]:
    os.environ[KEY_VAR] = "sk-bench-real-key"
    async with Engine(home, agent_runtime="process") as engine:
        axon_id = (await engine.create_axon("gateway")).id
        spec = AgentSpec.model_validate(
            {
                "name": "bench",
                "axon": axon_id,
                "command": ["true"],
                "gateways": {
                    "ANTHROPIC": {"upstream": model_url, "secret": KEY_VAR, "header": "x-api-key"}
                },
            }
        )
        key = AgentKey(engine.agents.home_id, axon_id, "bench")
        admission = await engine.agents.gateway.admit(key, spec, docker=False)
        direct = Caller(model_url, "sk-bench-real-key")
        through = Caller(admission.env["ANTHROPIC_BASE_URL"], admission.token)
        direct_ms: list[float] = []
        gateway_ms: list[float] = []
        for i in range(WARMUP + count):
            d = await asyncio.to_thread(direct.first_byte_ms)
            g = await asyncio.to_thread(through.first_byte_ms)
            if i >= WARMUP:
                direct_ms.append(d)
                gateway_ms.append(g)
        direct.connection.close()
        through.connection.close()
        return direct_ms, gateway_ms


def gateway_overhead_ms(sizes: Sizes, base: Path | None) -> Figure:
    from tests.acp_real_support import model_server  # the scripted model, as the tests run it

    count = max(50, sizes.wakes * 2)
    with fresh_home(base, "gateway") as home, model_server(home / "requests.jsonl") as model:
        direct, through = run(_measure(home / "home", model.url, count))
    return gateway_overhead(
        "gateway_overhead_ms",
        direct,
        through,
        ceiling_name="p50 time to first byte, direct to the scripted model server",
        target=TARGET_MS,
        note=(
            "p50(time to the first body byte of a streamed /v1/messages answer through the "
            "engine's Agent Gateway) minus p50(the same call direct to the scripted model "
            f"server), {count} calls each, alternating, after {WARMUP} unmeasured."
        ),
    )
