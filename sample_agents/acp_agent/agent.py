"""A small deterministic ACP agent on the `agent-client-protocol` SDK, for the demo and tests.

Every prompt gets a plan and an answer streamed in chunks. Words in the prompt choose more:
- `TOOL`: reports a tool call (pending, in progress, completed) that lists the work dir.
- `RISKY`: asks permission before writing `approved.txt` into the work dir (not in mode
  `yolo`); writes it only when allowed.
- `SLOW`: streams 40 chunks 0.25 s apart; `HANG`: streams nothing until cancelled. Both end
  `cancelled` on session/cancel. `PACE`: the answer's chunks come 0.05 s apart, so a person
  watching (the demo) sees it grow.
- `CRASH`: exits mid-turn, once per home (a marker file in $HOME), so a re-delivery works.
- `FAIL`: answers the prompt with a JSON-RPC error, as a model failing would.
- `FUTURE`: sends a `session/update` kind no SDK models yet; `BIG`: a 2 MB chunk.
- `ENV NAME`: answers with the variable's value; `MCP`: the MCP servers of session/new;
  `MCP_CALL <tool> {json arguments}`: lists the tools of the session's first HTTP MCP server
  (the engine's MCP gateway) and calls that one, with the `mcp` SDK (installed in the
  engine's environment, not in the sample image), and answers what came back;
  `CLIENT`: what the client advertised, and what it answers to fs, terminal and
  extension calls.

Sessions live in $HOME/sessions/<id>.json, so `session/load` works after a restart when
$HOME survives (it replays the conversation as user and agent message chunks).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    RequestError,
    plan_entry,
    run_agent,
    start_tool_call,
    update_agent_message_text,
    update_plan,
    update_tool_call,
    update_user_message_text,
)
from acp.schema import (
    AgentCapabilities,
    Implementation,
    InitializeResponse,
    LoadSessionResponse,
    McpCapabilities,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    SessionMode,
    SessionModeState,
    SetSessionModeResponse,
    ToolCallUpdate,
    Usage,
)

MODES = ("default", "yolo")


def log(line: str) -> None:
    print(f"acp_agent: {line}", file=sys.stderr, flush=True)


class Session:
    def __init__(self, path: Path, cwd: str, mcp: list[str]) -> None:
        self.path = path
        self.cwd = cwd
        self.mcp = mcp
        self.mode = "default"
        self.history: list[tuple[str, str]] = []  # (who, text)
        self.cancelled = asyncio.Event()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"cwd": self.cwd, "mcp": self.mcp, "mode": self.mode, "history": self.history}
        self.path.write_text(json.dumps(body))

    @classmethod
    def load(cls, path: Path) -> Session:
        body = json.loads(path.read_text())
        session = cls(path, body["cwd"], body["mcp"])
        session.mode = body["mode"]
        session.history = [tuple(h) for h in body["history"]]  # type: ignore[misc]
        return session


class SampleAgent:
    def __init__(self) -> None:
        self.conn: Any = None
        self.client_capabilities: Any = None
        self.sessions: dict[str, Session] = {}
        self.http_mcp: dict[str, list[Any]] = {}  # session -> its HTTP MCP servers (with tokens)
        self.store = Path(os.environ.get("HOME", "/tmp")) / "sessions"

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def initialize(
        self, protocol_version: int, client_capabilities: Any = None, **kwargs: Any
    ) -> InitializeResponse:
        self.client_capabilities = client_capabilities
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(
                load_session=True, mcp_capabilities=McpCapabilities(http=True)
            ),
            agent_info=Implementation(name="acp_agent", title="Axons sample", version="1.0"),
        )

    def _modes(self, current: str) -> SessionModeState:
        return SessionModeState(
            current_mode_id=current,
            available_modes=[SessionMode(id=m, name=m.title()) for m in MODES],
        )

    async def new_session(
        self, cwd: str, mcp_servers: list[Any] | None = None, **kwargs: Any
    ) -> NewSessionResponse:
        session_id = uuid.uuid4().hex
        names = [getattr(s, "name", "?") for s in mcp_servers or []]
        session = Session(self.store / f"{session_id}.json", cwd, names)
        session.save()
        self.sessions[session_id] = session
        self.http_mcp[session_id] = [s for s in mcp_servers or [] if hasattr(s, "url")]
        log(f"new session {session_id} in {cwd}")
        return NewSessionResponse(session_id=session_id, modes=self._modes("default"))

    async def load_session(
        self, cwd: str, session_id: str, mcp_servers: list[Any] | None = None, **kwargs: Any
    ) -> LoadSessionResponse:
        path = self.store / f"{session_id}.json"
        if not re.fullmatch(r"[0-9a-f]{32}", session_id) or not path.exists():
            raise RequestError.invalid_params({"details": f"no session {session_id}"})
        session = Session.load(path)
        self.sessions[session_id] = session
        self.http_mcp[session_id] = [s for s in mcp_servers or [] if hasattr(s, "url")]
        for who, text in session.history:
            update = (update_user_message_text if who == "user" else update_agent_message_text)(
                text
            )
            await self.conn.session_update(session_id=session_id, update=update)
        log(f"loaded session {session_id} ({len(session.history)} messages)")
        return LoadSessionResponse(modes=self._modes(session.mode))

    async def set_session_mode(
        self, session_id: str, mode_id: str, **kwargs: Any
    ) -> SetSessionModeResponse:
        if mode_id not in MODES:
            raise RequestError.invalid_params({"details": f"unknown mode {mode_id}"})
        session = self._session(session_id)
        session.mode = mode_id
        session.save()
        return SetSessionModeResponse()

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        if session_id in self.sessions:
            self.sessions[session_id].cancelled.set()

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise RequestError.invalid_params({"details": f"no session {session_id}"})
        return session

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> PromptResponse:
        session = self._session(session_id)
        session.cancelled.clear()
        text = " ".join(getattr(block, "text", "") for block in prompt)
        log(f"prompt in {session_id}: {text[:80]}")
        session.history.append(("user", text))
        stop = await self._turn(session_id, session, text)
        session.save()
        words = len(text.split())
        return PromptResponse(
            stop_reason=stop,
            usage=Usage(input_tokens=words, output_tokens=words, total_tokens=2 * words),
        )

    async def _say(
        self, session_id: str, session: Session, text: str, chunk: int = 3, pace: float = 0.0
    ) -> None:
        words = text.split(" ")
        for i in range(0, len(words), chunk):
            piece = " ".join(words[i : i + chunk]) + (" " if i + chunk < len(words) else "")
            if pace and i:
                await asyncio.sleep(pace)
            await self.conn.session_update(
                session_id=session_id, update=update_agent_message_text(piece)
            )
        session.history.append(("agent", text))

    async def _turn(self, session_id: str, session: Session, text: str) -> str:
        send = self.conn.session_update
        await send(
            session_id=session_id,
            update=update_plan(
                [
                    plan_entry("Read the message", status="completed"),
                    plan_entry("Answer it", status="in_progress"),
                ]
            ),
        )
        if "FAIL" in text:
            raise RequestError(-32000, "the model failed", {"http_status": 400})
        if "CRASH" in text:
            marker = Path(os.environ.get("HOME", "/tmp")) / "crashed-once"
            if not marker.exists():
                marker.write_text("1")
                await send(session_id=session_id, update=update_agent_message_text("About to "))
                log("crashing mid-turn, as asked")
                os._exit(3)
        if "FUTURE" in text:
            await self.conn._conn.send_notification(
                "session/update",
                {"sessionId": session_id, "update": {"sessionUpdate": "future_kind", "x": 1}},
            )
        if "BIG" in text:
            big = update_agent_message_text("x" * (2 << 20))
            await send(session_id=session_id, update=big)
        if "TOOL" in text:
            await send(
                session_id=session_id,
                update=start_tool_call("ls-1", "List the work dir", kind="read", status="pending"),
            )
            await send(session_id=session_id, update=update_tool_call("ls-1", status="in_progress"))
            listing = sorted(os.listdir(session.cwd)) if os.path.isdir(session.cwd) else []
            await send(
                session_id=session_id,
                update=update_tool_call("ls-1", status="completed", raw_output=listing),
            )
        if "RISKY" in text and not await self._risky(session_id, session):
            if session.cancelled.is_set():
                return "cancelled"
            await self._say(session_id, session, "Not done: permission refused.")
            return "end_turn"
        if "SLOW" in text or "HANG" in text:
            for i in range(40 if "SLOW" in text else 10**9):
                try:
                    await asyncio.wait_for(session.cancelled.wait(), 0.25)
                except TimeoutError:
                    if "SLOW" in text:
                        await send(session_id=session_id, update=update_agent_message_text(f"{i} "))
                    continue
                return "cancelled"
        match = re.search(r"ENV (\w+)", text)
        if match:
            value = os.environ.get(match.group(1), "<unset>")
            await self._say(session_id, session, f"{match.group(1)}={value}")
        if "MCP" in text:
            await self._say(session_id, session, "MCP servers: " + ",".join(session.mcp))
        match = re.search(r"MCP_CALL (\S+)(?: (\{[^\n]*?\}))?(?=\s|$)", text)
        if match:
            arguments = json.loads(match.group(2) or "{}")
            said = await self._mcp_call(session_id, match.group(1), arguments)
            await self._say(session_id, session, said)
        if "CLIENT" in text:
            await self._say(session_id, session, await self._probe_client(session_id))
        pace = 0.05 if "PACE" in text else 0.0
        await self._say(session_id, session, f"You said: {text}", pace=pace)
        return "end_turn"

    async def _mcp_call(self, session_id: str, tool: str, arguments: dict[str, Any]) -> str:
        """List the tools of the session's HTTP MCP server and call `tool` there."""
        try:
            from mcp import ClientSession, McpError
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client
        except ImportError:
            return "MCP_CALL needs the mcp package"
        servers = self.http_mcp.get(session_id) or []
        if not servers:
            return "MCP_CALL: no HTTP MCP server in this session"
        headers = {h.name: h.value for h in servers[0].headers}
        async with (
            create_mcp_http_client(headers=headers) as http,
            streamable_http_client(servers[0].url, http_client=http) as (read, write, _),
            ClientSession(read, write) as mcp,
        ):
            await mcp.initialize()
            listed = ",".join(t.name for t in (await mcp.list_tools()).tools)
            try:
                result = await mcp.call_tool(tool, arguments)
            except McpError as e:
                return f"MCP tools: {listed}. {tool} refused: {e.error.message}"
            text = " ".join(getattr(c, "text", "") for c in result.content)
            return f"MCP tools: {listed}. {tool} {'error' if result.isError else 'ok'}: {text}"

    async def _probe_client(self, session_id: str) -> str:
        """The client's advertised fs/terminal capabilities, and its answers to the calls."""
        caps = self.client_capabilities
        fs = caps.fs if caps is not None and caps.fs is not None else None
        found = [
            f"readTextFile={bool(fs and fs.read_text_file)}",
            f"writeTextFile={bool(fs and fs.write_text_file)}",
            f"terminal={bool(caps and caps.terminal)}",
        ]
        calls = {
            "fs/read_text_file": self.conn.read_text_file(session_id=session_id, path="/etc/hosts"),
            "fs/write_text_file": self.conn.write_text_file(
                session_id=session_id, path="/tmp/x", content="x"
            ),
            "terminal/create": self.conn.create_terminal(session_id=session_id, command="true"),
            "_x/probe": self.conn.ext_method("x/probe", {}),
        }
        for name, call in calls.items():
            try:
                found.append(f"{name}=answered {await call}")
            except RequestError as e:
                found.append(f"{name}={e.code}")
        return " ".join(found)

    async def _risky(self, session_id: str, session: Session) -> bool:
        """Ask before writing a file; True when it was written."""
        send = self.conn.session_update
        target = Path(session.cwd) / "approved.txt"
        await send(
            session_id=session_id,
            update=start_tool_call(
                "write-1",
                f"Write {target}",
                kind="edit",
                status="pending",
                raw_input={"path": str(target)},
            ),
        )
        if session.mode != "yolo":
            response = await self.conn.request_permission(
                session_id=session_id,
                tool_call=ToolCallUpdate(tool_call_id="write-1", title=f"Write {target}"),
                options=[
                    PermissionOption(option_id="allow", name="Allow once", kind="allow_once"),
                    PermissionOption(option_id="reject", name="Reject", kind="reject_once"),
                ],
            )
            outcome = response.outcome
            if getattr(outcome, "outcome", "") != "selected" or outcome.option_id != "allow":
                await send(
                    session_id=session_id, update=update_tool_call("write-1", status="failed")
                )
                return False
        target.write_text("approved\n")
        await send(session_id=session_id, update=update_tool_call("write-1", status="completed"))
        return True


def main() -> None:
    asyncio.run(run_agent(SampleAgent()))


if __name__ == "__main__":
    main()
