"""Records (contract §4.2): verify an Axon's hash chain, export it as JSON Lines, import one,
fork one at a sequence. `imports` is its own router: the Axon routes include it ahead of
`/v1/axons/{id}`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from engine.api import schemas as s
from engine.api.routes.deps import AxonId, Caller, Context, new_router

imports = new_router()
router = new_router()


@imports.post(
    "/v1/axons/import",
    response_model=s.AxonView,
    tags=["records"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def import_axon(
    api: Context, caller: Caller, request: Request, name: str | None = None
) -> s.AxonView:
    """Registered before `/v1/axons/{id}`, which would otherwise match "import"."""
    caller.require_unlimited("import Axons")
    body = await request.body()
    lines = await asyncio.to_thread(body.splitlines)  # up to 512 MiB: not on the loop
    return await api.engine.import_axon(lines, name=name)


@router.get("/v1/axons/{id}/verify", response_model=s.VerifyReport, tags=["records"])
async def verify(api: Context, caller: Caller, ref: AxonId) -> s.VerifyReport:
    return await api.engine.verify(await api.axon_for(caller, ref, "read"))


@router.get(
    "/v1/axons/{id}/export",
    tags=["records"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export(api: Context, caller: Caller, ref: AxonId) -> Any:
    axon_id = await api.axon_for(caller, ref, "read")
    lines = api.engine.export(axon_id)
    first = await anext(lines)  # a missing Axon is a JSON 404 before the stream starts

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield first + b"\n"
            async for line in lines:
                yield line + b"\n"
        finally:
            if isinstance(lines, AsyncGenerator):  # end the engine's read now, not at GC
                await lines.aclose()

    return StreamingResponse(stream(), media_type="application/x-ndjson")


@router.post("/v1/axons/{id}/fork", response_model=s.AxonView, tags=["records"])
async def fork(api: Context, caller: Caller, ref: AxonId, body: s.ForkRequest) -> s.AxonView:
    axon_id = await api.axon_for(caller, ref, "read")
    caller.require_unlimited("fork Axons")
    return await api.engine.fork(axon_id, body.at_sequence, name=body.name)
