"""Order endpoints through a real server: create, read, events, history, list, If-Match.

Covers the success rows of docs/design.md, "The HTTP contract": POST /orders, GET /orders/{id},
POST /orders/{id}/events, GET /orders/{id}/history and GET /orders (state and chart
filters, cursor pagination), the order view's fields, and the optional If-Match header.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import httpx

from tests.conftest import ServerFactory
from tests.helpers import (
    CONFIRM,
    HAWAII,
    MARGHERITA,
    WAITING_FOR_KITCHEN,
    JsonObject,
    add,
    checked_history,
    create_order,
    list_orders,
    remove,
    send,
    view,
    wait_for_state,
)

VIEW_FIELDS = {
    "id", "chart", "state", "status", "items", "nextEvents", "version", "createdAt", "updatedAt",
}  # fmt: skip


def timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value!r} has no time zone"
    return parsed


async def test_create_answers_201_with_location_and_view(client: httpx.AsyncClient) -> None:
    """HTTP table row POST /orders: 201 + Location + order view; the first ADD_PIZZA is v1."""
    response = await client.post("/orders", json={"pizza": HAWAII})
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    order = response.json()
    assert VIEW_FIELDS <= set(order)
    assert isinstance(order["id"], str) and order["id"]
    assert response.headers["location"] == f"/orders/{order['id']}"
    assert order["chart"] == "pizza"
    assert order["state"] == "orderPizza"
    assert order["status"] == "Oh, just ordering some pizza..."
    assert order["items"] == [HAWAII]
    assert sorted(order["nextEvents"]) == ["ADD_PIZZA", "CANCEL", "CONFIRM_PIZZA", "REMOVE_PIZZA"]
    assert order["version"] == 1
    assert timestamp(order["updatedAt"]) >= timestamp(order["createdAt"])


async def test_two_creates_make_two_orders(client: httpx.AsyncClient) -> None:
    """HTTP table row POST /orders: each create without a key is a new order."""
    first = await create_order(client)
    second = await create_order(client, MARGHERITA)
    assert first["id"] != second["id"]
    assert (await view(client, second["id"]))["items"] == [MARGHERITA]


async def test_get_returns_the_current_view(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /orders/{id}: 200 with the current order view."""
    order = await create_order(client)
    got = await view(client, order["id"])
    assert got == order
    applied = await send(client, order["id"], add(MARGHERITA))
    assert applied.status_code == 200
    got = await view(client, order["id"])
    assert got == applied.json()
    assert got["version"] == 2 and got["items"] == [HAWAII, MARGHERITA]
    assert timestamp(got["updatedAt"]) >= timestamp(got["createdAt"])
    assert got["createdAt"] == order["createdAt"]


async def test_add_pizza_appends_to_items(client: httpx.AsyncClient) -> None:
    """docs/design.md, bodies: ADD_PIZZA {"pizza": {...}} appends it to items; 200 with the view."""
    order = await create_order(client)
    response = await send(client, order["id"], add(MARGHERITA))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["items"] == [HAWAII, MARGHERITA]
    response = await send(client, order["id"], add(HAWAII))
    assert response.json()["items"] == [HAWAII, MARGHERITA, HAWAII]
    assert (await view(client, order["id"]))["items"] == [HAWAII, MARGHERITA, HAWAII]


async def test_remove_pizza_removes_one_equal_item(client: httpx.AsyncClient) -> None:
    """docs/design.md, bodies: REMOVE_PIZZA removes one item equal to the pizza, duplicates stay."""
    order = await create_order(client)
    for pizza in (MARGHERITA, HAWAII):
        assert (await send(client, order["id"], add(pizza))).status_code == 200
    response = await send(client, order["id"], remove(dict(HAWAII)))
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 2
    assert items.count(HAWAII) == 1 and items.count(MARGHERITA) == 1
    assert (await view(client, order["id"]))["items"] == items
    response = await send(client, order["id"], remove(MARGHERITA))
    assert response.status_code == 200
    assert response.json()["items"] == [HAWAII]


async def test_remove_pizza_compares_whole_objects(client: httpx.AsyncClient) -> None:
    """docs/design.md, bodies: "removes one item equal to it": same name, other size is not
    equal."""
    order = await create_order(client)
    other_size = {"name": "hawaii", "size": "S"}
    response = await send(client, order["id"], remove(other_size))
    assert response.status_code == 409
    got = await view(client, order["id"])
    assert got["items"] == [HAWAII] and got["version"] == 1


async def test_version_rises_by_one_per_applied_event(client: httpx.AsyncClient) -> None:
    """docs/design.md, the order view: version rises by one per applied event."""
    order = await create_order(client)
    versions = [order["version"]]
    for n in range(5):
        response = await send(client, order["id"], add({"name": f"p{n}"}))
        assert response.status_code == 200
        versions.append(response.json()["version"])
    response = await send(client, order["id"], remove({"name": "p0"}))
    versions.append(response.json()["version"])
    assert versions == list(range(1, 8))
    assert (await view(client, order["id"]))["version"] == 7


async def test_confirm_runs_the_order_to_done(client: httpx.AsyncClient) -> None:
    """Reference flow: CONFIRM_PIZZA -> bakePizza -> deliverPizza -> done (final)."""
    order = await create_order(client)
    response = await send(client, order["id"], CONFIRM)
    assert response.status_code == 200
    confirmed = response.json()
    assert confirmed["version"] == 2
    assert confirmed["state"].startswith(("bakePizza", "deliverPizza", "done"))
    done = await wait_for_state(client, order["id"], "done")
    assert done["status"] == "Delivered. Enjoy your pizza!"
    assert done["nextEvents"] == []
    assert done["items"] == [HAWAII]
    assert done["version"] > 2


async def test_orders_in_flight_do_not_disturb_each_other(client: httpx.AsyncClient) -> None:
    """Actor rule 2 seen over HTTP: different orders run concurrently, each on its own.
    Creating and confirming orders while earlier ones are still being baked and delivered
    always answers 201 and 200, and every order reaches done with its own items."""
    orders: dict[str, JsonObject] = {}
    for n in range(20):
        pizza = {"name": f"p{n}"}
        order = await create_order(client, pizza)
        assert order["items"] == [pizza]
        confirmed = await send(client, order["id"], CONFIRM)
        assert confirmed.status_code == 200, confirmed.text
        orders[order["id"]] = pizza
    for order_id, pizza in orders.items():
        done = await wait_for_state(client, order_id, "done")
        assert done["items"] == [pizza]


async def test_history_lists_every_applied_event_oldest_first(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /orders/{id}/history: each event with its id, time, states,
    duration, oldest first; eventId is the Idempotency-Key when one was given."""
    order = await create_order(client, key="create-key-1")
    added = await send(client, order["id"], add(MARGHERITA), key="add-key-2")
    assert added.status_code == 200
    removed = await send(client, order["id"], remove(HAWAII))
    assert removed.status_code == 200
    entries = await checked_history(client, order["id"])
    assert [e["version"] for e in entries] == [1, 2, 3]
    assert [e["type"] for e in entries] == ["ADD_PIZZA", "ADD_PIZZA", "REMOVE_PIZZA"]
    assert [e["data"] for e in entries] == [
        {"pizza": HAWAII}, {"pizza": MARGHERITA}, {"pizza": HAWAII},
    ]  # fmt: skip
    assert entries[0]["eventId"] == "create-key-1"
    assert entries[1]["eventId"] == "add-key-2"
    assert isinstance(entries[2]["eventId"], str) and entries[2]["eventId"]
    assert entries[2]["eventId"] not in {"create-key-1", "add-key-2"}
    for entry in entries:
        assert {"at", "stateBefore", "stateAfter", "durationMs"} <= set(entry)
        assert entry["stateAfter"] == "orderPizza"
        assert isinstance(entry["durationMs"], int | float) and entry["durationMs"] >= 0
    assert [e["stateBefore"] for e in entries[1:]] == ["orderPizza", "orderPizza"]
    times = [timestamp(e["at"]) for e in entries]
    assert times == sorted(times)
    assert entries[-1]["at"] == (await view(client, order["id"]))["updatedAt"]


async def test_history_of_a_finished_order_chains_states(client: httpx.AsyncClient) -> None:
    """History: each entry's stateBefore is the previous entry's stateAfter, ending in done,
    with contiguous versions up to the view's version."""
    order = await create_order(client)
    assert (await send(client, order["id"], CONFIRM)).status_code == 200
    done = await wait_for_state(client, order["id"], "done")
    entries = await checked_history(client, order["id"])
    assert [e["version"] for e in entries] == list(range(1, done["version"] + 1))
    for before, after in pairwise(entries):
        assert after["stateBefore"] == before["stateAfter"]
    assert entries[1]["type"] == "CONFIRM_PIZZA"
    assert entries[1]["stateBefore"] == "orderPizza"
    assert entries[-1]["stateAfter"] == "done"
    assert entries[-1]["type"] == "PIZZA_DELIVERED"
    assert len({e["eventId"] for e in entries}) == len(entries)


async def test_list_is_newest_first(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /orders: the list of orders, newest first, as order views."""
    ids = [(await create_order(client, {"name": f"p{n}"}))["id"] for n in range(4)]
    body = await list_orders(client)
    assert [o["id"] for o in body["orders"]] == ids[::-1]
    assert body["nextCursor"] is None
    for listed in body["orders"]:
        assert VIEW_FIELDS <= set(listed)
        assert listed == await view(client, listed["id"])


async def test_list_filters_by_state_prefix(server_factory: ServerFactory) -> None:
    """HTTP table row GET /orders: ?state= is a prefix match on the state path (the kitchen
    never answers, so confirmed orders stay in bakePizza.waitingForPizzaToBeBaked)."""
    server = server_factory("--kitchen-mode", "ignore")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        ordering = [(await create_order(client))["id"] for _ in range(2)]
        baking = []
        for _ in range(3):
            order = await create_order(client)
            assert (await send(client, order["id"], CONFIRM)).status_code == 200
            await wait_for_state(client, order["id"], WAITING_FOR_KITCHEN)
            baking.append(order["id"])
        by_prefix = await list_orders(client, state="bakePizza")
        assert [o["id"] for o in by_prefix["orders"]] == baking[::-1]
        assert all(o["state"] == WAITING_FOR_KITCHEN for o in by_prefix["orders"])
        exact = await list_orders(client, state=WAITING_FOR_KITCHEN)
        assert [o["id"] for o in exact["orders"]] == baking[::-1]
        still_ordering = await list_orders(client, state="orderPizza")
        assert [o["id"] for o in still_ordering["orders"]] == ordering[::-1]
        assert (await list_orders(client, state="deliverPizza"))["orders"] == []
        assert (await list_orders(client, state="done"))["orders"] == []


async def test_list_filters_done_orders(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /orders: ?state=done lists only finished orders."""
    open_order = await create_order(client)
    finished = await create_order(client)
    assert (await send(client, finished["id"], CONFIRM)).status_code == 200
    await wait_for_state(client, finished["id"], "done")
    done = await list_orders(client, state="done")
    assert [o["id"] for o in done["orders"]] == [finished["id"]]
    assert done["orders"][0]["state"] == "done"
    ordering = await list_orders(client, state="orderPizza")
    assert [o["id"] for o in ordering["orders"]] == [open_order["id"]]


async def test_list_filters_by_chart(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /orders: ?chart= keeps the orders of that chart only."""
    ids = [(await create_order(client))["id"] for _ in range(3)]
    pizza = await list_orders(client, chart="pizza")
    assert [o["id"] for o in pizza["orders"]] == ids[::-1]
    assert all(o["chart"] == "pizza" for o in pizza["orders"])
    assert (await list_orders(client, chart="no-such-chart"))["orders"] == []


async def test_list_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /orders: cursor pagination walks every order once, newest first."""
    ids = [(await create_order(client, {"name": f"p{n}"}))["id"] for n in range(7)]
    seen: list[str] = []
    sizes: list[int] = []
    params: dict[str, str] = {"limit": "3"}
    for _ in range(10):
        page = await list_orders(client, **params)
        seen.extend(o["id"] for o in page["orders"])
        sizes.append(len(page["orders"]))
        if page["nextCursor"] is None:
            break
        assert isinstance(page["nextCursor"], str)
        params = {"limit": "3", "cursor": page["nextCursor"]}
    assert sizes == [3, 3, 1]
    assert seen == ids[::-1]
    assert len(set(seen)) == len(seen)


async def test_list_pages_with_a_filter(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /orders: the cursor keeps the state filter across pages."""
    ordering = []
    for n in range(5):
        order = await create_order(client, {"name": f"p{n}"})
        ordering.append(order["id"])
        finished = await create_order(client)
        assert (await send(client, finished["id"], CONFIRM)).status_code == 200
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2", "state": "orderPizza"}
    for _ in range(10):
        page = await list_orders(client, **params)
        assert all(o["state"] == "orderPizza" for o in page["orders"])
        seen.extend(o["id"] for o in page["orders"])
        if page["nextCursor"] is None:
            break
        params = {**params, "cursor": page["nextCursor"]}
    assert seen == ordering[::-1]


async def test_if_match_with_the_current_version_applies(client: httpx.AsyncClient) -> None:
    """docs/design.md: optional If-Match: <version> on POST /orders/{id}/events; matching
    applies."""
    order = await create_order(client)
    response = await send(client, order["id"], add(MARGHERITA), if_match="1")
    assert response.status_code == 200
    assert response.json()["version"] == 2
    response = await send(client, order["id"], add(HAWAII), if_match="2")
    assert response.status_code == 200
    assert response.json()["items"] == [HAWAII, MARGHERITA, HAWAII]


async def test_if_match_with_a_stale_version_is_412(client: httpx.AsyncClient) -> None:
    """docs/design.md: If-Match: 412 when the order has moved on; the body has the current version
    and nothing is applied."""
    order = await create_order(client)
    assert (await send(client, order["id"], add(MARGHERITA))).status_code == 200
    for stale in ("1", "7"):
        response = await send(client, order["id"], add(HAWAII), if_match=stale)
        assert response.status_code == 412
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 412
        assert problem["version"] == 2
    got = await view(client, order["id"])
    assert got["version"] == 2
    assert got["items"] == [HAWAII, MARGHERITA]
    assert len(await checked_history(client, order["id"])) == 2
