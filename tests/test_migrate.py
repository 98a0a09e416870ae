"""``orchestrator migrate --from orders.db --to postgresql://...``: every order moves from
an embedded SQLite database into an empty PostgreSQL one and is found where it was.

Real parts throughout: SQLite files written by the store (and, for the journal's older
form, as an older release wrote them, see ``tests/store/test_sqlite.py``), real
``orchestrator serve`` and ``orchestrator migrate`` subprocesses, real HTTP clients, and a
fresh database of the real PostgreSQL server per test (``tests/postgres.py``).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from orchestrator.model import Timer
from orchestrator.store.postgres import PostgresStore
from orchestrator.store.sqlite import SqliteStore
from tests.conftest import ServerFactory
from tests.helpers import (
    CONFIRM,
    DONE,
    HAWAII,
    MARGHERITA,
    WAITING_FOR_KITCHEN,
    add,
    create_order,
    history,
    http_client,
    send,
    view,
    wait_for_state,
)
from tests.postgres import fresh_database
from tests.store.test_sqlite import write_journal_of_views
from tests.store.test_store import T0, pizza_turns, record

AnyStore = SqliteStore | PostgresStore


def migrate(source: Path, target: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrator", "migrate", "--from", str(source)]
    return subprocess.run(
        [*command, "--to", target], capture_output=True, text=True, timeout=120, check=False
    )


async def everything(store: AnyStore, order_ids: list[str]) -> dict[str, Any]:
    """All a store answers about ``order_ids``: snapshots, journals, replayed views (from
    the start and from each tenth version), every event's repeated answer, the outbox, the
    timers, the order list, creations by key and the stats."""
    await store.open()
    try:
        seen: dict[str, Any] = {}
        for order_id in order_ids:
            order = await store.load(order_id)
            assert order is not None, order_id
            journal = await store.journal(order_id)
            replays = {
                after: [(r.entry, r.view) async for r in store.replay(order_id, after=after)]
                for after in range(0, order.version, 10)
            }
            replies = [await store.reply_for(order_id, e.event_id) for e in journal]
            seen[order_id] = (order, journal, replays, replies)
        seen["unsent"] = await store.unsent()
        seen["timers"] = await store.due_timers(float("inf"), 1000)
        seen["next timer"] = await store.next_timer_due(0.0)
        page = await store.list_orders(state=None, chart=None, cursor=None, limit=2)
        seen["list"] = [o.order_id for o in page.orders]
        seen["created by"] = await store.order_created_by("create-o-2")
        seen["stats"] = await store.stats(T0)
        return seen
    finally:
        await store.close()


async def test_every_row_is_copied_and_answers_the_same_bytes(
    tmp_path: Path, charts_dir: Path
) -> None:
    """A database with journal rows of both forms (whole views an older release wrote,
    then context changes), unsent outbox rows and pending timers: after the migration,
    PostgreSQL answers every read of the Store port as SQLite did, replayed views and
    repeated-key answers byte for byte. Then a second migration into it is refused (exit 2,
    one line) and changes nothing."""
    db = tmp_path / "orders.db"
    turns = pizza_turns(charts_dir, 40)
    write_journal_of_views(db, turns[:25])
    store = SqliteStore(db)
    await store.open()
    for turn in turns[25:]:
        await store.commit(turn)
    timer = Timer(
        "o-2/t1", "o-2", T0 + 600, "after.bakePizza.t1", {"n": 1}, f"00-{'a' * 32}-{'b' * 16}-01"
    )
    await store.commit(
        dataclasses.replace(record("o-2", outbox=2, created_by="create-o-2"), timers_set=(timer,))
    )
    for version in (1, 2, 3):
        await store.commit(record("o-3", version, items=["x" * version]))
    await store.close()
    orders = ["o-1", "o-2", "o-3"]
    before = await everything(SqliteStore(db), orders)
    assert before["unsent"] and before["timers"]  # something of each to copy

    async with fresh_database() as url:
        done = migrate(db, url)
        assert done.returncode == 0, done.stderr
        assert "Copied 3 orders (44 journal rows), 1 pending timers, 3 unsent outbox" in done.stdout
        after = await everything(PostgresStore(url), orders)
        for key in before:
            assert after[key] == before[key], key

        again = migrate(db, url)
        assert again.returncode == 2
        lines = again.stderr.strip().splitlines()
        assert len(lines) == 1 and "not empty" in lines[0], again.stderr
        assert await everything(PostgresStore(url), orders) == after


async def test_a_served_database_moves_to_postgresql_and_carries_on(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A server runs orders to done, to the kitchen (a timer pending) and leaves one open;
    it is stopped (SIGTERM), the database migrated, and a server on PostgreSQL (same --db
    beside it for the in-process broker and ledgers) serves each order where it was: the
    same views, histories and repeated-key answers, byte for byte; the order in the
    kitchen carries on to done."""
    first = server_factory("--kitchen-delay", "2")
    async with http_client(first.url) as http:
        finished = await create_order(http, HAWAII, key="create-finished")
        baking = await create_order(http, MARGHERITA, key="create-baking")
        open_ = await create_order(http, HAWAII, key="create-open")
        assert (await send(http, open_["id"], add(MARGHERITA), key="add-1")).status_code == 200
        assert (await send(http, finished["id"], CONFIRM, key="confirm")).status_code == 200
        await wait_for_state(http, finished["id"], DONE)
        assert (await send(http, baking["id"], CONFIRM, key="confirm")).status_code == 200
        await wait_for_state(http, baking["id"], WAITING_FOR_KITCHEN)
        before = await answers(http, [finished["id"], open_["id"]])
        baking_history = await history(http, baking["id"])
    assert first.terminate() == 0
    ids = [finished["id"], baking["id"], open_["id"]]
    stored = await store_answers(SqliteStore(first.db), ids)

    async with fresh_database() as url:
        done = migrate(first.db, url)
        assert done.returncode == 0, done.stderr
        assert "Copied 3 orders" in done.stdout, done.stdout
        conn = await asyncpg.connect(url)
        try:
            timers = await conn.fetch("SELECT order_id FROM timers")
        finally:
            await conn.close()
        assert baking["id"] in {row[0] for row in timers}
        assert await store_answers(PostgresStore(url), ids) == stored

        second = server_factory("--store", url, db=first.db)
        async with http_client(second.url) as http:
            assert await answers(http, [finished["id"], open_["id"]]) == before
            assert (await history(http, baking["id"]))[: len(baking_history)] == baking_history
            await wait_for_state(http, baking["id"], DONE)
            more = await send(http, open_["id"], CONFIRM)
            assert more.status_code == 200, more.text
            await wait_for_state(http, open_["id"], DONE)


async def answers(http: httpx.AsyncClient, order_ids: list[str]) -> list[Any]:
    """Views, histories and the raw bytes of repeated keyed requests."""
    seen: list[Any] = []
    for order_id in order_ids:
        seen.append((await view(http, order_id), await history(http, order_id)))
    for key in ("create-finished", "create-open"):
        repeat = await http.post(
            "/orders", json={"pizza": HAWAII}, headers={"Idempotency-Key": key}
        )
        seen.append((repeat.status_code, repeat.content))
    repeat = await send(http, order_ids[1], add(MARGHERITA), key="add-1")
    seen.append((repeat.status_code, repeat.content))
    repeat = await send(http, order_ids[0], CONFIRM, key="confirm")
    seen.append((repeat.status_code, repeat.content))
    return seen


async def store_answers(store: AnyStore, order_ids: list[str]) -> list[Any]:
    """Every replayed view and every event's repeated answer, straight from the store."""
    await store.open()
    try:
        seen: list[Any] = []
        for order_id in order_ids:
            journal = await store.journal(order_id)
            seen.append([r.view async for r in store.replay(order_id)])
            seen.append([await store.reply_for(order_id, e.event_id) for e in journal])
        return seen
    finally:
        await store.close()


async def test_a_database_a_server_holds_is_refused(server_factory: ServerFactory) -> None:
    """While a server runs on the file, migrate exits 2 with one line naming the server's
    process, and writes nothing into the target."""
    server = server_factory()
    assert server.proc is not None
    async with fresh_database() as url:
        done = migrate(server.db, url)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"in use by process {server.proc.pid}" in lines[0], done.stderr
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('orders')") is None
        finally:
            await conn.close()
