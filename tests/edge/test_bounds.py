"""Numbers beyond what the server can hold get a precise 4xx, never a 500, and change nothing.

Regressions of what the schemathesis run (tests/contract/test_schema.py) found: ``int()``
refuses strings of more than 4300 digits and SQLite integers beyond 64 bits, so such query
parameters, cursors and headers crashed requests with 500; a JSON number beyond a float's
range (``1e999``) was read as infinity, stored, and then served as ``Infinity``, which is
not JSON, in every later view; and OPTIONS /orders answered 405 allowing only POST.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    WEBHOOK_SECRET,
    JsonObject,
    add,
    create_order,
    history,
    list_orders,
    send,
    view,
)

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}
BEYOND_64_BITS = str(2**63)
THOUSANDS_OF_DIGITS = "9" * 5000
TOO_LARGE_FOR_A_FLOAT = b'{"pizza": {"name": "big", "weight": 1e999}}'


def assert_refused(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    if field is not None:
        assert response.json()["field"] == field


async def assert_unchanged(http: httpx.AsyncClient, before: JsonObject) -> None:
    after = await view(http, before["id"])
    assert (after["version"], after["items"]) == (before["version"], before["items"])
    assert len(await history(http, before["id"])) == before["version"]


@pytest.mark.parametrize("value", [BEYOND_64_BITS, THOUSANDS_OF_DIGITS])
async def test_query_numbers_too_large_get_422(client: httpx.AsyncClient, value: str) -> None:
    order_id = (await create_order(client))["id"]
    for path, name in [
        (f"/orders/{order_id}/history", "after"),
        (f"/orders/{order_id}/history", "limit"),
        ("/orders", "limit"),
        ("/orders", "cursor"),
    ]:
        response = await client.get(path, params={name: value})
        assert_refused(response, 422, name)


async def test_the_largest_cursor_and_version_are_still_numbers(client: httpx.AsyncClient) -> None:
    order_id = (await create_order(client))["id"]
    largest = str(2**63 - 1)
    assert (await list_orders(client, cursor=largest))["orders"][0]["id"] == order_id
    response = await client.get(f"/orders/{order_id}/history", params={"after": largest})
    assert response.status_code == 200
    assert response.json()["entries"] == []


@pytest.mark.parametrize("value", [BEYOND_64_BITS, THOUSANDS_OF_DIGITS])
async def test_an_if_match_too_large_gets_422(client: httpx.AsyncClient, value: str) -> None:
    order = await create_order(client)
    response = await send(client, order["id"], add({"name": "x"}), if_match=value)
    assert_refused(response, 422, "If-Match")
    await assert_unchanged(client, order)


async def test_a_number_beyond_a_float_is_refused(client: httpx.AsyncClient) -> None:
    created = await client.post("/orders", content=TOO_LARGE_FOR_A_FLOAT, headers=JSON)
    assert_refused(created, 422, "body")
    assert (await list_orders(client))["orders"] == []
    order = await create_order(client)
    event = b'{"type": "ADD_PIZZA", "data": ' + TOO_LARGE_FOR_A_FLOAT + b"}"
    sent = await client.post(f"/orders/{order['id']}/events", content=event, headers=JSON)
    assert_refused(sent, 422, "body")
    await assert_unchanged(client, order)


async def test_a_cloudevent_with_a_number_beyond_a_float_is_refused(
    client: httpx.AsyncClient,
) -> None:
    order = await create_order(client)
    attributes = {
        "specversion": "1.0", "type": "ADD_PIZZA", "source": "test", "subject": order["id"],
    }  # fmt: skip
    structured = json.dumps({**attributes, "id": str(uuid.uuid4()), "data": {}}).encode()
    structured = structured.replace(b'"data": {}', b'"data": ' + TOO_LARGE_FOR_A_FLOAT)
    response = await client.post(
        "/events", content=structured, headers={"content-type": "application/cloudevents+json"}
    )
    assert_refused(response, 422, "body")
    binary = {f"ce-{name}": value for name, value in attributes.items()}
    binary |= {"ce-id": str(uuid.uuid4()), "content-type": "application/json"}
    response = await client.post("/events", content=TOO_LARGE_FOR_A_FLOAT, headers=binary)
    assert_refused(response, 422, "body")
    await assert_unchanged(client, order)


@pytest.mark.parametrize("timestamp", ["9" * 400, THOUSANDS_OF_DIGITS])
async def test_a_webhook_timestamp_too_large_gets_401(
    server_factory: ServerFactory, timestamp: str
) -> None:
    server = server_factory("--webhook-secret", WEBHOOK_SECRET)
    headers = {
        "webhook-id": "1",
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1,AA==",
        **JSON,
    }
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/events", content=b"{}", headers=headers)
    assert_refused(response, 401)


async def test_options_on_orders_allows_both_methods(client: httpx.AsyncClient) -> None:
    response = await client.options("/orders")
    assert_refused(response, 405)
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["allow"].split(",")}


async def test_a_websocket_after_beyond_64_bits_is_closed_4422(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    order_id = (await create_order(client))["id"]
    url = f"{server.ws_url}/orders/{order_id}/ws?after={BEYOND_64_BITS}"
    async with connect(url) as socket:
        with pytest.raises(ConnectionClosed):
            await socket.recv()
        assert socket.close_code == 4422
