"""Order id -> actor: exactly one live actor per id, passivated when idle.

``_actors`` is only touched from the event loop with no ``await`` between looking an id up
and inserting its actor, so however many requests arrive at once for a new or idle order,
one actor is activated. The actor loads its snapshot itself as the first step of its first
turn; everyone else queues in its mailbox behind that.

Passivation drops idle actors (empty mailbox, no turn running): the least recently used
ones beyond ``max_actors``, and any idle longer than ``idle_seconds``. Reactivation
restores the machine from the snapshot without running entry actions, so nothing is sent
twice. Creates with an Idempotency-Key are serialised per key here, because the order id
they would go to does not exist yet. The create is shared by key, but each request is
answered by its own body: the reply recorded for that body, 422 for any other, and a
failure only to the body that failed (the next body then tries its own create).

In a cluster (``cluster`` given) an order lives on the node that serves its shard. An event
for an order of another node's shard is forwarded there, as is a create whose
Idempotency-Key falls in another node's shard; an unkeyed create is made here, in a shard
this node serves. A request that finds its shard lost while it waited in a mailbox
(``ShardMoved``: nothing was applied) is forwarded to the new owner, so a handover is
invisible to clients. A request that was itself forwarded is never forwarded again: it is
refused with ``ShardMoved``, which the forwarding node answers by reading the routes anew.
When shards are lost, their actors' queued requests fail with ``ShardMoved`` and the
actors are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from orchestrator import tracing
from orchestrator.actor import Actor, Request
from orchestrator.charts import Chart
from orchestrator.charts import private_fields as chart_private_fields
from orchestrator.errors import (
    IdempotencyConflict,
    InvalidInput,
    OrchestratorError,
    ShardMoved,
    Unavailable,
)
from orchestrator.ids import new_order_id
from orchestrator.metrics import Metrics
from orchestrator.model import Event, Reply, Snapshot, Timer, TurnRecord, timer_event_id
from orchestrator.shards import order_id_in
from orchestrator.spans import Span, Spans
from orchestrator.store.base import TurnStore
from orchestrator.turn import Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Creating:
    """A keyed create in flight, and the fingerprint of the request that started it."""

    fingerprint: str
    task: asyncio.Task[Reply]


Local = Callable[[], Awaitable[Reply]]


class Cluster(Protocol):
    """The shards this node serves, and the way to the others (``cluster.forward``)."""

    @property
    def shards(self) -> int:
        """How many shards the database has."""

    def shard_of(self, text: str) -> int: ...

    def serves(self, shard: int) -> bool: ...

    def served(self) -> list[int]: ...

    def moved(self, shard: int) -> ShardMoved: ...

    async def send(
        self, order_id: str, event: Event, if_match: int | None, local: Local
    ) -> Reply: ...

    async def create(self, shard: int, event: Event, chart: str, local: Local) -> Reply: ...


class Registry:
    def __init__(
        self,
        *,
        store: TurnStore,
        charts: dict[str, Chart],
        metrics: Metrics,
        on_commit: Callable[[TurnRecord], None],
        max_actors: int = 10_000,
        idle_seconds: float = 300.0,
        default_chart: str = "pizza",
        limits: Limits | None = None,
        cluster: Cluster | None = None,
        spans: Spans | None = None,
    ) -> None:
        self._spans = spans
        self.store = store
        self.cluster = cluster
        self.charts = charts
        self.metrics = metrics
        self.default_chart = default_chart if default_chart in charts else next(iter(charts))
        self._on_commit = on_commit
        self.max_actors = max_actors
        self.idle_seconds = idle_seconds
        self.limits = limits
        self._actors: OrderedDict[str, Actor] = OrderedDict()
        self._creating: dict[str, _Creating] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()  # set whenever an actor goes idle
        metrics.watch(metrics.live_actors, lambda: len(self._actors))

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="passivation")

    async def drain(self) -> None:
        """Wait until every queued turn has been applied and committed."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._settle_while(
            lambda: bool(self._creating) or any(a.busy for a in self._actors.values())
        )

    async def _settle_while(self, busy: Callable[[], bool]) -> None:
        """Wait, woken each time an actor goes idle or a create ends, until not ``busy()``."""
        while busy():
            self._settled.clear()
            await self._settled.wait()

    # -- routing -----------------------------------------------------------------------

    def actor(self, order_id: str) -> Actor:
        actor = self._actors.get(order_id)
        if actor is None:
            actor = Actor(
                order_id,
                store=self.store,
                charts=self.charts,
                on_commit=self._on_commit,
                on_idle=self._idle,
                metrics=self.metrics,
                limits=self.limits,
                spans=self._spans,
            )
            self._actors[order_id] = actor
        else:
            self._actors.move_to_end(order_id)
        return actor

    async def send(
        self,
        order_id: str,
        event: Event,
        *,
        if_match: int | None = None,
        forwarded: bool = False,
    ) -> Reply:
        """Apply an event to an existing order; raises the refusal as an error."""
        cluster = self.cluster
        if cluster is None:
            return await self.actor(order_id).submit(Request(event, if_match))
        shard = cluster.shard_of(order_id)
        if cluster.serves(shard):
            try:
                return await self.actor(order_id).submit(Request(event, if_match))
            except ShardMoved:
                if forwarded:
                    raise
        elif forwarded:
            raise cluster.moved(shard)
        # Applied here after all if this node takes the shard while the call waits.
        here = functools.partial(self.send, order_id, event, if_match=if_match, forwarded=True)
        return await cluster.send(order_id, event, if_match, here)

    async def fire(self, timer: Timer) -> Reply:
        """Apply a pending timer's event to its order; the turn deletes the timer. Only
        the node serving the order's shard fires it."""
        if self.cluster is not None:
            shard = self.cluster.shard_of(timer.order_id)
            if not self.cluster.serves(shard):
                raise self.cluster.moved(shard)
        event = Event(
            type=timer.event_type,
            data=timer.data,
            id=timer_event_id(timer.id, timer.due_at),
            origin="timer",
            # The trace of the turn that set the timer, with a span of this firing's own;
            # a timer stored without one (before traces were kept) starts a new trace.
            traceparent=tracing.continued(timer.traceparent),
        )
        if self._spans is not None:
            # From when it fell due to now: how late it fires.
            self._spans.record(
                Span(
                    f"timer {timer.event_type}",
                    "internal",
                    event.traceparent or "",
                    timer.traceparent,
                    int(timer.due_at * 1e9),
                    time.time_ns(),
                    {"orchestrator.order_id": timer.order_id, "orchestrator.timer_id": timer.id},
                )
            )
        return await self.actor(timer.order_id).submit(Request(event, timer=timer))

    async def create(
        self,
        event: Event,
        *,
        chart: str | None,
        shard: int | None = None,
        forwarded: bool = False,
    ) -> Reply:
        """Create an order whose first event is ``event``; a repeated key gets the first
        reply. In a cluster the order goes in ``shard``: by default the key's, or for an
        unkeyed create one this node serves."""
        name = chart or self.default_chart
        found = self.charts.get(name)
        if found is None:
            raise InvalidInput("chart", f"unknown chart {name!r}; known: {sorted(self.charts)}")
        cluster = self.cluster
        if cluster is None:
            return await self._create_here(found, event, None)
        if shard is None:
            shard = self._shard_for(cluster, event)
        if cluster.serves(shard):
            try:
                return await self._create_here(found, event, shard)
            except ShardMoved:
                if forwarded:
                    raise
                if not event.keyed:  # nothing was made: in another shard (or node) then
                    return await self.create(event, chart=name)
        elif forwarded:
            raise cluster.moved(shard)
        here = functools.partial(self.create, event, chart=name, shard=shard, forwarded=True)
        return await cluster.create(shard, event, name, here)

    async def _create_here(self, found: Chart, event: Event, shard: int | None) -> Reply:
        if not event.keyed:
            return await self._create(found, event, shard)
        while True:
            creating = self._creating.get(event.id)
            # A task already done may not be forgotten yet (its callback runs soon): one
            # that failed for another body must not be awaited again, or this loops.
            if creating is None or creating.task.done():
                # A task of its own, which every request with the key awaits shielded: one
                # that is cancelled (a client gone at shutdown) stops neither the create
                # nor the others' wait for its reply.
                task = asyncio.create_task(self._create_once(found, event, shard), name="create")
                creating = _Creating(event.fingerprint, task)
                self._creating[event.id] = creating
                task.add_done_callback(lambda done: self._created(event.id, done))
            try:
                reply = await asyncio.shield(creating.task)
            except OrchestratorError:
                if creating.fingerprint == event.fingerprint:
                    raise  # this very request failed; a repeat gets the same answer
                continue  # another body's create failed and made nothing: try this one
            # Each request is answered by its own body: the create the key made, or 422.
            if not reply.answers(event):
                raise IdempotencyConflict(event.id)
            return reply

    def _created(self, key: str, task: asyncio.Task[Reply]) -> None:
        creating = self._creating.get(key)
        if creating is not None and creating.task is task:
            del self._creating[key]
        self._settled.set()
        if not task.cancelled():
            task.exception()  # retrieved, in case every request awaiting it was cancelled

    @staticmethod
    def _shard_for(cluster: Cluster, event: Event) -> int:
        """A keyed create's shard is its key's, so a retry reaches the same node; an
        unkeyed one goes in a shard this node serves, if any."""
        if event.keyed:
            return cluster.shard_of(event.id)
        served = cluster.served()
        return random.choice(served) if served else random.randrange(cluster.shards)

    async def _create_once(self, chart: Chart, event: Event, shard: int | None) -> Reply:
        """The reply of the create the key made, whatever its body, or a new create.

        It answers for every request with the key, so it compares no fingerprint."""
        existing = await self.store.order_created_by(event.id)
        if existing is None:
            return await self._create(chart, event, shard)
        # Committed with the order in one transaction, so it is there.
        private = chart.context_class.private_fields
        recorded = await self.store.reply_for(existing, event.id, private=private)
        if recorded is None:
            raise Unavailable(f"order {existing} has no journal entry for its create")
        return recorded

    async def _create(self, chart: Chart, event: Event, shard: int | None) -> Reply:
        if shard is None or self.cluster is None:
            order_id = new_order_id()
        else:
            order_id = order_id_in(shard, self.cluster.shards)
        return await self.actor(order_id).submit(Request(event, create=chart))

    def private_fields(self, chart: str) -> frozenset[str]:
        """The context fields of ``chart`` that no view shows (none for a chart not loaded)."""
        return chart_private_fields(self.charts, chart)

    async def view(self, order_id: str) -> Snapshot | None:
        """The committed snapshot, from memory when the actor is live, else from the store."""
        actor = self._actors.get(order_id)
        if actor is not None and actor.snapshot is not None:
            return actor.snapshot
        return await self.store.load(order_id)

    # -- shards ------------------------------------------------------------------------

    def lost(self, shards: frozenset[int]) -> None:
        """Stop serving the orders of ``shards`` at once: their queued requests fail with
        ``ShardMoved`` and their actors are dropped (a turn running now is refused by the
        fence when it commits)."""
        cluster = self.cluster
        if cluster is None:
            return
        for actor in list(self._actors.values()):
            shard = cluster.shard_of(actor.order_id)
            if shard in shards:
                del self._actors[actor.order_id]
                actor.evict(cluster.moved(shard))
        self._settled.set()

    async def quiesce(self, shards: frozenset[int], within: float) -> None:
        """Return once no turn of an order in ``shards`` is queued or running (nor a
        create), or after ``within`` seconds."""
        cluster = self.cluster
        if cluster is None:
            return

        def busy() -> bool:
            return bool(self._creating) or any(
                actor.busy and cluster.shard_of(actor.order_id) in shards
                for actor in self._actors.values()
            )

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._settle_while(busy)

    # -- passivation -------------------------------------------------------------------

    def _idle(self, actor: Actor) -> None:
        self._settled.set()
        if actor.missing:
            self._drop(actor)
            return
        excess = len(self._actors) - self.max_actors
        if excess <= 0:
            return
        for candidate in list(self._actors.values()):
            if excess <= 0:
                break
            if not candidate.busy:
                self._drop(candidate)
                excess -= 1

    def _drop(self, actor: Actor) -> None:
        if self._actors.get(actor.order_id) is actor and not actor.busy:
            del self._actors[actor.order_id]
            if actor.snapshot is not None:  # an order was in memory, not a missing one
                self.metrics.passivations.inc()

    async def _sweep(self) -> None:
        interval = max(min(self.idle_seconds / 2, 30.0), 0.05)
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_seconds
            for actor in list(self._actors.values()):
                if actor.last_used >= cutoff:
                    break  # ordered by last use, so the rest are newer
                self._drop(actor)
