"""Time travel: the state as of any event is rebuilt exactly from the change history. A seeded
random script interleaves publishes with inserts, updates, deletes and schema changes; the
plain answer recorded right after each event must equal the `at_sequence` answer later, and
`changes` must list the row changes made while each event was the latest."""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine import AxonError, Engine
from tests.helpers import message

USER_TABLES = (
    "SELECT name FROM sqlite_schema WHERE type = 'table' "
    "AND name NOT LIKE 'axon\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
    "ORDER BY name"
)
AWKWARD_REALS = [
    0.1 + 0.2,
    1e-300,
    -1e-300,
    5e-324,
    1.7976931348623157e308,
    -0.0,
    1 / 3,
    2.0**53 + 1,
]
AWKWARD_BLOBS = [b"", b"\x00", b"\x00\xff\x00", bytes(range(256)), b"'; DROP TABLE items; --"]
AWKWARD_TEXT = ["", "plain", "quote ' and \"", "ünïcödé ✓", "line\nbreak", "\x00inside", "🙂" * 3]


@dataclass
class Recorder:
    """What the script saw with plain queries, by the sequence that was latest at the time."""

    engine: Engine
    axon_id: str
    sequence: int = 0
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    changes: dict[int, list[tuple[str, str, int, dict | None, dict | None]]] = field(
        default_factory=dict
    )

    async def q(self, sql: str, params: list[Any] | None = None, **kw: Any) -> Any:
        return await self.engine.query(self.axon_id, sql, params, **kw)

    async def state(self, **kw: Any) -> dict[str, Any]:
        tables = [r[0] for r in (await self.q(USER_TABLES, **kw)).rows]
        out = {}
        for t in tables:
            result = await self.q(f'SELECT rowid AS "rowid", * FROM "{t}" ORDER BY rowid', **kw)
            out[t] = ([(c.name, c.type) for c in result.columns], result.rows)
        return out

    async def rows(self, table: str, where: str, params: list[Any]) -> dict[int, dict[str, Any]]:
        result = await self.q(
            f'SELECT rowid AS "rowid", * FROM "{table}" WHERE {where} ORDER BY rowid', params
        )
        names = [c.name for c in result.columns][1:]
        return {r[0]: dict(zip(names, r[1:], strict=True)) for r in result.rows}

    async def write(
        self, table: str, sql: str, params: list[Any], where: str, where_params: list[Any]
    ) -> None:
        """Run one write, recording the before and after of each row it touches (`where`
        selects exactly those rows, before and after the write)."""
        before = await self.rows(table, where, where_params)
        await self.q(sql, params, write=True)
        after = await self.rows(table, where, where_params)
        for rowid in sorted(before.keys() | after.keys()):  # every row the write touched
            b, a = before.get(rowid), after.get(rowid)
            op = "insert" if b is None else "delete" if a is None else "update"
            self.changes.setdefault(self.sequence, []).append((table, op, rowid, b, a))

    async def publish(self, text: str) -> None:
        self.states[self.sequence] = await self.state()
        result = await self.engine.publish(self.axon_id, message(text))
        assert result.sequence == self.sequence + 1
        self.sequence = result.sequence

    async def finish(self) -> None:
        self.states[self.sequence] = await self.state()


def value(rng: random.Random, pool: list[Any]) -> Any:
    return None if rng.random() < 0.1 else rng.choice(pool)


async def run_script(engine: Engine, seed: int, steps: int = 120) -> Recorder:
    rng = random.Random(seed)
    axon_id = (await engine.create_axon(f"travel-{seed}")).id
    rec = Recorder(engine, axon_id)
    # Written before any event: the state as of sequence 0.
    await rec.q(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)", write=True
    )
    await rec.write(
        "items",
        "INSERT INTO items VALUES (1, 'first', ?, ?)",
        [0.1 + 0.2, b"\x00\x01"],
        "id = 1",
        [],
    )
    has_tag = False
    notes: str | None = None  # the notes table's column list, while it exists
    next_id, next_note = 2, 1
    schedule = {
        steps // 4: "add column",
        steps // 3: "create notes",
        steps // 2: "drop notes",
        steps // 2 + 3: "recreate notes",
        3 * steps // 4: "drop and recreate notes at once",
    }
    for step in range(steps):
        if step in schedule:
            action = schedule[step]
            if action == "add column":
                before = await rec.rows("items", "1", [])
                await rec.q("ALTER TABLE items ADD COLUMN tag TEXT DEFAULT 'none'", write=True)
                after = await rec.rows("items", "1", [])
                for rowid in sorted(after):  # every row gained a value
                    rec.changes.setdefault(rec.sequence, []).append(
                        ("items", "update", rowid, before[rowid], after[rowid])
                    )
                has_tag = True
            elif action == "create notes":
                await rec.q("CREATE TABLE notes(body TEXT, n INTEGER)", write=True)
                notes = "body, n"
            elif action == "drop notes":
                await rec.q("DROP TABLE notes", write=True)
                notes = None
            elif action == "recreate notes":
                await rec.q("CREATE TABLE notes(body TEXT, n INTEGER, extra REAL)", write=True)
                notes, next_note = "body, n, extra", 1  # rowids start again: a new table
            else:
                await rec.q("DROP TABLE notes", write=True)
                await rec.q("CREATE TABLE notes(body TEXT, n INTEGER, extra REAL)", write=True)
                notes, next_note = "body, n, extra", 1
            continue

        roll = rng.random()
        ids = list((await rec.rows("items", "1", [])).keys())
        if roll < 0.25:
            await rec.publish(f"step {step}")
        elif roll < 0.45 or not ids:
            params = [
                next_id,
                value(rng, AWKWARD_TEXT),
                value(rng, AWKWARD_REALS),
                value(rng, AWKWARD_BLOBS),
            ]
            if has_tag and rng.random() < 0.5:
                await rec.write(
                    "items",
                    "INSERT INTO items(id, name, score, data, tag) VALUES (?, ?, ?, ?, ?)",
                    [*params, value(rng, AWKWARD_TEXT)],
                    "id = ?",
                    [next_id],
                )
            else:
                await rec.write(
                    "items",
                    "INSERT INTO items(id, name, score, data) VALUES (?, ?, ?, ?)",
                    params,
                    "id = ?",
                    [next_id],
                )
            next_id += 1
        elif roll < 0.6:
            target = rng.choice(ids)
            column, pool = rng.choice(
                [("name", AWKWARD_TEXT), ("score", AWKWARD_REALS), ("data", AWKWARD_BLOBS)]
            )
            await rec.write(
                "items",
                f"UPDATE items SET {column} = ? WHERE id = ?",
                [value(rng, pool), target],
                "id = ?",
                [target],
            )
        elif roll < 0.65:
            k = rng.randrange(3)
            await rec.write(
                "items",
                "UPDATE items SET score = coalesce(score, 0) * 2 WHERE id % 3 = ?",
                [k],
                "id % 3 = ?",
                [k],
            )
        elif roll < 0.75:
            target = rng.choice(ids)
            await rec.write("items", "DELETE FROM items WHERE id = ?", [target], "id = ?", [target])
        elif notes is not None:
            existing = list((await rec.rows("notes", "1", [])).keys())
            if existing and rng.random() < 0.4:
                target = rng.choice(existing)
                if rng.random() < 0.5:
                    await rec.write(
                        "notes",
                        "DELETE FROM notes WHERE rowid = ?",
                        [target],
                        "rowid = ?",
                        [target],
                    )
                else:
                    await rec.write(
                        "notes",
                        "UPDATE notes SET n = n + 1, body = ? WHERE rowid = ?",
                        [value(rng, AWKWARD_TEXT), target],
                        "rowid = ?",
                        [target],
                    )
            else:
                extra = ", ?" if notes.endswith("extra") else ""
                params = [next_note, value(rng, AWKWARD_TEXT), rng.randrange(-5, 5)]
                if extra:
                    params.append(value(rng, AWKWARD_REALS))
                await rec.write(
                    "notes",
                    f"INSERT INTO notes(rowid, {notes}) VALUES (?, ?, ?{extra})",
                    params,
                    "rowid = ?",
                    [next_note],
                )
                next_note += 1
    await rec.finish()
    return rec


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_past_state_equals_what_was_seen_then(engine: Engine, seed: int) -> None:
    rec = await run_script(engine, seed)
    assert rec.sequence >= 10 and len(rec.states) == rec.sequence + 1
    for n, seen in rec.states.items():
        assert await rec.state(at_sequence=n) == seen, f"state as of sequence {n}"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_changes_list_the_row_changes_made_while_each_event_was_latest(
    engine: Engine, seed: int
) -> None:
    rec = await run_script(engine, seed)
    assert sum(len(c) for c in rec.changes.values()) > 20
    for n in range(rec.sequence + 1):
        expected = sorted(rec.changes.get(n, []), key=lambda c: c[0])  # by table, in commit order
        got = await engine.changes(rec.axon_id, n)
        assert [(c.table, c.op, c.rowid) for c in got] == [c[:3] for c in expected], f"sequence {n}"
        for change, (_t, _op, _rowid, before, after) in zip(got, expected, strict=True):
            assert change.sequence == n
            assert _same_row(change.before, before), (n, change)
            assert _same_row(change.after, after), (n, change)


def _same_row(got: dict | None, seen: dict | None) -> bool:
    """The row as it was; columns the table did not have then may only appear as null."""
    if got is None or seen is None:
        return got is seen
    extra = {k: v for k, v in got.items() if k not in seen}
    return {k: got.get(k, "<missing>") for k in seen} == seen and all(
        v is None for v in extra.values()
    )


async def test_awkward_values_come_back_exactly(engine: Engine, axon_id: str) -> None:
    await engine.query(axon_id, "CREATE TABLE v(r REAL, b BLOB, t TEXT, i INTEGER)", write=True)
    for i, (r, b) in enumerate(zip(AWKWARD_REALS, AWKWARD_BLOBS * 2, strict=False)):
        await engine.query(
            axon_id,
            "INSERT INTO v VALUES (?, ?, ?, ?)",
            [r, b, AWKWARD_TEXT[i % 7], 2**63 - 1 - i],
            write=True,
        )
    now = (await engine.query(axon_id, "SELECT r, b, t, i FROM v ORDER BY rowid")).rows
    await engine.publish(axon_id, message("rows written before this event"))
    await engine.query(axon_id, "DELETE FROM v", write=True)  # while event 1 is the latest
    await engine.publish(axon_id, message("two"))

    past = await engine.query(axon_id, "SELECT r, b, t, i FROM v ORDER BY rowid", at_sequence=0)
    assert past.rows == now
    assert [row[0] for row in past.rows] == AWKWARD_REALS
    assert past.rows[0][0] == 0.30000000000000004 and past.rows[1][0] == 1e-300
    assert [base64.b64decode(row[1]) for row in past.rows[:5]] == AWKWARD_BLOBS
    assert [row[3] for row in past.rows] == [2**63 - 1 - i for i in range(len(AWKWARD_REALS))]
    assert (await engine.query(axon_id, "SELECT count(*) FROM v", at_sequence=1)).rows == [[0]]
    typed = await engine.query(
        axon_id, "SELECT typeof(r), typeof(b), typeof(i) FROM v LIMIT 1", at_sequence=0
    )
    assert typed.rows == [["real", "blob", "integer"]]


async def test_renamed_tables_and_columns_keep_their_history(engine: Engine, axon_id: str) -> None:
    await engine.query(axon_id, "CREATE TABLE t(a TEXT, b INTEGER)", write=True)
    await engine.query(axon_id, "INSERT INTO t VALUES ('x', 1), ('y', 2)", write=True)
    await engine.publish(axon_id, message("1"))
    await engine.query(axon_id, "ALTER TABLE t RENAME COLUMN a TO label", write=True)
    await engine.publish(axon_id, message("2"))
    await engine.query(axon_id, "ALTER TABLE t RENAME TO renamed", write=True)
    await engine.query(axon_id, "UPDATE renamed SET b = b * 10 WHERE label = 'y'", write=True)
    await engine.publish(axon_id, message("3"))

    async def rows(sql: str, n: int) -> list[list[Any]]:
        return (await engine.query(axon_id, sql, at_sequence=n)).rows

    assert await rows("SELECT a, b FROM t ORDER BY rowid", 0) == [["x", 1], ["y", 2]]
    assert await rows("SELECT label, b FROM t ORDER BY rowid", 1) == [["x", 1], ["y", 2]]
    assert await rows("SELECT label, b FROM renamed ORDER BY rowid", 2) == [["x", 1], ["y", 20]]
    assert await rows("SELECT label, b FROM renamed ORDER BY rowid", 3) == [["x", 1], ["y", 20]]
    with pytest.raises(AxonError):
        await rows("SELECT * FROM renamed", 1)
    with pytest.raises(AxonError):
        await rows("SELECT * FROM t", 2)


async def test_state_before_the_first_event_is_sequence_zero(engine: Engine, axon_id: str) -> None:
    await engine.query(axon_id, "CREATE TABLE t(a)", write=True)
    await engine.query(axon_id, "INSERT INTO t VALUES (1)", write=True)
    assert (await engine.query(axon_id, "SELECT a FROM t", at_sequence=0)).rows == [[1]]
    await engine.publish(axon_id, message("one"))
    await engine.query(axon_id, "INSERT INTO t VALUES (2)", write=True)
    assert (await engine.query(axon_id, "SELECT a FROM t ORDER BY a", at_sequence=0)).rows == [[1]]
    assert (await engine.query(axon_id, "SELECT a FROM t ORDER BY a", at_sequence=1)).rows == [
        [1],
        [2],
    ]
    assert [(c.op, c.after) for c in await engine.changes(axon_id, 0)] == [("insert", {"a": 1})]
    assert [(c.op, c.after) for c in await engine.changes(axon_id, 1)] == [("insert", {"a": 2})]


async def test_rows_changed_by_the_users_own_triggers_travel_correctly(
    engine: Engine, axon_id: str
) -> None:
    await engine.batch(
        axon_id,
        [
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, stamped TEXT)",
            "CREATE TABLE audit(what TEXT)",
            "CREATE TRIGGER stamp AFTER INSERT ON t "
            "BEGIN UPDATE t SET stamped = 'yes' WHERE id = NEW.id; END",
            "CREATE TRIGGER vanish AFTER INSERT ON t WHEN NEW.v = 'gone' "
            "BEGIN DELETE FROM t WHERE id = NEW.id; END",
            "CREATE TRIGGER log AFTER UPDATE OF v ON t BEGIN INSERT INTO audit VALUES (NEW.v); END",
        ],
    )
    await engine.query(
        axon_id, "INSERT INTO t(id, v) VALUES (1, 'a'), (2, 'gone'), (3, 'c')", write=True
    )
    await engine.query(axon_id, "UPDATE t SET v = 'b' WHERE id = 1", write=True)
    await engine.publish(axon_id, message("one"))
    await engine.query(axon_id, "DELETE FROM t WHERE id = 3", write=True)
    await engine.publish(axon_id, message("two"))

    for table in ("t", "audit"):
        live = (await engine.query(axon_id, f"SELECT rowid, * FROM {table} ORDER BY rowid")).rows
        assert (
            await engine.query(
                axon_id, f"SELECT rowid, * FROM {table} ORDER BY rowid", at_sequence=2
            )
        ).rows == live
    assert (
        await engine.query(axon_id, "SELECT id, v, stamped FROM t ORDER BY id", at_sequence=0)
    ).rows == [[1, "b", "yes"], [3, "c", "yes"]]
    assert (await engine.query(axon_id, "SELECT what FROM audit", at_sequence=0)).rows == [["b"]]
