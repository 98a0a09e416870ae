"""Tests of orchestrator.broker.memory: the in-process broker with RabbitMQ's semantics.

Each test runs the broker on a real SQLite file in the test's temporary directory, so the
persistence tests close one broker and open another on the same file. Deliveries are
collected by handlers into an ``asyncio.Queue``; waits are bounded only as a safety net.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from orchestrator.broker import memory
from orchestrator.broker.base import (
    DEAD_LETTER_QUEUE,
    REASON_HEADER,
    Delivery,
    Handler,
    NotStored,
    Poison,
    Unroutable,
)
from orchestrator.broker.memory import MemoryBroker, topic_matches
from tests.disk import SmallDisk

WAIT = 10.0  # a safety net for a hung test, never a timing assertion


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
async def broker(path: Path) -> AsyncIterator[MemoryBroker]:
    b = MemoryBroker(path)
    await b.connect()
    yield b
    await b.close()


def collector() -> tuple[asyncio.Queue[Delivery], Handler]:
    """A handler that records every delivery it gets, and the queue it records into."""
    got: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        got.put_nowait(delivery)

    return got, handler


async def next_delivery(got: asyncio.Queue[Delivery]) -> Delivery:
    return await asyncio.wait_for(got.get(), WAIT)


async def dead_letters(broker: MemoryBroker) -> asyncio.Queue[Delivery]:
    """Declare the dead-letter queue (bound to every key) and collect what lands in it."""
    await broker.declare_queue(DEAD_LETTER_QUEUE, ["#"], dead_letter_exchange=True)
    got, handler = collector()
    await broker.consume(DEAD_LETTER_QUEUE, handler)
    return got


# -- topic matching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("binding", "key"),
    [
        ("command.MAKE_PIZZA", "command.MAKE_PIZZA"),
        ("command.*", "command.MAKE_PIZZA"),
        ("*.MAKE_PIZZA", "command.MAKE_PIZZA"),
        ("#", "command.MAKE_PIZZA"),
        ("#", "event"),
        ("event.#", "event"),
        ("event.#", "event.PIZZA_READY"),
        ("event.#", "event.a.b.c"),
        ("#.READY", "event.READY"),
        ("a.#.z", "a.z"),
        ("a.#.z", "a.b.c.z"),
        ("a.*.#", "a.b"),
    ],
)
def test_topic_binding_matches(binding: str, key: str) -> None:
    """``*`` is exactly one word, ``#`` zero or more words, as in AMQP topic exchanges."""
    assert topic_matches(binding, key)


@pytest.mark.parametrize(
    ("binding", "key"),
    [
        ("command.MAKE_PIZZA", "command.DELIVER_PIZZA"),
        ("command.*", "command"),
        ("command.*", "command.MAKE_PIZZA.extra"),
        ("event.#", "command.PIZZA_READY"),
        ("event.#", "events.PIZZA_READY"),
        ("*", "a.b"),
        ("a.#.z", "a.b.c"),
        ("a.*.#", "a"),
    ],
)
def test_topic_binding_does_not_match(binding: str, key: str) -> None:
    """A binding never matches a key with the wrong words or the wrong number of words."""
    assert not topic_matches(binding, key)


# -- publish and consume -----------------------------------------------------------------


async def test_publish_to_an_unbound_key_is_unroutable(broker: MemoryBroker) -> None:
    """A message no queue would take raises Unroutable instead of vanishing."""
    await broker.declare_queue("kitchen", ["command.MAKE_PIZZA"])
    with pytest.raises(Unroutable) as info:
        await broker.publish("command.DELIVER_PIZZA", b"{}", message_id="m-1")
    assert info.value.retryable


async def test_consume_gets_the_message_with_its_id_and_body(broker: MemoryBroker) -> None:
    """A published message reaches a bound queue's consumer with its id, key, headers."""
    await broker.declare_queue("kitchen", ["command.*"])
    got, handler = collector()
    await broker.consume("kitchen", handler)
    await broker.publish("command.MAKE_PIZZA", b"body-1", message_id="m-1", headers={"h": "v"})
    delivery = await next_delivery(got)
    assert delivery.message_id == "m-1"
    assert delivery.body == b"body-1"
    assert delivery.routing_key == "command.MAKE_PIZZA"
    assert delivery.headers == {"h": "v"}
    assert delivery.redelivered is False


async def test_every_bound_queue_gets_a_copy(broker: MemoryBroker) -> None:
    """Fan-out: each queue whose binding matches receives the message."""
    await broker.declare_queue("a", ["event.#"])
    await broker.declare_queue("b", ["event.PIZZA_READY"])
    await broker.declare_queue("c", ["command.#"])
    got_a, handler_a = collector()
    got_b, handler_b = collector()
    got_c, handler_c = collector()
    await broker.consume("a", handler_a)
    await broker.consume("b", handler_b)
    await broker.consume("c", handler_c)
    await broker.publish("event.PIZZA_READY", b"x", message_id="m-1")
    await broker.publish("command.MAKE_PIZZA", b"y", message_id="m-2")
    assert (await next_delivery(got_a)).message_id == "m-1"
    assert (await next_delivery(got_b)).message_id == "m-1"
    assert (await next_delivery(got_c)).message_id == "m-2"


async def test_messages_wait_for_a_consumer(broker: MemoryBroker) -> None:
    """A message published before anyone consumes is kept and delivered in order later."""
    await broker.declare_queue("kitchen", ["command.#"])
    for n in range(3):
        await broker.publish("command.MAKE_PIZZA", f"{n}".encode(), message_id=f"m-{n}")
    got, handler = collector()
    await broker.consume("kitchen", handler, prefetch=1)
    assert [(await next_delivery(got)).message_id for _ in range(3)] == ["m-0", "m-1", "m-2"]


async def test_consume_an_undeclared_queue_fails(broker: MemoryBroker) -> None:
    """Consuming a queue nobody declared is a programming error, raised at once."""
    _, handler = collector()
    with pytest.raises(KeyError):
        await broker.consume("nowhere", handler)


async def test_failing_handler_gets_a_redelivery_then_ack(path: Path) -> None:
    """An ordinary exception means redelivery (flagged redelivered), and the message is
    acked once the handler succeeds: after a reopen it is not delivered again."""
    first = MemoryBroker(path)
    await first.connect()
    await first.declare_queue("kitchen", ["command.#"])
    got: asyncio.Queue[Delivery] = asyncio.Queue()
    attempts: list[str] = []

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.message_id)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        got.put_nowait(delivery)

    await first.consume("kitchen", handler, prefetch=1)
    await first.publish("command.MAKE_PIZZA", b"x", message_id="m-1")
    delivery = await next_delivery(got)
    assert (delivery.message_id, delivery.redelivered, delivery.body) == ("m-1", True, b"x")
    assert attempts == ["m-1", "m-1"]
    await first.close()

    second = MemoryBroker(path)
    await second.connect()
    try:
        await second.declare_queue("kitchen", ["command.#"])
        await second.publish("command.MAKE_PIZZA", b"y", message_id="m-2")
        got2, handler2 = collector()
        await second.consume("kitchen", handler2, prefetch=1)
        assert (await next_delivery(got2)).message_id == "m-2"
    finally:
        await second.close()


async def test_poison_is_dead_lettered_with_its_reason(broker: MemoryBroker) -> None:
    """A handler raising Poison sends the message to the dead-letter exchange at once,
    under its routing key, with the reason in the x-reason header; it is not redelivered."""
    dead = await dead_letters(broker)
    await broker.declare_queue("kitchen", ["command.#"])
    calls: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        calls.append(delivery)
        raise Poison("cannot parse this")

    await broker.consume("kitchen", handler)
    await broker.publish("command.MAKE_PIZZA", b"junk", message_id="m-1", headers={"h": "v"})
    letter = await next_delivery(dead)
    assert letter.message_id == "m-1"
    assert letter.body == b"junk"
    assert letter.routing_key == "command.MAKE_PIZZA"
    assert letter.headers[REASON_HEADER] == "cannot parse this"
    assert letter.headers["h"] == "v"
    assert len(calls) == 1


async def test_dead_letter_queue_is_not_on_the_main_exchange(broker: MemoryBroker) -> None:
    """A queue on the dead-letter exchange does not receive ordinary publishes."""
    await broker.declare_queue(DEAD_LETTER_QUEUE, ["#"], dead_letter_exchange=True)
    with pytest.raises(Unroutable):
        await broker.publish("command.MAKE_PIZZA", b"x", message_id="m-1")


async def test_message_failing_max_deliveries_is_dead_lettered(
    broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message whose handler keeps failing is dead-lettered after MAX_DELIVERIES
    deliveries (lowered to 3 here to keep the backoff short), with the count as reason."""
    monkeypatch.setattr(memory, "MAX_DELIVERIES", 3)
    dead = await dead_letters(broker)
    await broker.declare_queue("kitchen", ["command.#"])
    calls: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        calls.append(delivery)
        raise RuntimeError("always")

    await broker.consume("kitchen", handler)
    await broker.publish("command.MAKE_PIZZA", b"x", message_id="m-1")
    letter = await next_delivery(dead)
    assert letter.message_id == "m-1"
    assert "failed 3 times" in letter.headers[REASON_HEADER]
    assert len(calls) == 3
    assert [c.redelivered for c in calls] == [False, True, True]


# -- persistence -------------------------------------------------------------------------


async def test_unconsumed_message_survives_reopen(path: Path) -> None:
    """A confirmed publish is on disk: after close and reopen on the same file, declaring
    the queue brings it back, flagged redelivered."""
    first = MemoryBroker(path)
    await first.connect()
    await first.declare_queue("kitchen", ["command.#"])
    await first.publish("command.MAKE_PIZZA", b"body", message_id="m-1", headers={"h": "v"})
    await first.close()

    second = MemoryBroker(path)
    await second.connect()
    try:
        await second.declare_queue("kitchen", ["command.#"])
        got, handler = collector()
        await second.consume("kitchen", handler)
        delivery = await next_delivery(got)
        assert delivery.message_id == "m-1"
        assert delivery.body == b"body"
        assert delivery.routing_key == "command.MAKE_PIZZA"
        assert delivery.headers == {"h": "v"}
        assert delivery.redelivered is True
    finally:
        await second.close()


async def test_acked_message_does_not_come_back_after_reopen(path: Path) -> None:
    """An acked message is deleted: after reopen the first delivery is a new message, not
    the one already handled."""
    first = MemoryBroker(path)
    await first.connect()
    await first.declare_queue("kitchen", ["command.#"])
    got, handler = collector()
    await first.consume("kitchen", handler)
    await first.publish("command.MAKE_PIZZA", b"old", message_id="m-old")
    assert (await next_delivery(got)).message_id == "m-old"
    await first.close()

    second = MemoryBroker(path)
    await second.connect()
    try:
        await second.declare_queue("kitchen", ["command.#"])
        await second.publish("command.MAKE_PIZZA", b"new", message_id="m-new")
        got2, handler2 = collector()
        await second.consume("kitchen", handler2, prefetch=1)
        delivery = await next_delivery(got2)
        assert delivery.message_id == "m-new"
        assert delivery.redelivered is False
    finally:
        await second.close()


async def test_interrupted_delivery_survives_reopen(path: Path) -> None:
    """A message whose handler was still running at close is not lost: it comes back."""
    first = MemoryBroker(path)
    await first.connect()
    await first.declare_queue("kitchen", ["command.#"])
    started = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    await first.consume("kitchen", stuck)
    await first.publish("command.MAKE_PIZZA", b"x", message_id="m-1")
    await asyncio.wait_for(started.wait(), WAIT)
    await first.close()

    second = MemoryBroker(path)
    await second.connect()
    try:
        await second.declare_queue("kitchen", ["command.#"])
        got, handler = collector()
        await second.consume("kitchen", handler)
        delivery = await next_delivery(got)
        assert (delivery.message_id, delivery.redelivered) == ("m-1", True)
    finally:
        await second.close()


async def test_publish_after_close_is_refused(path: Path) -> None:
    """A closed broker refuses publishes rather than dropping them, as not stored (to be
    published again, after the restart), not as unroutable (which ends an invoke)."""
    b = MemoryBroker(path)
    await b.connect()
    await b.declare_queue("kitchen", ["command.#"])
    await b.close()
    with pytest.raises(NotStored):
        await b.publish("command.MAKE_PIZZA", b"x", message_id="m-1")


async def test_a_full_disk_is_not_stored_and_loses_no_ack(
    small_disks: Callable[[str, int], SmallDisk], caplog: pytest.LogCaptureFixture
) -> None:
    """On a real full disk (a tmpfs filled up, tests/disk.py) a publish raises NotStored, to
    be published again, not Unroutable, which the relay took for a refusal and turned into
    error.invoke; a message handled meanwhile stays acked once the disk has room (its ack
    rides the next write, where it was lost until a restart); and the log names SQLite's
    error, not "cannot rollback - no transaction is active" from a ROLLBACK after SQLite had
    rolled back."""
    disk = small_disks("broker", 8)
    path = disk.path / "broker.db"
    b = MemoryBroker(path)
    await b.connect()
    await b.declare_queue("kitchen", ["command.#"])
    release = asyncio.Event()
    handled: asyncio.Queue[str] = asyncio.Queue()

    async def slow(delivery: Delivery) -> None:
        await release.wait()
        handled.put_nowait(delivery.message_id)

    await b.consume("kitchen", slow)
    await b.publish("command.MAKE_PIZZA", b"x" * 1000, message_id="handled-in-the-outage")
    disk.fill()
    release.set()  # its ack is due now, on the full disk
    assert await asyncio.wait_for(handled.get(), WAIT) == "handled-in-the-outage"
    with pytest.raises(NotStored, match="database or disk is full"):
        await asyncio.wait_for(
            b.publish("command.MAKE_PIZZA", b"y" * 1000, message_id="not-stored"), WAIT
        )
    disk.free()
    await asyncio.wait_for(b.publish("command.MAKE_PIZZA", b"z", message_id="after"), WAIT)
    assert await asyncio.wait_for(handled.get(), WAIT) == "after"
    await b.close()

    conn = sqlite3.connect(path)
    try:
        left = [row[0] for row in conn.execute("SELECT message_id FROM messages")]
    finally:
        conn.close()
    assert left == [], "a message handled during the outage would be delivered again"
    assert "database or disk is full" in caplog.text
    assert "cannot rollback" not in caplog.text


async def test_a_dead_letter_that_cannot_be_stored_keeps_its_message(
    small_disks: Callable[[str, int], SmallDisk],
) -> None:
    """A poison message whose dead letter cannot be written (the disk is full) stays in its
    queue and is delivered again (after MAX_RETRY_PAUSE), where it was acked and dropped
    ("no dead-letter queue for ...; dropping it"). Once the disk has room it is
    dead-lettered."""
    disk = small_disks("broker", 8)
    b = MemoryBroker(disk.path / "broker.db")
    await b.connect()
    try:
        dead = await dead_letters(b)
        await b.declare_queue("kitchen", ["command.#"])
        seen: asyncio.Queue[str] = asyncio.Queue()
        poisoned = asyncio.Event()

        async def poison(delivery: Delivery) -> None:
            await poisoned.wait()
            seen.put_nowait(delivery.message_id)
            raise Poison("cannot parse this")

        await b.consume("kitchen", poison)
        await b.publish("command.MAKE_PIZZA", b"x" * 1000, message_id="poison")
        disk.fill()
        poisoned.set()
        for _ in range(2):  # delivered again while the dead letter cannot be stored
            assert await asyncio.wait_for(seen.get(), WAIT) == "poison"
        disk.free()
        letter = await next_delivery(dead)
        assert (letter.message_id, letter.headers[REASON_HEADER]) == ("poison", "cannot parse this")
    finally:
        await b.close()
