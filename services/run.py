"""Run one stub service as its own process on RabbitMQ, until SIGTERM or SIGINT.

``python -m services.kitchen --broker amqp://...`` and ``python -m services.delivery ...``
both come here. Each flag also reads an environment variable (``KITCHEN_BROKER``,
``DELIVERY_LEDGER``, ...), so a container needs no command-line changes.
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
from orchestrator.settings import BROKER_CONNECT_TIMEOUT, LOG_FORMATS, amqp_url_problem
from services.ledger import Ledger
from services.stub import StubService

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
    def command(
        broker: str,
        broker_connect_timeout: float,
        ledger: Path,
        delay: float,
        mode: str,
        log_level: str,
        log_format: str,
    ) -> None:
        problem = amqp_url_problem(broker)
        if problem is not None:
            raise click.UsageError(f"--broker must be {problem}")
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
        try:
            asyncio.run(_serve(name, answers, compensations, rabbit, ledger, delay, mode))
        except BrokerUnreachable as exc:
            raise click.ClickException(str(exc)) from exc

    command(auto_envvar_prefix=name.upper())


async def _serve(
    name: str,
    answers: dict[str, str],
    compensations: dict[str, str],
    broker: RabbitBroker,
    ledger: Path,
    delay: float,
    mode: str,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.connect()
    service = StubService(
        name,
        answers,
        compensations=compensations,
        broker=broker,
        ledger=Ledger(ledger),
        delay=delay,
        mode=mode,
    )
    await service.start()
    logging.getLogger(__name__).info("%s ready on %s", name, broker.url.rsplit("@", 1)[-1])
    await stop.wait()
    # Stop consuming first: an interrupted command goes back to the queue, and the ledger
    # makes its redelivery harmless.
    await broker.close()
    await service.ledger.close()
