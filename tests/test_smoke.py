"""The full flow to done through a real server: the first thing a user tries."""

from __future__ import annotations

import asyncio

import httpx


async def test_flow_to_done(client: httpx.AsyncClient) -> None:
    created = await client.post("/orders", json={"pizza": {"name": "hawaii", "size": "L"}})
    assert created.status_code == 201
    order = created.json()
    assert created.headers["location"] == f"/orders/{order['id']}"
    assert order["state"] == "orderPizza" and order["version"] == 1
    confirmed = await client.post(f"/orders/{order['id']}/events", json={"type": "CONFIRM_PIZZA"})
    assert confirmed.status_code == 200
    for _ in range(200):
        view = (await client.get(f"/orders/{order['id']}")).json()
        if view["state"] == "done":
            break
        await asyncio.sleep(0.02)
    assert view["state"] == "done"
    assert view["status"] == "Delivered. Enjoy your pizza!"
    history = (await client.get(f"/orders/{order['id']}/history")).json()
    # An invoke's done event is skipped when the service answered first; the rest is fixed.
    types = [e["type"] for e in history["entries"] if not e["type"].startswith("done.")]
    assert types == ["ADD_PIZZA", "CONFIRM_PIZZA", "PIZZA_READY", "PIZZA_DELIVERED"]
    assert [e["version"] for e in history["entries"]] == list(range(1, view["version"] + 1))
