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
from collections.abc import Callable, Sequence
from typing import Any, Literal

import apsw

from engine.budget import Budget, StoreLimits
from engine.errors import (
    BatchFailed,
    ErrorCode,
    InvalidInput,
    PayloadTooLarge,
    ReadOnlyViolation,
    SqlError,
)
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
_RESERVED_COLUMN_PREFIX = "_ax_"
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
            on_table = action in (apsw.SQLITE_CREATE_INDEX, apsw.SQLITE_CREATE_TRIGGER)
            if _reserved(a1) or (on_table and _reserved(a2)):
                owned = a1 if _reserved(a1) else a2
                return f"{owned} belongs to the engine (names starting axon_ are reserved)"
            return None
        if action == apsw.SQLITE_CREATE_VTABLE:
            return "virtual tables are not supported in Axon state"
        if action in (apsw.SQLITE_TRANSACTION, apsw.SQLITE_SAVEPOINT):
            return "transactions are managed by the engine; use a batch for several statements"
        return "this statement is not allowed in Axon state"


_CREATE_ACTIONS = {
    "table": apsw.SQLITE_CREATE_TABLE,
    "index": apsw.SQLITE_CREATE_INDEX,
    "view": apsw.SQLITE_CREATE_VIEW,
    "trigger": apsw.SQLITE_CREATE_TRIGGER,
}
OBJECT_KINDS = frozenset(_CREATE_ACTIONS)
# What SQLite itself does while creating an object: record it in the schema, build an index.
_SCHEMA_UPKEEP = frozenset({apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE, apsw.SQLITE_REINDEX})


class _CreateGuard(_Guard):
    """The write guard, narrowed to creating one named object of one kind: what an export's
    schema lines (and time travel's schema history) may do, and nothing else."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(write=True)
        self.kind = kind
        self.name = name
        self.created = False

    def _check(
        self, action: int, a1: str | None, a2: str | None, db: str | None, trigger: str | None
    ) -> str | None:
        refusal = super()._check(action, a1, a2, db, trigger)
        if refusal is not None or action in _READ_ACTIONS:
            return refusal
        if action in (apsw.SQLITE_FUNCTION, apsw.SQLITE_PRAGMA):
            return None
        if action == _CREATE_ACTIONS.get(self.kind) and (a1 or "").lower() == self.name.lower():
            self.created = True
            return None
        if action in _SCHEMA_UPKEEP and (action == apsw.SQLITE_REINDEX or _schema_table(a1)):
            return None
        if self.kind == "table" and self._made_by_sqlite(action, a1, a2):
            return None
        return f"the {self.kind} {self.name} must be one CREATE {self.kind.upper()} statement"

    def _made_by_sqlite(self, action: int, a1: str | None, a2: str | None) -> bool:
        """A table's UNIQUE and PRIMARY KEY indexes, and AUTOINCREMENT's sqlite_sequence."""
        if action == apsw.SQLITE_CREATE_INDEX:
            return (a1 or "").startswith("sqlite_autoindex_") and a2 == self.name
        return action == apsw.SQLITE_CREATE_TABLE and a1 == "sqlite_sequence"


def _schema_table(name: str | None) -> bool:
    return name is not None and name.lower() in ("sqlite_master", "sqlite_schema")


def create_object(
    conn: apsw.Connection, kind: str, name: str, sql: str, budget: Budget | None = None
) -> None:
    """Create one schema object from stored SQL (an import, time travel) under the write
    guard: exactly one CREATE of this kind and name, in the main database, nothing else."""
    if kind not in OBJECT_KINDS:
        raise InvalidInput(
            f"object {name!r:.80} has kind {kind!r:.20}; expected one of "
            f"{', '.join(sorted(OBJECT_KINDS))}",
            code=ErrorCode.INVALID_OBJECT,
        )
    guard = _CreateGuard(kind, name)
    run_statement(conn, sql, write=True, budget=budget, guard=guard)
    if not guard.created:
        raise InvalidInput(
            f"the SQL of {kind} {name!r:.80} does not create it", code=ErrorCode.INVALID_OBJECT
        )


_INT64 = range(-(1 << 63), 1 << 63)


def _check_params(params: Sequence[Any] | None) -> tuple[Any, ...]:
    if params is None:
        return ()
    if not isinstance(params, list | tuple):
        raise InvalidInput("params must be a list of values", code=ErrorCode.INVALID_PARAMS)
    for p in params:
        if p is not None and not isinstance(p, str | int | float | bytes):
            raise InvalidInput(
                "params must be null, booleans, numbers or strings; encode objects as JSON text",
                code=ErrorCode.INVALID_PARAMS,
            )
        if isinstance(p, int) and p not in _INT64:
            raise InvalidInput(
                f"integer param {str(p)[:24]}... does not fit SQLite's 64-bit integers; "
                "send it as text or as a float",
                code=ErrorCode.INVALID_PARAMS,
            )
    return tuple(params)


def _check_sql(sql: object) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidInput("sql must be a non-empty statement", code=ErrorCode.INVALID_SQL)
    if len(sql) > MAX_SQL_LENGTH:
        raise InvalidInput(
            f"sql is longer than {MAX_SQL_LENGTH} characters", code=ErrorCode.INVALID_SQL
        )
    if "\x00" in sql:
        raise InvalidInput(
            "sql contains a NUL character; pass binary data as a param", code=ErrorCode.INVALID_SQL
        )
    return sql


def _wire_size(row: list[Any]) -> int:
    """About what a row costs in the JSON answer (blobs travel as base64)."""
    return sum(len(v) if isinstance(v, str) else 8 for v in row) + 2 * len(row)


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
    budget: Budget | None = None,
    guard: _Guard | None = None,
) -> QueryResult:
    """Run exactly one statement under the guard and the budget (time, value size, result
    bytes) and shape its result like Runloop's."""
    sql = _check_sql(sql)
    bindings = _check_params(params)
    budget = budget or Budget(StoreLimits())
    guard = guard or _Guard(write=write)
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
    size = 0
    try:
        with budget.applied(conn):
            cursor.execute(sql, bindings)
            try:
                description = cursor.get_description()
            except apsw.ExecutionCompleteError:
                description = ()
            for row in cursor:
                values = [_jsonable(v) for v in row]
                size += _wire_size(values)
                if len(rows) >= max_rows or size > budget.max_result_bytes:
                    limited = True
                    break
                rows.append(values)
    except apsw.ExecTraceAbort:
        raise InvalidInput(
            "one statement per query; send several as a batch", code=ErrorCode.MULTIPLE_STATEMENTS
        ) from None
    except apsw.AuthError:
        raise ReadOnlyViolation(guard.refusal or "statement not allowed") from None
    except apsw.ReadOnlyError:
        raise ReadOnlyViolation(
            "this query is read-only; writes need write mode (--write, or the sql-write scope)"
        ) from None
    except apsw.TooBigError:
        raise PayloadTooLarge(
            f"a value would be larger than {budget.limits.max_value_bytes} bytes, the engine's "
            "limit (AXONS_MAX_VALUE_BYTES); store big content elsewhere and keep a reference"
        ) from None
    except apsw.BindingsError as e:
        raise InvalidInput(
            f"params do not match the statement: {e}", code=ErrorCode.INVALID_PARAMS
        ) from None
    except UnicodeEncodeError:
        raise InvalidInput(
            "sql and params must be valid Unicode text (no lone surrogates)",
            code=ErrorCode.INVALID_SQL,
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(
            "the result holds text that is not valid UTF-8; select hex(column) or "
            "CAST(column AS BLOB) to read it, and UPDATE the row to repair it",
            code=ErrorCode.INVALID_TEXT,
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
        raise InvalidInput("statements must be a non-empty list", code=ErrorCode.INVALID_BATCH)
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
            raise InvalidInput("each statement is {sql, params?}", code=ErrorCode.INVALID_BATCH)
    return parsed


def write_statements(
    conn: apsw.Connection,
    statements: list[Statement],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    budget: Budget | None = None,
) -> list[QueryResult]:
    """Run statements inside the caller's transaction, capturing row changes as they happen.
    One budget covers them all: a batch gets the deadline of one statement.

    Raises BatchFailed on the first failure; the caller rolls the transaction back.
    """
    budget = budget or Budget(StoreLimits())
    results: list[QueryResult] = []
    text = TextCheck(conn)
    for i, st in enumerate(statements):
        version = _schema_version(conn)
        # The authorizer never sees a table's new name, so a rename into the engine's
        # namespace is caught by comparing names (RENAME is a keyword: it cannot be hidden).
        renames = isinstance(st.sql, str) and "rename" in st.sql.lower()
        reserved = _reserved_tables(conn) if renames else None
        try:
            results.append(
                run_statement(conn, st.sql, st.params, write=True, max_rows=max_rows, budget=budget)
            )
            if reserved is not None and _reserved_tables(conn) - reserved:
                raise ReadOnlyViolation("names starting axon_ are reserved for the engine")
            if _schema_version(conn) != version:
                sync_capture(conn)
            if results[-1].meta.changes:
                text.check()
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
    columns = columns_of(conn, name)
    _refuse_reserved_columns(name, columns)
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


def _refuse_reserved_columns(table: str, columns: list[str]) -> None:
    """The history table keeps its bookkeeping in `_ax_*` columns beside the user's: a user
    column of that name would be overwritten there, and time travel would show values that
    never existed."""
    reserved = [c for c in columns if c.lower().startswith(_RESERVED_COLUMN_PREFIX)]
    if reserved:
        raise InvalidInput(
            f"column {reserved[0]} of table {table}: names starting {_RESERVED_COLUMN_PREFIX} "
            "are reserved for the engine's change capture; rename the column",
            code=ErrorCode.RESERVED_NAME,
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


def state_at(path: str, sequence: int, budget: Budget | None = None) -> apsw.Connection:
    """A private scratch database holding the user's tables exactly as they were right after
    event `sequence`. Built from the change history; nothing is re-run. It lives in a
    temporary file that SQLite deletes on close, so a large state spills to disk instead of
    memory; the budget bounds the time it takes to build."""
    budget = budget or Budget(StoreLimits())
    mem = apsw.Connection("", flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)
    try:
        mem.execute("ATTACH ? AS src", (f"file:{path}?mode=ro",))
        with mem:  # one transaction: the history is read from one snapshot
            objects = schema_at(mem, sequence, "src")
            for name, kind, sql, epoch in objects:
                if kind == "table":
                    create_object(mem, kind, name, sql, budget)
                    _copy_rows_at(mem, name, sequence, epoch, budget)
            for name, kind, sql, _epoch in objects:
                if kind != "table":  # indexes, views and triggers once the rows are in
                    create_object(mem, kind, name, sql, budget)
        mem.execute("DETACH src")
    except BaseException:
        mem.close()
        raise
    return mem


def _copy_rows_at(
    mem: apsw.Connection, name: str, sequence: int, epoch: int, budget: Budget
) -> None:
    """Per row of table `name`, its newest version at `sequence` (after the table's epoch)."""
    columns = columns_of(mem, name)
    have = {row[1] for row in mem.execute(f"PRAGMA src.table_info({_hist(name)})")}
    picked = ", ".join(quote(c) if c in have else "NULL" for c in columns)
    cols = ", ".join(quote(c) for c in columns)
    with budget.applied(mem):
        mem.execute(
            f"INSERT INTO main.{quote(name)}(rowid{', ' if cols else ''}{cols}) "
            f"SELECT _ax_rowid{', ' if picked else ''}{picked} FROM src.{_hist(name)} "
            "WHERE _ax_id IN "
            f"(SELECT max(_ax_id) FROM src.{_hist(name)} WHERE _ax_seq <= ? AND _ax_id > ? "
            "GROUP BY _ax_rowid) AND _ax_op != 'D'",
            (sequence, epoch),
        )


def columns_of(conn: apsw.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({quote(table)})")]


def readable(columns: list[str]) -> str:
    """A select list that reads text as bytes, with a flag, per column. SQL can store text
    that is not valid UTF-8 (CAST(X'FF' AS TEXT)), which no Python string holds; read this
    way, one such row cannot make an export or a history read fail."""
    return ", ".join(
        f"typeof({q}) = 'text', CASE WHEN typeof({q}) = 'text' THEN CAST({q} AS BLOB) ELSE {q} END"
        for q in map(quote, columns)
    )


def from_readable(flat: Sequence[Any], encode: Callable[[Any], Any] = _jsonable) -> list[Any]:
    """The values a `readable` select list read; invalid UTF-8 bytes become U+FFFD."""
    return [
        raw.decode("utf-8", "replace") if is_text else encode(raw)
        for is_text, raw in zip(flat[::2], flat[1::2], strict=True)
    ]


class TextCheck:
    """Refuses a write that stores text that is not valid UTF-8 (SQL can make it, a client's
    params cannot): every row version a statement writes passes through change capture, so
    the check reads just those, since the last check."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.marks = self._marks()

    def _marks(self) -> dict[str, int]:
        tables = self.conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND name LIKE 'axon\\_hist\\_%' ESCAPE '\\'"
        ).fetchall()
        return {
            name: int(
                self.conn.execute(f"SELECT coalesce(max(_ax_id), 0) FROM {quote(name)}").fetchall()[
                    0
                ][0]
            )
            for (name,) in tables
        }

    def check(self) -> None:
        now = self._marks()
        for hist, mark in now.items():
            since = self.marks.get(hist, 0)
            if mark <= since:
                continue
            try:
                for _row in self.conn.execute(
                    f"SELECT * FROM {quote(hist)} WHERE _ax_id > ?", (since,)
                ):
                    pass
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"this writes text that is not valid UTF-8 into {hist[len('axon_hist_') :]}; "
                    "store bytes as a BLOB (CAST(... AS BLOB)) or valid text",
                    code=ErrorCode.INVALID_TEXT,
                ) from None
        self.marks = now


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
        names = columns_of(conn, "axon_hist_" + name)
        cur = conn.execute(
            f"SELECT {readable(names)} FROM {hist} WHERE _ax_seq = ? ORDER BY _ax_id", (sequence,)
        )
        for row in cur.fetchall():
            record = dict(zip(names, from_readable(row, lambda v: v), strict=True))
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
        f"SELECT {readable(names)} FROM {_hist(table)} "
        "WHERE _ax_rowid = ? AND _ax_id < ? AND _ax_id > ? ORDER BY _ax_id DESC LIMIT 1",
        (rowid, change_id, epoch),
    ):
        record = dict(zip(names, from_readable(row, lambda v: v), strict=True))
        if record["_ax_op"] == "D":
            return None
        return {k: _jsonable(v) for k, v in record.items() if not k.startswith("_ax_")}
    return None
