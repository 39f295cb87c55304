"""The operator's policy for remote callers, read from `HOME/config.toml` when the engine starts.

Over the unix socket the operator acts as themself and may declare any agent. Over TCP a
token is only as trusted as its holder, so an agent spec declared there is held to this
policy: images from an allow-list, no host paths unless allow-listed, secrets only from an
allow-list, gateway keys only to the upstreams the operator binds them to, no network unless
enabled, resources under the engine's caps. A token limited to some Axons declares no mounts,
secrets, gateways or network at all. docs/security.md describes it.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.errors import ErrorCode, Forbidden, InvalidInput
from engine.models import MIN_MEMORY, AgentSpec, mcp_upstreams, memory_bytes

ENGINE_VOLUME_PREFIX = "axons-"  # the engine's own per-agent volumes: never from a spec
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AgentPolicy(BaseModel):
    """`[agents]` of config.toml: what an agent spec declared over TCP may ask for."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(default_factory=lambda: ["axons/*"])
    mounts: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    # Agent Gateway: engine env var -> the upstreams its key may be sent to (URL prefixes)
    gateway_keys: dict[str, list[str]] = Field(default_factory=dict)
    mcp_urls: list[str] = Field(default_factory=list)  # MCP gateway upstreams (URL prefixes)
    bridge_network: bool = False
    max_memory: str = "1g"
    max_cpus: float = Field(2.0, gt=0)
    max_pids: int = Field(512, ge=16)

    @field_validator("max_memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        memory_bytes(value)
        return value

    @field_validator("mounts")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        relative = [p for p in paths if not p.startswith("/")]
        if relative:
            raise ValueError(f"mounts are absolute host paths, got {relative}")
        return paths


class WebhookPolicy(BaseModel):
    """`[webhooks]` of config.toml."""

    model_config = ConfigDict(extra="forbid")

    replay_window_s: float = Field(600.0, ge=0)


class OperatorConfig(BaseModel):
    """The whole of config.toml; every table and key is optional."""

    model_config = ConfigDict(extra="forbid")

    agents: AgentPolicy = Field(default_factory=AgentPolicy)
    webhooks: WebhookPolicy = Field(default_factory=WebhookPolicy)


def load_config(path: Path) -> OperatorConfig:
    """`HOME/config.toml` (`Home.config`), or the defaults when there is none. A broken file
    stops the engine with a message naming the problem: a policy silently ignored would be
    worse."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return OperatorConfig()
    try:
        return OperatorConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"{path}: not valid TOML ({e})", code=ErrorCode.INVALID_CONFIG) from None
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in p['loc'])}: {p['msg']}" for p in e.errors()[:5]
        )
        raise InvalidInput(f"{path}: {problems}", code=ErrorCode.INVALID_CONFIG) from None


def check_remote_spec(spec: AgentSpec, policy: AgentPolicy, *, limited: bool) -> None:
    """Refuse (403) what a spec declared over TCP may not ask for; `limited`: the token is
    limited to some Axons, so it may not reach beyond its sandbox at all."""
    _check_runs_in_docker(spec, policy)
    _check_mounts(spec.mounts, policy, limited=limited)
    _check_secrets(spec.all_secrets(), policy, limited=limited)
    _check_gateways(spec, policy, limited=limited)
    _check_mcp_upstreams(spec, policy, limited=limited)
    _check_network(spec.network, policy, limited=limited)
    _check_resources(spec, policy)


def _refuse(message: str, code: ErrorCode) -> Forbidden:
    return Forbidden(message, code=code)


def _check_runs_in_docker(spec: AgentSpec, policy: AgentPolicy) -> None:
    if spec.image is None or spec.runtime == "process":
        # An unsandboxed process on the host is more than any token should grant.
        raise _refuse(
            "agents that run as local processes can only be declared on the engine's own "
            "socket (the axons CLI on this machine); over TCP, give the agent an image",
            ErrorCode.FORBIDDEN,  # as before this policy existed
        )
    if not any(fnmatch.fnmatchcase(spec.image, pattern) for pattern in policy.images):
        raise _refuse(
            f"image {spec.image!r:.100} is not allowed over TCP; allowed: "
            f"{', '.join(policy.images) or 'none'} (the operator lists images in "
            "[agents] images of the home's config.toml)",
            ErrorCode.IMAGE_NOT_ALLOWED,
        )


def _check_mounts(mounts: list[str], policy: AgentPolicy, *, limited: bool) -> None:
    if mounts and limited:
        raise _refuse(
            "a token limited to some Axons cannot declare mounts", ErrorCode.MOUNT_NOT_ALLOWED
        )
    for mount in mounts:
        source = mount.split(":", 1)[0]
        if source.startswith("/"):
            if not _inside_allowed(source, policy.mounts):
                raise _refuse(
                    f"mount {mount!r:.100}: host paths are not allowed over TCP (only named "
                    "volumes, or paths the operator lists in [agents] mounts of config.toml)",
                    ErrorCode.MOUNT_NOT_ALLOWED,
                )
        elif not _VOLUME_NAME.match(source) or source.startswith(ENGINE_VOLUME_PREFIX):
            raise _refuse(
                f"mount {mount!r:.100}: over TCP a mount is a named volume (letters, digits, "
                f"_ . -, not starting with {ENGINE_VOLUME_PREFIX!r}) or an allowed host path",
                ErrorCode.MOUNT_NOT_ALLOWED,
            )


def _inside_allowed(source: str, allowed: list[str]) -> bool:
    """Whether the host path, symlinks resolved, lies inside an allow-listed path."""
    if ".." in PurePosixPath(source).parts:
        return False
    real = Path(source).resolve()
    return any(real.is_relative_to(Path(root).resolve()) for root in allowed)


def _check_secrets(secrets: list[str], policy: AgentPolicy, *, limited: bool) -> None:
    if secrets and limited:
        raise _refuse(
            "a token limited to some Axons cannot declare secrets", ErrorCode.SECRET_NOT_ALLOWED
        )
    refused = [s for s in secrets if s not in policy.secrets]
    if refused:  # said without looking at the environment: nothing about what exists leaks
        raise _refuse(
            f"secrets not allowed over TCP: {', '.join(refused)[:200]} (the operator lists "
            "them in [agents] secrets of the home's config.toml)",
            ErrorCode.SECRET_NOT_ALLOWED,
        )


def _check_mcp_upstreams(spec: AgentSpec, policy: AgentPolicy, *, limited: bool) -> None:
    """MCP gateway upstreams are reached by the engine itself, from the host: over TCP only
    HTTP ones the operator lists, and none for a token limited to some Axons."""
    for upstream in mcp_upstreams(spec.mcp_servers) if spec.mcp_servers else []:
        if limited:
            raise _refuse(
                "a token limited to some Axons cannot declare MCP servers through the gateway",
                ErrorCode.MCP_NOT_ALLOWED,
            )
        if upstream.url is None:
            raise _refuse(
                f"mcp_servers {upstream.name}: a stdio MCP server behind the gateway runs a "
                "command on the engine's host, so it can only be declared on the engine's own "
                "socket; over TCP, give an HTTP url the operator allows",
                ErrorCode.MCP_NOT_ALLOWED,
            )
        if not any(_under(upstream.url, root) for root in policy.mcp_urls):
            raise _refuse(
                f"mcp_servers {upstream.name}: url {upstream.url!r:.100} is not allowed over TCP "
                "(the operator lists the URLs MCP servers may live under in [agents] mcp_urls "
                'of config.toml, e.g. ["https://tickets.internal/mcp"])',
                ErrorCode.MCP_NOT_ALLOWED,
            )


def _check_gateways(spec: AgentSpec, policy: AgentPolicy, *, limited: bool) -> None:
    """A gateway sends an engine key to its upstream: over TCP only a key the operator binds
    to that upstream (`[agents.gateway_keys]`), so a token cannot send a key elsewhere."""
    if spec.gateways and limited:
        raise _refuse(
            "a token limited to some Axons cannot declare gateways", ErrorCode.SECRET_NOT_ALLOWED
        )
    for prefix, gateway in spec.gateways.items():
        allowed = policy.gateway_keys.get(gateway.secret, [])
        if not any(_under(gateway.upstream, root) for root in allowed):
            raise _refuse(
                f"gateways.{prefix}: the key {gateway.secret} may not be sent to "
                f"{gateway.upstream!r:.200} over TCP (the operator binds keys to upstreams in "
                "[agents.gateway_keys] of the home's config.toml, e.g. "
                'ANTHROPIC_API_KEY = ["https://api.anthropic.com"])',
                ErrorCode.SECRET_NOT_ALLOWED,
            )


def _under(url: str, root: str) -> bool:
    root = root.rstrip("/")
    return url.rstrip("/") == root or url.startswith(root + "/")


def _check_network(network: str, policy: AgentPolicy, *, limited: bool) -> None:
    if network == "none":
        return
    if limited or not policy.bridge_network:
        raise _refuse(
            f'network {network!r} is not allowed over TCP; use "none" (the operator enables '
            "bridge with [agents] bridge_network = true in config.toml, for unlimited tokens)",
            ErrorCode.NETWORK_NOT_ALLOWED,
        )


def _check_resources(spec: AgentSpec, policy: AgentPolicy) -> None:
    over = []
    memory = memory_bytes(spec.memory)
    if memory < MIN_MEMORY:  # Docker reads 0 as "no limit"
        over.append(f"memory {spec.memory} < 6m")
    if memory > memory_bytes(policy.max_memory):
        over.append(f"memory {spec.memory} > {policy.max_memory}")
    if spec.cpus > policy.max_cpus:
        over.append(f"cpus {spec.cpus:g} > {policy.max_cpus:g}")
    if spec.pids > policy.max_pids:
        over.append(f"pids {spec.pids} > {policy.max_pids}")
    if over:
        raise _refuse(
            f"outside the engine's limits: {'; '.join(over)} (the operator sets them in "
            "[agents] of config.toml)",
            ErrorCode.OUTSIDE_LIMITS,
        )
