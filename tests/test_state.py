"""An Axon's SQL state: Runloop's result shape, atomic batches, parameters, and a read-only
guard that no statement gets around (the file stays byte-identical), plus the write-mode
rules that keep the engine's own tables out of reach."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from engine import AxonError, Engine
from engine.state import BatchFailed
from tests.helpers import file_digest, message

ROWS = [(1, "one", 0.5, b"\x00\x01"), (2, "two", None, None), (3, "three", -1e-300, b"\xff")]


async def make_state(engine: Engine) -> str:
    """An Axon with a table of a few rows and a couple of events."""
    axon_id = (await engine.create_axon("state")).id
    await engine.publish(axon_id, message("start"))
    await engine.query(axon_id, "CREATE TABLE t(a INTEGER, b TEXT, c REAL, d BLOB, e)", write=True)
    await engine.query(axon_id, "CREATE INDEX t_a ON t(a)", write=True)
    for row in ROWS:
        await engine.query(
            axon_id, "INSERT INTO t(a, b, c, d) VALUES (?, ?, ?, ?)", list(row), write=True
        )
    await engine.publish(axon_id, message("rows in"))
    return axon_id


async def snapshot(engine: Engine, axon_id: str) -> tuple:
    """Everything a refused statement must leave alone: log, rows, schema."""
    events = [e.to_dict() for e in await engine.read_events(axon_id)]
    rows = (await engine.query(axon_id, "SELECT rowid, * FROM t ORDER BY rowid")).rows
    schema = (
        await engine.query(axon_id, "SELECT type, name, sql FROM sqlite_schema ORDER BY name")
    ).rows
    return events, rows, schema


# -- result shape --------------------------------------------------------------------------


async def test_a_query_result_has_declared_types_rows_and_meta(engine: Engine) -> None:
    axon_id = await make_state(engine)
    result = await engine.query(axon_id, "SELECT a, b, c, d, e FROM t ORDER BY a")
    assert [(c.name, c.type) for c in result.columns] == [
        ("a", "INTEGER"),
        ("b", "TEXT"),
        ("c", "REAL"),
        ("d", "BLOB"),
        ("e", ""),
    ]
    assert result.rows == [
        [1, "one", 0.5, base64.b64encode(b"\x00\x01").decode(), None],
        [2, "two", None, None, None],
        [3, "three", -1e-300, base64.b64encode(b"\xff").decode(), None],
    ]
    assert result.meta.changes == 0
    assert result.meta.duration_ms >= 0
    assert result.meta.rows_read_limit_reached is False


async def test_expression_columns_get_the_type_of_their_values(engine: Engine) -> None:
    axon_id = await make_state(engine)
    result = await engine.query(
        axon_id, "SELECT count(*) AS n, 'x' AS s, 1.5 AS r, NULL AS z FROM t"
    )
    assert [(c.name, c.type) for c in result.columns] == [
        ("n", "INTEGER"),
        ("s", "TEXT"),
        ("r", "REAL"),
        ("z", ""),
    ]
    assert result.rows == [[3, "x", 1.5, None]]


async def test_max_rows_cuts_the_result_and_says_so(engine: Engine) -> None:
    axon_id = await make_state(engine)
    cut = await engine.query(axon_id, "SELECT a FROM t ORDER BY a", max_rows=2)
    assert cut.rows == [[1], [2]] and cut.meta.rows_read_limit_reached is True
    whole = await engine.query(axon_id, "SELECT a FROM t ORDER BY a", max_rows=3)
    assert whole.rows == [[1], [2], [3]] and whole.meta.rows_read_limit_reached is False


async def test_meta_changes_counts_the_rows_a_write_touched(engine: Engine) -> None:
    axon_id = await make_state(engine)
    inserted = await engine.query(axon_id, "INSERT INTO t(a) VALUES (10), (11), (12)", write=True)
    assert inserted.meta.changes == 3
    updated = await engine.query(axon_id, "UPDATE t SET b = 'big' WHERE a >= 10", write=True)
    assert updated.meta.changes == 3
    deleted = await engine.query(axon_id, "DELETE FROM t WHERE a = 11", write=True)
    assert deleted.meta.changes == 1
    nothing = await engine.query(axon_id, "DELETE FROM t WHERE a = 999", write=True)
    assert nothing.meta.changes == 0
    read = await engine.query(axon_id, "SELECT * FROM t", write=True)
    assert read.meta.changes == 0 and len(read.rows) == 5
    created = await engine.query(axon_id, "CREATE TABLE u(x)", write=True)
    assert created.meta.changes == 0 and created.columns == [] and created.rows == []


# -- parameters ----------------------------------------------------------------------------


async def test_params_bind_in_order(engine: Engine) -> None:
    axon_id = await make_state(engine)
    result = await engine.query(axon_id, "SELECT ? + ?, ?, ?, ?", [1, 2, "s", None, b"\x01"])
    assert result.rows == [[3, "s", None, base64.b64encode(b"\x01").decode()]]
    found = await engine.query(axon_id, "SELECT b FROM t WHERE a = ?", (2,))
    assert found.rows == [["two"]]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT ?, ?", [1]),
        ("SELECT ?", [1, 2]),
        ("SELECT ?", [{"a": 1}]),
        ("SELECT ?", [[1, 2]]),
        ("SELECT ?", "1"),
        ("SELECT ?", {"a": 1}),
    ],
)
async def test_bad_params_are_refused_clearly(engine: Engine, sql: str, params: object) -> None:
    axon_id = await make_state(engine)
    for write in (False, True):
        with pytest.raises(AxonError) as refused:
            await engine.query(axon_id, sql, params, write=write)  # type: ignore[arg-type]
        assert refused.value.code == "invalid_params" and refused.value.status == 400
        assert refused.value.message
    with pytest.raises(BatchFailed) as failed:
        await engine.batch(axon_id, [{"sql": sql, "params": params}])
    assert failed.value.cause.code == "invalid_params" and failed.value.status == 400


@pytest.mark.parametrize("sql", ["", "   ", "SELEC 1", "SELECT * FROM missing", "SELECT (1"])
async def test_bad_sql_is_refused_clearly(engine: Engine, sql: str) -> None:
    axon_id = await make_state(engine)
    with pytest.raises(AxonError) as refused:
        await engine.query(axon_id, sql)
    assert refused.value.code in {"invalid_sql", "sql_error"} and refused.value.status == 400
    assert refused.value.message


# -- batches -------------------------------------------------------------------------------


async def test_a_batch_commits_every_statement(engine: Engine) -> None:
    axon_id = await make_state(engine)
    results = await engine.batch(
        axon_id,
        [
            {"sql": "CREATE TABLE notes(body TEXT)"},
            {"sql": "INSERT INTO notes VALUES (?), (?)", "params": ["a", "b"]},
            "UPDATE t SET b = upper(b)",
            {"sql": "SELECT count(*) FROM notes"},
        ],
    )
    assert [r.meta.changes for r in results] == [0, 2, 3, 0]
    assert results[3].rows == [[2]]
    assert (await engine.query(axon_id, "SELECT b FROM t ORDER BY a")).rows == [
        ["ONE"],
        ["TWO"],
        ["THREE"],
    ]


@pytest.mark.parametrize(
    ("failing", "code"),
    [
        ("INSERT INTO missing VALUES (1)", "sql_error"),
        ("DELETE FROM axon_events", "read_only"),
        ("INSERT INTO t(a) VALUES (?)", "invalid_params"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
    ],
)
async def test_a_failing_statement_rolls_back_the_whole_batch(
    engine: Engine, failing: str, code: str
) -> None:
    axon_id = await make_state(engine)
    before = await snapshot(engine, axon_id)
    with pytest.raises(BatchFailed) as failed:
        await engine.batch(
            axon_id,
            [
                "CREATE TABLE made(x)",
                "INSERT INTO made VALUES (1)",
                "DELETE FROM t WHERE a = 1",
                "UPDATE t SET b = 'changed'",
                failing,
                "INSERT INTO t(a) VALUES (100)",
            ],
        )
    assert failed.value.index == 4
    assert failed.value.cause.code == code
    assert "statement 5" in failed.value.message
    assert len(failed.value.completed) == 4
    assert await snapshot(engine, axon_id) == before
    with pytest.raises(AxonError):
        await engine.query(axon_id, "SELECT * FROM made")
    assert (await engine.verify(axon_id)).ok
    assert (await engine.changes(axon_id, 2)) == []


@pytest.mark.parametrize("statements", [[], "SELECT 1", [{"params": [1]}], [42]])
async def test_malformed_batches_are_refused(engine: Engine, statements: object) -> None:
    axon_id = await make_state(engine)
    with pytest.raises(AxonError) as refused:
        await engine.batch(axon_id, statements)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_batch"


# -- the read-only guard ---------------------------------------------------------------------

ESCAPES = [
    "DELETE FROM t",
    "WITH x AS (SELECT 1) DELETE FROM t",
    "WITH x AS (SELECT 1) INSERT INTO t(a) SELECT * FROM x",
    "INSERT INTO t(a) VALUES (9)",
    "REPLACE INTO t(rowid, a) VALUES (1, 9)",
    "INSERT INTO t(rowid, a) VALUES (1, 9) ON CONFLICT DO UPDATE SET a = 9",
    "UPDATE t SET a = 0",
    "DROP TABLE t",
    "CREATE TABLE z(a)",
    "CREATE INDEX ti ON t(a)",
    "CREATE VIEW v AS SELECT 1",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
    "ALTER TABLE t ADD COLUMN f",
    "ALTER TABLE t RENAME TO t2",
    "CREATE TEMP TABLE tt(a)",
    "CREATE TEMP VIEW tv AS SELECT 1",
    "PRAGMA writable_schema=1",
    "PRAGMA query_only=0",
    "PRAGMA journal_mode=delete",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "PRAGMA user_version=7",
    "PRAGMA synchronous=OFF",
    "ATTACH '{tmp}/x.db' AS x",
    "DETACH main",
    "VACUUM",
    "VACUUM INTO '{tmp}/copy.db'",
    "SELECT load_extension('x')",
    "SELECT 1; DELETE FROM t",
    "SELECT 1; SELECT 2",
    "REINDEX",
    "ANALYZE",
    "BEGIN",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT a",
    "RELEASE a",
    "DELETE FROM axon_events",
    "UPDATE axon_events SET payload = '{{}}'",
]
ALLOWED_CODES = {"read_only", "multiple_statements", "sql_error", "invalid_sql"}


@pytest.mark.parametrize("at_past_sequence", [False, True], ids=["live", "at_sequence"])
@pytest.mark.parametrize("escape", ESCAPES)
async def test_read_only_queries_cannot_change_anything(
    engine: Engine, tmp_path: Path, escape: str, at_past_sequence: bool
) -> None:
    axon_id = await make_state(engine)
    outside = tmp_path / "outside"
    outside.mkdir()
    sql = escape.format(tmp=outside)
    path = engine.path_of(axon_id)
    before_state = await snapshot(engine, axon_id)
    before_files = file_digest(path)
    at = {"at_sequence": 2} if at_past_sequence else {}

    with pytest.raises(AxonError) as refused:
        await engine.query(axon_id, sql, **at)

    assert refused.value.code in ALLOWED_CODES, refused.value
    assert refused.value.status in (400, 403)
    assert refused.value.message
    assert file_digest(path) == before_files
    assert list(outside.iterdir()) == []  # no attached or vacuumed-into copy appeared
    assert await snapshot(engine, axon_id) == before_state


async def test_read_only_queries_may_read_the_schema_and_the_log(engine: Engine) -> None:
    axon_id = await make_state(engine)
    assert (await engine.query(axon_id, "SELECT count(*) FROM axon_events")).rows == [[2]]
    info = await engine.query(axon_id, "PRAGMA table_info(t)")
    assert [r[1] for r in info.rows] == ["a", "b", "c", "d", "e"]
    listed = await engine.query(axon_id, "SELECT name FROM pragma_table_list WHERE name = 't'")
    assert listed.rows == [["t"]]
    recursive = await engine.query(
        axon_id,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
        "SELECT sum(i) FROM n",
    )
    assert recursive.rows == [[15]]


# -- write mode ----------------------------------------------------------------------------

ENGINE_TABLE_WRITES = [
    "INSERT INTO axon_events VALUES (99, 0, 'USER_EVENT', 's', 't', '{}', NULL, NULL, 'x')",
    'UPDATE axon_events SET payload = \'{"text": "forged"}\' WHERE sequence = 1',
    "DELETE FROM axon_events",
    "DELETE FROM AXON_EVENTS",
    "DROP TABLE axon_events",
    "ALTER TABLE axon_events ADD COLUMN x",
    "ALTER TABLE axon_events RENAME TO e",
    "CREATE INDEX i ON axon_events(source)",
    "CREATE TRIGGER x AFTER INSERT ON axon_events BEGIN SELECT 1; END",
    "DELETE FROM axon_hist_t",
    "UPDATE axon_hist_t SET a = 0",
    "INSERT INTO axon_hist_t(_ax_seq, _ax_op, _ax_rowid, a) VALUES (1, 'I', 9, 9)",
    "DROP TABLE axon_hist_t",
    "DELETE FROM axon_schema_history",
    "DELETE FROM axon_captured",
    "DROP TRIGGER axon_cc_t_i",
    "CREATE TABLE axon_x(a)",
    "CREATE TABLE Axon_Mixed(a)",
    "CREATE INDEX axon_i ON t(a)",
    "CREATE VIEW axon_v AS SELECT 1",
    "CREATE TRIGGER axon_t AFTER INSERT ON t BEGIN SELECT 1; END",
    "ALTER TABLE t RENAME TO axon_t",
    'ALTER TABLE t RENAME TO "AXON_HIST_later"',
    "CREATE TEMP TABLE tt(a)",
    "CREATE TEMP VIEW tv AS SELECT 1",
    "CREATE TEMP TRIGGER ttr AFTER INSERT ON t BEGIN SELECT 1; END",
    "CREATE TABLE keyed(k PRIMARY KEY) WITHOUT ROWID",
    "PRAGMA writable_schema=1",
    "PRAGMA journal_mode=delete",
    "ATTACH ':memory:' AS m",
    "VACUUM",
    "BEGIN",
    "COMMIT",
    "SAVEPOINT a",
    "INSERT INTO t(a) VALUES (9); DELETE FROM axon_events",
    "INSERT INTO t(a) VALUES (9); DELETE FROM t",
]


@pytest.mark.parametrize("sql", ENGINE_TABLE_WRITES)
async def test_write_mode_keeps_the_engine_tables_out_of_reach(engine: Engine, sql: str) -> None:
    axon_id = await make_state(engine)
    before = await snapshot(engine, axon_id)
    history_before = await engine.changes(axon_id, 1)
    with pytest.raises(AxonError) as refused:
        await engine.query(axon_id, sql, write=True)
    assert refused.value.status in (400, 403) and refused.value.message
    assert await snapshot(engine, axon_id) == before
    assert await engine.changes(axon_id, 1) == history_before
    assert (await engine.verify(axon_id)).ok
    assert (await engine.publish(axon_id, message("still fine"))).sequence == 3


async def test_a_user_trigger_cannot_write_engine_tables_for_it(engine: Engine) -> None:
    axon_id = await make_state(engine)
    await engine.query(
        axon_id,
        "CREATE TRIGGER sneaky AFTER INSERT ON t BEGIN DELETE FROM axon_events; END",
        write=True,
    )
    before = await snapshot(engine, axon_id)
    with pytest.raises(AxonError) as refused:
        await engine.query(axon_id, "INSERT INTO t(a) VALUES (7)", write=True)
    assert refused.value.code == "read_only"
    assert await snapshot(engine, axon_id) == before
    assert (await engine.verify(axon_id)).ok


async def test_write_mode_runs_ordinary_sql(engine: Engine) -> None:
    axon_id = await make_state(engine)
    steps = [
        "CREATE TABLE z(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL DEFAULT 0)",
        "CREATE INDEX z_name ON z(name)",
        "CREATE VIEW z_top AS SELECT name FROM z WHERE score > 1",
        "INSERT INTO z(name, score) VALUES ('a', 1), ('b', 2), ('c', 3)",
        "UPDATE z SET score = score * 10 WHERE name != 'a'",
        "DELETE FROM z WHERE name = 'c'",
        "ALTER TABLE z ADD COLUMN tag TEXT",
        "ALTER TABLE z RENAME COLUMN tag TO label",
        "CREATE TRIGGER z_stamp AFTER INSERT ON z "
        "BEGIN UPDATE z SET label = 'new' WHERE id = NEW.id; END",
        "INSERT INTO z(name) VALUES ('d')",
        "ALTER TABLE z RENAME TO zz",
        "DROP VIEW z_top",
    ]
    for sql in steps:
        await engine.query(axon_id, sql, write=True)
    rows = (await engine.query(axon_id, "SELECT id, name, score, label FROM zz ORDER BY id")).rows
    assert rows == [[1, "a", 1.0, None], [2, "b", 20.0, None], [3, "d", 0.0, "new"]]
    assert (await engine.verify(axon_id)).ok


async def test_past_state_is_read_only(engine: Engine) -> None:
    axon_id = await make_state(engine)
    with pytest.raises(AxonError) as refused:
        await engine.query(axon_id, "DELETE FROM t", write=True, at_sequence=1)
    assert refused.value.code == "read_only_history"
