"""Shared pieces of the real-agent tests (Claude Code, OpenCode, Gemini CLI over ACP).

- `ModelServer`: the scripted model server (`sample_agents/model_server`) in a subprocess on
  127.0.0.1 (or a unix socket), with its request log, so a test can assert what an agent sent.
- `recipe_spec`: a recipe's own `agent.toml`, run as a local process from the npm install
  (`engine.recipes`), pointed at the scripted model instead of the real API.
- `HttpApi`: the engine's HTTP API served in-process on TCP, so a second client (httpx with
  a token, as any script would) publishes permission decisions.
- `RealAgent`: one agent of one recipe on one Axon, and the steps every test takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson
import uvicorn

from engine import Draft, Engine, Event
from engine.api.server import create_asgi
from engine.models import AgentSpec
from engine.recipes import bin_dir, npm_install, recipe_dir
from engine.tokens import TokenStore
from tests.acp_support import permission_request, said, turn_end, updates
from tests.agents_support import SAMPLE_AGENTS, Watch, body, describe
from tests.http_support import make_token, read_line

RECIPES = ["claude", "opencode", "gemini"]
HELLO = "Hello from the scripted model."
# The engine's key for the scripted model: the gateway sends it, the agent never holds it.
MODEL_KEY_VAR = "AXONS_TEST_MODEL_KEY"
MODEL_KEY = "sk-scripted-real-key"
os.environ.setdefault(MODEL_KEY_VAR, MODEL_KEY)

# How each recipe is pointed at the scripted model server (see sample_agents/README.md),
# beside its gateways (whose upstream becomes the scripted model server).
MODEL_ENV: dict[str, Callable[[str], dict[str, str]]] = {
    "claude": lambda url: {},
    "opencode": lambda url: {},
    "gemini": lambda url: {},
}


# -- the scripted model server --------------------------------------------------------------


@dataclass
class ModelServer:
    url: str
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        """Every request the server answered so far, in order."""
        if not self.log.exists():
            return []
        return [orjson.loads(line) for line in self.log.read_bytes().splitlines() if line]

    def asked(self, marker: str) -> list[dict[str, Any]]:
        """The requests whose prompt holds `marker` and that offered tools (the main ones)."""
        return [r for r in self.requests() if marker in (r.get("prompt") or "") and r["tools"]]


@contextlib.contextmanager
def model_server(log: Path, *, uds: Path | None = None) -> Iterator[ModelServer]:
    """The scripted model server in a subprocess, stopped afterwards."""
    where = ["--uds", str(uds)] if uds else ["--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(SAMPLE_AGENTS)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_server", *where, "--log", str(log)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        line = read_line(proc, 30.0, "the model server's address").decode().strip()
        yield ModelServer(line.removeprefix("model server on "), log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- recipes as local processes ---------------------------------------------------------------


def recipe_spec(
    name: str,
    axon: str,
    model_url: str,
    workdir: Path,
    *,
    tmpdir: Path | None = None,
    **overrides: Any,
) -> AgentSpec:
    """The recipe's agent.toml, as a local process from its npm install, talking to the
    scripted model through the engine's Agent Gateway: the image's /opt/agent paths become
    the recipe folder, each gateway's upstream becomes the model server (keeping its path)
    and its key MODEL_KEY. `tmpdir` keeps what the agents write to $TMPDIR (Claude's project
    cache, Gemini's error reports) out of the machine's /tmp."""
    npm_install(name)
    spec: dict[str, Any] = tomllib.loads((recipe_dir(name) / "agent.toml").read_text())["agents"][0]
    command = spec["command"]
    env = {k: v.replace("/opt/agent", str(recipe_dir(name))) for k, v in spec["env"].items()}
    gateways = {
        prefix: {
            **gateway,
            "upstream": model_url + urlsplit(gateway["upstream"]).path,
            "secret": MODEL_KEY_VAR,
        }
        for prefix, gateway in spec.get("gateways", {}).items()
    }
    spec.update(
        axon=axon,
        gateways=gateways,
        runtime="process",
        command=[str(bin_dir(name) / command[0]), *command[1:]],
        workdir=str(workdir),
        secrets=[],
        env={**env, **MODEL_ENV[name](model_url), **({"TMPDIR": str(tmpdir)} if tmpdir else {})},
        idle_pause_s=600.0,
        idle_hibernate_s=600.0,
    )
    return AgentSpec.model_validate({**spec, **overrides})


# -- the HTTP API, for a second client ------------------------------------------------------


@dataclass
class HttpApi:
    url: str
    token: str

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0)


@contextlib.asynccontextmanager
async def served(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "auto"
) -> AsyncIterator[str]:
    """An ASGI app over real HTTP on 127.0.0.1 (a free port), in-process; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@contextlib.asynccontextmanager
async def http_api(engine: Engine) -> AsyncIterator[HttpApi]:
    """The engine's API on 127.0.0.1 (a free port), with a publish token named `web`."""
    token = make_token(engine.home, "web", "publish")
    tokens = TokenStore(engine.home / "catalog.db")
    app = create_asgi(engine, tokens, require_token=True)
    try:
        async with served(app, lifespan="off") as url:
            yield HttpApi(url, token)
    finally:
        tokens.close()


# -- one real agent -------------------------------------------------------------------------


@dataclass
class RealAgent:
    engine: Engine
    axon_id: str
    name: str
    workdir: Path
    watch: Watch
    model: ModelServer
    api: HttpApi

    async def say(self, text: str) -> int:
        """A human message on the Axon; its sequence."""
        result = await self.engine.publish(self.axon_id, Draft.message(text, source="web"))
        return result.sequence

    async def turn(self, sequence: int) -> Event:
        return await turn_end(self.watch, self.name, sequence)

    async def completed(self, sequence: int) -> Event:
        end = await self.turn(sequence)
        assert end.event_type == "turn.completed", f"{end.payload}\n{describe(self.watch.events)}"
        return end

    def updates(self, after: int, before: int | None = None) -> list[Event]:
        return updates(self.watch, self.name, after, before)

    def said(self, after: int, before: int | None = None) -> str:
        return said(self.updates(after, before))

    async def permission(self, after: int) -> Event:
        return await permission_request(self.watch, self.name, after)

    async def decide(self, request: Event, kind: str) -> int:
        """Answer a permission request over HTTP, as a second client: the option of `kind`
        (allow_once, reject_once) that the agent offered. The decision's sequence."""
        options = body(request)["options"]
        option = next((o for o in options if o["kind"] == kind), None)
        assert option is not None, f"no {kind} option in {options}"
        decision = {"request_sequence": request.sequence, "option_id": option["optionId"]}
        async with self.api.client() as client:
            response = await client.post(
                f"/v1/axons/{self.axon_id}/publish",
                json={
                    "event_type": "permission.decision",
                    "origin": "USER_EVENT",
                    "source": "web",
                    "payload": orjson.dumps(decision).decode(),
                },
            )
        assert response.status_code == 200, response.text
        return int(response.json()["sequence"])
