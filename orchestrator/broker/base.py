"""The Broker port: publish with confirm, consume with ack after the effect.

Semantics every adapter keeps (RabbitMQ's, which the in-process broker copies):

* One topic exchange; queues are durable and bound by routing-key patterns (``*`` one word,
  ``#`` any number of words).
* ``publish`` returns only once the broker has durably taken the message (publisher
  confirm). A message no queue is bound for raises ``Unroutable``, a refusal; a broker that
  could not store it (its disk is full) raises ``NotStored``, which is not one: publish
  again later, for as long as it takes.
* A consumer's handler runs once per delivery, and the message is acknowledged only when
  the handler returns, so a crash or an error means redelivery: at-least-once. Consumers
  dedupe by message id.
* A handler raising ``Poison`` dead-letters the message at once, with the reason in the
  ``x-reason`` header; any other error redelivers it with backoff, and a message that fails
  ``MAX_DELIVERIES`` times is dead-lettered too. Dead letters go to the dead-letter exchange
  (``DEAD_LETTER_EXCHANGE``) under their original routing key.
* A handler raising ``Retry`` says the message is fine but the handler's own storage is
  down (its database's disk is full, say): the message is redelivered with a pause that
  grows to ``MAX_RETRY_PAUSE`` and the failure does not count toward ``MAX_DELIVERIES``,
  for as long as the outage lasts, up to ``RETRY_FOR`` seconds from the first ``Retry``;
  only then is it dead-lettered. ``NotStored`` escaping a handler (the answer it publishes
  could not be stored) counts as a ``Retry``. Rejected: counting an outage's failures as
  poison, which dead-lettered every event of a 9-second outage.
* A message is never dropped: when its dead letter cannot be published (no dead-letter
  queue is bound, or the broker cannot store it), it stays in its queue and is delivered
  again after ``MAX_RETRY_PAUSE``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.errors import OrchestratorError

EXCHANGE = "orders"
DEAD_LETTER_EXCHANGE = "orders.dead"
DEAD_LETTER_QUEUE = "dead-letters"
REASON_HEADER = "x-reason"
# A message whose handler keeps failing is dead-lettered after this many failed deliveries
# (a ``Retry`` is not one).
MAX_DELIVERIES = 10
# How long a handler's ``Retry`` (its store is down) is honoured, from the first one: an
# hour, far beyond a disk being freed or a database restarted, and short of keeping a
# message that some bug makes retry forever. Then it is dead-lettered with the reason.
RETRY_FOR = 3600.0
# The longest pause between two deliveries of a message being retried or kept: once the
# store is back, its messages are handled within this.
MAX_RETRY_PAUSE = 5.0


class Poison(OrchestratorError):
    """Raised by a handler for a message that can never be processed: dead-letter it."""


class Unroutable(OrchestratorError):
    """No queue is bound for the routing key, so the message would be lost."""

    retryable = True


class Retry(OrchestratorError):
    """Raised by a handler that cannot handle the message now, through no fault of the
    message: its own storage is down. Redelivered without counting toward
    ``MAX_DELIVERIES``, for up to ``RETRY_FOR`` seconds."""

    retryable = True


class NotStored(Retry):
    """The broker could not store the message (its disk is full, it is closing): nothing
    was published, and publishing it again later will work. Not a refusal."""


def retry_pause(retrying_for: float) -> float:
    """The pause before delivering a ``Retry``'d message again, given how long it has been
    retried: half that, between 0.05 s and ``MAX_RETRY_PAUSE``, so each pause is half as
    long again as the one before, and none is needed to remember how many there were."""
    return min(max(0.05, retrying_for / 2), MAX_RETRY_PAUSE)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a message to a consumer."""

    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
    redelivered: bool = False


Handler = Callable[[Delivery], Awaitable[None]]


class Broker(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None:
        """Stop consumers (unacked deliveries go back to their queue), then disconnect."""

    async def declare_queue(
        self, name: str, bindings: list[str], *, dead_letter_exchange: bool = False
    ) -> None:
        """A durable queue bound to routing-key patterns on the exchange (or on the
        dead-letter exchange, with ``dead_letter_exchange=True``)."""

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Hand a persistent message to the broker; returns on confirm."""

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> None:
        """Start delivering the queue's messages to ``handler``, ``prefetch`` at a time."""
