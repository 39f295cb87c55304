"""The seam every client of the engine stands on: the in-process `Engine` and the HTTP
`Client` both implement `Backend`, with the same signatures and return types, so the CLI,
scenarios and the console are written once and work embedded or attached.

A test checks both against these protocols (mypy, structurally) and runs the same behaviour
checks against each (tests/test_backend_parity.py).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

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
from engine.tokens import TokenView


class AgentsBackend(Protocol):
    """An Axon's agents: declare, list, command, read their logs, answer their permission
    requests (`Engine.agents`)."""

    async def add(self, spec: AgentSpec) -> AgentView: ...

    async def list(self, axon_id: str | None = None) -> builtins.list[AgentView]: ...

    async def get(self, axon_id: str, name: str) -> AgentView: ...

    async def command(self, axon_id: str, name: str, action: str) -> AgentView: ...

    async def logs(self, axon_id: str, name: str, tail: int = 100) -> builtins.list[str]: ...

    async def permit(
        self, axon_id: str, request_sequence: int, option_id: str | None, *, source: str = "cli"
    ) -> PublishResult:
        """Answer an ACP agent's permission request (None: cancelled); 409 when nothing
        waits for that answer."""
        ...


class TokensBackend(Protocol):
    """API tokens for TCP clients (`Engine.tokens`); over HTTP they need an unlimited admin
    token, on the unix socket the file's mode guards them as it does everything else."""

    async def create(
        self, name: str, scope: str, axons: Sequence[str] | None = None
    ) -> tuple[TokenView, str]:
        """The new token and its secret, shown this once; `axons` are ids or names of live
        Axons (None: every Axon)."""
        ...

    async def list(self) -> builtins.list[TokenView]: ...

    async def revoke(self, name: str) -> TokenView: ...


class Backend(Protocol):
    """The engine's API: Axons, events, live streams, SQL state, records, agents, tokens."""

    @property
    def agents(self) -> AgentsBackend: ...

    @property
    def tokens(self) -> TokensBackend: ...

    # -- Axons
    async def create_axon(
        self, name: str | None = None, metadata: dict[str, str] | None = None
    ) -> AxonView: ...

    async def get_axon(self, ref: str) -> AxonView: ...

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
    ) -> AxonPage: ...

    async def update_axon(self, ref: str, metadata: dict[str, str]) -> AxonView: ...

    async def delete_axon(self, ref: str) -> AxonView: ...

    # -- events
    async def publish(
        self, axon_id: str, draft: Draft, *, system: bool = False
    ) -> PublishResult: ...

    async def publish_batch(
        self, axon_id: str, drafts: Sequence[Draft], *, system: bool = False
    ) -> list[PublishResult]: ...

    async def last_sequence(self, axon_id: str) -> int: ...

    async def read_events(self, axon_id: str, after: int = 0, limit: int = 1000) -> list[Event]: ...

    async def list_events(
        self,
        axon_id: str,
        *,
        limit: int = 20,
        starting_after: int | None = None,
        include_total_count: bool = False,
    ) -> EventPage: ...

    def subscribe(self, axon_id: str, after_sequence: int = 0) -> AsyncIterator[Event]: ...

    def subscribe_all(self, axon_ids: Sequence[str] | None = None) -> AsyncIterator[Event]: ...

    # -- state
    async def query(
        self,
        axon_id: str,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        write: bool = False,
        at_sequence: int | None = None,
        max_rows: int = ...,
    ) -> QueryResult: ...

    async def batch(
        self, axon_id: str, statements: Sequence[Any], *, ack: tuple[str, int] | None = None
    ) -> list[QueryResult]: ...

    async def changes(self, axon_id: str, sequence: int) -> list[RowChange]: ...

    async def agent_cursor(self, axon_id: str, agent: str) -> int: ...

    async def ack(self, axon_id: str, agent: str, sequence: int) -> int: ...

    # -- records
    async def verify(self, axon_id: str) -> VerifyReport: ...

    def export(self, axon_id: str) -> AsyncIterator[bytes]: ...

    async def import_axon(
        self, lines: Sequence[bytes | str], name: str | None = None
    ) -> AxonView: ...

    async def fork(self, axon_id: str, at_sequence: int, name: str | None = None) -> AxonView: ...


if TYPE_CHECKING:  # mypy proves that both implementations conform
    from engine.api.client import Client
    from engine.engine import Engine

    def _both_are_backends(engine: Engine, client: Client) -> tuple[Backend, Backend]:
        return engine, client
