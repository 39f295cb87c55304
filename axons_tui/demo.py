"""`axons demo` until the console lands: the seed's support-triage session, played headless.

A customer writes from the web, an agent-like participant records a ticket in the Axon's own
tables and asks a human, a Slack reply arrives, the ticket is updated. A live subscriber prints
the stream as it commits; then the state is shown now and as it was earlier, and the hash
chain is verified.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from engine import Draft, Engine, Event
from engine.models import QueryResult

console = Console()

SCHEMA = [
    "CREATE TABLE tickets(id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, "
    "priority TEXT NOT NULL, summary TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE workflow_notes(id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id TEXT NOT NULL, "
    "note_type TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL)",
]


def _draft(event_type: str, body: dict[str, object], source: str, origin: str) -> Draft:
    return Draft(event_type, orjson.dumps(body).decode(), source, origin)


def _show_event(e: Event) -> None:
    body = orjson.loads(e.payload)
    text = body.get("text") if isinstance(body, dict) else None
    colour = {"USER_EVENT": "cyan", "AGENT_EVENT": "green", "EXTERNAL_EVENT": "magenta"}.get(e.origin, "white")
    console.print(
        f"[dim]#{e.sequence:>3}[/dim] [{colour}]{e.source:<7}[/{colour}] "
        f"[bold]{e.event_type:<16}[/bold] {text if text is not None else e.payload}",
        highlight=False,
    )


def _table(title: str, result: QueryResult) -> Table:
    table = Table(title=title, title_justify="left")
    for column in result.columns:
        table.add_column(f"{column.name} [dim]{column.type}[/dim]")
    for row in result.rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


async def _session(engine: Engine) -> None:
    axon = await engine.create_axon("support-1024", {"customer": "cust_123"})
    console.rule(f"[bold]Axon {axon.name}[/bold] [dim]{axon.id}[/dim]")
    seen = asyncio.Event()
    last_wanted = 0

    async def follow() -> None:
        async for e in engine.subscribe(axon.id):
            _show_event(e)
            if e.sequence == last_wanted:
                seen.set()

    follower = asyncio.create_task(follow())
    try:
        await engine.publish(axon.id, _draft(
            "message", {"text": "Billing export fails for large CSV downloads."}, "web", "USER_EVENT"))
        await engine.batch(axon.id, [
            *SCHEMA,
            {"sql": "INSERT INTO tickets VALUES ('TCK-1024', 'cust_123', 'awaiting_human', 'high', "
                    "'Billing export fails for large CSV downloads', datetime('now'))"},
            {"sql": "INSERT INTO workflow_notes(ticket_id, note_type, content, created_at) "
                    "VALUES ('TCK-1024', 'agent_check', 'Export worker times out after ~2 minutes', "
                    "datetime('now'))"},
        ])
        await engine.publish(axon.id, _draft(
            "message", {"text": "Checked the export worker: it times out after ~2 minutes. "
                        "Does it happen for every file size?"}, "triage", "AGENT_EVENT"))
        asked = await engine.publish(axon.id, _draft(
            "agent.idle", {"text": "waiting for a human"}, "triage", "AGENT_EVENT"))
        await engine.publish(axon.id, _draft(
            "message", {"text": "Confirmed: only exports above 100MB."}, "slack", "USER_EVENT"))
        await engine.batch(axon.id, [
            "UPDATE tickets SET status = 'investigating', "
            "summary = summary || ' (only above 100MB)', updated_at = datetime('now')",
        ])
        done = await engine.publish(axon.id, _draft(
            "message", {"text": "Resumed with the new constraint. Next: inspect export worker "
                        "timeouts for large files."}, "triage", "AGENT_EVENT"))
        last_wanted = done.sequence
        await asyncio.wait_for(seen.wait(), timeout=10)
    finally:
        follower.cancel()

    sql = "SELECT id, status, summary FROM tickets"
    console.print(_table("tickets now", await engine.query(axon.id, sql)))
    console.print(_table(f"tickets as of event #{asked.sequence} (time travel)",
                         await engine.query(axon.id, sql, at_sequence=asked.sequence)))
    report = await engine.verify(axon.id)
    mark = "[green]ok[/green]" if report.ok else f"[red]broken at {report.first_bad_sequence}[/red]"
    console.print(f"hash chain: {mark}, {report.checked} events checked")
    fork = await engine.fork(axon.id, asked.sequence, name="support-1024-before-reply")
    console.print(f"forked at #{asked.sequence} as [bold]{fork.name}[/bold] {fork.id}")


async def run_session(home: Path | None = None, keep: bool = False) -> int:
    """The demo on `home`, or on a fresh temporary home removed afterwards."""
    owned = home is None
    root = Path(tempfile.mkdtemp(prefix="axons-demo-")) if home is None else home
    try:
        async with Engine(root) as engine:
            await _session(engine)
    finally:
        if owned and not keep:
            shutil.rmtree(root, ignore_errors=True)
        elif owned:
            console.print(f"demo home kept at {root}")
    return 0
