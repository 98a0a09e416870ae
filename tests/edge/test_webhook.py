"""POST /events: signed CloudEvents in both HTTP bindings move orders; bad ones change nothing.

DESIGN, HTTP table: "POST /events | CloudEvents webhook (structured or binary HTTP
binding), HMAC-signed | 2xx; 401 bad or missing signature; 4xx bad event".
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from orchestrator.edge.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import CONFIRM, WAITING_FOR_KITCHEN, create_order, send, view, wait_for_state

SECRET = "s3cret"


@pytest.fixture
def signed_server(server_factory: ServerFactory) -> ServerProcess:
    # The kitchen never answers, so only the webhook moves the order on.
    return server_factory("--webhook-secret", SECRET, "--kitchen-mode", "ignore")


async def waiting_order(http: httpx.AsyncClient) -> str:
    order_id: str = (await create_order(http))["id"]
    assert (await send(http, order_id, CONFIRM)).status_code == 200
    await wait_for_state(http, order_id, WAITING_FOR_KITCHEN, within=10.0)
    return order_id


def structured(order_id: str, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "type": "PIZZA_READY",
            "source": "/kitchen",
            "subject": order_id,
            "datacontenttype": "application/json",
            "data": {"oven": 3},
        }
    ).encode()


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    return {
        "content-type": "application/cloudevents+json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


async def test_a_signed_structured_event_moves_the_order(signed_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id)
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == 200, response.text
        assert response.json()["state"].startswith("deliverPizza")


async def test_a_signed_binary_event_moves_the_order(signed_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = b'{"oven": 3}'
        headers = {
            **signed(body),
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-type": "PIZZA_READY",
            "ce-source": "/kitchen",
            "ce-subject": order_id,
        }
        response = await http.post("/events", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["state"].startswith("deliverPizza")


async def test_a_repeated_event_id_is_applied_once(signed_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        body = structured(order_id, event_id="ready-once")
        first = await http.post("/events", content=body, headers=signed(body))
        second = await http.post("/events", content=body, headers=signed(body))
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        history = (await http.get(f"/orders/{order_id}/history")).json()["entries"]
        assert [e["type"] for e in history].count("PIZZA_READY") == 1


@pytest.mark.parametrize(
    "mangle",
    ["missing", "wrong secret", "stale", "future", "body changed", "not a number", "not ASCII"],
)
async def test_a_bad_signature_gets_401_and_changes_nothing(
    signed_server: ServerProcess, mangle: str
) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        before = await view(http, order_id)
        body = structured(order_id)
        headers = signed(body)
        if mangle == "missing":
            del headers[SIGNATURE_HEADER]
        elif mangle == "wrong secret":
            headers = signed(body, secret="guess")
        elif mangle == "stale":
            headers = signed(body, at=time.time() - 3600)  # a captured request, replayed
        elif mangle == "future":
            headers = signed(body, at=time.time() + 3600)
        elif mangle == "body changed":
            body = body.replace(b'"oven": 3', b'"oven": 4')
        elif mangle == "not a number":
            headers[TIMESTAMP_HEADER] = "yesterday"
        sent = httpx.Headers(headers)
        if mangle == "not ASCII":  # a Latin-1 byte, which made the comparison raise (500)
            raw = {k.encode(): v.encode() for k, v in headers.items()}
            sent = httpx.Headers(raw | {SIGNATURE_HEADER.encode(): b"sha256=\xe9"})
        response = await http.post("/events", content=body, headers=sent)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert await view(http, order_id) == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 422),
        (b'{"specversion": "1.0", "type": "PIZZA_READY", "source": "/k", "subject": "x"}', 422),
        (b'{"specversion": "1.0", "id": "1", "type": "PIZZA_READY", "source": "/k"}', 422),
    ],
)
async def test_a_malformed_event_is_refused(
    signed_server: ServerProcess, body: bytes, status: int
) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == status, response.text
        assert response.json()["field"] == "body"


@pytest.mark.parametrize("attribute", ["id", "subject", "source"])
async def test_an_attribute_that_is_not_unicode_text_is_refused(
    signed_server: ServerProcess, attribute: str
) -> None:
    """JSON's escape of a lone surrogate parses, but no database column or broker can hold
    it: 422 naming the body, not a 503 that asks for a retry."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        before = await view(http, order_id)
        event = json.loads(structured(order_id))
        event[attribute] = "\ud800"
        body = json.dumps(event).encode()
        assert b"\\ud800" in body
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "body"
        assert await view(http, order_id) == before


async def test_data_nested_deeper_than_an_http_body_may_be_is_refused(
    signed_server: ServerProcess,
) -> None:
    """The webhook's data nests no deeper than an event's in an HTTP body: deeper data was
    applied, and then every later turn of the order failed copying it."""
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        order_id = await waiting_order(http)
        before = await view(http, order_id)
        deepest: dict[str, object] = {"oven": 3}  # two levels: the object and its value
        for _ in range(29):  # 31 levels, as deep as an event's data in an HTTP body may be
            deepest = {"a": deepest}
        event = json.loads(structured(order_id))
        event["data"] = {"a": deepest}  # 32
        body = json.dumps(event).encode()
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == 422, response.text
        assert "nested deeper" in response.json()["detail"]
        assert await view(http, order_id) == before
        event["data"] = deepest
        body = json.dumps(event).encode()
        response = await http.post("/events", content=body, headers=signed(body))
        assert response.status_code == 200, response.text


async def test_an_unknown_order_or_an_event_not_allowed_is_refused(
    signed_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=signed_server.url) as http:
        unknown = structured("no-such-order")
        assert (
            await http.post("/events", content=unknown, headers=signed(unknown))
        ).status_code == 404
        order_id = (await create_order(http))["id"]
        early = structured(order_id)  # PIZZA_READY before the order was confirmed
        response = await http.post("/events", content=early, headers=signed(early))
        assert response.status_code == 409
        assert (await view(http, order_id))["version"] == 1
