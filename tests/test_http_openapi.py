"""The HTTP contract as `/openapi.json` describes it (paths, operation ids, parameters,
schemas) changes only on purpose: the app's description must equal the reviewed snapshot in
tests/openapi.json. After an intended change, regenerate it and review the diff with it:

    .venv/bin/python -m tests.test_http_openapi
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine.api.server import create_app
from engine.engine import Engine
from engine.tokens import TokenStore

SNAPSHOT = Path(__file__).with_name("openapi.json")


def description(home: Path, *, require_token: bool) -> dict[str, Any]:
    """The app's description, as served on the socket or over TCP; no engine needs to run."""
    tokens = TokenStore(home / "catalog.db")
    try:
        app = create_app(Engine(home), tokens, require_token=require_token)
        document: dict[str, Any] = app.openapi()
        return document
    finally:
        tokens.close()


def rendered(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def test_the_description_is_the_reviewed_snapshot(tmp_path: Path) -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    for require_token in (False, True):
        document = description(tmp_path, require_token=require_token)
        assert sorted(document["paths"]) == sorted(snapshot["paths"]), "paths added or removed"
        for path, operations in snapshot["paths"].items():
            assert document["paths"][path] == operations, f"{path} changed"
        assert document == snapshot, "the description changed (see the module docstring)"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as home:
        SNAPSHOT.write_text(rendered(description(Path(home), require_token=True)))
    sys.stdout.write(f"wrote {SNAPSHOT}\n")
