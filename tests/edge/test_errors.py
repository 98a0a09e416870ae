"""Bad requests through a real server: every error is an RFC 9457 problem and changes nothing.

Covers the error answers of docs/design.md, "The HTTP contract": 404 unknown order or route,
405 wrong method, 409 event not allowed (with ``allowed``) or refused, 412 is in
test_orders.py, 413 body over the size limit, 422 malformed body, header or query naming the
``field``. After each bad request on an order, the order's version, items and history are
unchanged, the answer is never a 5xx, and the order still takes a good event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    CONFIRM,
    HAWAII,
    MARGHERITA,
    UNKNOWN_ID,
    WAITING_FOR_KITCHEN,
    JsonObject,
    add,
    create_order,
    history,
    list_orders,
    view,
    wait_for_state,
)

PROBLEM = "application/problem+json"


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


async def post_raw(
    client: httpx.AsyncClient, path: str, content: bytes, headers: dict[str, Any] | None = None
) -> httpx.Response:
    return await client.post(
        path, content=content, headers={"content-type": "application/json", **(headers or {})}
    )


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> JsonObject:
    """An RFC 9457 problem document with the given status (and ``field`` when named)."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM)
    body: JsonObject = response.json()
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


async def assert_unchanged(client: httpx.AsyncClient, before: JsonObject) -> None:
    """docs/design.md, actor rule 4 (all or nothing): nothing of a refused request is visible."""
    after = await view(client, before["id"])
    assert after["version"] == before["version"]
    assert after["items"] == before["items"]
    assert after["state"] == before["state"]
    assert after["updatedAt"] == before["updatedAt"]
    assert len(await history(client, before["id"])) == before["version"]


async def assert_no_orders(client: httpx.AsyncClient) -> None:
    assert (await list_orders(client))["orders"] == []


@pytest.fixture
async def order(client: httpx.AsyncClient) -> JsonObject:
    """A fresh order in orderPizza at version 1 with items [HAWAII]."""
    return await create_order(client)


VALID_ADD = encode(add(MARGHERITA))

BAD_EVENTS = [
    pytest.param(encode({"type": "EAT_PIZZA", "data": {}}), {}, 422, "type", id="unknown-type"),
    pytest.param(encode({"type": "add_pizza", "data": {}}), {}, 422, "type", id="type-wrong-case"),
    pytest.param(
        encode({"type": "done.invoke.sendOrderToKitchen"}), {}, 422, "type", id="platform-done"
    ),
    pytest.param(
        encode({"type": "error.invoke.sendOrderToKitchen"}), {}, 422, "type", id="platform-error"
    ),
    pytest.param(
        encode({"type": "after.waitingForPizzaToBeBaked.kitchenTimeout"}),
        {},
        422,
        "type",
        id="platform-timer",
    ),
    pytest.param(encode({"data": {"pizza": HAWAII}}), {}, 422, "type", id="missing-type"),
    pytest.param(encode({"type": 5, "data": {}}), {}, 422, "type", id="type-number"),
    pytest.param(encode({"type": None}), {}, 422, "type", id="type-null"),
    pytest.param(encode({"type": ["ADD_PIZZA"]}), {}, 422, "type", id="type-list"),
    pytest.param(encode({"type": ""}), {}, 422, "type", id="type-empty"),
    pytest.param(encode({"type": "ADD_PIZZA", "data": [HAWAII]}), {}, 422, "data", id="data-list"),
    pytest.param(encode({"type": "ADD_PIZZA", "data": "x"}), {}, 422, "data", id="data-string"),
    pytest.param(encode({"type": "ADD_PIZZA", "data": None}), {}, 422, "data", id="data-null"),
    pytest.param(encode({"type": "ADD_PIZZA", "data": 3}), {}, 422, "data", id="data-number"),
    pytest.param(
        encode({**add(HAWAII), "extra": 1}), {}, 422, "extra", id="unknown-top-level-field"
    ),
    pytest.param(
        encode({"type": "ADD_PIZZA", "pizza": HAWAII}), {}, 422, "pizza", id="pizza-at-top-level"
    ),
    pytest.param(encode(add("hawaii")), {}, 422, "data.pizza", id="pizza-string"),
    pytest.param(encode(add([HAWAII])), {}, 422, "data.pizza", id="pizza-list"),
    pytest.param(encode(add(None)), {}, 422, "data.pizza", id="pizza-null"),
    pytest.param(
        encode({"type": "ADD_PIZZA", "data": {}}), {}, 422, "data.pizza", id="pizza-missing"
    ),
    pytest.param(
        encode({"type": "REMOVE_PIZZA", "data": {"pizza": "hawaii"}}),
        {},
        422,
        "data.pizza",
        id="remove-pizza-string",
    ),
    pytest.param(b'{"type": "ADD_PIZZA", "data": ', {}, 422, "body", id="invalid-json"),
    pytest.param(b"", {}, 422, "body", id="empty-body"),
    pytest.param(encode([add(HAWAII)]), {}, 422, "body", id="json-array"),
    pytest.param(b'"ADD_PIZZA"', {}, 422, "body", id="json-string"),
    pytest.param(b"null", {}, 422, "body", id="json-null"),
    pytest.param(b"\xff\xfe\xfa\xfb", {}, 422, "body", id="not-utf8"),
    # JSON is exchanged as UTF-8 (RFC 8259, section 8.1).
    pytest.param(VALID_ADD.decode().encode("utf-16"), {}, 422, "body", id="utf16"),
    pytest.param(b"\xef\xbb\xbf" + VALID_ADD, {}, 422, "body", id="utf8-bom"),
    # NaN is not JSON (RFC 8259); accepting it would store a view no JSON parser can read.
    pytest.param(
        b'{"type": "ADD_PIZZA", "data": {"pizza": {"name": "hawaii", "size": NaN}}}',
        {},
        422,
        None,
        id="json-nan",
    ),
    pytest.param(VALID_ADD, {"If-Match": "abc"}, 422, "If-Match", id="if-match-word"),
    pytest.param(VALID_ADD, {"If-Match": "-1"}, 422, "If-Match", id="if-match-negative"),
    pytest.param(VALID_ADD, {"If-Match": "1.5"}, 422, "If-Match", id="if-match-fraction"),
    pytest.param(VALID_ADD, {"If-Match": ""}, 422, "If-Match", id="if-match-empty"),
    pytest.param(VALID_ADD, {"If-Match": b"\xb2"}, 422, "If-Match", id="if-match-superscript"),
    pytest.param(
        VALID_ADD, {"Idempotency-Key": "k" * 201}, 422, "Idempotency-Key", id="key-201-chars"
    ),
    pytest.param(VALID_ADD, {"Idempotency-Key": ""}, 422, "Idempotency-Key", id="key-empty"),
    pytest.param(VALID_ADD, {"Idempotency-Key": "a\tb"}, 422, "Idempotency-Key", id="key-tab"),
]


@pytest.mark.parametrize(("content", "headers", "status", "field"), BAD_EVENTS)
async def test_bad_event_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    order: JsonObject,
    content: bytes,
    headers: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    """HTTP table row POST /orders/{id}/events: 422 bad body naming the field (unknown
    fields, missing or non-string type, non-object data or pizza, a type the chart does not
    know, a platform event type, a bad If-Match or Idempotency-Key); nothing changes."""
    response = await post_raw(client, f"/orders/{order['id']}/events", content, headers)
    assert_problem(response, status, field)
    await assert_unchanged(client, order)
    good = await client.post(f"/orders/{order['id']}/events", json=add(MARGHERITA))
    assert good.status_code == 200, good.text
    assert good.json()["version"] == 2
    assert good.json()["items"] == [HAWAII, MARGHERITA]


async def test_unknown_event_type_lists_the_known_ones(
    client: httpx.AsyncClient, order: JsonObject
) -> None:
    """docs/design.md, bodies: a type the chart does not know is 422 naming "type"."""
    response = await client.post(f"/orders/{order['id']}/events", json={"type": "EAT_PIZZA"})
    problem = assert_problem(response, 422, "type")
    assert "EAT_PIZZA" in problem["detail"]
    await assert_unchanged(client, order)


async def test_remove_pizza_not_in_the_order_is_409(
    client: httpx.AsyncClient, order: JsonObject
) -> None:
    """docs/design.md, bodies: REMOVE_PIZZA with no equal item: 409, nothing changes."""
    response = await client.post(
        f"/orders/{order['id']}/events",
        json={"type": "REMOVE_PIZZA", "data": {"pizza": MARGHERITA}},
    )
    assert_problem(response, 409)
    await assert_unchanged(client, order)


async def test_event_not_allowed_in_state_is_409_with_allowed(
    server_factory: ServerFactory,
) -> None:
    """HTTP table row POST /orders/{id}/events: 409 not allowed in this state, the body
    lists the ``allowed`` events (the kitchen never answers, so the order stays in
    bakePizza.waitingForPizzaToBeBaked)."""
    server = server_factory("--kitchen-mode", "ignore")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        order = await create_order(client)
        confirmed = await client.post(
            f"/orders/{order['id']}/events", json={"type": "CONFIRM_PIZZA"}
        )
        assert confirmed.status_code == 200
        before = await wait_for_state(client, order["id"], WAITING_FOR_KITCHEN)
        for event in (add(MARGHERITA), {"type": "REMOVE_PIZZA", "data": {"pizza": HAWAII}}):
            response = await client.post(f"/orders/{order['id']}/events", json=event)
            problem = assert_problem(response, 409)
            assert problem["allowed"] == before["nextEvents"]
            assert "PIZZA_READY" in problem["allowed"]
            assert event["type"] not in problem["allowed"]
            await assert_unchanged(client, before)
        again = await client.post(f"/orders/{order['id']}/events", json={"type": "CONFIRM_PIZZA"})
        assert "CONFIRM_PIZZA" not in assert_problem(again, 409)["allowed"]
        await assert_unchanged(client, before)


async def test_event_after_done_is_409_with_nothing_allowed(
    client: httpx.AsyncClient, order: JsonObject
) -> None:
    """docs/design.md: done is final; any event there is 409 and ``allowed`` is empty."""
    confirmed = await client.post(f"/orders/{order['id']}/events", json={"type": "CONFIRM_PIZZA"})
    assert confirmed.status_code == 200
    done = await wait_for_state(client, order["id"], "done")
    for event in (add(MARGHERITA), {"type": "CONFIRM_PIZZA"}, {"type": "CANCEL"}):
        response = await client.post(f"/orders/{order['id']}/events", json=event)
        assert assert_problem(response, 409)["allowed"] == []
    await assert_unchanged(client, done)


async def test_a_service_event_from_a_client_is_403(server_factory: ServerFactory) -> None:
    """Issue 16, item 6: the kitchen's and the delivery's answers (the pizza chart's
    serviceEvents) are refused over the command API, with a problem naming the event, in
    the state that waits for them (PIZZA_READY) as in any other; nothing changes."""
    server = server_factory("--kitchen-mode", "ignore")
    async with httpx.AsyncClient(base_url=server.url) as client:
        created = (await client.post("/orders", json={"pizza": HAWAII})).json()
        path = f"/orders/{created['id']}"
        assert (await client.post(f"{path}/events", json=CONFIRM)).status_code == 200
        before = await wait_for_state(client, created["id"], WAITING_FOR_KITCHEN)
        for event in ("PIZZA_READY", "PIZZA_DELIVERED", "PIZZA_CANCELLED"):
            response = await client.post(f"{path}/events", json={"type": event})
            problem = assert_problem(response, 403, "type")
            assert (problem["event"], problem["error"]) == (event, "ServiceOnly")
            assert event in problem["detail"]
        await assert_unchanged(client, before)


async def test_unknown_order_is_404_everywhere(client: httpx.AsyncClient) -> None:
    """HTTP table rows GET /orders/{id}, POST /orders/{id}/events, GET .../history: 404."""
    assert_problem(await client.get(f"/orders/{UNKNOWN_ID}"), 404)
    assert_problem(await client.get(f"/orders/{UNKNOWN_ID}/history"), 404)
    response = await client.post(f"/orders/{UNKNOWN_ID}/events", json=add(HAWAII))
    assert_problem(response, 404)
    response = await client.post(
        f"/orders/{UNKNOWN_ID}/events",
        json=add(HAWAII),
        headers={"Idempotency-Key": "to-nowhere", "If-Match": "1"},
    )
    assert_problem(response, 404)
    # An event for an unknown order does not bring it into being.
    assert_problem(await client.get(f"/orders/{UNKNOWN_ID}"), 404)
    assert_problem(await client.get("/orders/not-even-a-uuid"), 404)
    await assert_no_orders(client)


BAD_CREATES = [
    pytest.param(encode({}), {}, "pizza", id="missing-pizza"),
    pytest.param(encode({"pizza": "hawaii"}), {}, "pizza", id="pizza-string"),
    pytest.param(encode({"pizza": None}), {}, "pizza", id="pizza-null"),
    pytest.param(encode({"pizza": [HAWAII]}), {}, "pizza", id="pizza-list"),
    pytest.param(encode({"pizza": 1}), {}, "pizza", id="pizza-number"),
    pytest.param(encode({"pizza": HAWAII, "extra": 1}), {}, "extra", id="unknown-field"),
    pytest.param(encode({"pizza": HAWAII, "items": [HAWAII]}), {}, "items", id="items-field"),
    pytest.param(encode({"pizza": HAWAII, "chart": "nope"}), {}, "chart", id="unknown-chart"),
    pytest.param(encode({"pizza": HAWAII, "chart": 5}), {}, "chart", id="chart-number"),
    pytest.param(b'{"pizza": {"name": "hawaii"', {}, "body", id="invalid-json"),
    pytest.param(b"", {}, "body", id="empty-body"),
    pytest.param(encode([{"pizza": HAWAII}]), {}, "body", id="json-array"),
    pytest.param(b'{"pizza": {"name": NaN}}', {}, None, id="json-nan"),
    pytest.param(
        encode({"pizza": HAWAII}),
        {"Idempotency-Key": "k" * 201},
        "Idempotency-Key",
        id="key-201-chars",
    ),
]


@pytest.mark.parametrize(("content", "headers", "field"), BAD_CREATES)
async def test_bad_create_is_422_and_creates_nothing(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], field: str | None
) -> None:
    """HTTP table row POST /orders and docs/design.md, bodies: create without pizza, pizza not an
    object, an unknown field or chart, or a malformed body: 422 naming the field."""
    response = await post_raw(client, "/orders", content, headers)
    assert_problem(response, 422, field)
    assert "location" not in response.headers
    await assert_no_orders(client)


async def test_body_over_the_limit_is_413(server_factory: ServerFactory) -> None:
    """docs/design.md, auth and limits: bodies over a size limit get 413 (``--max-body-bytes``),
    whether the length is declared or the body is streamed; nothing changes."""
    server = server_factory("--max-body-bytes", "1024")
    big: JsonObject = {"name": "hawaii", "note": "x" * 2000}
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        assert_problem(await client.post("/orders", json={"pizza": big}), 413)
        await assert_no_orders(client)
        order = await create_order(client)
        path = f"/orders/{order['id']}/events"
        assert_problem(await client.post(path, json=add(big)), 413)
        await assert_unchanged(client, order)

        async def chunks() -> AsyncIterator[bytes]:
            body = encode(add(big))
            for start in range(0, len(body), 256):
                yield body[start : start + 256]

        streamed = await client.post(
            path, content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert_problem(streamed, 413)
        await assert_unchanged(client, order)
        fits: JsonObject = {"name": "hawaii", "note": "x" * 800}
        accepted = await client.post(path, json=add(fits))
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["items"] == [HAWAII, fits]


async def raw_post(server: ServerProcess, path: str, head: str, body: bytes) -> bytes:
    """Send a POST's head and ``body`` on a raw connection; the response, or b"" when the
    server closes without one. Lets a test send what an HTTP client will not."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{head}\r\n".encode() + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/orders", "/orders/some-id/events", "/events"])
async def test_a_declared_length_over_the_limit_is_refused_at_once(
    server: ServerProcess, path: str
) -> None:
    """A Content-Length over --max-body-bytes gets 413 before any of the body is read, on
    every endpoint that takes one (the webhook read the whole body first)."""
    head = "content-type: application/json\r\ncontent-length: 100000000\r\n"
    response = await raw_post(server, path, head, b"")
    assert response.startswith(b"HTTP/1.1 413 "), response[:200]
    assert b"application/problem+json" in response


async def test_a_client_gone_mid_body_is_no_server_error(server: ServerProcess) -> None:
    """A client that closes before its whole body arrived changes nothing and leaves no
    traceback (Starlette's ClientDisconnect was logged as an unexpected error, twice)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        order = await create_order(client)
        for path in ("/orders", f"/orders/{order['id']}/events", "/events"):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n"
            writer.write(head.encode() + b'{"type": "ADD_PIZZA"')
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.5)  # the server sees each disconnect
        await assert_unchanged(client, order)
        assert [o["id"] for o in (await list_orders(client))["orders"]] == [order["id"]]
    assert server.terminate() == 0  # its log is complete once it has stopped
    assert "Traceback" not in server.log()
    assert "ClientDisconnect" not in server.log()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/nope", id="get-unknown"),
        pytest.param("POST", "/nope", id="post-unknown"),
        pytest.param("GET", "/orders/some-id/nope", id="under-order"),
        pytest.param("GET", "/orders/some-id/events/more", id="too-deep"),
    ],
)
async def test_unknown_route_is_404_problem(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    """docs/design.md: every error is application/problem+json, unknown routes included."""
    assert_problem(await client.request(method, path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("DELETE", "/orders", id="delete-orders"),
        pytest.param("PUT", "/orders/{id}", id="put-order"),
        pytest.param("DELETE", "/orders/{id}", id="delete-order"),
        pytest.param("GET", "/orders/{id}/events", id="get-events"),
        pytest.param("POST", "/orders/{id}/history", id="post-history"),
        pytest.param("POST", "/healthz", id="post-healthz"),
    ],
)
async def test_wrong_method_is_405_problem(
    client: httpx.AsyncClient, order: JsonObject, method: str, path: str
) -> None:
    """docs/design.md: every error is application/problem+json, a wrong method included; the
    order is untouched."""
    response = await client.request(method, path.format(id=order["id"]), json=add(MARGHERITA))
    assert_problem(response, 405)
    await assert_unchanged(client, order)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param("/orders?limit=0", "limit", id="limit-zero"),
        pytest.param("/orders?limit=abc", "limit", id="limit-word"),
        pytest.param("/orders?limit=-1", "limit", id="limit-negative"),
        pytest.param("/orders?limit=1.5", "limit", id="limit-fraction"),
        pytest.param("/orders?limit=100000", "limit", id="limit-huge"),
        pytest.param("/orders?limit=%C2%B2", "limit", id="limit-superscript"),
        pytest.param("/orders?colour=red", "colour", id="unknown-param"),
        pytest.param("/orders?cursor=abc", "cursor", id="cursor-word"),
        pytest.param("/orders?cursor=-5", "cursor", id="cursor-negative"),
        pytest.param("/orders?cursor=%C2%B2", "cursor", id="cursor-superscript"),
        pytest.param("/orders/{id}/history?after=abc", "after", id="history-after-word"),
        pytest.param("/orders/{id}/history?after=%C2%B2", "after", id="history-after-superscript"),
        pytest.param("/orders/{id}/history?limit=0", "limit", id="history-limit-zero"),
    ],
)
async def test_bad_query_parameter_is_422(
    client: httpx.AsyncClient, order: JsonObject, path: str, field: str
) -> None:
    """HTTP table rows GET /orders and GET /orders/{id}/history: a malformed or unknown
    query parameter is 422 naming it, never a 5xx."""
    response = await client.get(path.format(id=order["id"]))
    assert_problem(response, 422, field)
    await assert_unchanged(client, order)


def nested_add(depth: int) -> bytes:
    return b'{"type": "ADD_PIZZA", "data": {"pizza": {"name": "tower", "layers": %s%s}}}' % (
        b"[" * depth,
        b"]" * depth,
    )


@pytest.mark.parametrize(
    "depth", [pytest.param(500, id="depth-500"), pytest.param(2000, id="depth-2000")]
)
async def test_deeply_nested_json_is_never_a_server_error(
    client: httpx.AsyncClient, order: JsonObject, depth: int
) -> None:
    """HTTP contract: bad input is a 4xx problem, never a 5xx. A pizza nested ``depth``
    lists deep (a few kB, under the size limit) is either applied or refused with a 4xx
    problem that changes nothing; the order takes a good event afterwards."""
    response = await post_raw(client, f"/orders/{order['id']}/events", nested_add(depth))
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    if response.status_code == 200:
        assert response.json()["version"] == 2
        expected_version = 3
    else:
        assert_problem(response, response.status_code)
        await assert_unchanged(client, order)
        expected_version = 2
    good = await client.post(f"/orders/{order['id']}/events", json=add(MARGHERITA))
    assert good.status_code == 200, good.text
    assert good.json()["version"] == expected_version


async def test_deeply_nested_create_is_never_a_server_error(client: httpx.AsyncClient) -> None:
    """HTTP contract: a create body nested too deep to parse is a 4xx problem, not a 5xx,
    and creates nothing."""
    response = await post_raw(client, "/orders", b'{"pizza": ' + b"[" * 2000 + b"]" * 2000 + b"}")
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    assert_problem(response, response.status_code)
    await assert_no_orders(client)
