"""Timeouts, retries and cancellation with compensation, end to end, on both brokers and
both stores.

Each test runs the real server as a subprocess. On ``memory`` the kitchen and delivery run
inside it; on ``rabbitmq`` they run as their own processes against RabbitMQ on 127.0.0.1
(``ORCHESTRATOR_TEST_RABBITMQ=require``, set by ``.ci/run``, fails instead of skipping when
it is unreachable); on ``memory+postgres`` the orders, timers and outbox are in a fresh
PostgreSQL database. Chart options shorten the pizza chart's timeouts to fractions of a
second. Durations are asserted only as lower bounds: a timer must never fire early.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import (
    CONFIRM,
    create_order,
    eventually,
    history,
    http_client,
    send,
    send_ok,
    view,
    wait_all_in_state,
    wait_for_state,
)
from tests.saga.conftest import Deployment, ledger, pending_timers

TIMEOUT = "after.waitingForPizzaToBeBaked.kitchenTimeout"
RETRY = "after.errorInKitchen.retryDelay"
WAITING = "bakePizza.waitingForPizzaToBeBaked"
ERROR = "bakePizza.errorInKitchen"
CANCEL = {"type": "CANCEL"}


async def wait_until_given_up(http: httpx.AsyncClient, order_id: str) -> None:
    """Until the order's stage has used up its automatic retries (its status says so)."""

    async def gave_up() -> bool:
        return "Gave up" in str((await view(http, order_id))["status"])

    await eventually(gave_up, within=30.0, what="the kitchen stage to give up")


async def confirmed_order(http: httpx.AsyncClient) -> str:
    order_id = str((await create_order(http))["id"])
    await send_ok(http, order_id, CONFIRM)
    return order_id


async def test_a_silent_kitchen_times_out_retries_with_backoff_then_waits(
    deployment: Deployment,
) -> None:
    """The kitchen never answers: each wait times out into errorInKitchen, which retries
    after 0.25 s, then 0.5 s (new MAKE_PIZZA messages, baked once by the deduping
    kitchen), then gives up and waits for RETRY or CANCEL."""
    server = await deployment.start(
        "pizza.kitchenTimeout=0.5",
        "pizza.retryBackoff=0.25",
        "pizza.maxRetries=2",
        kitchen="ignore",
    )
    async with http_client(server.url) as http:
        order_id = await confirmed_order(http)

        await wait_until_given_up(http, order_id)
        order = await view(http, order_id)
        assert order["state"] == ERROR
        assert order["status"] == (
            "Ooops! Something got burned... Gave up after 2 automatic retries: "
            "send RETRY or CANCEL."
        )
        assert order["nextEvents"] == ["PIZZA_READY", "CANCEL", "RETRY"]
        entries = await history(http, order_id)
        assert [e["type"] for e in entries if e["type"] != "done.invoke.sendOrderToKitchen"] == [
            "ADD_PIZZA", "CONFIRM_PIZZA", TIMEOUT, RETRY, TIMEOUT, RETRY, TIMEOUT,
        ]  # fmt: skip
        retries = [e for e in entries if e["type"] == RETRY]
        assert [e["data"]["delaySeconds"] for e in retries] == [0.25, 0.5]
        for entry in retries:  # never early: the time spent in errorInKitchen
            assert entry["durationMs"] >= entry["data"]["delaySeconds"] * 1000
        for entry in (e for e in entries if e["type"] == TIMEOUT):
            assert entry["durationMs"] >= 500
        assert ledger(deployment.db, "kitchen", "MAKE_PIZZA") == {order_id: (1, 3)}
        assert await pending_timers(deployment) == []

        retried = await send_ok(http, order_id, {"type": "RETRY"})
        assert retried["state"] == "bakePizza.sendingOrderToKitchen"
        await wait_for_state(http, order_id, WAITING)
        cancelled = await send_ok(http, order_id, CANCEL)
        assert cancelled["state"] == "cancellingKitchen"
        done = await wait_for_state(http, order_id, "cancelled")
        assert done["status"] == "Cancelled: the kitchen stopped and threw the pizza away."
    assert ledger(deployment.db, "kitchen", "CANCEL_PIZZA") == {order_id: (1, 1)}


async def test_a_rejecting_kitchen_is_retried_with_backoff_then_left_waiting(
    deployment: Deployment,
) -> None:
    """The kitchen dead-letters every MAKE_PIZZA: each error.invoke puts the order in
    errorInKitchen without resetting its retries, so it retries after 0.25 s then 0.5 s
    and then waits for RETRY or CANCEL, as with a silent kitchen."""
    server = await deployment.start(
        "pizza.retryBackoff=0.25", "pizza.maxRetries=2", kitchen="reject"
    )
    async with http_client(server.url) as http:
        order_id = await confirmed_order(http)

        await wait_until_given_up(http, order_id)
        entries = await history(http, order_id)
    errors = [e for e in entries if e["type"] == "error.invoke.sendOrderToKitchen"]
    retries = [e for e in entries if e["type"] == RETRY]
    assert len(errors) == 3
    assert [e["data"]["delaySeconds"] for e in retries] == [0.25, 0.5]
    assert entries[-1]["stateAfter"] == ERROR


async def test_a_timer_due_while_the_server_is_down_fires_once_after_restart(
    deployment: Deployment,
) -> None:
    """SIGKILL while the kitchen timeout is pending, stay down past its due time, start
    again: it fires once, and a second crash and restart do not fire it again."""
    server = await deployment.start(
        "pizza.kitchenTimeout=1.5", "pizza.maxRetries=0", kitchen="ignore"
    )
    async with http_client(server.url) as http:
        order_id = await confirmed_order(http)
        await wait_for_state(http, order_id, WAITING)
    assert await pending_timers(deployment) == [f"{order_id}/{TIMEOUT}"]
    server.kill()
    await asyncio.sleep(2.0)  # past the due time, with no server running
    server.restart()
    async with http_client(server.url) as http:
        await wait_for_state(http, order_id, ERROR)
        server.kill()
        server.restart()
        order = await view(http, order_id)
        entries = await history(http, order_id)
    assert order["state"] == ERROR
    assert [e["type"] for e in entries].count(TIMEOUT) == 1
    assert await pending_timers(deployment) == []


async def test_leaving_a_state_cancels_its_timer(deployment: Deployment) -> None:
    """The kitchen and delivery answer within their timeouts: each state's timer is
    cancelled by the turn that leaves it, and none fires after its due time passes."""
    server = await deployment.start("pizza.kitchenTimeout=1", "pizza.deliveryTimeout=1")
    async with http_client(server.url) as http:
        order_id = await confirmed_order(http)
        await wait_for_state(http, order_id, "done")
        await asyncio.sleep(1.5)  # past both due times
        entries = await history(http, order_id)
    assert not [e["type"] for e in entries if e["type"].startswith("after.")]
    assert entries[-1]["type"] == "PIZZA_DELIVERED"
    assert await pending_timers(deployment) == []


async def test_cancel_after_make_pizza_compensates_once_across_crashes(
    deployment: Deployment,
) -> None:
    """Orders waiting for a silent kitchen are cancelled; the server is SIGKILLed right
    after the cancellations are acknowledged and again shortly after each restart. Every
    order ends cancelled with exactly one CANCEL_PIZZA carried out and one PIZZA_CANCELLED
    applied."""
    server = await deployment.start(kitchen="ignore")
    async with http_client(server.url) as http:
        ids = [await confirmed_order(http) for _ in range(10)]
        await wait_all_in_state(http, ids, WAITING, within=30.0)
        for order_id in ids:
            assert (await send(http, order_id, CANCEL)).status_code == 200
    server.kill()
    for pause in (0.0, 0.2):
        server.restart()
        await asyncio.sleep(pause)
        server.kill()
    server.restart()
    async with http_client(server.url) as http:
        await wait_all_in_state(http, ids, "cancelled", within=30.0)
        for order_id in ids:
            entries = await history(http, order_id)
            types = [e["type"] for e in entries]
            assert types.count("CANCEL") == 1, (order_id, types)
            assert types.count("PIZZA_CANCELLED") == 1, (order_id, types)
    cancels = ledger(deployment.db, "kitchen", "CANCEL_PIZZA")
    assert {order_id: cancels.get(order_id, (0, 0))[0] for order_id in ids} == dict.fromkeys(ids, 1)


async def test_cancel_is_allowed_only_before_delivery(deployment: Deployment) -> None:
    """CANCEL while ordering ends at once with no compensation; once delivery started it
    is refused with 409 listing what is allowed, and the order is unchanged."""
    server = await deployment.start(delivery="ignore")
    async with http_client(server.url) as http:
        early = str((await create_order(http))["id"])
        cancelled = await send_ok(http, early, CANCEL)
        assert (cancelled["state"], cancelled["status"]) == (
            "cancelled",
            "Cancelled before anything was baked.",
        )
        late = await confirmed_order(http)
        before = await wait_for_state(http, late, "deliverPizza.waitingForDelivery")
        refused = await send(http, late, CANCEL)
        assert refused.status_code == 409
        problem = refused.json()
        assert "CANCEL" not in problem["allowed"]
        assert "PIZZA_DELIVERED" in problem["allowed"]
        after = await view(http, late)
        assert (after["version"], after["state"]) == (before["version"], before["state"])
    assert early not in ledger(deployment.db, "kitchen", "CANCEL_PIZZA")


async def test_the_seed_xstate_machine_runs_to_done(deployment: Deployment) -> None:
    """The XState transcription of the seed's machine (statecharts/xstate_pizza.json)
    takes an order from first pizza to delivered on this broker, each pizza baked and
    delivered once."""
    server = await deployment.start()
    async with http_client(server.url) as http:
        created = await http.post(
            "/orders", json={"chart": "xstate_pizza", "pizza": {"name": "hawaii"}}
        )
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        assert created.json()["chart"] == "xstate_pizza"
        await send_ok(http, order_id, CONFIRM)
        done = await wait_for_state(http, order_id, "done")
        entries = await history(http, order_id)
    assert done["chart"] == "xstate_pizza"
    assert [e["type"] for e in entries if not e["type"].startswith("xstate.done.actor.")] == [
        "ADD_PIZZA", "CONFIRM_PIZZA", "PIZZA_READY", "PIZZA_DELIVERED",
    ]  # fmt: skip
    assert ledger(deployment.db, "kitchen", "MAKE_PIZZA") == {order_id: (1, 1)}
    assert ledger(deployment.db, "delivery", "DELIVER_PIZZA") == {order_id: (1, 1)}
