"""One Axon's SQLite file: its event log, the group-commit writer every write goes through,
reads, and the hash chain that makes the log an audit trail.

All writes (events and state changes) are serialised on one connection by `AxonFile.submit`:
whatever piles up while a transaction is being flushed commits together in the next one. The
flush itself is shared with every other Axon committing at the same time (engine.durability).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import orjson

from engine.durability import FlushFailed, WalFile, WalSync
from engine.errors import AxonError, InvalidInput, PayloadTooLarge, Unavailable
from engine.models import CLIENT_ORIGINS, ORIGINS, Draft, Event, PublishResult

DEFAULT_MAX_PAYLOAD = 1 << 20
MAX_LABEL = 200
MAX_IDEMPOTENCY_KEY = 255

ENGINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS axon_events(
    sequence INTEGER PRIMARY KEY,
    timestamp_ms INTEGER NOT NULL,
    origin TEXT NOT NULL,
    source TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    author TEXT,
    idempotency_key TEXT,
    hash TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS axon_events_idempotency
    ON axon_events(idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS axon_meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS axon_agent_cursors(agent TEXT PRIMARY KEY, sequence INTEGER NOT NULL);
"""

_INSERT_EVENT = "INSERT INTO axon_events VALUES (?,?,?,?,?,?,?,?,?)"
_EVENT_COLUMNS = (
    "sequence, timestamp_ms, origin, source, event_type, payload, author, idempotency_key, hash"
)


_NO_SEQUENCE = 1 << 62  # beyond any real sequence, within SQLite's 64-bit integers


def connect(
    path: Path | str, *, create: bool = False, synchronous: str = "FULL"
) -> apsw.Connection:
    """A connection with the engine's durability settings: WAL and synchronous=FULL.

    An Axon's writer uses NORMAL instead (checkpoints and WAL restarts synced exactly as with
    FULL, commits not) because its commits are flushed by `WalSync` before anyone is told."""
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    if create:
        # Born 0600; SQLite gives the -wal and -shm files the mode of the database file.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = apsw.Connection(str(path), flags=flags)
    conn.set_busy_timeout(10_000)
    if create:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def chain_hash(previous: str, sequence: int, timestamp_ms: int, d: Draft) -> str:
    """SHA-256 over the previous hash and this event's canonical encoding (hex).

    The Axon id is not part of it, so an exported and re-imported (or forked) log keeps
    its hashes and still verifies.
    """
    canonical = orjson.dumps(
        [
            sequence,
            timestamp_ms,
            d.origin,
            d.source,
            d.event_type,
            d.payload,
            d.author,
            d.idempotency_key,
        ]
    )
    return hashlib.sha256(previous.encode() + canonical).hexdigest()


def check_label(name: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_LABEL or not value.isprintable():
        raise InvalidInput(
            f"{name} must be 1-{MAX_LABEL} printable characters, got {value!r:.80}",
            code=f"invalid_{name}",
        )
    return value


def check_draft(d: Draft, *, max_payload: int = DEFAULT_MAX_PAYLOAD, system: bool = False) -> Draft:
    """Refuse what CONTRACT §3 refuses, with a message that says how to fix it."""
    if not isinstance(d, Draft):
        raise InvalidInput(f"expected a Draft, got {type(d).__name__}")
    check_label("event_type", d.event_type)
    check_label("source", d.source)
    allowed = ORIGINS if system else CLIENT_ORIGINS
    if d.origin not in allowed:
        if d.origin == "SYSTEM_EVENT":
            raise InvalidInput(
                "origin SYSTEM_EVENT is reserved for the engine; use USER_EVENT, "
                "EXTERNAL_EVENT or AGENT_EVENT",
                code="invalid_origin",
            )
        raise InvalidInput(
            f"origin must be one of {', '.join(sorted(CLIENT_ORIGINS))}, got {d.origin!r:.80}",
            code="invalid_origin",
        )
    payload = d.payload
    if not isinstance(payload, str):
        raise InvalidInput("payload must be JSON text (a string)", code="invalid_payload")
    if (
        len(payload) * 4 > max_payload
        and len(payload.encode("utf-8", "surrogatepass")) > max_payload
    ):
        raise PayloadTooLarge(
            f"payload is larger than {max_payload} bytes; store big content elsewhere "
            "and publish a reference",
        )
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(
            f'payload must be valid JSON text ({e}); to send plain text use {{"text": "..."}}',
            code="invalid_payload",
        ) from None
    key = d.idempotency_key
    if key is not None and (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY
        or not key.isprintable()
    ):
        raise InvalidInput(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters",
            code="invalid_idempotency_key",
        )
    if d.author is not None:  # hashed as given: anything but text would break the chain
        check_label("author", d.author)
    return d


@dataclass
class _Tip:
    """The log's head: what the next append chains onto."""

    sequence: int = 0
    hash: str = ""
    timestamp_ms: int = 0

    def copy(self) -> _Tip:
        return _Tip(self.sequence, self.hash, self.timestamp_ms)


class _Job:
    """A queued write: a batch of drafts to append, or an operation on the connection."""

    __slots__ = ("drafts", "error", "future", "op", "result")

    def __init__(
        self,
        future: asyncio.Future[Any],
        drafts: list[Draft] | None = None,
        op: Callable[[WriteContext], Any] | None = None,
    ) -> None:
        self.future = future
        self.drafts = drafts
        self.op = op
        self.result: Any = None
        self.error: BaseException | None = None


@dataclass
class WriteContext:
    """What a write sees: the writer connection and the log's head as this transaction
    moves it. `stage` assigns sequences and hashes and queues the rows to insert."""

    conn: apsw.Connection
    axon_file: AxonFile
    tip: _Tip
    events: list[Event] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    _keys: dict[str, PublishResult] = field(default_factory=dict)

    def stage(self, drafts: Iterable[Draft]) -> list[PublishResult]:
        """Give each draft its sequence, timestamp and hash, and queue its row. A reused
        idempotency key returns the first result instead of a new event."""
        tip = self.tip
        ts = max(time.time_ns() // 1_000_000, tip.timestamp_ms)
        seq, h = tip.sequence, tip.hash
        axon_id = self.axon_file.axon_id
        rows, events, keys = self.rows, self.events, self._keys
        results = []
        for d in drafts:
            key = d.idempotency_key
            if key is not None:
                prior = keys.get(key) or self._lookup_key(key)
                if prior is not None:
                    results.append(prior)
                    continue
            seq += 1
            h = chain_hash(h, seq, ts, d)
            rows.append((seq, ts, d.origin, d.source, d.event_type, d.payload, d.author, key, h))
            events.append(
                Event(
                    axon_id, seq, ts, d.origin, d.source, d.event_type, d.payload, d.author, key, h
                )
            )
            result = PublishResult(seq, ts)
            if key is not None:
                keys[key] = result
            results.append(result)
        tip.sequence, tip.hash, tip.timestamp_ms = seq, h, ts
        return results

    def _lookup_key(self, key: str) -> PublishResult | None:
        for seq, ts in self.conn.execute(
            "SELECT sequence, timestamp_ms FROM axon_events WHERE idempotency_key = ?", (key,)
        ):
            return PublishResult(seq, ts)
        return None


class AxonFile:
    """One open Axon file: a writer connection behind a group-commit queue, and a pool of
    reader connections for the executor's threads."""

    def __init__(
        self,
        axon_id: str,
        path: Path,
        executor: Executor,
        on_commit: Callable[[str, list[Event]], None],
        durability: WalSync,
        *,
        create: bool = False,
    ) -> None:
        self.axon_id = axon_id
        self.path = path
        self._executor = executor
        self._on_commit = on_commit
        self._durability = durability
        self._wal = WalFile(path)
        self._broken: AxonError | None = None  # a failed flush: refuse writes until restart
        self._writer = connect(path, create=create, synchronous="NORMAL")
        try:
            if create:
                self._writer.execute(ENGINE_SCHEMA)
            self._tip = self._load_tip()
        except BaseException:
            self._writer.close()  # an unreadable file must not stay open (and busy) behind us
            raise
        self._readers: queue.SimpleQueue[apsw.Connection] = queue.SimpleQueue()
        self._all_readers: list[apsw.Connection] = []
        self._pending: list[_Job] = []
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False
        self.users = 0  # subscribers and other holders that keep this file from eviction

    # -- writing ----------------------------------------------------------------------

    @property
    def last_sequence(self) -> int:
        return self._tip.sequence

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self._flushing is not None or self.users > 0

    def append(self, drafts: list[Draft]) -> asyncio.Future[list[PublishResult]]:
        """Queue drafts (already checked); the future resolves once they are durable."""
        return self._enqueue(_Job(asyncio.get_running_loop().create_future(), drafts=drafts))

    def submit(self, op: Callable[[WriteContext], Any]) -> asyncio.Future[Any]:
        """Run `op` in its own transaction on the writer connection, in queue order."""
        return self._enqueue(_Job(asyncio.get_running_loop().create_future(), op=op))

    def _enqueue(self, job: _Job) -> asyncio.Future[Any]:
        if self._closed:
            raise Unavailable("this Axon is closing; retry", code="closing")
        if self._broken is not None:
            raise self._broken
        self._pending.append(job)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return job.future

    async def _flush(self) -> None:
        """Drain the queue. Publishes are staged here on the loop (sequences, hashes) and
        only the SQLite work goes to a thread: while one transaction is flushed, publishers
        woken by the previous one already queue the next. Nobody is answered before the
        transaction's WAL frames are on disk."""
        try:
            while self._pending:
                await asyncio.sleep(0)  # let publishers woken by the last commit queue too
                jobs = self._take_run()
                ctx = WriteContext(self._writer, self, self._tip.copy())
                try:
                    await self._commit_durably(ctx, jobs)
                except BaseException as e:
                    self._fail(jobs, _storage_error(e))
                    if isinstance(e, FlushFailed):  # committed, but maybe not on disk
                        self._break(e)
                    if not isinstance(e, Exception):
                        raise
                    continue
                self._tip = ctx.tip
                for job in jobs:
                    if not job.future.done():  # a caller that gave up: the write stands
                        job.future.set_result(job.result)
                if ctx.events:
                    self._on_commit(self.axon_id, ctx.events)
        finally:
            self._flushing = None

    async def _commit_durably(self, ctx: WriteContext, jobs: list[_Job]) -> None:
        """Commit `jobs` in one transaction and return once its WAL frames are on disk:
        flushed by the committing thread itself when no other Axon is committing, else in
        the next round of the engine's `WalSync`, shared with every Axon that committed."""
        loop = asyncio.get_running_loop()
        flush_here = self._durability.begin()
        try:
            if jobs[0].op is not None:
                await loop.run_in_executor(self._executor, self._run_op, ctx, jobs[0], flush_here)
            else:
                for job in jobs:
                    job.result = ctx.stage(job.drafts or ())
                if not ctx.rows:
                    return  # only repeated idempotency keys: nothing was written
                await loop.run_in_executor(self._executor, self._insert, ctx.rows, flush_here)
            if not flush_here:
                await self._durability.flush(self._wal)
        finally:
            self._durability.end()

    def _break(self, error: FlushFailed) -> None:
        """After a failed flush the kernel may have dropped the pages it could not write
        while SQLite believes them written: any later commit could be acknowledged on top
        of a hole. So this Axon takes no more writes until the engine is restarted."""
        self._broken = AxonError(
            f"{error}; this Axon refuses writes until the engine restarts and recovers it "
            "from disk",
            code="storage_error",
            status=500,
        )

    def _take_run(self) -> list[_Job]:
        """The next transaction's jobs: one operation, or every publish queued before it."""
        pending = self._pending
        if pending[0].op is not None:
            return [pending.pop(0)]
        end = next((i for i, job in enumerate(pending) if job.op is not None), len(pending))
        self._pending = pending[end:]
        return pending[:end]

    @staticmethod
    def _fail(jobs: list[_Job], error: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

    def _insert(self, rows: list[tuple[Any, ...]], flush: bool) -> None:
        """In the executor: one transaction for a run of publishes."""
        self._transaction(lambda: self._writer.executemany(_INSERT_EVENT, rows), flush)

    def _run_op(self, ctx: WriteContext, job: _Job, flush: bool) -> None:
        """In the executor: an operation in its own transaction."""
        assert job.op is not None
        op = job.op
        job.result = self._transaction(lambda: op(ctx), flush)

    def _transaction(self, body: Callable[[], Any], flush: bool) -> Any:
        """Run `body` in a transaction; with `flush`, fdatasync the WAL after the commit."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if flush:
            self._wal.flush()
        return result

    def _load_tip(self) -> _Tip:
        for seq, h, ts in self._writer.execute(
            "SELECT sequence, hash, timestamp_ms FROM axon_events ORDER BY sequence DESC LIMIT 1"
        ):
            return _Tip(seq, h, ts)
        return _Tip()

    # -- reading ----------------------------------------------------------------------

    def read(self, fn: Callable[[apsw.Connection], Any]) -> Any:
        """Run `fn` on a pooled reader connection (call from an executor thread)."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = connect(self.path)
            self._all_readers.append(conn)
        try:
            return fn(conn)
        finally:
            self._readers.put(conn)

    async def run_read(self, fn: Callable[[apsw.Connection], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.read, fn)

    def events_after(self, after: int, limit: int) -> list[Event]:
        """Oldest first: events with sequence > after (executor thread)."""
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM axon_events WHERE sequence > ? ORDER BY sequence LIMIT ?"
        )
        axon_id = self.axon_id
        after = max(-1, min(after, _NO_SEQUENCE))  # any int a client sends fits SQLite
        return self.read(lambda c: [Event(axon_id, *r) for r in c.execute(sql, (after, limit))])

    def events_before(self, before: int | None, limit: int) -> list[Event]:
        """Newest first: events with sequence < before (all when None)."""
        bound = max(-1, min(before, _NO_SEQUENCE)) if before is not None else _NO_SEQUENCE
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM axon_events WHERE sequence < ? "
            "ORDER BY sequence DESC LIMIT ?"
        )
        axon_id = self.axon_id
        return self.read(lambda c: [Event(axon_id, *r) for r in c.execute(sql, (bound, limit))])

    # -- lifetime ---------------------------------------------------------------------

    async def close(self) -> None:
        """Refuse new writes, let queued ones commit, then close every connection."""
        self._closed = True
        while self._flushing is not None:
            await asyncio.shield(self._flushing)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connections)

    def _close_connections(self) -> None:
        for conn in self._all_readers:
            conn.close()
        self._all_readers.clear()
        self._writer.close()
        self._wal.close()


def _storage_error(e: BaseException) -> BaseException:
    """What the caller of a failed write is told: SQLite's failures become clear errors."""
    if isinstance(e, apsw.FullError):
        return Unavailable("the disk is full; free space and retry", code="disk_full")
    if isinstance(e, apsw.BusyError):
        return Unavailable("the Axon file is locked by another process; retry", code="busy")
    if isinstance(e, apsw.Error):
        return AxonError(f"storage error: {e}", code="storage_error", status=500)
    if isinstance(e, FlushFailed):
        return AxonError(
            f"{e}; the write may or may not have been kept",
            code="storage_error",
            status=500,
        )
    return e
