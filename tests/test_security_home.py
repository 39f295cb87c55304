"""Issue 8, the home and Axon-limited tokens (docs/security.md): the data home is private;
a token limited to some Axons cannot make Axons; a name means one live Axon; `axons token
create --axon NAME` limits the token to that Axon, or refuses."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import httpx
import pytest

pytest.register_assert_rewrite("tests.agents_support")

from tests.agents_support import SAMPLE_AGENTS, TRIAGE_SCRIPT  # noqa: E402
from tests.http_support import (  # noqa: E402
    axons,
    axons_json,
    make_token,
    message_body,
    running_server,
    wait_until,
)
from tests.test_security_agents import socket_client  # noqa: E402


def loose_modes(home: Path) -> list[str]:
    """Everything under the home that someone other than its owner could read or enter."""
    loose = []
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            loose.append(f"{path.relative_to(home.parent)} {mode:o}")
    return loose


def axon_with_an_event(http: httpx.Client, name: str) -> str:
    axon_id = str(http.post("/v1/axons", json={"name": name}).json()["id"])
    assert http.post(f"/v1/axons/{axon_id}/publish", json=message_body("x")).status_code == 200
    return axon_id


def test_the_data_home_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    admin = make_token(home, "admin", "admin")
    with running_server(home) as server, server.http(admin) as http:
        axon_id = axon_with_an_event(http, "private")
        r = http.post(
            f"/v1/axons/{axon_id}/sql/batch", json={"statements": [{"sql": "CREATE TABLE t(a)"}]}
        )
        assert r.status_code == 200, r.text
        assert (home / "axons" / f"{axon_id}.db-wal").exists()
        assert (home / "catalog.db-wal").exists()
        with socket_client(server) as local:  # the operator's process agent: its pid file
            spec = {
                "name": "local",
                "command": [sys.executable, "-u", str(TRIAGE_SCRIPT)],
                "env": {"PYTHONPATH": str(SAMPLE_AGENTS)},
                "runtime": "process",
            }
            r = local.post(f"/v1/axons/{axon_id}/agents", json=spec)
            assert r.status_code == 200, r.text
            wait_until(lambda: list((home / "agents").glob("*.pid")), "the agent's pid file")
            assert loose_modes(home) == []
            assert local.post(f"/v1/axons/{axon_id}/agents/local/stop").status_code == 200
            wait_until(lambda: not list((home / "agents").glob("*.pid")), "the agent to stop")

    # A home an older version left readable is tightened when an engine starts on it; a
    # file of the user's own that happens to be there is left as it was.
    os.chmod(home, 0o755)
    for path in home.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    users_script = home / "backup.sh"
    users_script.write_text("#!/bin/sh\n")
    users_script.chmod(0o755)
    with running_server(home) as server, server.http(admin) as http:
        assert http.get(f"/v1/axons/{axon_id}").status_code == 200
        assert loose_modes(home) == ["home/backup.sh 755"]


def test_a_limited_token_cannot_make_axons(tmp_path: Path) -> None:
    home = tmp_path / "home"
    admin = make_token(home, "admin", "admin")
    with running_server(home) as server, server.http(admin) as http:
        mine = axon_with_an_event(http, "mine")
        export = http.get(f"/v1/axons/{mine}/export").content
        limited = make_token(home, "limited", "admin", [mine])
        with server.http(limited) as scoped:
            attempts = [
                scoped.post("/v1/axons", json={"name": "theirs"}),
                scoped.post("/v1/axons/import", content=export, params={"name": "copy"}),
                scoped.post(f"/v1/axons/{mine}/fork", json={"at_sequence": 1, "name": "f"}),
            ]
            for r in attempts:
                assert r.status_code == 403, r.text
                assert r.json()["error"]["code"] == "limited_token"
            # What it may do on its own Axon still works.
            assert scoped.get(f"/v1/axons/{mine}").status_code == 200
        page = http.get("/v1/axons", params={"include_total_count": True}).json()
        assert [a["name"] for a in page["axons"]] == ["mine"]


def test_a_name_means_one_live_axon(tmp_path: Path) -> None:
    """A token or a script given a name keeps reaching the Axon it meant: nobody can create
    a newer Axon under that name while it lives."""
    home = tmp_path / "home"
    admin = make_token(home, "admin", "admin")
    with running_server(home) as server, server.http(admin) as http:
        first = http.post("/v1/axons", json={"name": "support"}).json()["id"]
        r = http.post("/v1/axons", json={"name": "support"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "name_taken", r.text
        assert http.get("/v1/axons/support").json()["id"] == first
        export = http.get(f"/v1/axons/{first}/export").content
        r = http.post("/v1/axons/import", content=export, params={"name": "support"})
        assert r.status_code == 409, r.text
        r = http.post(f"/v1/axons/{first}/fork", json={"at_sequence": 0, "name": "support"})
        assert r.status_code == 409, r.text
        # Without a name, an import keeps its name when it is free, else gets a free one.
        r = http.post("/v1/axons/import", content=export)
        assert r.status_code == 200 and r.json()["name"] == "support-2", r.text
        # Once the Axon is deleted its name is free again.
        assert http.delete(f"/v1/axons/{first}").status_code == 200
        second = http.post("/v1/axons", json={"name": "support"})
        assert second.status_code == 200, second.text
        assert http.get("/v1/axons/support").json()["id"] == second.json()["id"]


def test_token_create_resolves_axon_names(tmp_path: Path) -> None:
    home = tmp_path / "home"
    support = axons_json("new", "support", home=home)["id"]
    other = axons_json("new", "other", home=home)["id"]
    made = axons_json(
        "token", "create", "by-name", "--scope", "read", "--axon", "support", home=home
    )
    assert made["axons"] == [support]
    listed = {t["name"]: t for t in axons_json("token", "ls", home=home)}
    assert listed["by-name"]["axons"] == [support]

    with running_server(home) as server, server.http(made["token"]) as http:
        assert http.get(f"/v1/axons/{support}/events").status_code == 200
        assert http.get(f"/v1/axons/{other}/events").status_code == 404

    missing = axons("token", "create", "nowhere", "--scope", "read", "--axon", "no-such", home=home)
    assert missing.returncode == 1 and "no-such" in missing.stderr, missing
    assert "nowhere" not in {t["name"] for t in axons_json("token", "ls", home=home)}
