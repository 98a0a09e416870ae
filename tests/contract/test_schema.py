"""The API checked against its own OpenAPI document, by schemathesis, on a live server.

docs/design.md, "The HTTP contract": ``/openapi.json`` describes the API. Schemathesis loads
it from a real server subprocess and sends every operation generated requests, valid and
not, each response checked: no 5xx, a documented status, the documented content type,
headers and body schema, invalid input refused with a 4xx, and (with a token) no access
without one. A stateful run then chains operations through the document's links.

Not run: ``positive_data_acceptance``, because valid-by-schema requests may rightly be
refused for reasons no schema can state (a stale ``If-Match``, a reused Idempotency-Key, an
event the order's state does not allow). And the WebSockets (``/orders/{order_id}/ws`` and
the firehose ``/ws``) are excluded: each is documented as the HTTP upgrade that opens it,
but schemathesis speaks only plain HTTP, so it would send a bare GET and judge the 404
Starlette answers to a request that is not an upgrade; tests/edge/test_ws.py and
test_firehose.py cover them.

The runs are bounded and reproducible: a fixed seed, deterministic generation, a few dozen
examples per operation and no shrinking.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.engine import Status, events
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import ServerFactory
from tests.helpers import HAWAII, WEBHOOK_SECRET

TOKEN = "contract-token"
SEED = 20240601
MAX_EXAMPLES = 50
STATEFUL_STEPS = 6
WEBSOCKETS = ("/orders/{order_id}/ws", "/ws")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
]


def load(
    url: str, *, token: str | None, order_id: str | None = None, stateful: bool = False
) -> OpenApiSchema:
    """The server's own document, with the checks and generation bounds of this module."""
    checks: dict[str, Any] = {"enabled": False, **{name: {"enabled": True} for name in CHECKS}}
    settings: dict[str, Any] = {}
    if order_id is not None:
        settings["parameters"] = {"path.order_id": order_id}
    if token is not None:
        # Sent as the `bearer` scheme's credentials; ignored_auth then also sends each
        # operation without them and with wrong ones, expecting 401.
        settings["auth"] = {"openapi": {"bearer": {"bearer": token}}}
        checks["ignored_auth"] = {"enabled": True}
    config = schemathesis.Config.from_dict(
        {
            **settings,
            "seed": SEED,
            # Operations disabled here stay out of the stateful run too.
            "operations": [{"include-path": path, "enabled": False} for path in WEBSOCKETS],
            "checks": checks,
            # The pytest runs below are the examples, coverage and fuzzing phases; the
            # engine run of test_stateful is the stateful phase alone.
            "phases": {
                "examples": {"enabled": not stateful},
                "coverage": {"enabled": not stateful},
                "fuzzing": {"enabled": not stateful},
                "stateful": {"enabled": stateful, "max-steps": STATEFUL_STEPS},
            },
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "no-shrink": True,
                "database": "none",
                # No made-up tokens: without a server token they mean nothing, with one
                # ignored_auth probes the wrong and missing cases.
                "with-security-parameters": False,
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    assert isinstance(schema, OpenApiSchema)
    return schema


@pytest.fixture(autouse=True)
def node_id_shim(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 reads ``Node._nodeid``, which pytest 9.2 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# One real order of each bundled chart that can be created over HTTP.
FIRST_BODIES = {
    "pizza": {"pizza": HAWAII},
    "payment": {
        "chart": "payment",
        "products": [{"name": "tea", "price": 3.5}],
        "supplier": "Acme",
        "address": "1 Main St",
    },
}


@pytest.fixture(params=sorted(FIRST_BODIES))
def open_api(request: pytest.FixtureRequest, server_factory: ServerFactory) -> OpenApiSchema:
    """No token, and every operation on an order aimed at one real order (of each chart in
    turn), so that its checks go past the 404 of an unknown id (the other runs make up
    ids). The create body is the document's oneOf of every loaded chart's."""
    server = server_factory()
    body = FIRST_BODIES[request.param]
    created = httpx.post(f"{server.url}/orders", json=body, timeout=10.0)
    assert created.status_code == 201, created.text
    return load(server.url, token=None, order_id=created.json()["id"])


@pytest.fixture
def linked_api(server_factory: ServerFactory) -> OpenApiSchema:
    """No token, ids from the links: POST /orders's answer names the order to act on."""
    return load(server_factory().url, token=None, stateful=True)


@pytest.fixture
def guarded_api(server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> OpenApiSchema:
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_API_TOKEN", TOKEN)
    monkeypatch.setitem(os.environ, "ORCHESTRATOR_WEBHOOK_SECRET", WEBHOOK_SECRET)
    return load(server_factory().url, token=TOKEN)


open_schema = schemathesis.pytest.from_fixture("open_api")
guarded_schema = schemathesis.pytest.from_fixture("guarded_api")


@open_schema.parametrize()
def test_without_a_token(case: Case[Any]) -> None:
    case.call_and_validate()


@guarded_schema.parametrize()
def test_with_a_token(case: Case[Any]) -> None:
    case.call_and_validate()


def test_stateful(linked_api: OpenApiSchema) -> None:
    """Chains of calls through the document's links, run by schemathesis's own engine:
    the server's state moves on between chains, which Hypothesis's plain state machine
    reports as flaky generation, and the engine expects."""
    problems: list[str] = []
    scenarios = 0
    for event in schemathesis.engine.from_schema(linked_api).execute():
        scenarios += isinstance(event, events.ScenarioFinished)
        if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            problems += [
                f"{check.name}: {info.failure.title}\n{info.code_sample}"
                for nodes in event.recorder.checks.values()
                for check in nodes
                if (info := check.failure_info) is not None
            ]
        elif isinstance(event, events.NonFatalError):
            problems.append(str(event.info))
        elif isinstance(event, events.FatalError):
            problems.append(repr(event.exception))
    assert not problems, "\n\n".join(problems)
    assert scenarios > 0, "the stateful phase ran no scenario"
