"""What user SQL may spend: time, value size, result bytes and threads.

Any token that may read an Axon may run SQL on it, so one statement must not stall the engine
or eat its memory. `StoreLimits` holds the operator's limits (environment variables override
the defaults); a `Budget` carries them, with a deadline and a cancel flag, into the thread
that runs the statement, where SQLite's progress handler enforces them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

import apsw

from engine.errors import (
    AxonError,
    ErrorCode,
    InvalidInput,
    StatementCancelled,
    StatementTimeout,
)

_ENV_PREFIX = "AXONS_"


@dataclass(frozen=True)
class StoreLimits:
    """The limits of the data layer. Each field is configurable as AXONS_<FIELD> (upper case),
    for example `AXONS_SQL_TIMEOUT_S=10`."""

    sql_timeout_s: float = 5.0  # a statement (or a whole batch) running longer is interrupted
    sql_threads: int = 4  # threads for user SQL; publishes never wait behind these
    max_value_bytes: int = 16 << 20  # the largest string or blob a statement may make
    max_result_bytes: int = 32 << 20  # a query's rows beyond this are cut off (flagged)
    max_page_bytes: int = 8 << 20  # an events page stops here (always at least one event)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreLimits:
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for f in fields(cls):
            name = _ENV_PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or not raw.strip():
                continue
            kind = float if f.type == "float" else int
            try:
                value = kind(raw)
            except ValueError:
                value = 0
            if value <= 0:
                raise InvalidInput(
                    f"{name} must be a positive {'number' if kind is float else 'whole number'}, "
                    f"got {raw!r:.40}",
                    code=ErrorCode.INVALID_LIMIT,
                )
            values[f.name] = value
        return cls(**values)  # type: ignore[arg-type]


class Budget:
    """One statement's (or batch's) allowance. The deadline starts when the work starts, not
    while it waits in a queue; `cancel` (set when the caller gives up: a client hangs up)
    interrupts it at once."""

    _STEPS = 1000  # SQLite VM steps between checks: microseconds apart

    def __init__(self, limits: StoreLimits) -> None:
        self.limits = limits
        self.cancel = threading.Event()
        self._deadline: float | None = None

    @property
    def max_result_bytes(self) -> int:
        return self.limits.max_result_bytes

    def _should_stop(self) -> bool:
        return self.cancel.is_set() or (
            self._deadline is not None and time.monotonic() > self._deadline
        )

    @contextlib.contextmanager
    def applied(self, conn: apsw.Connection) -> Iterator[None]:
        """Enforce the budget on `conn` for the duration; its settings are restored after
        (pooled connections also serve the engine's own reads and writes)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.limits.sql_timeout_s
        length = conn.limit(apsw.SQLITE_LIMIT_LENGTH, self.limits.max_value_bytes)
        conn.set_progress_handler(self._should_stop, self._STEPS)
        try:
            yield
        except apsw.InterruptError:
            raise self.interruption() from None
        finally:
            conn.set_progress_handler(None)
            conn.limit(apsw.SQLITE_LIMIT_LENGTH, length)

    def interruption(self) -> AxonError:
        if self.cancel.is_set():
            return StatementCancelled("the statement was cancelled: its caller went away")
        return StatementTimeout(
            f"the statement ran longer than {self.limits.sql_timeout_s:g} s, the engine's limit "
            "(AXONS_SQL_TIMEOUT_S); add a LIMIT, a WHERE or an index, or split the work"
        )
