"""What each `axons` command does. Each takes the parsed arguments and returns an exit code;
errors are raised as `AxonError` and printed by `cli.main` as one line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from axons_tui.backend import load_toml, open_backend, resolve_home
from engine.errors import InvalidInput
from engine.models import AgentSpec, AgentView, Draft, Event, QueryResult
from engine.tokens import TokenStore

out = Console(highlight=False, soft_wrap=True)


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


def _emit(args: argparse.Namespace, value: Any, human: Any) -> int:
    """`value` as JSON with --json, else `human` (text or a rich renderable) for people."""
    if args.json:
        _print_json(value)
    else:
        out.print(human)
    return 0


async def _axon_id(backend: Any, ref: str) -> str:
    return str((await backend.get_axon(ref)).id)


# -- engine -----------------------------------------------------------------------------


async def demo(args: argparse.Namespace) -> int:
    from axons_tui.demo import run_session

    return await run_session(args.home, keep=args.keep)


async def serve(args: argparse.Namespace) -> int:
    from engine.api.serve import Listening
    from engine.api.serve import serve as run_server

    home = resolve_home(args.home)
    home.mkdir(parents=True, exist_ok=True)

    def ready(where: Listening) -> None:
        tcp = f" and http://{where.tcp[0]}:{where.tcp[1]}" if where.tcp else ""
        if args.json:
            _print_json(
                {"socket": str(where.socket_path), "tcp": list(where.tcp) if where.tcp else None}
            )
        else:
            out.print(f"axons engine on {where.socket_path}{tcp} (Ctrl-C stops)")

    server = {"server": args.server} if args.server else {}
    await run_server(home, args.listen, on_ready=ready, **server)
    return 0


# -- Axons and events -------------------------------------------------------------------


def _metadata(pairs: list[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--metadata takes KEY=VALUE, got {pair!r}", code="invalid_metadata")
        metadata[key] = value
    return metadata


async def new(args: argparse.Namespace) -> int:
    async with open_backend(args.home, args.connect) as backend:
        view = await backend.create_axon(args.name, _metadata(args.metadata))
    return _emit(args, view, f"{view.id}  {view.name}")


async def ls(args: argparse.Namespace) -> int:
    async with open_backend(args.home, args.connect) as backend:
        page = await backend.list_axons(
            limit=args.limit, name=args.name, search=args.search, include_total_count=True
        )
    if args.json:
        _print_json(page)
        return 0
    table = Table(title=f"{len(page.axons)} of {page.total_count} Axons", title_justify="left")
    for column in ("id", "name", "created", "metadata"):
        table.add_column(column)
    for a in page.axons:
        table.add_row(
            a.id,
            a.name or "",
            _time(a.created_at_ms),
            " ".join(f"{k}={v}" for k, v in a.metadata.items()),
        )
    out.print(table)
    return 0


def _time(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


async def publish(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.payload is None):
        raise InvalidInput("give TEXT or --payload JSON (one of them)", code="usage")
    payload = (
        args.payload if args.payload is not None else orjson.dumps({"text": args.text}).decode()
    )
    draft = Draft(args.event_type, payload, args.source, args.origin, args.idempotency_key)
    async with open_backend(args.home, args.connect) as backend:
        result = await backend.publish(await _axon_id(backend, args.axon), draft)
    return _emit(args, result, f"published #{result.sequence}")


def _show(e: Event) -> None:
    try:
        body = orjson.loads(e.payload)
    except orjson.JSONDecodeError:
        body = None
    text = (
        body.get("text")
        if isinstance(body, dict) and isinstance(body.get("text"), str)
        else e.payload
    )
    out.print(
        f"[dim]#{e.sequence:<5} {_time(e.timestamp_ms)}[/dim] [bold]{e.source}[/bold] "
        f"[cyan]{e.event_type}[/cyan] ",
        end="",
    )
    out.print(text, markup=False)


async def tail(args: argparse.Namespace) -> int:
    emit = _print_json if args.json else _show
    async with open_backend(args.home, args.connect) as backend:
        axon_id = await _axon_id(backend, args.axon)
        if args.follow:
            async for e in backend.subscribe(axon_id, args.after):
                emit(e)
            return 0
        after = args.after
        while page := await backend.read_events(axon_id, after, 1000):
            for e in page:
                emit(e)
            after = page[-1].sequence
    return 0


# -- state ------------------------------------------------------------------------------


def _result_table(result: QueryResult) -> Table:
    table = Table(show_lines=False)
    for c in result.columns:
        table.add_column(f"{c.name}\n[dim]{c.type}[/dim]")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    return table


async def sql(args: argparse.Namespace) -> int:
    try:
        params = [orjson.loads(p) for p in args.param]
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"--param takes JSON values ({e})", code="invalid_params") from None
    async with open_backend(args.home, args.connect) as backend:
        result = await backend.query(
            await _axon_id(backend, args.axon),
            args.statement,
            params,
            write=args.write,
            at_sequence=args.at,
        )
    if args.json:
        _print_json(result)
        return 0
    if result.columns:
        out.print(_result_table(result))
    more = " (row limit reached)" if result.meta.rows_read_limit_reached else ""
    out.print(
        f"[dim]{len(result.rows)} rows, {result.meta.changes} changed, "
        f"{result.meta.duration_ms} ms{more}[/dim]"
    )
    return 0


# -- records ----------------------------------------------------------------------------


async def export(args: argparse.Namespace) -> int:
    async with open_backend(args.home, args.connect) as backend:
        axon_id = await _axon_id(backend, args.axon)
        sink = args.output.open("wb") if args.output else sys.stdout.buffer
        try:
            async for line in backend.export(axon_id):
                sink.write(line + b"\n")
        finally:
            if args.output:
                sink.close()
            else:
                sink.flush()
    return 0


async def import_(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    async with open_backend(args.home, args.connect) as backend:
        view = await backend.import_axon(data.splitlines(), name=args.name)
    return _emit(args, view, f"imported as {view.id}  {view.name or ''}")


async def verify(args: argparse.Namespace) -> int:
    async with open_backend(args.home, args.connect) as backend:
        report = await backend.verify(await _axon_id(backend, args.axon))
    if args.json:
        _print_json(report)
    elif report.ok:
        out.print(f"ok: {report.checked} events, hash chain intact")
    else:
        sys.stderr.write(
            f"axons: broken at sequence {report.first_bad_sequence}: {report.reason}\n"
        )
    return 0 if report.ok else 1


async def fork(args: argparse.Namespace) -> int:
    async with open_backend(args.home, args.connect) as backend:
        view = await backend.fork(await _axon_id(backend, args.axon), args.at, name=args.name)
    return _emit(args, view, f"forked as {view.id}  {view.name}")


# -- tokens -----------------------------------------------------------------------------


def _tokens(args: argparse.Namespace) -> TokenStore:
    home = resolve_home(args.home)
    home.mkdir(parents=True, exist_ok=True)
    return TokenStore(home / "catalog.db")


async def token_create(args: argparse.Namespace) -> int:
    store = _tokens(args)
    try:
        token = store.create(args.name, args.scope, args.axon or None)
    finally:
        store.close()
    if args.json:
        _print_json(
            {"name": args.name, "scope": args.scope, "axons": args.axon or None, "token": token}
        )
    else:
        sys.stdout.write(token + "\n")
        sys.stderr.write("store it now: it is not shown again\n")
    return 0


async def token_ls(args: argparse.Namespace) -> int:
    store = _tokens(args)
    try:
        tokens = store.list()
    finally:
        store.close()
    if args.json:
        _print_json([t.__dict__ for t in tokens])
        return 0
    table = Table(title=f"{len(tokens)} tokens", title_justify="left")
    for column in ("name", "scope", "axons", "created"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            t.name, t.scope, ", ".join(t.axons) if t.axons else "all", _time(t.created_at_ms)
        )
    out.print(table)
    return 0


async def token_revoke(args: argparse.Namespace) -> int:
    store = _tokens(args)
    try:
        store.revoke(args.name)
    finally:
        store.close()
    if not args.json:
        out.print(f"revoked {args.name}")
    return 0


# -- agents -----------------------------------------------------------------------------


def load_agent_specs(path: Path) -> list[AgentSpec]:
    """The `[[agents]]` of a TOML file; relative host mounts are relative to the file."""
    items = load_toml(path, "invalid_agents").get("agents")
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{path}: declares no [[agents]]", code="invalid_agents")
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
                f"{path}: agent {item.get('name', '?')}: {problems}", code="invalid_agents"
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


async def agent_add(args: argparse.Namespace) -> int:
    specs = load_agent_specs(args.file)
    async with open_backend(args.home, args.connect) as backend:
        views = [await backend.agents.add(spec) for spec in specs]
    return _emit(args, views, _agent_table(views))


async def agent_ls(args: argparse.Namespace) -> int:
    if not getattr(args, "axon", None):
        raise InvalidInput("usage: axons agent ls AXON [NAME]", code="usage")
    async with open_backend(args.home, args.connect) as backend:
        axon_id = await _axon_id(backend, args.axon)
        views = await backend.agents.list(axon_id)
    if args.name:
        views = [v for v in views if v.name == args.name]
    return _emit(args, views, _agent_table(views))


async def agent_action(args: argparse.Namespace) -> int:
    async with open_backend(args.home, args.connect) as backend:
        view = await backend.agents.command(
            await _axon_id(backend, args.axon), args.name, args.action
        )
    return _emit(args, view, f"{args.action}: {view.name} is {view.state}")


async def agent_logs(args: argparse.Namespace) -> int:
    async with open_backend(args.home, args.connect) as backend:
        lines = await backend.agents.logs(await _axon_id(backend, args.axon), args.name, args.tail)
    if args.json:
        _print_json({"lines": lines})
    else:
        for line in lines:
            out.print(line, markup=False)
    return 0


async def images_build(args: argparse.Namespace) -> int:
    from engine.images import build_all

    loop = asyncio.get_running_loop()
    tags = await loop.run_in_executor(
        None, build_all, lambda line: sys.stderr.write(f"  {line}\n") if not args.json else None
    )
    return _emit(args, {"images": tags}, "built: " + ", ".join(tags))


# -- scenarios --------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    from axons_tui.scenario import run_scenario

    return await run_scenario(
        args.scenario, home=args.home, connect=args.connect, as_json=args.json
    )
