"""The contract's data shapes (contract §3, §4): events, drafts, Axon views, query results.

`Event` and `Draft` are plain slotted classes because they sit on the publish hot path;
the rest are pydantic models that the HTTP layer serialises as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

Origin = Literal["EXTERNAL_EVENT", "USER_EVENT", "AGENT_EVENT", "SYSTEM_EVENT"]
ORIGINS: frozenset[str] = frozenset(("EXTERNAL_EVENT", "USER_EVENT", "AGENT_EVENT", "SYSTEM_EVENT"))
CLIENT_ORIGINS: frozenset[str] = ORIGINS - {"SYSTEM_EVENT"}


@dataclass(slots=True)
class Draft:
    """An event as a client asks for it, before the engine gives it a sequence."""

    event_type: str
    payload: str
    source: str
    origin: str = "USER_EVENT"
    idempotency_key: str | None = None
    author: str | None = None

    @classmethod
    def message(cls, text: str, *, source: str = "cli", origin: str = "USER_EVENT") -> Draft:
        """A human message: `event_type` "message" with payload `{"text": ...}`."""
        return cls("message", orjson.dumps({"text": text}).decode(), source, origin)


@dataclass(slots=True)
class Event:
    """One committed entry of an Axon's log."""

    axon_id: str
    sequence: int
    timestamp_ms: int
    origin: str
    source: str
    event_type: str
    payload: str
    author: str | None
    idempotency_key: str | None
    hash: str
    _json: bytes | None = field(default=None, repr=False, compare=False)

    def json(self) -> bytes:
        """The wire JSON, encoded once however many subscribers send it."""
        if self._json is None:
            self._json = orjson.dumps(self.to_dict())
        return self._json

    def to_dict(self) -> dict[str, Any]:
        return {
            "axon_id": self.axon_id,
            "sequence": self.sequence,
            "timestamp_ms": self.timestamp_ms,
            "origin": self.origin,
            "source": self.source,
            "event_type": self.event_type,
            "payload": self.payload,
            "author": self.author,
            "idempotency_key": self.idempotency_key,
            "hash": self.hash,
        }


class PublishResult(NamedTuple):
    """Where an event landed. A tuple: it is made once per event on the hot path."""

    sequence: int
    timestamp_ms: int

    def to_dict(self) -> dict[str, int]:
        return {"sequence": self.sequence, "timestamp_ms": self.timestamp_ms}


class AxonView(BaseModel):
    id: str
    created_at_ms: int
    metadata: dict[str, str] = Field(default_factory=dict)
    name: str | None = None
    deleted_at_ms: int | None = None


class AxonPage(BaseModel):
    axons: list[AxonView]
    has_more: bool
    total_count: int | None = None


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    has_more: bool
    total_count: int | None = None


class Column(BaseModel):
    name: str
    type: str


class QueryMeta(BaseModel):
    changes: int
    duration_ms: float
    rows_read_limit_reached: bool


class QueryResult(BaseModel):
    columns: list[Column]
    rows: list[list[Any]]
    meta: QueryMeta


class Statement(BaseModel):
    sql: str
    params: list[Any] = Field(default_factory=list)


class VerifyReport(BaseModel):
    ok: bool
    checked: int
    first_bad_sequence: int | None = None
    reason: str | None = None


class RowChange(BaseModel):
    """One row changed by the state writes made while `sequence` was the latest event."""

    sequence: int
    table: str
    op: Literal["insert", "update", "delete"]
    rowid: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


MIN_MEMORY = 6 << 20  # Docker's own minimum
MEMORY_PATTERN = r"^(\d{1,15}(?:\.\d{1,6})?) ?([kKmMgGtTpP]?)[iI]?[bB]?$"  # Docker's: 512m, 1GiB
_MEMORY = re.compile(MEMORY_PATTERN)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def memory_bytes(value: str) -> int:
    """Docker's memory notation (`512m`, `1g`, `1048576`) in bytes."""
    match = _MEMORY.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            f"memory {value!r:.40}: write a number with an optional unit k, m, g, t or p "
            "(for example 512m)"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


MCP_GATEWAY_KEYS = ("allowed_tools", "secrets", "log_arguments")  # only on gateway entries
_SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class NameValue(BaseModel):
    """An environment variable or an HTTP header, as ACP writes them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    value: str = Field(max_length=8192)


class McpUpstream(BaseModel):
    """An `mcp_servers` entry with `allowed_tools`: an MCP server the engine reaches for the
    agent through its MCP gateway (engine/gateway/mcp.py), so the agent never holds the
    server's command, URL or credentials. Stdio (`command`, `args`, `env`) runs on the
    engine's host; HTTP (`url`, `headers`) is reached by the engine. `${NAME}` in an env or
    header value is replaced by the secret NAME (listed in `secrets`, read from the engine's
    environment); a stdio upstream also gets each secret under its own name."""

    model_config = ConfigDict(extra="forbid")

    # Tools are listed as `<name>__<tool>`: no `__` in a name, so that splits back.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$")
    type: Literal["stdio", "http"] | None = None  # inferred from `command` or `url`
    command: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: list[NameValue] = Field(default_factory=list)
    url: str | None = Field(None, pattern=r"^https?://")
    headers: list[NameValue] = Field(default_factory=list)
    allowed_tools: list[str] = Field(min_length=1)
    secrets: list[str] = Field(default_factory=list)
    log_arguments: bool = False

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        """`env`/`headers` as a TOML table ({NAME = "value"}) or ACP's [{name, value}]."""
        if isinstance(data, dict):
            data = dict(data)
            for key in ("env", "headers"):
                if isinstance(data.get(key), dict):
                    data[key] = [{"name": k, "value": v} for k, v in data[key].items()]
        return data

    @model_validator(mode="after")
    def _one_transport(self) -> McpUpstream:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a stdio server) or url (an HTTP server)")
        kind: Literal["stdio", "http"] = "stdio" if self.command is not None else "http"
        if self.type not in (None, kind):
            raise ValueError(f"type {self.type!r} does not fit an entry with a {kind} transport")
        self.type = kind
        if kind == "stdio" and self.headers:
            raise ValueError("headers are for HTTP servers (url); a stdio server takes env")
        if kind == "http" and (self.args or self.env):
            raise ValueError("args and env are for stdio servers (command); HTTP takes headers")
        used = {m for pair in (*self.env, *self.headers) for m in _SECRET_REF.findall(pair.value)}
        if unlisted := sorted(used - set(self.secrets)):
            raise ValueError(f"${{{unlisted[0]}}} is used but not listed in secrets")
        if kind == "http" and (unused := [s for s in self.secrets if s not in used]):
            raise ValueError(
                f"secret {unused[0]} is not used: an HTTP server gets a secret in a header, "
                f'e.g. headers = {{ Authorization = "Bearer ${{{unused[0]}}}" }}'
            )
        return self

    def resolve(self, values: dict[str, str]) -> list[NameValue]:
        """`env` (stdio, with each secret under its own name too) or `headers` (HTTP) with
        the secrets put in."""
        pairs = self.env if self.type == "stdio" else self.headers
        resolved = [
            NameValue(name=p.name, value=_SECRET_REF.sub(lambda m: values[m.group(1)], p.value))
            for p in pairs
        ]
        if self.type == "stdio":
            resolved += [NameValue(name=s, value=values[s]) for s in self.secrets]
        return resolved


def split_mcp_servers(raw: list[dict[str, Any]]) -> tuple[list[Any], list[McpUpstream]]:
    """An ACP agent's `mcp_servers`: the plain entries as the ACP SDK's models (handed to the
    agent as they are in session/new) and the entries with `allowed_tools` (reached through
    the engine's MCP gateway). ValueError names the bad entry. Each entry is checked alone:
    the SDK's request model silently drops entries it cannot parse, and an agent missing its
    tools says nothing."""
    from acp.schema import (  # the SDK is slow to import: only for specs that use it
        AcpMcpServer,
        HttpMcpServer,
        McpServerStdio,
        SseMcpServer,
    )
    from pydantic import TypeAdapter, ValidationError

    server: TypeAdapter[Any] = TypeAdapter(
        HttpMcpServer | SseMcpServer | AcpMcpServer | McpServerStdio
    )
    plain: list[Any] = []
    upstreams: list[McpUpstream] = []
    for i, entry in enumerate(raw):
        if "allowed_tools" in entry:
            try:
                upstreams.append(McpUpstream.model_validate(entry))
            except ValidationError as e:
                problem = e.errors()[0]
                where = ".".join(str(x) for x in problem["loc"])
                if problem["type"] == "value_error":  # ours: it says what to do
                    what = str(problem["msg"]).removeprefix("Value error, ")
                else:
                    what = (
                        f"{where}: {problem['msg']} (give name, allowed_tools and either "
                        "command with args and env, or url with headers)"
                    )
                raise ValueError(
                    f"mcp_servers[{i}] (through the MCP gateway, as it has allowed_tools): {what}"
                ) from None
            continue
        if extra := [key for key in MCP_GATEWAY_KEYS if key in entry]:
            raise ValueError(
                f"mcp_servers[{i}] has {extra[0]} but no allowed_tools: only entries reached "
                'through the MCP gateway take it; add allowed_tools (e.g. ["read_*"], or ["*"] '
                "for every tool)"
            )
        try:
            plain.append(server.validate_python(entry))
        except ValidationError as e:
            raise ValueError(
                f"mcp_servers[{i}] is not an MCP server ACP understands: give "
                '{"name", "command", "args", "env"} (stdio) or {"type": "http"|"sse", '
                f'"name", "url", "headers"}} ({e.error_count()} problems: '
                f"{e.errors()[0]['msg']}); or add allowed_tools to reach it through the MCP "
                "gateway"
            ) from None
    names = [u.name for u in upstreams]
    if dup := next((n for n in names if names.count(n) > 1), None):
        raise ValueError(f"mcp_servers: two gateway entries are named {dup!r}; name each once")
    return plain, upstreams


def mcp_servers(raw: list[dict[str, Any]]) -> list[Any]:
    """The plain `mcp_servers` entries, as the ACP SDK's models (see split_mcp_servers)."""
    return split_mcp_servers(raw)[0]


def mcp_upstreams(raw: list[dict[str, Any]]) -> list[McpUpstream]:
    """The `mcp_servers` entries reached through the MCP gateway (see split_mcp_servers)."""
    return split_mcp_servers(raw)[1]


GATEWAY_PREFIX = r"^[A-Z][A-Z0-9_]{0,39}$"
GatewayApi = Literal["anthropic", "openai", "gemini"]
_API_OF_HEADER: dict[str, GatewayApi] = {
    "x-api-key": "anthropic",
    "x-goog-api-key": "gemini",
    "authorization": "openai",
}


class GatewaySpec(BaseModel):
    """One provider an agent reaches through the Agent Gateway (contract §5.3): the agent
    gets `PREFIX_BASE_URL` and an opaque token as `PREFIX_API_KEY`; the engine swaps the
    token for the real key (the engine's env var `secret`) and forwards to `upstream` only."""

    model_config = ConfigDict(extra="forbid")

    upstream: str = Field(min_length=1, max_length=2000)
    secret: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    header: str = Field(
        "authorization", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
    )
    api: GatewayApi | None = None  # the provider's error format; else inferred from `header`
    base_url_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)
    key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)
    requests_per_minute: int | None = Field(None, ge=1)
    token_budget: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _checked(self) -> GatewaySpec:
        self.header = self.header.lower()
        check_upstream(self.upstream)
        if self.api is None:
            self.api = _API_OF_HEADER.get(self.header, "openai")
        return self


def check_upstream(url: str) -> None:
    """An upstream is an absolute http(s) URL with a host, and no credentials, query or
    fragment (the gateway appends the agent's path to it)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ValueError(f"upstream {url!r:.200} is not a URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"upstream {url!r:.200}: give an http(s) URL with a host, for example "
            "https://api.anthropic.com"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            f"upstream {url!r:.200}: no user, password, query or fragment (the key comes from "
            "`secret`, sent in `header`)"
        )
    if any(seg in (".", "..") for seg in parts.path.split("/")):
        raise ValueError(f"upstream {url!r:.200}: no . or .. in the path")


class AgentSpec(BaseModel):
    """An agent as declared in TOML or JSON (contract §5)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    axon: str = Field(min_length=1, max_length=200)
    image: str | None = None
    command: list[str] | None = None
    protocol: Literal["axon", "acp", "claude_json"] = "axon"
    runtime: Literal["auto", "docker", "process"] = "auto"
    wake_on: list[Origin] = Field(default_factory=lambda: ["USER_EVENT", "EXTERNAL_EVENT"])  # type: ignore[arg-type]
    idle_pause_s: float = Field(30.0, ge=0)
    idle_hibernate_s: float = Field(600.0, ge=0)
    on_busy: Literal["queue", "interrupt", "merge"] = "queue"
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    memory: str = Field("512m", pattern=MEMORY_PATTERN)
    cpus: float = Field(1.0, gt=0)
    pids: int = Field(256, ge=16)
    network: Literal["none", "bridge"] = "none"
    mounts: list[str] = Field(default_factory=list)
    # ACP agents (contract §5.2): MCP servers handed over in session/new, and the session
    # mode set right after it (e.g. Claude's "default", which asks before acting).
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)
    mode: str | None = Field(None, min_length=1, max_length=200)
    workdir: str | None = None
    turn_timeout_s: float = Field(600.0, gt=0)
    # Agent Gateway (contract §5.3): providers reached with an opaque token, never the key
    gateways: dict[str, GatewaySpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _runnable(self) -> AgentSpec:
        if self.image is None and not self.command:
            raise ValueError("an agent needs an image (docker) or a command (local process)")
        if self.runtime == "docker" and self.image is None:
            raise ValueError("runtime docker needs an image")
        if self.runtime == "process" and not self.command:
            raise ValueError("runtime process needs a command")
        if self.mcp_servers:
            _, upstreams = split_mcp_servers(self.mcp_servers)
            if upstreams and self.protocol != "acp":
                raise ValueError(
                    f"mcp_servers {upstreams[0].name}: MCP servers through the gateway are "
                    'handed over in ACP\'s session/new: give protocol = "acp", or drop '
                    "allowed_tools"
                )
        self._gateway_names()
        return self

    def all_secrets(self) -> list[str]:
        """Every secret the engine reads for this agent: the sandbox's and its MCP upstreams'."""
        names = list(self.secrets)
        for upstream in mcp_upstreams(self.mcp_servers) if self.mcp_servers else []:
            names += [s for s in upstream.secrets if s not in names]
        return names

    def _gateway_names(self) -> None:
        names: dict[str, str] = {}
        for prefix, gateway in self.gateways.items():
            if not re.fullmatch(GATEWAY_PREFIX, prefix):
                raise ValueError(
                    f"gateways.{prefix:.60}: a gateway's name is the prefix of its env vars: "
                    "upper-case letters, digits and _, starting with a letter (e.g. ANTHROPIC)"
                )
            for var in gateway_env_names(prefix, gateway):
                if var in names or var in self.env or var in self.secrets:
                    raise ValueError(
                        f"gateways.{prefix}: the variable {var} is also set by "
                        f"{names.get(var, 'env or secrets')}; give base_url_env/key_env"
                    )
                names[var] = f"gateways.{prefix}"


def gateway_env_names(prefix: str, gateway: GatewaySpec) -> tuple[str, str]:
    """The variables an agent gets for gateway `prefix`: its base URL and its token."""
    return (gateway.base_url_env or f"{prefix}_BASE_URL", gateway.key_env or f"{prefix}_API_KEY")


AgentState = Literal["starting", "running", "paused", "hibernated", "failed", "stopped"]
"""Where an agent stands (contract §5): each change is an `agent.<state>` system event."""

TurnOutcome = Literal["done", "failed", "timeout", "exit", "stop"]
"""How a turn ended: done (turn.completed); failed (the agent reported an error), timeout,
exit (the agent went away) or stop (a stop command) end it with turn.failed."""


class AgentView(BaseModel):
    """An agent and where it stands."""

    axon_id: str
    name: str
    state: AgentState
    runtime: str
    cursor: int
    spec: AgentSpec
    detail: dict[str, Any] = Field(default_factory=dict)
