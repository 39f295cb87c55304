"""`q` with an embedded engine whose agents run: quitting stops them, so ask first."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[bool]):
    CSS_PATH = "quit.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Quit", id="quit.yes"),
        Binding("n,escape", "answer(False)", "Stay", id="quit.no"),
    ]

    def __init__(self, running: list[str]) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        names = ", ".join(self.running[:5]) + (" …" if len(self.running) > 5 else "")
        with Vertical(id="quit-box") as box:
            box.border_title = "Quit?"
            yield Static(
                Text(
                    f"This console runs the engine, and {len(self.running)} agent(s) with it "
                    f"({names}). Quitting stops them; they resume when an engine opens this "
                    "home again."
                )
            )
            with Horizontal(id="quit-buttons"):
                yield Button("Quit (y)", id="yes", variant="error")
                yield Button("Stay (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, quit: bool) -> None:
        self.dismiss(quit)
