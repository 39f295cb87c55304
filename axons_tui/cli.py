"""The `axons` command line (CONTRACT §6). Every command that reads or writes an Axon goes
through `open_backend`: the running engine when there is one, the home itself otherwise.

Exit codes: 0 success, 1 failure (one clear line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import uvloop

from axons_tui import commands
from engine.errors import AxonError


class UsageError(Exception):
    """Bad usage found after parsing (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        type=Path,
        default=argparse.SUPPRESS,
        help="data home (default: $AXONS_HOME or the user data dir)",
    )
    common.add_argument(
        "--connect",
        default=argparse.SUPPRESS,
        metavar="SOCKET-OR-URL",
        help="a running engine to use (token from $AXONS_TOKEN for a URL)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON (JSON Lines for streams)",
    )

    parser = argparse.ArgumentParser(
        prog="axons", parents=[common], description="Durable, shared agent sessions."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, fn: Callable[..., Any]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(fn=fn)
        return p

    p = command("demo", "a support-triage session on a fresh demo home", commands.demo)
    p.add_argument("--keep", action="store_true", help="keep the demo home and print its path")

    p = command("serve", "run the engine headless (unix socket; TCP with --listen)", commands.serve)
    p.add_argument("--listen", metavar="HOST:PORT", help="also serve TCP (tokens required)")
    p.add_argument(
        "--server",
        metavar="uvicorn|granian",
        help="the HTTP server to run the API on (default: the faster one measured, see docs)",
    )

    p = command("new", "create an Axon", commands.new)
    p.add_argument("name")
    p.add_argument("--metadata", action="append", default=[], metavar="K=V")

    p = command("ls", "list Axons", commands.ls)
    p.add_argument("--name", help="name prefix")
    p.add_argument("--search", help="text in the id, name or metadata")
    p.add_argument("--limit", type=int, default=100)

    p = command("publish", "publish an event", commands.publish)
    p.add_argument("axon")
    p.add_argument("text", nargs="?", help='a message: payload {"text": TEXT}')
    p.add_argument("--type", default="message", dest="event_type")
    p.add_argument("--source", default="cli")
    p.add_argument("--origin", default="USER_EVENT")
    p.add_argument("--payload", help="JSON text instead of TEXT")
    p.add_argument("--idempotency-key")

    p = command("tail", "print an Axon's log", commands.tail)
    p.add_argument("axon")
    p.add_argument("--after", type=int, default=0, metavar="N", help="events after sequence N")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")

    p = command("sql", "query an Axon's state", commands.sql)
    p.add_argument("axon")
    p.add_argument("statement")
    p.add_argument("--at", type=int, metavar="N", help="the state right after event N")
    p.add_argument("--write", action="store_true", help="allow writes")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="JSON",
        help="a ? parameter, as JSON (repeat in order)",
    )

    p = command("export", "write an Axon as JSON Lines", commands.export)
    p.add_argument("axon")
    p.add_argument("--output", "-o", type=Path, help="file (default: standard output)")

    p = command("import", "create an Axon from an export", commands.import_)
    p.add_argument("file", help="an export file, or - for standard input")
    p.add_argument("--name")

    p = command("verify", "check an Axon's hash chain", commands.verify)
    p.add_argument("axon")

    p = command("fork", "a new Axon from events 1..N and the state as of N", commands.fork)
    p.add_argument("axon")
    p.add_argument("--at", type=int, required=True, metavar="N")
    p.add_argument("--name")

    p = command("token", "API tokens for TCP clients", commands.token_ls)
    tokens = p.add_subparsers(dest="token_command", metavar="ACTION")
    t = tokens.add_parser("create", parents=[common], help="create a token (printed once)")
    t.add_argument("name")
    t.add_argument("--scope", required=True, choices=["read", "publish", "sql-write", "admin"])
    t.add_argument("--axon", action="append", default=[], help="limit to this Axon (repeat)")
    t.set_defaults(fn=commands.token_create)
    t = tokens.add_parser("ls", parents=[common], help="list tokens")
    t.set_defaults(fn=commands.token_ls)
    t = tokens.add_parser("revoke", parents=[common], help="revoke a token")
    t.add_argument("name")
    t.set_defaults(fn=commands.token_revoke)

    p = command(
        "agent", "agents: add FILE.toml, ls, start, pause, resume, stop, logs", commands.agent_ls
    )
    agents = p.add_subparsers(dest="agent_command", metavar="ACTION")
    a = agents.add_parser("add", parents=[common], help="declare the agents of a TOML file")
    a.add_argument("file", type=Path)
    a.set_defaults(fn=commands.agent_add)
    a = agents.add_parser("ls", parents=[common], help="list an Axon's agents")
    a.add_argument("axon")
    a.add_argument("name", nargs="?")
    a.set_defaults(fn=commands.agent_ls)
    for action in ("start", "pause", "resume", "stop"):
        a = agents.add_parser(action, parents=[common], help=f"{action} an agent")
        a.add_argument("axon")
        a.add_argument("name")
        a.set_defaults(fn=commands.agent_action, action=action)
    a = agents.add_parser("logs", parents=[common], help="an agent's recent stderr")
    a.add_argument("axon")
    a.add_argument("name")
    a.add_argument("--tail", type=int, default=100)
    a.set_defaults(fn=commands.agent_logs)

    p = command(
        "images", "build the agent images offline (base + sample agents)", commands.images_build
    )
    images = p.add_subparsers(dest="images_command", metavar="ACTION")
    i = images.add_parser("build", parents=[common], help="build (cached: seconds when done)")
    i.set_defaults(fn=commands.images_build)

    p = command("run", "run a scenario headless; exit 1 on an unmet expectation", commands.run)
    p.add_argument("scenario", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name, default in (("home", None), ("connect", None), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    fn: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] | None = getattr(args, "fn", None)
    if fn is None:
        fn = commands.demo
        args.keep = False
    try:
        return uvloop.run(fn(args))
    except UsageError as e:
        parser.error(str(e))
    except AxonError as e:
        if e.code == "usage":  # a command found bad usage after parsing: exit 2
            parser.error(e.message)
        _fail(args, e.code, e.message)
    except (OSError, orjson.JSONDecodeError) as e:
        _fail(args, type(e).__name__, str(e))
    except KeyboardInterrupt:
        return 130
    return 1


def _fail(args: argparse.Namespace, code: str, message: str) -> None:
    if args.json:
        sys.stderr.write(
            orjson.dumps({"error": {"code": code, "message": message}}).decode() + "\n"
        )
    else:
        sys.stderr.write(f"axons: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
