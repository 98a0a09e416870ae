"""WebSocket fan-out: each committed turn goes to every subscriber of its order.

Publishing never waits on a socket. Each subscriber has a bounded buffer; one that falls
``limit`` messages (``--ws-queue``) or ``limit_bytes`` bytes of them (``--ws-queue-bytes``)
behind is marked ``lagging`` and its endpoint closes it with code 4008, after which the
client resumes with ``?after=<last version it saw>``. A slow subscriber therefore costs its
own connection, never an actor's time, and holds at most ``limit_bytes`` (or one message,
if that is larger): a count alone let 256 views of a 1 MiB order wait for one client.

The firehose (``subscribe_all``) gets every order's messages under the same rule; the
dashboard's list page uses it. It has no replay: a client closed with 4008 reloads the list.
Every event goes to every firehose subscriber, so it is built to cost the turn nothing per
subscriber and to keep the event loop open to requests however many there are:

- A message is encoded once and appended to one shared log of the last ``limit`` messages,
  no more than ``limit_bytes`` of them (but always the newest); each firehose subscriber
  is only a cursor into it (publishing is O(1), not a push per subscriber), and one that
  the log has left behind is lagging.
- Subscribers are woken by a walk over them, at most ``SENDS_PER_TURN`` messages' worth
  per turn of the event loop (a callback that re-arms itself), never all at once: 2,000
  woken pumps, each sending its batch, had kept requests and ``/healthz`` waiting for
  seconds. A subscriber woken later in a walk finds more messages and sends them in one
  batch; one still sending is not woken (it reads the log again when done), so a client
  that does not read costs a walk nothing.
- Their number is capped (``--max-subscribers``), since each sends every event itself.

In a cluster the hub also hears of turns committed on other nodes (``deliver``, from the
turn fanout), and tells a ``Watcher`` which orders its subscribers watch, so that only
those cross the broker. An order subscriber told to ``resync`` reads the journal for
anything it may have missed before its node was bound to the order's turns.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Protocol

from orchestrator.metrics import Metrics
from orchestrator.model import TurnRecord, to_json

LAGGING_CLOSE_CODE = 4008
# Firehose messages the subscribers woken in one turn of the event loop may have to send:
# at about 15 us a send, a few milliseconds, which is what a request may wait per turn.
SENDS_PER_TURN = 256
# Bytes of messages one subscriber may fall behind (``--ws-queue-bytes``).
DEFAULT_LIMIT_BYTES = 8 * 1024 * 1024


def ws_message(version: int, event_json: bytes, view: bytes) -> bytes:
    """``{"version", "event", "view"}`` built around already-encoded parts."""
    return b'{"version":%d,"event":%s,"view":%s}' % (version, event_json, view)


class Watcher(Protocol):
    """Told which orders this node's subscribers watch ("" for every order)."""

    def watch(self, order_id: str) -> None: ...

    def unwatch(self, order_id: str) -> None: ...


def message_of(record: TurnRecord) -> bytes:
    """The WebSocket message of a committed turn."""
    event = to_json(record.journal.as_json()).encode()
    return ws_message(record.snapshot.version, event, record.reply.body)


class Subscriber:
    def __init__(self, order_id: str, limit: int, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        self.order_id = order_id
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.lagging = False
        # Set when versions may have committed that no message will bring (in a cluster):
        # the endpoint reads the journal for them.
        self.resync = False
        self._buffer: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()

    def push(self, version: int, message: bytes) -> None:
        if self.lagging:
            return
        if len(self._buffer) >= self.limit or (
            self._buffer and self._bytes + len(message) > self.limit_bytes
        ):
            self.lagging = True
            self._buffer.clear()
            self._bytes = 0
        else:
            self._buffer.append((version, message))
            self._bytes += len(message)
        self._ready.set()

    def wants_resync(self) -> None:
        self.resync = True
        self._ready.set()

    async def next_batch(self) -> list[tuple[int, bytes]]:
        """Wait for messages, or to be lagging, or to resync (then the batch may be empty)."""
        while not self._buffer and not self.lagging and not self.resync:
            self._ready.clear()
            await self._ready.wait()
        if self.lagging:
            return []
        batch = list(self._buffer)
        self._buffer.clear()
        self._bytes = 0
        return batch


class FirehoseLog:
    """The last ``limit`` firehose messages, at most ``limit_bytes`` of them but always the
    newest, numbered; subscribers read it by position."""

    def __init__(self, limit: int, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self._entries: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self.end = 0  # the position after the newest message

    def append(self, version: int, message: bytes) -> None:
        self._entries.append((version, message))
        self._bytes += len(message)
        self.end += 1
        while len(self._entries) > 1 and (
            len(self._entries) > self.limit or self._bytes > self.limit_bytes
        ):
            self._bytes -= len(self._entries.popleft()[1])

    def held(self) -> int:
        """How many messages the log holds now."""
        return len(self._entries)

    def since(self, position: int) -> list[tuple[int, bytes]] | None:
        """The messages from ``position`` on, or None when some were already dropped."""
        missing = self.end - position
        if missing > len(self._entries):
            return None
        return list(itertools.islice(self._entries, len(self._entries) - missing, None))


class FirehoseSubscriber:
    """A subscriber to every order: a position in the shared log, not a buffer of its own."""

    order_id = ""

    def __init__(self, log: FirehoseLog) -> None:
        self.lagging = False
        self._log = log
        self.position = log.end
        self._ready = asyncio.Event()
        self._waiting = False

    def wake(self) -> int:
        """Wake the subscriber's pump if it waits and has messages: how many it will send.
        One busy sending is left alone: it reads the log again when it is done."""
        pending = self._log.end - self.position
        if not self._waiting or not pending:
            return 0
        self._ready.set()
        self._waiting = False  # woken once is enough
        return pending if pending <= self._log.held() else 1  # a lagging one only closes

    async def next_batch(self) -> list[tuple[int, bytes]]:
        """Wait for messages; an empty list means the subscriber is lagging."""
        while self.position == self._log.end:
            self._ready.clear()
            self._waiting = True
            try:
                await self._ready.wait()
            finally:
                self._waiting = False
        batch = self._log.since(self.position)
        if batch is None:
            self.lagging = True
            return []
        self.position = self._log.end
        return batch


class Hub:
    def __init__(
        self,
        metrics: Metrics,
        limit: int = 256,
        max_subscribers: int = 1000,
        limit_bytes: int = DEFAULT_LIMIT_BYTES,
    ) -> None:
        self.watcher: Watcher | None = None  # set in a cluster, by the runtime
        self._subscribers: dict[str, set[Subscriber]] = {}
        # A dict keeps the order they came in, so each walk wakes them in the same order.
        self._firehose: dict[FirehoseSubscriber, None] = {}
        self._log = FirehoseLog(limit, limit_bytes)
        self._walk: deque[FirehoseSubscriber] = deque()
        self._walk_again = False
        self._armed = False
        self._metrics = metrics
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.max_subscribers = max_subscribers
        # WebSockets admitted (``admit``), counted from the handshake, before they subscribe.
        self.connections = 0
        metrics.watch(metrics.ws_subscribers, self.count)

    def count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values()) + len(self._firehose)

    def subscribe(self, order_id: str) -> Subscriber:
        subscriber = Subscriber(order_id, self.limit, self.limit_bytes)
        subs = self._subscribers.setdefault(order_id, set())
        if not subs and self.watcher is not None:
            self.watcher.watch(order_id)
        subs.add(subscriber)
        return subscriber

    def subscribe_all(self) -> FirehoseSubscriber:
        """A subscriber to every order (its ``order_id`` is empty), from now on."""
        subscriber = FirehoseSubscriber(self._log)
        if not self._firehose and self.watcher is not None:
            self.watcher.watch("")
        self._firehose[subscriber] = None
        return subscriber

    def resync(self, order_id: str) -> None:
        """Have the order's subscribers read the journal for versions no message brought."""
        for subscriber in self._subscribers.get(order_id, ()):
            subscriber.wants_resync()

    def admit(self) -> bool:
        """Count in one more WebSocket, unless ``max_subscribers`` are open (then False)."""
        if self.connections >= self.max_subscribers:
            return False
        self.connections += 1
        return True

    def leave(self) -> None:
        self.connections -= 1

    def unsubscribe(self, subscriber: Subscriber | FirehoseSubscriber) -> None:
        if isinstance(subscriber, FirehoseSubscriber):
            self._firehose.pop(subscriber, None)
            if not self._firehose and self.watcher is not None:
                self.watcher.unwatch("")
            if subscriber.lagging:
                self._metrics.ws_dropped.inc()
            return
        subs = self._subscribers.get(subscriber.order_id)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[subscriber.order_id]
                if self.watcher is not None:
                    self.watcher.unwatch(subscriber.order_id)
        if subscriber.lagging:
            self._metrics.ws_dropped.inc()

    def publish(self, record: TurnRecord) -> None:
        subs = self._subscribers.get(record.snapshot.order_id)
        if not subs and not self._firehose:
            return
        self.deliver(record.snapshot.order_id, record.snapshot.version, message_of(record))

    def deliver(self, order_id: str, version: int, message: bytes) -> None:
        """A turn's message to the order's subscribers and the firehose; in a cluster, also
        those of turns committed on other nodes."""
        for subscriber in self._subscribers.get(order_id, ()):
            subscriber.push(version, message)
        if self._firehose:
            self._log.append(version, message)
            self._wake_firehose()

    def _wake_firehose(self) -> None:
        if self._walk:
            self._walk_again = True  # those already woken may be sending; wake them again
            return
        self._walk.extend(self._firehose)
        self._arm()

    def _arm(self) -> None:
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_soon(self._wake_some)

    def _wake_some(self) -> None:
        """One step of the walk: wake subscribers until they have ``SENDS_PER_TURN``
        messages to send between them, then let the loop run everything else first."""
        self._armed = False
        budget = SENDS_PER_TURN
        while budget > 0:
            if not self._walk:
                if not self._walk_again:
                    return
                self._walk_again = False
                self._walk.extend(self._firehose)
            budget -= self._walk.popleft().wake()
        self._arm()
