"""docs/services.md, held to its word against a real orchestrator on a real RabbitMQ.

Two services written from the page alone take pizza orders to ``done``, each run as its own
process beside ``orchestrator serve --broker amqp://...`` on 127.0.0.1: the page's Python
example, extracted and run as it is written (``orchestrator.worker``), and
``raw_pizzeria.py``, written with aio-pika and the standard library only. Both refuse an
order with no pizza by dead-lettering its MAKE_PIZZA with a reason, which the order's
history then shows. With ``ORCHESTRATOR_TEST_RABBITMQ=require`` an unreachable broker fails
these tests instead of skipping them.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import httpx
import pytest

from tests.conftest import ServerFactory
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    RABBITMQ_URL,
    assert_flow_histories,
    create_order,
    delete_flow_queues,
    eventually,
    history,
    http_client,
    remove,
    send_ok,
    wait_all_in_state,
)

ROOT = Path(__file__).resolve().parent.parent.parent
RAW_SERVICE = Path(__file__).with_name("raw_pizzeria.py")
ORDERS = 5
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
INVOKES = {"PIZZA_READY": "sendOrderToKitchen", "PIZZA_DELIVERED": "sendOrderToDelivery"}
# The queues of the services of this file, besides the flow's.
QUEUES = ("pizzeria", "raw-pizzeria")


async def delete_queues() -> None:
    await delete_flow_queues()  # skips, or fails, when RabbitMQ is not there
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        for name in QUEUES:
            await channel.queue_delete(name)


def the_page_example() -> str:
    """The first python block of docs/services.md."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "services.md").read_text(), re.S)
    assert blocks, "docs/services.md has no python example"
    return str(blocks[0])


@asynccontextmanager
async def running(command: list[str], log: Path, ready: str) -> AsyncIterator[None]:
    """The service as a subprocess until the test ends; then SIGTERM, and a clean exit."""
    proc = spawn(command, log)

    async def is_ready() -> bool:
        assert proc.poll() is None, text_of(log)
        return ready in text_of(log)

    try:
        await eventually(is_ready, within=60.0, what=f"the service to say {ready!r}")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        await delete_queues()
    assert code == 0, text_of(log)


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def text_of(log: Path) -> str:
    return log.read_text()


@pytest.fixture
async def kit_service(tmp_path: Path) -> AsyncIterator[Path]:
    """The page's example as ``pizzeria.py``, run with its ledger in tmp_path."""
    await delete_queues()
    script = tmp_path / "pizzeria.py"
    script.write_text(the_page_example())
    ledger = tmp_path / "pizzeria.db"
    command = [sys.executable, str(script), "--broker", RABBITMQ_URL, "--ledger", str(ledger)]
    async with running(command, tmp_path / "pizzeria.log", "pizzeria ready"):
        yield ledger


@pytest.fixture
async def raw_service(tmp_path: Path) -> AsyncIterator[Path]:
    """``raw_pizzeria.py`` with its ledger in tmp_path."""
    await delete_queues()
    ledger = tmp_path / "raw-pizzeria.db"
    command = [sys.executable, str(RAW_SERVICE), RABBITMQ_URL, str(ledger)]
    async with running(command, tmp_path / "raw-pizzeria.log", "ready"):
        yield ledger


async def run_orders_to_done(http: httpx.AsyncClient) -> list[str]:
    """ORDERS orders confirmed in the trace TRACE_ID, each taken to done; their histories
    as the flow's."""
    ids = [(await create_order(http))["id"] for _ in range(ORDERS)]
    for order_id in ids:
        confirmed = await http.post(
            f"/orders/{order_id}/events", json=CONFIRM, headers={"traceparent": TRACEPARENT}
        )
        assert confirmed.status_code == 200, confirmed.text
    await wait_all_in_state(http, ids, DONE, within=60.0)
    await assert_flow_histories(http, ids)
    return ids


async def refused_reason(http: httpx.AsyncClient) -> str:
    """Confirm an order with no pizza; the reason its MAKE_PIZZA was dead-lettered with,
    as the order's history shows it."""
    order_id = (await create_order(http))["id"]
    await send_ok(http, order_id, remove(HAWAII))
    await send_ok(http, order_id, CONFIRM)
    errors: list[str] = []

    async def errored() -> bool:
        entries = await history(http, order_id)
        errors[:] = [
            str(entry["data"]["reason"])
            for entry in entries
            if entry["type"] == "error.invoke.sendOrderToKitchen"
        ]
        return bool(errors)

    await eventually(errored, within=30.0, what="the kitchen's invoke to error")
    return errors[0]


def ledger_rows(ledger: Path, query: str) -> dict[str, bytes]:
    """key -> answer, of the rows ``query`` selects from a service's ledger."""
    conn = sqlite3.connect(ledger, timeout=10.0)
    try:
        return {str(key): bytes(answer) for key, answer in conn.execute(query).fetchall()}
    finally:
        conn.close()


def times_carried_out(ledger: Path) -> set[int]:
    """The distinct counts of the kit's ledger's ``times``: how often each was carried out."""
    conn = sqlite3.connect(ledger, timeout=10.0)
    try:
        return {int(times) for (times,) in conn.execute("SELECT times FROM handled")}
    finally:
        conn.close()


def assert_answered_once_each(answers: dict[str, bytes], order_ids: list[str]) -> None:
    """One answer per order and command, each carrying its order, the command's invokeid
    and the trace the orders were confirmed in, continued with a span of its own."""
    expected = {f"{i}/{t}" for i in order_ids for t in ("MAKE_PIZZA", "DELIVER_PIZZA")}
    assert set(answers) == expected
    for key, body in answers.items():
        answer = json.loads(body)
        assert answer["subject"] == key.split("/")[0]
        assert answer["invokeid"] == INVOKES[answer["type"]]
        _, trace_id, span_id, _ = answer["traceparent"].split("-")
        assert trace_id == TRACE_ID
        assert span_id != TRACEPARENT.split("-")[2]


async def test_the_python_service_of_the_page_runs_orders_to_done(
    kit_service: Path, server_factory: ServerFactory, tmp_path: Path
) -> None:
    """The example of docs/services.md, as written, is the orchestrator's only service."""
    server = server_factory("--broker", RABBITMQ_URL, db=tmp_path / "orders.db")
    async with http_client(server.url) as http:
        ids = await run_orders_to_done(http)
        reason = await refused_reason(http)
    assert reason == "nothing to bake: the order has no pizza"
    assert_answered_once_each(ledger_rows(kit_service, "SELECT key, answer FROM handled"), ids)
    assert times_carried_out(kit_service) == {1}  # anything but 1 is a double bake


async def test_a_raw_aio_pika_service_runs_orders_to_done(
    raw_service: Path, server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A service written from the page with aio-pika alone drives real orders to done and
    refuses with a reason the orchestrator passes on."""
    server = server_factory("--broker", RABBITMQ_URL, db=tmp_path / "orders.db")
    async with http_client(server.url) as http:
        ids = await run_orders_to_done(http)
        reason = await refused_reason(http)
    assert reason == "nothing to bake: the order has no pizza"
    assert_answered_once_each(ledger_rows(raw_service, "SELECT key, answer FROM carried_out"), ids)


def test_the_raw_service_imports_nothing_of_this_project() -> None:
    """What makes the raw service a test of the page: only aio-pika and the standard
    library, no module of the orchestrator, its services or its tests."""
    tree = ast.parse(RAW_SERVICE.read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
    }
    assert imported - set(sys.stdlib_module_names) == {"aio_pika"}
