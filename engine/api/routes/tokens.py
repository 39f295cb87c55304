"""API tokens (contract §4.3): create, list and revoke them. Over TCP only an admin token
that is not limited to some Axons may (it could otherwise mint itself a wider one); on the
unix socket the file's mode is the guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from engine.api import schemas as s
from engine.api.routes.deps import Caller, Context, new_router
from engine.tokens import TokenView

router = new_router()
TokenName = Annotated[str, Path(min_length=1, max_length=200)]


@router.post("/v1/tokens", response_model=s.CreatedToken, tags=["tokens"])
async def create_token(api: Context, caller: Caller, body: s.CreateToken) -> s.CreatedToken:
    """A new token; its secret is in this answer and nowhere else."""
    caller.require_unlimited("manage tokens")
    view, secret = await api.engine.tokens.create(body.name, body.scope, body.axons)
    return s.CreatedToken(**view.model_dump(), token=secret)


@router.get("/v1/tokens", response_model=s.TokenList, tags=["tokens"])
async def list_tokens(api: Context, caller: Caller) -> s.TokenList:
    caller.require_unlimited("manage tokens")
    return s.TokenList(tokens=await api.engine.tokens.list())


@router.delete("/v1/tokens/{name}", response_model=TokenView, tags=["tokens"])
async def revoke_token(api: Context, caller: Caller, name: TokenName) -> TokenView:
    """Its requests fail from now on, and its open streams end."""
    caller.require_unlimited("manage tokens")
    return await api.engine.tokens.revoke(name)
