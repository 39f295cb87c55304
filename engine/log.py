"""One Axon's SQLite file: its event log, the group-commit writer every write goes through,
reads, and the hash chain that makes the log an audit trail.

All writes (events and state changes) are serialised on one connection by `AxonFile.submit`:
whatever piles up while a transaction is being flushed commits together in the next one. The
flush itself is shared with every other Axon committing at the same time (engine.durability).
"""

from __future__ import annotations

import asyncio
import functools
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

from engine.durability import FlushFailed, GroupCommit, WalFile
from engine.errors import AxonError, ErrorCode, InvalidInput, PayloadTooLarge, Unavailable
from engine.models import CLIENT_ORIGINS, ORIGINS, Draft, Event, PublishResult

DEFAULT_MAX_PAYLOAD = 1 << 20
DEFAULT_PAGE_BYTES = 8 << 20
_EVENT_OVERHEAD = 512
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

_ROWS_PER_INSERT = 32
SMALL_BYTES = 64 << 10  # a transaction up to _ROWS_PER_INSERT events and this much payload
# is committed on the event loop (engine.durability); a bigger one in the committer thread
BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_PAGES = 1000  # SQLite's auto-checkpoint size, run off the commit path (see AxonFile)


@functools.lru_cache(maxsize=256)
def _commit_rows_sql(n: int) -> str:
    """One SQL text that begins a transaction, inserts `n` event rows (multi-row INSERTs of
    up to 32 rows) and commits, so a whole transaction is one apsw call. Each apsw call
    gives the GIL back to SQLite and must win it again from the busy event loop: measured
    here beside a busy Python thread, BEGIN / executemany of 4 rows / COMMIT cost 3.2 ms of
    wall per transaction, this 0.5 ms (both 41-45 us with the interpreter idle)."""
    if n <= _ROWS_PER_INSERT:  # one statement is a transaction of its own
        return _rows_insert(n)
    full, rest = divmod(n, _ROWS_PER_INSERT)
    inserts = [_rows_insert(_ROWS_PER_INSERT)] * full + ([_rows_insert(rest)] if rest else [])
    return ";".join(["BEGIN IMMEDIATE", *inserts, "COMMIT"])


def _rows_insert(n: int) -> str:
    return "INSERT INTO axon_events VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?)"] * n)


_EVENT_COLUMNS = (
    "sequence, timestamp_ms, origin, source, event_type, payload, author, idempotency_key, hash"
)


_NO_SEQUENCE = 1 << 62  # beyond any real sequence, within SQLite's 64-bit integers


def connect(
    path: Path | str, *, create: bool = False, synchronous: str = "FULL"
) -> apsw.Connection:
    """A connection with the engine's durability settings: WAL and synchronous=FULL.

    An Axon's writer uses NORMAL instead (checkpoints and WAL restarts synced exactly as with
    FULL, commits not) because its commits are flushed by `GroupCommit` before anyone is told."""
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    if create:
        # Born 0600; SQLite gives the -wal and -shm files the mode of the database file.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = apsw.Connection(str(path), flags=flags)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
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
    """Refuse what contract §3 refuses, with a message that says how to fix it."""
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
                code=ErrorCode.INVALID_ORIGIN,
            )
        raise InvalidInput(
            f"origin must be one of {', '.join(sorted(CLIENT_ORIGINS))}, got {d.origin!r:.80}",
            code=ErrorCode.INVALID_ORIGIN,
        )
    payload = d.payload
    if not isinstance(payload, str):
        raise InvalidInput("payload must be JSON text (a string)", code=ErrorCode.INVALID_PAYLOAD)
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
            code=ErrorCode.INVALID_PAYLOAD,
        ) from None
    key = d.idempotency_key
    if key is not None and (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY
        or not key.isprintable()
    ):
        raise InvalidInput(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters",
            code=ErrorCode.INVALID_IDEMPOTENCY_KEY,
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

    __slots__ = ("drafts", "error", "future", "op", "result", "transaction")

    def __init__(
        self,
        future: asyncio.Future[Any],
        drafts: list[Draft] | None = None,
        op: Callable[[WriteContext], Any] | None = None,
        *,
        transaction: bool = True,
    ) -> None:
        self.future = future
        self.drafts = drafts
        self.op = op
        self.transaction = transaction  # False: `op` runs as is (a checkpoint), unsynced
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
    payload_bytes: int = 0  # of the rows staged (characters: a lower bound of the bytes)
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
            self.payload_bytes += len(d.payload)
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


class _Transaction:
    """A run of one Axon's publishes in one transaction: a `Commit` for `GroupCommit`."""

    __slots__ = ("ctx", "file", "jobs", "small", "wal")

    def __init__(self, file: AxonFile, jobs: list[_Job], ctx: WriteContext) -> None:
        self.file, self.jobs, self.ctx, self.wal = file, jobs, ctx, file.wal
        self.small = (
            file._wal_ready
            and len(ctx.rows) <= _ROWS_PER_INSERT
            and ctx.payload_bytes <= SMALL_BYTES
        )

    def write(self, *, wait: bool) -> bool:
        return self.file._write(self.ctx, wait=wait)

    def settle(self, error: BaseException | None) -> None:
        self.file._settle(self.jobs, self.ctx, error)


class AxonFile:
    """One open Axon file: a writer connection behind a group-commit queue, and a pool of
    reader connections for the executor's threads."""

    def __init__(
        self,
        axon_id: str,
        path: Path,
        executor: Executor,
        on_commit: Callable[[str, list[Event]], None],
        durability: GroupCommit,
        *,
        create: bool = False,
    ) -> None:
        self.axon_id = axon_id
        self.path = path
        self._executor = executor
        self._on_commit = on_commit
        self._durability = durability
        self.wal = WalFile(path)
        durability.watch(self.wal)
        self._broken: AxonError | None = None  # a failed flush: refuse writes until restart
        self._writer = connect(path, create=create, synchronous="NORMAL")
        # Commits may run on the event loop (engine.durability), so SQLite must not
        # checkpoint inside them (a checkpoint syncs): the hook replaces its auto-checkpoint,
        # and a WAL grown past CHECKPOINT_PAGES gets a checkpoint queued in a worker thread.
        self._wal_pages = 0
        self._checkpointing = False
        # Until a commit has written the WAL's header (SQLite syncs it, and the directory
        # for a new WAL), commits go to the committer thread, not the event loop.
        self._wal_ready = False
        self._writer.set_wal_hook(self._wal_grew)
        self.busy_timeout_ms = BUSY_TIMEOUT_MS  # how long a commit off the event loop waits
        try:
            if create:
                self._writer.execute(ENGINE_SCHEMA)
            self._tip = self._load_tip()
            if os.path.exists(self.wal.path) and os.path.getsize(self.wal.path) > 0:
                self._wal_ready = True
        except BaseException:
            self._writer.close()  # an unreadable file must not stay open (and busy) behind us
            raise
        self._readers: queue.SimpleQueue[apsw.Connection] = queue.SimpleQueue()
        self._all_readers: list[apsw.Connection] = []
        self._pending: list[_Job] = []
        self._active = False  # a transaction of this Axon is queued in a batch or running
        self._idle: asyncio.Future[None] | None = None  # resolved when it stops being active
        self._op_task: asyncio.Task[None] | None = None  # the running operation, if any
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it is used from
        self._closed = False
        self.users = 0  # subscribers and other holders that keep this file from eviction

    # -- writing ----------------------------------------------------------------------

    @property
    def last_sequence(self) -> int:
        return self._tip.sequence

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self._active or self.users > 0

    def append(self, drafts: list[Draft]) -> asyncio.Future[list[PublishResult]]:
        """Queue drafts (already checked); the future resolves once they are durable."""
        return self._enqueue(_Job(self._future(), drafts=drafts))

    def submit(self, op: Callable[[WriteContext], Any]) -> asyncio.Future[Any]:
        """Run `op` in its own transaction on the writer connection, in queue order."""
        return self._enqueue(_Job(self._future(), op=op))

    def _future(self) -> asyncio.Future[Any]:
        """A future on the event loop this file is used from, which is looked up once:
        `asyncio.get_running_loop()` costs a `getpid` system call on every call."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.create_future()

    def _enqueue(self, job: _Job) -> asyncio.Future[Any]:
        if self._closed:
            raise Unavailable("this Axon is closing; retry", code=ErrorCode.CLOSING)
        if self._broken is not None:
            raise self._broken
        self._pending.append(job)
        if not self._active:
            self._next()
        return job.future

    def _next(self) -> None:
        """Start the next transaction, one at a time so answers stay in sequence order: a
        run of publishes joins the engine's next batch (`GroupCommit`); an operation, which
        may run long (user SQL), gets a thread call and a flush of its own."""
        if self._broken is not None:  # nothing more may be committed on top of a hole
            self._fail(self._pending, self._broken)
            self._pending = []
        if not self._pending:
            self._active = False
            if self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
            return
        self._active = True
        if self._pending[0].op is None:
            self._durability.schedule(self)
        else:
            job = self._pending.pop(0)
            self._op_task = asyncio.get_running_loop().create_task(self._run_op(job))

    def take_commit(self) -> _Transaction | None:
        """Event loop, as a batch forms: stage every publish queued now (sequences, hashes)
        into one transaction. While it is written, publishers woken by the previous batch
        queue the next one. None when there was nothing to write (repeated keys only)."""
        pending = self._pending
        if pending[-1].op is None:  # only publishes queued: the usual case
            jobs, self._pending = pending, []
        else:
            end = next(i for i, job in enumerate(pending) if job.op is not None)
            jobs, self._pending = pending[:end], pending[end:]
        ctx = WriteContext(self._writer, self, self._tip.copy())
        try:
            for job in jobs:
                job.result = ctx.stage(job.drafts or ())
        except BaseException as e:
            self._settle(jobs, ctx, e)
            if not isinstance(e, Exception):
                raise
            return None
        if not ctx.rows:
            self._settle(jobs, ctx, None)
            return None
        return _Transaction(self, jobs, ctx)

    def _write(self, ctx: WriteContext, *, wait: bool) -> bool:
        """Commit a run of publishes, unsynced, in one apsw call (`_commit_rows_sql`). With
        `wait` False (on the event loop) a file locked by another connection returns False
        at once, with nothing written, instead of waiting for the lock."""
        conn = self._writer
        if not wait:
            conn.set_busy_timeout(0)
        try:
            conn.execute(_commit_rows_sql(len(ctx.rows)), [v for row in ctx.rows for v in row])
        except apsw.BusyError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if wait:
                raise
            return False
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            if not wait:
                conn.set_busy_timeout(self.busy_timeout_ms)
        return True

    async def _run_op(self, job: _Job) -> None:
        assert job.op is not None
        op = job.op
        ctx = WriteContext(self._writer, self, self._tip.copy())

        def run() -> None:
            if job.transaction:
                job.result = self._transaction(lambda: op(ctx), flush=True)
            else:
                job.result = op(ctx)

        error: BaseException | None = None
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except BaseException as e:
            error = e
        self._settle([job], ctx, error)
        if error is not None and not isinstance(error, Exception):
            raise error

    def _settle(self, jobs: list[_Job], ctx: WriteContext, error: BaseException | None) -> None:
        """Event loop: answer a transaction's callers (it is durable, or it failed), deliver
        its events, and start the next one."""
        if error is None:
            self._tip = ctx.tip
            for job in jobs:
                if not job.future.done():  # a caller that gave up: the write stands
                    job.future.set_result(job.result)
            if ctx.events:
                self._on_commit(self.axon_id, ctx.events)
            if self._wal_pages >= CHECKPOINT_PAGES and not self._checkpointing:
                self._queue_checkpoint()
        else:
            self._fail(jobs, _storage_error(error))
            if isinstance(error, FlushFailed):  # committed, but maybe not on disk
                self._break(error)
        self._next()

    def _wal_grew(self, _conn: apsw.Connection, _name: str, pages: int) -> int:
        """SQLite's WAL hook, after each commit of the writer (event loop or worker)."""
        self._wal_pages = pages
        self._wal_ready = True
        return apsw.SQLITE_OK

    def _queue_checkpoint(self) -> None:
        """Event loop: copy the WAL into the database in a worker thread, after what is
        queued: what SQLite's auto-checkpoint would have done inside the next commit."""

        def done(future: asyncio.Future[Any]) -> None:
            self._checkpointing = False
            if not future.cancelled():
                future.exception()  # retrieved: a failed checkpoint is retried at the next

        self._checkpointing = True
        future = asyncio.get_running_loop().create_future()
        job = _Job(future, op=self._checkpoint, transaction=False)
        job.future.add_done_callback(done)
        self._pending.append(job)

    def _checkpoint(self, ctx: WriteContext) -> None:
        """Worker thread: a passive checkpoint (it syncs the WAL, then the database). After
        a complete one, the next write restarts the WAL from its start, syncing its new
        header: a write of an unchanged header field makes that happen here, not in a
        commit on the event loop."""
        frames, copied = ctx.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        if frames == copied:
            self._start_wal()
        self._wal_pages = 0  # the hook tells the WAL's size again at the next commit

    def _start_wal(self) -> None:
        """Worker thread: rewrite the database header's user_version unchanged. After a
        complete checkpoint, a write makes SQLite restart the WAL and sync its new header:
        here, rather than in a commit on the event loop."""
        ((version,),) = self._writer.execute("PRAGMA user_version").fetchall()
        self._writer.execute(f"PRAGMA user_version = {int(version)}")

    def _break(self, error: FlushFailed) -> None:
        """After a failed flush the kernel may have dropped the pages it could not write
        while SQLite believes them written: any later commit could be acknowledged on top
        of a hole. So this Axon takes no more writes until the engine is restarted."""
        self._broken = AxonError(
            f"{error}; this Axon refuses writes until the engine restarts and recovers it "
            "from disk",
            code=ErrorCode.STORAGE_ERROR,
            status=500,
        )

    @staticmethod
    def _fail(jobs: list[_Job], error: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

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
            self.wal.flush()
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

    def events_after(
        self, after: int, limit: int, max_bytes: int = DEFAULT_PAGE_BYTES
    ) -> list[Event]:
        """Oldest first: events with sequence > after, at most `limit` of them and about
        `max_bytes` of payload (always at least one) (executor thread). Only durable events:
        a commit is visible to readers a moment before its flush, so reads stop at the tip."""
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM axon_events WHERE sequence > ? AND sequence <= ? "
            "ORDER BY sequence LIMIT ?"
        )
        after = max(-1, min(after, _NO_SEQUENCE))  # any int a client sends fits SQLite
        tip = self._tip.sequence
        return self.read(lambda c: self._page(c.execute(sql, (after, tip, limit)), max_bytes))

    def events_before(
        self, before: int | None, limit: int, max_bytes: int = DEFAULT_PAGE_BYTES
    ) -> list[Event]:
        """Newest first: events with sequence < before (all when None), bounded like
        `events_after`."""
        bound = max(-1, min(before, _NO_SEQUENCE)) if before is not None else _NO_SEQUENCE
        bound = min(bound, self._tip.sequence + 1)  # only durable events, as in events_after
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM axon_events WHERE sequence < ? "
            "ORDER BY sequence DESC LIMIT ?"
        )
        return self.read(lambda c: self._page(c.execute(sql, (bound, limit)), max_bytes))

    def _page(self, rows: Iterable[tuple[Any, ...]], max_bytes: int) -> list[Event]:
        page: list[Event] = []
        size = 0
        for row in rows:
            size += len(row[5]) + _EVENT_OVERHEAD  # the payload, and the fields around it
            if page and size > max_bytes:
                break
            page.append(Event(self.axon_id, *row))
        return page

    # -- lifetime ---------------------------------------------------------------------

    async def close(self) -> None:
        """Refuse new writes, let queued ones commit, then close every connection."""
        self._closed = True
        while self._active:
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connections)

    def _close_connections(self) -> None:
        for conn in self._all_readers:
            conn.close()
        self._all_readers.clear()
        self._writer.close()
        self.wal.close()


def _storage_error(e: BaseException) -> BaseException:
    """What the caller of a failed write is told: SQLite's failures become clear errors."""
    if isinstance(e, apsw.FullError):
        return Unavailable("the disk is full; free space and retry", code=ErrorCode.DISK_FULL)
    if isinstance(e, apsw.BusyError):
        return Unavailable("the Axon file is locked by another process; retry", code=ErrorCode.BUSY)
    if isinstance(e, apsw.Error):
        return AxonError(f"storage error: {e}", code=ErrorCode.STORAGE_ERROR, status=500)
    if isinstance(e, FlushFailed):
        return AxonError(
            f"{e}; the write may or may not have been kept",
            code=ErrorCode.STORAGE_ERROR,
            status=500,
        )
    return e
