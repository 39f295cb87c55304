"""Group commit across Axons. Each Axon commits its transaction without syncing
(synchronous=NORMAL) and then asks the engine's one `WalSync` to make its write-ahead log
durable; the logs of every Axon that committed meanwhile are flushed together, in parallel,
in one round. A write is acknowledged only after a flush that began after its commit.

Why this is as durable as synchronous=FULL: docs/architecture.md, "Durability: group commit
across Axons".
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_SYNC_THREADS = 8  # concurrent fdatasync calls; measured best on a 2-core VM disk


class FlushFailed(Exception):
    """Syncing a WAL failed: what it holds may or may not be on disk."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"flushing the write-ahead log to disk failed: {error}")
        self.error = error


class WalFile:
    """One Axon's write-ahead log, as a file descriptor of our own to flush it with.

    SQLite keeps one WAL inode while any connection is open, overwriting it from the start
    after a checkpoint; a new inode appears only when the file was deleted and created
    again. So the descriptor is checked against the path on every flush and reopened when
    the inode changed, and a new WAL's directory entry is flushed too.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = Path(f"{db_path}-wal")
        self._fd: int | None = None
        self._inode: int | None = None

    def flush(self) -> None:
        """fdatasync the WAL (from a worker thread): its frames, and its size, are on disk."""
        try:
            inode = os.stat(self.path).st_ino
            if self._fd is None or inode != self._inode:
                self._reopen()
            assert self._fd is not None
            os.fdatasync(self._fd)
        except OSError as e:
            raise FlushFailed(e) from e

    def _reopen(self) -> None:
        self.close()
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self._fd, self._inode = fd, os.fstat(fd).st_ino
        # A WAL we have not seen may have just been created: make its name durable too.
        # (SQLite syncs the directory when it syncs a new WAL's header; this is cheap
        # insurance, paid once per WAL file, not per commit.)
        directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._inode = None


class WalSync:
    """The engine's flusher: rounds of parallel fdatasync over every WAL that committed.

    A transaction `begin`s before its commit and `end`s once it is durable. When it is the
    only one in flight (one busy Axon), the committing thread flushes its own WAL at once, as
    synchronous=FULL would, so a lone Axon pays no extra hop; otherwise it awaits `flush`,
    which joins the next round.
    """

    def __init__(self, threads: int = DEFAULT_SYNC_THREADS) -> None:
        self._threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="axons-fsync")
        self._waiting: dict[WalFile, asyncio.Future[None]] = {}
        self._round: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.rounds = 0
        self.flushes = 0

    def begin(self) -> bool:
        """A transaction is about to commit; True when it should flush its WAL itself."""
        alone = self._in_flight == 0 and self._round is None
        self._in_flight += 1
        return alone

    def end(self) -> None:
        self._in_flight -= 1

    def flush(self, wal: WalFile) -> asyncio.Future[None]:
        """Resolves once `wal` is flushed by a round that starts after this call."""
        future = self._waiting.get(wal)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[wal] = future
        if self._round is None:
            self._round = asyncio.get_running_loop().create_task(self._run_rounds())
        return future

    async def _run_rounds(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                wals = list(batch)
                lanes = min(self._threads, len(wals))
                outcomes = await asyncio.gather(
                    *(
                        loop.run_in_executor(self._pool, _flush_each, wals[i::lanes])
                        for i in range(lanes)
                    )
                )
                self.rounds += 1
                self.flushes += len(wals)
                for lane in outcomes:
                    for wal, error in lane:
                        _settle(batch[wal], error)
        finally:
            self._round = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _flush_each(wals: list[WalFile]) -> list[tuple[WalFile, FlushFailed | None]]:
    """One lane of a round (worker thread): each WAL's outcome, a failure kept to its own."""
    outcomes: list[tuple[WalFile, FlushFailed | None]] = []
    for wal in wals:
        try:
            wal.flush()
        except FlushFailed as e:
            outcomes.append((wal, e))
        else:
            outcomes.append((wal, None))
    return outcomes


def _settle(future: asyncio.Future[None], error: FlushFailed | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
