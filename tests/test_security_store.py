"""Issue 8, the store: what an attacker with a token tries against the data layer, over real
HTTP on a real server, and what must hold. Import runs none of the file's SQL beyond the user's
own objects and leaves nothing behind when it fails; user SQL has a deadline, stops when its
client leaves and never holds up publishes; values, results, pages and exports are bounded in
bytes; `_ax_*` columns are refused; bad input is a JSON 4xx; a row of invalid text blocks
nothing; verify finds a cut-off tail."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from engine.tokens import TokenStore
from tests.http_support import ServerProcess, make_token, message_body, running_server

FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
SQL_TIMEOUT_S = 3


@dataclass
class Api:
    server: ServerProcess
    home: Path
    admin: httpx.Client
    reader: httpx.Client
    writer: httpx.Client
    tokens: dict[str, str]

    def new_axon(self, name: str) -> str:
        """A fresh Axon on the module's server: live names are unique, so each gets a suffix."""
        r = self.admin.post("/v1/axons", json={"name": f"{name}-{uuid.uuid4().hex[:8]}"})
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def sql(self, client: httpx.Client, axon_id: str, sql: str, *params: Any) -> httpx.Response:
        return client.post(f"/v1/axons/{axon_id}/sql/query", json={"sql": sql, "params": params})

    def batch(self, axon_id: str, *statements: str) -> httpx.Response:
        body = {"statements": [{"sql": s} for s in statements]}
        return self.writer.post(f"/v1/axons/{axon_id}/sql/batch", json=body)

    def batch_ok(self, axon_id: str, *statements: str) -> None:
        r = self.batch(axon_id, *statements)
        assert r.status_code == 200 and not batch_errors(r), r.text

    def export(self, axon_id: str) -> list[dict[str, Any]]:
        r = self.reader.get(f"/v1/axons/{axon_id}/export")
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines()]

    def import_lines(self, lines: list[Any]) -> httpx.Response:
        content = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
        return self.admin.post(
            "/v1/axons/import",
            content=content.encode("utf-8", "surrogatepass"),
            headers={"content-type": "application/x-ndjson"},
        )

    def axon_count(self) -> int:
        r = self.admin.get("/v1/axons", params={"limit": 5000})
        return len(r.json()["axons"])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("store") / "home"
    tokens = {scope: make_token(home, scope, scope) for scope in ("admin", "read", "sql-write")}
    env = {
        "AXONS_SQL_TIMEOUT_S": str(SQL_TIMEOUT_S),
        "AXONS_MAX_RESULT_BYTES": str(1 << 20),
        "AXONS_MAX_PAGE_BYTES": str(1 << 20),
        "AXONS_MAX_VALUE_BYTES": str(4 << 20),
    }
    with (
        running_server(home, env=env) as server,
        server.http(tokens["admin"]) as admin,
        server.http(tokens["read"]) as reader,
        server.http(tokens["sql-write"]) as writer,
    ):
        yield Api(server, home, admin, reader, writer, tokens)
        assert server.running


def batch_errors(r: httpx.Response) -> list[str]:
    return [step["error"]["message"] for step in r.json()["results"] if step.get("error")]


def assert_error(r: httpx.Response, status: int, code: str) -> str:
    """The status, and the documented JSON error body; returns the message."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code, error
    assert len(error["message"]) > 20, error
    return str(error["message"])


def token_names(home: Path) -> set[str]:
    store = TokenStore(home / "catalog.db")
    try:
        return {t.name for t in store.list()}
    finally:
        store.close()


def axon_files(home: Path) -> set[str]:
    return {p.name for p in (home / "axons").iterdir()}


# -- 1, 16: import ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_lines(api: Api) -> list[dict[str, Any]]:
    """A genuine export: events, a table with rows, an index, and their history."""
    axon_id = api.new_axon("source")
    api.admin.post(f"/v1/axons/{axon_id}/publish", json=message_body("hello"))
    api.batch_ok(
        axon_id,
        "CREATE TABLE notes(body TEXT)",
        "CREATE INDEX notes_body ON notes(body)",
        "INSERT INTO notes VALUES ('kept')",
    )
    return api.export(axon_id)


def with_object(lines: list[dict[str, Any]], **obj: str) -> list[dict[str, Any]]:
    """The export with one more schema object line after its last one."""
    last = max(i for i, line in enumerate(lines) if line["type"] == "object")
    return [*lines[: last + 1], {"type": "object", **obj}, *lines[last + 1 :]]


ESCAPES = {
    "attach": dict(
        name="t",
        kind="table",
        sql="CREATE TABLE t(a); ATTACH '{outside}' AS x; CREATE TABLE x.planted(a)",
    ),
    "escape the transaction": dict(
        name="t",
        kind="table",
        sql="CREATE TABLE t(a); COMMIT; ATTACH '{outside}' AS x; CREATE TABLE x.p(a); BEGIN",
    ),
    "trigger on the log": dict(
        name="wipe",
        kind="trigger",
        sql="CREATE TRIGGER wipe AFTER INSERT ON axon_events BEGIN DELETE FROM axon_events; END",
    ),
    "a table that is another": dict(name="t", kind="table", sql="CREATE TABLE axon_x(a)"),
    "engine name": dict(name="axon_meta2", kind="table", sql="CREATE TABLE axon_meta2(a)"),
    "a write as a table": dict(name="t", kind="table", sql="INSERT INTO notes VALUES ('x')"),
    "a temp trigger": dict(
        name="tt",
        kind="trigger",
        sql="CREATE TEMP TRIGGER tt AFTER INSERT ON notes BEGIN SELECT 1; END",
    ),
    "a pragma": dict(name="t", kind="table", sql="PRAGMA writable_schema = 1"),
    "a view plus a write": dict(
        name="v", kind="view", sql="CREATE VIEW v AS SELECT 1; DELETE FROM notes"
    ),
}


@pytest.mark.parametrize("attack", list(ESCAPES))
def test_import_runs_no_sql_beyond_the_users_objects(
    api: Api, export_lines: list[dict[str, Any]], tmp_path: Path, attack: str
) -> None:
    outside = tmp_path / "planted.db"
    obj = {k: v.format(outside=outside) for k, v in ESCAPES[attack].items()}
    before = (api.axon_count(), axon_files(api.home), token_names(api.home))
    assert_error(api.import_lines(with_object(export_lines, **obj)), 400, "invalid_export")
    assert not outside.exists()
    assert (api.axon_count(), axon_files(api.home), token_names(api.home)) == before


def test_import_refuses_rows_and_history_for_engine_tables(
    api: Api, export_lines: list[dict[str, Any]]
) -> None:
    header, *rest = export_lines
    planted = [
        {"type": "row", "table": "axon_events", "rowid": 99, "values": {"payload": "{}"}},
        {"type": "history", "table": "axon_agent_cursors", "columns": ["agent"], "values": ["x"]},
        {"type": "history", "table": "axon_hist_notes", "columns": ["body"], "values": ["x"]},
        {"type": "row", "table": "notes", "rowid": 1 << 70, "values": {"body": "x"}},
        {"type": "row", "table": "notes", "rowid": 5, "values": {"body": {"$evil": 1}}},
    ]
    before = (api.axon_count(), axon_files(api.home))
    for line in planted:
        assert_error(api.import_lines([header, *rest, line]), 400, "invalid_export")
    assert (api.axon_count(), axon_files(api.home)) == before


def test_a_failed_import_leaves_no_axon(api: Api, export_lines: list[dict[str, Any]]) -> None:
    """The file is written and committed before the Axon enters the catalog: a failure late
    in the load (a row for a column the table lacks) leaves neither an Axon nor a file."""
    bad_row = {"type": "row", "table": "notes", "rowid": 7, "values": {"nope": "x"}}
    before = (api.axon_count(), axon_files(api.home))
    message = assert_error(api.import_lines([*export_lines, bad_row]), 400, "invalid_export")
    assert "nope" in message
    assert (api.axon_count(), axon_files(api.home)) == before
    # The genuine export still imports, with its state.
    r = api.import_lines(export_lines)
    assert r.status_code == 200, r.text
    copy = r.json()["id"]
    rows = api.sql(api.reader, copy, "SELECT body FROM notes").json()["rows"]
    assert rows == [["kept"]]


@pytest.mark.parametrize(
    "line",
    [
        "{not json",
        '{"type": "event"}',
        '{"type": "event", "event": {"sequence": "1"}}',
        '{"type": "object", "name": "t", "kind": "table"}',
        '{"type": "row", "table": "notes"}',
        '{"type": "history", "table": "axon_schema_history", "values": [1, 2]}',
        '{"type": "sql", "sql": "DROP TABLE notes"}',
        "[1, 2, 3]",
    ],
)
def test_malformed_import_lines_are_a_json_400(
    api: Api, export_lines: list[dict[str, Any]], line: str
) -> None:
    message = assert_error(api.import_lines([*export_lines, line]), 400, "invalid_export")
    assert f"line {len(export_lines) + 1}" in message


# -- 4: statement deadline, disconnects, a bounded share of threads -----------------------


def test_a_runaway_query_ends_with_a_408(api: Api) -> None:
    axon_id = api.new_axon("runaway")
    message = assert_error(api.sql(api.reader, axon_id, FOREVER), 408, "statement_timeout")
    assert "AXONS_SQL_TIMEOUT_S" in message
    # A write batch is held to the same deadline, and rolled back.
    r = api.batch(axon_id, "CREATE TABLE n(x)", f"INSERT INTO n {FOREVER}")
    assert_error(r, 408, "statement_timeout")
    assert_error(api.sql(api.reader, axon_id, "SELECT * FROM n"), 400, "sql_error")


def test_publishes_go_through_while_eight_runaway_queries_run(api: Api) -> None:
    axon_id = api.new_axon("busy")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:

        def runaway() -> tuple[httpx.Response, float]:
            with api.server.http(api.tokens["read"]) as client:
                r = api.sql(client, axon_id, FOREVER)
                return r, time.monotonic()

        queries = [pool.submit(runaway) for _ in range(8)]
        time.sleep(0.5)  # let them reach SQLite; the checks below hold either way
        published = []
        for i in range(5):
            r = api.admin.post(f"/v1/axons/{axon_id}/publish", json=message_body(f"live {i}"))
            assert r.status_code == 200, r.text
            published.append(time.monotonic())
            done = [q.result()[0].text for q in queries if q.done()]
            assert not done, f"the queries ended before the publish: {done}"
        ended = [q.result(timeout=120) for q in queries]
    for r, _ in ended:
        assert_error(r, 408, "statement_timeout")
    assert max(published) < min(t for _, t in ended)


def test_a_client_that_hangs_up_stops_its_statement(tmp_path: Path) -> None:
    """One SQL thread and a deadline of ten minutes: the next query gets the thread only
    because the first statement was interrupted when its client went away."""
    home = tmp_path / "home"
    token = make_token(home, "reader", "read")
    env = {"AXONS_SQL_TIMEOUT_S": "600", "AXONS_SQL_THREADS": "1"}
    with running_server(home, env=env) as server, server.http(token) as reader:
        admin = make_token(home, "admin", "admin")
        with server.http(admin) as a:
            axon_id = a.post("/v1/axons", json={"name": "hangup"}).json()["id"]
        url = f"/v1/axons/{axon_id}/sql/query"
        with server.http(token, timeout=1.0) as impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post(url, json={"sql": FOREVER})
        r = reader.post(url, json={"sql": "SELECT 42"})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [[42]]


# -- 5: byte budget ---------------------------------------------------------------------------


def test_values_results_and_pages_are_bounded_in_bytes(api: Api) -> None:
    axon_id = api.new_axon("bytes")
    message = assert_error(
        api.sql(api.reader, axon_id, "SELECT zeroblob(200000000)"), 413, "payload_too_large"
    )
    assert "AXONS_MAX_VALUE_BYTES" in message
    assert_error(
        api.sql(api.reader, axon_id, "SELECT length(printf('%.*c', 100000000, 'x'))"),
        413,
        "payload_too_large",
    )
    many = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000) "
        "SELECT x, hex(randomblob(5000)) FROM c"
    )
    r = api.sql(api.reader, axon_id, many)
    assert r.status_code == 200, r.text[:300]
    result = r.json()
    assert result["meta"]["rows_read_limit_reached"] is True
    assert 0 < len(result["rows"]) < 1000
    assert len(r.content) < 2 << 20

    big = json.dumps({"text": "x" * 300_000})
    for _ in range(6):
        r = api.admin.post(
            f"/v1/axons/{axon_id}/publish",
            json={**message_body(""), "payload": big},
        )
        assert r.status_code == 200, r.text
    page = api.reader.get(f"/v1/axons/{axon_id}/events", params={"limit": 100}).json()
    assert 1 <= len(page["events"]) < 6 and page["has_more"] is True
    seen, after = [], 0
    while True:
        page = api.reader.get(
            f"/v1/axons/{axon_id}/events", params={"after_sequence": after, "limit": 100}
        ).json()
        assert len(page["events"]) < 6
        seen += [e["sequence"] for e in page["events"]]
        if not page["has_more"]:
            break
        after = seen[-1]
    assert seen == [1, 2, 3, 4, 5, 6]


def test_export_streams(api: Api) -> None:
    axon_id = api.new_axon("streamed")
    for i in range(3):
        api.admin.post(f"/v1/axons/{axon_id}/publish", json=message_body(f"m{i}"))
    with api.reader.stream("GET", f"/v1/axons/{axon_id}/export") as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers  # chunked: never built whole in memory
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [line["type"] for line in lines] == ["axon", "event", "event", "event"]
    assert_error(api.reader.get("/v1/axons/axn_missing/export"), 404, "axon_not_found")


# -- 11: _ax_ columns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statements",
    [
        ["CREATE TABLE t(_ax_seq INTEGER)"],
        ["CREATE TABLE t(a)", "ALTER TABLE t ADD COLUMN _AX_op TEXT"],
        ["CREATE TABLE t(a)", "ALTER TABLE t RENAME COLUMN a TO _ax_rowid"],
        ["CREATE TABLE t AS SELECT 1 AS _ax_id"],
    ],
)
def test_columns_named_ax_are_refused(api: Api, statements: list[str]) -> None:
    axon_id = api.new_axon("ax-columns")
    r = api.batch(axon_id, *statements)
    assert r.status_code == 200
    errors = batch_errors(r)
    assert any("reserved for the engine" in m for m in errors), errors
    tables = api.sql(api.reader, axon_id, "SELECT name FROM sqlite_schema WHERE name = 't'")
    assert tables.json()["rows"] == []


# -- 14: bad input is a JSON 4xx -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "params", "code"),
    [
        ("SELECT CAST(X'FF' AS TEXT)", [], "invalid_text"),
        ("SELECT char(55296)", [], "invalid_text"),
        ("SELECT ?", [1 << 70], "invalid_params"),
        ("SELECT ?", [-(1 << 64)], "invalid_params"),
        ("SELECT 1\x00; DROP TABLE x", [], "invalid_sql"),
    ],
)
def test_bad_sql_input_is_a_json_400(api: Api, sql: str, params: list[Any], code: str) -> None:
    axon_id = api.new_axon("bad-sql")
    assert_error(api.sql(api.reader, axon_id, sql, *params), 400, code)


# -- 15: a row of invalid text ----------------------------------------------------------------


def test_a_row_of_invalid_text_blocks_nothing(api: Api) -> None:
    axon_id = api.new_axon("invalid-text")
    api.batch_ok(axon_id, "CREATE TABLE t(a, b)")
    # Through the API such a row cannot be written at all.
    for value in ("CAST(X'FF' AS TEXT)", "char(55296)", "CAST(X'41ED' AS TEXT) || 'b'"):
        r = api.batch(axon_id, f"INSERT INTO t VALUES ({value}, 1)")
        assert any("not valid UTF-8" in m for m in batch_errors(r)), r.text
    assert api.sql(api.reader, axon_id, "SELECT count(*) FROM t").json()["rows"] == [[0]]
    # One written behind the engine's back (the sqlite3 shell) is readable, exportable and
    # repairable through the API.
    api.admin.post(f"/v1/axons/{axon_id}/publish", json=message_body("before"))
    with apsw.Connection(str(api.home / "axons" / f"{axon_id}.db")) as conn:
        conn.set_busy_timeout(10_000)
        conn.execute("INSERT INTO t VALUES (CAST(X'41FF' AS TEXT), 2)")
    message = assert_error(api.sql(api.reader, axon_id, "SELECT * FROM t"), 400, "invalid_text")
    assert "hex(" in message
    rows = [line for line in api.export(axon_id) if line["type"] == "row"]
    assert rows[0]["values"] == {"a": "A\ufffd", "b": 2}
    assert api.reader.get(f"/v1/axons/{axon_id}/changes/1").status_code == 200
    assert api.sql(api.reader, axon_id, "SELECT hex(a) FROM t").json()["rows"] == [["41FF"]]
    api.batch_ok(axon_id, "UPDATE t SET a = 'A?' WHERE b = 2")
    assert api.sql(api.reader, axon_id, "SELECT a, b FROM t").json()["rows"] == [["A?", 2]]


# -- 21: the chain's tip is anchored ----------------------------------------------------------


def test_verify_finds_a_tail_cut_off_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    token = make_token(home, "admin", "admin")
    server = ServerProcess(home).start()
    try:
        with server.http(token) as admin:
            axon_id = admin.post("/v1/axons", json={"name": "anchored"}).json()["id"]
            for i in range(5):
                admin.post(f"/v1/axons/{axon_id}/publish", json=message_body(f"m{i}"))
            assert admin.get(f"/v1/axons/{axon_id}/verify").json()["ok"] is True
        assert server.terminate() == 0
        # Offline, someone drops the last two events: the chain of what is left is intact.
        with apsw.Connection(str(home / "axons" / f"{axon_id}.db")) as conn:
            conn.execute("DELETE FROM axon_events WHERE sequence > 3")
        server.start()
        with server.http(token) as admin:
            report = admin.get(f"/v1/axons/{axon_id}/verify").json()
        assert report["ok"] is False, report
        assert report["first_bad_sequence"] == 4
        assert "removed" in report["reason"]
    finally:
        server.kill()


def test_import_keeps_what_sqlite_makes_for_a_table(api: Api) -> None:
    """Keys, UNIQUE columns and AUTOINCREMENT make indexes and sqlite_sequence themselves:
    the one-object guard lets exactly those through."""
    axon_id = api.new_axon("keys")
    api.batch_ok(
        axon_id,
        "CREATE TABLE k(id TEXT PRIMARY KEY, u UNIQUE, n INTEGER)",
        "CREATE TABLE s(id INTEGER PRIMARY KEY AUTOINCREMENT, x)",
        "INSERT INTO k VALUES ('a', 1, 2)",
        "INSERT INTO s(x) VALUES ('x')",
    )
    api.admin.post(f"/v1/axons/{axon_id}/publish", json=message_body("one"))
    r = api.import_lines(api.export(axon_id))
    assert r.status_code == 200, r.text
    copy = r.json()["id"]
    assert api.sql(api.reader, copy, "SELECT * FROM k").json()["rows"] == [["a", 1, 2]]
    at = api.reader.post(
        f"/v1/axons/{copy}/sql/query", json={"sql": "SELECT x FROM s", "at_sequence": 1}
    )
    assert at.json()["rows"] == [["x"]], at.text


def test_schema_history_cannot_smuggle_sql_into_time_travel(
    api: Api, export_lines: list[dict[str, Any]], tmp_path: Path
) -> None:
    """History rows are data at import; time travel re-creates their SQL under the
    one-object guard, so SQL planted there fails cleanly when it is used, and escapes nothing."""
    outside = tmp_path / "planted.db"
    planted = []
    for line in export_lines:
        if line["type"] == "history" and line["table"] == "axon_schema_history":
            values = list(line["values"])
            if values[2] == "notes":
                values[4] = f"CREATE TABLE notes(body TEXT); ATTACH '{outside}' AS x"
            line = {**line, "values": values}
        planted.append(line)
    r = api.import_lines(planted)
    if r.status_code != 200:  # refused outright is as good
        assert_error(r, 400, "invalid_export")
        return
    copy = r.json()["id"]
    at = api.reader.post(
        f"/v1/axons/{copy}/sql/query", json={"sql": "SELECT * FROM notes", "at_sequence": 1}
    )
    assert at.status_code in (400, 403) and "error" in at.json(), at.text
    exported = api.reader.get(f"/v1/axons/{copy}/export")
    assert exported.status_code in (400, 403) and "error" in exported.json(), exported.text
    assert not outside.exists()
    assert api.sql(api.reader, copy, "SELECT body FROM notes").json()["rows"] == [["kept"]]
