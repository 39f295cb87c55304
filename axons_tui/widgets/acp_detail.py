"""An ACP `session/update` in full, for the event detail beside the stream: the whole
message, a tool call's diffs as unified diffs with its input and output as JSON, a plan one
entry a line. The stream's one-line form is `acp_text`; this is what a selected event shows
above its raw payload. Agent text is data, never markup.
"""

from __future__ import annotations

from difflib import unified_diff
from typing import Any

import orjson
from rich.style import Style
from rich.text import Text

from axons_tui.widgets.acp_text import (
    PLAIN,
    PLAN_MARKS,
    AcpStyles,
    content_text,
    field_of,
    location_text,
    session_update_text,
)

DETAIL_LIMIT = 20_000  # characters of one JSON value or diff shown; the payload has it all


def session_update_detail(payload: dict[str, Any], styles: AcpStyles = PLAIN) -> Text | None:
    """The update in full, several lines; None when the payload holds no update."""
    head = session_update_text(payload, styles)
    if head is None:
        return None
    update: dict[str, Any] = payload["update"]
    kind = update["sessionUpdate"]
    chunk = {
        "agent_message_chunk": Style(),
        "agent_thought_chunk": styles.thought,
        "user_message_chunk": styles.user,
    }.get(kind)
    if chunk is not None:
        return Text(content_text(update.get("content")), chunk)
    if kind in ("tool_call", "tool_call_update"):
        return _tool_call(head, update, styles)
    if kind == "plan":
        return _checklist(update.get("entries"), styles)
    if kind == "plan_update" and field_of(update, "plan", dict).get("type") == "markdown":
        return Text(str(field_of(update, "plan", dict).get("content", "")))
    if kind == "plan_update":
        return _checklist(field_of(update, "plan", dict).get("entries"), styles) or head
    return head


def _tool_call(head: Text, update: dict[str, Any], styles: AcpStyles) -> Text:
    """The one-line head, where it works, each diff, other content, input and output."""
    parts = [head]
    places = [location_text(p) for p in field_of(update, "locations", list)]
    parts += [Text(f"at {place}", styles.quiet) for place in places if place]
    for item in field_of(update, "content", list):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "diff":
            parts.append(diff_text(item, styles))
        elif item.get("type") == "content":
            parts.append(Text(_cut(content_text(item.get("content")))))
        elif item.get("type") == "terminal":
            parts.append(Text(f"terminal {item.get('terminalId', '')}", styles.quiet))
    for key, label in (("rawInput", "input"), ("rawOutput", "output")):
        if key in update:
            parts.append(Text(f"{label}:", styles.quiet))
            parts.append(Text(pretty_json(update[key])))
    return Text("\n").join(parts)


def diff_text(item: dict[str, Any], styles: AcpStyles = PLAIN) -> Text:
    """A diff content item as a unified diff: additions and removals coloured."""
    path = str(item.get("path", "?"))
    old = str(item.get("oldText") or "").splitlines()
    new = str(item.get("newText") or "").splitlines()
    lines = list(unified_diff(old, new, f"{path} (before)", path, lineterm=""))
    text = Text()
    for i, line in enumerate(lines if lines else [f"{path}: no change"]):
        if i:
            text.append("\n")
        if line.startswith(("+++", "---", "@@")):
            text.append(line, styles.quiet)
        elif line.startswith("+"):
            text.append(line, styles.done)
        elif line.startswith("-"):
            text.append(line, styles.failed)
        else:
            text.append(line)
        if len(text) > DETAIL_LIMIT:
            text.append("\n…", styles.quiet)
            break
    return text


def _checklist(entries: Any, styles: AcpStyles) -> Text | None:
    """A plan one entry a line: "✓ Read the message (high)"."""
    rows = [e for e in (entries if isinstance(entries, list) else []) if isinstance(e, dict)]
    if not rows:
        return None
    lines = []
    for entry in rows:
        status = str(entry.get("status", "pending"))
        line = Text(f"{PLAN_MARKS.get(status, '○')} ", styles.status(status))
        line.append(str(entry.get("content", "")), styles.quiet if status == "completed" else "")
        if entry.get("priority"):
            line.append(f" ({entry['priority']})", styles.quiet)
        lines.append(line)
    return Text("\n").join(lines)


def pretty_json(value: Any) -> str:
    """A JSON value indented, in the agent's key order, cut at DETAIL_LIMIT."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        text = repr(value)
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT] + "\n…"
