"""An ACP agent's `session/update` events as one readable line each (contract §5.2).

What the agent says reads as text, its thoughts are dimmed, a tool call shows its title, kind
and status (and the size of any diff), a plan is a checklist, and the quiet kinds (commands
offered, config) stay quiet. A kind this module does not know is shown plainly, never
dropped. Agent text is data: it goes into `Text` pieces, never through markup.

Colours are not chosen here: the caller passes `AcpStyles` made from the styles its widget
resolved from theme variables (`event_text` maps its event styles onto them); without them
the lines use only dim, bold and italic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, TypeVar

import orjson
from rich.style import Style
from rich.text import Text

T = TypeVar("T", dict[str, Any], list[Any])
_DIM = Style(dim=True)
_BOLD = Style(bold=True)
_NONE = Style()
PLAN_MARKS = {"completed": "✓", "in_progress": "▸", "pending": "○"}
TEXT_LIMIT = 400  # characters of one update kept on its line; the detail view has the rest


@dataclass(frozen=True, slots=True)
class AcpStyles:
    """The rich styles of an ACP line's parts."""

    thought: Style = _DIM + Style(italic=True)
    tool: Style = _BOLD
    done: Style = _NONE
    failed: Style = _BOLD
    quiet: Style = _DIM
    user: Style = _NONE

    def status(self, status: str) -> Style:
        """How a tool call's status looks: done, failed, or still quiet."""
        return {"completed": self.done, "failed": self.failed}.get(status, self.quiet)


PLAIN = AcpStyles()


def session_update_text(payload: dict[str, Any], styles: AcpStyles = PLAIN) -> Text | None:
    """One line for a `session/update` event's payload (`{sessionId, update}`); None when
    the payload holds no update to show."""
    update = payload.get("update")
    if not isinstance(update, dict) or not isinstance(update.get("sessionUpdate"), str):
        return None
    kind = update["sessionUpdate"]
    render = RENDERERS.get(kind, _unknown)
    line = render(update, styles)
    truncated = payload.get("truncated")
    if isinstance(truncated, dict):  # the broker kept only the kind and the ids
        if not line.plain:
            line = Text(kind.replace("_", " "), styles.quiet)
        line.append(f" (too big to record: {_size(truncated.get('bytes'))})", styles.quiet)
    return line


def message_chunk(payload: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, text) of a message or thought chunk, so a stream can join the chunks of one
    message as they arrive; None for any other update."""
    update = payload.get("update")
    if not isinstance(update, dict):
        return None
    kind = update.get("sessionUpdate")
    if kind not in ("agent_message_chunk", "agent_thought_chunk", "user_message_chunk"):
        return None
    return str(kind), content_text(update.get("content"))


def usage_text(usage: Any) -> str:
    """A turn's token usage (`turn.completed`'s `usage`): "7 in · 7 out · 14 total"."""
    if not isinstance(usage, dict):
        return ""
    parts = [
        f"{_count(usage.get(key))} {label}"
        for key, label in (
            ("inputTokens", "in"),
            ("outputTokens", "out"),
            ("thoughtTokens", "thought"),
            ("cachedReadTokens", "cached"),
            ("totalTokens", "total"),
        )
        if isinstance(usage.get(key), int)
    ]
    return " · ".join(parts)


# -- content --------------------------------------------------------------------------------


def content_text(block: Any) -> str:
    """A content block as text: its text, or what it is (an image, a link, a resource)."""
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        return f"[{kind} {block.get('mimeType', '')}]".replace(" ]", "]")
    if kind == "resource_link":
        return f"[link {block.get('title') or block.get('name') or block.get('uri', '')}]"
    if kind == "resource":
        resource = field_of(block, "resource", dict)
        return f"[resource {resource.get('uri', '')}]"
    return f"[{kind or 'content'}]"


def one_line(text: str, limit: int = TEXT_LIMIT) -> str:
    """Line breaks as spaces, cut at `limit`: an update is one row."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def diff_summary(item: dict[str, Any]) -> str:
    """A tool call's diff content as "± path +added -removed" (lines)."""
    old = str(item.get("oldText") or "").splitlines()
    new = str(item.get("newText") or "").splitlines()
    added = removed = 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        removed += i2 - i1 if tag in ("replace", "delete") else 0
        added += j2 - j1 if tag in ("replace", "insert") else 0
    return f"± {item.get('path', '?')} +{added} -{removed}"


def _tool_content(update: dict[str, Any]) -> str:
    """What a tool call's content adds on one line: diffs, terminals, the first text, or
    else where it works."""
    items = field_of(update, "content", list)
    parts: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "diff":
            parts.append(diff_summary(item))
        elif item.get("type") == "terminal":
            parts.append(f"terminal {item.get('terminalId', '')}".strip())
        elif item.get("type") == "content" and not parts:
            parts.append(one_line(content_text(item.get("content")), 80))
    if not parts:
        located = [location_text(place) for place in field_of(update, "locations", list)]
        parts = [f"@ {place}" for place in located[:1] if place]
    return " · ".join(p for p in parts if p)


def location_text(place: Any) -> str:
    """ "path:line" of a tool call's location."""
    if not isinstance(place, dict) or not place.get("path"):
        return ""
    line = place.get("line")
    return f"{place['path']}:{line}" if isinstance(line, int) else str(place["path"])


# -- one renderer per kind ------------------------------------------------------------------


def chunk_text(kind: str, text: str, styles: AcpStyles = PLAIN, limit: int = TEXT_LIMIT) -> Text:
    """A message, thought or user chunk's text, or the text of several joined, as it reads:
    thoughts dimmed and labelled, the user's echo labelled."""
    label, style = {
        "agent_thought_chunk": ("thinking: ", styles.thought),
        "user_message_chunk": ("you: ", styles.user),
    }.get(kind, ("", _NONE))
    return Text(label + one_line(text, limit), style)


def _chunk(update: dict[str, Any], styles: AcpStyles) -> Text:
    return chunk_text(update["sessionUpdate"], content_text(update.get("content")), styles)


def _tool_call(update: dict[str, Any], styles: AcpStyles) -> Text:
    """ "▸ title (kind) status", then its diff or first output."""
    title = update.get("title") or update.get("toolCallId") or "tool call"
    line = Text.assemble(("▸ ", styles.tool), (one_line(str(title), 120), styles.tool))
    if update.get("kind"):
        line.append(f" ({update['kind']})", styles.quiet)
    status = update.get("status")
    if isinstance(status, str):
        line.append(f" {status}", styles.status(status))
    extra = _tool_content(update)
    if extra:
        line.append(f"  {extra}", styles.quiet)
    return line


def _plan_entries(entries: Any, styles: AcpStyles) -> Text:
    """A checklist on one line: "✓ read · ▸ answer · ○ later"."""
    line = Text()
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        status = str(entry.get("status", "pending"))
        if i:
            line.append(" · ", styles.quiet)
        line.append(f"{PLAN_MARKS.get(status, '○')} ", styles.status(status))
        style = styles.quiet if status == "completed" else Style()
        line.append(one_line(str(entry.get("content", "")), 80), style)
    return line


def _plan(update: dict[str, Any], styles: AcpStyles) -> Text:
    return Text.assemble(("plan: ", styles.tool), _plan_entries(update.get("entries"), styles))


def _plan_update(update: dict[str, Any], styles: AcpStyles) -> Text:
    """The newer plan kinds: entries, a file or markdown, each with a plan id."""
    plan = field_of(update, "plan", dict)
    head = Text("plan: ", styles.tool)
    if plan.get("type") == "items":
        return head + _plan_entries(plan.get("entries"), styles)
    if plan.get("type") == "file":
        return head + Text(str(plan.get("uri", "")))
    return head + Text(one_line(str(plan.get("content", ""))))


def _plan_removed(update: dict[str, Any], styles: AcpStyles) -> Text:
    return Text(f"plan {update.get('planId', '')} removed".replace("  ", " "), styles.quiet)


def _commands(update: dict[str, Any], styles: AcpStyles) -> Text:
    offered = update.get("availableCommands")
    names = [f"/{c.get('name')}" for c in offered or [] if isinstance(c, dict)]
    return Text(f"commands: {' '.join(names) or 'none'}", styles.quiet)


def _mode(update: dict[str, Any], styles: AcpStyles) -> Text:
    return Text(f"mode → {update.get('currentModeId', '?')}", styles.quiet)


def _config(update: dict[str, Any], styles: AcpStyles) -> Text:
    options = update.get("configOptions")
    shown = [
        f"{o.get('name') or o.get('id')}={o.get('currentValue')}"
        for o in options or []
        if isinstance(o, dict)
    ]
    return Text(f"config: {' · '.join(shown) or 'none'}", styles.quiet)


def _session_info(update: dict[str, Any], styles: AcpStyles) -> Text:
    title = update.get("title")
    return Text(f"session: {one_line(str(title))}" if title else "session info", styles.quiet)


def _usage(update: dict[str, Any], styles: AcpStyles) -> Text:
    """The context window: "context 12,345 / 200,000 tokens (6%) · 0.12 USD"."""
    used, size = update.get("used"), update.get("size")
    line = f"context {_count(used)} / {_count(size)} tokens"
    if isinstance(used, int) and isinstance(size, int) and size > 0:
        line += f" ({used * 100 // size}%)"
    cost = update.get("cost")
    if isinstance(cost, dict) and isinstance(cost.get("amount"), int | float):
        line += f" · {cost['amount']:.2f} {cost.get('currency', '')}".rstrip()
    return Text(line, styles.quiet)


def _unknown(update: dict[str, Any], styles: AcpStyles) -> Text:
    """A kind no renderer knows (newer than this console): its name and fields as JSON."""
    rest = {k: v for k, v in update.items() if k != "sessionUpdate"}
    line = Text(str(update["sessionUpdate"]), styles.tool)
    if rest:
        line.append(" " + one_line(orjson.dumps(rest).decode(), 200), styles.quiet)
    return line


RENDERERS: dict[str, Callable[[dict[str, Any], AcpStyles], Text]] = {
    "agent_message_chunk": _chunk,
    "agent_thought_chunk": _chunk,
    "user_message_chunk": _chunk,
    "tool_call": _tool_call,
    "tool_call_update": _tool_call,
    "plan": _plan,
    "plan_update": _plan_update,
    "plan_removed": _plan_removed,
    "available_commands_update": _commands,
    "current_mode_update": _mode,
    "config_option_update": _config,
    "session_info_update": _session_info,
    "usage_update": _usage,
}


def field_of(parent: dict[str, Any], key: str, kind: type[T]) -> T:
    """`parent[key]` when it is a `kind` (dict or list), else an empty one: agents send
    what they like, and a line is still drawn."""
    value = parent.get(key)
    return value if isinstance(value, kind) else kind()


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _size(value: Any) -> str:
    if not isinstance(value, int):
        return "?"
    return f"{value / (1 << 20):.1f} MB" if value >= 1 << 20 else f"{value:,} bytes"
