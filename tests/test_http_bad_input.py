"""Bad input over HTTP: each refusal has its documented status and a clear JSON error body
`{"error": {"code", "message"}}` (contract §3, §4), and none of it hurts the server."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.http_support import ServerProcess, all_events, make_token, message_body, running_server

WEBHOOK_SECRET = "s3cret-for-github"


@dataclass
class Api:
    server: ServerProcess
    admin: httpx.Client
    axon_id: str

    def client(self, token: str | None) -> httpx.Client:
        return self.server.http(token)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("bad") / "home"
    token = make_token(home, "admin", "admin")
    with (
        running_server(home, env={"AXONS_WEBHOOK_SECRET_GITHUB": WEBHOOK_SECRET}) as server,
        server.http(token) as admin,
    ):
        axon_id = admin.post("/v1/axons", json={"name": "bad-input"}).json()["id"]
        yield Api(server, admin, axon_id)
        # After all of it, the server still serves and the log is intact.
        assert admin.get("/healthz").json()["ok"] is True
        published = admin.post(f"/v1/axons/{axon_id}/publish", json=message_body("still here"))
        assert published.status_code == 200
        report = admin.get(f"/v1/axons/{axon_id}/verify").json()
        assert report["ok"] is True, report
        assert report["checked"] == len(all_events(admin, axon_id))
        assert server.running


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """The documented status, a JSON body that is exactly {"error": {"code", "message"}}."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) == {"code", "message"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    if code is not None:
        assert error["code"] == code, error
    return error


def publish_raw(api: Api, content: bytes, **headers: str) -> httpx.Response:
    return api.admin.post(
        f"/v1/axons/{api.axon_id}/publish",
        content=content,
        headers={"content-type": "application/json", **headers},
    )


def latest_event(api: Api) -> dict[str, Any]:
    page = api.admin.get(f"/v1/axons/{api.axon_id}/events", params={"limit": 1}).json()
    return dict(page["events"][0])


def last_sequence(api: Api) -> int:
    events = api.admin.get(f"/v1/axons/{api.axon_id}/events", params={"limit": 1}).json()["events"]
    return events[0]["sequence"] if events else 0


# -- bodies -----------------------------------------------------------------------------


def test_malformed_json_is_400(api: Api) -> None:
    before = last_sequence(api)
    r = publish_raw(api, b'{"event_type": "message", "origin": "USER_EVENT", "payload": ')
    error = assert_error(r, 400, "malformed_json")
    assert "JSON" in error["message"]
    assert last_sequence(api) == before


def test_invalid_utf8_in_the_body_is_400(api: Api) -> None:
    body = json.dumps(message_body("hello", source="caf\u00e9"), ensure_ascii=False).encode()
    body = body.replace("caf\u00e9".encode(), b"caf\xff\xfe")  # not UTF-8
    assert b"\xff" in body and json.loads(body.replace(b"\xff\xfe", b""))
    before = last_sequence(api)
    error = assert_error(publish_raw(api, body), 400)
    assert "UTF-8" in error["message"]
    assert last_sequence(api) == before


def test_payload_that_is_not_json_text_is_400(api: Api) -> None:
    body = {**message_body("x"), "payload": "just words, not JSON"}
    error = assert_error(
        api.admin.post(f"/v1/axons/{api.axon_id}/publish", json=body), 400, "invalid_payload"
    )
    assert "JSON" in error["message"]


def test_a_2_mib_payload_is_413(api: Api) -> None:
    payload = json.dumps({"text": "x" * (2 << 20)})
    body = {**message_body(""), "payload": payload}
    before = last_sequence(api)
    assert_error(
        api.admin.post(f"/v1/axons/{api.axon_id}/publish", json=body), 413, "payload_too_large"
    )
    assert last_sequence(api) == before


def test_a_body_far_over_the_limit_is_413(api: Api) -> None:
    huge = b'{"payload": "' + b"y" * (64 << 20) + b'"}'
    assert_error(publish_raw(api, huge), 413, "payload_too_large")


def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    """No Content-Length: the limit is enforced while reading."""

    def chunks() -> Iterator[bytes]:
        yield b'{"payload": "'
        for _ in range(48):
            yield b"z" * (256 << 10)
        yield b'"}'

    r = api.admin.post(
        f"/v1/axons/{api.axon_id}/publish",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")


def test_origin_system_event_is_400(api: Api) -> None:
    body = {**message_body("pretend"), "origin": "SYSTEM_EVENT"}
    error = assert_error(
        api.admin.post(f"/v1/axons/{api.axon_id}/publish", json=body), 400, "invalid_origin"
    )
    assert "SYSTEM_EVENT" in error["message"]


def test_system_event_in_a_batch_refuses_the_whole_batch(api: Api) -> None:
    before = last_sequence(api)
    body = {
        "events": [message_body("fine"), {**message_body("not fine"), "origin": "SYSTEM_EVENT"}]
    }
    assert_error(
        api.admin.post(f"/v1/axons/{api.axon_id}/publish/batch", json=body), 400, "invalid_origin"
    )
    assert last_sequence(api) == before


def test_a_missing_field_is_a_clear_4xx(api: Api) -> None:
    body = message_body("no type")
    del body["event_type"]
    error = assert_error(api.admin.post(f"/v1/axons/{api.axon_id}/publish", json=body), 422)
    assert "event_type" in error["message"]


def test_sequences_beyond_64_bits_are_answered_not_a_crash(api: Api) -> None:
    huge = str(10**30)  # found by schemathesis: a 500 (SQLite integer overflow)
    api.admin.post(f"/v1/axons/{api.axon_id}/publish", json=message_body("x")).raise_for_status()
    newest = api.admin.get(
        f"/v1/axons/{api.axon_id}/events", params={"starting_after": huge, "limit": 1}
    )
    assert newest.status_code == 200, newest.text
    assert newest.json()["events"][0]["sequence"] == last_sequence(api)
    after = api.admin.get(f"/v1/axons/{api.axon_id}/events", params={"after_sequence": huge})
    assert after.status_code == 200, after.text
    assert after.json() == {"events": [], "has_more": False, "total_count": None}


# -- who and what -----------------------------------------------------------------------


def test_unknown_axon_is_404(api: Api) -> None:
    for r in (
        api.admin.get("/v1/axons/axn_nope"),
        api.admin.post("/v1/axons/axn_nope/publish", json=message_body("hello?")),
        api.admin.get("/v1/axons/axn_nope/subscribe/sse"),
        api.admin.post("/v1/axons/axn_nope/sql/query", json={"sql": "SELECT 1"}),
    ):
        assert_error(r, 404)


def test_missing_token_on_tcp_is_401(api: Api) -> None:
    with api.client(None) as anonymous:
        error = assert_error(anonymous.get(f"/v1/axons/{api.axon_id}"), 401, "unauthorized")
        assert "Bearer" in error["message"]
        assert_error(
            anonymous.post(f"/v1/axons/{api.axon_id}/publish", json=message_body("hi")), 401
        )


def test_wrong_token_is_401(api: Api) -> None:
    with api.client("axt_not-a-real-token") as wrong:
        assert_error(wrong.get("/v1/axons"), 401, "unauthorized")
    basic_auth = {"Authorization": "Basic Zm9vOmJhcg=="}
    with httpx.Client(base_url=api.server.url, headers=basic_auth) as basic:
        assert_error(basic.get("/v1/axons"), 401, "unauthorized")


def test_a_token_limited_to_another_axon_gets_404(api: Api) -> None:
    other = api.admin.post("/v1/axons", json={"name": "other"}).json()["id"]
    token = make_token(api.server.home, "only-other", "admin", [other])
    with api.client(token) as limited:
        assert limited.get(f"/v1/axons/{other}").status_code == 200
        # Exists, but not for this token: the same 404 as a missing Axon.
        assert_error(limited.get(f"/v1/axons/{api.axon_id}"), 404, "axon_not_found")
        assert_error(limited.post(f"/v1/axons/{api.axon_id}/publish", json=message_body("x")), 404)
        assert_error(limited.get(f"/v1/axons/{api.axon_id}/events"), 404)
        listed = limited.get("/v1/axons").json()["axons"]
        assert [a["id"] for a in listed] == [other]


def test_sql_write_with_a_read_or_publish_token_is_403(api: Api) -> None:
    api.admin.post(
        f"/v1/axons/{api.axon_id}/sql/query",
        json={"sql": "CREATE TABLE IF NOT EXISTS notes(n TEXT)"},
    ).raise_for_status()
    for scope in ("read", "publish"):
        token = make_token(api.server.home, f"{scope}-only", scope)
        with api.client(token) as weak:
            assert (
                weak.post(
                    f"/v1/axons/{api.axon_id}/sql/query", json={"sql": "SELECT count(*) FROM notes"}
                ).status_code
                == 200
            )
            assert_error(
                weak.post(
                    f"/v1/axons/{api.axon_id}/sql/query",
                    json={"sql": "INSERT INTO notes VALUES ('sneaky')"},
                ),
                403,
            )
            assert_error(
                weak.post(
                    f"/v1/axons/{api.axon_id}/sql/batch",
                    json={"statements": [{"sql": "DELETE FROM notes"}]},
                ),
                403,
            )
            assert_error(weak.post("/v1/axons", json={"name": "nope"}), 403, "forbidden")
    rows = api.admin.post(
        f"/v1/axons/{api.axon_id}/sql/query", json={"sql": "SELECT count(*) FROM notes"}
    ).json()["rows"]
    assert rows == [[0]]


def test_read_token_cannot_publish(api: Api) -> None:
    token = make_token(api.server.home, "reader-2", "read")
    with api.client(token) as reader:
        assert_error(reader.post(f"/v1/axons/{api.axon_id}/publish", json=message_body("x")), 403)


def test_sql_syntax_error_is_400(api: Api) -> None:
    error = assert_error(
        api.admin.post(f"/v1/axons/{api.axon_id}/sql/query", json={"sql": "SELEKT * FROM nowhere"}),
        400,
        "sql_error",
    )
    assert "syntax" in error["message"].lower()


# -- webhooks ---------------------------------------------------------------------------


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_webhook_with_a_bad_signature_is_401(api: Api) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "abc123"}).encode()
    before = last_sequence(api)
    url = f"/v1/axons/{api.axon_id}/webhook/github"
    headers = {"content-type": "application/json", "X-GitHub-Event": "push"}
    for bad in (sign(body, "wrong-secret"), "sha256=" + "0" * 64, "garbage"):
        error = assert_error(
            api.admin.post(url, content=body, headers={**headers, "X-Hub-Signature-256": bad}),
            401,
            "unauthorized",
        )
        assert "X-Hub-Signature-256" in error["message"]
    assert_error(api.admin.post(url, content=body, headers=headers), 401)  # none at all
    assert last_sequence(api) == before


def test_webhook_with_a_good_signature_becomes_an_external_event(api: Api) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "9f2c1e0"}).encode()
    r = api.admin.post(
        f"/v1/axons/{api.axon_id}/webhook/github",
        content=body,
        headers={
            "content-type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": sign(body),
            "X-GitHub-Delivery": "delivery-1",
        },
    )
    assert r.status_code == 200, r.text
    sequence = r.json()["sequence"]
    event = latest_event(api)
    assert event["sequence"] == sequence
    assert event["origin"] == "EXTERNAL_EVENT"
    assert event["source"] == "github"
    assert event["event_type"] == "push"
    assert json.loads(event["payload"]) == {"ref": "refs/heads/main", "after": "9f2c1e0"}


def test_webhook_without_a_secret_takes_event_type_from_the_query(api: Api) -> None:
    r = api.admin.post(
        f"/v1/axons/{api.axon_id}/webhook/ci",
        params={"event_type": "build.passed"},
        json={"build": 7},
    )
    assert r.status_code == 200, r.text
    event = latest_event(api)
    assert (event["origin"], event["source"], event["event_type"]) == (
        "EXTERNAL_EVENT",
        "ci",
        "build.passed",
    )


def test_unknown_path_is_a_json_404(api: Api) -> None:
    assert_error(api.admin.get("/v2/nothing-here"), 404, "not_found")


def test_a_token_cannot_start_a_process_on_the_host(api: Api) -> None:
    """Even an admin token over TCP may not declare an unsandboxed local-process agent."""
    spec = {"name": "shell", "command": ["sh", "-c", "touch /tmp/pwned"], "runtime": "process"}
    body = assert_error(
        api.admin.post(f"/v1/axons/{api.axon_id}/agents", json=spec), 403, "forbidden"
    )
    assert "socket" in body["message"]
    agents = api.admin.get(f"/v1/axons/{api.axon_id}/agents").json()["agents"]
    assert [a["name"] for a in agents] == []
