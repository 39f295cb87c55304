"""The HTTP API (contract §4) as a FastAPI app over one Engine: the Runloop-compatible core
plus the extensions. `create_app(engine, require_token=...)` assembles one from the routers
in `engine.api.routes`; `engine.api.serve` runs it on the home's unix socket and, optionally,
TCP.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from engine.api import schemas as s
from engine.api.fastpath import FastPublish
from engine.api.gate import TokenGate
from engine.api.limits import BodyLimit, BodyPace
from engine.api.routes import agents, axons, events, records, sql, webhooks
from engine.api.routes import tokens as token_routes
from engine.api.routes.deps import ApiContext, OffLoopJSONRoute, ORJSONResponse
from engine.api.sse import StreamLimits
from engine.engine import Engine
from engine.errors import AxonError
from engine.tokens import TokenStore

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": s.ErrorBody} for status in (400, 401, 403, 404, 408, 409, 413, 422, 503)
}
MAX_IMPORT_BYTES = 512 << 20
ROUTERS = (axons, events, sql, records, agents, webhooks, token_routes)  # the document order


def create_asgi(
    engine: Engine,
    tokens: TokenStore,
    *,
    require_token: bool,
    public_docs: bool = False,
    body_pace: BodyPace | None = None,
    fast_publish: bool = True,
    **options: Any,
) -> ASGIApp:
    """What the server runs: over TCP the token gate (headers only, before any body is read),
    then body limits, then the publish fast path, then the app. They sit outside FastAPI's own
    middleware, which costs more than a publish itself. Without `fast_publish` every publish
    takes the FastAPI route (tests/test_http_publish_parity.py compares the two)."""
    app = create_app(engine, tokens, require_token=require_token, **options)
    api: ApiContext = app.state.context
    inner: ASGIApp = app
    if fast_publish:
        inner = FastPublish(app, authenticate=api.authenticate, publish=api.publish_drafts)
    limited = BodyLimit(
        inner,
        default=engine.max_payload * 4 + (64 << 10),
        larger={
            "/v1/axons/import": MAX_IMPORT_BYTES,
            "/publish/batch": 64 << 20,
            "/sql/batch": 64 << 20,
        },
        pace=body_pace,
    )
    if not require_token:
        return limited
    return TokenGate(limited, api.authenticate, public_docs=public_docs)


def create_app(
    engine: Engine,
    tokens: TokenStore,
    *,
    require_token: bool,
    webhook_secrets: dict[str, str] | None = None,
    stream_limits: StreamLimits | None = None,
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
    app.router.route_class = OffLoopJSONRoute
    app.state.context = ApiContext(
        engine, tokens, require_token, webhook_secrets or {}, stream_limits
    )
    add_error_handlers(app)
    for area in ROUTERS:
        app.include_router(area.router)
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal as `{"error": {"code", "message"}}`: the engine's own errors, request
    validation, malformed JSON, and routing's 404 and 405."""

    @app.exception_handler(AxonError)
    async def axon_error(_request: Request, exc: AxonError) -> Response:
        return ORJSONResponse(exc.to_dict(), status_code=exc.status)

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
