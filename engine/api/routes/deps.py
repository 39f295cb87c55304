"""What every route module shares: the app's context (the engine, the token store, the
server's options), the caller as a FastAPI dependency, resolving an Axon within the caller's
reach, and the response and route classes the routers use."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from engine.api import webhooks
from engine.api.fastpath import PARSE_IN_THREAD_BYTES
from engine.api.sse import StreamLimits
from engine.engine import Engine
from engine.errors import ErrorCode, NotFound, Unauthorized
from engine.models import Draft, PublishResult
from engine.tokens import Principal, TokenStore


@dataclass
class ApiContext:
    """One app's view of the engine: who may call it and how. Over TCP `require_token` is on;
    on the unix socket the file's mode is the guard and callers act as the local user."""

    engine: Engine
    tokens: TokenStore
    require_token: bool
    webhook_secrets: dict[str, str] = field(default_factory=dict)
    stream_limits: StreamLimits | None = None
    replays: webhooks.ReplayGuard = field(init=False)
    local: Principal = field(init=False)

    def __post_init__(self) -> None:
        self.webhook_secrets = webhooks.normalise_secrets(self.webhook_secrets)
        self.replays = webhooks.ReplayGuard(self.engine.config.webhooks.replay_window_s)
        self.local = Principal(self.engine.local_user)

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.require_token:
            return self.local
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized(
                "send `Authorization: Bearer <token>`; create a token with "
                "`axons token create NAME --scope SCOPE`"
            )
        return self.tokens.authenticate(authorization[7:].strip())

    async def publish_drafts(self, axon_id: str, drafts: Sequence[Draft]) -> list[PublishResult]:
        """Every client publish (the fast path's too). Over TCP a token may not pass for a
        signed webhook; on the socket the operator may."""
        if self.require_token:
            webhooks.check_client_drafts(drafts, self.webhook_secrets)
        return await self.engine.publish_batch(axon_id, drafts)

    async def axon_for(self, caller: Principal, ref: str, scope: str) -> str:
        """The Axon's id, once the caller may act on it (404 before 403: a token limited to
        other Axons learns nothing about this one).

        A plain call, not a FastAPI dependency: dependencies run before the body is
        validated, so a malformed body would be answered 404 or 403 instead of 422."""
        axon_id = ref if ref.startswith("axn_") else (await self.engine.get_axon(ref)).id
        try:
            caller.require(scope, axon_id)
        except NotFound:  # quote what was sent: a name must not reveal another Axon's id
            raise NotFound(
                f"no Axon {ref!r:.80}; `axons ls` lists them", code=ErrorCode.AXON_NOT_FOUND
            ) from None
        return axon_id


async def context(request: Request) -> ApiContext:
    """The context `create_app` put on its app (routers are shared by every app built)."""
    api: ApiContext = request.app.state.context
    return api


Context = Annotated[ApiContext, Depends(context)]


async def principal(
    api: Context, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    return api.authenticate(authorization)  # async: FastAPI would run a plain def in a thread


Caller = Annotated[Principal, Depends(principal)]
AxonId = Annotated[str, Path(alias="id", min_length=1, max_length=200)]


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any) -> Response:
    """A body rendered by orjson (events and results as dicts, not models: no validation)."""
    return Response(orjson.dumps(content), media_type="application/json")


class OffLoopJSONRequest(Request):
    """A request whose large JSON body is parsed in a worker thread: a 64 MiB batch takes
    the standard parser about half a second, which the event loop must not spend."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) < PARSE_IN_THREAD_BYTES:
                self._json = json.loads(body)
            else:
                self._json = await asyncio.to_thread(json.loads, body)
        return self._json


class OffLoopJSONRoute(APIRoute):
    """FastAPI's documented way to give its routes a custom Request class."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_off_loop_json(request: Request) -> Response:
            return await handler(OffLoopJSONRequest(request.scope, request.receive))

        return with_off_loop_json


def new_router() -> APIRouter:
    """A router whose routes parse large bodies off the event loop."""
    return APIRouter(route_class=OffLoopJSONRoute)
