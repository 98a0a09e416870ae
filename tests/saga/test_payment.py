"""The payment chart (statecharts/payment.yaml) end to end, on both brokers.

The test plays the payment system of the Alibaba workflow: it reads the task token of the
waiting step from the order's view and calls back with it. On ``memory`` the callbacks
are HTTP events; on ``rabbitmq`` they are CloudEvents published to the orchestrator's
exchange, as a payment service on the broker would send them.
"""

from __future__ import annotations

import time
import uuid

import aio_pika
import httpx
import pytest

from orchestrator.messages import Message, encode, event_key
from tests.helpers import (
    RABBITMQ_URL,
    JsonObject,
    eventually,
    history,
    http_client,
    view,
    wait_for_state,
)
from tests.saga.conftest import Deployment, pending_timers

PRODUCTS = [{"name": "tea", "price": 12.5}, {"name": "cups", "price": 7.5}]
ORDER = {"chart": "payment", "products": PRODUCTS, "supplier": "s-1", "address": "Hangzhou"}


async def place(http: httpx.AsyncClient) -> JsonObject:
    response = await http.post("/orders", json=ORDER)
    assert response.status_code == 201, response.text
    order: JsonObject = response.json()
    assert (order["chart"], order["state"]) == ("payment", "payment")
    return order


async def call_back(
    deployment: Deployment, http: httpx.AsyncClient, order_id: str, event: JsonObject
) -> None:
    """Deliver a payment callback the way the deployment's payment system would."""
    if deployment.broker == "memory":
        response = await http.post(f"/orders/{order_id}/events", json=event)
        assert response.status_code == 200, response.text
        return
    message = Message(str(uuid.uuid4()), event["type"], "/payments", order_id, event["data"])
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("orders")
        await exchange.publish(
            aio_pika.Message(encode(message, time.time()), message_id=message.id),
            routing_key=event_key(message.type),
        )


async def pay(
    deployment: Deployment, http: httpx.AsyncClient, order_id: str, method: str
) -> JsonObject:
    token = (await view(http, order_id))["context"]["taskToken"]
    data = {"taskToken": token, "paymentMethod": method}
    await call_back(deployment, http, order_id, {"type": "PAYMENT_COMPLETED", "data": data})

    async def moved() -> bool:
        return bool((await view(http, order_id))["state"] != "payment")

    await eventually(moved, within=30.0, what="the payment callback to apply")
    return await view(http, order_id)


@pytest.mark.parametrize(
    ("method", "waiting"),
    [
        ("zhifubao", "Waiting for Alipay (zhifubao) to settle..."),
        ("weixin", "Waiting for WeChat Pay (weixin) to settle..."),
        ("unionpay", "Waiting for UnionPay to settle..."),
    ],
)
async def test_each_payment_method_completes_the_order(
    deployment: Deployment, method: str, waiting: str
) -> None:
    """PAYMENT_COMPLETED with the task token chooses the method's own step, which issues a
    new token and waits for PAYMENT_SETTLED; then the order is completed, its timers
    gone."""
    server = await deployment.start()
    async with http_client(server.url) as http:
        order = await place(http)
        order_id = order["id"]
        assert order["context"]["price"] == 20.0
        paying_token = order["context"]["taskToken"]
        step = await pay(deployment, http, order_id, method)
        assert (step["state"], step["status"]) == (method, waiting)
        settle_token = step["context"]["taskToken"]
        assert settle_token not in (None, paying_token)
        data = {"taskToken": settle_token}
        await call_back(deployment, http, order_id, {"type": "PAYMENT_SETTLED", "data": data})
        done = await wait_for_state(http, order_id, "orderCompleted")
        entries = await history(http, order_id)
    assert done["status"].startswith(f"Completed: {done['context']['orderNum']} paid 20 with")
    assert done["nextEvents"] == []
    assert [(e["type"], e["stateAfter"]) for e in entries] == [
        ("PLACE_ORDER", "payment"),
        ("PAYMENT_COMPLETED", method),
        ("PAYMENT_SETTLED", "orderCompleted"),
    ]
    assert pending_timers(deployment.db) == []


async def test_an_unknown_method_takes_the_default_branch_to_cancelled(
    deployment: Deployment,
) -> None:
    """The choice's default: a method none of the branches names cancels the order."""
    server = await deployment.start()
    async with http_client(server.url) as http:
        order_id = (await place(http))["id"]
        cancelled = await pay(deployment, http, order_id, "cash")
    assert cancelled["state"] == "orderCanceled"
    assert cancelled["status"] == (
        "Cancelled: payment method 'cash' is not one of ['unionpay', 'weixin', 'zhifubao']."
    )


async def test_no_callback_in_time_cancels_the_order(deployment: Deployment) -> None:
    """The payment step's durable timeout moves the order to orderCanceled; so does a
    method step that never settles."""
    server = await deployment.start("payment.paymentTimeout=0.5", "payment.settleTimeout=0.5")
    async with http_client(server.url) as http:
        unpaid = (await place(http))["id"]
        unsettled = (await place(http))["id"]
        await pay(deployment, http, unsettled, "weixin")
        first = await wait_for_state(http, unpaid, "orderCanceled")
        second = await wait_for_state(http, unsettled, "orderCanceled")
        entries = await history(http, unpaid)
    assert first["status"] == "Cancelled: no payment callback in time."
    assert second["status"] == "Cancelled: WeChat Pay did not settle in time."
    assert [e["type"] for e in entries] == ["PLACE_ORDER", "after.payment.paymentTimeout"]
    assert entries[-1]["durationMs"] >= 500


@pytest.mark.parametrize("deployment", ["memory"], indirect=True)
async def test_a_callback_with_another_token_is_refused_and_changes_nothing(
    deployment: Deployment,
) -> None:
    """A callback for another step (or a forged one) gets 409 and the order stays; a
    callback without a token gets 422 naming the field, as do prices that add up beyond
    any number."""
    server = await deployment.start()
    async with http_client(server.url) as http:
        order = await place(http)
        order_id = order["id"]
        wrong = {"taskToken": "not-the-token", "paymentMethod": "weixin"}
        refused = await http.post(
            f"/orders/{order_id}/events", json={"type": "PAYMENT_COMPLETED", "data": wrong}
        )
        assert refused.status_code == 409, refused.text
        missing = await http.post(
            f"/orders/{order_id}/events",
            json={"type": "PAYMENT_COMPLETED", "data": {"paymentMethod": "weixin"}},
        )
        assert missing.status_code == 422, missing.text
        assert missing.json()["field"] == "data.taskToken"
        huge = {**ORDER, "products": [{"name": "gold", "price": 1e308}] * 2}
        overflow = await http.post("/orders", json=huge)
        assert overflow.status_code == 422, overflow.text
        assert overflow.json()["field"] == "data.products"
        after = await view(http, order_id)
    assert (after["version"], after["state"]) == (order["version"], "payment")
    assert after["context"] == order["context"]
