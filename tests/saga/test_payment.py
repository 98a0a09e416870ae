"""The payment chart (statecharts/payment.yaml) end to end, on both brokers and both
stores (``tests/saga/conftest.py``).

The test plays the payment system of the Alibaba workflow: it takes the task token of the
waiting step and calls back with it. The token is a private field, on no view of the
order; the command each step sends (REQUEST_PAYMENT, SETTLE_PAYMENT) carries it to the
payment system, and ``tests/test_turn.py`` checks that it does. No payment service runs on
the in-process broker to receive that command, so the test reads the same token from the
order's stored snapshot. The callbacks are service events: on ``memory`` they come over
the signed webhook; on ``rabbitmq`` they are CloudEvents published to the orchestrator's
exchange, as a payment service on the broker would send them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid

import aio_pika
import httpx
import pytest
from websockets.asyncio.client import connect

from orchestrator.messages import Message, encode, event_key
from tests.helpers import (
    RABBITMQ_URL,
    JsonObject,
    eventually,
    history,
    http_client,
    send_service_event,
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
    assert "taskToken" not in order["context"]
    return order


async def task_token(deployment: Deployment, order_id: str) -> str:
    """The waiting step's token, as its command carries it: read from the stored order."""
    ((context,),) = await deployment.stored_rows(
        "SELECT context FROM orders WHERE id = $1", order_id
    )
    token: str = json.loads(str(context))["taskToken"]
    return token


async def call_back(
    deployment: Deployment, http: httpx.AsyncClient, order_id: str, event: JsonObject
) -> None:
    """Deliver a payment callback the way the deployment's payment system would."""
    if deployment.broker == "memory":
        response = await send_service_event(http, order_id, event["type"], event["data"])
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
    data = {"taskToken": await task_token(deployment, order_id), "paymentMethod": method}
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
        paying_token = await task_token(deployment, order_id)
        step = await pay(deployment, http, order_id, method)
        assert (step["state"], step["status"]) == (method, waiting)
        settle_token = await task_token(deployment, order_id)
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
    assert await pending_timers(deployment) == []


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
    any number; a callback from a client, even with the right token, gets 403."""
    server = await deployment.start()
    async with http_client(server.url) as http:
        order = await place(http)
        order_id = order["id"]
        wrong = {"taskToken": "not-the-token", "paymentMethod": "weixin"}
        refused = await send_service_event(http, order_id, "PAYMENT_COMPLETED", wrong)
        assert refused.status_code == 409, refused.text
        missing = await send_service_event(
            http, order_id, "PAYMENT_COMPLETED", {"paymentMethod": "weixin"}
        )
        assert missing.status_code == 422, missing.text
        assert missing.json()["field"] == "data.taskToken"
        right = {"taskToken": await task_token(deployment, order_id), "paymentMethod": "weixin"}
        for event in ("PAYMENT_COMPLETED", "PAYMENT_SETTLED"):
            client = await http.post(
                f"/orders/{order_id}/events", json={"type": event, "data": right}
            )
            assert client.status_code == 403, client.text
            assert client.json()["event"] == event
        huge = {**ORDER, "products": [{"name": "gold", "price": 1e308}] * 2}
        overflow = await http.post("/orders", json=huge)
        assert overflow.status_code == 422, overflow.text
        assert overflow.json()["field"] == "data.products"
        after = await view(http, order_id)
    assert (after["version"], after["state"]) == (order["version"], "payment")
    assert after["context"] == order["context"]


@pytest.mark.parametrize("deployment", ["memory"], indirect=True)
async def test_no_view_shows_the_task_token(deployment: Deployment) -> None:
    """Issue 16, item 6: the token was on every view and the firehose, so any API client
    could settle a payment. Now no reply, read, list, history, replay or WebSocket message
    carries it, neither the one waited for nor the one a callback spent (the history kept
    each callback's data whole), while the stored order (and the command) has it; and it
    cannot be computed from what a client sees (it was sha256 of the order id and the step's
    count, which the view shows)."""
    server = await deployment.start()
    async with (
        http_client(server.url) as http,
        connect(f"{server.ws_url}/ws") as firehose,
    ):
        placed = await http.post("/orders", json=ORDER)
        order_id = placed.json()["id"]
        assert "taskToken" not in placed.json()["context"]
        spent_token = await task_token(deployment, order_id)
        derived = hashlib.sha256(f"{order_id}/1".encode()).hexdigest()[:32]
        assert spent_token != derived
        seen = [placed.content]
        step = await pay(deployment, http, order_id, "unionpay")
        waiting_token = await task_token(deployment, order_id)
        seen += [(await http.get(f"/orders/{order_id}")).content]
        seen += [(await http.get(f"/orders/{order_id}/history")).content]
        listed = await http.get("/orders", params={"chart": "payment"})
        seen += [json.dumps(view).encode() for view in listed.json()["orders"]]
        async with connect(f"{server.ws_url}/orders/{order_id}/ws") as live:
            seen.append(str(await live.recv()).encode())
        async with connect(f"{server.ws_url}/orders/{order_id}/ws?after=0") as replay:
            for _ in range(step["version"]):
                seen.append(str(await replay.recv()).encode())
        for _ in range(step["version"]):
            seen.append(str(await asyncio.wait_for(firehose.recv(), 10)).encode())
    assert waiting_token and spent_token != waiting_token
    for message in seen:
        parsed = json.loads(message)
        if "entries" in parsed:  # the history: each event's data without the token
            assert all("taskToken" not in e["data"] for e in parsed["entries"])
        else:
            view = parsed.get("view", parsed)
            assert view["context"]["orderNum"].startswith("ORD-")
            assert "taskToken" not in view["context"]
            assert "taskToken" not in (parsed.get("event") or {}).get("data", {})
        assert waiting_token.encode() not in message
        assert spent_token.encode() not in message
