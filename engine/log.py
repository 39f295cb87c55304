"""One Axon's SQLite file: its event log, the group-commit writer every write goes through,
reads, and the hash chain that makes the log an audit trail.

All writes (events and state changes) are serialised on one connection by `AxonFile.submit`:
whatever piles up while a transaction is being fsynced commits together in the next one.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import orjson

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
"""

_INSERT_EVENT = "INSERT INTO axon_events VALUES (?,?,?,?,?,?,?,?,?)"
_EVENT_COLUMNS = (
    "sequence, timestamp_ms, origin, source, event_type, payload, author, idempotency_key, hash"
)


def connect(path: Path | str, *, create: bool = False) -> apsw.Connection:
    """A connection with the engine's durability settings: WAL and synchronous=FULL."""
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    conn = apsw.Connection(str(path), flags=flags)
    conn.set_busy_timeout(10_000)
    if create:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
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
    if len(payload) * 4 > max_payload and len(payload.encode("utf-8", "surrogatepass")) > max_payload:
        raise PayloadTooLarge(
            f"payload is larger than {max_payload} bytes; store big content elsewhere "
            "and publish a reference",
        )
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(
            f"payload must be valid JSON text ({e}); to send plain text use "
            '{"text": "..."}',
            code="invalid_payload",
        ) from None
    key = d.idempotency_key
    if key is not None and (
        not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable()
    ):
        raise InvalidInput(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters",
            code="invalid_idempotency_key",
        )
    return d


def row_to_event(axon_id: str, row: Sequence[Any]) -> Event:
    return Event(axon_id, *row)


@dataclass
class _Tip:
    """The log's head: what the next append chains onto."""

    sequence: int = 0
    hash: str = ""
    timestamp_ms: int = 0


@dataclass
class _Job:
    """A queued write: a batch of drafts to append, or an operation on the connection."""

    future: asyncio.Future[Any]
    drafts: list[Draft] | None = None
    op: Callable[[WriteContext], Any] | None = None
    result: Any = None
    error: BaseException | None = None


@dataclass
class WriteContext:
    """What an operation sees inside the writer's transaction."""

    conn: apsw.Connection
    axon_file: AxonFile
    tip: _Tip
    events: list[Event] = field(default_factory=list)
    _keys: dict[str, PublishResult] = field(default_factory=dict)

    def append(self, drafts: Iterable[Draft]) -> list[PublishResult]:
        """Append events in this transaction; an idempotency key already used returns
        the first result instead of a new event."""
        tip = self.tip
        ts = max(time.time_ns() // 1_000_000, tip.timestamp_ms)
        seq, h = tip.sequence, tip.hash
        axon_id = self.axon_file.axon_id
        rows = []
        results = []
        for d in drafts:
            key = d.idempotency_key
            if key is not None:
                prior = self._keys.get(key) or self._lookup_key(key)
                if prior is not None:
                    results.append(prior)
                    continue
            seq += 1
            h = chain_hash(h, seq, ts, d)
            rows.append(
                (seq, ts, d.origin, d.source, d.event_type, d.payload, d.author, key, h)
            )
            self.events.append(
                Event(axon_id, seq, ts, d.origin, d.source, d.event_type, d.payload, d.author, key, h)
            )
            result = PublishResult(seq, ts)
            if key is not None:
                self._keys[key] = result
            results.append(result)
        if rows:
            self.conn.executemany(_INSERT_EVENT, rows)
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
        *,
        create: bool = False,
    ) -> None:
        self.axon_id = axon_id
        self.path = path
        self._executor = executor
        self._on_commit = on_commit
        self._writer = connect(path, create=create)
        if create:
            self._writer.execute(ENGINE_SCHEMA)
        self._readers: queue.SimpleQueue[apsw.Connection] = queue.SimpleQueue()
        self._all_readers: list[apsw.Connection] = []
        self._tip = self._load_tip()
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
        self._pending.append(job)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return job.future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # Publishers woken by the previous commit are ready to run: let them queue their
            # next events first, so one transaction carries them all.
            await asyncio.sleep(0)
            while self._pending:
                jobs, self._pending = self._pending, []
                try:
                    events = await loop.run_in_executor(self._executor, self._write, jobs)
                except BaseException as e:  # the executor itself failed: fail every job
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(e)
                    raise
                for job in jobs:
                    if job.future.done():  # cancelled by its caller; the write stands
                        continue
                    if job.error is not None:
                        job.future.set_exception(job.error)
                    else:
                        job.future.set_result(job.result)
                if events:
                    self._on_commit(self.axon_id, events)
        finally:
            self._flushing = None

    def _write(self, jobs: list[_Job]) -> list[Event]:
        """In the executor: consecutive appends share one transaction; each op has its own."""
        committed: list[Event] = []
        i = 0
        while i < len(jobs):
            if jobs[i].op is None:
                j = i
                while j < len(jobs) and jobs[j].op is None:
                    j += 1
                group = jobs[i:j]
                i = j
            else:
                group = [jobs[i]]
                i += 1
            committed.extend(self._transaction(group))
        return committed

    def _transaction(self, group: list[_Job]) -> list[Event]:
        tip = _Tip(self._tip.sequence, self._tip.hash, self._tip.timestamp_ms)
        ctx = WriteContext(self._writer, self, tip)
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                if job.op is not None:
                    job.result = job.op(ctx)
                else:
                    assert job.drafts is not None
                    job.result = ctx.append(job.drafts)
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = _storage_error(e)
            for job in group:
                job.error, job.result = error, None
            return []
        self._tip = tip
        return ctx.events

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
        sql = f"SELECT {_EVENT_COLUMNS} FROM axon_events WHERE sequence > ? ORDER BY sequence LIMIT ?"
        axon_id = self.axon_id
        return self.read(
            lambda c: [Event(axon_id, *r) for r in c.execute(sql, (after, limit))]
        )

    def events_before(self, before: int | None, limit: int) -> list[Event]:
        """Newest first: events with sequence < before (all when None)."""
        bound = before if before is not None else (1 << 62)
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM axon_events WHERE sequence < ? "
            "ORDER BY sequence DESC LIMIT ?"
        )
        axon_id = self.axon_id
        return self.read(
            lambda c: [Event(axon_id, *r) for r in c.execute(sql, (bound, limit))]
        )

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


def _storage_error(e: BaseException) -> BaseException:
    """What the caller of a failed write is told: SQLite's failures become clear errors."""
    if isinstance(e, apsw.FullError):
        return Unavailable("the disk is full; free space and retry", code="disk_full")
    if isinstance(e, apsw.BusyError):
        return Unavailable("the Axon file is locked by another process; retry", code="busy")
    if isinstance(e, apsw.Error):
        return AxonError(f"storage error: {e}", code="storage_error", status=500)
    return e
