"""Group commit across Axons. Each Axon's writer commits without syncing (synchronous=NORMAL);
the engine's one `GroupCommit` gathers the transactions of every Axon that has writes queued,
commits them back to back in one worker-thread call, and makes them durable with one flush
for the lot before anyone is answered:

- one transaction: `fdatasync` of its WAL, exactly the work of synchronous=FULL;
- several: one `syncfs` of their file system (Linux 5.8+, where it reports write-back
  errors), or else `fdatasync` of every WAL in parallel lanes.

Why this is as durable as synchronous=FULL, and what was measured against what:
docs/architecture.md, "Durability: group commit across Axons".
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import platform
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

SYNC_LANES = 8  # concurrent fdatasync calls where syncfs is not used; best measured here
BATCHES_IN_FLIGHT = 2  # batches committing or flushing at once; see `GroupCommit._form`
MIN_BATCH = 32  # ready transactions are split into batches no smaller than this


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
        self.device = os.stat(db_path.parent).st_dev  # the file system a syncfs must cover
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
        _fsync_directory(self.path.parent)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._inode = None


class Commit(Protocol):
    """One Axon's transaction, staged on the event loop and written in a worker thread."""

    wal: WalFile

    def write(self) -> None:
        """Worker thread: run and COMMIT the transaction (synchronous=NORMAL: no sync)."""

    def settle(self, error: BaseException | None) -> None:
        """Event loop: the transaction is durable (None), or failed with `error`."""


class Source(Protocol):
    """An Axon with writes queued: asked for its next transaction when a batch forms."""

    def take_commit(self) -> Commit | None:
        """The next transaction to write, or None when there is nothing to write now."""


class GroupCommit:
    """The engine's committer: batches of every Axon's ready transaction, one thread call
    and one flush per batch.

    An Axon `schedule`s itself when it has writes queued and none in flight. A batch forms
    on the next turn of the event loop (so callers woken by the previous batch queue their
    writes first), takes one transaction from every scheduled Axon, and goes to a worker
    thread that commits them back to back and then flushes. While one batch flushes, the
    next one commits; an Axon is in at most one batch, so its answers stay in sequence.
    """

    def __init__(self, executor: Executor, *, syncfs: bool | None = None) -> None:
        self._executor = executor
        self._lanes = ThreadPoolExecutor(SYNC_LANES, thread_name_prefix="axons-fsync")
        self._syncfs = _syncfs_function() if syncfs is not False else None
        if syncfs and self._syncfs is None:
            raise RuntimeError(f"syncfs is not usable here: {why_no_syncfs()}")
        self._directories: dict[int, int] = {}  # device -> a directory fd for syncfs
        self._directories_lock = threading.Lock()
        self._ready: dict[Source, None] = {}
        self._forming = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.rounds = 0  # flushes shared by several transactions
        self.flushes = 0  # WALs made durable by those shared flushes

    @property
    def flush_method(self) -> str:
        return "syncfs" if self._syncfs is not None else "fdatasync lanes"

    def schedule(self, source: Source) -> None:
        """Event loop: `source` has a transaction to write; it joins the next batch."""
        self._ready[source] = None
        self._kick()

    def _kick(self) -> None:
        if self._ready and not self._forming and len(self._in_flight) < BATCHES_IN_FLIGHT:
            self._forming = True
            asyncio.get_running_loop().call_soon(self._form)

    def _form(self) -> None:
        self._forming = False
        # Many ready Axons are split over the batches that may run at once, so the event
        # loop answers one batch and stages the next while others commit and flush.
        size = max(MIN_BATCH, -(-len(self._ready) // BATCHES_IN_FLIGHT))
        if len(self._ready) <= size:
            sources, self._ready = list(self._ready), {}
        else:
            sources = list(self._ready)[:size]
            for source in sources:
                del self._ready[source]
        commits = [c for s in sources if (c := s.take_commit()) is not None]
        if commits:
            batch = asyncio.get_running_loop().create_task(self._run(commits))
            self._in_flight.add(batch)
            batch.add_done_callback(self._in_flight.discard)
        self._kick()

    async def _run(self, commits: list[Commit]) -> None:
        loop = asyncio.get_running_loop()
        fatal: BaseException | None = None
        try:
            outcomes, shared = await loop.run_in_executor(self._executor, self._write, commits)
        except BaseException as e:  # the call itself failed: nobody may be told "durable"
            outcomes, shared, fatal = [e] * len(commits), 0, e
        self._in_flight.discard(asyncio.current_task())  # type: ignore[arg-type]
        self.batches += 1
        if shared:
            self.rounds += 1
            self.flushes += shared
        for commit, outcome in zip(commits, outcomes, strict=True):
            commit.settle(outcome)
        self._kick()
        if fatal is not None and not isinstance(fatal, Exception):
            raise fatal

    def _write(self, commits: list[Commit]) -> tuple[list[BaseException | None], int]:
        """Worker thread: commit each transaction, then flush every WAL that committed.
        Returns each one's outcome, and how many WALs shared one flush (0 or 2+)."""
        outcomes: list[BaseException | None] = []
        written: list[int] = []
        for i, commit in enumerate(commits):
            try:
                commit.write()
            except Exception as e:  # this Axon's failure is its own; the batch goes on
                outcomes.append(e)
            else:
                outcomes.append(None)
                written.append(i)
        if len(written) == 1:
            i = written[0]
            outcomes[i] = _flushed(commits[i].wal.flush)
            return outcomes, 0
        wals = [commits[i].wal for i in written]
        if wals:
            for i, error in zip(written, self._flush_all(wals), strict=True):
                outcomes[i] = error
        return outcomes, len(wals)

    def _flush_all(self, wals: list[WalFile]) -> list[FlushFailed | None]:
        """Worker thread: flush several WALs, one outcome each."""
        if self._syncfs is not None:
            devices = {w.device for w in wals}
            failed = {device: self._syncfs_device(device, wals) for device in devices}
            return [failed[w.device] for w in wals]
        lanes = min(SYNC_LANES, len(wals))
        parts = [wals[i::lanes] for i in range(lanes)]
        outcomes = dict(
            pair
            for lane in self._lanes.map(lambda part: [(w, _flushed(w.flush)) for w in part], parts)
            for pair in lane
        )
        return [outcomes[w] for w in wals]

    def watch(self, wal: WalFile) -> None:
        """Before an Axon's first commit (any thread): hold a descriptor on its file system,
        so every write-back error from then on is reported by that descriptor's `syncfs`
        (errors are tracked per descriptor from the moment it is opened)."""
        if self._syncfs is None:
            return
        with self._directories_lock:
            if wal.device not in self._directories:
                directory = os.open(wal.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._directories[wal.device] = directory

    def _syncfs_device(self, device: int, wals: list[WalFile]) -> FlushFailed | None:
        """One syncfs for the file system holding these WALs: every dirty page and inode
        on it, so each WAL's frames and size, reaches the disk, and the disk's cache is
        flushed. A failure cannot be tied to one file, so it is every WAL's."""
        assert self._syncfs is not None
        try:
            with self._directories_lock:
                fd = self._directories.get(device)
            if fd is None:
                raise OSError(errno.EBADF, f"no descriptor held on file system {device}")
            if self._syncfs(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"syncfs: {os.strerror(error)}")
        except OSError as e:
            return FlushFailed(e)
        return None

    def close(self) -> None:
        self._lanes.shutdown(wait=True)
        for fd in self._directories.values():
            os.close(fd)
        self._directories.clear()


def _flushed(flush: Callable[[], None]) -> FlushFailed | None:
    try:
        flush()
    except FlushFailed as e:
        return e
    return None


def _fsync_directory(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def why_no_syncfs() -> str | None:
    """None where syncfs can stand in for fdatasync of every WAL, else why not."""
    if platform.system() != "Linux":
        return f"syncfs is Linux-only (this is {platform.system()})"
    release = platform.release()
    try:
        major, minor = (int(part) for part in release.split(".")[:2])
    except ValueError:
        return f"cannot read the kernel version from {release!r}"
    if (major, minor) < (5, 8):  # before 5.8 syncfs did not report write-back errors
        return f"kernel {release} is older than 5.8, whose syncfs reports write-back errors"
    if ctypes.util.find_library("c") is None:
        return "no C library to call syncfs in"
    return None


def _syncfs_function() -> Callable[[int], int] | None:
    if why_no_syncfs() is not None:
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)  # releases the GIL
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs  # type: ignore[no-any-return]
