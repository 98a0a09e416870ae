"""The Store ports: what the runtime needs from durable storage, one Protocol per role.

A store keeps, per order, the latest snapshot, the journal of applied events (which is
also the dedupe record: an event id answers with the journal entry it produced), the
outbox of messages not yet handed to the broker, and pending timers. ``commit`` is the
output gate: when it returns, the turn is durable; it may share one transaction with other
actors' turns (group commit) but each turn is still all or nothing.

Each caller is typed with the one role it uses, so what a module can do to the orders is
read from its constructor, and a new adapter (or a fake in a test) knows what each part
needs:

- ``TurnStore``, held by the registry and each actor: commit a turn, and read back what a
  turn needs (the snapshot, the answer to an event already applied, a timer's last set).
- ``QueryStore``, held by the edge: read-only queries for history, the order list, the
  WebSocket replay and /metrics; it never writes, so a request cannot change an order
  except through the registry.
- ``OutboxStore``, held by the outbox relay: the messages committed and not yet confirmed.
- ``TimerStore``, held by the scheduler: the timers falling due, and forgetting one.
- ``Store``, all of them plus ``open`` and ``close``, held only by the composition root,
  which alone opens and closes the store. Each adapter (``sqlite``, ``postgres``)
  implements ``Store``.

In a cluster (PostgreSQL) the store is also given a ``Fence``: the shards this node owns
and their epochs. Every write transaction first checks, in the database, that the node
still holds each shard it writes under the epoch it took it with, and refuses the batch's
turns of a lost shard with ``Fenced`` (see ``orchestrator.cluster``). The reads that only
an owner makes (the outbox left behind, the timers falling due) take the shards to read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.model import JournalEntry, OutboxMessage, Reply, Snapshot, Timer, TurnRecord


@dataclass(frozen=True, slots=True)
class Recorded:
    """A journal entry with the order view it produced, for history and WebSocket replay."""

    entry: JournalEntry
    view: bytes


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the order list; ``cursor`` fetches the next page, None at the end."""

    orders: list[Snapshot]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Stats:
    """What /metrics reads from the store at scrape time."""

    orders: dict[tuple[str, str], int]  # (chart, state) -> how many orders are in it
    timers: int  # timers stored and not yet fired
    timer_overdue_seconds: float  # how late the most overdue timer is; 0 when none is due


class Fenced(Exception):
    """A write refused because this node no longer holds ``shards`` (or never did): their
    turns fail with ``ShardMoved``; the batch's other turns are written without them."""

    def __init__(self, shards: Collection[int], shard_count: int, where: str) -> None:
        super().__init__(f"shards {sorted(shards)} are not this node's ({where})")
        self.shards = frozenset(shards)
        self.shard_count = shard_count
        self.where = where  # "local": its lease ran out by this node's clock; "store"


class Fence(Protocol):
    """The shards a cluster node owns, as the store checks them on every write."""

    @property
    def node(self) -> str:
        """This node's id, the ``owner`` of its rows in ``shard_leases``."""

    def epoch(self, shard: int) -> int | None:
        """The epoch this node holds ``shard`` under; None if it does not (any more), or if
        its lease may have run out by this node's own clock."""

    def refused(self, shards: frozenset[int], where: str) -> None:
        """A write under ``shards`` was refused: they are lost; stop serving them now."""


class TurnStore(Protocol):
    """What a turn commits and its actor reads back; the registry and each actor hold it."""

    async def commit(self, record: TurnRecord) -> None:
        """Make one turn durable; raises ``Unavailable`` if it could not be stored."""

    async def load(self, order_id: str) -> Snapshot | None: ...

    async def reply_for(
        self, order_id: str, event_id: str, *, private: frozenset[str] = frozenset()
    ) -> Reply | None:
        """The recorded answer to an event id already applied to this order; a view rebuilt
        from the journal leaves out the context fields named in ``private`` (the chart's
        ``private_fields``), as the turn's own answer did."""

    async def order_created_by(self, event_id: str) -> str | None:
        """The order whose creating event had this id, if any."""

    async def timer(self, timer_id: str) -> Timer | None:
        """The pending timer with this id, as last set."""


class QueryStore(Protocol):
    """The read-only queries the edge answers from; nothing here writes."""

    async def journal(self, order_id: str, after: int = 0, limit: int = 1000) -> list[JournalEntry]:
        """Journal entries with version > ``after``, oldest first."""

    def replay(
        self,
        order_id: str,
        after: int = 0,
        until: int | None = None,
        *,
        private: frozenset[str] = frozenset(),
    ) -> AsyncGenerator[Recorded, None]:
        """Journal entries with version > ``after`` (up to ``until``), each with the view
        its turn produced (without the context fields in ``private``), oldest first; read a
        page at a time, so a replay of any length holds about one page in memory."""

    async def list_orders(
        self, *, state: str | None, chart: str | None, cursor: str | None, limit: int
    ) -> Page:
        """Orders, newest first; ``state`` matches as a prefix of the state path."""

    async def stats(self, now: float) -> Stats:
        """Orders by chart and state, and the timer backlog at time ``now``."""


class OutboxStore(Protocol):
    """The outbox as the relay sees it: messages committed and not yet confirmed."""

    async def unsent(self, shards: Sequence[int] | None = None) -> list[OutboxMessage]:
        """Outbox messages committed but not yet confirmed by the broker, oldest first;
        only those of ``shards`` when given."""

    def mark_sent(self, messages: Sequence[OutboxMessage]) -> None:
        """Forget messages the broker confirmed (soon, not necessarily durably)."""

    async def outbox_depth(self) -> int:
        """How many messages are stored and not yet forgotten."""

    async def load(self, order_id: str) -> Snapshot | None:
        """The order's snapshot: its chart goes on the relay's log lines."""


class TimerStore(Protocol):
    """The timers as the scheduler sees them: when the next falls due, which are due."""

    async def next_timer_due(
        self, after: float, shards: Sequence[int] | None = None
    ) -> float | None:
        """When the earliest timer due later than ``after`` falls due; None if there is none.
        Only timers of ``shards`` when given, as in ``due_timers``."""

    async def due_timers(
        self, now: float, limit: int, shards: Sequence[int] | None = None
    ) -> list[Timer]:
        """Pending timers due at ``now`` or earlier, earliest first; of ``shards`` only,
        when given (a cluster node fires the timers of the shards it owns)."""

    def drop_timer(self, timer: Timer) -> None:
        """Forget a timer whose event was refused (soon), unless it was set again."""


class Store(TurnStore, QueryStore, OutboxStore, TimerStore, Protocol):
    """Every role, and the lifecycle; only the composition root holds the whole store."""

    async def open(self) -> None:
        """Create or migrate the schema and start the group-commit loop."""

    async def close(self) -> None:
        """Finish the commit in progress, then release the store."""
