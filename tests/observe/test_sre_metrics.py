"""The metrics an SRE asks for, through a real server: orders started and finished per
chart and final state, their end-to-end time, HTTP requests by route template and status,
process, GC and build series, and no ``_created`` series.
"""

from __future__ import annotations

import httpx

from tests.conftest import ServerFactory
from tests.edge.test_ops import metrics
from tests.helpers import CONFIRM, DONE, UNKNOWN_ID, create_order, send_ok, wait_for_state
from tests.observe.test_metrics import sample

EVENTS_ROUTE = "/orders/{order_id}/events"


async def test_an_order_is_counted_started_and_finished_with_its_duration(
    server_factory: ServerFactory,
) -> None:
    """One order from create to done: started and finished count it once each (finished
    under its final state), and its end-to-end time is one observation in the histogram."""
    server = server_factory("--kitchen-delay", "0.3")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        before = await metrics(http)
        assert ("orchestrator_orders_started_total", (("chart", "pizza"),)) not in before
        order = await create_order(http)
        started = await metrics(http)
        assert sample(started, "orchestrator_orders_started_total", chart="pizza") == 1
        assert (
            "orchestrator_orders_finished_total",
            (("chart", "pizza"), ("state", DONE)),
        ) not in started
        await send_ok(http, order["id"], CONFIRM)
        await wait_for_state(http, order["id"], DONE)
        done = await metrics(http)
    assert sample(done, "orchestrator_orders_started_total", chart="pizza") == 1
    assert sample(done, "orchestrator_orders_finished_total", chart="pizza", state=DONE) == 1
    assert sample(done, "orchestrator_order_seconds_count", chart="pizza") == 1
    # The kitchen took 0.3 s, so the order took at least that; well under a minute here.
    duration = sample(done, "orchestrator_order_seconds_sum", chart="pizza")
    assert 0.3 <= duration < 60
    assert sample(done, "orchestrator_order_seconds_bucket", chart="pizza", le="1.0") == 1


async def test_requests_are_counted_by_route_template_and_status(
    server_factory: ServerFactory,
) -> None:
    """Labels carry the route template, never the raw path: no order id ever shows in a
    label, a path no route matches is ``unmatched``, an unusual method ``OTHER``."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        order = await create_order(http)
        await send_ok(http, order["id"], CONFIRM)
        assert (await http.get(f"/orders/{UNKNOWN_ID}")).status_code == 404
        assert (await http.get(f"/no/such/{UNKNOWN_ID}")).status_code == 404
        assert (await http.request("PURGE", f"/orders/{UNKNOWN_ID}")).status_code == 405
        bad = await http.post(f"/orders/{order['id']}/events", json={"type": 1})
        assert bad.status_code == 422
        await metrics(http)  # counted once it is answered: the next scrape shows it
        samples = await metrics(http)
    requests = {
        (labels["method"], labels["route"], labels["status"]): value
        for (name, pairs), value in samples.items()
        if name == "orchestrator_http_request_seconds_count"
        for labels in [dict(pairs)]
    }
    assert requests[("POST", "/orders", "201")] == 1
    assert requests[("POST", EVENTS_ROUTE, "200")] == 1
    assert requests[("POST", EVENTS_ROUTE, "422")] == 1
    assert requests[("GET", "/orders/{order_id}", "404")] == 1
    assert requests[("GET", "unmatched", "404")] == 1
    assert requests[("OTHER", "/orders/{order_id}", "405")] == 1
    assert requests[("GET", "/metrics", "200")] == 1
    for (_name, pairs), _value in samples.items():
        for _label, value in pairs:
            assert order["id"] not in value and UNKNOWN_ID not in value


async def test_refusals_before_routing_are_counted_under_their_route(
    server_factory: ServerFactory,
) -> None:
    """A 401 from the token check, which answers before the router runs, still counts
    under the route the request was for."""
    server = server_factory("--api-token", "secret-token")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        assert (await http.get(f"/orders/{UNKNOWN_ID}")).status_code == 401
        samples = await metrics(http)
    count = sample(
        samples,
        "orchestrator_http_request_seconds_count",
        method="GET",
        route="/orders/{order_id}",
        status="401",
    )
    assert count == 1


async def test_process_gc_and_build_series_without_created(client: httpx.AsyncClient) -> None:
    """The process and GC collectors and build_info are there; ``_created`` is off."""
    samples = await metrics(client)
    names = {name for name, _labels in samples}
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_collections_total",
        "python_info",
    } <= names
    (build,) = [labels for name, labels in samples if name == "orchestrator_build_info"]
    assert dict(build)["version"] == "0.1.0"
    assert not [name for name in names if name.endswith("_created")]
