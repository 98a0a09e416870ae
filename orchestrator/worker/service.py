"""A service of the orchestrator: take commands from the broker, carry each out once, answer.

A ``Service`` is a name and one handler per command type. Started on a broker, it declares
a durable queue named after itself, bound to ``command.<TYPE>`` for each type it handles,
and for each delivery:

1. parses the CloudEvent; a body that is not one, or a type it has no handler for, is
   poison: dead-lettered at once with the reason (the orchestrator's invoke then errors);
2. looks the command up in its ledger by its dedupe key: the order and the command type
   (``once_per="order"``, the default, because the orchestrator's retry after a timeout is
   a new message for the same work), or the message id (``once_per="message"``, for work
   an order may ask for more than once);
3. if it was not carried out yet, runs the handler, then records the command with the
   handler's answer in the ledger, in one transaction;
4. publishes the answer, ``event.<ANSWER>``, whose id derives from the service and the
   dedupe key, so a repeat publishes the same answer again and the orchestrator dedupes it;
5. returns, and only then does the broker acknowledge the command (ack after the effect:
   a crash before means a redelivery, which step 2 makes harmless).

The answer carries the command's order as its ``subject``, the command's ``invokeid``, and
the command's trace continued with a span of this service (``traceparent``). Started with
``metrics``, the service counts the commands it receives, carries out, answers from the
ledger (deduped) and fails; with ``spans``, each command gets a consumer span (whose
traceparent its answer carries) and each answer a producer span.

A compensation (``undoes="MAKE_PIZZA"``) is carried out like any command; a work command
that finishes after its compensation was carried out for the same order is recorded but
not answered, since the order has moved on.

What a handler may do: return the answer's data (a JSON object); return None to carry the
command out without answering; raise ``Poison`` to refuse it for good (dead-lettered with
the reason in ``x-reason``); raise ``Retry`` when its own storage is down (redelivered,
with a growing pause, for as long as the outage lasts, without counting as a failure). Any
other error is redelivered with backoff and dead-lettered after ``MAX_DELIVERIES``. A
ledger that cannot be written (its disk is full) is a ``Retry`` too: the command is neither
dropped nor dead-lettered, which would leave its order waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator import tracing
from orchestrator.broker.base import Broker, Delivery, Poison, Retry
from orchestrator.messages import MalformedMessage, Message, command_key, decode, encode, event_key
from orchestrator.model import JsonObject
from orchestrator.spans import Span, Spans
from orchestrator.worker.ledger import Entry, Ledger, LedgerUnavailable
from orchestrator.worker.metrics import ServiceMetrics

# The largest command taken, as the orchestrator bounds its own events: 1 MiB.
MAX_COMMAND_BYTES = 1 << 20
# A service's name is its queue's, its ledger file's and its environment prefix's.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# The orchestrator's own queues; a service of the same name would steal its messages.
RESERVED_NAMES = frozenset({"orchestrator", "dead-letters"})
# A type is one word of a routing key: no dots, no wildcards.
_TYPE = re.compile(r"[A-Za-z0-9_-]{1,128}")

OncePer = Literal["order", "message"]


@dataclass(frozen=True, slots=True)
class Command:
    """A command as its handler sees it. ``invoke`` names the chart's invoke that sent it
    (``sendOrderToKitchen``), ``traceparent`` its W3C trace context."""

    id: str
    type: str
    order_id: str
    data: JsonObject
    source: str
    invoke: str | None = None
    traceparent: str | None = None


CommandHandler = Callable[[Command], Awaitable[JsonObject | None]]


@dataclass(frozen=True, slots=True)
class _Route:
    handler: CommandHandler
    answer: str
    undoes: str | None
    once_per: OncePer


class Service:
    """A service's name and its handlers; ``start`` runs it on a broker."""

    def __init__(self, name: str) -> None:
        if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise ValueError(
                f"a service's name is a letter then up to 63 letters, digits, '-' or '_',"
                f" and not {' or '.join(sorted(RESERVED_NAMES))}: {name!r}"
            )
        self.name = name
        self._routes: dict[str, _Route] = {}
        self._log = logging.getLogger(f"orchestrator.worker.{name}")
        self._broker: Broker | None = None
        self._ledger: Ledger | None = None
        self.metrics: ServiceMetrics | None = None
        self.spans: Spans | None = None
        # Commands being carried out now, by key: a second copy arriving meanwhile (say, a
        # resend after the orchestrator restarted) waits for the first, then finds it done.
        self._carrying: dict[str, tuple[asyncio.Lock, int]] = {}

    def handles(
        self,
        command_type: str,
        *,
        answer: str,
        undoes: str | None = None,
        once_per: OncePer = "order",
    ) -> Callable[[CommandHandler], CommandHandler]:
        """Register the decorated coroutine as the handler of ``command_type``, answered
        with ``answer`` events. ``undoes`` makes it the compensation of another command
        type; ``once_per`` chooses the dedupe key (see the module's docstring)."""
        for what, value in (("command type", command_type), ("answer type", answer)):
            if not _TYPE.fullmatch(value):
                raise ValueError(f"a {what} is 1-128 letters, digits, '-' or '_': {value!r}")
        if command_type in self._routes:
            raise ValueError(f"{self.name} already handles {command_type}")
        if once_per not in ("order", "message"):
            raise ValueError(f"once_per is 'order' or 'message', not {once_per!r}")

        def register(handler: CommandHandler) -> CommandHandler:
            self._routes[command_type] = _Route(handler, answer, undoes, once_per)
            return handler

        return register

    def command_types(self) -> list[str]:
        """The command types this service handles."""
        return list(self._routes)

    async def start(
        self,
        broker: Broker,
        ledger: Path,
        *,
        metrics: ServiceMetrics | None = None,
        spans: Spans | None = None,
    ) -> None:
        """Open the ledger, declare the queue and consume it, on a connected broker."""
        self.metrics = metrics
        self.spans = spans
        unknown = {r.undoes for r in self._routes.values() if r.undoes} - set(self._routes)
        if unknown:
            raise ValueError(f"{self.name} compensates commands it does not handle: {unknown}")
        if not self._routes:
            raise ValueError(f"{self.name} handles no command")
        self._broker = broker
        self._ledger = Ledger(ledger)
        await self._ledger.open()
        await broker.declare_queue(self.name, [command_key(t) for t in self._routes])
        await broker.consume(self.name, self.handle)

    async def close(self) -> None:
        """Close the ledger; stop the broker's consumers first."""
        if self._ledger is not None:
            await self._ledger.close()

    async def handle(self, delivery: Delivery) -> None:
        """Carry out one delivery's command; what the broker calls for each."""
        metrics = self.metrics
        if metrics is None:
            await self._handle(delivery)
            return
        metrics.received.inc()
        try:
            await self._handle(delivery)
        except Poison:
            metrics.failed["poison"].inc()
            raise
        except Exception:
            metrics.failed["retry"].inc()  # the broker delivers it again
            raise

    async def _handle(self, delivery: Delivery) -> None:
        if len(delivery.body) > MAX_COMMAND_BYTES:
            raise Poison(f"the command is larger than {MAX_COMMAND_BYTES} bytes")
        try:
            message = decode(delivery.body)
        except MalformedMessage as exc:
            raise Poison(str(exc)) from exc
        # The answer continues the command's trace with a span id of this service's own.
        traceparent = tracing.continued(message.traceparent)
        if self.spans is None:
            await self._process(message, traceparent)
            return
        start_ns = time.time_ns()
        error = None
        try:
            await self._process(message, traceparent)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.spans.record(
                Span(
                    f"process {message.type}",
                    "consumer",
                    traceparent,
                    message.traceparent,
                    start_ns,
                    time.time_ns(),
                    {
                        "messaging.destination.name": self.name,
                        "messaging.message.id": message.id,
                        "orchestrator.order_id": message.subject,
                    },
                    error,
                )
            )

    async def _process(self, message: Message, traceparent: str) -> None:
        broker, ledger = self._started()
        route = self._routes.get(message.type)
        if route is None:
            raise Poison(f"{self.name} does not handle {message.type}")
        key = dedupe_key(message, route.once_per)
        lock, users = self._carrying.get(key, (asyncio.Lock(), 0))
        self._carrying[key] = (lock, users + 1)
        try:
            async with lock:
                entry = await self._carry_out(ledger, key, message, route, traceparent)
        except LedgerUnavailable as exc:
            raise Retry(str(exc)) from exc
        finally:
            # Forget the lock only when no copy holds it or waits for it.
            lock, users = self._carrying[key]
            if users == 1:
                del self._carrying[key]
            else:
                self._carrying[key] = (lock, users - 1)
        if entry.answer is not None:
            start_ns = time.time_ns()
            answered = answer_id(self.name, key)
            await broker.publish(event_key(route.answer), entry.answer, message_id=answered)
            if self.spans is not None:
                self.spans.record(
                    Span(
                        f"publish {route.answer}",
                        "producer",
                        tracing.continued(traceparent),
                        traceparent,
                        start_ns,
                        time.time_ns(),
                        {
                            "messaging.destination.name": event_key(route.answer),
                            "messaging.message.id": answered,
                            "orchestrator.order_id": message.subject,
                        },
                    )
                )

    def _started(self) -> tuple[Broker, Ledger]:
        if self._broker is None or self._ledger is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._broker, self._ledger

    async def _carry_out(
        self, ledger: Ledger, key: str, message: Message, route: _Route, traceparent: str
    ) -> Entry:
        entry = await ledger.receive(key)
        if entry is not None:
            if self.metrics is not None:
                self.metrics.deduped[message.type].inc()
            return entry
        command = Command(
            id=message.id,
            type=message.type,
            order_id=message.subject,
            data=message.data,
            source=message.source,
            invoke=message.invoke,
            traceparent=message.traceparent,
        )
        data = await route.handler(command)
        if data is not None and not isinstance(data, dict):
            # A handler's bug, not the command's: redelivered, then dead-lettered with this.
            raise TypeError(
                f"the {message.type} handler returned {type(data).__name__}, not a dict"
            )
        answer: bytes | None = None
        if data is not None and not await self._undone(ledger, message):
            answer = self._answer(key, message, route.answer, data, traceparent)
        entry = Entry(key, message.id, message.subject, message.type, answer)
        await ledger.record(entry)
        if self.metrics is not None:
            self.metrics.executed[message.type].inc()
        self._log.debug(
            "%s carried out %s for order %s",
            self.name,
            message.type,
            message.subject,
            extra={
                "order_id": message.subject,
                "event_id": message.id,
                "trace_id": tracing.trace_id(message.traceparent),
            },
        )
        return entry

    async def _undone(self, ledger: Ledger, message: Message) -> bool:
        """Whether a compensation of this command came first (then nothing is answered)."""
        for compensation, route in self._routes.items():
            if route.undoes == message.type:
                if await ledger.carried_out(message.subject, compensation):
                    return True
        return False

    def _answer(
        self, key: str, command: Message, answer_type: str, data: JsonObject, traceparent: str
    ) -> bytes:
        answer = Message(
            id=answer_id(self.name, key),
            type=answer_type,
            source=f"/{self.name}",
            subject=command.subject,
            data=data,
            invoke=command.invoke,
            traceparent=traceparent,
        )
        return encode(answer, time.time())


def dedupe_key(command: Message, once_per: OncePer) -> str:
    """The ledger's key of a command: per order and type, or per message."""
    by_order = f"{command.subject}/{command.type}"
    return by_order if once_per == "order" else f"{by_order}/{command.id}"


def answer_id(service: str, key: str) -> str:
    """The id of the answer to the command of ``key``: the same for every repeat."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{service}/{key}"))
