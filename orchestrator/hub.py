"""WebSocket fan-out: each committed turn goes to every subscriber of its order.

Publishing never waits on a socket. Each subscriber has a bounded buffer; one that falls
``limit`` messages behind is marked ``lagging`` and its endpoint closes it with code 4008,
after which the client resumes with ``?after=<last version it saw>``. A slow subscriber
therefore costs its own connection, never an actor's time.

The firehose (``subscribe_all``) gets every order's messages under the same rule; the
dashboard's list page uses it. It has no replay: a client closed with 4008 reloads the list.
"""

from __future__ import annotations

import asyncio
from collections import deque

from orchestrator.metrics import Metrics
from orchestrator.model import TurnRecord, to_json

LAGGING_CLOSE_CODE = 4008


def ws_message(version: int, event_json: bytes, view: bytes) -> bytes:
    """``{"version", "event", "view"}`` built around already-encoded parts."""
    return b'{"version":%d,"event":%s,"view":%s}' % (version, event_json, view)


class Subscriber:
    def __init__(self, order_id: str, limit: int) -> None:
        self.order_id = order_id
        self.limit = limit
        self.lagging = False
        self._buffer: deque[tuple[int, bytes]] = deque()
        self._ready = asyncio.Event()

    def push(self, version: int, message: bytes) -> None:
        if self.lagging:
            return
        if len(self._buffer) >= self.limit:
            self.lagging = True
            self._buffer.clear()
        else:
            self._buffer.append((version, message))
        self._ready.set()

    async def next_batch(self) -> list[tuple[int, bytes]]:
        """Wait for messages; an empty list means the subscriber is lagging."""
        while not self._buffer and not self.lagging:
            self._ready.clear()
            await self._ready.wait()
        if self.lagging:
            return []
        batch = list(self._buffer)
        self._buffer.clear()
        return batch


class Hub:
    def __init__(self, metrics: Metrics, limit: int = 256) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._firehose: set[Subscriber] = set()
        self._metrics = metrics
        self.limit = limit
        metrics.watch(metrics.ws_subscribers, self.count)

    def count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values()) + len(self._firehose)

    def subscribe(self, order_id: str) -> Subscriber:
        subscriber = Subscriber(order_id, self.limit)
        self._subscribers.setdefault(order_id, set()).add(subscriber)
        return subscriber

    def subscribe_all(self) -> Subscriber:
        """A subscriber to every order (its ``order_id`` is empty)."""
        subscriber = Subscriber("", self.limit)
        self._firehose.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._firehose.discard(subscriber)
        subs = self._subscribers.get(subscriber.order_id)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[subscriber.order_id]
        if subscriber.lagging:
            self._metrics.ws_dropped.inc()

    def publish(self, record: TurnRecord) -> None:
        subs = self._subscribers.get(record.snapshot.order_id)
        if not subs and not self._firehose:
            return
        event = to_json(record.journal.as_json()).encode()
        message = ws_message(record.snapshot.version, event, record.reply.body)
        for subscriber in (*(subs or ()), *self._firehose):
            subscriber.push(record.snapshot.version, message)
