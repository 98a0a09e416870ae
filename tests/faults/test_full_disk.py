"""Fault injection: a full disk under a real server while orders flow (issue 23).

The server is a real ``orchestrator serve`` subprocess. Its files sit on small tmpfs disks
(tests/disk.py: root mounts them, and a test that cannot fails saying so): its database
path is a symlink onto one disk, the broker's file and the ledgers beside it are symlinks
onto another (SQLite follows them and keeps each WAL beside its real file), so a test can
fill either disk, or both, while the server's log stays on a disk that never fills. Filling
is a real ENOSPC, and SQLite answers SQLITE_FULL, "database or disk is full", as on a disk
that ran out.

Every wait is bounded, and fails naming what it waited for; the kitchen's own timeout is
600 s, so an order whose work was dropped would wait far beyond the bounds here.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.disk import SmallDisk
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    RABBITMQ_URL,
    JsonObject,
    create_order,
    delete_flow_queues,
    history,
    http_client,
    metric,
    rows_per_order,
    send,
    spawn_service,
    view,
    wait_all_in_state,
    wait_for_state,
)

CANCEL: JsonObject = {"type": "CANCEL"}
ORDERS_DISK_MIB = 16
OTHERS_DISK_MIB = 16
# Longer than the ~9 s in which ten failed deliveries dead-lettered an event, and than the
# ~11 s after which the relay gave a message the broker could not store up for refused.
OUTAGE = 14.0
# After the disk has room again: the longest pause between two tries is 5 s, and the rest
# of an order's flow takes well under a second; generous, to detect a hang, not to time.
RECOVERY = 45.0


def lay_out(srv: Path, orders: SmallDisk | None, others: SmallDisk | None) -> Path:
    """The database path in ``srv``, with the database on ``orders`` and the broker's file
    and the ledgers on ``others`` (each left in ``srv`` when its disk is None)."""
    srv.mkdir(parents=True, exist_ok=True)
    db = srv / "orders.db"
    if orders is not None:
        db.symlink_to(orders.path / db.name)
    if others is not None:
        for role in ("broker", "kitchen", "delivery"):
            name = f"{db.stem}.{role}.db"
            (srv / name).symlink_to(others.path / name)
    return db


async def dead_letters(http: httpx.AsyncClient, queue: str) -> float:
    """Messages this server's consumers dead-lettered from ``queue``."""
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    sample = f'orchestrator_dead_letters_total{{queue="{queue}"}}'
    return sum(
        float(line.rpartition(" ")[2])
        for line in response.text.splitlines()
        if line.rpartition(" ")[0] == sample
    )


async def keyed(
    http: httpx.AsyncClient, order_id: str, event: JsonObject, key: str
) -> httpx.Response:
    return await send(http, order_id, event, key=key)


async def test_a_full_disk_loses_no_work_and_skips_no_compensation(
    tmp_path: Path,
    server_factory: ServerFactory,
    small_disks: Callable[[str, int], SmallDisk],
) -> None:
    """Embedded mode, orders flowing, with first the broker's and the ledgers' disk full
    for OUTAGE seconds (issue 23, item 1), then the orders database's (item 2).

    While the broker cannot store: confirmations and cancellations are answered (the orders
    database has room), the relay keeps publishing their commands (the lag grows) instead
    of ending their invokes in error after ~11 s, which had cancelled orders "but the
    kitchen could not be told" while the kitchen baked; the kitchen's MAKE_PIZZA deliveries
    whose ledger cannot be written come back instead of being dead-lettered, and dropped
    for want of room for the dead letter. While the orders database cannot store, the
    kitchen's answers come back until they apply, instead of being dead-lettered after 10
    deliveries. Afterwards: every acknowledged command is in its order's history, every
    confirmed order is done and every cancelled one cancelled with its CANCEL_PIZZA carried
    out, no invoke ended in error, no command was dead-lettered, no pizza baked twice, and
    the log names "database or disk is full" and never "cannot rollback"."""
    orders_disk = small_disks("orders", ORDERS_DISK_MIB)
    others_disk = small_disks("others", OTHERS_DISK_MIB)
    db = lay_out(tmp_path / "srv", orders_disk, others_disk)
    server = server_factory("--kitchen-delay", "0.5", db=db)
    acknowledged: list[tuple[str, str]] = []  # (order id, Idempotency-Key) answered 2xx
    cancelled: set[str] = set()

    async def command(order_id: str, event: JsonObject, key: str) -> httpx.Response:
        response = await keyed(http, order_id, event, key)
        if response.is_success:
            acknowledged.append((order_id, key))
        return response

    async with http_client(server.url) as http:
        early = [(await create_order(http, HAWAII))["id"] for _ in range(10)]
        late = [(await create_order(http, HAWAII))["id"] for _ in range(10)]
        spare = [(await create_order(http, HAWAII))["id"] for _ in range(5)]
        for order_id in early:
            assert (await command(order_id, CONFIRM, f"confirm-{order_id}")).status_code == 200

        # 1. The broker's file and the ledgers cannot grow.
        others_disk.fill()
        began = time.monotonic()
        for order_id in late:
            assert (await command(order_id, CONFIRM, f"confirm-{order_id}")).status_code == 200
        for order_id in [*early[:3], *late[:3]]:
            response = await command(order_id, CANCEL, f"cancel-{order_id}")
            assert response.status_code == 200, response.text
            cancelled.add(order_id)
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - began)))
        assert await metric(http, "orchestrator_outbox_depth") > 0
        assert await metric(http, "orchestrator_outbox_lag_seconds") >= OUTAGE / 2

        # 2. The orders database cannot grow; the broker and the ledgers can again.
        orders_disk.fill()
        others_disk.free()
        began = time.monotonic()
        refused = 0
        for n, order_id in enumerate(spare):
            response = await command(
                order_id, {"type": "ADD_PIZZA", "data": {"pizza": HAWAII}}, f"add-{n}"
            )
            refused += response.status_code == 503
        assert refused, "the orders database took writes on a full disk: no fault injected"
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - began)))

        # 3. Room again everywhere.
        orders_disk.free()
        confirmed = [order_id for order_id in [*early, *late] if order_id not in cancelled]
        await wait_all_in_state(http, confirmed, DONE, within=RECOVERY)
        await wait_all_in_state(http, cancelled, "cancelled", within=RECOVERY)

        for order_id, key in acknowledged:
            assert key in {entry["eventId"] for entry in await history(http, order_id)}, key
        for order_id in [*early, *late]:
            types = {entry["type"] for entry in await history(http, order_id)}
            assert not {t for t in types if t.startswith("error.invoke.")}, (order_id, types)
        for order_id in cancelled:
            assert "could not be told" not in (await view(http, order_id))["status"]
        # No command was dead-lettered; a PIZZA_READY for an order cancelled meanwhile is,
        # by design (the kitchen baked before it heard the cancellation, then threw it away).
        assert await dead_letters(http, "kitchen") == await dead_letters(http, "delivery") == 0
        assert await dead_letters(http, "orchestrator") <= len(cancelled)

    cancels = rows_per_order(db, "kitchen", "CANCEL_PIZZA")
    assert {order_id: cancels.get(order_id, 0) for order_id in cancelled} == dict.fromkeys(
        cancelled, 1
    ), "a cancelled order's compensation was skipped"
    baked = rows_per_order(db, "kitchen", "MAKE_PIZZA")
    assert all(times == 1 for times in baked.values()), baked
    assert all(baked.get(order_id) == 1 for order_id in confirmed), baked
    delivered = rows_per_order(db, "delivery", "DELIVER_PIZZA")
    assert all(delivered.get(order_id) == 1 for order_id in confirmed), delivered
    log = server.log()
    assert "database or disk is full" in log
    assert "cannot rollback" not in log


class Services:
    """The kitchen (slow, so its answers arrive during the outage) and the delivery as
    their own processes on RabbitMQ; in embedded mode, the server's flags for the same."""

    def __init__(self, broker: str, db: Path) -> None:
        self.broker = broker
        self.db = db
        self.procs: list[subprocess.Popen[bytes]] = []

    async def start(self, kitchen_delay: float) -> list[str]:
        if self.broker == "memory":
            return ["--kitchen-delay", str(kitchen_delay)]
        await delete_flow_queues()
        self.procs.append(
            spawn_service(
                self.db, "kitchen", "--delay", str(kitchen_delay), "--log-level", "warning"
            )
        )
        self.procs.append(spawn_service(self.db, "delivery", "--log-level", "warning"))
        return ["--broker", RABBITMQ_URL]

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=30)


@pytest.fixture(params=["memory", "rabbitmq"])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    deployed = Services(request.param, tmp_path / "srv" / "orders.db")
    yield deployed
    deployed.stop()


async def test_events_during_an_orders_database_outage_apply_after_it(
    tmp_path: Path,
    server_factory: ServerFactory,
    small_disks: Callable[[str, int], SmallDisk],
    services: Services,
) -> None:
    """Only the orders database's disk is full, for OUTAGE seconds, while the kitchen's
    PIZZA_READY answers arrive (issue 23, item 2), on both brokers. Each delivery's turn
    fails with StoreUnavailable, so the inbox answers Retry: the event comes back with
    growing pauses, uncounted, and applies once the disk has room, where it was
    dead-lettered after 10 deliveries in about 9 s and its order left waiting for the
    kitchen's timeout (600 s)."""
    orders_disk = small_disks("orders", ORDERS_DISK_MIB)
    db = lay_out(tmp_path / "srv", orders_disk, None)
    args = await services.start(kitchen_delay=3.0)
    server: ServerProcess = server_factory(*args, db=db)
    async with http_client(server.url) as http:
        ids = [(await create_order(http, HAWAII))["id"] for _ in range(3)]
        for order_id in ids:
            assert (await send(http, order_id, CONFIRM)).status_code == 200
        for order_id in ids:
            await wait_for_state(http, order_id, "bakePizza.waitingForPizzaToBeBaked", within=10.0)
        orders_disk.fill()  # the kitchen answers in about 3 s, during the outage
        await asyncio.sleep(OUTAGE)
        assert [(await view(http, order_id))["state"] for order_id in ids] == [
            "bakePizza.waitingForPizzaToBeBaked"
        ] * 3, "the answers applied on a full disk: no fault injected"
        orders_disk.free()
        await wait_all_in_state(http, ids, DONE, within=RECOVERY)
        for order_id in ids:
            types = [entry["type"] for entry in await history(http, order_id)]
            assert types.count("PIZZA_READY") == 1, (order_id, types)
        assert await dead_letters(http, "orchestrator") == 0
    assert "database or disk is full" in server.log()
