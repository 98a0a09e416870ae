"""A stub service: take a command from the broker, carry it out once, answer with an event.

The kitchen (MAKE_PIZZA -> PIZZA_READY) and the delivery (DELIVER_PIZZA -> PIZZA_DELIVERED)
are both this, with their own names. Carrying out is waiting ``delay`` seconds and
recording the command in the service's ledger; the answer is a CloudEvent whose id derives
from the command's, so a repeated answer is recognisable as the same one.

Failure modes, for tests: ``reject`` dead-letters every command (the orchestrator's invoke
then errors), ``ignore`` records it and never answers (the order waits).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from orchestrator.broker.base import Broker, Delivery, Poison
from orchestrator.messages import MalformedMessage, Message, command_key, decode, encode, event_key
from services.ledger import Entry, Ledger

log = logging.getLogger(__name__)


class StubService:
    def __init__(
        self,
        name: str,
        answers: dict[str, str],
        *,
        broker: Broker,
        ledger: Ledger,
        delay: float = 0.0,
        mode: str = "ok",
    ) -> None:
        self.name = name
        self.answers = answers
        self.broker = broker
        self.ledger = ledger
        self.delay = delay
        self.mode = mode
        # Commands being carried out now, by id: a second copy arriving meanwhile (say, a
        # resend after the orchestrator restarted) waits for the first, then finds it done.
        self._carrying: dict[str, asyncio.Lock] = {}

    async def start(self) -> None:
        await self.ledger.open()
        await self.broker.declare_queue(self.name, [command_key(t) for t in self.answers])
        await self.broker.consume(self.name, self.handle)

    async def handle(self, delivery: Delivery) -> None:
        try:
            command = decode(delivery.body)
        except MalformedMessage as exc:
            raise Poison(str(exc)) from exc
        answer_type = self.answers.get(command.type)
        if answer_type is None:
            raise Poison(f"{self.name} does not handle {command.type}")
        if self.mode == "reject":
            raise Poison(f"{self.name} refuses {command.type} (failure mode 'reject')")
        lock = self._carrying.setdefault(command.id, asyncio.Lock())
        try:
            async with lock:
                entry = await self._carry_out(command, answer_type)
        finally:
            if not lock.locked():
                self._carrying.pop(command.id, None)
        if entry.answer is not None:
            await self.broker.publish(
                event_key(answer_type), entry.answer, message_id=_answer_id(self.name, command.id)
            )

    async def _carry_out(self, command: Message, answer_type: str) -> Entry:
        entry = await self.ledger.find(command.id)
        if entry is None:
            await asyncio.sleep(self.delay)
            entry = Entry(
                command.id, command.subject, command.type, self._answer(command, answer_type)
            )
            await self.ledger.record(entry)
            log.info("%s carried out %s for order %s", self.name, command.type, command.subject)
        return entry

    def _answer(self, command: Message, answer_type: str) -> bytes | None:
        if self.mode == "ignore":
            return None
        answer = Message(
            id=_answer_id(self.name, command.id),
            type=answer_type,
            source=f"/{self.name}",
            subject=command.subject,
            data={"command": command.id},
        )
        return encode(answer, time.time())


def _answer_id(service: str, command_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{service}/{command_id}"))
