"""The kitchen's own /metrics in RabbitMQ mode: commands received, executed, deduped and
failed, read from a ``python -m services.kitchen --metrics-port`` subprocess over HTTP
while a real order runs through a real RabbitMQ. With
``ORCHESTRATOR_TEST_RABBITMQ=require`` an unreachable broker fails the test.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import httpx
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.broker.base import EXCHANGE
from orchestrator.messages import Message, command_key, encode
from tests.conftest import ServerFactory, free_port
from tests.helpers import (
    CONFIRM,
    DONE,
    RABBITMQ_URL,
    create_order,
    delete_flow_queues,
    eventually,
    send_ok,
    spawn_service,
    wait_for_state,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(url)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def counts(samples: Samples) -> dict[str, float]:
    """The service's command counters, by name and label value."""
    found = {}
    for (name, labels), value in samples.items():
        if name.startswith("service_commands_"):
            found[name + "".join(f"{{{v}}}" for _k, v in labels)] = value
    return found


async def publish(routing_key: str, body: bytes) -> None:
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(
            aio_pika.Message(body, message_id=str(uuid.uuid4())), routing_key=routing_key
        )


async def test_the_kitchen_counts_its_commands(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """An order's MAKE_PIZZA is received and executed once; a repeat for the same order is
    deduped (answered from the ledger), and a body that is not a CloudEvent fails as
    poison. Every series is there from the start, at 0."""
    await delete_flow_queues()
    db = tmp_path / "orders.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    kitchen = spawn_service(db, "kitchen", "--metrics-port", str(port))
    delivery = spawn_service(db, "delivery")
    try:
        server = server_factory("--broker", RABBITMQ_URL, db=db)

        async def serving() -> bool:
            try:
                await scrape(url)
            except httpx.HTTPError:
                return False
            return True

        await eventually(serving, within=30, what="the kitchen's /metrics")
        assert counts(await scrape(url)) == {
            "service_commands_received_total": 0,
            "service_commands_executed_total{MAKE_PIZZA}": 0,
            "service_commands_executed_total{CANCEL_PIZZA}": 0,
            "service_commands_deduped_total{MAKE_PIZZA}": 0,
            "service_commands_deduped_total{CANCEL_PIZZA}": 0,
            "service_commands_failed_total{poison}": 0,
            "service_commands_failed_total{retry}": 0,
        }
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
            order_id = (await create_order(http))["id"]
            await send_ok(http, order_id, CONFIRM)
            await wait_for_state(http, order_id, DONE)
        once = counts(await scrape(url))
        assert once["service_commands_received_total"] == 1
        assert once["service_commands_executed_total{MAKE_PIZZA}"] == 1
        assert once["service_commands_deduped_total{MAKE_PIZZA}"] == 0
        repeat = Message(
            id=str(uuid.uuid4()),
            type="MAKE_PIZZA",
            source="/tests",
            subject=order_id,
            data={},
        )
        await publish(command_key("MAKE_PIZZA"), encode(repeat, time.time()))
        await publish(command_key("MAKE_PIZZA"), b"not a CloudEvent")

        async def counted() -> bool:
            now = counts(await scrape(url))
            return now["service_commands_received_total"] == 3

        await eventually(counted, within=30, what="the kitchen to take both messages")
        after = counts(await scrape(url))
        assert after["service_commands_executed_total{MAKE_PIZZA}"] == 1
        assert after["service_commands_deduped_total{MAKE_PIZZA}"] == 1
        assert after["service_commands_failed_total{poison}"] == 1
        assert after["service_commands_failed_total{retry}"] == 0
    finally:
        for proc in (kitchen, delivery):
            proc.send_signal(signal.SIGTERM)
        for proc in (kitchen, delivery):
            assert proc.wait(timeout=30) == 0


def test_a_metrics_port_in_use_is_one_line_at_start(tmp_path: Path) -> None:
    """The port is taken before RabbitMQ is waited for: a clash ends the process at once,
    in one line (no RabbitMQ needed: nothing listens at the broker's address)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable, "-m", "services.kitchen",
                "--broker", "amqp://guest:guest@127.0.0.1:1/",
                "--ledger", str(tmp_path / "kitchen.db"),
                "--metrics-port", str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
