"""What can go wrong when the console asks its engine something, and how to say it.

An engine's refusal (`AxonError`) says what to do in its message; a lost attached engine is
not the widget's to fix: the status bar shows "disconnected, retrying" and the session
resumes, so a widget only says it could not ask, and asks again later.
"""

from __future__ import annotations

from axons_tui.session import CONNECTION_LOST
from engine.errors import AxonError

BACKEND_ERRORS: tuple[type[BaseException], ...] = (AxonError, *CONNECTION_LOST)


def describe(error: BaseException) -> str:
    """One line for a failed call: the engine's own message, or that it is unreachable."""
    if isinstance(error, AxonError):
        return error.message
    return f"the engine is unreachable ({error}); the console keeps retrying"
