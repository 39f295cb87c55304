"""How the console's event log folds an agent's streamed message into one item
(`axons_tui/widgets/log_layout.py`): chunks of one kind from one source join, across a page
boundary too, and rows map to events and back whatever is laid out."""

from __future__ import annotations

import orjson

from axons_tui.widgets.log_layout import (
    PAGE,
    Item,
    PageLayout,
    Rows,
    chunk_of,
    continued,
    lay_out,
)
from engine.models import Event


def chunk(
    sequence: int, text: str, source: str = "claude", kind: str = "agent_message_chunk"
) -> Event:
    payload = {
        "sessionId": "s1",
        "update": {"sessionUpdate": kind, "content": {"type": "text", "text": text}},
    }
    return Event(
        "axn_x",
        sequence,
        0,
        "AGENT_EVENT",
        source,
        "session/update",
        orjson.dumps(payload).decode(),
        None,
        None,
        "",
    )


def plain(sequence: int, text: str = "hi") -> Event:
    payload = orjson.dumps({"text": text}).decode()
    return Event("axn_x", sequence, 0, "USER_EVENT", "web", "message", payload, None, None, "")


def one_row(item: Item, first: Event) -> int:
    return 1


def test_a_chunk_is_known_by_its_kind_and_nothing_else_is() -> None:
    assert chunk_of(chunk(1, "Hel")) == ("claude", "agent_message_chunk", "Hel")
    assert chunk_of(chunk(1, "hm", kind="agent_thought_chunk"))[1] == "agent_thought_chunk"  # type: ignore[index]
    assert chunk_of(plain(1)) is None
    tool = Event(
        "a",
        1,
        0,
        "AGENT_EVENT",
        "c",
        "session/update",
        '{"update": {"sessionUpdate": "tool_call"}}',
        None,
        None,
        "",
    )
    assert chunk_of(tool) is None
    broken = Event("a", 1, 0, "AGENT_EVENT", "c", "session/update", '{"_chunk', None, None, "")
    assert chunk_of(broken) is None


def test_runs_of_one_kind_from_one_source_join_and_anything_else_breaks_them() -> None:
    events = [
        plain(1),
        chunk(2, "Hello"),
        chunk(3, ", wor"),
        chunk(4, "ld"),
        chunk(5, "hmm", kind="agent_thought_chunk"),
        chunk(6, "other", source="gemini"),
        plain(7),
        chunk(8, "again"),
    ]
    layout = lay_out(0, events, None, [], one_row)
    assert [(i.first, i.last, i.kind, i.text) for i in layout.items] == [
        (1, 1, None, ""),
        (2, 4, "agent_message_chunk", "Hello, world"),
        (5, 5, "agent_thought_chunk", "hmm"),
        (6, 6, "agent_message_chunk", "other"),
        (7, 7, None, ""),
        (8, 8, "agent_message_chunk", "again"),
    ]
    assert layout.rows == 6 and layout.count == 8
    assert layout.item_at_row(1) == (layout.items[1], 0)
    assert layout.item_index(3) == 1 and layout.item_index(9) is None


def test_a_message_crossing_a_page_boundary_is_one_item_once_both_pages_are_read() -> None:
    first = [plain(n) for n in range(1, PAGE - 1)] + [chunk(PAGE - 1, "one "), chunk(PAGE, "two ")]
    second = [chunk(PAGE + 1, "three"), plain(PAGE + 2)]
    # the second page alone: its first chunk starts an item of its own
    alone = lay_out(1, second, None, [], one_row)
    assert [(i.first, i.last) for i in alone.items] == [(PAGE + 1, PAGE + 1), (PAGE + 2, PAGE + 2)]
    # both read: the chunk belongs to the item of the page before and takes no row here
    before = lay_out(0, first, None, [alone], one_row)
    after = lay_out(1, second, before, [], one_row, known=alone)
    assert before.items[-1].text == "one two three" and before.items[-1].last == PAGE + 1
    assert [(i.first, i.last) for i in after.items] == [(PAGE + 2, PAGE + 2)]
    rows = Rows()
    rows.update({0: before.rows - before.count, 1: after.rows - after.count})
    assert rows.total(PAGE + 2) == PAGE - 1 + 1  # 198 plain + the message + 1 plain
    assert rows.first_row(1) == PAGE - 1
    assert rows.page_of_row(PAGE - 2, 2) == (0, PAGE - 2)  # the joined message's row
    assert rows.page_of_row(PAGE - 1, 2) == (1, 0)


def test_a_long_answer_goes_on_over_a_page_made_only_of_its_chunks() -> None:
    """An answer of 215 chunks from #191: page 1 holds nothing else, and the item of page 0
    takes it all, and the first 6 chunks of page 2."""
    first = [plain(n) for n in range(1, 191)] + [chunk(n, "w ") for n in range(191, PAGE + 1)]
    middle = [chunk(n, "w ") for n in range(PAGE + 1, 2 * PAGE + 1)]
    last = [chunk(n, "w ") for n in range(2 * PAGE + 1, 2 * PAGE + 7)] + [plain(2 * PAGE + 7)]
    third = lay_out(2, last, None, [], one_row)
    second = lay_out(1, middle, None, [third], one_row)
    third = lay_out(2, last, second, [], one_row, known=third)
    second = lay_out(1, middle, lay_out(0, first, None, [], one_row), [third], one_row)
    head = lay_out(0, first, None, [second, third], one_row)
    assert continued(second) and not continued(third) and not continued(head)
    (answer,) = [item for item in head.items if item.joined]
    assert (answer.first, answer.last) == (191, 2 * PAGE + 6)
    assert answer.text == "w " * (2 * PAGE + 6 - 190)
    assert [(i.first, i.last) for i in third.items] == [(2 * PAGE + 7, 2 * PAGE + 7)]
    rows = Rows()
    rows.update({p.index: p.rows - p.count for p in (head, second, third)})
    assert rows.total(2 * PAGE + 7) == 190 + 1 + 1  # the messages, the answer, the last one
    assert rows.page_of_row(190, 3) == (0, 190) and rows.page_of_row(191, 3) == (2, 0)


def test_rows_map_to_pages_with_pages_that_take_no_row() -> None:
    rows = Rows()
    # page 1 is all continuation (0 rows), page 3 took 150 rows fewer, page 5 wraps 10 more
    rows.update({1: -PAGE, 3: -150, 5: 10})
    assert rows.first_row(0) == 0
    assert rows.first_row(1) == PAGE
    assert rows.first_row(2) == PAGE  # page 1 took nothing
    assert rows.first_row(4) == 3 * PAGE - 150
    assert rows.first_row(6) == 5 * PAGE - 140
    assert rows.page_of_row(PAGE, 7) == (2, 0)  # not the empty page 1
    assert rows.page_of_row(3 * PAGE - 151, 7) == (3, 49)
    assert rows.page_of_row(rows.first_row(5) + 205, 7) == (5, 205)  # in the wrapped page
    assert rows.total(7 * PAGE) == 7 * PAGE - PAGE - 150 + 10
    every = [rows.page_of_row(row, 7) for row in range(rows.total(7 * PAGE))]
    assert every == sorted(every)  # rows go forward through the pages, none skipped twice


def test_a_layout_reuses_the_chunk_tests_of_the_events_it_had() -> None:
    events = [chunk(1, "a"), chunk(2, "b")]
    known = lay_out(0, events, None, [], one_row)
    known.chunks[0] = ("claude", "agent_message_chunk", "A")  # as if tested before
    grown = lay_out(0, [*events, chunk(3, "c")], None, [], one_row, known=known)
    assert grown.items[0].text == "Abc"
    assert isinstance(grown, PageLayout)
