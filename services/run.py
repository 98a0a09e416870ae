"""Run one stub service as its own process on RabbitMQ, until SIGTERM or SIGINT.

``python -m services.kitchen --broker amqp://...`` and ``python -m services.delivery ...``
both come here. Each flag also reads an environment variable (``KITCHEN_BROKER``,
``DELIVERY_LEDGER``, ...), so a container needs no command-line changes; the exception is
``--otlp-endpoint``, which reads OpenTelemetry's own ``OTEL_EXPORTER_OTLP_ENDPOINT``.
``--metrics-port`` serves the service's Prometheus metrics (``services.metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from orchestrator import logs
from orchestrator.broker.rabbitmq import BrokerUnreachable, RabbitBroker
from orchestrator.lockfile import ExclusiveLock, InUse
from orchestrator.settings import (
    BROKER_CONNECT_TIMEOUT,
    LOG_FORMATS,
    amqp_url_problem,
    otlp_endpoint_problem,
)
from orchestrator.spans import Spans
from services.ledger import Ledger
from services.metrics import ServiceMetrics
from services.stub import StubService

log = logging.getLogger(__name__)

MODES = ("ok", "reject", "ignore")


class LedgerInUse(click.ClickException):
    """Another process owns the ledger: exit 2, in one line, like ``orchestrator serve``."""

    exit_code = 2


def main(name: str, answers: dict[str, str], compensations: dict[str, str]) -> None:
    @click.command(name=name, help=f"The {name} stub: answers {', '.join(answers)}.")
    @click.option("--broker", required=True, help="amqp:// URL of RabbitMQ.")
    @click.option(
        "--ledger",
        type=click.Path(path_type=Path, dir_okay=False),
        default=Path(f"{name}.db"),
        show_default=True,
        help="SQLite file recording each command carried out, so none runs twice.",
    )
    @click.option(
        "--broker-connect-timeout",
        type=float,
        default=BROKER_CONNECT_TIMEOUT,
        show_default=True,
        help="Seconds to keep trying to reach RabbitMQ at start (it may be starting too).",
    )
    @click.option("--delay", type=float, default=0.0, show_default=True)
    @click.option(
        "--mode",
        type=click.Choice(MODES),
        default="ok",
        show_default=True,
        help="ok; reject (dead-letter work commands); ignore (never answer them)."
        " Compensations are always carried out.",
    )
    @click.option("--log-level", default="info", show_default=True)
    @click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True)
    @click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        default=None,
        help="Serve Prometheus metrics on this port at /metrics [default: off].",
    )
    @click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="The address --metrics-port listens on (0.0.0.0 for a scraper elsewhere).",
    )
    @click.option(
        "--otlp-endpoint",
        envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
        # An empty variable is unset, as OpenTelemetry's specification says.
        callback=lambda _ctx, _param, value: value or None,
        default=None,
        help="Export spans over OTLP/HTTP to this base URL (needs the otel extra) [default: off].",
    )
    def command(
        broker: str,
        broker_connect_timeout: float,
        ledger: Path,
        delay: float,
        mode: str,
        log_level: str,
        log_format: str,
        metrics_port: int | None,
        metrics_host: str,
        otlp_endpoint: str | None,
    ) -> None:
        problem = amqp_url_problem(broker)
        if problem is not None:
            raise click.UsageError(f"--broker must be {problem}")
        if otlp_endpoint is not None:
            problem = otlp_endpoint_problem(otlp_endpoint)
            if problem is not None:
                raise click.UsageError(f"--otlp-endpoint must be {problem}")
        for flag, seconds in (
            ("--broker-connect-timeout", broker_connect_timeout),
            ("--delay", delay),
        ):
            if not seconds >= 0:  # NaN too
                raise click.UsageError(f"{flag} must be a number, not negative")
        logs.configure(log_level, log_format)
        # One process per ledger, held until exit; before waiting for RabbitMQ.
        lock = ExclusiveLock(ledger)
        try:
            lock.acquire()
        except InUse as exc:
            raise LedgerInUse(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(f"cannot lock {ledger}: {exc.strerror}") from exc
        rabbit = RabbitBroker(broker, connect_within=broker_connect_timeout)
        metrics = ServiceMetrics(list(answers))
        exposed = None
        if metrics_port is not None:
            try:
                exposed = metrics.serve(metrics_host, metrics_port)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror}"
                ) from exc
        spans = _open_spans(name, otlp_endpoint)
        service = StubService(
            name,
            answers,
            compensations=compensations,
            broker=rabbit,
            ledger=Ledger(ledger),
            delay=delay,
            mode=mode,
            metrics=metrics,
            spans=spans,
        )
        try:
            asyncio.run(_serve(service, rabbit))
        except BrokerUnreachable as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            if exposed is not None:
                exposed.shutdown()
            if spans is not None:
                spans.close()

    command(auto_envvar_prefix=name.upper())


def _open_spans(name: str, endpoint: str | None) -> Spans | None:
    """The OTLP span exporter when an endpoint is set; OpenTelemetry is imported only then
    (as the orchestrator's runtime does)."""
    if endpoint is None:
        return None
    try:
        from orchestrator.otel import OtlpSpans
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed"
            " (pip install 'order-orchestrator[otel]'): no spans are exported"
        )
        return None
    return OtlpSpans(name, endpoint)


async def _serve(service: StubService, broker: RabbitBroker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.connect()
    await service.start()
    log.info("%s ready on %s", service.name, broker.url.rsplit("@", 1)[-1])
    await stop.wait()
    # Stop consuming first: an interrupted command goes back to the queue, and the ledger
    # makes its redelivery harmless.
    await broker.close()
    await service.ledger.close()
