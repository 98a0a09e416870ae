"""Tests of services.stub: a service takes a command, carries it out once, answers.

The kitchen stub runs on a real MemoryBroker and a real Ledger, each on a SQLite file in
the test's temporary directory. Answers are collected from a queue bound to ``event.#``;
dead letters from a queue on the dead-letter exchange bound to ``#``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from orchestrator.broker.base import DEAD_LETTER_QUEUE, REASON_HEADER, Delivery, Poison
from orchestrator.broker.memory import MemoryBroker
from orchestrator.messages import Message, decode, encode
from services.kitchen import handlers as kitchen
from services.ledger import Ledger
from services.stub import StubService

WAIT = 10.0  # a safety net for a hung test, never a timing assertion
KITCHEN = {"MAKE_PIZZA": "PIZZA_READY"}
T0 = 1_700_000_000.0

StartStub = Callable[[str], Awaitable[StubService]]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = Ledger(tmp_path / "kitchen.db")
    yield led
    await led.close()


@pytest.fixture
async def broker(tmp_path: Path, ledger: Ledger) -> AsyncIterator[MemoryBroker]:
    # Depends on the ledger so it is closed first: no handler then runs on a closed ledger.
    b = MemoryBroker(tmp_path / "broker.db")
    await b.connect()
    yield b
    await b.close()


@pytest.fixture
def start_stub(broker: MemoryBroker, ledger: Ledger) -> StartStub:
    async def start(mode: str) -> StubService:
        stub = StubService("kitchen", KITCHEN, broker=broker, ledger=ledger, mode=mode)
        await stub.start()
        return stub

    return start


def make_pizza(command_id: str = "o-1:2:0", order_id: str = "o-1") -> bytes:
    message = Message(
        id=command_id,
        type="MAKE_PIZZA",
        source="/orchestrator",
        subject=order_id,
        data={"items": [{"name": "hawaii"}]},
        invoke="sendOrderToKitchen",
    )
    return encode(message, T0)


async def listen(
    broker: MemoryBroker, name: str, bindings: list[str], *, dead_letter_exchange: bool = False
) -> asyncio.Queue[Delivery]:
    """Declare a queue, consume it, and return where its deliveries land."""
    await broker.declare_queue(name, bindings, dead_letter_exchange=dead_letter_exchange)
    got: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        got.put_nowait(delivery)

    await broker.consume(name, handler, prefetch=1)
    return got


async def next_delivery(got: asyncio.Queue[Delivery]) -> Delivery:
    return await asyncio.wait_for(got.get(), WAIT)


async def wait_for_entries(ledger: Ledger, count: int) -> None:
    for _ in range(1000):
        if len(await ledger.entries()) >= count:
            return
        await asyncio.sleep(0.01)


async def test_make_pizza_is_answered_with_pizza_ready(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """A MAKE_PIZZA command gets one PIZZA_READY event for the same order, whose data
    names the command it answers, on the event routing key."""
    events = await listen(broker, "events", ["event.#"])
    await start_stub("ok")
    await broker.publish("command.MAKE_PIZZA", make_pizza(), message_id="o-1:2:0")
    delivery = await next_delivery(events)
    assert delivery.routing_key == "event.PIZZA_READY"
    answer = decode(delivery.body)
    assert answer.type == "PIZZA_READY"
    assert answer.subject == "o-1"
    assert answer.source == "/kitchen"
    assert answer.data == {"command": "o-1:2:0"}
    assert answer.id == delivery.message_id
    assert answer.id != "o-1:2:0"

    # A second, different command is answered next: the first was answered only once.
    await broker.publish("command.MAKE_PIZZA", make_pizza("o-2:2:0", "o-2"), message_id="o-2:2:0")
    assert decode((await next_delivery(events)).body).subject == "o-2"
    entries = await ledger.entries()
    assert [(e.message_id, e.order_id, e.type) for e in entries] == [
        ("o-1:2:0", "o-1", "MAKE_PIZZA"),
        ("o-2:2:0", "o-2", "MAKE_PIZZA"),
    ]


async def test_redelivered_command_is_carried_out_once(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """The same command id arriving twice (a redelivery) bakes one pizza: one ledger row,
    and the answer is published again with the same message id and the same body."""
    events = await listen(broker, "events", ["event.#"])
    await start_stub("ok")
    await broker.publish("command.MAKE_PIZZA", make_pizza(), message_id="o-1:2:0")
    first = await next_delivery(events)
    await broker.publish("command.MAKE_PIZZA", make_pizza(), message_id="o-1:2:0")
    second = await next_delivery(events)
    assert second.message_id == first.message_id
    assert decode(second.body).id == decode(first.body).id
    assert second.body == first.body
    assert len(await ledger.entries()) == 1


async def test_answer_ids_differ_per_order(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """Commands for different orders get different answer ids, or the orchestrator would
    drop one."""
    events = await listen(broker, "events", ["event.#"])
    await start_stub("ok")
    await broker.publish("command.MAKE_PIZZA", make_pizza("c-1", "o-1"), message_id="c-1")
    one = await next_delivery(events)
    await broker.publish("command.MAKE_PIZZA", make_pizza("c-2", "o-2"), message_id="c-2")
    two = await next_delivery(events)
    assert one.message_id != two.message_id


async def test_a_retried_command_is_carried_out_once_and_answered_alike(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """The orchestrator's retry is a new message for the same order's work: the service
    dedupes it by order and type, answers it with the first answer's id, and counts it."""
    events = await listen(broker, "events", ["event.#"])
    await start_stub("ok")
    await broker.publish("command.MAKE_PIZZA", make_pizza("o-1:3:0"), message_id="o-1:3:0")
    first = await next_delivery(events)
    await broker.publish("command.MAKE_PIZZA", make_pizza("o-1:6:0"), message_id="o-1:6:0")
    second = await next_delivery(events)
    assert second.message_id == first.message_id
    assert second.body == first.body
    [entry] = await ledger.entries()
    assert (entry.key, entry.message_id) == ("o-1/MAKE_PIZZA", "o-1:3:0")
    assert await ledger.counts("o-1/MAKE_PIZZA") == (1, 2)


def cancel_pizza(command_id: str, order_id: str = "o-1") -> bytes:
    message = Message(
        id=command_id,
        type="CANCEL_PIZZA",
        source="/orchestrator",
        subject=order_id,
        data={"items": []},
    )
    return encode(message, T0)


@pytest.mark.parametrize("mode", ["ok", "ignore", "reject"])
async def test_a_compensation_is_carried_out_in_every_mode(
    broker: MemoryBroker, ledger: Ledger, mode: str
) -> None:
    """CANCEL_PIZZA is answered with PIZZA_CANCELLED even by a kitchen that is stuck or
    refusing work: the failure modes are for work commands only."""
    events = await listen(broker, "events", ["event.#"])
    stub = StubService(
        "kitchen",
        kitchen.ANSWERS,
        compensations=kitchen.COMPENSATIONS,
        broker=broker,
        ledger=ledger,
        mode=mode,
    )
    await stub.start()
    await broker.publish("command.CANCEL_PIZZA", cancel_pizza("o-1:4:0"), message_id="o-1:4:0")
    answer = decode((await next_delivery(events)).body)
    assert (answer.type, answer.subject) == ("PIZZA_CANCELLED", "o-1")


async def test_work_finishing_after_its_compensation_is_not_answered(
    broker: MemoryBroker, ledger: Ledger
) -> None:
    """MAKE_PIZZA arriving after CANCEL_PIZZA for the same order is recorded, not baked
    into an answer: the only event published is PIZZA_CANCELLED."""
    events = await listen(broker, "events", ["event.#"])
    stub = StubService(
        "kitchen",
        kitchen.ANSWERS,
        compensations=kitchen.COMPENSATIONS,
        broker=broker,
        ledger=ledger,
    )
    await stub.start()
    await stub.handle(Delivery("command.CANCEL_PIZZA", cancel_pizza("o-1:4:0"), "o-1:4:0"))
    await stub.handle(Delivery("command.MAKE_PIZZA", make_pizza("o-1:3:0"), "o-1:3:0"))
    assert decode((await next_delivery(events)).body).type == "PIZZA_CANCELLED"
    await broker.publish("event.MARKER", b"marker", message_id="marker")
    assert (await next_delivery(events)).message_id == "marker"
    entries = {e.type: e.answer for e in await ledger.entries()}
    assert entries["MAKE_PIZZA"] is None


async def test_reject_mode_dead_letters_the_command(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """In mode 'reject' every command is dead-lettered with a reason and nothing is
    recorded, so the orchestrator's invoke can error."""
    dead = await listen(broker, DEAD_LETTER_QUEUE, ["#"], dead_letter_exchange=True)
    await start_stub("reject")
    await broker.publish("command.MAKE_PIZZA", make_pizza(), message_id="o-1:2:0")
    letter = await next_delivery(dead)
    assert letter.message_id == "o-1:2:0"
    assert letter.routing_key == "command.MAKE_PIZZA"
    assert "reject" in letter.headers[REASON_HEADER]
    assert await ledger.entries() == []


async def test_ignore_mode_records_and_never_answers(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """In mode 'ignore' the command is recorded with no answer and nothing is published:
    once the handler has returned, the first event on the event queue is a marker we
    publish ourselves."""
    events = await listen(broker, "events", ["event.#"])
    stub = await start_stub("ignore")
    delivery = Delivery("command.MAKE_PIZZA", make_pizza(), "o-1:2:0")
    await stub.handle(delivery)
    await stub.handle(Delivery("command.MAKE_PIZZA", make_pizza(), "o-1:2:0", redelivered=True))
    entries = await ledger.entries()
    assert [(e.message_id, e.answer) for e in entries] == [("o-1:2:0", None)]
    await broker.publish("event.MARKER", b"marker", message_id="marker")
    assert (await next_delivery(events)).message_id == "marker"


async def test_ignore_mode_through_the_broker(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """A command consumed from the broker in mode 'ignore' lands in the ledger unanswered."""
    await start_stub("ignore")
    await broker.publish("command.MAKE_PIZZA", make_pizza(), message_id="o-1:2:0")
    await wait_for_entries(ledger, 1)
    entries = await ledger.entries()
    assert [(e.message_id, e.order_id, e.answer) for e in entries] == [("o-1:2:0", "o-1", None)]


async def test_malformed_command_is_dead_lettered(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """A body that is not a CloudEvent can never be processed: it is dead-lettered at once
    with the parse error as reason, and nothing is recorded."""
    dead = await listen(broker, DEAD_LETTER_QUEUE, ["#"], dead_letter_exchange=True)
    await start_stub("ok")
    await broker.publish("command.MAKE_PIZZA", b"not a cloudevent", message_id="junk")
    letter = await next_delivery(dead)
    assert letter.message_id == "junk"
    assert letter.body == b"not a cloudevent"
    assert "CloudEvent" in letter.headers[REASON_HEADER]
    assert await ledger.entries() == []


async def test_command_the_service_does_not_handle_is_poison(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """A command type outside the service's table raises Poison naming the type."""
    stub = await start_stub("ok")
    other = Message("d-1", "DELIVER_PIZZA", "/orchestrator", "o-1", {})
    with pytest.raises(Poison, match="DELIVER_PIZZA"):
        await stub.handle(Delivery("command.DELIVER_PIZZA", encode(other, T0), "d-1"))
    assert await ledger.entries() == []
