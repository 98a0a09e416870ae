"""The Broker port's promises, run on every adapter: in-process and RabbitMQ.

RabbitMQ runs on 127.0.0.1:5672 (``ORCHESTRATOR_TEST_RABBITMQ_URL`` overrides). When
``ORCHESTRATOR_TEST_RABBITMQ=require`` is set, as ``.ci/run`` does, an unreachable broker
fails these tests instead of skipping them. Each test uses queue names and routing keys of
its own, so tests never see each other's messages on the shared server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from orchestrator.broker import memory, rabbitmq
from orchestrator.broker.base import (
    DEAD_LETTER_QUEUE,
    MAX_DELIVERIES,
    REASON_HEADER,
    Broker,
    Delivery,
    Poison,
    Retry,
    Unroutable,
)
from orchestrator.broker.memory import MemoryBroker
from orchestrator.broker.rabbitmq import RabbitBroker
from orchestrator.settings import BROKER_CONNECT_TIMEOUT
from tests.helpers import RABBITMQ_URL, rabbitmq_unreachable

WAIT = 10.0
DECLARED: list[str] = []  # queues the current test made


@pytest.fixture(params=["memory", "rabbitmq"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    adapter: Broker
    if request.param == "memory":
        adapter = MemoryBroker(tmp_path / "broker.db")
        await adapter.connect()
    else:
        adapter = RabbitBroker(RABBITMQ_URL, connect_within=BROKER_CONNECT_TIMEOUT)
        try:
            await adapter.connect()
        except Exception as exc:
            rabbitmq_unreachable(exc)
    yield adapter
    await adapter.close()
    if request.param == "rabbitmq":
        await delete_queues(DECLARED)
    DECLARED.clear()


async def delete_queues(names: list[str]) -> None:
    """Durable test queues would outlive the test on the shared server: delete them."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


class Inbox:
    """A consumer that records deliveries, failing or poisoning on demand."""

    def __init__(
        self, fail_times: int = 0, poison: bool | int = False, retry_times: int = 0
    ) -> None:
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self.fail_times = fail_times
        # True: every delivery is poison; a number: that many deliveries are
        self.poison = poison
        self.retry_times = retry_times

    async def __call__(self, delivery: Delivery) -> None:
        await self.deliveries.put(delivery)
        if self.poison is True:
            raise Poison("cannot use this")
        if self.poison:
            self.poison -= 1
            raise Poison("cannot use this")
        if self.retry_times > 0:
            self.retry_times -= 1
            raise Retry("the handler's database is full")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("try again")

    async def next(self) -> Delivery:
        return await asyncio.wait_for(self.deliveries.get(), timeout=WAIT)


async def declared(broker: Broker) -> tuple[str, str]:
    """A fresh queue bound to a fresh routing key: (queue, key)."""
    suffix = uuid.uuid4().hex[:12]
    queue, key = f"test.{suffix}", f"porttest.{suffix}.MESSAGE"
    await broker.declare_queue(queue, [key])
    DECLARED.append(queue)
    return queue, key


async def dead_letters(broker: Broker, queue: str, key: str) -> Inbox:
    """A consumer of the dead letters ``queue``'s messages under ``key`` become."""
    dead_queue = f"{queue}.dead"
    await broker.declare_queue(dead_queue, [key], dead_letter_exchange=True)
    DECLARED.append(dead_queue)
    dead = Inbox()
    await broker.consume(dead_queue, dead)
    return dead


async def test_a_published_message_is_delivered_with_its_id(broker: Broker) -> None:
    queue, key = await declared(broker)
    inbox = Inbox()
    await broker.consume(queue, inbox)
    await broker.publish(key, b'{"n": 1}', message_id="m-1", headers={"h": "v"})
    delivery = await inbox.next()
    assert (delivery.routing_key, delivery.body, delivery.message_id) == (key, b'{"n": 1}', "m-1")
    assert delivery.headers.get("h") == "v"
    assert not delivery.redelivered


async def test_a_message_no_queue_takes_is_unroutable(broker: Broker) -> None:
    with pytest.raises(Unroutable):
        await broker.publish(f"porttest.{uuid.uuid4().hex}.NOBODY", b"{}", message_id="lost")


async def test_a_failing_handler_gets_the_message_again(broker: Broker) -> None:
    queue, key = await declared(broker)
    inbox = Inbox(fail_times=1)
    await broker.consume(queue, inbox)
    await broker.publish(key, b"{}", message_id="m-2")
    first, second = await inbox.next(), await inbox.next()
    assert first.message_id == second.message_id == "m-2"
    assert not first.redelivered and second.redelivered


async def test_poison_goes_to_the_dead_letter_exchange_with_its_reason(broker: Broker) -> None:
    queue, key = await declared(broker)
    dead = await dead_letters(broker, queue, key)
    await broker.consume(queue, Inbox(poison=True))
    await broker.publish(key, b"junk", message_id="m-3")
    letter = await dead.next()
    assert (letter.body, letter.message_id, letter.routing_key) == (b"junk", "m-3", key)
    assert letter.headers[REASON_HEADER] == "cannot use this"


async def test_a_message_that_keeps_failing_is_dead_lettered_under_its_own_key(
    broker: Broker,
) -> None:
    """After MAX_DELIVERIES failures the message goes to the dead-letter exchange under the
    key it was published with, so whoever listens for that key (the orchestrator, for a
    command's error.invoke) hears of it. RabbitMQ's retries went back through the default
    exchange, keyed by the queue's name, and the dead letter took that key."""
    queue, key = await declared(broker)
    dead = await dead_letters(broker, queue, key)
    failing = Inbox(fail_times=MAX_DELIVERIES)
    await broker.consume(queue, failing)
    await broker.publish(key, b"{}", message_id="m-4")
    letter = await asyncio.wait_for(dead.deliveries.get(), timeout=60)
    assert (letter.message_id, letter.routing_key) == ("m-4", key)
    assert f"failed {MAX_DELIVERIES} times" in letter.headers[REASON_HEADER]
    seen = [failing.deliveries.get_nowait() for _ in range(failing.deliveries.qsize())]
    assert len(seen) == MAX_DELIVERIES
    assert {delivery.routing_key for delivery in seen} == {key}


async def test_a_message_with_a_header_not_ours_is_still_delivered(broker: Broker) -> None:
    """An attempts header that is not a number (anyone can publish one) is read as none:
    the message is handled, and the ones behind it too. On RabbitMQ it was never acked nor
    dead-lettered, and each such message held a prefetch slot for good."""
    queue, key = await declared(broker)
    inbox = Inbox()
    await broker.consume(queue, inbox)
    await broker.publish(key, b"{}", message_id="m-5", headers={"x-attempts": "abc"})
    await broker.publish(key, b"{}", message_id="m-6")
    assert [(await inbox.next()).message_id for _ in range(2)] == ["m-5", "m-6"]


async def test_a_retry_is_not_counted_toward_the_poison_limit(broker: Broker) -> None:
    """A handler whose own store is down raises Retry: the message comes back more than
    MAX_DELIVERIES times, unflagged as a failure, and is handled once the store is back.
    Counted as failures, as before, it was dead-lettered after 10 deliveries in about 9 s:
    every event of an outage of the orders database."""
    queue, key = await declared(broker)
    dead = await dead_letters(broker, queue, key)
    retrying = Inbox(retry_times=MAX_DELIVERIES + 1)
    await broker.consume(queue, retrying)
    await broker.publish(key, b"{}", message_id="m-retry")
    seen = [await retrying.next() for _ in range(MAX_DELIVERIES + 2)]
    assert {delivery.message_id for delivery in seen} == {"m-retry"}
    assert all(delivery.redelivered for delivery in seen[1:])
    assert dead.deliveries.empty()


async def test_a_retry_is_dead_lettered_after_retry_for(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retry is honoured for RETRY_FOR seconds from the first (an hour; here 0.3 s), then
    the message is dead-lettered with the reason, so a handler that some bug keeps in
    Retry does not hold a message for ever."""
    monkeypatch.setattr(memory, "RETRY_FOR", 0.3)
    monkeypatch.setattr(rabbitmq, "RETRY_FOR", 0.3)
    queue, key = await declared(broker)
    dead = await dead_letters(broker, queue, key)
    await broker.consume(queue, Inbox(retry_times=1_000_000))
    await broker.publish(key, b"{}", message_id="m-forever")
    letter = await dead.next()
    assert letter.message_id == "m-forever"
    assert "could not be handled for" in letter.headers[REASON_HEADER]
    assert "the handler's database is full" in letter.headers[REASON_HEADER]


async def test_poison_with_no_dead_letter_queue_stays_in_its_queue(broker: Broker) -> None:
    """With no queue bound on the dead-letter exchange for its key, a poison message is
    kept and delivered again (after MAX_RETRY_PAUSE), never acked and dropped as before
    ("no dead-letter queue for ...; dropping it")."""
    if isinstance(broker, RabbitBroker):
        # The flow's catch-all dead-letter queue, left on the shared server by other tests,
        # would take the dead letter; the orchestrator declares it again when it starts.
        await delete_queues([DEAD_LETTER_QUEUE])
    queue, key = await declared(broker)
    once = Inbox(poison=1)
    await broker.consume(queue, once)
    await broker.publish(key, b"{}", message_id="m-kept")
    first, second = await once.next(), await once.next()
    assert first.message_id == second.message_id == "m-kept"
