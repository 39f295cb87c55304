"""The prompt for an ACP agent's permission request: what the agent wants to run, and its
options as buttons (keys 1..n), answered through the engine like any client would
(`agents.permit`, source "tui").

Another client may answer first: the prompt says so in place (from the live feed, or the
engine's 409) instead of failing. `escape` leaves the request waiting; "cancel request"
answers it `cancelled`, as `axons permit AXON N cancelled` does. Tool input is shown as JSON
text, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from axons_tui.attention import Attention, PermissionOption, PermissionRequest
from axons_tui.widgets.acp_detail import pretty_json
from engine.backend import Backend
from engine.broker.permissions import DECISION
from engine.errors import AxonError, Conflict
from engine.models import Event

MAX_OPTIONS = 9  # one number key each


@dataclass(frozen=True, slots=True)
class Answered:
    """The prompt's result when it answered: the option chosen (None: cancelled) and the
    sequence of the `permission.decision` it published."""

    option_id: str | None
    decision_sequence: int


def option_key(index: int) -> str:
    return str(index + 1)


class PermissionPrompt(ModalScreen[Answered | None]):
    """One open request of one Axon; dismissed with `Answered`, or None when left."""

    CSS_PATH = "permission.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Leave it waiting", id="permission.leave"),
        Binding("c", "answer(None)", "Cancel the request", id="permission.cancel_request"),
        *[
            Binding(
                option_key(i), f"choose({i})", f"Option {i + 1}", id=f"permission.option_{i + 1}"
            )
            for i in range(MAX_OPTIONS)
        ],
    ]

    def __init__(
        self, backend: Backend, axon_id: str, request: PermissionRequest, *, more: int = 0
    ) -> None:
        super().__init__()
        self.backend = backend
        self.axon_id = axon_id
        self.request = request
        self.more = more  # other open requests of this Axon, after this one
        self._unwatch: Any = None
        self._answering = False

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(id="permission-box") as box:
            box.border_title = f"Permission #{request.sequence} · {request.agent} asks"
            box.border_subtitle = self._subtitle()
            yield Static(self._tool_text(), id="permission-tool")
            if request.raw_input is not None:
                with VerticalScroll(id="permission-input") as scroll:
                    scroll.border_title = "input"
                    yield Static(Text(pretty_json(request.raw_input)), id="permission-json")
            with Vertical(id="permission-options"):
                for i, option in enumerate(request.options[:MAX_OPTIONS]):
                    yield option_button(i, option)
                yield Button(
                    "c  Cancel the request",
                    id="permission-cancel",
                    classes="-cancel",
                    compact=True,
                )
            yield Static("", id="permission-status")

    def _subtitle(self) -> str:
        parts = ["escape: leave it waiting"]
        if self.more:
            parts.insert(0, f"{self.more} more waiting")
        return " · ".join(parts)

    def _tool_text(self) -> Text:
        request = self.request
        text = Text.assemble(("▸ ", "bold"), (request.title, "bold"))
        facts = [f for f in (request.kind, self._age()) if f]
        if facts:
            text.append("\n  " + " · ".join(facts), "dim")
        return text

    def _age(self) -> str:
        now = getattr(self.app, "now_ms", None)
        if not callable(now) or not self.request.timestamp_ms:
            return ""
        return "asked " + ago(int(now()) - self.request.timestamp_ms)

    # -- live: another client may answer first ------------------------------------------

    def on_mount(self) -> None:
        feed = getattr(self.app, "feed", None)
        if feed is not None:
            self._unwatch = feed.watch(self._seen, self.axon_id)
        self.query(Button).first().focus()

    def on_unmount(self) -> None:
        self._stop_watching()

    def _stop_watching(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _seen(self, events: Sequence[Event]) -> None:
        if self._answering:
            return  # our own decision: the answer to `permit` says how it went
        for e in events:
            answer = _decision(e, self.request.sequence)
            if answer is not None:
                self._answered_elsewhere(f"answered by {e.source} (#{e.sequence}): {answer}")

    # -- answering ----------------------------------------------------------------------

    def action_choose(self, index: int) -> None:
        if index < len(self.request.options):
            self.action_answer(self.request.options[index].option_id)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "permission-cancel":
            self.action_answer(None)
        elif event.button.id is not None:
            self.action_choose(int(event.button.id.rsplit("-", 1)[1]) - 1)

    def action_answer(self, option_id: str | None) -> None:
        if self._answering or self.query_one("#permission-options").disabled:
            return
        self._answering = True
        self._say("answering…")
        self._permit(option_id)

    def action_leave(self) -> None:
        self.dismiss(None)

    @work(exclusive=True, group="permit")
    async def _permit(self, option_id: str | None) -> None:
        try:
            result = await self.backend.agents.permit(
                self.axon_id, self.request.sequence, option_id, source="tui"
            )
        except Conflict as e:
            self._answering = False
            self._answered_elsewhere(f"already answered: {e.message}")
        except (AxonError, httpx.HTTPError, OSError) as e:
            self._answering = False
            self._say(f"not sent: {getattr(e, 'message', None) or e}", error=True)
        else:  # answered: the feed's copy of our own decision is not news
            self._stop_watching()
            self.dismiss(Answered(option_id, result.sequence))

    def _answered_elsewhere(self, why: str) -> None:
        """Someone else answered: say who, and leave only escape."""
        self.query_one("#permission-options").disabled = True
        self._say(f"{why} · escape closes", error=True)

    def _say(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#permission-status", Static)
        status.update(Text(text))
        status.set_class(error, "-error")


def option_button(index: int, option: PermissionOption) -> Button:
    """`1  Allow once`, coloured by the option's kind (allow or reject)."""
    return Button(
        f"{option_key(index)}  {option.name}",
        id=f"permission-option-{index + 1}",
        classes=f"-{(option.kind or 'other').split('_')[0]}",
        compact=True,
    )


def ago(ms: int) -> str:
    """ "12 s ago", "3 min ago", "2 h ago"."""
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _decision(e: Event, request_sequence: int) -> str | None:
    """What a `permission.decision` event answered to this request, or None when it is
    not one."""
    if e.event_type != DECISION:
        return None
    try:
        body = orjson.loads(e.payload)
        if int(body["request_sequence"]) != request_sequence:
            return None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if body.get("cancelled"):
        return f"cancelled ({body['reason']})" if body.get("reason") else "cancelled"
    return str(body.get("option_id"))


async def open_requests(backend: Backend, axon_id: str) -> list[PermissionRequest]:
    """The Axon's open permission requests, read from its recent history."""
    attention = Attention()
    await attention.prime(backend, [axon_id])
    return attention.open_requests(axon_id)


async def ask_permission(
    app: App[Any], axon_id: str, backend: Backend | None = None
) -> Answered | None:
    """Open the prompt for the Axon's oldest open request and wait for it; None when it was
    left (escape) or nothing waits (then a notice says so). Call it from a worker."""
    backend = backend or app.session.backend  # type: ignore[attr-defined]
    try:
        requests = await open_requests(backend, axon_id)
    except (AxonError, httpx.HTTPError, OSError) as e:
        app.notify(f"Cannot read the Axon's requests: {getattr(e, 'message', None) or e}")
        return None
    if not requests:
        app.notify("No permission request waits for an answer on this Axon.")
        return None
    prompt = PermissionPrompt(backend, axon_id, requests[0], more=len(requests) - 1)
    return await app.push_screen_wait(prompt)
