"""Group commit across Axons (engine/durability.py): a lone busy Axon syncs its own WAL, many
busy Axons share rounds of syncs, and a sync that fails is an error for its writes and stops
that Axon taking more, never a crash and never an acknowledgement."""

from __future__ import annotations

import asyncio
import os

import pytest

from engine import Engine
from engine.errors import AxonError
from tests.helpers import message, within


async def test_a_lone_axon_syncs_its_own_wal(engine: Engine, axon_id: str) -> None:
    durability = engine._durability
    assert durability is not None
    for i in range(20):
        await engine.publish(axon_id, message(f"m{i}"))
    assert durability.rounds == 0  # one transaction in flight at a time: synced inline


async def test_many_axons_share_rounds_of_syncs(engine: Engine) -> None:
    durability = engine._durability
    assert durability is not None
    ids = [(await engine.create_axon(f"a{i}")).id for i in range(50)]

    async def publisher(axon_id: str) -> list[int]:
        return [(await engine.publish(axon_id, message("x"))).sequence for _ in range(5)]

    results = await within(asyncio.gather(*(publisher(a) for a in ids for _ in range(2))))
    assert durability.rounds > 0
    assert durability.flushes > durability.rounds  # a round flushed several WALs at once
    for axon_id in ids:
        assert await engine.last_sequence(axon_id) == 10
        assert (await engine.verify(axon_id)).ok
    assert sorted(s for r in results for s in r) == sorted(list(range(1, 11)) * 50)


async def test_a_failed_sync_fails_the_write_and_stops_the_axon(engine: Engine) -> None:
    broken = (await engine.create_axon("broken")).id
    healthy = (await engine.create_axon("healthy")).id
    await engine.publish(broken, message("before"))
    os.unlink(engine.path_of(broken).with_name(f"{broken}.db-wal"))  # the WAL is gone

    with pytest.raises(AxonError) as failed:
        await engine.publish(broken, message("lost?"))
    assert failed.value.code == "storage_error"
    assert "may or may not have been kept" in str(failed.value)

    with pytest.raises(AxonError) as refused:
        await engine.publish(broken, message("after"))
    assert refused.value.code == "storage_error"
    assert "restarts" in str(refused.value)

    assert (await engine.publish(healthy, message("fine"))).sequence == 1
