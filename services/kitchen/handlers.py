"""The kitchen: bakes what MAKE_PIZZA asks for, throws away what CANCEL_PIZZA cancels."""

from __future__ import annotations

from orchestrator.worker import Command, Service
from services import stub


def kitchen(*, delay: float = 0.0, mode: str = "ok") -> Service:
    """The kitchen, taking ``delay`` seconds per pizza, in failure mode ``mode``."""
    service = Service("kitchen")

    @service.handles("MAKE_PIZZA", answer="PIZZA_READY")
    async def make_pizza(command: Command) -> dict[str, str] | None:
        return await stub.carry_out(command, service=service.name, delay=delay, mode=mode)

    # The compensation: a cancelled pizza is thrown away, in every mode.
    @service.handles("CANCEL_PIZZA", answer="PIZZA_CANCELLED", undoes="MAKE_PIZZA")
    async def cancel_pizza(command: Command) -> dict[str, str]:
        return stub.answer(command)

    return service
