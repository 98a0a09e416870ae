"""The three-process flow on a real RabbitMQ: orchestrator, kitchen and delivery.

``orchestrator serve --broker amqp://...``, ``python -m services.kitchen --broker ...`` and
``python -m services.delivery --broker ...`` run as real subprocesses against RabbitMQ on
127.0.0.1. With ``ORCHESTRATOR_TEST_RABBITMQ=require`` (set by ``.ci/run``) an unreachable
broker fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from orchestrator.messages import Message, encode
from tests.conftest import ServerFactory
from tests.helpers import (
    CONFIRM,
    DONE,
    RABBITMQ_URL,
    assert_flow_histories,
    assert_once_per_order,
    create_order,
    delete_flow_queues,
    http_client,
    send,
    spawn_service,
    wait_all_in_state,
)

ORDERS = 50


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Path]:
    """Kitchen and delivery processes whose ledgers sit beside ``orders.db`` in tmp_path."""
    db = tmp_path / "orders.db"
    asyncio.run(delete_flow_queues())
    procs = [spawn_service(db, name, "--log-level", "warning") for name in ("kitchen", "delivery")]
    yield db
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=30) == 0


async def test_orders_run_to_done_across_three_processes(
    services: Path, server_factory: ServerFactory
) -> None:
    server = server_factory("--broker", RABBITMQ_URL, db=services)
    async with http_client(server.url) as http:
        ids = [(await create_order(http))["id"] for _ in range(ORDERS)]
        for order_id in ids:
            assert (await send(http, order_id, CONFIRM)).status_code == 200
        await wait_all_in_state(http, ids, DONE, within=60.0)
        await assert_flow_histories(http, ids)
    assert_once_per_order(services, ids)


async def dead_letters(expected: int) -> list[tuple[str, str]]:
    """(routing key, x-reason) of the first ``expected`` messages in the dead-letter queue."""
    letters: list[tuple[str, str]] = []
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue("dead-letters")
        for _ in range(200):
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                if len(letters) >= expected:
                    break
                await asyncio.sleep(0.05)
                continue
            letters.append((message.routing_key or "", str((message.headers or {})["x-reason"])))
    return letters


async def test_poison_is_dead_lettered_and_the_orchestrator_keeps_serving(
    services: Path, server_factory: ServerFactory
) -> None:
    """Malformed, unknown-type and unknown-order events go to dead-letters with a reason."""
    server = server_factory("--broker", RABBITMQ_URL, db=services)
    poison = {
        "event.PIZZA_READY": b"not a cloudevent",
        "event.PIZZA_BURNT": encode(
            Message("p-1", "PIZZA_BURNT", "/kitchen", "some-order", {}), time.time()
        ),
        "event.PIZZA_DELIVERED": encode(
            Message("p-2", "PIZZA_DELIVERED", "/delivery", "no-such-order", {}), time.time()
        ),
    }
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("orders")
        for key, body in poison.items():
            await exchange.publish(aio_pika.Message(body, message_id=key), routing_key=key)
    letters = dict(await dead_letters(len(poison)))
    assert set(letters) == set(poison)
    assert "not a CloudEvent" in letters["event.PIZZA_READY"]
    assert "OrderNotFound" in letters["event.PIZZA_DELIVERED"]
    assert letters["event.PIZZA_BURNT"]  # unknown order and type: refused with a reason
    async with http_client(server.url) as http:
        ids = [(await create_order(http))["id"] for _ in range(5)]
        for order_id in ids:
            assert (await send(http, order_id, CONFIRM)).status_code == 200
        await wait_all_in_state(http, ids, DONE, within=60.0)
