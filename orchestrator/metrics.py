"""The orchestrator's Prometheus metrics, on a registry of its own per runtime.

A private ``CollectorRegistry`` (not the process-global one) lets several runtimes live in
one process, as tests do. Gauges that describe the present (live actors, subscribers,
outbox depth and lag) are read at scrape time through callbacks, so nothing has to keep
them up to date on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable

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

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        gauge.set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
