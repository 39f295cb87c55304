"""deploy: the deploy-approval sample agent (native protocol, stdlib only, no model).

- A GitHub `deployment` webhook (EXTERNAL_EVENT, action `created`) asks for a release to go
  to an environment: the agent records it in `deployments(version, environment, status,
  requested_by, decided_by, decided_at)` as `awaiting_approval`, asks "Deploy v1.4.2 to
  production? Reply yes or no." and goes idle: it sleeps until a human answers.
- A human message (USER_EVENT `message`, from the console or anywhere) answers the latest
  request that waits: yes approves it, no rejects it, each recorded with who decided and
  when, in one batch with the ack; anything else gets the question again.
- Anything else is acknowledged and ignored.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

try:
    from axon_agent import Agent, Event, committed_at, payload_of
except ImportError:  # run from a checkout: the helper is in sample_agents/, one level up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from axon_agent import Agent, Event, committed_at, payload_of

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS deployments(version TEXT NOT NULL, environment TEXT NOT NULL,"
    " status TEXT NOT NULL, requested_by TEXT NOT NULL, requested_at TEXT NOT NULL,"
    " decided_by TEXT, decided_at TEXT, PRIMARY KEY(version, environment))"
)
YES = re.compile(r"^\s*(y|yes|approve[d]?|ok|go|ship it)\b", re.IGNORECASE)
NO = re.compile(r"^\s*(n|no|reject(ed)?|stop|cancel)\b", re.IGNORECASE)


def question(version: str, environment: str) -> str:
    return f"Deploy {version} to {environment}? Reply yes or no."


def on_deployment(agent: Agent, event: Event, payload: dict[str, Any]) -> None:
    deployment = payload.get("deployment") or {}
    version = str(deployment.get("ref") or "?")
    environment = str(deployment.get("environment") or "production")
    requested_by = str((deployment.get("creator") or {}).get("login") or event.get("source"))
    agent.batch(
        [
            (SCHEMA, []),
            (
                "INSERT OR REPLACE INTO deployments(version, environment, status, requested_by,"
                " requested_at) VALUES (?, ?, 'awaiting_approval', ?, ?)",
                [version, environment, requested_by, committed_at(event)],
            ),
        ],
        ack=int(event["sequence"]),
    )
    agent.publish("message", {"text": question(version, environment)})


def waiting_request(agent: Agent) -> tuple[str, str] | None:
    """The latest (version, environment) that waits for a human, if any."""
    exists = agent.sql("SELECT count(*) FROM sqlite_master WHERE name = 'deployments'")
    if not exists["rows"][0][0]:
        return None
    rows = agent.sql(
        "SELECT version, environment FROM deployments WHERE status = 'awaiting_approval'"
        " ORDER BY requested_at DESC, rowid DESC LIMIT 1"
    )["rows"]
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def on_answer(agent: Agent, event: Event, payload: dict[str, Any]) -> None:
    seq = int(event["sequence"])
    request = waiting_request(agent)
    if request is None:
        agent.ack(seq)
        return
    version, environment = request
    text = str(payload.get("text", ""))
    status = "approved" if YES.match(text) else "rejected" if NO.match(text) else None
    if status is None:
        agent.ack(seq)
        again = f"I need a yes or a no. {question(version, environment)}"
        agent.publish("message", {"text": again})
        return
    who = str(event.get("author") or event.get("source"))
    agent.batch(
        [
            (
                "UPDATE deployments SET status = ?, decided_by = ?, decided_at = ?"
                " WHERE version = ? AND environment = ?",
                [status, who, committed_at(event), version, environment],
            )
        ],
        ack=seq,
    )
    outcome = (
        f"deploying {version} to {environment} now"
        if status == "approved"
        else f"{version} stays off {environment}"
    )
    agent.publish("message", {"text": f"{status.capitalize()} by {who}: {outcome}."})


def handle(agent: Agent, event: Event) -> None:
    payload = payload_of(event)
    if not isinstance(payload, dict):
        payload = {}
    kind, origin = event.get("event_type"), event.get("origin")
    if kind == "deployment" and origin == "EXTERNAL_EVENT" and payload.get("action") == "created":
        on_deployment(agent, event, payload)
    elif kind == "message" and origin == "USER_EVENT":
        on_answer(agent, event, payload)
    else:
        agent.ack(int(event["sequence"]))
    agent.idle()


if __name__ == "__main__":
    Agent("deploy").run(handle)
