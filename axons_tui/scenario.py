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
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.console import Console

from axons_tui.backend import load_toml, open_backend
from engine.backend import Backend
from engine.errors import AxonError, ErrorCode, InvalidInput
from engine.models import Draft, Event

console = Console(highlight=False)
StepKind = Literal["publish", "sql", "wait", "expect"]


class _Strict(BaseModel):
    """A table of the scenario file: unknown keys are mistakes, said so, not ignored."""

    model_config = ConfigDict(extra="forbid")


class PublishStep(_Strict):
    axon: str
    text: str = ""
    payload: dict[str, Any] | list[Any] | str | None = None
    type: str = "message"
    source: str = "scenario"
    origin: str = "USER_EVENT"
    idempotency_key: str | None = None


class SqlStep(_Strict):
    axon: str
    statements: list[str | dict[str, Any]] = Field(default_factory=list)
    sql: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> SqlStep:
        if bool(self.statements) == (self.sql is not None):
            raise ValueError('give statements = [...] or sql = "..." (one of them)')
        return self


class WaitStep(_Strict):
    axon: str
    event_type: str | None = None
    source: str | None = None
    origin: str | None = None
    contains: str | None = None
    timeout_s: float | None = Field(None, gt=0)


class ExpectStep(_Strict):
    axon: str
    sql: str
    params: list[Any] = Field(default_factory=list)
    at: int | None = Field(None, ge=0)
    rows: list[list[Any]] | None = None
    count: int | None = Field(None, ge=0)


class Step(_Strict):
    publish: PublishStep | None = None
    sql: SqlStep | None = None
    wait: WaitStep | None = None
    expect: ExpectStep | None = None
    at_ms: float | None = Field(None, ge=0, description="not before this many ms after the start")
    timeout_s: float | None = Field(None, gt=0)
    stop_on_failure: bool = True

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        if len(self.kinds()) != 1:
            raise ValueError("needs exactly one of publish, sql, wait, expect (a table)")
        return self

    def kinds(self) -> list[StepKind]:
        kinds: list[StepKind] = ["publish", "sql", "wait", "expect"]
        return [k for k in kinds if getattr(self, k) is not None]


class AxonDecl(_Strict):
    name: str = Field(min_length=1)
    reuse: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)


class Scenario(_Strict):
    name: str | None = None
    axons: list[AxonDecl] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)


@dataclass
class Outcome:
    index: int
    kind: str
    ok: bool
    detail: str
    elapsed_ms: float
    data: dict[str, Any] = field(default_factory=dict)


def _where(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as a person reads it: `step 2 (publish): axon`."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        rest = ".".join(map(str, loc[2:]))
        return f"step {loc[1] + 1}" + (f": {rest}" if rest else "")
    return ".".join(map(str, loc)) or "the file"


def load(path: Path) -> Scenario:
    """The scenario file, checked whole; a mistake is one line naming where it is."""
    data = load_toml(path, ErrorCode.INVALID_SCENARIO)
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise InvalidInput(
            f"{path}: {_where(tuple(first['loc']))}: {message}{more}",
            code=ErrorCode.INVALID_SCENARIO,
        ) from None


class Run:
    """One run of a scenario against a backend (an Engine or a Client)."""

    def __init__(self, backend: Backend, scenario: Scenario) -> None:
        self.backend = backend
        self.scenario = scenario
        self.ids: dict[str, str] = {}
        self.start_sequence: dict[str, int] = {}
        self.started = time.monotonic()

    async def setup(self) -> None:
        for spec in self.scenario.axons:
            view = None
            if spec.reuse:
                page = await self.backend.list_axons(name=spec.name, limit=1)
                view = next((a for a in page.axons if a.name == spec.name), None)
            if view is None:
                view = await self._create_fresh(spec.name, spec.metadata)
            self.ids[spec.name] = view.id

    async def _create_fresh(self, name: str, metadata: dict[str, str]) -> Any:
        """A new Axon named `name`, or `name-2`, `name-3`... while a live Axon has the name
        (names are unique among live Axons); the scenario calls it by `name` throughout."""
        for n in itertools.count(1):
            try:
                return await self.backend.create_axon(name if n == 1 else f"{name}-{n}", metadata)
            except AxonError as e:
                if e.code != ErrorCode.NAME_TAKEN:
                    raise
        raise AssertionError("unreachable")

    async def axon(self, ref: str) -> str:
        if ref not in self.ids:
            self.ids[ref] = (await self.backend.get_axon(ref)).id
        axon_id = self.ids[ref]
        if axon_id not in self.start_sequence:
            self.start_sequence[axon_id] = await self.backend.last_sequence(axon_id)
        return axon_id

    async def step(self, index: int, step: Step) -> Outcome:
        (kind,) = step.kinds()
        if step.at_ms is not None:
            delay = step.at_ms / 1000 - (time.monotonic() - self.started)
            if delay > 0:
                await asyncio.sleep(delay)
        began = time.monotonic()
        try:
            if step.publish is not None:
                ok, detail, data = await self._publish(step.publish)
            elif step.sql is not None:
                ok, detail, data = await self._sql(step.sql)
            elif step.wait is not None:
                ok, detail, data = await self._wait(step.wait, step.timeout_s)
            else:
                assert step.expect is not None
                ok, detail, data = await self._expect(step.expect)
        except AxonError as e:
            ok, detail, data = False, f"{e.code}: {e.message}", {}
        return Outcome(index, kind, ok, detail, round((time.monotonic() - began) * 1000, 1), data)

    async def _publish(self, spec: PublishStep) -> tuple[bool, str, dict[str, Any]]:
        payload = spec.payload if spec.payload is not None else {"text": spec.text}
        text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        draft = Draft(spec.type, text, spec.source, spec.origin, spec.idempotency_key)
        result = await self.backend.publish(await self.axon(spec.axon), draft)
        return True, f"published #{result.sequence} to {spec.axon}", {"sequence": result.sequence}

    async def _sql(self, spec: SqlStep) -> tuple[bool, str, dict[str, Any]]:
        statements = [spec.sql] if spec.sql is not None else spec.statements
        results = await self.backend.batch(await self.axon(spec.axon), statements)
        changes = sum(r.meta.changes for r in results)
        return True, f"{len(results)} statements, {changes} rows changed", {"changes": changes}

    async def _wait(
        self, spec: WaitStep, step_timeout_s: float | None
    ) -> tuple[bool, str, dict[str, Any]]:
        axon_id = await self.axon(spec.axon)
        timeout = step_timeout_s or spec.timeout_s or 10.0
        wanted = spec.model_dump(include={"event_type", "source", "origin"}, exclude_none=True)
        contains = spec.contains
        shown = spec.model_dump(exclude_none=True)

        def matches(e: Event) -> bool:
            return all(getattr(e, k) == v for k, v in wanted.items()) and (
                contains is None or contains in e.payload
            )

        async def first_match() -> Event:
            async for e in self.backend.subscribe(axon_id, self.start_sequence[axon_id]):
                if matches(e):
                    return e
            raise AxonError("the stream ended before a match", code=ErrorCode.STREAM_ENDED)

        try:
            found = await asyncio.wait_for(first_match(), timeout)
        except TimeoutError:
            return False, f"no event matching {shown} within {timeout:g} s", {}
        return (
            True,
            f"#{found.sequence} {found.source} {found.event_type}",
            {"sequence": found.sequence},
        )

    async def _expect(self, spec: ExpectStep) -> tuple[bool, str, dict[str, Any]]:
        result = await self.backend.query(
            await self.axon(spec.axon), spec.sql, spec.params, at_sequence=spec.at
        )
        if spec.rows is not None and result.rows != spec.rows:
            return (
                False,
                f"{spec.sql!r} returned {result.rows}, expected {spec.rows}",
                {"rows": result.rows},
            )
        if spec.count is not None and len(result.rows) != spec.count:
            return (
                False,
                f"{spec.sql!r} returned {len(result.rows)} rows, expected {spec.count}",
                {},
            )
        return True, f"{spec.sql!r} as expected ({len(result.rows)} rows)", {"rows": result.rows}


async def run_scenario(path: Path, *, home: Path | None, connect: str | None, as_json: bool) -> int:
    scenario = load(path)
    title = scenario.name or path.stem
    failures = 0
    async with open_backend(home, connect) as backend:
        run = Run(backend, scenario)
        await run.setup()
        if not as_json:
            console.print(f"[bold]{title}[/bold] [dim]({len(scenario.steps)} steps)[/dim]")
        for i, step in enumerate(scenario.steps, 1):
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
            if not outcome.ok and step.stop_on_failure:
                break
    if not as_json:
        verdict = "[green]passed[/green]" if not failures else f"[red]{failures} failed[/red]"
        console.print(f"{title}: {verdict}")
    return 1 if failures else 0
