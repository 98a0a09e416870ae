"""The in-process broker: RabbitMQ's semantics inside one process, persisted in SQLite.

It is the default broker, a product feature and not a test fake: embedded mode must
survive kill -9 like the RabbitMQ mode does, so a message lives in a SQLite file from the
publish (the confirm waits for its commit) to the consumer's ack (then it is deleted).
After a restart every unacked message is delivered again, flagged ``redelivered``.

Writes are batched: publishes and acks that pile up while one commit runs go into the
next one, and SQLite's work runs on one worker thread so the event loop never blocks on
fsync. Rejected path: keeping queues only in memory, which loses a confirmed MAKE_PIZZA
if the process dies before the kitchen takes it, and with it the order.

A write that fails (the file's disk is full) loses nothing: its publishes raise
``NotStored``, which the outbox relay retries, and its acks are written with the next
batch. The first failure is logged with SQLite's own error, and the recovery once; the
writes in between are tried again every ``WRITE_RETRY_PAUSE`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

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

log = logging.getLogger(__name__)

# The pause between two tries of a write that failed, while acks wait to be written.
WRITE_RETRY_PAUSE = 0.5

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


def topic_matches(binding: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more words."""
    return _match(tuple(binding.split(".")), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


@dataclass(slots=True)
class _Message:
    seq: int
    routing_key: str
    message_id: str
    headers: dict[str, str]
    body: bytes
    deliveries: int = 0
    # Deliveries whose handler failed, ``Retry`` aside: at MAX_DELIVERIES it is dead-lettered.
    failures: int = 0
    # When its handler first raised ``Retry`` (monotonic), if it has.
    retrying_since: float | None = None


@dataclass(slots=True)
class _Queue:
    name: str
    exchange: str
    bindings: list[str]
    ready: deque[_Message] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    workers: list[asyncio.Task[None]] = field(default_factory=list)

    def matches(self, exchange: str, routing_key: str) -> bool:
        return exchange == self.exchange and any(
            topic_matches(b, routing_key) for b in self.bindings
        )

    def put(self, message: _Message, *, front: bool = False) -> None:
        if front:
            self.ready.appendleft(message)
        else:
            self.ready.append(message)
        self.wakeup.set()

    async def get(self) -> _Message:
        while not self.ready:
            self.wakeup.clear()
            await self.wakeup.wait()
        return self.ready.popleft()


@dataclass(slots=True)
class _Publish:
    queue: _Queue
    message: _Message
    future: asyncio.Future[None] | None


class MemoryBroker:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self._on_dead_letter = on_dead_letter
        self._queues: dict[str, _Queue] = {}
        self._stored: dict[str, list[_Message]] = {}
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-broker")
        self._publishes: list[_Publish] = []
        self._acks: list[int] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._thread, self._open_db)
        for seq, queue, routing_key, message_id, headers, body in rows:
            message = _Message(seq, routing_key, message_id, json.loads(headers), body, 1)
            self._stored.setdefault(queue, []).append(message)
        self._writer = asyncio.create_task(self._write_loop(), name="memory-broker-writer")

    def _open_db(self) -> list[tuple[int, str, str, str, str, bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute(SCHEMA)
        self._db = db
        return list(db.execute("SELECT * FROM messages ORDER BY seq"))

    async def close(self) -> None:
        # 1. stop consumers: an interrupted delivery stays stored and comes back next start
        for queue in self._queues.values():
            for worker in queue.workers:
                worker.cancel()
            await asyncio.gather(*queue.workers, return_exceptions=True)
            queue.workers.clear()
        # 2. flush the last publishes and acks
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        # 3. close the file
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    # -- declarations ------------------------------------------------------------------

    async def declare_queue(
        self, name: str, bindings: list[str], *, dead_letter_exchange: bool = False
    ) -> None:
        exchange = DEAD_LETTER_EXCHANGE if dead_letter_exchange else EXCHANGE
        queue = self._queues.get(name)
        if queue is not None:
            queue.bindings.extend(b for b in bindings if b not in queue.bindings)
            return
        queue = _Queue(name, exchange, list(bindings))
        for message in self._stored.pop(name, []):
            queue.put(message)
        self._queues[name] = queue

    # -- publishing --------------------------------------------------------------------

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self._route(EXCHANGE, routing_key, body, message_id, headers or {})

    async def _route(
        self, exchange: str, routing_key: str, body: bytes, message_id: str, headers: dict[str, str]
    ) -> None:
        targets = [q for q in self._queues.values() if q.matches(exchange, routing_key)]
        if not targets:
            raise Unroutable(f"no queue is bound for {routing_key!r} on {exchange!r}")
        if self._closing:
            raise NotStored("the broker is closing")
        loop = asyncio.get_running_loop()
        futures = []
        for queue in targets:
            future: asyncio.Future[None] = loop.create_future()
            message = _Message(0, routing_key, message_id, dict(headers), body)
            self._publishes.append(_Publish(queue, message, future))
            futures.append(future)
        self._wake.set()
        await asyncio.gather(*futures)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failed_writes = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._publishes or self._acks:
                publishes, self._publishes = self._publishes, []
                acks, self._acks = self._acks, []
                rows = [
                    (
                        p.queue.name,
                        p.message.routing_key,
                        p.message.message_id,
                        json.dumps(p.message.headers),
                        p.message.body,
                    )
                    for p in publishes
                ]
                try:
                    seqs = await loop.run_in_executor(self._thread, self._write, rows, acks)
                except Exception as exc:
                    if not failed_writes:
                        log.error("the broker cannot write its file: %s", exc)
                    failed_writes += 1
                    # Those messages were handled: their deletes ride the next write.
                    self._acks.extend(acks)
                    for p in publishes:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(
                                NotStored(f"the broker could not store the message: {exc}")
                            )
                    if self._closing:
                        return  # the acks are lost; their messages come back after a restart
                    await asyncio.sleep(WRITE_RETRY_PAUSE)
                    continue
                if failed_writes:
                    log.warning(
                        "the broker writes its file again, after %d failures", failed_writes
                    )
                    failed_writes = 0
                for p, seq in zip(publishes, seqs, strict=True):
                    p.message.seq = seq
                    p.queue.put(p.message)
                    if p.future is not None and not p.future.done():
                        p.future.set_result(None)
            if self._closing:
                return

    def _write(self, rows: list[tuple[str, str, str, str, bytes]], acks: list[int]) -> list[int]:
        db = self._db
        assert db is not None, "broker is not connected"
        seqs = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                cursor = db.execute(
                    "INSERT INTO messages (queue, routing_key, message_id, headers, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    row,
                )
                seqs.append(int(cursor.lastrowid or 0))
            db.executemany("DELETE FROM messages WHERE seq = ?", [(seq,) for seq in acks])
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk does): a ROLLBACK then raises
            # "no transaction is active" and hides the error that matters.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return seqs

    # -- consuming ---------------------------------------------------------------------

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> None:
        if queue not in self._queues:
            raise KeyError(f"queue {queue!r} is not declared")
        q = self._queues[queue]
        for n in range(prefetch):
            q.workers.append(asyncio.create_task(self._work(q, handler), name=f"{queue}-{n}"))

    async def _work(self, queue: _Queue, handler: Handler) -> None:
        while True:
            message = await queue.get()
            delivery = Delivery(
                routing_key=message.routing_key,
                body=message.body,
                message_id=message.message_id,
                headers=message.headers,
                redelivered=message.deliveries > 0,
            )
            message.deliveries += 1
            try:
                await handler(delivery)
            except asyncio.CancelledError:
                queue.put(message, front=True)
                raise
            except Poison as exc:
                await self._dead_letter(queue, message, exc.detail)
            except Retry as exc:
                await self._retry(queue, message, exc)
            except Exception as exc:
                message.failures += 1
                if message.failures >= MAX_DELIVERIES:
                    reason = f"failed {message.failures} times: {exc!r}"
                    await self._dead_letter(queue, message, reason)
                else:
                    log.warning("redelivering %s after %r", message.message_id, exc)
                    delay = min(0.05 * 2 ** (message.failures - 1), 2.0)
                    self._put_later(queue, message, delay)
            else:
                self._ack(message)

    async def _retry(self, queue: _Queue, message: _Message, exc: Retry) -> None:
        """Deliver it again later, not counted as a failure, unless it has been retried
        for ``RETRY_FOR`` seconds already."""
        now = time.monotonic()
        if message.retrying_since is None:
            message.retrying_since = now
            log.warning(
                "%s cannot be handled now, delivering it again: %s", message.message_id, exc.detail
            )
        retrying_for = now - message.retrying_since
        if retrying_for >= RETRY_FOR:
            reason = f"could not be handled for {retrying_for:.0f} s: {exc!r}"
            await self._dead_letter(queue, message, reason)
        else:
            self._put_later(queue, message, retry_pause(retrying_for))

    def _put_later(self, queue: _Queue, message: _Message, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, queue.put, message)

    def _ack(self, message: _Message) -> None:
        self._acks.append(message.seq)
        self._wake.set()

    async def _dead_letter(self, queue: _Queue, message: _Message, reason: str) -> None:
        headers = {**message.headers, REASON_HEADER: reason}
        try:
            await self._route(
                DEAD_LETTER_EXCHANGE, message.routing_key, message.body, message.message_id, headers
            )
        except (Unroutable, NotStored) as exc:
            # Dropping it would lose it for good: it stays in its queue, delivered again.
            log.error(
                "cannot dead-letter %s (%s): %s; keeping it in %r",
                message.message_id,
                reason,
                exc.detail,
                queue.name,
            )
            self._put_later(queue, message, MAX_RETRY_PAUSE)
            return
        log.warning("dead-lettered %s: %s", message.message_id, reason)
        if self._on_dead_letter is not None:
            self._on_dead_letter(queue.name)
        self._ack(message)
