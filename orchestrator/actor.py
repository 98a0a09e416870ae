"""One order's actor: a mailbox, one turn at a time, commit, then release the effects.

The actor is the only writer of its order. It takes requests in arrival order; for each it
applies the event with ``turn.apply`` on its live machine, waits for the store to make the
turn durable (the output gate), and only then answers, broadcasts and hands the outbox to
the relay (through ``on_commit``). If the turn is refused or the commit fails, the machine
is rebuilt from the last committed snapshot, so nothing half-applied survives.

The actor must never answer before its commit, and never apply two events at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator import logs, tracing, turn
from orchestrator.charts import Chart, Machine
from orchestrator.charts import private_fields as chart_private_fields
from orchestrator.errors import (
    IdempotencyConflict,
    OrchestratorError,
    OrderNotFound,
    TimerGone,
    Unavailable,
    VersionMismatch,
)
from orchestrator.metrics import Metrics
from orchestrator.model import Event, Reply, Snapshot, Timer, TurnRecord
from orchestrator.spans import Span, Spans
from orchestrator.store.base import TurnStore

log = logging.getLogger(__name__)

# Replies kept in memory per actor for fast answers to retried event ids; older ones are
# looked up in the store's journal. Bounded in bytes too, since every live actor keeps
# them: 32 views of an order at --max-order-bytes would be 32 MiB per actor. A typical
# order's replies (about 1 KiB) all fit; a larger one is not kept, and a retry of it
# reads the store (reply_for), so 10,000 live actors hold at most 160 MiB of replies.
RECENT_REPLIES = 32
RECENT_REPLY_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """An event for the actor, with the conditions it is applied under.

    ``timer`` is set when the event is a timer firing: it applies only if that timer is
    still pending as it was read, and its turn deletes it.
    """

    event: Event
    if_match: int | None = None
    create: Chart | None = None
    timer: Timer | None = None


class Actor:
    # One per live order (up to --max-actors): slots keep each small, and without a
    # __dict__ it is one object fewer for the garbage collector to walk.
    __slots__ = (
        "_charts",
        "_clock",
        "_limits",
        "_loaded",
        "_machine",
        "_mailbox",
        "_metrics",
        "_on_commit",
        "_on_idle",
        "_recent",
        "_recent_bytes",
        "_spans",
        "_store",
        "_task",
        "last_used",
        "missing",
        "order_id",
        "snapshot",
    )

    def __init__(
        self,
        order_id: str,
        *,
        store: TurnStore,
        charts: dict[str, Chart],
        on_commit: Callable[[TurnRecord], None],
        on_idle: Callable[[Actor], None],
        metrics: Metrics,
        limits: turn.Limits | None = None,
        clock: Callable[[], float] = time.time,
        spans: Spans | None = None,
    ) -> None:
        self.order_id = order_id
        self._spans = spans
        self._limits = limits
        self._store = store
        self._charts = charts
        self._on_commit = on_commit
        self._on_idle = on_idle
        self._metrics = metrics
        self._clock = clock
        self._mailbox: deque[tuple[Request, asyncio.Future[Reply]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._loaded = False
        self._machine: Machine | None = None
        self._recent: OrderedDict[str, tuple[int, bytes, str]] = OrderedDict()
        self._recent_bytes = 0
        self.snapshot: Snapshot | None = None
        self.missing = False
        self.last_used = time.monotonic()

    @property
    def busy(self) -> bool:
        return self._task is not None or bool(self._mailbox)

    def submit(self, request: Request) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._mailbox.append((request, future))
        self.last_used = time.monotonic()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"actor-{self.order_id}")
        return future

    def evict(self, error: OrchestratorError) -> None:
        """Fail every request still waiting in the mailbox with ``error`` (its node lost
        the order's shard); a turn running now finishes, refused by the store's fence."""
        while self._mailbox:
            _, future = self._mailbox.popleft()
            _settle(future, error=error)
        self.missing = True  # dropped when idle, never reused

    async def _run(self) -> None:
        try:
            while self._mailbox:
                request, future = self._mailbox.popleft()
                if future.done():  # the caller gave up before its turn came; nothing applied
                    continue
                try:
                    if self._spans is None:
                        reply = await self._handle(request)
                    else:
                        reply = await self._handle_traced(request, self._spans)
                except OrchestratorError as exc:
                    self._metrics.turns.labels(exc.result).inc()
                    _settle(future, error=exc)
                except Exception as exc:
                    log.exception("turn failed", extra={"order_id": self.order_id})
                    self._metrics.turns.labels("failed").inc()
                    _settle(future, error=Unavailable(f"the turn failed: {exc!r}"))
                else:
                    _settle(future, reply=reply)
        finally:
            self._task = None
            self.last_used = time.monotonic()
            self._on_idle(self)

    async def _handle(self, request: Request) -> Reply:
        started = time.perf_counter()
        event = request.event
        # Every line logged from here until the next turn is about this order and event.
        logs.bind(
            order_id=self.order_id,
            event_id=event.id,
            chart=self._chart_name(request),
            trace_id=tracing.trace_id(event.traceparent),
        )
        if request.create is None:
            await self._load()
        else:
            self._loaded = True
        if event.keyed:
            recorded = await self._recorded(event)
            if recorded is not None:
                self._metrics.turns.labels("repeated").inc()
                return recorded
        previous = self.snapshot
        if request.if_match is not None and previous is not None:
            if request.if_match != previous.version:
                raise VersionMismatch(request.if_match, previous.version)
        if request.timer is not None:
            await self._check_pending(request.timer)
        committing = False
        try:
            if request.create is not None:
                machine = turn.start(request.create, self.order_id, event)
            else:
                machine = self._live_machine()
            record = turn.apply(machine, previous, event, self._clock(), self._limits)
            if request.timer is not None:
                fired = (*record.timers_cancelled, request.timer.id)
                record = dataclasses.replace(record, timers_cancelled=fired)
            committing = True
            await self._store.commit(record)
        except BaseException:
            self._machine = None  # rebuilt from the committed snapshot on the next turn
            if previous is None:
                self.missing = True  # a create that failed leaves no order behind
            elif committing:
                # A commit that failed may still have landed (PostgreSQL's connection lost
                # during COMMIT): the next turn reads the snapshot again rather than build
                # on one that may be a version behind, which every later turn would fail on.
                self._loaded = False
            raise
        self._machine = machine
        self.snapshot = record.snapshot
        if previous is None:  # a new order, now in memory
            self._metrics.activations.inc()
        self._remember(event.id, record.reply)
        self._metrics.turns_applied.inc()
        self._metrics.turn_seconds.observe(time.perf_counter() - started)
        self._metrics.committed(record, machine.is_final())
        # DEBUG, like an access log: the journal already records every turn, and at INFO
        # this line cost about a tenth of the server's CPU in the flow benchmark.
        log.debug(
            "%s applied: %s -> %s, version %d",
            event.type,
            record.journal.state_before or "(new)",
            record.journal.state_after,
            record.snapshot.version,
        )
        self._on_commit(record)
        return record.reply

    async def _handle_traced(self, request: Request, spans: Spans) -> Reply:
        """``_handle`` in a span of the turn's own: a child of the hop that took the event
        in, and the parent of what the turn sends, whose messages and timers carry it."""
        event = request.event
        own = tracing.continued(event.traceparent)
        traced = dataclasses.replace(event, traceparent=own)
        start_ns = time.time_ns()
        result, error = "applied", None
        try:
            return await self._handle(dataclasses.replace(request, event=traced))
        except OrchestratorError as exc:
            result = exc.result
            raise
        except Exception as exc:
            result, error = "failed", repr(exc)
            raise
        finally:
            attributes: dict[str, str | int] = {
                "orchestrator.order_id": self.order_id,
                "orchestrator.event_id": event.id,
                "orchestrator.event_type": event.type,
                "orchestrator.turn_result": result,
            }
            if self.snapshot is not None:
                attributes["orchestrator.chart"] = self.snapshot.chart
                attributes["orchestrator.state"] = self.snapshot.state
                attributes["orchestrator.version"] = self.snapshot.version
            name = f"turn {event.type}"
            spans.record(
                Span(
                    name,
                    "internal",
                    own,
                    event.traceparent,
                    start_ns,
                    time.time_ns(),
                    attributes,
                    error,
                )
            )

    async def _load(self) -> None:
        if self._loaded:
            if self.snapshot is None:
                raise OrderNotFound(self.order_id)
            return
        self.snapshot = await self._store.load(self.order_id)
        self._loaded = True
        if self.snapshot is None:
            self.missing = True
            raise OrderNotFound(self.order_id)
        self._metrics.activations.inc()  # only orders that exist are brought into memory
        logs.bind(chart=self.snapshot.chart)

    def _chart_name(self, request: Request) -> str | None:
        if request.create is not None:
            return request.create.name
        return self.snapshot.chart if self.snapshot is not None else None

    async def _check_pending(self, timer: Timer) -> None:
        # Only this actor's turns set or cancel its timers, so what is read here holds
        # until this turn commits.
        pending = await self._store.timer(timer.id)
        if pending is None or pending.due_at != timer.due_at:
            raise TimerGone(timer.id)

    def _live_machine(self) -> Machine:
        snapshot = self.snapshot
        assert snapshot is not None
        if self._machine is None:
            chart = self._charts.get(snapshot.chart)
            if chart is None:
                raise Unavailable(f"chart {snapshot.chart!r} is not loaded in this server")
            gone = [s for s in snapshot.configuration if s not in chart.machine_class.states_map]
            if gone:
                # The chart was edited under this order: a server-side matter, like a chart
                # that is not loaded, until the chart has the state again.
                raise Unavailable(
                    f"the order is in state {', '.join(map(repr, gone))}, which chart "
                    f"{chart.name!r} no longer has"
                )
            self._machine = chart.restore(self.order_id, snapshot.configuration, snapshot.context)
        return self._machine

    async def _recorded(self, event: Event) -> Reply | None:
        recent = self._recent.get(event.id)
        if recent is not None:
            reply: Reply | None = Reply(recent[0], recent[1], self.order_id, recent[2])
        else:
            reply = await self._store.reply_for(self.order_id, event.id, private=self._private())
        if reply is None:
            return None
        if not reply.answers(event):
            raise IdempotencyConflict(event.id)
        return reply

    def _private(self) -> frozenset[str]:
        """The context fields no view of this order shows."""
        if self.snapshot is None:
            return frozenset()
        return chart_private_fields(self._charts, self.snapshot.chart)

    @property
    def recent_reply_bytes(self) -> int:
        """Bytes of reply bodies kept for retries: at most ``RECENT_REPLY_BYTES``."""
        return self._recent_bytes

    def _remember(self, event_id: str, reply: Reply) -> None:
        if len(reply.body) > RECENT_REPLY_BYTES:
            return  # a retry of it reads the store
        # A plain tuple of a number, bytes and a string: the garbage collector stops
        # tracking such tuples, and every live order keeps up to RECENT_REPLIES of them.
        previous = self._recent.pop(event_id, None)
        if previous is not None:
            self._recent_bytes -= len(previous[1])
        self._recent[event_id] = (reply.status, reply.body, reply.fingerprint)
        self._recent_bytes += len(reply.body)
        while len(self._recent) > RECENT_REPLIES or self._recent_bytes > RECENT_REPLY_BYTES:
            self._recent_bytes -= len(self._recent.popitem(last=False)[1][1])


def _settle(
    future: asyncio.Future[Reply], *, reply: Reply | None = None, error: Exception | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert reply is not None
        future.set_result(reply)
