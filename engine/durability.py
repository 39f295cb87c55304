"""Group commit across Axons. Each Axon's writer commits without syncing (synchronous=NORMAL);
the engine's one `GroupCommit` gathers the transactions of every Axon that has writes queued,
commits them back to back (small ones on the event loop, large ones in a committer thread),
and a flusher thread makes whatever has committed durable with one flush before anyone is
answered:

- one transaction: `fdatasync` of its WAL, exactly the work of synchronous=FULL;
- several: one `syncfs` of their file system (Linux 5.8+, where it reports write-back
  errors), or else `fdatasync` of every WAL in parallel lanes.

Why this is as durable as synchronous=FULL, and what was measured against what:
docs/architecture.md, "Durability: group commit across Axons".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import platform
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

SYNC_LANES = 8  # concurrent fdatasync calls where syncfs is not used; best measured here
CHUNK = 256  # transactions committed at a time: the flusher starts on a batch's first part,
# and the event loop serves others between the chunks it commits itself


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
    """One Axon's transaction, staged on the event loop and committed unsynced."""

    wal: WalFile
    small: bool  # cheap enough to commit on the event loop itself

    def write(self, *, wait: bool) -> bool:
        """COMMIT the transaction (synchronous=NORMAL: no sync). With `wait` False (on the
        event loop) it never waits for a lock: it returns False, having written nothing, when
        another connection holds the file's write lock."""

    def settle(self, error: BaseException | None) -> None:
        """Event loop: the transaction is durable (None), or failed with `error`."""


class Source(Protocol):
    """An Axon with writes queued: asked for its next transaction when a batch forms."""

    def take_commit(self) -> Commit | None:
        """The next transaction to write, or None when there is nothing to write now."""


class GroupCommit:
    """The engine's committer: transactions of every Axon, committed back to back, and made
    durable together by a flusher thread.

    An Axon `schedule`s itself when it has writes queued and none in flight. On the next turn
    of the event loop (so callers answered by the last flush queue their writes first) each
    scheduled Axon stages one transaction. A small one (a few events) is committed right
    there on the event loop, a chunk at a time: a commit takes tens of microseconds, while
    handing each to a thread would cost a GIL switch per SQLite call, which is milliseconds
    when the event loop is busy. A large one, or one whose file another process has locked,
    goes to the committer thread. Whenever it is free, the flusher thread makes everything
    committed so far durable with one flush and hands it back to the event loop to answer.
    So staging, committing and syncing go on at once, each on its own part of the load. An
    Axon has at most one transaction in flight, so its answers stay in sequence order.
    """

    def __init__(self, *, syncfs: bool | None = None) -> None:
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="axons-commit")
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="axons-flush")
        self._lanes: ThreadPoolExecutor | None = None  # fdatasync lanes, when syncfs is not used
        self._syncfs = _syncfs_function() if syncfs is not False else None
        if syncfs and self._syncfs is None:
            raise RuntimeError(f"syncfs is not usable here: {why_no_syncfs()}")
        if self._syncfs is None:
            self._lanes = ThreadPoolExecutor(SYNC_LANES, thread_name_prefix="axons-fsync")
        self._lock = threading.Lock()  # guards the four below
        self._directories: dict[int, int] = {}  # device -> a directory fd for syncfs
        self._failed: dict[int, FlushFailed] = {}  # device -> the syncfs that failed on it
        self._committed: list[_Chunk] = []  # committed, waiting for the flusher
        self._flushing = False  # the flusher is at work; it takes what commits meanwhile
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: dict[Source, None] = {}
        self._forming = False
        self.batches = 0  # chunks committed
        self.rounds = 0  # flushes shared by several transactions
        self.flushes = 0  # WALs made durable by those shared flushes

    @property
    def flush_method(self) -> str:
        return "syncfs" if self._syncfs is not None else "fdatasync lanes"

    def schedule(self, source: Source) -> None:
        """Event loop: `source` has a transaction to write; it joins the next batch."""
        self._ready[source] = None
        if not self._forming:
            self._forming = True
            self._loop = loop = asyncio.get_running_loop()
            loop.call_soon(self._form)

    def _form(self) -> None:
        """Event loop: stage a transaction from every ready Axon; commit the small ones here
        and queue the rest for the committer thread."""
        self._forming = False
        sources, self._ready = self._ready, {}
        here: list[Commit] = []
        there: list[Commit] = []
        for source in sources:
            if (commit := source.take_commit()) is not None:
                (here if commit.small else there).append(commit)
        for i in range(0, len(there), CHUNK):
            self._committer.submit(self._commit, there[i : i + CHUNK])
        if here:
            self._commit_here(here)

    def _commit_here(self, commits: list[Commit]) -> None:
        """Event loop: commit a chunk without waiting for any lock, and pass it on to be
        flushed; a file locked by another process goes to the committer, which waits. The
        next chunk follows on the next turn of the loop, so nothing else waits long."""
        now, later = commits[:CHUNK], commits[CHUNK:]
        chunk = _Chunk([])
        try:
            locked = [commit for commit in now if not chunk.write(commit, wait=False)]
        except BaseException as e:  # interrupted: nobody here may be told "durable"
            for commit in commits:
                commit.settle(e)
            raise
        if locked:
            self._committer.submit(self._commit, locked)
        if chunk.commits:
            self._pass_on(chunk)
        if later:
            asyncio.get_running_loop().call_soon(self._commit_here, later)

    def _commit(self, commits: list[Commit]) -> None:
        """Committer thread: commit each transaction, then flush them: here, when the
        flusher is idle (one hot Axon: no second thread hop), else in the flusher's next
        round."""
        chunk = _Chunk([])
        try:
            for commit in commits:
                chunk.write(commit, wait=True)
        except BaseException as e:  # nobody in this chunk may be told "durable"
            chunk = _Chunk(commits)
            chunk.fail(e)
        if not self._pass_on(chunk, start=False):
            return
        self._flush_round()
        with self._lock:  # what committed meanwhile goes to the flusher
            if not self._committed:
                self._flushing = False
                return
        self._flusher.submit(self._flush)

    def _pass_on(self, chunk: _Chunk, *, start: bool = True) -> bool:
        """Event loop or committer: `chunk` is committed and waits for the next flush.
        True when no flush was under way: the flusher is started (`start`) or the caller
        must flush itself."""
        with self._lock:
            self._committed.append(chunk)
            if self._flushing:
                return False
            self._flushing = True
        if start:
            self._flusher.submit(self._flush)
        return True

    def _flush(self) -> None:
        """Flusher thread: flush rounds while anything is committed."""
        while self._flush_round():
            pass

    def _flush_round(self) -> bool:
        """Flush everything committed so far at once and send it to the event loop to be
        answered. False, with the flusher marked free, when nothing was committed."""
        with self._lock:
            chunks, self._committed = self._committed, []
            if not chunks:
                self._flushing = False
                return False
        try:
            shared = self._flush_chunks(chunks)
        except BaseException as e:  # the flush itself broke: nothing may count as durable
            shared = 0
            for chunk in chunks:
                chunk.fail(e)
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(self._settle, chunks, shared)
        return True

    def _flush_chunks(self, chunks: list[_Chunk]) -> int:
        """Flusher thread: make every written WAL durable; how many shared one flush (0 or 2+)."""
        written = [(chunk, i) for chunk in chunks for i in chunk.written]
        if len(written) == 1:
            chunk, i = written[0]
            chunk.outcomes[i] = _flushed(chunk.commits[i].wal.flush)
            return 0
        wals = [chunk.commits[i].wal for chunk, i in written]
        for (chunk, i), error in zip(written, self._flush_all(wals), strict=True):
            chunk.outcomes[i] = error
        return len(wals)

    def _settle(self, chunks: list[_Chunk], shared: int) -> None:
        """Event loop: answer each transaction's callers; their Axons go on to the next."""
        self.batches += len(chunks)
        if shared:
            self.rounds += 1
            self.flushes += shared
        for chunk in chunks:
            for commit, outcome in zip(chunk.commits, chunk.outcomes, strict=True):
                commit.settle(outcome)

    def _flush_all(self, wals: list[WalFile]) -> list[FlushFailed | None]:
        """Flusher thread: flush several WALs, one outcome each."""
        if self._syncfs is not None:
            failed = {device: self._syncfs_device(device) for device in {w.device for w in wals}}
            return [failed[w.device] for w in wals]
        assert self._lanes is not None
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
        with self._lock:
            if wal.device not in self._directories:
                directory = os.open(wal.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._directories[wal.device] = directory

    def _syncfs_device(self, device: int) -> FlushFailed | None:
        """One syncfs for the file system holding these WALs: every dirty page and inode
        on it, so each WAL's frames and size, reaches the disk, and the disk's cache is
        flushed. A failure cannot be tied to one file, so it is every WAL's; and since the
        failed write-back may have been of pages committed after this flush began (which the
        next syncfs would no longer report), every later flush on that file system fails
        too, until the engine restarts."""
        assert self._syncfs is not None
        with self._lock:
            fd, failed = self._directories.get(device), self._failed.get(device)
        if failed is not None:
            return failed
        try:
            if fd is None:
                raise OSError(errno.EBADF, f"no descriptor held on file system {device}")
            if self._syncfs(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"syncfs: {os.strerror(error)}")
        except OSError as e:
            with self._lock:
                self._failed[device] = FlushFailed(e)
            return self._failed[device]
        return None

    def close(self) -> None:
        """After every Axon has closed: stop the threads and let go of the descriptors."""
        self._committer.shutdown(wait=True)
        self._flusher.shutdown(wait=True)
        if self._lanes is not None:
            self._lanes.shutdown(wait=True)
        for fd in self._directories.values():
            os.close(fd)
        self._directories.clear()


class _Chunk:
    """Transactions committed together, and each one's outcome."""

    __slots__ = ("commits", "outcomes", "written")

    def __init__(self, commits: list[Commit]) -> None:
        self.commits = commits
        self.outcomes: list[BaseException | None] = [None] * len(commits)
        self.written: list[int] = []  # the ones that committed, for the flush

    def write(self, commit: Commit, *, wait: bool) -> bool:
        """Commit `commit` into this chunk; its failure is its own, kept as its outcome.
        False when the file was locked and `wait` False: nothing written, not added."""
        error: Exception | None = None
        try:
            if not commit.write(wait=wait):
                return False
        except Exception as e:
            error = e
        else:
            self.written.append(len(self.commits))
        self.commits.append(commit)
        self.outcomes.append(error)
        return True

    def fail(self, error: BaseException) -> None:
        self.outcomes = [error] * len(self.commits)
        self.written = []


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
