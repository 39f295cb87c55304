"""Axons (contract §4.2): create, list, read, update and delete them, and the engine's health."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from engine.api import schemas as s
from engine.api.routes import records
from engine.api.routes.deps import AxonId, Caller, Context, new_router

router = new_router()


@router.get("/healthz", response_model=s.Health, tags=["engine"])
async def healthz(api: Context) -> s.Health:
    return s.Health(ok=True, axons_open=api.engine.open_axons)


@router.post("/v1/axons", response_model=s.AxonView, tags=["axons"])
async def create_axon(api: Context, caller: Caller, body: s.CreateAxon | None = None) -> s.AxonView:
    caller.require_unlimited("create Axons")
    body = body or s.CreateAxon()
    return await api.engine.create_axon(body.name, body.metadata)


# before `/v1/axons/{id}`, which would otherwise match "import"
router.include_router(records.imports)


@router.get("/v1/axons", response_model=s.AxonPage, tags=["axons"])
async def list_axons(
    api: Context,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=5000)] = 20,
    starting_after: str | None = None,
    name: str | None = None,
    search: str | None = None,
    id: str | None = None,
    include_total_count: bool = False,
    include_deleted: bool = False,
) -> s.AxonPage:
    caller.require("read")
    ids = [i for i in (id or "").split(",") if i] or None
    if caller.axons is not None:
        ids = sorted(caller.axons & set(ids)) if ids else sorted(caller.axons)
        if not ids:
            return s.AxonPage(axons=[], has_more=False, total_count=0)
    return await api.engine.list_axons(
        limit=limit,
        starting_after=starting_after,
        name=name,
        search=search,
        ids=ids,
        include_total_count=include_total_count,
        include_deleted=include_deleted,
    )


@router.get("/v1/axons/{id}", response_model=s.AxonView, tags=["axons"])
async def get_axon(api: Context, caller: Caller, ref: AxonId) -> s.AxonView:
    return await api.engine.get_axon(await api.axon_for(caller, ref, "read"))


@router.post("/v1/axons/{id}", response_model=s.AxonView, tags=["axons"])
async def update_axon(api: Context, caller: Caller, ref: AxonId, body: s.UpdateAxon) -> s.AxonView:
    axon_id = await api.axon_for(caller, ref, "admin")
    if body.metadata is None:
        return await api.engine.get_axon(axon_id)
    return await api.engine.update_axon(axon_id, body.metadata)


@router.delete("/v1/axons/{id}", response_model=s.AxonView, tags=["axons"])
async def delete_axon(api: Context, caller: Caller, ref: AxonId) -> s.AxonView:
    return await api.engine.delete_axon(await api.axon_for(caller, ref, "admin"))
