"""One behaviour, two backends: the in-process `Engine` and the HTTP `Client` over a real unix
socket (`axons serve` in a child process) must agree on every method of `Backend`, including
the errors they raise. The console, the CLI and scenarios are written once against `Backend`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine import Draft, Engine
from engine.api.client import Client, RemoteAgents, RemoteTokens
from engine.backend import AgentsBackend, Backend, TokensBackend
from engine.errors import (
    BatchFailed,
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from engine.supervisor import Supervisor
from engine.token_admin import TokenAdmin
from tests.agents_support import triage_spec
from tests.http_support import ServerProcess, make_token

WAIT_ROUNDS = 400  # x 50 ms: a generous deadline, reached only when something is broken


def _members(protocol: type) -> list[str]:
    return [n for n in dir(protocol) if not n.startswith("_") and n not in ("agents", "tokens")]


@pytest.mark.parametrize(
    ("protocol", "implementations"),
    [
        (Backend, (Engine, Client)),
        (AgentsBackend, (Supervisor, RemoteAgents)),
        (TokensBackend, (TokenAdmin, RemoteTokens)),
    ],
)
def test_both_implement_the_protocol_with_the_same_signatures(
    protocol: type, implementations: tuple[type, ...]
) -> None:
    for name in _members(protocol):
        wanted = inspect.signature(getattr(protocol, name))
        for impl in implementations:
            got = inspect.signature(getattr(impl, name))
            assert list(got.parameters) == list(wanted.parameters), f"{impl.__name__}.{name}"
            for param, spec in wanted.parameters.items():
                assert got.parameters[param].kind == spec.kind, f"{impl.__name__}.{name}({param})"
            assert got.return_annotation == wanted.return_annotation, f"{impl.__name__}.{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("parity") / "home")
    try:
        yield proc.start()
    finally:
        proc.kill()


@pytest.fixture(params=["engine", "client"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, server: ServerProcess
) -> AsyncIterator[Backend]:
    if request.param == "engine":
        async with Engine(tmp_path / "home", agent_runtime="process") as engine:
            yield engine
    else:
        async with Client(socket_path=server.socket_path) as client:
            yield client


async def new_axon(backend: Backend, name: str) -> str:
    return (await backend.create_axon(name, {"team": "parity"})).id


async def test_publish_and_idempotency(backend: Backend) -> None:
    axon = await new_axon(backend, "publish")
    first = await backend.publish(axon, Draft.message("hello", source="parity"))
    keyed = Draft("message", '{"text": "once"}', "parity", idempotency_key="k-1")
    again = Draft("message", '{"text": "once"}', "parity", idempotency_key="k-1")
    one = await backend.publish(axon, keyed)
    two = await backend.publish(axon, again)
    assert (first.sequence, one.sequence, two.sequence) == (1, 2, 2)
    assert await backend.last_sequence(axon) == 2
    batch = await backend.publish_batch(axon, [Draft.message(t, source="p") for t in "ab"])
    assert [r.sequence for r in batch] == [3, 4]
    page = await backend.list_events(axon, limit=2, include_total_count=True)
    assert [e["sequence"] for e in page.events] == [4, 3]
    assert (page.has_more, page.total_count) == (True, 4)
    assert [e.sequence for e in await backend.read_events(axon, after=1, limit=2)] == [2, 3]


async def test_subscribe_from_a_sequence_and_live(backend: Backend) -> None:
    axon = await new_axon(backend, "subscribe")
    for text in ("one", "two", "three"):
        await backend.publish(axon, Draft.message(text, source="parity"))
    stream = backend.subscribe(axon, after_sequence=1)
    seen = [(await anext(stream)).sequence, (await anext(stream)).sequence]
    await backend.publish(axon, Draft.message("four", source="parity"))
    seen.append((await anext(stream)).sequence)
    await stream.aclose()  # type: ignore[attr-defined]
    assert seen == [2, 3, 4]


async def test_subscribe_all_sees_live_events_of_the_axons_asked_for(backend: Backend) -> None:
    wanted, other = await new_axon(backend, "all-a"), await new_axon(backend, "all-b")
    stream = backend.subscribe_all([wanted])
    first = asyncio.ensure_future(anext(stream))
    for _ in range(WAIT_ROUNDS):  # live only: publish until the stream has attached
        await backend.publish(other, Draft.message("not this", source="parity"))
        await backend.publish(wanted, Draft.message("this", source="parity"))
        await asyncio.wait([first], timeout=0.05)
        if first.done():
            break
    event = await first
    await stream.aclose()  # type: ignore[attr-defined]
    assert event.axon_id == wanted


async def test_sql_time_travel_and_changes(backend: Backend) -> None:
    """A change belongs to the event current when it commits: 'a' is the state as of event 1."""
    axon = await new_axon(backend, "sql")
    await backend.publish(axon, Draft.message("one", source="parity"))
    await backend.batch(
        axon, ["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'a')"]
    )
    await backend.publish(axon, Draft.message("two", source="parity"))
    await backend.query(axon, "UPDATE t SET v = 'b' WHERE id = 1", write=True)
    now = await backend.query(axon, "SELECT v FROM t")
    then = await backend.query(axon, "SELECT v FROM t", at_sequence=1)
    assert (now.rows, then.rows) == ([["b"]], [["a"]])
    counting = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
    limited = await backend.query(axon, counting + "SELECT i FROM n", max_rows=5)
    assert len(limited.rows) == 5
    (change,) = await backend.changes(axon, 2)
    assert (change.table, change.op, change.after) == ("t", "update", {"id": 1, "v": "b"})


async def test_errors_keep_their_class(backend: Backend) -> None:
    with pytest.raises(NotFound):
        await backend.get_axon("no-such-axon")
    axon = await new_axon(backend, "errors")
    with pytest.raises(InvalidInput):
        await backend.publish_batch(axon, [])
    with pytest.raises(BatchFailed):
        await backend.batch(axon, ["CREATE TABLE t(x)", "INSERT INTO nowhere VALUES (1)"])
    await backend.delete_axon(axon)
    with pytest.raises(Conflict):
        await backend.publish(axon, Draft.message("too late", source="parity"))


async def test_listing_and_metadata(backend: Backend) -> None:
    axon = await new_axon(backend, "listing-parity")
    await backend.update_axon(axon, {"team": "changed"})
    assert (await backend.get_axon(axon)).metadata == {"team": "changed"}
    page = await backend.list_axons(name="listing-par", include_total_count=True)
    assert [a.id for a in page.axons] == [axon]
    await backend.delete_axon(axon)
    assert (await backend.list_axons(name="listing-par")).axons == []
    kept = await backend.list_axons(name="listing-par", include_deleted=True)
    assert [a.id for a in kept.axons] == [axon]


async def test_verify_export_import_and_fork(backend: Backend) -> None:
    axon = await new_axon(backend, "records")
    for text in ("one", "two", "three"):
        await backend.publish(axon, Draft.message(text, source="parity"))
    assert (await backend.verify(axon)).ok
    lines = [line async for line in backend.export(axon)]
    copy = await backend.import_axon(lines, name="records-copy")
    assert await backend.last_sequence(copy.id) == 3
    fork = await backend.fork(axon, 2, name="records-fork")
    assert await backend.last_sequence(fork.id) == 2
    assert fork.metadata["forked_from"] == axon


async def test_agents_and_their_cursor(backend: Backend) -> None:
    axon = await new_axon(backend, "agents")
    await backend.publish(axon, Draft.message("before the agent", source="parity"))
    view = await backend.agents.add(triage_spec(axon, "process", idle_pause_s=0.2))
    assert (view.name, view.runtime) == ("triage", "process")
    assert [a.name for a in await backend.agents.list(axon)] == ["triage"]
    every = await backend.agents.list()  # every Axon's agents at once (GET /v1/agents)
    assert [(a.axon_id, a.name) for a in every] == [(axon, "triage")]
    assert (await backend.agents.get(axon, "triage")).axon_id == axon
    with pytest.raises(NotFound):
        await backend.agents.get(axon, "nobody")
    await backend.agents.command(axon, "triage", "stop")
    for _ in range(WAIT_ROUNDS):
        if (await backend.agents.get(axon, "triage")).state == "stopped":
            break
        await asyncio.sleep(0.05)
    assert (await backend.agents.get(axon, "triage")).state == "stopped"
    assert isinstance(await backend.agents.logs(axon, "triage"), list)
    assert await backend.ack(axon, "observer", 1) == 1
    assert await backend.ack(axon, "observer", 0) == 1  # never back
    assert await backend.agent_cursor(axon, "observer") == 1
    assert await backend.agent_cursor(axon, "nobody") == 0


async def test_tokens_are_created_listed_and_revoked(backend: Backend) -> None:
    axon = await new_axon(backend, "token-parity")
    view, secret = await backend.tokens.create("ci-parity", "publish", ["token-parity"])
    assert secret.startswith("axt_")
    assert (view.name, view.scope, view.axons) == ("ci-parity", "publish", [axon])
    listed = await backend.tokens.list()
    assert view in listed
    assert all(secret not in t.model_dump_json() for t in listed)  # shown once, never again
    with pytest.raises(InvalidInput) as taken:
        await backend.tokens.create("ci-parity", "read")
    assert taken.value.code == ErrorCode.TOKEN_EXISTS
    with pytest.raises(InvalidInput) as scope:
        await backend.tokens.create("root-parity", "root")
    assert scope.value.code == ErrorCode.INVALID_SCOPE
    assert await backend.tokens.revoke("ci-parity") == view
    assert view not in await backend.tokens.list()
    with pytest.raises(NotFound):
        await backend.tokens.revoke("ci-parity")
    await backend.delete_axon(axon)
    with pytest.raises(InvalidInput) as deleted:
        await backend.tokens.create("late-parity", "read", [axon])
    assert deleted.value.code == ErrorCode.AXON_DELETED


async def test_over_tcp_only_an_unlimited_admin_token_manages_tokens(
    server: ServerProcess,
) -> None:
    async with Client(socket_path=server.socket_path) as local:
        axon = await new_axon(local, "token-reach")
    weaker = {
        "tcp-read": make_token(server.home, "tcp-read", "read"),
        "tcp-limited": make_token(server.home, "tcp-limited", "admin", [axon]),
    }
    for name, token in weaker.items():
        async with Client(server.url, token=token) as client:
            with pytest.raises(Forbidden):
                await client.tokens.create(f"{name}-wider", "admin")
            with pytest.raises(Forbidden):
                await client.tokens.list()
            with pytest.raises(Forbidden):
                await client.tokens.revoke(name)
    admin = make_token(server.home, "tcp-admin", "admin")
    async with Client(server.url, token=admin) as client:
        made, secret = await client.tokens.create("tcp-made", "read")
        async with Client(server.url, token=secret) as reader:
            assert (await reader.get_axon(axon)).id == axon
        assert await client.tokens.revoke("tcp-made") == made
        async with Client(server.url, token=secret) as revoked:
            with pytest.raises(Unauthorized):
                await revoked.get_axon(axon)
