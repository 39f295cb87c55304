"""`axons run SCENARIO.toml`: a scripted session, headless, for scripts and CI.

    name = "triage"
    [[axons]]                      # created at the start (or reused by name with reuse = true)
    name = "support"
    [[steps]]
    publish = { axon = "support", text = "Export fails", source = "web" }
    at_ms = 0                      # optional: not before this many ms after the start
    [[steps]]
    sql = { axon = "support", statements = ["CREATE TABLE t(a)"] }
    [[steps]]
    wait = { axon = "support", event_type = "message", source = "slack", contains = "100MB" }
    timeout_s = 5
    [[steps]]
    expect = { axon = "support", sql = "SELECT a FROM t", rows = [[1]] }

A `wait` matches an event published after the scenario started whose fields equal the given
ones (`contains` searches the payload). The run prints one line per step (JSON Lines with
--json) and exits 1 when a wait times out or an expectation is unmet.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from axons_tui.backend import load_toml, open_backend
from engine.errors import AxonError, InvalidInput
from engine.models import Draft, Event

console = Console(highlight=False)
STEP_KINDS = ("publish", "sql", "wait", "expect")


@dataclass
class Outcome:
    index: int
    kind: str
    ok: bool
    detail: str
    elapsed_ms: float
    data: dict[str, Any] = field(default_factory=dict)


def load(path: Path) -> dict[str, Any]:
    scenario = load_toml(path, "invalid_scenario")
    steps = scenario.get("steps")
    if not isinstance(steps, list) or not steps:
        raise InvalidInput(f"{path}: needs at least one [[steps]]", code="invalid_scenario")
    for i, step in enumerate(steps, 1):
        kinds = [k for k in STEP_KINDS if k in step]
        if len(kinds) != 1 or not isinstance(step[kinds[0]], dict):
            raise InvalidInput(
                f"{path}: step {i} needs exactly one of {', '.join(STEP_KINDS)} (a table)",
                code="invalid_scenario",
            )
        if "axon" not in step[kinds[0]]:
            raise InvalidInput(
                f"{path}: step {i} ({kinds[0]}) names no axon", code="invalid_scenario"
            )
    return scenario


class Run:
    """One run of a scenario against a backend (an Engine or a Client)."""

    def __init__(self, backend: Any, scenario: dict[str, Any]) -> None:
        self.backend = backend
        self.scenario = scenario
        self.ids: dict[str, str] = {}
        self.start_sequence: dict[str, int] = {}
        self.started = time.monotonic()

    async def setup(self) -> None:
        for spec in self.scenario.get("axons", []):
            name = spec["name"]
            view = None
            if spec.get("reuse"):
                page = await self.backend.list_axons(name=name, limit=1)
                view = next((a for a in page.axons if a.name == name), None)
            if view is None:
                view = await self._create_fresh(name, spec.get("metadata") or {})
            self.ids[name] = view.id

    async def _create_fresh(self, name: str, metadata: dict[str, str]) -> Any:
        """A new Axon named `name`, or `name-2`, `name-3`... while a live Axon has the name
        (names are unique among live Axons); the scenario calls it by `name` throughout."""
        for n in itertools.count(1):
            try:
                return await self.backend.create_axon(name if n == 1 else f"{name}-{n}", metadata)
            except AxonError as e:
                if e.code != "name_taken":
                    raise
        raise AssertionError("unreachable")

    async def axon(self, ref: str) -> str:
        if ref not in self.ids:
            self.ids[ref] = (await self.backend.get_axon(ref)).id
        axon_id = self.ids[ref]
        if axon_id not in self.start_sequence:
            self.start_sequence[axon_id] = await self.backend.last_sequence(axon_id)
        return axon_id

    async def step(self, index: int, step: dict[str, Any]) -> Outcome:
        kind = next(k for k in STEP_KINDS if k in step)
        spec = step[kind]
        if "at_ms" in step:
            delay = step["at_ms"] / 1000 - (time.monotonic() - self.started)
            if delay > 0:
                await asyncio.sleep(delay)
        began = time.monotonic()
        try:
            ok, detail, data = await getattr(self, f"_{kind}")(spec, step)
        except AxonError as e:
            ok, detail, data = False, f"{e.code}: {e.message}", {}
        return Outcome(index, kind, ok, detail, round((time.monotonic() - began) * 1000, 1), data)

    async def _publish(
        self, spec: dict[str, Any], _step: dict[str, Any]
    ) -> tuple[bool, str, dict[str, Any]]:
        payload = spec.get("payload")
        if payload is None:
            payload = {"text": spec.get("text", "")}
        text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        draft = Draft(
            spec.get("type", "message"),
            text,
            spec.get("source", "scenario"),
            spec.get("origin", "USER_EVENT"),
            spec.get("idempotency_key"),
        )
        result = await self.backend.publish(await self.axon(spec["axon"]), draft)
        return (
            True,
            f"published #{result.sequence} to {spec['axon']}",
            {"sequence": result.sequence},
        )

    async def _sql(
        self, spec: dict[str, Any], _step: dict[str, Any]
    ) -> tuple[bool, str, dict[str, Any]]:
        statements = spec.get("statements") or [spec.get("sql")]
        results = await self.backend.batch(await self.axon(spec["axon"]), statements)
        changes = sum(r.meta.changes for r in results)
        return True, f"{len(results)} statements, {changes} rows changed", {"changes": changes}

    async def _wait(
        self, spec: dict[str, Any], step: dict[str, Any]
    ) -> tuple[bool, str, dict[str, Any]]:
        axon_id = await self.axon(spec["axon"])
        timeout = float(step.get("timeout_s", spec.get("timeout_s", 10)))
        fields = {k: v for k, v in spec.items() if k in ("event_type", "source", "origin")}
        contains = spec.get("contains")

        def matches(e: Event) -> bool:
            return all(getattr(e, k) == v for k, v in fields.items()) and (
                contains is None or contains in e.payload
            )

        async def first_match() -> Event:
            async for e in self.backend.subscribe(axon_id, self.start_sequence[axon_id]):
                if matches(e):
                    return e
            raise AxonError("the stream ended before a match", code="stream_ended")

        try:
            found = await asyncio.wait_for(first_match(), timeout)
        except TimeoutError:
            return False, f"no event matching {spec} within {timeout:g} s", {}
        return (
            True,
            f"#{found.sequence} {found.source} {found.event_type}",
            {"sequence": found.sequence},
        )

    async def _expect(
        self, spec: dict[str, Any], _step: dict[str, Any]
    ) -> tuple[bool, str, dict[str, Any]]:
        result = await self.backend.query(
            await self.axon(spec["axon"]),
            spec["sql"],
            spec.get("params") or [],
            at_sequence=spec.get("at"),
        )
        want = spec.get("rows")
        if want is not None and result.rows != want:
            return (
                False,
                f"{spec['sql']!r} returned {result.rows}, expected {want}",
                {"rows": result.rows},
            )
        if "count" in spec and len(result.rows) != spec["count"]:
            return (
                False,
                f"{spec['sql']!r} returned {len(result.rows)} rows, expected {spec['count']}",
                {},
            )
        return True, f"{spec['sql']!r} as expected ({len(result.rows)} rows)", {"rows": result.rows}


async def run_scenario(path: Path, *, home: Path | None, connect: str | None, as_json: bool) -> int:
    scenario = load(path)
    title = scenario.get("name", path.stem)
    failures = 0
    async with open_backend(home, connect) as backend:
        run = Run(backend, scenario)
        await run.setup()
        if not as_json:
            console.print(f"[bold]{title}[/bold] [dim]({len(scenario['steps'])} steps)[/dim]")
        for i, step in enumerate(scenario["steps"], 1):
            outcome = await run.step(i, step)
            failures += not outcome.ok
            if as_json:
                print(orjson.dumps(outcome.__dict__).decode(), flush=True)
            else:
                mark = "[green]✓[/green]" if outcome.ok else "[red]✗[/red]"
                console.print(
                    f"{mark} {i:>2} {outcome.kind:<8} {outcome.detail} "
                    f"[dim]{outcome.elapsed_ms} ms[/dim]"
                )
            if not outcome.ok and step.get("stop_on_failure", True):
                break
    if not as_json:
        verdict = "[green]passed[/green]" if not failures else f"[red]{failures} failed[/red]"
        console.print(f"{title}: {verdict}")
    return 1 if failures else 0
