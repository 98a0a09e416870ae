"""An invoke whose command a service dead-letters ends in the chart's error state.

docs/design.md: an invoke errors when its message cannot be delivered, or is dead-lettered by the
service. Here the in-process kitchen or delivery runs in ``reject`` mode, so every command
it receives is dead-lettered; the orchestrator hears it back and applies
``error.invoke.<id>``, and the dead letter stays in the dead-letter queue with its reason.
"""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.helpers import wait_for_state


@pytest.mark.parametrize(
    ("flag", "state", "status", "invoke", "command"),
    [
        (
            "--kitchen-mode",
            "bakePizza.errorInKitchen",
            "Ooops! Something got burned... Send RETRY or CANCEL.",
            "sendOrderToKitchen",
            "command.MAKE_PIZZA",
        ),
        (
            "--delivery-mode",
            "deliverPizza.errorInDelivery",
            "Ooops! The delivery got lost... Send RETRY.",
            "sendOrderToDelivery",
            "command.DELIVER_PIZZA",
        ),
    ],
)
async def test_a_dead_lettered_command_moves_the_order_to_its_error_state(
    server_factory: ServerFactory, flag: str, state: str, status: str, invoke: str, command: str
) -> None:
    server = server_factory(flag, "reject", "--chart-option", "pizza.maxRetries=0")
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        created = (await client.post("/orders", json={"pizza": {"name": "hawaii"}})).json()
        confirmed = await client.post(
            f"/orders/{created['id']}/events", json={"type": "CONFIRM_PIZZA"}
        )
        assert confirmed.status_code == 200
        view = await wait_for_state(client, created["id"], state)
        assert view["status"] == status
        history = (await client.get(f"/orders/{created['id']}/history")).json()["entries"]
    errors = [e for e in history if e["type"] == f"error.invoke.{invoke}"]
    assert len(errors) == 1
    assert "refuses" in errors[0]["data"]["reason"]
    broker = sqlite3.connect(server.db.with_name(f"{server.db.stem}.broker.db"))
    try:
        letters = broker.execute(
            "SELECT routing_key, headers FROM messages WHERE queue = 'dead-letters'"
        ).fetchall()
    finally:
        broker.close()
    assert [key for key, _ in letters] == [command]
    assert "x-reason" in letters[0][1]
