"""Which rows of an `EventLog` show which events.

One row per event, except an agent's message that streams as chunks (ACP
`agent_message_chunk`, and likewise thoughts and echoed user chunks): consecutive chunks of one
kind from one source are one *item*, their texts joined, wrapped over a few rows and growing as
chunks arrive. Everything here is bookkeeping over the log's pages of events, with no Textual,
so the log stays lazy: a page not loaded yet counts one row per event, and its rows are known
once it is loaded (`PageLayout`); `Rows` adds the pages up to map a row to its event and back.

Items are found page by page. An item starting near the end of a page takes the chunks that
continue it at the start of the next page when that page is loaded; those chunks then take no
row in their own page. When the page before is not loaded, a page's first chunks start an item
of their own, and the rows settle when it arrives (the log keeps what is on screen in place).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from axons_tui.widgets.acp_text import message_chunk
from engine.models import Event

PAGE = 200  # events per page: the unit the log reads, caches and lays out

Chunk = tuple[str, str, str]
"""(source, kind, text) of a message chunk."""


def chunk_of(e: Event) -> Chunk | None:
    """The chunk an event carries, or None: a cheap test on the raw payload first, since most
    events are not chunks and the log asks for every event it lays out."""
    if e.event_type != "session/update" or "_chunk" not in e.payload:
        return None
    try:
        body = orjson.loads(e.payload)
    except orjson.JSONDecodeError:
        return None
    found = message_chunk(body) if isinstance(body, dict) else None
    return None if found is None else (e.source, found[0], found[1])


@dataclass(slots=True)
class Item:
    """What one row, or a few, show: an event (`first == last`, `kind` None) or a run of chunks
    (sequences `first`..`last`, their `text` joined) taking `rows` rows."""

    first: int
    last: int
    kind: str | None = None
    text: str = ""
    rows: int = 1

    @property
    def joined(self) -> bool:
        return self.kind is not None


class PageLayout:
    """The items that start in one page, and the row each starts at within the page."""

    __slots__ = ("chunks", "count", "index", "items", "rows", "starts")

    def __init__(self, index: int, items: list[Item], chunks: list[Chunk | None], count: int):
        self.index = index
        self.items = items
        self.chunks = chunks  # per event of the page, kept to lay it out again cheaply
        self.count = count  # events in the page when it was laid out
        self.starts: list[int] = []
        self.rows = 0
        self.measure_rows()

    def measure_rows(self) -> None:
        self.starts.clear()
        row = 0
        for item in self.items:
            self.starts.append(row)
            row += item.rows
        self.rows = row

    def item_at_row(self, row: int) -> tuple[Item, int] | None:
        """The item on `row` of the page, and which of its rows it is."""
        if not self.items or not 0 <= row < self.rows:
            return None
        i = bisect.bisect_right(self.starts, row) - 1
        return self.items[i], row - self.starts[i]

    def item_index(self, sequence: int) -> int | None:
        """The index of the item holding `sequence`, if it is in this page's items."""
        firsts = [item.first for item in self.items]
        i = bisect.bisect_right(firsts, sequence) - 1
        if i >= 0 and self.items[i].first <= sequence <= self.items[i].last:
            return i
        return None


def lay_out(
    index: int,
    events: Sequence[Event],
    before: PageLayout | None,
    after: Sequence[PageLayout],
    height: Callable[[Item, Event], int],
    known: PageLayout | None = None,
) -> PageLayout:
    """The layout of page `index` from its events. `before` is the page before's layout
    when loaded; `after`, the layouts of the pages after it, in order, as far as they are
    loaded (an item may go on over several pages: a long answer); `known` is this page's
    previous layout, whose chunk tests are reused for the events it already had; `height`
    gives a joined item's rows (from its first event and text)."""
    chunks = list(known.chunks[: len(events)]) if known is not None else []
    chunks.extend(chunk_of(e) for e in events[len(chunks) :])
    items: list[Item] = []
    previous = before.chunks[-1] if before is not None and before.chunks else None
    for e, chunk in zip(events, chunks, strict=True):
        if chunk is not None and previous is not None and chunk[:2] == previous[:2]:
            if items:
                items[-1].last = e.sequence
                items[-1].text += chunk[2]
            # else: it continues the page before's last item, which shows it
        elif chunk is not None:
            items.append(Item(e.sequence, e.sequence, chunk[1], chunk[2]))
        else:
            items.append(Item(e.sequence, e.sequence))
        previous = chunk
    tail = items[-1] if items else None
    if tail is not None and tail.joined and previous is not None:
        _continue(tail, previous, after)
    for item in items:
        if item.joined:
            item.rows = max(1, height(item, events[item.first - 1 - index * PAGE]))
    return PageLayout(index, items, chunks, len(events))


def _continue(tail: Item, last: Chunk, after: Sequence[PageLayout]) -> None:
    """The chunks of the next pages that go on with `tail`, into it: a page made only of
    such chunks passes the item on to the page after it."""
    for page in after:
        for chunk in page.chunks:
            if chunk is None or chunk[:2] != last[:2]:
                return
            tail.last += 1
            tail.text += chunk[2]
        if page.count < PAGE:  # the log's last page: nothing after it yet
            return


def continued(layout: PageLayout) -> bool:
    """Whether every event of the page goes on with an item of a page before it."""
    return bool(layout.chunks) and not layout.items


class Rows:
    """Rows across pages: a page not laid out takes one row per event, a laid-out page its
    layout's rows. Kept as the difference per laid-out page, so a million events cost
    nothing until their pages are read."""

    def __init__(self) -> None:
        self._extra: dict[int, int] = {}  # page -> its rows minus its events
        self._keys: list[int] = []
        self._sums: list[int] = []  # the extras of the pages before each key, summed

    def update(self, extra: dict[int, int]) -> None:
        self._extra = {page: rows for page, rows in extra.items() if rows}
        self._keys = sorted(self._extra)
        self._sums = []
        total = 0
        for page in self._keys:
            self._sums.append(total)
            total += self._extra[page]

    def total(self, events: int) -> int:
        return events + sum(self._extra.values())

    def first_row(self, page: int) -> int:
        """The row of page `page`'s first item."""
        i = bisect.bisect_left(self._keys, page)
        before = (self._sums[i - 1] + self._extra[self._keys[i - 1]]) if i else 0
        return page * PAGE + before

    def page_of_row(self, row: int, pages: int) -> tuple[int, int]:
        """(page, row within it) of a row, among `pages` pages: the last page starting at or
        before it (a page whose chunks all continue the page before takes no row)."""
        low, high = 0, max(1, pages)
        while low < high:  # the first page that starts after the row
            mid = (low + high) // 2
            if self.first_row(mid) <= row:
                low = mid + 1
            else:
                high = mid
        page = max(0, low - 1)
        return page, row - self.first_row(page)
