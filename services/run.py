"""The command line of a bundled stub: the worker kit's flags, plus ``--delay`` and ``--mode``.

``python -m services.kitchen --broker amqp://...`` and ``python -m services.delivery ...``
both come here. Each flag also reads an environment variable (``KITCHEN_BROKER``,
``DELIVERY_LEDGER``, ...), so a container needs no command-line changes.
"""

from __future__ import annotations

from typing import Protocol

import click

from orchestrator.worker import ProcessOptions, Service, process_options, serve
from services.stub import MODES


class Build(Protocol):
    """A stub's service, made for a delay and a failure mode."""

    def __call__(self, *, delay: float, mode: str) -> Service: ...


def main(name: str, build: Build) -> None:
    @click.command(name=name, help=f"The {name} stub.")
    @process_options(name)
    @click.option("--delay", type=float, default=0.0, show_default=True)
    @click.option(
        "--mode",
        type=click.Choice(MODES),
        default="ok",
        show_default=True,
        help="ok; reject (dead-letter work commands); ignore (never answer them)."
        " Compensations are always carried out.",
    )
    def command(options: ProcessOptions, delay: float, mode: str) -> None:
        if not delay >= 0:  # NaN too
            raise click.UsageError("--delay must be a number, not negative")
        serve(build(delay=delay, mode=mode), options)

    command(auto_envvar_prefix=name.upper())
