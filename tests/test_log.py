"""The event log: gapless sequences, durability across restarts, idempotency keys, paging,
soft delete, the Axon list, and the bounded set of open Axon files."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest

from engine import AxonError, Draft, Engine, PublishResult
from tests.helpers import message, within


async def all_events(engine: Engine, axon_id: str) -> list:
    events, after = [], 0
    while page := await engine.read_events(axon_id, after=after, limit=1000):
        events.extend(page)
        after = page[-1].sequence
    return events


# -- sequences and durability -------------------------------------------------------------


async def test_sequences_start_at_one_and_have_no_gaps(engine: Engine, axon_id: str) -> None:
    singles = await asyncio.gather(*(engine.publish(axon_id, message(f"m{i}")) for i in range(40)))
    batch = await engine.publish_batch(axon_id, [message(f"b{i}") for i in range(10)])
    sequential = [await engine.publish(axon_id, message(f"s{i}")) for i in range(5)]

    acknowledged = [r.sequence for r in (*singles, *batch, *sequential)]
    assert sorted(acknowledged) == list(range(1, 56))
    assert [r.sequence for r in batch] == list(range(batch[0].sequence, batch[0].sequence + 10))
    events = await all_events(engine, axon_id)
    assert [e.sequence for e in events] == list(range(1, 56))
    assert await engine.last_sequence(axon_id) == 55


async def test_published_fields_come_back_as_sent(engine: Engine, axon_id: str) -> None:
    draft = Draft("push", '{"ref": "main", "n": [1, 2.5, null]}', "github", "EXTERNAL_EVENT")
    result = await engine.publish(axon_id, draft)
    (event,) = await engine.read_events(axon_id)
    assert (event.sequence, event.timestamp_ms) == (result.sequence, result.timestamp_ms)
    assert event.axon_id == axon_id
    assert (event.event_type, event.source, event.origin) == ("push", "github", "EXTERNAL_EVENT")
    assert event.payload == draft.payload
    assert event.author == engine.local_user
    assert len(event.hash) == 64 and int(event.hash, 16) >= 0
    assert event.to_dict()["sequence"] == 1


async def test_every_event_survives_a_restart_and_the_chain_verifies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Engine(home) as engine:
        axon_id = (await engine.create_axon("durable")).id
        await asyncio.gather(*(engine.publish(axon_id, message(f"m{i}")) for i in range(100)))
        await engine.publish_batch(axon_id, [message(f"b{i}") for i in range(20)])
        before = [e.to_dict() for e in await all_events(engine, axon_id)]
    assert len(before) == 120

    async with Engine(home) as engine:
        after = [e.to_dict() for e in await all_events(engine, axon_id)]
        report = await engine.verify(axon_id)
        assert after == before
        assert report.ok and report.checked == 120 and report.first_bad_sequence is None
        next_one = await engine.publish(axon_id, message("after restart"))
        assert next_one.sequence == 121
        assert (await engine.verify(axon_id)).ok


async def test_timestamps_never_go_backwards(engine: Engine, axon_id: str) -> None:
    for _ in range(5):
        await asyncio.gather(*(engine.publish(axon_id, message("t")) for _ in range(30)))
    stamps = [e.timestamp_ms for e in await all_events(engine, axon_id)]
    assert len(stamps) == 150
    assert stamps == sorted(stamps)


async def test_a_second_engine_on_the_same_home_is_refused(engine: Engine) -> None:
    with pytest.raises(AxonError) as refused:
        await Engine(engine.home).start()
    assert refused.value.code == "home_locked"


# -- idempotency ---------------------------------------------------------------------------


async def test_the_same_idempotency_key_yields_one_event(engine: Engine, axon_id: str) -> None:
    first = await engine.publish(axon_id, message("hello", key="req-1"))
    await engine.publish(axon_id, message("other"))
    second = await engine.publish(axon_id, message("hello again", key="req-1"))

    assert second == first
    events = await all_events(engine, axon_id)
    assert [e.sequence for e in events] == [1, 2]
    assert orjson.loads(events[0].payload) == {"text": "hello"}
    assert events[0].idempotency_key == "req-1"


async def test_a_key_repeated_inside_one_batch_yields_one_event(
    engine: Engine, axon_id: str
) -> None:
    results = await engine.publish_batch(
        axon_id,
        [message("a", key="k"), message("b"), message("a", key="k"), message("c", key="k2")],
    )
    assert results[0] == results[2]
    assert [r.sequence for r in results] == [1, 2, 1, 3]
    assert [e.sequence for e in await all_events(engine, axon_id)] == [1, 2, 3]


async def test_concurrent_publishes_with_one_key_yield_one_event(
    engine: Engine, axon_id: str
) -> None:
    await engine.publish(axon_id, message("warm up"))
    results = await asyncio.gather(
        *(engine.publish(axon_id, message("x", key="same")) for _ in range(25))
    )
    assert len(set(results)) == 1
    assert len(await all_events(engine, axon_id)) == 2


async def test_idempotency_keys_are_remembered_across_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Engine(home) as engine:
        axon_id = (await engine.create_axon()).id
        first = await engine.publish(axon_id, message("once", key="retry-me"))
    async with Engine(home) as engine:
        again = await engine.publish(axon_id, message("once", key="retry-me"))
        assert again == first
        assert len(await all_events(engine, axon_id)) == 1


async def test_keys_are_per_axon(engine: Engine) -> None:
    a = (await engine.create_axon("a")).id
    b = (await engine.create_axon("b")).id
    ra = await engine.publish(a, message("x", key="shared"))
    rb = await engine.publish(b, message("x", key="shared"))
    assert ra.sequence == rb.sequence == 1
    assert len(await all_events(engine, a)) == len(await all_events(engine, b)) == 1


# -- paging --------------------------------------------------------------------------------


async def test_events_page_newest_first(engine: Engine, axon_id: str) -> None:
    for i in range(25):
        await engine.publish(axon_id, message(f"m{i}"))

    page = await engine.list_events(axon_id, limit=10, include_total_count=True)
    assert [e["sequence"] for e in page.events] == list(range(25, 15, -1))
    assert page.has_more and page.total_count == 25

    page = await engine.list_events(axon_id, limit=10, starting_after=16)
    assert [e["sequence"] for e in page.events] == list(range(15, 5, -1))
    assert page.has_more and page.total_count is None

    page = await engine.list_events(axon_id, limit=10, starting_after=6)
    assert [e["sequence"] for e in page.events] == [5, 4, 3, 2, 1]
    assert not page.has_more

    exact = await engine.list_events(axon_id, limit=25)
    assert len(exact.events) == 25 and not exact.has_more
    assert (await engine.list_events(axon_id, starting_after=1)).events == []


async def test_events_read_oldest_first(engine: Engine, axon_id: str) -> None:
    await engine.publish_batch(axon_id, [message(f"m{i}") for i in range(25)])
    assert [e.sequence for e in await engine.read_events(axon_id, after=0, limit=10)] == list(
        range(1, 11)
    )
    assert [e.sequence for e in await engine.read_events(axon_id, after=20, limit=10)] == [
        21,
        22,
        23,
        24,
        25,
    ]
    assert await engine.read_events(axon_id, after=25) == []


async def test_an_empty_axon_has_an_empty_first_page(engine: Engine, axon_id: str) -> None:
    page = await engine.list_events(axon_id, include_total_count=True)
    assert page.events == [] and not page.has_more and page.total_count == 0
    assert await engine.read_events(axon_id) == []
    assert (await engine.verify(axon_id)).ok


# -- soft delete ---------------------------------------------------------------------------


async def test_a_deleted_axon_stays_readable_but_refuses_publishes(engine: Engine) -> None:
    view = await engine.create_axon("doomed", {"team": "x"})
    keep = await engine.create_axon("kept")
    await engine.publish(view.id, message("before"))
    await engine.query(view.id, "CREATE TABLE t(a)", write=True)

    deleted = await engine.delete_axon(view.id)
    assert deleted.deleted_at_ms is not None and deleted.id == view.id

    with pytest.raises(AxonError) as refused:
        await engine.publish(view.id, message("after"))
    assert refused.value.code == "axon_deleted" and refused.value.status == 409

    assert [e.sequence for e in await engine.read_events(view.id)] == [1]
    assert (await engine.list_events(view.id)).events[0]["sequence"] == 1
    assert (await engine.query(view.id, "SELECT count(*) FROM t")).rows == [[0]]
    assert (await engine.get_axon(view.id)).deleted_at_ms == deleted.deleted_at_ms
    assert (await engine.verify(view.id)).ok

    visible = [a.id for a in (await engine.list_axons()).axons]
    assert visible == [keep.id]
    everything = [a.id for a in (await engine.list_axons(include_deleted=True)).axons]
    assert set(everything) == {view.id, keep.id}


async def test_deletion_is_remembered_across_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Engine(home) as engine:
        axon_id = (await engine.create_axon("gone")).id
        await engine.publish(axon_id, message("x"))
        await engine.delete_axon(axon_id)
    async with Engine(home) as engine:
        with pytest.raises(AxonError) as refused:
            await engine.publish(axon_id, message("y"))
        assert refused.value.code == "axon_deleted"
        assert len(await engine.read_events(axon_id)) == 1


async def test_metadata_can_be_replaced(engine: Engine) -> None:
    view = await engine.create_axon("m", {"a": "1"})
    updated = await engine.update_axon(view.id, {"b": "2"})
    assert updated.metadata == {"b": "2"}
    assert (await engine.get_axon(view.id)).metadata == {"b": "2"}
    assert (await engine.get_axon("m")).id == view.id  # a unique name works too


# -- the Axon list -------------------------------------------------------------------------


async def test_axons_list_newest_first_in_pages(engine: Engine) -> None:
    created = [await engine.create_axon(f"axon-{i}", {"n": str(i)}) for i in range(7)]
    newest_first = [v.id for v in reversed(created)]

    seen, cursor = [], None
    while True:
        page = await engine.list_axons(limit=3, starting_after=cursor, include_total_count=True)
        assert page.total_count == 7
        seen.extend(a.id for a in page.axons)
        if not page.has_more:
            break
        cursor = page.axons[-1].id
    assert seen == newest_first
    assert (await engine.list_axons()).total_count is None


async def test_axons_list_filters(engine: Engine) -> None:
    alpha1 = await engine.create_axon("alpha-1", {"owner": "ops"})
    alpha2 = await engine.create_axon("alpha-2")
    await engine.create_axon("beta", {"owner": "dev"})
    odd = await engine.create_axon("100%_sure")
    await engine.create_axon(None)

    by_prefix = await engine.list_axons(name="alpha", include_total_count=True)
    assert [a.id for a in by_prefix.axons] == [alpha2.id, alpha1.id] and by_prefix.total_count == 2

    assert [a.id for a in (await engine.list_axons(search="ops")).axons] == [alpha1.id]
    assert [a.id for a in (await engine.list_axons(search="%_")).axons] == [odd.id]
    assert [a.id for a in (await engine.list_axons(search=alpha2.id[-8:])).axons] == [alpha2.id]

    chosen = await engine.list_axons(ids=[alpha1.id, odd.id], include_total_count=True)
    assert {a.id for a in chosen.axons} == {alpha1.id, odd.id} and chosen.total_count == 2

    page = await engine.list_axons(name="alpha", limit=1)
    assert [a.id for a in page.axons] == [alpha2.id] and page.has_more
    rest = await engine.list_axons(name="alpha", limit=1, starting_after=alpha2.id)
    assert [a.id for a in rest.axons] == [alpha1.id] and not rest.has_more

    everything = await engine.list_axons(limit=5000, include_total_count=True)
    assert everything.total_count == 5 and len(everything.axons) == 5


# -- the bounded set of open files -----------------------------------------------------------


async def test_fifty_axons_publish_through_eight_open_files(tmp_path: Path) -> None:
    limit = 8
    async with Engine(tmp_path / "home", max_open_axons=limit) as engine:
        ids = [(await engine.create_axon(f"a{i}")).id for i in range(50)]

        # Everyone at once: every publish succeeds, whatever has to be closed meanwhile.
        async def publish_some(axon_id: str, n: int) -> list[PublishResult]:
            return [await engine.publish(axon_id, message(f"{axon_id}-{i}")) for i in range(n)]

        results = await asyncio.gather(*(publish_some(a, 4) for a in ids))
        assert all([r.sequence for r in rs] == [1, 2, 3, 4] for rs in results)

        # A bounded number in use at a time: files open never exceed the limit plus those.
        in_use = 4
        gate = asyncio.Semaphore(in_use)
        most_open = 0
        rng = random.Random(7)
        order = [a for a in ids for _ in range(3)]
        rng.shuffle(order)

        async def publish_one(axon_id: str) -> None:
            nonlocal most_open
            async with gate:
                await engine.publish(axon_id, message("again"))
                most_open = max(most_open, engine.open_axons)

        await asyncio.gather(*(publish_one(a) for a in order))
        assert most_open <= limit + in_use

        # One at a time: the limit holds exactly.
        for axon_id in ids:
            await engine.publish(axon_id, message("last"))
            assert engine.open_axons <= limit

        for axon_id in ids:
            events = await all_events(engine, axon_id)
            assert [e.sequence for e in events] == list(range(1, 9))
            assert (await engine.verify(axon_id)).ok
        assert engine.open_axons <= limit + 1  # the reads above each hold one file at most


async def test_a_subscribed_axon_is_not_closed_under_its_reader(tmp_path: Path) -> None:
    async with Engine(tmp_path / "home", max_open_axons=2) as engine:
        watched = (await engine.create_axon("watched")).id
        stream = engine.subscribe(watched)
        first = asyncio.ensure_future(anext(stream))
        await engine.publish(watched, message("one"))
        assert (await within(first)).sequence == 1

        others = [(await engine.create_axon(f"o{i}")).id for i in range(6)]
        for other in others:
            await engine.publish(other, message("busy elsewhere"))

        await engine.publish(watched, message("two"))
        assert (await within(anext(stream))).sequence == 2
        await stream.aclose()
