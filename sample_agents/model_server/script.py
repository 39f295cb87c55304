"""What the scripted model answers, decided from words in the conversation's last turn.

Every API (Anthropic, OpenAI, Gemini) is first read into a `Turn`; `decide` turns it into a
`Reply`, the same for all three, so an agent gets the same script whichever API it speaks.

| the last user turn holds         | and tools are offered | the answer                        |
|----------------------------------|-----------------------|-----------------------------------|
| a tool result                    | any                   | `TOOL_DONE: <its first line>`     |
| `RUN_SHELL: <command>` (to EOL)  | a shell tool          | a call of it with that command    |
| `WRITE_FILE <absolute path>`     | a file-writing tool   | a call writing `WRITTEN_CONTENT`  |
| `MCP_CALL: <tool> {json}`        | a tool named `…tool`  | a call of it with those arguments |
| `SLOW_REPLY`                     | any                   | `SLOW_DELTAS` text deltas, slowly |
| `FAIL_HTTP_<status>`             | any                   | that HTTP status, the API's error |
| anything else                    |                       | `HELLO` in three deltas           |

The markers act only on requests that offer tools, so the agents' side requests (titles,
routing classifiers) get plain text and the main request gets the scripted answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

HELLO = ("Hello ", "from the scripted ", "model.")
WRITTEN_CONTENT = "written by the scripted model\n"
SLOW_DELTAS = 40
SLOW_DELTA_S = 0.5
TOOL_RESULT_EXCERPT = 60

SHELL_TOOLS = ("Bash", "bash", "run_shell_command")
WRITE_TOOLS = ("Write", "write", "write_file")
PATH_KEYS = ("file_path", "filePath", "path", "absolute_path")

RUN_SHELL = re.compile(r"RUN_SHELL:\s*(?P<command>[^\n]+)")
WRITE_FILE = re.compile(r"WRITE_FILE\s+(?P<path>/\S+)")
FAIL_HTTP = re.compile(r"FAIL_HTTP_(?P<status>[1-5]\d\d)")
# An MCP tool, by the end of its name: agents prefix it (Claude: mcp__<server>__<tool>).
MCP_CALL = re.compile(r"MCP_CALL:\s*(?P<tool>[\w.-]+)(?:[ \t]+(?P<arguments>\{[^\n]*\}))?")


@dataclass
class Turn:
    """The part of a request the script reads."""

    user_text: str
    tool_result: str | None
    tools: dict[str, dict[str, Any]]  # tool name -> its JSON schema of arguments
    messages: int = 0  # how long the conversation is (a continued session sends its history)


@dataclass
class Reply:
    """What to answer: text deltas, or one tool call, or an HTTP error."""

    kind: str  # "text" | "tool" | "error"
    deltas: tuple[str, ...] = ()
    delay_s: float = 0.0
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    message: str = ""

    def describe(self) -> str:
        if self.kind == "tool":
            return f"tool {self.tool}"
        if self.kind == "error":
            return f"error {self.status}"
        return "slow text" if self.delay_s else "text"

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def text_reply(*deltas: str, delay_s: float = 0.0) -> Reply:
    return Reply("text", deltas=deltas, delay_s=delay_s)


def decide(turn: Turn) -> Reply:
    """The scripted answer to one request (see the module's table)."""
    if turn.tool_result is not None:
        first_line = next((ln for ln in turn.tool_result.splitlines() if ln.strip()), "")
        return text_reply("TOOL_DONE: ", first_line.strip()[:TOOL_RESULT_EXCERPT])
    if not turn.tools:
        return text_reply(*HELLO)
    if failure := FAIL_HTTP.search(turn.user_text):
        status = int(failure["status"])
        return Reply("error", status=status, message=f"scripted failure {status}")
    if (shell := RUN_SHELL.search(turn.user_text)) and (name := _offered(turn, SHELL_TOOLS)):
        return _call(turn, name, command=shell["command"].strip())
    if (write := WRITE_FILE.search(turn.user_text)) and (name := _offered(turn, WRITE_TOOLS)):
        path_key = next((k for k in PATH_KEYS if k in _properties(turn, name)), PATH_KEYS[0])
        return _call(turn, name, **{path_key: write["path"], "content": WRITTEN_CONTENT})
    if (mcp := MCP_CALL.search(turn.user_text)) and (name := _ending(turn, mcp["tool"])):
        try:
            arguments = json.loads(mcp["arguments"] or "{}")
        except json.JSONDecodeError:
            return text_reply(f"MCP_CALL: the arguments are not JSON: {mcp['arguments']}")
        return Reply("tool", tool=name, arguments=arguments)
    if "SLOW_REPLY" in turn.user_text:
        deltas = tuple(f"slow {i} " for i in range(1, SLOW_DELTAS + 1))
        return text_reply(*deltas, delay_s=SLOW_DELTA_S)
    return text_reply(*HELLO)


def _offered(turn: Turn, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in turn.tools), None)


def _ending(turn: Turn, tool: str) -> str | None:
    """The offered tool named `tool`, or ending in `_tool` (an MCP tool as an agent names it)."""
    return next((n for n in turn.tools if n == tool or n.endswith("_" + tool)), None)


def _properties(turn: Turn, tool: str) -> dict[str, Any]:
    properties = turn.tools.get(tool, {}).get("properties")
    return properties if isinstance(properties, dict) else {}


def _call(turn: Turn, tool: str, **arguments: Any) -> Reply:
    """A call of `tool`, plus a `description` when its schema asks for one (OpenCode's
    bash requires it; the others accept it)."""
    if "description" in _properties(turn, tool):
        arguments.setdefault("description", "scripted by the model server")
    return Reply("tool", tool=tool, arguments=arguments)


def value_for(schema: dict[str, Any]) -> Any:
    """A value that satisfies a JSON schema (for JSON-mode requests such as Gemini's router
    and next-speaker checks): "user" when an enum offers it, else the first choice."""
    if schema.get("enum"):
        return "user" if "user" in schema["enum"] else schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    kind = str(kind).lower()
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: value_for(sub) for name, sub in properties.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return "scripted"
