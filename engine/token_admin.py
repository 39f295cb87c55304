"""API tokens as the engine's clients manage them (`Engine.tokens`, contract §4.3): the
token store's methods on a worker thread, with a token's Axons given by id or name and
checked to be live, since a token holds ids and one for no live Axon would reach nothing."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from engine.errors import ErrorCode, InvalidInput, Unavailable
from engine.models import AxonView
from engine.tokens import TokenStore, TokenView

ResolveAxon = Callable[[str], Awaitable[AxonView]]


class TokenAdmin:
    """Create, list and revoke tokens in the home's catalog. Opened and closed with the
    engine; the HTTP server authenticates with its own `TokenStore` on the same file."""

    def __init__(self, catalog: Path, resolve_axon: ResolveAxon) -> None:
        self._catalog = catalog
        self._resolve_axon = resolve_axon
        self._store: TokenStore | None = None

    async def open(self) -> None:
        self._store = await asyncio.to_thread(TokenStore, self._catalog)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            raise Unavailable("the engine is not started", code=ErrorCode.NOT_STARTED)
        return self._store

    async def create(
        self, name: str, scope: str, axons: Sequence[str] | None = None
    ) -> tuple[TokenView, str]:
        """A new token and its secret, which is shown this once; `axons` (ids or names)
        limits it to those Axons, None to none in particular (every Axon)."""
        ids = await self._live_ids(axons) if axons else None
        secret = await asyncio.to_thread(self.store.create, name, scope, ids)
        return await asyncio.to_thread(self.store.get, name), secret

    async def list(self) -> builtins.list[TokenView]:
        return await asyncio.to_thread(self.store.list)

    async def revoke(self, name: str) -> TokenView:
        return await asyncio.to_thread(self.store.revoke, name)

    async def _live_ids(self, refs: Sequence[str]) -> builtins.list[str]:
        views = [await self._resolve_axon(ref) for ref in refs]
        deleted = [v.id for v in views if v.deleted_at_ms is not None]
        if deleted:
            raise InvalidInput(
                f"Axon {deleted[0]} is deleted; a token for it would reach nothing",
                code=ErrorCode.AXON_DELETED,
            )
        return [v.id for v in views]
