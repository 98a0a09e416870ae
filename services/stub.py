"""What the bundled stubs do with a work command: wait, then answer, or fail on purpose.

Carrying out is waiting ``delay`` seconds; the answer's data names the command it answers.
Failure modes, for tests, apply to work commands only (a stuck kitchen still hears a
cancellation): ``reject`` dead-letters them (the orchestrator's invoke then errors),
``ignore`` carries them out and never answers (the order waits).
"""

from __future__ import annotations

import asyncio

from orchestrator.worker import Command, Poison

MODES = ("ok", "reject", "ignore")


async def carry_out(
    command: Command, *, service: str, delay: float, mode: str
) -> dict[str, str] | None:
    """The answer's data for a work command, after ``delay``; None in mode ``ignore``."""
    if mode == "reject":
        raise Poison(f"{service} refuses {command.type} (failure mode 'reject')")
    await asyncio.sleep(delay)
    return None if mode == "ignore" else answer(command)


def answer(command: Command) -> dict[str, str]:
    return {"command": command.id}
