"""Issue 8, webhooks (docs/security.md): a signed source is authenticated by its HMAC alone;
its events carry an author no token can claim; a token cannot publish as that source, nor
take its delivery ids; the source's case does not skip the secret; a captured body cannot be
replayed under a new delivery id; a body of invalid bytes is a clean JSON 400."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.http_support import (
    ServerProcess,
    all_events,
    axons,
    make_token,
    message_body,
    running_server,
)

SECRET = "github-shared-secret"


@dataclass
class Hooks:
    server: ServerProcess
    admin: httpx.Client
    publisher: httpx.Client
    anonymous: httpx.Client
    axon_id: str

    def events(self) -> list[dict[str, Any]]:
        return all_events(self.admin, self.axon_id)


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    home = tmp_path_factory.mktemp("hooks") / "home"
    admin = make_token(home, "admin", "admin")
    publisher = make_token(home, "ci-bot", "publish")
    with (
        running_server(home, env={"AXONS_WEBHOOK_SECRET_GITHUB": SECRET}) as server,
        server.http(admin) as admin_http,
        server.http(publisher) as publisher_http,
        server.http(None) as anonymous,
    ):
        axon_id = admin_http.post("/v1/axons", json={"name": "hooks"}).json()["id"]
        yield Hooks(server, admin_http, publisher_http, anonymous, axon_id)


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def github(
    hooks: Hooks, body: bytes, delivery: str | None, *, source: str = "github", **headers: str
) -> httpx.Response:
    """A delivery as GitHub sends it: no bearer token, a signature, a delivery id."""
    sent = {
        "content-type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": sign(body),
    }
    if delivery is not None:
        sent["X-GitHub-Delivery"] = delivery
    return hooks.anonymous.post(
        f"/v1/axons/{hooks.axon_id}/webhook/{source}", content=body, headers={**sent, **headers}
    )


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:400]}"
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == code, r.json()


def test_a_signed_webhook_needs_no_token_and_is_marked_verified(hooks: Hooks) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "c0ffee"}).encode()
    r = github(hooks, body, "delivery-signed-1")
    assert r.status_code == 200, r.text
    event = hooks.events()[-1]
    assert event["sequence"] == r.json()["sequence"]
    assert (event["source"], event["origin"], event["author"]) == (
        "github",
        "EXTERNAL_EVENT",
        "webhook:github",
    )
    assert event["idempotency_key"] == "webhook:github:delivery-signed-1"


def test_the_source_case_does_not_skip_the_secret(hooks: Hooks) -> None:
    before = len(hooks.events())
    body = b'{"forged": true}'
    for source in ("GitHub", "GITHUB"):
        r = hooks.admin.post(
            f"/v1/axons/{hooks.axon_id}/webhook/{source}",
            content=body,
            headers={"content-type": "application/json"},
        )
        refused(r, 401, "unauthorized")
    assert len(hooks.events()) == before
    r = github(hooks, body, "delivery-case", source="GitHub")  # signed: accepted, as github
    assert r.status_code == 200, r.text
    assert hooks.events()[-1]["source"] == "github"


def test_an_unsigned_source_still_needs_a_token(hooks: Hooks) -> None:
    r = hooks.anonymous.post(f"/v1/axons/{hooks.axon_id}/webhook/ci", json={"build": 1})
    refused(r, 401, "unauthorized")


def test_a_publish_token_cannot_pass_for_the_signed_webhook(hooks: Hooks) -> None:
    before = len(hooks.events())
    url = f"/v1/axons/{hooks.axon_id}/publish"
    for source in ("github", "GitHub"):
        forged = message_body("merge it", source=source, origin="EXTERNAL_EVENT")
        refused(hooks.publisher.post(url, json=forged), 403, "reserved_source")
        refused(
            hooks.publisher.post(f"{url}/batch", json={"events": [forged]}), 403, "reserved_source"
        )
    # The body's author is not the client's to choose.
    r = hooks.publisher.post(url, json={**message_body("hi"), "author": "webhook:github"})
    assert r.status_code == 200, r.text
    assert hooks.events()[-1]["author"] == "ci-bot"
    refused(
        hooks.publisher.post(
            url, json=message_body("x"), headers={"Idempotency-Key": "webhook:github:d-9"}
        ),
        400,
        "reserved_idempotency_key",
    )
    assert all(e["author"] != "webhook:github" for e in hooks.events()[before:])
    # Nor can a token be named like the marker.
    done = axons("token", "create", "webhook:github", "--scope", "publish", home=hooks.server.home)
    assert done.returncode == 1 and "reserved" in done.stderr, done


def test_delivery_ids_live_in_their_own_namespace(hooks: Hooks) -> None:
    """A token that publishes first under a delivery id GitHub will use cannot swallow it."""
    r = hooks.publisher.post(
        f"/v1/axons/{hooks.axon_id}/publish",
        json=message_body("squatting"),
        headers={"Idempotency-Key": "delivery-77"},
    )
    assert r.status_code == 200, r.text
    squatted = r.json()["sequence"]
    r = github(hooks, b'{"action": "opened", "number": 77}', "delivery-77")
    assert r.status_code == 200, r.text
    assert r.json()["sequence"] > squatted
    assert hooks.events()[-1]["author"] == "webhook:github"


def test_a_replayed_signed_body_with_a_new_delivery_id_is_refused(hooks: Hooks) -> None:
    body = b'{"action": "deleted", "repository": "prod"}'
    first = github(hooks, body, "delivery-r1")
    assert first.status_code == 200, first.text
    count = len(hooks.events())
    again = github(hooks, body, "delivery-r1")  # GitHub's own retry: the same event
    assert again.status_code == 200 and again.json() == first.json()
    refused(github(hooks, body, "delivery-r2"), 409, "webhook_replayed")
    refused(github(hooks, body, None), 409, "webhook_replayed")
    assert len(hooks.events()) == count


def test_a_webhook_body_of_invalid_bytes_is_a_json_400(hooks: Hooks) -> None:
    before = len(hooks.events())
    bad = b'{"text": "\xff\xfe"}'
    r = hooks.publisher.post(
        f"/v1/axons/{hooks.axon_id}/webhook/ci",
        content=bad,
        headers={"content-type": "text/plain"},
    )
    refused(r, 400, "malformed_json")
    refused(
        github(hooks, bad, "delivery-bad", **{"content-type": "text/plain"}), 400, "malformed_json"
    )
    assert len(hooks.events()) == before
