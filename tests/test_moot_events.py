"""Platform events that a later turn made moot are ignored: not applied, not refusals.

A timer that fires after its turn was cancelled, and an invoke outcome about a message a
retry replaced, change nothing and are counted as ``ignored`` in
``orchestrator_turns_total``, so that ``refused`` keeps counting only what clients and
services sent. Runs the registry on a real SQLite store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.charts import load_charts
from orchestrator.errors import StaleOutcome, TimerGone
from orchestrator.metrics import Metrics
from orchestrator.model import Event, Timer
from orchestrator.registry import Registry
from orchestrator.store.sqlite import SqliteStore

KITCHEN_TIMEOUT = "after.waitingForPizzaToBeBaked.kitchenTimeout"


@pytest.fixture
async def registry(store: SqliteStore, charts_dir: Path) -> AsyncIterator[Registry]:
    yield Registry(
        store=store, charts=load_charts(charts_dir), metrics=Metrics(), on_commit=lambda r: None
    )


def turns(registry: Registry, result: str) -> float:
    value = registry.metrics.registry.get_sample_value(
        "orchestrator_turns_total", {"result": result}
    )
    return value or 0.0


async def waiting_order(registry: Registry, store: SqliteStore) -> tuple[str, str]:
    """An order waiting for the kitchen; its id and its MAKE_PIZZA's message id."""
    created = await registry.create(Event("ADD_PIZZA", {"pizza": {"n": 1}}, "c1"), chart=None)
    order_id = created.order_id
    await registry.send(order_id, Event("CONFIRM_PIZZA", {}, "c2"))
    [make_pizza] = await store.unsent()
    done = Event("done.invoke.sendOrderToKitchen", {"messageId": make_pizza.id}, "d1")
    await registry.send(order_id, done)
    return order_id, make_pizza.id


async def test_an_outcome_about_a_replaced_message_is_ignored(
    registry: Registry, store: SqliteStore
) -> None:
    order_id, first = await waiting_order(registry, store)
    [timer] = await store.due_timers(float("inf"), 10)
    await registry.fire(timer)  # the kitchen times out
    [retry_timer] = await store.due_timers(float("inf"), 10)
    await registry.fire(retry_timer)  # the retry sends MAKE_PIZZA again
    before = await registry.view(order_id)
    assert before is not None and before.state == "bakePizza.sendingOrderToKitchen"
    refused = turns(registry, "refused")

    late = Event("error.invoke.sendOrderToKitchen", {"messageId": first}, "late-1")
    with pytest.raises(StaleOutcome):
        await registry.send(order_id, late)

    assert await registry.view(order_id) == before
    assert [e.version for e in await store.journal(order_id)][-1] == before.version
    assert turns(registry, "ignored") == 1
    assert turns(registry, "refused") == refused


async def test_a_timer_no_longer_pending_is_ignored(registry: Registry, store: SqliteStore) -> None:
    order_id, _ = await waiting_order(registry, store)
    [pending] = await store.due_timers(float("inf"), 10)
    assert pending.event_type == KITCHEN_TIMEOUT
    before = await registry.view(order_id)
    # The same timer as set by an earlier turn: its due time is not the pending one's.
    earlier = Timer(pending.id, order_id, pending.due_at - 1, pending.event_type, pending.data)

    with pytest.raises(TimerGone):
        await registry.fire(earlier)

    assert await registry.view(order_id) == before
    assert turns(registry, "ignored") == 1
    assert turns(registry, "refused") == 0
