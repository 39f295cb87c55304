"""The API against its own `/openapi.json`: schemathesis generates well over a thousand
requests (valid and invalid ones) to a live `axons serve` over TCP, and every response must
be a documented status with a body that matches the schema; never a 5xx, never a crash.

Left out of generation: the SSE routes (a stream never ends; `test_http_streams.py` covers
them) and the agent routes that start processes (generated specs would run generated
commands).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.http_support import ServerProcess, make_token, message_body, running_server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation and generation mode; raise it for a longer hunt (AXONS_FUZZ_EXAMPLES=500).
EXAMPLES_PER_OPERATION = int(os.environ.get("AXONS_FUZZ_EXAMPLES", "45"))
MIN_REQUESTS = 1000

# `POST /v1/axons/import` takes JSON Lines: generated strings go out as text.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


@dataclass
class Target:
    server: ServerProcess
    token: str
    axons: list[str]
    schema: Any
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    home = tmp_path_factory.mktemp("schema") / "home"
    token = make_token(home, "fuzzer", "admin")
    with running_server(home) as server, server.http(token) as http:
        axons = []
        for i in range(4):  # real Axons, so generated calls also reach the engine, not only 404s
            axon_id = http.post("/v1/axons", json={"name": f"fuzz-{i}"}).json()["id"]
            seeds = {"events": [message_body(f"seed {n}") for n in range(5)]}
            http.post(f"/v1/axons/{axon_id}/publish/batch", json=seeds).raise_for_status()
            http.post(
                f"/v1/axons/{axon_id}/sql/query",
                json={"sql": "CREATE TABLE notes(n INTEGER, t TEXT)"},
            ).raise_for_status()
            axons.append(axon_id)
        schema = (
            schemathesis.openapi.from_url(  # over TCP the description needs a token too
                f"{server.url}/openapi.json", headers={"Authorization": f"Bearer {token}"}
            )
            .exclude(path_regex=r"/subscribe/sse$")
            .exclude(method="POST", path_regex=r"/agents(/|$)")
        )
        yield Target(server, token, axons, schema)
        # After it all: still serving, every log intact.
        assert http.get("/healthz").json()["ok"] is True
        for axon_id in axons:
            assert http.get(f"/v1/axons/{axon_id}/verify").json()["ok"] is True
        assert server.running


def operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    assert ops, "no operations in /openapi.json"
    return ops


def test_openapi_document_lists_the_contract_routes(target: Target) -> None:
    with target.server.http(target.token) as http:
        document = http.get("/openapi.json").json()
    paths = document["paths"]
    for path, method in [
        ("/v1/axons", "post"),
        ("/v1/axons", "get"),
        ("/v1/axons/{id}", "get"),
        ("/v1/axons/{id}", "post"),
        ("/v1/axons/{id}", "delete"),
        ("/v1/axons/{id}/publish", "post"),
        ("/v1/axons/{id}/subscribe/sse", "get"),
        ("/v1/axons/{id}/events", "get"),
        ("/v1/axons/{id}/sql/query", "post"),
        ("/v1/axons/{id}/sql/batch", "post"),
        ("/v1/axons/{id}/publish/batch", "post"),
        ("/v1/subscribe/sse", "get"),
        ("/v1/axons/{id}/verify", "get"),
        ("/v1/axons/{id}/export", "get"),
        ("/v1/axons/import", "post"),
        ("/v1/axons/{id}/fork", "post"),
        ("/v1/axons/{id}/webhook/{source}", "post"),
        ("/healthz", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not documented"
        responses = paths[path][method]["responses"]
        assert {"200", "400", "401", "403", "404", "413", "422", "503"} <= set(responses)


def fuzz(target: Target, session: requests.Session, operation: Any, mode: GenerationMode) -> None:
    """Generated cases of one operation in one mode, each sent and checked."""
    auth = {"authorization": f"Bearer {target.token}"}
    strategy = operation.as_strategy(mode, headers=auth)
    if "id" in {p.name for p in operation.path_parameters} and operation.method.upper() != "DELETE":
        # Half the calls on a real Axon (deleting those would end the useful half).
        strategy = st.one_of(
            strategy,
            st.sampled_from(target.axons).flatmap(
                lambda axon_id: operation.as_strategy(
                    mode, headers=auth, path_parameters={"id": axon_id}
                )
            ),
        )
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    name = f"{operation.method.upper()} {operation.path} {mode.value}"

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        response = case.call(base_url=target.server.url, session=session, timeout=60)
        target.sent[name] += 1
        target.statuses[response.status_code] += 1
        case.validate_response(response, checks=checks)

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): no negative cases exist.
        assert mode is GenerationMode.NEGATIVE, name


def test_generated_requests_get_documented_answers(target: Target) -> None:
    session = requests.Session()
    for operation in operations(target.schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(target, session, operation, mode)

    total = sum(target.sent.values())
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(target.statuses.items()))
    print(
        f"\nschemathesis: {total} requests over {len(target.sent)} operation/mode pairs; "
        f"statuses {summary}"
    )
    assert total >= MIN_REQUESTS, target.sent
    assert not any(status >= 500 for status in target.statuses)
    # The generator reached the engine, not only the validation layer.
    assert target.statuses[200] >= 100, target.statuses


def test_requests_without_a_token_are_refused_everywhere(target: Target) -> None:
    """Every generated operation, with no token or a wrong one: 401, never anything else."""
    with httpx.Client(base_url=target.server.url, timeout=60) as http:
        for operation in operations(target.schema):
            if operation.path == "/healthz":
                continue
            path = (
                operation.path.replace("{id}", target.axons[0])
                .replace("{source}", "github")
                .replace("{sequence}", "1")
                .replace("{name}", "agent")
                .replace("{action}", "start")
            )
            for headers in ({}, {"Authorization": "Bearer axt_wrong"}):
                r = http.request(operation.method.upper(), path, headers=headers, json={})
                assert r.status_code == 401, f"{operation.method} {path}: {r.status_code} {r.text}"
                assert r.json()["error"]["code"] == "unauthorized"
