"""Three nodes on one PostgreSQL and one RabbitMQ: any request on any node, every order
done once, and GET /cluster telling who owns what."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cluster.harness import check_journal, cluster_of, create_and_confirm, wait_done
from tests.helpers import assert_once_per_order

ORDERS = 60


async def test_orders_through_every_node_all_finish_once(tmp_path: Path) -> None:
    """Orders created and confirmed through random nodes (most requests land on a node that
    does not own the order, and are forwarded) all reach done; the kitchen baked each
    once and delivery delivered each once; the journal has every acknowledged event once,
    versions without gaps, and epochs that never go down."""
    async with cluster_of(tmp_path) as group:
        results = await asyncio.gather(*(create_and_confirm(group, str(i)) for i in range(ORDERS)))
        acked = dict(results)
        await wait_done(group, acked)
        await check_journal(group, acked)
        assert_once_per_order(group.ledger_db, acked)
        forwarded = 0.0
        for node in group.nodes:
            text = (await group.http(node).get("/metrics")).text
            forwarded += sum(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith('orchestrator_forwards_total{result="forwarded"}')
            )
        assert forwarded > 0, "no request was forwarded: the test did not cross nodes"


async def test_cluster_status_shows_members_shards_and_epochs(tmp_path: Path) -> None:
    """GET /cluster, on any node: three live members, each with shards; every shard owned
    by one of them under an epoch of at least 1, with time left on its lease."""
    async with cluster_of(tmp_path) as group:
        status = await group.status(group.nodes[1])
        members = status["members"]
        assert isinstance(members, list)
        assert sorted(m["address"] for m in members) == sorted(n.url for n in group.nodes)
        assert all(m["live"] and m["shards"] for m in members), members
        shards = status["shards"]
        assert isinstance(shards, list) and len(shards) == status["shardCount"] == 256
        nodes = {m["node"] for m in members}
        for shard in shards:
            assert shard["owner"] in nodes, shard
            assert shard["epoch"] >= 1 and shard["expiresIn"] > 0, shard
