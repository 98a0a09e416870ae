"""The delivery: takes DELIVER_PIZZA to the door and answers PIZZA_DELIVERED."""

from __future__ import annotations

from orchestrator.worker import Command, Service
from services import stub


def delivery(*, delay: float = 0.0, mode: str = "ok") -> Service:
    """The delivery, taking ``delay`` seconds per pizza, in failure mode ``mode``."""
    service = Service("delivery")

    @service.handles("DELIVER_PIZZA", answer="PIZZA_DELIVERED")
    async def deliver_pizza(command: Command) -> dict[str, str] | None:
        return await stub.carry_out(command, service=service.name, delay=delay, mode=mode)

    return service
