"""What the state inspector and the replay viewer share: one Axon, read through the public
API, with the engine's refusals shown in place instead of raised."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static

from axons_tui.session import CONNECTION_LOST
from axons_tui.state_reader import StateReader
from engine.backend import Backend
from engine.errors import AxonError

if TYPE_CHECKING:
    from axons_tui.app import AxonsApp

T = TypeVar("T")


class AxonStateScreen(Screen[None]):
    """A screen on one Axon's state. `ERROR_BOX` names the Static that shows refusals."""

    ERROR_BOX: ClassVar[str] = "#error"

    def __init__(self, axon_id: str) -> None:
        super().__init__()
        self.axon_id = axon_id
        self.error: str | None = None  # what the error box says (None: nothing is wrong)

    @property
    def console_app(self) -> AxonsApp:
        return cast("AxonsApp", self.app)

    @property
    def backend(self) -> Backend:
        return self.console_app.session.backend

    @property
    def reader(self) -> StateReader:
        return StateReader(self.backend, self.axon_id)

    async def _attempt(self, pending: Awaitable[T], *, quiet: bool = False) -> T | None:
        """The answer, or None with the engine's refusal shown in place (never raised);
        `quiet` when a refusal is an answer too (a table that did not exist yet)."""
        try:
            return await pending
        except AxonError as e:
            if not quiet:
                self._show_error(e.message)
        except CONNECTION_LOST as e:
            self._show_error(f"the engine did not answer ({e}); try again when it is back")
        return None

    def _show_error(self, message: str | None) -> None:
        self.error = message
        box = self.query_one(self.ERROR_BOX, Static)
        box.update(Text(message or ""))
        box.display = message is not None
