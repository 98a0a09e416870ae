"""The replies an actor keeps for retried event ids are bounded in bytes (issue 16), on a
real SQLite store, in-process: what the actor holds cannot be seen over HTTP, only the
answers to retries, which these check too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.actor import RECENT_REPLY_BYTES
from orchestrator.charts import load_charts
from orchestrator.metrics import Metrics
from orchestrator.model import Event
from orchestrator.registry import Registry
from orchestrator.store.sqlite import SqliteStore

NOTE = "n" * 5_000  # each pizza adds ~5 KB to every later view


@pytest.fixture
async def registry(store: SqliteStore, charts_dir: Path) -> AsyncIterator[Registry]:
    yield Registry(
        store=store, charts=load_charts(charts_dir), metrics=Metrics(), on_commit=lambda r: None
    )


def add(key: str, n: int) -> Event:
    pizza = {"name": f"pizza {n}", "note": NOTE}
    return Event("ADD_PIZZA", {"pizza": pizza}, key, "http", f"print-{key}", True)


async def test_large_replies_are_not_kept_and_retries_still_get_them(
    registry: Registry,
) -> None:
    """20 keyed events whose views grow past 100 KB: the actor keeps at most
    RECENT_REPLY_BYTES of replies (it kept 32 whole views: ~1 MB here, 32 MiB for an order
    at --max-order-bytes); a retry of any of them, kept or not, gets the same reply."""
    created = await registry.create(add("k0", 0), chart=None)
    order_id = created.order_id
    replies = {"k0": created}
    actor = registry.actor(order_id)
    for n in range(1, 20):
        key = f"k{n}"
        replies[key] = await registry.send(order_id, add(key, n))
        assert 0 <= actor.recent_reply_bytes <= RECENT_REPLY_BYTES
    assert len(replies["k19"].body) > 100_000
    for n in (0, 1, 2, 10, 19):
        key = f"k{n}"
        again = await registry.send(order_id, add(key, n))
        assert (again.status, again.body) == (replies[key].status, replies[key].body)
    assert (await registry.view(order_id)).version == 20  # type: ignore[union-attr]


async def test_small_replies_are_kept_within_the_bound(registry: Registry) -> None:
    """Replies of a few hundred bytes are kept (the cache still serves typical orders), and
    their bytes are counted."""
    created = await registry.create(
        Event("ADD_PIZZA", {"pizza": {"name": "m"}}, "s0", "http", "p", True), chart=None
    )
    actor = registry.actor(created.order_id)
    assert actor.recent_reply_bytes == len(created.body) > 0
