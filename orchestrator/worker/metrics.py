"""A service's Prometheus metrics, and the small HTTP server that exposes them.

A service run as its own process (the kitchen and delivery in RabbitMQ mode, or yours) is
out of the orchestrator's /metrics: ``--metrics-port`` serves its own. The counters
say what an SRE asks of a worker: how many commands came in, how many were carried out,
how many were repeats answered from the ledger, and how many failed (``poison``: malformed
or refused, dead-lettered; ``retry``: the ledger or the broker could not take it now, so
it comes back). Labels are bounded: the service's own command types, two reasons.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

FAILURES = ("poison", "retry")


class ServiceMetrics:
    def __init__(self, command_types: list[str] | tuple[str, ...]) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        self.received = Counter(
            "service_commands_received", "Command messages delivered to the service.", registry=r
        )
        executed = Counter(
            "service_commands_executed",
            "Commands carried out and recorded in the ledger, by type.",
            ["type"],
            registry=r,
        )
        deduped = Counter(
            "service_commands_deduped",
            "Commands already in the ledger, answered with the recorded answer, by type.",
            ["type"],
            registry=r,
        )
        failed = Counter(
            "service_commands_failed",
            "Commands that failed: poison (dead-lettered) or retry (delivered again).",
            ["reason"],
            registry=r,
        )
        # Bound once, so every series shows from the start (at 0) and no label is made later.
        self.executed = {t: executed.labels(t) for t in command_types}
        self.deduped = {t: deduped.labels(t) for t in command_types}
        self.failed = {reason: failed.labels(reason) for reason in FAILURES}

    def serve(self, host: str, port: int) -> WSGIServer:
        """Serve /metrics on ``host:port`` from a daemon thread of prometheus_client's,
        until the server returned is shut down."""
        server, _thread = start_http_server(port, host, registry=self.registry)
        return server
