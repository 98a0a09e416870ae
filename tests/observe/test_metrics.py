"""/metrics as an operator reads it: orders by state, timer backlog, outbox, broker.

The server is a real subprocess; samples are read with prometheus_client's own text
parser. The store's ``stats`` is also checked on its own, where time can be chosen.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx

from orchestrator.model import Timer
from orchestrator.store.sqlite import SqliteStore
from tests.conftest import ServerFactory
from tests.edge.test_ops import metrics
from tests.helpers import (
    CONFIRM,
    DONE,
    create_order,
    eventually,
    send_ok,
    wait_for_state,
    wait_quiet,
)
from tests.store.test_store import T0, record

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
KITCHEN_WAIT = "bakePizza.waitingForPizzaToBeBaked"
KITCHEN_ERROR = "bakePizza.errorInKitchen"


def orders_in(samples: Samples, state: str, chart: str = "pizza") -> float:
    return samples.get(("orchestrator_orders", (("chart", chart), ("state", state))), 0.0)


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_orders_by_state_follow_an_order_to_done(server_factory: ServerFactory) -> None:
    """Create, confirm, done: the order leaves each state's count as it enters the next;
    afterwards the outbox is empty and not lagging, and nothing was dead-lettered."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        before = await metrics(http)
        assert sample(before, "orchestrator_broker_reconnects_total") == 0
        order = await create_order(http)
        created = await metrics(http)
        assert orders_in(created, "orderPizza") == orders_in(before, "orderPizza") + 1
        await send_ok(http, order["id"], CONFIRM)
        await wait_for_state(http, order["id"], DONE)
        await wait_quiet(http, server.db)
        done = await metrics(http)
    assert orders_in(done, "orderPizza") == orders_in(before, "orderPizza")
    assert orders_in(done, DONE) == orders_in(before, DONE) + 1
    # A state the order passed through stays listed, at 0, rather than vanishing.
    assert orders_in(done, KITCHEN_WAIT) == 0
    assert ("orchestrator_orders", (("chart", "pizza"), ("state", "orderPizza"))) in done
    assert sample(done, "orchestrator_outbox_depth") == 0
    assert sample(done, "orchestrator_outbox_lag_seconds") == 0
    # MAKE_PIZZA and DELIVER_PIZZA, each confirmed once
    assert sample(done, "orchestrator_outbox_published_total") == 2
    assert sample(done, "orchestrator_timers_pending") == 0
    assert sample(done, "orchestrator_timers_overdue_seconds") == 0
    assert not any(name == "orchestrator_dead_letters_total" for name, _ in done)
    assert sample(done, "orchestrator_broker_reconnects_total") == 0
    applied = sample(done, "orchestrator_turns_total", result="applied")
    # create, CONFIRM, done.invoke x2, PIZZA_READY, PIZZA_DELIVERED
    assert applied - before.get(("orchestrator_turns_total", (("result", "applied"),)), 0) == 6


async def test_dead_letters_are_counted_by_queue(server_factory: ServerFactory) -> None:
    """A kitchen that dead-letters its command shows in the counter, labelled with its
    queue, and the order in the chart's error state."""
    server = server_factory("--kitchen-mode", "reject")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        order = await create_order(http)
        await send_ok(http, order["id"], CONFIRM)
        await wait_for_state(http, order["id"], KITCHEN_ERROR)
        samples = await metrics(http)
    assert sample(samples, "orchestrator_dead_letters_total", queue="kitchen") == 1
    assert orders_in(samples, KITCHEN_ERROR) == 1


async def test_store_stats_count_orders_and_the_timer_backlog(tmp_path: Path) -> None:
    """Orders by (chart, state), and the timers: how many, and how late the first is."""
    store = SqliteStore(tmp_path / "orders.db")
    await store.open()
    try:
        await store.commit(record("a"))
        await store.commit(record("b"))
        await store.commit(record("b", 2, state="bakePizza.waitingForPizzaToBeBaked"))
        await store.commit(record("c", chart="other"))
        timers = tuple(Timer(f"t{n}", "a", T0 + 100 * n, "TIMEOUT") for n in (1, 2))
        await store.commit(replace(record("a", 2), timers_set=timers))
        stats = await store.stats(T0 + 130)
        assert stats.orders == {
            ("pizza", "orderPizza"): 1,
            ("pizza", "bakePizza.waitingForPizzaToBeBaked"): 1,
            ("other", "orderPizza"): 1,
        }
        assert stats.timers == 2
        assert stats.timer_overdue_seconds == 30.0
        assert (await store.stats(T0)).timer_overdue_seconds == 0.0
    finally:
        await store.close()


async def test_requests_for_orders_that_do_not_exist_activate_nothing(
    server_factory: ServerFactory,
) -> None:
    """Activations and passivations count orders brought into and out of memory: events
    and webhooks naming an unknown order (404) count neither (each counted one of both)."""
    server = server_factory("--idle-seconds", "0.1")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        await create_order(http)
        for n in range(5):
            event = {"type": "ADD_PIZZA", "data": {"pizza": {"name": "x"}}}
            assert (await http.post(f"/orders/nope-{n}/events", json=event)).status_code == 404

        async def passivated() -> bool:
            count = sample(await metrics(http), "orchestrator_actor_passivations_total")
            return count >= 1

        await eventually(passivated, within=10, what="the one order to be passivated")
        samples = await metrics(http)
    assert sample(samples, "orchestrator_actor_activations_total") == 1
    assert sample(samples, "orchestrator_actor_passivations_total") == 1
