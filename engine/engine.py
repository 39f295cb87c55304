"""The Engine: one object over a data home that every client calls (console, CLI, HTTP API,
broker). It owns the catalog, a bounded set of open Axon files, the live bus and the
thread pool that does the SQLite work off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import getpass
import math
import os
import resource
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from engine import records, state
from engine.budget import Budget, StoreLimits
from engine.bus import DEFAULT_BUFFER, Bus
from engine.catalog import Catalog, check_metadata, new_axon_id
from engine.durability import GroupCommit
from engine.errors import Conflict, ErrorCode, InvalidInput, Unavailable
from engine.home import Home
from engine.log import DEFAULT_MAX_PAYLOAD, AxonFile, WriteContext, check_draft, check_label
from engine.models import (
    AxonPage,
    AxonView,
    Draft,
    Event,
    EventPage,
    PublishResult,
    QueryResult,
    RowChange,
    Statement,
    VerifyReport,
)
from engine.policy import OperatorConfig, load_config
from engine.supervisor import Supervisor
from engine.token_admin import TokenAdmin

T = TypeVar("T")
CATCH_UP_PAGE = 1000
MAX_EVENTS_PAGE = 5000
ANCHOR_INTERVAL_S = 1.0
EXPORT_CHUNK_BYTES = 1 << 20
GC_YOUNG_THRESHOLD = 50_000  # see _collect_garbage_less_often


class Engine:
    """The in-process API. Use as `async with Engine(home) as engine: ...`."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        max_open_axons: int = 1024,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        subscriber_buffer: int = DEFAULT_BUFFER,
        threads: int = 8,
        agent_runtime: str = "auto",
        limits: StoreLimits | None = None,
    ) -> None:
        self.paths = Home.at(home)
        self.home = self.paths.root
        self.max_open_axons = max_open_axons
        self.max_payload = max_payload
        self.bus = Bus(subscriber_buffer)
        self.local_user = _local_user()
        self._threads = threads
        self.limits = limits or StoreLimits.from_env()
        self._executor: ThreadPoolExecutor | None = None
        self._durability: GroupCommit | None = None
        self._sql_executor: ThreadPoolExecutor | None = None
        # Writing SQL holds an engine thread: never more than half of them.
        self._sql_writes = asyncio.Semaphore(max(1, min(self.limits.sql_threads, threads // 2)))
        self._catalog: Catalog | None = None
        self._files: OrderedDict[str, AxonFile] = OrderedDict()
        self._opening: dict[str, asyncio.Future[AxonFile]] = {}
        self._deleted: set[str] = set()
        self._tips: dict[str, tuple[int, str]] = {}  # committed, not yet anchored
        self._anchoring: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self._closing = False
        self.config = OperatorConfig()  # HOME/config.toml, read by `start`
        self.agents = Supervisor(self, runtime=agent_runtime)
        self.tokens = TokenAdmin(self.paths.catalog, self.get_axon)

    # -- lifetime ---------------------------------------------------------------------

    async def start(self) -> Engine:
        make_home_private(self.paths)
        self.config = load_config(self.paths.config)
        self._lock_fd = _lock_home(self.paths)
        _allow_open_files(self.max_open_axons)
        _collect_garbage_less_often()
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="axons-sqlite")
        self._durability = GroupCommit()
        self._sql_executor = ThreadPoolExecutor(
            self.limits.sql_threads, thread_name_prefix="axons-user-sql"
        )
        self._catalog = await self._run(Catalog, self.paths.catalog)
        await self.tokens.open()
        self._anchoring = asyncio.get_running_loop().create_task(self._anchor_tips())
        await self.agents.start()
        return self

    async def close(self) -> None:
        """Let queued writes commit, then close every file. Acknowledged events are on disk."""
        await self.agents.close()  # agents stay as they are; the next engine re-attaches
        self._closing = True
        self.bus.close()
        await asyncio.sleep(0)  # let subscribers see the end before their files close
        for f in list(self._files.values()):
            await f.close()
        self._files.clear()
        if self._anchoring is not None:
            self._anchoring.cancel()
            self._anchoring = None
        if self._catalog is not None:
            await self._flush_anchors()
            await self._run(self._catalog.close)
            self._catalog = None
        self.tokens.close()
        for pool in (self._sql_executor, self._executor):
            if pool is not None:
                pool.shutdown(wait=True)
        self._executor = self._sql_executor = None
        if self._durability is not None:
            self._durability.close()
            self._durability = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- Axons ------------------------------------------------------------------------

    async def create_axon(
        self, name: str | None = None, metadata: dict[str, str] | None = None
    ) -> AxonView:
        """A new Axon; a name a live Axon has is refused (409 `name_taken`)."""
        return await self._run(self.catalog.create, name, metadata or {})

    async def get_axon(self, ref: str) -> AxonView:
        """By id, or by name (the newest live Axon with that name)."""
        return await self._run(self.catalog.get, ref)

    async def list_axons(
        self,
        *,
        limit: int = 20,
        starting_after: str | None = None,
        name: str | None = None,
        search: str | None = None,
        ids: Sequence[str] | None = None,
        include_total_count: bool = False,
        include_deleted: bool = False,
    ) -> AxonPage:
        """Newest first. `name` is a prefix; `search` matches id, name or metadata."""
        return await self._run(
            lambda: self.catalog.list_axons(
                limit=limit,
                starting_after=starting_after,
                name=name,
                search=search,
                ids=list(ids) if ids else None,
                include_total_count=include_total_count,
                include_deleted=include_deleted,
            )
        )

    async def update_axon(self, ref: str, metadata: dict[str, str]) -> AxonView:
        view = await self.get_axon(ref)
        return await self._run(self.catalog.update_metadata, view.id, metadata)

    async def delete_axon(self, ref: str) -> AxonView:
        """Soft delete: the file stays (history, export); publishing is refused."""
        view = await self.get_axon(ref)
        self._deleted.add(view.id)
        return await self._run(self.catalog.mark_deleted, view.id)

    # -- events -----------------------------------------------------------------------

    async def publish(self, axon_id: str, draft: Draft, *, system: bool = False) -> PublishResult:
        """Append one event; returns once it is durable (fsynced)."""
        results = await self._append(axon_id, [self._checked(draft, system)])
        if len(self._files) > self.max_open_axons:  # files busy at their last open may be idle now
            await self._evict()
        return results[0]

    async def publish_batch(
        self, axon_id: str, drafts: Sequence[Draft], *, system: bool = False
    ) -> list[PublishResult]:
        """Append events in one transaction, in order; returns once they are durable."""
        if not drafts:
            raise InvalidInput("a batch needs at least one event", code=ErrorCode.EMPTY_BATCH)
        results = await self._append(axon_id, [self._checked(d, system) for d in drafts])
        if len(self._files) > self.max_open_axons:
            await self._evict()
        return results

    def _checked(self, draft: Draft, system: bool) -> Draft:
        check_draft(draft, max_payload=self.max_payload, system=system)
        if draft.author is None:
            draft.author = self.local_user
        return draft

    def _append(self, axon_id: str, drafts: list[Draft]) -> Awaitable[list[PublishResult]]:
        """Queue checked drafts on the Axon's file. Not a coroutine: a publish to an open
        file (the hot path) awaits the file's future directly."""
        f = self._files.get(axon_id)
        if f is None:
            return self._open_and_append(axon_id, drafts)
        self._files.move_to_end(axon_id)
        self._refuse_deleted(axon_id)
        return f.append(drafts)

    async def _open_and_append(self, axon_id: str, drafts: list[Draft]) -> list[PublishResult]:
        f = await self._open(axon_id)
        self._refuse_deleted(axon_id)
        return await f.append(drafts)

    def _refuse_deleted(self, axon_id: str) -> None:
        if axon_id in self._deleted:
            raise Conflict(
                f"Axon {axon_id} is deleted; it can be read but not written",
                code=ErrorCode.AXON_DELETED,
            )

    async def last_sequence(self, axon_id: str) -> int:
        f = self._files.get(axon_id) or await self._open(axon_id)
        return f.last_sequence

    async def read_events(
        self, axon_id: str, after: int = 0, limit: int = CATCH_UP_PAGE
    ) -> list[Event]:
        """Oldest first: up to `limit` events with sequence > `after`."""
        _check_limit(limit)
        async with self._using(axon_id) as f:
            return await self._run(f.events_after, after, limit, self.limits.max_page_bytes)

    async def list_events(
        self,
        axon_id: str,
        *,
        limit: int = 20,
        starting_after: int | None = None,
        include_total_count: bool = False,
    ) -> EventPage:
        """Newest first (Runloop's `events.list`); `starting_after` is a sequence."""
        _check_limit(limit)
        async with self._using(axon_id) as f:
            events = await self._run(
                f.events_before, starting_after, limit, self.limits.max_page_bytes
            )
            total = f.last_sequence if include_total_count else None
        return EventPage(
            events=[e.to_dict() for e in events],
            has_more=bool(events) and events[-1].sequence > 1,  # the log is gapless from 1
            total_count=total,
        )

    async def subscribe(self, axon_id: str, after_sequence: int = 0) -> AsyncIterator[Event]:
        """Every event with sequence > `after_sequence`, then live ones, forever: no gap, no
        duplicate. A subscriber that falls behind reads from the file until it catches up."""
        if not isinstance(after_sequence, int) or after_sequence < 0:
            raise InvalidInput(
                "after_sequence must be a whole number >= 0", code=ErrorCode.INVALID_SEQUENCE
            )
        async with self._using(axon_id) as f:
            next_seq = after_sequence + 1
            while not self._closing:
                async for e in self._catch_up(f, next_seq):
                    next_seq = e.sequence + 1
                    yield e
                sub = self.bus.attach(axon_id)
                try:
                    # Attached first, then read again: whatever commits from here on is in
                    # the queue, and whatever committed before is in the file.
                    async for e in self._catch_up(f, next_seq):
                        next_seq = e.sequence + 1
                        yield e
                    while (batch := await sub.get()) is not None:
                        if batch[-1].sequence < next_seq:
                            continue
                        if batch[0].sequence > next_seq:
                            break  # cannot happen with an ordered bus; re-read to be safe
                        for e in batch:
                            if e.sequence >= next_seq:
                                next_seq = e.sequence + 1
                                yield e
                    if sub.closed:
                        return  # the bus is closing (the engine stops): so does the stream
                    # else it overflowed: a slow subscriber reads on from the file
                finally:
                    self.bus.detach(sub)

    async def _catch_up(self, f: AxonFile, next_seq: int) -> AsyncIterator[Event]:
        while next_seq <= f.last_sequence and not self._closing:
            page = await self._run(
                f.events_after, next_seq - 1, CATCH_UP_PAGE, self.limits.max_page_bytes
            )
            for e in page:
                yield e
                next_seq = e.sequence + 1
            if not page:  # a short page may just be a full one in bytes: read on
                return

    async def subscribe_all(self, axon_ids: Sequence[str] | None = None) -> AsyncIterator[Event]:
        """Live events of several (or all) Axons from now on, for monitors."""
        wanted = set(axon_ids) if axon_ids else None
        sub = self.bus.attach(None)
        try:
            while (batch := await sub.get()) is not None:
                for e in batch:
                    if wanted is None or e.axon_id in wanted:
                        yield e
        finally:
            self.bus.detach(sub)

    # -- state ------------------------------------------------------------------------

    async def query(
        self,
        axon_id: str,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        write: bool = False,
        at_sequence: int | None = None,
        max_rows: int = state.DEFAULT_MAX_ROWS,
    ) -> QueryResult:
        """One SQL statement. Read-only unless `write`; `at_sequence` queries the state as it
        was right after that event (read-only). It runs within the engine's SQL budget
        (`limits`); cancelling the call interrupts the statement."""
        budget = Budget(self.limits)
        async with self._using(axon_id) as f:
            if at_sequence is not None:
                if write:
                    raise InvalidInput(
                        "a query at a past sequence is read-only", code=ErrorCode.READ_ONLY_HISTORY
                    )
                _check_sequence(at_sequence, f.last_sequence)
                path = str(f.path)
                return await self._run_sql(
                    budget, lambda: _query_at(path, at_sequence, sql, params, max_rows, budget)
                )
            if not write:
                return await self._run_sql(
                    budget,
                    lambda: f.read(
                        lambda c: state.run_statement(
                            c, sql, params, write=False, max_rows=max_rows, budget=budget
                        )
                    ),
                )
            # Unvalidated on purpose: run_statement refuses bad sql and params with clear
            # errors (list(params) would silently bind the letters of a string).
            statement = Statement.model_construct(sql=sql, params=params)  # type: ignore[arg-type]
            try:
                results = await self._write_sql(
                    budget,
                    f,
                    lambda ctx: state.write_statements(
                        ctx.conn, [statement], max_rows=max_rows, budget=budget
                    ),
                )
            except state.BatchFailed as e:
                raise e.cause from None
            return results[0]

    async def batch(
        self,
        axon_id: str,
        statements: Sequence[Any],
        *,
        ack: tuple[str, int] | None = None,
    ) -> list[QueryResult]:
        """Several statements in one transaction: all of them commit, or none (BatchFailed).
        With `ack=(agent, sequence)` the agent's cursor moves in the same transaction, so its
        effects happen exactly once. Cancelling the call interrupts the batch (rolled back)."""
        parsed = state.parse_statements(statements)
        budget = Budget(self.limits)

        def run(ctx: WriteContext) -> list[QueryResult]:
            results = state.write_statements(ctx.conn, parsed, budget=budget)
            if ack is not None:
                _move_cursor(ctx, *ack)
            return results

        async with self._using(axon_id) as f:
            if ack is not None:
                _check_sequence(ack[1], f.last_sequence)
            return await self._write_sql(budget, f, run)

    async def agent_cursor(self, axon_id: str, agent: str) -> int:
        """The last sequence the agent acknowledged (0: none)."""
        async with self._using(axon_id) as f:
            rows = await f.run_read(
                lambda c: c.execute(
                    "SELECT sequence FROM axon_agent_cursors WHERE agent = ?", (agent,)
                ).fetchall()
            )
        return int(rows[0][0]) if rows else 0

    async def ack(self, axon_id: str, agent: str, sequence: int) -> int:
        """Move the agent's durable cursor forward (never back); returns the cursor."""
        async with self._using(axon_id) as f:
            _check_sequence(sequence, f.last_sequence)
            return int(await f.submit(lambda ctx: _move_cursor(ctx, agent, sequence)))

    async def changes(self, axon_id: str, sequence: int) -> list[RowChange]:
        """The state changes made between event `sequence - 1` and the next event."""
        async with self._using(axon_id) as f:
            _check_sequence(sequence, f.last_sequence)
            return await self._run_sql(
                Budget(self.limits), lambda: f.read(lambda c: state.changes_at(c, sequence))
            )

    # -- records ----------------------------------------------------------------------

    async def verify(self, axon_id: str) -> VerifyReport:
        """The hash chain, checked against the tip anchored in the catalog (see
        `records.verify` for what it proves). It reads the whole log, so it runs on the user
        SQL threads: many at once cannot hold up publishes."""
        async with self._using(axon_id) as f:
            await self._flush_anchors()
            anchor = await self._run(self.catalog.anchored_tip, axon_id)
            return await self._run_sql(
                Budget(self.limits), lambda: f.read(lambda c: records.verify(c, anchor))
            )

    async def export(self, axon_id: str) -> AsyncIterator[bytes]:
        """JSON Lines: the Axon, its events, then its state schema, rows and history. Streamed
        from one snapshot a bounded chunk at a time, so an export of any size costs little
        memory; closing the iterator early ends the read."""
        view = await self.get_axon(axon_id)
        async with self._using(view.id) as f:
            # No deadline (an export takes as long as it takes); a client that leaves ends it.
            budget = Budget(dataclasses.replace(self.limits, sql_timeout_s=math.inf))
            path, last = str(f.path), f.last_sequence
            lines = await self._run_sql(
                budget, lambda: records.dump_lines(view, path, last, budget)
            )
            pending: asyncio.Future[list[bytes]] | None = None
            try:
                while True:
                    pending = asyncio.ensure_future(
                        self._run_sql(budget, lambda: _next_chunk(lines))
                    )
                    chunk = await asyncio.shield(pending)
                    if not chunk:
                        return
                    for line in chunk:
                        yield line
            finally:
                budget.cancel.set()
                if pending is not None and not pending.done():
                    with contextlib.suppress(Exception):
                        await pending  # the reading thread must let go before we close it
                await self._run_sql(budget, lines.close)

    async def import_axon(self, lines: Sequence[bytes | str], name: str | None = None) -> AxonView:
        """A new Axon equal to the exported one (events, hashes, state and its history)."""
        parsed = await self._run(records.parse, lines)
        header = parsed.header
        return await self._create_loaded(
            name or header.get("name"),
            header.get("metadata") or {},
            parsed,
            rename_if_taken=not name,
        )

    async def _create_loaded(
        self, name: object, metadata: object, parsed: records.Parsed, *, rename_if_taken: bool
    ) -> AxonView:
        """A new Axon holding `parsed`. Its file is written and committed first and the Axon
        enters the catalog only then: a failed import leaves nothing behind. A name the engine
        chose (`rename_if_taken`: an import's own, a fork's) gets a free suffix when taken."""
        if name is not None:
            check_label("name", name)  # refuses anything but a fitting str
        label = name if isinstance(name, str) else None
        checked = check_metadata(metadata)
        axon_id = new_axon_id()
        path = self.path_of(axon_id)
        executor, durability = self._executor, self._durability
        assert executor is not None and durability is not None
        f = await self._run(
            lambda: AxonFile(axon_id, path, executor, self._committed, durability, create=True)
        )
        try:
            await f.submit(lambda ctx: records.load(ctx, parsed))
            await f.close()
            view = await self._run(
                lambda: self.catalog.create(
                    label, checked, axon_id, rename_if_taken=rename_if_taken
                )
            )
        except BaseException:
            await f.close()
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            raise
        if parsed.events:
            last = parsed.events[-1]
            await self._run(self.catalog.anchor_tips, [(axon_id, last.sequence, last.hash)])
        return view

    async def fork(self, axon_id: str, at_sequence: int, name: str | None = None) -> AxonView:
        """A new Axon holding events 1..N and the state as of N."""
        view = await self.get_axon(axon_id)
        async with self._using(view.id) as f:
            _check_sequence(at_sequence, f.last_sequence)
            lines = await self._run(records.dump, view, str(f.path), at_sequence)
        fork_name = name or f"{view.name or view.id}@{at_sequence}"
        metadata = {**view.metadata, "forked_from": view.id, "forked_at": str(at_sequence)}
        parsed = await self._run(records.parse, lines)
        return await self._create_loaded(fork_name, metadata, parsed, rename_if_taken=not name)

    # -- plumbing ---------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise Unavailable("the engine is not started", code=ErrorCode.NOT_STARTED)
        return self._catalog

    def path_of(self, axon_id: str) -> Path:
        return self.paths.axon_file(axon_id)

    def _committed(self, axon_id: str, events: list[Event]) -> None:
        """After every commit: deliver the events, and mark the new tip for anchoring."""
        self.bus.deliver(axon_id, events)
        self._tips[axon_id] = (events[-1].sequence, events[-1].hash)

    async def _anchor_tips(self) -> None:
        """Anchor new tips in the catalog about once a second: off the publish path, one
        catalog transaction for every Axon that moved."""
        while True:
            await asyncio.sleep(ANCHOR_INTERVAL_S)
            with contextlib.suppress(Exception):  # the next round retries
                await self._flush_anchors()

    async def _flush_anchors(self) -> None:
        tips, self._tips = self._tips, {}
        if tips:
            await self._run(self.catalog.anchor_tips, [(a, seq, h) for a, (seq, h) in tips.items()])

    async def _run_sql(self, budget: Budget, fn: Callable[[], T]) -> T:
        """User SQL runs on its own, smaller pool: however much of it there is, the engine's
        threads stay free for publishes and its own reads."""
        if self._sql_executor is None:
            raise Unavailable("the engine is not started", code=ErrorCode.NOT_STARTED)
        pending = asyncio.get_running_loop().run_in_executor(self._sql_executor, fn)
        return await _interrupt_if_cancelled(budget, pending)

    async def _write_sql(self, budget: Budget, f: AxonFile, op: Callable[[WriteContext], T]) -> T:
        """User SQL that writes runs on the Axon's writer; at most `sql_threads` such
        operations hold an engine thread at a time."""
        async with self._sql_writes:
            return await _interrupt_if_cancelled(budget, f.submit(op))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise Unavailable("the engine is not started", code=ErrorCode.NOT_STARTED)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @asynccontextmanager
    async def _using(self, axon_id: str) -> AsyncIterator[AxonFile]:
        """Hold an open file so it is not evicted while in use."""
        f = self._files.get(axon_id) or await self._open(axon_id)
        f.users += 1
        try:
            yield f
        finally:
            f.users -= 1

    async def _open(self, axon_id: str) -> AxonFile:
        if self._closing:
            raise Unavailable(
                "the engine is shutting down; retry shortly", code=ErrorCode.SHUTTING_DOWN
            )
        if (cached := self._files.get(axon_id)) is not None:
            return cached
        if (pending := self._opening.get(axon_id)) is not None:
            return await asyncio.shield(pending)
        opening: asyncio.Future[AxonFile] = asyncio.get_running_loop().create_future()
        self._opening[axon_id] = opening
        try:
            view = await self._run(self.catalog.get, axon_id)
            if view.id != axon_id:  # a name: the caller must use ids on the hot path
                raise InvalidInput(
                    f"use the Axon's id ({view.id}), not its name", code=ErrorCode.ID_REQUIRED
                )
            if view.deleted_at_ms is not None:
                self._deleted.add(axon_id)
            path = self.path_of(axon_id)
            executor, durability = self._executor, self._durability
            assert executor is not None and durability is not None
            f = await self._run(
                lambda: AxonFile(
                    axon_id,
                    path,
                    executor,
                    self._committed,
                    durability,
                    create=not path.exists(),
                )
            )
            self._files[axon_id] = f
            opening.set_result(f)
        except BaseException as e:
            opening.set_exception(e)
            opening.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._opening[axon_id]
        f.users += 1  # not evictable until the caller holds it (no await after we return)
        try:
            await self._evict()
        finally:
            f.users -= 1
        return f

    async def _evict(self) -> None:
        excess = len(self._files) - self.max_open_axons
        if excess <= 0:
            return
        for axon_id, f in list(self._files.items()):
            if excess <= 0:
                break
            # Another eviction may have closed it while we awaited a close.
            if not f.busy and self._files.get(axon_id) is f:
                del self._files[axon_id]
                excess -= 1
                await f.close()

    @property
    def open_axons(self) -> int:
        return len(self._files)


def _move_cursor(ctx: WriteContext, agent: str, sequence: int) -> int:
    ctx.conn.execute(
        "INSERT INTO axon_agent_cursors VALUES (?, ?) ON CONFLICT(agent) "
        "DO UPDATE SET sequence = max(sequence, excluded.sequence)",
        (agent, sequence),
    )
    return int(
        ctx.conn.execute(
            "SELECT sequence FROM axon_agent_cursors WHERE agent = ?", (agent,)
        ).fetchall()[0][0]
    )


def _query_at(
    path: str,
    sequence: int,
    sql: str,
    params: Sequence[Any] | None,
    max_rows: int,
    budget: Budget,
) -> QueryResult:
    mem = state.state_at(path, sequence, budget)
    try:
        return state.run_statement(mem, sql, params, write=False, max_rows=max_rows, budget=budget)
    finally:
        mem.close()


async def _interrupt_if_cancelled(budget: Budget, pending: Awaitable[T]) -> T:
    """Await SQL running in a thread; a caller that gives up (a cancelled task: a client that
    hung up) interrupts it there too, instead of leaving it to run to its deadline."""
    try:
        return await pending
    except asyncio.CancelledError:
        budget.cancel.set()
        raise


def _next_chunk(lines: Iterator[bytes], max_bytes: int = EXPORT_CHUNK_BYTES) -> list[bytes]:
    """The next lines of an export, about `max_bytes` of them (at least one, if any remain)."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= max_bytes:
            break
    return chunk


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS_PAGE:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_EVENTS_PAGE}", code=ErrorCode.INVALID_LIMIT
        )


def _check_sequence(sequence: int, last: int) -> None:
    if not isinstance(sequence, int) or not 0 <= sequence <= last:
        raise InvalidInput(
            f"sequence must be between 0 and the latest ({last}), got {sequence!r:.40}",
            code=ErrorCode.INVALID_SEQUENCE,
        )


def make_home_private(home: Home) -> None:
    """The home is the operator's alone: directories 0700, files 0600 (events, state and
    token hashes are nobody else's business). New files are born that way; this also
    tightens a home made by an older version."""
    for directory in (home.root, home.axons):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ours = [
        *home.root.glob(f"{home.catalog.name}*"),
        *home.root.glob("engine.*"),
        home.config,
        *home.axons.iterdir(),
        *(home.agents.iterdir() if home.agents.is_dir() else ()),
    ]
    for directory in (home.root, home.axons, home.agents):
        if directory.is_dir():
            os.chmod(directory, 0o700)
    for path in ours:  # only the engine's own: a home pointed at a busy folder stays intact
        if path.is_symlink() or not path.exists() or not path.stat().st_mode & 0o077:
            continue
        if path.is_file():
            os.chmod(path, 0o600)
        elif path.is_dir():  # a process agent's own HOME
            os.chmod(path, 0o700)


def _lock_home(home: Home) -> int:
    fd = os.open(home.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise Unavailable(
            f"another engine ({holder}) already runs on {home.root}; connect to it instead",
            code=ErrorCode.HOME_LOCKED,
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}".encode())
    return fd


def _allow_open_files(max_open_axons: int) -> None:
    """Raise this process's soft limit on open files (never above the hard one) so that many
    busy Axons fit: each open Axon holds about 4 descriptors for its writer and its WAL, plus
    3 per reader connection. Where the limit stays lower, opening more fails with EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_open_axons * 8 + 1024
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new_soft > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))


def _collect_garbage_less_often() -> None:
    """Raise the young generation's threshold of this process's garbage collector (never
    lower it). CPython collects the young generation when the objects allocated since the
    last collection, less those freed, pass the threshold. Every publish in flight holds
    about a dozen until its flush (its future, job, draft, row and event, the caller's
    coroutine), so 1,000 Axons x 4 publishers keep 35,000-48,000 alive. At 10,000 each
    collection found them all alive and promoted them to be traversed again: 13-15
    collections, 230-285 ms of a 1.4 s run. At 50,000 frees balance allocations and the
    collector runs only when the heap really grows: one collection, 24-35 ms. Higher is not
    better: at 100,000 the console's rarer collections are long enough to double its
    worst loop lag (docs/architecture.md, "Durability")."""
    young, older, oldest = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "local"
