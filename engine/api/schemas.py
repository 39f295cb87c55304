"""Request and response bodies of the HTTP API (contract §4). These pydantic models are what
`/openapi.json` is generated from; field names follow Runloop's Axon API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.models import (
    AgentSpec,
    AgentView,
    AxonPage,
    AxonView,
    QueryResult,
    RowChange,
    VerifyReport,
)
from engine.state import DEFAULT_MAX_ROWS
from engine.tokens import TokenView

__all__ = [
    "AxonPage",
    "AxonView",
    "BatchStep",
    "CreateAxon",
    "ErrorBody",
    "EventView",
    "EventsPage",
    "ForkRequest",
    "PublishBatchRequest",
    "PublishBatchResult",
    "PublishRequest",
    "PublishResultView",
    "QueryRequest",
    "QueryResult",
    "SqlBatchRequest",
    "SqlBatchResult",
    "StatementIn",
    "UpdateAxon",
    "VerifyReport",
]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class CreateAxon(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, str] | None = None


class UpdateAxon(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, str] | None = None
    name: str | None = Field(None, min_length=1, max_length=200)


class PublishRequest(BaseModel):
    event_type: str = Field(min_length=1, max_length=200)
    origin: Literal["EXTERNAL_EVENT", "AGENT_EVENT", "USER_EVENT", "SYSTEM_EVENT"]
    payload: str = Field(description='JSON text; a human message is {"text": "..."}')
    source: str = Field(min_length=1, max_length=200)
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)


class PublishResultView(BaseModel):
    sequence: int
    timestamp_ms: int


class PublishBatchRequest(BaseModel):
    events: list[PublishRequest] = Field(min_length=1, max_length=10_000)


class PublishBatchResult(BaseModel):
    results: list[PublishResultView]


class EventView(BaseModel):
    axon_id: str
    sequence: int
    timestamp_ms: int
    origin: Literal["EXTERNAL_EVENT", "AGENT_EVENT", "USER_EVENT", "SYSTEM_EVENT"]
    source: str
    event_type: str
    payload: str
    author: str | None = None
    idempotency_key: str | None = None
    hash: str


class EventsPage(BaseModel):
    events: list[EventView]
    has_more: bool
    total_count: int | None = None


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000)
    params: list[Any] = Field(default_factory=list)
    # strict: `true` is not sequence 1, nor 1 a boolean (pydantic's lax mode would coerce them)
    at_sequence: int | None = Field(None, ge=0, strict=True)
    read_only: bool = Field(
        False, strict=True, description="refuse writes even when the token allows them"
    )
    max_rows: int = Field(
        DEFAULT_MAX_ROWS, ge=1, le=DEFAULT_MAX_ROWS, strict=True, description="rows returned"
    )


class StatementIn(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000)
    params: list[Any] = Field(default_factory=list)


class AgentAck(BaseModel):
    """Move an agent's cursor in the batch's own transaction (its effects happen once)."""

    agent: str = Field(min_length=1, max_length=200)
    sequence: int = Field(ge=0, strict=True)


class SqlBatchRequest(BaseModel):
    statements: list[StatementIn] = Field(min_length=1, max_length=1000)
    ack: AgentAck | None = None


class StepError(BaseModel):
    message: str


class BatchStep(BaseModel):
    success: QueryResult | None = None
    error: StepError | None = None


class SqlBatchResult(BaseModel):
    results: list[BatchStep]


class ForkRequest(BaseModel):
    at_sequence: int = Field(ge=0, strict=True)
    name: str | None = Field(None, min_length=1, max_length=200)


class Cursor(BaseModel):
    """An agent's cursor: the last sequence it acknowledged."""

    sequence: int = Field(ge=0, strict=True)


class ChangesView(BaseModel):
    changes: list[RowChange]


class Health(BaseModel):
    ok: bool
    axons_open: int


class AgentSpecBody(AgentSpec):
    """An agent for the Axon in the path (`axon` may be left out)."""

    axon: str = Field("", max_length=200)  # type: ignore[assignment]


class AgentList(BaseModel):
    agents: list[AgentView]


class AgentLogs(BaseModel):
    lines: list[str]


class PermissionDecision(BaseModel):
    """The answer to an ACP agent's `permission.requested` event: one of its options, or
    `cancelled` to refuse it outright."""

    option_id: str | None = Field(None, min_length=1, max_length=200)
    cancelled: bool = False
    source: str = Field("api", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_answer(self) -> PermissionDecision:
        if (self.option_id is None) == (not self.cancelled):
            raise ValueError('give "option_id" or "cancelled": true (one of them)')
        return self


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scope: str = Field(description="read, publish, sql-write or admin")
    axons: list[str] | None = Field(
        None, description="ids or names of the Axons it may reach; null: every Axon"
    )


class CreatedToken(TokenView):
    token: str = Field(description="the secret: shown this once, stored only as a hash")


class TokenList(BaseModel):
    tokens: list[TokenView]
