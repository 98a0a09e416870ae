"""Idempotency-Key on POST /orders and POST /orders/{id}/events through a real server.

Covers DESIGN actor rule 5 (a repeated event id is answered with the recorded result and
not applied twice) and the HTTP contract line "a repeat returns the first answer (same
status, same body)": sequential repeats, 20 concurrent identical requests, a repeat after
the order has moved on, and a key reused for a different body (422, nothing changes).
"""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import (
    HAWAII,
    MARGHERITA,
    add,
    create_order,
    history,
    http_client,
    list_orders,
    view,
)

CONCURRENT = 20


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def listed_ids(client: httpx.AsyncClient) -> list[str]:
    return [order["id"] for order in (await list_orders(client))["orders"]]


def wide_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client on the same server with a connection per concurrent request."""
    return http_client(client.base_url, connections=CONCURRENT)


async def test_repeated_event_is_answered_identically_and_applied_once(
    client: httpx.AsyncClient,
) -> None:
    """Actor rule 5; HTTP contract: a repeat returns the first answer (same status, same
    body) and is not applied twice."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed("add-once"))
    assert first.status_code == 200
    assert first.json()["version"] == 2
    for _ in range(3):
        repeat = await client.post(path, json=add(MARGHERITA), headers=keyed("add-once"))
        assert repeat.status_code == first.status_code
        assert repeat.content == first.content
    current = await view(client, order["id"])
    assert current["version"] == 2
    assert current["items"] == [HAWAII, MARGHERITA]
    entries = await history(client, order["id"])
    assert [e["eventId"] for e in entries].count("add-once") == 1
    assert len(entries) == 2


async def test_repeat_after_the_order_moved_on_gets_the_first_answer(
    client: httpx.AsyncClient,
) -> None:
    """Actor rule 5: the recorded result is returned, not the current view, and the order
    does not change."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed("early"))
    assert first.status_code == 200
    later = await client.post(path, json=add(HAWAII))
    assert later.status_code == 200 and later.json()["version"] == 3
    repeat = await client.post(path, json=add(MARGHERITA), headers=keyed("early"))
    assert repeat.status_code == 200
    assert repeat.content == first.content
    assert repeat.json()["version"] == 2
    current = await view(client, order["id"])
    assert current["version"] == 3
    assert current["items"] == [HAWAII, MARGHERITA, HAWAII]


async def test_repeated_create_is_answered_identically_and_creates_one_order(
    client: httpx.AsyncClient,
) -> None:
    """Actor rule 5 for POST /orders: the same key gets the same 201, Location and body,
    and only one order exists."""
    first = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed("create-once"))
    assert first.status_code == 201
    order_id = first.json()["id"]
    for _ in range(3):
        repeat = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed("create-once"))
        assert repeat.status_code == 201
        assert repeat.content == first.content
        assert repeat.headers["location"] == first.headers["location"] == f"/orders/{order_id}"
    assert await listed_ids(client) == [order_id]
    entries = await history(client, order_id)
    assert [e["eventId"] for e in entries] == ["create-once"]
    assert (await view(client, order_id))["version"] == 1


async def test_concurrent_identical_events_are_applied_once(client: httpx.AsyncClient) -> None:
    """Actor rules 1, 2 and 5: 20 identical keyed requests at once are applied once and all
    get the same answer."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    async with wide_client(client) as wide:
        responses = await asyncio.gather(
            *(
                wide.post(path, json=add(MARGHERITA), headers=keyed("together"))
                for _ in range(CONCURRENT)
            )
        )
    assert {r.status_code for r in responses} == {200}
    assert {r.content for r in responses} == {responses[0].content}
    assert responses[0].json()["version"] == 2
    current = await view(client, order["id"])
    assert current["version"] == 2
    assert current["items"] == [HAWAII, MARGHERITA]
    entries = await history(client, order["id"])
    assert len(entries) == 2
    assert entries[1]["eventId"] == "together"


async def test_concurrent_identical_creates_make_one_order(client: httpx.AsyncClient) -> None:
    """Actor rules 1 and 5 for POST /orders: 20 identical keyed creates at once make one
    order, and every request gets its 201 and body."""
    async with wide_client(client) as wide:
        responses = await asyncio.gather(
            *(
                wide.post("/orders", json={"pizza": HAWAII}, headers=keyed("create-together"))
                for _ in range(CONCURRENT)
            )
        )
    assert {r.status_code for r in responses} == {201}
    assert {r.content for r in responses} == {responses[0].content}
    order_id = responses[0].json()["id"]
    assert await listed_ids(client) == [order_id]
    assert [e["eventId"] for e in await history(client, order_id)] == ["create-together"]


async def test_event_key_reused_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    """HTTP contract: a key answers one request; reused for a different body it is 422
    naming Idempotency-Key, nothing is applied, and the first request still repeats."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed("mine"))
    assert first.status_code == 200
    for other in (add(HAWAII), {"type": "CONFIRM_PIZZA"}):
        reused = await client.post(path, json=other, headers=keyed("mine"))
        assert reused.status_code == 422, reused.text
        assert reused.headers["content-type"].startswith("application/problem+json")
        assert reused.json()["field"] == "Idempotency-Key"
    current = await view(client, order["id"])
    assert current["version"] == 2
    assert current["items"] == [HAWAII, MARGHERITA]
    assert current["state"] == "orderPizza"
    assert len(await history(client, order["id"])) == 2
    repeat = await client.post(path, json=add(MARGHERITA), headers=keyed("mine"))
    assert repeat.status_code == 200 and repeat.content == first.content


async def test_create_key_reused_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    """HTTP contract: a create key reused for a different pizza is 422 and makes no order."""
    first = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed("new-order"))
    assert first.status_code == 201
    order_id = first.json()["id"]
    reused = await client.post("/orders", json={"pizza": MARGHERITA}, headers=keyed("new-order"))
    assert reused.status_code == 422, reused.text
    assert reused.headers["content-type"].startswith("application/problem+json")
    assert reused.json()["field"] == "Idempotency-Key"
    assert await listed_ids(client) == [order_id]
    current = await view(client, order_id)
    assert current["items"] == [HAWAII] and current["version"] == 1


async def test_longest_allowed_key_is_accepted(client: httpx.AsyncClient) -> None:
    """HTTP contract: a 200-character Idempotency-Key is valid (201 is refused, see
    test_errors.py) and becomes the journal's eventId."""
    order = await create_order(client)
    key = "k" * 200
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA), headers=keyed(key))
    assert first.status_code == 200
    repeat = await client.post(path, json=add(MARGHERITA), headers=keyed(key))
    assert repeat.content == first.content
    assert [e["eventId"] for e in await history(client, order["id"])][1:] == [key]


async def test_requests_without_a_key_are_each_applied(client: httpx.AsyncClient) -> None:
    """Actor rule 5 applies to ids the client gave: without Idempotency-Key, two equal
    requests are two events, each with its own eventId."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    first = await client.post(path, json=add(MARGHERITA))
    second = await client.post(path, json=add(MARGHERITA))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["version"] == 3
    assert second.json()["items"] == [HAWAII, MARGHERITA, MARGHERITA]
    ids = [e["eventId"] for e in await history(client, order["id"])]
    assert len(set(ids)) == 3


async def test_a_key_in_the_form_of_an_invoke_outcome_is_422(client: httpx.AsyncClient) -> None:
    """Event ids are one namespace per order, and an invoke's outcome has the id
    ``done:<message id>`` (or ``error:``). A client's key of that form would make the
    outcome pass for an event already applied, so the order would skip a state: it is
    refused, on creates and events, and nothing changes."""
    order = await create_order(client)
    path = f"/orders/{order['id']}/events"
    for key in (f"done:{order['id']}:3:0", f"error:{order['id']}:3:0"):
        refused = await client.post(path, json=add(MARGHERITA), headers=keyed(key))
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "Idempotency-Key"
        created = await client.post("/orders", json={"pizza": HAWAII}, headers=keyed(key))
        assert created.status_code == 422, created.text
    assert (await view(client, order["id"]))["version"] == 1
    assert await listed_ids(client) == [order["id"]]
    # The words alone are fine, as in any other key.
    fine = await client.post(path, json=add(MARGHERITA), headers=keyed("done-with-this"))
    assert fine.status_code == 200
