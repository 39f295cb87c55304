"""Group commit across Axons (engine/durability.py): a lone busy Axon syncs its own WAL, many
busy Axons share flushes (syncfs, or fdatasync lanes where syncfs cannot be trusted), small
transactions commit on the event loop and never wait there for a lock or a checkpoint, one
Axon's failure stays its own, and a flush that fails is an error for its writes and stops
those Axons taking more, never a crash and never an acknowledgement."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import apsw
import pytest

from engine import Engine
from engine.durability import GroupCommit, why_no_syncfs
from engine.engine import GC_YOUNG_THRESHOLD
from engine.errors import AxonError, Unavailable
from engine.log import CHECKPOINT_PAGES, SMALL_BYTES, AxonFile, WriteContext
from engine.models import Event
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


@asynccontextmanager
async def axon_files(
    directory: Path, count: int, *, syncfs: bool
) -> AsyncIterator[tuple[GroupCommit, list[AxonFile], list[Event]]]:
    """`count` Axon files on one `GroupCommit` of the given flush, and the events it let out."""
    delivered: list[Event] = []
    with ThreadPoolExecutor(4, thread_name_prefix="axons-worker") as executor:
        group = GroupCommit(syncfs=syncfs)
        files = [
            AxonFile(
                f"ax{i}",
                directory / f"ax{i}.db",
                executor,
                lambda _axon, events: delivered.extend(events),
                group,
                create=True,
            )
            for i in range(count)
        ]
        try:
            yield group, files, delivered
        finally:
            for f in files:
                await f.close()
            group.close()


def no_delivery(_axon_id: str, _events: list[Event]) -> None:
    pass


async def publish_everywhere(files: list[AxonFile], publishers: int, each: int) -> None:
    async def publisher(f: AxonFile) -> None:
        for _ in range(each):
            await f.append([message("x")])

    await within(asyncio.gather(*(publisher(f) for f in files for _ in range(publishers))))


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fdatasync-lanes"])
async def test_batches_flush_every_axon_once_with_either_flush(
    tmp_path: Path, syncfs: bool
) -> None:
    if syncfs and (why := why_no_syncfs()) is not None:
        pytest.skip(f"{why}; the lanes case covers the fallback")
    async with axon_files(tmp_path, 40, syncfs=syncfs) as (group, files, delivered):
        assert group.flush_method == ("syncfs" if syncfs else "fdatasync lanes")
        await publish_everywhere(files, publishers=3, each=5)
        assert group.rounds > 0 and group.flushes > group.rounds
        assert group.batches <= group.flushes  # a batch held several Axons' transactions
        for f in files:
            assert f.last_sequence == 15
        assert len(delivered) == 40 * 15
    for i in range(40):  # what was answered is in the file, read back by plain SQLite
        conn = apsw.Connection(str(tmp_path / f"ax{i}.db"))
        (count,) = conn.execute("SELECT count(*) FROM axon_events").fetchall()[0]
        assert count == 15
        conn.close()


async def test_one_axons_failed_commit_is_its_own(tmp_path: Path) -> None:
    async with axon_files(tmp_path, 8, syncfs=False) as (group, files, _):
        locked, others = files[0], files[1:]
        locked.busy_timeout_ms = 50  # the other process holds the lock throughout
        locked._writer.set_busy_timeout(50)
        holder = apsw.Connection(str(locked.path))
        holder.execute("BEGIN IMMEDIATE")
        try:
            outcomes = await within(
                asyncio.gather(
                    *(f.append([message("x")]) for f in files),
                    return_exceptions=True,
                )
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert isinstance(outcomes[0], Unavailable) and outcomes[0].code == "busy"
        assert [r[0].sequence for r in outcomes[1:]] == [1] * len(others)  # type: ignore[index]
        assert group.rounds == 1  # the seven that committed shared one flush
        # Not a flush failure: the Axon takes writes again once the lock is gone.
        assert (await locked.append([message("y")]))[0].sequence == 1


async def test_a_failed_shared_flush_fails_every_write_in_it(tmp_path: Path) -> None:
    if (why := why_no_syncfs()) is not None:
        pytest.skip(why)
    async with axon_files(tmp_path, 4, syncfs=True) as (group, files, delivered):
        await publish_everywhere(files, publishers=2, each=1)
        assert group.rounds > 0
        # The file system's descriptor goes bad under the flusher: the next syncfs fails
        # for real (EBADF), and nobody in that batch may be told their write is durable.
        (fd,) = group._directories.values()
        os.close(fd)
        before = len(delivered)
        outcomes = await within(
            asyncio.gather(*(f.append([message("z")]) for f in files), return_exceptions=True)
        )
        assert all(isinstance(o, AxonError) and o.code == "storage_error" for o in outcomes)
        assert len(delivered) == before  # nothing undurable was delivered
        for f in files:
            with pytest.raises(AxonError, match="restarts"):
                f.append([message("after")])
        # The failed write-back may have been of pages committed after that flush began,
        # which a later syncfs would not report: no later shared flush there succeeds.
        with ThreadPoolExecutor(2) as executor:
            later = [
                AxonFile(
                    f"late{i}", tmp_path / f"late{i}.db", executor, no_delivery, group, create=True
                )
                for i in range(2)
            ]
            late = await within(
                asyncio.gather(*(f.append([message("y")]) for f in later), return_exceptions=True)
            )
            assert all(isinstance(o, AxonError) and o.code == "storage_error" for o in late)
            for f in later:
                await f.close()
        group._directories.clear()  # closed above; nothing left for close() to close


async def test_small_transactions_commit_on_the_event_loop_and_large_ones_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few events commit where they were staged (no GIL hand-off per SQLite call); a big
    batch goes to the committer thread, so the event loop never holds a long write."""
    threads: list[tuple[int, str]] = []
    write = AxonFile._write

    def recording(self: AxonFile, ctx: WriteContext, *, wait: bool) -> bool:
        threads.append((len(ctx.rows), threading.current_thread().name))
        return write(self, ctx, wait=wait)

    monkeypatch.setattr(AxonFile, "_write", recording)
    async with axon_files(tmp_path, 2, syncfs=False) as (_, files, delivered):
        await within(asyncio.gather(*(f.append([message("small")]) for f in files)))
        await within(files[0].append([message(f"big {i}") for i in range(100)]))
        big = [message("x" * (SMALL_BYTES // 2)) for _ in range(3)]  # few events, much payload
        await within(files[1].append(big))
    loop_thread = threading.current_thread().name
    assert threads[:2] == [(1, loop_thread), (1, loop_thread)]
    assert threads[2][0] == 100 and threads[2][1].startswith("axons-commit")
    assert threads[3][0] == 3 and threads[3][1].startswith("axons-commit")
    assert len(delivered) == 2 + 100 + 3


async def test_a_reopened_axons_first_commit_starts_its_wal_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleanly closed Axon has no WAL; the first write creates one, syncing its header and
    the directory, so that commit goes to the committer thread, and later ones to the loop."""
    async with axon_files(tmp_path, 1, syncfs=False) as (_, (f,), _delivered):
        await within(f.append([message("before")]))
    assert not Path(f"{tmp_path / 'ax0.db'}-wal").exists()  # closed: checkpointed, removed
    threads: list[str] = []
    write = AxonFile._write

    def recording(self: AxonFile, ctx: WriteContext, *, wait: bool) -> bool:
        threads.append(threading.current_thread().name)
        return write(self, ctx, wait=wait)

    monkeypatch.setattr(AxonFile, "_write", recording)
    with ThreadPoolExecutor(2) as executor:
        group = GroupCommit(syncfs=False)
        reopened = AxonFile("ax0", tmp_path / "ax0.db", executor, no_delivery, group)
        try:
            first = await within(reopened.append([message("first")]))
            second = await within(reopened.append([message("second")]))
        finally:
            await reopened.close()
            group.close()
    assert [first[0].sequence, second[0].sequence] == [2, 3]
    assert threads[0].startswith("axons-commit")
    assert threads[1] == threading.current_thread().name


async def test_a_file_another_process_locks_waits_in_a_thread_while_others_go_on(
    tmp_path: Path,
) -> None:
    """The event loop never waits for SQLite's lock: the locked Axon's commit moves to the
    committer thread, which waits for it, and every other Axon is answered meanwhile."""
    async with axon_files(tmp_path, 3, syncfs=False) as (_, files, _delivered):
        locked, others = files[0], files[1:]
        holder = apsw.Connection(str(locked.path))
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, lambda: holder.execute("ROLLBACK"))
        waiting = asyncio.ensure_future(locked.append([message("waits")]))
        release.start()
        try:
            answered = await within(
                asyncio.gather(*(f.append([message("x")]) for f in others for _ in range(5)))
            )
            assert not waiting.done()  # the others were answered while it waited for the lock
            assert len(answered) == 10
            assert (await within(waiting))[0].sequence == 1
        finally:
            release.join()
            holder.close()


async def test_checkpoints_run_in_a_worker_and_keep_the_wal_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's auto-checkpoint (which syncs) is off for the writer; a WAL grown past
    CHECKPOINT_PAGES gets a checkpoint queued in a worker thread, then restarts."""
    checkpoints: list[str] = []
    checkpoint = AxonFile._checkpoint

    def recording(self: AxonFile, ctx: WriteContext) -> None:
        checkpoints.append(threading.current_thread().name)
        checkpoint(self, ctx)

    monkeypatch.setattr(AxonFile, "_checkpoint", recording)
    async with axon_files(tmp_path, 1, syncfs=False) as (_, (f,), delivered):
        count = CHECKPOINT_PAGES * 5 // 2
        for i in range(count):  # one transaction, so at least one WAL frame, each
            await f.append([message(f"m{i}")])
        wal_bytes = os.path.getsize(f"{f.path}-wal")
        db_bytes = os.path.getsize(f.path)
        assert len(delivered) == count
    assert len(checkpoints) >= 2
    assert all(name.startswith("axons-worker") for name in checkpoints)
    page = 4096
    assert wal_bytes < (CHECKPOINT_PAGES + 100) * (page + 24)  # restarted, not grown
    assert db_bytes > CHECKPOINT_PAGES * 50  # the checkpointed events are in the database
    conn = apsw.Connection(str(tmp_path / "ax0.db"))
    assert conn.execute("SELECT count(*) FROM axon_events").fetchall() == [(count,)]
    conn.close()


def test_the_engine_raises_the_young_collection_threshold_and_never_lowers_it(
    tmp_path: Path,
) -> None:
    """Above the objects thousands of publishes hold in flight (engine.engine,
    `_collect_garbage_less_often`), and a higher one set by the application stays."""

    async def start() -> None:
        async with Engine(tmp_path / "home"):
            pass

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])  # CPython's default
        asyncio.run(start())
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        gc.set_threshold(GC_YOUNG_THRESHOLD * 2, before[1], before[2])
        asyncio.run(start())
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)
