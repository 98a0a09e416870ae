"""The worker kit: write a service that carries out the orchestrator's commands.

A service declares one handler per command type and answers each command with an event::

    from orchestrator.worker import Command, Service, main

    oven = Service("oven")

    @oven.handles("MAKE_PIZZA", answer="PIZZA_READY")
    async def bake(command: Command) -> dict[str, object]:
        return {"baked": command.data.get("items", [])}

    if __name__ == "__main__":
        main(oven)  # --broker amqp://... --ledger oven.db

The kit keeps the protocol of docs/services.md: the queue and its bindings, dedupe in the
service's own ledger, ack after the effect, answers as CloudEvents carrying the order, the
``invokeid`` and the trace, dead letters with a reason. The bundled kitchen and delivery
are its first users (``services/``), and ``orchestrator serve`` runs them with this kit on
its in-process broker. This package is what services import: an import-linter contract
keeps ``services/`` to it.
"""

from orchestrator.broker.base import MAX_DELIVERIES, Poison, Retry
from orchestrator.worker.process import ProcessOptions, main, process_options, serve
from orchestrator.worker.service import (
    MAX_COMMAND_BYTES,
    Command,
    CommandHandler,
    OncePer,
    Service,
)

__all__ = [
    "MAX_COMMAND_BYTES",
    "MAX_DELIVERIES",
    "Command",
    "CommandHandler",
    "OncePer",
    "Poison",
    "ProcessOptions",
    "Retry",
    "Service",
    "main",
    "process_options",
    "serve",
]
