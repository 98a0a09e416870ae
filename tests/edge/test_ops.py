"""Operational endpoints and the process lifecycle through a real server.

Covers the last row of docs/design.md, "The HTTP contract" (GET /healthz, /readyz, /metrics,
/openapi.json) and "Ways to run it": SIGTERM drains and exits cleanly, and a restart on
the same database serves the orders created before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import HAWAII, MARGHERITA, POLLS, add, create_order

ROUTES = {
    "/orders": {"get", "post"},
    "/orders/{order_id}": {"get"},
    "/orders/{order_id}/events": {"post"},
    "/orders/{order_id}/history": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
}
METRICS = [
    "orchestrator_turns_total",
    "orchestrator_turn_seconds",
    "orchestrator_commit_batch_size",
    "orchestrator_outbox_lag_seconds",
    "orchestrator_outbox_depth",
    "orchestrator_live_actors",
    "orchestrator_websocket_subscribers",
]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def metrics(
    client: httpx.AsyncClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def turns(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], result: str) -> float:
    return samples.get(("orchestrator_turns_total", (("result", result),)), 0.0)


def refs(document: object) -> Iterator[str]:
    """Every "$ref" value anywhere in a JSON document."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(document, list):
        for value in document:
            yield from refs(value)


async def test_healthz_is_200(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /healthz: liveness answers 200."""
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_readyz_is_200_once_started(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /readyz: readiness answers 200 on a started server."""
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_openapi_document_lists_every_route(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /openapi.json: an OpenAPI 3.1 document of the whole HTTP API."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert isinstance(document["info"]["title"], str) and document["info"]["title"]
    assert isinstance(document["info"]["version"], str) and document["info"]["version"]
    paths = document["paths"]
    assert set(ROUTES) <= set(paths)
    for path, methods in ROUTES.items():
        assert methods <= set(paths[path]) & HTTP_METHODS, path
        for method in methods:
            assert paths[path][method]["responses"], f"{method} {path} has no responses"
    for ref in refs(document):
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            assert part in target, f"{ref} points nowhere"
            target = target[part]


async def test_metrics_is_prometheus_text_with_every_metric(client: httpx.AsyncClient) -> None:
    """HTTP table row GET /metrics: Prometheus text with the orchestrator's metrics."""
    await create_order(client)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {
        sample.name
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    for name in METRICS:
        assert any(n == name or n.startswith(f"{name}_") for n in names), name
    assert "orchestrator_turn_seconds_count" in names
    assert "orchestrator_commit_batch_size_bucket" in names


async def test_turn_counters_rise_with_events(client: httpx.AsyncClient) -> None:
    """GET /metrics: each applied event counts one applied turn (and one timed turn); a
    refused event counts as refused, not applied."""
    before = await metrics(client)
    order = await create_order(client)
    for pizza in (MARGHERITA, HAWAII):
        response = await client.post(f"/orders/{order['id']}/events", json=add(pizza))
        assert response.status_code == 200
    refused = await client.post(
        f"/orders/{order['id']}/events",
        json={"type": "REMOVE_PIZZA", "data": {"pizza": {"name": "none"}}},
    )
    assert refused.status_code == 409
    after = await metrics(client)
    assert turns(after, "applied") == turns(before, "applied") + 3
    assert turns(after, "refused") == turns(before, "refused") + 1
    timed = ("orchestrator_turn_seconds_count", ())
    assert after[timed] == before.get(timed, 0.0) + 3
    batches = ("orchestrator_commit_batch_size_sum", ())
    assert after[batches] >= before.get(batches, 0.0) + 3
    assert after[("orchestrator_live_actors", ())] >= 1


async def test_sigterm_exits_with_code_0(server_factory: ServerFactory) -> None:
    """Ways to run it: SIGTERM drains in-flight turns and exits cleanly (exit code 0)."""
    server: ServerProcess = server_factory()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        order = await create_order(client)
        added = await client.post(f"/orders/{order['id']}/events", json=add(MARGHERITA))
        assert added.status_code == 200
    assert server.terminate() == 0, server.log()
    assert not server.alive()


async def test_restart_after_sigterm_keeps_the_orders(server_factory: ServerFactory) -> None:
    """Ways to run it: after SIGTERM, a restart on the same database serves every order
    created before, as it was, and they take new events where they left off."""
    server: ServerProcess = server_factory()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        first = await create_order(client)
        added = await client.post(f"/orders/{first['id']}/events", json=add(MARGHERITA))
        assert added.status_code == 200
        second = await create_order(client)
        confirmed = await client.post(
            f"/orders/{second['id']}/events", json={"type": "CONFIRM_PIZZA"}
        )
        assert confirmed.status_code == 200
        for _ in range(POLLS):
            done = (await client.get(f"/orders/{second['id']}")).json()
            if done["state"] == "done":
                break
            await asyncio.sleep(0.02)
        assert done["state"] == "done"
        views = {o["id"]: o for o in (await client.get("/orders")).json()["orders"]}
        histories = {
            order_id: (await client.get(f"/orders/{order_id}/history")).json() for order_id in views
        }
    server.terminate()  # the exit code is test_sigterm_exits_with_code_0's business
    assert not server.alive()
    server.restart()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        assert (await client.get("/readyz")).status_code == 200
        listed = (await client.get("/orders")).json()["orders"]
        assert [o["id"] for o in listed] == [second["id"], first["id"]]
        for order_id, before in views.items():
            response = await client.get(f"/orders/{order_id}")
            assert response.status_code == 200
            assert response.json() == before
            assert (await client.get(f"/orders/{order_id}/history")).json() == histories[order_id]
        more = await client.post(f"/orders/{first['id']}/events", json=add(HAWAII))
        assert more.status_code == 200
        assert more.json()["version"] == 3
        assert more.json()["items"] == [HAWAII, MARGHERITA, HAWAII]


async def test_events_answered_before_sigterm_survive_it(server_factory: ServerFactory) -> None:
    """Ways to run it and actor rule 3: SIGTERM while events are in flight; every event
    answered 200 before the exit is in the journal after a restart."""
    server: ServerProcess = server_factory()
    limits = httpx.Limits(max_connections=30, max_keepalive_connections=30)
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0, limits=limits) as client:
        order = await create_order(client)
        path = f"/orders/{order['id']}/events"

        async def post(n: int) -> httpx.Response:
            return await client.post(
                path, json=add({"name": f"p{n}"}), headers={"Idempotency-Key": f"k{n}"}
            )

        first = await post(0)
        assert first.status_code == 200
        pending = [asyncio.create_task(post(n)) for n in range(1, 30)]
        await asyncio.sleep(0)
        await asyncio.to_thread(server.terminate)
        results = await asyncio.gather(*pending, return_exceptions=True)
    answered = {"k0"} | {
        f"k{n}"
        for n, result in enumerate(results, start=1)
        if isinstance(result, httpx.Response) and result.status_code == 200
    }
    server.restart()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        entries = (await client.get(f"/orders/{order['id']}/history")).json()["entries"]
        current = (await client.get(f"/orders/{order['id']}")).json()
    assert answered <= {e["eventId"] for e in entries}
    assert [e["version"] for e in entries] == list(range(1, current["version"] + 1))
    assert len(current["items"]) == current["version"]
