"""A Python client of the HTTP API with the same methods and return types as `Engine`, so a
script, the CLI or a console works the same against a running engine as in-process.

    async with Client.for_home(home) as client:      # the home's unix socket
    async with Client("http://127.0.0.1:8700", token=...) as client:
    with SyncClient.for_home(home) as client:        # the same, blocking
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
from httpx_sse import aconnect_sse

from engine.errors import AxonError, BatchFailed, ErrorCode, NotFound, error_from
from engine.home import Home
from engine.models import (
    AgentSpec,
    AgentView,
    AxonPage,
    AxonView,
    Draft,
    Event,
    EventPage,
    PublishResult,
    QueryResult,
    RowChange,
    VerifyReport,
)
from engine.state import DEFAULT_MAX_ROWS
from engine.tokens import TokenView

T = TypeVar("T")


def _event(data: dict[str, Any]) -> Event:
    return Event(
        data["axon_id"],
        data["sequence"],
        data["timestamp_ms"],
        data["origin"],
        data["source"],
        data["event_type"],
        data["payload"],
        data.get("author"),
        data.get("idempotency_key"),
        data.get("hash", ""),
    )


def _draft_body(d: Draft) -> dict[str, Any]:
    body = {
        "event_type": d.event_type,
        "origin": d.origin,
        "payload": d.payload,
        "source": d.source,
    }
    if d.idempotency_key is not None:
        body["idempotency_key"] = d.idempotency_key
    return body


class RemoteAgents:
    """The supervisor's methods (`Engine.agents`) over HTTP."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def add(self, spec: AgentSpec) -> AgentView:
        data = await self._client._call(
            "POST", f"/v1/axons/{spec.axon}/agents", json=spec.model_dump(mode="json")
        )
        return AgentView.model_validate(data)

    async def list(self, axon_id: str | None = None) -> builtins.list[AgentView]:
        path = "/v1/agents" if axon_id is None else f"/v1/axons/{axon_id}/agents"
        data = await self._client._call("GET", path)
        return [AgentView.model_validate(a) for a in data["agents"]]

    async def get(self, axon_id: str, name: str) -> AgentView:
        found = [a for a in await self.list(axon_id) if a.name == name]
        if not found:
            raise NotFound(f"no agent {name!r} on Axon {axon_id}", code=ErrorCode.AGENT_NOT_FOUND)
        return found[0]

    async def command(self, axon_id: str, name: str, action: str) -> AgentView:
        data = await self._client._call("POST", f"/v1/axons/{axon_id}/agents/{name}/{action}")
        return AgentView.model_validate(data)

    async def permit(
        self, axon_id: str, request_sequence: int, option_id: str | None, *, source: str = "cli"
    ) -> PublishResult:
        answer = {"cancelled": True} if option_id is None else {"option_id": option_id}
        data = await self._client._call(
            "POST",
            f"/v1/axons/{axon_id}/permissions/{request_sequence}",
            json={**answer, "source": source},
        )
        return PublishResult(data["sequence"], data["timestamp_ms"])

    async def logs(self, axon_id: str, name: str, tail: int = 100) -> builtins.list[str]:
        data = await self._client._call(
            "GET", f"/v1/axons/{axon_id}/agents/{name}/logs", params={"tail": tail}
        )
        return list(data["lines"])


class RemoteTokens:
    """The engine's token administration (`Engine.tokens`) over HTTP."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def create(
        self, name: str, scope: str, axons: Sequence[str] | None = None
    ) -> tuple[TokenView, str]:
        body = {"name": name, "scope": scope, "axons": list(axons) if axons else None}
        data = await self._client._call("POST", "/v1/tokens", json=body)
        return TokenView.model_validate(data), data["token"]

    async def list(self) -> builtins.list[TokenView]:
        data = await self._client._call("GET", "/v1/tokens")
        return [TokenView.model_validate(t) for t in data["tokens"]]

    async def revoke(self, name: str) -> TokenView:
        data = await self._client._call("DELETE", f"/v1/tokens/{quote(name, safe='')}")
        return TokenView.model_validate(data)


class Client:
    """Async client. Errors come back as the `AxonError` subclass the engine raised, with the
    server's code and status (`errors.error_from`)."""

    def __init__(
        self,
        base_url: str = "http://axons",
        *,
        token: str | None = None,
        socket_path: Path | str | None = None,
        timeout: float = 60.0,
    ) -> None:
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path)) if socket_path else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        )
        self.target = str(socket_path or base_url)
        self.agents = RemoteAgents(self)
        self.tokens = RemoteTokens(self)

    @classmethod
    def for_home(cls, home: Path | str) -> Client:
        return cls(socket_path=Home.at(home).socket)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return orjson.loads(response.content)
        return response.content

    # -- the Engine's API ---------------------------------------------------------------

    async def healthz(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/healthz")
        return result

    async def create_axon(
        self, name: str | None = None, metadata: dict[str, str] | None = None
    ) -> AxonView:
        body = {"name": name, "metadata": metadata or {}}
        return AxonView.model_validate(await self._call("POST", "/v1/axons", json=body))

    async def get_axon(self, ref: str) -> AxonView:
        return AxonView.model_validate(await self._call("GET", f"/v1/axons/{ref}"))

    async def list_axons(
        self,
        *,
        limit: int = 20,
        starting_after: str | None = None,
        name: str | None = None,
        search: str | None = None,
        ids: Sequence[str] | None = None,
        include_total_count: bool = False,
        include_deleted: bool = False,
    ) -> AxonPage:
        given = {
            "limit": limit,
            "starting_after": starting_after,
            "name": name,
            "search": search,
            "id": ",".join(ids) if ids else None,
            "include_total_count": include_total_count,
            "include_deleted": include_deleted,
        }
        params = {k: v for k, v in given.items() if v not in (None, False)}
        return AxonPage.model_validate(await self._call("GET", "/v1/axons", params=params))

    async def update_axon(self, ref: str, metadata: dict[str, str]) -> AxonView:
        data = await self._call("POST", f"/v1/axons/{ref}", json={"metadata": metadata})
        return AxonView.model_validate(data)

    async def delete_axon(self, ref: str) -> AxonView:
        return AxonView.model_validate(await self._call("DELETE", f"/v1/axons/{ref}"))

    async def publish(self, axon_id: str, draft: Draft, *, system: bool = False) -> PublishResult:
        data = await self._call("POST", f"/v1/axons/{axon_id}/publish", json=_draft_body(draft))
        return PublishResult(data["sequence"], data["timestamp_ms"])

    async def publish_batch(
        self, axon_id: str, drafts: Sequence[Draft], *, system: bool = False
    ) -> list[PublishResult]:
        body = {"events": [_draft_body(d) for d in drafts]}
        data = await self._call("POST", f"/v1/axons/{axon_id}/publish/batch", json=body)
        return [PublishResult(r["sequence"], r["timestamp_ms"]) for r in data["results"]]

    async def last_sequence(self, axon_id: str) -> int:
        page = await self.list_events(axon_id, limit=1)
        return int(page.events[0]["sequence"]) if page.events else 0

    async def read_events(self, axon_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        data = await self._call(
            "GET", f"/v1/axons/{axon_id}/events", params={"after_sequence": after, "limit": limit}
        )
        return [_event(e) for e in data["events"]]

    async def list_events(
        self,
        axon_id: str,
        *,
        limit: int = 20,
        starting_after: int | None = None,
        include_total_count: bool = False,
    ) -> EventPage:
        params: dict[str, Any] = {"limit": limit, "include_total_count": include_total_count}
        if starting_after is not None:
            params["starting_after"] = starting_after
        data = await self._call("GET", f"/v1/axons/{axon_id}/events", params=params)
        return EventPage.model_validate(data)

    async def subscribe(self, axon_id: str, after_sequence: int = 0) -> AsyncIterator[Event]:
        """Follow the Axon's SSE stream; on a dropped connection, resume after the last
        event seen (no gap, no duplicate)."""
        last = after_sequence
        while True:
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    f"/v1/axons/{axon_id}/subscribe/sse",
                    params={"after_sequence": last},
                    timeout=httpx.Timeout(None, connect=5.0),
                ) as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        raise _error(source.response)
                    async for sse in source.aiter_sse():
                        if sse.event == "error":
                            problem = orjson.loads(sse.data)
                            if problem.get("code") == ErrorCode.SLOW_CONSUMER:
                                break  # reconnect from `last`
                            raise _stream_error(problem, sse.data)
                        if not sse.data:
                            continue
                        event = _event(orjson.loads(sse.data))
                        last = event.sequence
                        yield event
                    else:
                        return  # the server ended the stream (shutting down)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                await asyncio.sleep(0.2)

    async def subscribe_all(self, axon_ids: Sequence[str] | None = None) -> AsyncIterator[Event]:
        """Live events of several (or all) Axons from now on (the multi-Axon SSE stream)."""
        params = {"axons": ",".join(axon_ids)} if axon_ids else None
        async with aconnect_sse(
            self._http,
            "GET",
            "/v1/subscribe/sse",
            params=params,
            timeout=httpx.Timeout(None, connect=5.0),
        ) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
                raise _error(source.response)
            async for sse in source.aiter_sse():
                if sse.event == "error":
                    raise _stream_error(orjson.loads(sse.data), sse.data)
                if sse.data:
                    yield _event(orjson.loads(sse.data))

    async def query(
        self,
        axon_id: str,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        write: bool = False,
        at_sequence: int | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> QueryResult:
        body: dict[str, Any] = {"sql": sql, "params": list(params or []), "max_rows": max_rows}
        if at_sequence is not None:
            body["at_sequence"] = at_sequence
        if not write and at_sequence is None:
            body["read_only"] = True
        data = await self._call("POST", f"/v1/axons/{axon_id}/sql/query", json=body)
        return QueryResult.model_validate(data)

    async def batch(
        self, axon_id: str, statements: Sequence[Any], *, ack: tuple[str, int] | None = None
    ) -> list[QueryResult]:
        body: dict[str, Any] = {
            "statements": [{"sql": s} if isinstance(s, str) else dict(s) for s in statements]
        }
        if ack is not None:
            body["ack"] = {"agent": ack[0], "sequence": ack[1]}
        data = await self._call("POST", f"/v1/axons/{axon_id}/sql/batch", json=body)
        steps = data["results"]
        failed = next(
            (
                i
                for i, st in enumerate(steps)
                if st.get("error") and not st["error"]["message"].startswith("rolled back")
            ),
            None,
        )
        if failed is not None:
            problem = steps[failed]["error"]
            cause = error_from(400, problem.get("code", ErrorCode.SQL_ERROR), problem["message"])
            raise BatchFailed(failed, cause, [])
        return [QueryResult.model_validate(st["success"]) for st in steps]

    async def agent_cursor(self, axon_id: str, agent: str) -> int:
        data = await self._call("GET", f"/v1/axons/{axon_id}/agents/{agent}/cursor")
        return int(data["sequence"])

    async def ack(self, axon_id: str, agent: str, sequence: int) -> int:
        data = await self._call(
            "POST", f"/v1/axons/{axon_id}/agents/{agent}/ack", json={"sequence": sequence}
        )
        return int(data["sequence"])

    async def changes(self, axon_id: str, sequence: int) -> list[RowChange]:
        data = await self._call("GET", f"/v1/axons/{axon_id}/changes/{sequence}")
        return [RowChange.model_validate(c) for c in data["changes"]]

    async def verify(self, axon_id: str) -> VerifyReport:
        return VerifyReport.model_validate(await self._call("GET", f"/v1/axons/{axon_id}/verify"))

    async def export(self, axon_id: str) -> AsyncIterator[bytes]:
        async with self._http.stream("GET", f"/v1/axons/{axon_id}/export") as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            async for line in response.aiter_lines():
                if line:
                    yield line.encode()

    async def import_axon(self, lines: Sequence[bytes | str], name: str | None = None) -> AxonView:
        body = b"\n".join(line.encode() if isinstance(line, str) else line for line in lines)
        data = await self._call(
            "POST",
            "/v1/axons/import",
            content=body,
            params={"name": name} if name else None,
            headers={"content-type": "application/x-ndjson"},
        )
        return AxonView.model_validate(data)

    async def fork(self, axon_id: str, at_sequence: int, name: str | None = None) -> AxonView:
        data = await self._call(
            "POST", f"/v1/axons/{axon_id}/fork", json={"at_sequence": at_sequence, "name": name}
        )
        return AxonView.model_validate(data)


def _error(response: httpx.Response) -> AxonError:
    """The engine's error, rebuilt as the class it raised (see `errors.error_from`)."""
    try:
        problem = orjson.loads(response.content)["error"]
        return error_from(response.status_code, problem["code"], problem["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return error_from(
            response.status_code, ErrorCode.HTTP_ERROR, f"HTTP {response.status_code}: {text}"
        )


def _stream_error(problem: dict[str, Any], raw: str) -> AxonError:
    """An `error` frame that ended an SSE stream."""
    return error_from(503, problem.get("code", ErrorCode.STREAM_ENDED), problem.get("message", raw))


class SyncClient:
    """The same API, blocking: calls run on a private event loop in a daemon thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="axons-client"
        )
        self._thread.start()
        self._client: Client = self._run(self._make(*args, **kwargs))

    @staticmethod
    async def _make(*args: Any, **kwargs: Any) -> Client:
        return Client(*args, **kwargs)

    @classmethod
    def for_home(cls, home: Path | str) -> SyncClient:
        return cls(socket_path=Home.at(home).socket)

    def _run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if hasattr(result, "__anext__"):
                return self._iterate(result)
            return self._run(result)

        return call

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(agen.aclose())  # type: ignore[attr-defined]

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
