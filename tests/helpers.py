"""Helpers shared by the tests that drive a real server (edge, contract and crash tests).

It holds the common pizzas, events and states; HTTP helpers to create an order, send it an
event, read its view, history and the order list, and read /metrics; bounded waits for a
state or any condition; and readers of the stub services' ledgers and the broker's queues
beside the database, with the assertions built on them.

Every wait here is bounded by a deadline and fails with what it was waiting for, so a
stuck product gives a readable failure instead of a hung test.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import aio_pika
import httpx
import pytest

from orchestrator.signatures import parse_keys, sign

JsonObject = dict[str, Any]

HAWAII: JsonObject = {"name": "hawaii", "size": "L"}
MARGHERITA: JsonObject = {"name": "margherita", "size": "M"}

WAITING_FOR_KITCHEN = "bakePizza.waitingForPizzaToBeBaked"
DONE = "done"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
# For a test's own polling loop: at most this many polls, 20 ms apart.
POLLS = 500


def http_client(url: str | httpx.URL, *, connections: int = 300) -> httpx.AsyncClient:
    """A client with enough connections that concurrent requests really are concurrent."""
    return httpx.AsyncClient(
        base_url=url,
        timeout=30.0,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def add(pizza: object) -> JsonObject:
    """An ADD_PIZZA event; ``pizza`` may be anything, to build bad events too."""
    return {"type": "ADD_PIZZA", "data": {"pizza": pizza}}


def remove(pizza: object) -> JsonObject:
    """A REMOVE_PIZZA event; ``pizza`` may be anything, to build bad events too."""
    return {"type": "REMOVE_PIZZA", "data": {"pizza": pizza}}


CONFIRM: JsonObject = {"type": "CONFIRM_PIZZA"}


async def create_order(
    http: httpx.AsyncClient, pizza: JsonObject = HAWAII, *, key: str | None = None
) -> JsonObject:
    """POST /orders (with ``key`` as Idempotency-Key if given); asserts 201, returns the view."""
    headers = {"Idempotency-Key": key} if key is not None else None
    response = await http.post("/orders", json={"pizza": pizza}, headers=headers)
    assert response.status_code == 201, response.text
    body: JsonObject = response.json()
    return body


async def send(
    http: httpx.AsyncClient,
    order_id: str,
    event: JsonObject,
    *,
    key: str | None = None,
    if_match: str | None = None,
) -> httpx.Response:
    """POST an event to the order, with optional Idempotency-Key and If-Match; the raw
    response, whatever its status."""
    headers: dict[str, str] = {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if if_match is not None:
        headers["If-Match"] = if_match
    return await http.post(f"/orders/{order_id}/events", json=event, headers=headers or None)


async def send_ok(http: httpx.AsyncClient, order_id: str, event: JsonObject) -> JsonObject:
    """POST an event to the order; asserts 200 and returns the new view."""
    response = await send(http, order_id, event)
    assert response.status_code == 200, response.text
    body: JsonObject = response.json()
    return body


# A Standard Webhooks secret for servers started with --webhook-secret WEBHOOK_SECRET.
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwKZmtKXX6Cxw="


def signed_headers(
    body: bytes, event_id: str, *, secret: str = WEBHOOK_SECRET, at: float | None = None
) -> dict[str, str]:
    """The headers of a structured CloudEvent ``body`` signed with ``secret`` (its first
    key), as a service sends it to POST /events."""
    timestamp = str(int(time.time() if at is None else at))
    return {
        "content-type": "application/cloudevents+json",
        "webhook-id": event_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(parse_keys(secret)[0], event_id, timestamp, body),
    }


def cloudevent(
    order_id: str, event_type: str, data: JsonObject | None = None, *, event_id: str = ""
) -> tuple[bytes, str]:
    """A structured CloudEvent for the order, and its id (a new one unless given)."""
    event_id = event_id or f"{event_type}-{time.time_ns()}"
    body = {
        "specversion": "1.0",
        "id": event_id,
        "type": event_type,
        "source": "/tests",
        "subject": order_id,
        "datacontenttype": "application/json",
        "data": data or {},
    }
    return json.dumps(body).encode(), event_id


async def send_service_event(
    http: httpx.AsyncClient,
    order_id: str,
    event_type: str,
    data: JsonObject | None = None,
    *,
    event_id: str = "",
) -> httpx.Response:
    """Send an event as a service does, over the signed webhook: the server must run with
    ``--webhook-secret WEBHOOK_SECRET``. Service events (PIZZA_READY...) are refused over
    ``POST /orders/{id}/events``."""
    body, event_id = cloudevent(order_id, event_type, data, event_id=event_id)
    return await http.post("/events", content=body, headers=signed_headers(body, event_id))


async def view(http: httpx.AsyncClient, order_id: str) -> JsonObject:
    """GET /orders/{id}; asserts 200 and returns the order view."""
    response = await http.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    body: JsonObject = response.json()
    return body


async def history(http: httpx.AsyncClient, order_id: str) -> list[JsonObject]:
    """GET /orders/{id}/history; asserts 200 and returns the entries, oldest first."""
    response = await http.get(f"/orders/{order_id}/history")
    assert response.status_code == 200, response.text
    entries: list[JsonObject] = response.json()["entries"]
    return entries


async def checked_history(http: httpx.AsyncClient, order_id: str) -> list[JsonObject]:
    """Like ``history``, and also asserts that the body's ``id`` is the order asked for."""
    response = await http.get(f"/orders/{order_id}/history")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == order_id
    entries: list[JsonObject] = body["entries"]
    return entries


async def list_orders(http: httpx.AsyncClient, **params: str) -> JsonObject:
    """GET /orders with the given query parameters; asserts 200 and returns the page."""
    response = await http.get("/orders", params=params)
    assert response.status_code == 200, response.text
    body: JsonObject = response.json()
    return body


def types_of(entries: Iterable[JsonObject]) -> Counter[str]:
    return Counter(str(entry["type"]) for entry in entries)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_for_state(
    http: httpx.AsyncClient, order_id: str, state: str, *, within: float = 30.0
) -> JsonObject:
    last: JsonObject = {}

    async def reached() -> bool:
        nonlocal last
        last = await view(http, order_id)
        return bool(last["state"] == state)

    try:
        await eventually(reached, within=within, what=f"order {order_id} in {state}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last view: {last}") from None
    return last


async def states_of(http: httpx.AsyncClient, order_ids: Iterable[str]) -> dict[str, str]:
    """The current state of every listed order, read through the paginated list."""
    wanted = set(order_ids)
    states: dict[str, str] = {}
    cursor: str | None = None
    for _ in range(1000):
        params = {"limit": "500"} if cursor is None else {"limit": "500", "cursor": cursor}
        response = await http.get("/orders", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        for order in page["orders"]:
            if order["id"] in wanted:
                states[order["id"]] = order["state"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    return states


async def wait_all_in_state(
    http: httpx.AsyncClient, order_ids: Iterable[str], state: str, *, within: float
) -> None:
    ids = set(order_ids)
    lagging: dict[str, str] = {}

    async def all_there() -> bool:
        nonlocal lagging
        states = await states_of(http, ids)
        lagging = {i: states.get(i, "<missing>") for i in ids if states.get(i) != state}
        return not lagging

    try:
        await eventually(all_there, within=within, what=f"{len(ids)} orders in {state}")
    except AssertionError as exc:
        sample = dict(list(lagging.items())[:10])
        raise AssertionError(f"{exc}; {len(lagging)} not there, e.g. {sample}") from None


async def metric(http: httpx.AsyncClient, name: str) -> float:
    """One unlabelled sample from /metrics, e.g. ``orchestrator_live_actors``."""
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    raise AssertionError(f"metric {name} not found in /metrics:\n{response.text}")


def ledger_path(db: Path, service: str) -> Path:
    """The stub service's ledger beside the orders database (orders.kitchen.db)."""
    return db.with_name(f"{db.stem}.{service}.db")


def ledger_rows(db: Path, service: str) -> list[tuple[str, str, str]]:
    """(message_id, order_id, type) of every command the service carried out."""
    path = ledger_path(db, service)
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=10.0)
    try:
        rows = conn.execute("SELECT message_id, order_id, type FROM handled").fetchall()
    finally:
        conn.close()
    return [(str(m), str(o), str(t)) for m, o, t in rows]


def rows_per_order(db: Path, service: str, command: str) -> Counter[str]:
    """How many times the service carried out ``command`` for each order (a command done
    twice under one message id counts twice: the ledger's ``times`` column)."""
    path = ledger_path(db, service)
    if not path.exists():
        return Counter()
    conn = sqlite3.connect(path, timeout=10.0)
    try:
        rows = conn.execute(
            "SELECT order_id, SUM(times) FROM handled WHERE type = ? GROUP BY order_id",
            (command,),
        ).fetchall()
    finally:
        conn.close()
    return Counter({str(order): int(times) for order, times in rows})


def assert_once_per_order(db: Path, order_ids: Iterable[str]) -> None:
    """Exactly one MAKE_PIZZA in the kitchen and one DELIVER_PIZZA in delivery per order."""
    ids = sorted(order_ids)
    kitchen = rows_per_order(db, "kitchen", "MAKE_PIZZA")
    delivery = rows_per_order(db, "delivery", "DELIVER_PIZZA")
    wrong_kitchen = {i: kitchen.get(i, 0) for i in ids if kitchen.get(i, 0) != 1}
    wrong_delivery = {i: delivery.get(i, 0) for i in ids if delivery.get(i, 0) != 1}
    assert not wrong_kitchen, f"MAKE_PIZZA rows per order, expected 1 each: {wrong_kitchen}"
    assert not wrong_delivery, f"DELIVER_PIZZA rows per order, expected 1 each: {wrong_delivery}"


async def assert_flow_histories(http: httpx.AsyncClient, order_ids: Iterable[str]) -> None:
    """Each history is contiguous from 1 with one PIZZA_READY and one PIZZA_DELIVERED."""
    for order_id in order_ids:
        entries = await history(http, order_id)
        versions = [entry["version"] for entry in entries]
        assert versions == list(range(1, len(entries) + 1)), (order_id, versions)
        counts = types_of(entries)
        assert counts["PIZZA_READY"] == 1, (order_id, counts)
        assert counts["PIZZA_DELIVERED"] == 1, (order_id, counts)
        assert counts["CONFIRM_PIZZA"] == 1, (order_id, counts)


# The queues of the flow: the two services' commands and the orchestrator's events.
FLOW_QUEUES = ("kitchen", "delivery", "orchestrator")


def broker_backlog(db: Path) -> int:
    """Messages of the flow the in-process broker still holds (not yet acknowledged)."""
    path = db.with_name(f"{db.stem}.broker.db")
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=10.0)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM messages WHERE queue IN (?, ?, ?)", FLOW_QUEUES
        ).fetchone()
    finally:
        conn.close()
    return int(count)


async def wait_quiet(http: httpx.AsyncClient, db: Path, *, within: float = 30.0) -> None:
    """Wait until nothing is left to publish or consume, so the ledgers are final."""

    async def quiet() -> bool:
        depth = await metric(http, "orchestrator_outbox_depth")
        return depth == 0 and broker_backlog(db) == 0

    await eventually(quiet, within=within, what="an empty outbox and broker")


# -- RabbitMQ --------------------------------------------------------------------------

RABBITMQ_URL = os.environ.get("ORCHESTRATOR_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1/")
# Every queue the three-process flow declares on the shared server.
FLOW_QUEUE_NAMES = (
    "kitchen", "delivery", "orchestrator", "orchestrator.undeliverable", "dead-letters",
)  # fmt: skip


def spawn_service(db: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -m services.<name>`` on RabbitMQ, its ledger beside ``db`` and its output
    appended to ``<name>.log`` there; ``args`` are further flags (``--mode``, ...)."""
    command = [sys.executable, "-m", f"services.{name}", "--broker", RABBITMQ_URL]
    command += ["--ledger", str(ledger_path(db, name)), *args]
    with db.with_name(f"{name}.log").open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def rabbitmq_unreachable(exc: BaseException) -> NoReturn:
    """Fail when ORCHESTRATOR_TEST_RABBITMQ=require (as .ci/run sets), else skip."""
    if os.environ.get("ORCHESTRATOR_TEST_RABBITMQ") == "require":
        pytest.fail(f"RabbitMQ is required but unreachable at {RABBITMQ_URL}: {exc!r}")
    pytest.skip(f"RabbitMQ unreachable: {exc!r}")


async def delete_flow_queues() -> None:
    """Start from no queues, whatever an earlier run on this server left."""
    try:
        connection = await aio_pika.connect(RABBITMQ_URL)
    except Exception as exc:
        rabbitmq_unreachable(exc)
    async with connection:
        channel = await connection.channel()
        for name in FLOW_QUEUE_NAMES:
            await channel.queue_delete(name)
