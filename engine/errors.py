"""Errors every surface reports the same way: a stable code, a message that says what to do,
and the HTTP status the API maps it to.

Every error class and every code lives here. A code is part of the contract (scripts match on
it), so codes are members of `ErrorCode`, never loose strings; a test checks the code base for
strays. `error_from` rebuilds, on the client side of the HTTP API, the same class the engine
raised, so `except NotFound` works the same in-process and remotely.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every code an `AxonError` may carry (the `error.code` of an HTTP error body)."""

    AGENT_INIT_FAILED = "agent_init_failed"
    AGENT_MISSING = "agent_missing"
    AGENT_NOT_FOUND = "agent_not_found"
    AXON_DELETED = "axon_deleted"
    AXON_NOT_FOUND = "axon_not_found"
    BUSY = "busy"
    CANNOT_ATTACH = "cannot_attach"
    CLOSING = "closing"
    CONFLICT = "conflict"
    DISK_FULL = "disk_full"
    DOCKER_ERROR = "docker_error"
    DOCKER_UNAVAILABLE = "docker_unavailable"
    EMPTY_BATCH = "empty_batch"
    FORBIDDEN = "forbidden"
    HEADERS_TOO_LARGE = "headers_too_large"
    HOME_LOCKED = "home_locked"
    HTTP_ERROR = "http_error"
    ID_REQUIRED = "id_required"
    IMAGE_BUILD_FAILED = "image_build_failed"
    IMAGE_NOT_ALLOWED = "image_not_allowed"
    INVALID_ACTION = "invalid_action"
    INVALID_AGENTS = "invalid_agents"
    INVALID_BATCH = "invalid_batch"
    INVALID_CONFIG = "invalid_config"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_EXPORT = "invalid_export"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_LIMIT = "invalid_limit"
    INVALID_LISTEN = "invalid_listen"
    INVALID_METADATA = "invalid_metadata"
    INVALID_MOUNT = "invalid_mount"
    INVALID_NAME = "invalid_name"
    INVALID_OBJECT = "invalid_object"
    INVALID_ORIGIN = "invalid_origin"
    INVALID_PARAMS = "invalid_params"
    INVALID_PAYLOAD = "invalid_payload"
    INVALID_REQUEST = "invalid_request"
    INVALID_SCENARIO = "invalid_scenario"
    INVALID_SCOPE = "invalid_scope"
    INVALID_SEQUENCE = "invalid_sequence"
    INVALID_SERVER = "invalid_server"
    INVALID_SQL = "invalid_sql"
    INVALID_TEXT = "invalid_text"
    LIMITED_TOKEN = "limited_token"
    MALFORMED_JSON = "malformed_json"
    MCP_NOT_ALLOWED = "mcp_not_allowed"
    MISSING_SECRET = "missing_secret"
    MOUNT_NOT_ALLOWED = "mount_not_allowed"
    MULTIPLE_STATEMENTS = "multiple_statements"
    NAME_TAKEN = "name_taken"
    NETWORK_NOT_ALLOWED = "network_not_allowed"
    NOT_A_PERMISSION_REQUEST = "not_a_permission_request"
    NOT_FOUND = "not_found"
    NOT_RUNNING = "not_running"
    NOT_STARTED = "not_started"
    NO_COMMAND = "no_command"
    OUTSIDE_LIMITS = "outside_limits"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PERMISSION_NOT_PENDING = "permission_not_pending"
    READ_ONLY = "read_only"
    READ_ONLY_HISTORY = "read_only_history"
    REQUEST_TIMEOUT = "request_timeout"
    RESERVED_IDEMPOTENCY_KEY = "reserved_idempotency_key"
    RESERVED_NAME = "reserved_name"
    RESERVED_SOURCE = "reserved_source"
    SECRET_NOT_ALLOWED = "secret_not_allowed"
    SHUTTING_DOWN = "shutting_down"
    SLOW_CONSUMER = "slow_consumer"
    SQL_ERROR = "sql_error"
    STATEMENT_CANCELLED = "statement_cancelled"
    STATEMENT_TIMEOUT = "statement_timeout"
    STORAGE_ERROR = "storage_error"
    STREAM_ENDED = "stream_ended"
    TOKEN_EXISTS = "token_exists"
    TOKEN_NOT_FOUND = "token_not_found"
    TOKEN_REVOKED = "token_revoked"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"
    UNKNOWN_OPTION = "unknown_option"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    USAGE = "usage"
    WEBHOOK_REPLAYED = "webhook_replayed"


class AxonError(Exception):
    """A refusal the caller can act on. Never raised for engine bugs."""

    status: int = 400
    code: str = ErrorCode.INVALID_REQUEST

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class InvalidInput(AxonError):
    status = 400
    code = ErrorCode.INVALID_REQUEST


class Unauthorized(AxonError):
    status = 401
    code = ErrorCode.UNAUTHORIZED


class Forbidden(AxonError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(AxonError):
    status = 404
    code = ErrorCode.NOT_FOUND


class Conflict(AxonError):
    status = 409
    code = ErrorCode.CONFLICT


class PayloadTooLarge(AxonError):
    status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class SqlError(AxonError):
    status = 400
    code = ErrorCode.SQL_ERROR


class ReadOnlyViolation(AxonError):
    status = 403
    code = ErrorCode.READ_ONLY


class StatementTimeout(AxonError):
    """User SQL ran past the engine's deadline and was interrupted (rolled back if it wrote)."""

    status = 408
    code = ErrorCode.STATEMENT_TIMEOUT


class StatementCancelled(StatementTimeout):
    """User SQL was interrupted because its caller went away or gave up."""

    code = ErrorCode.STATEMENT_CANCELLED


class Unavailable(AxonError):
    status = 503
    code = ErrorCode.UNAVAILABLE


class BatchFailed(SqlError):
    """A batch statement failed; nothing of the batch was kept."""

    def __init__(self, index: int, cause: Exception, completed: list[Any]) -> None:
        message = getattr(cause, "message", str(cause))
        super().__init__(f"statement {index + 1} failed, batch rolled back: {message}")
        self.index = index
        self.cause = cause
        self.completed = completed
        self.status = getattr(cause, "status", 400)


class ImageBuildError(Unavailable):
    code = ErrorCode.IMAGE_BUILD_FAILED


class ProtocolError(Exception):
    """The agent broke its protocol (or went away mid-call). Internal to the broker and the
    supervisor: it becomes an `agent.failed` event, never an API error."""


# The class an error body names: by its code where a class owns that code, else by status.
_BY_CODE: dict[str, type[AxonError]] = {
    cls.code: cls
    for cls in (
        SqlError,
        ReadOnlyViolation,
        ImageBuildError,
        PayloadTooLarge,
        Unauthorized,
        StatementTimeout,
        StatementCancelled,
    )
}
_BY_STATUS: dict[int, type[AxonError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: StatementTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,  # a body the API schema refuses: the same mistake as a 400
    503: Unavailable,
}


def error_from(status: int, code: str, message: str) -> AxonError:
    """The error the engine raised, rebuilt from an HTTP error body: same class, code and
    status, so callers catch the same exceptions in-process and over HTTP."""
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status, AxonError)
    return cls(message, code=code, status=status)
