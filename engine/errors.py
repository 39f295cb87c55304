"""Errors every surface reports the same way: a stable code, a message that says what to do,
and the HTTP status the API maps it to."""

from __future__ import annotations


class AxonError(Exception):
    """A refusal the caller can act on. Never raised for engine bugs."""

    status: int = 400
    code: str = "invalid_request"

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
    code = "invalid_request"


class Unauthorized(AxonError):
    status = 401
    code = "unauthorized"


class Forbidden(AxonError):
    status = 403
    code = "forbidden"


class NotFound(AxonError):
    status = 404
    code = "not_found"


class Conflict(AxonError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AxonError):
    status = 413
    code = "payload_too_large"


class SqlError(AxonError):
    status = 400
    code = "sql_error"


class ReadOnlyViolation(AxonError):
    status = 403
    code = "read_only"


class Unavailable(AxonError):
    status = 503
    code = "unavailable"
