"""A pizzeria written from docs/services.md alone: aio-pika and the standard library, no
import of this project, as a service in another language would be.

    python raw_pizzeria.py AMQP_URL LEDGER_FILE

It bakes (MAKE_PIZZA -> PIZZA_READY) and delivers (DELIVER_PIZZA -> PIZZA_DELIVERED), each
once per order, and dead-letters a MAKE_PIZZA with no pizza in it, with the reason. It
prints "ready" once its queue is bound, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import sqlite3
import sys
import uuid
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

EXCHANGE = "orders"
DEAD_LETTER_EXCHANGE = "orders.dead"
QUEUE = "raw-pizzeria"
ANSWERS = {"MAKE_PIZZA": "PIZZA_READY", "DELIVER_PIZZA": "PIZZA_DELIVERED"}
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})")


class Refused(Exception):
    """A command that can never be carried out: dead-letter it with this reason."""


def continued(traceparent: object) -> str | None:
    """The command's trace, with a span id of our own; none if it had no valid one."""
    found = TRACEPARENT.fullmatch(traceparent) if isinstance(traceparent, str) else None
    if found is None:
        return None
    return f"00-{found[1]}-{random.getrandbits(64) or 1:016x}-{found[2]}"


def parse(body: bytes) -> dict[str, object]:
    try:
        command = json.loads(body)
    except ValueError as exc:
        raise Refused(f"not JSON: {exc}") from exc
    if not isinstance(command, dict) or command.get("specversion") != "1.0":
        raise Refused("not a CloudEvent 1.0")
    if command.get("type") not in ANSWERS:
        raise Refused(f"this pizzeria does not handle {command.get('type')!r}")
    if not isinstance(command.get("subject"), str) or not command["subject"]:
        raise Refused("the command has no subject (the order id)")
    return command


def answer_to(command: dict[str, object]) -> bytes:
    """The answer's CloudEvent; its id is made once and kept in the ledger with it."""
    data = command.get("data")
    items = data.get("items") if isinstance(data, dict) else None
    if command["type"] == "MAKE_PIZZA" and not items:
        raise Refused("nothing to bake: the order has no pizza")
    answer: dict[str, object] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": ANSWERS[str(command["type"])],
        "source": "/raw-pizzeria",
        "subject": command["subject"],
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": {"items": len(items) if isinstance(items, list) else 0},
    }
    if isinstance(command.get("invokeid"), str):
        answer["invokeid"] = command["invokeid"]
    traceparent = continued(command.get("traceparent"))
    if traceparent is not None:
        answer["traceparent"] = traceparent
    return json.dumps(answer).encode()


def persistent(body: bytes, message_id: str | None, headers: dict[str, str]) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        message_id=message_id,
        headers=dict(headers),
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def serve(url: str, ledger_file: str) -> None:
    ledger = sqlite3.connect(ledger_file, isolation_level=None)
    ledger.execute(
        "CREATE TABLE IF NOT EXISTS carried_out"
        " (key TEXT PRIMARY KEY, routing_key TEXT NOT NULL, answer BLOB NOT NULL)"
    )
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=8)
    orders = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dead = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(
        QUEUE, durable=True, arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    )
    for command_type in ANSWERS:
        await queue.bind(orders, f"command.{command_type}")

    async def on_command(message: AbstractIncomingMessage) -> None:
        try:
            command = parse(message.body)
            # Once per order: a retry of the same work is a new message for the same key.
            key = f"{command['subject']}/{command['type']}"
            row = ledger.execute(
                "SELECT routing_key, answer FROM carried_out WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                answer = answer_to(command)
                routing_key = f"event.{ANSWERS[str(command['type'])]}"
                ledger.execute(
                    "INSERT INTO carried_out VALUES (?, ?, ?)", (key, routing_key, answer)
                )
                row = (routing_key, answer)
        except Refused as refusal:
            await dead_letter(dead, message, str(refusal))
            return
        routing_key, answer = row
        answer_id = json.loads(answer)["id"]
        await orders.publish(persistent(answer, answer_id, {}), routing_key, mandatory=True)
        await message.ack()  # after the confirm: a crash before means a redelivery

    await queue.consume(on_command)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await connection.close()
    ledger.close()


async def dead_letter(
    dead: AbstractExchange, message: AbstractIncomingMessage, reason: str
) -> None:
    """A copy under the original routing key with the reason, confirmed, then the ack."""
    copy = persistent(message.body, message.message_id, {"x-reason": reason})
    await dead.publish(copy, message.routing_key or "", mandatory=True)
    await message.ack()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
