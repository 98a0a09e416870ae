"""Group commit: turns of many actors that arrive together share one transaction.

Both adapters run it; each gives it a ``write`` that stores a batch in one transaction, and
a test of which errors mean the storage itself failed. Turns that arrive while a commit is
running wait in ``_pending`` and go into the next transaction together. A commit per turn
tops out near 2,600 turns/s on SQLite and 200/s on PostgreSQL here; batches get far past
both.

If a batch fails, each of its turns is retried alone, so one bad turn (a constraint it
violates, data that is not JSON) never sinks the others. A batch that fails because the
storage failed (SQLite's disk full or failing, PostgreSQL's connection lost, disk full or
server shut down) is not retried turn by turn, since each would fail the same way: its
turns fail at once with ``StoreUnavailable``, and the outage is logged once, with the
store's own error, and its end once.

Confirmed outbox messages (``mark_sent``) and refused timers (``drop_timer``) are not part
of any turn: they ride the next transaction, and one is made for them when no turn comes.

A cluster node's write can be refused by its fence (``Fenced``: the node lost some shards).
That is not the turns' fault, and retrying them one by one would only be refused again:
the turns of the lost shards fail at once with ``ShardMoved`` (retryable: the new owner
applies them), and the rest of the batch is written without them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from orchestrator.errors import ShardMoved, StoreUnavailable, Unavailable
from orchestrator.model import OutboxMessage, Timer, TurnRecord
from orchestrator.shards import shard_of
from orchestrator.store.base import Fenced

# A batch's turns, the messages the broker confirmed, and the refused timers, all to be
# stored in one transaction.
Write = Callable[[list[TurnRecord], list[OutboxMessage], list[Timer]], Awaitable[None]]


class GroupCommit:
    def __init__(
        self,
        write: Write,
        *,
        is_outage: Callable[[BaseException], bool],
        max_batch: int,
        on_batch: Callable[[int], None] | None,
        log: logging.Logger,
        name: str,
    ) -> None:
        self._write = write
        self._is_outage = is_outage
        self.max_batch = max_batch
        self._on_batch = on_batch
        self._log = log  # the adapter's logger: its outages are logged as its own
        self._name = name
        self._pending: list[tuple[TurnRecord, asyncio.Future[None]]] = []
        self._sent: list[OutboxMessage] = []
        self._dropped: list[Timer] = []
        self._wake = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self.closing = False
        self._failed_in_outage = 0  # turns refused since the storage failed; 0 when it works

    def start(self) -> None:
        self._committer = asyncio.create_task(self._commit_loop(), name=self._name)

    async def close(self) -> None:
        """Refuse new turns, and return once the ones queued are committed."""
        self.closing = True
        self._wake.set()
        if self._committer is not None:
            await self._committer
            self._committer = None

    async def commit(self, record: TurnRecord) -> None:
        if self.closing:
            raise StoreUnavailable("the store is closing")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._wake.set()
        await future

    def mark_sent(self, messages: Sequence[OutboxMessage]) -> None:
        """Forget messages the broker confirmed, in the next transaction.

        Not awaited and not part of any turn: a crash before the delete only means the
        message is published again after the restart, and its consumer dedupes it.
        """
        self._sent.extend(messages)
        self._wake.set()

    def drop_timer(self, timer: Timer) -> None:
        """Forget a timer whose event was refused, in the next transaction, unless reset."""
        self._dropped.append(timer)
        self._wake.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._sent or self._dropped:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                sent, self._sent = self._sent, []
                dropped, self._dropped = self._dropped, []
                await self._commit_batch(batch, sent, dropped)
            if self.closing and not self._pending:
                return

    async def _commit_batch(
        self,
        batch: list[tuple[TurnRecord, asyncio.Future[None]]],
        sent: list[OutboxMessage],
        dropped: list[Timer],
    ) -> None:
        try:
            # Inside the try: a record that cannot be written (say, data that is not JSON)
            # fails its own turn, not the commit loop.
            await self._write([record for record, _ in batch], sent, dropped)
        except Fenced as exc:
            self._fenced(exc, batch, sent, dropped)
            return
        except Exception as exc:
            if not batch:
                # Harmless: those messages are published again after a restart, and deduped;
                # those timers fire again and are refused again.
                self._log.warning("could not forget sent messages or refused timers: %r", exc)
                return
            # A turn's fault, most likely: the confirmed messages and refused timers it
            # carried ride the next transaction instead.
            self._sent.extend(sent)
            self._dropped.extend(dropped)
            if self._is_outage(exc):
                if not self._failed_in_outage:
                    self._log.error("the store cannot write: %s", exc)
                self._failed_in_outage += len(batch)
                for _, future in batch:
                    _settle(future, StoreUnavailable(f"the turn could not be stored: {exc}"))
                return
            if len(batch) == 1:
                record, future = batch[0]
                self._log.error("commit failed: %r", exc, extra=_about(record))
                _settle(future, Unavailable(f"the turn could not be stored: {exc}"))
                return
            self._log.warning(
                "group commit of %d turns failed (%r); retrying one by one", len(batch), exc
            )
            for item in batch:
                await self._commit_batch([item], [], [])
            return
        if self._failed_in_outage:
            self._log.warning(
                "the store writes again; %d turns were refused", self._failed_in_outage
            )
            self._failed_in_outage = 0
        if batch and self._on_batch is not None:
            self._on_batch(len(batch))
        for _, future in batch:
            _settle(future, None)

    def _fenced(
        self,
        exc: Fenced,
        batch: list[tuple[TurnRecord, asyncio.Future[None]]],
        sent: list[OutboxMessage],
        dropped: list[Timer],
    ) -> None:
        """Fail the turns of the lost shards; the rest go first into the next transaction.
        Confirmed messages and refused timers of lost shards are the new owner's now."""

        def lost(order_id: str) -> bool:
            return shard_of(order_id, exc.shard_count) in exc.shards

        kept = []
        for record, future in batch:
            order_id = record.snapshot.order_id
            if lost(order_id):
                _settle(future, ShardMoved(shard_of(order_id, exc.shard_count)))
            else:
                kept.append((record, future))
        self._pending[:0] = kept
        self._sent.extend(m for m in sent if not lost(m.order_id))
        self._dropped.extend(t for t in dropped if not lost(t.order_id))
        if kept or self._sent or self._dropped:
            self._wake.set()


def _about(record: TurnRecord) -> dict[str, str]:
    """Log fields of a turn; the commit loop runs outside the actor that bound them."""
    return {
        "order_id": record.journal.order_id,
        "event_id": record.journal.event_id,
        "chart": record.snapshot.chart,
    }


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
