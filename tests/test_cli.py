"""The `axons` command line as a user runs it (contract §6): a subprocess on a temporary home,
`--json` output parsed, exit codes 0/1/2, the same results with and without a running
`axons serve`, and headless scenarios."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.http_support import (
    AXONS,
    READY_S,
    ROOT,
    axons,
    axons_json,
    clean_env,
    make_token,
    read_line,
    running_server,
)


def lines_of(stdout: str) -> list[Any]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def tail(home: Path, axon: str, *extra: str) -> list[dict[str, Any]]:
    done = axons("tail", axon, "--json", *extra, home=home)
    assert done.returncode == 0, done.stderr
    return lines_of(done.stdout)


def rows(home: Path, axon: str, sql: str) -> list[list[Any]]:
    return list(axons_json("sql", axon, sql, home=home)["rows"])


def comparable(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must be equal across runs (not times, hashes or ids)."""
    return [
        (
            e["sequence"],
            e["origin"],
            e["source"],
            e["event_type"],
            e["payload"],
            e["author"],
            e["idempotency_key"],
        )
        for e in events
    ]


# -- the commands -----------------------------------------------------------------------


def test_new_ls_publish_tail(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = axons_json(
        "new", "support", "--metadata", "customer=cust_123", "--metadata", "tier=gold", home=home
    )
    assert made["id"].startswith("axn_")
    assert made["name"] == "support"
    assert made["metadata"] == {"customer": "cust_123", "tier": "gold"}
    axons_json("new", "other", home=home)

    listed = axons_json("ls", home=home)
    assert listed["total_count"] == 2
    assert {a["name"] for a in listed["axons"]} == {"support", "other"}
    only = axons_json("ls", "--name", "supp", home=home)
    assert [a["id"] for a in only["axons"]] == [made["id"]]

    first = axons_json("publish", "support", "Export fails", home=home)  # by name
    assert first["sequence"] == 1 and first["timestamp_ms"] > 0
    second = axons_json(
        "publish",
        made["id"],
        "--type",
        "push",
        "--source",
        "github",
        "--origin",
        "EXTERNAL_EVENT",
        "--payload",
        '{"ref": "main"}',
        home=home,
    )
    assert second["sequence"] == 2
    keyed = [
        axons_json("publish", "support", "once", "--idempotency-key", "k-1", home=home)
        for _ in range(2)
    ]
    assert keyed[0] == keyed[1] and keyed[0]["sequence"] == 3

    events = tail(home, "support")
    assert [e["sequence"] for e in events] == [1, 2, 3]
    assert json.loads(events[0]["payload"]) == {"text": "Export fails"}
    assert (events[0]["origin"], events[0]["source"], events[0]["event_type"]) == (
        "USER_EVENT",
        "cli",
        "message",
    )
    assert (events[1]["origin"], events[1]["source"], events[1]["event_type"]) == (
        "EXTERNAL_EVENT",
        "github",
        "push",
    )
    assert json.loads(events[1]["payload"]) == {"ref": "main"}
    assert events[2]["idempotency_key"] == "k-1"
    assert all(e["axon_id"] == made["id"] and len(e["hash"]) == 64 for e in events)
    assert [e["sequence"] for e in tail(home, "support", "--after", "2")] == [3]
    assert tail(home, "support", "--after", str(10**30)) == []  # not an overflow traceback

    human = axons("tail", "support", home=home)
    assert human.returncode == 0
    assert "Export fails" in human.stdout and "#1" in human.stdout


def test_sql_reads_writes_and_time_travel(tmp_path: Path) -> None:
    home = tmp_path / "home"
    axons_json("new", "state", home=home)
    axons_json(
        "sql",
        "state",
        "CREATE TABLE tickets(id TEXT PRIMARY KEY, status TEXT)",
        "--write",
        home=home,
    )
    axons_json("publish", "state", "ticket opened", home=home)  # 1
    inserted = axons_json(
        "sql",
        "state",
        "INSERT INTO tickets VALUES (?, ?)",
        "--param",
        '"T-1"',
        "--param",
        '"open"',
        "--write",
        home=home,
    )
    assert inserted["meta"]["changes"] == 1
    axons_json("publish", "state", "ticket closed", home=home)  # 2
    axons_json("sql", "state", "UPDATE tickets SET status = 'closed'", "--write", home=home)

    now = axons_json("sql", "state", "SELECT id, status FROM tickets", home=home)
    assert [c["name"] for c in now["columns"]] == ["id", "status"]
    assert now["rows"] == [["T-1", "closed"]]
    then = axons_json("sql", "state", "SELECT status FROM tickets", "--at", "1", home=home)
    assert then["rows"] == [["open"]]

    # Read-only unless asked: one clear line, exit 1, nothing changed.
    refused = axons("sql", "state", "DELETE FROM tickets", home=home)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("axons: ")
    assert axons_json("sql", "state", "SELECT count(*) FROM tickets", home=home)["rows"] == [[1]]

    table = axons("sql", "state", "SELECT id, status FROM tickets", home=home)
    assert table.returncode == 0 and "T-1" in table.stdout and "closed" in table.stdout


def test_export_import_verify_fork(tmp_path: Path) -> None:
    home = tmp_path / "home"
    axons_json("new", "records", home=home)
    axons_json("sql", "records", "CREATE TABLE t(n INTEGER)", "--write", home=home)
    axons_json("sql", "records", "CREATE TABLE empty(x TEXT)", "--write", home=home)  # no rows
    for n in range(1, 4):
        axons_json("publish", "records", f"event {n}", home=home)
        axons_json("sql", "records", f"INSERT INTO t VALUES ({n})", "--write", home=home)

    report = axons_json("verify", "records", home=home)
    assert report["ok"] is True and report["checked"] == 3
    assert axons("verify", "records", home=home).stdout.startswith("ok")

    exported = tmp_path / "records.jsonl"
    done = axons("export", "records", "--output", str(exported), home=home)
    assert done.returncode == 0, done.stderr
    to_stdout = axons("export", "records", home=home)
    assert to_stdout.stdout.encode() == exported.read_bytes()
    assert all(json.loads(line) for line in exported.read_text().splitlines())

    imported = axons_json("import", str(exported), "--name", "records-copy", home=home)
    assert imported["name"] == "records-copy"
    assert [(e["sequence"], e["hash"]) for e in tail(home, imported["id"])] == [
        (e["sequence"], e["hash"]) for e in tail(home, "records")
    ]
    assert axons_json("verify", imported["id"], home=home)["ok"] is True
    assert rows(home, imported["id"], "SELECT sum(n) FROM t") == [[6]]
    assert rows(home, imported["id"], "SELECT count(*) FROM empty") == [[0]]

    from_stdin = axons_json(
        "import", "-", "--name", "from-stdin", home=home, input=exported.read_bytes()
    )
    assert len(tail(home, from_stdin["id"])) == 3

    forked = axons_json("fork", "records", "--at", "2", "--name", "records-at-2", home=home)
    assert forked["name"] == "records-at-2"
    assert [e["sequence"] for e in tail(home, forked["id"])] == [1, 2]
    # The state as of event 2: two rows (the 3rd insert came after event 3).
    assert rows(home, forked["id"], "SELECT n FROM t ORDER BY n") == [[1], [2]]
    assert axons_json("verify", forked["id"], home=home)["ok"] is True


def test_tokens(tmp_path: Path) -> None:
    home = tmp_path / "home"
    axon = axons_json("new", "scoped", home=home)
    made = axons_json(
        "token", "create", "ci", "--scope", "publish", "--axon", axon["id"], home=home
    )
    assert made["name"] == "ci" and made["scope"] == "publish" and made["axons"] == [axon["id"]]
    assert made["token"].startswith("axt_")
    plain = axons("token", "create", "reader", "--scope", "read", home=home)
    assert plain.returncode == 0
    assert plain.stdout.strip().startswith("axt_") and len(plain.stdout.splitlines()) == 1

    listed = axons_json("token", "ls", home=home)
    assert [(t["name"], t["scope"], t["axons"]) for t in listed] == [
        ("ci", "publish", [axon["id"]]),
        ("reader", "read", None),
    ]
    assert all(made["token"] not in json.dumps(t) for t in listed)  # shown once, never again

    duplicate = axons("token", "create", "ci", "--scope", "read", home=home)
    assert duplicate.returncode == 1 and duplicate.stderr.count("\n") == 1

    assert axons("token", "revoke", "ci", home=home).returncode == 0
    assert [t["name"] for t in axons_json("token", "ls", home=home)] == ["reader"]
    missing = axons("token", "revoke", "ci", home=home)
    assert missing.returncode == 1 and "ci" in missing.stderr


def test_a_token_made_by_the_cli_works_over_tcp(tmp_path: Path) -> None:
    home = tmp_path / "home"
    token = axons_json("token", "create", "admin", "--scope", "admin", home=home)["token"]
    with running_server(home) as server, server.http(token) as http:
        assert http.post("/v1/axons", json={"name": "via-tcp"}).status_code == 200
        assert axons("token", "revoke", "admin", home=home).returncode == 0
        assert http.get("/v1/axons").status_code == 401


def test_token_commands_reach_a_remote_engine_with_connect(tmp_path: Path) -> None:
    """`--connect URL` manages the tokens of the engine there, with an admin token; a
    weaker token is refused in one line."""
    home = tmp_path / "home"
    admin = make_token(home, "operator", "admin")
    reader = make_token(home, "reader", "read")
    with running_server(home) as server:
        remote = ("--connect", server.url)
        as_admin = {"AXONS_TOKEN": admin}
        made = axons_json(
            "token", "create", "remote-ci", "--scope", "publish", *remote, env=as_admin
        )
        assert made["token"].startswith("axt_")
        listed = axons_json("token", "ls", *remote, env=as_admin)
        assert [t["name"] for t in listed] == ["operator", "reader", "remote-ci"]
        refused = axons("token", "ls", *remote, env={"AXONS_TOKEN": reader})
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert axons("token", "revoke", "remote-ci", *remote, env=as_admin).returncode == 0
        listed = axons_json("token", "ls", *remote, env=as_admin)
        assert [t["name"] for t in listed] == ["operator", "reader"]


# -- exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["publish", "no-such-axon", "hello"],
        ["tail", "no-such-axon"],
        ["sql", "no-such-axon", "SELECT 1"],
        ["verify", "no-such-axon"],
        ["export", "no-such-axon"],
        ["fork", "no-such-axon", "--at", "1"],
    ],
)
def test_an_unknown_axon_is_exit_1_with_one_clear_line(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "home"
    done = axons(*command, home=home)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("axons: ") and "no-such-axon" in done.stderr

    as_json = axons(*command, "--json", home=home)
    assert as_json.returncode == 1
    error = json.loads(as_json.stderr)["error"]
    assert error["code"] == "axon_not_found" and "no-such-axon" in error["message"]


@pytest.mark.parametrize(
    "command",
    [
        ["no-such-command"],
        ["sql"],
        ["sql", "only-the-axon"],
        ["fork", "x"],
        ["tail", "x", "--after", "many"],
        ["token", "create", "t", "--scope", "root"],
        ["publish", "x"],  # neither TEXT nor --payload
        ["new"],
    ],
)
def test_bad_usage_is_exit_2(tmp_path: Path, command: list[str]) -> None:
    done = axons(*command, home=tmp_path / "home")
    assert done.returncode == 2, done.stderr
    assert "Usage: axons" in done.stderr  # click's usage line, then what was wrong
    assert "Error: " in done.stderr
    assert done.stdout == ""


# -- one code path, with or without a server --------------------------------------------


def session(home: Path, axon: str, round_: int) -> dict[str, Any]:
    """The same commands a user would type; what they print, minus times and hashes."""
    axons_json("publish", axon, f"round {round_}", home=home)
    axons_json(
        "publish",
        axon,
        "--payload",
        json.dumps({"n": round_}),
        "--type",
        "count",
        "--idempotency-key",
        f"count-{round_}",
        home=home,
    )
    axons_json(
        "sql", axon, "INSERT INTO notes VALUES (?)", "--param", str(round_), "--write", home=home
    )
    return {
        "events": comparable(tail(home, axon)),
        "rows": axons_json("sql", axon, "SELECT n FROM notes ORDER BY n", home=home)["rows"],
        "names": [a["name"] for a in axons_json("ls", home=home)["axons"]],
        "verify": axons_json("verify", axon, home=home),
    }


def test_the_same_commands_work_with_and_without_a_running_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    axons_json("new", "shared", home=home)
    axons_json("sql", "shared", "CREATE TABLE notes(n INTEGER)", "--write", home=home)

    alone = session(home, "shared", 1)
    with running_server(home) as server:
        # The server holds the home's lock: these commands can only have gone through its socket.
        served = session(home, "shared", 2)
        assert server.running
    after = session(home, "shared", 3)

    assert served["events"][:2] == alone["events"]
    assert after["events"][:4] == served["events"]
    assert [e[0] for e in after["events"]] == [1, 2, 3, 4, 5, 6]
    assert (alone["rows"], served["rows"], after["rows"]) == ([[1]], [[1], [2]], [[1], [2], [3]])
    assert alone["names"] == served["names"] == after["names"] == ["shared"]
    assert [r["verify"]["checked"] for r in (alone, served, after)] == [2, 4, 6]
    assert all(r["verify"]["ok"] for r in (alone, served, after))


def test_tail_follow_through_a_running_server(tmp_path: Path) -> None:
    """`tail --follow` is a stream: it prints what exists, then what arrives."""
    home = tmp_path / "home"
    axons_json("new", "followed", home=home)
    axons_json("publish", "followed", "one", home=home)
    with running_server(home) as server:
        proc = subprocess.Popen(
            [AXONS, "tail", "followed", "--follow", "--json", "--home", str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
            cwd=ROOT,
        )
        try:
            first = json.loads(read_line(proc, READY_S, "tail --follow"))
            assert first["sequence"] == 1
            axons_json("publish", "followed", "two", home=home)
            second = json.loads(read_line(proc, READY_S, "tail --follow"))
            assert second["sequence"] == 2 and json.loads(second["payload"]) == {"text": "two"}
        finally:
            proc.kill()
            proc.wait()
        assert server.running


# -- scenarios --------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["triage.toml", "webhook.toml"])
def test_shipped_scenarios_pass(tmp_path: Path, scenario: str) -> None:
    done = axons("run", str(ROOT / "scenarios" / scenario), "--json", home=tmp_path / "home")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = lines_of(done.stdout)
    assert steps and all(s["ok"] for s in steps)
    assert [s["index"] for s in steps] == list(range(1, len(steps) + 1))


def test_a_scenario_runs_against_a_running_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_token(home, "unused", "read")
    with running_server(home):
        done = axons("run", str(ROOT / "scenarios" / "triage.toml"), home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout


UNMET = """
name = "unmet"

[[axons]]
name = "unmet"

[[steps]]
sql = { axon = "unmet", statements = ["CREATE TABLE t(a)", "INSERT INTO t VALUES (1)"] }

[[steps]]
expect = { axon = "unmet", sql = "SELECT a FROM t", rows = [[2]] }

[[steps]]
publish = { axon = "unmet", text = "never reached" }
"""


def test_a_scenario_with_an_unmet_expectation_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "unmet.toml"
    path.write_text(UNMET)
    home = tmp_path / "home"
    done = axons("run", str(path), "--json", home=home)
    assert done.returncode == 1
    steps = lines_of(done.stdout)
    assert [(s["kind"], s["ok"]) for s in steps] == [("sql", True), ("expect", False)]
    assert "[[2]]" in steps[1]["detail"] and "[[1]]" in steps[1]["detail"]
    assert tail(home, "unmet") == []  # it stopped at the failure

    human = axons("run", str(path), home=home)
    assert human.returncode == 1
    assert "1 failed" in human.stdout


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[[steps]]\nnothing = 1\n", "step 1"),
        ('[[steps]]\npublish = { axon = "x", txt = "typo" }\n', "step 1: publish.txt"),
        ('name = "no steps"\n', "steps"),
        ('[[steps]]\nwait = { axon = "x" }\ntimeout_s = -1\n', "step 1: timeout_s"),
        ("[[steps]\n", "not valid TOML"),
    ],
)
def test_an_invalid_scenario_is_exit_1_with_one_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    done = axons("run", str(path), home=tmp_path / "home")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and where in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
