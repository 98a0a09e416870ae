"""The Broker port: publish with confirm, consume with ack after the effect.

Semantics every adapter keeps (RabbitMQ's, which the in-process broker copies):

* One topic exchange; queues are durable and bound by routing-key patterns (``*`` one word,
  ``#`` any number of words).
* ``publish`` returns only once the broker has durably taken the message (publisher
  confirm). A message no queue is bound for raises ``Unroutable``.
* A consumer's handler runs once per delivery, and the message is acknowledged only when
  the handler returns, so a crash or an error means redelivery: at-least-once. Consumers
  dedupe by message id.
* A handler raising ``Poison`` dead-letters the message at once, with the reason in the
  ``x-reason`` header; any other error redelivers it with backoff, and a message that keeps
  failing is dead-lettered too. Dead letters go to the dead-letter exchange
  (``DEAD_LETTER_EXCHANGE``) under their original routing key.
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
# A message whose handler keeps failing is dead-lettered after this many deliveries.
MAX_DELIVERIES = 10


class Poison(OrchestratorError):
    """Raised by a handler for a message that can never be processed: dead-letter it."""


class Unroutable(OrchestratorError):
    """No queue is bound for the routing key, so the message would be lost."""

    retryable = True


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
