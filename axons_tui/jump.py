"""Where the replay viewer's jump field points: `#123` (or `123`) is an event, `12:04:05`
(or `12:04`) a time on the day of the event shown, `2026-05-28 12:04:05` a moment.

A time is turned into the first event committed at or after it by the caller, which can
ask the engine; this module only reads what was typed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

HINT = "type #123 (an event), 12:04:05 (a time that day) or 2026-05-28 12:04:05"


@dataclass(frozen=True)
class Jump:
    """A sequence, or a moment in ms since the epoch (exactly one of them is set)."""

    sequence: int | None = None
    at_ms: int | None = None


def parse_jump(text: str, day_of_ms: int) -> Jump:
    """Read the jump field. `day_of_ms` is the commit time of the event shown: a bare time
    means that time on the same (local) day. ValueError says what to type instead."""
    text = text.strip()
    number = text.removeprefix("#")
    if number.isdigit():
        return Jump(sequence=int(number))
    try:
        if ":" in text and "-" not in text:
            clock = dt.time.fromisoformat(text)
            day = dt.datetime.fromtimestamp(day_of_ms / 1000).date()
            moment = dt.datetime.combine(day, clock)
        else:
            moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot jump to {text!r:.40}: {HINT}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a local time, as the console shows times
    return Jump(at_ms=int(moment.timestamp() * 1000))
