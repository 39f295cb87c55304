"""The official Runloop SDK (`runloop_api_client` 3.x), unchanged, against a live `axons serve`
over TCP with a bearer token: every `client.axons.*` call, paging, SSE resumption, SQL
batches that roll back, and idempotent publishes (contract §4.1)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import httpx
import pytest
from runloop_api_client import ConflictError, NotFoundError, Runloop

from tests.http_support import ServerProcess, all_events, make_token, running_server

TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("sdk") / "home"
    make_token(home, "admin", "admin")
    with running_server(home) as server:
        yield server


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return make_token(server.home, "sdk-admin", "admin")


@pytest.fixture
def client(server: ServerProcess, token: str) -> Iterator[Runloop]:
    # Retries off: a refusal must surface as the error it is, at once.
    client = Runloop(
        base_url=server.url,
        bearer_token=token,
        timeout=TIMEOUT,
        max_retries=0,
        shared_http_pool=False,
    )
    yield client
    client.close()


@pytest.fixture
def http(server: ServerProcess, token: str) -> Iterator[httpx.Client]:
    with server.http(token) as http:
        yield http


def publish_texts(
    client: Runloop, axon_id: str, texts: list[str], source: str = "sdk"
) -> list[int]:
    return [
        client.axons.publish(
            axon_id,
            event_type="message",
            origin="USER_EVENT",
            source=source,
            payload=json.dumps({"text": t}),
        ).sequence
        for t in texts
    ]


# -- Axons ------------------------------------------------------------------------------


def test_create_retrieve_update_delete(client: Runloop) -> None:
    created = client.axons.create(name="sdk-crud", metadata={"team": "support"})
    assert created.id.startswith("axn_")
    assert created.name == "sdk-crud"
    assert created.metadata == {"team": "support"}
    assert created.deleted_at_ms is None
    assert created.created_at_ms > 0

    assert client.axons.retrieve(created.id) == created

    updated = client.axons.update(created.id, metadata={"team": "billing", "tier": "gold"})
    assert updated.metadata == {"team": "billing", "tier": "gold"}
    assert client.axons.retrieve(created.id).metadata == {"team": "billing", "tier": "gold"}
    cleared = client.axons.update(created.id, metadata={})
    assert cleared.metadata == {}

    deleted = client.axons.delete(created.id)
    assert isinstance(deleted, dict)
    assert deleted["id"] == created.id
    assert isinstance(deleted["deleted_at_ms"], int)

    # Deleted Axons stay readable, and refuse writes.
    again = client.axons.retrieve(created.id)
    assert again.deleted_at_ms == deleted["deleted_at_ms"]
    with pytest.raises(ConflictError) as refused:
        publish_texts(client, created.id, ["too late"])
    assert refused.value.status_code == 409
    assert refused.value.response.json()["error"]["code"] == "axon_deleted"


def test_create_with_no_fields(client: Runloop) -> None:
    created = client.axons.create()
    assert created.id.startswith("axn_")
    assert created.metadata == {}
    assert client.axons.retrieve(created.id).id == created.id


def test_unknown_axon_is_not_found(client: Runloop) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.axons.retrieve("axn_doesnotexist")
    assert missing.value.status_code == 404


def test_list_pages_with_starting_after_limit_prefix_and_total(client: Runloop) -> None:
    prefix = "sdk-page-"
    made = [client.axons.create(name=f"{prefix}{i:02d}").id for i in range(7)]
    for i in range(3):
        client.axons.create(name=f"sdk-other-{i}")

    first = client.axons.list(name=prefix, limit=3, include_total_count=True)
    assert len(first.axons) == 3
    assert first.has_more is True
    assert first.total_count == 7
    assert all(a.name.startswith(prefix) for a in first.axons)  # type: ignore[union-attr]

    # Manual paging with starting_after: every Axon exactly once, in one order.
    seen: list[str] = [a.id for a in first.axons]
    page = first
    while page.has_more:
        page = client.axons.list(name=prefix, limit=3, starting_after=seen[-1])
        assert 1 <= len(page.axons) <= 3
        seen += [a.id for a in page.axons]
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))

    # The SDK's own auto-paging follows the same cursor.
    auto = [a.id for a in client.axons.list(name=prefix, limit=2)]
    assert auto == seen

    # A prefix that matches nothing; an id filter.
    empty = client.axons.list(name="sdk-nothing-like-this", include_total_count=True)
    assert empty.axons == [] and empty.has_more is False and empty.total_count == 0
    by_id = client.axons.list(id=made[3])
    assert [a.id for a in by_id.axons] == [made[3]]
    assert by_id.axons[0].name == f"{prefix}03"


# -- events -----------------------------------------------------------------------------


def test_publish_and_events_list_pages_newest_first(client: Runloop) -> None:
    axon = client.axons.create(name="sdk-events")
    sequences = publish_texts(client, axon.id, [f"m{i}" for i in range(25)])
    assert sequences == list(range(1, 26))

    page = client.axons.events.list(axon.id, limit=10, include_total_count=True)
    assert page.total_count == 25
    assert page.has_more is True
    got = [e.sequence for e in page.events]
    while page.has_more:
        page = client.axons.events.list(axon.id, limit=10, starting_after=str(got[-1]))
        got += [e.sequence for e in page.events]
    assert got == list(range(25, 0, -1))

    newest = client.axons.events.list(axon.id, limit=1).events[0]
    assert newest.axon_id == axon.id
    assert newest.sequence == 25
    assert newest.origin == "USER_EVENT"
    assert newest.source == "sdk"
    assert newest.event_type == "message"
    assert json.loads(newest.payload) == {"text": "m24"}
    assert newest.timestamp_ms > 0


def test_publish_is_idempotent(client: Runloop, http: httpx.Client) -> None:
    axon = client.axons.create(name="sdk-idempotent")
    args = {
        "event_type": "message",
        "origin": "USER_EVENT",
        "source": "sdk",
        "payload": json.dumps({"text": "once"}),
    }
    first = client.axons.publish(axon.id, **args, idempotency_key="order-42")  # type: ignore[arg-type]
    second = client.axons.publish(axon.id, **args, idempotency_key="order-42")  # type: ignore[arg-type]
    assert second.sequence == first.sequence
    assert second.timestamp_ms == first.timestamp_ms

    # The `Idempotency-Key` header works the same, and wins over the SDK's X-Request-Id.
    third = client.axons.publish(
        axon.id,
        **args,  # type: ignore[arg-type]
        extra_headers={"Idempotency-Key": "order-43"},
    )
    fourth = client.axons.publish(
        axon.id,
        **args,  # type: ignore[arg-type]
        extra_headers={"Idempotency-Key": "order-43"},
    )
    assert fourth.sequence == third.sequence == first.sequence + 1

    events = all_events(http, axon.id)
    assert [e["sequence"] for e in events] == [1, 2]
    assert [e["idempotency_key"] for e in events] == ["order-42", "order-43"]


def test_sdk_retry_with_the_same_request_id_is_exactly_once(
    server: ServerProcess, token: str, http: httpx.Client
) -> None:
    """The SDK reuses its X-Request-Id when it retries; two deliveries are one event."""
    axon_id = http.post("/v1/axons", json={"name": "sdk-retry"}).json()["id"]
    body = {
        "event_type": "message",
        "origin": "USER_EVENT",
        "source": "sdk",
        "payload": json.dumps({"text": "retried"}),
    }
    headers = {"X-Request-Id": "stainless-python-retry-fixed"}
    a = http.post(f"/v1/axons/{axon_id}/publish", json=body, headers=headers).json()
    b = http.post(f"/v1/axons/{axon_id}/publish", json=body, headers=headers).json()
    assert a == b
    assert len(all_events(http, axon_id)) == 1


def test_subscribe_sse_replays_then_follows(client: Runloop) -> None:
    axon = client.axons.create(name="sdk-sse")
    publish_texts(client, axon.id, ["a", "b", "c"])
    stream = client.axons.subscribe_sse(axon.id, timeout=TIMEOUT)
    try:
        replayed = list(itertools.islice(stream, 3))
        assert [e.sequence for e in replayed] == [1, 2, 3]
        assert [json.loads(e.payload)["text"] for e in replayed] == ["a", "b", "c"]
        publish_texts(client, axon.id, ["live"])
        live = next(iter(stream))
        assert live.sequence == 4
        assert json.loads(live.payload) == {"text": "live"}
    finally:
        stream.close()


def test_subscribe_sse_resumes_after_a_disconnect(client: Runloop) -> None:
    axon = client.axons.create(name="sdk-resume")
    publish_texts(client, axon.id, [f"before-{i}" for i in range(10)])

    stream = client.axons.subscribe_sse(axon.id, timeout=TIMEOUT)
    seen = [e.sequence for e in itertools.islice(stream, 6)]
    stream.close()  # the client goes away mid-stream
    last = seen[-1]

    publish_texts(client, axon.id, [f"after-{i}" for i in range(5)])  # 11..15, while away

    resumed = client.axons.subscribe_sse(axon.id, after_sequence=last, timeout=TIMEOUT)
    try:
        rest = [e.sequence for e in itertools.islice(resumed, 15 - last)]
        # Nothing after the last one: the next event is a new publish, not a repeat.
        publish_texts(client, axon.id, ["sentinel"])
        sentinel = next(iter(resumed))
    finally:
        resumed.close()
    assert seen + rest == list(range(1, 16))
    assert sentinel.sequence == 16
    assert json.loads(sentinel.payload) == {"text": "sentinel"}


# -- SQL --------------------------------------------------------------------------------


def test_sql_query_with_params(client: Runloop) -> None:
    axon = client.axons.create(name="sdk-sql")
    created = client.axons.sql.query(
        axon.id, sql="CREATE TABLE tickets(id TEXT PRIMARY KEY, n INTEGER)"
    )
    assert created.meta.changes == 0
    inserted = client.axons.sql.query(
        axon.id, sql="INSERT INTO tickets VALUES (?, ?), (?, ?)", params=["T-1", 1, "T-2", 2]
    )
    assert inserted.meta.changes == 2
    result = client.axons.sql.query(
        axon.id, sql="SELECT id, n FROM tickets WHERE n >= ? ORDER BY id", params=[1]
    )
    assert [c.name for c in result.columns] == ["id", "n"]
    assert result.rows == [["T-1", 1], ["T-2", 2]]
    assert result.meta.rows_read_limit_reached is False


def test_sql_batch_commits_all(client: Runloop) -> None:
    axon = client.axons.create(name="sdk-batch")
    batch = client.axons.sql.batch(
        axon.id,
        statements=[
            {"sql": "CREATE TABLE t(a INTEGER)"},
            {"sql": "INSERT INTO t VALUES (?)", "params": [1]},
            {"sql": "INSERT INTO t VALUES (?)", "params": [2]},
            {"sql": "SELECT sum(a) AS total FROM t"},
        ],
    )
    assert all(step.error is None and step.success is not None for step in batch.results)
    assert batch.results[1].success.meta.changes == 1  # type: ignore[union-attr]
    assert batch.results[3].success.rows == [[3]]  # type: ignore[union-attr]


def test_sql_batch_with_a_failing_statement_rolls_back(client: Runloop) -> None:
    axon = client.axons.create(name="sdk-rollback")
    client.axons.sql.batch(
        axon.id,
        statements=[
            {"sql": "CREATE TABLE t(a INTEGER NOT NULL)"},
            {"sql": "INSERT INTO t VALUES (1)"},
        ],
    )
    batch = client.axons.sql.batch(
        axon.id,
        statements=[
            {"sql": "INSERT INTO t VALUES (2)"},
            {"sql": "UPDATE t SET a = a * 10"},
            {"sql": "INSERT INTO no_such_table VALUES (3)"},
            {"sql": "INSERT INTO t VALUES (4)"},
        ],
    )
    assert len(batch.results) == 4
    assert all(step.success is None and step.error is not None for step in batch.results)
    assert "no_such_table" in batch.results[2].error.message  # type: ignore[union-attr]

    unchanged = client.axons.sql.query(axon.id, sql="SELECT a FROM t ORDER BY a")
    assert unchanged.rows == [[1]]
