"""triage: the support-triage sample agent (native protocol, stdlib only, no model).

- A customer message (USER_EVENT "message" from any source but slack or tui) opens a ticket:
  in one batch acknowledged with the event's sequence it creates the tables, inserts
  ticket TCK-<sequence> (status awaiting_human, priority from keywords) and a note of what
  it checked. Then it publishes what it checked, asks a human to confirm, and goes idle.
- A human reply ("message" from slack, or typed into the console: tui) resumes the open
  ticket: status investigating, the reply appended to the summary as a constraint, a note;
  one batch with the ack. Then it publishes its next step and goes idle.
- Anything else is acknowledged and ignored.

Deterministic: timestamps come from the event, not the clock, so a replay gives the same rows.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

try:
    from axon_agent import Agent, AxonError, Event, committed_at, log, payload_of
except ImportError:  # run from a checkout: the helper is in sample_agents/, one level up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from axon_agent import Agent, AxonError, Event, committed_at, log, payload_of

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS tickets(id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,"
    " status TEXT NOT NULL, priority TEXT NOT NULL, summary TEXT NOT NULL,"
    " updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS workflow_notes(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " ticket_id TEXT NOT NULL, note_type TEXT NOT NULL, content TEXT NOT NULL,"
    " created_at TEXT NOT NULL)",
]
HIGH = ("fails", "failed", "failing", "down", "error", "outage", "crash", "timeout", "broken")
LOW = ("question", "how do", "how can", "feature", "typo")
REPLY_CHANNELS = ("slack", "tui")  # where the support team answers; customers write elsewhere
NEXT_STEPS = [  # (keywords, next step), first match wins
    (("export", "csv", "download"), "inspect the export worker timeouts"),
    (("login", "password", "sso", "auth"), "check the auth service logs"),
    (("billing", "invoice", "payment", "charge"), "review the billing job runs"),
    (("slow", "timeout", "latency"), "profile the slow request path"),
]


def words_in(text: str, words: tuple[str, ...]) -> list[str]:
    low = text.lower()
    return [w for w in words if re.search(r"\b" + re.escape(w) + r"\b", low)]


def open_tickets(agent: Agent) -> int:
    """How many tickets are not yet resolved (0 before the first ticket exists)."""
    exists = agent.sql("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='tickets'")
    if not exists["rows"][0][0]:
        return 0
    rows = agent.sql("SELECT count(*) FROM tickets WHERE status != 'resolved'")["rows"]
    return int(rows[0][0])


def on_customer_message(agent: Agent, event: Event, payload: dict[str, Any]) -> None:
    text = str(payload.get("text", "")).strip()
    seq, now = int(event["sequence"]), committed_at(event)
    ticket = f"TCK-{seq}"
    customer = str(payload.get("customer_id") or event.get("author") or event.get("source"))
    signals = words_in(text, HIGH)
    priority = "high" if signals else "low" if words_in(text, LOW) else "normal"
    others = open_tickets(agent)
    checked = (
        f"failure signals: {', '.join(signals) if signals else 'none'} "
        f"-> priority {priority}; {others} other open ticket(s)"
    )
    agent.batch(
        [
            *[(sql, []) for sql in SCHEMA],
            (
                "INSERT OR IGNORE INTO tickets"
                "(id, customer_id, status, priority, summary, updated_at)"
                " VALUES (?, ?, 'awaiting_human', ?, ?, ?)",
                [ticket, customer, priority, text, now],
            ),
            (
                "INSERT INTO workflow_notes(ticket_id, note_type, content, created_at)"
                " VALUES (?, 'agent_check', ?, ?)",
                [ticket, f"Checked {checked}", now],
            ),
        ],
        ack=seq,
    )
    agent.publish(
        "message",
        {
            "text": f"Checked the report and the open tickets: {checked}. Opened {ticket}.",
            "ticket": ticket,
        },
    )
    agent.publish(
        "message",
        {
            "text": f"Can someone confirm {ticket} ({text!r})? Does it "
            "reproduce, and under which conditions?",
            "ticket": ticket,
        },
    )
    agent.idle()


def on_human_reply(agent: Agent, event: Event, payload: dict[str, Any]) -> None:
    reply = str(payload.get("text", "")).strip()
    seq, now = int(event["sequence"]), committed_at(event)
    try:
        if payload.get("ticket"):
            found = agent.sql("SELECT id, summary FROM tickets WHERE id = ?", [payload["ticket"]])
        else:
            found = agent.sql(
                "SELECT id, summary FROM tickets WHERE status = 'awaiting_human'"
                " ORDER BY updated_at DESC, rowid DESC LIMIT 1"
            )
    except AxonError as exc:  # no tickets table yet: nothing is waiting for a human
        log(f"triage: no ticket to resume ({exc.message})")
        found = {"rows": []}
    if not found["rows"]:
        log(f"triage: a reply at {seq} but no ticket awaits a human; ignored")
        agent.ack(seq)
        return
    ticket, summary = found["rows"][0]
    agent.batch(
        [
            (
                "UPDATE tickets SET status = 'investigating', summary = ?, updated_at = ?"
                " WHERE id = ?",
                [f"{summary} — constraint: {reply}", now, ticket],
            ),
            (
                "INSERT INTO workflow_notes(ticket_id, note_type, content, created_at)"
                " VALUES (?, 'human_reply', ?, ?)",
                [ticket, reply, now],
            ),
        ],
        ack=seq,
    )
    context = f"{summary} {reply}".lower()
    step = next(
        (s for keys, s in NEXT_STEPS if any(k in context for k in keys)),
        "reproduce the issue under the reported constraint",
    )
    agent.publish(
        "message",
        {"text": f"Resumed with the new constraint. Next step: {step}.", "ticket": ticket},
    )
    agent.idle()


def handle(agent: Agent, event: Event) -> None:
    payload = payload_of(event)
    if not isinstance(payload, dict):
        payload = {}
    kind, source, origin = event.get("event_type"), event.get("source"), event.get("origin")
    if kind == "message" and source in REPLY_CHANNELS:
        on_human_reply(agent, event, payload)
    elif kind == "message" and origin == "USER_EVENT":
        on_customer_message(agent, event, payload)
    else:
        agent.ack(int(event["sequence"]))


if __name__ == "__main__":
    Agent("triage").run(handle)
