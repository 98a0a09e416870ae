"""Faults in the middle of the three-process flow on a real RabbitMQ.

The orchestrator (``orchestrator serve --broker amqp://...``), the kitchen and the delivery
run as subprocesses, as in ``test_rabbitmq_flow.py``; the services take ``--delay 0.05`` so
that commands are still being carried out when the fault hits. Each test confirms 50
orders in a paced stream and, part way through, breaks one piece:

* the broker: ``rabbitmqctl stop_app``, a pause, ``rabbitmqctl start_app``;
* the kitchen: SIGKILL, then a new kitchen process on the same ledger;
* the orchestrator: SIGKILL, then a restart on the same database.

Afterwards every order must reach ``done`` within a deadline, each history holds exactly
one PIZZA_READY and one PIZZA_DELIVERED, and the kitchen's and delivery's ledgers record
each order's command exactly once: the fault neither loses work nor does it twice.

With ``ORCHESTRATOR_TEST_RABBITMQ=require`` an unreachable broker fails the tests instead of
skipping them. The broker test restarts the RabbitMQ application in a ``finally`` (and
checks again at the end of the test), so a failing test never leaves RabbitMQ stopped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    RABBITMQ_URL,
    assert_flow_histories,
    assert_once_per_order,
    delete_flow_queues,
    eventually,
    http_client,
    ledger_path,
    list_orders,
    metric,
    send,
    spawn_service,
    wait_all_in_state,
)

FLOW_QUEUES = ("kitchen", "delivery", "orchestrator")
ORDERS = 50
SERVICE_DELAY = "0.05"  # seconds per command in the stubs: work is in flight at the fault
# Seconds between requests of the stream. Slow enough around a broker restart that
# confirms keep arriving while RabbitMQ is down; flat out around a process kill, so that
# the victim holds several commands or requests at that moment.
SLOW_PACE = 0.03
FAST_PACE = 0.0
FAULT_AFTER = 15  # orders confirmed before the fault hits
# Concurrent lanes of create-and-confirm in the orchestrator test: at the kill, several
# requests are in flight and some committed turns have not been published yet.
LANES = 5
FLOW_DEADLINE = 60.0  # for every order to reach done after the stream
SETTLE_DEADLINE = 30.0  # for the outbox and the flow queues to empty afterwards
RETRY_DEADLINE = 45.0  # for a request to get through while the orchestrator restarts
BROKER_DOWN = 2.0  # seconds between stop_app and start_app
BROKER_UP_DEADLINE = 60.0
RABBITMQCTL_TIMEOUT = 60.0
LOG_TAIL = 40  # lines of each log shown with a failure


# --- RabbitMQ ------------------------------------------------------------------------------


def require_tool(name: str) -> str:
    """The path of a RabbitMQ command-line tool; fail or skip as for an unreachable broker."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("ORCHESTRATOR_TEST_RABBITMQ") == "require":
            pytest.fail(f"RabbitMQ is required but {name} is not on PATH")
        pytest.skip(f"{name} is not on PATH")
    return found


def rabbitmq_tool(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``rabbitmqctl`` or ``rabbitmq-diagnostics``, bounded; never raises on failure."""
    try:
        return subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, -1, "", f"timed out: {exc}")


def rabbitmq_answers() -> bool:
    """The node answers (ping), its application runs, and it accepts AMQP connections.

    ``ping`` alone is not enough: it succeeds while the application is stopped.
    """
    if rabbitmq_tool("rabbitmq-diagnostics", "-q", "ping").returncode != 0:
        return False
    if rabbitmq_tool("rabbitmq-diagnostics", "-q", "check_running").returncode != 0:
        return False

    async def amqp() -> bool:
        try:
            connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
        except Exception:
            return False
        await connection.close()
        return True

    return asyncio.run(amqp())


def ensure_rabbitmq_running() -> None:
    """Start the RabbitMQ application (a no-op when it runs) and wait until it answers."""
    started = rabbitmq_tool("rabbitmqctl", "start_app")
    deadline = time.monotonic() + BROKER_UP_DEADLINE
    while not rabbitmq_answers():
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"RabbitMQ not back {BROKER_UP_DEADLINE}s after start_app "
                f"(rc={started.returncode}): {started.stdout}{started.stderr}"
            )
        time.sleep(0.2)


def queue_depths() -> dict[str, int]:
    """Messages (ready and unacknowledged) in each queue, by name."""
    listed = rabbitmq_tool(
        "rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "messages"
    )
    depths: dict[str, int] = {}
    for line in listed.stdout.splitlines():
        name, _, count = line.rpartition("\t")
        if name and count.strip().isdigit():
            depths[name] = int(count)
    return depths


# --- the stub services as processes ---------------------------------------------------------


class ServiceProcess:
    """One stub service process (kitchen or delivery); ``start`` again reuses its ledger."""

    def __init__(self, name: str, db: Path) -> None:
        self.name = name
        self.db = db
        self.ledger = ledger_path(db, name)
        self.log_path = db.with_name(f"{name}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.proc = spawn_service(
            self.db, self.name, "--delay", SERVICE_DELAY, "--log-level", "info"
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code, or None when it had already exited."""
        if self.proc is None:
            return None
        if not self.alive():
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass(frozen=True, slots=True)
class Services:
    db: Path
    kitchen: ServiceProcess
    delivery: ServiceProcess


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Kitchen and delivery processes whose ledgers sit beside ``orders.db`` in tmp_path."""
    require_tool("rabbitmqctl")
    require_tool("rabbitmq-diagnostics")
    db = tmp_path / "orders.db"
    asyncio.run(delete_flow_queues())
    running = Services(
        db, ServiceProcess("kitchen", db).start(), ServiceProcess("delivery", db).start()
    )
    yield running
    codes = {service.name: service.stop() for service in (running.kitchen, running.delivery)}
    assert all(code == 0 for code in codes.values()), f"services did not exit cleanly: {codes}"


# --- the stream, the outcome and what a failure shows ---------------------------------------


def tail(text: str, lines: int = LOG_TAIL) -> str:
    """The last lines of a log, without the stubs' one-line-per-command chatter."""
    kept = [line for line in text.splitlines() if " carried out " not in line]
    chatter = len(text.splitlines()) - len(kept)
    return "\n".join([f"({chatter} 'carried out' lines left out)", *kept[-lines:]])


def diagnostics(server: ServerProcess, services: Services) -> str:
    parts = [f"queue depths: {queue_depths()}"]
    parts.append(f"--- orchestrator log (alive={server.alive()}) ---\n{tail(server.log())}")
    for service in (services.kitchen, services.delivery):
        parts.append(f"--- {service.name} log (alive={service.alive()}) ---\n{tail(service.log())}")
    return "\n".join(parts)


async def confirm_stream(
    http: httpx.AsyncClient, order_ids: list[str], fault_point: asyncio.Event, *, pace: float
) -> None:
    """Confirm each order in turn, paced; set ``fault_point`` after FAULT_AFTER of them."""
    for count, order_id in enumerate(order_ids, start=1):
        reply = await send(http, order_id, CONFIRM, key=str(uuid.uuid4()))
        assert reply.status_code == 200, (order_id, reply.status_code, reply.text)
        if count == FAULT_AFTER:
            fault_point.set()
        await asyncio.sleep(pace)


async def run_with_fault(
    stream: Awaitable[None],
    fault: Callable[[], Coroutine[Any, Any, None]],
    explain: Callable[[], str],
) -> None:
    """Run the stream and the fault together; both must finish, the first error wins and
    comes with ``explain()`` (the logs and queues) when it is a failed check or request."""
    fault_task = asyncio.create_task(fault())
    try:
        try:
            await stream
        except BaseException:
            fault_task.cancel()
            await asyncio.gather(fault_task, return_exceptions=True)
            raise
        await fault_task
    except (AssertionError, httpx.HTTPError) as exc:
        raise AssertionError(f"{exc!r}\n{explain()}") from exc


async def wait_settled(http: httpx.AsyncClient) -> None:
    """Nothing left to publish or consume, so the ledgers are final."""

    async def settled() -> bool:
        if await metric(http, "orchestrator_outbox_depth") != 0:
            return False
        depths = await asyncio.to_thread(queue_depths)
        return all(depths.get(name, 0) == 0 for name in FLOW_QUEUES)

    await eventually(
        settled, within=SETTLE_DEADLINE, what="an empty outbox and flow queues", interval=0.2
    )


async def assert_flow_outcome(
    http: httpx.AsyncClient, server: ServerProcess, services: Services, order_ids: list[str]
) -> None:
    """All done in time, one READY and one DELIVERED each, each command carried out once."""
    try:
        await wait_all_in_state(http, order_ids, DONE, within=FLOW_DEADLINE)
        await assert_flow_histories(http, order_ids)
        await wait_settled(http)
        assert_once_per_order(services.db, order_ids)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnostics(server, services)}") from None


async def create_orders(http: httpx.AsyncClient, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = await http.post("/orders", json={"pizza": HAWAII})
        assert response.status_code == 201, response.text
        ids.append(str(response.json()["id"]))
    return ids


async def post_retrying(
    http: httpx.AsyncClient, path: str, body: dict[str, object], key: str
) -> httpx.Response:
    """POST with an Idempotency-Key, again with the same key while the server is away."""
    deadline = time.monotonic() + RETRY_DEADLINE
    while True:
        try:
            response = await http.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            failure = repr(exc)
        else:
            if response.status_code != 503:
                return response
            failure = f"503 {response.text}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"POST {path} (key {key}) failed for {RETRY_DEADLINE}s: {failure}")
        await asyncio.sleep(0.1)


# --- the tests ------------------------------------------------------------------------------


async def test_broker_restart_mid_stream(services: Services, server_factory: ServerFactory) -> None:
    """Fault: the RabbitMQ application stops in the middle of the confirm stream
    (``rabbitmqctl stop_app``) and starts again two seconds later.

    Proves that the orchestrator keeps accepting commands while the broker is away, that
    its outbox holds the unpublished MAKE_PIZZA/DELIVER_PIZZA until the broker is back, that
    all three processes reconnect and resume consuming, and that the messages in flight at
    the stop (unacked deliveries, unconfirmed publishes) are neither lost nor applied or
    carried out twice: every order reaches done with one PIZZA_READY and one
    PIZZA_DELIVERED, and each command is in its service's ledger once.
    """
    server = server_factory("--broker", RABBITMQ_URL, db=services.db)
    try:
        async with http_client(server.url) as http:
            order_ids = await create_orders(http, ORDERS)
            fault_point = asyncio.Event()

            async def restart_broker() -> None:
                await fault_point.wait()
                try:
                    stopped = await asyncio.to_thread(rabbitmq_tool, "rabbitmqctl", "stop_app")
                    assert stopped.returncode == 0, f"stop_app: {stopped.stdout}{stopped.stderr}"
                    await asyncio.sleep(BROKER_DOWN)
                finally:
                    await asyncio.to_thread(ensure_rabbitmq_running)

            stream = confirm_stream(http, order_ids, fault_point, pace=SLOW_PACE)
            await run_with_fault(stream, restart_broker, lambda: diagnostics(server, services))
            await assert_flow_outcome(http, server, services, order_ids)
            assert services.kitchen.alive() and services.delivery.alive(), diagnostics(
                server, services
            )
    finally:
        await asyncio.to_thread(ensure_rabbitmq_running)


async def test_kitchen_killed_mid_stream(services: Services, server_factory: ServerFactory) -> None:
    """Fault: the kitchen process is SIGKILLed in the middle of the confirm stream, with
    MAKE_PIZZA commands in hand, and a new kitchen starts on the same ledger.

    Proves that the commands the dead kitchen held unacked go back to its queue and reach
    the new kitchen, that a command it had carried out but not yet answered is answered
    again from the ledger, and that the orchestrator dedupes any repeated PIZZA_READY:
    every order reaches done with one PIZZA_READY and one PIZZA_DELIVERED, and each order
    has exactly one MAKE_PIZZA in the kitchen's ledger (one command per order, carried out
    and answered).
    """
    server = server_factory("--broker", RABBITMQ_URL, db=services.db)
    async with http_client(server.url) as http:
        order_ids = await create_orders(http, ORDERS)
        fault_point = asyncio.Event()

        async def kill_kitchen() -> None:
            await fault_point.wait()
            await asyncio.to_thread(services.kitchen.kill)
            await asyncio.sleep(0.5)
            services.kitchen.start()

        stream = confirm_stream(http, order_ids, fault_point, pace=FAST_PACE)
        await run_with_fault(stream, kill_kitchen, lambda: diagnostics(server, services))
        await assert_flow_outcome(http, server, services, order_ids)


async def test_orchestrator_killed_mid_stream(
    services: Services, server_factory: ServerFactory
) -> None:
    """Fault: the orchestrator is SIGKILLed in the middle of a stream of creates and
    confirms (five lanes at once), and restarted on the same database; requests that fail
    meanwhile are retried with the same Idempotency-Key until they get an answer.

    Proves rule 8 of the actor contract on RabbitMQ: every acknowledged create and confirm
    survives, a retried request is answered once (no second order from a retried create),
    outbox rows unsent at the kill are published after the restart and deduped by the
    services' ledgers, and PIZZA_READY/PIZZA_DELIVERED left unacked in the orchestrator's
    queue are redelivered and applied once: every order reaches done with one PIZZA_READY
    and one PIZZA_DELIVERED, and each command is in its service's ledger once.
    """
    server = server_factory("--broker", RABBITMQ_URL, db=services.db)
    async with http_client(server.url) as http:
        order_ids: list[str] = []
        fault_point = asyncio.Event()

        async def lane(first: int) -> None:
            for _ in range(first, ORDERS, LANES):
                created = await post_retrying(http, "/orders", {"pizza": HAWAII}, str(uuid.uuid4()))
                assert created.status_code == 201, created.text
                order_id = str(created.json()["id"])
                order_ids.append(order_id)
                path = f"/orders/{order_id}/events"
                confirmed = await post_retrying(http, path, CONFIRM, str(uuid.uuid4()))
                assert confirmed.status_code == 200, (order_id, confirmed.text)
                if len(order_ids) >= FAULT_AFTER:
                    fault_point.set()
                await asyncio.sleep(FAST_PACE)

        async def stream() -> None:
            try:
                async with asyncio.TaskGroup() as lanes:
                    for first in range(LANES):
                        lanes.create_task(lane(first))
            except ExceptionGroup as group:
                raise group.exceptions[0] from group

        async def kill_orchestrator() -> None:
            await fault_point.wait()
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.restart)

        await run_with_fault(stream(), kill_orchestrator, lambda: diagnostics(server, services))
        assert len(set(order_ids)) == ORDERS, (
            f"a retried create answered another order: {order_ids}"
        )
        await assert_flow_outcome(http, server, services, order_ids)
        listed = await list_orders(http, limit="500")
        stored = {str(order["id"]) for order in listed["orders"]}
        assert stored == set(order_ids), f"orders nobody got a 201 for: {stored - set(order_ids)}"
