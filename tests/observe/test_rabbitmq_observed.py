"""One trace and one set of log fields across three processes on a real RabbitMQ, and
broker reconnects in /metrics.

The orchestrator, the kitchen and the delivery run as subprocesses with JSON logs. A
queue of the test's own, bound to every routing key of the exchange, sees every command
and answer, so the trace can be read off the messages themselves. With
``ORCHESTRATOR_TEST_RABBITMQ=require`` an unreachable broker fails these tests.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import httpx
import pytest

from orchestrator import tracing
from orchestrator.messages import decode
from tests.conftest import ServerFactory, free_port
from tests.edge.test_ops import metrics
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
from tests.observe.test_logs_and_traces import FLOW_TRACE, JSON_LOGS, traceparent

FLOW = ["MAKE_PIZZA", "PIZZA_READY", "DELIVER_PIZZA", "PIZZA_DELIVERED"]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Path]:
    """Kitchen and delivery processes with JSON logs, ledgers beside ``orders.db``."""
    db = tmp_path / "orders.db"
    asyncio.run(delete_flow_queues())
    procs = [spawn_service(db, name, *JSON_LOGS) for name in ("kitchen", "delivery")]
    yield db
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=30) == 0


@asynccontextmanager
async def tap() -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A temporary queue that receives a copy of every message on the exchange."""
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            "orders", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")
        yield queue


async def test_one_trace_from_the_request_to_the_delivery(
    services: Path, server_factory: ServerFactory
) -> None:
    """orchestrator -> kitchen -> orchestrator -> delivery -> orchestrator: every message
    of the order carries the trace of the request that confirmed it, each hop with a span
    of its own, and the services' log lines about the order carry it too."""
    server = server_factory("--broker", RABBITMQ_URL, *JSON_LOGS, db=services)
    async with tap() as queue, httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        order_id = (await create_order(http))["id"]
        confirmed = await http.post(
            f"/orders/{order_id}/events", json=CONFIRM, headers=traceparent(FLOW_TRACE)
        )
        assert confirmed.status_code == 200
        await wait_for_state(http, order_id, DONE, within=60.0)
        seen: dict[str, str | None] = {}
        while set(seen) != set(FLOW):
            message = await queue.get(no_ack=True, timeout=10.0)
            body = decode(message.body)
            if body.subject == order_id:
                seen[body.type] = body.traceparent
    assert {kind: tracing.trace_id(value) for kind, value in seen.items()} == {
        kind: FLOW_TRACE for kind in FLOW
    }
    assert len(set(seen.values())) == len(FLOW)  # a new span id per hop
    for name in ("kitchen", "delivery"):
        lines = [
            json.loads(line) for line in (services.parent / f"{name}.log").read_text().splitlines()
        ]
        about = [line for line in lines if line.get("order_id") == order_id]
        assert about, f"no {name} log line about {order_id}"
        assert all(line["trace_id"] == FLOW_TRACE and line["event_id"] for line in about)


@asynccontextmanager
async def cuttable_proxy(target: str) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A TCP proxy to ``target`` (host:port); setting the event drops every connection
    through it, as a network failure would, while it keeps accepting new ones."""
    host, port = target.rsplit(":", 1)
    writers: set[asyncio.StreamWriter] = set()
    cut = asyncio.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writers.update((writer, upstream_writer))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def cutter() -> None:
        while True:
            await cut.wait()
            cut.clear()
            for writer in list(writers):
                writer.transport.abort()
            writers.clear()

    listen = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    task = asyncio.create_task(cutter())
    try:
        yield listen, cut
    finally:
        task.cancel()
        server.close()
        for writer in writers:
            writer.transport.abort()


async def test_a_dropped_broker_connection_counts_one_reconnect(
    services: Path, server_factory: ServerFactory
) -> None:
    """The robust connection comes back by itself; /metrics counts it, and orders flow."""
    url = urlsplit(RABBITMQ_URL)
    async with cuttable_proxy(f"{url.hostname}:{url.port or 5672}") as (port, cut):
        proxied = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{port}")
        # In a thread: the start waits for /readyz, and the proxy runs on this loop.
        server = await asyncio.to_thread(server_factory, "--broker", proxied.geturl(), db=services)
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
            before = await metrics(http)
            assert before[("orchestrator_broker_reconnects_total", ())] == 0
            cut.set()

            async def reconnected() -> bool:
                samples = await metrics(http)
                return samples[("orchestrator_broker_reconnects_total", ())] >= 1

            await eventually(reconnected, within=30.0, what="a broker reconnect in /metrics")
            order_id = (await create_order(http))["id"]
            await send_ok(http, order_id, CONFIRM)
            await wait_for_state(http, order_id, DONE, within=60.0)
            assert (await metrics(http))[("orchestrator_broker_reconnects_total", ())] == 1
