"""The orchestrator's Prometheus metrics, on a registry of its own per runtime.

A private ``CollectorRegistry`` (not the process-global one) lets several runtimes live in
one process, as tests do. Gauges that describe the present (live actors, subscribers,
outbox depth and lag) are read at scrape time through callbacks, so nothing has to keep
them up to date on the hot path. Those that need a query (orders by state, the timer
backlog) are set by the /metrics endpoint from the store just before it renders.

Every label takes its values from a bounded set: a chart, a final state, a route template
(never the raw path, whose order ids would make a series per order), an HTTP method from a
fixed list, a status code. The ``_created`` series prometheus_client adds to counters and
histograms are turned off: they double the series for a value nobody graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from orchestrator.model import TurnRecord

TURN_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# An order takes seconds in tests and benchmarks, minutes to hours with real kitchens.
ORDER_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def build_version() -> str:
    """The installed distribution's version (what ``pip show order-orchestrator`` says)."""
    try:
        return version("order-orchestrator")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class Metrics:
    def __init__(self) -> None:
        # A process-wide switch of prometheus_client's; the same value every time.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        Info("orchestrator_build", "The orchestrator's version.", registry=r).info(
            {"version": build_version()}
        )
        self.turns = Counter(
            "orchestrator_turns", "Events applied or refused by actors.", ["result"], registry=r
        )
        # Bound once: ``labels()`` takes a lock and a lookup on every call.
        self.turns_applied = self.turns.labels("applied")
        self.turn_seconds = Histogram(
            "orchestrator_turn_seconds",
            "Time from an event reaching its actor to its turn being committed.",
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.commit_batch = Histogram(
            "orchestrator_commit_batch_size",
            "Turns per group commit.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.activations = Counter(
            "orchestrator_actor_activations", "Actors brought into memory.", registry=r
        )
        self.passivations = Counter(
            "orchestrator_actor_passivations", "Idle actors dropped from memory.", registry=r
        )
        self.published = Counter(
            "orchestrator_outbox_published", "Outbox messages confirmed by the broker.", registry=r
        )
        self.ws_dropped = Counter(
            "orchestrator_websocket_dropped",
            "WebSocket subscribers closed for falling behind.",
            registry=r,
        )
        self.live_actors = Gauge("orchestrator_live_actors", "Actors in memory.", registry=r)
        self.ws_subscribers = Gauge(
            "orchestrator_websocket_subscribers", "Open WebSocket subscriptions.", registry=r
        )
        self.outbox_depth = Gauge(
            "orchestrator_outbox_depth", "Committed messages not yet confirmed.", registry=r
        )
        self.outbox_lag = Gauge(
            "orchestrator_outbox_lag_seconds",
            "Age of the oldest committed message not yet confirmed by the broker.",
            registry=r,
        )
        self.orders = Gauge(
            "orchestrator_orders", "Orders by chart and state.", ["chart", "state"], registry=r
        )
        self.timers_pending = Gauge(
            "orchestrator_timers_pending", "Timers stored and not yet fired.", registry=r
        )
        self.timers_overdue = Gauge(
            "orchestrator_timers_overdue_seconds",
            "How late the most overdue timer is (0 when none is due).",
            registry=r,
        )
        self.broker_reconnects = Counter(
            "orchestrator_broker_reconnects",
            "Times the broker connection was re-established after a loss.",
            registry=r,
        )
        self.dead_letters = Counter(
            "orchestrator_dead_letters",
            "Messages this process's consumers dead-lettered, by the queue they came from.",
            ["queue"],
            registry=r,
        )
        # The cluster's (PostgreSQL): stay at zero on a node that is not in one.
        self.shards_owned = Gauge(
            "orchestrator_shards_owned", "Shards this node holds a lease on.", registry=r
        )
        self.lease_renew_seconds = Histogram(
            "orchestrator_lease_renew_seconds",
            "Time to renew this node's shard leases.",
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.fence_refusals = Counter(
            "orchestrator_fence_refusals",
            "Writes refused because this node no longer held a shard: by its own clock"
            " (local) or by the database (store).",
            ["where"],
            registry=r,
        )
        self.forwards = Counter(
            "orchestrator_forwards",
            "Requests sent to the node owning their order's shard, by how it went.",
            ["result"],
            registry=r,
        )
        self.failovers = Counter(
            "orchestrator_shard_failovers",
            "Shards this node took from a node whose lease ran out.",
            registry=r,
        )
        self.orders_started = Counter(
            "orchestrator_orders_started", "Orders created, by chart.", ["chart"], registry=r
        )
        self.orders_finished = Counter(
            "orchestrator_orders_finished",
            "Orders that reached a final state, by chart and that state.",
            ["chart", "state"],
            registry=r,
        )
        self.order_seconds = Histogram(
            "orchestrator_order_seconds",
            "Time from an order's creation to its final state, by chart.",
            ["chart"],
            buckets=ORDER_BUCKETS,
            registry=r,
        )
        self.http_seconds = Histogram(
            "orchestrator_http_request_seconds",
            "HTTP requests by method, route template and status, with their latency.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self._order_states: set[tuple[str, str]] = set()

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        gauge.set_function(read)

    def observe_store(
        self, orders: Mapping[tuple[str, str], int], timers: int, timer_overdue: float
    ) -> None:
        """Set the gauges read from the store; a state seen before and now empty shows 0,
        so its series does not just vanish from graphs."""
        for chart, state in self._order_states - orders.keys():
            self.orders.labels(chart, state).set(0)
        for (chart, state), count in orders.items():
            self.orders.labels(chart, state).set(count)
        self._order_states |= orders.keys()
        self.timers_pending.set(timers)
        self.timers_overdue.set(timer_overdue)

    def committed(self, record: TurnRecord, final: bool) -> None:
        """Count a committed turn that created an order, or took it into a final state
        (``final``: the chart says the new configuration is final)."""
        snapshot = record.snapshot
        if record.journal.version == 1:
            self.orders_started.labels(snapshot.chart).inc()
        if final and record.journal.state_before != snapshot.state:
            self.orders_finished.labels(snapshot.chart, snapshot.state).inc()
            self.order_seconds.labels(snapshot.chart).observe(
                snapshot.updated_at - snapshot.created_at
            )

    def render(self) -> bytes:
        return generate_latest(self.registry)
