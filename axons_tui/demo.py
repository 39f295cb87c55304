"""`axons demo --headless`: the seed's support-triage session, for real, printed for scripts
and tests (`axons demo` opens the console on it and two more Axons: demo_console.py).

A customer writes from the web; the triage agent (in a Docker container, or a local process
when no Docker engine answers) records a ticket in the Axon's own tables, asks a human and
goes to sleep: its container is paused. A Slack reply wakes it; it updates the ticket and
says what it does next. A live subscriber prints the stream as it commits; then the state is
shown now and as it was before the reply, and the hash chain is verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import orjson
from rich.console import Console

from axons_tui.demo_home import DEMO_AXONS, demo_spec, prepare_runtime
from axons_tui.render import event_line, result_table
from engine import Draft, Engine, Event
from engine.errors import AxonError
from engine.models import AgentSpec

console = Console()
SUPPORT = DEMO_AXONS[0]  # the console demo's support Axon: the same agent, the same TOML


def _show_event(e: Event) -> None:
    console.print(event_line(e, with_time=False), highlight=False)


def _progress(line: str) -> None:
    console.print(f"  {line}", style="dim", markup=False, highlight=False)


async def _triage_spec() -> AgentSpec:
    """The triage agent as its TOML declares it: in a container when Docker answers (its
    image built offline on the first run), else as a local process; the user is told which."""
    console.print(
        "[dim]preparing the triage agent (the first run builds its image offline: "
        "about a minute)[/dim]"
    )
    choice = await asyncio.to_thread(prepare_runtime, _progress, [SUPPORT])
    if choice.kind == "process":
        console.print(choice.reason, style="yellow", markup=False)
    return demo_spec(SUPPORT, choice.kind).model_copy(update={"axon": "support-1024"})


async def _session(engine: Engine) -> None:
    axon = await engine.create_axon("support-1024", {"customer": "cust_123"})
    console.rule(f"[bold]Axon {axon.name}[/bold] [dim]{axon.id}[/dim]")
    seen: list[Event] = []
    arrived = asyncio.Event()

    async def follow() -> None:
        async for e in engine.subscribe(axon.id):
            _show_event(e)
            seen.append(e)
            arrived.set()

    async def until(what: Callable[[Event], bool], timeout: float = 120) -> Event:
        async def look() -> Event:
            while True:
                for e in seen:
                    if what(e):
                        return e
                arrived.clear()
                await arrived.wait()

        return await asyncio.wait_for(look(), timeout)

    follower = asyncio.create_task(follow())
    try:
        await engine.agents.add(await _triage_spec())
        await until(lambda e: e.event_type == "agent.running")
        first = await engine.publish(
            axon.id, Draft.message("Billing export fails for large CSV downloads.", source="web")
        )
        asked = await until(
            lambda e: e.event_type == "agent.paused" and e.sequence > first.sequence
        )
        view = await engine.agents.get(axon.id, "triage")
        console.print(
            f"[bold yellow]the agent is {view.state}[/bold yellow] "
            "[dim](container frozen, memory kept, no CPU) until someone answers[/dim]"
        )
        await asyncio.sleep(1.5)
        reply = await engine.publish(
            axon.id, Draft.message("Confirmed: only exports above 100MB.", source="slack")
        )
        resumed = await until(
            lambda e: e.event_type == "agent.resumed" and e.sequence > reply.sequence
        )
        await until(lambda e: e.event_type == "agent.paused" and e.sequence > resumed.sequence)
        wake = orjson.loads(resumed.payload)
        console.print(
            f"[bold green]woken in {wake['wake_ms']} ms[/bold green] "
            f"[dim]by event #{wake['trigger_sequence']}, from {wake['from']}[/dim]"
        )
    finally:
        follower.cancel()
        # the demo's home goes away with it: so do its container and volume, even on Ctrl-C
        with contextlib.suppress(AxonError):
            await engine.agents.remove(axon.id, "triage")

    sql = "SELECT id, status, priority, summary FROM tickets"
    console.print(result_table(await engine.query(axon.id, sql), "tickets now"))
    console.print(
        result_table(
            await engine.query(axon.id, sql, at_sequence=asked.sequence),
            f"tickets as of event #{asked.sequence}, before the reply (time travel)",
        )
    )
    report = await engine.verify(axon.id)
    mark = (
        "[green]intact[/green]"
        if report.ok
        else f"[red]broken at {report.first_bad_sequence}[/red]"
    )
    console.print(f"hash chain {mark}: {report.checked} events checked")


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
