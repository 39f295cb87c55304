"""The webhook route (contract §4.2): any JSON body becomes an EXTERNAL_EVENT. What makes a
webhook trustworthy (signatures, replays, reserved names) is `engine.api.webhooks`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path, Request
from fastapi.responses import Response

from engine.api import schemas as s
from engine.api import webhooks
from engine.api.routes.deps import ApiContext, AxonId, Context, json_response, new_router
from engine.models import Draft, PublishResult

router = new_router()


@router.post(
    "/v1/axons/{id}/webhook/{source}",
    response_model=s.PublishResultView,
    tags=["events"],
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {}}}},
    },
)
async def webhook(
    api: Context,
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
    secret = api.webhook_secrets.get(source)
    if secret is None:  # the token is checked before the body is read
        caller = api.authenticate(authorization)
        axon_id = await api.axon_for(caller, ref, "publish")
        author = caller.name
        raw = await request.body()
    else:
        raw = await request.body()
        webhooks.check_signature(secret, raw, x_hub_signature_256, source)
        axon_id = ref if ref.startswith("axn_") else (await api.engine.get_axon(ref)).id
        author = webhooks.verified_author(source)
    payload, body = webhooks.parse_body(raw)
    kind = event_type or x_github_event or body_type(body) or "webhook"
    key = webhooks.delivery_key(source, x_github_delivery)
    draft = Draft(kind[:200], payload, source, "EXTERNAL_EVENT", key, author)
    if secret is None:
        result = await api.engine.publish(axon_id, draft)
    else:
        result = await publish_signed(api, axon_id, draft, raw, x_github_delivery)
    return json_response(result.to_dict())


async def publish_signed(
    api: ApiContext, axon_id: str, draft: Draft, raw: bytes, delivery: str | None
) -> PublishResult:
    """A signed delivery, remembered first so that its replay under a new delivery id is
    refused; forgotten again when it was not stored."""
    api.replays.admit(axon_id, draft.source, raw, delivery)
    try:
        return await api.engine.publish(axon_id, draft)
    except BaseException:
        api.replays.forget(axon_id, draft.source, raw)
        raise


def body_type(body: Any) -> str | None:
    """Slack's event callbacks say what they are in `type` (and `event.type`)."""
    if isinstance(body, dict):
        inner = body.get("event")
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return inner["type"]
        if isinstance(body.get("type"), str):
            return body["type"]
    return None
