"""Ceilings: what bare SQLite (apsw) does on the same machine, in the same run, with the
engine's durability settings (WAL + synchronous=FULL) on a real file. No engine code runs
here except the schema text, so the ceiling has the same table and index as an Axon file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import getpass
import hashlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import apsw

from bench.harness import EVENT_TYPE, PAYLOAD, SOURCE, median, ms, percentile
from engine.log import ENGINE_SCHEMA

_INSERT = "INSERT INTO axon_events VALUES (?,?,?,?,?,?,?,?,?)"


def durable_connection(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def event_rows(n: int) -> list[tuple[Any, ...]]:
    """`n` rows shaped like the engine's: same columns, same payload, a 64-hex hash each."""
    author = getpass.getuser()
    ts = time.time_ns() // 1_000_000
    h = ""
    rows = []
    for seq in range(1, n + 1):
        h = hashlib.sha256(f"{h}{seq}".encode()).hexdigest()
        rows.append((seq, ts, "USER_EVENT", SOURCE, EVENT_TYPE, PAYLOAD, author, None, h))
    return rows


def insert_eps(
    directory: Path, rows: Sequence[tuple[Any, ...]], runs: int
) -> tuple[float, list[float]]:
    """Events per second of one transaction doing executemany of `rows` into a fresh
    axon_events table, commit (fsync) included; the median of `runs` fresh files."""
    rates = []
    for i in range(runs):
        conn = durable_connection(directory / f"ceiling-insert-{i}.db")
        try:
            conn.execute(ENGINE_SCHEMA)
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
            rates.append(len(rows) / (time.perf_counter() - started))
        finally:
            conn.close()
    return median(rates), rates


def insert_files_eps(directory: Path, rows_per_file: Sequence[int]) -> float:
    """Events per second of filling one fresh Axon-shaped file per entry of `rows_per_file`
    with that many rows, one transaction (and so one fsync) each, serially."""
    rows = event_rows(max(rows_per_file))
    seconds = 0.0
    for i, n in enumerate(rows_per_file):
        conn = durable_connection(directory / f"ceiling-file-{i}.db")
        try:
            conn.execute(ENGINE_SCHEMA)
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows[:n])
            conn.execute("COMMIT")
            seconds += time.perf_counter() - started
        finally:
            conn.close()
    return sum(rows_per_file) / seconds


def insert_rounds_eps(directory: Path, files: int, rows_per_txn: int, rounds: int) -> float:
    """Events per second of the many-Axons load at its own transaction size, bare: `files`
    fresh Axon-shaped files (WAL, synchronous=NORMAL); each round commits one transaction of
    `rows_per_txn` rows in every file, serially in one thread, then makes them all durable
    at once, with one `syncfs` of the file system (else `fdatasync` of every WAL in 8
    threads). No Python event loop, no hashing, no answers: only SQLite and the flush."""
    rows = event_rows(rows_per_txn * rounds)
    conns = []
    flush = _FlushAll(directory, [directory / f"ceiling-rounds-{i}.db-wal" for i in range(files)])
    try:
        for i in range(files):
            conn = apsw.Connection(str(directory / f"ceiling-rounds-{i}.db"))
            conns.append(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(ENGINE_SCHEMA)
        started = time.perf_counter()
        for r in range(rounds):
            batch = rows[r * rows_per_txn : (r + 1) * rows_per_txn]
            for conn in conns:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, batch)
                conn.execute("COMMIT")
            flush()
        return files * rows_per_txn * rounds / (time.perf_counter() - started)
    finally:
        for conn in conns:
            conn.close()
        flush.close()


class _FlushAll:
    """One flush of a directory's files: `syncfs` of its file system where the C library
    has it (Linux), else `fdatasync` of each of `paths` in 8 threads."""

    def __init__(self, directory: Path, paths: list[Path]) -> None:
        self._paths = paths
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._syncfs = getattr(libc, "syncfs", None)
        self._dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        self._pool = ThreadPoolExecutor(8)

    def __call__(self) -> None:
        if self._syncfs is not None:
            if self._syncfs(self._dir) != 0:
                raise OSError(ctypes.get_errno(), "syncfs failed")
            return
        list(self._pool.map(_fdatasync_each, [self._paths[i::8] for i in range(8)]))

    def close(self) -> None:
        os.close(self._dir)
        self._pool.shutdown()


def _fdatasync_each(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)


def commit_ms(directory: Path, commits: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of committing one small row: the price of one fsync."""
    conn = durable_connection(directory / "ceiling-commit.db")
    try:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        times = []
        for i in range(commits):
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
            conn.execute("COMMIT")
            times.append(ms(time.perf_counter() - started))
    finally:
        conn.close()
    return percentile(times, 50), percentile(times, 99)


def read_ms(path: Path, sql: str, runs: int) -> tuple[float, list[Any]]:
    """Median milliseconds of running `sql` and fetching every row, read-only, and the rows."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        times = []
        rows: list[Any] = []
        for _ in range(runs):
            started = time.perf_counter()
            rows = conn.execute(sql).fetchall()
            times.append(ms(time.perf_counter() - started))
    finally:
        conn.close()
    return median(times), rows
