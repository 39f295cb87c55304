"""An Axon's own tables: SQL queries and atomic batches with Runloop's result shape, a read-only
guard no statement escapes, and row-level change capture that makes time travel possible.

Change capture: every user table `t` gets triggers that copy each new row version into
`axon_hist_t` together with the sequence that was latest when the change committed. The state
as of sequence N is then, per row, the newest version with a sequence <= N; no event or agent
is re-run to rebuild it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Any, Literal

import apsw

from engine.errors import BatchFailed, InvalidInput, ReadOnlyViolation, SqlError
from engine.models import Column, QueryMeta, QueryResult, RowChange, Statement

DEFAULT_MAX_ROWS = 10_000
MAX_SQL_LENGTH = 100_000

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS axon_captured(tbl TEXT PRIMARY KEY, sql TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS axon_schema_history(
    id INTEGER PRIMARY KEY,
    sequence INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    type TEXT NOT NULL,
    sql TEXT,
    epoch INTEGER NOT NULL DEFAULT 0
);
"""

_RESERVED_PREFIX = "axon_"  # SQLite itself guards sqlite_ names
_READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "collation_list",
    }
)
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})
_READ_ACTIONS = frozenset({apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_RECURSIVE})
# Actions whose first argument names the object written to.
_WRITE_ACTIONS = frozenset(
    {
        apsw.SQLITE_INSERT,
        apsw.SQLITE_UPDATE,
        apsw.SQLITE_DELETE,
        apsw.SQLITE_CREATE_TABLE,
        apsw.SQLITE_DROP_TABLE,
        apsw.SQLITE_CREATE_INDEX,
        apsw.SQLITE_DROP_INDEX,
        apsw.SQLITE_CREATE_TRIGGER,
        apsw.SQLITE_DROP_TRIGGER,
        apsw.SQLITE_CREATE_VIEW,
        apsw.SQLITE_DROP_VIEW,
    }
)


def _reserved(name: str | None) -> bool:
    return name is not None and name.lower().startswith(_RESERVED_PREFIX)


class _Guard:
    """An SQLite authorizer. It remembers why it refused, so the error can say so."""

    def __init__(self, *, write: bool) -> None:
        self.write = write
        self.refusal: str | None = None
        self.dropping: set[str] = set()  # tables this statement drops (with their triggers)

    def __call__(
        self, action: int, a1: str | None, a2: str | None, db: str | None, trigger: str | None
    ) -> int:
        reason = self._check(action, a1, a2, db, trigger)
        if reason is None:
            return apsw.SQLITE_OK
        self.refusal = self.refusal or reason
        return apsw.SQLITE_DENY

    def _check(
        self, action: int, a1: str | None, a2: str | None, db: str | None, trigger: str | None
    ) -> str | None:
        if action in _READ_ACTIONS:
            return None
        if action == apsw.SQLITE_FUNCTION:
            return f"function {a2}() is not allowed" if a2 in _DENIED_FUNCTIONS else None
        if action == apsw.SQLITE_PRAGMA:
            if a1 in _READ_PRAGMAS:
                return None
            return f"PRAGMA {a1} is not allowed; only schema-reading pragmas are"
        if action in (apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH):
            return "ATTACH, DETACH and VACUUM are not allowed; an Axon is one file"
        if not self.write:
            return (
                "this query is read-only; writes need write mode (--write, or the sql-write scope)"
            )
        if trigger is not None and trigger.startswith("axon_"):
            return None  # the engine's own change-capture triggers
        if action == apsw.SQLITE_ALTER_TABLE:
            return f"table {a2} belongs to the engine" if _reserved(a2) else None
        if action == apsw.SQLITE_REINDEX:
            return None  # CREATE INDEX builds its index this way; it changes no data
        if action == apsw.SQLITE_UPDATE and db == "temp" and a1 == "sqlite_temp_master":
            return None  # ALTER TABLE ... RENAME rewrites temp schema references too
        if action == apsw.SQLITE_DROP_TABLE and not _reserved(a1) and a1 is not None:
            self.dropping.add(a1)
        if action == apsw.SQLITE_DROP_TRIGGER and a2 in self.dropping and db == "main":
            return None  # the capture triggers go with the user's table they belong to
        if action in _WRITE_ACTIONS:
            if db is not None and db != "main":
                return "temporary objects are not allowed; create tables in the Axon"
            if _reserved(a1) or (
                action in (apsw.SQLITE_CREATE_INDEX, apsw.SQLITE_CREATE_TRIGGER) and _reserved(a2)
            ):
                return f"{a1} belongs to the engine (names starting axon_ are reserved)"
            return None
        if action == apsw.SQLITE_CREATE_VTABLE:
            return "virtual tables are not supported in Axon state"
        if action in (apsw.SQLITE_TRANSACTION, apsw.SQLITE_SAVEPOINT):
            return "transactions are managed by the engine; use a batch for several statements"
        return "this statement is not allowed in Axon state"


def _check_params(params: Sequence[Any] | None) -> tuple[Any, ...]:
    if params is None:
        return ()
    if not isinstance(params, list | tuple):
        raise InvalidInput("params must be a list of values", code="invalid_params")
    for p in params:
        if p is not None and not isinstance(p, str | int | float | bytes):
            raise InvalidInput(
                "params must be null, booleans, numbers or strings; encode objects as JSON text",
                code="invalid_params",
            )
    return tuple(params)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _value_type(value: Any) -> str:
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, bytes):
        return "BLOB"
    return "TEXT"


def run_statement(
    conn: apsw.Connection,
    sql: str,
    params: Sequence[Any] | None = None,
    *,
    write: bool,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> QueryResult:
    """Run exactly one statement under the guard and shape its result like Runloop's."""
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidInput("sql must be a non-empty statement", code="invalid_sql")
    if len(sql) > MAX_SQL_LENGTH:
        raise InvalidInput(f"sql is longer than {MAX_SQL_LENGTH} characters", code="invalid_sql")
    bindings = _check_params(params)
    guard = _Guard(write=write)
    statements = 0

    def one_statement(_cursor: apsw.Cursor, _sql: str, _bindings: Any) -> bool:
        nonlocal statements
        statements += 1
        return statements == 1

    before = conn.total_changes()
    started = time.perf_counter()
    conn.authorizer = guard
    cursor = conn.cursor()
    cursor.exec_trace = one_statement
    rows: list[list[Any]] = []
    limited = False
    try:
        cursor.execute(sql, bindings)
        try:
            description = cursor.get_description()
        except apsw.ExecutionCompleteError:
            description = ()
        for row in cursor:
            if len(rows) >= max_rows:
                limited = True
                break
            rows.append([_jsonable(v) for v in row])
    except apsw.ExecTraceAbort:
        raise InvalidInput(
            "one statement per query; send several as a batch", code="multiple_statements"
        ) from None
    except apsw.AuthError:
        raise ReadOnlyViolation(guard.refusal or "statement not allowed") from None
    except apsw.ReadOnlyError:
        raise ReadOnlyViolation(
            "this query is read-only; writes need write mode (--write, or the sql-write scope)"
        ) from None
    except apsw.BindingsError as e:
        raise InvalidInput(
            f"params do not match the statement: {e}", code="invalid_params"
        ) from None
    except UnicodeEncodeError:
        raise InvalidInput(
            "sql and params must be valid Unicode text (no lone surrogates)", code="invalid_sql"
        ) from None
    except apsw.Error as e:
        raise SqlError(f"{_sqlite_message(e)} (in: {sql.strip()[:120]})") from None
    finally:
        conn.authorizer = None
        cursor.close()
    columns = []
    for i, (name, decltype) in enumerate(description):
        declared = decltype or next((_value_type(r[i]) for r in rows if r[i] is not None), "")
        columns.append(Column(name=name, type=declared))
    return QueryResult(
        columns=columns,
        rows=rows,
        meta=QueryMeta(
            # conn.changes() leaves out the change-capture triggers' own rows
            changes=conn.changes() if conn.total_changes() != before else 0,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            rows_read_limit_reached=limited,
        ),
    )


def _sqlite_message(e: apsw.Error) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if text.startswith(type(e).__name__) and ": " in text else text


def parse_statements(statements: Sequence[Any]) -> list[Statement]:
    if not isinstance(statements, list | tuple) or not statements:
        raise InvalidInput("statements must be a non-empty list", code="invalid_batch")
    parsed = []
    for s in statements:
        if isinstance(s, Statement):
            parsed.append(s)
        elif isinstance(s, dict) and isinstance(s.get("sql"), str):
            # run_statement checks the params, with a clear error
            parsed.append(Statement.model_construct(sql=s["sql"], params=s.get("params") or []))
        elif isinstance(s, str):
            parsed.append(Statement(sql=s))
        else:
            raise InvalidInput("each statement is {sql, params?}", code="invalid_batch")
    return parsed


def write_statements(
    conn: apsw.Connection, statements: list[Statement], *, max_rows: int = DEFAULT_MAX_ROWS
) -> list[QueryResult]:
    """Run statements inside the caller's transaction, capturing row changes as they happen.

    Raises BatchFailed on the first failure; the caller rolls the transaction back.
    """
    results: list[QueryResult] = []
    for i, st in enumerate(statements):
        version = _schema_version(conn)
        # The authorizer never sees a table's new name, so a rename into the engine's
        # namespace is caught by comparing names (RENAME is a keyword: it cannot be hidden).
        renames = isinstance(st.sql, str) and "rename" in st.sql.lower()
        reserved = _reserved_tables(conn) if renames else None
        try:
            results.append(run_statement(conn, st.sql, st.params, write=True, max_rows=max_rows))
            if reserved is not None and _reserved_tables(conn) - reserved:
                raise ReadOnlyViolation("names starting axon_ are reserved for the engine")
            if _schema_version(conn) != version:
                sync_capture(conn)
        except (SqlError, InvalidInput, ReadOnlyViolation) as e:
            raise BatchFailed(i, e, results) from None
    return results


def _reserved_tables(conn: apsw.Connection) -> set[str]:
    return {
        name.lower()
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE name LIKE 'axon\\_%' ESCAPE '\\'"
        )
    }


def _schema_version(conn: apsw.Connection) -> int:
    return int(conn.execute("PRAGMA schema_version").fetchall()[0][0])


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _current_sequence(conn: apsw.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(sequence), 0) FROM axon_events").fetchall()[0][0])


def sync_capture(conn: apsw.Connection) -> None:
    """Bring the change-capture triggers and the schema history in line with the user's
    schema objects after DDL. Runs inside the writer's transaction, unguarded."""
    conn.execute(STATE_SCHEMA)
    sequence = _current_sequence(conn)
    objects = {
        name: (kind, sql)
        for kind, name, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'axon\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    }
    captured = dict(conn.execute("SELECT tbl, sql FROM axon_captured").fetchall())
    for name, (kind, sql) in objects.items():
        if captured.get(name) == sql:
            continue
        epoch = None if name in captured else _table_epoch(conn, name, kind)
        if epoch is None:
            epoch = _last_epoch(conn, name)
        if kind == "table":
            install_capture(conn, name, fresh=name not in captured, sequence=sequence)
        conn.execute(
            "INSERT INTO axon_schema_history(sequence, tbl, type, sql, epoch) VALUES (?,?,?,?,?)",
            (sequence, name, kind, sql, epoch),
        )
        conn.execute("INSERT OR REPLACE INTO axon_captured VALUES (?, ?)", (name, sql))
    for name in captured.keys() - objects.keys():
        conn.execute(
            "INSERT INTO axon_schema_history(sequence, tbl, type, sql, epoch) "
            "VALUES (?,?,?,NULL,0)",
            (sequence, name, "dropped"),
        )
        conn.execute("DELETE FROM axon_captured WHERE tbl = ?", (name,))


def _hist(name: str) -> str:
    return quote("axon_hist_" + name)


def _table_epoch(conn: apsw.Connection, name: str, kind: str) -> int | None:
    """For a table new to capture: history rows up to here belong to an earlier table of
    the same name and must not show through."""
    if kind != "table":
        return 0
    exists = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE name = ?", ("axon_hist_" + name,)
    ).fetchall()
    if not exists:
        return 0
    return int(conn.execute(f"SELECT coalesce(max(_ax_id), 0) FROM {_hist(name)}").fetchall()[0][0])


def _last_epoch(conn: apsw.Connection, name: str) -> int:
    for (epoch,) in conn.execute(
        "SELECT epoch FROM axon_schema_history WHERE tbl = ? ORDER BY id DESC LIMIT 1", (name,)
    ):
        return int(epoch)
    return 0


def install_capture(conn: apsw.Connection, name: str, *, fresh: bool, sequence: int) -> None:
    info = conn.execute(f"PRAGMA table_list({quote(name)})").fetchall()
    if info and info[0][4]:  # the "wr" (WITHOUT ROWID) flag
        raise SqlError(
            f"table {name} is WITHOUT ROWID; Axon state needs rowid tables for time travel"
        )
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({quote(name)})")]
    hist = _hist(name)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {hist}("
        "_ax_id INTEGER PRIMARY KEY, _ax_seq INTEGER NOT NULL, _ax_op TEXT NOT NULL, "
        "_ax_rowid INTEGER NOT NULL)"
    )
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS {quote('axon_hist_' + name + '_ax_seq')} ON {hist}(_ax_seq)"
    )
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({hist})")}
    had_columns = bool(have - {"_ax_id", "_ax_seq", "_ax_op", "_ax_rowid"})
    added = [col for col in columns if col not in have]
    for col in added:
        conn.execute(f"ALTER TABLE {hist} ADD COLUMN {quote(col)}")
    for (trigger,) in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? "
        "AND name LIKE 'axon\\_cc\\_%' ESCAPE '\\'",
        (name,),
    ).fetchall():
        conn.execute(f"DROP TRIGGER {quote(trigger)}")
    cols = ", ".join(quote(c) for c in columns)
    seq = "(SELECT coalesce(max(sequence), 0) FROM axon_events)"
    target = f"INSERT INTO {hist}(_ax_seq, _ax_op, _ax_rowid{', ' if cols else ''}{cols})"
    # The row as it is when captured, not NEW: a user's trigger may have changed it already
    # (SQLite promises no order among triggers), and the last version recorded must be right.
    now = f"rowid{', ' if cols else ''}{cols} FROM {quote(name)} WHERE rowid = NEW.rowid"
    conn.execute(
        f"CREATE TRIGGER {quote('axon_cc_' + name + '_i')} AFTER INSERT ON {quote(name)} BEGIN "
        f"{target} SELECT {seq}, 'I', {now}; END"
    )
    conn.execute(
        f"CREATE TRIGGER {quote('axon_cc_' + name + '_u')} AFTER UPDATE ON {quote(name)} BEGIN "
        f"INSERT INTO {hist}(_ax_seq, _ax_op, _ax_rowid) SELECT {seq}, 'D', OLD.rowid "
        "WHERE OLD.rowid IS NOT NEW.rowid; "
        f"{target} SELECT {seq}, 'U', {now}; END"
    )
    conn.execute(
        f"CREATE TRIGGER {quote('axon_cc_' + name + '_d')} AFTER DELETE ON {quote(name)} BEGIN "
        f"INSERT INTO {hist}(_ax_seq, _ax_op, _ax_rowid) VALUES ({seq}, 'D', OLD.rowid); END"
    )
    if fresh and cols:
        # Rows that exist before capture starts (a renamed table, an imported file).
        conn.execute(f"{target} SELECT ?, 'I', rowid, {cols} FROM {quote(name)}", (sequence,))
    elif added and had_columns:
        # A column added with a DEFAULT, or renamed: rows already have values for it that
        # their history lacks, so record their new version.
        valued = " OR ".join(f"{quote(c)} IS NOT NULL" for c in added)
        conn.execute(
            f"{target} SELECT ?, 'U', rowid, {cols} FROM {quote(name)} WHERE {valued}", (sequence,)
        )


def schema_at(
    conn: apsw.Connection, sequence: int, db: str = "main"
) -> list[tuple[str, str, str, int]]:
    """(name, type, create sql, epoch) of the user's tables, indexes, views and triggers as of
    `sequence`, in creation order. `db` names the attached database to read."""
    if not _schema_history_exists(conn, db):
        return []
    return [
        (name, kind, sql, epoch)
        for name, kind, sql, epoch in conn.execute(
            f"SELECT tbl, type, sql, epoch FROM {db}.axon_schema_history WHERE id IN "
            f"(SELECT max(id) FROM {db}.axon_schema_history WHERE sequence <= ? GROUP BY tbl) "
            "AND sql IS NOT NULL ORDER BY id",
            (sequence,),
        )
    ]


def state_at(path: str, sequence: int) -> apsw.Connection:
    """An in-memory database holding the user's tables exactly as they were right after
    event `sequence`. Built from the change history; nothing is re-run."""
    mem = apsw.Connection(":memory:", flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)
    mem.execute("ATTACH ? AS src", (f"file:{path}?mode=ro",))
    try:
        mem.execute("BEGIN")
        objects = schema_at(mem, sequence, "src")
        for name, kind, sql, epoch in objects:
            if kind != "table":
                continue
            mem.execute(sql)
            columns = [row[1] for row in mem.execute(f"PRAGMA main.table_info({quote(name)})")]
            have = {row[1] for row in mem.execute(f"PRAGMA src.table_info({_hist(name)})")}
            picked = ", ".join(quote(c) if c in have else "NULL" for c in columns)
            cols = ", ".join(quote(c) for c in columns)
            mem.execute(
                f"INSERT INTO main.{quote(name)}(rowid{', ' if cols else ''}{cols}) "
                f"SELECT _ax_rowid{', ' if picked else ''}{picked} FROM src.{_hist(name)} "
                "WHERE _ax_id IN "
                f"(SELECT max(_ax_id) FROM src.{_hist(name)} WHERE _ax_seq <= ? AND _ax_id > ? "
                "GROUP BY _ax_rowid) AND _ax_op != 'D'",
                (sequence, epoch),
            )
        for _name, kind, sql, _epoch in objects:
            if kind != "table":  # indexes, views and triggers once the rows are in
                mem.execute(sql)
        mem.execute("COMMIT")
    finally:
        mem.execute("DETACH src")
    return mem


def _schema_history_exists(conn: apsw.Connection, db: str = "main") -> bool:
    return bool(
        conn.execute(
            f"SELECT 1 FROM {db}.sqlite_schema WHERE name = 'axon_schema_history'"
        ).fetchall()
    )


def changes_at(conn: apsw.Connection, sequence: int) -> list[RowChange]:
    """The row changes made while `sequence` was the latest event, by table, in commit order."""
    if not _schema_history_exists(conn):
        return []
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT DISTINCT tbl FROM axon_schema_history WHERE type = 'table'"
        )
    ]
    found: list[tuple[int, RowChange]] = []
    for name in tables:
        hist = _hist(name)
        if not conn.execute(
            "SELECT 1 FROM sqlite_schema WHERE name = ?", ("axon_hist_" + name,)
        ).fetchall():
            continue
        names = [row[1] for row in conn.execute(f"PRAGMA table_info({hist})")]
        cur = conn.execute(f"SELECT * FROM {hist} WHERE _ax_seq = ? ORDER BY _ax_id", (sequence,))
        for row in cur.fetchall():
            record = dict(zip(names, row, strict=True))
            change_id, op, rowid = (
                record.pop("_ax_id"),
                record.pop("_ax_op"),
                record.pop("_ax_rowid"),
            )
            record.pop("_ax_seq")
            before = _previous_version(conn, name, names, rowid, change_id)
            after = None if op == "D" else {k: _jsonable(v) for k, v in record.items()}
            kind: Literal["insert", "update", "delete"] = (
                "delete" if op == "D" else "update" if before is not None else "insert"
            )
            found.append(
                (
                    change_id,
                    RowChange(
                        sequence=sequence,
                        table=name,
                        op=kind,
                        rowid=rowid,
                        before=before,
                        after=after,
                    ),
                )
            )
    return [change for _, change in sorted(found, key=lambda item: (item[1].table, item[0]))]


def _previous_version(
    conn: apsw.Connection, table: str, names: list[str], rowid: int, change_id: int
) -> dict[str, Any] | None:
    # History at or below the epoch belongs to an earlier table of the same name.
    epoch = conn.execute(
        "SELECT coalesce(max(epoch), 0) FROM axon_schema_history WHERE tbl = ? AND epoch < ?",
        (table, change_id),
    ).fetchall()[0][0]
    for row in conn.execute(
        f"SELECT * FROM {_hist(table)} WHERE _ax_rowid = ? AND _ax_id < ? AND _ax_id > ? "
        "ORDER BY _ax_id DESC LIMIT 1",
        (rowid, change_id, epoch),
    ):
        record = dict(zip(names, row, strict=True))
        if record["_ax_op"] == "D":
            return None
        return {k: _jsonable(v) for k, v in record.items() if not k.startswith("_ax_")}
    return None
