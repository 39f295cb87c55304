"""Where a person writes to an Axon: `enter` publishes the text as a `USER_EVENT` `message`
from source `tui`; a refusal is shown in place and the text stays, so nothing typed is lost."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

from axons_tui.failures import BACKEND_ERRORS, describe
from engine.models import Draft

if TYPE_CHECKING:
    from axons_tui.app import AxonsApp


class Composer(Input):
    """One line of text for `axon_id`; `escape` leaves it (the screen decides where to)."""

    DEFAULT_CSS = """
    Composer {
        border: tall $panel-lighten-1;
        &:focus { border: tall $primary; }
        &.-error { border: tall $error; }
        border-subtitle-color: $error;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Leave the composer", id="composer.leave"),
    ]

    class Sent(Message):
        """A message was published; it has this sequence."""

        def __init__(self, sequence: int) -> None:
            super().__init__()
            self.sequence = sequence

    class Left(Message):
        """The user left the composer (escape)."""

    def __init__(self, axon_id: str, *, id: str | None = None) -> None:
        super().__init__(placeholder="Write to this Axon (i), enter sends, escape leaves", id=id)
        self.axon_id = axon_id

    async def action_submit(self) -> None:
        text = self.value.strip()
        if not text:
            self.show_error("Nothing to send: type a message first.")
            return
        self._publish(text)

    @work(group="composer", exclusive=True)
    async def _publish(self, text: str) -> None:
        backend = cast("AxonsApp", self.app).session.backend
        try:
            result = await backend.publish(self.axon_id, Draft.message(text, source="tui"))
        except BACKEND_ERRORS as e:
            self.show_error(f"Not sent: {describe(e)}")
            return
        if self.value.strip() == text:
            self.value = ""
        self.show_error(None)
        self.post_message(self.Sent(result.sequence))

    def show_error(self, error: str | None) -> None:
        self.set_class(error is not None, "-error")
        self.border_subtitle = Text(error) if error else None

    def action_leave(self) -> None:
        self.show_error(None)
        self.post_message(self.Left())
