"""SQL state (contract §4.2): a query (now or at a past sequence), a batch in one
transaction, and the row changes one event's moment made."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import Path, Request
from fastapi.responses import Response

from engine.api import schemas as s
from engine.api.routes.deps import AxonId, Caller, Context, ORJSONResponse, new_router
from engine.state import BatchFailed

T = TypeVar("T")

router = new_router()


@router.post("/v1/axons/{id}/sql/query", response_model=s.QueryResult, tags=["sql"])
async def sql_query(
    api: Context, caller: Caller, ref: AxonId, body: s.QueryRequest, request: Request
) -> Response:
    axon_id = await api.axon_for(caller, ref, "read")
    write = body.at_sequence is None and not body.read_only and caller.allows("sql-write")
    result = await until_disconnected(
        request,
        api.engine.query(
            axon_id,
            body.sql,
            body.params,
            write=write,
            at_sequence=body.at_sequence,
            max_rows=body.max_rows,
        ),
    )
    return Response(result.model_dump_json(), media_type="application/json")


@router.post("/v1/axons/{id}/sql/batch", response_model=s.SqlBatchResult, tags=["sql"])
async def sql_batch(
    api: Context, caller: Caller, ref: AxonId, body: s.SqlBatchRequest, request: Request
) -> Any:
    axon_id = await api.axon_for(caller, ref, "admin" if body.ack else "sql-write")
    ack = (body.ack.agent, body.ack.sequence) if body.ack else None
    try:
        results = await until_disconnected(
            request,
            api.engine.batch(axon_id, [st.model_dump() for st in body.statements], ack=ack),
        )
    except BatchFailed as failed:
        return ORJSONResponse({"results": failed_steps(failed, len(body.statements))})
    return s.SqlBatchResult(results=[s.BatchStep(success=r) for r in results])


def failed_steps(failed: BatchFailed, statements: int) -> list[dict[str, Any]]:
    """A rolled-back batch step by step: undone, the one that failed and why, not run."""
    steps: list[dict[str, Any]] = [
        {"error": {"message": f"rolled back: statement {failed.index + 1} failed"}}
        for _ in failed.completed
    ]
    steps.append({"error": {"message": failed.cause.args[0] if failed.cause.args else str(failed)}})
    steps += [
        {"error": {"message": "not run: an earlier statement failed"}}
        for _ in range(failed.index + 1, statements)
    ]
    return steps


@router.get("/v1/axons/{id}/changes/{sequence}", response_model=s.ChangesView, tags=["sql"])
async def changes(
    api: Context, caller: Caller, ref: AxonId, sequence: Annotated[int, Path(ge=0)]
) -> s.ChangesView:
    """The row changes made while `sequence` was the latest event (time travel)."""
    axon_id = await api.axon_for(caller, ref, "read")
    return s.ChangesView(changes=await api.engine.changes(axon_id, sequence))


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`, cancelled if the client hangs up first: the engine then interrupts the SQL it
    runs at once instead of letting it run to its deadline for nobody."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # the client is gone (or this handler was cancelled)
    return await task
