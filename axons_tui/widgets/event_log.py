"""An Axon's events as a scrolling log that opens instantly at any length.

A line-API `ScrollView`: one row per event, rendered only when visible, except that an agent's
message streamed in chunks is one item whose text grows as the chunks arrive, over a few rows
(`log_layout`). Events are paged from the Axon on demand (`read_events`) in workers, into a
bounded cache; a row not loaded yet is a dim placeholder until its page arrives, and when a
page's chunks join, the rows on screen stay where they are. New events come from the app's
feed. Follow-tail is on by default: scrolling up pauses it (the log says so and counts what
arrived since) and `end`, or scrolling back to the bottom, resumes it.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    joined_lines,
)
from axons_tui.widgets.log_layout import PAGE, Item, PageLayout, Rows, continued, lay_out
from engine.models import Event

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from axons_tui.app import AxonsApp

PAGES_KEPT = 64  # the page cache's bound: 12,800 events whatever the Axon's length
LAYOUTS_KEPT = 4 * PAGES_KEPT  # laid-out pages remembered (their rows) after their events go
RETRY_S = 1.0  # a page whose read failed is asked for again after this
JOINED_ROWS = 6  # the rows a joined message may take in the Axon view (then "…")
JOINED_ROWS_COMPACT = 2  # and in a dashboard pane
FALLBACK_WIDTH = 80  # for a layout made before the log knows its width


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
        """The cursor rests on `event` (keys or a click); on a joined message, `event` is its
        first chunk and `joined` the item (its last sequence and whole text)."""

        def __init__(self, log: EventLog, event: Event, joined: Item | None = None) -> None:
            super().__init__()
            self.log = log
            self.event = event
            self.joined = joined

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
    cursor: var[int | None] = var(None)  # the selected sequence (a joined item's first)

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
        self._layouts: dict[int, PageLayout] = {}  # the most recently laid out last
        self._rows = Rows()
        self._strips: LRUCache[tuple[int, ...], Strip] = LRUCache(1024)
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
        touched = {index for event in batch if (index := self._remember(event)) is not None}
        if batch:
            self.total = max(self.total, batch[-1].sequence)
            self._relayout(touched)
            self.refresh()

    def _remember(self, event: Event) -> int | None:
        """The event into its page when it extends it; the page's index then."""
        index, offset = divmod(event.sequence - 1, PAGE)
        page = self._pages.get(index)
        if page is None and offset == 0:
            page = self._pages[index] = []
        if page is not None and len(page) == offset:
            page.append(event)
            return index
        return None

    def _grow(self, total: int) -> None:
        if total <= self.total:
            return
        self.total = total
        self._resize_virtual()

    def _resize_virtual(self) -> None:
        self.virtual_size = Size(0, self._rows.total(self.total))
        if self.following:
            self._to_tail()
        self._post_status()

    def _to_tail(self) -> None:
        """Show the newest events, once the layout knows the new length: unless the log
        stopped following meanwhile (a key pressed before that refresh must win)."""
        self.call_after_refresh(self._tail_if_following)

    def _tail_if_following(self) -> None:
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

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
    async def _load_page(self, index: int, needed: bool = False) -> None:
        if not needed and not self._page_visible(index):
            self._loading.discard(index)  # scrolled past before its turn came;
            self.refresh()  # the rows shown now ask for their own pages
            return
        try:
            page = await self.console_app.session.backend.read_events(
                self.axon_id, after=index * PAGE, limit=PAGE
            )
        except BACKEND_ERRORS as e:
            self.log.warning(f"page {index} of {self.axon_id}: {e}")
            self.set_timer(RETRY_S, lambda: self._retry(index))  # (a needed page too: its
            # rows, or the next layout of the page beside it, ask again)
            return
        self._loading.discard(index)
        known = self._pages.get(index)
        if known is None or len(page) >= len(known):
            self._pages[index] = page
            self._relayout([index])
        self.refresh()
        self._announce_selection()

    def _retry(self, index: int) -> None:
        self._loading.discard(index)
        self.refresh()  # rows still waiting for that page ask for it again

    def _page_visible(self, index: int) -> bool:
        """Whether the page is on screen, or a page away from it."""
        top, _ = self._rows.page_of_row(int(self.scroll_y), self._page_count())
        bottom_row = int(self.scroll_y) + self.scrollable_content_region.height
        bottom, _ = self._rows.page_of_row(bottom_row, self._page_count())
        return top - 1 <= index <= bottom + 1

    def _page_count(self) -> int:
        return -(-self.total // PAGE)

    # -- layout: which rows show which events

    def _relayout(self, changed: Iterable[int]) -> None:
        """Lay out the changed pages and their neighbours (an item may cross between them),
        then size the log, keeping the top row's event in place unless it follows the tail."""
        changed = sorted(set(changed))
        if not changed:
            self._resize_virtual()
            return
        anchor = None if self.following else self._anchor()
        for index in changed:
            self._lay_out(index)
        for index in changed:
            if index + 1 not in changed and index + 1 in self._layouts:
                self._lay_out(index + 1)  # its first chunks may go on with this page's item,
                self._lay_out(index)  # which then takes them
            before = index - 1  # the pages before: an item of theirs may go on into this one
            while before not in changed and before in self._layouts:
                self._lay_out(before)
                if not continued(self._layouts[before]):
                    break
                before -= 1
        while len(self._layouts) > LAYOUTS_KEPT:
            del self._layouts[next(iter(self._layouts))]
        self._rows.update({i: lay.rows - lay.count for i, lay in self._layouts.items()})
        self._strips.clear()
        self._resize_virtual()
        if anchor is not None:
            self._restore(anchor)

    def _lay_out(self, index: int) -> None:
        events = self._pages.get(index)
        if events is None:  # its events are gone: its old layout stands until they return
            return
        known = self._layouts.pop(index, None)
        self._layouts[index] = lay_out(
            index,
            events,
            self._layouts.get(index - 1),
            self._following(index),
            self._joined_height,
            known,
        )
        chunks = self._layouts[index].chunks
        if chunks and self._page_visible(index):  # a message cut at its edges: read on
            if chunks[0] is not None and index > 0:
                self._read_page(index - 1)
            if chunks[-1] is not None and len(chunks) == PAGE:
                self._read_page(index + 1)

    def _read_page(self, index: int) -> None:
        """Read a page whether or not it is on screen (unless it is here or on its way)."""
        if index not in self._pages and index not in self._loading:
            self._loading.add(index)
            self._load_page(index, needed=True)

    def _following(self, index: int) -> list[PageLayout]:
        """The laid-out pages after `index`, in order, as far as an item could go on."""
        pages: list[PageLayout] = []
        while (layout := self._layouts.get(index + 1 + len(pages))) is not None:
            pages.append(layout)
            if not continued(layout):
                break
        return pages

    def _joined_height(self, item: Item, first: Event) -> int:
        return len(self._joined(item, first, self._width()))

    def _width(self) -> int:
        return self.scrollable_content_region.width or FALLBACK_WIDTH

    def _locate(self, row: int) -> tuple[int, Item | None, int]:
        """What `row` shows: (sequence, the joined item or None, which of its rows)."""
        index, within = self._rows.page_of_row(row, self._page_count())
        layout = self._layouts.get(index)
        if layout is None:
            return index * PAGE + within + 1, None, 0
        found = layout.item_at_row(within)
        if found is None:  # events that came after the page was laid out, one row each
            return index * PAGE + layout.count + within - layout.rows + 1, None, 0
        item, line = found
        return item.first, item if item.joined else None, line

    def item_at(self, sequence: int) -> Item:
        """The item holding `sequence` (a lone event when its page is not laid out). A chunk
        may go on with an item of a page before: a long answer spans pages."""
        page = (sequence - 1) // PAGE
        while page >= 0 and (layout := self._layouts.get(page)) is not None:
            at = layout.item_index(sequence)
            if at is not None:
                return layout.items[at]
            if layout.items and layout.items[0].first <= sequence:
                break  # in no item of this page, and no page before holds it either
            page -= 1
        return Item(sequence, sequence)

    def row_of(self, sequence: int) -> int:
        """The first row of the item holding `sequence`."""
        first = self.item_at(sequence).first
        index, offset = divmod(first - 1, PAGE)
        row = self._rows.first_row(index)
        layout = self._layouts.get(index)
        if layout is None:
            return row + offset
        at = layout.item_index(first)
        if at is None:
            return row + layout.rows + offset - layout.count
        return row + layout.starts[at]

    def _anchor(self) -> tuple[int, int]:
        """What must stay where it is on screen, as (sequence, its row less the top row): the
        selected event when it is on screen, else the event at the top."""
        top = int(self.scroll_y)
        if self.cursor is not None:
            row = self.row_of(self.cursor)
            if top <= row < top + self.scrollable_content_region.height:
                return self.cursor, row - top
        sequence = self._locate(top)[0]
        return sequence, self.row_of(sequence) - top

    def _restore(self, anchor: tuple[int, int]) -> None:
        sequence, offset = anchor
        target = max(0, self.row_of(sequence) - offset)
        if target != int(self.scroll_y):
            self.scroll_to(y=target, animate=False, immediate=True, force=True)

    # -- drawing

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._styles = None

    def on_resize(self) -> None:
        self._strips.clear()
        # joined messages wrap anew; pages whose events are gone count a row per event again
        gone = [index for index in self._layouts if index not in self._pages]
        for index in gone:
            del self._layouts[index]
        self._relayout(list(self._layouts) or [])
        if self.following:
            self._to_tail()

    def render_lines(self, crop: Region) -> list[Strip]:
        """A following log draws its tail, even in the frame before the scroll lands (the
        first frame of a long Axon, which would otherwise show its top and read it)."""
        if self.following and self.scroll_y < self.max_scroll_y:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        sequence, item, line = self._locate(row)
        if sequence > self.total or row >= self.virtual_size.height:
            return Strip.blank(width, self.rich_style)
        selected = self._selects(sequence, item)
        key = (sequence, item.last if item else 0, line, width, selected)
        strip = self._strips.get(key)
        if strip is None:
            event = self.event_at(sequence)
            if event is None:
                return self._placeholder(sequence, width)
            if item is None:
                text = self._line(event)
            else:
                lines = self._joined(item, event, width)
                text = lines[line] if line < len(lines) else Text()
            strip = self._strips[key] = self._strip(text, width, selected)
        return strip

    def _selects(self, sequence: int, item: Item | None) -> bool:
        """Whether the cursor is on this row's event, or anywhere in its joined item."""
        if self.cursor is None or self.compact:
            return False
        if item is None:
            return sequence == self.cursor
        return item.first <= self.cursor <= item.last

    def _line(self, event: Event) -> Text:
        styles = self._styles or self._resolve_styles()
        return event_line(event, self.console_app.now_ms(), styles=styles, compact=self.compact)

    def _joined(self, item: Item, first: Event, width: int) -> list[Text]:
        styles = self._styles or self._resolve_styles()
        return joined_lines(
            first,
            str(item.kind),
            item.text,
            width,
            self.app.console,
            now_ms=self.console_app.now_ms(),
            styles=styles,
            compact=self.compact,
            max_rows=JOINED_ROWS_COMPACT if self.compact else JOINED_ROWS,
        )

    def _strip(self, text: Text, width: int, selected: bool) -> Strip:
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
        text.stylize_before(
            text.style
        )  # `render` leaves the base style out of a text with no spans
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
            self.cursor = self.item_at(self.total).first if self.total else None
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
        self._step_cursor(-1)

    def action_cursor_down(self) -> None:
        self._step_cursor(1)

    def action_page_up(self) -> None:
        self._move_cursor(-max(1, self.scrollable_content_region.height - 1))

    def action_page_down(self) -> None:
        self._move_cursor(max(1, self.scrollable_content_region.height - 1))

    def _step_cursor(self, by: int) -> None:
        """To the next or previous item, however many rows the current one takes."""
        if self.compact or self.cursor is None or not self.total:
            self._move_cursor(by)
            return
        item = self.item_at(self.cursor)
        target = item.last + 1 if by > 0 else item.first - 1
        self.cursor = self.item_at(min(self.total, max(1, target))).first

    def _move_cursor(self, by: int) -> None:
        """By `by` rows: the log scrolls in a pane, the cursor moves in the Axon view."""
        if self.compact:
            self.scroll_to(y=self.scroll_y + by, animate=False, immediate=True)
            return
        if not self.total:
            return
        if self.cursor is None:
            bottom = int(self.scroll_y) + self.scrollable_content_region.height
            row = min(self.virtual_size.height, bottom) - (1 if by > 0 else 0)
        else:
            row = self.row_of(self.cursor)
        row = min(self.virtual_size.height - 1, max(0, row + by))
        self.cursor = self.item_at(self._locate(row)[0]).first

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self.compact:
            return
        sequence = self._locate(int(self.scroll_y) + offset.y)[0]
        if sequence <= self.total:
            self.cursor = self.item_at(sequence).first

    def watch_cursor(self, old: int | None, new: int | None) -> None:
        if new is None:
            return
        rows = self.item_at(new).rows if self.item_at(new).joined else 1
        region = Region(0, self.row_of(new), 1, rows)
        self.scroll_to_region(region, animate=False, immediate=True, force=True)
        self.refresh()
        self._announce = new
        self._announce_selection()

    def _announce_selection(self) -> None:
        if self._announce is None:
            return
        event = self.event_at(self._announce)
        if event is not None:
            self._announce = None
            item = self.item_at(event.sequence)
            self.post_message(self.EventSelected(self, event, item if item.joined else None))

    @property
    def selected(self) -> Event | None:
        """The event under the cursor, when loaded."""
        return None if self.cursor is None else self.event_at(self.cursor)
