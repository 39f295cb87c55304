"""The HTTP API (CONTRACT §4) as a FastAPI app over one Engine: the Runloop-compatible core
plus the extensions. `create_app(engine, require_token=...)` builds one; `engine.api.serve`
runs it on the home's unix socket and, optionally, TCP.
"""

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from engine.api import schemas as s
from engine.api import webhooks
from engine.api.fastpath import FastPublish
from engine.api.limits import BodyLimit
from engine.api.sse import EventStream
from engine.engine import Engine
from engine.errors import AxonError, InvalidInput, Unauthorized
from engine.models import AgentSpec, AgentView, Draft, Event, PublishResult
from engine.state import BatchFailed
from engine.tokens import Principal, TokenStore

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": s.ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 503)
}
MAX_IMPORT_BYTES = 512 << 20


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def create_asgi(
    engine: Engine, tokens: TokenStore, *, require_token: bool, **options: Any
) -> ASGIApp:
    """What the server runs: body limits, then the publish fast path, then the app. They
    sit outside FastAPI's own middleware, which costs more than a publish itself."""
    app = create_app(engine, tokens, require_token=require_token, **options)
    fast = FastPublish(app, authenticate=app.state.authenticate, publish=app.state.publish)
    return BodyLimit(
        fast,
        default=engine.max_payload * 4 + (64 << 10),
        larger={
            "/v1/axons/import": MAX_IMPORT_BYTES,
            "/publish/batch": 64 << 20,
            "/sql/batch": 64 << 20,
        },
    )


def create_app(
    engine: Engine,
    tokens: TokenStore,
    *,
    require_token: bool,
    webhook_secrets: dict[str, str] | None = None,
    sse_buffer: int = 10_000,
    keepalive_s: float = 15.0,
) -> FastAPI:
    """An app over `engine`. Over TCP `require_token` is on; on the unix socket the file's
    mode is the guard and callers act as the local user."""
    app = FastAPI(
        title="Axons",
        version="1",
        description="Durable, shared agent sessions. Compatible with Runloop's Axon API.",
        default_response_class=ORJSONResponse,
        responses=ERRORS,
    )
    secrets = webhooks.normalise_secrets(webhook_secrets)
    replays = webhooks.ReplayGuard(engine.config.webhooks.replay_window_s)
    local = Principal(engine.local_user)

    def authenticate(authorization: str | None) -> Principal:
        if not require_token:
            return local
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized(
                "send `Authorization: Bearer <token>`; create a token with "
                "`axons token create NAME --scope SCOPE`"
            )
        return tokens.authenticate(authorization[7:].strip())

    app.state.authenticate = authenticate

    async def publish_drafts(axon_id: str, drafts: Sequence[Draft]) -> list[PublishResult]:
        """Every client publish (the fast path's too). Over TCP a token may not pass for a
        signed webhook; on the socket the operator may."""
        if require_token:
            webhooks.check_client_drafts(drafts, secrets)
        return await engine.publish_batch(axon_id, drafts)

    app.state.publish = publish_drafts

    async def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
        return authenticate(authorization)  # async: FastAPI would run a plain def in a thread

    Caller = Annotated[Principal, Depends(principal)]
    AxonId = Annotated[str, Path(alias="id", min_length=1, max_length=200)]

    async def axon_for(caller: Principal, ref: str, scope: str) -> str:
        """The Axon's id, once the caller may act on it (404 before 403: a token limited to
        other Axons learns nothing about this one)."""
        axon_id = ref if ref.startswith("axn_") else (await engine.get_axon(ref)).id
        caller.require(scope, axon_id)
        return axon_id

    # -- errors -------------------------------------------------------------------------

    @app.exception_handler(AxonError)
    async def axon_error(_request: Request, exc: AxonError) -> Response:
        return ORJSONResponse(exc.to_dict(), status_code=exc.status)

    def malformed_json() -> Response:
        return ORJSONResponse(
            {
                "error": {
                    "code": "malformed_json",
                    "message": "the body is not valid JSON (UTF-8); check quoting and encoding",
                }
            },
            status_code=400,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return malformed_json()
        described = "; ".join(
            f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body') or 'body'}: {p.get('msg')}"
            for p in problems[:5]
        )
        return ORJSONResponse(
            {"error": {"code": "invalid_request", "message": described}}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            return malformed_json()
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if code != "http_error" and message in ("Not Found", "Method Not Allowed"):  # routing
            message = (
                f"no route for {request.method} {request.url.path}; GET /openapi.json lists the API"
            )
        return ORJSONResponse(
            {"error": {"code": code, "message": message}}, status_code=exc.status_code
        )

    # -- Axons --------------------------------------------------------------------------

    @app.get("/healthz", response_model=s.Health, tags=["engine"])
    async def healthz() -> s.Health:
        return s.Health(ok=True, axons_open=engine.open_axons)

    @app.post("/v1/axons", response_model=s.AxonView, tags=["axons"])
    async def create_axon(caller: Caller, body: s.CreateAxon | None = None) -> s.AxonView:
        caller.require_unlimited("create Axons")
        body = body or s.CreateAxon()
        return await engine.create_axon(body.name, body.metadata)

    @app.post(
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
    async def import_axon(caller: Caller, request: Request, name: str | None = None) -> s.AxonView:
        """Registered before `/v1/axons/{id}`, which would otherwise match "import"."""
        caller.require_unlimited("import Axons")
        body = await request.body()
        return await engine.import_axon(body.splitlines(), name=name)

    @app.get("/v1/axons", response_model=s.AxonPage, tags=["axons"])
    async def list_axons(
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
        return await engine.list_axons(
            limit=limit,
            starting_after=starting_after,
            name=name,
            search=search,
            ids=ids,
            include_total_count=include_total_count,
            include_deleted=include_deleted,
        )

    @app.get("/v1/axons/{id}", response_model=s.AxonView, tags=["axons"])
    async def get_axon(caller: Caller, ref: AxonId) -> s.AxonView:
        return await engine.get_axon(await axon_for(caller, ref, "read"))

    @app.post("/v1/axons/{id}", response_model=s.AxonView, tags=["axons"])
    async def update_axon(caller: Caller, ref: AxonId, body: s.UpdateAxon) -> s.AxonView:
        axon_id = await axon_for(caller, ref, "admin")
        if body.metadata is None:
            return await engine.get_axon(axon_id)
        return await engine.update_axon(axon_id, body.metadata)

    @app.delete("/v1/axons/{id}", response_model=s.AxonView, tags=["axons"])
    async def delete_axon(caller: Caller, ref: AxonId) -> s.AxonView:
        return await engine.delete_axon(await axon_for(caller, ref, "admin"))

    # -- events -------------------------------------------------------------------------

    def draft_of(body: s.PublishRequest, caller: Principal, key: str | None) -> Draft:
        return Draft(
            body.event_type,
            body.payload,
            body.source,
            body.origin,
            key or body.idempotency_key,
            caller.name,
        )

    @app.post("/v1/axons/{id}/publish", response_model=s.PublishResultView, tags=["events"])
    async def publish(
        caller: Caller,
        ref: AxonId,
        body: s.PublishRequest,
        idempotency_key: Annotated[str | None, Header()] = None,
        x_request_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        axon_id = await axon_for(caller, ref, "publish")
        [result] = await publish_drafts(
            axon_id, [draft_of(body, caller, idempotency_key or x_request_id)]
        )
        return Response(orjson.dumps(result.to_dict()), media_type="application/json")

    @app.post("/v1/axons/{id}/publish/batch", response_model=s.PublishBatchResult, tags=["events"])
    async def publish_batch(caller: Caller, ref: AxonId, body: s.PublishBatchRequest) -> Response:
        axon_id = await axon_for(caller, ref, "publish")
        results = await publish_drafts(axon_id, [draft_of(e, caller, None) for e in body.events])
        return Response(
            orjson.dumps({"results": [r.to_dict() for r in results]}), media_type="application/json"
        )

    @app.get("/v1/axons/{id}/events", response_model=s.EventsPage, tags=["events"])
    async def list_events(
        caller: Caller,
        ref: AxonId,
        limit: Annotated[int, Query(ge=1, le=5000)] = 20,
        starting_after: Annotated[int | None, Query(ge=0)] = None,
        include_total_count: bool = False,
        after_sequence: Annotated[
            int | None,
            Query(ge=0, description="extension: oldest first, the events after this sequence"),
        ] = None,
    ) -> Response:
        """Newest first (Runloop's paging), or oldest first with `after_sequence`."""
        axon_id = await axon_for(caller, ref, "read")
        if after_sequence is not None:
            events = await engine.read_events(axon_id, after_sequence, limit)
            last = await engine.last_sequence(axon_id)  # gapless: more iff the page ends before it
            page = {
                "events": [e.to_dict() for e in events],
                "has_more": bool(events) and events[-1].sequence < last,
                "total_count": last if include_total_count else None,
            }
            return Response(orjson.dumps(page), media_type="application/json")
        page_view = await engine.list_events(
            axon_id,
            limit=limit,
            starting_after=starting_after,
            include_total_count=include_total_count,
        )
        return Response(orjson.dumps(page_view.model_dump()), media_type="application/json")

    def start_after(after_sequence: int | None, last_event_id: str | None) -> int:
        if after_sequence is not None:
            return after_sequence
        if last_event_id:
            try:
                return max(0, int(last_event_id))
            except ValueError:
                raise InvalidInput(
                    "Last-Event-ID must be a sequence number", code="invalid_sequence"
                ) from None
        return 0

    @app.get(
        "/v1/axons/{id}/subscribe/sse",
        tags=["events"],
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`id: <sequence>` and `data: <event JSON>` per event",
            }
        },
    )
    async def subscribe(
        caller: Caller,
        ref: AxonId,
        after_sequence: Annotated[int | None, Query(ge=0)] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Any:
        axon_id = await axon_for(caller, ref, "read")
        await engine.get_axon(axon_id)  # a missing Axon is a 404, not an empty stream
        after = start_after(after_sequence, last_event_id)
        return EventStream(
            engine.subscribe(axon_id, after), buffer=sse_buffer, keepalive_s=keepalive_s
        )

    @app.get(
        "/v1/subscribe/sse",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def subscribe_many(caller: Caller, axons: str | None = None) -> Any:
        """Live events of several Axons (comma-separated ids), or of all of them."""
        caller.require("read")
        wanted = [a for a in (axons or "").split(",") if a] or None
        if caller.axons is not None:
            wanted = [a for a in (wanted or caller.axons) if a in caller.axons] or ["-"]
        stream: AsyncIterator[Event] = engine.subscribe_all(wanted)
        return EventStream(stream, buffer=sse_buffer, keepalive_s=keepalive_s)

    # -- state --------------------------------------------------------------------------

    @app.post("/v1/axons/{id}/sql/query", response_model=s.QueryResult, tags=["sql"])
    async def sql_query(caller: Caller, ref: AxonId, body: s.QueryRequest) -> Response:
        axon_id = await axon_for(caller, ref, "read")
        write = body.at_sequence is None and not body.read_only and caller.allows("sql-write")
        result = await engine.query(
            axon_id,
            body.sql,
            body.params,
            write=write,
            at_sequence=body.at_sequence,
            max_rows=body.max_rows,
        )
        return Response(result.model_dump_json(), media_type="application/json")

    @app.post("/v1/axons/{id}/sql/batch", response_model=s.SqlBatchResult, tags=["sql"])
    async def sql_batch(caller: Caller, ref: AxonId, body: s.SqlBatchRequest) -> Any:
        axon_id = await axon_for(caller, ref, "admin" if body.ack else "sql-write")
        ack = (body.ack.agent, body.ack.sequence) if body.ack else None
        try:
            results = await engine.batch(
                axon_id, [st.model_dump() for st in body.statements], ack=ack
            )
        except BatchFailed as failed:
            steps: list[dict[str, Any]] = [
                {"error": {"message": f"rolled back: statement {failed.index + 1} failed"}}
                for _ in failed.completed
            ]
            steps.append(
                {"error": {"message": failed.cause.args[0] if failed.cause.args else str(failed)}}
            )
            steps += [
                {"error": {"message": "not run: an earlier statement failed"}}
                for _ in body.statements[failed.index + 1 :]
            ]
            return ORJSONResponse({"results": steps})
        return s.SqlBatchResult(results=[s.BatchStep(success=r) for r in results])

    @app.get("/v1/axons/{id}/changes/{sequence}", response_model=s.ChangesView, tags=["sql"])
    async def changes(
        caller: Caller, ref: AxonId, sequence: Annotated[int, Path(ge=0)]
    ) -> s.ChangesView:
        """The row changes made while `sequence` was the latest event (time travel)."""
        axon_id = await axon_for(caller, ref, "read")
        return s.ChangesView(changes=await engine.changes(axon_id, sequence))

    # -- records ------------------------------------------------------------------------

    @app.get("/v1/axons/{id}/verify", response_model=s.VerifyReport, tags=["records"])
    async def verify(caller: Caller, ref: AxonId) -> s.VerifyReport:
        return await engine.verify(await axon_for(caller, ref, "read"))

    @app.get(
        "/v1/axons/{id}/export",
        tags=["records"],
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}},
    )
    async def export(caller: Caller, ref: AxonId) -> Any:
        axon_id = await axon_for(caller, ref, "read")
        lines = [line async for line in engine.export(axon_id)]
        return StreamingResponse(
            (line + b"\n" for line in lines), media_type="application/x-ndjson"
        )

    @app.post("/v1/axons/{id}/fork", response_model=s.AxonView, tags=["records"])
    async def fork(caller: Caller, ref: AxonId, body: s.ForkRequest) -> s.AxonView:
        axon_id = await axon_for(caller, ref, "read")
        caller.require_unlimited("fork Axons")
        return await engine.fork(axon_id, body.at_sequence, name=body.name)

    # -- agents -------------------------------------------------------------------------

    @app.get("/v1/axons/{id}/agents", response_model=s.AgentList, tags=["agents"])
    async def list_agents(caller: Caller, ref: AxonId) -> s.AgentList:
        axon_id = await axon_for(caller, ref, "read")
        views = await engine.agents.list(axon_id)
        if not caller.allows("admin"):
            views = [_without_env_values(v) for v in views]
        return s.AgentList(agents=views)

    @app.post("/v1/axons/{id}/agents", response_model=s.AgentView, tags=["agents"])
    async def add_agent(caller: Caller, ref: AxonId, body: s.AgentSpecBody) -> s.AgentView:
        """Declare an agent on this Axon (replacing one of the same name) and start it."""
        axon_id = await axon_for(caller, ref, "admin")
        spec = AgentSpec.model_validate({**body.model_dump(), "axon": axon_id})
        if require_token:  # a token's spec keeps to the operator's policy (engine/policy.py)
            return await engine.agents.add_remote(spec, caller)
        return await engine.agents.add(spec)

    @app.get("/v1/axons/{id}/agents/{name}/logs", response_model=s.AgentLogs, tags=["agents"])
    async def agent_logs(
        caller: Caller, ref: AxonId, name: str, tail: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> s.AgentLogs:
        """Admins only: an agent's stderr may say more than its events do."""
        axon_id = await axon_for(caller, ref, "admin")
        return s.AgentLogs(lines=await engine.agents.logs(axon_id, name, tail))

    @app.get("/v1/axons/{id}/agents/{name}/cursor", response_model=s.Cursor, tags=["agents"])
    async def agent_cursor(caller: Caller, ref: AxonId, name: str) -> s.Cursor:
        """The last sequence the agent acknowledged (0: none)."""
        axon_id = await axon_for(caller, ref, "read")
        return s.Cursor(sequence=await engine.agent_cursor(axon_id, name))

    @app.post("/v1/axons/{id}/agents/{name}/ack", response_model=s.Cursor, tags=["agents"])
    async def agent_ack(caller: Caller, ref: AxonId, name: str, body: s.Cursor) -> s.Cursor:
        """Move the agent's durable cursor forward (never back)."""
        axon_id = await axon_for(caller, ref, "admin")
        return s.Cursor(sequence=await engine.ack(axon_id, name, body.sequence))

    @app.post("/v1/axons/{id}/agents/{name}/{action}", response_model=s.AgentView, tags=["agents"])
    async def agent_action(
        caller: Caller,
        ref: AxonId,
        name: str,
        action: Annotated[str, Path(pattern="^(start|pause|resume|stop)$")],
    ) -> s.AgentView:
        axon_id = await axon_for(caller, ref, "admin")
        return await engine.agents.command(axon_id, name, action)

    @app.post(
        "/v1/axons/{id}/permissions/{sequence}",
        response_model=s.PublishResultView,
        tags=["agents"],
    )
    async def permit(
        caller: Caller,
        ref: AxonId,
        sequence: Annotated[int, Path(ge=1)],
        body: s.PermissionDecision,
    ) -> s.PublishResultView:
        """Answer an ACP agent's `permission.requested` event #sequence: publishes the
        `permission.decision` event. 409 when nothing waits for that answer."""
        axon_id = await axon_for(caller, ref, "publish")
        result = await engine.agents.answer(
            axon_id, sequence, body.option_id, source=body.source, author=caller.name
        )
        return s.PublishResultView(**result.to_dict())

    # -- webhooks -----------------------------------------------------------------------

    @app.post(
        "/v1/axons/{id}/webhook/{source}",
        response_model=s.PublishResultView,
        tags=["events"],
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": {}}}},
        },
    )
    async def webhook(
        ref: AxonId,
        source: Annotated[str, Path(min_length=1, max_length=200)],
        request: Request,
        event_type: str | None = None,
        authorization: Annotated[str | None, Header()] = None,
        x_github_event: Annotated[str | None, Header()] = None,
        x_hub_signature_256: Annotated[str | None, Header()] = None,
        x_github_delivery: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Any JSON body becomes an EXTERNAL_EVENT from `source`. A source with a secret is
        authenticated by its signature alone; any other needs a publish token."""
        source = webhooks.normalise_source(source)
        secret = secrets.get(source)
        if secret is None:  # the token is checked before the body is read
            caller = authenticate(authorization)
            axon_id = await axon_for(caller, ref, "publish")
            author = caller.name
            raw = await request.body()
        else:
            raw = await request.body()
            webhooks.check_signature(secret, raw, x_hub_signature_256, source)
            axon_id = ref if ref.startswith("axn_") else (await engine.get_axon(ref)).id
            author = webhooks.verified_author(source)
        payload, body = webhooks.parse_body(raw)
        kind = event_type or x_github_event or _body_type(body) or "webhook"
        key = webhooks.delivery_key(source, x_github_delivery)
        draft = Draft(kind[:200], payload, source, "EXTERNAL_EVENT", key, author)
        if secret is None:
            result = await engine.publish(axon_id, draft)
        else:
            result = await publish_signed(axon_id, draft, raw, x_github_delivery)
        return Response(orjson.dumps(result.to_dict()), media_type="application/json")

    async def publish_signed(
        axon_id: str, draft: Draft, raw: bytes, delivery: str | None
    ) -> PublishResult:
        replays.admit(axon_id, draft.source, raw, delivery)
        try:
            return await engine.publish(axon_id, draft)
        except BaseException:
            replays.forget(axon_id, draft.source, raw)
            raise

    return app


def _without_env_values(view: AgentView) -> AgentView:
    """An agent as a token below admin sees it: the names of its `env`, not the values."""
    env = {name: "<redacted>" for name in view.spec.env}
    return view.model_copy(update={"spec": view.spec.model_copy(update={"env": env})})


def _body_type(body: Any) -> str | None:
    """Slack's event callbacks say what they are in `type` (and `event.type`)."""
    if isinstance(body, dict):
        inner = body.get("event")
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return inner["type"]
        if isinstance(body.get("type"), str):
            return body["type"]
    return None
