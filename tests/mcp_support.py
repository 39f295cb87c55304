"""Shared pieces of the MCP gateway's tests: the tickets server (tests/agents/tickets_mcp.py)
as a gateway entry of an agent spec, what reached it, and whether its process ended."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.agents import tickets_mcp

TICKETS_SERVER = Path(tickets_mcp.__file__)
SECRET = "tickets-secret-0123456789"  # TICKETS_TOKEN, in the engine's environment only


def calls(path: Path) -> list[dict[str, Any]]:
    """Every call that reached the tickets server, in order."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def stdio_entry(calls_file: Path, **extra: Any) -> dict[str, Any]:
    """The tickets server as a stdio upstream; its pid goes beside `calls_file`."""
    pid_file = calls_file.with_suffix(".pid")
    return {
        "name": "tickets",
        "command": sys.executable,
        "args": [str(TICKETS_SERVER)],
        "env": {
            "TICKETS_EXPECT": SECRET,
            "TICKETS_CALLS": str(calls_file),
            "TICKETS_PIDFILE": str(pid_file),
        },
        "secrets": ["TICKETS_TOKEN"],
        "allowed_tools": ["read_*"],
        **extra,
    }


def gone(pid: int) -> bool:
    """The process has ended (or is a zombie nobody waited for yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
