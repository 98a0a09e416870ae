"""Crash tests for rule 8 of the actor contract (docs/design.md): restart after kill -9.

A real ``orchestrator serve`` subprocess is killed with SIGKILL (no shutdown code runs)
and restarted on the same files. Afterwards every acknowledged event is still in its
order's journal, unsent outbox messages are sent, and in-flight orders run to done with
each pizza made and delivered exactly once (the stub services' ledgers beside the
database say so). SIGTERM, by contrast, must drain and exit 0. Each test runs with the
orders in SQLite and again in a fresh PostgreSQL database (``--store``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    MARGHERITA,
    add,
    assert_flow_histories,
    assert_once_per_order,
    eventually,
    history,
    http_client,
    ledger_rows,
    send,
    view,
    wait_all_in_state,
    wait_quiet,
)
from tests.postgres import fresh_database

FLOW_DEADLINE = 60.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store_args(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, ...]]:
    """The server's flags for each store: none for SQLite (the --db file), --store for a
    fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield ()
    else:
        async with fresh_database() as url:
            yield ("--store", url)


@dataclass(frozen=True, slots=True)
class Ack:
    """An event the server acknowledged with a 2xx: it must survive any crash."""

    order_id: str
    version: int
    type: str
    key: str


async def run_order(http: httpx.AsyncClient, acks: list[Ack]) -> str:
    """Create an order, add a pizza and confirm it, recording every acknowledged reply."""
    key = str(uuid.uuid4())
    created = await http.post("/orders", json={"pizza": HAWAII}, headers={"Idempotency-Key": key})
    assert created.status_code == 201, created.text
    order_id: str = created.json()["id"]
    acks.append(Ack(order_id, created.json()["version"], "ADD_PIZZA", key))
    for event in (add(MARGHERITA), CONFIRM):
        key = str(uuid.uuid4())
        reply = await send(http, order_id, event, key=key)
        assert reply.status_code == 200, reply.text
        acks.append(Ack(order_id, reply.json()["version"], event["type"], key))
    return order_id


async def assert_acks_recorded(http: httpx.AsyncClient, acks: list[Ack]) -> None:
    """Each acknowledged event is in its order's journal at its version, with its id."""
    journals: dict[str, dict[int, tuple[str, str]]] = {}
    missing = []
    for ack in acks:
        if ack.order_id not in journals:
            entries = await history(http, ack.order_id)
            journals[ack.order_id] = {e["version"]: (e["type"], e["eventId"]) for e in entries}
        if journals[ack.order_id].get(ack.version) != (ack.type, ack.key):
            missing.append(ack)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"


async def kitchen_started(server: ServerProcess) -> None:
    async def started() -> bool:
        return len(ledger_rows(server.db, "kitchen")) >= 1

    await eventually(started, within=30, what="the kitchen to take its first order")


async def test_sigkill_mid_flow_loses_nothing_and_orders_finish(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 8 (restart): SIGKILL while 30 confirmed orders are in the kitchen and out for
    delivery; after the restart every acknowledged event is there, every order reaches
    done, and each pizza was made once and delivered once."""
    server = server_factory(*store_args, "--kitchen-delay", "0.3", "--delivery-delay", "0.3")
    acks: list[Ack] = []
    async with http_client(server.url) as http:
        ids = await asyncio.gather(*(run_order(http, acks) for _ in range(30)))
        await kitchen_started(server)
    server.kill()

    server.restart()
    async with http_client(server.url) as http:
        await assert_acks_recorded(http, acks)
        await wait_all_in_state(http, ids, DONE, within=FLOW_DEADLINE)
        await wait_quiet(http, server.db)
        await assert_flow_histories(http, ids)
        assert_once_per_order(server.db, ids)


async def test_sigkill_under_concurrent_load_keeps_every_acknowledged_event(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 8 (restart): SIGKILL while ADD_PIZZA events pour into 20 orders; every event
    answered 200 before the kill is in the journal at the version it was given, versions
    run from 1 with no gap, and nothing was stored that no client sent."""
    server = server_factory(*store_args)
    acks: list[Ack] = []
    sent: set[str] = set()
    async with http_client(server.url) as http:
        created = await asyncio.gather(
            *(
                http.post("/orders", json={"pizza": HAWAII}, headers={"Idempotency-Key": key})
                for key in [str(uuid.uuid4()) for _ in range(20)]
            )
        )
        assert {r.status_code for r in created} == {201}, [r.text for r in created][:3]
        ids = [r.json()["id"] for r in created]
        create_keys = {r.json()["id"]: str(r.request.headers["idempotency-key"]) for r in created}

        async def fire(order_id: str) -> None:
            n = 0
            while True:
                key = str(uuid.uuid4())
                sent.add(key)
                n += 1
                try:
                    reply = await send(http, order_id, add({"name": f"p{n}"}), key=key)
                except httpx.HTTPError:
                    return
                if reply.status_code == 200:
                    acks.append(Ack(order_id, reply.json()["version"], "ADD_PIZZA", key))

        firing = [asyncio.create_task(fire(order_id)) for order_id in ids for _ in range(2)]

        async def enough() -> bool:
            return len(acks) >= 300

        await eventually(enough, within=30, what="300 acknowledged events")
        server.kill()
        await asyncio.wait_for(asyncio.gather(*firing), 30)

    server.restart()
    async with http_client(server.url) as http:
        await assert_acks_recorded(http, acks)
        for order_id in ids:
            entries = await history(http, order_id)
            versions = [e["version"] for e in entries]
            assert versions == list(range(1, len(entries) + 1)), (order_id, versions)
            assert entries[0]["eventId"] == create_keys[order_id]
            ghosts = [e for e in entries[1:] if e["eventId"] not in sent]
            assert not ghosts, f"stored events no client sent: {ghosts[:3]}"
            current = await view(http, order_id)
            assert current["version"] == len(entries)
            assert len(current["items"]) == len(entries)


async def test_outbox_is_resent_after_repeated_sigkills(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 8 (restart: unsent outbox messages are sent): three rounds of confirming a
    batch of orders and killing the server at once; all orders still reach done, each
    with exactly one MAKE_PIZZA in the kitchen's ledger and one DELIVER_PIZZA."""
    server = server_factory(*store_args)
    acks: list[Ack] = []
    ids: list[str] = []
    for _ in range(3):
        async with http_client(server.url) as http:
            ids += await asyncio.gather(*(run_order(http, acks) for _ in range(15)))
        server.kill()
        server.restart()

    async with http_client(server.url) as http:
        await assert_acks_recorded(http, acks)
        await wait_all_in_state(http, ids, DONE, within=FLOW_DEADLINE)
        await wait_quiet(http, server.db)
        await assert_flow_histories(http, ids)
        assert_once_per_order(server.db, ids)


async def test_sigterm_drains_and_orders_finish_after_restart(
    server_factory: ServerFactory, store_args: tuple[str, ...]
) -> None:
    """Rule 8 and "SIGTERM drains in-flight turns and exits cleanly": SIGTERM with orders
    in the kitchen exits 0; after a restart every acknowledged event is there and every
    order reaches done, each pizza made and delivered once."""
    server = server_factory(*store_args, "--kitchen-delay", "0.3", "--delivery-delay", "0.3")
    acks: list[Ack] = []
    async with http_client(server.url) as http:
        ids = await asyncio.gather(*(run_order(http, acks) for _ in range(20)))
        await kitchen_started(server)
    exit_code = server.terminate()
    shutdown_log = server.log()

    server.restart()
    async with http_client(server.url) as http:
        await assert_acks_recorded(http, acks)
        await wait_all_in_state(http, ids, DONE, within=FLOW_DEADLINE)
        await wait_quiet(http, server.db)
        await assert_flow_histories(http, ids)
        assert_once_per_order(server.db, ids)
    assert exit_code == 0, f"exit code {exit_code} after SIGTERM:\n{shutdown_log[-2000:]}"
