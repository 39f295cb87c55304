"""Subscriptions never lose or repeat: whenever a subscriber starts and from whatever sequence,
it sees every later event exactly once, in order, across the switch from the file to live.
A subscriber that stops reading is cut loose and catches up from the file; publishers never
wait for it."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from contextlib import aclosing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from tests.helpers import message, within

# When a subscriber starts: before any publish, or once this many publishes are acknowledged.
BEFORE = -1


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int, int]], list[int]]:
    counts = draw(st.lists(st.integers(0, 120), min_size=1, max_size=8))
    total = sum(counts)
    subscribers = draw(
        st.lists(
            st.tuples(
                st.integers(0, total),  # after_sequence
                st.one_of(st.just(BEFORE), st.integers(0, total)),  # when it starts
                st.integers(0, 30),  # and how many loop turns later, so starts fall anywhere
            ),
            min_size=1,
            max_size=5,
        )
    )
    batch_sizes = draw(st.lists(st.integers(1, 4), min_size=len(counts), max_size=len(counts)))
    return counts, subscribers, batch_sizes


async def run_scenario(
    home: Path, counts: list[int], subscribers: list[tuple[int, int, int]], batch_sizes: list[int]
) -> None:
    total = sum(counts)
    final = total + 1  # published once everyone is done: the end marker every reader waits for
    async with Engine(home) as engine:
        axon_id = (await engine.create_axon("prop")).id
        acknowledged = 0
        reached: dict[int, asyncio.Event] = {n: asyncio.Event() for n in range(total + 1)}
        reached[0].set()

        async def publisher(index: int, count: int, batch_size: int) -> None:
            nonlocal acknowledged
            left = count
            while left:
                n = min(batch_size, left)
                if n == 1:
                    await engine.publish(axon_id, message(f"p{index}"))
                else:
                    await engine.publish_batch(axon_id, [message(f"p{index}") for _ in range(n)])
                left -= n
                for _ in range(n):
                    acknowledged += 1
                    reached[acknowledged].set()

        async def subscriber(after: int, start: int, turns: int) -> list[int]:
            if start != BEFORE:
                await reached[start].wait()
            for _ in range(turns):
                await asyncio.sleep(0)
            seen = []
            async with aclosing(engine.subscribe(axon_id, after_sequence=after)) as stream:
                async for event in stream:
                    seen.append(event.sequence)
                    if event.sequence != after + len(seen) or event.sequence >= final:
                        break  # a gap or a repeat fails at once; the end marker ends it
            return seen

        readers = [asyncio.create_task(subscriber(*s)) for s in subscribers]
        await asyncio.sleep(0)  # let the "before" subscribers attach first
        await asyncio.gather(
            *(publisher(i, c, b) for i, (c, b) in enumerate(zip(counts, batch_sizes, strict=True)))
        )
        assert acknowledged == total
        marker = await engine.publish(axon_id, message("end"))
        assert marker.sequence == final

        results = await within(asyncio.gather(*readers), 20)
        for (after, _start, _turns), seen in zip(subscribers, results, strict=True):
            assert seen == list(range(after + 1, final + 1)), (after, seen[:20])


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_every_subscriber_sees_each_later_event_once_in_order(
    scenario: tuple[list[int], list[tuple[int, int, int]], list[int]],
) -> None:
    counts, subscribers, batch_sizes = scenario
    home = Path(tempfile.mkdtemp(prefix="axons-prop-"))
    try:
        asyncio.run(run_scenario(home, counts, subscribers, batch_sizes))
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def test_a_subscriber_that_stops_reading_catches_up_from_the_file(tmp_path: Path) -> None:
    async with Engine(tmp_path / "home", subscriber_buffer=5) as engine:
        axon_id = (await engine.create_axon("slow reader")).id
        async with aclosing(engine.subscribe(axon_id)) as stream:
            first = asyncio.ensure_future(anext(stream))
            await engine.publish(axon_id, message("one"))
            assert (await within(first)).sequence == 1
            # Published only after the reader had event 1: it reaches the reader past the
            # point where it attached to the live bus.
            await engine.publish(axon_id, message("two"))
            assert (await within(anext(stream))).sequence == 2
            assert engine.bus.subscriber_count(axon_id) == 1

            # The reader now reads nothing while 2,000 events are published. Every publish
            # completes: nobody waits for the reader.
            results = await within(
                asyncio.gather(*(engine.publish(axon_id, message(f"m{i}")) for i in range(2000)))
            )
            assert sorted(r.sequence for r in results) == list(range(3, 2003))
            assert engine.bus.subscriber_count(axon_id) == 0  # cut loose, not waited for

            seen = []
            while len(seen) < 2000:
                seen.append((await within(anext(stream))).sequence)
            assert seen == list(range(3, 2003))

            # ...and it is live again afterwards.
            await engine.publish(axon_id, message("after"))
            assert (await within(anext(stream))).sequence == 2003


async def test_subscribing_from_the_middle_of_a_long_log(engine: Engine, axon_id: str) -> None:
    await engine.publish_batch(axon_id, [message(f"m{i}") for i in range(2500)])
    async with aclosing(engine.subscribe(axon_id, after_sequence=1234)) as stream:
        seen = []
        while len(seen) < 2500 - 1234:
            seen.append((await within(anext(stream))).sequence)
        assert seen == list(range(1235, 2501))
        live = asyncio.ensure_future(anext(stream))
        await engine.publish(axon_id, message("live"))
        assert (await within(live)).sequence == 2501
