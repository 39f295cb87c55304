"""Records: export then import gives the same Axon (events and hashes, state, its history);
a fork at N holds events 1..N and the state as of N; verify names the first altered or
missing event; import refuses an export that was tampered with."""

from __future__ import annotations

from pathlib import Path

import apsw
import orjson
import pytest

from engine import AxonError, Draft, Engine
from tests.helpers import message
from tests.test_time_travel import Recorder, run_script


async def exported(engine: Engine, axon_id: str) -> list[bytes]:
    return [line async for line in engine.export(axon_id)]


async def events_of(engine: Engine, axon_id: str) -> list[dict]:
    events = [e.to_dict() for e in await engine.read_events(axon_id, limit=5000)]
    for e in events:
        assert e.pop("axon_id") == axon_id
    return events


async def schema_of(engine: Engine, axon_id: str) -> list[list]:
    return (
        await engine.query(
            axon_id,
            "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'axon\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
    ).rows


async def a_busy_axon(engine: Engine, seed: int = 5) -> Recorder:
    """The time-travel script's Axon, plus a few kinds of events and user schema objects."""
    rec = await run_script(engine, seed, steps=80)
    await engine.query(rec.axon_id, "CREATE INDEX items_name ON items(name)", write=True)
    await engine.query(
        rec.axon_id, "CREATE VIEW big AS SELECT id FROM items WHERE score > 1", write=True
    )
    await engine.query(
        rec.axon_id,
        "CREATE TRIGGER stamp AFTER INSERT ON items "
        "BEGIN UPDATE items SET tag = 'trig' WHERE id = NEW.id; END",
        write=True,
    )
    await engine.publish(
        rec.axon_id, Draft("push", '{"ref": "main"}', "github", "EXTERNAL_EVENT", "gh-1")
    )
    await engine.publish(
        rec.axon_id, Draft("agent.started", "{}", "triage", "SYSTEM_EVENT"), system=True
    )
    await engine.query(
        rec.axon_id, "INSERT INTO items(id, name) VALUES (1000, 'after the trigger')", write=True
    )
    await engine.publish(rec.axon_id, message("last"))
    rec.sequence = await engine.last_sequence(rec.axon_id)
    return rec


async def test_export_then_import_gives_the_same_axon(engine: Engine) -> None:
    rec = await a_busy_axon(engine)
    source = rec.axon_id
    lines = await exported(engine, source)
    header = orjson.loads(lines[0])
    assert header["type"] == "axon" and header["source_id"] == source
    assert header["at_sequence"] == rec.sequence

    copy = await engine.import_axon(lines, name="copy")
    assert copy.id != source and copy.name == "copy"

    assert await events_of(engine, copy.id) == await events_of(engine, source)
    report = await engine.verify(copy.id)
    assert report.ok and report.checked == rec.sequence
    assert await schema_of(engine, copy.id) == await schema_of(engine, source)
    copied = Recorder(engine, copy.id)
    assert await copied.state() == await rec.state()
    for n in range(rec.sequence + 1):
        assert await copied.state(at_sequence=n) == await rec.state(at_sequence=n), f"sequence {n}"
        assert await engine.changes(copy.id, n) == await engine.changes(source, n), f"sequence {n}"

    # Exporting the copy gives the same lines, bar the header that names its source.
    again = await exported(engine, copy.id)
    assert again[1:] == lines[1:]

    # The copy carries on: new events chain on, and state changes are still captured.
    assert (await engine.publish(copy.id, message("next"))).sequence == rec.sequence + 1
    await engine.query(copy.id, "INSERT INTO items(id, name) VALUES (2000, 'x')", write=True)
    assert (await engine.query(copy.id, "SELECT tag FROM items WHERE id = 2000")).rows == [["trig"]]
    assert [c.rowid for c in await engine.changes(copy.id, rec.sequence + 1)] == [2000, 2000]
    assert (await engine.verify(copy.id)).ok


async def test_an_empty_axon_round_trips(engine: Engine, axon_id: str) -> None:
    copy = await engine.import_axon(await exported(engine, axon_id))
    assert await engine.read_events(copy.id) == []
    assert (await engine.verify(copy.id)).ok
    assert (await engine.publish(copy.id, message("first"))).sequence == 1


async def test_import_accepts_text_lines_and_blank_lines(engine: Engine, axon_id: str) -> None:
    await engine.publish(axon_id, message("hello"))
    text = [line.decode() for line in await exported(engine, axon_id)]
    copy = await engine.import_axon([text[0], "", *text[1:], "   "])
    assert await events_of(engine, copy.id) == await events_of(engine, axon_id)


@pytest.mark.parametrize("at", [0, 1, 17, "last"])
async def test_a_fork_holds_events_up_to_n_and_the_state_as_of_n(
    engine: Engine, at: int | str
) -> None:
    rec = await a_busy_axon(engine, seed=6)
    n = rec.sequence if at == "last" else int(at)
    view = await engine.get_axon(rec.axon_id)

    fork = await engine.fork(rec.axon_id, n)
    assert fork.metadata["forked_from"] == rec.axon_id and fork.metadata["forked_at"] == str(n)
    assert fork.name == f"{view.name}@{n}"

    assert await events_of(engine, fork.id) == (await events_of(engine, rec.axon_id))[:n]
    report = await engine.verify(fork.id)
    assert report.ok and report.checked == n
    forked = Recorder(engine, fork.id)
    assert await forked.state() == await rec.state(at_sequence=n)
    for k in range(n + 1):
        assert await forked.state(at_sequence=k) == await rec.state(at_sequence=k), f"sequence {k}"

    # The fork and its source go their own ways.
    assert (await engine.publish(fork.id, message("fork only"))).sequence == n + 1
    assert await engine.last_sequence(rec.axon_id) == rec.sequence
    assert (await engine.verify(fork.id)).ok


async def test_a_fork_beyond_the_log_is_refused(engine: Engine, axon_id: str) -> None:
    await engine.publish(axon_id, message("only"))
    for bad in (2, -1):
        with pytest.raises(AxonError) as refused:
            await engine.fork(axon_id, bad)
        assert refused.value.code == "invalid_sequence"


# -- verify ----------------------------------------------------------------------------------


async def tamper(tmp_path: Path, sql: str, count: int = 12) -> tuple[Engine, str]:
    """Publish `count` events, close the engine, change the file behind its back, reopen."""
    home = tmp_path / "home"
    async with Engine(home) as engine:
        axon_id = (await engine.create_axon("audited")).id
        for i in range(count):
            await engine.publish(axon_id, message(f"event {i + 1}"))
        assert (await engine.verify(axon_id)).ok
        path = engine.path_of(axon_id)
    conn = apsw.Connection(str(path))
    conn.execute(sql)
    conn.close()
    return Engine(home), axon_id


@pytest.mark.parametrize(
    ("sql", "first_bad"),
    [
        ("""UPDATE axon_events SET payload = '{"text": "forged"}' WHERE sequence = 5""", 5),
        ("UPDATE axon_events SET source = 'web' WHERE sequence = 1", 1),
        ("UPDATE axon_events SET timestamp_ms = timestamp_ms + 1 WHERE sequence = 9", 9),
        ("UPDATE axon_events SET author = 'mallory' WHERE sequence = 12", 12),
        ("UPDATE axon_events SET hash = 'ab' || substr(hash, 3) WHERE sequence = 3", 3),
        ("DELETE FROM axon_events WHERE sequence = 7", 7),
        ("DELETE FROM axon_events WHERE sequence = 1", 1),
        ("UPDATE axon_events SET sequence = 100 WHERE sequence = 4", 4),
    ],
)
async def test_verify_names_the_first_altered_or_missing_event(
    tmp_path: Path, sql: str, first_bad: int
) -> None:
    engine, axon_id = await tamper(tmp_path, sql)
    async with engine:
        report = await engine.verify(axon_id)
        assert not report.ok
        assert report.first_bad_sequence == first_bad
        assert report.checked == first_bad - 1
        assert report.reason


async def test_verify_passes_on_an_untouched_file_after_reopening(tmp_path: Path) -> None:
    engine, axon_id = await tamper(tmp_path, "SELECT 1")
    async with engine:
        report = await engine.verify(axon_id)
        assert report.ok and report.checked == 12 and report.first_bad_sequence is None


# -- tampered imports ---------------------------------------------------------------------------


def _edit_event(lines: list[bytes], which: int, **changes: object) -> list[bytes]:
    out = []
    for line in lines:
        item = orjson.loads(line)
        if item["type"] == "event" and item["event"]["sequence"] == which:
            item["event"].update(changes)
            line = orjson.dumps(item)
        out.append(line)
    return out


def _drop_event(lines: list[bytes], sequence: int) -> list[bytes]:
    return [
        line
        for line in lines
        if not (
            orjson.loads(line)["type"] == "event"
            and orjson.loads(line)["event"]["sequence"] == sequence
        )
    ]


TAMPERINGS = {
    "payload changed": lambda lines: _edit_event(lines, 3, payload='{"text": "forged"}'),
    "source changed": lambda lines: _edit_event(lines, 1, source="web"),
    "hash changed": lambda lines: _edit_event(lines, 6, hash="0" * 64),
    "sequence changed": lambda lines: _edit_event(lines, 6, sequence=60),
    "field missing": lambda lines: _edit_event(lines, 2, event_type=None),
    "event removed": lambda lines: _drop_event(lines, 4),
    "events swapped": lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
    "not JSON": lambda lines: [lines[0], b"{not json", *lines[1:]],
    "unknown record": lambda lines: [*lines, b'{"type": "mystery"}'],
    "no header": lambda lines: lines[1:],
    "wrong format": lambda lines: [lines[0].replace(b'"format":1', b'"format":99'), *lines[1:]],
    "empty": lambda lines: [],
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
async def test_import_refuses_a_tampered_export(engine: Engine, axon_id: str, how: str) -> None:
    for i in range(8):
        await engine.publish(axon_id, message(f"m{i}"))
    lines = await exported(engine, axon_id)
    assert b'"format":1' in lines[0]
    before = (await engine.list_axons(include_total_count=True, include_deleted=True)).total_count

    with pytest.raises(AxonError) as refused:
        await engine.import_axon(TAMPERINGS[how](lines))
    assert refused.value.code == "invalid_export" and refused.value.status == 400
    assert refused.value.message
    after = (await engine.list_axons(include_total_count=True, include_deleted=True)).total_count
    assert after == before  # nothing half-imported
