"""Bad input gets the contract's clear 4xx error, never a crash, and leaves the engine well:
after every refusal the Axon still takes publishes and its chain still verifies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from engine import AxonError, Draft, Engine
from engine.errors import PayloadTooLarge
from tests.helpers import message, within

MiB = 1 << 20


def draft(**fields: Any) -> Draft:
    base: dict[str, Any] = {"event_type": "message", "payload": '{"text": "hi"}', "source": "cli"}
    base.update(fields)
    return Draft(**base)


def json_string_of_bytes(n: int, char: str = "a") -> str:
    """A JSON string literal exactly `n` bytes long in UTF-8."""
    width = len(char.encode())
    assert (n - 2) % width == 0
    return '"' + char * ((n - 2) // width) + '"'


async def still_healthy(engine: Engine, axon_id: str) -> None:
    last = await engine.last_sequence(axon_id)
    result = await engine.publish(axon_id, message("still here"))
    assert result.sequence == last + 1
    report = await engine.verify(axon_id)
    assert report.ok and report.checked == last + 1


def refused(code: str, status: int = 400) -> Callable[[AxonError], None]:
    def check(e: AxonError) -> None:
        assert (e.code, e.status) == (code, status), repr(e)
        assert e.message and e.to_dict() == {"error": {"code": code, "message": e.message}}

    return check


# -- publishing --------------------------------------------------------------------------------

BAD_DRAFTS = {
    "payload plain text": (draft(payload="hello"), "invalid_payload"),
    "payload empty": (draft(payload=""), "invalid_payload"),
    "payload truncated": (draft(payload='{"text": "hi"'), "invalid_payload"),
    "payload single quotes": (draft(payload="{'text': 'hi'}"), "invalid_payload"),
    "payload NaN": (draft(payload="NaN"), "invalid_payload"),
    "payload trailing garbage": (draft(payload="{} {}"), "invalid_payload"),
    "payload not a string": (draft(payload={"text": "hi"}), "invalid_payload"),
    "payload bytes": (draft(payload=b'{"text": "hi"}'), "invalid_payload"),
    "payload lone surrogate": (draft(payload='{"text": "\ud800"}'), "invalid_payload"),
    "payload escaped lone surrogate": (draft(payload='{"text": "\\udc00"}'), "invalid_payload"),
    "event_type empty": (draft(event_type=""), "invalid_event_type"),
    "event_type 201 chars": (draft(event_type="e" * 201), "invalid_event_type"),
    "event_type newline": (draft(event_type="a\nb"), "invalid_event_type"),
    "event_type NUL": (draft(event_type="a\x00b"), "invalid_event_type"),
    "event_type escape": (draft(event_type="\x1b[31mred"), "invalid_event_type"),
    "event_type lone surrogate": (draft(event_type="\ud800"), "invalid_event_type"),
    "event_type not a string": (draft(event_type=7), "invalid_event_type"),
    "event_type None": (draft(event_type=None), "invalid_event_type"),
    "source empty": (draft(source=""), "invalid_source"),
    "source 201 chars": (draft(source="s" * 201), "invalid_source"),
    "source tab": (draft(source="a\tb"), "invalid_source"),
    "source lone surrogate": (draft(source="x\udfff"), "invalid_source"),
    "source not a string": (draft(source=["cli"]), "invalid_source"),
    "origin SYSTEM_EVENT": (draft(origin="SYSTEM_EVENT"), "invalid_origin"),
    "origin unknown": (draft(origin="ROBOT_EVENT"), "invalid_origin"),
    "origin lower case": (draft(origin="user_event"), "invalid_origin"),
    "origin empty": (draft(origin=""), "invalid_origin"),
    "origin None": (draft(origin=None), "invalid_origin"),
    "idempotency key empty": (draft(idempotency_key=""), "invalid_idempotency_key"),
    "idempotency key 256 chars": (draft(idempotency_key="k" * 256), "invalid_idempotency_key"),
    "idempotency key newline": (draft(idempotency_key="a\nb"), "invalid_idempotency_key"),
    "idempotency key not a string": (draft(idempotency_key=12), "invalid_idempotency_key"),
    "author not a string": (draft(author=5), "invalid_author"),
    "author lone surrogate": (draft(author="\ud800"), "invalid_author"),
    "author empty": (draft(author=""), "invalid_author"),
}


@pytest.mark.parametrize("name", list(BAD_DRAFTS))
async def test_a_bad_draft_is_refused_and_nothing_is_written(
    engine: Engine, axon_id: str, name: str
) -> None:
    bad, code = BAD_DRAFTS[name]
    await engine.publish(axon_id, message("before"))
    with pytest.raises(AxonError) as single:
        await engine.publish(axon_id, bad)
    refused(code)(single.value)

    # Inside a batch, the whole batch is refused.
    with pytest.raises(AxonError) as batch:
        await engine.publish_batch(axon_id, [message("fine"), bad, message("also fine")])
    refused(code)(batch.value)
    assert await engine.last_sequence(axon_id) == 1
    await still_healthy(engine, axon_id)


async def test_a_bad_draft_never_fails_the_publishes_committed_beside_it(
    engine: Engine, axon_id: str
) -> None:
    for bad, _code in BAD_DRAFTS.values():
        results = await asyncio.gather(
            *(engine.publish(axon_id, message(f"good {i}")) for i in range(5)),
            engine.publish(axon_id, bad),
            *(engine.publish(axon_id, message(f"good {i}")) for i in range(5, 10)),
            return_exceptions=True,
        )
        assert isinstance(results[5], AxonError), results[5]
        good = results[:5] + results[6:]
        assert all(not isinstance(r, BaseException) for r in good), good
    assert await engine.last_sequence(axon_id) == 10 * len(BAD_DRAFTS)
    await still_healthy(engine, axon_id)


async def test_something_other_than_a_draft_is_refused(engine: Engine, axon_id: str) -> None:
    for bad in ({"event_type": "message"}, "message", None):
        with pytest.raises(AxonError) as e:
            await engine.publish(axon_id, bad)  # type: ignore[arg-type]
        assert e.value.status == 400
    await still_healthy(engine, axon_id)


async def test_labels_at_the_limits_are_accepted(engine: Engine, axon_id: str) -> None:
    for d in (
        draft(event_type="e" * 200, source="s" * 200),
        draft(event_type="x", source="y"),
        draft(event_type="agent.paused", source="ünïcödé-名前"),
        draft(idempotency_key="k" * 255),
        draft(payload="null"),
        draft(payload='"just a string"'),
        draft(payload="[1, 2.5, true]"),
        draft(payload='{"text": "\\ud83d\\ude00 escaped pair"}'),
        draft(payload='{"text": "🙂 real pair"}'),
    ):
        await engine.publish(axon_id, d)
    events = await engine.read_events(axon_id)
    assert [len(events[0].event_type), len(events[0].source)] == [200, 200]
    await still_healthy(engine, axon_id)


async def test_a_payload_over_one_mebibyte_is_too_large(engine: Engine, axon_id: str) -> None:
    for payload in (
        json_string_of_bytes(MiB + 1),
        json_string_of_bytes(MiB + 2, "é"),
        "[" + " " * MiB + "]",
    ):
        with pytest.raises(PayloadTooLarge) as e:
            await engine.publish(axon_id, draft(payload=payload))
        refused("payload_too_large", 413)(e.value)
    assert await engine.last_sequence(axon_id) == 0
    await still_healthy(engine, axon_id)


async def test_a_payload_of_exactly_one_mebibyte_is_accepted(engine: Engine, axon_id: str) -> None:
    ascii_payload = json_string_of_bytes(MiB)
    wide_payload = json_string_of_bytes(MiB, "é")  # counted in bytes, not characters
    assert len(ascii_payload.encode()) == len(wide_payload.encode()) == MiB
    await engine.publish(axon_id, draft(payload=ascii_payload))
    await engine.publish(axon_id, draft(payload=wide_payload))
    events = await engine.read_events(axon_id)
    assert [e.payload for e in events] == [ascii_payload, wide_payload]
    await still_healthy(engine, axon_id)


async def test_the_payload_limit_is_configurable(tmp_path: Path) -> None:
    async with Engine(tmp_path / "home", max_payload=100) as engine:
        axon_id = (await engine.create_axon()).id
        await engine.publish(axon_id, draft(payload=json_string_of_bytes(100)))
        with pytest.raises(PayloadTooLarge):
            await engine.publish(axon_id, draft(payload=json_string_of_bytes(101)))
        await still_healthy(engine, axon_id)


async def test_system_events_need_the_engine(engine: Engine, axon_id: str) -> None:
    system = draft(event_type="agent.paused", source="triage", origin="SYSTEM_EVENT")
    with pytest.raises(AxonError) as e:
        await engine.publish(axon_id, system)
    refused("invalid_origin")(e.value)
    result = await engine.publish(axon_id, system, system=True)
    assert result.sequence == 1
    assert (await engine.read_events(axon_id))[0].origin == "SYSTEM_EVENT"
    with pytest.raises(AxonError) as unknown:
        await engine.publish(axon_id, draft(origin="ROBOT_EVENT"), system=True)
    refused("invalid_origin")(unknown.value)
    await still_healthy(engine, axon_id)


async def test_an_empty_publish_batch_is_refused(engine: Engine, axon_id: str) -> None:
    with pytest.raises(AxonError) as e:
        await engine.publish_batch(axon_id, [])
    refused("empty_batch")(e.value)
    await still_healthy(engine, axon_id)


# -- unknown Axons -----------------------------------------------------------------------------

UNKNOWN = "axn_00000000000doesnotexist"


async def _subscribe_first(engine: Engine, axon_id: str) -> Any:
    async with aclosing(engine.subscribe(axon_id)) as stream:
        return await anext(stream)


async def _export_all(engine: Engine, axon_id: str) -> Any:
    return [line async for line in engine.export(axon_id)]


CALLS_ON_AN_AXON: dict[str, Callable[[Engine, str], Awaitable[Any]]] = {
    "publish": lambda e, a: e.publish(a, message("x")),
    "publish_batch": lambda e, a: e.publish_batch(a, [message("x")]),
    "read_events": lambda e, a: e.read_events(a),
    "list_events": lambda e, a: e.list_events(a),
    "subscribe": _subscribe_first,
    "query": lambda e, a: e.query(a, "SELECT 1"),
    "write query": lambda e, a: e.query(a, "CREATE TABLE t(a)", write=True),
    "query at a sequence": lambda e, a: e.query(a, "SELECT 1", at_sequence=0),
    "batch": lambda e, a: e.batch(a, ["SELECT 1"]),
    "changes": lambda e, a: e.changes(a, 0),
    "verify": lambda e, a: e.verify(a),
    "export": _export_all,
    "fork": lambda e, a: e.fork(a, 0),
    "get": lambda e, a: e.get_axon(a),
    "update": lambda e, a: e.update_axon(a, {"k": "v"}),
    "delete": lambda e, a: e.delete_axon(a),
    "last_sequence": lambda e, a: e.last_sequence(a),
}


@pytest.mark.parametrize("call", list(CALLS_ON_AN_AXON))
@pytest.mark.parametrize("ref", [UNKNOWN, "", "no such name", "\ud800"])
async def test_an_unknown_axon_is_not_found(
    engine: Engine, axon_id: str, call: str, ref: str
) -> None:
    with pytest.raises(AxonError) as e:
        await within(CALLS_ON_AN_AXON[call](engine, ref))
    refused("axon_not_found", 404)(e.value)
    if ref == UNKNOWN:
        assert not engine.path_of(ref).exists()  # no file was made for it
    await still_healthy(engine, axon_id)


# -- paging and sequences -------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, 5001, 10**9, 1.5, "10", None])
async def test_a_bad_limit_is_refused(engine: Engine, axon_id: str, limit: Any) -> None:
    await engine.publish(axon_id, message("x"))
    for call in (
        lambda: engine.list_events(axon_id, limit=limit),
        lambda: engine.read_events(axon_id, limit=limit),
        lambda: engine.list_axons(limit=limit),
    ):
        with pytest.raises(AxonError) as e:
            await call()
        refused("invalid_limit")(e.value)
    await still_healthy(engine, axon_id)


@pytest.mark.parametrize("after", [-1, "3", 1.5, None])
async def test_a_bad_after_sequence_is_refused(engine: Engine, axon_id: str, after: Any) -> None:
    await engine.publish(axon_id, message("x"))
    with pytest.raises(AxonError) as e:
        await within(_subscribe_after(engine, axon_id, after))
    refused("invalid_sequence")(e.value)
    await still_healthy(engine, axon_id)


async def _subscribe_after(engine: Engine, axon_id: str, after: Any) -> Any:
    async with aclosing(engine.subscribe(axon_id, after_sequence=after)) as stream:
        return await anext(stream)


@pytest.mark.parametrize("at", [3, 4, 10**12, -1, "1", 1.0, None])
async def test_a_sequence_outside_the_log_is_refused(engine: Engine, axon_id: str, at: Any) -> None:
    await engine.publish_batch(axon_id, [message("a"), message("b"), message("c")])
    await engine.query(axon_id, "CREATE TABLE t(a)", write=True)
    calls = [lambda: engine.changes(axon_id, at), lambda: engine.fork(axon_id, at)]
    if at is not None:  # None means "now" for a query
        calls.append(lambda: engine.query(axon_id, "SELECT * FROM t", at_sequence=at))
    if at == 3:
        calls = []  # the last event: fine, checked below
    for call in calls:
        with pytest.raises(AxonError) as e:
            await call()
        refused("invalid_sequence")(e.value)
    assert (await engine.query(axon_id, "SELECT count(*) FROM t", at_sequence=3)).rows == [[0]]
    await still_healthy(engine, axon_id)


async def test_a_past_query_cannot_write(engine: Engine, axon_id: str) -> None:
    await engine.publish(axon_id, message("x"))
    with pytest.raises(AxonError) as e:
        await engine.query(axon_id, "CREATE TABLE t(a)", write=True, at_sequence=1)
    refused("read_only_history")(e.value)
    await still_healthy(engine, axon_id)


# -- state input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "params", "code"),
    [
        ("SELECT '\ud800'", None, "invalid_sql"),
        ("SELECT ?", ["\udc00"], "invalid_sql"),
        ("SELECT ?", [object()], "invalid_params"),
        ("", None, "invalid_sql"),
        (None, None, "invalid_sql"),
        ("SELECT 1" + " " * 100_001, None, "invalid_sql"),
    ],
)
async def test_bad_sql_input_is_refused(
    engine: Engine, axon_id: str, sql: Any, params: Any, code: str
) -> None:
    for write in (False, True):
        with pytest.raises(AxonError) as e:
            await engine.query(axon_id, sql, params, write=write)
        refused(code)(e.value)
    with pytest.raises(AxonError) as e:
        await engine.batch(
            axon_id, [{"sql": "SELECT 1"}, {"sql": sql or "", "params": params or []}]
        )
    assert e.value.status == 400
    await still_healthy(engine, axon_id)


@pytest.mark.parametrize("statements", [[], (), None, "SELECT 1", [{}], [{"sql": 1}], [None]])
async def test_a_bad_batch_is_refused(engine: Engine, axon_id: str, statements: Any) -> None:
    with pytest.raises(AxonError) as e:
        await engine.batch(axon_id, statements)
    refused("invalid_batch")(e.value)
    await still_healthy(engine, axon_id)


# -- Axon fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {"a": 1},
        {1: "a"},
        {"a": None},
        {"a": ["x"]},
        ["a"],
        "a=b",
        {"k": "\ud800"},
        {"k": "v" * 70_000},
    ],
)
async def test_metadata_must_map_text_to_text(engine: Engine, axon_id: str, metadata: Any) -> None:
    with pytest.raises(AxonError) as created:
        await engine.create_axon("m", metadata)
    refused("invalid_metadata")(created.value)
    with pytest.raises(AxonError) as updated:
        await engine.update_axon(axon_id, metadata)
    refused("invalid_metadata")(updated.value)
    assert (await engine.get_axon(axon_id)).metadata == {}
    assert [a.id for a in (await engine.list_axons()).axons] == [axon_id]
    await still_healthy(engine, axon_id)


@pytest.mark.parametrize("name", ["", "n" * 201, "a\nb", "\ud800", 5])
async def test_a_bad_axon_name_is_refused(engine: Engine, axon_id: str, name: Any) -> None:
    with pytest.raises(AxonError) as e:
        await engine.create_axon(name)
    refused("invalid_name")(e.value)
    await still_healthy(engine, axon_id)


async def test_after_all_of_that_the_engine_is_fine(engine: Engine, axon_id: str) -> None:
    """Every refusal above, in one engine, then ordinary work."""
    for bad, _code in BAD_DRAFTS.values():
        with pytest.raises(AxonError):
            await engine.publish(axon_id, bad)
    for call in CALLS_ON_AN_AXON.values():
        with pytest.raises(AxonError):
            await call(engine, UNKNOWN)
    with pytest.raises(AxonError):
        await engine.publish_batch(axon_id, [])
    with pytest.raises(AxonError):
        await engine.query(axon_id, "SELECT 1", at_sequence=99)
    with pytest.raises(AxonError):
        await engine.create_axon("x", {"a": 1})  # type: ignore[dict-item]

    results = await asyncio.gather(*(engine.publish(axon_id, message(f"m{i}")) for i in range(50)))
    assert sorted(r.sequence for r in results) == list(range(1, 51))
    await engine.query(axon_id, "CREATE TABLE t(a)", write=True)
    await engine.query(axon_id, "INSERT INTO t VALUES (1)", write=True)
    assert (await engine.query(axon_id, "SELECT a FROM t")).rows == [[1]]
    report = await engine.verify(axon_id)
    assert report.ok and report.checked == 50
