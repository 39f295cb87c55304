"""The console as a client of the engine: embedded (serving its API on the home's socket) or
attached; two consoles on one engine; a lost engine and the resume after it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from axons_tui.feed import LIVE, RETRYING
from axons_tui.session import open_session
from engine import Engine
from engine.models import Draft, Event
from tests.console_support import console_app, until
from tests.http_support import ServerProcess


def message(text: str, source: str = "test") -> Draft:
    return Draft(event_type="message", payload=orjson.dumps({"text": text}).decode(), source=source)


async def test_two_consoles_on_one_engine_see_each_others_messages(tmp_path: Path) -> None:
    home = tmp_path / "home"
    embedded = console_app(home)
    async with embedded.run_test(size=(100, 30)):
        await until(lambda: embedded._session is not None, what="the embedded engine")
        assert embedded.session.embedded
        attached = console_app(home, tmp_config=tmp_path / "config2")
        async with attached.run_test(size=(100, 30)):
            await until(lambda: attached._session is not None, what="attaching")
            assert not attached.session.embedded
            assert attached.session.where == str(home / "engine.sock")
            seen_by = {"embedded": [], "attached": []}
            embedded.feed.watch(seen_by["embedded"].extend)
            attached.feed.watch(seen_by["attached"].extend)
            axon = await embedded.session.backend.create_axon("shared")
            await embedded.session.backend.publish(axon.id, message("from one", "tui"))
            await attached.session.backend.publish(axon.id, message("from two", "tui"))
            for who, events in seen_by.items():
                await until(lambda events=events: len(events) == 2, what=f"{who} sees both")
                assert [e.payload for e in events] == [
                    '{"text":"from one"}',
                    '{"text":"from two"}',
                ]


async def test_a_console_on_a_busy_home_attaches_instead_of_failing(tmp_path: Path) -> None:
    """`axons` on a home that `axons serve` already owns joins it (one engine per home)."""
    home = tmp_path / "home"
    server = ServerProcess(home).start()
    try:
        async with open_session(home) as session:
            assert not session.embedded
            axon = await session.backend.create_axon("joined")
            assert (await session.backend.get_axon("joined")).id == axon.id
    finally:
        server.kill()


async def test_a_lost_engine_is_retried_and_the_stream_resumes_without_gap_or_repeat(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home).start()
    app = console_app(home, connect=str(home / "engine.sock"))
    try:
        async with app.run_test(size=(100, 30)):
            await until(lambda: app._session is not None, what="attaching")
            backend = app.session.backend
            quiet = await backend.create_axon("quiet")
            busy = await backend.create_axon("busy")
            got: list[Event] = []
            app.feed.watch(got.extend)
            for axon in (quiet, busy):
                await backend.publish(axon.id, message("before"))
            await until(lambda: len(got) == 2, what="the first events")

            server.kill()
            await until(lambda: app.connection == RETRYING, what="the console notices")
            async with Engine(home) as engine:  # events the console cannot see live
                for axon in (quiet, busy):
                    for n in range(3):
                        await engine.publish(axon.id, message(f"while away {n}"))
            server.start()
            await until(lambda: app.connection == LIVE, timeout=20, what="the console is back")
            await app.session.backend.publish(busy.id, message("after"))
            await until(lambda: len(got) == 2 + 6 + 1, timeout=20, what="every missed event")
            await asyncio.sleep(0.3)  # a repeat would arrive by now
            for axon, last in ((quiet, 4), (busy, 5)):
                sequences = [e.sequence for e in got if e.axon_id == axon.id]
                assert sequences == list(range(1, last + 1)), axon.name
    finally:
        server.kill()


async def test_the_status_bar_says_where_the_engine_is_and_when_it_is_lost(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home).start()
    app = console_app(home)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(lambda: app._session is not None, what="attaching")
            from axons_tui.widgets.status_bar import StatusBar

            def bar() -> str:
                return str(app.screen.query_one(StatusBar).render())

            await until(lambda: "live · attached" in bar(), what="the live status")
            server.kill()
            await until(lambda: "disconnected, retrying" in bar(), what="the lost status")
            await pilot.pause()
    finally:
        server.kill()
