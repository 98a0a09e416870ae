"""Relay committed outbox messages to the broker and tell the chart how it went.

For each message: publish (returns on the broker's confirm), then deliver the invoke's
``done.invoke.<id>`` to the order, then forget the message. Only then: a crash anywhere
before leaves the row in the outbox, so it is published again after the restart and the
consumer dedupes it by id, and the done event, whose id derives from the message id, is
deduped by the actor. Publishing that keeps failing is retried with backoff (up to 5 s
between tries) for as long as it fails: a broker that is down or cannot store the message
(``NotStored``: its disk is full) is an outage, not a refusal, and
``orchestrator_outbox_lag_seconds`` shows it growing. Only a message no queue is bound for
(``Unroutable``, ``MAX_ATTEMPTS`` times) ends in ``error.invoke.<id>``. A command a service
dead-letters comes back on ``UNDELIVERABLE_QUEUE`` and also ends in ``error.invoke.<id>``.

At start, ``recover`` reads the rows a crash left behind before anything can commit new
ones, and ``start`` resends them: read later, the outbox would also hold rows committed and
relayed since the start whose delete is not yet written, and those would go out twice.

In a cluster the outbox is per shard: only the node serving a shard relays its messages.
Taking a shard reads what its last owner left (``recover`` with the shards, before any
turn of the shard commits here) and resends it (``resend``); losing one cancels its
messages in flight (``forget``), which stay in the outbox for the next owner. A message
both owners publish is deduped by its id downstream.

The relay never writes a turn itself: it only sends events to actors, through ``deliver``.
A message's relay task copies the log fields of the turn that committed it (order, event,
chart, trace); messages left from before a restart and dead-lettered commands get theirs
from the message and the store. The invoke's outcome event continues the message's trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from orchestrator import logs, tracing
from orchestrator.broker.base import REASON_HEADER, Broker, Delivery, Unroutable
from orchestrator.errors import OrchestratorError
from orchestrator.messages import COMMAND_PREFIX, MalformedMessage, decode, traceparent_of
from orchestrator.metrics import Metrics
from orchestrator.model import (
    OUTCOME_MESSAGE_ID,
    Event,
    OutboxMessage,
    invoke_outcome,
    outcome_event_id,
)
from orchestrator.spans import Span, Spans
from orchestrator.store.base import OutboxStore

log = logging.getLogger(__name__)

UNDELIVERABLE_QUEUE = "orchestrator.undeliverable"
# Refusals (no queue bound) before an invoke is declared failed: about 11 s of backoff, time
# for a service that declares its queue as it starts.
MAX_ATTEMPTS = 8
IN_FLIGHT = 128  # messages published concurrently, each awaiting its own confirm

Deliver = Callable[[str, Event], Awaitable[None]]


class OutboxRelay:
    def __init__(
        self,
        store: OutboxStore,
        broker: Broker,
        deliver: Deliver,
        metrics: Metrics,
        spans: Spans | None = None,
    ) -> None:
        self._spans = spans
        self._store = store
        self._broker = broker
        self._deliver = deliver
        self._metrics = metrics
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[str, float] = {}  # message id -> when it was committed
        self._closed = False
        self._left: list[OutboxMessage] = []  # read by recover, resent by start or resend
        self._relaying: dict[str, tuple[str, asyncio.Task[None]]] = {}  # id -> order, task
        metrics.watch(metrics.outbox_depth, lambda: len(self._pending))
        metrics.watch(metrics.outbox_lag, self._lag)

    def _lag(self) -> float:
        return time.monotonic() - min(self._pending.values()) if self._pending else 0.0

    async def recover(self, shards: Sequence[int] | None = None) -> None:
        """Read what a crash left in the outbox (of ``shards`` only, when given); before any
        turn of this run (of those shards) can commit."""
        self._left += await self._store.unsent(shards)

    async def start(self) -> None:
        """Declare the queue for dead-lettered commands and resend what ``recover`` read."""
        await self._broker.declare_queue(
            UNDELIVERABLE_QUEUE, [COMMAND_PREFIX + "#"], dead_letter_exchange=True
        )
        await self._broker.consume(UNDELIVERABLE_QUEUE, self._undeliverable, prefetch=4)
        self.resend()

    def forget(self, lost: Callable[[str], bool]) -> None:
        """Stop relaying the messages of orders for which ``lost`` is true (their shard is
        another node's now); their rows stay in the outbox for it."""
        for order_id, task in list(self._relaying.values()):
            if lost(order_id):
                task.cancel()
        self._left = [m for m in self._left if not lost(m.order_id)]

    def resend(self) -> None:
        """Publish again what ``recover`` read."""
        unsent, self._left = self._left, []
        if unsent:
            log.info("resending %d outbox messages left from before the restart", len(unsent))
        for message in unsent:
            # No chart on these lines: reading every order's snapshot here would delay the
            # restart by one query per message left behind.
            trace_id = tracing.trace_id(traceparent_of(message.body))
            with logs.scope(order_id=message.order_id, event_id=message.id, trace_id=trace_id):
                self.enqueue([message])

    @asynccontextmanager
    async def _about(
        self, order_id: str, event_id: str, traceparent: str | None
    ) -> AsyncIterator[None]:
        """Log fields for work on an order outside its turns; the chart is in the store."""
        snapshot = await self._store.load(order_id)
        with logs.scope(
            order_id=order_id,
            event_id=event_id,
            chart=snapshot.chart if snapshot is not None else None,
            trace_id=tracing.trace_id(traceparent),
        ):
            yield

    def enqueue(self, messages: tuple[OutboxMessage, ...] | list[OutboxMessage]) -> None:
        """Called after a turn's commit; never before, or a crash could send a ghost.

        After ``drain`` this does nothing: the rows stay in the outbox for the next start.
        """
        if self._closed:
            return
        for message in messages:
            if message.id in self._pending:
                continue
            self._pending[message.id] = time.monotonic()
            task = asyncio.create_task(self._relay(message), name=f"relay-{message.id}")
            self._tasks.add(task)
            self._relaying[message.id] = (message.order_id, task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for in-flight messages; unconfirmed ones stay in the outbox for next start."""
        self._closed = True
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, message: OutboxMessage) -> None:
        try:
            async with self._slots:
                if self._spans is None:
                    outcome = await self._publish(message)
                    own = None
                else:
                    outcome, own = await self._publish_traced(message, self._spans)
            if message.invoke is not None:
                await self._tell(message, message.invoke, outcome, own)
            self._store.mark_sent([message])
        finally:
            self._pending.pop(message.id, None)
            self._relaying.pop(message.id, None)

    async def _publish(self, message: OutboxMessage) -> str:
        """``done`` once confirmed; ``error`` when no queue will ever take it.

        A broker that is down or cannot store the message is not a refusal: the relay keeps
        trying, and the row stays in the outbox meanwhile. The first failure is logged as a
        warning, the later ones at debug, and a publish that succeeds after failing says so.
        """
        delay = 0.1
        attempt = 0
        refusals = 0  # only "no queue takes it" counts towards giving up, not an outage
        while True:
            attempt += 1
            try:
                await self._broker.publish(message.routing_key, message.body, message_id=message.id)
            except Unroutable as exc:
                refusals += 1
                if refusals >= MAX_ATTEMPTS:
                    log.error("giving up on %s: %s", message.id, exc.detail)
                    return "error"
                failure: Exception = exc
            except Exception as exc:
                failure = exc
            else:
                self._metrics.published.inc()
                if attempt > 1:
                    log.info("published %s at attempt %d", message.id, attempt)
                return "done"
            log.log(
                logging.WARNING if attempt == 1 else logging.DEBUG,
                "publish of %s failed (attempt %d): %r; trying again",
                message.id,
                attempt,
                failure,
                extra={"order_id": message.order_id},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _publish_traced(self, message: OutboxMessage, spans: Spans) -> tuple[str, str]:
        """``_publish`` in a producer span, a child of the turn that committed the message;
        its traceparent is the one the invoke's outcome event then carries."""
        parent = traceparent_of(message.body)
        own = tracing.continued(parent)
        start_ns = time.time_ns()
        outcome = await self._publish(message)
        spans.record(
            Span(
                f"publish {message.type}",
                "producer",
                own,
                parent,
                start_ns,
                time.time_ns(),
                {
                    "messaging.destination.name": message.routing_key,
                    "messaging.message.id": message.id,
                    "orchestrator.order_id": message.order_id,
                },
                None if outcome == "done" else "no queue takes the message",
            )
        )
        return outcome, own

    async def _tell(
        self, message: OutboxMessage, invoke: str, outcome: str, traceparent: str | None
    ) -> None:
        """``traceparent``: the publish span's, when spans are recorded."""
        event = Event(
            type=invoke_outcome(outcome, invoke),
            data={OUTCOME_MESSAGE_ID: message.id},
            id=outcome_event_id(outcome, message.id),
            origin="relay",
            keyed=True,
            traceparent=traceparent or tracing.continued(traceparent_of(message.body)),
        )
        await self._deliver_quietly(message.order_id, event)

    async def _deliver_quietly(self, order_id: str, event: Event) -> None:
        delay = 0.1
        while True:
            try:
                await self._deliver(order_id, event)
                return
            except OrchestratorError as exc:
                if not exc.retryable:
                    # The order moved on (say PIZZA_READY came first): the outcome is moot.
                    log.info(
                        "%s not applied: %s", event.type, exc.detail, extra={"order_id": order_id}
                    )
                    return
                log.warning(
                    "%s: %s; retrying", event.type, exc.detail, extra={"order_id": order_id}
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _undeliverable(self, delivery: Delivery) -> None:
        try:
            command = decode(delivery.body)
        except MalformedMessage:
            return  # not one of ours; it is also in the dead-letter queue for a human
        if command.invoke is None:
            return
        reason = delivery.headers.get(REASON_HEADER, "dead-lettered")
        event = Event(
            type=invoke_outcome("error", command.invoke),
            data={OUTCOME_MESSAGE_ID: command.id, "reason": reason},
            id=outcome_event_id("error", command.id),
            origin="relay",
            keyed=True,
            traceparent=tracing.continued(command.traceparent),
        )
        if self._spans is not None:
            now = time.time_ns()
            self._spans.record(
                Span(
                    f"dead letter {command.type}",
                    "consumer",
                    event.traceparent or "",
                    command.traceparent,
                    now,
                    now,
                    {"orchestrator.order_id": command.subject, "orchestrator.reason": reason},
                )
            )
        async with self._about(command.subject, command.id, command.traceparent):
            await self._deliver_quietly(command.subject, event)
