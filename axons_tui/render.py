"""How events and query results look to people, in every headless command and the demo.

Text from an Axon (payloads, sources, table cells) is data, never markup: it is placed into
`rich.text.Text` pieces, so a payload holding "[bold]" prints as written.
"""

from __future__ import annotations

import datetime as dt

import orjson
from rich.table import Table
from rich.text import Text

from engine.models import Event, QueryResult

ORIGIN_STYLE = {
    "USER_EVENT": "cyan",
    "AGENT_EVENT": "green",
    "EXTERNAL_EVENT": "magenta",
    "SYSTEM_EVENT": "dim",
}


def timestamp(ms: int) -> str:
    """Local wall-clock time of an event or a record, to the second."""
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def event_text(e: Event) -> str:
    """A message's text; any other payload as it was sent."""
    try:
        body = orjson.loads(e.payload)
    except orjson.JSONDecodeError:
        return e.payload
    text = body.get("text") if isinstance(body, dict) else None
    return text if isinstance(text, str) else e.payload


def event_line(e: Event, *, with_time: bool = True) -> Text:
    """`#seq [time] source event_type text`, coloured by origin."""
    style = ORIGIN_STYLE.get(e.origin, "")
    line = Text(f"#{e.sequence:<5} ", style="dim")
    if with_time:
        line.append(f"{timestamp(e.timestamp_ms)} ", style="dim")
    line.append(f"{e.source:<7} ", style=f"bold {style}".strip())
    line.append(f"{e.event_type:<16} ", style=style)
    line.append(event_text(e))
    return line


def result_table(result: QueryResult, title: str | None = None) -> Table:
    """A query result with each column's declared type under its name; NULL shown as such."""
    table = Table(title=title, title_justify="left")
    for column in result.columns:
        header = Text(column.name)
        header.append(f"\n{column.type}" if column.type else "", style="dim")
        table.add_column(header)
    for row in result.rows:
        table.add_row(*(Text("NULL", style="dim") if v is None else Text(str(v)) for v in row))
    return table
