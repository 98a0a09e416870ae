"""The orchestrator's Prometheus metrics, on a registry of its own per runtime.

A private ``CollectorRegistry`` (not the process-global one) lets several runtimes live in
one process, as tests do. Gauges that describe the present (live actors, subscribers,
outbox depth and lag) are read at scrape time through callbacks, so nothing has to keep
them up to date on the hot path. Those that need a query (orders by state, the timer
backlog) are set by the /metrics endpoint from the store just before it renders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TURN_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
