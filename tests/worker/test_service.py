"""Tests of orchestrator.worker.service: a service takes a command, carries it out once,
answers.

The bundled kitchen (the kit's first user) and services made here run on a real
MemoryBroker and a real Ledger, each on a SQLite file in the test's temporary directory.
Answers are collected from a queue bound to ``event.#``; dead letters from a queue on the
dead-letter exchange bound to ``#``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from orchestrator.broker.base import DEAD_LETTER_QUEUE, REASON_HEADER, Delivery, Poison
from orchestrator.broker.memory import MemoryBroker
from orchestrator.messages import Message, decode, encode
from orchestrator.worker import MAX_COMMAND_BYTES, Command, Retry, Service
from orchestrator.worker.ledger import Ledger
from services.kitchen.handlers import kitchen

WAIT = 10.0  # a safety net for a hung test, never a timing assertion
T0 = 1_700_000_000.0

StartService = Callable[[Service], Awaitable[Service]]
StartStub = Callable[[str], Awaitable[Service]]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """The services' ledger file, opened a second time for the test to read."""
    led = Ledger(tmp_path / "kitchen.db")
    await led.open()
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
async def start_service(broker: MemoryBroker, ledger: Ledger) -> AsyncIterator[StartService]:
    """Start services on the broker with the ledger's file; at the end, stop the broker's
    consumers first, then close the services (no handler then runs on a closed ledger)."""
    started: list[Service] = []

    async def start(service: Service) -> Service:
        await service.start(broker, ledger.path)
        started.append(service)
        return service

    yield start
    await broker.close()
    for service in started:
        await service.close()


@pytest.fixture
def start_stub(start_service: StartService) -> StartStub:
    async def start(mode: str) -> Service:
        return await start_service(kitchen(mode=mode))

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
    assert answer.invoke == "sendOrderToKitchen"
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
    broker: MemoryBroker, ledger: Ledger, start_service: StartService, mode: str
) -> None:
    """CANCEL_PIZZA is answered with PIZZA_CANCELLED even by a kitchen that is stuck or
    refusing work: the failure modes are for work commands only."""
    events = await listen(broker, "events", ["event.#"])
    await start_service(kitchen(mode=mode))
    await broker.publish("command.CANCEL_PIZZA", cancel_pizza("o-1:4:0"), message_id="o-1:4:0")
    answer = decode((await next_delivery(events)).body)
    assert (answer.type, answer.subject) == ("PIZZA_CANCELLED", "o-1")


async def test_work_finishing_after_its_compensation_is_not_answered(
    broker: MemoryBroker, ledger: Ledger, start_stub: StartStub
) -> None:
    """MAKE_PIZZA arriving after CANCEL_PIZZA for the same order is recorded, not baked
    into an answer: the only event published is PIZZA_CANCELLED."""
    events = await listen(broker, "events", ["event.#"])
    stub = await start_stub("ok")
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


async def test_the_answer_continues_the_commands_trace(
    broker: MemoryBroker, start_stub: StartStub
) -> None:
    """The answer carries the command's trace id with a span id of the service's own."""
    events = await listen(broker, "events", ["event.#"])
    await start_stub("ok")
    traced = Message(
        "o-1:2:0", "MAKE_PIZZA", "/orchestrator", "o-1", {}, "sendOrderToKitchen", TRACE
    )
    await broker.publish("command.MAKE_PIZZA", encode(traced, T0), message_id="o-1:2:0")
    answer = decode((await next_delivery(events)).body)
    assert answer.traceparent is not None
    _, trace_id, span_id, flags = answer.traceparent.split("-")
    assert (trace_id, flags) == (TRACE.split("-")[1], "01")
    assert span_id != TRACE.split("-")[2]


TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def command(command_type: str, command_id: str, order_id: str = "o-1") -> bytes:
    return encode(Message(command_id, command_type, "/orchestrator", order_id, {}), T0)


async def test_once_per_message_carries_out_each_message_once(
    broker: MemoryBroker, ledger: Ledger, start_service: StartService
) -> None:
    """With ``once_per="message"`` two commands of one type for one order are both carried
    out and answered with different ids; a redelivery of the first is not carried out."""
    events = await listen(broker, "events", ["event.#"])
    calls: list[str] = []
    service = Service("printer")

    @service.handles("PRINT", answer="PRINTED", once_per="message")
    async def print_(cmd: Command) -> dict[str, str]:
        calls.append(cmd.id)
        return {"printed": cmd.id}

    await start_service(service)
    for command_id in ("m-1", "m-2", "m-1"):
        await broker.publish("command.PRINT", command("PRINT", command_id), message_id=command_id)
    answers = [decode((await next_delivery(events)).body) for _ in range(3)]
    # Deliveries are handled side by side, so the answers may come in any order.
    assert sorted(calls) == ["m-1", "m-2"]
    by_command: dict[str, set[str]] = {}
    for answer in answers:
        by_command.setdefault(str(answer.data["printed"]), set()).add(answer.id)
    assert sorted(str(a.data["printed"]) for a in answers) == ["m-1", "m-1", "m-2"]
    assert len(by_command["m-1"]) == 1 and by_command["m-1"] != by_command["m-2"]
    assert len(await ledger.entries()) == 2


async def test_a_handlers_retry_redelivers_until_its_storage_is_back(
    broker: MemoryBroker, ledger: Ledger, start_service: StartService
) -> None:
    """A handler whose own storage is down raises Retry: the command comes back (it is not
    dead-lettered) and is carried out once the storage works, then answered once."""
    events = await listen(broker, "events", ["event.#"])
    dead = await listen(broker, DEAD_LETTER_QUEUE, ["#"], dead_letter_exchange=True)
    calls = 0
    service = Service("bank")

    @service.handles("CHARGE", answer="CHARGED")
    async def charge(cmd: Command) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Retry("the bank's database is down")
        return {"calls": calls}

    await start_service(service)
    await broker.publish("command.CHARGE", command("CHARGE", "c-1"), message_id="c-1")
    answer = decode((await next_delivery(events)).body)
    assert (answer.type, answer.data) == ("CHARGED", {"calls": 3})
    assert await ledger.counts("o-1/CHARGE") == (1, 1)
    assert dead.empty()


async def test_a_command_larger_than_the_bound_is_poison(start_stub: StartStub) -> None:
    """A command over MAX_COMMAND_BYTES is refused before it is parsed."""
    stub = await start_stub("ok")
    huge = encode(
        Message("o-1:2:0", "MAKE_PIZZA", "/orchestrator", "o-1", {"x": "y" * MAX_COMMAND_BYTES}),
        T0,
    )
    with pytest.raises(Poison, match="larger than"):
        await stub.handle(Delivery("command.MAKE_PIZZA", huge, "o-1:2:0"))


@pytest.mark.parametrize("name", ["orchestrator", "dead-letters", "a.b", "", "1st", "x" * 65])
def test_a_name_that_cannot_be_a_queue_of_its_own_is_refused(name: str) -> None:
    """The name is the service's queue: the orchestrator's own names, dots and wildcards,
    and oversized names are refused when the service is made."""
    with pytest.raises(ValueError, match="name"):
        Service(name)


@pytest.mark.parametrize("command_type", ["A.B", "A*", "#", "", "A B"])
def test_a_type_that_is_not_one_routing_word_is_refused(command_type: str) -> None:
    """A command type becomes a routing key's last word; wildcards and dots would bind the
    queue to other commands."""
    service = Service("oven")
    with pytest.raises(ValueError, match="command type"):
        service.handles(command_type, answer="DONE")


async def _answer(cmd: Command) -> dict[str, str]:
    return {}


def test_a_type_is_handled_once() -> None:
    """A second handler for one command type is refused, not silently replacing the first."""
    service = Service("oven")
    service.handles("BAKE", answer="BAKED")(_answer)
    with pytest.raises(ValueError, match="already handles BAKE"):
        service.handles("BAKE", answer="BAKED")


async def test_a_compensation_of_an_unhandled_command_is_refused_at_start(
    start_service: StartService,
) -> None:
    """``undoes`` must name a command the service handles; checked when it starts, once
    every handler is declared."""
    service = Service("oven")
    service.handles("UNBAKE", answer="UNBAKED", undoes="BAKE")(_answer)
    with pytest.raises(ValueError, match="BAKE"):
        await start_service(service)


async def test_a_handler_answering_with_no_object_fails_and_records_nothing(
    ledger: Ledger, start_service: StartService
) -> None:
    """An answer's data is a JSON object: a handler returning anything else is a bug, which
    fails the delivery (redelivered, then dead-lettered) rather than sending a bad answer."""
    service = Service("oven")

    @service.handles("BAKE", answer="BAKED")
    async def bake(cmd: Command) -> dict[str, str]:
        return ["not", "an", "object"]  # type: ignore[return-value]

    await start_service(service)
    with pytest.raises(TypeError, match="BAKE handler returned list"):
        await service.handle(Delivery("command.BAKE", command("BAKE", "b-1"), "b-1"))
    assert await ledger.entries() == []
