"""A bounded chaos run, checked in the manner of Jepsen's register tests.

Three nodes serve a steady stream of orders (each created and confirmed through random
nodes with Idempotency-Keys, then read back through another random node) while faults
hit them one after another: SIGKILL followed by a restart (a new incarnation at the same
address), or SIGSTOP for up to twice the lease TTL followed by SIGCONT. Afterwards, with
each order's journal as the witness: every acknowledged event id once, versions
contiguous, epochs never going down (no write from an owner after its successor's), every
confirmed order done, the kitchen and delivery each carried out once per order, and every
read at least as new as the last write acknowledged before it (and no newer than what the
journal holds).

``ORCHESTRATOR_CHAOS_FAULTS`` and ``ORCHESTRATOR_CHAOS_SECONDS`` make it longer by hand
(CI runs 16 faults in 60 seconds: kills with restarts and pauses follow each other as fast
as they can, each kept for a random time).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import asyncpg
import pytest

from tests.cluster.harness import (
    LEASE_TTL,
    PIZZA,
    Cluster,
    Node,
    check_journal,
    cluster_of,
    wait_done,
)
from tests.helpers import assert_once_per_order

FAULTS = int(os.environ.get("ORCHESTRATOR_CHAOS_FAULTS", "16"))
SECONDS = float(os.environ.get("ORCHESTRATOR_CHAOS_SECONDS", "60"))
CONCURRENCY = 6


class Reads:
    """Each read's order, and the version acknowledged before it and the one it returned."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []


async def one_order(group: Cluster, name: str, acked: dict[str, list[str]], reads: Reads) -> None:
    """Create, confirm, then read back, each through a random live node."""
    create_key, confirm_key = f"create-{name}", f"confirm-{name}"
    created = await group.request(
        lambda h: h.post("/orders", json=PIZZA, headers={"Idempotency-Key": create_key}),
        within=120.0,
    )
    assert created.status_code == 201, created.text
    order_id: str = created.json()["id"]
    acked[order_id] = [create_key]
    confirmed = await group.request(
        lambda h: h.post(
            f"/orders/{order_id}/events",
            json={"type": "CONFIRM_PIZZA"},
            headers={"Idempotency-Key": confirm_key},
        ),
        within=120.0,
    )
    assert confirmed.status_code == 200, confirmed.text
    acked[order_id].append(confirm_key)
    written = int(confirmed.json()["version"])
    read = await group.request(lambda h: h.get(f"/orders/{order_id}"), within=120.0)
    assert read.status_code == 200, read.text
    reads.seen.append((order_id, written, int(read.json()["version"])))


async def client(
    group: Cluster, stop: asyncio.Event, acked: dict[str, list[str]], reads: Reads, worker: int
) -> None:
    count = 0
    while not stop.is_set():
        count += 1
        await one_order(group, f"{worker}-{count}", acked, reads)


async def fault(group: Cluster, victim: Node, rng: random.Random) -> str:
    if rng.random() < 0.5:
        victim.kill()
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        await asyncio.to_thread(victim.restart)
        return "kill -9 and restart"
    pause = rng.uniform(0.5, 2 * LEASE_TTL)
    victim.pause()
    await asyncio.sleep(pause)
    victim.resume()
    return f"SIGSTOP for {pause:.1f} s"


# The faults, then up to two minutes for the orders to finish: past pytest's default bound.
@pytest.mark.timeout(SECONDS * 3 + 300)
async def test_chaos_of_kills_and_pauses_keeps_every_guarantee(tmp_path: Path) -> None:
    seed = int(os.environ.get("ORCHESTRATOR_CHAOS_SEED", str(time.time_ns() % 10**6)))
    rng = random.Random(seed)
    async with cluster_of(tmp_path) as group:
        acked: dict[str, list[str]] = {}
        reads = Reads()
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(client(group, stop, acked, reads, worker))
            for worker in range(CONCURRENCY)
        ]
        done: list[str] = []
        gap = SECONDS / FAULTS
        try:
            for _ in range(FAULTS):
                started = time.monotonic()
                victim = rng.choice(group.nodes)
                done.append(f"{victim.url}: {await fault(group, victim, rng)}")
                await asyncio.sleep(max(0.0, gap - (time.monotonic() - started)))
        finally:
            stop.set()
            await asyncio.gather(*clients)
        assert len(done) == FAULTS
        await wait_done(group, acked, within=120.0)
        await check_journal(group, acked)
        assert_once_per_order(group.ledger_db, acked)
        conn = await asyncpg.connect(group.url)
        try:
            rows = await conn.fetch(
                "SELECT id, version FROM orders WHERE id = ANY($1)", list(acked)
            )
            last: dict[str, int] = {row[0]: row[1] for row in rows}
        finally:
            await conn.close()
        stale = [(o, w, r) for o, w, r in reads.seen if not w <= r <= last[o]]
        assert not stale, (
            f"reads older than the write acknowledged before them (seed {seed}): {stale[:5]}"
        )
        assert len(acked) >= FAULTS, f"only {len(acked)} orders went through (seed {seed})"
