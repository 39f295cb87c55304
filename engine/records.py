"""Records: export an Axon as JSON Lines, import it as a new equal Axon, fork it at a past
sequence, and verify its hash chain.

The export format, one JSON object per line:
    {"type": "axon", "format": 1, "name", "metadata", "source_id", "at_sequence"}
    {"type": "event", "event": {sequence, timestamp_ms, origin, source, ...}}   ... in order
    {"type": "object", "name", "kind", "sql"}      the user's tables, indexes, views, triggers
    {"type": "row", "table", "rowid", "values"}     the user's rows as of `at_sequence`
    {"type": "history", "table", "columns", "values"}  change history up to `at_sequence`
Blobs are written as {"$base64": "..."}.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import apsw
import orjson
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr, ValidationError

from engine.budget import Budget
from engine.errors import AxonError, ErrorCode, InvalidInput
from engine.log import MAX_LABEL, WriteContext, chain_hash, check_draft
from engine.models import AxonView, Draft, VerifyReport
from engine.state import (
    MAX_SQL_LENGTH,
    STATE_SCHEMA,
    columns_of,
    create_object,
    from_readable,
    install_capture,
    quote,
    readable,
    schema_at,
    state_at,
)

FORMAT = 1
_EVENT_FIELDS = (
    "sequence",
    "timestamp_ms",
    "origin",
    "source",
    "event_type",
    "payload",
    "author",
    "idempotency_key",
    "hash",
)


def verify(conn: apsw.Connection, anchor: tuple[int, str] | None = None) -> VerifyReport:
    """Recompute the chain; name the first event whose hash or position is wrong.

    What an ok report proves: sequences run 1..N without a gap; each event's hash covers its
    content and its predecessor's hash, so no event was altered, inserted or removed before
    the tip without breaking the chain; and the log reaches the `anchor` (the sequence and
    hash the engine recorded in catalog.db after commits), so a tail cut off from the file
    is found. What it cannot prove: that nobody able to write both the Axon file and
    catalog.db rewrote them together, or that events committed after the last anchor (up to
    about a second before a crash) were not removed.
    """
    previous, expected, checked = "", 1, 0
    for row in conn.execute(
        f"SELECT {', '.join(_EVENT_FIELDS)} FROM axon_events ORDER BY sequence"
    ):
        seq, ts, origin, source, event_type, payload, author, key, stored = row
        if seq != expected:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_sequence=expected,
                reason=f"sequence {expected} is missing",
            )
        draft = Draft(event_type, payload, source, origin, key, author)
        computed = chain_hash(previous, seq, ts, draft)
        if computed != stored:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_sequence=seq,
                reason="hash does not match the event's content and its predecessor",
            )
        if anchor is not None and seq == anchor[0] and stored != anchor[1]:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_sequence=seq,
                reason="event differs from the one the catalog anchored at this sequence",
            )
        previous, expected, checked = stored, seq + 1, checked + 1
    if anchor is not None and anchor[0] > checked:
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_sequence=checked + 1,
            reason=f"the log ends at {checked} but the catalog anchored sequence {anchor[0]}: "
            "events were removed from its end",
        )
    return VerifyReport(ok=True, checked=checked)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    return value


def _decode(value: Any) -> Any:
    """A value of the export as SQLite stores it; anything else is refused, not guessed at."""
    if isinstance(value, dict) and set(value) == {"$base64"} and isinstance(value["$base64"], str):
        try:
            return base64.b64decode(value["$base64"], validate=True)
        except ValueError:
            pass
    elif (
        value is None
        or isinstance(value, str | float)
        or (isinstance(value, int) and -(1 << 63) <= value < (1 << 63))
    ):
        return value
    raise InvalidInput(
        f"the export holds a value SQLite cannot store: {value!r:.80}",
        code=ErrorCode.INVALID_EXPORT,
    )


def dump(view: AxonView, path: str, at_sequence: int) -> list[bytes]:
    """Every line of the export of the Axon at `path`, as of `at_sequence` (executor thread)."""
    return list(dump_lines(view, path, at_sequence))


def dump_lines(
    view: AxonView, path: str, at_sequence: int, budget: Budget | None = None
) -> Generator[bytes, None, None]:
    """The export line by line, from one consistent snapshot of the file, so an export of
    any size streams in bounded memory. Close the iterator to end it early.

    The state is rebuilt here, before the first line: a history that cannot be rebuilt
    (refused by the time-travel guard) is an error the caller can still answer cleanly."""
    state = state_at(path, at_sequence, budget)
    return _lines(view, path, at_sequence, state)


def _lines(
    view: AxonView, path: str, at_sequence: int, state: apsw.Connection
) -> Generator[bytes, None, None]:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        yield orjson.dumps(
            {
                "type": "axon",
                "format": FORMAT,
                "name": view.name,
                "metadata": view.metadata,
                "source_id": view.id,
                "at_sequence": at_sequence,
            }
        )
        conn.execute("BEGIN")  # one consistent snapshot of the file
        for row in conn.execute(
            f"SELECT {', '.join(_EVENT_FIELDS)} FROM axon_events WHERE sequence <= ? "
            "ORDER BY sequence",
            (at_sequence,),
        ):
            yield orjson.dumps(
                {"type": "event", "event": dict(zip(_EVENT_FIELDS, row, strict=True))}
            )
        objects = schema_at(conn, at_sequence)
        for name, kind, sql, _epoch in objects:
            yield orjson.dumps({"type": "object", "name": name, "kind": kind, "sql": sql})
        yield from _state_rows(state, objects)
        yield from _history_rows(conn, at_sequence)
        conn.execute("COMMIT")
    finally:
        conn.close()
        state.close()


def _state_rows(
    state: apsw.Connection, objects: list[tuple[str, str, str, int]]
) -> Iterator[bytes]:
    for name, kind, _sql, _epoch in objects:
        if kind != "table":
            continue
        columns = columns_of(state, name)
        cur = state.execute(f"SELECT rowid, {readable(columns)} FROM {quote(name)} ORDER BY rowid")
        for rowid, *values in cur:
            yield orjson.dumps(
                {
                    "type": "row",
                    "table": name,
                    "rowid": rowid,
                    "values": dict(zip(columns, from_readable(values, _encode), strict=True)),
                }
            )


def _history_rows(conn: apsw.Connection, at_sequence: int) -> Iterator[bytes]:
    if not conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE name = 'axon_schema_history'"
    ).fetchall():
        return
    columns = columns_of(conn, "axon_schema_history")
    for values in conn.execute(
        f"SELECT {readable(columns)} FROM axon_schema_history WHERE sequence <= ? ORDER BY id",
        (at_sequence,),
    ):
        yield orjson.dumps(
            {
                "type": "history",
                "table": "axon_schema_history",
                "values": from_readable(values, _encode),
            }
        )
    hist_tables = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND name LIKE 'axon\\_hist\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    for table in hist_tables:
        columns = columns_of(conn, table)
        cur = conn.execute(
            f"SELECT {readable(columns)} FROM {quote(table)} WHERE _ax_seq <= ? ORDER BY _ax_id",
            (at_sequence,),
        )
        for values in cur:
            yield orjson.dumps(
                {
                    "type": "history",
                    "table": table,
                    "columns": columns,
                    "values": from_readable(values, _encode),
                }
            )


Int64 = Annotated[int, Strict(), Field(ge=-(1 << 63), le=(1 << 63) - 1)]
_LINE = ConfigDict(strict=True, extra="ignore", frozen=True)


class EventLine(BaseModel):
    model_config = _LINE
    sequence: Int64
    timestamp_ms: Int64
    origin: str
    source: str
    event_type: str
    payload: str
    author: str | None = None
    idempotency_key: str | None = None
    hash: str

    def draft(self) -> Draft:
        return Draft(
            self.event_type,
            self.payload,
            self.source,
            self.origin,
            self.idempotency_key,
            self.author,
        )


class EventRecord(BaseModel):
    model_config = _LINE
    event: EventLine


class ObjectRecord(BaseModel):
    model_config = _LINE
    name: Annotated[str, Field(min_length=1, max_length=MAX_LABEL)]
    kind: Literal["table", "index", "view", "trigger"]
    sql: Annotated[str, Field(min_length=1, max_length=MAX_SQL_LENGTH)]


class RowRecord(BaseModel):
    model_config = _LINE
    table: str
    rowid: Int64
    values: dict[str, Any]


class HistoryRecord(BaseModel):
    model_config = _LINE
    table: str
    columns: list[str] | None = None
    values: list[Any]


class SchemaHistoryValues(BaseModel):
    """One row of axon_schema_history: (id, sequence, tbl, type, sql, epoch)."""

    model_config = ConfigDict(frozen=True)  # strict, but a JSON list may fill the tuple
    values: tuple[
        Int64,
        Int64,
        StrictStr,
        Literal["table", "index", "view", "trigger", "dropped"],
        StrictStr | None,
        Int64,
    ]


_RECORDS: dict[str, type[BaseModel]] = {
    "event": EventRecord,
    "object": ObjectRecord,
    "row": RowRecord,
    "history": HistoryRecord,
}
_HISTORY_KEYS = ("_ax_id", "_ax_seq", "_ax_op", "_ax_rowid")


@dataclass
class Parsed:
    header: dict[str, Any]
    events: list[EventLine] = field(default_factory=list)
    objects: list[ObjectRecord] = field(default_factory=list)
    rows: list[RowRecord] = field(default_factory=list)
    history: list[HistoryRecord] = field(default_factory=list)


def parse(lines: Any) -> Parsed:
    """Read and check an export before anything is written: every line's shape, every name,
    every value; the chain must verify. What passes can only create the user's own objects."""
    parsed: Parsed | None = None
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise _invalid(number, f"not JSON ({e})") from None
        kind = item.get("type") if isinstance(item, dict) else None
        if parsed is None:
            if kind != "axon" or item.get("format") != FORMAT:
                raise InvalidInput(
                    f"line 1 must be the Axon header of format {FORMAT}; is this an Axons export?",
                    code=ErrorCode.INVALID_EXPORT,
                )
            parsed = Parsed(header=item)
            continue
        _add_record(parsed, number, kind, item)
    if parsed is None:
        raise InvalidInput("the export is empty", code=ErrorCode.INVALID_EXPORT)
    _check_chain(parsed.events)
    _check_names(parsed)
    return parsed


def _invalid(number: int, problem: str) -> InvalidInput:
    return InvalidInput(f"line {number} of the export: {problem}", code=ErrorCode.INVALID_EXPORT)


def _add_record(parsed: Parsed, number: int, kind: Any, item: dict[str, Any]) -> None:
    model = _RECORDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise _invalid(number, f"unknown record type {kind!r:.40}")
    try:
        record: Any = model.model_validate(item)
        if isinstance(record, HistoryRecord):
            _check_history(record)
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(x) for x in problem["loc"])
        raise _invalid(number, f"{kind} {where}: {problem['msg']}") from None
    except InvalidInput as e:
        raise _invalid(number, e.message) from None
    if isinstance(record, EventRecord):
        parsed.events.append(record.event)
    elif isinstance(record, ObjectRecord):
        parsed.objects.append(record)
    elif isinstance(record, RowRecord):
        parsed.rows.append(record)
    else:
        parsed.history.append(record)


def _check_history(h: HistoryRecord) -> None:
    if h.table == "axon_schema_history":
        SchemaHistoryValues.model_validate({"values": h.values})
        return
    if not h.table.startswith("axon_hist_") or h.columns is None:
        raise InvalidInput(f"history for an unknown table {h.table!r:.80}")
    if not set(_HISTORY_KEYS) <= set(h.columns) or len(set(h.columns)) != len(h.columns):
        raise InvalidInput(f"history of {h.table!r:.80} lacks its bookkeeping columns")
    if len(h.values) != len(h.columns):
        raise InvalidInput(f"history of {h.table!r:.80} has {len(h.values)} values")


def _check_chain(events: list[EventLine]) -> None:
    previous = ""
    for expected, e in enumerate(events, 1):
        draft = e.draft()
        try:
            check_draft(draft, max_payload=1 << 62, system=True)
        except AxonError as problem:
            raise InvalidInput(
                f"event {expected} of the export is not a valid event: {problem.message}",
                code=ErrorCode.INVALID_EXPORT,
            ) from None
        if e.sequence != expected or chain_hash(previous, e.sequence, e.timestamp_ms, draft) != (
            e.hash
        ):
            raise InvalidInput(
                f"event {expected} of the export is altered or missing; refusing to import",
                code=ErrorCode.INVALID_EXPORT,
            )
        previous = e.hash


def _check_names(parsed: Parsed) -> None:
    """Objects are the user's (no engine or SQLite names, each once); rows go to them."""
    seen: set[str] = set()
    for o in parsed.objects:
        lowered = o.name.lower()
        if lowered.startswith(("axon_", "sqlite_")) or lowered in seen:
            raise InvalidInput(
                f"the export's {o.kind} {o.name!r:.80} is reserved or declared twice",
                code=ErrorCode.INVALID_EXPORT,
            )
        seen.add(lowered)
    tables = {o.name for o in parsed.objects if o.kind == "table"}
    for r in parsed.rows:
        if r.table not in tables:
            raise InvalidInput(
                f"the export has rows for {r.table!r:.80}, which it does not declare as a table",
                code=ErrorCode.INVALID_EXPORT,
            )


def load(ctx: WriteContext, parsed: Parsed) -> None:
    """Write a parsed export into a new, empty Axon (inside the writer's transaction). The
    schema is created object by object under the write guard; SQLite's refusals (a column
    that is not there, a name taken) become a clear error."""
    try:
        _load(ctx, parsed)
    except apsw.Error as e:
        raise InvalidInput(
            f"the export's state does not load: {e}", code=ErrorCode.INVALID_EXPORT
        ) from None
    except AxonError as e:  # the guard's refusals: the file is at fault, not the caller's scope
        if e.code == "invalid_export":
            raise
        raise InvalidInput(
            f"the export's state does not load: {e.message}", code=ErrorCode.INVALID_EXPORT
        ) from None


def _load(ctx: WriteContext, parsed: Parsed) -> None:
    conn = ctx.conn
    conn.executemany(
        f"INSERT INTO axon_events({', '.join(_EVENT_FIELDS)}) "
        f"VALUES ({', '.join('?' * len(_EVENT_FIELDS))})",
        [tuple(getattr(e, k) for k in _EVENT_FIELDS) for e in parsed.events],
    )
    if parsed.events:
        last = parsed.events[-1]
        ctx.tip.sequence, ctx.tip.hash, ctx.tip.timestamp_ms = (
            last.sequence,
            last.hash,
            last.timestamp_ms,
        )
    conn.execute(STATE_SCHEMA)
    tables = [o for o in parsed.objects if o.kind == "table"]
    for o in tables:
        create_object(conn, o.kind, o.name, o.sql)
    by_shape: dict[tuple[str, tuple[str, ...]], list[RowRecord]] = {}
    for r in parsed.rows:
        by_shape.setdefault((r.table, tuple(r.values)), []).append(r)
    for (name, columns), rows in by_shape.items():
        cols = "".join(", " + quote(c) for c in columns)
        conn.executemany(
            f"INSERT INTO {quote(name)}(rowid{cols}) VALUES (?{', ?' * len(columns)})",
            [(r.rowid, *(_decode(r.values[c]) for c in columns)) for r in rows],
        )
    for o in tables:
        install_capture(conn, o.name, fresh=False, sequence=0)
    for o in parsed.objects:
        if o.kind != "table":
            create_object(conn, o.kind, o.name, o.sql)
    conn.executemany(
        "INSERT INTO axon_captured VALUES (?, ?)", [(o.name, o.sql) for o in parsed.objects]
    )
    for h in parsed.history:
        if h.table == "axon_schema_history":
            conn.execute("INSERT INTO axon_schema_history VALUES (?,?,?,?,?,?)", h.values)
            continue
        assert h.columns is not None  # checked by parse
        _ensure_history_table(conn, h.table, h.columns)
        cols = ", ".join(quote(c) for c in h.columns)
        conn.execute(
            f"INSERT INTO {quote(h.table)}({cols}) VALUES ({', '.join('?' * len(h.columns))})",
            [_decode(v) for v in h.values],
        )


def _ensure_history_table(conn: apsw.Connection, table: str, columns: list[str]) -> None:
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({quote(table)})")}
    if not have:
        conn.execute(
            f"CREATE TABLE {quote(table)}(_ax_id INTEGER PRIMARY KEY, _ax_seq INTEGER NOT NULL, "
            "_ax_op TEXT NOT NULL, _ax_rowid INTEGER NOT NULL)"
        )
        have = {"_ax_id", "_ax_seq", "_ax_op", "_ax_rowid"}
    for c in columns:
        if c not in have:
            conn.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(c)}")
