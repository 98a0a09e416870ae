"""Tests of what only the PostgreSQL adapter does: shards kept on every row, the cluster's
tables, and outages (a server that drops the connection) told apart from a turn's fault.

Each test runs on a fresh database of the real server (``tests/postgres.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.errors import StoreUnavailable, Unavailable
from orchestrator.model import Timer
from orchestrator.store.postgres import PostgresStore
from tests.postgres import fresh_database
from tests.store.test_store import T0, record

WAIT = 10.0  # a safety net for a hung test, never a timing assertion


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_database() as database:
        yield database


async def fetch(url: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_every_row_carries_its_orders_shard(url: str) -> None:
    """Orders, journal, outbox and timers rows carry crc32(order id) mod the shard count,
    which a new database keeps in meta (256 by default)."""
    store = PostgresStore(url)
    await store.open()
    try:
        for n in range(20):
            timer = Timer(f"o-{n}/t", f"o-{n}", T0 + 5, "after.s.t", {})
            await store.commit(dataclasses.replace(record(f"o-{n}", outbox=1), timers_set=(timer,)))
    finally:
        await store.close()
    expected = {(f"o-{n}", zlib.crc32(f"o-{n}".encode()) % 256) for n in range(20)}
    assert len({shard for _, shard in expected}) > 1
    for table in ("orders", "journal", "outbox", "timers"):
        column = "id" if table == "orders" else "order_id"
        assert set(await fetch(url, f"SELECT {column}, shard FROM {table}")) == expected, table
    assert await fetch(url, "SELECT value FROM meta WHERE key = 'shards'") == [(256,)]


async def test_the_shard_count_is_fixed_when_the_database_is_made(url: str) -> None:
    """A database made with 16 shards keeps 16: a store opened later with another count
    uses the database's, so an order never moves shard."""
    first = PostgresStore(url, shards=16)
    await first.open()
    await first.close()
    later = PostgresStore(url, shards=256)
    await later.open()
    try:
        assert later.shards == 16
        await later.commit(record("o-1"))
    finally:
        await later.close()
    assert await fetch(url, "SELECT shard FROM orders") == [(zlib.crc32(b"o-1") % 16,)]


async def test_the_cluster_tables_exist_empty(url: str) -> None:
    """members and shard_leases are made with the schema, so the cluster changes no table."""
    store = PostgresStore(url)
    await store.open()
    await store.close()
    assert await fetch(url, "SELECT count(*) FROM members") == [(0,)]
    columns = await fetch(
        url,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'shard_leases' ORDER BY ordinal_position",
    )
    assert columns == [("shard",), ("owner",), ("epoch",), ("expires_at",)]


async def test_a_connection_lost_while_idle_is_replaced_unseen(url: str) -> None:
    """The server ends the writer's idle session (pg_terminate_backend, as a restart or a
    failover does): the next batch finds the connection closed and opens a new one, so no
    turn fails for it."""
    store = PostgresStore(url)
    await store.open()
    try:
        await store.commit(record("before"))
        assert store._writer is not None
        pid = store._writer.get_server_pid()
        assert await fetch(url, f"SELECT pg_terminate_backend({pid})") == [(True,)]
        await asyncio.sleep(0.1)  # the driver reads the server's goodbye meanwhile
        await asyncio.wait_for(
            asyncio.gather(*(store.commit(record(f"after-{n}")) for n in range(5))), WAIT
        )
        assert store._writer.get_server_pid() != pid
        assert await fetch(url, "SELECT count(*) FROM orders") == [(6,)]
    finally:
        await store.close()


async def test_a_connection_lost_mid_batch_is_an_outage(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the writer's session while a batch runs (it waits on a row lock held
    here, then pg_terminate_backend: an administrator's shutdown, 57P01): every turn of the
    batch fails at once with StoreUnavailable, the error the inbox redelivers without
    counting it as poison, and the outage is logged once; nothing of them was kept, and the
    next turn commits on a new connection."""
    store = PostgresStore(url)
    await store.open()
    locker = await asyncpg.connect(url)
    try:
        await store.commit(record("o-1"))
        assert store._writer is not None
        pid = store._writer.get_server_pid()
        holding = locker.transaction()
        await holding.start()
        await locker.execute("SELECT 1 FROM orders WHERE id = 'o-1' FOR UPDATE")
        batch = asyncio.gather(
            store.commit(record("o-1", 2)),
            *(store.commit(record(f"lost-{n}")) for n in range(4)),
            return_exceptions=True,
        )
        for _ in range(500):
            waiting = await locker.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the batch never waited on the lock"
        assert await locker.fetchval("SELECT pg_terminate_backend($1)", pid)
        results = await asyncio.wait_for(batch, WAIT)
        await holding.rollback()
        assert all(isinstance(result, StoreUnavailable) for result in results), results
        errors = [
            r
            for r in caplog.records
            if r.name == "orchestrator.store.postgres" and r.levelname == "ERROR"
        ]
        assert len(errors) == 1, caplog.text
        await asyncio.wait_for(store.commit(record("after")), WAIT)
        assert await store.load("after") is not None
        assert await store.load("lost-0") is None
        loaded = await store.load("o-1")
        assert loaded is not None and loaded.version == 1
    finally:
        await locker.close()
        await store.close()


async def test_a_constraint_violation_is_the_turns_fault_not_an_outage(url: str) -> None:
    """A turn that breaks a constraint (its version is taken) fails alone with a plain
    Unavailable, never StoreUnavailable: retrying it cannot help, and the store is fine."""
    store = PostgresStore(url)
    await store.open()
    try:
        await store.commit(record("o-1"))
        results = await asyncio.gather(
            store.commit(record("o-1", event_id="again")),
            store.commit(record("o-2")),
            return_exceptions=True,
        )
        assert isinstance(results[0], Unavailable)
        assert not isinstance(results[0], StoreUnavailable)
        assert results[1] is None
    finally:
        await store.close()


async def test_an_unreachable_server_is_one_clear_error() -> None:
    """Opening a store whose server does not answer fails with StoreUnavailable naming
    PostgreSQL, not a driver traceback (the CLI prints it as one line)."""
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable) as info:
        await store.open()
    assert "cannot connect to PostgreSQL" in info.value.detail
