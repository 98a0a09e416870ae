"""Run a service as its own process on RabbitMQ, until SIGTERM or SIGINT.

``main(service)`` is the whole command line of a service: ``--broker``, ``--ledger``,
``--broker-connect-timeout``, ``--log-level``, ``--log-format``, ``--metrics-port`` and
``--metrics-host``, each also read from an environment variable named after the service
(``KITCHEN_BROKER``, ``OVEN_LEDGER``...), so a container needs no command-line changes;
and ``--otlp-endpoint``, which reads OpenTelemetry's own ``OTEL_EXPORTER_OTLP_ENDPOINT``.
``--metrics-port`` serves the service's Prometheus metrics (``worker.metrics``). A service
with flags of its own puts ``process_options`` on its click command and calls ``serve``,
as the bundled kitchen does.

The ledger is locked for the life of the process, before RabbitMQ is waited for: two
processes on one ledger would each carry out the same command.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from orchestrator import logs
from orchestrator.broker.rabbitmq import BrokerUnreachable, RabbitBroker
from orchestrator.exporter import open_spans
from orchestrator.lockfile import ExclusiveLock, InUse
from orchestrator.settings import (
    BROKER_CONNECT_TIMEOUT,
    LOG_FORMATS,
    amqp_url_problem,
    otlp_endpoint_problem,
)
from orchestrator.spans import Spans
from orchestrator.worker.metrics import ServiceMetrics
from orchestrator.worker.service import Service

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessOptions:
    """Where a service process finds RabbitMQ and keeps its ledger, and how it logs."""

    broker: str
    ledger: Path
    broker_connect_timeout: float = BROKER_CONNECT_TIMEOUT
    log_level: str = "info"
    log_format: str = "text"
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    otlp_endpoint: str | None = None


class LedgerInUse(click.ClickException):
    """Another process owns the ledger: exit 2, in one line, like ``orchestrator serve``."""

    exit_code = 2


def process_options(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The flags of a service process, for a click command; the command receives them as
    a checked ``ProcessOptions`` first argument, then its own flags."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def with_options(
            broker: str,
            ledger: Path,
            broker_connect_timeout: float,
            log_level: str,
            log_format: str,
            metrics_port: int | None,
            metrics_host: str,
            otlp_endpoint: str | None,
            **own: object,
        ) -> None:
            problem = amqp_url_problem(broker)
            if problem is not None:
                raise click.UsageError(f"--broker must be {problem}")
            if not broker_connect_timeout >= 0:  # NaN too
                raise click.UsageError("--broker-connect-timeout must be a number, not negative")
            if otlp_endpoint is not None:
                problem = otlp_endpoint_problem(otlp_endpoint)
                if problem is not None:
                    raise click.UsageError(f"--otlp-endpoint must be {problem}")
            options = ProcessOptions(
                broker,
                ledger,
                broker_connect_timeout,
                log_level,
                log_format,
                metrics_port,
                metrics_host,
                otlp_endpoint,
            )
            command(options, **own)

        flags = [
            click.option("--broker", required=True, help="amqp:// URL of RabbitMQ."),
            click.option(
                "--ledger",
                type=click.Path(path_type=Path, dir_okay=False),
                default=Path(f"{name}.db"),
                show_default=True,
                help="SQLite file recording each command carried out, so none runs twice.",
            ),
            click.option(
                "--broker-connect-timeout",
                type=float,
                default=BROKER_CONNECT_TIMEOUT,
                show_default=True,
                help="Seconds to keep trying to reach RabbitMQ at start (it may be starting too).",
            ),
            click.option("--log-level", default="info", show_default=True),
            click.option(
                "--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True
            ),
            click.option(
                "--metrics-port",
                type=click.IntRange(1, 65535),
                default=None,
                help="Serve Prometheus metrics on this port at /metrics [default: off].",
            ),
            click.option(
                "--metrics-host",
                default="127.0.0.1",
                show_default=True,
                help="The address --metrics-port listens on (0.0.0.0 for a scraper elsewhere).",
            ),
            click.option(
                "--otlp-endpoint",
                envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
                # An empty variable is unset, as OpenTelemetry's specification says.
                callback=lambda _ctx, _param, value: value or None,
                default=None,
                help="Export spans over OTLP/HTTP to this base URL (needs the otel extra)"
                " [default: off].",
            ),
        ]
        decorated: Callable[..., None] = with_options
        for flag in reversed(flags):
            decorated = flag(decorated)
        return decorated

    return decorate


def env_prefix(service: Service) -> str:
    """The prefix of a service's environment variables: KITCHEN for kitchen."""
    return service.name.upper().replace("-", "_")


def main(service: Service) -> None:
    """The command line of a service that needs no flags of its own: parse, then serve."""

    @click.command(name=service.name, help=f"The {service.name} service.")
    @process_options(service.name)
    def command(options: ProcessOptions) -> None:
        serve(service, options)

    command(auto_envvar_prefix=env_prefix(service))


def serve(service: Service, options: ProcessOptions) -> None:
    """Run ``service`` on RabbitMQ until SIGTERM or SIGINT; failures to start are click
    errors (one line, exit 1, or 2 for a ledger in use)."""
    logs.configure(options.log_level, options.log_format)
    # One process per ledger, held until exit; before waiting for RabbitMQ.
    lock = ExclusiveLock(options.ledger)
    try:
        lock.acquire()
    except InUse as exc:
        raise LedgerInUse(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot lock {options.ledger}: {exc.strerror}") from exc
    rabbit = RabbitBroker(options.broker, connect_within=options.broker_connect_timeout)
    metrics = ServiceMetrics(service.command_types())
    exposed = None
    if options.metrics_port is not None:
        try:
            exposed = metrics.serve(options.metrics_host, options.metrics_port)
        except OSError as exc:
            where = f"{options.metrics_host}:{options.metrics_port}"
            raise click.ClickException(f"cannot serve metrics on {where}: {exc.strerror}") from exc
    spans = open_spans(service.name, options.otlp_endpoint)
    try:
        asyncio.run(_serve(service, rabbit, options.ledger, metrics, spans))
    except BrokerUnreachable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if exposed is not None:
            exposed.shutdown()
        if spans is not None:
            spans.close()


async def _serve(
    service: Service,
    broker: RabbitBroker,
    ledger: Path,
    metrics: ServiceMetrics,
    spans: Spans | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.connect()
    await service.start(broker, ledger, metrics=metrics, spans=spans)
    log.info("%s ready on %s", service.name, broker.url.rsplit("@", 1)[-1])
    await stop.wait()
    # Stop consuming first: an interrupted command goes back to the queue, and the ledger
    # makes its redelivery harmless.
    await broker.close()
    await service.close()
