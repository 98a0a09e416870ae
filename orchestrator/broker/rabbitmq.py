"""RabbitMQ adapter of the Broker port, on aio-pika, with the in-process broker's semantics.

Two durable topic exchanges, ``orders`` and ``orders.dead``. Queues are durable and
dead-letter to ``orders.dead``, and messages are persistent. ``publish`` waits for the
publisher confirm and is mandatory, so a message no queue takes raises ``Unroutable``
rather than vanishing. Consumers ack only after their handler returns.

Two things RabbitMQ does not do the way the port promises are done here by hand:

* A poison message must carry its reason in ``x-reason``, but a plain reject cannot add a
  header. So the consumer publishes a copy with the reason to ``orders.dead`` under the
  original routing key, waits for the confirm, and only then acks the original.
* A failing handler gets a bounded number of redeliveries with backoff. Classic queues do
  not count redeliveries, so a failed message is re-published to its own queue with an
  ``x-attempts`` header (confirmed before the original is acked) and dead-lettered once
  that reaches ``MAX_DELIVERIES``. A handler's ``Retry`` does not count: the copy keeps
  ``x-attempts`` and carries ``x-retrying-since``, the wall-clock time of the first
  ``Retry`` (wall clock, since the copy may be consumed by another process), and is
  dead-lettered only ``RETRY_FOR`` seconds after it.
* A dead letter that cannot be published (no queue is bound on ``orders.dead``) leaves the
  original in its queue: it is rejected back to it after ``MAX_RETRY_PAUSE``, never acked.

The first connection is tried again, with backoff, while RabbitMQ is not reachable (it may
be starting beside us), for up to ``connect_within`` seconds; what waiting cannot mend (a
refused login, a missing virtual host, a failed TLS handshake) fails at once. That time is
a constructor argument with no default here: whoever composes the adapter (the runtime,
the worker kit's ``process``) passes its setting, and the adapter imports nothing of theirs.
``connect_robust`` reconnects after the broker restarts and replays the exchanges,
queues, bindings and consumers declared through it; a publish during the outage raises,
and the outbox relay retries it until it is confirmed. ``on_reconnect`` hears of each
reconnection and ``on_dead_letter`` of each dead letter, for the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Callable

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import DeliveryError, PublishError
from pamqp.common import Arguments
from yarl import URL

from orchestrator.broker.base import (
    DEAD_LETTER_EXCHANGE,
    EXCHANGE,
    MAX_DELIVERIES,
    MAX_RETRY_PAUSE,
    REASON_HEADER,
    RETRY_FOR,
    Delivery,
    Handler,
    NotStored,
    Poison,
    Retry,
    Unroutable,
    retry_pause,
)
from orchestrator.numbers import whole_number

log = logging.getLogger(__name__)

ATTEMPTS_HEADER = "x-attempts"
RETRYING_SINCE_HEADER = "x-retrying-since"
# A retry goes back to its queue through the default exchange, keyed by the queue's name;
# this header keeps the key it was published with, for its consumer and its dead letter.
ROUTING_KEY_HEADER = "x-routing-key"
# The longest pause between two tries of a first connection.
MAX_CONNECT_PAUSE = 5.0
# Refusals that waiting cannot mend: a wrong login, a server that is not RabbitMQ.
_REFUSALS = (
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.IncompatibleProtocolError,
)


class BrokerUnreachable(ConnectionError):
    """RabbitMQ could not be connected to at start; the message says why, without the
    URL's password."""


async def connect(url: str, within: float) -> AbstractRobustConnection:
    """A robust connection to RabbitMQ, tried again with backoff while the server cannot be
    reached, for up to ``within`` seconds. Raises ``BrokerUnreachable``.

    Each try goes step by step, so that only this function speaks of a failure: a TCP
    connection (a failed AMQP one makes aiormq log an error each time), then a plain AMQP
    one, closed again (a robust one refused makes aio-pika log that it is "reconnecting"),
    then the robust connection."""
    address = URL(url)
    shown = str(address.with_password(None)) if address.password is not None else url
    port = address.port or (5671 if address.scheme == "amqps" else 5672)
    deadline = time.monotonic() + within
    pause = 0.5
    while True:
        timeout = max(deadline - time.monotonic(), 1.0)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address.host, port), timeout)
            writer.close()
            await writer.wait_closed()
            probe = await aio_pika.connect(url, timeout=timeout)
            await probe.close()
            return await aio_pika.connect_robust(url, timeout=timeout)
        except _REFUSALS as exc:
            raise BrokerUnreachable(f"RabbitMQ at {shown} refused the connection: {exc}") from exc
        except (TimeoutError, OSError) as exc:  # aiormq's AMQPConnectionError too
            if _is_tls_failure(exc):
                raise BrokerUnreachable(
                    f"TLS with RabbitMQ at {shown} failed: {_reason(exc)}"
                ) from exc
            reason = _reason(exc)
        except aiormq.exceptions.AMQPError as exc:  # the server closed it while opening
            raise BrokerUnreachable(
                f"RabbitMQ at {shown} closed the connection as it opened (is the virtual "
                f"host there, and may this user use it?): {exc!r}"
            ) from exc
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrokerUnreachable(
                f"cannot reach RabbitMQ at {shown} within {within:g} s: {reason}"
            )
        pause = min(pause, left)
        log.warning(
            "RabbitMQ at %s is not reachable (%s); trying again in %.1f s", shown, reason, pause
        )
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_CONNECT_PAUSE)


async def wait_until_reachable(url: str, within: float) -> None:
    """Return once RabbitMQ takes a connection (closed again); raise ``BrokerUnreachable``
    if it does not within ``within`` seconds. For a command to fail with one clear line
    before it starts serving."""
    connection = await connect(url, within)
    await connection.close()


def _is_tls_failure(exc: BaseException) -> bool:
    """A TLS handshake or certificate failure, which waiting cannot mend (aiormq wraps it)."""
    return any(isinstance(error, ssl.SSLError) for error in (exc, exc.__cause__, exc.__context__))


def _reason(exc: BaseException) -> str:
    """The text of a connection error, without aiormq's or the socket's error number."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    texts = [str(arg) for arg in exc.args if isinstance(arg, str)]
    return texts[-1] if texts else str(exc) or type(exc).__name__


class RabbitBroker:
    def __init__(
        self,
        url: str,
        *,
        connect_within: float,
        on_reconnect: Callable[[], None] | None = None,
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.connect_within = connect_within
        self._on_reconnect = on_reconnect
        self._on_dead_letter = on_dead_letter
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dead: AbstractExchange | None = None
        self._consumer_channels: list[AbstractChannel] = []

    async def connect(self) -> None:
        self._connection = await connect(self.url, self.connect_within)
        self._connection.reconnect_callbacks.add(self._reconnected)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._dead = await self._channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )

    def _reconnected(self, connection: AbstractRobustConnection | None) -> None:
        log.warning("reconnected to RabbitMQ")
        if self._on_reconnect is not None:
            self._on_reconnect()

    async def close(self) -> None:
        # Closing the consumers' channels first hands their unacked deliveries back to
        # the queues, to be delivered again after the next start.
        for channel in self._consumer_channels:
            await channel.close()
        self._consumer_channels.clear()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def _publisher(self) -> tuple[AbstractChannel, AbstractExchange, AbstractExchange]:
        if self._channel is None or self._exchange is None or self._dead is None:
            raise RuntimeError("the broker is not connected")
        return self._channel, self._exchange, self._dead

    async def declare_queue(
        self, name: str, bindings: list[str], *, dead_letter_exchange: bool = False
    ) -> None:
        channel, exchange, dead = self._publisher()
        arguments: Arguments = (
            None if dead_letter_exchange else {"x-dead-letter-exchange": dead.name}
        )
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
        for binding in bindings:
            await queue.bind(dead if dead_letter_exchange else exchange, binding)

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        _, exchange, _ = self._publisher()
        await _publish(exchange, routing_key, body, message_id, headers or {})

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> None:
        if self._connection is None:
            raise RuntimeError("the broker is not connected")
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=prefetch)
        self._consumer_channels.append(channel)
        declared = await channel.get_queue(queue, ensure=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._deliver(channel, queue, message, handler)

        await declared.consume(on_message)

    async def _deliver(
        self,
        channel: AbstractChannel,
        queue: str,
        message: AbstractIncomingMessage,
        handler: Handler,
    ) -> None:
        # Headers are anyone's: one that is not what we wrote counts as absent, so the
        # message is still acked or dead-lettered, never left holding a prefetch slot.
        headers = {k: _text(v) for k, v in (message.headers or {}).items()}
        attempts = whole_number(headers.pop(ATTEMPTS_HEADER, "0")) or 0
        retrying_since = _seconds(headers.pop(RETRYING_SINCE_HEADER, None))
        routing_key = headers.pop(ROUTING_KEY_HEADER, None) or message.routing_key or ""
        delivery = Delivery(
            routing_key=routing_key,
            body=message.body,
            message_id=message.message_id or "",
            headers=headers,
            redelivered=bool(message.redelivered) or attempts > 0 or retrying_since is not None,
        )
        reason: str | None = None
        pause = 0.0
        try:
            await handler(delivery)
        except Poison as exc:
            reason = exc.detail
        except Retry as exc:
            now = time.time()
            if retrying_since is None:
                retrying_since = now
                log.warning(
                    "%s cannot be handled now, delivering it again: %s",
                    delivery.message_id,
                    exc.detail,
                )
            retrying_for = now - retrying_since
            if retrying_for >= RETRY_FOR:
                reason = f"could not be handled for {retrying_for:.0f} s: {exc!r}"
            else:
                pause = retry_pause(retrying_for)
        except Exception as exc:
            attempts += 1
            if attempts >= MAX_DELIVERIES:
                reason = f"failed {attempts} times: {exc!r}"
            else:
                log.warning("redelivering %s after %r", delivery.message_id, exc)
                pause = min(0.05 * 2 ** (attempts - 1), 2.0)
        else:
            await message.ack()
            return
        if reason is not None and not await self._dead_letter(queue, delivery, reason):
            # Never dropped: back to its queue, after a pause so it does not spin.
            await asyncio.sleep(MAX_RETRY_PAUSE)
            await message.nack(requeue=True)
            return
        if reason is None:
            await asyncio.sleep(pause)
            again = {**headers, ATTEMPTS_HEADER: str(attempts), ROUTING_KEY_HEADER: routing_key}
            if retrying_since is not None:
                again[RETRYING_SINCE_HEADER] = repr(retrying_since)
            # To the same queue through the default exchange, confirmed before the ack.
            await _publish(
                channel.default_exchange, queue, delivery.body, delivery.message_id, again
            )
        await message.ack()

    async def _dead_letter(self, queue: str, delivery: Delivery, reason: str) -> bool:
        """Publish the dead letter; False if it cannot be (the original must then stay)."""
        _, _, dead = self._publisher()
        headers = {**delivery.headers, REASON_HEADER: reason}
        try:
            await _publish(dead, delivery.routing_key, delivery.body, delivery.message_id, headers)
        except (Unroutable, NotStored) as exc:
            log.error(
                "cannot dead-letter %s (%s): %s; keeping it in %r",
                delivery.message_id,
                reason,
                exc.detail,
                queue,
            )
            return False
        log.warning("dead-lettered %s: %s", delivery.message_id, reason)
        if self._on_dead_letter is not None:
            self._on_dead_letter(queue)
        return True


async def _publish(
    exchange: AbstractExchange,
    routing_key: str,
    body: bytes,
    message_id: str,
    headers: dict[str, str],
) -> None:
    message = aio_pika.Message(
        body,
        message_id=message_id,
        headers=dict(headers),
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    try:
        await exchange.publish(message, routing_key, mandatory=True)
    except PublishError as exc:  # returned: no queue took it
        raise Unroutable(f"no queue is bound for {routing_key!r} on {exchange.name!r}") from exc
    except DeliveryError as exc:  # nacked: RabbitMQ could not store it
        raise NotStored(f"RabbitMQ did not take the message: {exc!r}") from exc


def _seconds(text: str | None) -> float | None:
    """A time in a header we wrote; anything else counts as absent."""
    try:
        seconds = float(text) if text is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
