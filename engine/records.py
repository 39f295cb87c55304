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
from dataclasses import dataclass, field
from typing import Any

import apsw
import orjson

from engine.errors import InvalidInput
from engine.log import WriteContext, chain_hash
from engine.models import AxonView, Draft, VerifyReport
from engine.state import STATE_SCHEMA, install_capture, quote, schema_at, state_at

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


def verify(conn: apsw.Connection) -> VerifyReport:
    """Recompute the chain; name the first event whose hash or position is wrong."""
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
        previous, expected, checked = stored, seq + 1, checked + 1
    return VerifyReport(ok=True, checked=checked)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "$base64" in value:
        return base64.b64decode(value["$base64"])
    return value


def dump(view: AxonView, path: str, at_sequence: int) -> list[bytes]:
    """Every line of the export of the Axon at `path`, as of `at_sequence` (executor thread)."""
    lines = [
        orjson.dumps(
            {
                "type": "axon",
                "format": FORMAT,
                "name": view.name,
                "metadata": view.metadata,
                "source_id": view.id,
                "at_sequence": at_sequence,
            }
        )
    ]
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.execute("BEGIN")  # one consistent snapshot of the file
        for row in conn.execute(
            f"SELECT {', '.join(_EVENT_FIELDS)} FROM axon_events WHERE sequence <= ? "
            "ORDER BY sequence",
            (at_sequence,),
        ):
            lines.append(
                orjson.dumps({"type": "event", "event": dict(zip(_EVENT_FIELDS, row, strict=True))})
            )
        objects = schema_at(conn, at_sequence)
        for name, kind, sql, _epoch in objects:
            lines.append(orjson.dumps({"type": "object", "name": name, "kind": kind, "sql": sql}))
        lines.extend(_state_rows(path, at_sequence, objects))
        lines.extend(_history_rows(conn, at_sequence))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return lines


def _state_rows(
    path: str, at_sequence: int, objects: list[tuple[str, str, str, int]]
) -> list[bytes]:
    mem = state_at(path, at_sequence)
    try:
        out = []
        for name, kind, _sql, _epoch in objects:
            if kind != "table":
                continue
            cur = mem.execute(f"SELECT rowid, * FROM {quote(name)} ORDER BY rowid")
            try:
                columns = [d[0] for d in cur.get_description()][1:]
            except apsw.ExecutionCompleteError:  # apsw: an empty result has no description
                continue
            for rowid, *values in cur:
                out.append(
                    orjson.dumps(
                        {
                            "type": "row",
                            "table": name,
                            "rowid": rowid,
                            "values": dict(zip(columns, map(_encode, values), strict=True)),
                        }
                    )
                )
        return out
    finally:
        mem.close()


def _history_rows(conn: apsw.Connection, at_sequence: int) -> list[bytes]:
    if not conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE name = 'axon_schema_history'"
    ).fetchall():
        return []
    out = []
    cur = conn.execute(
        "SELECT id, sequence, tbl, type, sql, epoch FROM axon_schema_history WHERE sequence <= ? "
        "ORDER BY id",
        (at_sequence,),
    )
    for values in cur:
        out.append(
            orjson.dumps(
                {"type": "history", "table": "axon_schema_history", "values": list(values)}
            )
        )
    hist_tables = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND name LIKE 'axon\\_hist\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    for table in hist_tables:
        cur = conn.execute(
            f"SELECT * FROM {quote(table)} WHERE _ax_seq <= ? ORDER BY _ax_id", (at_sequence,)
        )
        try:
            columns = [d[0] for d in cur.get_description()]
        except apsw.ExecutionCompleteError:  # no rows
            continue
        for values in cur:
            out.append(
                orjson.dumps(
                    {
                        "type": "history",
                        "table": table,
                        "columns": columns,
                        "values": [_encode(v) for v in values],
                    }
                )
            )
    return out


@dataclass
class Parsed:
    header: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def parse(lines: Any) -> Parsed:
    """Read and check an export before anything is written; the chain must verify."""
    parsed: Parsed | None = None
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, str):
            raw = raw.encode()
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"line {number} is not JSON ({e})", code="invalid_export") from None
        kind = item.get("type") if isinstance(item, dict) else None
        if parsed is None:
            if kind != "axon" or item.get("format") != FORMAT:
                raise InvalidInput(
                    f"line 1 must be the Axon header of format {FORMAT}; is this an Axons export?",
                    code="invalid_export",
                )
            parsed = Parsed(header=item)
            continue
        bucket = {
            "event": parsed.events,
            "object": parsed.objects,
            "row": parsed.rows,
            "history": parsed.history,
        }.get(kind)  # type: ignore[arg-type]
        if bucket is None:
            raise InvalidInput(
                f"line {number}: unknown record type {kind!r}", code="invalid_export"
            )
        bucket.append(item)
    if parsed is None:
        raise InvalidInput("the export is empty", code="invalid_export")
    _check_chain(parsed.events)
    return parsed


def _check_chain(events: list[dict[str, Any]]) -> None:
    previous = ""
    for expected, item in enumerate(events, 1):
        e: Any = item.get("event")
        try:
            seq = e["sequence"]
            draft = Draft(
                e["event_type"],
                e["payload"],
                e["source"],
                e["origin"],
                e.get("idempotency_key"),
                e.get("author"),
            )
            ok = (
                seq == expected and chain_hash(previous, seq, e["timestamp_ms"], draft) == e["hash"]
            )
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise InvalidInput(
                f"event {expected} of the export is altered or missing; refusing to import",
                code="invalid_export",
            )
        previous = e["hash"]


def load(ctx: WriteContext, parsed: Parsed) -> None:
    """Write a parsed export into a new, empty Axon (inside the writer's transaction)."""
    conn = ctx.conn
    conn.executemany(
        f"INSERT INTO axon_events({', '.join(_EVENT_FIELDS)}) "
        f"VALUES ({', '.join('?' * len(_EVENT_FIELDS))})",
        [tuple(item["event"][k] for k in _EVENT_FIELDS) for item in parsed.events],
    )
    if parsed.events:
        last = parsed.events[-1]["event"]
        ctx.tip.sequence, ctx.tip.hash, ctx.tip.timestamp_ms = (
            last["sequence"],
            last["hash"],
            last["timestamp_ms"],
        )
    conn.execute(STATE_SCHEMA)
    tables = [o for o in parsed.objects if o["kind"] == "table"]
    for o in tables:
        conn.execute(o["sql"])
    by_table: dict[str, list[dict[str, Any]]] = {}
    for r in parsed.rows:
        by_table.setdefault(r["table"], []).append(r)
    for name, rows in by_table.items():
        columns = list(rows[0]["values"])
        cols = "".join(", " + quote(c) for c in columns)
        conn.executemany(
            f"INSERT INTO {quote(name)}(rowid{cols}) VALUES (?{', ?' * len(columns)})",
            [(r["rowid"], *(_decode(r["values"][c]) for c in columns)) for r in rows],
        )
    for o in tables:
        install_capture(conn, o["name"], fresh=False, sequence=0)
    for o in parsed.objects:
        if o["kind"] != "table":
            conn.execute(o["sql"])
    conn.executemany(
        "INSERT INTO axon_captured VALUES (?, ?)", [(o["name"], o["sql"]) for o in parsed.objects]
    )
    for h in parsed.history:
        table = h["table"]
        if table == "axon_schema_history":
            conn.execute("INSERT INTO axon_schema_history VALUES (?,?,?,?,?,?)", h["values"])
            continue
        if not table.startswith("axon_hist_"):
            raise InvalidInput(f"history for an unknown table {table!r}", code="invalid_export")
        _ensure_history_table(conn, table, h["columns"])
        cols = ", ".join(quote(c) for c in h["columns"])
        conn.execute(
            f"INSERT INTO {quote(table)}({cols}) VALUES ({', '.join('?' * len(h['columns']))})",
            [_decode(v) for v in h["values"]],
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
