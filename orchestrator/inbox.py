"""Events from the broker into actors: ack after the commit, dead-letter the poison.

Each delivery on the orchestrator's queue is a CloudEvent for one order (its ``subject``).
The handler returns only after the actor has committed the turn (or found the event id
already applied), and the broker acknowledges only then; a crash before means redelivery,
which the event id dedupes. A message that can never apply (not a CloudEvent, an unknown
order or type, not allowed in the order's state) is poison: it goes to the dead-letter
queue with the reason, and the orchestrator keeps serving. A refused event is logged with
its order's fields here, since no turn logs it.

A turn the store could not write (``StoreUnavailable``: its disk is full) is not the
event's fault, and the event applies once the store is back: it raises the port's ``Retry``,
so the broker delivers it again for as long as the outage lasts (up to ``RETRY_FOR``)
without counting it toward the poison limit. Other retryable errors are redelivered and
counted, since they may be the event's own doing.

In a cluster every node consumes the one queue; an event for an order of another node's
shard is forwarded to that node by the registry and acknowledged once the owner has
committed it. While its shard has no owner (a failover: ten seconds or so), it is a
``Retry`` too, since it is no more the event's fault than a store outage; so is an
owner's own outage answered over the forward.
"""

from __future__ import annotations

import logging
import time

from orchestrator import tracing
from orchestrator.broker.base import DEAD_LETTER_QUEUE, Broker, Delivery, Poison, Retry
from orchestrator.errors import (
    InvalidInput,
    OrchestratorError,
    RemoteProblem,
    ShardMoved,
    StoreUnavailable,
)
from orchestrator.messages import EVENT_PREFIX, MalformedMessage, Message, decode, event_from
from orchestrator.model import Event
from orchestrator.registry import Registry
from orchestrator.spans import Span, Spans

log = logging.getLogger(__name__)

INBOX_QUEUE = "orchestrator"


class Inbox:
    def __init__(
        self,
        broker: Broker,
        registry: Registry,
        *,
        max_body_bytes: int,
        spans: Spans | None = None,
    ) -> None:
        self._broker = broker
        self._spans = spans
        self._registry = registry
        # The same bound as HTTP bodies' (--max-body-bytes): an event is an event, wherever
        # it comes from, and its data ends up in the order's every view and turn.
        self._max_body_bytes = max_body_bytes

    async def start(self) -> None:
        # Every dead letter lands here, with its reason in a header, for a human to read.
        await self._broker.declare_queue(DEAD_LETTER_QUEUE, ["#"], dead_letter_exchange=True)
        await self._broker.declare_queue(INBOX_QUEUE, [EVENT_PREFIX + "#"])
        await self._broker.consume(INBOX_QUEUE, self.handle)

    async def handle(self, delivery: Delivery) -> None:
        if self._spans is None:
            await self._handle(delivery)
            return
        start_ns = time.time_ns()
        received: list[tuple[Message, Event]] = []
        error = None
        try:
            await self._handle(delivery, received)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            # A body that is not a CloudEvent has no trace to be part of.
            for message, event in received:
                self._spans.record(
                    Span(
                        f"receive {message.type}",
                        "consumer",
                        event.traceparent or "",
                        message.traceparent,
                        start_ns,
                        time.time_ns(),
                        {
                            "messaging.destination.name": INBOX_QUEUE,
                            "messaging.message.id": message.id,
                            "orchestrator.order_id": message.subject,
                        },
                        error,
                    )
                )

    async def _handle(
        self, delivery: Delivery, received: list[tuple[Message, Event]] | None = None
    ) -> None:
        """``received`` (when spans are recorded) gets the message and its event."""
        if len(delivery.body) > self._max_body_bytes:
            raise Poison(f"the message is larger than {self._max_body_bytes} bytes")
        try:
            message = decode(delivery.body)
            event = event_from(message, "broker")
        except (MalformedMessage, InvalidInput) as exc:
            raise Poison(str(exc)) from exc
        if received is not None:
            received.append((message, event))
        try:
            await self._registry.send(message.subject, event)
        except (StoreUnavailable, ShardMoved) as exc:
            raise Retry(exc.detail) from exc
        except RemoteProblem as exc:
            if exc.problem.get("error") in ("StoreUnavailable", "ShardMoved"):
                raise Retry(exc.detail) from exc
            if exc.retryable:
                raise  # redelivered later, and counted
            reason = f"{exc.problem.get('error', exc.status)}: {exc.detail}"
            log.warning(
                "%s refused by the node owning order %s, dead-lettering it: %s",
                message.type,
                message.subject,
                reason,
                extra={"order_id": message.subject, "event_id": message.id},
            )
            raise Poison(reason) from exc
        except OrchestratorError as exc:
            if exc.retryable:
                raise  # redelivered later, and counted
            reason = f"{type(exc).__name__}: {exc.detail}"
            snapshot = await self._registry.view(message.subject)
            log.warning(
                "%s refused, dead-lettering it: %s",
                message.type,
                reason,
                extra={
                    "order_id": message.subject,
                    "event_id": message.id,
                    "chart": snapshot.chart if snapshot is not None else None,
                    "trace_id": tracing.trace_id(event.traceparent),
                },
            )
            raise Poison(reason) from exc
