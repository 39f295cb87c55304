"""ci: the CI-feed sample agent (native protocol, stdlib only, no model).

GitHub webhook events (EXTERNAL_EVENT from `github`) wake it. A completed `workflow_run` or
`check_run` that failed counts in the table `failures(repo, workflow, branch, count,
last_url, last_failed_at)`, one row per workflow and branch, and the agent says so in one
line; the first success after failures deletes the row and says the branch is green again.
Everything else (queued and in-progress runs, pushes) is acknowledged and ignored. Each
state write commits with its ack, so a re-delivered event never counts twice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from axon_agent import Agent, Event, committed_at, payload_of
except ImportError:  # run from a checkout: the helper is in sample_agents/, one level up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from axon_agent import Agent, Event, committed_at, payload_of

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS failures(repo TEXT NOT NULL, workflow TEXT NOT NULL,"
    " branch TEXT NOT NULL, count INTEGER NOT NULL, last_url TEXT NOT NULL,"
    " last_failed_at TEXT NOT NULL, PRIMARY KEY(repo, workflow, branch))"
)
FAILED = ("failure", "timed_out", "startup_failure")
KEY = "repo = ? AND workflow = ? AND branch = ?"


@dataclass(frozen=True)
class Run:
    """A finished CI run, whichever webhook reported it."""

    repo: str
    workflow: str
    branch: str
    conclusion: str
    url: str

    @property
    def key(self) -> list[str]:
        return [self.repo, self.workflow, self.branch]

    @property
    def where(self) -> str:
        return f"{self.workflow} on {self.repo}@{self.branch}"


def finished_run(event_type: str, payload: dict[str, Any]) -> Run | None:
    """The run a `workflow_run` or `check_run` webhook reports as completed, else None."""
    if payload.get("action") != "completed" or event_type not in ("workflow_run", "check_run"):
        return None
    run = payload.get(event_type) or {}
    branch = (
        run.get("head_branch")
        if event_type == "workflow_run"
        else (run.get("check_suite") or {}).get("head_branch")
    )
    return Run(
        repo=str((payload.get("repository") or {}).get("full_name", "?")),
        workflow=str(run.get("name", "?")),
        branch=str(branch or "?"),
        conclusion=str(run.get("conclusion") or "unknown"),
        url=str(run.get("html_url", "")),
    )


def failures_so_far(agent: Agent, run: Run) -> int:
    """How many failures in a row `run`'s workflow has on its branch (0: none recorded)."""
    agent.sql(SCHEMA)
    rows = agent.sql(f"SELECT count FROM failures WHERE {KEY}", run.key)["rows"]
    return int(rows[0][0]) if rows else 0


def on_failure(agent: Agent, event: Event, run: Run) -> None:
    count = failures_so_far(agent, run) + 1
    agent.batch(
        [
            (
                "INSERT INTO failures(repo, workflow, branch, count, last_url, last_failed_at)"
                " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT(repo, workflow, branch) DO UPDATE SET"
                " count = count + 1, last_url = excluded.last_url,"
                " last_failed_at = excluded.last_failed_at",
                [*run.key, run.url, committed_at(event)],
            )
        ],
        ack=int(event["sequence"]),
    )
    times = "for the first time" if count == 1 else f"{count} times in a row"
    agent.publish("message", {"text": f"✗ {run.where} failed {times}: {run.url}"})


def on_success(agent: Agent, event: Event, run: Run) -> None:
    count = failures_so_far(agent, run)
    if not count:
        agent.ack(int(event["sequence"]))
        return
    agent.batch([(f"DELETE FROM failures WHERE {KEY}", run.key)], ack=int(event["sequence"]))
    agent.publish("message", {"text": f"✓ {run.where} is green again after {count} failures"})


def handle(agent: Agent, event: Event) -> None:
    payload = payload_of(event)
    run = finished_run(str(event.get("event_type")), payload if isinstance(payload, dict) else {})
    if run is None:
        agent.ack(int(event["sequence"]))
    elif run.conclusion in FAILED:
        on_failure(agent, event, run)
    elif run.conclusion == "success":
        on_success(agent, event, run)
    else:  # cancelled, skipped, neutral: neither a failure nor a fix
        agent.ack(int(event["sequence"]))
    agent.idle()


if __name__ == "__main__":
    Agent("ci").run(handle)
