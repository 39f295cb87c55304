"""Ceilings: what bare SQLite (apsw) does on the same machine, in the same run, with the
engine's durability settings (WAL + synchronous=FULL) on a real file. No engine code runs
here except the schema text, so the ceiling has the same table and index as an Axon file.
"""

from __future__ import annotations

import getpass
import hashlib
import time
from collections.abc import Sequence
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
