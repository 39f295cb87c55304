"""The replay viewer (`r`, `axons replay AXON [--at N]`): one Axon's history an event at a
time, with the state as of that event and what it changed; play it at a chosen speed, jump
by sequence or time, fork a new Axon from any point.

Nothing is re-run: events are read from the log, the state comes from the engine's change
history (`query(at_sequence=N)`, `changes(N)`), and playing is a timer moving the position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Footer, Input, Label, Static

from axons_tui.jump import HINT, parse_jump
from axons_tui.screens.axon_state import AxonStateScreen
from axons_tui.state_reader import Page, TableRef, changed_rowids
from axons_tui.widgets.changes_view import ChangesView
from axons_tui.widgets.event_card import EventCard
from axons_tui.widgets.event_text import clock
from axons_tui.widgets.state_table import StateTable
from axons_tui.widgets.status_bar import StatusBar
from axons_tui.widgets.timeline import MARKED_TYPES, Marks, Timeline
from engine.models import Event, RowChange

SPEEDS = (1, 2, 5, 10, 25, 100)  # times real time
MAX_GAP_MS = 2_000  # a longer silence plays as this long, before the speed applies
MIN_STEP_S = 0.05  # the fastest step: about 20 events a second
WINDOW = 200  # events read at once around the position


class ReplayScreen(AxonStateScreen):
    """Step, jump, play and fork through one Axon's history."""

    TITLE = "Replay"
    HELP = (
        "One Axon's history, an event at a time. Nothing is re-run: no agent, no model.\n\n"
        "left / right step one event, home / end go to the first / last. space plays at "
        "the chosen speed (+ / - change it; silences longer than 2 s are shortened).\n\n"
        "j: jump to an event (#123) or a time (12:04:05). Beside the event: what it changed "
        "(rows before and after) and the state as of it (t shows the next table).\n\n"
        "f forks a new Axon from this event and opens it. The timeline shows where you are "
        "(●), the agents' turns (▬) and wakes (▲): click it to jump."
    )
    ERROR_BOX = "#replay-error"
    CSS_PATH = "replay.tcss"
    AUTO_FOCUS = "#changes"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="replay.back"),
        Binding("left", "step(-1)", "Back one", id="replay.step_back", priority=True),
        Binding("right", "step(1)", "Forward one", id="replay.step_forward", priority=True),
        Binding("space", "play_pause", "Play/pause", id="replay.play", priority=True),
        Binding("plus", "speed(1)", "Faster", id="replay.faster", show=False),
        Binding("minus", "speed(-1)", "Slower", id="replay.slower", show=False),
        Binding("home", "go_to_end(False)", "First", id="replay.first", show=False, priority=True),
        Binding("end", "go_to_end(True)", "Last", id="replay.last", show=False, priority=True),
        Binding("j", "focus_jump", "Jump", id="replay.jump"),
        Binding("t", "next_table", "Next table", id="replay.next_table", show=False),
        Binding("f", "fork", "Fork here", id="replay.fork"),
    ]

    def __init__(self, axon_id: str, at_sequence: int | None = None) -> None:
        super().__init__(axon_id)
        self.name_shown = axon_id
        self.position = 0  # the sequence shown; 0 only while the Axon has no events
        self.last = 0
        self.wanted = at_sequence
        self.playing = False
        self.speed_index = 0
        self.table: TableRef | None = None
        self.changes: list[RowChange] = []
        self.shown = -1  # the event whose changes and state are on screen (for tests, too)
        self._events: dict[int, Event] = {}
        self._typed: list[tuple[int, str]] = []  # the turn and wake events, for the marks
        self._timer: Timer | None = None
        self._unwatch: Callable[[], None] = lambda: None

    @property
    def speed(self) -> int:
        return SPEEDS[self.speed_index]

    def now_ms(self) -> int:
        return self.console_app.now_ms()

    # -- layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="replay-top"):
            yield Label(id="replay-title")
            yield Label(id="replay-where")
        yield Timeline(id="timeline")
        with Horizontal(id="replay-jump-row"):
            yield Label("jump ", id="jump-label")
            yield Input(placeholder="#123 or 12:04:05", compact=True, id="jump", tooltip=HINT)
            yield Static(id="replay-error", markup=False)
        yield EventCard(id="event")
        with Horizontal(id="replay-body"):
            yield ChangesView(id="changes")
            yield StateTable(id="state")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#changes", ChangesView).border_title = "Changed"
        self.query_one("#state", StateTable).border_title = "State"
        self._show_error(None)
        self._unwatch = self.console_app.feed.watch(self._arrived, self.axon_id)
        self._start()

    def on_unmount(self) -> None:
        self._unwatch()

    @work(exclusive=True, group="replay-start")
    async def _start(self) -> None:
        """The Axon's name and length, the first event to show, then the timeline's marks
        (a scan of the whole log: the event is on screen before it ends)."""
        axon = await self._attempt(self.backend.get_axon(self.axon_id))
        if axon is not None:
            self.name_shown = axon.name or axon.id
        last = await self._attempt(self.backend.last_sequence(self.axon_id))
        self.last = max(self.last, last or 0)
        self.go(self.wanted if self.wanted is not None else 1)
        marks = await self._attempt(self.reader.typed_events(MARKED_TYPES))
        if marks is not None:
            known = {sequence for sequence, _ in self._typed}
            self._typed = sorted([*(m for m in marks if m[0] not in known), *self._typed])
            self._refresh_marks()

    # -- moving

    def go(self, sequence: int) -> None:
        """Show event `sequence` (kept within the history)."""
        self.position = max(1, min(sequence, self.last)) if self.last else 0
        cached = self._events.get(self.position)
        if cached is not None:
            self._show_event(cached)
        self._refresh_bar()
        self._load(self.position)

    def action_step(self, delta: int) -> None:
        self._pause()
        self.go(self.position + delta)

    def action_go_to_end(self, last: bool) -> None:
        self._pause()
        self.go(self.last if last else 1)

    def action_play_pause(self) -> None:
        if self.playing:
            self._pause()
        elif self.last:
            self.playing = True
            if self.position >= self.last:
                self.go(1)  # from the start again, as a player does
            self._schedule_step()
        self._refresh_bar()

    def action_speed(self, delta: int) -> None:
        self.speed_index = max(0, min(len(SPEEDS) - 1, self.speed_index + delta))
        if self.playing:
            self._schedule_step()
        self._refresh_bar()

    def _pause(self) -> None:
        self.playing = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._refresh_bar()

    def _schedule_step(self) -> None:
        """The next step after the time that passed between this event and the next one
        (silences shortened), divided by the speed."""
        if self._timer is not None:
            self._timer.stop()
        here, after = self._events.get(self.position), self._events.get(self.position + 1)
        gap_ms = after.timestamp_ms - here.timestamp_ms if here and after else 0
        delay = max(MIN_STEP_S, min(max(gap_ms, 0), MAX_GAP_MS) / 1000 / self.speed)
        self._timer = self.set_timer(delay, self._play_step)

    def _play_step(self) -> None:
        if not self.playing:
            return
        if self.position >= self.last:
            self._pause()
            return
        self.go(self.position + 1)
        self._schedule_step()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Arrows, home, end and space belong to the jump field while it is typed in."""
        moves = ("step", "play_pause", "go_to_end")
        return not (action in moves and isinstance(self.focused, Input))

    # -- the other keys

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one("#changes", ChangesView).focus()
            return
        self._pause()
        self.dismiss()

    def action_focus_jump(self) -> None:
        """A fresh jump: the field empties, ready for a sequence or a time."""
        self._pause()
        field = self.query_one("#jump", Input)
        field.clear()
        field.focus()

    def action_next_table(self) -> None:
        self._next_table()

    @on(Timeline.Picked)
    def _picked(self, event: Timeline.Picked) -> None:
        self._pause()
        self.go(event.sequence)

    @on(Input.Submitted, "#jump")
    def _jump_submitted(self, event: Input.Submitted) -> None:
        here = self._events.get(self.position)
        try:
            jump = parse_jump(event.value, here.timestamp_ms if here else self.now_ms())
        except ValueError as e:
            self._show_error(str(e))
            return
        if jump.sequence is not None:
            if not 1 <= jump.sequence <= self.last:
                self._show_error(f"no event #{jump.sequence}: this Axon has #1 to #{self.last}")
                return
            self._jumped(jump.sequence)
        elif jump.at_ms is not None:
            self._jump_to_time(jump.at_ms)

    def _jumped(self, sequence: int) -> None:
        self._show_error(None)
        self.query_one("#jump", Input).clear()
        self.query_one("#changes", ChangesView).focus()
        self.go(sequence)

    @work(exclusive=True, group="replay-jump")
    async def _jump_to_time(self, at_ms: int) -> None:
        found = await self._attempt(
            self.backend.query(
                self.axon_id,
                "SELECT min(sequence) FROM axon_events WHERE timestamp_ms >= ?",
                [at_ms],
            )
        )
        if found is None:
            return
        sequence = found.rows[0][0]
        if sequence is None:
            self._show_error(f"no event at or after {clock(at_ms, None)}: #{self.last} is the last")
            return
        self._jumped(int(sequence))

    @work(exclusive=True, group="replay-fork")
    async def action_fork(self) -> None:
        """A new Axon holding events 1..N and the state as of N; it opens at once."""
        self._pause()
        if self.position < 1:
            self._show_error("nothing to fork: this Axon has no events yet")
            return
        at = self.position
        view = await self._attempt(self.backend.fork(self.axon_id, at))
        if view is None:
            return
        self.notify(f"forked {self.name_shown} at #{at} as {view.name or view.id}", markup=False)
        self.console_app.open_axon(view.id)

    def get_commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        yield "Replay: play / pause", "Play the history at the chosen speed", self.action_play_pause
        yield "Replay: faster", f"Speeds: {', '.join(f'{s}x' for s in SPEEDS)}", self._faster
        yield "Replay: slower", "Play more slowly", self._slower
        yield "Replay: first event", "Go to event #1", self._first
        yield "Replay: last event", "Go to the latest event", self._last
        yield "Replay: jump", "To an event (#123) or a time (12:04:05)", self.action_focus_jump
        yield "Replay: next table", "Show another table of the state", self.action_next_table
        yield "Replay: fork from here", "A new Axon with events up to this one", self.action_fork

    def _faster(self) -> None:
        self.action_speed(1)

    def _slower(self) -> None:
        self.action_speed(-1)

    def _first(self) -> None:
        self.action_go_to_end(False)

    def _last(self) -> None:
        self.action_go_to_end(True)

    # -- live: the history grows while you watch

    def _arrived(self, events: Sequence[Event]) -> None:
        for event in events:
            if len(self._events) < 4 * WINDOW:
                self._events[event.sequence] = event
        marked = [(e.sequence, e.event_type) for e in events if e.event_type in MARKED_TYPES]
        self._typed.extend(marked)
        self.last = max(self.last, events[-1].sequence)
        if self.position == 0:
            self.go(1)
        if marked:
            self._refresh_marks()
        self._refresh_bar()

    # -- reading and showing (workers: the newest position wins)

    @work(exclusive=True, group="replay-position")
    async def _load(self, sequence: int) -> None:
        """The event, what it changed and the state as of it."""
        if sequence < 1:
            self.query_one(EventCard).show(None, self.now_ms(), "this Axon has no events yet")
            return
        event = await self._attempt(self._event(sequence))
        if event is None:
            return
        self._show_event(event)
        self._refresh_bar()
        changes = await self._attempt(self.reader.changes(sequence))
        if changes is None:
            return
        self.changes = changes
        self.query_one(ChangesView).show(sequence, changes)
        self._show_error(None)  # what went wrong before is no longer what is shown
        await self._show_state(sequence)

    async def _event(self, sequence: int) -> Event:
        """From the window read around the position; a new window when it is not there."""
        if sequence not in self._events:
            after = max(0, sequence - WINDOW // 4 - 1)
            window = await self.backend.read_events(self.axon_id, after=after, limit=WINDOW)
            self._events = {e.sequence: e for e in window}
        return self._events[sequence]

    async def _show_state(self, sequence: int, table: TableRef | None = None) -> None:
        """The state as of the event: the table asked for, else the one the event changed,
        else the one shown before, opened where the change is. Only when none of them
        existed yet at this event is the list of tables read (a past state is rebuilt for
        each query, so a step costs one query where it can)."""
        state = self.query_one("#state", StateTable)
        choice = table or _changed_table(self.changes) or self.table
        page = None
        if choice is not None:  # None when it did not exist as of this event
            page = await self._attempt(self._state_page(choice, sequence), quiet=True)
        if page is None:
            tables = await self._attempt(self.reader.tables(sequence))
            if tables is None:
                return
            own = [t for t in tables if not t.is_log]
            if not own:
                state.clear(columns=True)
                state.border_title = f"as of #{sequence}: no tables yet"
                self.shown = sequence
                return
            page = await self._attempt(self._state_page(own[0], sequence))
            if page is None:
                return
        self.table = page.table
        state.show(page.result, changed_rowids(self.changes, page.table, sequence))
        state.border_title = f"as of #{sequence} · {page.brief()}"
        state.border_subtitle = "t: next table"
        self.shown = sequence

    async def _state_page(self, table: TableRef, sequence: int) -> Page:
        """The table as of the event, from its first changed row (else from the top)."""
        marked = changed_rowids(self.changes, table, sequence)
        if marked:
            return await self.reader.page_from(table, sequence, min(marked))
        return await self.reader.first_page(table, sequence)

    @work(exclusive=True, group="replay-position")
    async def _next_table(self) -> None:
        tables = await self._attempt(self.reader.tables(self.position))
        own = [t for t in tables or [] if not t.is_log]
        if not own or self.position < 1:
            return
        names = [t.name for t in own]
        at = names.index(self.table.name) if self.table and self.table.name in names else -1
        await self._show_state(self.position, own[(at + 1) % len(own)])

    def _show_event(self, event: Event) -> None:
        self.query_one(EventCard).show(event, self.now_ms())

    def _refresh_marks(self) -> None:
        """The turns and wakes on the timeline (only when new ones are known)."""
        self.query_one(Timeline).marks = Marks.from_events(self._typed, self.last)

    def _refresh_bar(self) -> None:
        """Where you are: the timeline's marker and the line above it."""
        timeline = self.query_one(Timeline)
        timeline.total = self.last
        timeline.position = self.position
        self.query_one("#replay-title", Label).update(Text(f"Replay · {self.name_shown}"))
        mode = f"▶ {self.speed}x" if self.playing else f"⏸ {self.speed}x"
        here = self._events.get(self.position)
        when = f" · {clock(here.timestamp_ms, self.now_ms())}" if here else ""
        self.query_one("#replay-where", Label).update(
            Text(f"#{self.position:,} of {self.last:,}{when} · {mode}")
        )


def _changed_table(changes: list[RowChange]) -> TableRef | None:
    """The first table the event wrote rows into (and kept them)."""
    for change in changes:
        if change.op != "delete":
            return TableRef(change.table)
    return None
