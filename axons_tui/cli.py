"""The `axons` command line (contract §6), on click. Every command that reads or writes an Axon
goes through `open_backend`: the running engine when there is one, the home itself otherwise.

`--home`, `--connect` and `--json` are global: they may stand before the command or after
it (`axons --json ls`, `axons ls --json`), and land on one `Options` object. Exit codes are
`ExitCode`: 0 success, 1 failure (one clear line on stderr), 2 bad usage (click's own).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
import uvloop

from axons_tui import commands
from axons_tui.commands import ExitCode, Options
from engine.errors import AxonError, ErrorCode

F = TypeVar("F", bound=Callable[..., Any])


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Put a global option on the shared Options, wherever on the line it was given."""
    if value not in (None, False):
        setattr(ctx.ensure_object(Options), str(param.name), value)


def global_options(fn: F) -> F:
    for option in (
        click.option(
            "--json",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_remember,
            help="Print JSON (JSON Lines for streams).",
        ),
        click.option(
            "--connect",
            metavar="SOCKET-OR-URL",
            expose_value=False,
            callback=_remember,
            help="A running engine to use (token from $AXONS_TOKEN for a URL).",
        ),
        click.option(
            "--home",
            type=click.Path(path_type=Path),
            expose_value=False,
            callback=_remember,
            help="Data home (default: $AXONS_HOME or the user data dir).",
        ),
    ):
        fn = option(fn)
    return fn


def run(coro: Coroutine[Any, Any, int]) -> None:
    """Run a command's coroutine and leave with its exit code; a refusal is one line."""
    ctx = click.get_current_context()
    opts = ctx.ensure_object(Options)
    try:
        code = uvloop.run(coro)
    except AxonError as e:
        if e.code == ErrorCode.USAGE:  # bad usage found after parsing
            raise click.UsageError(e.message, ctx) from None
        _fail(opts, e.code, e.message)
        code = ExitCode.FAILURE
    except (OSError, orjson.JSONDecodeError) as e:
        _fail(opts, type(e).__name__, str(e))
        code = ExitCode.FAILURE
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    ctx.exit(int(code))


def _fail(opts: Options, code: str, message: str) -> None:
    if opts.json:
        sys.stderr.write(
            orjson.dumps({"error": {"code": code, "message": message}}).decode() + "\n"
        )
    else:
        sys.stderr.write(f"axons: {message}\n")


def opts() -> Options:
    return click.get_current_context().ensure_object(Options)


THEME = click.option("--theme", metavar="NAME", help="A theme from themes/ or your themes folder.")


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@THEME
@global_options
@click.pass_context
def axons(ctx: click.Context, theme: str | None) -> None:
    """Durable, shared agent sessions. With no command: the console."""
    ctx.ensure_object(Options)
    if ctx.invoked_subcommand is None:
        run(commands.tui(opts(), theme=theme))


# -- engine and console -------------------------------------------------------------------


@axons.command()
@THEME
@global_options
def tui(theme: str | None) -> None:
    """The console, on the home's running engine (or --connect) or an embedded one."""
    run(commands.tui(opts(), theme=theme))


@axons.command()
@click.argument("axon")
@click.option("--at", type=click.IntRange(min=1), metavar="N", help="Start at event N.")
@THEME
@global_options
def replay(axon: str, at: int | None, theme: str | None) -> None:
    """The console's replay viewer on one Axon: nothing re-runs."""
    run(commands.tui(opts(), theme=theme, replay=(axon, at)))


@axons.command()
@click.option("--headless", is_flag=True, help="Print the scripted support-triage demo instead.")
@click.option("--keep", is_flag=True, help="Keep the demo home and print its path.")
@THEME
@global_options
def demo(headless: bool, keep: bool, theme: str | None) -> None:
    """The console on a fresh demo home with live agents (--headless: the scripted demo)."""
    if headless:
        run(commands.demo(opts(), keep=keep))
    else:
        run(commands.demo_console(opts(), keep=keep, theme=theme))


@axons.command()
@click.option("--listen", metavar="HOST:PORT", help="Also serve TCP (tokens required).")
@click.option(
    "--server",
    type=click.Choice(["uvicorn", "granian"]),  # engine.api.servers.SERVERS, without its imports
    help="The HTTP server to run the API on (default: uvicorn, see docs/security.md).",
)
@global_options
def serve(listen: str | None, server: str | None) -> None:
    """Run the engine headless (unix socket; TCP with --listen)."""
    run(commands.serve(opts(), listen=listen, server=server))


# -- Axons and events ---------------------------------------------------------------------


@axons.command()
@click.argument("name")
@click.option("--metadata", multiple=True, metavar="K=V", help="A metadata pair (repeat).")
@global_options
def new(name: str, metadata: tuple[str, ...]) -> None:
    """Create an Axon."""
    run(commands.new(opts(), name, metadata=list(metadata)))


@axons.command()
@click.option("--name", help="Name prefix.")
@click.option("--search", help="Text in the id, name or metadata.")
@click.option("--limit", type=click.IntRange(1, 5000), default=100, show_default=True)
@global_options
def ls(name: str | None, search: str | None, limit: int) -> None:
    """List Axons."""
    run(commands.ls(opts(), name=name, search=search, limit=limit))


@axons.command()
@click.argument("axon")
@click.argument("text", required=False)
@click.option("--type", "event_type", default="message", show_default=True)
@click.option("--source", default="cli", show_default=True)
@click.option("--origin", default="USER_EVENT", show_default=True)
@click.option("--payload", help="JSON text instead of TEXT.")
@click.option("--idempotency-key")
@global_options
def publish(
    axon: str,
    text: str | None,
    event_type: str,
    source: str,
    origin: str,
    payload: str | None,
    idempotency_key: str | None,
) -> None:
    """Publish an event: a message TEXT, or any --payload."""
    if (text is None) == (payload is None):
        raise click.UsageError("give TEXT or --payload JSON (one of them)")
    run(
        commands.publish(
            opts(),
            axon,
            text,
            event_type=event_type,
            source=source,
            origin=origin,
            payload=payload,
            idempotency_key=idempotency_key,
        )
    )


@axons.command()
@click.argument("axon")
@click.option("--after", type=click.IntRange(min=0), default=0, metavar="N")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@global_options
def tail(axon: str, after: int, follow: bool) -> None:
    """Print an Axon's log (events after sequence N)."""
    run(commands.tail(opts(), axon, after=after, follow=follow))


@axons.command()
@click.argument("axon")
@click.argument("sequence", type=click.IntRange(min=1))
@click.argument("option")
@click.option("--source", default="cli", show_default=True)
@global_options
def permit(axon: str, sequence: int, option: str, source: str) -> None:
    """Answer an ACP agent's permission request SEQUENCE with one of its OPTION ids, or
    `cancelled` to refuse it outright."""
    run(commands.permit(opts(), axon, sequence, option, source=source))


# -- state --------------------------------------------------------------------------------


@axons.command()
@click.argument("axon")
@click.argument("statement")
@click.option("--at", type=click.IntRange(min=0), metavar="N", help="The state after event N.")
@click.option("--write", is_flag=True, help="Allow writes.")
@click.option("--param", multiple=True, metavar="JSON", help="A ? parameter, as JSON (repeat).")
@global_options
def sql(axon: str, statement: str, at: int | None, write: bool, param: tuple[str, ...]) -> None:
    """Query an Axon's state."""
    run(commands.sql(opts(), axon, statement, at=at, write=write, params=list(param)))


# -- records ------------------------------------------------------------------------------


@axons.command()
@click.argument("axon")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="File (default: stdout).")
@global_options
def export(axon: str, output: Path | None) -> None:
    """Write an Axon as JSON Lines."""
    run(commands.export(opts(), axon, output=output))


@axons.command("import")
@click.argument("file")
@click.option("--name")
@global_options
def import_(file: str, name: str | None) -> None:
    """Create an Axon from an export FILE (- for standard input)."""
    run(commands.import_(opts(), file, name=name))


@axons.command()
@click.argument("axon")
@global_options
def verify(axon: str) -> None:
    """Check an Axon's hash chain."""
    run(commands.verify(opts(), axon))


@axons.command()
@click.argument("axon")
@click.option("--at", type=click.IntRange(min=0), required=True, metavar="N")
@click.option("--name")
@global_options
def fork(axon: str, at: int, name: str | None) -> None:
    """A new Axon from events 1..N and the state as of N."""
    run(commands.fork(opts(), axon, at=at, name=name))


# -- tokens -------------------------------------------------------------------------------


@axons.group(invoke_without_command=True)
@global_options
@click.pass_context
def token(ctx: click.Context) -> None:
    """API tokens for TCP clients (ls when no action is given)."""
    if ctx.invoked_subcommand is None:
        run(commands.token_ls(opts()))


@token.command("create")
@click.argument("name")
@click.option(
    "--scope", required=True, type=click.Choice(["read", "publish", "sql-write", "admin"])
)
@click.option("--axon", multiple=True, help="Limit to this Axon, by id or name (repeat).")
@global_options
def token_create(name: str, scope: str, axon: tuple[str, ...]) -> None:
    """Create a token (printed once)."""
    run(commands.token_create(opts(), name, scope=scope, axons=list(axon)))


@token.command("ls")
@global_options
def token_ls() -> None:
    """List tokens."""
    run(commands.token_ls(opts()))


@token.command("revoke")
@click.argument("name")
@global_options
def token_revoke(name: str) -> None:
    """Revoke a token."""
    run(commands.token_revoke(opts(), name))


# -- agents -------------------------------------------------------------------------------


@axons.group()
@global_options
def agent() -> None:
    """Agents: add FILE.toml, ls, start, pause, resume, stop, logs."""


@agent.command("add")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--axon", metavar="AXON", help="Put the agents on this Axon (not the file's).")
@global_options
def agent_add(file: Path, axon: str | None) -> None:
    """Declare the agents of a TOML file."""
    run(commands.agent_add(opts(), file, axon=axon))


@agent.command("ls")
@click.argument("axon")
@click.argument("name", required=False)
@global_options
def agent_ls(axon: str, name: str | None) -> None:
    """List an Axon's agents."""
    run(commands.agent_ls(opts(), axon, name))


def _agent_action(action: str) -> None:
    @agent.command(action, help=f"{action.capitalize()} an agent.")
    @click.argument("axon")
    @click.argument("name")
    @global_options
    def command(axon: str, name: str) -> None:
        run(commands.agent_action(opts(), axon, name, action))


for _action in ("start", "pause", "resume", "stop"):
    _agent_action(_action)


@agent.command("logs")
@click.argument("axon")
@click.argument("name")
@click.option("--tail", "lines", type=click.IntRange(1, 10_000), default=100, show_default=True)
@global_options
def agent_logs(axon: str, name: str, lines: int) -> None:
    """An agent's recent stderr."""
    run(commands.agent_logs(opts(), axon, name, tail=lines))


@axons.group(invoke_without_command=True)
@global_options
@click.pass_context
def images(ctx: click.Context) -> None:
    """Build agent images offline (base, sample agents, agent recipes)."""
    if ctx.invoked_subcommand is None:
        run(commands.images_build(opts(), ()))


@images.command("build")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@global_options
def images_build(names: tuple[str, ...]) -> None:
    """Build the named sample agents and recipes, or all (cached: seconds when done)."""
    run(commands.images_build(opts(), names))


# -- scenarios ----------------------------------------------------------------------------


@axons.command("run")
@click.argument("scenario", type=click.Path(path_type=Path))
@global_options
def run_scenario(scenario: Path) -> None:
    """Run a scenario headless; exit 1 on an unmet expectation."""
    run(commands.run(opts(), scenario))


def main(argv: list[str] | None = None) -> int:
    """The `axons` entry point: the exit code, for `sys.exit`."""
    try:
        code = axons.main(args=argv, prog_name="axons", standalone_mode=False)
    except click.ClickException as e:  # bad usage: click's message and exit 2
        e.show()
        return e.exit_code
    except click.Abort:
        return int(ExitCode.INTERRUPTED)
    return int(code or ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
