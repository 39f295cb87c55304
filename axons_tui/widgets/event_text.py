"""One event as one line of the console: who said what, readable at a glance.

Human and agent messages show their source in bold and their text; system events are quiet;
`agent.resumed` shows how long the wake took. Colours are not chosen here: a widget resolves
its component classes (`EVENT_COMPONENT_CLASSES`, styled in TCSS with theme variables) into an
`EventStyles` and passes it in. Payload text is data, never markup: it goes into `Text` pieces.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import orjson
from rich.console import Console
from rich.style import Style
from rich.text import Text

from axons_tui.widgets.acp_text import AcpStyles, chunk_text, session_update_text, usage_text
from engine.models import Event

DAY_MS = 86_400_000

EVENT_COMPONENT_CLASSES = frozenset(
    {
        "event--sequence",
        "event--time",
        "event--user",
        "event--agent",
        "event--external",
        "event--system",
        "event--wake",
        "event--problem",
    }
)
"""The component classes a widget declares to colour event lines (see `event_css`)."""


def event_css(widget: str) -> str:
    """Default TCSS for the event component classes of `widget` (a type name), in theme
    variables only, so every widget that shows events colours them alike."""
    return f"""
    {widget} > .event--sequence {{ color: $foreground-muted; }}
    {widget} > .event--time {{ color: $foreground-muted; }}
    {widget} > .event--user {{ color: $origin-user; }}
    {widget} > .event--agent {{ color: $origin-agent; }}
    {widget} > .event--external {{ color: $origin-external; }}
    {widget} > .event--system {{ color: $origin-system; text-style: dim; }}
    {widget} > .event--wake {{ color: $success; }}
    {widget} > .event--problem {{ color: $error; }}
    """


NO_STYLE = Style()
QUIET = Style(dim=True)


@dataclass(frozen=True, slots=True)
class EventStyles:
    """The rich styles of an event line's parts, resolved from a widget's component classes."""

    sequence: Style = QUIET
    time: Style = QUIET
    user: Style = NO_STYLE
    agent: Style = NO_STYLE
    external: Style = NO_STYLE
    system: Style = QUIET
    wake: Style = NO_STYLE
    problem: Style = NO_STYLE

    def origin(self, origin: str) -> Style:
        """The colour of a source by the event's origin."""
        return {
            "USER_EVENT": self.user,
            "AGENT_EVENT": self.agent,
            "EXTERNAL_EVENT": self.external,
        }.get(origin, self.system)


PLAIN = EventStyles()


def event_styles(component_style: Callable[[str], Style]) -> EventStyles:
    """Styles from a widget's `get_component_rich_style` (partial styles, so a line's
    background stays the widget's)."""
    return EventStyles(**{f.name: component_style(f"event--{f.name}") for f in fields(EventStyles)})


def clock(timestamp_ms: int, now_ms: int | None) -> str:
    """The local time of an event: to the second within a day of `now_ms`, else the date."""
    when = dt.datetime.fromtimestamp(timestamp_ms / 1000)
    if now_ms is not None and abs(now_ms - timestamp_ms) < DAY_MS:
        return when.strftime("%H:%M:%S")
    return when.strftime("%m-%d %H:%M")


def payload_of(e: Event) -> Any:
    """The decoded payload; the raw text when it is not JSON."""
    try:
        return orjson.loads(e.payload)
    except orjson.JSONDecodeError:
        return e.payload


def one_line(text: str) -> str:
    """Line breaks and tabs as spaces: an event is one row."""
    return " ".join(text.split())


def event_line(
    e: Event, now_ms: int | None = None, *, styles: EventStyles = PLAIN, compact: bool = False
) -> Text:
    """`#seq time source what`, or without sequence and time when `compact` (dashboard panes)."""
    line = line_head(e, now_ms, styles, compact)
    line.append_text(event_body(e, styles))
    return line


def line_head(e: Event, now_ms: int | None, styles: EventStyles, compact: bool) -> Text:
    """The columns before what happened: sequence and time, or the minute in a pane."""
    line = Text(no_wrap=True, overflow="ellipsis", end="")
    if not compact:
        line.append(f"{e.sequence:>7} ", styles.sequence)
        line.append(f"{clock(e.timestamp_ms, now_ms)} ", styles.time)
    else:
        line.append(f"{clock(e.timestamp_ms, now_ms)[-8:-3]} ", styles.time)
    return line


def joined_lines(
    first: Event,
    kind: str,
    text: str,
    width: int,
    console: Console,
    *,
    now_ms: int | None = None,
    styles: EventStyles = PLAIN,
    compact: bool = False,
    max_rows: int = 6,
) -> list[Text]:
    """A message streamed in chunks, joined into one item: the first row starts like its
    first chunk's `event_line`, the text wraps under itself, over at most `max_rows` rows
    (the last ends in "…" when the text is longer; the detail view has it all)."""
    head = line_head(first, now_ms, styles, compact)
    head.append(first.source, styles.origin(first.origin) + Style(bold=True))
    head.append(" ")
    indent = head.cell_len
    room = max(8, width - indent)
    body = chunk_text(kind, text, acp_styles(styles), limit=room * max_rows + 1)
    lines = list(body.wrap(console, room, overflow="fold")) or [Text()]
    wrapped = lines[:max_rows]
    if len(lines) > max_rows:
        last = wrapped[-1]
        last.rstrip()
        last.truncate(room - 1, overflow="crop")
        last.append("…")
    rows = [head + wrapped[0]]
    rows.extend(Text(" " * indent, end="") + part for part in wrapped[1:])
    return rows


def event_body(e: Event, styles: EventStyles = PLAIN) -> Text:
    """What happened, after the sequence and time columns."""
    if e.origin == "SYSTEM_EVENT":
        return system_text(e, payload_of(e), styles)
    body = payload_of(e)
    source = Text(e.source, styles.origin(e.origin) + Style(bold=True))
    if e.event_type == "session/update" and isinstance(body, dict):
        return Text.assemble(source, " ", update_text(body, styles))
    if e.event_type == "permission.requested" and isinstance(body, dict):
        title = (body.get("tool_call") or {}).get("title") or "a tool call"
        return Text.assemble(source, " asks permission: ", (one_line(str(title)), styles.wake))
    if e.event_type == "permission.decision" and isinstance(body, dict):
        answer = body.get("option_id") or ("cancelled" if body.get("cancelled") else "?")
        request = body.get("request_sequence", "?")
        said = f" answers permission #{request}: "
        return Text.assemble(source, said, (str(answer), styles.wake))
    text = body.get("text") if isinstance(body, dict) else None
    if isinstance(text, str):
        return Text.assemble(source, " ", one_line(text))
    kind = Text(f" {e.event_type} ", styles.origin(e.origin))
    return Text.assemble(source, kind, one_line(e.payload))


def update_text(body: dict[str, Any], styles: EventStyles) -> Text:
    """An ACP `session/update` as `acp_text` renders it; a payload with no update, its kind."""
    rendered = session_update_text(body, acp_styles(styles))
    if rendered is not None:
        return rendered
    update = body.get("update") if isinstance(body.get("update"), dict) else body
    kind = update.get("sessionUpdate") if isinstance(update, dict) else None
    return Text(str(kind or "session/update"), styles.system)


@lru_cache(maxsize=16)
def acp_styles(styles: EventStyles) -> AcpStyles:
    """An ACP line in the event colours: thoughts and quiet kinds as system events, tool
    calls as the agent, a completed one as a wake, a failed one as a problem."""
    return AcpStyles(
        thought=styles.system + Style(italic=True),
        tool=styles.agent + Style(bold=True),
        done=styles.wake,
        failed=styles.problem + Style(bold=True),
        quiet=styles.system,
        user=styles.user,
    )


def system_text(e: Event, body: Any, styles: EventStyles) -> Text:
    """The engine's own events, short and quiet; a wake and a failure stand out."""
    fields_ = body if isinstance(body, dict) else {}
    who = Text(e.source, styles.system + Style(bold=True))
    kind = e.event_type
    if kind == "agent.resumed":
        woke = f"woke in {fields_.get('wake_ms', '?')} ms ({fields_.get('from', '?')})"
        return Text.assemble(who, " ", (woke, styles.wake))
    if kind in ("agent.failed", "turn.failed"):
        why = fields_.get("reason") or fields_.get("error") or "failed"
        return Text.assemble(
            who, " ", (f"{kind.split('.')[0]} failed: {one_line(str(why))}", styles.problem)
        )
    if kind == "agent.log":
        lines = fields_.get("lines") or []
        return Text.assemble(who, (" log: " + " ⏎ ".join(map(str, lines)), styles.system))
    if kind in GATEWAY_LINES:
        line, failed = GATEWAY_LINES[kind](fields_)
        return Text.assemble(who, " ", (line, styles.problem if failed else styles.system))
    return Text.assemble(who, (" " + system_summary(kind, fields_), styles.system))


def gateway_request(fields_: dict[str, Any]) -> tuple[str, bool]:
    """A model call through the Agent Gateway: "ANTHROPIC POST /v1/messages 200 · 84 ms ·
    12 in · 30 out"; a failed one stands out."""
    status = fields_.get("status")
    line = (
        f"{fields_.get('provider', '?')} {fields_.get('method', '?')} "
        f"{fields_.get('path', '?')} {status} · {fields_.get('duration_ms', '?')} ms"
    )
    usage = fields_.get("usage")
    if isinstance(usage, dict):
        line += f" · {usage.get('input_tokens', '?')} in · {usage.get('output_tokens', '?')} out"
    if fields_.get("error"):
        line += f" · {one_line(str(fields_['error']))}"
    return line, not isinstance(status, int) or status >= 400


def gateway_limited(fields_: dict[str, Any]) -> tuple[str, bool]:
    """A call the gateway refused at a limit: "ANTHROPIC limited: token_budget (1,200 of
    1,000)"."""
    used, allowed = fields_.get("used"), fields_.get("allowed")
    counts = (
        f"{used:,} of {allowed:,}" if isinstance(used, int) and isinstance(allowed, int) else ""
    )
    return f"{fields_.get('provider', '?')} limited: {fields_.get('limit', '?')} ({counts})", True


def mcp_tool_call(fields_: dict[str, Any]) -> tuple[str, bool]:
    """A tool call through the MCP gateway: "tool tickets__read_ticket ok · 12 ms"."""
    status = str(fields_.get("status", "?"))
    server, tool = fields_.get("server"), fields_.get("tool", "?")
    name = f"{server}__{tool}" if server else str(tool)  # no server: it matched no upstream
    line = f"tool {name} {status} · {fields_.get('duration_ms', '?')} ms"
    if fields_.get("error"):
        line += f" · {one_line(str(fields_['error']))}"
    return line, status != "ok"


GATEWAY_LINES: dict[str, Callable[[dict[str, Any]], tuple[str, bool]]] = {
    "gateway.request": gateway_request,
    "gateway.limited": gateway_limited,
    "mcp.tool_call": mcp_tool_call,
}


def system_summary(kind: str, fields_: dict[str, Any]) -> str:
    """`agent.paused` becomes "paused (idle)", `turn.completed` "turn done #5 in 12 ms"."""
    if kind.startswith("turn."):
        sequences = fields_.get("sequences") or []
        which = " ".join(f"#{s}" for s in sequences[:3]) + (" …" if len(sequences) > 3 else "")
        verb = {"turn.started": "turn on", "turn.completed": "turn done"}.get(kind, kind)
        took = fields_.get("duration_ms")
        usage = usage_text(fields_.get("usage"))  # an ACP turn's tokens
        return (
            f"{verb} {which}"
            + (f" in {took} ms" if took is not None else "")
            + (f" · {usage}" if usage else "")
        )
    state = kind.removeprefix("agent.")
    reason = fields_.get("reason")
    if isinstance(reason, str) and reason.startswith("agent asked"):
        reason = "idle"  # the agent said it has nothing to do until the next event
    return f"{state} ({one_line(str(reason))})" if reason else state
