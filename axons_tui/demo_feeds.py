"""What happens to the demo's Axons while it runs, published as a client would: customers
writing from the web, GitHub's webhooks (`workflow_run` and `check_run`, with the fields
GitHub sends), and releases asking to go to production. The agents answer; the humans at
the console answer the agents.

`run_feeds` runs them all until cancelled. A `random.Random` with a fixed seed picks the CI
runs, so two demos tell the same story.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.backend import Backend
from engine.errors import AxonError
from engine.models import Draft

CUSTOMER_MESSAGES = (  # (seconds after the start, customer, text)
    (1.0, "cust_123", "Billing export fails for large CSV downloads."),
    (150.0, "cust_481", "SSO login loops back to the sign-in page since this morning."),
    (330.0, "cust_207", "Question: how do I add a second admin to our account?"),
)
SENDERS = ("octocat", "hubot", "mona")
ASSISTANT_ASKS = (  # (seconds after the start, who, text): words in capitals steer the agent
    (4.0, "ana", "What is in the work dir? Have a look and tell me. TOOL PACE"),
    (30.0, "ana", "Please write the approval file for the v1.4 release. RISKY PACE"),
)


@dataclass(frozen=True)
class Pipeline:
    """A CI job on one branch, and how often it fails (flaky ones often)."""

    repo: str
    kind: str  # "workflow_run" or "check_run"
    name: str
    branch: str
    failure_rate: float


PIPELINES = (
    Pipeline("acme/shop", "workflow_run", "tests", "main", 0.15),
    Pipeline("acme/shop", "workflow_run", "tests", "feature/checkout-v2", 0.7),
    Pipeline("acme/shop", "check_run", "lint", "feature/checkout-v2", 0.3),
    Pipeline("acme/api", "workflow_run", "build", "main", 0.1),
    Pipeline("acme/api", "check_run", "typecheck", "fix/login-timeout", 0.6),
    Pipeline("acme/api", "workflow_run", "integration", "main", 0.4),
)


class GitHubWebhooks:
    """An endless, repeatable series of (event type, payload) as GitHub posts them: each run
    announced when it starts, then reported with its conclusion."""

    def __init__(self, seed: int = 1024) -> None:
        self.rng = random.Random(seed)
        self.ids = itertools.count(9_120_001)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            pipeline = self.rng.choice(PIPELINES)
            run_id, sha = next(self.ids), f"{self.rng.getrandbits(160):040x}"
            failed = self.rng.random() < pipeline.failure_rate
            yield pipeline.kind, self._payload(pipeline, run_id, sha, None)
            yield (
                pipeline.kind,
                self._payload(pipeline, run_id, sha, "failure" if failed else "success"),
            )

    def _payload(
        self, p: Pipeline, run_id: int, sha: str, conclusion: str | None
    ) -> dict[str, Any]:
        repository = {"full_name": p.repo, "html_url": f"https://github.com/{p.repo}"}
        sender = {"login": self.rng.choice(SENDERS)}
        status = "completed" if conclusion else "in_progress"
        if p.kind == "workflow_run":
            run = {
                "id": run_id,
                "name": p.name,
                "head_branch": p.branch,
                "head_sha": sha,
                "event": "push",
                "status": status,
                "conclusion": conclusion,
                "run_number": run_id % 1000,
                "html_url": f"https://github.com/{p.repo}/actions/runs/{run_id}",
            }
            action = "completed" if conclusion else "requested"
            workflow = {"name": p.name, "path": f".github/workflows/{p.name}.yml"}
            return {"action": action, "workflow_run": run, "workflow": workflow,
                    "repository": repository, "sender": sender}  # fmt: skip
        check = {
            "id": run_id,
            "name": p.name,
            "head_sha": sha,
            "status": status,
            "conclusion": conclusion,
            "html_url": f"https://github.com/{p.repo}/runs/{run_id}",
            "check_suite": {"head_branch": p.branch, "head_sha": sha},
        }
        action = "completed" if conclusion else "created"
        return {"action": action, "check_run": check, "repository": repository, "sender": sender}


def webhook(event_type: str, payload: dict[str, Any]) -> Draft:
    """What the engine's webhook route makes of a GitHub delivery (contract §4.2)."""
    return Draft(event_type, orjson.dumps(payload).decode(), "github", "EXTERNAL_EVENT")


def deployment_request(version: str, environment: str = "production") -> Draft:
    """A GitHub `deployment` webhook: a release asks to go to `environment`."""
    deployment = {
        "id": 41_000 + int(version.rsplit(".", 1)[-1]),
        "ref": version,
        "environment": environment,
        "task": "deploy",
        "description": f"Release {version}",
        "creator": {"login": "release-bot"},
    }
    repository = {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop"}
    return webhook("deployment", {"action": "created", "deployment": deployment,
                                  "repository": repository})  # fmt: skip


def next_version(version: str) -> str:
    """v1.4.2 -> v1.4.3."""
    head, _, patch = version.rpartition(".")
    return f"{head}.{int(patch) + 1}"


async def feed_support(backend: Backend, axon_id: str) -> None:
    """Customers write from the web, now and then."""
    started = asyncio.get_running_loop().time()
    for at_s, customer, text in CUSTOMER_MESSAGES:
        await asyncio.sleep(max(0.0, started + at_s - asyncio.get_running_loop().time()))
        body = orjson.dumps({"text": text, "customer_id": customer}).decode()
        await backend.publish(axon_id, Draft("message", body, "web", "USER_EVENT"))


async def feed_assistant(
    backend: Backend, axon_id: str, asks: Sequence[tuple[float, str, str]] = ASSISTANT_ASKS
) -> None:
    """Someone asks the ACP assistant, from Slack: to look around (a tool call), then to write
    a file (a permission request that waits for a human at the console)."""
    started = asyncio.get_running_loop().time()
    for at_s, user, text in asks:
        await asyncio.sleep(max(0.0, started + at_s - asyncio.get_running_loop().time()))
        body = orjson.dumps({"text": text, "user": user}).decode()
        await backend.publish(axon_id, Draft("message", body, "slack", "USER_EVENT"))


async def feed_ci(backend: Backend, axon_id: str, every_s: float = 3.0) -> None:
    """A webhook every `every_s` seconds, for as long as the demo runs."""
    for event_type, payload in GitHubWebhooks():
        await backend.publish(axon_id, webhook(event_type, payload))
        await asyncio.sleep(every_s)


async def feed_deploy(
    backend: Backend, axon_id: str, first: str = "v1.4.2", pause_s: float = 45.0
) -> None:
    """A release asks to go to production; once a human has answered, the next one comes
    `pause_s` later."""
    version = first
    await asyncio.sleep(2.0)
    while True:
        await backend.publish(axon_id, deployment_request(version))
        while not await decided(backend, axon_id, version):  # a human's turn
            await asyncio.sleep(2.0)
        await asyncio.sleep(pause_s)
        version = next_version(version)


async def decided(backend: Backend, axon_id: str, version: str) -> bool:
    """Whether a human has answered the request for `version` (the deploy agent's table)."""
    sql = "SELECT count(*) FROM deployments WHERE version = ? AND decided_at IS NOT NULL"
    try:
        result = await backend.query(axon_id, sql, [version])
    except AxonError:
        return False
    return bool(result.rows[0][0])


async def run_feeds(backend: Backend, axon_ids: dict[str, str]) -> None:
    """Every feed of the demo, until cancelled."""
    async with asyncio.TaskGroup() as feeds:
        feeds.create_task(feed_support(backend, axon_ids["support"]))
        feeds.create_task(feed_ci(backend, axon_ids["ci"]))
        feeds.create_task(feed_deploy(backend, axon_ids["deploy"]))
        feeds.create_task(feed_assistant(backend, axon_ids["assistant"]))
