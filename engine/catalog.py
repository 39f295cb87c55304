"""The home's catalog (catalog.db): which Axons exist, their names and metadata.

Axon files are created on first use, so creating ten thousand Axons costs ten thousand rows,
not ten thousand files.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from engine.errors import Conflict, ErrorCode, InvalidInput, NotFound
from engine.log import check_label, connect
from engine.models import AxonPage, AxonView

MAX_LIMIT = 5000
MAX_METADATA_BYTES = 64 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS axons(
    n INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS axons_name ON axons(name);
CREATE TABLE IF NOT EXISTS agents(
    axon_id TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    desired TEXT NOT NULL DEFAULT 'running',
    declared_over TEXT,
    PRIMARY KEY (axon_id, name)
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "id, created_at_ms, metadata, name, deleted_at_ms"


def new_axon_id() -> str:
    """`axn_` + 11 hex digits of milliseconds + 10 random: sortable by creation, unguessable."""
    return f"axn_{time.time_ns() // 1_000_000:011x}{secrets.token_hex(5)}"


def _view(row: tuple[Any, ...]) -> AxonView:
    axon_id, created, metadata, name, deleted = row
    return AxonView(
        id=axon_id,
        created_at_ms=created,
        metadata=orjson.loads(metadata),
        name=name,
        deleted_at_ms=deleted,
    )


def check_metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidInput(
            "metadata must be an object of string keys and string values", code="invalid_metadata"
        )
    try:
        size = len(orjson.dumps(metadata))
    except TypeError:  # a lone surrogate: not text that can be stored
        raise InvalidInput("metadata must be valid Unicode text", code="invalid_metadata") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(
            f"metadata is larger than {MAX_METADATA_BYTES} bytes", code="invalid_metadata"
        )
    return metadata


class Catalog:
    """Thread-safe access to catalog.db; call from executor threads."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path, create=True)
        self._conn.execute(SCHEMA)
        _record_where_agents_were_declared(self._conn)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(
        self,
        name: str | None,
        metadata: dict[str, str],
        axon_id: str | None = None,
        *,
        rename_if_taken: bool = False,
    ) -> AxonView:
        """A new Axon. A name a live Axon has is refused (409), or, with `rename_if_taken`
        (names the engine chose: an import's, a fork's), made free with a suffix `-2`, `-3`..."""
        if name is not None:
            check_label("name", name)
        view = AxonView(
            id=axon_id or new_axon_id(),
            created_at_ms=time.time_ns() // 1_000_000,
            metadata=check_metadata(metadata),
            name=name,
        )
        with self._lock:
            if name is not None and rename_if_taken:
                name = view.name = self._free_name(name)
            if name is not None and self._live_named(name):
                raise Conflict(
                    f"a live Axon is already named {name!r:.80}; pick another name (or delete "
                    "that one first)",
                    code=ErrorCode.NAME_TAKEN,
                )
            self._conn.execute(
                "INSERT INTO axons(id, name, metadata, created_at_ms) VALUES (?,?,?,?)",
                (view.id, name, orjson.dumps(view.metadata).decode(), view.created_at_ms),
            )
        return view

    def _live_named(self, name: str) -> bool:
        """Names are unique among live Axons, so a name always means the Axon it meant when
        a token or a script was given it; a deleted Axon's name is free again."""
        return bool(
            self._conn.execute(
                "SELECT 1 FROM axons WHERE name = ? AND deleted_at_ms IS NULL LIMIT 1", (name,)
            ).fetchall()
        )

    def _free_name(self, base: str) -> str:
        candidate, n = base, 1
        while self._live_named(candidate):
            n += 1
            candidate = f"{base[: 200 - len(str(n)) - 1]}-{n}"
        return candidate

    def get(self, ref: str) -> AxonView:
        """By id, or by name: the newest live Axon with that name."""
        if not isinstance(ref, str) or not ref.isprintable():  # ids and names never are
            raise NotFound(f"no Axon {ref!r:.80}; `axons ls` lists them", code="axon_not_found")
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM axons WHERE id = ?", (ref,)
            ).fetchall()
            if not rows:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM axons WHERE name = ? AND deleted_at_ms IS NULL "
                    "ORDER BY n DESC LIMIT 1",
                    (ref,),
                ).fetchall()
        if not rows:
            raise NotFound(f"no Axon {ref!r:.80}; `axons ls` lists them", code="axon_not_found")
        return _view(rows[0])

    def update_metadata(self, axon_id: str, metadata: dict[str, str]) -> AxonView:
        with self._lock:
            self._conn.execute(
                "UPDATE axons SET metadata = ? WHERE id = ?",
                (orjson.dumps(check_metadata(metadata)).decode(), axon_id),
            )
        return self.get(axon_id)

    def mark_deleted(self, axon_id: str) -> AxonView:
        with self._lock:
            self._conn.execute(
                "UPDATE axons SET deleted_at_ms = ? WHERE id = ? AND deleted_at_ms IS NULL",
                (time.time_ns() // 1_000_000, axon_id),
            )
        return self.get(axon_id)

    def list_axons(
        self,
        *,
        limit: int = 20,
        starting_after: str | None = None,
        name: str | None = None,
        search: str | None = None,
        ids: list[str] | None = None,
        include_total_count: bool = False,
        include_deleted: bool = False,
    ) -> AxonPage:
        """Newest first. `name` is a prefix; `search` matches id, name or metadata."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
        where, args = [], []
        if not include_deleted:
            where.append("deleted_at_ms IS NULL")
        if name:
            where.append("name >= ? AND name < ?")
            args += [name, name + "\U0010ffff"]
        if search:
            pattern = (
                "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            where.append(
                "(id LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\' OR metadata LIKE ? ESCAPE '\\')"
            )
            args += [pattern] * 3
        if ids:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args += ids
        filters = " AND ".join(where) or "1"
        with self._lock:
            total = None
            if include_total_count:
                total = self._conn.execute(
                    f"SELECT count(*) FROM axons WHERE {filters}", args
                ).fetchall()[0][0]
            page_where = filters
            page_args = list(args)
            if starting_after:
                found = self._conn.execute(
                    "SELECT n FROM axons WHERE id = ?", (starting_after,)
                ).fetchall()
                if not found:
                    raise InvalidInput(
                        f"starting_after: no Axon {starting_after!r:.80}", code="invalid_cursor"
                    )
                page_where += " AND n < ?"
                page_args.append(found[0][0])
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM axons WHERE {page_where} ORDER BY n DESC LIMIT ?",
                [*page_args, limit + 1],
            ).fetchall()
        return AxonPage(
            axons=[_view(r) for r in rows[:limit]], has_more=len(rows) > limit, total_count=total
        )

    def home_id(self) -> str:
        """A stable random id for this home (labels its containers)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('home_id', ?)", (secrets.token_hex(8),)
            )
            return str(
                self._conn.execute("SELECT value FROM meta WHERE key = 'home_id'").fetchall()[0][0]
            )

    # -- agents -------------------------------------------------------------------------

    def put_agent(
        self, axon_id: str, name: str, spec: dict[str, Any], desired: str, declared_over: str
    ) -> None:
        """`declared_over`: "socket" (the operator) or "tcp" (a token: Docker only, ever)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO agents VALUES (?,?,?,?,?) ON CONFLICT(axon_id, name) DO UPDATE SET "
                "spec = excluded.spec, desired = excluded.desired, "
                "declared_over = excluded.declared_over",
                (axon_id, name, orjson.dumps(spec).decode(), desired, declared_over),
            )

    def set_agent_desired(self, axon_id: str, name: str, desired: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE agents SET desired = ? WHERE axon_id = ? AND name = ?",
                (desired, axon_id, name),
            )

    def agents(self) -> list[tuple[str, str, dict[str, Any], str, str]]:
        """(axon_id, name, spec, desired, declared_over) of every agent."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT axon_id, name, spec, desired, declared_over FROM agents"
            ).fetchall()
        return [(a, n, orjson.loads(spec), d, o) for a, n, spec, d, o in rows]

    def delete_agent(self, axon_id: str, name: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM agents WHERE axon_id = ? AND name = ?", (axon_id, name))


def _record_where_agents_were_declared(conn: Any) -> None:
    """Homes made before `declared_over` existed: an agent without an image could only be
    declared on the socket; one with an image may have come over TCP, so it is treated as
    such (it stays in Docker, which is where it ran anyway)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(agents)").fetchall()}
    if "declared_over" not in columns:
        conn.execute("ALTER TABLE agents ADD COLUMN declared_over TEXT")
    conn.execute(
        "UPDATE agents SET declared_over = CASE WHEN json_extract(spec, '$.image') IS NULL "
        "THEN 'socket' ELSE 'tcp' END WHERE declared_over IS NULL"
    )
