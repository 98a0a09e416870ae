"""The deployment the saga tests run on: the server with its kitchen and delivery, on
either broker (``memory``, or ``rabbitmq`` with the services as their own processes)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    RABBITMQ_URL,
    WEBHOOK_SECRET,
    delete_flow_queues,
    ledger_path,
    spawn_service,
)


@dataclass
class Deployment:
    """The orchestrator with its kitchen and delivery, on one broker."""

    broker: str
    db: Path
    server_factory: ServerFactory
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
        self.server = self.server_factory(*args, db=self.db)
        return self.server

    def stop(self) -> None:
        for proc in self.services:
            proc.send_signal(signal.SIGTERM)
        for proc in self.services:
            proc.wait(timeout=30)


@pytest.fixture(params=["memory", "rabbitmq"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, server_factory: ServerFactory
) -> Iterator[Deployment]:
    deployed = Deployment(request.param, tmp_path / "orders.db", server_factory)
    yield deployed
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


def pending_timers(db: Path) -> list[str]:
    conn = sqlite3.connect(db, timeout=10.0)
    try:
        return [str(row[0]) for row in conn.execute("SELECT id FROM timers")]
    finally:
        conn.close()
