"""Three (or N) orchestrator nodes on one real PostgreSQL and one real RabbitMQ.

Each node is ``orchestrator serve --store postgresql://... --broker amqp://...`` as a real
subprocess on 127.0.0.1, beside real kitchen and delivery services; faults are real
signals (SIGKILL, SIGSTOP/SIGCONT). The database is a fresh one per test, and the checks
read its journal directly: it is the witness of what every node wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import ServerProcess
from tests.helpers import RABBITMQ_URL, delete_flow_queues, spawn_service
from tests.postgres import fresh_database

# Short leases keep failovers in a test to a few seconds; the default is 10 s.
LEASE_TTL = 4.0
PIZZA = {"pizza": {"name": "margherita"}}


class Node(ServerProcess):
    paused = False

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.alive():
            self.resume()  # a stopped process takes SIGKILL too, but resume it to be sure
        super().stop()


@dataclass
class Cluster:
    url: str  # the PostgreSQL database
    nodes: list[Node]
    ledger_db: Path  # the services' ledgers are beside this path
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def http(self, node: Node) -> httpx.AsyncClient:
        client = self.clients.get(node.url)
        if client is None:
            client = self.clients[node.url] = httpx.AsyncClient(base_url=node.url, timeout=30.0)
        return client

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.alive() and not node.paused]

    async def status(self, node: Node | None = None) -> dict[str, object]:
        response = await self.http(node or self.live()[0]).get("/cluster")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    async def owners(self) -> dict[int, str | None]:
        """shard -> the address of its owner (live lease), from the database."""
        conn = await asyncpg.connect(self.url)
        try:
            rows = await conn.fetch(
                "SELECT l.shard, m.address FROM shard_leases l LEFT JOIN members m"
                " ON m.node = l.owner AND l.expires_at > now() ORDER BY l.shard"
            )
        finally:
            await conn.close()
        return {row[0]: row[1] for row in rows}

    async def settled(self, within: float = 30.0) -> None:
        """Wait until every shard has a live owner and each live node owns some."""
        deadline = time.monotonic() + within
        want = {node.url for node in self.live()}
        while True:
            owners = await self.owners()
            if None not in owners.values() and set(owners.values()) == want:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"shards not settled over {sorted(want)}: {owners}")
            await asyncio.sleep(0.2)

    async def request(
        self,
        call: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
        *,
        within: float = 60.0,
    ) -> httpx.Response:
        """``call`` on a random live node, again on another while the answer is a 503 or
        the connection fails (a node killed or paused, a shard moving); the first other
        answer is returned. Every call carries an Idempotency-Key, so a retry is safe."""
        deadline = time.monotonic() + within
        while True:
            node = random.choice(self.live())
            try:
                response = await asyncio.wait_for(call(self.http(node)), 15.0)
            except (httpx.TransportError, TimeoutError):
                response = None
            if response is not None and response.status_code != 503:
                return response
            if time.monotonic() > deadline:
                detail = response.text if response is not None else "no answer"
                raise AssertionError(f"no answer but 503 or errors for {within} s: {detail}")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


@contextlib.asynccontextmanager
async def cluster_of(
    tmp_path: Path, size: int = 3, *args: str, kitchen: tuple[str, ...] = ()
) -> AsyncIterator[Cluster]:
    """``size`` nodes (``args`` are more flags for each) and the two services (``kitchen``
    more flags for the kitchen), settled: every shard owned, by all of them."""
    await delete_flow_queues()
    async with fresh_database() as url:
        ledger_db = tmp_path / "services.db"
        services = [
            spawn_service(ledger_db, "kitchen", *kitchen),
            spawn_service(ledger_db, "delivery"),
        ]
        flags = ["--store", url, "--broker", RABBITMQ_URL, "--lease-ttl", str(LEASE_TTL), *args]
        nodes = [Node(tmp_path / f"node{i}.db", flags) for i in range(size)]
        group = Cluster(url, nodes, ledger_db)
        try:
            await asyncio.gather(*(asyncio.to_thread(node.start) for node in nodes))
            await group.settled()
            yield group
        finally:
            await group.close()
            for node in nodes:
                node.stop()
            for service in services:
                service.kill()
                service.wait(timeout=10)


async def create_and_confirm(group: Cluster, name: str) -> tuple[str, list[str]]:
    """Create an order and confirm it through random nodes, each with an Idempotency-Key;
    returns the order id and the keys acknowledged."""
    create_key, confirm_key = f"create-{name}", f"confirm-{name}"
    created = await group.request(
        lambda http: http.post("/orders", json=PIZZA, headers={"Idempotency-Key": create_key})
    )
    assert created.status_code == 201, created.text
    order_id: str = created.json()["id"]
    confirmed = await group.request(
        lambda http: http.post(
            f"/orders/{order_id}/events",
            json={"type": "CONFIRM_PIZZA"},
            headers={"Idempotency-Key": confirm_key},
        )
    )
    assert confirmed.status_code == 200, confirmed.text
    return order_id, [create_key, confirm_key]


async def wait_done(group: Cluster, order_ids: Iterable[str], within: float = 90.0) -> None:
    """Every order reaches ``done`` (read from the database, which every node shares)."""
    ids = list(order_ids)
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(group.url)
    try:
        while True:
            rows = await conn.fetch("SELECT id, state FROM orders WHERE id = ANY($1)", ids)
            states = {row[0]: row[1] for row in rows}
            waiting = {i: states.get(i) for i in ids if states.get(i) != "done"}
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(waiting)} orders not done: {dict(list(waiting.items())[:5])}"
                )
            await asyncio.sleep(0.3)
    finally:
        await conn.close()


async def check_journal(group: Cluster, acked: dict[str, list[str]]) -> None:
    """The journal as witness, in the manner of Jepsen's register checks: every
    acknowledged event id of each order is there exactly once; versions run 1..n without a
    gap; each order's epochs never go down (no owner wrote after its successor took over);
    and a timer's event applied at most once."""
    conn = await asyncpg.connect(group.url)
    try:
        rows = await conn.fetch(
            "SELECT order_id, version, event_id, epoch FROM journal"
            " WHERE order_id = ANY($1) ORDER BY order_id, version",
            list(acked),
        )
    finally:
        await conn.close()
    journal: dict[str, list[tuple[int, str, int]]] = {}
    for order_id, version, event_id, epoch in rows:
        journal.setdefault(order_id, []).append((version, event_id, epoch))
    for order_id, keys in acked.items():
        entries = journal.get(order_id, [])
        versions = [version for version, _, _ in entries]
        assert versions == list(range(1, len(entries) + 1)), (order_id, versions)
        ids = [event_id for _, event_id, _ in entries]
        for key in keys:
            assert ids.count(key) == 1, (order_id, key, ids)
        assert len(set(ids)) == len(ids), (order_id, ids)
        epochs = [epoch for _, _, epoch in entries]
        assert epochs == sorted(epochs), f"{order_id}: a write under an older epoch {epochs}"
        assert all(epoch > 0 for epoch in epochs), (order_id, epochs)
