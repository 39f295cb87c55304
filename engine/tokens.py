"""API tokens (contract §4.3): created once, stored only as a SHA-256 hash in catalog.db,
each with a scope and optionally limited to some Axons.

Scopes are ranked: read < publish < sql-write < admin; a scope allows everything the
lower ones do.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import BaseModel

from engine.errors import ErrorCode, Forbidden, InvalidInput, NotFound, Unauthorized
from engine.log import check_label, connect

SCOPES = ("read", "publish", "sql-write", "admin")
TOKEN_PREFIX = "axt_"
RESERVED_NAME_PREFIX = "webhook:"  # the author of a signed webhook's events (api/webhooks.py)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens(
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    axons TEXT,
    created_at_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and what it may do, or the local user (admin)."""

    name: str
    scope: str = "admin"
    axons: frozenset[str] | None = None  # None: every Axon

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def require(self, scope: str, axon_id: str | None = None) -> None:
        """404 for an Axon outside the token's reach (its existence is not revealed), then
        403 when the scope is too small."""
        if axon_id is not None and self.axons is not None and axon_id not in self.axons:
            raise NotFound(
                f"no Axon {axon_id!r:.80}; `axons ls` lists them", code=ErrorCode.AXON_NOT_FOUND
            )
        if not self.allows(scope):
            raise Forbidden(
                f"token {self.name!r} has scope {self.scope!r}; this needs {scope!r} "
                f"(create one with `axons token create NAME --scope {scope}`)"
            )

    def require_unlimited(self, action: str) -> None:
        """Making an Axon is for admins of every Axon: a token limited to some Axons could
        not reach the new one, and must not mint Axons (or names) for others."""
        self.require("admin")
        if self.axons is not None:
            raise Forbidden(
                f"token {self.name!r} is limited to some Axons and cannot {action}; use a token "
                "that is not limited (`axons token create NAME --scope admin`)",
                code=ErrorCode.LIMITED_TOKEN,
            )


class TokenView(BaseModel):
    """A token as listed: never its secret, which only `create` returns, once."""

    name: str
    scope: str
    axons: list[str] | None  # None: every Axon
    created_at_ms: int


SELECT_VIEW = "SELECT name, scope, axons, created_at_ms FROM tokens"


def _view(name: str, scope: str, axons: str | None, created_at_ms: int) -> TokenView:
    return TokenView(
        name=name,
        scope=scope,
        axons=orjson.loads(axons) if axons else None,
        created_at_ms=created_at_ms,
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Tokens in catalog.db. Thread-safe; lookups are cached by hash."""

    def __init__(self, catalog_path: Path) -> None:
        self._conn = connect(catalog_path, create=True)
        self._conn.execute(SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[str, Principal | None] = {}
        self._version: object = None  # PRAGMA data_version when the cache was filled

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(self, name: str, scope: str, axons: list[str] | None = None) -> str:
        """Store a new token and return it; this is the only time it is shown."""
        check_label("name", name)
        if name.startswith(RESERVED_NAME_PREFIX):
            raise InvalidInput(
                f"token names starting with {RESERVED_NAME_PREFIX!r} are reserved for signed "
                "webhooks (their events' author); pick another name",
                code=ErrorCode.INVALID_NAME,
            )
        if scope not in SCOPES:
            raise InvalidInput(
                f"scope must be one of {', '.join(SCOPES)}", code=ErrorCode.INVALID_SCOPE
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            if self._conn.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchall():
                raise InvalidInput(
                    f"a token named {name!r} exists; revoke it first", code=ErrorCode.TOKEN_EXISTS
                )
            self._conn.execute(
                "INSERT INTO tokens VALUES (?,?,?,?,?)",
                (
                    name,
                    _digest(token),
                    scope,
                    orjson.dumps(axons).decode() if axons else None,
                    time.time_ns() // 1_000_000,
                ),
            )
        return token

    def list(self) -> list[TokenView]:
        with self._lock:
            rows = self._conn.execute(f"{SELECT_VIEW} ORDER BY name").fetchall()
        return [_view(*row) for row in rows]

    def get(self, name: str) -> TokenView:
        with self._lock:
            rows = self._conn.execute(f"{SELECT_VIEW} WHERE name = ?", (name,)).fetchall()
        if not rows:
            raise NotFound(f"no token named {name!r}", code=ErrorCode.TOKEN_NOT_FOUND)
        return _view(*rows[0])

    def revoke(self, name: str) -> TokenView:
        """Remove the token (its requests fail from now on) and return what it was."""
        with self._lock:
            rows = self._conn.execute(f"{SELECT_VIEW} WHERE name = ?", (name,)).fetchall()
            self._conn.execute("DELETE FROM tokens WHERE name = ?", (name,))
            if not rows:
                raise NotFound(f"no token named {name!r}", code=ErrorCode.TOKEN_NOT_FOUND)
            self._cache.clear()
        return _view(*rows[0])

    def authenticate(self, token: str) -> Principal:
        digest = _digest(token)
        with self._lock:
            # Another process (`axons token revoke`) may have changed the tokens: SQLite's
            # data_version moves on any other connection's commit, and then the cache goes.
            version = self._conn.execute("PRAGMA data_version").fetchall()[0][0]
            if version != self._version:
                self._cache.clear()
                self._version = version
        principal = self._cache.get(digest)
        if principal is None:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT name, scope, axons FROM tokens WHERE hash = ?", (digest,)
                ).fetchall()
            if not rows:
                raise Unauthorized(
                    "the bearer token is not valid; create one with "
                    "`axons token create NAME --scope SCOPE`"
                )
            name, scope, axons = rows[0]
            principal = Principal(name, scope, frozenset(orjson.loads(axons)) if axons else None)
            self._cache[digest] = principal
        return principal
