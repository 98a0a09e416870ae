"""Committed turns to every node whose WebSocket subscribers watch the order (RabbitMQ).

In a cluster an order's turns commit on the node serving its shard, but its subscribers
may be on any node. After each commit the owner publishes the turn's WebSocket message to
the topic exchange ``orders.turns``, keyed by the order id (order ids hold no dots). Each
node consumes one exclusive queue of its own, bound to the ids its subscribers watch
(``watch``/``unwatch``, from the hub) and to ``#`` while it has a firehose subscriber.

Messages are transient and unconfirmed: this is a notification, not the record. What a
subscriber may miss (a message published before its node's binding was in place, one lost
with a broker connection, the versions a failed-over owner committed before crashing) is
in the journal: the WebSocket endpoint sends any versions between the last it sent and the
one that arrives from the journal first, and reads the journal again (``resync``) when a
binding is made or the connection comes back. So a subscriber sees every version, in
order, once, on any node, across a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from orchestrator.broker.rabbitmq import connect

log = logging.getLogger(__name__)

TURNS_EXCHANGE = "orders.turns"
FIREHOSE = "#"
NODE_HEADER = "node"
VERSION_HEADER = "version"
# Turns waiting to be published; beyond this the oldest are dropped (and subscribers elsewhere
# fill the gap from the journal): a broker that cannot keep up must not hold the node's memory.
MAX_OUTGOING = 10_000

Deliver = Callable[[str, int, bytes], None]


class TurnFanout:
    def __init__(
        self,
        url: str,
        *,
        node: str,
        deliver: Deliver,
        resync: Callable[[str], None],
        connect_within: float,
    ) -> None:
        self.url = url
        self.node = node
        self._deliver = deliver
        self._resync = resync
        self._connect_within = connect_within
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._outgoing: asyncio.Queue[tuple[str, int, bytes]] = asyncio.Queue(MAX_OUTGOING)
        self._wanted: set[str] = set()
        self._bound: set[str] = set()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        connection = self._connection = await connect(self.url, self._connect_within)
        connection.reconnect_callbacks.add(self._reconnected)
        channel = await connection.channel(publisher_confirms=False)
        self._exchange = await channel.declare_exchange(
            TURNS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.consume(self._received, no_ack=True)
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="turn-fanout-publish"),
            asyncio.create_task(self._bind_loop(), name="turn-fanout-bind"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    # -- the owner's side ------------------------------------------------------------

    def publish(self, order_id: str, version: int, message: bytes) -> None:
        """After a commit: never waits; drops the oldest when the broker lags far behind."""
        if self._outgoing.full():
            self._outgoing.get_nowait()
        self._outgoing.put_nowait((order_id, version, message))

    async def _publish_loop(self) -> None:
        assert self._exchange is not None
        while True:
            order_id, version, body = await self._outgoing.get()
            message = aio_pika.Message(
                body,
                headers={NODE_HEADER: self.node, VERSION_HEADER: version},
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            )
            try:
                await self._exchange.publish(message, order_id, mandatory=False)
            except Exception as exc:  # subscribers elsewhere fill the gap from the journal
                log.debug("turn of %s not fanned out: %r", order_id, exc)

    # -- the watchers' side ----------------------------------------------------------

    def watch(self, order_id: str) -> None:
        """This node has a subscriber to ``order_id`` ("" for the firehose)."""
        self._wanted.add(order_id or FIREHOSE)
        self._changed.set()

    def unwatch(self, order_id: str) -> None:
        self._wanted.discard(order_id or FIREHOSE)
        self._changed.set()

    async def _bind_loop(self) -> None:
        assert self._queue is not None and self._exchange is not None
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                for key in sorted(self._wanted - self._bound):
                    await self._queue.bind(self._exchange, key)
                    self._bound.add(key)
                    if key != FIREHOSE:
                        self._resync(key)  # what committed before the binding, from the journal
                for key in sorted(self._bound - self._wanted):
                    await self._queue.unbind(self._exchange, key)
                    self._bound.discard(key)
            except Exception as exc:
                log.warning("could not change the turn fanout's bindings: %r", exc)
                await asyncio.sleep(1.0)
                self._changed.set()

    def _reconnected(self, connection: AbstractRobustConnection | None) -> None:
        for key in self._bound:
            if key != FIREHOSE:
                self._resync(key)

    async def _received(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        if headers.get(NODE_HEADER) == self.node:
            return  # this node's own turn: its subscribers had it from the hub already
        version = headers.get(VERSION_HEADER)
        if not isinstance(version, int) or not message.routing_key:
            return
        self._deliver(message.routing_key, version, message.body)
