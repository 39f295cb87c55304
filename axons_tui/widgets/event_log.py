"""An Axon's events as a scrolling log that opens instantly at any length.

A line-API `ScrollView`: one row per sequence (sequences are gapless from 1), rendered only
when visible. Events are paged from the Axon on demand (`read_events`) in workers, into a
bounded cache; a row not loaded yet is a dim placeholder until its page arrives. New events
come from the app's feed. Follow-tail is on by default: scrolling up pauses it (the log says
so and counts what arrived since) and `end`, or scrolling back to the bottom, resumes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from axons_tui.failures import BACKEND_ERRORS, describe
from axons_tui.widgets.event_text import (
    EVENT_COMPONENT_CLASSES,
    EventStyles,
    event_css,
    event_line,
    event_styles,
)
from engine.models import Event

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from axons_tui.app import AxonsApp

PAGE = 200  # events per read
PAGES_KEPT = 64  # the page cache's bound: 12,800 events whatever the Axon's length
RETRY_S = 1.0  # a page whose read failed is asked for again after this


class EventLog(ScrollView, can_focus=True):
    """Every event of one Axon, one per row. `compact` (dashboard panes): no cursor, no
    sequence column, and the paging keys are left to the screen."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "event-log--cursor",
        "event-log--pending",
        *EVENT_COMPONENT_CLASSES,
    }
    DEFAULT_CSS = """
    EventLog {
        overflow-x: hidden;
        overflow-y: auto;
        background: $surface;
        & > .event-log--cursor { background: $accent 30%; }
        & > .event-log--pending { color: $foreground-muted; text-style: dim; }
        &:focus > .event-log--cursor { background: $accent 50%; }
    }
    """ + event_css("EventLog")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Previous event", show=False, id="events.previous"),
        Binding("down", "cursor_down", "Next event", show=False, id="events.next"),
        Binding("pageup", "page_up", "Page up", show=False, id="events.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="events.page_down"),
        Binding("home", "first", "First", id="events.first"),
        Binding("end", "follow", "Follow", id="events.follow"),
    ]

    class EventSelected(Message):
        """The cursor rests on `event` (keys or a click)."""

        def __init__(self, log: EventLog, event: Event) -> None:
            super().__init__()
            self.log = log
            self.event = event

    class StatusChanged(Message):
        """The log's length or its follow state changed (a pane shows it in its border)."""

        def __init__(self, log: EventLog, total: int, following: bool, unseen: int) -> None:
            super().__init__()
            self.log = log
            self.total = total
            self.following = following
            self.unseen = unseen

        @property
        def text(self) -> str:
            """`following`, or `paused · 12 new · end to follow`."""
            if self.following:
                return "following"
            return f"paused · {self.unseen:,} new · end to follow"

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, EventLog.StatusChanged) and message.log is self.log

    following: var[bool] = var(True)
    cursor: var[int | None] = var(None)  # the selected sequence

    def __init__(
        self,
        axon_id: str,
        *,
        compact: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.axon_id = axon_id
        self.compact = compact
        self.total = 0  # the last sequence known
        self._paused_at = 0  # `total` when follow-tail paused
        self._pages: LRUCache[int, list[Event]] = LRUCache(PAGES_KEPT)
        self._loading: set[int] = set()
        self._strips: LRUCache[tuple[int, int, bool], Strip] = LRUCache(1024)
        self._styles: EventStyles | None = None
        self._unwatch: Callable[[], None] | None = None
        self._announce: int | None = None  # a selected sequence whose page is on its way
        self._status = ""  # the border's follow state, set only when it changes

    @property
    def console_app(self) -> AxonsApp:
        return cast("AxonsApp", self.app)

    # -- life

    def on_mount(self) -> None:
        self._unwatch = self.console_app.feed.watch(self._on_events, axon_id=self.axon_id)
        self._load_total()

    def on_unmount(self) -> None:
        if self._unwatch is not None:
            self._unwatch()

    @work(group="event-log-total", exclusive=True)
    async def _load_total(self) -> None:
        try:
            total = await self.console_app.session.backend.last_sequence(self.axon_id)
        except BACKEND_ERRORS as e:
            self.border_subtitle = Text(f"cannot read the log: {describe(e)}")
            return
        self._grow(total)

    def _on_events(self, batch: Sequence[Event]) -> None:
        """New events from the feed: into their pages, and the log grows."""
        for event in batch:
            self._remember(event)
        if batch:
            self._grow(batch[-1].sequence)
            self.refresh()

    def _remember(self, event: Event) -> None:
        index, offset = divmod(event.sequence - 1, PAGE)
        page = self._pages.get(index)
        if page is None and offset == 0:
            page = self._pages[index] = []
        if page is not None and len(page) == offset:
            page.append(event)

    def _grow(self, total: int) -> None:
        if total <= self.total:
            return
        self.total = total
        self.virtual_size = Size(0, total)
        if self.following:
            self._to_tail()
        self._post_status()

    def _to_tail(self) -> None:
        """Show the newest events, once the layout knows the new length."""
        self.scroll_end(animate=False, x_axis=False)

    def _post_status(self) -> None:
        unseen = 0 if self.following else self.total - self._paused_at
        status = self.StatusChanged(self, self.total, self.following, unseen)
        if not self.compact and status.text != self._status:
            self._status = status.text
            self.border_subtitle = Text(status.text)
        self.post_message(status)

    # -- pages

    def event_at(self, sequence: int) -> Event | None:
        """The event if its page is loaded; else None, and the page is asked for."""
        if not 1 <= sequence <= self.total:
            return None
        index, offset = divmod(sequence - 1, PAGE)
        page = self._pages.get(index)
        if page is not None and offset < len(page):
            return page[offset]
        if index not in self._loading:
            self._loading.add(index)
            self._load_page(index)
        return None

    @work(group="event-log-pages")
    async def _load_page(self, index: int) -> None:
        if not self._page_visible(index):
            self._loading.discard(index)  # scrolled past before its turn came;
            self.refresh()  # the rows shown now ask for their own pages
            return
        try:
            page = await self.console_app.session.backend.read_events(
                self.axon_id, after=index * PAGE, limit=PAGE
            )
        except BACKEND_ERRORS as e:
            self.log.warning(f"page {index} of {self.axon_id}: {e}")
            self.set_timer(RETRY_S, lambda: self._retry(index))
            return
        self._loading.discard(index)
        known = self._pages.get(index)
        if known is None or len(page) >= len(known):
            self._pages[index] = page
        self.refresh()
        self._announce_selection()

    def _retry(self, index: int) -> None:
        self._loading.discard(index)
        self.refresh()  # rows still waiting for that page ask for it again

    def _page_visible(self, index: int) -> bool:
        """Whether the page is on screen, or a page away from it."""
        first = int(self.scroll_y) - PAGE
        last = int(self.scroll_y) + self.scrollable_content_region.height + PAGE
        return index * PAGE <= last and (index + 1) * PAGE >= first

    # -- drawing

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._styles = None

    def on_resize(self) -> None:
        self._strips.clear()
        if self.following:
            self._to_tail()

    def render_lines(self, crop: Region) -> list[Strip]:
        """A following log draws its tail, even in the frame before the scroll lands (the
        first frame of a long Axon, which would otherwise show its top and read it)."""
        if self.following and self.scroll_y < self.max_scroll_y:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        sequence = int(self.scroll_y) + y + 1
        width = self.scrollable_content_region.width
        if sequence > self.total:
            return Strip.blank(width, self.rich_style)
        selected = sequence == self.cursor and not self.compact
        key = (sequence, width, selected)
        strip = self._strips.get(key)
        if strip is None:
            event = self.event_at(sequence)
            if event is None:
                return self._placeholder(sequence, width)
            strip = self._strips[key] = self._strip(event, width, selected)
        return strip

    def _strip(self, event: Event, width: int, selected: bool) -> Strip:
        styles = self._styles or self._resolve_styles()
        text = event_line(event, self.console_app.now_ms(), styles=styles, compact=self.compact)
        text.style = self.rich_style
        if selected:
            text.stylize(self.get_component_rich_style("event-log--cursor", partial=True))
        return self._fit(text, width)

    def _placeholder(self, sequence: int, width: int) -> Strip:
        pending = self.get_component_rich_style("event-log--pending", partial=True)
        label = "…" if self.compact else f"{sequence:>7} …"
        return self._fit(Text(label, style=self.rich_style + pending), width)

    def _fit(self, text: Text, width: int) -> Strip:
        text.end = ""
        text.truncate(width, overflow="ellipsis", pad=True)
        return Strip(text.render(self.app.console), width).simplify()

    def _resolve_styles(self) -> EventStyles:
        self._styles = event_styles(
            lambda name: self.get_component_rich_style(name, partial=True) or Style()
        )
        return self._styles

    # -- follow-tail

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        at_end = new_value >= self.max_scroll_y
        if at_end and not self.following:
            self.following = True
        elif not at_end and new_value < old_value and self.following:
            self.following = False

    def watch_following(self, following: bool) -> None:
        self._paused_at = self.total
        self._post_status()

    def action_follow(self) -> None:
        """Back to the newest event, and stay there as more arrive."""
        if self.cursor is not None and not self.compact:
            self.cursor = self.total or None
        self.following = True
        self._to_tail()

    def action_first(self) -> None:
        if not self.compact and self.total:
            self.cursor = 1
        self.scroll_home(animate=False, immediate=True)

    # -- the cursor

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """In a pane the log only scrolls; paging keys belong to the dashboard."""
        return not (self.compact and action in ("page_up", "page_down"))

    def action_cursor_up(self) -> None:
        self._move_cursor(-1)

    def action_cursor_down(self) -> None:
        self._move_cursor(1)

    def action_page_up(self) -> None:
        self._move_cursor(-max(1, self.scrollable_content_region.height - 1))

    def action_page_down(self) -> None:
        self._move_cursor(max(1, self.scrollable_content_region.height - 1))

    def _move_cursor(self, by: int) -> None:
        if self.compact:
            self.scroll_to(y=self.scroll_y + by, animate=False, immediate=True)
            return
        if not self.total:
            return
        if self.cursor is None:
            bottom = int(self.scroll_y) + self.scrollable_content_region.height
            start = min(self.total, bottom) + (1 if by < 0 else 0)
        else:
            start = self.cursor
        self.cursor = min(self.total, max(1, start + by))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self.compact:
            return
        sequence = int(self.scroll_y) + offset.y + 1
        if sequence <= self.total:
            self.cursor = sequence

    def watch_cursor(self, old: int | None, new: int | None) -> None:
        if new is None:
            return
        self.scroll_to_region(Region(0, new - 1, 1, 1), animate=False, immediate=True, force=True)
        self.refresh()
        self._announce = new
        self._announce_selection()

    def _announce_selection(self) -> None:
        if self._announce is None:
            return
        event = self.event_at(self._announce)
        if event is not None:
            self._announce = None
            self.post_message(self.EventSelected(self, event))

    @property
    def selected(self) -> Event | None:
        """The event under the cursor, when loaded."""
        return None if self.cursor is None else self.event_at(self.cursor)
