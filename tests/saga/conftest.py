"""The deployment the saga tests run on: the server with its kitchen and delivery, on
either broker (``memory``, or ``rabbitmq`` with the services as their own processes), with
the orders in SQLite; and ``memory+postgres``, the in-process broker with the orders in a
fresh PostgreSQL database (``--store``), so the timers, retries and compensations run on
both stores. Tests read the stored orders through ``Deployment.stored_rows``, whichever
store holds them."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    RABBITMQ_URL,
    WEBHOOK_SECRET,
    delete_flow_queues,
    ledger_path,
    spawn_service,
)
from tests.postgres import fresh_database


@dataclass
class Deployment:
    """The orchestrator with its kitchen and delivery, on one broker, with the orders in
    the SQLite file ``db`` or, given ``store``, in that PostgreSQL database (the broker and
    the services' ledgers stay beside ``db`` either way)."""

    broker: str
    db: Path
    server_factory: ServerFactory
    store: str | None = None
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    server: ServerProcess | None = None

    async def start(
        self, *options: str, kitchen: str = "ok", delivery: str = "ok"
    ) -> ServerProcess:
        """Start the services in the given modes, then the server with chart options."""
        args = [arg for option in options for arg in ("--chart-option", option)]
        # Services may answer over the signed webhook too (PIZZA_READY, payment callbacks).
        args += ["--webhook-secret", WEBHOOK_SECRET]
        if self.broker == "memory":
            args += ["--kitchen-mode", kitchen, "--delivery-mode", delivery]
        else:
            await delete_flow_queues()
            for name, mode in (("kitchen", kitchen), ("delivery", delivery)):
                self.services.append(
                    spawn_service(self.db, name, "--mode", mode, "--log-level", "warning")
                )
            args += ["--broker", RABBITMQ_URL]
        if self.store is not None:
            args += ["--store", self.store]
        self.server = self.server_factory(*args, db=self.db)
        return self.server

    async def stored_rows(self, query: str, *args: object) -> list[tuple[object, ...]]:
        """The rows ``query`` selects from the stored orders, in whichever store holds
        them; parameters are written ``$1``, ``$2``..., as PostgreSQL takes them (SQLite
        reads them as ``?1``, ``?2``...)."""
        if self.store is None:
            conn = sqlite3.connect(self.db, timeout=10.0)
            try:
                return conn.execute(re.sub(r"\$(\d+)", r"?\1", query), args).fetchall()
            finally:
                conn.close()
        pg = await asyncpg.connect(self.store, timeout=10)
        try:
            return [tuple(row) for row in await pg.fetch(query, *args)]
        finally:
            await pg.close()

    def stop(self) -> None:
        for proc in self.services:
            proc.send_signal(signal.SIGTERM)
        for proc in self.services:
            proc.wait(timeout=30)


@pytest.fixture(params=["memory", "rabbitmq", "memory+postgres"])
async def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, server_factory: ServerFactory
) -> AsyncIterator[Deployment]:
    """``BROKER`` with the orders in SQLite, or ``BROKER+postgres`` in a fresh database."""
    broker, _, store = str(request.param).partition("+")
    async with fresh_database() if store == "postgres" else nullcontext(None) as url:
        deployed = Deployment(broker, tmp_path / "orders.db", server_factory, url)
        yield deployed
        # Before the database is dropped: the server holds connections to it.
        if deployed.server is not None:
            deployed.server.stop()
        deployed.stop()


def ledger(db: Path, service: str, command: str) -> dict[str, tuple[int, int]]:
    """order id -> (times carried out, messages received) of ``command`` in the ledger."""
    path = ledger_path(db, service)
    if not path.exists():
        return {}
    conn = sqlite3.connect(path, timeout=10.0)
    try:
        rows = conn.execute(
            "SELECT order_id, times, received FROM handled WHERE type = ?", (command,)
        ).fetchall()
    finally:
        conn.close()
    return {str(order): (int(times), int(received)) for order, times, received in rows}


async def pending_timers(deployment: Deployment) -> list[str]:
    """The ids of the timers still stored, due or not."""
    return [str(row[0]) for row in await deployment.stored_rows("SELECT id FROM timers")]
