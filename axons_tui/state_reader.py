"""Reading an Axon's tables a page at a time, now or as of an event, through the public API.

The state inspector and the replay viewer browse tables that can hold millions of rows, so a
page is found by rowid (keyset paging: `rowid > last`, fast at any depth) and only views,
which have no rowid, fall back to OFFSET. The engine's own `axon_*` tables stay hidden, except
`axon_events`, the log itself, which a past state does not hold: it is read from the live
file up to the chosen sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.backend import Backend
from engine.models import QueryResult, RowChange
from engine.state import DEFAULT_MAX_ROWS

PAGE_ROWS = 200
MAX_ROWS = DEFAULT_MAX_ROWS  # the most rows one answer holds (the HTTP API's limit too)
EVENTS_TABLE = "axon_events"


@dataclass(frozen=True)
class TableRef:
    """A table (or view) the console can browse."""

    name: str
    has_rowid: bool = True

    @property
    def is_log(self) -> bool:
        return self.name == EVENTS_TABLE


@dataclass(frozen=True)
class Page:
    """Some consecutive rows of a table. With a rowid, the first column holds it."""

    table: TableRef
    at_sequence: int | None
    result: QueryResult
    first: int  # the 1-based position of the first row in the table
    total: int

    @property
    def rows(self) -> list[list[Any]]:
        return self.result.rows

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1

    @property
    def has_next(self) -> bool:
        return self.last < self.total

    @property
    def has_previous(self) -> bool:
        return self.first > 1

    def describe(self) -> str:
        """`items: rows 1-200 of 1,234,567`, as the status line says it."""
        if not self.rows:
            return f"{self.table.name}: no rows"
        return f"{self.table.name}: rows {self.first:,}-{self.last:,} of {self.total:,}"

    def brief(self) -> str:
        """`items 1-200 of 1,234,567`, for a pane's title."""
        if not self.rows:
            return f"{self.table.name} (empty)"
        return f"{self.table.name} {self.first:,}-{self.last:,} of {self.total:,}"


def changed_rowids(changes: Iterable[RowChange], table: TableRef, sequence: int) -> set[int]:
    """The rowids to mark in `table`: the rows the event wrote (for the log, the event)."""
    if table.is_log:
        return {sequence}
    return {c.rowid for c in changes if c.table == table.name and c.op != "delete"}


def quote(name: str) -> str:
    """An SQL identifier, quoted, whatever characters the table's name holds."""
    return '"' + name.replace('"', '""') + '"'


class StateReader:
    """One Axon's tables through `backend.query`: the list of tables and pages of rows.
    `at_sequence` None reads the state now; N reads it as it was right after event N."""

    def __init__(self, backend: Backend, axon_id: str) -> None:
        self.backend = backend
        self.axon_id = axon_id

    async def _query(
        self, sql: str, params: list[Any], at_sequence: int | None, max_rows: int = PAGE_ROWS
    ) -> QueryResult:
        return await self.backend.query(
            self.axon_id, sql, params, at_sequence=at_sequence, max_rows=max_rows
        )

    async def tables(self, at_sequence: int | None = None) -> list[TableRef]:
        """The Axon's own tables and views as of `at_sequence`, by name, then `axon_events`."""
        result = await self._query("PRAGMA table_list", [], at_sequence, max_rows=MAX_ROWS)
        names = [c.name for c in result.columns]
        found = []
        for row in result.rows:
            entry = dict(zip(names, row, strict=True))
            name = str(entry["name"])
            if entry["schema"] != "main" or name.lower().startswith(("sqlite_", "axon_")):
                continue
            found.append(TableRef(name, has_rowid=entry["type"] == "table" and not entry["wr"]))
        return [*sorted(found, key=lambda t: t.name.lower()), TableRef(EVENTS_TABLE)]

    async def typed_events(self, types: Sequence[str]) -> list[tuple[int, str]]:
        """(sequence, event_type) of every event of these types, oldest first, read as many
        answers as it takes (one holds at most MAX_ROWS rows)."""
        marks = ", ".join("?" * len(types))
        found: list[tuple[int, str]] = []
        while True:
            result = await self._query(
                f"SELECT sequence, event_type FROM {EVENTS_TABLE} WHERE sequence > ? "
                f"AND event_type IN ({marks}) ORDER BY sequence LIMIT ?",
                [found[-1][0] if found else 0, *types, MAX_ROWS],
                None,
                max_rows=MAX_ROWS,
            )
            found.extend((int(sequence), str(kind)) for sequence, kind in result.rows)
            if len(result.rows) < MAX_ROWS:
                return found

    async def first_page(self, table: TableRef, at_sequence: int | None) -> Page:
        if not table.has_rowid:
            total = await self.count(table, at_sequence)
            return await self._offset(table, at_sequence, 0, total)
        return await self._seek(table, at_sequence, after=None)

    async def last_page(self, table: TableRef, at_sequence: int | None) -> Page:
        total = await self.count(table, at_sequence)
        if not table.has_rowid:
            return await self._offset(table, at_sequence, max(0, total - PAGE_ROWS), total)
        where, params = self._bounds(table, at_sequence)
        result = await self._query(
            f"SELECT rowid AS rowid, * FROM {quote(table.name)}{where} ORDER BY rowid DESC LIMIT ?",
            [*params, PAGE_ROWS],
            self._state_at(table, at_sequence),
        )
        result = _reversed(result)
        return Page(table, at_sequence, result, max(1, total - len(result.rows) + 1), total)

    async def page_from(self, table: TableRef, at_sequence: int | None, rowid: int) -> Page:
        """The page that starts at `rowid` (or the next row after it): where a change is."""
        if not table.has_rowid:
            return await self.first_page(table, at_sequence)
        return await self._seek(table, at_sequence, after=rowid - 1)

    async def reread(self, page: Page) -> Page:
        """The same place in the table, read again: what changed there since, a new total."""
        if not page.rows:
            return await self.first_page(page.table, page.at_sequence)
        if not page.table.has_rowid:
            total = await self.count(page.table, page.at_sequence)
            return await self._offset(page.table, page.at_sequence, page.first - 1, total)
        return await self._seek(page.table, page.at_sequence, after=page.rows[0][0] - 1)

    async def next_page(self, page: Page) -> Page:
        if not page.has_next:
            return page
        if not page.table.has_rowid:
            return await self._offset(page.table, page.at_sequence, page.last, page.total)
        return await self._forward(
            page.table, page.at_sequence, page.rows[-1][0], page.last + 1, page.total
        )

    async def previous_page(self, page: Page) -> Page:
        if not page.has_previous:
            return page
        start = max(1, page.first - PAGE_ROWS)
        if not page.table.has_rowid or not page.rows:
            return await self._offset(page.table, page.at_sequence, start - 1, page.total)
        where, params = self._bounds(page.table, page.at_sequence, before=page.rows[0][0])
        result = await self._query(
            f"SELECT rowid AS rowid, * FROM {quote(page.table.name)}{where} "
            "ORDER BY rowid DESC LIMIT ?",
            [*params, PAGE_ROWS],
            self._state_at(page.table, page.at_sequence),
        )
        result = _reversed(result)
        return replace(page, result=result, first=max(1, page.first - len(result.rows)))

    async def count(self, table: TableRef, at_sequence: int | None) -> int:
        where, params = self._bounds(table, at_sequence)
        result = await self._query(
            f"SELECT {_size(table)} FROM {quote(table.name)}{where}",
            params,
            self._state_at(table, at_sequence),
        )
        return int(result.rows[0][0])

    async def changes(self, sequence: int) -> list[RowChange]:
        """The rows event `sequence` changed (none for sequence 0: the state before events)."""
        if sequence < 1:
            return []
        return await self.backend.changes(self.axon_id, sequence)

    async def _seek(self, table: TableRef, at_sequence: int | None, after: int | None) -> Page:
        """The rows after rowid `after` (None: from the top), the table's size and how many
        rows come before them, in one query: a past state is rebuilt once per query, so one
        query instead of three makes a replay step about three times faster."""
        name = quote(table.name)
        where_all, all_params = self._bounds(table, at_sequence)
        before_params: list[Any] = []
        if after is None:
            before_sql = "0"
        else:
            where_before, before_params = self._bounds(table, at_sequence, up_to=after)
            before_sql = f"(SELECT {_size(table)} FROM {name}{where_before})"
        where_page, page_params = self._bounds(table, at_sequence, after=after)
        result = await self._query(
            f"SELECT (SELECT {_size(table)} FROM {name}{where_all}), {before_sql}, "
            f"rowid AS rowid, * FROM {name}{where_page} ORDER BY rowid LIMIT ?",
            [*all_params, *before_params, *page_params, PAGE_ROWS],
            self._state_at(table, at_sequence),
        )
        rows = result.model_copy(
            update={"columns": result.columns[2:], "rows": [row[2:] for row in result.rows]}
        )
        if not result.rows:  # nothing from there on: no row carried the counts
            total = await self.count(table, at_sequence)
            return Page(table, at_sequence, rows, total + 1, total)
        total, before = int(result.rows[0][0]), int(result.rows[0][1])
        return Page(table, at_sequence, rows, before + 1, total)

    async def _forward(
        self, table: TableRef, at_sequence: int | None, after: Any, first: int, total: int
    ) -> Page:
        where, params = self._bounds(table, at_sequence, after=after)
        result = await self._query(
            f"SELECT rowid AS rowid, * FROM {quote(table.name)}{where} ORDER BY rowid LIMIT ?",
            [*params, PAGE_ROWS],
            self._state_at(table, at_sequence),
        )
        return Page(table, at_sequence, result, first, total)

    async def _offset(
        self, table: TableRef, at_sequence: int | None, offset: int, total: int
    ) -> Page:
        """A page of a view: it has no rowid to seek by (Axon tables all have one)."""
        result = await self._query(
            f"SELECT * FROM {quote(table.name)} LIMIT ? OFFSET ?",
            [PAGE_ROWS, offset],
            self._state_at(table, at_sequence),
        )
        return Page(table, at_sequence, result, offset + 1, total)

    @staticmethod
    def _state_at(table: TableRef, at_sequence: int | None) -> int | None:
        """Where to read: the past state for the user's tables; the live file for the log,
        which no past state holds (`_bounds` cuts it at the sequence instead)."""
        return None if table.is_log else at_sequence

    @staticmethod
    def _bounds(
        table: TableRef,
        at_sequence: int | None,
        *,
        after: Any = None,
        before: Any = None,
        up_to: Any = None,
    ) -> tuple[str, list[Any]]:
        """The WHERE clause of a keyset page, and its parameters."""
        clauses, params = [], []
        for bound, clause in ((after, "rowid > ?"), (before, "rowid < ?"), (up_to, "rowid <= ?")):
            if bound is not None:
                clauses.append(clause)
                params.append(bound)
        if table.is_log and at_sequence is not None:
            clauses.append("sequence <= ?")
            params.append(at_sequence)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _size(table: TableRef) -> str:
    """How many rows, as SQL. The log's sequences are gapless from 1 (contract §3), so its
    count is its highest sequence: one index seek, not a scan of millions of events."""
    return "coalesce(max(sequence), 0)" if table.is_log else "count(*)"


def _reversed(result: QueryResult) -> QueryResult:
    return result.model_copy(update={"rows": result.rows[::-1]})
