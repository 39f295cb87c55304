"""An upstream MCP server for the MCP gateway's tests, built with the `mcp` SDK (FastMCP):
tools `read_ticket` and `delete_ticket`, guarded by a credential the engine injects.

- stdio (`python tickets_mcp.py`): the credential is the env var TICKETS_TOKEN.
- HTTP (`app()`, served by the test, or `python tickets_mcp.py --http PORT`: /mcp on
  127.0.0.1:PORT): the credential is `Authorization: Bearer <token>`.

Either way it must equal TICKETS_EXPECT (from the server's own environment when run as a
process, or `app(expect=...)`), else the tool answers an error. Every call is appended to
the JSON Lines file TICKETS_CALLS (when set), so a test sees what reached the upstream; a
process writes its pid to TICKETS_PIDFILE (when set).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from mcp.server.fastmcp import Context, FastMCP

TICKETS = {"T-1": "the printer is on fire", "T-2": "the coffee machine is empty"}


def build(expect: str, calls: str | None) -> FastMCP:
    server = FastMCP("tickets", stateless_http=True, json_response=True)

    def credential(ctx: Context[Any, Any, Any]) -> str | None:
        request = ctx.request_context.request
        if request is not None:  # HTTP: the header the engine injected
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            return token if scheme.lower() == "bearer" else None
        return os.environ.get("TICKETS_TOKEN")  # stdio: the env the engine injected

    def note(tool: str, ticket_id: str, ok: bool) -> None:
        if calls:
            with open(calls, "a") as f:
                f.write(json.dumps({"tool": tool, "ticket_id": ticket_id, "credential": ok}))
                f.write("\n")
        print(f"tickets: {tool} {ticket_id}", file=sys.stderr, flush=True)

    @server.tool()
    def read_ticket(ticket_id: str, ctx: Context[Any, Any, Any]) -> str:
        """Read a support ticket."""
        ok = credential(ctx) == expect
        note("read_ticket", ticket_id, ok)
        if not ok:
            raise ValueError("unauthorized: no valid tickets credential")
        return f"{ticket_id}: {TICKETS.get(ticket_id, 'no such ticket')}"

    @server.tool()
    def delete_ticket(ticket_id: str, ctx: Context[Any, Any, Any]) -> str:
        """Delete a support ticket."""
        ok = credential(ctx) == expect
        note("delete_ticket", ticket_id, ok)
        TICKETS.pop(ticket_id, None)
        return f"{ticket_id} deleted"

    return server


def app(expect: str, calls: str | None = None) -> Any:
    """The HTTP form: an ASGI app serving MCP at /mcp."""
    return build(expect, calls).streamable_http_app()


if __name__ == "__main__":
    if pid_file := os.environ.get("TICKETS_PIDFILE"):  # so a test can see it end
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    server = build(os.environ.get("TICKETS_EXPECT", ""), os.environ.get("TICKETS_CALLS"))
    if sys.argv[1:2] == ["--http"]:
        server.settings.host, server.settings.port = "127.0.0.1", int(sys.argv[2])
        server.settings.log_level = "WARNING"
        server.run("streamable-http")
    else:
        server.run("stdio")
