"""A stub service: take a command from the broker, carry it out once, answer with an event.

The kitchen (MAKE_PIZZA -> PIZZA_READY) and the delivery (DELIVER_PIZZA -> PIZZA_DELIVERED)
are both this, with their own names. Carrying out is waiting ``delay`` seconds and
recording the command in the service's ledger. Its answer continues the command's trace
(``traceparent``).

A command is carried out once per order: the dedupe key is the order and the command type,
not the message id, because the orchestrator's retry after a timeout is a new message for
the same work. A repeat is answered with the recorded answer, whose id derives from that
key, so the orchestrator recognises it as the same answer.

Compensations (the kitchen's CANCEL_PIZZA undoes MAKE_PIZZA) are carried out like any
command; a work command that finishes after its compensation is recorded but not answered.

A ledger that cannot be written (its disk is full) makes the handler raise the broker's
``Retry``: the command is delivered again until the ledger works, neither dropped nor
dead-lettered (a dead MAKE_PIZZA would leave its order waiting for the kitchen's timeout).
An answer the broker could not store (``NotStored``) is retried the same way; the ledger
then answers the redelivery with the recorded answer.

With ``metrics`` the service counts the commands it receives, carries out, answers from
the ledger (deduped) and fails; with ``spans`` each command gets a consumer span (whose
traceparent its answer carries) and each answer a producer span.

Failure modes, for tests, apply to work commands only (a stuck kitchen still hears a
cancellation): ``reject`` dead-letters them (the orchestrator's invoke then errors),
``ignore`` records them and never answers (the order waits).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from orchestrator import tracing
from orchestrator.broker.base import Broker, Delivery, Poison, Retry
from orchestrator.messages import MalformedMessage, Message, command_key, decode, encode, event_key
from orchestrator.spans import Span, Spans
from services.ledger import Entry, Ledger, LedgerUnavailable
from services.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class StubService:
    def __init__(
        self,
        name: str,
        answers: dict[str, str],
        *,
        broker: Broker,
        ledger: Ledger,
        compensations: dict[str, str] | None = None,
        delay: float = 0.0,
        mode: str = "ok",
        metrics: ServiceMetrics | None = None,
        spans: Spans | None = None,
    ) -> None:
        self.name = name
        self.metrics = metrics
        self.spans = spans
        self.answers = answers
        # compensation type -> the command type it undoes
        self.compensations = compensations or {}
        self.broker = broker
        self.ledger = ledger
        self.delay = delay
        self.mode = mode
        # Commands being carried out now, by key: a second copy arriving meanwhile (say, a
        # resend after the orchestrator restarted) waits for the first, then finds it done.
        self._carrying: dict[str, tuple[asyncio.Lock, int]] = {}

    async def start(self) -> None:
        await self.ledger.open()
        await self.broker.declare_queue(self.name, [command_key(t) for t in self.answers])
        await self.broker.consume(self.name, self.handle)

    async def handle(self, delivery: Delivery) -> None:
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
        try:
            command = decode(delivery.body)
        except MalformedMessage as exc:
            raise Poison(str(exc)) from exc
        # The answer continues the command's trace with a span id of this service's own.
        traceparent = tracing.continued(command.traceparent)
        if self.spans is None:
            await self._process(command, traceparent)
            return
        start_ns = time.time_ns()
        error = None
        try:
            await self._process(command, traceparent)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.spans.record(
                Span(
                    f"process {command.type}",
                    "consumer",
                    traceparent,
                    command.traceparent,
                    start_ns,
                    time.time_ns(),
                    {
                        "messaging.destination.name": self.name,
                        "messaging.message.id": command.id,
                        "orchestrator.order_id": command.subject,
                    },
                    error,
                )
            )

    async def _process(self, command: Message, traceparent: str) -> None:
        answer_type = self.answers.get(command.type)
        if answer_type is None:
            raise Poison(f"{self.name} does not handle {command.type}")
        work = command.type not in self.compensations
        if work and self.mode == "reject":
            raise Poison(f"{self.name} refuses {command.type} (failure mode 'reject')")
        key = dedupe_key(command.subject, command.type)
        lock, users = self._carrying.get(key, (asyncio.Lock(), 0))
        self._carrying[key] = (lock, users + 1)
        try:
            async with lock:
                entry = await self._carry_out(key, command, answer_type, traceparent)
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
            answer_id = _answer_id(self.name, key)
            await self.broker.publish(event_key(answer_type), entry.answer, message_id=answer_id)
            if self.spans is not None:
                self.spans.record(
                    Span(
                        f"publish {answer_type}",
                        "producer",
                        tracing.continued(traceparent),
                        traceparent,
                        start_ns,
                        time.time_ns(),
                        {
                            "messaging.destination.name": event_key(answer_type),
                            "messaging.message.id": answer_id,
                            "orchestrator.order_id": command.subject,
                        },
                    )
                )

    async def _carry_out(
        self, key: str, command: Message, answer_type: str, traceparent: str
    ) -> Entry:
        entry = await self.ledger.receive(key)
        if entry is not None:
            if self.metrics is not None:
                self.metrics.deduped[command.type].inc()
        else:
            work = command.type not in self.compensations
            if work:
                await asyncio.sleep(self.delay)
            answer: bytes | None = None
            if not work or (self.mode != "ignore" and not await self._undone(command)):
                answer = self._answer(key, command, answer_type, traceparent)
            entry = Entry(key, command.id, command.subject, command.type, answer)
            await self.ledger.record(entry)
            if self.metrics is not None:
                self.metrics.executed[command.type].inc()
            log.debug(
                "%s carried out %s for order %s",
                self.name,
                command.type,
                command.subject,
                extra={
                    "order_id": command.subject,
                    "event_id": command.id,
                    "trace_id": tracing.trace_id(command.traceparent),
                },
            )
        return entry

    async def _undone(self, command: Message) -> bool:
        """Whether a compensation of this command came first (then nothing is answered)."""
        for compensation, undoes in self.compensations.items():
            if undoes == command.type:
                if await self.ledger.find(dedupe_key(command.subject, compensation)):
                    return True
        return False

    def _answer(self, key: str, command: Message, answer_type: str, traceparent: str) -> bytes:
        answer = Message(
            id=_answer_id(self.name, key),
            type=answer_type,
            source=f"/{self.name}",
            subject=command.subject,
            data={"command": command.id},
            traceparent=traceparent,
        )
        return encode(answer, time.time())


def dedupe_key(order_id: str, command_type: str) -> str:
    return f"{order_id}/{command_type}"


def _answer_id(service: str, key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{service}/{key}"))
