"""Broker events into actors: applied once, and poison dead-lettered with its reason.

Runs the inbox on a real SQLite store and the in-process broker (its SQLite file too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.broker.base import DEAD_LETTER_QUEUE, REASON_HEADER, Delivery
from orchestrator.broker.memory import MemoryBroker
from orchestrator.charts import load_charts
from orchestrator.inbox import Inbox
from orchestrator.messages import Message, encode, event_key
from orchestrator.metrics import Metrics
from orchestrator.model import Event
from orchestrator.registry import Registry
from orchestrator.store.sqlite import SqliteStore
from orchestrator.turn import Limits

MAX_BODY = 4096


class Rig:
    def __init__(self, registry: Registry, store: SqliteStore, broker: MemoryBroker) -> None:
        self.registry = registry
        self.store = store
        self.broker = broker
        self.dead: asyncio.Queue[Delivery] = asyncio.Queue()

    async def letter(self) -> Delivery:
        return await asyncio.wait_for(self.dead.get(), timeout=10)


@pytest.fixture
def limits() -> Limits | None:
    """The registry's order limits; a test overrides this fixture to set some."""
    return None


@pytest.fixture
async def rig(tmp_path: Path, charts_dir: Path, limits: Limits | None) -> AsyncIterator[Rig]:
    store = SqliteStore(tmp_path / "orders.db")
    broker = MemoryBroker(tmp_path / "orders.broker.db")
    await store.open()
    await broker.connect()
    registry = Registry(
        store=store,
        charts=load_charts(charts_dir),
        metrics=Metrics(),
        on_commit=lambda r: None,
        limits=limits,
    )
    await Inbox(broker, registry, max_body_bytes=MAX_BODY).start()
    rig = Rig(registry, store, broker)

    async def collect(delivery: Delivery) -> None:
        await rig.dead.put(delivery)

    await broker.consume(DEAD_LETTER_QUEUE, collect)
    yield rig
    await broker.close()
    await store.close()


async def confirmed_order(registry: Registry) -> str:
    created = await registry.create(Event("ADD_PIZZA", {"pizza": {"n": 1}}, "c1"), chart=None)
    await registry.send(created.order_id, Event("CONFIRM_PIZZA", {}, "c2"))
    return created.order_id


def ready(order_id: str, message_id: str = "ready-1") -> bytes:
    return encode(Message(message_id, "PIZZA_READY", "/kitchen", order_id, {}), time.time())


async def test_an_event_is_applied_once_even_when_redelivered(rig: Rig) -> None:
    """Rule 5 on the broker path: the CloudEvent id dedupes a redelivery."""
    order_id = await confirmed_order(rig.registry)
    for _ in range(2):
        await rig.broker.publish(event_key("PIZZA_READY"), ready(order_id), message_id="ready-1")
    for _ in range(200):
        snapshot = await rig.registry.view(order_id)
        if snapshot is not None and snapshot.state.startswith("deliverPizza"):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    journal = await rig.store.journal(order_id)
    assert [e.type for e in journal].count("PIZZA_READY") == 1
    assert rig.dead.empty()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not a CloudEvent"),
        (b'{"specversion": "1.0", "type": "PIZZA_READY", "source": "/k", "subject": "x"}', "id"),
        (
            b'{"specversion": "1.0", "id": "\\ud800", "type": "PIZZA_READY", "source": "/k",'
            b' "subject": "x"}',
            "not valid Unicode text",
        ),
        # At once, not after retries, and alike on every Python: 3.11's parser gives up
        # on 2,000 levels, 3.13's reads them (tests/test_messages.py goes deeper).
        (b"[" * 34 + b"]" * 34, "nested deeper than 33 levels"),
        (b"[" * 2000 + b"]" * 2000, "nested deeper than 33 levels"),
        (b'{"pad": "' + b"x" * MAX_BODY + b'"}', f"larger than {MAX_BODY} bytes"),
    ],
    ids=["not json", "no id", "not unicode", "34 deep", "2000 deep", "too large"],
)
async def test_a_malformed_message_is_dead_lettered(rig: Rig, body: bytes, reason: str) -> None:
    await rig.broker.publish(event_key("PIZZA_READY"), body, message_id="bad")
    letter = await rig.letter()
    assert letter.body == body
    assert reason in letter.headers[REASON_HEADER]


async def test_an_event_for_an_unknown_order_is_dead_lettered(rig: Rig) -> None:
    await rig.broker.publish(event_key("PIZZA_READY"), ready("no-such-order"), message_id="r")
    letter = await rig.letter()
    assert "OrderNotFound" in letter.headers[REASON_HEADER]


async def test_an_event_not_allowed_now_is_dead_lettered_and_changes_nothing(rig: Rig) -> None:
    """Out-of-order input: PIZZA_DELIVERED while the pizza is still being baked."""
    order_id = await confirmed_order(rig.registry)
    before = await rig.registry.view(order_id)
    delivered = encode(Message("d-1", "PIZZA_DELIVERED", "/delivery", order_id, {}), time.time())
    await rig.broker.publish(event_key("PIZZA_DELIVERED"), delivered, message_id="d-1")
    letter = await rig.letter()
    assert "EventNotAllowed" in letter.headers[REASON_HEADER]
    after = await rig.registry.view(order_id)
    assert before is not None and after is not None
    assert after.version == before.version


@pytest.mark.parametrize("limits", [Limits(max_order_bytes=4096, max_order_events=2)])
async def test_an_event_past_an_order_limit_is_dead_lettered_not_retried(rig: Rig) -> None:
    """An event that would take its order past --max-order-events (here 2: the create and
    the confirm) is poison: dead-lettered at once with the limit named, never redelivered,
    and the order is unchanged."""
    order_id = await confirmed_order(rig.registry)
    before = await rig.registry.view(order_id)
    await rig.broker.publish(event_key("PIZZA_READY"), ready(order_id), message_id="ready-1")
    letter = await rig.letter()
    assert "OrderTooLarge" in letter.headers[REASON_HEADER]
    assert "max-order-events" in letter.headers[REASON_HEADER]
    assert await rig.registry.view(order_id) == before
    await asyncio.sleep(0.2)
    assert rig.dead.empty()  # dead-lettered once, not retried and dead-lettered again
    assert len(await rig.store.journal(order_id)) == 2


async def test_a_platform_event_from_outside_is_dead_lettered(rig: Rig) -> None:
    """Only the orchestrator says when its invokes are done: a forged one is poison."""
    order_id = await confirmed_order(rig.registry)
    forged = encode(
        Message("f-1", "done.invoke.sendOrderToKitchen", "/elsewhere", order_id, {}), time.time()
    )
    await rig.broker.publish(event_key("done.invoke.sendOrderToKitchen"), forged, message_id="f")
    letter = await rig.letter()
    assert "sent by the orchestrator" in letter.headers[REASON_HEADER]
    snapshot = await rig.registry.view(order_id)
    assert snapshot is not None and snapshot.state == "bakePizza.sendingOrderToKitchen"
