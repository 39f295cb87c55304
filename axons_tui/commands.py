"""What each `axons` command does. Each takes the global `Options` and its own typed
arguments and returns an `ExitCode`; refusals are raised as `AxonError` and printed by
`cli.run` as one line."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from axons_tui.backend import load_toml, open_backend, resolve_home
from axons_tui.render import event_line, result_table, timestamp
from engine.backend import Backend
from engine.errors import ErrorCode, InvalidInput
from engine.models import AgentSpec, AgentView, Draft, Event

out = Console(highlight=False, soft_wrap=True)


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a refusal or a failed check, with one line on stderr
    USAGE = 2  # bad usage, from click
    INTERRUPTED = 130  # Ctrl-C


@dataclass
class Options:
    """The global options, given before or after the command."""

    home: Path | None = None
    connect: str | None = None
    json: bool = False


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(_jsonable(value)).decode() + "\n")
    sys.stdout.flush()


def _emit(opts: Options, value: Any, human: Any) -> ExitCode:
    """`value` as JSON with --json, else `human` (text or a rich renderable) for people."""
    if opts.json:
        _print_json(value)
    else:
        out.print(human)
    return ExitCode.OK


async def _axon_id(backend: Backend, ref: str) -> str:
    return str((await backend.get_axon(ref)).id)


# -- engine -----------------------------------------------------------------------------


async def tui(
    opts: Options, *, theme: str | None, replay: tuple[str, int | None] | None = None
) -> int:
    from axons_tui.app import ConsoleConfig, run_console  # Textual loads for the console only

    config = ConsoleConfig(home=opts.home, connect=opts.connect, theme=theme, replay=replay)
    return await run_console(config)


async def demo_console(opts: Options, *, keep: bool, theme: str | None) -> int:
    from axons_tui.demo_console import run_demo_console  # Textual loads for the console only

    return await run_demo_console(opts.home, keep=keep, theme=theme)


async def demo(opts: Options, *, keep: bool) -> int:
    from axons_tui.demo import run_session

    return await run_session(opts.home, keep=keep)


async def serve(opts: Options, *, listen: str | None, server: str | None = None) -> int:
    from engine.api.serve import Listening
    from engine.api.serve import serve as run_server

    home = resolve_home(opts.home)
    home.mkdir(parents=True, exist_ok=True)

    def ready(where: Listening) -> None:
        tcp = f" and http://{where.tcp[0]}:{where.tcp[1]}" if where.tcp else ""
        if opts.json:
            _print_json(
                {"socket": str(where.socket_path), "tcp": list(where.tcp) if where.tcp else None}
            )
        else:
            out.print(f"axons engine on {where.socket_path}{tcp} (Ctrl-C stops)")

    await run_server(home, listen, on_ready=ready, server=server)
    return ExitCode.OK


# -- Axons and events -------------------------------------------------------------------


def _metadata(pairs: list[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(
                f"--metadata takes KEY=VALUE, got {pair!r}", code=ErrorCode.INVALID_METADATA
            )
        metadata[key] = value
    return metadata


async def new(opts: Options, name: str, *, metadata: list[str]) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        view = await backend.create_axon(name, _metadata(metadata))
    return _emit(opts, view, f"{view.id}  {view.name}")


async def ls(opts: Options, *, name: str | None, search: str | None, limit: int) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        page = await backend.list_axons(
            limit=limit, name=name, search=search, include_total_count=True
        )
    if opts.json:
        _print_json(page)
        return ExitCode.OK
    table = Table(title=f"{len(page.axons)} of {page.total_count} Axons", title_justify="left")
    for column in ("id", "name", "created", "metadata"):
        table.add_column(column)
    for a in page.axons:
        table.add_row(
            a.id,
            a.name or "",
            timestamp(a.created_at_ms),
            " ".join(f"{k}={v}" for k, v in a.metadata.items()),
        )
    out.print(table)
    return ExitCode.OK


async def publish(
    opts: Options,
    axon: str,
    text: str | None,
    *,
    event_type: str,
    source: str,
    origin: str,
    payload: str | None,
    idempotency_key: str | None,
) -> int:
    body = payload if payload is not None else orjson.dumps({"text": text}).decode()
    draft = Draft(event_type, body, source, origin, idempotency_key)
    async with open_backend(opts.home, opts.connect) as backend:
        result = await backend.publish(await _axon_id(backend, axon), draft)
    return _emit(opts, result, f"published #{result.sequence}")


def _show(e: Event) -> None:
    out.print(event_line(e), highlight=False)


async def tail(opts: Options, axon: str, *, after: int, follow: bool) -> int:
    emit = _print_json if opts.json else _show
    async with open_backend(opts.home, opts.connect) as backend:
        axon_id = await _axon_id(backend, axon)
        if follow:
            async for e in backend.subscribe(axon_id, after):
                emit(e)
            return ExitCode.OK
        while page := await backend.read_events(axon_id, after, 1000):
            for e in page:
                emit(e)
            after = page[-1].sequence
    return ExitCode.OK


# -- state ------------------------------------------------------------------------------


async def sql(
    opts: Options, axon: str, statement: str, *, at: int | None, write: bool, params: list[str]
) -> int:
    try:
        values = [orjson.loads(p) for p in params]
    except orjson.JSONDecodeError as e:
        raise InvalidInput(
            f"--param takes JSON values ({e})", code=ErrorCode.INVALID_PARAMS
        ) from None
    async with open_backend(opts.home, opts.connect) as backend:
        result = await backend.query(
            await _axon_id(backend, axon), statement, values, write=write, at_sequence=at
        )
    if opts.json:
        _print_json(result)
        return ExitCode.OK
    if result.columns:
        out.print(result_table(result))
    more = " (row limit reached)" if result.meta.rows_read_limit_reached else ""
    out.print(
        f"[dim]{len(result.rows)} rows, {result.meta.changes} changed, "
        f"{result.meta.duration_ms} ms{more}[/dim]"
    )
    return ExitCode.OK


# -- records ----------------------------------------------------------------------------


async def export(opts: Options, axon: str, *, output: Path | None) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        axon_id = await _axon_id(backend, axon)
        sink = output.open("wb") if output else sys.stdout.buffer
        try:
            async for line in backend.export(axon_id):
                sink.write(line + b"\n")
        finally:
            if output:
                sink.close()
            else:
                sink.flush()
    return ExitCode.OK


async def import_(opts: Options, file: str, *, name: str | None) -> int:
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    async with open_backend(opts.home, opts.connect) as backend:
        view = await backend.import_axon(data.splitlines(), name=name)
    return _emit(opts, view, f"imported as {view.id}  {view.name or ''}")


async def verify(opts: Options, axon: str) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        report = await backend.verify(await _axon_id(backend, axon))
    if opts.json:
        _print_json(report)
    elif report.ok:
        out.print(f"ok: {report.checked} events, hash chain intact")
    else:
        sys.stderr.write(
            f"axons: broken at sequence {report.first_bad_sequence}: {report.reason}\n"
        )
    return ExitCode.OK if report.ok else ExitCode.FAILURE


async def fork(opts: Options, axon: str, *, at: int, name: str | None) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        view = await backend.fork(await _axon_id(backend, axon), at, name=name)
    return _emit(opts, view, f"forked as {view.id}  {view.name}")


# -- tokens -----------------------------------------------------------------------------


async def token_create(opts: Options, name: str, *, scope: str, axons: list[str]) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        view, token = await backend.tokens.create(name, scope, axons or None)
    if opts.json:
        _print_json({"name": name, "scope": scope, "axons": view.axons, "token": token})
    else:
        sys.stdout.write(token + "\n")
        sys.stderr.write("store it now: it is not shown again\n")
    return ExitCode.OK


async def token_ls(opts: Options) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        tokens = await backend.tokens.list()
    if opts.json:
        _print_json(tokens)
        return ExitCode.OK
    table = Table(title=f"{len(tokens)} tokens", title_justify="left")
    for column in ("name", "scope", "axons", "created"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            t.name, t.scope, ", ".join(t.axons) if t.axons else "all", timestamp(t.created_at_ms)
        )
    out.print(table)
    return ExitCode.OK


async def token_revoke(opts: Options, name: str) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        await backend.tokens.revoke(name)
    if not opts.json:
        out.print(f"revoked {name}")
    return ExitCode.OK


# -- agents -----------------------------------------------------------------------------


def load_agent_specs(path: Path) -> list[AgentSpec]:
    """The `[[agents]]` of a TOML file; relative host mounts are relative to the file."""
    items = load_toml(path, "invalid_agents").get("agents")
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{path}: declares no [[agents]]", code=ErrorCode.INVALID_AGENTS)
    specs = []
    for item in items:
        mounts = []
        for mount in item.get("mounts", []):
            source, sep, rest = mount.partition(":")
            if source.startswith("."):
                source = str((path.parent / source).resolve())
            mounts.append(source + sep + rest)
        try:
            specs.append(AgentSpec.model_validate({**item, "mounts": mounts}))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
            raise InvalidInput(
                f"{path}: agent {item.get('name', '?')}: {problems}", code=ErrorCode.INVALID_AGENTS
            ) from None
    return specs


def _agent_table(views: list[AgentView]) -> Table:
    table = Table(title=f"{len(views)} agents", title_justify="left")
    for column in ("name", "state", "runtime", "cursor", "image / command", "last event"):
        table.add_column(column)
    for v in views:
        what = v.spec.image or " ".join(v.spec.command or [])
        table.add_row(
            v.name, v.state, v.runtime, str(v.cursor), what, str(v.detail.get("last_event", ""))
        )
    return table


async def agent_add(opts: Options, file: Path, *, axon: str | None = None) -> int:
    """The file's agents, on the Axon each names or, with `axon`, all on that one: a sample
    agent's TOML then serves any Axon."""
    specs = load_agent_specs(file)
    if axon is not None:
        specs = [spec.model_copy(update={"axon": axon}) for spec in specs]
    async with open_backend(opts.home, opts.connect) as backend:
        views = [await backend.agents.add(spec) for spec in specs]
    return _emit(opts, views, _agent_table(views))


async def agent_ls(opts: Options, axon: str, name: str | None) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        views = await backend.agents.list(await _axon_id(backend, axon))
    if name:
        views = [v for v in views if v.name == name]
    return _emit(opts, views, _agent_table(views))


async def agent_action(opts: Options, axon: str, name: str, action: str) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        view = await backend.agents.command(await _axon_id(backend, axon), name, action)
    return _emit(opts, view, f"{action}: {view.name} is {view.state}")


async def permit(opts: Options, axon: str, sequence: int, option: str, *, source: str) -> int:
    """Answer an ACP agent's permission request (`cancelled` refuses it outright)."""
    option_id = None if option == "cancelled" else option
    async with open_backend(opts.home, opts.connect) as backend:
        result = await backend.agents.permit(
            await _axon_id(backend, axon), sequence, option_id, source=source
        )
    return _emit(opts, result, f"answered #{sequence} with {option}: #{result.sequence}")


async def agent_logs(opts: Options, axon: str, name: str, *, tail: int) -> int:
    async with open_backend(opts.home, opts.connect) as backend:
        lines = await backend.agents.logs(await _axon_id(backend, axon), name, tail)
    if opts.json:
        _print_json({"lines": lines})
    else:
        for line in lines:
            out.print(line, markup=False)
    return ExitCode.OK


async def images_build(opts: Options, names: tuple[str, ...]) -> int:
    from engine.images import build_all

    def progress(line: str) -> None:
        if not opts.json:
            sys.stderr.write(f"  {line}\n")

    tags = await asyncio.to_thread(build_all, progress, list(names) or None)
    return _emit(opts, {"images": tags}, "built: " + ", ".join(tags))


# -- scenarios --------------------------------------------------------------------------


async def run(opts: Options, scenario: Path) -> int:
    from axons_tui.scenario import run_scenario

    return await run_scenario(scenario, home=opts.home, connect=opts.connect, as_json=opts.json)
