"""Faults in a three-node cluster: a node killed with SIGKILL under load, an owner paused
with SIGSTOP past its lease, and a WebSocket watching an order across its owner's death.

Each test checks the journal as the witness (tests.cluster.harness.check_journal): every
acknowledged event once, versions without gaps, epochs that never go down."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import websockets

from orchestrator.shards import shard_of
from tests.cluster.harness import (
    LEASE_TTL,
    PIZZA,
    Cluster,
    Node,
    check_journal,
    cluster_of,
    create_and_confirm,
    wait_done,
)
from tests.helpers import assert_once_per_order

ORDERS = 90
CONCURRENCY = 10
# A dead node's shards are owned again within its lease, one poll and the taking.
FAILOVER_BOUND = LEASE_TTL + 4.0


async def stream(group: Cluster, names: list[str]) -> dict[str, list[str]]:
    """Create and confirm an order per name, ``CONCURRENCY`` at a time, through random
    live nodes; the acknowledged keys by order."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(name: str) -> tuple[str, list[str]]:
        async with slots:
            return await create_and_confirm(group, name)

    return dict(await asyncio.gather(*(one(name) for name in names)))


async def owned_again(group: Cluster, dead: Node, within: float) -> float:
    """Seconds until no shard is without a live owner or still the dead node's."""
    started = time.monotonic()
    while True:
        owners = await group.owners()
        if dead.url not in owners.values() and None not in owners.values():
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"shards not taken over: {owners}"
        await asyncio.sleep(0.1)


async def test_kill_9_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """A node killed with SIGKILL in the middle of a stream of orders: its shards are
    owned again within the lease TTL and a few seconds; every acknowledged create and
    confirm is in its order's journal once; every order reaches done; no pizza is baked
    or delivered twice."""
    async with cluster_of(tmp_path) as group:
        work = asyncio.create_task(stream(group, [str(i) for i in range(ORDERS)]))
        await asyncio.sleep(1.5)
        victim = group.nodes[1]
        victim.kill()
        took = await owned_again(group, victim, FAILOVER_BOUND)
        acked = await work
        await wait_done(group, acked)
        await check_journal(group, acked)
        assert_once_per_order(group.ledger_db, acked)
        assert took <= FAILOVER_BOUND


async def fence_refusals(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("orchestrator_fence_refusals_total{")
    )


async def test_an_owner_paused_past_its_lease_writes_nothing_after(tmp_path: Path) -> None:
    """SIGSTOP of a node with turns of its own orders applied and waiting to commit, past
    its lease; the others take its shards and the load goes on through them; after
    SIGCONT the paused node's pending commits are refused by the fence (counted: at
    least one), the requests it held are applied by the new owners, and no order's
    journal has a write under an older epoch after one under a newer: nothing from the
    paused node after the takeover.

    To have commits pending at the pause, not left to chance, the test holds a row lock on
    one of the node's orders, so the node's group commit waits on it while the next turns
    queue behind; the lock is let go once the node is paused."""
    async with cluster_of(tmp_path) as group:
        victim = group.nodes[0]
        http = group.http(victim)
        orders = []
        for _ in range(9):  # unkeyed creates land in shards of the node that takes them
            created = await http.post("/orders", json={"pizza": {"name": "base"}})
            assert created.status_code == 201, created.text
            orders.append(created.json()["id"])
        acked: dict[str, list[str]] = {order_id: [] for order_id in orders}

        async def add(order_id: str, key: str, *, direct: bool = True) -> None:
            """ADD_PIZZA through the victim (``direct``) or through any live node."""
            event = {"type": "ADD_PIZZA", "data": {"pizza": {"name": key}}}

            def post(h: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                path = f"/orders/{order_id}/events"
                return h.post(path, json=event, headers={"Idempotency-Key": key})

            if direct:
                response = await _direct(http, post, group)
            else:
                response = await group.request(post)
            assert response.status_code == 200, response.text
            acked[order_id].append(key)

        before = await fence_refusals(http)
        locker = await asyncpg.connect(group.url)
        try:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", orders[0])
            blocked = asyncio.create_task(add(orders[0], "blocked"))
            await asyncio.sleep(0.2)  # its commit waits on the lock
            queued = [asyncio.create_task(add(o, f"queued-{o}")) for o in orders[1:]]
            await asyncio.sleep(0.3)  # their turns applied, their commits queued behind it
            victim.pause()
            await lock.rollback()
        finally:
            await locker.close()
        await owned_again(group, victim, FAILOVER_BOUND + 5.0)  # + the idle transaction's end
        for n in range(5):  # the load goes on through the new owners
            await asyncio.gather(*(add(o, f"later-{n}-{o}", direct=False) for o in orders))
        victim.resume()
        await asyncio.gather(blocked, *queued)
        refused = await fence_refusals(http) - before
        assert refused >= 1, "the resumed node attempted no write the fence refused"
        await check_journal(group, acked)


async def _direct(
    http: httpx.AsyncClient,
    post: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    group: Cluster,
) -> httpx.Response:
    """Through the victim itself (if it is paused meanwhile, the call waits for it); a 503
    or a lost connection is retried on any live node with the same key."""
    try:
        response = await post(http)
    except httpx.TransportError:
        response = None
    if response is None or response.status_code == 503:
        return await group.request(post)
    return response


async def test_a_websocket_on_another_node_sees_every_version_across_a_failover(
    tmp_path: Path,
) -> None:
    """A subscriber on a node that does not own the order, while the owner is killed with
    SIGKILL between events (half of them committed by the old owner, half by the new): it
    receives versions 1..N, each once, in order."""
    async with cluster_of(tmp_path) as group:
        created = await group.request(
            lambda h: h.post("/orders", json=PIZZA, headers={"Idempotency-Key": "watched"})
        )
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        owner_url = (await group.owners())[shard_of(order_id, 256)]
        owner = next(node for node in group.nodes if node.url == owner_url)
        watcher = next(node for node in group.nodes if node is not owner)
        seen: list[int] = []
        async with websockets.connect(f"{watcher.ws_url}/orders/{order_id}/ws?after=0") as ws:

            async def add(n: int) -> None:
                key = f"add-{n}"
                event = {"type": "ADD_PIZZA", "data": {"pizza": {"name": key}}}
                response = await group.request(
                    lambda h: h.post(
                        f"/orders/{order_id}/events", json=event, headers={"Idempotency-Key": key}
                    )
                )
                assert response.status_code == 200, response.text

            async def read_until(version: int) -> None:
                while not seen or seen[-1] < version:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 30.0))
                    seen.append(message["version"])

            for n in range(5):
                await add(n)
            owner.kill()
            for n in range(5, 10):
                await add(n)
            final = (await group.http(watcher).get(f"/orders/{order_id}")).json()["version"]
            await read_until(final)
        assert seen == list(range(1, final + 1)), seen


async def test_timers_of_a_dead_node_fire_once_on_the_new_owner(tmp_path: Path) -> None:
    """Orders waiting for a kitchen that never answers, each with a kitchen timeout timer;
    the node serving them is killed before the timers fall due: each timer fires on the
    node that took its shard, once (the order goes to errorInKitchen; no retry is set)."""
    options = ("--chart-option", "pizza.kitchenTimeout=6", "--chart-option", "pizza.maxRetries=0")
    async with cluster_of(tmp_path, 3, *options, kitchen=("--mode", "ignore")) as group:
        victim = group.nodes[2]
        http = group.http(victim)
        orders = []
        for _ in range(8):  # unkeyed creates land in shards of the node that takes them
            created = await http.post("/orders", json=PIZZA)
            assert created.status_code == 201, created.text
            order_id = created.json()["id"]
            confirmed = await http.post(
                f"/orders/{order_id}/events", json={"type": "CONFIRM_PIZZA"}
            )
            assert confirmed.status_code == 200, confirmed.text
            orders.append(order_id)
        owners = await group.owners()
        assert {owners[shard_of(o, 256)] for o in orders} == {victim.url}
        victim.kill()
        conn = await asyncpg.connect(group.url)
        try:
            deadline = time.monotonic() + 6 + FAILOVER_BOUND + 10
            while True:
                rows = await conn.fetch("SELECT id, state FROM orders WHERE id = ANY($1)", orders)
                states = {row[0]: row[1] for row in rows}
                if all(state == "bakePizza.errorInKitchen" for state in states.values()):
                    break
                assert time.monotonic() < deadline, states
                await asyncio.sleep(0.3)
            fired = await conn.fetch(
                "SELECT order_id, count(*) FROM journal WHERE order_id = ANY($1)"
                " AND event_id LIKE 'timer:%' GROUP BY order_id",
                orders,
            )
        finally:
            await conn.close()
        assert {row[0]: row[1] for row in fired} == dict.fromkeys(orders, 1)
