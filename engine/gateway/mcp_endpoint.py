"""One agent's MCP endpoint (contract §5.4), on the official `mcp` SDK; mounted for it by
`McpGateways` (engine/gateway/mcp.py).

The agent sees one MCP server (streamable HTTP: the SDK's `StreamableHTTPSessionManager`
around a low-level `Server`) whose tools are its upstreams' allowed tools, each named
`<server>__<tool>` (server names hold no `__`, so a name splits back without ambiguity and
two upstreams never collide). A call goes to that upstream over the SDK's client
(`stdio_client` or `streamable_http_client`, one `ClientSession` each); the engine puts the
upstream's credentials in its env or headers, so the agent never holds them. A tool that is
not allowed is refused with a JSON-RPC error and never reaches the upstream. Every call is
an `mcp.tool_call` event on the agent's Axon.

Upstream sessions start on first use (a listing or a call) and close with the endpoint, when
the agent's token is revoked; one that ended (its process died) starts again on the next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import mcp.types as types
from mcp import ClientSession, McpError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared._httpx_utils import create_mcp_http_client

from engine.gateway.mcp import SEPARATOR, SERVER_NAME, TOOL_CALL, Log
from engine.models import McpUpstream

START_TIMEOUT_S = 60.0

Publish = Callable[[dict[str, Any]], Awaitable[None]]


class Upstream:
    """One upstream MCP server: its `ClientSession`, owned by a task of its own (the SDK's
    transports are task-scoped context managers) that lives until `close`."""

    def __init__(self, spec: McpUpstream, secrets: dict[str, str], on_log: Log) -> None:
        self.spec = spec
        self._secrets = secrets
        self._on_log = on_log
        self._task: asyncio.Task[None] | None = None
        self._session: asyncio.Future[ClientSession] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    def allows(self, tool: str) -> bool:
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.spec.allowed_tools)

    async def session(self) -> ClientSession:
        """The live session, started (again, if the last one ended) on first need."""
        async with self._lock:
            if self._task is None or self._task.done():
                self._session = asyncio.get_running_loop().create_future()
                self._task = asyncio.create_task(self._run(self._session))
            session = self._session
        assert session is not None
        return await asyncio.wait_for(asyncio.shield(session), START_TIMEOUT_S)

    async def _run(self, ready: asyncio.Future[ClientSession]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await self._connect(stack)
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                ready.set_result(session)
                await self._stop.wait()
        except BaseException as e:  # the session's task group reports as a group
            if not ready.done():
                ready.set_exception(UpstreamError(self.spec.name, _reason(e)))
            elif not self._stop.is_set():
                self._on_log(f"axons: MCP server {self.spec.name} ended: {_reason(e)}")
            if isinstance(e, asyncio.CancelledError):
                raise

    async def _connect(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        pairs = {p.name: p.value for p in self.spec.resolve(self._secrets)}
        if self.spec.type == "stdio":
            assert self.spec.command is not None
            params = StdioServerParameters(
                command=self.spec.command, args=self.spec.args, env=pairs
            )
            errlog = stack.enter_context(_LineLog(f"mcp {self.spec.name}: ", self._on_log))
            read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog.file))
            return read, write
        assert self.spec.url is not None
        client = await stack.enter_async_context(create_mcp_http_client(headers=pairs))
        read, write, _ = await stack.enter_async_context(
            streamable_http_client(self.spec.url, http_client=client)
        )
        return read, write

    async def close(self) -> None:
        """End the session (a stdio upstream's process with it); 10 s, then cancel."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10.0)
            except Exception:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task


class UpstreamError(Exception):
    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"MCP server {server} could not start: {reason}")


class AgentMcp:
    """One agent's MCP endpoint: its upstreams, the allow-list, the audit events."""

    def __init__(
        self,
        agent: str,
        upstreams: list[McpUpstream],
        secrets: dict[str, str],
        *,
        publish: Publish,
        on_log: Log,
    ) -> None:
        self.agent = agent
        self.upstreams = {u.name: Upstream(u, secrets, on_log) for u in upstreams}
        self._publish = publish
        self._on_log = on_log
        self.server: Server[Any, Any] = Server(SERVER_NAME)
        self.server.request_handlers[types.ListToolsRequest] = self._list_tools
        self.server.request_handlers[types.CallToolRequest] = self._call_tool
        # Stateless: every request is whole in itself, so an agent restarted mid-session
        # (or a second client of the same agent) needs no session of ours to come back to.
        # JSON answers, not an SSE stream per call: ~2 ms less per call (bench
        # mcp_call_overhead_ms); nothing here streams progress.
        self._manager = StreamableHTTPSessionManager(
            self.server, stateless=True, json_response=True
        )
        self._running: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    async def start(self) -> None:
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        await self._ready.wait()

    async def _run(self) -> None:
        async with self._manager.run():
            self._ready.set()
            await self._stop.wait()

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        await self.start()
        await self._manager.handle_request(scope, receive, send)

    async def close(self) -> None:
        """The agent stopped: end the endpoint's requests and every upstream session."""
        self._stop.set()
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running
        await asyncio.gather(*(u.close() for u in self.upstreams.values()))

    # -- the MCP server's handlers --------------------------------------------------------

    async def tools(self) -> list[types.Tool]:
        """Every allowed tool of every upstream that answers, named `<server>__<tool>`."""
        listed = await asyncio.gather(*(self._listed(u) for u in self.upstreams.values()))
        return [tool for tools in listed for tool in tools]

    async def _listed(self, upstream: Upstream) -> list[types.Tool]:
        try:
            session = await upstream.session()
            tools: list[types.Tool] = []
            cursor: str | None = None
            while True:
                page = await session.list_tools(
                    params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
                )
                tools += page.tools
                cursor = page.nextCursor
                if not cursor:
                    break
        except Exception as e:  # one broken upstream hides its tools, not the others'
            self._on_log(f"axons: MCP server {upstream.spec.name}: tools not listed: {_reason(e)}")
            return []
        name = upstream.spec.name
        return [
            tool.model_copy(update={"name": f"{name}{SEPARATOR}{tool.name}"})
            for tool in tools
            if upstream.allows(tool.name)
        ]

    async def _list_tools(self, request: types.ListToolsRequest) -> types.ServerResult:
        return types.ServerResult(types.ListToolsResult(tools=await self.tools()))

    async def _call_tool(self, request: types.CallToolRequest) -> types.ServerResult:
        name, arguments = request.params.name, request.params.arguments or {}
        server, _, tool = name.partition(SEPARATOR)
        upstream = self.upstreams.get(server)
        if upstream is None or not tool or not upstream.allows(tool):
            allowed = "; ".join(
                f"{u.spec.name}{SEPARATOR}{'|'.join(u.spec.allowed_tools)}"
                for u in self.upstreams.values()
            )
            message = (
                f"tool {name!r} is not allowed for agent {self.agent}: the MCP gateway "
                f"forwards only {allowed} (the agent spec's allowed_tools)"
            )
            await self._record(upstream, server, tool or name, "refused", 0.0, arguments, message)
            raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=message))
        began = time.perf_counter()
        try:
            session = await upstream.session()
            result = await session.call_tool(tool, arguments)
        except Exception as e:
            message = f"MCP server {server} failed: {_reason(e)}"
            await self._record(upstream, server, tool, "error", began, arguments, message)
            return _error_result(message)
        error = _text(result) if result.isError else None
        status = "error" if result.isError else "ok"
        await self._record(upstream, server, tool, status, began, arguments, error)
        return types.ServerResult(result)

    async def _record(
        self,
        upstream: Upstream | None,
        server: str,
        tool: str,
        status: str,
        began: float,
        arguments: dict[str, Any],
        error: str | None,
    ) -> None:
        """Commit the call's `mcp.tool_call` event. Awaited before the answer goes back, so
        the audit trail is durable by the time the agent sees a result (the commit is about
        a third of the gateway's overhead per call)."""
        body: dict[str, Any] = {
            "server": server if upstream is not None else None,
            "tool": tool,
            "status": status,
            "duration_ms": round((time.perf_counter() - began) * 1000, 2) if began else 0.0,
        }
        if upstream is not None and upstream.spec.log_arguments:
            body["arguments"] = arguments
        if error:
            body["error"] = error[:500]
        try:
            await self._publish(body)
        except Exception as e:  # the call's answer does not wait on the audit trail
            self._on_log(f"axons: could not record {TOOL_CALL}: {e}")


def _error_result(message: str) -> types.ServerResult:
    return types.ServerResult(
        types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)
    )


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _reason(e: BaseException) -> str:
    """The first real error inside the exception groups anyio's task groups raise."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _LineLog:
    """A pipe for a stdio upstream's stderr, each line passed to `on_log` with a prefix."""

    def __init__(self, prefix: str, on_log: Log) -> None:
        self._fd, write_fd = os.pipe()
        os.set_blocking(self._fd, False)
        self.file = os.fdopen(write_fd, "w")
        self._prefix = prefix
        self._on_log = on_log
        self._partial = b""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self._loop.remove_reader(self._fd)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if not chunk and self._partial:
            lines, self._partial = [*lines, self._partial], b""
        for line in lines:
            self._on_log(self._prefix + line.decode(errors="replace").rstrip())

    def __enter__(self) -> _LineLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
