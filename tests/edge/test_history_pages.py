"""GET /orders/{id}/history is paged (issue 16): a page ends at ``?limit`` entries or once
it passes about 1 MiB of JSON, whichever comes first, with ``nextAfter`` to read on; a short
history is still one page of every entry, oldest first. Through a real server."""

from __future__ import annotations

import asyncio

import httpx

from orchestrator.edge.orders import HISTORY_PAGE_BYTES
from tests.conftest import ServerProcess
from tests.helpers import JsonObject, add, create_order, remove, send_ok

NOTE = "n" * 60_000  # each event's data is about 60 KB, under --max-body-bytes (64 KiB)
MAX_BODY_BYTES = 64 * 1024


async def pages(http: httpx.AsyncClient, order_id: str, query: str = "") -> list[JsonObject]:
    """Every page of the history, following nextAfter; checks each page's size."""
    found: list[JsonObject] = []
    after = 0
    while True:
        response = await http.get(f"/orders/{order_id}/history?after={after}{query}")
        assert response.status_code == 200, response.text
        # At most the budget plus the entry that passed it (and the envelope).
        assert len(response.content) <= HISTORY_PAGE_BYTES + MAX_BODY_BYTES + 1024
        page = response.json()
        assert page["id"] == order_id
        found.append(page)
        if "nextAfter" not in page:
            return found
        assert page["nextAfter"] == page["entries"][-1]["version"]
        after = page["nextAfter"]


async def test_a_history_of_large_events_is_paged_by_bytes(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """41 events of ~60 KB data each (~2.5 MB of history, answered whole before): every
    page is bounded, and paging with nextAfter gives every version once, in order."""
    pizza = {"name": "big", "note": NOTE}
    order_id = (await create_order(client, pizza))["id"]
    for _ in range(20):
        await send_ok(client, order_id, remove(pizza))
        await send_ok(client, order_id, add(pizza))
    found = await pages(client, order_id)
    assert len(found) >= 3
    versions = [entry["version"] for page in found for entry in page["entries"]]
    assert versions == list(range(1, 42))
    assert found[1]["entries"][0]["data"]["pizza"]["note"] == NOTE


async def test_a_short_history_is_one_page_and_limit_pages_it_by_count(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """A short history answers every entry, oldest first, without nextAfter, as before;
    ?limit=2 pages it two entries at a time."""
    order_id = (await create_order(client))["id"]
    await asyncio.gather(*(send_ok(client, order_id, add({"name": f"p{n}"})) for n in range(4)))
    (whole,) = await pages(client, order_id)
    assert [entry["version"] for entry in whole["entries"]] == [1, 2, 3, 4, 5]
    assert set(whole) == {"id", "entries"}
    by_two = await pages(client, order_id, "&limit=2")
    assert [[e["version"] for e in page["entries"]] for page in by_two] == [[1, 2], [3, 4], [5]]
