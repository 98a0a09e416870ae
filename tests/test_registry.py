"""The registry in-process, on a real SQLite file: what only a cancelled task can show.

Over HTTP a request's task is cancelled only when the server's graceful shutdown runs out
of time, so these drive ``Registry`` directly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.charts import load_charts
from orchestrator.errors import StoreUnavailable, Unavailable
from orchestrator.metrics import Metrics
from orchestrator.model import Event, TurnRecord
from orchestrator.registry import Registry
from orchestrator.store.sqlite import SqliteStore


@pytest.fixture
async def registry(store: SqliteStore, charts_dir: Path) -> AsyncIterator[Registry]:
    yield Registry(
        store=store, charts=load_charts(charts_dir), metrics=Metrics(), on_commit=lambda r: None
    )


def keyed_create(key: str) -> Event:
    return Event("ADD_PIZZA", {"pizza": {"name": "margherita"}}, key, "http", "print", True)


async def test_a_cancelled_keyed_create_still_answers_its_repeat(
    registry: Registry, store: SqliteStore
) -> None:
    """Two requests with one Idempotency-Key, the first cancelled while the create runs:
    the order is created once and the second request gets its reply, not the first's
    cancellation."""
    first = asyncio.create_task(registry.create(keyed_create("key-1"), chart=None))
    await asyncio.sleep(0)  # the first is creating
    second = asyncio.create_task(registry.create(keyed_create("key-1"), chart=None))
    await asyncio.sleep(0)  # the second waits for the first's reply
    first.cancel()
    reply = await asyncio.wait_for(second, timeout=10)
    assert reply.status == 201
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await store.order_created_by("key-1") == reply.order_id
    assert await registry.create(keyed_create("key-1"), chart=None) == reply
    await registry.drain()  # nothing is left creating


async def test_an_order_in_a_state_its_chart_no_longer_has_is_named(
    registry: Registry, store: SqliteStore, charts_dir: Path, tmp_path: Path
) -> None:
    """A chart edited under its orders (a state renamed) leaves each order in that state
    unable to go on: its events get a 503 naming the state, not a KeyError's repr."""
    created = await registry.create(keyed_create("before-the-edit"), chart=None)
    edited = tmp_path / "edited"
    shutil.copytree(charts_dir, edited)
    document = edited / "pizza.yaml"
    document.write_text(document.read_text().replace("  orderPizza:", "  ordering:"))
    later = Registry(
        store=store, charts=load_charts(edited), metrics=Metrics(), on_commit=lambda r: None
    )
    event = Event("ADD_PIZZA", {"pizza": {"name": "diavola"}}, "after-the-edit")
    with pytest.raises(Unavailable) as refused:
        await later.send(created.order_id, event)
    assert (
        refused.value.detail
        == "the order is in state 'orderPizza', which chart 'pizza' no longer has"
    )
    assert (await store.load(created.order_id)).version == 1  # type: ignore[union-attr]


class _LostCommitStore(SqliteStore):
    """A real SQLite store whose next commit lands and then reports a failure: what a
    PostgreSQL connection lost during COMMIT looks like from the actor (the outcome unknown,
    the turn in fact stored). The stand-in is only the raised error."""

    lose_next = False

    async def commit(self, record: TurnRecord) -> None:
        await super().commit(record)
        if self.lose_next:
            self.lose_next = False
            raise StoreUnavailable("the connection was lost during COMMIT")


async def test_a_turn_whose_commit_failed_but_landed_does_not_wedge_the_order(
    tmp_path: Path, charts_dir: Path
) -> None:
    """The actor kept the snapshot from before such a turn, so every later turn of the order
    was built on a version already taken and failed on the journal's key, until the actor
    left memory. The actor now reads the order again after a failed commit."""
    store = _LostCommitStore(tmp_path / "orders.db")
    await store.open()
    try:
        registry = Registry(
            store=store, charts=load_charts(charts_dir), metrics=Metrics(), on_commit=lambda r: None
        )
        created = await registry.create(keyed_create("lost-commit"), chart=None)
        store.lose_next = True
        with pytest.raises(StoreUnavailable):
            await registry.send(created.order_id, Event("ADD_PIZZA", {"pizza": {"n": 2}}, "e-2"))
        after = await registry.send(
            created.order_id, Event("ADD_PIZZA", {"pizza": {"n": 3}}, "e-3")
        )
        assert json.loads(after.body)["version"] == 3
        entries = await store.journal(created.order_id)
        assert [(e.version, e.event_id) for e in entries] == [
            (1, "lost-commit"),
            (2, "e-2"),
            (3, "e-3"),
        ]
        await registry.drain()
    finally:
        await store.close()
